"""Wyoming event handler: one per connection, a small state machine.

Events are read continuously while speech jobs run one after another in a
task of their own, so a disconnect is noticed at once and stops the job.
After an error the handler sends ``error`` and closes the connection: Home
Assistant never reads ``error`` and would otherwise wait forever.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sentence_stream import SentenceBoundaryDetector
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event, async_read_event
from wyoming.info import Describe, Info, TtsProgram
from wyoming.server import AsyncEventHandler
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

from wyoming_piper_stream import __version__
from wyoming_piper_stream.engine.errors import ErrorCode, SpeechError
from wyoming_piper_stream.engine.pacing import PlaybackClock
from wyoming_piper_stream.server.jobs import JobStats, SpeechJob
from wyoming_piper_stream.server.scheduler import StepScheduler
from wyoming_piper_stream.server.sentences import punctuate, split_sentences
from wyoming_piper_stream.server.settings import ServerSettings
from wyoming_piper_stream.server.thread_bridge import ThreadedIterator
from wyoming_piper_stream.voices.library import PIPER_ATTRIBUTION, VoiceLibrary

if TYPE_CHECKING:
    from wyoming_piper_stream.voices.builder import ReadyVoice

_LOGGER = logging.getLogger(__name__)
_SAMPLE_WIDTH = 2
_CHANNELS = 1


class RequestError(SpeechError):
    """A request we refuse, with a message for the client."""

    code = ErrorCode.REQUEST


@dataclass
class ConnectionCount:
    """Open connections, to refuse new ones past the limit."""

    open: int = 0


@dataclass(frozen=True)
class ServerContext:
    """What all connections share."""

    settings: ServerSettings
    library: VoiceLibrary
    scheduler: StepScheduler
    executor: concurrent.futures.Executor
    connections: ConnectionCount

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


@dataclass
class _TextStream:
    """State of one synthesize-start ... synthesize-stop exchange."""

    voice: SynthesizeVoice | None
    detector: SentenceBoundaryDetector
    chars: int = 0
    clock: PlaybackClock = field(default_factory=PlaybackClock)
    """Its sentences play one after another: chunk sizes follow one playback clock."""


_STOPPED = object()  # job marker: send synthesize-stopped


class SpeechEventHandler(AsyncEventHandler):
    """Handles one client's events."""

    def __init__(self, context: ServerContext, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.context = context
        self._stream: _TextStream | None = None
        self._jobs: asyncio.Queue[SpeechJob | object] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._pending = 0  # jobs queued or running: the client is waiting, not idle
        self._failed = False  # an error was sent: it is the last event of the connection

    async def run(self) -> None:
        """Like wyoming's loop, but bad input and idle clients get a clear end."""
        limits = self.context.settings.limits
        self.context.connections.open += 1
        try:
            if self.context.connections.open > limits.max_connections:
                await self._fail("server busy: too many connections", ErrorCode.BUSY)
                return
            while (event := await self._read_event(limits.idle_timeout)) is not None:
                if not await self.handle_event(event):
                    break
        except ConnectionError:
            # e.g. Home Assistant gave up on describe (1 s) and closed before the info
            _LOGGER.info("Client went away before reading the reply")
        finally:
            self.context.connections.open -= 1
            await self.disconnect()
            self.writer.close()

    async def _read_event(self, idle_timeout: float) -> Event | None:
        """The next event; None at the end (EOF, idle or unreadable input)."""
        try:
            event = await asyncio.wait_for(async_read_event(self.reader), idle_timeout)
        except TimeoutError:
            if self._busy():
                return await self._read_event(idle_timeout)
            _LOGGER.info("Closing idle connection")
            return None
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            _LOGGER.info("Connection ended in the middle of an event")
            return None
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            await self._fail(f"malformed event: {error!r}", ErrorCode.PROTOCOL)
            return None
        if event is None and not self.reader.at_eof():
            # wyoming returns None for a line that is not JSON
            await self._fail("malformed event: not a JSON event line", ErrorCode.PROTOCOL)
        return event

    def _busy(self) -> bool:
        return self._pending > 0

    async def write_event(self, event: Event) -> None:
        """Nothing follows an error, nothing goes to a closed connection."""
        if self._failed or self.writer.is_closing():
            raise ConnectionError("connection already ended")
        await self._send(event)

    async def _send(self, event: Event) -> None:
        """A client that stops reading is dropped rather than holding a synthesis slot."""
        timeout = self.context.settings.limits.write_timeout
        try:
            # Not wait_for: on Python 3.11 it swallows a cancel that lands as the write
            # completes, and a worker cancelled at disconnect would live on.
            async with asyncio.timeout(timeout):
                await super().write_event(event)
        except TimeoutError as error:
            raise ConnectionError(f"client did not read for {timeout:.0f} s") from error

    async def handle_event(self, event: Event) -> bool:
        if Describe.is_type(event.type):
            await self.write_event(self.context.info().event())
            return True
        try:
            self._dispatch(event)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            await self._fail(f"bad {event.type} event: {error!r}", ErrorCode.REQUEST)
            return False
        except RequestError as error:
            await self._fail(str(error), error.code)
            return False
        return True

    def _dispatch(self, event: Event) -> None:
        if isinstance(event.data, dict) and event.data.get("voice", {}) is None:
            event.data.pop("voice")  # "voice": null means the default voice
        if Synthesize.is_type(event.type):
            self._on_synthesize(Synthesize.from_event(event))
        elif not self.context.settings.streaming:
            _LOGGER.debug("Ignoring %s: streaming is off", event.type)
        elif SynthesizeStart.is_type(event.type):
            self._on_start(SynthesizeStart.from_event(event))
        elif SynthesizeChunk.is_type(event.type):
            self._on_chunk(SynthesizeChunk.from_event(event))
        elif SynthesizeStop.is_type(event.type):
            self._on_stop()
        else:
            _LOGGER.debug("Ignoring event %s", event.type)

    def _on_synthesize(self, request: Synthesize) -> None:
        if self._stream is not None:
            # Home Assistant repeats the whole text inside a stream for old servers.
            return
        _check_text(request.text)
        _check_voice(request.voice)
        self._check_length(len(request.text))
        sentences = split_sentences(request.text, self.context.settings.synthesis.auto_punctuation)
        self._submit(_job(sentences, request.voice, PlaybackClock()))

    def _on_start(self, start: SynthesizeStart) -> None:
        if self._stream is not None:
            _LOGGER.warning("synthesize-start inside a stream: starting over")
        _check_voice(start.voice)
        self._stream = _TextStream(voice=start.voice, detector=SentenceBoundaryDetector())

    def _on_chunk(self, chunk: SynthesizeChunk) -> None:
        if self._stream is None:
            _LOGGER.warning("Ignoring synthesize-chunk outside a stream")
            return
        _check_text(chunk.text)
        self._stream.chars += len(chunk.text)
        self._check_length(self._stream.chars)
        auto = self.context.settings.synthesis.auto_punctuation
        for sentence in self._stream.detector.add_chunk(chunk.text):
            if sentence.strip():
                stream = self._stream
                self._submit(_job([punctuate(sentence, auto)], stream.voice, stream.clock, True))

    def _on_stop(self) -> None:
        if self._stream is None:
            _LOGGER.warning("Ignoring synthesize-stop outside a stream")
            return
        rest = self._stream.detector.finish()
        if rest.strip():
            auto = self.context.settings.synthesis.auto_punctuation
            self._submit(_job([punctuate(rest, auto)], self._stream.voice, self._stream.clock))
        self._submit(_STOPPED)
        self._stream = None

    def _check_length(self, chars: int) -> None:
        limit = self.context.settings.limits.max_text_chars
        if chars > limit:
            raise RequestError(f"text too long: {chars} characters (limit {limit})")

    def _submit(self, job: SpeechJob | object) -> None:
        self._pending += 1
        self._jobs.put_nowait(job)
        if self._worker is None:
            self._worker = asyncio.create_task(self._run_jobs(), name="speech jobs")

    async def _run_jobs(self) -> None:
        while True:
            job = await self._jobs.get()
            try:
                if isinstance(job, SpeechJob):
                    await self._speak(job)
                else:
                    await self.write_event(SynthesizeStopped().event())
            except SpeechError as error:
                await self._fail(str(error), error.code)
                return
            except (ConnectionError, asyncio.IncompleteReadError) as error:
                _LOGGER.info("Dropping client during synthesis: %s", error or "gone")
                await self.stop()
                return
            except Exception as error:
                _LOGGER.exception("Synthesis failed")
                await self._fail(f"synthesis failed: {error}", ErrorCode.SYNTHESIS)
                return
            finally:
                self._pending -= 1

    async def _speak(self, job: SpeechJob) -> None:
        if not job.sentences:
            await self.write_event(AudioStop().event())
            return
        stats = JobStats()
        ready = await self.context.library.get(job.voice_name)
        speaker = job.speaker
        if speaker is None and ready.voice.name == self.context.library.default_voice_name:
            speaker = self.context.settings.synthesis.speaker
        speaker_id = ready.voice.speaker_id(speaker)
        await self._send_audio(ready, job, speaker_id, stats)
        self._log(ready, job, stats)

    async def _send_audio(
        self, ready: ReadyVoice, job: SpeechJob, speaker_id: int | None, stats: JobStats
    ) -> None:
        from wyoming_piper_stream.server import (
            job_pcm,  # numpy & co.: loaded by now with the voice itself
        )

        rate = ready.voice.config.sample_rate
        settings = self.context.settings.synthesis
        piece_bytes = settings.samples_per_chunk * _SAMPLE_WIDTH * _CHANNELS
        gate = self.context.scheduler.gate(job.clock, arrived=stats.started)
        pcm = ThreadedIterator(
            lambda stop: job_pcm.pcm_for_job(ready, job, settings, speaker_id, stop, gate),
            self.context.executor,
        )
        await self.write_event(AudioStart(rate, _SAMPLE_WIDTH, _CHANNELS).event())
        async for audio in pcm:
            stats.add(len(audio) // _SAMPLE_WIDTH)
            for offset in range(0, len(audio), piece_bytes):
                piece = audio[offset : offset + piece_bytes]
                await self.write_event(AudioChunk(rate, _SAMPLE_WIDTH, _CHANNELS, piece).event())
        await self.write_event(AudioStop().event())

    def _log(self, ready: ReadyVoice, job: SpeechJob, stats: JobStats) -> None:
        total = time.perf_counter() - stats.started
        audio_seconds = stats.samples / ready.voice.config.sample_rate
        first = (stats.first_audio or time.perf_counter()) - stats.started
        _LOGGER.info(
            "Spoke %d chars with %s: first audio %.0f ms, %.2f s audio, RTF %.3f",
            sum(len(s) for s in job.sentences),
            ready.voice.name,
            first * 1000,
            audio_seconds,
            total / audio_seconds if audio_seconds else 0.0,
        )

    async def _fail(self, message: str, code: ErrorCode) -> None:
        _LOGGER.warning("Request failed: %s", message)
        if not self._failed and not self.writer.is_closing():
            # Set before the write: while it drains, the job task and the read loop run,
            # and neither may write after the error (nor send a second one).
            self._failed = True
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._send(Error(text=message, code=code.value).event())
        await self.stop()

    async def disconnect(self) -> None:
        if self._worker is not None:
            self._worker.cancel()


def _check_text(text: object) -> None:
    if not isinstance(text, str):
        raise RequestError(f"text must be a string, not {type(text).__name__}")


def _check_voice(voice: SynthesizeVoice | None) -> None:
    """Names are looked up, speakers parsed: anything but text (or a speaker id) is refused."""
    if voice is None:
        return
    if voice.name is not None and not isinstance(voice.name, str):
        raise RequestError(f"voice name must be a string, not {type(voice.name).__name__}")
    speaker = voice.speaker
    if speaker is not None and (isinstance(speaker, bool) or not isinstance(speaker, str | int)):
        raise RequestError(f"voice speaker must be a string, not {type(speaker).__name__}")


def _job(
    sentences: list[str],
    voice: SynthesizeVoice | None,
    clock: PlaybackClock,
    trailing: bool = False,
) -> SpeechJob:
    return SpeechJob(
        sentences=tuple(sentences),
        voice_name=voice.name if voice else None,
        speaker=voice.speaker if voice else None,
        trailing_silence=trailing,
        clock=clock,
    )
