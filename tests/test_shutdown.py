"""SIGINT and SIGTERM end the real server within 2 s with exit code 0, whatever it is doing.

Each case starts its own server, brings it into one state (waiting on what the server
or the kernel shows, never on a fixed sleep), sends the signal, and checks the exit
code, the time to exit and that the client's connection was closed.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from server_util import (
    FIXTURE_VOICES,
    START_TIMEOUT,
    ServerProcess,
    event_bytes,
    host_port,
    read_event,
    read_until,
    run_server,
    wait_for_log,
)
from wyoming.client import AsyncClient
from wyoming.info import Describe
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart

EXIT_SECONDS = 2.0
"""The promise: a stopped server is gone within this (Docker's stop waits 10 s, a user less)."""
CLOSE_TIMEOUT = 10.0
"""Seconds for a client to see its connection end after the server exited."""
BACKED_UP_BYTES = 1 << 20
"""Audio the kernel holds for a client that stopped reading: the server is stuck on it."""

SENTENCE = (
    "When the morning train finally pulled into the quiet little station at the edge of "
    "the valley, the tired travelers gathered their bags and coats."
)


def unsent_bytes(server_port: int, client_port: int) -> int:
    """Bytes in the server socket's send queue towards the client (``/proc/net/tcp``)."""
    with open("/proc/net/tcp", encoding="ascii") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            local, remote = fields[1].split(":")[1], fields[2].split(":")[1]
            if (int(local, 16), int(remote, 16)) == (server_port, client_port):
                return int(fields[4].split(":")[0], 16)
    return 0


# Each state opens a connection, brings the server into the state, and returns a
# coroutine that waits until that connection is closed.
Closed = Callable[[], Awaitable[None]]


async def _read_until_closed(client: AsyncClient) -> None:
    async with asyncio.timeout(CLOSE_TIMEOUT):
        while await read_event(client, CLOSE_TIMEOUT) is not None:
            pass


async def idle(server: ServerProcess) -> Closed:
    client = AsyncClient.from_uri(server.uri)
    await client.connect()
    await client.write_event(Describe().event())
    reply = await read_until(client, "info")
    assert not reply.closed
    return lambda: _read_until_closed(client)


async def one_shot(server: ServerProcess) -> Closed:
    client = AsyncClient.from_uri(server.uri)
    await client.connect()
    await client.write_event(Synthesize(text=" ".join([SENTENCE] * 4)).event())
    assert not (await read_until(client, "audio-chunk")).closed
    return lambda: _read_until_closed(client)


async def streamed(server: ServerProcess) -> Closed:
    client = AsyncClient.from_uri(server.uri)
    await client.connect()
    await client.write_event(SynthesizeStart().event())
    for _ in range(4):  # sentences keep coming: no synthesize-stop
        await client.write_event(SynthesizeChunk(text=SENTENCE + " ").event())
    assert not (await read_until(client, "audio-chunk")).closed
    return lambda: _read_until_closed(client)


async def stopped_reading(server: ServerProcess) -> Closed:
    """The tiny voice makes audio far faster than the kernel buffers it, and nobody reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(host_port(server.uri))
    sock.sendall(event_bytes(Synthesize(text=" ".join([SENTENCE] * 60)).event()))
    server_port, client_port = host_port(server.uri)[1], sock.getsockname()[1]
    deadline = time.monotonic() + START_TIMEOUT
    while unsent_bytes(server_port, client_port) < BACKED_UP_BYTES:
        assert time.monotonic() < deadline, f"the audio never backed up:\n{server.log_tail()}"
        await asyncio.sleep(0.02)

    async def closed() -> None:
        sock.settimeout(CLOSE_TIMEOUT)
        try:
            while sock.recv(1 << 16):
                pass
        except ConnectionResetError:  # aborted with unsent audio: as closed as it gets
            pass
        finally:
            sock.close()

    return closed


async def voice_loading(server: ServerProcess) -> Closed:
    """A request waits for the default voice, which is split and measured (empty cache)."""
    offset = server.log_size()
    client = AsyncClient.from_uri(server.uri)
    await client.connect()
    await client.write_event(Synthesize(text=SENTENCE).event())
    await wait_for_log(server, "Loading voice", offset)
    assert "Loaded voice" not in server.log(offset)
    return lambda: _read_until_closed(client)


STATES: dict[str, tuple[Callable[[ServerProcess], Awaitable[Closed]], list[str]]] = {
    "idle": (idle, []),
    "one-shot synthesis": (one_shot, []),
    "streamed text": (streamed, []),
    "client stopped reading": (
        stopped_reading,
        ["--data-dir", str(FIXTURE_VOICES), "--voice", "tiny-single", "--max-text-chars", "20000"],
    ),
    # An empty cache: the voice is split and measured, which takes seconds.
    "voice still loading": (voice_loading, ["--no-preload", "--no-cache"]),
}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("state", list(STATES))
async def test_signal_ends_the_server_in_every_state(
    tmp_path: Path, state: str, sig: signal.Signals
) -> None:
    enter, args = STATES[state]
    with run_server(tmp_path, *args) as server:
        if enter is not voice_loading:
            await wait_for_log(server, "Loaded voice")
        closed = await enter(server)
        sent = time.monotonic()
        server.process.send_signal(sig)
        try:
            code = await asyncio.to_thread(server.process.wait, EXIT_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {EXIT_SECONDS} s after {sig.name}:\n{server.log_tail()}")
        took = time.monotonic() - sent
        await closed()
    assert code == 0, f"exit code {code} after {sig.name}:\n{server.log_tail()}"
    assert took < EXIT_SECONDS
    log = server.log()
    assert "Server stopped" in log
    assert "Traceback" not in log, log
