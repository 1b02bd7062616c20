"""Where voices come from, where their measurements are kept, how many stay loaded."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "wyoming-piper-stream"


@dataclass(frozen=True)
class VoiceLibrarySettings:
    """Where voices come from and how many stay loaded."""

    default_voice: str | None = None
    """Voice used when a request names none; ``None``: the embedded voice."""

    data_dirs: tuple[Path, ...] = ()
    download_dir: Path | None = None
    catalogue_url: str | None = None
    update_voices: bool = False

    max_voices: int = 2
    """Voices kept loaded at once (least recently used is dropped)."""

    threads: int = 0
    """onnxruntime intra-op threads per graph; 0: one per core."""

    use_cuda: bool = False
    cache_dir: Path | None = None
    """Where split graphs and voice measurements are kept; ``None``: no cache."""

    phonemizer: str | None = None
    """``module:attribute`` or entry-point name of a phonemizer; ``None``: espeak-ng."""
