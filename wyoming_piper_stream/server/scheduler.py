"""Whose synthesis step runs next when several clients speak at once: most urgent first.

A step is one encoder run or one chunk (flow + decoder). Each step already uses
every core (onnxruntime's intra-op threads), so running two at once only makes
both slower and doubles the activation memory. Instead, steps take turns, and
the turn goes to the earliest deadline:
- a stream that is playing must get its next chunk before its buffered audio
  runs out (``PlaybackClock``);
- a new request should get its first audio within ``FIRST_AUDIO_BUDGET``.
So a request arriving during a long reply gets its first audio after one
chunk of the other stream instead of after the whole reply, and the playing
stream is served before its buffer runs dry. Kept free of numpy/onnxruntime.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from wyoming_piper_stream.engine.gate import Gate
from wyoming_piper_stream.engine.pacing import Clock, PlaybackClock

FIRST_AUDIO_BUDGET = 1.5
"""Seconds a new request may wait for its first step while streams that would
run dry sooner go first. Measured with 4 clients starting at once on 2 cores
(25 words each): 1 s gave the last client its first audio at ~0.95 s but 4-6
stalls of 10-80 ms per round; 2 s gave ~1.5 s and no stall. Measured again with
the whole-job plan (2026-11-26, ``script/bench``, 2 runs each): 2 s gave 0.87-1.10 s
(0.61-0.62x wyoming-piper's), 1.5 s 0.69-0.71 s (0.49-0.52x) and no stall in 10 rounds."""

ACTIVE_SECONDS = 1.0
"""A job whose step ran this recently still counts as speaking (its worker steps back to back)."""

HOLD_SECONDS = 0.02
"""After a step, how long the slot is kept for the same thread's next step when
only less urgent steps wait: between its steps a stream hands its chunk over
(a few ms), and without the hold a waiting encoder run would slip in."""


@dataclass(frozen=True, order=True)
class _Entry:
    """One step waiting for its turn: earlier deadlines first, then first come."""

    deadline: float
    order: int
    owner: object = field(compare=False)


class SchedulerClosed(RuntimeError):
    """The server is shutting down: no step starts any more."""


class TurnPolicy:
    """Who may start a step now (pure: the caller holds the lock and says what time it is)."""

    def __init__(self, slots: int, hold_seconds: float = HOLD_SECONDS) -> None:
        self.slots = slots
        self.hold_seconds = hold_seconds
        self.running = 0
        self._waiting: list[_Entry] = []
        self._held: tuple[float, _Entry] | None = None  # until, the step that finished
        self._last_step: dict[object, float] = {}  # owner -> when its last step ended

    def enqueue(self, entry: _Entry) -> None:
        heapq.heappush(self._waiting, entry)

    def wait_seconds(self, entry: _Entry, now: float) -> float | None:
        """0: start now; None: wait for a change; else wait that long (the slot is held)."""
        if self.running >= self.slots or self._waiting[0] != entry:
            return None
        if self._held is None:
            return 0.0
        until, finished = self._held
        if finished.owner is entry.owner or entry.deadline <= finished.deadline:
            return 0.0
        return max(0.0, until - now)

    def withdraw(self, entry: _Entry) -> None:
        """A waiting step that will not run."""
        self._waiting.remove(entry)
        heapq.heapify(self._waiting)

    def start(self, entry: _Entry) -> None:
        heapq.heappop(self._waiting)
        self.running += 1
        self._held = None
        self._last_step[entry.owner] = math.inf  # running

    def finish(self, entry: _Entry, now: float) -> None:
        """The slot stays held a moment for the same owner's next step."""
        self.running -= 1
        self._held = (now + self.hold_seconds, entry)
        if entry.owner in self._last_step:  # not a job that ended during the step (an abort)
            self._last_step[entry.owner] = now

    def forget(self, owner: object) -> None:
        """A job that has ended speaks no more, however recent its last step, and
        holds the slot no more for a next step it will not take."""
        self._last_step.pop(owner, None)
        if self._held is not None and self._held[1].owner is owner:
            self._held = None

    def speaking(self, now: float, window: float = ACTIVE_SECONDS) -> int:
        """Owners with a step waiting, running, or ended within ``window``."""
        self._last_step = {o: t for o, t in self._last_step.items() if t >= now - window}
        return len({entry.owner for entry in self._waiting} | set(self._last_step))


class StepScheduler:
    """Lets ``slots`` synthesis steps run at once, earliest deadline first (thread-safe).

    ``clock`` is the time of the deadlines and of every ``PlaybackClock`` it is given.
    """

    def __init__(self, slots: int = 1, clock: Clock = time.perf_counter) -> None:
        self.clock = clock
        self._policy = TurnPolicy(slots)
        self._order = itertools.count()  # equal deadlines: first come, first served
        self._changed = threading.Condition()
        self._closed = False

    def close(self) -> None:
        """Refuse every waiting and later step, so no worker waits for a turn at shutdown."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    @contextlib.contextmanager
    def turn(self, deadline: float, owner: object | None = None) -> Iterator[None]:
        """Hold a slot for one step of ``owner`` (a job; by default the step alone)."""
        entry = _Entry(deadline, next(self._order), owner if owner is not None else object())
        with self._changed:
            self._policy.enqueue(entry)
            while (wait := self._policy.wait_seconds(entry, self.clock())) != 0.0:
                if self._closed:
                    self._policy.withdraw(entry)
                    self._changed.notify_all()
                    raise SchedulerClosed("the server is shutting down")
                self._changed.wait(wait)
            if self._closed:
                self._policy.withdraw(entry)
                raise SchedulerClosed("the server is shutting down")
            self._policy.start(entry)
        try:
            yield
        finally:
            with self._changed:
                self._policy.finish(entry, self.clock())
                self._changed.notify_all()

    @contextlib.contextmanager
    def job(self, clock: PlaybackClock, arrived: float | None = None) -> Iterator[Gate]:
        """The gate of one job, whose deadlines follow its playback clock, while it runs.

        Once the job has ended it no longer counts as speaking: a request right after
        another plans with the whole machine, not with half of it.
        """
        first_deadline = (self.clock() if arrived is None else arrived) + FIRST_AUDIO_BUDGET
        owner = object()  # the job: its next step may take the slot it just held
        with self._changed:
            others = self._policy.speaking(self.clock())
        # The plan of a new job starts from its share of the steps, not from all of them
        # (then its waits for the turn teach the share as it runs).
        clock.share = min(clock.share, self._policy.slots / (others + self._policy.slots))

        def gate(seconds: float) -> AbstractContextManager[None]:
            return self.turn(step_deadline(clock, first_deadline, seconds), owner)

        try:
            yield gate
        finally:
            with self._changed:
                self._policy.forget(owner)
                self._changed.notify_all()


def step_deadline(clock: PlaybackClock, first_deadline: float, seconds: float) -> float:
    """When a step of ``seconds`` must start: before the job's audio runs out, or, before
    it has any, so that its first audio comes by ``first_deadline``."""
    runs_dry = clock.runs_dry()
    return (first_deadline if runs_dry is None else runs_dry) - seconds
