"""Chunked decoding: the chunk plan, exact lengths, and seams equal to whole decoding."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import FIXTURES, NOISE_OFF, SHORT_SENTENCE, IdsFor
from hypothesis import given
from hypothesis import strategies as st

from wyoming_piper_stream.engine.chunked_decoder import (
    ChunkedDecoder,
    ChunkSchedule,
    DecodedChunk,
    Postprocess,
    measure_padding,
    measure_stage_padding,
    plan_chunks,
)
from wyoming_piper_stream.engine.denoise import seamless_frames
from wyoming_piper_stream.engine.graphs import Latent, Voice, load_voice
from wyoming_piper_stream.engine.loudness import to_pcm16
from wyoming_piper_stream.engine.voice_config import DEFAULT_HOP_LENGTH as HOP_LENGTH
from wyoming_piper_stream.voices.builder import make_denoiser
from wyoming_piper_stream.voices.files import voice_files_at

# (first chunk, largest chunk) in frames; 1 and 7 are degenerate on purpose.
SCHEDULES = [(1, 1), (7, 7), (16, 128), (45, 45), (300, 300)]
PADDINGS = [0, 3, 10]


def _pcm(audio: np.ndarray, gain: float) -> np.ndarray:
    return np.frombuffer(to_pcm16(audio, gain), dtype="<i2").astype(np.int32)


def _chunks(voice: Voice, latent: Latent, padding: int, schedule: ChunkSchedule) -> list:
    return [c.audio for c in ChunkedDecoder(voice, padding, schedule).decode_chunks(latent)]


# --- the plan (pure) ---------------------------------------------------------------------


@given(
    num_frames=st.integers(1, 500),
    first=st.integers(1, 300),
    largest=st.integers(1, 300),
    growth=st.floats(1.0, 4.0),
    padding=st.integers(0, 20),
)
def test_plan_tiles_frames_with_clipped_pads(
    num_frames: int, first: int, largest: int, growth: float, padding: int
) -> None:
    spans = plan_chunks(num_frames, ChunkSchedule(first, largest, growth), padding)
    assert spans[0].start == 0
    assert spans[-1].end == num_frames
    for before, after in itertools.pairwise(spans):
        assert before.end == after.start
    for span in spans:
        assert span.end > span.start
        assert span.pad_left == min(padding, span.start)
        assert span.pad_right == min(padding, num_frames - span.end)
        assert span.decode_start >= 0 and span.decode_end <= num_frames


def test_plan_grows_from_the_first_chunk() -> None:
    sizes = [s.end - s.start for s in plan_chunks(1000, ChunkSchedule(16, 128), 10)]
    assert sizes[:4] == [16, 32, 64, 128]
    assert max(sizes) == 128
    assert sum(sizes) == 1000


# --- decoding lengths (the real joe decoder) ---------------------------------------------


@pytest.fixture(scope="module")
def short_latent(joe_voice: Voice, ids_for: IdsFor) -> Latent:
    latent = joe_voice.encode(ids_for(SHORT_SENTENCE), NOISE_OFF)
    assert 60 <= latent.num_frames <= 200
    return latent


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize(("first", "largest"), SCHEDULES)
def test_chunk_lengths_add_up_exactly(
    joe_voice: Voice, short_latent: Latent, first: int, largest: int, padding: int
) -> None:
    # Chunk size 1 costs one decoder call per frame: 40 frames are enough to see it.
    latent = short_latent.frames(0, 40) if largest == 1 else short_latent
    chunks = _chunks(joe_voice, latent, padding, ChunkSchedule(first, largest))
    assert all(len(c) % HOP_LENGTH == 0 and len(c) > 0 for c in chunks)
    assert sum(len(c) for c in chunks) == latent.num_frames * HOP_LENGTH
    if largest < latent.num_frames:
        assert len(chunks) > 1


def test_one_word_is_one_exact_chunk(joe_voice: Voice, ids_for: IdsFor) -> None:
    latent = joe_voice.encode(ids_for("Yes."), NOISE_OFF)
    assert latent.num_frames < 128  # shorter than one chunk
    chunks = _chunks(joe_voice, latent, 10, ChunkSchedule(128, 128))
    assert len(chunks) == 1
    assert np.array_equal(chunks[0], joe_voice.decode(latent))
    assert len(chunks[0]) == latent.num_frames * HOP_LENGTH


@pytest.mark.parametrize("padding", [0, 10])
def test_one_frame_latent(joe_voice: Voice, short_latent: Latent, padding: int) -> None:
    chunks = _chunks(joe_voice, short_latent.frames(30, 31), padding, ChunkSchedule())
    assert [len(c) for c in chunks] == [HOP_LENGTH]


# --- seams: chunks equal whole decoding when padded by the measured receptive field ------


@pytest.fixture(scope="module")
def long_chunks(joe_voice: Voice, long_ids: list[int], joe_padding: int) -> list[DecodedChunk]:
    """The ~40-word sentence streamed as a user gets it: default schedule, measured padding."""
    return list(ChunkedDecoder(joe_voice, joe_padding).stream(long_ids, NOISE_OFF))


def _seam_error_lsb(chunks: list[np.ndarray], whole: np.ndarray, gain: float) -> int:
    assert len(chunks) >= 5
    streamed = np.concatenate(chunks)
    assert len(streamed) == len(whole)
    return int(np.max(np.abs(_pcm(streamed, gain) - _pcm(whole, gain))))


def test_measured_padding_is_joes_receptive_field(joe_padding: int) -> None:
    assert 8 <= joe_padding <= 14


def test_measured_padding_gives_seamless_chunks(
    long_chunks: list[DecodedChunk], long_whole: np.ndarray, joe_gain: float
) -> None:
    assert _seam_error_lsb([c.audio for c in long_chunks], long_whole, joe_gain) <= 1


def test_short_padding_gives_audible_seams(
    joe_voice: Voice, long_ids: list[int], long_whole: np.ndarray, joe_gain: float
) -> None:
    # The seed's default padding (5 frames) is half joe's receptive field: the
    # comparison above would catch it.
    latent = joe_voice.encode(long_ids, NOISE_OFF)
    chunks = _chunks(joe_voice, latent, 5, ChunkSchedule())
    assert _seam_error_lsb(chunks, long_whole, joe_gain) > 50


def test_first_chunk_comes_early(long_chunks: list[DecodedChunk]) -> None:
    sizes = [len(c.audio) // HOP_LENGTH for c in long_chunks]
    first, largest = ChunkSchedule().first_chunk, ChunkSchedule().max_chunk
    assert sizes[0] == first
    assert sizes[0] < sizes[1] < sizes[2] < max(sizes) == largest
    assert [c.is_last for c in long_chunks] == [False] * (len(long_chunks) - 1) + [True]
    assert long_chunks[0].start_frame == 0 and long_chunks[-1].end_frame == sum(sizes)


@pytest.mark.parametrize("path", ["tiny-multi.onnx", "tiny-multi-presplit"])
def test_seamless_on_multi_speaker_and_presplit_voices(path: str) -> None:
    # Piper's pre-split decoder holds the flow too: the measured padding covers both.
    if not (FIXTURES / path).exists():
        pytest.skip("fixture voices not built")
    voice = load_voice(voice_files_at(FIXTURES / path))
    padding = measure_padding(voice)
    latent = voice.encode(list(range(1, 150)), NOISE_OFF, 2)
    whole = voice.decode(latent)
    schedule = ChunkSchedule(8, 32)
    exact = np.concatenate(_chunks(voice, latent, padding, schedule))
    assert np.max(np.abs(exact - whole)) <= 1e-6
    # The later stages' own context (all of ``padding`` where the decoder has no spans).
    stage_padding = measure_stage_padding(voice, padding)
    assert voice.decodes_spans == (stage_padding < padding)
    streamer = ChunkedDecoder(voice, padding, schedule, stage_padding=stage_padding)
    staged = np.concatenate([c.audio for c in streamer.decode_chunks(latent)])
    assert np.max(np.abs(staged - whole)) <= 1e-6
    short = np.concatenate(_chunks(voice, latent, padding - 2, schedule))
    assert np.max(np.abs(short - whole)) > 0.01


# --- the decoder's later stages: little context, the same seams -------------------------


@pytest.fixture(scope="module")
def joe_stage_padding(joe_voice: Voice, joe_padding: int) -> int:
    return measure_stage_padding(joe_voice, joe_padding)


def _staged_chunks(
    voice: Voice,
    latent: Latent,
    padding: int,
    stage_padding: int,
    postprocess: Postprocess | None = None,
) -> list[np.ndarray]:
    streamer = ChunkedDecoder(voice, padding, postprocess=postprocess, stage_padding=stage_padding)
    return [c.audio for c in streamer.decode_chunks(latent)]


def test_later_stages_need_a_fraction_of_the_padding(
    joe_voice: Voice, joe_padding: int, joe_stage_padding: int
) -> None:
    assert joe_voice.decodes_spans  # our split gives the decoder its span input
    assert 1 <= joe_stage_padding <= 3 < joe_padding


def test_span_audio_equals_whole_decoding(
    joe_voice: Voice, short_latent: Latent, joe_stage_padding: int
) -> None:
    whole = joe_voice.decode(short_latent)
    start, end, margin = 20, 50, joe_stage_padding
    audio = joe_voice.decode(short_latent, (start - margin, end + margin))
    assert len(audio) == (end - start + 2 * margin) * HOP_LENGTH
    kept = audio[margin * HOP_LENGTH :][: (end - start) * HOP_LENGTH]
    assert np.max(np.abs(kept - whole[start * HOP_LENGTH : end * HOP_LENGTH])) <= 1e-6


def test_stage_padding_gives_seamless_chunks(
    joe_voice: Voice,
    long_ids: list[int],
    long_whole: np.ndarray,
    joe_gain: float,
    joe_padding: int,
    joe_stage_padding: int,
) -> None:
    latent = joe_voice.encode(long_ids, NOISE_OFF)
    exact = _staged_chunks(joe_voice, latent, joe_padding, joe_stage_padding)
    assert _seam_error_lsb(exact, long_whole, joe_gain) <= 1
    # Without it, the later stages' zero padding is heard at each seam.
    cut = _staged_chunks(joe_voice, latent, joe_padding, 0)
    assert _seam_error_lsb(cut, long_whole, joe_gain) > 50


def test_denoised_chunks_equal_the_whole_utterance_denoised(
    joe_voice: Voice, long_ids: list[int], joe_gain: float, joe_padding: int
) -> None:
    # The server widens the later stages' context to the denoiser's window.
    denoiser = make_denoiser(joe_voice, 1.0, seamless_frames(HOP_LENGTH))
    assert denoiser is not None
    latent = joe_voice.encode(long_ids, NOISE_OFF)
    whole = denoiser(joe_voice.decode(latent))
    seamless = seamless_frames(HOP_LENGTH)
    exact = _staged_chunks(joe_voice, latent, joe_padding, seamless, denoiser)
    assert _seam_error_lsb(exact, whole, joe_gain) <= 1
    short = _staged_chunks(joe_voice, latent, joe_padding, seamless - 2, denoiser)
    assert _seam_error_lsb(short, whole, joe_gain) > 1
