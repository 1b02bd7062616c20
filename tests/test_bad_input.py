"""Bad input never costs another client its audio: one real server, every kind of bad input.

Each test sends one class of bad input (over a raw socket where the Wyoming client
cannot produce it), checks the defined outcome, and then checks on a new connection
that the server still speaks ``Still here.`` with the same number of samples as before
(with the tiny fixture voice, so the check is cheap; the bad requests use joe).

Input class -> outcome:

- not a JSON line, binary garbage, a JSON array/string/number, ``{}``, invalid UTF-8,
  a line over 64 KiB, a bad ``data_length`` -> ``error`` (code ``protocol``), closed
- unknown event type -> ignored: a describe after it on the same connection answers
- synthesize-chunk/-stop without start, audio events sent to us -> ignored
- synthesize-start twice -> the stream starts over (the first one's text is dropped)
- synthesize with text missing, a number, null, a list; bad ``voice`` -> ``error``, closed
- empty or whitespace-only text -> ``audio-stop`` and no audio
- text over ``--max-text-chars`` (one-shot or streamed) -> ``error`` "too long", closed
- one 2000-letter word -> speech (the connection is not idle while it is spoken)
- emoji, control characters (NUL too) and lone surrogates among words -> audio of the words
- emoji only -> ends with ``audio-stop``
- a header promising more bytes than arrive, then the client closes -> nothing; serving
- unknown voice or speaker, a voice name that is a path -> ``error`` naming it, closed
- a connection past ``--max-connections`` -> ``error`` "busy", closed; the others unaffected
- a silent connection (new, after describe, mid-stream) -> closed after ``--idle-timeout``
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from server_util import (
    ERROR_TIMEOUT,
    EVENT_TIMEOUT,
    MULTI,
    Reply,
    ServerProcess,
    audio_cycles,
    event_bytes,
    host_port,
    make_data_dir,
    run_server,
    synthesize,
)
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event, async_read_event
from wyoming.info import Describe
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeVoice,
)

MAX_TEXT_CHARS = 2000
MAX_CONNECTIONS = 16
IDLE_TIMEOUT = 3.0
RATE = 22050
WIDTH = 2
STILL_HERE = "Still here."
PROBE_VOICE = SynthesizeVoice(name=MULTI, speaker="alice")
"""The alive check speaks with the tiny voice: 30x faster than joe."""
LONG_WORD_TIMEOUT = 180.0
"""Seconds to speak one 2000-letter word (about 12 s of audio) on a loaded machine."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the module: joe, the tiny 3-speaker voice, small limits."""
    root = tmp_path_factory.mktemp("bad-input")
    data_dir = make_data_dir(root / "voices")
    limits = (
        "--max-text-chars",
        str(MAX_TEXT_CHARS),
        "--max-connections",
        str(MAX_CONNECTIONS),
        "--idle-timeout",
        str(IDLE_TIMEOUT),
    )
    with run_server(root, "--data-dir", str(data_dir), *limits) as running:
        running.data_dir = data_dir
        yield running
    # Whatever the clients sent, nothing crashed (run_server checked the exit code).
    assert "Traceback" not in running.log(), running.log_tail()


@pytest.fixture(scope="module")
def still_here_bytes(server: ServerProcess) -> int:
    """Bytes of PCM in ``Still here.`` (noise off: every rendering has this length)."""
    events, pcm = asyncio.run(synthesize(server.uri, STILL_HERE, PROBE_VOICE))
    assert len(audio_cycles(events)) == 1
    assert len(pcm) > 0
    return len(pcm)


async def assert_still_serving(server: ServerProcess, expected_bytes: int) -> None:
    """A new connection still gets the whole of ``Still here.``."""
    assert server.process.poll() is None, server.log_tail()
    events, pcm = await synthesize(server.uri, STILL_HERE, PROBE_VOICE)
    assert [len(cycle) for cycle in audio_cycles(events)] == [expected_bytes], [
        event.type for event in events if event.type != "audio-chunk"
    ]
    assert len(pcm) == expected_bytes


# ---------------------------------------------------------------- raw connections


@dataclass
class Connection:
    """A raw TCP connection: send any bytes, read events back (every read bounded)."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read(self, timeout: float) -> Event | None:
        """The next event; None once the server has closed the connection."""
        try:
            return await asyncio.wait_for(async_read_event(self.reader), timeout)
        except TimeoutError:
            raise TimeoutError(f"the server sent nothing for {timeout} s") from None
        except (ConnectionError, asyncio.IncompleteReadError):
            return None

    async def read_until(self, until: str | None, timeout: float = ERROR_TIMEOUT) -> Reply:
        """Events up to ``until`` or until the server closes (``until=None``: until closed)."""
        events: list[Event] = []
        while (event := await self.read(timeout)) is not None:
            events.append(event)
            if event.type == until:
                return Reply(events, closed=False)
        return Reply(events, closed=True)


@contextlib.asynccontextmanager
async def connect(server: ServerProcess) -> AsyncIterator[Connection]:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(*host_port(server.uri)), ERROR_TIMEOUT
    )
    try:
        yield Connection(reader, writer)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), ERROR_TIMEOUT)


async def send_raw(
    server: ServerProcess, data: bytes, until: str | None = None, timeout: float = ERROR_TIMEOUT
) -> Reply:
    """A new connection: ``data``, then the events up to ``until`` or the connection's end."""
    async with connect(server) as connection:
        await connection.send(data)
        return await connection.read_until(until, timeout)


def types(reply: Reply) -> list[str]:
    return [t for t in reply.types if t != "audio-chunk"]


def the_error(reply: Reply) -> Error:
    """The reply is exactly one error event, then the server closed the connection."""
    assert reply.closed, f"connection left open after {reply.types}"
    assert reply.types == ["error"], types(reply)
    return Error.from_event(reply.events[0])


def seconds(pcm: bytes) -> float:
    return len(pcm) / (RATE * WIDTH)


async def assert_still_answers(connection: Connection, expected_bytes: int) -> None:
    """The same connection answers describe and speaks, so the bad input was ignored."""
    await connection.send(event_bytes(Describe().event()))
    reply = await connection.read_until("info")
    assert reply.types == ["info"], types(reply)
    await connection.send(event_bytes(Synthesize(text=STILL_HERE, voice=PROBE_VOICE).event()))
    reply = await connection.read_until("audio-stop", EVENT_TIMEOUT)
    assert [len(cycle) for cycle in audio_cycles(reply.events)] == [expected_bytes], types(reply)


# ---------------------------------------------------------------- framing


def with_data(data: bytes) -> bytes:
    """A synthesize header whose extra data block is ``data``, as is."""
    return b'{"type": "synthesize", "data_length": %d}\n' % len(data) + data


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b'{"type": "synthesize", "data": {"text": \n', id="malformed-json"),
        pytest.param(bytes(range(256)) + b"\n", id="binary-garbage"),
        pytest.param(b"\xff\xfe\x00garbage\x00\x01\x02\n", id="garbage-utf16-bom"),
        pytest.param(b"x" * 100_000 + b"\n", id="line-over-64k"),
        pytest.param(b'[{"type": "describe"}]\n', id="json-array"),
        pytest.param(b'"describe"\n', id="json-string"),
        pytest.param(b"42\n", id="json-number"),
        pytest.param(b"{}\n", id="no-type"),
        pytest.param(b'{"type": "synthesize", "data": {"text": "Hi \xff\xfe"}}\n', id="bad-utf8"),
        pytest.param(with_data(b'{"text": "Hi \xff\xfe."}'), id="bad-utf8-in-data"),
        pytest.param(b'{"type": "synthesize", "data_length": "9"}\n', id="data-length-string"),
        pytest.param(with_data(b"[1, 2]"), id="data-not-an-object"),
    ],
)
async def test_unreadable_event_is_an_error_then_closed(
    server: ServerProcess, still_here_bytes: int, data: bytes
) -> None:
    # A describe right behind the bad line: the server must not skip to it.
    error = the_error(await send_raw(server, data + event_bytes(Describe().event())))
    assert error.code == "protocol"
    assert "malformed event" in error.text
    await assert_still_serving(server, still_here_bytes)


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(Event("no-such-event", {"text": "Hello."}), id="unknown-type"),
        pytest.param(Event("transcribe", {"language": "en"}), id="other-service"),
        pytest.param(Event("", {}), id="empty-type"),
    ],
)
async def test_unknown_event_type_is_ignored(
    server: ServerProcess, still_here_bytes: int, event: Event
) -> None:
    async with connect(server) as connection:
        await connection.send(event_bytes(event))
        await assert_still_answers(connection, still_here_bytes)


async def test_event_type_that_is_a_number_is_ignored(
    server: ServerProcess, still_here_bytes: int
) -> None:
    async with connect(server) as connection:
        await connection.send(b'{"type": 5, "data": {"text": "Hello."}}\n')
        await assert_still_answers(connection, still_here_bytes)


@pytest.mark.parametrize(
    ("header", "sent"),
    [
        pytest.param(b'{"type": "synthesize", "data_length": 100}\n', b'{"text": "He', id="data"),
        pytest.param(
            b'{"type": "audio-chunk", "payload_length": 100000}\n', b"\x00" * 999, id="payload"
        ),
        pytest.param(b'{"type": "synthesize", "data": {"te', b"", id="half-a-line"),
    ],
)
async def test_client_closes_inside_an_event(
    server: ServerProcess, still_here_bytes: int, header: bytes, sent: bytes
) -> None:
    async with connect(server) as connection:
        await connection.send(header + sent)
    await assert_still_serving(server, still_here_bytes)


# ---------------------------------------------------------------- events in the wrong order


async def test_chunk_and_stop_without_start_are_ignored(
    server: ServerProcess, still_here_bytes: int
) -> None:
    async with connect(server) as connection:
        await connection.send(
            event_bytes(
                SynthesizeChunk(text="Nobody started this. ").event(), SynthesizeStop().event()
            )
        )
        await assert_still_answers(connection, still_here_bytes)
        # No synthesize-stopped for the stop without a start arrived before the audio-stop.


async def test_start_twice_starts_over(server: ServerProcess, still_here_bytes: int) -> None:
    reply = await send_raw(
        server,
        event_bytes(
            SynthesizeStart(voice=PROBE_VOICE).event(),
            SynthesizeChunk(text="This half sentence is drop").event(),
            SynthesizeStart(voice=PROBE_VOICE).event(),
            SynthesizeChunk(text=STILL_HERE).event(),
            SynthesizeStop().event(),
        ),
        until="synthesize-stopped",
        timeout=EVENT_TIMEOUT,
    )
    assert not reply.closed, types(reply)
    assert reply.types.count("synthesize-stopped") == 1
    assert [len(cycle) for cycle in audio_cycles(reply.events[:-1])] == [still_here_bytes]


async def test_audio_events_sent_to_the_server_are_ignored(
    server: ServerProcess, still_here_bytes: int
) -> None:
    async with connect(server) as connection:
        await connection.send(
            event_bytes(
                AudioStart(RATE, WIDTH, 1).event(),
                AudioChunk(RATE, WIDTH, 1, bytes(4096)).event(),
                AudioStop().event(),
            )
        )
        await assert_still_answers(connection, still_here_bytes)


# ---------------------------------------------------------------- synthesize data


@pytest.mark.parametrize(
    ("data", "says"),
    [
        pytest.param({}, "text", id="no-text"),
        pytest.param({"text": 42}, "string", id="text-number"),
        pytest.param({"text": None}, "string", id="text-null"),
        pytest.param({"text": ["Hello."]}, "string", id="text-list"),
        pytest.param({"text": "Hi.", "voice": "name"}, "synthesize", id="voice-string"),
        pytest.param({"text": "Hi.", "voice": {"name": ["joe"]}}, "voice", id="voice-name-list"),
        pytest.param({"text": "Hi.", "voice": {"name": 7}}, "voice", id="voice-name-number"),
        pytest.param(
            {"text": "Hi.", "voice": {"name": MULTI, "speaker": {"id": 1}}},
            "speaker",
            id="speaker-dict",
        ),
    ],
)
async def test_bad_synthesize_data_is_an_error_then_closed(
    server: ServerProcess, still_here_bytes: int, data: dict[str, object], says: str
) -> None:
    # A valid request queued behind it: the exchange still ends at the error.
    send = event_bytes(Event("synthesize", data), Synthesize(text="Not spoken.").event())
    error = the_error(await send_raw(server, send))
    assert says in error.text
    await assert_still_serving(server, still_here_bytes)


async def test_voice_null_means_the_default_voice(server: ServerProcess) -> None:
    null_voice = Event("synthesize", {"text": "Hi.", "voice": None})
    with_null = await send_raw(server, event_bytes(null_voice), "audio-stop")
    without = await send_raw(server, event_bytes(Synthesize(text="Hi.").event()), "audio-stop")
    assert "error" not in with_null.types
    assert len(with_null.pcm) == len(without.pcm) > 0


async def test_bad_chunk_text_in_a_stream_is_an_error_then_closed(
    server: ServerProcess, still_here_bytes: int
) -> None:
    send = event_bytes(
        SynthesizeStart().event(),
        Event("synthesize-chunk", {"text": 42}),
        SynthesizeStop().event(),
    )
    assert "string" in the_error(await send_raw(server, send)).text
    await assert_still_serving(server, still_here_bytes)


@pytest.mark.parametrize("text", ["", "   ", " \n\t \r\n "])
async def test_empty_text_ends_with_audio_stop(
    server: ServerProcess, still_here_bytes: int, text: str
) -> None:
    reply = await send_raw(server, event_bytes(Synthesize(text=text).event()), "audio-stop")
    assert not reply.closed, types(reply)
    assert "error" not in reply.types
    assert reply.pcm == b""
    await assert_still_serving(server, still_here_bytes)


async def test_text_over_the_limit_is_an_error_then_closed(
    server: ServerProcess, still_here_bytes: int
) -> None:
    text = "Hello there. " * (MAX_TEXT_CHARS // 13 + 1)
    assert len(text) > MAX_TEXT_CHARS
    error = the_error(await send_raw(server, event_bytes(Synthesize(text=text).event())))
    assert "too long" in error.text
    await assert_still_serving(server, still_here_bytes)


async def test_streamed_text_over_the_limit_is_an_error_then_closed(
    server: ServerProcess, still_here_bytes: int
) -> None:
    piece = "a b c d e f g h i j " * 10  # no sentence end: nothing is spoken before the limit
    pieces = [SynthesizeChunk(text=piece).event() for _ in range(MAX_TEXT_CHARS // len(piece) + 1)]
    send = event_bytes(SynthesizeStart().event(), *pieces, SynthesizeStop().event())
    assert "too long" in the_error(await send_raw(server, send)).text
    await assert_still_serving(server, still_here_bytes)


async def test_one_very_long_word_is_spoken(server: ServerProcess, still_here_bytes: int) -> None:
    """2000 letters, under the limit: speech (longer than the idle timeout to speak)."""
    word = "abcdefghij" * 200
    reply = await send_raw(
        server, event_bytes(Synthesize(text=word).event()), "audio-stop", LONG_WORD_TIMEOUT
    )
    assert not reply.closed, types(reply)
    assert len(audio_cycles(reply.events)) == 1
    assert seconds(reply.pcm) > 5.0  # the letters are spelled out
    await assert_still_serving(server, still_here_bytes)


def ascii_synthesize(text: str) -> bytes:
    """A synthesize line with JSON escapes: it can carry lone surrogates (``\\ud800``)."""
    return json.dumps({"type": "synthesize", "data": {"text": text}}).encode() + b"\n"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("Hello 😀 there, 🎉🎉 my good friend 👍🏽!", id="emoji"),
        pytest.param("Hello\x00 there\x07, my\x1b[31m good\x7f friend\x9b!", id="control"),
        pytest.param("Hello \ud800there, my \udfff good friend!", id="lone-surrogates"),
        pytest.param("\x00😀 Hello\u200b there\ufeff, my\x00\x00 good friend\x01🎉", id="mixed"),
    ],
)
async def test_words_among_emoji_and_control_characters_are_spoken(
    server: ServerProcess, still_here_bytes: int, text: str
) -> None:
    reply = await send_raw(server, ascii_synthesize(text), "audio-stop")
    assert not reply.closed, types(reply)
    assert "error" not in reply.types
    assert len(audio_cycles(reply.events)) == 1
    assert seconds(reply.pcm) > 0.3
    await assert_still_serving(server, still_here_bytes)


@pytest.mark.parametrize("text", ["😀🎉👍🏽", "\x00\x01\x02", "\u200b\ufeff\u2060"])
async def test_text_without_words_ends_with_audio_stop(
    server: ServerProcess, still_here_bytes: int, text: str
) -> None:
    reply = await send_raw(server, event_bytes(Synthesize(text=text).event()), "audio-stop")
    assert not reply.closed, types(reply)
    assert "error" not in reply.types
    await assert_still_serving(server, still_here_bytes)


# ---------------------------------------------------------------- voices


BAD_VOICES = {
    "unknown-voice": (SynthesizeVoice(name="no-such-voice"), "no-such-voice"),
    "unknown-speaker": (SynthesizeVoice(name=MULTI, speaker="dave"), "dave"),
    "speaker-id-too-big": (SynthesizeVoice(name=MULTI, speaker="7"), "7"),
    "relative-path": (SynthesizeVoice(name="../../etc/passwd"), "../../etc/passwd"),
    "absolute-path": (SynthesizeVoice(name="/etc/passwd"), "/etc/passwd"),
    "windows-path": (SynthesizeVoice(name="C:\\x"), "C:\\x"),
    "up-to-a-voice": (SynthesizeVoice(name=f"../{MULTI}"), f"../{MULTI}"),
}
"""Bad voice -> what the error must name."""
STREAMED_BAD_VOICES = ("unknown-voice", "unknown-speaker", "relative-path")


@pytest.mark.parametrize(
    ("voice", "named", "streaming"),
    [
        *(pytest.param(*BAD_VOICES[name], False, id=name) for name in BAD_VOICES),
        *(pytest.param(*BAD_VOICES[n], True, id=f"{n}-streamed") for n in STREAMED_BAD_VOICES),
    ],
)
async def test_bad_voice_is_an_error_naming_it_then_closed(
    server: ServerProcess,
    still_here_bytes: int,
    voice: SynthesizeVoice,
    named: str,
    streaming: bool,
) -> None:
    if streaming:
        send = event_bytes(
            SynthesizeStart(voice=voice).event(),
            SynthesizeChunk(text="Hello there.").event(),
            SynthesizeStop().event(),
        )
    else:
        send = event_bytes(Synthesize(text="Hello there.", voice=voice).event())
    error = the_error(await send_raw(server, send))
    assert named in error.text or repr(named) in error.text
    await assert_still_serving(server, still_here_bytes)


# ---------------------------------------------------------------- limits


async def _open_accepted(server: ServerProcess, deadline: float) -> Connection:
    """A connection the server has counted and answers (retried while earlier ones close)."""
    while True:
        reader, writer = await asyncio.open_connection(*host_port(server.uri))
        connection = Connection(reader, writer)
        await connection.send(event_bytes(Describe().event()))
        reply = await connection.read_until("info")
        if reply.types == ["info"]:
            return connection
        writer.close()
        # "busy": a connection of an earlier test is still being closed by the server.
        assert reply.closed and "busy" in the_error(reply).text, types(reply)
        assert time.monotonic() < deadline, "the server stayed busy with no clients"
        await asyncio.sleep(0.2)


async def test_connection_over_the_limit_is_told_busy(
    server: ServerProcess, still_here_bytes: int
) -> None:
    held: list[Connection] = []
    try:
        deadline = time.monotonic() + ERROR_TIMEOUT
        for _ in range(MAX_CONNECTIONS):
            held.append(await _open_accepted(server, deadline))

        error = the_error(await send_raw(server, event_bytes(Describe().event())))
        assert "busy" in error.text
        assert error.code == "busy"

        # The held connections are unaffected: each still answers, and one still speaks.
        for connection in held:
            await connection.send(event_bytes(Describe().event()))
        for connection in held:
            assert (await connection.read_until("info")).types == ["info"]
        await held[0].send(event_bytes(Synthesize(text=STILL_HERE, voice=PROBE_VOICE).event()))
        reply = await held[0].read_until("audio-stop", EVENT_TIMEOUT)
        assert [len(cycle) for cycle in audio_cycles(reply.events)] == [still_here_bytes]
    finally:
        for connection in held:
            connection.writer.close()
    # Once they are gone, new clients are served again.
    deadline = time.monotonic() + ERROR_TIMEOUT
    (await _open_accepted(server, deadline)).writer.close()
    await assert_still_serving(server, still_here_bytes)


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(b"", id="silent-from-the-start"),
        pytest.param(event_bytes(Describe().event()), id="after-describe"),
        pytest.param(
            event_bytes(SynthesizeStart().event(), SynthesizeChunk(text="And then").event()),
            id="mid-stream",
        ),
    ],
)
async def test_idle_connection_is_closed(
    server: ServerProcess, still_here_bytes: int, first: bytes
) -> None:
    async with connect(server) as connection:
        await connection.send(first)
        # Bounded well past the idle timeout; the server closes without a word.
        reply = await connection.read_until(None, timeout=IDLE_TIMEOUT + ERROR_TIMEOUT)
    assert reply.closed
    assert [t for t in reply.types if t != "info"] == []
    await assert_still_serving(server, still_here_bytes)
