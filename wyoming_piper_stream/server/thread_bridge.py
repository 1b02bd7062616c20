"""A worker thread's output handed to asyncio, with back-pressure and a stop signal.

The event loop never runs the encoder or decoder: a worker thread produces PCM per
decoded chunk into a small bounded queue (a client that reads slowly stalls only
its own worker), and stops within one chunk when the consumer goes away or the
server shuts down (a worker blocked on a full queue would otherwise keep the
thread pool, and so the process, from ever ending).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

_LOGGER = logging.getLogger(__name__)
_T = TypeVar("_T")


class _Done:
    pass


@dataclass(frozen=True)
class _Failure:
    error: BaseException


_Queue = asyncio.Queue["_T | _Done | _Failure"]


class ThreadedIterator(Generic[_T]):
    """Runs a blocking iterator in an executor and yields its items asynchronously."""

    def __init__(
        self,
        make_iterator: Callable[[threading.Event], Iterator[_T]],
        executor: concurrent.futures.Executor | None = None,
        max_buffered: int = 4,
        shutdown: threading.Event | None = None,
    ) -> None:
        self._make_iterator = make_iterator
        self._executor = executor
        self._max_buffered = max_buffered
        self.stop = threading.Event()
        """Set when the consumer stops reading."""
        self._shutdown = shutdown or threading.Event()
        """Set when the whole server stops: no consumer will read again."""

    def _stopped(self) -> bool:
        return self.stop.is_set() or self._shutdown.is_set()

    async def __aiter__(self) -> AsyncIterator[_T]:
        loop = asyncio.get_running_loop()
        queue: _Queue[_T] = asyncio.Queue(self._max_buffered)
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

    def _produce(self, loop: asyncio.AbstractEventLoop, queue: _Queue[_T]) -> None:
        try:
            for item in self._make_iterator(self.stop):
                if not self._put(loop, queue, item):
                    return
            self._put(loop, queue, _Done())
        except Exception as error:  # handed to the consumer, which reports it
            self._put(loop, queue, _Failure(error))

    def _put(
        self, loop: asyncio.AbstractEventLoop, queue: _Queue[_T], item: _T | _Done | _Failure
    ) -> bool:
        """Blocks while the queue is full; False once the consumer has stopped."""
        if self._stopped():
            return False
        try:
            future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        except RuntimeError:  # loop closed
            return False
        while not self._stopped():
            try:
                future.result(timeout=0.1)
                return True
            except concurrent.futures.TimeoutError:
                continue
        future.cancel()
        return False


def _log_worker_error(worker: asyncio.Future[None]) -> None:
    if not worker.cancelled() and worker.exception() is not None:
        _LOGGER.error("Synthesis worker failed", exc_info=worker.exception())
