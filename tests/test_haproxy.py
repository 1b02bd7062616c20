"""Two real servers behind HAProxy run with docs/haproxy.cfg, all on 127.0.0.1.

Needs the ``haproxy`` binary (Debian: ``apt-get install haproxy``; ``.ci/run`` installs it).
Without it the test is skipped, saying so: tests never install anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from server_util import (
    EVENT_TIMEOUT,
    FIXTURE_VOICES,
    REPO,
    START_TIMEOUT,
    STOP_TIMEOUT,
    ServerProcess,
    describe_once,
    free_port,
    host_port,
    read_until,
    run_server,
    synthesize,
)
from wyoming.audio import AudioStart
from wyoming.client import AsyncClient
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize

CONFIG = REPO / "docs" / "haproxy.cfg"
FRONTEND, REPLICA1, REPLICA2 = "127.0.0.1:10200", "127.0.0.1:10201", "127.0.0.1:10202"
VOICE = "tiny-single"
TEXT = "Turn on the kitchen lights."
REQUESTS = 4
LOG_TIMEOUT = 5.0
"""Seconds for a log line to follow what it reports (a reply, a closed connection)."""


# ---------------------------------------------------------------- haproxy


def _find_haproxy() -> str | None:
    found = shutil.which("haproxy")
    if found is None and os.access("/usr/sbin/haproxy", os.X_OK):
        found = "/usr/sbin/haproxy"
    return found


@pytest.fixture(scope="module")
def haproxy() -> str:
    """Path of the haproxy binary; the test is skipped without it."""
    found = _find_haproxy()
    if found is None:
        pytest.skip("haproxy is not installed (Debian: apt-get install haproxy)")
    return found


def write_config(path: Path, front: int, port1: int, port2: int) -> Path:
    """docs/haproxy.cfg with its three addresses moved to free ports."""
    text = CONFIG.read_text(encoding="utf-8")
    for address, port in ((FRONTEND, front), (REPLICA1, port1), (REPLICA2, port2)):
        # Settings only: the comments' example commands keep the documented ports.
        pattern = re.compile(rf"^(?!\s*#)(.*){re.escape(address)}$", re.MULTILINE)
        text, count = pattern.subn(rf"\g<1>127.0.0.1:{port}", text)
        assert count == 1, f"{CONFIG} should name {address} once, not {count} times"
    binds = re.findall(r"^\s*bind\s+(\S+)", text, re.MULTILINE)
    assert binds == [f"127.0.0.1:{front}"], binds
    path.write_text(text, encoding="utf-8")
    return path


@contextlib.contextmanager
def run_haproxy(binary: str, config: Path, port: int, log_path: Path) -> Iterator[None]:
    """haproxy in the foreground (-db) until the block ends; ready once describe passes."""
    check = subprocess.run(
        [binary, "-c", "-q", "-f", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert check.returncode == 0, f"haproxy rejects the config: {check.stdout}{check.stderr}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [binary, "-db", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert process.poll() is None, f"haproxy exited: {log_path.read_text()}"
            try:
                describe_once(port, timeout=2.0)
                break
            except (OSError, TimeoutError) as error:
                if time.monotonic() > deadline:
                    pytest.fail(f"no info through haproxy ({error}): {log_path.read_text()}")
                time.sleep(0.2)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)


def spoke(server: ServerProcess, since: int) -> int:
    """ "Spoke" lines (one per reply) in the server's log since byte ``since``."""
    return server.log(since).count(" Spoke ")


async def spoke_lines(offsets: list[tuple[ServerProcess, int]], total: int) -> list[int]:
    """Each server's "Spoke" count, once they add up to ``total`` (or the wait ends).

    A server logs "Spoke" just after sending audio-stop, so the line can lag the reply.
    """
    deadline = time.monotonic() + LOG_TIMEOUT
    while True:
        counts = [spoke(server, since) for server, since in offsets]
        if sum(counts) >= total or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(0.05)


async def haproxy_log(path: Path, connections: int) -> str:
    """HAProxy's output once it logged ``connections`` connections (or the wait ended)."""
    deadline = time.monotonic() + LOG_TIMEOUT
    while True:
        text = path.read_text(encoding="utf-8", errors="replace")
        if text.count(" wyoming piper/") >= connections or time.monotonic() > deadline:
            return text
        await asyncio.sleep(0.05)


# ---------------------------------------------------------------- test


async def test_requests_through_haproxy_reach_both_replicas(haproxy: str, tmp_path: Path) -> None:
    def replica(name: str) -> contextlib.AbstractContextManager[ServerProcess]:
        return run_server(
            tmp_path / name,
            "--voice",
            VOICE,
            "--data-dir",
            str(FIXTURE_VOICES),
            "--cache-dir",
            str(tmp_path / name / "cache"),
        )

    with replica("piper1") as piper1, replica("piper2") as piper2:
        # What one replica sends for the text, asked directly: the reference.
        _, expected = await synthesize(piper1.uri, TEXT)
        assert len(expected) > 22050 * 2 // 4
        assert await spoke_lines([(piper1, 0)], 1) == [1]
        offsets = [(piper1, piper1.log_size()), (piper2, piper2.log_size())]

        front = free_port()
        config = write_config(
            tmp_path / "haproxy.cfg",
            front,
            host_port(piper1.uri)[1],
            host_port(piper2.uri)[1],
        )
        with run_haproxy(haproxy, config, front, tmp_path / "haproxy.log"):
            # Four clients at once, each with describe then synthesize on its connection
            # (four satellites answering together): leastconn spreads open connections.
            clients = [
                AsyncClient.from_uri(f"tcp://127.0.0.1:{front}", connect_timeout=EVENT_TIMEOUT)
                for _ in range(REQUESTS)
            ]
            async with contextlib.AsyncExitStack() as stack:
                for client in clients:
                    await stack.enter_async_context(client)
                    await client.write_event(Describe().event())
                    reply = await read_until(client, "info")
                    assert not reply.closed, reply.types
                    info = Info.from_event(reply.events[-1])
                    assert VOICE in [v.name for program in info.tts for v in program.voices]
                for client in clients:
                    await client.write_event(Synthesize(text=TEXT).event())
                replies = await asyncio.gather(
                    *(read_until(client, "audio-stop") for client in clients)
                )
            # HAProxy logs a connection when it ends, just after the client closed it.
            log = await haproxy_log(tmp_path / "haproxy.log", REQUESTS + 1)
            for number, reply in enumerate(replies, 1):
                assert not reply.closed, f"request {number}: closed after {reply.types}"
                assert reply.types[0] == "audio-start", reply.types
                assert AudioStart.from_event(reply.events[0]).rate == 22050
                assert len(reply.pcm) == len(expected), f"request {number}: audio cut short"

        counts = await spoke_lines(offsets, REQUESTS)
        assert sum(counts) == REQUESTS, (counts, log)
        assert all(count >= 1 for count in counts), (counts, log)
        assert "piper/piper1" in log and "piper/piper2" in log, log
