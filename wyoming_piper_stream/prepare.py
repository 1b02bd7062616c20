"""Command line: prepare voices into a split cache ahead of time.

    python -m wyoming_piper_stream.prepare --cache-dir DIR [VOICE.onnx ...] [--facts-only]

Splits and measures each voice (default: the embedded one) with the server's own
builder and settings, into the cache entry the server will look up. The Docker
image runs it at build time (``--prebuilt-cache`` then reads it), so a new
container's first request is as fast as a warm start. ``--facts-only`` keeps just
the measurements: how the package's ``voices/prepared`` entry of the embedded voice
is made (``--cache-dir wyoming_piper_stream/voices/prepared --facts-only``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from wyoming_piper_stream.engine.settings import StreamingSettings
from wyoming_piper_stream.engine.voice_config import VoiceError
from wyoming_piper_stream.voices.builder import VoiceBuilder
from wyoming_piper_stream.voices.cache import entry_key
from wyoming_piper_stream.voices.files import embedded_voice_files, voice_files_at
from wyoming_piper_stream.voices.settings import VoiceLibrarySettings

_LOGGER = logging.getLogger(__name__)
_FACTS = "facts.json"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wyoming_piper_stream.prepare",
        description="Split and measure voices into a cache, as the server would on first use.",
    )
    parser.add_argument("voices", type=Path, nargs="*", help="X.onnx (default: embedded voice)")
    parser.add_argument("--cache-dir", type=Path, required=True, help="the cache to fill")
    parser.add_argument(
        "--facts-only", action="store_true", help="keep the measurements, not the split graphs"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # Measured afresh: no read-only cache (not even the package's own) is looked in.
    settings = VoiceLibrarySettings(cache_dir=args.cache_dir, prebuilt_caches=())
    builder = VoiceBuilder(settings, StreamingSettings())
    for files in [voice_files_at(path) for path in args.voices] or [embedded_voice_files()]:
        try:
            ready = builder.prepare(files)
        except VoiceError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        entry = args.cache_dir / entry_key(files, ready.voice.flow is not None)
        if args.facts_only:
            for path in entry.iterdir():
                if path.name != _FACTS:
                    path.unlink()
        _LOGGER.info("Prepared %s into %s", files.name, entry)
    return 0


if __name__ == "__main__":
    sys.exit(main())
