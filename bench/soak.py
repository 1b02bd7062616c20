"""Soak: many clients at once, for a while; nobody loses audio, the server does not grow.

Starts the real server (embedded joe voice, noise off so equal requests give equal
lengths) on 127.0.0.1, warms it with one request per kind of request and records
each kind's sample count, then runs N clients x M requests at once, each request on
a new connection: one-shot ``synthesize`` and Home Assistant's streaming order
(synthesize-start, text pieces, the whole text again, synthesize-stop), and every
7th request hangs up right after its first audio-chunk. Checks:

- every request that ran to its end has exactly the warm-up's sample count,
  and no valid request got an ``error`` or lost its connection;
- the server's thread count after the run is at most the warm-up's plus the
  synthesis pool's size, and its RSS grew by less than ``--max-rss-growth`` MB;
- the server still answers, logged no traceback, and exits cleanly on SIGTERM.

Prints a table (requests, failures, first audio p50/p95 under load, RSS, threads)
and exits 1 if any check fails. Every wait is bounded (``--timeout`` per request,
``--time-limit`` for the run).

Usage: ``script/soak [--clients N] [--requests M] [--quick]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from wyoming.audio import AudioChunk
from wyoming.client import AsyncTcpClient
from wyoming.event import Event
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop

from bench.client import HOST, describe
from bench.procs import Server, free_port
from bench.stats import median, ms, p95, table
from bench.texts import STREAM_REPLY, THREE_SENTENCES, WORDS_5, WORDS_25, stream_pieces

EARLY_EVERY = 7
"""Every 7th request (counted over all clients) hangs up after its first audio-chunk."""
STREAM_DELAY = 0.01
"""Seconds between streamed text pieces."""
STREAM_PIECES = 12
OK_EXIT_CODES = (0, -signal.SIGTERM)


@dataclass(frozen=True)
class Kind:
    """One kind of request: one-shot or streamed text."""

    name: str
    text: str
    streaming: bool

    def events(self) -> list[Event]:
        if not self.streaming:
            return [Synthesize(text=self.text).event()]
        pieces = stream_pieces(self.text, STREAM_PIECES)
        return [
            SynthesizeStart().event(),
            *(SynthesizeChunk(text=piece).event() for piece in pieces),
            Synthesize(text=self.text).event(),  # Home Assistant repeats it for old servers
            SynthesizeStop().event(),
        ]

    @property
    def final(self) -> str:
        return "synthesize-stopped" if self.streaming else "audio-stop"


KINDS = (
    Kind("one-shot 5w", WORDS_5, streaming=False),
    Kind("one-shot 25w", WORDS_25, streaming=False),
    Kind("one-shot 3 sentences", THREE_SENTENCES, streaming=False),
    Kind("stream 3 sentences", STREAM_REPLY, streaming=True),
    Kind("stream 5w", WORDS_5, streaming=True),
)


@dataclass
class Result:
    """What one request got."""

    kind: Kind
    early: bool
    samples: int = 0
    first_audio: float | None = None
    """Seconds from the first byte sent to the first audio-chunk."""
    failure: str | None = None


class Failed(Exception):
    """A request did not end as it should."""


async def request(port: int, kind: Kind, early: bool, timeout: float) -> Result:
    """One request on a new connection; never raises, a problem is in ``failure``."""
    result = Result(kind, early)
    try:
        await asyncio.wait_for(_request(port, kind, result), timeout)
    except TimeoutError:
        result.failure = f"no end within {timeout:.0f} s"
    except (Failed, OSError) as error:
        result.failure = str(error) or type(error).__name__
    return result


async def _request(port: int, kind: Kind, result: Result) -> None:
    async with AsyncTcpClient(HOST, port) as client:
        started = time.perf_counter()
        sender = asyncio.create_task(_send(client, kind.events()))
        try:
            while True:
                event = await client.read_event()
                if event is None:
                    raise Failed("connection closed before the end")
                if event.type == "error":
                    raise Failed(f"error event: {event.data.get('text')}")
                if AudioChunk.is_type(event.type):
                    chunk = AudioChunk.from_event(event)
                    if result.first_audio is None:
                        result.first_audio = time.perf_counter() - started
                    result.samples += len(chunk.audio) // (chunk.width * chunk.channels)
                    if result.early:
                        return  # hang up mid-reply
                elif event.type == kind.final:
                    await sender  # sent all (a reply cannot end before its last event)
                    return
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await sender


async def _send(client: AsyncTcpClient, events: Sequence[Event]) -> None:
    for index, event in enumerate(events):
        if index and event.type == "synthesize-chunk":
            await asyncio.sleep(STREAM_DELAY)  # text arrives as an LLM writes it
        await client.write_event(event)


# ---------------------------------------------------------------- the run


@dataclass(frozen=True)
class Config:
    clients: int
    requests: int
    timeout: float
    time_limit: float
    max_rss_growth_mb: float
    out_dir: Path
    server_args: tuple[str, ...]


@dataclass
class Measurements:
    expected: dict[str, int] = field(default_factory=dict)
    results: list[Result] = field(default_factory=list)
    rss_warm: int = 0
    rss_after: int = 0
    threads_warm: int = 0
    threads_after: int = 0
    pool_size: int = 0
    problems: list[str] = field(default_factory=list)
    """Anything wrong outside single requests (server, time limit)."""


async def warm_up(port: int, config: Config, found: Measurements) -> None:
    """One request per kind, alone: the sample count every later one must match."""
    for kind in KINDS:
        result = await request(port, kind, early=False, timeout=config.timeout)
        if result.failure is not None or result.samples == 0:
            raise RuntimeError(f"warm-up {kind.name} failed: {result.failure or 'no audio'}")
        found.expected[kind.name] = result.samples


async def client_loop(port: int, client: int, config: Config, found: Measurements) -> None:
    for index in range(config.requests):
        number = client * config.requests + index
        kind = KINDS[(client + index) % len(KINDS)]
        early = number % EARLY_EVERY == EARLY_EVERY - 1
        found.results.append(await request(port, kind, early, config.timeout))


def check_results(found: Measurements) -> None:
    for result in found.results:
        if result.failure is not None:
            continue
        if result.early:
            if result.first_audio is None:
                result.failure = "hung up early but never got audio"
        elif result.samples != found.expected[result.kind.name]:
            result.failure = (
                f"{result.samples} samples, expected {found.expected[result.kind.name]}"
            )


def pool_size(server_args: Sequence[str]) -> int:
    """The server's synthesis thread pool (a worker per connection that may speak),
    as its own command line parsing sizes it."""
    from wyoming_piper_stream.__main__ import ENV_ARGS, parse_settings

    os.environ.pop(ENV_ARGS, None)  # bench.procs starts the server without it, too
    settings = parse_settings(list(server_args))
    return settings.limits.max_connections


def stop_server(server: Server) -> int | None:
    """SIGTERM, bounded wait (then kill); the exit code."""
    process = server.process
    server.stop(timeout=30.0)
    return None if process is None else process.returncode


async def soak(config: Config, found: Measurements) -> None:
    port = free_port()
    args = ["wyoming_piper_stream", "--uri", f"tcp://{HOST}:{port}", *config.server_args]
    found.pool_size = pool_size(args[1:])
    config.out_dir.mkdir(parents=True, exist_ok=True)
    server = Server("soak", args, port, config.out_dir / "soak-server.log")
    server.start()
    try:
        assert server.process is not None
        process = psutil.Process(server.process.pid)
        await server.wait_ready(config.timeout)
        await warm_up(port, config, found)
        found.rss_warm = process.memory_info().rss
        found.threads_warm = process.num_threads()
        print(f"warm: {found.expected}", flush=True)

        clients = (client_loop(port, c, config, found) for c in range(config.clients))
        try:
            await asyncio.wait_for(asyncio.gather(*clients), config.time_limit)
        except TimeoutError:
            found.problems.append(f"run not done within --time-limit {config.time_limit:.0f} s")

        found.rss_after = process.memory_info().rss
        found.threads_after = process.num_threads()
        try:
            await describe(port, timeout=config.timeout)
        except (OSError, TimeoutError) as error:
            found.problems.append(f"server no longer answers describe: {error!r}")
    finally:
        returncode = stop_server(server)
    if returncode not in OK_EXIT_CODES:
        found.problems.append(f"server exited with {returncode}; see {server.log_path}")
    log = server.log_path.read_text(errors="replace")
    if "Traceback" in log:
        found.problems.append(f"traceback in the server log {server.log_path}")


# ---------------------------------------------------------------- report


def mb(value: int) -> str:
    return f"{value / 2**20:.0f} MB"


def report(config: Config, found: Measurements) -> list[tuple[str, bool]]:
    """Prints the table; returns the checks as (description, passed)."""
    total = config.clients * config.requests
    done = len(found.results)
    print(
        f"\nSoak: {config.clients} clients x {config.requests} requests ({total}) on one "
        f"server, each on a new connection; every {EARLY_EVERY}th hangs up after its first "
        "audio-chunk; first audio in ms from the first byte sent"
    )
    rows = []
    for kind in KINDS:
        mine = [r for r in found.results if r.kind is kind]
        firsts = [r.first_audio for r in mine if r.first_audio is not None]
        rows.append(
            [
                kind.name,
                str(len(mine)),
                str(sum(r.early for r in mine)),
                str(sum(r.failure is not None for r in mine)),
                str(found.expected.get(kind.name, "-")),
                ms(median(firsts)),
                ms(p95(firsts)),
            ]
        )
    firsts = [r.first_audio for r in found.results if r.first_audio is not None]
    failures = [r for r in found.results if r.failure is not None]
    rows.append(
        [
            "all",
            str(done),
            str(sum(r.early for r in found.results)),
            str(len(failures)),
            "",
            ms(median(firsts)),
            ms(p95(firsts)),
        ]
    )
    header = ["kind", "requests", "left early", "failures", "samples", "first p50", "first p95"]
    print(table(header, rows))

    thread_limit = found.threads_warm + found.pool_size
    growth = found.rss_after - found.rss_warm
    print(
        f"\nserver RSS: {mb(found.rss_warm)} after warm-up, {mb(found.rss_after)} after the run "
        f"({growth / 2**20:+.0f} MB)\nserver threads: {found.threads_warm} after warm-up, "
        f"{found.threads_after} after the run (limit {thread_limit}: + a pool of "
        f"{found.pool_size})"
    )
    reasons = Counter(r.failure for r in failures)
    for reason, count in reasons.most_common(10):
        print(f"  failed x{count}: {reason}")

    checks = [
        (f"all {total} requests ran", done == total),
        ("no request failed (error, lost connection, wrong length, timeout)", not failures),
        (f"threads <= {thread_limit}", found.threads_after <= thread_limit),
        (
            f"RSS growth < {config.max_rss_growth_mb:g} MB",
            growth < config.max_rss_growth_mb * 2**20,
        ),
        *((problem, False) for problem in found.problems),
    ]
    if not math.isnan(p95(firsts)):
        print(f"first audio under load: p50 {ms(median(firsts))} ms, p95 {ms(p95(firsts))} ms")
    print("\nChecks:")
    for description, passed in checks:
        print(f"  {'PASS' if passed else 'FAIL'}  {description}")
    return checks


def parse_args(argv: Sequence[str]) -> Config:
    parser = argparse.ArgumentParser(
        prog="script/soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--clients", type=int, default=8, help="clients at once (default 8)")
    add("--requests", type=int, default=50, help="requests per client (default 50)")
    add("--quick", action="store_true", help="4 clients x 6 requests (a CI-sized run)")
    add("--timeout", type=float, default=120.0, help="seconds per request (default 120)")
    add("--time-limit", type=float, help="seconds for the whole run (default: 10 per request)")
    add(
        "--max-rss-growth",
        type=float,
        default=256.0,
        help="MB the server's RSS may grow from warm-up to the end (default 256)",
    )
    add("--out", type=Path, default=Path("bench-out"), help="folder for the server log")
    add(
        "server_args",
        nargs="*",
        help="extra server flags after --, e.g. -- --max-concurrent 2",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.clients, args.requests = 4, 6
    if args.clients < 1 or args.requests < 1:
        parser.error("--clients and --requests must be at least 1")
    total = args.clients * args.requests
    return Config(
        clients=args.clients,
        requests=args.requests,
        timeout=args.timeout,
        time_limit=args.time_limit or max(60.0, 10.0 * total),
        max_rss_growth_mb=args.max_rss_growth,
        out_dir=args.out,
        server_args=("--noise-scale", "0", "--noise-w-scale", "0", *args.server_args),
    )


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(sys.argv[1:] if argv is None else argv)
    found = Measurements()
    started = time.perf_counter()
    try:
        asyncio.run(soak(config, found))
    except RuntimeError as error:  # the server did not start or warm up
        found.problems.append(str(error))
    checks = report(config, found)
    print(f"\nsoak took {time.perf_counter() - started:.0f} s")
    return 0 if all(passed for _, passed in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
