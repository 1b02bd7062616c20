"""Chunk sizes that keep the decoder ahead of playback, on fast and slow devices.

Playback starts when the first chunk is out; from then on each chunk must be
decoded before the audio already sent has played. The pacer measures decode
cost per frame as the stream runs (and across utterances) and picks the
largest chunk that still finishes in time with a margin: large chunks on a fast
machine (less padding overhead), small ones while the buffer is short. When
the device is too slow even for that, it takes a larger first chunk, trading a
later first audio for a stream without stalls.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .voice import HOP_LENGTH


@dataclass(frozen=True)
class PlaybackCheck:
    """What a real-time player would have heard, given chunk arrival times."""

    underruns: int
    stall_seconds: float


def simulate_playback(arrivals: list[tuple[float, float]]) -> PlaybackCheck:
    """``arrivals``: (wall time, seconds of audio) per chunk; playing starts at the first."""
    underruns, stalls = 0, 0.0
    play_until = None
    for arrived, seconds in arrivals:
        if play_until is None:
            play_until = arrived
        elif arrived > play_until + 1e-3:
            underruns += 1
            stalls += arrived - play_until
            play_until = arrived
        play_until += seconds
    return PlaybackCheck(underruns, stalls)


@dataclass
class DecodeSpeed:
    """Seconds per decoded latent frame, a moving average shared by a voice's streams."""

    seconds_per_frame: float | None = None
    weight: float = 0.5

    def learn(self, seconds: float, frames: int) -> None:
        sample = seconds / max(1, frames)
        if self.seconds_per_frame is None:
            self.seconds_per_frame = sample
        else:
            self.seconds_per_frame += self.weight * (sample - self.seconds_per_frame)


@dataclass
class Pacer:
    """Picks each next chunk size for one utterance."""

    first_chunk: int
    max_chunk: int
    padding: int
    sample_rate: int
    speed: DecodeSpeed
    margin: float = 0.6
    """Share of the audio still buffered that the next chunk may take to decode."""

    _first_out: float | None = None
    _audio_out: float = 0.0

    @property
    def frame_seconds(self) -> float:
        return HOP_LENGTH / self.sample_rate

    def first_size(self) -> int:
        """The first chunk: small, unless the device is known to be too slow for that."""
        cost = self.speed.seconds_per_frame
        size = self.first_chunk
        while cost is not None and size < self.max_chunk and not self._sustainable(size, cost):
            size = min(self.max_chunk, size * 2)
        return size

    def sent(self, frames: int) -> None:
        """Record a chunk handed to the player."""
        now = time.perf_counter()
        if self._first_out is None:
            self._first_out = now
        self._audio_out += frames * self.frame_seconds

    def next_size(self, remaining: int) -> int:
        """Frames for the next chunk, with ``remaining`` frames still to decode."""
        cost = self.speed.seconds_per_frame
        if cost is None or self._first_out is None:
            return self.first_chunk
        ahead = self._audio_out - (time.perf_counter() - self._first_out)
        fits = int(self.margin * ahead / cost) - 2 * self.padding
        short_rest = remaining <= self.max_chunk + 2 * self.first_chunk
        if short_rest and (remaining + self.padding) * cost < 0.9 * ahead:
            # The rest is ready in time as one chunk: fewer chunks, less padding
            # (a short sentence then takes two decoder calls).
            return remaining
        if fits < self.first_chunk:
            # Too little buffered for any chunk to arrive in time: the largest
            # chunk wastes least on padding, so the stream catches up soonest.
            return self.max_chunk if fits < 1 else self.first_chunk
        return min(self.max_chunk, fits)

    def _sustainable(self, first: int, cost: float) -> bool:
        """Would greedy sizing after a first chunk of ``first`` frames never stall?"""
        ahead = first * self.frame_seconds
        for _ in range(8):
            size = min(self.max_chunk, int(self.margin * ahead / cost) - 2 * self.padding)
            if size < 1:
                return False
            gain = size * self.frame_seconds - (size + 2 * self.padding) * cost
            ahead += gain
            if size == self.max_chunk:
                return ahead > 0 and gain > 0  # steady state keeps up
        return ahead > 0
