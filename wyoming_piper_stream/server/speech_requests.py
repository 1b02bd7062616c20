"""Synthesize events -> speech jobs: the one-shot and the streamed-text state machine.

One-shot: ``synthesize`` -> one job (all its sentences, one audio-start/stop cycle).
Streamed: ``synthesize-start``, ``synthesize-chunk``* -> one job per finished
sentence, ``synthesize-stop`` -> the rest, then ``synthesize-stopped``. A sentence
may start before it ends (``clause_policy``): its job then takes its parts as they
come, in the sentence's one audio-start/stop cycle. Home
Assistant repeats the whole text as a ``synthesize`` inside a stream for older
servers: it is ignored. The jobs of one stream share one playback clock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from wyoming.tts import SynthesizeVoice

from wyoming_piper_stream.engine.errors import ErrorCode, SpeechError
from wyoming_piper_stream.engine.pacing import Clock, PlaybackClock
from wyoming_piper_stream.server.clause_policy import ClausePolicy, TextPiece
from wyoming_piper_stream.server.jobs import ClauseFeed, SpeechJob
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
    clauses: ClauseFeed | None = field(default=None, compare=False)
    """A sentence spoken while it arrives: its parts (instead of ``job.sentences``)."""


@dataclass(frozen=True)
class StreamStopped:
    """Marker after a stream's last job: send ``synthesize-stopped``."""


Work = QueuedJob | StreamStopped


@dataclass
class _TextStream:
    """State of one synthesize-start ... synthesize-stop exchange."""

    voice: SynthesizeVoice | None
    clock: PlaybackClock
    policy: ClausePolicy
    """Finds the sentences, and the clauses to speak before their sentence ends."""
    chars: int = 0
    feed: ClauseFeed | None = None
    """The sentence being spoken while it still arrives, if any."""


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
        self._end_stream()
        policy = ClausePolicy(self.settings.clauses)
        self._stream = _TextStream(voice, PlaybackClock(now=self.clock), policy)
        return []

    def chunk(self, text: object) -> list[Work]:
        stream = self._stream
        if stream is None:
            _LOGGER.warning("Ignoring synthesize-chunk outside a stream")
            return []
        stream.chars += len(_checked_text(text))
        self._check_length(stream.chars)
        pieces = stream.policy.add(str(text), self.clock(), stream.clock.ahead())
        return self._pieces(stream, pieces)

    def poll(self) -> list[Work]:
        """No new text: a clause the policy held back may be due now."""
        stream = self._stream
        if stream is None:
            return []
        return self._pieces(stream, stream.policy.poll(self.clock(), stream.clock.ahead()))

    def recheck_at(self) -> float | None:
        """When ``poll`` may have work if no text arrives (on ``clock``); None: never."""
        stream = self._stream
        if stream is None:
            return None
        return stream.policy.recheck_at(self.clock(), stream.clock.ahead())

    def stop(self) -> list[Work]:
        stream = self._stream
        if stream is None:
            _LOGGER.warning("Ignoring synthesize-stop outside a stream")
            return []
        last = self._pieces(stream, stream.policy.finish(self.clock()), trailing=False)
        self._end_stream()
        return [*last, StreamStopped()]

    def _pieces(
        self, stream: _TextStream, pieces: list[TextPiece], trailing: bool = True
    ) -> list[Work]:
        """Sentences become jobs; the parts of a sentence spoken while it arrives go to
        that sentence's one job, in order."""
        work: list[Work] = []
        auto = self.settings.synthesis.auto_punctuation
        for piece in pieces:
            text = punctuate(piece.text, auto if piece.ends_sentence else "")
            if stream.feed is None and piece.ends_sentence:
                if text:
                    work.append(self._queued([text], stream.voice, stream.clock, trailing))
                continue
            if stream.feed is None:
                stream.feed = ClauseFeed()
                queued = self._queued([], stream.voice, stream.clock, trailing)
                work.append(QueuedJob(queued.job, queued.clock, stream.feed))
            stream.feed.add(text, piece.ends_sentence)
            if piece.ends_sentence:
                stream.feed = None
        return work

    def _end_stream(self) -> None:
        """Forget the stream; a sentence it left open ends where it is."""
        stream, self._stream = self._stream, None
        if stream is not None and stream.feed is not None:
            stream.feed.add("", ends_sentence=True)
        if stream is not None and stream.policy.early_pieces:
            count = stream.policy.early_pieces
            _LOGGER.info("Spoke %d clause(s) before their sentence ended", count)

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
        clock.expect_text([len(s) for s in sentences])  # the pacing plans with it
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
