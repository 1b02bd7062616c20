"""Synthesis steps take turns, earliest deadline first: no request waits for a whole reply."""

from __future__ import annotations

import threading
import time
from functools import partial

from wyoming_piper_stream.engine.gate import Gate
from wyoming_piper_stream.engine.pacing import PlaybackClock
from wyoming_piper_stream.server.scheduler import FIRST_AUDIO_BUDGET, HOLD_SECONDS, StepScheduler


def _run_in_order(scheduler: StepScheduler, gates: dict[str, Gate]) -> list[str]:
    """Queue one step per gate while a blocker holds the only slot; return the run order."""
    order: list[str] = []
    release = threading.Event()

    def blocker() -> None:
        with scheduler.turn(0.0):
            release.wait(5)

    def step(name: str) -> None:
        with gates[name](0.0):
            order.append(name)

    threads = [threading.Thread(target=blocker)]
    threads[0].start()
    time.sleep(0.05)
    for name in gates:
        threads.append(threading.Thread(target=step, args=(name,)))
        threads[-1].start()
    time.sleep(0.1)  # all are waiting now
    release.set()
    for thread in threads:
        thread.join(5)
    return order


def test_waiting_steps_run_earliest_deadline_first() -> None:
    scheduler = StepScheduler(1)
    deadlines = {"late": 3.0, "soon": 1.0, "middle": 2.0}
    gates: dict[str, Gate] = {
        name: partial(lambda deadline, seconds: scheduler.turn(deadline), deadline)
        for name, deadline in deadlines.items()
    }
    assert _run_in_order(scheduler, gates) == ["soon", "middle", "late"]


def test_one_slot_runs_one_step_at_a_time() -> None:
    scheduler = StepScheduler(1)
    running, most = 0, 0
    lock = threading.Lock()

    def step() -> None:
        nonlocal running, most
        with scheduler.turn(time.perf_counter()):
            with lock:
                running += 1
                most = max(most, running)
            time.sleep(0.01)
            with lock:
                running -= 1

    threads = [threading.Thread(target=step) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert most == 1


def test_a_new_request_goes_before_a_stream_with_seconds_buffered() -> None:
    scheduler = StepScheduler(1)
    now = time.perf_counter()
    playing = PlaybackClock(started=now, sent_seconds=5.0)  # runs dry in 5 s
    nearly_dry = PlaybackClock(started=now, sent_seconds=0.05)  # runs dry in 50 ms

    assert FIRST_AUDIO_BUDGET < 5.0
    gates = {
        "playing": scheduler.gate(playing),
        "new": scheduler.gate(PlaybackClock(), arrived=now),
        "nearly dry": scheduler.gate(nearly_dry),
    }
    assert _run_in_order(scheduler, gates) == ["nearly dry", "new", "playing"]


def test_a_stream_keeps_the_slot_between_its_own_steps() -> None:
    """Handing a chunk over takes a few ms; a less urgent step must not slip in meanwhile."""
    scheduler = StepScheduler(1)
    order: list[str] = []

    def stream() -> None:
        for _ in range(3):
            with scheduler.turn(1.0):
                order.append("stream")
                time.sleep(0.01)
            time.sleep(HOLD_SECONDS / 4)  # hands its chunk to the connection

    def newcomer() -> None:
        time.sleep(0.005)  # arrives while the stream's first step runs
        with scheduler.turn(2.0):
            order.append("new")

    threads = [threading.Thread(target=stream), threading.Thread(target=newcomer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert order == ["stream", "stream", "stream", "new"]
