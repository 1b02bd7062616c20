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
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager

from wyoming_piper_stream.engine.gate import Gate
from wyoming_piper_stream.engine.pacing import PlaybackClock

FIRST_AUDIO_BUDGET = 2.0
"""Seconds a new request may wait for its first step while streams that would
run dry sooner go first. Measured with 4 clients starting at once on 2 cores
(25 words each): 1 s gave the last client its first audio at ~0.95 s but 4-6
stalls of 10-80 ms per round; 2 s gives ~1.5 s and no stall."""

HOLD_SECONDS = 0.02
"""After a step, how long the slot is kept for the same thread's next step when
only less urgent steps wait: between its steps a stream hands its chunk over
(a few ms), and without the hold a waiting encoder run would slip in."""


class StepScheduler:
    """Lets ``slots`` synthesis steps run at once, earliest deadline first (thread-safe)."""

    def __init__(self, slots: int = 1) -> None:
        self.slots = slots
        self._running = 0
        self._waiting: list[tuple[float, int]] = []
        self._order = itertools.count()  # equal deadlines: first come, first served
        self._changed = threading.Condition()
        self._held: tuple[float, float, int] | None = None  # until, deadline, thread

    @contextlib.contextmanager
    def turn(self, deadline: float) -> Iterator[None]:
        """Hold a slot for one step; ``deadline`` on the ``time.perf_counter`` clock."""
        entry = (deadline, next(self._order))
        with self._changed:
            heapq.heappush(self._waiting, entry)
            while True:
                if self._running >= self.slots or self._waiting[0] != entry:
                    self._changed.wait()
                    continue
                held = self._held_for_another(deadline)
                if held <= 0:
                    break
                self._changed.wait(held)
            heapq.heappop(self._waiting)
            self._running += 1
            self._held = None
        try:
            yield
        finally:
            with self._changed:
                self._running -= 1
                until = time.perf_counter() + HOLD_SECONDS
                self._held = (until, deadline, threading.get_ident())
                self._changed.notify_all()

    def _held_for_another(self, deadline: float) -> float:
        """Seconds the slot stays held for another thread's next step (0: free)."""
        if self._held is None:
            return 0.0
        until, held_deadline, thread = self._held
        if thread == threading.get_ident() or deadline <= held_deadline:
            return 0.0
        return until - time.perf_counter()

    def gate(self, clock: PlaybackClock, arrived: float | None = None) -> Gate:
        """The gate of one job: its deadlines follow its playback clock."""
        first_deadline = (time.perf_counter() if arrived is None else arrived) + FIRST_AUDIO_BUDGET

        def gate(seconds: float) -> AbstractContextManager[None]:
            runs_dry = clock.runs_dry()
            # A step must start its expected duration before the audio runs out.
            return self.turn((first_deadline if runs_dry is None else runs_dry) - seconds)

        return gate
