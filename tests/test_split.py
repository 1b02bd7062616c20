"""The encoder/decoder split reproduces the stock voice exactly."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import FIXTURES, NOISE_OFF, cpu_session, run_stock
from onnx import TensorProto, helper

from wyoming_piper_stream.engine.graphs import Voice, load_voice
from wyoming_piper_stream.engine.voice_config import VoiceError
from wyoming_piper_stream.voices.files import voice_files_at

JOE_STEM = "en_US-joe-medium"
FIXTURE_IDS = list(range(1, 60))  # any ids in the tiny voices' map: their audio is not speech
SPEAKERS = {"alice": 0, "bob": 1, "carol": 2}

needs_fixtures = pytest.mark.skipif(
    not (FIXTURES / "tiny-multi.onnx").exists()
    or not (FIXTURES / "tiny-multi-presplit" / "encoder.onnx").exists(),
    reason="fixture voices not built (script/make-fixture-voices)",
)


def test_joe_split_is_bit_exact(long_whole: np.ndarray, long_stock: np.ndarray) -> None:
    assert long_whole.dtype == long_stock.dtype == np.float32
    assert np.array_equal(long_whole, long_stock)


def test_split_cli_writes_the_three_files(split_dir: Path) -> None:
    assert sorted(p.name for p in split_dir.iterdir()) == [
        f"{JOE_STEM}.decoder.onnx",
        f"{JOE_STEM}.encoder.onnx",
        f"{JOE_STEM}.onnx.json",
    ]


def test_split_files_give_the_same_audio(
    split_dir: Path, long_ids: list[int], long_stock: np.ndarray
) -> None:
    voice = load_voice(voice_files_at(split_dir / f"{JOE_STEM}.encoder.onnx"))
    assert voice.config.sample_rate == 22050
    assert np.array_equal(voice.decode(voice.encode(long_ids, NOISE_OFF)), long_stock)


def _relu_graph(path: Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y])
    onnx.save(helper.make_model(graph), str(path))


def _not_onnx(path: Path) -> None:
    path.write_bytes(b"this is not a protobuf \x00\x01\x02")


@pytest.mark.parametrize(
    ("make", "message"),
    [(_relu_graph, "not a HiFi-GAN voice"), (_not_onnx, "not an ONNX model")],
    ids=["relu-graph", "garbage"],
)
def test_split_cli_rejects_a_non_voice(tmp_path: Path, make, message: str) -> None:
    model = tmp_path / "thing.onnx"
    make(model)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "wyoming_piper_stream.split", str(model), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert message in result.stderr
    assert str(model) in result.stderr
    assert not out.exists()


# --- tiny fixture voices: multi-speaker, and Piper's pre-split training export ---------


@pytest.fixture(scope="module")
def tiny_multi() -> Voice:
    return load_voice(voice_files_at(FIXTURES / "tiny-multi.onnx"))


@pytest.fixture(scope="module")
def tiny_multi_stock():
    return cpu_session(FIXTURES / "tiny-multi.onnx")


@needs_fixtures
@pytest.mark.parametrize("sid", [0, 1, 2])
def test_multi_speaker_split_is_bit_exact(tiny_multi: Voice, tiny_multi_stock, sid: int) -> None:
    assert tiny_multi.is_multi_speaker
    ours = tiny_multi.decode(tiny_multi.encode(FIXTURE_IDS, NOISE_OFF, sid))
    assert np.array_equal(ours, run_stock(tiny_multi_stock, FIXTURE_IDS, sid))


@needs_fixtures
def test_speakers_differ(tiny_multi: Voice) -> None:
    audio = [tiny_multi.decode(tiny_multi.encode(FIXTURE_IDS, NOISE_OFF, s)) for s in range(3)]
    for a, b in itertools.combinations(audio, 2):
        assert len(a) == len(b)
        assert np.max(np.abs(a - b)) > 0.05


@needs_fixtures
@pytest.mark.parametrize("path", ["tiny-single.onnx", "tiny-single-presplit"])
def test_single_speaker_fixture_matches_stock(path: str) -> None:
    # The single-speaker export carries an initializer named "sid": not an input.
    voice = load_voice(voice_files_at(FIXTURES / path))
    assert not voice.is_multi_speaker
    stock = run_stock(cpu_session(FIXTURES / "tiny-single.onnx"), FIXTURE_IDS)
    assert np.max(np.abs(voice.decode(voice.encode(FIXTURE_IDS, NOISE_OFF)) - stock)) <= 1e-6


@needs_fixtures
@pytest.mark.parametrize("sid", [0, 1, 2])
def test_presplit_pair_matches_stock(tiny_multi_stock, sid: int) -> None:
    # Piper's training export: encoder ends before the flow, decoder = flow + HiFi-GAN.
    # Measured max |diff| = 0.0 (onnxruntime 1.2x CPU); 1e-6 leaves room for kernels
    # that fuse differently, far below a real mismatch (audio peaks ~0.5).
    voice = load_voice(voice_files_at(FIXTURES / "tiny-multi-presplit"))
    assert voice.is_multi_speaker
    ours = voice.decode(voice.encode(FIXTURE_IDS, NOISE_OFF, sid))
    stock = run_stock(tiny_multi_stock, FIXTURE_IDS, sid)
    assert ours.shape == stock.shape
    assert np.max(np.abs(ours - stock)) <= 1e-6


@needs_fixtures
def test_speaker_by_name(tiny_multi: Voice, tiny_multi_stock) -> None:
    for name, sid in SPEAKERS.items():
        assert tiny_multi.speaker_id(name) == sid
    bob = tiny_multi.decode(tiny_multi.encode(FIXTURE_IDS, NOISE_OFF, tiny_multi.speaker_id("bob")))
    assert np.array_equal(bob, run_stock(tiny_multi_stock, FIXTURE_IDS, 1))
    with pytest.raises(VoiceError, match="dave"):
        tiny_multi.speaker_id("dave")
    with pytest.raises(VoiceError):
        tiny_multi.speaker_id(3)


@needs_fixtures
def test_default_speaker_comes_from_the_config(tmp_path: Path, tiny_multi_stock) -> None:
    """As Piper: a request naming no speaker gets the config's ``default_speaker_id``."""
    config = json.loads((FIXTURES / "tiny-multi.onnx.json").read_text(encoding="utf-8"))
    config["default_speaker_id"] = 2
    (tmp_path / "tiny-multi.onnx.json").write_text(json.dumps(config), encoding="utf-8")
    (tmp_path / "tiny-multi.onnx").symlink_to(FIXTURES / "tiny-multi.onnx")
    voice = load_voice(voice_files_at(tmp_path / "tiny-multi.onnx"))
    assert voice.speaker_id(None) == 2
    ours = voice.decode(voice.encode(FIXTURE_IDS, NOISE_OFF, voice.speaker_id(None)))
    assert np.array_equal(ours, run_stock(tiny_multi_stock, FIXTURE_IDS, 2))


def _split_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wyoming_piper_stream.split", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@needs_fixtures
def test_split_cli_lists_every_file_it_wrote(tmp_path: Path) -> None:
    voice = FIXTURES / "tiny-single.onnx"
    result = _split_cli(str(voice), str(tmp_path), "--separate-flow")
    assert result.returncode == 0, result.stderr
    parts = ["encoder.onnx", "decoder.onnx", "flow.onnx", "onnx.json"]
    listed = [tmp_path / f"tiny-single.{part}" for part in parts]
    assert result.stderr.strip() == "Wrote " + ", ".join(map(str, listed))
    assert sorted(tmp_path.iterdir()) == sorted(listed)
    # Split again with the flow in the encoder: the old flow graph must not stay behind.
    result = _split_cli(str(voice), str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "flow" not in result.stderr
    assert not (tmp_path / "tiny-single.flow.onnx").exists()
