"""Adaptive chunk sizes: no playback underruns on a slow device, big chunks on a fast one.

A stand-in voice whose decoder advances a simulated clock by a fixed time per
frame plays the device; a simulated real-time player on the same clock counts
the stalls. Nothing sleeps, and the machine's speed does not matter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wyoming_piper_stream.engine.chunked_decoder import ChunkedDecoder, ChunkSchedule
from wyoming_piper_stream.engine.graphs import Latent, SynthesisScales
from wyoming_piper_stream.engine.pacing import DecodeSpeed, Pacer, PlaybackClock, simulate_playback
from wyoming_piper_stream.engine.voice_config import DEFAULT_HOP_LENGTH as HOP_LENGTH

SCALES = SynthesisScales(0.0, 1.0, 0.0)
FRAMES = 300  # ~3.5 s of audio


@dataclass(frozen=True)
class _Config:
    sample_rate: int = 22050
    hop_length: int = HOP_LENGTH


class SimulatedClock:
    """Time that passes only when the simulated device works."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class DeviceVoice:
    """Decodes in ``seconds_per_frame`` of simulated time, like a device of that speed."""

    flow = None
    config = _Config()

    def __init__(self, seconds_per_frame: float) -> None:
        self.seconds_per_frame = seconds_per_frame
        self.clock = SimulatedClock()

    def encode(self, ids, scales, speaker_id=None) -> Latent:
        frames = len(ids)
        return Latent(np.zeros((1, 4, frames), np.float32), np.ones((1, 1, frames), np.float32))

    def run_flow(self, prior: Latent) -> Latent:
        return prior

    def decode(self, latent: Latent) -> np.ndarray:
        self.clock.advance(self.seconds_per_frame * latent.num_frames)
        return np.zeros(latent.num_frames * HOP_LENGTH, np.float32)


def _decoder(device: DeviceVoice, adaptive: bool = True) -> ChunkedDecoder:
    schedule = ChunkSchedule(16, 128, adaptive=adaptive)
    return ChunkedDecoder(device, padding=10, schedule=schedule, clock=device.clock)  # type: ignore[arg-type]


def _play(streamer: ChunkedDecoder, utterances: int = 1) -> tuple[int, list[list[int]]]:
    """Underruns over a job of ``utterances`` (one playback clock), chunk sizes of each."""
    arrivals, sizes = [], []
    clock = PlaybackClock(now=streamer.clock)
    for _ in range(utterances):
        sizes.append([])
        for chunk in streamer.stream(list(range(FRAMES)), SCALES, None, clock):
            arrivals.append((streamer.clock(), len(chunk.audio) / 22050))
            sizes[-1].append(chunk.end_frame - chunk.start_frame)
    return simulate_playback(arrivals).underruns, sizes


def test_simulated_player_counts_stalls() -> None:
    assert simulate_playback([(0.0, 1.0), (0.5, 1.0), (1.9, 1.0)]).underruns == 0
    check = simulate_playback([(0.0, 1.0), (1.5, 1.0), (2.0, 1.0)])
    assert check.underruns == 1
    assert abs(check.stall_seconds - 0.5) < 1e-9


def test_slow_device_stalls_with_doubling_but_not_with_adaptive_sizes() -> None:
    # 6 ms per frame: a frame plays 11.6 ms, but padding (2 x 10 frames per
    # chunk) makes small chunks slower than real time.
    underruns, _ = _play(_decoder(DeviceVoice(0.006), adaptive=False))
    assert underruns > 0

    adaptive = _decoder(DeviceVoice(0.006))
    _play(adaptive)  # the first utterance teaches it the device's speed
    underruns, [sizes] = _play(adaptive)
    assert underruns == 0
    assert sizes[0] > 16  # a larger first chunk buys a stream without stalls


def test_fast_device_keeps_a_small_first_chunk_and_grows_to_the_largest() -> None:
    adaptive = _decoder(DeviceVoice(0.0005))
    _play(adaptive)
    underruns, [sizes] = _play(adaptive)
    assert underruns == 0
    assert sizes[0] == 16
    assert max(sizes[:-1]) == 128  # the last chunk may take a short tail along
    assert sizes[-1] <= 128 + 2 * 16


def test_later_utterances_of_a_job_start_from_what_is_already_buffered() -> None:
    """A reply's second sentence (or clause) does not start small again while audio plays."""
    adaptive = _decoder(DeviceVoice(0.0005))
    _play(adaptive)
    underruns, (first, second) = _play(adaptive, utterances=2)
    assert underruns == 0
    assert first[0] == 16
    assert second[0] == 128  # seconds of audio are buffered: the largest chunk fits


def test_slow_device_keeps_up_across_the_utterances_of_a_job() -> None:
    adaptive = _decoder(DeviceVoice(0.006))
    _play(adaptive)
    underruns, _ = _play(adaptive, utterances=3)
    assert underruns == 0


def test_sharing_the_cores_makes_the_first_chunk_larger() -> None:
    """Another client's steps run between ours: the stream must start further ahead."""

    def first_chunk(share: float) -> int:
        pacer = Pacer(
            first_chunk=16,
            max_chunk=128,
            padding=10,
            frame_seconds=HOP_LENGTH / 22050,
            speed=DecodeSpeed(decoder=0.002),  # 6x faster than real time alone
            clock=PlaybackClock(share=share),
        )
        return pacer.next_size(300)

    assert first_chunk(1.0) == 16
    assert first_chunk(0.25) > 16  # a quarter of the cores: slower than real time at 16


def test_an_utterance_after_the_player_fell_silent_starts_small_again() -> None:
    """Text kept the player waiting (clause streaming, a slow LLM): the next utterance is
    a new start (small first chunk), not a stalled stream's catch-up (largest chunk)."""
    device = DeviceVoice(0.0005)
    streamer = _decoder(device)
    clock = PlaybackClock(now=streamer.clock)

    def first_chunk() -> int:
        clock.restart_if_dry()
        chunk = next(iter(streamer.stream(list(range(FRAMES)), SCALES, None, clock)))
        return chunk.end_frame - chunk.start_frame

    assert first_chunk() == 16
    for _ in streamer.stream(list(range(FRAMES)), SCALES, None, clock):
        pass
    buffered = clock.ahead()
    assert buffered is not None and buffered > 1.0
    assert first_chunk() == 128  # still playing: restart_if_dry keeps the clock
    device.clock.advance(60.0)  # everything played, then silence
    assert first_chunk() == 16
