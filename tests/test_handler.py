"""The event handler's state machine, in memory: events in, events out, no sockets.

The handler reads from an ``asyncio.StreamReader`` the test feeds, and writes to
a fake writer whose bytes are parsed back into events. Speech comes from the
tiny single-speaker fixture voice (real, fast, deterministic with noise off).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import cast

import pytest
from conftest import FIXTURES
from server_util import event_bytes
from wyoming.audio import AudioStart
from wyoming.error import Error
from wyoming.event import Event, async_read_event
from wyoming.info import Describe, Info, TtsVoice
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeVoice,
)

from wyoming_piper_stream.engine.errors import ErrorCode
from wyoming_piper_stream.engine.pacing import PlaybackClock
from wyoming_piper_stream.engine.settings import StreamingSettings
from wyoming_piper_stream.engine.voice_config import VoiceError
from wyoming_piper_stream.server.context import ConnectionSlots, ServerContext
from wyoming_piper_stream.server.handler import SpeechEventHandler
from wyoming_piper_stream.server.job_pcm import pcm_for_job
from wyoming_piper_stream.server.jobs import SpeechJob
from wyoming_piper_stream.server.scheduler import StepScheduler
from wyoming_piper_stream.server.settings import ServerSettings, SynthesisSettings
from wyoming_piper_stream.voices.builder import ReadyVoice
from wyoming_piper_stream.voices.library import VoiceLibrary
from wyoming_piper_stream.voices.settings import VoiceLibrarySettings

VOICE = "tiny-single"
SYNTHESIS = SynthesisSettings(noise_scale=0.0, noise_w_scale=0.0)
TIMEOUT = 30.0  # seconds for any one event: bounded, generous for a loaded machine


@pytest.fixture(scope="module")
def ready_voice() -> ReadyVoice:
    settings = VoiceLibrarySettings(default_voice=VOICE, data_dirs=(FIXTURES,), cache_dir=None)
    # Fixed chunk sizes (not paced by measured speed): the same text gives the same bytes.
    streaming = StreamingSettings(adaptive=False)
    return asyncio.run(VoiceLibrary(settings, streaming).get(None))


class StubLibrary:
    """Only the tiny voice; any other name is unknown, as in the real library."""

    def __init__(self, ready: ReadyVoice) -> None:
        self.ready = ready
        self.default_voice_name = VOICE

    async def get(self, name: str | None) -> ReadyVoice:
        if name not in (None, VOICE):
            raise VoiceError(f"unknown voice {name!r}")
        return self.ready

    def describe(self) -> list[TtsVoice]:
        return []

    def default_voice_status(self) -> dict[str, object]:
        return {"name": VOICE, "ready": True, "state": "ready"}


class FakeWriter:
    """Collects what the handler writes and feeds it to a reader the test parses."""

    def __init__(self) -> None:
        self.output = asyncio.StreamReader()
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.output.feed_data(data)

    def writelines(self, lines: Sequence[bytes]) -> None:
        for line in lines:
            self.write(line)

    async def drain(self) -> None:
        if self.closed:
            raise ConnectionResetError("closed")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.output.feed_eof()

    def is_closing(self) -> bool:
        return self.closed

    async def wait_closed(self) -> None:
        return None


class Conversation:
    """One handler, driven through its real ``run`` loop."""

    def __init__(self, handler: SpeechEventHandler, reader: asyncio.StreamReader) -> None:
        self.handler = handler
        self.reader = reader
        self.writer = cast(FakeWriter, handler.writer)
        self.task = asyncio.create_task(handler.run())

    def send(self, *events: Event) -> None:
        """What the client sends, as bytes on the handler's reader."""
        self.reader.feed_data(event_bytes(*events))

    async def receive(self) -> Event | None:
        """The next event the handler wrote; None once it closed the connection."""
        return await asyncio.wait_for(async_read_event(self.writer.output), TIMEOUT)

    async def receive_until(self, event_type: str) -> list[Event]:
        events: list[Event] = []
        while (event := await self.receive()) is not None:
            events.append(event)
            if event.type == event_type:
                return events
        raise AssertionError(f"connection closed before {event_type}: {types(events)}")

    async def hang_up(self) -> list[Event]:
        """Client closes; returns whatever else the handler wrote until it closed."""
        self.reader.feed_eof()
        await asyncio.wait_for(self.task, TIMEOUT)
        rest: list[Event] = []
        while (event := await self.receive()) is not None:
            rest.append(event)
        return rest


Start = Callable[..., Conversation]


@pytest.fixture
def executor() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        yield pool


@pytest.fixture
async def converse(
    ready_voice: ReadyVoice, executor: concurrent.futures.ThreadPoolExecutor
) -> AsyncIterator[Start]:
    """Start a handler (streaming on or off); every handler is ended after the test."""
    started: list[Conversation] = []

    def start(streaming: bool = True) -> Conversation:
        context = ServerContext(
            settings=ServerSettings(streaming=streaming, synthesis=SYNTHESIS),
            library=cast(VoiceLibrary, StubLibrary(ready_voice)),
            scheduler=StepScheduler(1),
            executor=executor,
            connections=ConnectionSlots(32),
        )
        reader = asyncio.StreamReader()
        handler = SpeechEventHandler(context, reader, cast(asyncio.StreamWriter, FakeWriter()))
        conversation = Conversation(handler, reader)
        started.append(conversation)
        return conversation

    yield start
    for conversation in started:
        if not conversation.task.done():
            conversation.reader.feed_eof()
            await asyncio.wait_for(conversation.task, TIMEOUT)


def types(events: Sequence[Event]) -> list[str]:
    return [event.type for event in events]


def cycles(events: Sequence[Event]) -> list[bytes]:
    """PCM per audio-start ... audio-stop cycle; fails on anything out of place."""
    result: list[bytes] = []
    current: bytearray | None = None
    for event in events:
        if event.type == "audio-start":
            assert current is None, types(events)
            current = bytearray()
        elif event.type == "audio-chunk":
            assert current is not None, types(events)
            current += event.payload or b""
        elif event.type == "audio-stop":
            assert current is not None, types(events)
            result.append(bytes(current))
            current = None
    assert current is None, types(events)
    return result


def expected_pcm(ready: ReadyVoice, sentence: str) -> bytes:
    job = SpeechJob(sentences=(sentence,), voice_name=None, speaker=None)
    return b"".join(pcm_for_job(ready, job, SYNTHESIS, None, threading.Event(), PlaybackClock()))


# ---------------------------------------------------------------- tests


async def test_one_shot(converse: Start, ready_voice: ReadyVoice) -> None:
    talk = converse()
    talk.send(Synthesize(text="Hello there.").event())
    events = await talk.receive_until("audio-stop")
    assert types(events)[0] == "audio-start"
    start = AudioStart.from_event(events[0])
    assert (start.rate, start.width, start.channels) == (22050, 2, 1)
    assert cycles(events) == [expected_pcm(ready_voice, "Hello there.")]
    assert await talk.hang_up() == []


async def test_chunk_and_stop_without_start_are_ignored(
    converse: Start, ready_voice: ReadyVoice
) -> None:
    talk = converse()
    talk.send(
        SynthesizeChunk(text="Nobody started this. ").event(),
        SynthesizeStop().event(),
        Synthesize(text="Marker.").event(),  # jobs run in order: anything queued comes first
    )
    events = await talk.receive_until("audio-stop")
    assert cycles(events) == [expected_pcm(ready_voice, "Marker.")]
    assert "synthesize-stopped" not in types(events)
    assert await talk.hang_up() == []


async def test_start_twice_starts_over(converse: Start, ready_voice: ReadyVoice) -> None:
    talk = converse()
    talk.send(
        SynthesizeStart().event(),
        SynthesizeChunk(text="This half sentence is dropped").event(),
        SynthesizeStart().event(),
        SynthesizeChunk(text="Second stream.").event(),
        SynthesizeStop().event(),
    )
    events = await talk.receive_until("synthesize-stopped")
    assert types(events)[-1] == "synthesize-stopped"
    assert cycles(events[:-1]) == [expected_pcm(ready_voice, "Second stream.")]
    assert await talk.hang_up() == []  # one synthesize-stopped only


async def test_synthesize_inside_stream_is_ignored(
    converse: Start, ready_voice: ReadyVoice
) -> None:
    """Home Assistant's order: the whole text again, as a synthesize, before the stop."""
    talk = converse()
    talk.send(
        SynthesizeStart().event(),
        SynthesizeChunk(text="Hello there. Gen").event(),
        SynthesizeChunk(text="eral Kenobi!").event(),
        Synthesize(text="Hello there. General Kenobi!").event(),
        SynthesizeStop().event(),
    )
    events = await talk.receive_until("synthesize-stopped")
    assert cycles(events[:-1]) == [
        expected_pcm(ready_voice, "Hello there."),
        expected_pcm(ready_voice, "General Kenobi!"),
    ]
    assert await talk.hang_up() == []


async def test_synthesize_stopped_after_last_audio_stop(converse: Start) -> None:
    talk = converse()
    talk.send(
        SynthesizeStart().event(),
        *(SynthesizeChunk(text=p).event() for p in ["It is one. It is tw", "o. And", " three"]),
        SynthesizeStop().event(),
    )
    events = await talk.receive_until("synthesize-stopped")
    kinds = types(events)
    assert kinds.count("audio-start") == kinds.count("audio-stop") == 3
    assert kinds[-2:] == ["audio-stop", "synthesize-stopped"]
    assert await talk.hang_up() == []


async def test_two_streams_on_one_connection(converse: Start, ready_voice: ReadyVoice) -> None:
    talk = converse()
    for text in ("First.", "Second."):
        talk.send(
            SynthesizeStart().event(),
            SynthesizeChunk(text=text).event(),
            SynthesizeStop().event(),
        )
        events = await talk.receive_until("synthesize-stopped")
        assert cycles(events[:-1]) == [expected_pcm(ready_voice, text)]
    assert await talk.hang_up() == []


async def test_no_streaming_ignores_stream_events(converse: Start, ready_voice: ReadyVoice) -> None:
    talk = converse(streaming=False)
    talk.send(Describe().event())
    info = Info.from_event((await talk.receive_until("info"))[-1])
    assert info.tts[0].supports_synthesize_streaming is False

    talk.send(
        SynthesizeStart().event(),
        SynthesizeChunk(text="Streamed text. ").event(),
        Synthesize(text="Hello there.").event(),  # spoken: there is no stream to be inside
        SynthesizeStop().event(),
        Synthesize(text="Marker.").event(),  # jobs run in order: anything queued comes first
    )
    events = await talk.receive_until("audio-stop")
    events += await talk.receive_until("audio-stop")
    assert cycles(events) == [
        expected_pcm(ready_voice, "Hello there."),
        expected_pcm(ready_voice, "Marker."),
    ]
    assert "synthesize-stopped" not in types(events)
    assert await talk.hang_up() == []


async def test_unknown_voice_error_then_closed(converse: Start) -> None:
    talk = converse()
    talk.send(
        Synthesize(text="Hi.", voice=SynthesizeVoice(name="nobody")).event(),
        Synthesize(text="Not spoken.").event(),
    )
    event = await talk.receive()
    assert event is not None and event.type == "error"
    assert "nobody" in Error.from_event(event).text
    assert await talk.receive() is None  # the handler closed the connection
    await asyncio.wait_for(talk.task, TIMEOUT)


async def test_unknown_voice_in_stream_error_then_closed(converse: Start) -> None:
    talk = converse()
    talk.send(
        SynthesizeStart(voice=SynthesizeVoice(name="nobody")).event(),
        SynthesizeChunk(text="Hello there. ").event(),
        SynthesizeStop().event(),
    )
    event = await talk.receive()
    assert event is not None and event.type == "error"
    assert await talk.receive() is None  # no synthesize-stopped: the exchange ends here
    await asyncio.wait_for(talk.task, TIMEOUT)


async def test_describe_between_sentences_of_a_stream(converse: Start) -> None:
    """describe is answered inside a stream and leaves the stream intact."""
    talk = converse()
    talk.send(
        SynthesizeStart().event(),
        SynthesizeChunk(text="One sentence. And").event(),
        Describe().event(),
        SynthesizeChunk(text=" another.").event(),
        SynthesizeStop().event(),
    )
    events = await talk.receive_until("synthesize-stopped")
    kinds = types(events)
    assert kinds.count("info") == 1
    assert len(cycles([e for e in events if e.type != "info"][:-1])) == 2


def test_error_codes_are_the_documented_strings() -> None:
    """Clients may match on codes: renaming an exception class must not change them."""
    assert {code.name: code.value for code in ErrorCode} == {
        "PROTOCOL": "protocol",
        "REQUEST": "request",
        "BUSY": "busy",
        "VOICE": "voice",
        "PHONEMIZER": "phonemizer",
        "DOWNLOAD": "download",
        "SYNTHESIS": "synthesis",
    }


@pytest.mark.parametrize(
    ("sent", "code"),
    [
        (Synthesize("Hi.", SynthesizeVoice(name="nobody")).event(), "voice"),
        (Synthesize("Hi.", SynthesizeVoice(name=VOICE, speaker="nobody")).event(), "voice"),
        (Event("synthesize", {"text": 5}), "request"),
        (Event("synthesize", {}), "request"),
        (b"this is not json\n", "protocol"),
    ],
)
async def test_each_failure_has_its_stable_code(
    converse: Start, sent: Event | bytes, code: str
) -> None:
    talk = converse()
    if isinstance(sent, bytes):
        talk.reader.feed_data(sent)
    else:
        talk.send(sent)
    event = await talk.receive()
    assert event is not None and event.type == "error"
    assert Error.from_event(event).code == code
    assert await talk.receive() is None
    await asyncio.wait_for(talk.task, TIMEOUT)
