"""Where voices come from, where their measurements are kept, how many stay loaded."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from wyoming_piper_stream.engine.settings_field import setting

PACKAGED_CACHE = Path(__file__).with_name("prepared")
"""A read-only cache shipped with the package: the embedded voice's measurements (no
graphs), keyed like every entry, so its first-ever start only splits it. Made with
``python -m wyoming_piper_stream.prepare --facts-only``; ``tests/test_prepare.py``
checks that they are what the code measures now."""


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "wyoming-piper-stream"


@dataclass(frozen=True)
class VoiceLibrarySettings:
    """Where voices come from and how many stay loaded."""

    default_voice: str | None = setting(None, "default voice name", shown="embedded joe")
    data_dirs: tuple[Path, ...] = setting(
        (), "folders scanned for voices (repeatable)", shown="none"
    )
    download_dir: Path | None = setting(None, "where downloaded voices go", shown="first data dir")
    catalogue_url: str | None = setting(None, "URL of `voices.json`", shown="Piper's catalogue")
    update_voices: bool = setting(False, "refresh the catalogue")
    local_files_only: bool = setting(False, "never use the network: no catalogue, no downloads")
    max_voices: int = setting(2, "voices kept loaded (least recently used is dropped)", minimum=1)
    threads: int = setting(0, "onnxruntime threads per voice", minimum=0, shown="0 (auto)")
    use_cuda: bool = setting(
        False, "onnxruntime CUDA provider (logs a warning and uses the CPU if absent)"
    )
    cache_dir: Path | None = setting(
        help="cache of split voices",
        default_factory=default_cache_dir,
        shown="`~/.cache/wyoming-piper-stream`",
    )
    prebuilt_caches: tuple[Path, ...] = setting(
        (PACKAGED_CACHE,),
        "read-only cache of prepared voices, looked in first (repeatable)",
        shown="the package's",
    )
    phonemizer: str | None = setting(
        None,
        "`module:attribute` or an entry point of group `wyoming_piper_stream.phonemizers`",
        shown="by phoneme type",
    )

    @property
    def resource_dir(self) -> Path | None:
        """Where phonemizer models live (``g2pW/`` of pinyin voices): the download dir, else
        the first data dir, else the cache dir; PiperVoice's counterpart is ``download_dir``."""
        return self.download_dir or next(iter(self.data_dirs), None) or self.cache_dir
