"""The README flag table, made from the server parser: `python -m wyoming_piper_stream.flags_table`.

The parser takes each default and meaning from the settings dataclasses, so the
table, ``--help`` and the code cannot drift apart (a test compares the README).
"""

from __future__ import annotations

import argparse
import re

from wyoming_piper_stream.__main__ import build_parser

_DEFAULT = re.compile(r"^(?P<meaning>.*) \(default: (?P<default>.*)\)$", re.S)


def flag_rows(parser: argparse.ArgumentParser | None = None) -> list[tuple[str, str, str]]:
    """(flags, default, meaning) for every flag but --help and --version."""
    rows = []
    for action in (parser or build_parser())._actions:
        if not action.help or action.dest in ("help", "version"):
            continue
        help_text = " ".join(action.help.replace("%%", "%").split())
        match = _DEFAULT.match(help_text)
        meaning, default = (match["meaning"], match["default"]) if match else (help_text, "")
        flags = ", ".join(f"`{flag}`" for flag in action.option_strings)
        rows.append((flags, default, meaning))
    return rows


def markdown_table() -> str:
    lines = ["| flag | default | meaning |", "| --- | --- | --- |"]
    for flags, default, meaning in flag_rows():
        escaped = meaning.replace("|", "\\|")
        lines.append(f"| {flags} | {default} | {escaped} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
