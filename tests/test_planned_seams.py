"""The planned pacing on the real voice: its chunks and one-call flow stay exact.

The plan picks other chunk sizes than the fixed schedule and, once audio is
buffered, runs the flow over the whole rest of an utterance in one call instead
of recomputing its context call after call. The audio must still equal whole
decoding within 1 LSB. A clock that never moves keeps the buffer full, so the
plan takes its large-chunk, one-call paths on any machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from tests.conftest import LONG_SENTENCE, NOISE_OFF
from wyoming_piper_stream.engine.chunked_decoder import (
    ChunkedDecoder,
    measure_flow_padding,
    measure_padding,
)
from wyoming_piper_stream.engine.graphs import Latent, Voice
from wyoming_piper_stream.engine.pacing import CostModel, PlannedPacing, PlaybackClock


def _taught_costs() -> CostModel:
    """Costs of a machine 20x faster than real time (each call a few ms)."""
    costs = CostModel()
    for frames in (16, 64, 128):
        costs.learn_decoder(0.002 + 0.0005 * frames, frames)
        costs.learn_flow(0.001 + 0.0001 * frames, frames)
    costs.learn_encoder(0.05, 100, 230)
    costs.learn_encoder(0.15, 300, 690)
    return costs


@contextmanager
def _flow_calls(voice: Voice) -> Iterator[list[int]]:
    """The frames of each flow call made inside the block."""
    calls: list[int] = []
    run_flow = voice.run_flow

    def counted(latent: Latent, trim: tuple[int, int] = (0, 0)) -> Latent:
        calls.append(latent.num_frames)
        return run_flow(latent, trim)

    voice.run_flow = counted  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        del voice.run_flow


def _planned(voice: Voice) -> ChunkedDecoder:
    """The planned pacing on a machine 20x faster than real time, whose buffer never drains."""
    frame = voice.config.hop_length / voice.config.sample_rate
    return ChunkedDecoder(
        voice,
        measure_padding(voice),
        PlannedPacing(16, 128, frame),
        flow_padding=measure_flow_padding(voice),
        clock=lambda: 0.0,
        costs=_taught_costs(),
    )


def test_planned_chunks_and_one_call_flow_equal_whole_decoding(
    joe_flow_voice: Voice, ids_for, joe_gain: float
) -> None:
    voice = joe_flow_voice
    ids = ids_for(LONG_SENTENCE)
    prior = voice.encode(ids, NOISE_OFF)
    whole = voice.decode(voice.run_flow(prior))
    streamer = _planned(voice)  # measures the padding with the flow: before counting
    with _flow_calls(voice) as flow_calls:
        chunks = list(streamer.decode_chunks(prior, PlaybackClock(now=lambda: 0.0)))
    audio = np.concatenate([c.audio for c in chunks])
    assert len(audio) == len(whole)
    assert np.max(np.abs(audio - whole)) * joe_gain * 32767 <= 1.0
    sizes = [c.end_frame - c.start_frame for c in chunks]
    assert sizes[0] == 16 and max(sizes) == 128
    # The first chunk's frames, the next chunk's (while only the first chunk is
    # buffered), then the whole rest in one call: three calls where quadrupling
    # the reach takes four, each recomputing the flow's context.
    assert len(flow_calls) == 3


def test_the_flow_stops_where_the_kept_frames_padding_ends(
    joe_flow_voice: Voice, ids_for, joe_gain: float
) -> None:
    """A clause piece keeps its first frames; the rest of its latent is context.

    The flow runs no further than the decoder's padding after the kept frames
    (plus its own context), and the kept audio is still exact.
    """
    voice = joe_flow_voice
    prior = voice.encode(ids_for(LONG_SENTENCE), NOISE_OFF)
    keep = (0, prior.num_frames // 3)
    whole = voice.decode(voice.run_flow(prior))[: keep[1] * voice.config.hop_length]
    streamer = _planned(voice)
    padding, flow_padding = streamer.padding, streamer.flow_padding
    with _flow_calls(voice) as flowed_to:
        chunks = list(streamer.decode_chunks(prior, PlaybackClock(now=lambda: 0.0), keep=keep))
    audio = np.concatenate([c.audio for c in chunks])
    assert len(audio) == len(whole)
    assert np.max(np.abs(audio - whole)) * joe_gain * 32767 <= 1.0
    # Each call covers its new frames plus the flow's context on both sides.
    assert sum(flowed_to) <= keep[1] + padding + 2 * flow_padding * len(flowed_to)
