"""What all connections of one server share: settings, voices, the scheduler, workers."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from dataclasses import dataclass, field
from typing import Protocol

from wyoming.event import Event
from wyoming.info import Info, TtsProgram

from wyoming_piper_stream import __version__
from wyoming_piper_stream.server.scheduler import StepScheduler
from wyoming_piper_stream.server.settings import ServerSettings
from wyoming_piper_stream.server.stats import ServerStats
from wyoming_piper_stream.server.status import DEFAULT_VOICE, STATUS_KEY
from wyoming_piper_stream.voices.library import PIPER_ATTRIBUTION, VoiceLibrary


class Connection(Protocol):
    def abort(self) -> None:
        """Close at once, dropping unsent data."""


class ConnectionSlots:
    """Open connections: counted to refuse new ones past the limit, closed at shutdown
    (event-loop thread only)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: set[Connection] = set()
        self._none_open = asyncio.Event()
        self._none_open.set()

    @property
    def open(self) -> int:
        return len(self._open)

    def enter(self, connection: Connection) -> bool:
        """Count a new connection; False when it is one too many (it still counts)."""
        self._open.add(connection)
        self._none_open.clear()
        return self.open <= self.limit

    def leave(self, connection: Connection) -> None:
        self._open.discard(connection)
        if not self._open:
            self._none_open.set()

    async def close_all(self, timeout: float) -> bool:
        """Drop every connection at once (unsent audio too); False if some outlive it."""
        for connection in list(self._open):
            connection.abort()
        try:
            async with asyncio.timeout(timeout):
                await self._none_open.wait()
        except TimeoutError:
            return False
        return True


@dataclass(frozen=True)
class ServerContext:
    """The services all connections share (each owns its own state)."""

    settings: ServerSettings
    library: VoiceLibrary
    scheduler: StepScheduler
    executor: concurrent.futures.Executor
    connections: ConnectionSlots
    stats: ServerStats = field(default_factory=ServerStats)
    shutdown: threading.Event = field(default_factory=threading.Event)
    """Set when the server stops: synthesis workers end at their next chunk."""

    def info_event(self) -> Event:
        """Info, plus whether the default voice is usable (read by ``health``)."""
        event = self.info().event()
        event.data[STATUS_KEY] = {DEFAULT_VOICE: self.library.default_voice_status()}
        return event

    def info(self) -> Info:
        return Info(
            tts=[
                TtsProgram(
                    name="wyoming-piper-stream",
                    description="Piper text to speech, streamed chunk by chunk",
                    attribution=PIPER_ATTRIBUTION,
                    installed=True,
                    version=__version__,
                    voices=self.library.describe(),
                    supports_synthesize_streaming=self.settings.streaming,
                )
            ]
        )
