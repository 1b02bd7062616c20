"""The voice cache: warm loads reuse split graphs and measurements; bad entries heal."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import FIXTURES

from wyoming_piper_stream.engine.graphs import SynthesisScales
from wyoming_piper_stream.engine.settings import StreamingSettings
from wyoming_piper_stream.engine.voice_config import VoiceFiles
from wyoming_piper_stream.voices.cache import VoiceCache, entry_key
from wyoming_piper_stream.voices.library import VoiceLibrary
from wyoming_piper_stream.voices.settings import VoiceLibrarySettings


def _voice_dir(tmp_path: Path) -> Path:
    data = tmp_path / "voices"
    data.mkdir()
    for suffix in (".onnx", ".onnx.json"):
        shutil.copy(FIXTURES / f"tiny-multi{suffix}", data / f"tiny{suffix}")
    return data


def _load(data: Path, cache: Path):
    settings = VoiceLibrarySettings(default_voice="tiny", data_dirs=(data,), cache_dir=cache)
    return asyncio.run(VoiceLibrary(settings, StreamingSettings()).get(None))


def _audio(ready) -> np.ndarray:
    ids = [1, 0, 20, 0, 59, 0, 24, 0, 165, 0, 2]
    latent = ready.voice.encode(ids, SynthesisScales(0.0, 1.0, 0.0), 1)
    return ready.voice.decode(latent)


def test_second_load_uses_cached_graphs_and_facts(tmp_path: Path) -> None:
    data, cache = _voice_dir(tmp_path), tmp_path / "cache"
    first = _load(data, cache)
    files = VoiceFiles("tiny", data / "tiny.onnx.json", model=data / "tiny.onnx")
    key = entry_key(files, separate_flow=True)
    names = sorted(p.name for p in (cache / key).iterdir())
    assert names == ["facts.json", "voice.onnx"]
    facts = VoiceCache(cache).facts(key)
    assert (facts.padding, facts.flow_padding) == (
        first.streamer.padding,
        first.streamer.flow_padding,
    )

    second = _load(data, cache)
    assert second.gain == first.gain
    assert np.array_equal(_audio(first), _audio(second))


def test_changed_voice_gets_a_new_entry(tmp_path: Path) -> None:
    data, cache = _voice_dir(tmp_path), tmp_path / "cache"
    _load(data, cache)
    config = data / "tiny.onnx.json"
    config.write_text(config.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    _load(data, cache)
    assert len(list(cache.glob("*/flow/facts.json"))) == 2


def test_corrupt_cached_graph_is_rebuilt(tmp_path: Path) -> None:
    data, cache = _voice_dir(tmp_path), tmp_path / "cache"
    good = _audio(_load(data, cache))
    (graphs,) = cache.glob("*/*/voice.onnx")
    graphs.write_bytes(b"not an onnx graph")
    assert np.array_equal(_audio(_load(data, cache)), good)
    assert not list(cache.glob("**/.tmp-*"))


def test_warm_load_does_not_import_onnx(tmp_path: Path) -> None:
    """onnx is only needed to split: a server whose voice is cached keeps its 14 MB."""
    data, cache = _voice_dir(tmp_path), tmp_path / "cache"
    _load(data, cache)  # splits: fills the cache
    script = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "import wyoming_piper_stream.__main__\n"
        "from wyoming_piper_stream.engine.settings import StreamingSettings\n"
        "from wyoming_piper_stream.voices.library import VoiceLibrary\n"
        "from wyoming_piper_stream.voices.settings import VoiceLibrarySettings\n"
        f"settings = VoiceLibrarySettings(default_voice='tiny', data_dirs=(Path({str(data)!r}),),"
        f" cache_dir=Path({str(cache)!r}))\n"
        "ready = asyncio.run(VoiceLibrary(settings, StreamingSettings()).get(None))\n"
        "print(ready.voice.flow is not None, 'onnx' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False"]
