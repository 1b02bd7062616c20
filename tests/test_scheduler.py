"""Synthesis steps take turns, earliest deadline first: no request waits for a whole reply.

The turn policy is tested on numbers (no threads, no clock); the scheduler around it
on threads that signal each other, never on sleeps.
"""

from __future__ import annotations

import contextlib
import threading

import pytest

from wyoming_piper_stream.engine.pacing import PlaybackClock
from wyoming_piper_stream.server.scheduler import (
    FIRST_AUDIO_BUDGET,
    HOLD_SECONDS,
    SchedulerClosed,
    StepScheduler,
    TurnPolicy,
    _Entry,
    step_deadline,
)


def _runs(policy: TurnPolicy, entries: list[_Entry], now: float = 0.0) -> list[_Entry]:
    """Start and finish whoever may start, until nobody can; the order they ran in."""
    order: list[_Entry] = []
    waiting = list(entries)
    while waiting:
        ready = [e for e in waiting if policy.wait_seconds(e, now) == 0.0]
        if not ready:
            break
        entry = ready[0]
        policy.start(entry)
        policy.finish(entry, now)
        waiting.remove(entry)
        order.append(entry)
    return order


def test_waiting_steps_run_earliest_deadline_first() -> None:
    policy = TurnPolicy(slots=1, hold_seconds=0.0)
    owner = object()
    entries = [_Entry(3.0, 0, owner), _Entry(1.0, 1, owner), _Entry(2.0, 2, owner)]
    for entry in entries:
        policy.enqueue(entry)
    assert [e.deadline for e in _runs(policy, entries)] == [1.0, 2.0, 3.0]


def test_equal_deadlines_are_first_come_first_served() -> None:
    policy = TurnPolicy(slots=1, hold_seconds=0.0)
    entries = [_Entry(1.0, n, object()) for n in (2, 0, 1)]
    for entry in entries:
        policy.enqueue(entry)
    assert [e.order for e in _runs(policy, entries)] == [0, 1, 2]


def test_no_step_starts_while_the_slots_are_taken() -> None:
    policy = TurnPolicy(slots=1, hold_seconds=0.0)
    first, second = _Entry(1.0, 0, object()), _Entry(2.0, 1, object())
    policy.enqueue(first)
    policy.enqueue(second)
    policy.start(first)
    assert policy.wait_seconds(second, 0.0) is None  # blocked until a change
    policy.finish(first, 0.0)
    assert policy.wait_seconds(second, 0.0) == 0.0


def test_a_stream_keeps_the_slot_between_its_own_steps() -> None:
    """Handing a chunk over takes a few ms; a less urgent step must not slip in meanwhile."""
    policy = TurnPolicy(slots=1, hold_seconds=HOLD_SECONDS)
    stream, other = object(), object()
    step = _Entry(1.0, 0, stream)
    policy.enqueue(step)
    policy.start(step)
    policy.finish(step, now=10.0)

    newcomer = _Entry(2.0, 1, other)  # less urgent, arrives during the hand-over
    policy.enqueue(newcomer)
    assert policy.wait_seconds(newcomer, 10.0) == pytest.approx(HOLD_SECONDS)  # held
    next_step = _Entry(1.0, 2, stream)
    policy.enqueue(next_step)
    assert policy.wait_seconds(next_step, 10.005) == 0.0  # the stream goes on at once
    assert policy.wait_seconds(newcomer, 10.0 + HOLD_SECONDS) is None  # not first any more


def test_the_hold_ends_after_its_time_and_never_delays_a_more_urgent_step() -> None:
    policy = TurnPolicy(slots=1, hold_seconds=HOLD_SECONDS)
    step = _Entry(1.0, 0, object())
    policy.enqueue(step)
    policy.start(step)
    policy.finish(step, now=10.0)
    late = _Entry(2.0, 1, object())
    policy.enqueue(late)
    assert policy.wait_seconds(late, 10.0 + HOLD_SECONDS) == 0.0
    urgent = TurnPolicy(slots=1, hold_seconds=HOLD_SECONDS)
    urgent.enqueue(step)
    urgent.start(step)
    urgent.finish(step, now=10.0)
    sooner = _Entry(0.5, 1, object())
    urgent.enqueue(sooner)
    assert urgent.wait_seconds(sooner, 10.0) == 0.0


def test_a_new_request_goes_before_a_stream_with_seconds_buffered() -> None:
    now = 100.0
    playing = PlaybackClock(started=now, sent_seconds=5.0, now=lambda: now)
    nearly_dry = PlaybackClock(started=now, sent_seconds=0.05, now=lambda: now)
    new = PlaybackClock(now=lambda: now)  # no audio yet
    first_deadline = now + FIRST_AUDIO_BUDGET
    assert FIRST_AUDIO_BUDGET < 5.0
    deadlines = {
        name: step_deadline(clock, first_deadline, seconds=0.01)
        for name, clock in (("playing", playing), ("new", new), ("nearly dry", nearly_dry))
    }
    assert sorted(deadlines, key=deadlines.__getitem__) == ["nearly dry", "new", "playing"]


def test_one_slot_runs_one_step_at_a_time_across_threads() -> None:
    scheduler = StepScheduler(1)
    running, most = 0, 0
    lock = threading.Lock()
    start = threading.Barrier(8)

    def step() -> None:
        nonlocal running, most
        start.wait()
        for _ in range(20):
            with scheduler.turn(0.0):
                with lock:
                    running += 1
                    most = max(most, running)
                with lock:
                    running -= 1

    threads = [threading.Thread(target=step) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads)
    assert most == 1


def test_close_refuses_waiting_and_later_steps() -> None:
    """At shutdown no worker may wait for a turn: the pool could never finish."""
    scheduler = StepScheduler(1)
    outcomes: list[str] = []
    holding, release, waiting = threading.Event(), threading.Event(), threading.Event()

    def blocker() -> None:
        with scheduler.turn(0.0):
            holding.set()
            release.wait(5)

    def waiter() -> None:
        try:
            waiting.set()
            with scheduler.turn(1.0):
                outcomes.append("ran")
        except SchedulerClosed:
            outcomes.append("refused")

    threads = [threading.Thread(target=blocker), threading.Thread(target=waiter)]
    threads[0].start()
    assert holding.wait(5)
    threads[1].start()
    assert waiting.wait(5)
    scheduler.close()
    threads[1].join(5)
    assert outcomes == ["refused"]  # while the blocker still holds the slot
    release.set()
    threads[0].join(5)
    waiter()
    assert outcomes == ["refused", "refused"]


def test_a_new_job_plans_with_its_share_of_the_steps() -> None:
    """Three jobs are speaking: a fourth starts its plan at a quarter of the compute."""
    now = [10.0]
    scheduler = StepScheduler(slots=1, clock=lambda: now[0])
    with contextlib.ExitStack() as running:
        for _ in range(3):
            gate = running.enter_context(scheduler.job(PlaybackClock(now=lambda: now[0])))
            with gate(0.1):
                pass
        fourth = PlaybackClock(now=lambda: now[0])
        running.enter_context(scheduler.job(fourth))
        assert fourth.share == pytest.approx(0.25)
        now[0] += 5.0  # the others have been silent for long: a later job has the machine
        alone = PlaybackClock(now=lambda: now[0])
        running.enter_context(scheduler.job(alone))
        assert alone.share == 1.0


def test_a_job_right_after_another_has_the_whole_machine() -> None:
    """A request that arrives just after the last one ended is not planned at half speed."""
    now = [10.0]
    scheduler = StepScheduler(slots=1, clock=lambda: now[0])
    with scheduler.job(PlaybackClock(now=lambda: now[0])) as gate, gate(0.1):
        now[0] += 0.1
    now[0] += 0.05  # the client reads the end of the reply and asks again
    next_job = PlaybackClock(now=lambda: now[0])
    with scheduler.job(next_job):
        assert next_job.share == 1.0


def test_a_job_that_ends_during_its_step_speaks_no_more() -> None:
    """A client that leaves mid-step: the step still finishes, the job does not linger."""
    now = [10.0]
    scheduler = StepScheduler(slots=1, clock=lambda: now[0])
    with contextlib.ExitStack() as step:
        with scheduler.job(PlaybackClock(now=lambda: now[0])) as gate:
            step.enter_context(gate(0.1))
        now[0] += 0.1  # the step ends after its job
    next_job = PlaybackClock(now=lambda: now[0])
    with scheduler.job(next_job):
        assert next_job.share == 1.0


def test_a_job_that_ended_holds_the_slot_no_more() -> None:
    """The slot is held a moment for a job's next step; once the job has ended, another
    job's first step starts at once instead of waiting out the hold."""
    policy = TurnPolicy(slots=1)
    ended, new = object(), object()
    last = _Entry(0.5, 0, ended)
    policy.enqueue(last)
    policy.start(last)
    policy.finish(last, now=10.0)
    first = _Entry(11.5, 1, new)  # a new request: its first audio is due later
    policy.enqueue(first)
    assert policy.wait_seconds(first, 10.001) == pytest.approx(HOLD_SECONDS - 0.001)
    policy.forget(ended)
    assert policy.wait_seconds(first, 10.001) == 0.0
