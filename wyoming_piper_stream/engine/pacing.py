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

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

Clock = Callable[[], float]
"""Seconds on a monotonic clock: ``time.perf_counter`` in the server, a simulated
clock in tests, so pacing and scheduling are tested without sleeping."""


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
    """Seconds per latent frame, moving averages shared by a voice's streams.

    The decoder and a separate flow are timed apart: the flow runs ahead of
    the decoder in a few large calls, so charging it to the chunk that
    happened to trigger it would make that chunk look several times slower.
    Several jobs' worker threads learn at once: the averages are read and
    updated under a lock.
    """

    decoder: float | None = None
    flow: float | None = None
    weight: float = 0.5
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def seconds_per_frame(self) -> float | None:
        """Cost of one more frame of output; None until the decoder was timed."""
        with self._lock:
            if self.decoder is None:
                return None
            return self.decoder + (self.flow or 0.0)

    def learn(self, seconds: float, frames: int) -> None:
        with self._lock:
            self.decoder = self._mix(self.decoder, seconds / max(1, frames))

    def learn_flow(self, seconds: float, frames: int) -> None:
        with self._lock:
            self.flow = self._mix(self.flow, seconds / max(1, frames))

    def _mix(self, average: float | None, sample: float) -> float:
        return sample if average is None else average + self.weight * (sample - average)


@dataclass
class PlaybackClock:
    """Audio handed to one listener so far, across the utterances of one job.

    Playback starts with the first audio; when audio arrives late the player
    stalls and resumes, so the clock shifts its start by the stall.
    """

    started: float | None = None
    sent_seconds: float = 0.0
    share: float = 1.0
    """Share of the compute the job got lately: its steps' time over that time plus
    the time it waited for its turn while other clients' steps ran."""
    now: Clock = field(default=time.perf_counter, repr=False, compare=False)

    def sent(self, seconds: float) -> None:
        now = self.now()
        if self.started is None:
            self.started = now
        elif now - self.started > self.sent_seconds:
            self.started = now - self.sent_seconds  # the player ran dry and waited
        self.sent_seconds += seconds

    def restart_if_dry(self) -> None:
        """Before a new utterance: if the player has played everything, it starts afresh
        (a small first chunk, as a new stream) instead of as a stalled stream's next
        chunk (the largest, to catch up), so the silence ends sooner."""
        ahead = self.ahead()
        if ahead is not None and ahead <= 0.0:
            self.started = None
            self.sent_seconds = 0.0

    def worked(self, waited: float, seconds: float) -> None:
        """Record one step: ``seconds`` of compute after ``waited`` for the turn."""
        sample = seconds / max(seconds + waited, 1e-9)
        self.share = max(0.05, 0.5 * (self.share + sample))

    def runs_dry(self) -> float | None:
        """When the buffered audio will have played (on ``now``); None before any audio."""
        return None if self.started is None else self.started + self.sent_seconds

    def ahead(self) -> float | None:
        """Seconds of audio still buffered at the player; None before the first audio."""
        if self.started is None:
            return None
        return max(0.0, self.sent_seconds - (self.now() - self.started))


@dataclass
class Pacer:
    """Picks each next chunk size for one utterance, against its job's playback clock."""

    first_chunk: int
    max_chunk: int
    padding: int
    frame_seconds: float
    """Seconds of audio in one latent frame (hop length / sample rate)."""
    speed: DecodeSpeed
    clock: PlaybackClock = field(default_factory=PlaybackClock)
    margin: float = 0.6
    """Share of the audio still buffered that the next chunk may take to decode."""

    def sent(self, frames: int) -> None:
        """Record a chunk handed to the player."""
        self.clock.sent(frames * self.frame_seconds)

    def next_size(self, remaining: int) -> int:
        """Frames for the next chunk, with ``remaining`` frames still to decode."""
        cost = self.speed.seconds_per_frame
        if cost is not None:
            cost /= self.clock.share  # other clients' steps run between ours
        ahead = self.clock.ahead()
        if ahead is None or cost is None:
            return self._first_size(cost)
        fits = int(self.margin * ahead / cost) - 2 * self.padding
        short_rest = remaining <= self.max_chunk + 2 * self.first_chunk
        if short_rest and (remaining + self.padding) * cost < 0.9 * ahead:
            # The rest is ready in time as one chunk: fewer chunks, less padding
            # (a short sentence then takes two decoder calls, a later sentence
            # of a reply often one).
            return remaining
        if fits < self.first_chunk:
            # Too little buffered for any chunk to arrive in time: the largest
            # chunk wastes least on padding, so the stream catches up soonest.
            return self.max_chunk if fits < 1 else self.first_chunk
        return min(self.max_chunk, fits)

    def _first_size(self, cost: float | None) -> int:
        """The job's first chunk: small, unless the device (or this job's share of
        it, when other clients are speaking) is known to be too slow for that."""
        size = self.first_chunk
        while cost is not None and size < self.max_chunk and not self._sustainable(size, cost):
            size = min(self.max_chunk, size * 2)
        return size

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
