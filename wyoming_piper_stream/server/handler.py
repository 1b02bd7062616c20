"""Wyoming event handler: one per connection; reads events, writes replies, ends clearly.

Requests become speech jobs in ``speech_requests``; ``job_runner`` speaks them in a
task of its own, so a disconnect is noticed at once and stops the job. After an
error the handler sends ``error`` and closes the connection: Home Assistant never
reads ``error`` and would otherwise wait forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from wyoming.error import Error
from wyoming.event import Event, async_read_event
from wyoming.info import Describe
from wyoming.server import AsyncEventHandler
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop

from wyoming_piper_stream.engine.errors import ErrorCode
from wyoming_piper_stream.server.context import ServerContext
from wyoming_piper_stream.server.job_runner import JobRunner
from wyoming_piper_stream.server.speech_requests import RequestError, SpeechRequests, Work

_LOGGER = logging.getLogger(__name__)
_BAD_EVENT = (KeyError, TypeError, AttributeError, ValueError)  # what wyoming raises on bad JSON


class SpeechEventHandler(AsyncEventHandler):
    """Handles one client's connection."""

    def __init__(self, context: ServerContext, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.context = context
        self._requests = SpeechRequests(context.settings, context.scheduler.clock)
        self.jobs = JobRunner(context, self.write_event, self._fail, self.stop)
        self._recheck: asyncio.TimerHandle | None = None  # a held-back clause may fall due
        self._failed = False  # an error was sent: it is the last event of the connection

    async def run(self) -> None:
        """Like wyoming's loop, but bad input and idle clients get a clear end."""
        admitted = self.context.connections.enter(self)
        try:
            if not admitted:
                await self._fail("server busy: too many connections", ErrorCode.BUSY)
                return
            while (event := await self._read_event()) is not None:
                if not await self.handle_event(event):
                    break
        except ConnectionError:
            # e.g. Home Assistant gave up on describe (1 s) and closed before the info
            _LOGGER.info("Client went away before reading the reply")
        finally:
            await self.disconnect()
            self.writer.close()
            self.context.connections.leave(self)

    async def _read_event(self) -> Event | None:
        """The next event; None at the end (EOF, idle or unreadable input)."""
        idle_timeout = self.context.settings.limits.idle_timeout
        while True:
            try:
                event = await asyncio.wait_for(async_read_event(self.reader), idle_timeout)
                break
            except TimeoutError:
                if self.jobs.pending == 0:
                    _LOGGER.info("Closing idle connection")
                    return None  # a client waiting for audio is not idle: read on
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                _LOGGER.info("Connection ended in the middle of an event")
                return None
            except _BAD_EVENT as error:
                await self._fail(f"malformed event: {error!r}", ErrorCode.PROTOCOL)
                return None
        if event is None and not self.reader.at_eof():
            # wyoming returns None for a line that is not JSON
            await self._fail("malformed event: not a JSON event line", ErrorCode.PROTOCOL)
        return event

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
            await self.write_event(self.context.info_event())
            return True
        try:
            self.jobs.add(self._dispatch(event))
            self._schedule_recheck()
        except _BAD_EVENT as error:
            await self._fail(f"bad {event.type} event: {error!r}", ErrorCode.REQUEST)
            return False
        except RequestError as error:
            await self._fail(str(error), error.code)
            return False
        return True

    def _dispatch(self, event: Event) -> list[Work]:
        if isinstance(event.data, dict) and event.data.get("voice", {}) is None:
            # "voice": null means the default voice (a copy: the event stays as sent)
            event = Event(event.type, {k: v for k, v in event.data.items() if k != "voice"})
        requests = self._requests
        if Synthesize.is_type(event.type):
            request = Synthesize.from_event(event)
            return requests.synthesize(request.text, request.voice)
        if not self.context.settings.streaming:
            _LOGGER.debug("Ignoring %s: streaming is off", event.type)
            return []
        if SynthesizeStart.is_type(event.type):
            return requests.start(SynthesizeStart.from_event(event).voice)
        if SynthesizeChunk.is_type(event.type):
            return requests.chunk(SynthesizeChunk.from_event(event).text)
        if SynthesizeStop.is_type(event.type):
            return requests.stop()
        _LOGGER.debug("Ignoring event %s", event.type)
        return []

    async def _fail(self, message: str, code: ErrorCode) -> None:
        _LOGGER.warning("Request failed: %s", message)
        if not self._failed and not self.writer.is_closing():
            self.context.stats.record_failure()
            # Set before the write: while it drains, the job task and the read loop run,
            # and neither may write after the error (nor send a second one).
            self._failed = True
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._send(Error(text=message, code=code.value).event())
        await self.stop()

    def _schedule_recheck(self) -> None:
        """Ask the clause policy again when a clause it holds back may fall due."""
        if self._recheck is not None:
            self._recheck.cancel()
            self._recheck = None
        when = self._requests.recheck_at()
        if when is not None and not self._failed:
            delay = max(0.0, when - self.context.scheduler.clock())
            self._recheck = asyncio.get_running_loop().call_later(delay, self._on_recheck)

    def _on_recheck(self) -> None:
        self._recheck = None
        if self._failed:
            return
        self.jobs.add(self._requests.poll())
        self._schedule_recheck()

    async def disconnect(self) -> None:
        if self._recheck is not None:
            self._recheck.cancel()
        self.jobs.cancel()

    def abort(self) -> None:
        """Close the connection now, dropping unsent audio (a client may have stopped reading)."""
        self._failed = True  # nothing more is written
        self.writer.transport.abort()
