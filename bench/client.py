"""Wyoming TTS requests over TCP, timed per audio-chunk, and a simulated player."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from wyoming.audio import AudioChunk, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.info import Describe, Info
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
)

HOST = "127.0.0.1"
"""Benchmarks only ever talk to servers on this machine."""


class RequestFailed(Exception):
    """A request ended without its final event."""


@dataclass
class Trace:
    """One request: when each audio-chunk arrived, relative to the first byte sent."""

    chunks: list[tuple[float, float]] = field(default_factory=list)
    """(arrival seconds, audio seconds) per audio-chunk."""

    end: float = 0.0
    """Seconds to audio-stop (one-shot) or synthesize-stopped (stream)."""

    @property
    def first(self) -> float:
        return self.chunks[0][0] if self.chunks else self.end

    @property
    def audio_seconds(self) -> float:
        return sum(duration for _, duration in self.chunks)

    def underruns(self) -> tuple[int, float]:
        """Underruns of a real-time player that starts at the first chunk.

        An underrun is a chunk that arrives after everything received before it
        has been played; returns (count, total stall seconds).
        """
        if not self.chunks:
            return 0, 0.0
        arrived, duration = self.chunks[0]
        played_out = arrived + duration
        count, stall = 0, 0.0
        for arrived, duration in self.chunks[1:]:
            if arrived > played_out:
                count += 1
                stall += arrived - played_out
                played_out = arrived
            played_out += duration
        return count, stall


async def _read_until(
    client: AsyncTcpClient, started: float, done: Callable[[str], bool], trace: Trace
) -> Trace:
    while True:
        event = await client.read_event()
        now = time.perf_counter() - started
        if event is None:
            raise RequestFailed("connection closed before the end of the audio")
        if AudioChunk.is_type(event.type):
            chunk = AudioChunk.from_event(event)
            samples = len(chunk.audio) // (chunk.width * chunk.channels)
            trace.chunks.append((now, samples / chunk.rate))
        elif event.type == "error":
            raise RequestFailed(f"server error: {event.data}")
        elif done(event.type):
            trace.end = now
            return trace


async def one_shot(client: AsyncTcpClient, text: str) -> Trace:
    """``synthesize`` on a connected client, read until ``audio-stop``."""
    started = time.perf_counter()
    await client.write_event(Synthesize(text=text).event())
    return await _read_until(client, started, AudioStop.is_type, Trace())


async def llm_stream(client: AsyncTcpClient, pieces: list[str], delay: float) -> Trace:
    """What Home Assistant sends for an LLM reply, read until ``synthesize-stopped``.

    synthesize-start, one synthesize-chunk per piece ``delay`` seconds apart, the
    whole text as a plain synthesize (for old servers), then synthesize-stop.
    """
    started = time.perf_counter()
    reader = asyncio.create_task(_read_until(client, started, SynthesizeStopped.is_type, Trace()))
    try:
        await client.write_event(SynthesizeStart().event())
        for piece in pieces:
            await client.write_event(SynthesizeChunk(text=piece).event())
            await asyncio.sleep(delay)
        await client.write_event(Synthesize(text="".join(pieces)).event())
        await client.write_event(SynthesizeStop().event())
        return await reader
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader


async def on_connection(
    port: int, send: Callable[[AsyncTcpClient], Awaitable[Trace]], timeout: float
) -> Trace:
    """Connect, run one request with a time limit, disconnect."""
    async with AsyncTcpClient(HOST, port) as client:
        return await asyncio.wait_for(send(client), timeout)


async def simultaneous(port: int, text: str, clients: int, timeout: float) -> list[Trace]:
    """``clients`` connections, all connected first, then each sends ``text`` at once."""
    async with contextlib.AsyncExitStack() as stack:
        connected = [
            await stack.enter_async_context(AsyncTcpClient(HOST, port)) for _ in range(clients)
        ]
        requests = (asyncio.wait_for(one_shot(c, text), timeout) for c in connected)
        return list(await asyncio.gather(*requests))


async def describe(port: int, timeout: float) -> Info:
    async def ask() -> Info:
        async with AsyncTcpClient(HOST, port) as client:
            await client.write_event(Describe().event())
            while True:
                event = await client.read_event()
                if event is None:
                    raise RequestFailed("connection closed before info")
                if Info.is_type(event.type):
                    return Info.from_event(event)

    return await asyncio.wait_for(ask(), timeout)
