"""Tests for the health check against tiny in-test Wyoming servers."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from wyoming.event import Event
from wyoming.info import Attribution, Describe, Info, TtsProgram, TtsVoice
from wyoming.server import AsyncEventHandler, AsyncTcpServer

from wyoming_piper_stream.health import async_main
from wyoming_piper_stream.server.status import DEFAULT_VOICE, STATUS_KEY

ATTRIBUTION = Attribution(name="test", url="https://example.invalid")


def make_info(voices: list[str], state: str | None = "ready") -> Event:
    """Info as our server sends it: the default voice (the first) in ``state``;
    ``state=None`` leaves our status out, as other Wyoming servers do."""
    event = make_plain_info(voices).event()
    if state is not None:
        name = voices[0] if voices else "none"
        event.data[STATUS_KEY] = {
            DEFAULT_VOICE: {"name": name, "ready": state == "ready", "state": state}
        }
    return event


def make_plain_info(voices: list[str]) -> Info:
    tts_voices = [
        TtsVoice(
            name=name,
            attribution=ATTRIBUTION,
            installed=True,
            description=None,
            version=None,
            languages=["en_US"],
        )
        for name in voices
    ]
    program = TtsProgram(
        name="tts",
        attribution=ATTRIBUTION,
        installed=True,
        description=None,
        version=None,
        voices=tts_voices,
    )
    return Info(tts=[program])


class InfoHandler(AsyncEventHandler):
    """Answers describe with a fixed info (or never answers when info is None)."""

    def __init__(self, info: Event | None, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.info = info

    async def handle_event(self, event: Event) -> bool:
        if Describe.is_type(event.type) and self.info is not None:
            await self.write_event(self.info)
        return True


def free_port() -> int:
    """A port that nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


StartServer = Callable[[Event | None], Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[StartServer]:
    """Start an in-test Wyoming server; returns its URI."""
    servers: list[AsyncTcpServer] = []

    async def start(info: Event | None) -> str:
        server = AsyncTcpServer("127.0.0.1", 0)
        await server.start(lambda *args: InfoHandler(info, *args))
        servers.append(server)
        assert server._server is not None
        port = server._server.sockets[0].getsockname()[1]
        return f"tcp://127.0.0.1:{port}"

    yield start
    for server in servers:
        await server.stop()


async def test_healthy_server_exits_zero(serve, capsys) -> None:
    uri = await serve(make_info(["tiny-voice", "other"]))
    assert await async_main(["--uri", uri, "--timeout", "5"]) == 0
    assert capsys.readouterr().out.startswith("healthy: default voice tiny-voice ready; 2 voice(s)")


@pytest.mark.parametrize("state", ["loading", "not loaded yet", "failed to load: no such file"])
async def test_default_voice_not_usable_is_unhealthy(serve, capsys, state: str) -> None:
    uri = await serve(make_info(["tiny-voice"], state))
    assert await async_main(["--uri", uri, "--timeout", "5"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"unhealthy: default voice tiny-voice is not usable: {state}"


async def test_server_not_saying_whether_its_voice_is_usable_fails(serve, capsys) -> None:
    uri = await serve(make_info(["tiny-voice"], state=None))
    assert await async_main(["--uri", uri, "--timeout", "5"]) == 1
    assert "does not say whether its default voice is usable" in capsys.readouterr().err


async def test_dead_port_fails_with_clear_message(capsys) -> None:
    uri = f"tcp://127.0.0.1:{free_port()}"
    assert await async_main(["--uri", uri, "--timeout", "5"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err == f"unhealthy: connection refused at {uri}"


async def test_silent_server_fails_within_timeout(serve, capsys) -> None:
    uri = await serve(None)
    start = time.monotonic()
    assert await async_main(["--uri", uri, "--timeout", "0.5"]) == 1
    assert time.monotonic() - start < 3
    assert "no info from" in capsys.readouterr().err


async def test_server_without_voices_fails(serve, capsys) -> None:
    uri = await serve(make_info([]))
    assert await async_main(["--uri", uri, "--timeout", "5"]) == 1
    assert "no installed TTS program with a voice" in capsys.readouterr().err


async def test_cli_subprocess_exit_codes(serve) -> None:
    uri = await serve(make_info(["tiny-voice"]))
    dead = f"tcp://127.0.0.1:{free_port()}"
    assert await run_cli(uri) == (0, "")
    code, err = await run_cli(dead)
    assert code == 1
    assert err == f"unhealthy: connection refused at {dead}"


async def run_cli(uri: str) -> tuple[int, str]:
    """Run `python -m wyoming_piper_stream.health` as a subprocess."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wyoming_piper_stream.health",
        "--uri",
        uri,
        "--timeout",
        "5",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    return proc.returncode or 0, err.decode().strip()
