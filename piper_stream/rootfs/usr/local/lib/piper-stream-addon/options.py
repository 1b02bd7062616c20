"""Home Assistant add-on: ``/data/options.json`` -> the server's command line, then exec it.

``options.py [--print] [OPTIONS_JSON]``: ``--print`` prints the command line as a JSON
list instead of running it.
Each option maps to one server flag (``OPTION_FLAGS``); an option that is unset (an
optional one the user left empty) adds nothing, so the server's own default holds.
New server flags (clause streaming, ...) need one line here and one in config.yaml.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

OPTIONS_PATH = Path("/data/options.json")
SERVER = "wyoming-piper-stream"
INGRESS_PROXY = "172.30.32.2"
"""The Supervisor's ingress proxy: the only peer the web page answers."""

FIXED_FLAGS = [
    "--uri", "tcp://0.0.0.0:10200",
    "--data-dir", "/data",
    "--data-dir", "/share/piper",
    "--download-dir", "/data",
    "--cache-dir", "/data/cache",
    "--web-server",
    "--web-server-host", "0.0.0.0",
    "--web-server-port", "8099",
    "--web-server-allow", INGRESS_PROXY,
]  # fmt: skip

OPTION_FLAGS = {
    "voice": "--voice",
    "speaker": "--speaker",
    "length_scale": "--length-scale",
    "noise_scale": "--noise-scale",
    "noise_w": "--noise-w-scale",
    "sentence_silence": "--sentence-silence",
    "samples_per_chunk": "--samples-per-chunk",
    "chunk_size": "--chunk-size",
    "first_chunk_size": "--first-chunk-size",
    "max_utterance_phonemes": "--max-utterance-phonemes",
    "max_voices": "--max-voices",
    "max_concurrent": "--max-concurrent",
    "denoiser_strength": "--denoiser-strength",
    "phonemizer": "--phonemizer",
    "update_voices": "--update-voices",
    "local_files_only": "--local-files-only",
    "debug_logging": "--debug",
}
"""Option -> flag. A bool option adds its flag when true; any other adds flag and value."""


def command_line(options: dict[str, object]) -> list[str]:
    argv = [SERVER, *FIXED_FLAGS]
    for name, value in options.items():
        flag = OPTION_FLAGS.get(name)
        if flag is None:
            print(f"piper-stream-addon: ignoring unknown option {name!r}", file=sys.stderr)
        elif isinstance(value, bool):
            argv += [flag] if value else []
        elif value is not None and value != "":
            argv += [flag, str(value)]
    return argv


def main(args: list[str]) -> None:
    printing = bool(args) and args[0] == "--print"
    rest = args[1:] if printing else args
    path = Path(rest[0]) if rest else OPTIONS_PATH
    try:
        options = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        message = f"piper-stream-addon: cannot read the add-on options {path}: {error}"
        raise SystemExit(message) from None
    if not isinstance(options, dict):
        raise SystemExit(f"piper-stream-addon: {path} is not a JSON object")
    argv = command_line(options)
    if printing:
        print(json.dumps(argv))
        return
    if Path("/share").is_dir():  # mapped by the Supervisor: where users put their voices
        Path("/share/piper").mkdir(exist_ok=True)
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1:])
