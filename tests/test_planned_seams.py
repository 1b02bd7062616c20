"""The planned pacing on the real voice: its chunks and one-call flow stay exact.

The plan picks other chunk sizes than the fixed schedule and, once audio is
buffered, runs the flow over the whole rest of an utterance in one call instead
of recomputing its context call after call. The audio must still equal whole
decoding within 1 LSB. A clock that never moves keeps the buffer full, so the
plan takes its large-chunk, one-call paths on any machine.
"""

from __future__ import annotations

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


def test_planned_chunks_and_one_call_flow_equal_whole_decoding(
    joe_flow_voice: Voice, ids_for, joe_gain: float
) -> None:
    voice = joe_flow_voice
    ids = ids_for(LONG_SENTENCE)
    prior = voice.encode(ids, NOISE_OFF)
    whole = voice.decode(voice.run_flow(prior))
    flow_calls: list[int] = []
    run_flow = voice.run_flow

    def counted(latent: Latent) -> Latent:
        flow_calls.append(latent.num_frames)
        return run_flow(latent)

    frame = voice.config.hop_length / voice.config.sample_rate
    streamer = ChunkedDecoder(
        voice,
        measure_padding(voice),
        PlannedPacing(16, 128, frame),
        flow_padding=measure_flow_padding(voice),
        clock=lambda: 0.0,
        costs=_taught_costs(),
    )
    voice.run_flow = counted  # type: ignore[method-assign]
    try:
        chunks = list(streamer.decode_chunks(prior, PlaybackClock(now=lambda: 0.0)))
    finally:
        del voice.run_flow
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
    flowed_to: list[int] = []
    run_flow = voice.run_flow
    padding, flow_padding = measure_padding(voice), measure_flow_padding(voice)

    def counted(latent: Latent) -> Latent:
        flowed_to.append(latent.num_frames)
        return run_flow(latent)

    frame = voice.config.hop_length / voice.config.sample_rate
    streamer = ChunkedDecoder(
        voice,
        padding,
        PlannedPacing(16, 128, frame),
        flow_padding=flow_padding,
        clock=lambda: 0.0,
        costs=_taught_costs(),
    )
    voice.run_flow = counted  # type: ignore[method-assign]
    try:
        chunks = list(streamer.decode_chunks(prior, PlaybackClock(now=lambda: 0.0), keep=keep))
    finally:
        del voice.run_flow
    audio = np.concatenate([c.audio for c in chunks])
    assert len(audio) == len(whole)
    assert np.max(np.abs(audio - whole)) * joe_gain * 32767 <= 1.0
    # Each call covers its new frames plus the flow's context on both sides.
    assert sum(flowed_to) <= keep[1] + padding + 2 * flow_padding * len(flowed_to)
