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
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import onnx

from wyoming_piper_stream.engine.graph_split import split_model
from wyoming_piper_stream.engine.voice_config import VoiceFiles

_LOGGER = logging.getLogger(__name__)

CACHE_VERSION = "5"
"""Bump when the split or the measurements change, to leave old entries unused."""

_ENCODER = "encoder.onnx"
_DECODER = "decoder.onnx"
_FLOW = "flow.onnx"
_FACTS = "facts.json"


@dataclass(frozen=True)
class VoiceFacts:
    """Per-voice measurements that take seconds to make."""

    padding: int
    gain: float
    flow_padding: int = 0


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


class VoiceCache:
    """One folder per voice content hash; ``read_only`` caches are looked in first."""

    def __init__(self, root: Path, read_only: tuple[Path, ...] = ()) -> None:
        self.root = root
        self.read_only = read_only

    def _entries(self, key: str) -> list[Path]:
        return [folder / key for folder in (*self.read_only, self.root)]

    def split_files(self, files: VoiceFiles, key: str, separate_flow: bool) -> VoiceFiles:
        """Files of the split graphs for a stock voice, splitting it on first use."""
        entry = next((e for e in self._entries(key) if (e / _ENCODER).is_file()), None)
        if entry is None:
            entry = self.root / key
            self._write_entry(entry, lambda tmp: _split_into(files, tmp, separate_flow))
        flow = entry / _FLOW
        return VoiceFiles(
            name=files.name,
            config=files.config,
            encoder=entry / _ENCODER,
            decoder=entry / _DECODER,
            flow=flow if flow.is_file() else None,
        )

    def facts(self, key: str) -> VoiceFacts | None:
        for entry in self._entries(key):
            try:
                data = json.loads((entry / _FACTS).read_text(encoding="utf-8"))
                return VoiceFacts(
                    padding=int(data["padding"]),
                    gain=float(data["gain"]),
                    flow_padding=int(data.get("flow_padding", 0)),
                )
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return None

    def store_facts(self, key: str, facts: VoiceFacts) -> None:
        entry = self.root / key
        try:
            entry.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=entry, suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(asdict(facts), out)
            os.chmod(tmp, 0o644)  # mkstemp makes it owner-only
            os.replace(tmp, entry / _FACTS)
        except OSError as error:
            _LOGGER.warning("Cannot write voice cache %s: %s", entry, error)

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
    graphs = split_model(onnx.load(str(files.model)), separate_flow=separate_flow)
    onnx.save(graphs.encoder, str(folder / _ENCODER))
    onnx.save(graphs.decoder, str(folder / _DECODER))
    if graphs.flow is not None:
        onnx.save(graphs.flow, str(folder / _FLOW))
