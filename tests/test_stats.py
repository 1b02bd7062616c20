"""The server's stats: percentiles, stalls of a real-time player, thread-safe counters."""

from __future__ import annotations

import threading

from wyoming_piper_stream.server.jobs import JobStats
from wyoming_piper_stream.server.stats import RequestRecord, ServerStats, percentile

RATE = 1000


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.95) == 95.0
    assert percentile([3.0], 0.95) == 3.0
    assert percentile([], 0.5) is None


def test_a_stall_is_audio_arriving_after_the_buffer_ran_dry() -> None:
    stats = JobStats(started=0.0)
    stats.add(500, RATE, now=1.0)  # first audio at 1.0 s: plays until 1.5 s
    stats.add(500, RATE, now=1.4)  # in time: plays until 2.0 s
    stats.add(500, RATE, now=2.3)  # 0.3 s late: a stall; plays until 2.8 s
    stats.add(500, RATE, now=2.5)  # in time again
    assert (stats.first_audio, stats.samples, stats.stalls) == (1.0, 2000, 1)


def test_counters_and_window_under_concurrent_recording() -> None:
    stats = ServerStats()

    def worker(offset: int) -> None:
        for i in range(200):
            stats.record(RequestRecord(0.1 * (offset + 1), 2.0, 1.0, i % 2))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats.record_failure()
    snapshot = stats.snapshot()
    assert (snapshot.requests, snapshot.failures, snapshot.stalls) == (800, 1, 400)
    assert snapshot.audio_seconds == 1600.0
    assert snapshot.rtf_p50 == 0.5
    assert snapshot.first_audio_p50 is not None and snapshot.first_audio_p95 is not None
    assert 0.1 <= snapshot.first_audio_p50 <= snapshot.first_audio_p95 <= 0.4 + 1e-9
