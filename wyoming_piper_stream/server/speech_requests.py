"""Synthesize events -> speech jobs: the one-shot and the streamed-text state machine.

One-shot: ``synthesize`` -> one job (all its sentences, one audio-start/stop cycle).
Streamed: ``synthesize-start``, ``synthesize-chunk``* -> one job per finished
sentence, ``synthesize-stop`` -> the rest, then ``synthesize-stopped``. Home
Assistant repeats the whole text as a ``synthesize`` inside a stream for older
servers: it is ignored. The jobs of one stream share one playback clock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sentence_stream import SentenceBoundaryDetector
from wyoming.tts import SynthesizeVoice

from wyoming_piper_stream.engine.errors import ErrorCode, SpeechError
from wyoming_piper_stream.engine.pacing import Clock, PlaybackClock
from wyoming_piper_stream.server.jobs import SpeechJob
from wyoming_piper_stream.server.sentences import punctuate, split_sentences
from wyoming_piper_stream.server.settings import ServerSettings

_LOGGER = logging.getLogger(__name__)


class RequestError(SpeechError):
    """A request we refuse, with a message for the client."""

    code = ErrorCode.REQUEST


@dataclass(frozen=True)
class QueuedJob:
    """A job and the playback clock of the exchange it belongs to."""

    job: SpeechJob
    clock: PlaybackClock = field(compare=False)


@dataclass(frozen=True)
class StreamStopped:
    """Marker after a stream's last job: send ``synthesize-stopped``."""


Work = QueuedJob | StreamStopped


@dataclass
class _TextStream:
    """State of one synthesize-start ... synthesize-stop exchange."""

    voice: SynthesizeVoice | None
    clock: PlaybackClock
    detector: SentenceBoundaryDetector = field(default_factory=SentenceBoundaryDetector)
    chars: int = 0


class SpeechRequests:
    """One connection's requests; each method returns the work it adds, in order."""

    def __init__(self, settings: ServerSettings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock  # the scheduler's: playback clocks must share it
        self._stream: _TextStream | None = None

    def synthesize(self, text: object, voice: SynthesizeVoice | None) -> list[Work]:
        if self._stream is not None:
            return []  # Home Assistant repeats the whole text inside a stream
        checked = _checked_text(text)
        _check_voice(voice)
        self._check_length(len(checked))
        sentences = split_sentences(checked, self.settings.synthesis.auto_punctuation)
        return [self._queued(sentences, voice, PlaybackClock(now=self.clock))]

    def start(self, voice: SynthesizeVoice | None) -> list[Work]:
        if self._stream is not None:
            _LOGGER.warning("synthesize-start inside a stream: starting over")
        _check_voice(voice)
        self._stream = _TextStream(voice=voice, clock=PlaybackClock(now=self.clock))
        return []

    def chunk(self, text: object) -> list[Work]:
        stream = self._stream
        if stream is None:
            _LOGGER.warning("Ignoring synthesize-chunk outside a stream")
            return []
        stream.chars += len(_checked_text(text))
        self._check_length(stream.chars)
        sentences = stream.detector.add_chunk(str(text))
        return [self._sentence(stream, s, trailing=True) for s in sentences if s.strip()]

    def stop(self) -> list[Work]:
        stream = self._stream
        if stream is None:
            _LOGGER.warning("Ignoring synthesize-stop outside a stream")
            return []
        self._stream = None
        rest = stream.detector.finish()
        last = [self._sentence(stream, rest)] if rest.strip() else []
        return [*last, StreamStopped()]

    def _sentence(self, stream: _TextStream, sentence: str, trailing: bool = False) -> Work:
        text = punctuate(sentence, self.settings.synthesis.auto_punctuation)
        return self._queued([text], stream.voice, stream.clock, trailing)

    def _queued(
        self,
        sentences: list[str],
        voice: SynthesizeVoice | None,
        clock: PlaybackClock,
        trailing: bool = False,
    ) -> QueuedJob:
        job = SpeechJob(
            sentences=tuple(sentences),
            voice_name=voice.name if voice else None,
            speaker=voice.speaker if voice else None,
            trailing_silence=trailing,
        )
        return QueuedJob(job, clock)

    def _check_length(self, chars: int) -> None:
        limit = self.settings.limits.max_text_chars
        if chars > limit:
            raise RequestError(f"text too long: {chars} characters (limit {limit})")


def _checked_text(text: object) -> str:
    if not isinstance(text, str):
        raise RequestError(f"text must be a string, not {type(text).__name__}")
    return text


def _check_voice(voice: SynthesizeVoice | None) -> None:
    """Names are looked up, speakers parsed: anything but text (or a speaker id) is refused."""
    if voice is None:
        return
    if voice.name is not None and not isinstance(voice.name, str):
        raise RequestError(f"voice name must be a string, not {type(voice.name).__name__}")
    speaker = voice.speaker
    if speaker is not None and (isinstance(speaker, bool) or not isinstance(speaker, str | int)):
        raise RequestError(f"voice speaker must be a string, not {type(speaker).__name__}")
