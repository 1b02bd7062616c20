"""Start the real server as a subprocess and talk to it as Home Assistant does.

A test module uses the shared server with ``from server_util import voice_server as voice_server``.
Every wait is bounded: a server that hangs fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import FIXTURES, REPO
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncClient
from wyoming.event import Event
from wyoming.event import read_event as read_event_blocking
from wyoming.event import write_event as write_event_blocking
from wyoming.info import Describe, Info
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeVoice,
)

FIXTURE_VOICES = FIXTURES
JOE = "en_US-joe-medium"
MULTI = "tiny-multi"
PRESPLIT = "tiny-multi-presplit"
SPEAKERS = ["alice", "bob", "carol"]

START_TIMEOUT = 60.0
"""Seconds until a new server must answer describe (it loads voices in the background)."""
EVENT_TIMEOUT = 60.0
"""Seconds to wait for any one event; the first request also waits for the voice to load."""
ERROR_TIMEOUT = 30.0
"""Seconds to wait for an error and the connection's end (a voice may load first)."""
STOP_TIMEOUT = 30.0
"""Seconds a server may take to exit after SIGTERM."""

LOG_FORMAT = "%(created).6f %(levelname)s %(name)s: %(message)s"
"""Server log lines start with the wall-clock time, so tests can order them with client events."""


# ---------------------------------------------------------------- server process


@dataclass
class ServerProcess:
    """A running server: its URI, process and log file (stderr)."""

    uri: str
    process: subprocess.Popen[bytes]
    log_path: Path
    args: tuple[str, ...]
    data_dir: Path | None = None
    """The voices folder given with ``--data-dir``, if any."""

    def log(self, since: int = 0) -> str:
        """The server's stderr from byte offset ``since``."""
        with self.log_path.open("rb") as log:
            log.seek(since)
            return log.read().decode("utf-8", "replace")

    def log_size(self) -> int:
        """Byte offset of the log's end: pass it to ``log(since=...)`` later."""
        return self.log_path.stat().st_size

    def log_tail(self, chars: int = 4000) -> str:
        return self.log()[-chars:]


def event_bytes(*events: Event) -> bytes:
    """Events as they go over the wire, to send several in one write."""
    buffer = io.BytesIO()
    for event in events:
        write_event_blocking(event, buffer)
    return buffer.getvalue()


def host_port(uri: str) -> tuple[str, int]:
    host, port = uri.removeprefix("tcp://").rsplit(":", 1)
    return host, int(port)


def free_port() -> int:
    """A port nothing listens on right now (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def describe_once(port: int, timeout: float) -> Info:
    """A blocking describe -> info round trip (raises OSError or TimeoutError)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        with sock.makefile("rwb") as stream:
            write_event_blocking(Describe().event(), stream)
            stream.flush()
            event = read_event_blocking(stream)
    if event is None or not Info.is_type(event.type):
        raise OSError(f"no info in reply to describe: {event}")
    return Info.from_event(event)


@contextlib.contextmanager
def run_server(log_dir: Path, *extra_args: str) -> Iterator[ServerProcess]:
    """Run ``python -m wyoming_piper_stream`` on a free port until the block ends.

    Yields once a describe -> info round trip works. On exit: SIGTERM, a bounded
    wait, and an assertion that the server exited cleanly (0, or killed by SIGTERM).
    """
    port = free_port()
    args = (
        "--uri",
        f"tcp://127.0.0.1:{port}",
        "--noise-scale",
        "0",
        "--noise-w-scale",
        "0",
        "--log-format",
        LOG_FORMAT,
        *extra_args,
    )
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"server-{port}.log"
    # stderr goes to a file, not a pipe: nobody reads a pipe while tests run,
    # and a full pipe would block the server's logging.
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "wyoming_piper_stream", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            cwd=REPO,
        )
    server = ServerProcess(f"tcp://127.0.0.1:{port}", process, log_path, args)
    try:
        _wait_until_ready(server, port)
        yield server
    finally:
        _stop(server)


def _wait_until_ready(server: ServerProcess, port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(
                f"server exited with {server.process.returncode} at start:\n{server.log_tail()}"
            )
        try:
            describe_once(port, timeout=2.0)
            return
        except (OSError, TimeoutError) as error:
            last_error = error
            time.sleep(0.2)
    pytest.fail(f"server not ready after {START_TIMEOUT} s ({last_error}):\n{server.log_tail()}")


def _stop(server: ServerProcess) -> None:
    process = server.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        returncode = process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT)
        pytest.fail(f"server ignored SIGTERM for {STOP_TIMEOUT} s:\n{server.log_tail()}")
    assert returncode in (0, -signal.SIGTERM), (
        f"server exited with {returncode}:\n{server.log_tail()}"
    )


def make_data_dir(path: Path) -> Path:
    """A data dir with the tiny 3-speaker voice, stock and pre-split (a folder)."""
    path.mkdir(parents=True, exist_ok=True)
    for name in (f"{MULTI}.onnx", f"{MULTI}.onnx.json"):
        shutil.copy(FIXTURE_VOICES / name, path / name)
    shutil.copytree(FIXTURE_VOICES / PRESPLIT, path / PRESPLIT)
    return path


@pytest.fixture(scope="module")
def voice_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server per test module: the embedded joe voice plus the tiny fixture voices.

    ``--debug`` logs every decoded chunk (used to order decoding against client
    events); ``--max-voices 4`` keeps joe loaded while the tiny voices are used,
    so no test pays for reloading it.
    """
    root = tmp_path_factory.mktemp("voice-server")
    data_dir = make_data_dir(root / "voices")
    with run_server(root, "--data-dir", str(data_dir), "--max-voices", "4", "--debug") as server:
        server.data_dir = data_dir
        yield server
    # Whatever the tests did (errors, disconnects, shutdown), nothing may have crashed.
    assert "Traceback" not in server.log(), server.log_tail()


# ---------------------------------------------------------------- async client


@dataclass
class Reply:
    """What the server sent, up to the awaited event or until it closed the connection."""

    events: list[Event]
    closed: bool
    """True when the connection ended before the awaited event."""

    @property
    def types(self) -> list[str]:
        return [event.type for event in self.events]

    @property
    def pcm(self) -> bytes:
        return pcm_of(self.events)


def pcm_of(events: Sequence[Event]) -> bytes:
    return b"".join(event.payload or b"" for event in events if AudioChunk.is_type(event.type))


def audio_cycles(events: Sequence[Event]) -> list[bytes]:
    """PCM of each audio-start ... audio-stop cycle, in order."""
    cycles: list[bytes] = []
    current: bytearray | None = None
    for event in events:
        if AudioStart.is_type(event.type):
            assert current is None, "audio-start inside an audio cycle"
            current = bytearray()
        elif AudioChunk.is_type(event.type):
            assert current is not None, "audio-chunk outside an audio cycle"
            current += event.payload or b""
        elif AudioStop.is_type(event.type):
            assert current is not None, "audio-stop without audio-start"
            cycles.append(bytes(current))
            current = None
    assert current is None, "audio cycle without audio-stop"
    return cycles


async def wait_for_log(server: ServerProcess, text: str, since: int = 0) -> None:
    """Until the server has logged ``text`` (it logs a reply after sending its last event)."""
    deadline = time.monotonic() + START_TIMEOUT
    while text not in server.log(since):
        assert time.monotonic() < deadline, f"no {text!r} in the log:\n{server.log_tail()}"
        assert server.process.poll() is None, f"server exited:\n{server.log_tail()}"
        await asyncio.sleep(0.02)


async def read_event(client: AsyncClient, timeout: float = EVENT_TIMEOUT) -> Event | None:
    """The next event, or None when the server closed the connection."""
    try:
        return await asyncio.wait_for(client.read_event(), timeout)
    except TimeoutError:
        raise TimeoutError(f"no event from the server within {timeout} s") from None
    except (ConnectionError, asyncio.IncompleteReadError):
        return None


async def read_until(client: AsyncClient, until: str, timeout: float = EVENT_TIMEOUT) -> Reply:
    """Events up to and including ``until``, or all events until the connection closes."""
    events: list[Event] = []
    while True:
        event = await read_event(client, timeout)
        if event is None:
            return Reply(events, closed=True)
        events.append(event)
        if event.type == until:
            return Reply(events, closed=False)


async def exchange(
    uri: str, send: Sequence[Event], until: str, timeout: float = EVENT_TIMEOUT
) -> Reply:
    """Connect, send ``send``, read until ``until`` (or the connection closes)."""
    client = AsyncClient.from_uri(uri, connect_timeout=timeout)
    async with client:
        for event in send:
            await client.write_event(event)
        return await read_until(client, until, timeout)


def synthesize_events(text: str, voice: SynthesizeVoice | None = None) -> list[Event]:
    return [Synthesize(text=text, voice=voice).event()]


def stream_events(pieces: Sequence[str], voice: SynthesizeVoice | None = None) -> list[Event]:
    """Home Assistant's order: start, one chunk per delta, the whole text again, stop."""
    return [
        SynthesizeStart(voice=voice).event(),
        *(SynthesizeChunk(text=piece).event() for piece in pieces),
        Synthesize(text="".join(pieces), voice=voice).event(),
        SynthesizeStop().event(),
    ]


async def synthesize(
    uri: str, text: str, voice: SynthesizeVoice | None = None
) -> tuple[list[Event], bytes]:
    """One-shot: events until audio-stop (or until the server closed), and their PCM."""
    reply = await exchange(uri, synthesize_events(text, voice), "audio-stop")
    return reply.events, reply.pcm


async def stream_text(
    uri: str, pieces: Sequence[str], voice: SynthesizeVoice | None = None
) -> tuple[list[Event], bytes]:
    """Streamed text: events until synthesize-stopped (or until the server closed)."""
    reply = await exchange(uri, stream_events(pieces, voice), "synthesize-stopped")
    return reply.events, reply.pcm


async def describe(uri: str) -> Info:
    reply = await exchange(uri, [Describe().event()], "info")
    assert not reply.closed, f"connection closed before info: {reply.types}"
    return Info.from_event(reply.events[-1])
