"""Prepared caches: the package's facts of the embedded voice are what the code measures
now, and a read-only cache (as built into the Docker image) is used and never written."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import stat
from pathlib import Path

import pytest
from conftest import FIXTURES

from wyoming_piper_stream.engine.settings import StreamingSettings
from wyoming_piper_stream.prepare import main
from wyoming_piper_stream.voices.cache import entry_key
from wyoming_piper_stream.voices.files import embedded_voice_files, voice_files_at
from wyoming_piper_stream.voices.library import VoiceLibrary
from wyoming_piper_stream.voices.settings import PACKAGED_CACHE, VoiceLibrarySettings

GAIN_DB_TOLERANCE = 0.01
"""Float rounding of another CPU's kernels may move the gain, never audibly."""


def _facts(entry: Path) -> dict[str, float]:
    return json.loads((entry / "facts.json").read_text(encoding="utf-8"))


def test_packaged_facts_of_the_embedded_voice_are_current(tmp_path: Path) -> None:
    key = entry_key(embedded_voice_files(), separate_flow=True)
    packaged = PACKAGED_CACHE / key
    assert packaged.is_dir(), (
        f"no packaged entry {key}: run python -m wyoming_piper_stream.prepare "
        f"--cache-dir {PACKAGED_CACHE} --facts-only (and delete the old entry)"
    )
    assert [p.name for p in PACKAGED_CACHE.iterdir()] == [key.split("/")[0]], "stale entries"
    assert main(["--cache-dir", str(tmp_path), "--facts-only"]) == 0
    assert sorted(p.name for p in (tmp_path / key).iterdir()) == ["facts.json"]
    shipped, measured = _facts(packaged), _facts(tmp_path / key)
    assert (shipped["padding"], shipped["flow_padding"]) == (
        measured["padding"],
        measured["flow_padding"],
    )
    assert abs(20 * math.log10(shipped["gain"] / measured["gain"])) < GAIN_DB_TOLERANCE


def _read_only(folder: Path) -> dict[str, int]:
    """Takes write permission away (root ignores it); returns each file's mtime to compare."""
    for path in [folder, *folder.rglob("*")]:
        mode = path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
        path.chmod(mode)
    return {str(path): path.stat().st_mtime_ns for path in folder.rglob("*")}


def test_a_prebuilt_cache_is_read_and_never_written(tmp_path: Path) -> None:
    voices = tmp_path / "voices"
    voices.mkdir()
    for suffix in (".onnx", ".onnx.json"):
        shutil.copy(FIXTURES / f"tiny-single{suffix}", voices / f"tiny{suffix}")
    prebuilt = tmp_path / "prebuilt"
    assert main(["--cache-dir", str(prebuilt), str(voices / "tiny.onnx")]) == 0
    key = entry_key(voice_files_at(voices / "tiny.onnx"), separate_flow=True)
    assert sorted(p.name for p in (prebuilt / key).iterdir()) == ["facts.json", "voice.onnx"]
    before = _read_only(prebuilt)
    cache = tmp_path / "cache"
    settings = VoiceLibrarySettings(
        default_voice="tiny", data_dirs=(voices,), cache_dir=cache, prebuilt_caches=(prebuilt,)
    )
    ready = asyncio.run(VoiceLibrary(settings, StreamingSettings()).get(None))
    assert ready.gain == pytest.approx(_facts(prebuilt / key)["gain"])
    assert not cache.exists()  # nothing split, measured or written again
    assert {str(p): p.stat().st_mtime_ns for p in prebuilt.rglob("*")} == before
