"""Slow-device benchmark: both servers pinned to one core shared with N busy loops, interleaved.

About a Raspberry Pi 4 at N = 5 (wyoming-piper runs near RTF 0.75 there). Both
servers are started under ``taskset`` on the last core, with N busy loops
pinned to that core (each ends by itself after ``LOOP_SECONDS``, and is ended
with the run); one warm-up request of each text per server under load, then
``rounds`` rounds in which each text goes to one server and then the other
(the order alternates by round), so both meet the same moment of a shared,
noisy machine. An idle server takes no CPU. The client runs on the other
cores. Reports first audio, the worst stall and the total stall after first
audio, as a real-time player that starts at the first chunk would hear them,
and the CPU seconds each server spent on the request (work, against the wall
time, which is the CPU share the core gave it).

Usage: ``script/bench --slow N [--rounds R]``
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from bench.client import Trace, on_connection, one_shot
from bench.procs import Server, cpu_seconds
from bench.stats import Target, median, ms, table
from bench.texts import TEXTS as ALL_TEXTS

LOOP_SECONDS = 900
"""Longest life of one busy loop: they stop by themselves even if the bench dies."""

BUSY_LOOP = (
    "import time\n"
    f"end = time.monotonic() + {LOOP_SECONDS}\n"
    "while time.monotonic() < end:\n"
    "    pass\n"
)

TEXTS = {name: ALL_TEXTS[name] for name in ("5w", "25w", "80w", "3sent")}
"""The texts of issue 13's slow-device table."""

STALL_LIMIT = 0.05
FIRST_80W_LIMIT = {5: 0.3, 7: 1.0}
"""First audio on 80 words, ours over wyoming-piper's, by N (issue 13)."""


@dataclass(frozen=True)
class SlowSample:
    first: float
    total: float
    audio: float
    worst_stall: float
    stall: float
    cpu: float = 0.0
    """CPU seconds the server spent (all its threads) while serving the request."""
    least_buffer: float | None = None
    """Least audio the player had left when a later burst arrived (``least_buffer``)."""

    @staticmethod
    def of(trace: Trace, cpu: float) -> SlowSample:
        worst, total = stalls(trace)
        return SlowSample(
            trace.first, trace.end, trace.audio_seconds, worst, total, cpu, least_buffer(trace)
        )


BURST_SECONDS = 0.005
"""Audio-chunk events closer than this are one burst: the server writes a decoded
chunk, or a held start, as a run of events at once."""


def left_at_arrivals(trace: Trace) -> list[tuple[float, float]]:
    """(gap since the event before, audio left) when each event after the first arrived,
    for a player starting at the first chunk; negative: it had run dry and waited that long."""
    left: list[tuple[float, float]] = []
    played_out = previous = None
    for arrived, duration in trace.chunks:
        if played_out is not None and previous is not None:
            left.append((arrived - previous, played_out - arrived))
            played_out = max(played_out, arrived)
        played_out = (arrived if played_out is None else played_out) + duration
        previous = arrived
    return left


def stalls(trace: Trace) -> tuple[float, float]:
    """(worst, total) seconds a player starting at the first chunk waits for audio."""
    waits = [-left for _, left in left_at_arrivals(trace) if left < 0]
    return max(waits, default=0.0), sum(waits)


def least_buffer(trace: Trace) -> float | None:
    """Least audio left when a burst of events after the first began (None: one burst).

    Had playback started this much earlier, with the same later arrivals, it would just
    not have stalled: the slack of a held start. Within a burst the events come as one
    chunk, so the buffer between them says nothing about the plan."""
    bursts = [left for gap, left in left_at_arrivals(trace) if gap > BURST_SECONDS]
    return min(bursts, default=None)


def pinned_core() -> int:
    return max(os.sched_getaffinity(0))


class BusyLoops:
    """N bounded busy loops pinned to one core."""

    def __init__(self, count: int, core: int) -> None:
        self.count = count
        self.core = core
        self._procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> BusyLoops:
        for _ in range(self.count):
            command = ["taskset", "-c", str(self.core), sys.executable, "-c", BUSY_LOOP]
            self._procs.append(subprocess.Popen(command, stdin=subprocess.DEVNULL))
        return self

    def __exit__(self, *_: object) -> None:
        for process in self._procs:
            process.terminate()
        for process in self._procs:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def _cpu_seconds(server: Server) -> float:
    assert server.process is not None
    return cpu_seconds(server.process.pid)


async def _sample(server: Server, text: str, timeout: float) -> SlowSample:
    before = _cpu_seconds(server)
    trace = await on_connection(server.port, partial(one_shot, text=text), timeout)
    return SlowSample.of(trace, _cpu_seconds(server) - before)


async def run_interleaved(
    servers: list[Server], busy: int, core: int, rounds: int, timeout: float
) -> dict[str, dict[str, list[SlowSample]]]:
    """Both servers pinned to ``core``; each text to one then the other, in turn."""
    samples = {s.name: {name: [] for name in TEXTS} for s in servers}
    for server in servers:
        server.wrapper = ("taskset", "-c", str(core))
        server.start()
    try:
        for server in servers:
            await server.wait_ready(timeout)
        with BusyLoops(busy, core):
            for server in servers:  # warm-up under load (ours learns its costs here)
                for text in TEXTS.values():
                    await _sample(server, text, timeout)
            for index in range(rounds):
                order = servers if index % 2 == 0 else servers[::-1]
                for name, text in TEXTS.items():
                    for server in order:
                        samples[server.name][name].append(await _sample(server, text, timeout))
                print(f"  round {index + 1}/{rounds} done", flush=True)
    finally:
        for server in servers:
            server.stop()
    return samples


def report(
    results: dict[str, dict[str, list[SlowSample]]], busy: int, rounds: int, core: int
) -> tuple[str, list[Target]]:
    ours, theirs = results["ours"], results["wyoming-piper"]
    header = [
        "text",
        "audio s",
        "first ours",
        "first theirs",
        "ratio",
        "worst stall ours",
        "worst stall theirs",
        "stall sum ours",
        "stall sum theirs",
        "total ours",
        "total theirs",
        "CPU s ours",
        "CPU s theirs",
        "least buffer ours",
    ]
    rows, found = [], []
    for name in TEXTS:
        a, b = ours[name], theirs[name]
        first_a, first_b = median([s.first for s in a]), median([s.first for s in b])
        worst_a, worst_b = max(s.worst_stall for s in a), max(s.worst_stall for s in b)
        rows.append(
            [
                name,
                f"{median([s.audio for s in a]):.1f}",
                ms(first_a),
                ms(first_b),
                f"{first_a / first_b:.2f}",
                ms(worst_a),
                ms(worst_b),
                ms(sum(s.stall for s in a)),
                ms(sum(s.stall for s in b)),
                ms(median([s.total for s in a])),
                ms(median([s.total for s in b])),
                f"{median([s.cpu for s in a]):.2f}",
                f"{median([s.cpu for s in b]):.2f}",
                ms(median([s.least_buffer for s in a if s.least_buffer is not None])),
            ]
        )
        found.append(Target(f"worst stall {name} (ours, s)", worst_a, STALL_LIMIT))
        if name == "80w" and busy in FIRST_80W_LIMIT:
            found.append(Target("first audio 80w ratio", first_a / first_b, FIRST_80W_LIMIT[busy]))
        elif busy >= 7:
            found.append(Target(f"first audio {name} ratio", first_a / first_b, 1.0))
    text = (
        f"Slow device: both servers pinned to core {core} with {busy} busy loops, "
        f"{rounds} interleaved rounds after one warm-up of each text; times in ms, first "
        f"audio, total, CPU and least buffer as medians, stalls as worst / sum over rounds; "
        "least buffer: the audio left as the tightest later chunk began to arrive, how much "
        "earlier a start could have been without a stall\n" + table(header, rows)
    )
    return text, found


async def benchmark(busy: int, rounds: int, timeout: float, out_dir: Path) -> None:
    from bench.server import OURS, THEIRS, make_servers, voice_dir

    core = pinned_core()
    others = set(os.sched_getaffinity(0)) - {core}
    if others:
        os.sched_setaffinity(0, others)  # the client must not take the servers' core
    with tempfile.TemporaryDirectory(prefix="bench-voices-") as folder:
        servers = make_servers(voice_dir(Path(folder)))
        started = time.perf_counter()
        results = await run_interleaved(
            [servers[OURS], servers[THEIRS]], busy, core, rounds, timeout
        )
        print(f"both: {time.perf_counter() - started:.0f} s", flush=True)
    text, found = report(results, busy, rounds, core)
    print("\n" + text + "\n\nTargets:")
    for target in found:
        print(target.line())
    data = {
        "busy_loops": busy,
        "rounds": rounds,
        "samples": {
            server: {text: [asdict(x) for x in xs] for text, xs in by_text.items()}
            for server, by_text in results.items()
        },
        "targets": [t.as_dict() for t in found],
    }
    path = out_dir / f"slow-{busy}.json"
    path.write_text(json.dumps(data, indent=1))
    print(f"wrote {path}")


def main(busy: int, rounds: int, timeout: float, out_dir: Path) -> None:
    asyncio.run(benchmark(busy, rounds, timeout, out_dir))
