"""Speech jobs, sentence splitting, and a worker thread's output handed to asyncio.

The event loop never runs the encoder or decoder: a worker thread produces
PCM per decoded chunk into a small bounded queue (back-pressure: a client that
reads slowly stalls only its own worker), and stops within one chunk when the
consumer goes away. The synthesis itself is in ``speech`` (numpy, onnxruntime),
which the server imports only once a voice is loading.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from sentence_stream import SentenceBoundaryDetector

from .pacing import PlaybackClock

_LOGGER = logging.getLogger(__name__)
_T = TypeVar("_T")


@dataclass(frozen=True)
class SpeechJob:
    """Sentences to speak with one voice, as one audio-start/stop cycle."""

    sentences: tuple[str, ...]
    voice_name: str | None
    speaker: str | None
    trailing_silence: bool = False
    """Silence after the last sentence too (streamed sentences follow each other)."""

    clock: PlaybackClock = field(default_factory=PlaybackClock, compare=False)
    """The listener's playback so far; the jobs of one text stream share it."""


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


def split_sentences(text: str, auto_punctuation: str) -> list[str]:
    """Sentences as wyoming-piper finds them, with missing end punctuation added."""
    detector = SentenceBoundaryDetector()
    sentences = list(detector.add_chunk(text))
    sentences.append(detector.finish())
    return [punctuate(s, auto_punctuation) for s in sentences if s.strip()]


# Characters espeak-ng cannot take (NUL fails the whole request, a lone surrogate cannot
# be encoded) and other control characters: read as a space, so the words around them
# are still spoken. Whitespace controls (tab, newline, ...) are left to the line handling.
_UNSPEAKABLE = {
    code: " "
    for code in (*range(0x00, 0x20), *range(0x7F, 0xA0), *range(0xD800, 0xE000))
    if not chr(code).isspace()
}


def punctuate(sentence: str, auto_punctuation: str) -> str:
    text = " ".join(sentence.translate(_UNSPEAKABLE).strip().splitlines())
    if auto_punctuation and text and text[-1] not in auto_punctuation:
        text += auto_punctuation[0]
    return text


class _Done:
    pass


@dataclass(frozen=True)
class _Failure:
    error: BaseException


class ThreadedIterator(Generic[_T]):
    """Runs a blocking iterator in an executor and yields its items asynchronously."""

    def __init__(
        self,
        make_iterator: Callable[[threading.Event], Iterator[_T]],
        executor: concurrent.futures.Executor | None = None,
        max_buffered: int = 4,
    ) -> None:
        self._make_iterator = make_iterator
        self._executor = executor
        self._max_buffered = max_buffered
        self.stop = threading.Event()

    async def __aiter__(self) -> AsyncIterator[_T]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[_T | _Done | _Failure] = asyncio.Queue(self._max_buffered)
        worker = loop.run_in_executor(self._executor, self._produce, loop, queue)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, _Done):
                    break
                if isinstance(item, _Failure):
                    raise item.error
                yield item
        finally:
            self.stop.set()
            worker.add_done_callback(_log_worker_error)

    def _produce(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> None:
        try:
            for item in self._make_iterator(self.stop):
                if not self._put(loop, queue, item):
                    return
            self._put(loop, queue, _Done())
        except Exception as error:  # handed to the consumer, which reports it
            self._put(loop, queue, _Failure(error))

    def _put(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue, item: object) -> bool:
        """Blocks while the queue is full; False once the consumer has stopped."""
        try:
            future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        except RuntimeError:  # loop closed
            return False
        while not self.stop.is_set():
            try:
                future.result(timeout=0.1)
                return True
            except concurrent.futures.TimeoutError:
                continue
        future.cancel()
        return False


def _log_worker_error(worker: asyncio.Future) -> None:
    if not worker.cancelled() and worker.exception() is not None:
        _LOGGER.error("Synthesis worker failed", exc_info=worker.exception())
