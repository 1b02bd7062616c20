"""What the slow-device bench hears: stalls and the least buffer of a real-time player."""

from __future__ import annotations

import pytest

from bench.client import Trace
from bench.slow import least_buffer, stalls


def test_a_late_chunk_is_a_stall_and_a_negative_least_buffer() -> None:
    # 1 s of audio at 0; the next second arrives at 1.3 s: the player waits 0.3 s,
    # then the third chunk, at 2.0 s, finds 0.3 s still to play.
    trace = Trace([(0.0, 1.0), (1.3, 1.0), (2.0, 1.0)], end=2.0)

    assert stalls(trace) == pytest.approx((0.3, 0.3))
    assert least_buffer(trace) == pytest.approx(-0.3)


def test_a_held_start_leaves_its_slack_as_the_least_buffer() -> None:
    # A held start: 2 s written as a burst of 0.5 s events, then chunks at 1.5 s and
    # 1.9 s find 0.5 s and 0.6 s left. Within the burst the player is never short.
    burst = [(0.0, 0.5), (0.001, 0.5), (0.002, 0.5), (0.003, 0.5)]
    trace = Trace([*burst, (1.5, 0.5), (1.9, 1.0)], end=1.9)

    assert stalls(trace) == (0.0, 0.0)
    assert least_buffer(trace) == pytest.approx(0.5)


def test_one_burst_has_no_later_arrival_to_be_late() -> None:
    assert least_buffer(Trace([(0.2, 1.0), (0.201, 1.0)], end=0.201)) is None
    assert stalls(Trace([], end=0.0)) == (0.0, 0.0)
