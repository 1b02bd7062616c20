"""What the server has done since it started, for the status page (thread-safe).

The handler records each finished request; readers take a ``StatsSnapshot``.
Percentiles come from the most recent ``WINDOW`` requests, so memory stays bounded.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field

WINDOW = 1000
"""Requests kept for the first-audio and RTF figures."""


@dataclass(frozen=True)
class RequestRecord:
    """One finished speech job, as the handler saw it."""

    first_audio: float
    """Seconds from the request to its first audio."""
    audio_seconds: float
    total_seconds: float
    stalls: int
    """Times the listener's buffer ran dry after the first audio."""

    @property
    def rtf(self) -> float:
        return self.total_seconds / self.audio_seconds if self.audio_seconds else 0.0


@dataclass(frozen=True)
class StatsSnapshot:
    """The figures at one moment."""

    uptime: float
    requests: int
    failures: int
    audio_seconds: float
    stalls: int
    first_audio_p50: float | None
    first_audio_p95: float | None
    rtf_p50: float | None


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = math.ceil(fraction * len(ordered) - 1e-9)  # 0.95 * 100 is 95.00000000000001
    index = min(len(ordered), max(1, rank)) - 1
    return ordered[index]


@dataclass
class ServerStats:
    """Counters and a window of recent requests, shared by all connections."""

    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _recent: deque[RequestRecord] = field(default_factory=lambda: deque(maxlen=WINDOW))
    _requests: int = 0
    _failures: int = 0
    _audio_seconds: float = 0.0
    _stalls: int = 0

    def record(self, record: RequestRecord) -> None:
        with self._lock:
            self._recent.append(record)
            self._requests += 1
            self._audio_seconds += record.audio_seconds
            self._stalls += record.stalls

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            recent = list(self._recent)
            requests, failures = self._requests, self._failures
            audio, stalls = self._audio_seconds, self._stalls
        firsts = [r.first_audio for r in recent]
        return StatsSnapshot(
            uptime=time.monotonic() - self.started,
            requests=requests,
            failures=failures,
            audio_seconds=audio,
            stalls=stalls,
            first_audio_p50=percentile(firsts, 0.5),
            first_audio_p95=percentile(firsts, 0.95),
            rtf_p50=percentile([r.rtf for r in recent if r.audio_seconds], 0.5),
        )
