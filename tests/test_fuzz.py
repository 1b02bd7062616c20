"""Random event sequences against the in-memory handler: whatever arrives, the exchange ends well.

Hypothesis draws up to 12 events (describe, synthesize, the streaming trio, audio
events, unknown types) with random data (keys missing, values of the wrong type,
any unicode text, lone surrogates included) and feeds them, as bytes, to a real
``SpeechEventHandler`` with the real voice library (tiny fixture voices, noise off),
back to back or with short pauses so that audio flows in between. The fake socket
yields to other tasks on every drain, as a real one under back-pressure does. After
its last event the client either hangs up or waits until the handler closes the idle
connection. ``FUZZ_EXAMPLES=1000`` explores more. Invariants, for every sequence:

- ``run()`` returns (within a time limit) and no task fails unnoticed;
- the connection is closed at the end, and nothing is written after the close;
- an ``audio-start`` never comes inside an audio cycle; a cycle left open at the
  end means an ``error`` ended the connection or the client hung up;
- an ``error`` is the last event written;
- ``synthesize-stopped`` answers a ``synthesize-stop`` of a started stream: never
  more of them, and, when the client waited and no error came, exactly as many.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from conftest import FIXTURES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wyoming.event import Event, read_event

from wyoming_piper_stream.engine.settings import StreamingSettings
from wyoming_piper_stream.server.context import ConnectionSlots, ServerContext
from wyoming_piper_stream.server.handler import SpeechEventHandler
from wyoming_piper_stream.server.scheduler import StepScheduler
from wyoming_piper_stream.server.settings import LimitSettings, ServerSettings, SynthesisSettings
from wyoming_piper_stream.voices.library import VoiceLibrary
from wyoming_piper_stream.voices.settings import VoiceLibrarySettings

VOICE = "tiny-single"
MULTI = "tiny-multi"
SYNTHESIS = SynthesisSettings(noise_scale=0.0, noise_w_scale=0.0)
LIMITS = LimitSettings(
    max_concurrent_synthesis=2, max_text_chars=60, idle_timeout=0.2, write_timeout=5.0
)
EXAMPLE_TIMEOUT = 60.0
"""Seconds one event sequence may take, end to end (speech of at most 12 short texts)."""


# ---------------------------------------------------------------- strategies

JSON_LEAF = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
JUNK = st.recursive(
    JSON_LEAF,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
"""Any JSON value: where a field should be, something else."""

WORDS = st.sampled_from(
    ["Hello there.", "One. Two", " and three!", "", "  ", "Is it? ", "Bye", "a" * 70]
)
TEXT = (
    WORDS
    | st.text(max_size=30)
    | st.text(st.characters(categories=["Cs", "Cc", "So", "Zs", "Ll"]), max_size=12)
)
"""Sensible text, any unicode text, and surrogates, controls and symbols among letters."""

VOICE_DATA = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from([VOICE, MULTI, "nobody", "../tiny-single", ""]) | JUNK,
        "speaker": st.sampled_from(["alice", "bob", "dave", "0", "2", "7"]) | JUNK,
        "language": st.sampled_from(["en_US", "xx"]) | JUNK,
    },
)
VOICE_FIELD = VOICE_DATA | JUNK

TEXT_DATA = st.fixed_dictionaries({}, optional={"text": TEXT | JUNK})
SYNTHESIZE_DATA = st.fixed_dictionaries({}, optional={"text": TEXT | JUNK, "voice": VOICE_FIELD})
START_DATA = st.fixed_dictionaries({}, optional={"voice": VOICE_FIELD})
ANY_DATA = st.dictionaries(st.text(max_size=6), JUNK, max_size=3)


@dataclass(frozen=True)
class Sent:
    """One event as the client sends it."""

    type: str
    data: Any
    payload: bytes = b""
    wait: float = 0.0
    """Seconds the client waits before sending it (0: in the same write as the one before)."""


WAIT = st.sampled_from([0.0, 0.0, 0.0, 0.002, 0.03])
"""Mostly back to back; sometimes long enough for audio to flow in between."""


def sent(event_type: str, data: st.SearchStrategy[Any], payload: bool = False) -> st.SearchStrategy:
    payloads = st.binary(max_size=64) if payload else st.just(b"")
    return st.builds(Sent, st.just(event_type), data, payloads, WAIT)


EVENT = st.one_of(
    sent("describe", ANY_DATA),
    sent("synthesize", SYNTHESIZE_DATA),
    sent("synthesize", SYNTHESIZE_DATA),
    sent("synthesize-start", START_DATA),
    sent("synthesize-chunk", TEXT_DATA),
    sent("synthesize-chunk", TEXT_DATA),
    sent("synthesize-stop", ANY_DATA),
    sent("synthesize-stop", st.just({})),
    sent("audio-start", ANY_DATA),
    sent("audio-chunk", ANY_DATA, payload=True),
    sent("audio-stop", ANY_DATA),
    sent("synthesize", JUNK),
    st.builds(
        Sent,
        st.sampled_from(["no-such-event", "info", "error", "synthesize-stopped", "transcribe"])
        | st.text(max_size=10),
        ANY_DATA | JUNK,
        st.just(b""),
        WAIT,
    ),
)


def wire(events: Sequence[Sent]) -> bytes:
    """Events as JSON lines; escapes (``ensure_ascii``) let lone surrogates through."""
    out = bytearray()
    for event in events:
        header: dict[str, Any] = {"type": event.type, "data": event.data, "version": "1.10.2"}
        if event.payload:
            header["payload_length"] = len(event.payload)
        out += json.dumps(header).encode() + b"\n" + event.payload
    return bytes(out)


# ---------------------------------------------------------------- the handler in memory


class RecordingWriter:
    """Stands in for the socket: keeps the bytes written, and any written after the close."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False
        self.after_close = 0

    def write(self, data: bytes) -> None:
        if self.closed:
            self.after_close += len(data)
        else:
            self.data += data

    def writelines(self, lines: Sequence[bytes]) -> None:
        for line in lines:
            self.write(line)

    async def drain(self) -> None:
        await asyncio.sleep(0)  # a socket under back-pressure: other tasks run meanwhile
        if self.closed:
            raise ConnectionResetError("closed")

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    async def wait_closed(self) -> None:
        return None


@dataclass
class Outcome:
    events: list[Event]
    closed: bool
    after_close: int
    unhandled: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def library() -> VoiceLibrary:
    """The real library on the fixture voices, with both tiny voices loaded beforehand."""
    voices = VoiceLibrarySettings(
        default_voice=VOICE, data_dirs=(FIXTURES,), max_voices=3, cache_dir=None
    )
    loaded = VoiceLibrary(voices, StreamingSettings(adaptive=False))

    async def load() -> None:
        await loaded.get(None)
        await loaded.get(MULTI)

    asyncio.run(load())
    return loaded


class TrackingExecutor(concurrent.futures.ThreadPoolExecutor):
    """A synthesis pool that remembers its work, to wait for all of it after the connection."""

    def __init__(self) -> None:
        super().__init__(2, thread_name_prefix="fuzz-synth")
        self.futures: list[concurrent.futures.Future[Any]] = []

    def submit(self, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future = super().submit(*args, **kwargs)
        self.futures.append(future)
        return future


async def converse(
    library: VoiceLibrary,
    events: Sequence[Sent],
    hang_up: bool,
    streaming: bool,
) -> Outcome:
    unhandled: list[str] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: unhandled.append(str(context.get("message"))))
    executor = TrackingExecutor()
    context = ServerContext(
        settings=ServerSettings(streaming=streaming, synthesis=SYNTHESIS, limits=LIMITS),
        library=library,
        scheduler=StepScheduler(LIMITS.max_concurrent_synthesis),
        executor=executor,
        connections=ConnectionSlots(LIMITS.max_connections),
    )
    reader = asyncio.StreamReader()
    writer = RecordingWriter()
    handler = SpeechEventHandler(context, reader, cast(asyncio.StreamWriter, writer))
    running = asyncio.create_task(handler.run())
    for event in events:
        if event.wait:
            await asyncio.sleep(event.wait)
        if writer.closed:  # the handler ended the connection: the rest is not read
            break
        reader.feed_data(wire([event]))
    if hang_up and not writer.closed:
        reader.feed_eof()
    # Without a hang-up, the handler ends the connection itself: by an error, or idle.
    await running
    await handler.jobs.finished()  # cancelled by run(): let it finish unwinding
    # Synthesis threads stop within a chunk once the connection is gone.
    await asyncio.gather(*(asyncio.wrap_future(f) for f in executor.futures))
    executor.shutdown()
    parsed: list[Event] = []
    stream = io.BytesIO(bytes(writer.data))
    while (event := read_event(stream)) is not None:
        parsed.append(event)
    assert stream.tell() == len(writer.data), "written bytes are not whole events"
    return Outcome(parsed, writer.closed, writer.after_close, unhandled)


def stops_answered(events: Sequence[Sent], streaming: bool) -> int:
    """synthesize-stop events that end a started stream: each earns one synthesize-stopped."""
    if not streaming:
        return 0
    count, open_stream = 0, False
    for event in events:
        if event.type == "synthesize-start":
            open_stream = True
        elif event.type == "synthesize-stop" and open_stream:
            count += 1
            open_stream = False
    return count


def check(outcome: Outcome, events: Sequence[Sent], hang_up: bool, streaming: bool) -> None:
    kinds = [event.type for event in outcome.events]
    assert outcome.unhandled == [], outcome.unhandled
    assert outcome.closed, f"connection left open after {kinds}"
    assert outcome.after_close == 0, f"{outcome.after_close} bytes written after the close"

    errored = "error" in kinds
    if errored:
        assert kinds.index("error") == len(kinds) - 1, f"events after the error: {kinds}"

    in_cycle = False
    for kind in kinds:
        if kind == "audio-start":
            assert not in_cycle, f"audio-start inside an audio cycle: {kinds}"
            in_cycle = True
        elif kind == "audio-chunk":
            assert in_cycle, f"audio-chunk outside an audio cycle: {kinds}"
        elif kind == "audio-stop":
            in_cycle = False  # a bare audio-stop answers a request with nothing to say
        elif kind == "synthesize-stopped":
            assert not in_cycle, f"synthesize-stopped inside an audio cycle: {kinds}"
    assert not in_cycle or errored or hang_up, f"audio cycle never ended: {kinds}"

    answered = stops_answered(events, streaming)
    assert kinds.count("synthesize-stopped") <= answered, kinds
    if not errored and not hang_up:
        assert kinds.count("synthesize-stopped") == answered, f"a stream left waiting: {kinds}"


@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
@given(
    events=st.lists(EVENT, max_size=12),
    hang_up=st.booleans(),
    streaming=st.booleans() | st.just(True),
)
def test_random_event_sequences(
    library: VoiceLibrary,
    events: list[Sent],
    hang_up: bool,
    streaming: bool,
) -> None:
    async def bounded() -> Outcome:
        return await asyncio.wait_for(
            converse(library, events, hang_up, streaming), EXAMPLE_TIMEOUT
        )

    check(asyncio.run(bounded()), events, hang_up, streaming)
