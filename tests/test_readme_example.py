"""The README's stream CLI example, run as a user pastes it (without the player)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import REPO

PLAYER = "aplay"
"""The example's player line needs a sound card: the saving line covers the same command."""


def stream_cli_example() -> list[str]:
    """The command lines of the first ``sh`` block in the README's stream CLI section."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## The streaming CLI", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None, "no sh example in the README's stream CLI section"
    return block.group(1).splitlines()


def test_the_readme_stream_cli_example_saves_speech(tmp_path: Path) -> None:
    lines = stream_cli_example()
    played = [line for line in lines if PLAYER in line]
    assert len(played) == 1, "the example should play the audio once"
    script = "\n".join(line for line in lines if PLAYER not in line)
    # As with an active venv: `python` is this interpreter.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    ids = (tmp_path / "ids.jsonl").read_text().splitlines()
    assert len(ids) == 2  # one line per sentence
    pcm = np.frombuffer((tmp_path / "speech.raw").read_bytes(), dtype="<i2")
    seconds = len(pcm) / 22050
    assert 2.0 < seconds < 8.0, f"{seconds:.2f} s of audio for two short sentences"
    assert np.sqrt(np.mean(pcm.astype(np.float64) ** 2)) > 300  # speech, not silence
