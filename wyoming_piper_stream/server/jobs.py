"""Speech jobs: what one audio-start/stop cycle speaks, and what it produced."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from wyoming_piper_stream.server.stats import RequestRecord


class ClauseFeed:
    """A sentence spoken while it still arrives: its parts, handed from the event loop
    to the job's worker thread (clause streaming, ``clause_policy``)."""

    def __init__(self) -> None:
        self._parts: queue.SimpleQueue[tuple[str, bool]] = queue.SimpleQueue()
        self.chars = 0

    def add(self, text: str, ends_sentence: bool) -> None:
        """The next part; the sentence's last part (``ends_sentence``) may be empty."""
        self.chars += len(text)
        self._parts.put((text, ends_sentence))

    def parts(self, stop: threading.Event) -> Iterator[tuple[str, bool]]:
        """Blocking: (text, the sentence continues after it) until the last part or ``stop``."""
        while not stop.is_set():
            try:
                text, ends_sentence = self._parts.get(timeout=0.1)
            except queue.Empty:
                continue
            yield text, not ends_sentence
            if ends_sentence:
                return


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
    """What a job produced, for the per-request log line and the server's stats."""

    started: float = field(default_factory=time.perf_counter)
    first_audio: float | None = None
    samples: int = 0
    stalls: int = 0
    """Times audio came after what was sent before had played (a real-time player)."""
    _plays_until: float = 0.0

    def add(self, samples: int, rate: int, now: float | None = None) -> None:
        now = time.perf_counter() if now is None else now
        if self.first_audio is None:
            self.first_audio = now
        elif now > self._plays_until:
            self.stalls += 1
        self._plays_until = max(self._plays_until, now) + samples / rate
        self.samples += samples

    def record(self, rate: int) -> RequestRecord:
        """The finished job, for the server's stats."""
        now = time.perf_counter()
        first = (self.first_audio or now) - self.started
        return RequestRecord(first, self.samples / rate, now - self.started, self.stalls)
