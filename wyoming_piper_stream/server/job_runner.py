"""Speaking one connection's jobs in order: voice, worker thread, audio events out.

Jobs run one after another in a task of their own, so the connection's read loop
notices a disconnect at once and stops the job. Synthesis runs in a worker thread
(``thread_bridge``); its PCM goes out as audio-start, audio-chunk*, audio-stop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event
from wyoming.tts import SynthesizeStopped

from wyoming_piper_stream.engine.errors import ErrorCode, SpeechError
from wyoming_piper_stream.server.context import ServerContext
from wyoming_piper_stream.server.jobs import JobStats
from wyoming_piper_stream.server.speech_requests import QueuedJob, Work
from wyoming_piper_stream.server.thread_bridge import ThreadedIterator

if TYPE_CHECKING:
    from wyoming_piper_stream.voices.builder import ReadyVoice

_LOGGER = logging.getLogger(__name__)
_SAMPLE_WIDTH = 2
_CHANNELS = 1

WriteEvent = Callable[[Event], Awaitable[None]]
Fail = Callable[[str, ErrorCode], Awaitable[None]]
Drop = Callable[[], Awaitable[None]]


class JobRunner:
    """Runs the work a connection's requests add, in order, in one task."""

    def __init__(self, context: ServerContext, write: WriteEvent, fail: Fail, drop: Drop) -> None:
        self.context = context
        self._write = write
        self._fail = fail
        self._drop = drop
        self._queue: asyncio.Queue[Work] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.pending = 0
        """Work queued or running: the client is waiting for audio, not idle."""

    def add(self, work: list[Work]) -> None:
        for item in work:
            self.pending += 1
            self._queue.put_nowait(item)
        if work and self._task is None:
            self._task = asyncio.create_task(self._run(), name="speech jobs")

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def finished(self) -> None:
        """Returns once the job task has ended (after ``cancel``: has unwound)."""
        if self._task is not None:
            await asyncio.wait({self._task})

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                if isinstance(item, QueuedJob):
                    await self._speak(item)
                else:
                    await self._write(SynthesizeStopped().event())
            except SpeechError as error:
                await self._fail(str(error), error.code)
                return
            except (ConnectionError, asyncio.IncompleteReadError) as error:
                _LOGGER.info("Dropping client during synthesis: %s", error or "gone")
                await self._drop()
                return
            except Exception as error:
                _LOGGER.exception("Synthesis failed")
                await self._fail(f"synthesis failed: {error}", ErrorCode.SYNTHESIS)
                return
            finally:
                self.pending -= 1

    async def _speak(self, queued: QueuedJob) -> None:
        job = queued.job
        if not job.sentences and queued.clauses is None:
            await self._write(AudioStop().event())
            return
        stats = JobStats()
        library = self.context.library
        ready = await library.get(job.voice_name)
        speaker = job.speaker
        if speaker is None and ready.voice.name == library.default_voice_name:
            speaker = self.context.settings.synthesis.speaker
        speaker_id = ready.voice.speaker_id(speaker)
        await self._send_audio(ready, queued, speaker_id, stats)
        self.context.stats.record(stats.record(ready.voice.config.sample_rate))
        _log(ready, queued, stats)

    async def _send_audio(
        self, ready: ReadyVoice, queued: QueuedJob, speaker_id: int | None, stats: JobStats
    ) -> None:
        from wyoming_piper_stream.server import job_pcm  # numpy & co.: loaded with the voice

        rate = ready.voice.config.sample_rate
        settings = self.context.settings.synthesis
        piece_bytes = settings.samples_per_chunk * _SAMPLE_WIDTH * _CHANNELS
        with self.context.scheduler.job(queued.clock, arrived=stats.started) as gate:
            pcm = ThreadedIterator(
                lambda stop: job_pcm.pcm_for_job(
                    ready,
                    queued.job,
                    settings,
                    speaker_id,
                    stop,
                    queued.clock,
                    gate,
                    queued.clauses,
                ),
                self.context.executor,
                shutdown=self.context.shutdown,
            )
            await self._write(AudioStart(rate, _SAMPLE_WIDTH, _CHANNELS).event())
            async for audio in pcm:
                stats.add(len(audio) // _SAMPLE_WIDTH, rate)
                for offset in range(0, len(audio), piece_bytes):
                    piece = audio[offset : offset + piece_bytes]
                    await self._write(AudioChunk(rate, _SAMPLE_WIDTH, _CHANNELS, piece).event())
        await self._write(AudioStop().event())


def _log(ready: ReadyVoice, queued: QueuedJob, stats: JobStats) -> None:
    total = time.perf_counter() - stats.started
    audio_seconds = stats.samples / ready.voice.config.sample_rate
    first = (stats.first_audio or time.perf_counter()) - stats.started
    _LOGGER.info(
        "Spoke %d chars with %s: first audio %.0f ms, %.2f s audio, RTF %.3f",
        sum(map(len, queued.job.sentences)) + (queued.clauses.chars if queued.clauses else 0),
        ready.voice.name,
        first * 1000,
        audio_seconds,
        total / audio_seconds if audio_seconds else 0.0,
    )
