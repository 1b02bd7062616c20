"""Does the web page slow synthesis? The same requests to a server without the page and
to one whose page is polled (status, voices and the page itself, ``--poll-hz`` times a
second; an open page asks for the status every 2 s), in interleaved rounds; ratios of first
audio and total time. The poller runs in this process: at high rates it takes CPU too.

Usage: ``.venv/bin/python -m bench.web [--rounds N] [--poll-hz HZ]`` (embedded voice).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
from pathlib import Path

import aiohttp

from bench.client import HOST, Trace, on_connection, one_shot
from bench.procs import Server, free_port
from bench.stats import median
from bench.texts import WORDS_25

PLAIN, WEB = "no page", "page polled"
PATHS = ("api/status", "api/voices", "")


async def poll(url: str, stop: asyncio.Event, every: float) -> int:
    """Hit the page's URLs until ``stop``; the number of answered requests."""
    answered = 0
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            for path in PATHS:
                async with session.get(url + path) as response:
                    await response.read()
                    answered += response.status == 200
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
    return answered


async def measure(rounds: int, poll_hz: float, scratch: Path) -> None:
    web_port = free_port()
    servers = {
        PLAIN: Server(PLAIN, [], free_port(), scratch / "plain.log"),
        WEB: Server(WEB, [], free_port(), scratch / "web.log"),
    }
    for name, server in servers.items():
        extra = ["--web-server", "--web-server-port", str(web_port)] if name == WEB else []
        server.args = ["wyoming_piper_stream", "--uri", f"tcp://{HOST}:{server.port}", *extra]
        server.start()
    try:
        for server in servers.values():
            await server.wait_ready(60)
            await on_connection(server.port, lambda c: one_shot(c, WORDS_25), 120)  # warm
        stop = asyncio.Event()
        poller = asyncio.create_task(poll(f"http://{HOST}:{web_port}/", stop, 1 / poll_hz))
        traces: dict[str, list[Trace]] = {PLAIN: [], WEB: []}
        for index in range(rounds):
            order = [PLAIN, WEB] if index % 2 == 0 else [WEB, PLAIN]
            for name in order:
                trace = await on_connection(
                    servers[name].port, lambda c: one_shot(c, WORDS_25), 120
                )
                traces[name].append(trace)
        stop.set()
        answered = await poller
    finally:
        for server in servers.values():
            server.stop()
    print(f"25 words, {rounds} interleaved rounds, poll {poll_hz:g} Hz ({answered} answers)")
    print("| server | first audio ms | total ms |")
    print("| --- | --- | --- |")
    for name, found in traces.items():
        first = median([t.first for t in found]) * 1000
        total = median([t.end for t in found]) * 1000
        print(f"| {name} | {first:.0f} | {total:.0f} |")
    ratio_first = median([t.first for t in traces[WEB]]) / median([t.first for t in traces[PLAIN]])
    ratio_total = median([t.end for t in traces[WEB]]) / median([t.end for t in traces[PLAIN]])
    print(f"polled page / no page: first audio {ratio_first:.2f}x, total {ratio_total:.2f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--poll-hz", type=float, default=2.0, help="page polls per second")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory() as scratch:
        asyncio.run(measure(args.rounds, args.poll_hz, Path(scratch)))


if __name__ == "__main__":
    main()
