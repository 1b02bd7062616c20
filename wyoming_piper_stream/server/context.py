"""What all connections of one server share: settings, voices, the scheduler, workers."""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass, field

from wyoming.info import Info, TtsProgram

from wyoming_piper_stream import __version__
from wyoming_piper_stream.server.scheduler import StepScheduler
from wyoming_piper_stream.server.settings import ServerSettings
from wyoming_piper_stream.server.stats import ServerStats
from wyoming_piper_stream.voices.library import PIPER_ATTRIBUTION, VoiceLibrary


class ConnectionSlots:
    """Open connections, to refuse new ones past the limit (event-loop thread only)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0

    def enter(self) -> bool:
        """Count a new connection; False when it is one too many (it still counts)."""
        self.open += 1
        return self.open <= self.limit

    def leave(self) -> None:
        self.open -= 1


@dataclass(frozen=True)
class ServerContext:
    """The services all connections share (each owns its own state)."""

    settings: ServerSettings
    library: VoiceLibrary
    scheduler: StepScheduler
    executor: concurrent.futures.Executor
    connections: ConnectionSlots
    stats: ServerStats = field(default_factory=ServerStats)

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
