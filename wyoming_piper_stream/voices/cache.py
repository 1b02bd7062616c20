"""On-disk cache of what loading a voice computes: split graphs, padding and gain.

Keyed by the content hash of the voice's files, so an edited or replaced voice
is never served from a stale entry. Entries are written to a temporary folder
and renamed into place, so a crash never leaves half an entry.

Read-only caches are looked in first and never written: one built into the Docker
image, and the measurements of the embedded voice shipped with the package
(``settings.PACKAGED_CACHE``, made by ``python -m wyoming_piper_stream.prepare``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from wyoming_piper_stream.engine.pacing import CostModel
from wyoming_piper_stream.engine.voice_config import VoiceFiles

_LOGGER = logging.getLogger(__name__)

CACHE_VERSION = "8"
"""Bump when the split or the measurements change, to leave old entries unused.
8: the split graphs as one merged model, run by one session (costs learned afresh)."""

_GRAPHS = "voice.onnx"
_FACTS = "facts.json"
# 2: the encoder fitted on encoder_units, not ids; 3: decoder and flow per frame run,
# their context included
_COSTS = "costs-3-{machine}.json"


@dataclass(frozen=True)
class VoiceFacts:
    """Per-voice measurements that take seconds to make."""

    padding: int
    gain: float
    flow_padding: int = 0
    stage_padding: int | None = None
    """Context frames of the decoder's stages after the first; None: ``padding``."""
    flow_trim: int = 0
    """Frames each flow layer drops from a call's context (``measure_flow_trim``)."""


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def entry_key(files: VoiceFiles, separate_flow: bool) -> str:
    """Cache entry of a voice's content, one per way of splitting it."""
    layout = "given" if files.model is None else "flow" if separate_flow else "decoder"
    return f"{content_key(files)}/{layout}"


def content_key(files: VoiceFiles) -> str:
    digest = hashlib.sha256(CACHE_VERSION.encode())
    for path in (files.model, files.encoder, files.decoder, files.config):
        if path is None:
            continue
        with open(path, "rb") as source:
            for block in iter(lambda: source.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:32]


def machine_key(threads: int) -> str:
    """This machine as the step costs see it: CPU model, cores we may use, threads, runtime.

    A server pinned to fewer cores (or another board) gets costs of its own.
    """
    import onnxruntime

    from wyoming_piper_stream.engine.graphs import usable_cores  # numpy, onnxruntime

    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith(("model name", "Model")):
                cpu = line.split(":", 1)[1].strip()
                break
    parts = (platform.machine(), cpu, str(usable_cores()), str(threads), onnxruntime.__version__)
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


class VoiceCache:
    """One folder per voice content hash; ``read_only`` caches are looked in first."""

    def __init__(self, root: Path, read_only: tuple[Path, ...] = ()) -> None:
        self.root = root
        self.read_only = read_only

    def _entries(self, key: str) -> list[Path]:
        return [folder / key for folder in (*self.read_only, self.root)]

    def split_files(self, files: VoiceFiles, key: str, separate_flow: bool) -> VoiceFiles:
        """The merged model of a stock voice's split graphs, split on first use."""
        entry = next((e for e in self._entries(key) if (e / _GRAPHS).is_file()), None)
        if entry is None:
            entry = self.root / key
            self._write_entry(entry, lambda tmp: _split_into(files, tmp, separate_flow))
        return VoiceFiles(name=files.name, config=files.config, graphs=entry / _GRAPHS)

    def facts(self, key: str) -> VoiceFacts | None:
        for entry in self._entries(key):
            try:
                data = json.loads((entry / _FACTS).read_text(encoding="utf-8"))
                return VoiceFacts(
                    padding=int(data["padding"]),
                    gain=float(data["gain"]),
                    flow_padding=int(data.get("flow_padding", 0)),
                    stage_padding=_optional_int(data.get("stage_padding")),
                    flow_trim=int(data.get("flow_trim", 0)),
                )
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return None

    def store_facts(self, key: str, facts: VoiceFacts) -> None:
        self._write_json(key, _FACTS, asdict(facts))

    def _write_json(self, key: str, name: str, data: dict[str, object]) -> None:
        """Written beside, then renamed: readers never see half a file."""
        entry = self.root / key
        try:
            entry.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=entry, suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(data, out)
            os.chmod(tmp, 0o644)  # mkstemp makes it owner-only
            os.replace(tmp, entry / name)
        except OSError as error:
            _LOGGER.warning("Cannot write voice cache %s: %s", entry, error)

    def costs(self, key: str, machine: str) -> CostModel:
        """The step costs learned for this voice on this machine (empty if none yet)."""
        path = self.root / key / _COSTS.format(machine=machine)
        try:
            return CostModel.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return CostModel()
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            _LOGGER.warning("Ignoring unreadable step costs %s: %s", path, error)
            return CostModel()

    def store_costs(self, key: str, machine: str, costs: CostModel) -> None:
        self._write_json(key, _COSTS.format(machine=machine), costs.as_dict())

    def drop(self, key: str) -> None:
        """Forget an unusable entry (read-only caches stay as they are)."""
        shutil.rmtree(self.root / key, ignore_errors=True)

    def _write_entry(self, entry: Path, fill: Callable[[Path], None]) -> None:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=".tmp-"))
        try:
            # mkdtemp makes it owner-only: a cache built at image build time (as root)
            # must be readable by the server's user.
            os.chmod(tmp, 0o755)
            fill(tmp)
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(entry)
            os.replace(tmp, entry)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _split_into(files: VoiceFiles, folder: Path, separate_flow: bool) -> None:
    if files.model is None:
        raise ValueError("only stock voices are split")
    # Only to split: a cached voice loads without onnx (14 MB).
    from wyoming_piper_stream.engine.graph_merge import merge_graphs, voice_models
    from wyoming_piper_stream.engine.graphs import save_optimized

    # One model from one stock model: the graphs share its opsets, so they merge.
    merged = merge_graphs(voice_models(files, separate_flow))
    save_optimized(merged.SerializeToString(), folder / _GRAPHS)
