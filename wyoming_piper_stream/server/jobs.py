"""Speech jobs: what one audio-start/stop cycle speaks, and what it produced."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SpeechJob:
    """Sentences to speak with one voice, as one audio-start/stop cycle."""

    sentences: tuple[str, ...]
    voice_name: str | None
    speaker: str | None
    trailing_silence: bool = False
    """Silence after the last sentence too (streamed sentences follow each other)."""


@dataclass
class JobStats:
    """What a job produced, for the per-request log line."""

    started: float = field(default_factory=time.perf_counter)
    first_audio: float | None = None
    samples: int = 0

    def add(self, samples: int) -> None:
        if self.first_audio is None:
            self.first_audio = time.perf_counter()
        self.samples += samples
