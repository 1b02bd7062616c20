"""The page's "try it" goes through the server's own Wyoming handler.

A socket pair connects an in-process client to a handler made by the same factory
the Wyoming server uses, so a page request takes the same path as Home Assistant's:
limits, the step scheduler (it waits its turn like any client), stats.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from wyoming.event import Event, async_read_event, async_write_event
from wyoming.tts import Synthesize, SynthesizeVoice

CLOSE_TIMEOUT = 5.0
"""Seconds the handler may take to end after the page's connection closed."""


class EventHandler(Protocol):
    async def run(self) -> None: ...


HandlerFactory = Callable[[asyncio.StreamReader, asyncio.StreamWriter], EventHandler]


@contextlib.asynccontextmanager
async def local_connection(
    factory: HandlerFactory,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A Wyoming connection to a handler in this process; closed (and awaited) at the end."""
    ours, theirs = socket.socketpair()
    server_reader, server_writer = await asyncio.open_connection(sock=theirs)
    handler_task = asyncio.create_task(factory(server_reader, server_writer).run())
    reader, writer = await asyncio.open_connection(sock=ours)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(handler_task, CLOSE_TIMEOUT)


async def request_speech(
    writer: asyncio.StreamWriter, text: str, voice: str | None, speaker: str | None
) -> None:
    target = SynthesizeVoice(name=voice, speaker=speaker) if voice or speaker else None
    await async_write_event(Synthesize(text=text, voice=target).event(), writer)


async def next_event(reader: asyncio.StreamReader, timeout: float) -> Event | None:
    """The handler's next event; None when it closed the connection."""
    return await asyncio.wait_for(async_read_event(reader), timeout)
