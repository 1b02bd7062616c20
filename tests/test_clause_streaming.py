"""Clause streaming against the real server: LLM-paced text starts speaking at its first clause.

Pacing waits for the server's events, never asserts on time: the test holds back
the rest of the sentence until the first clause's audio has arrived, which can
only happen if the server spoke the clause before the sentence ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from server_util import (
    EVENT_TIMEOUT,
    ServerProcess,
    audio_cycles,
    read_until,
    run_server,
    stream_text,
    synthesize,
)
from wyoming.client import AsyncClient
from wyoming.event import Event
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop

SENTENCE = (
    "The living room lights are now off, the front door is locked and the thermostat "
    "has been set to twenty degrees for the whole night."
)
CLAUSE_WORDS = 7  # "The living room lights are now off,"
WORDS_PER_SECOND = 8.0
REPLY = (
    "Sure! The kitchen lights are on, the oven is preheating to two hundred degrees, "
    "and the timer is set for twenty minutes. Would you like anything else, or is that all?"
)
SILENT = 100  # 16-bit amplitude below which a sample counts as silence


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with run_server(tmp_path_factory.mktemp("clauses"), "--clause-streaming", "auto") as server:
        asyncio.run(synthesize(server.uri, "Warm up."))  # the voice is loaded before pacing
        yield server
    assert "Traceback" not in server.log(), server.log_tail()


def _deltas(text: str) -> list[str]:
    """LLM-like deltas: one word each, with the space before it."""
    words = text.split(" ")
    return [words[0], *(" " + w for w in words[1:])]


async def _first_clause_then_the_rest(uri: str) -> tuple[list[Event], int]:
    """Stream SENTENCE's first clause at about 8 words/s; the rest waits for its audio.

    Returns all events and the number of words sent when the first audio came. The
    rest follows in one delta, so the reply's one early cut is the comma's: with
    words still trickling in while the clause plays, the policy may also cut at a
    word boundary, as often as the machine is slow (``script/bench --llm``).
    """
    deltas = _deltas(SENTENCE)
    events: list[Event] = []
    async with AsyncClient.from_uri(uri) as client:
        await client.write_event(SynthesizeStart().event())
        reader = asyncio.create_task(read_until(client, "audio-chunk", EVENT_TIMEOUT))
        sent = 0
        for delta in deltas[:CLAUSE_WORDS]:
            if reader.done():
                break
            await client.write_event(SynthesizeChunk(text=delta).event())
            sent += 1
            await asyncio.sleep(1 / WORDS_PER_SECOND)  # pacing only, nothing is timed
        first = await reader  # the rest of the sentence is still unsent
        assert not first.closed, first.types
        events += first.events
        # In one delta: word by word, a loaded server may judge the rest late and
        # speak part of it early too, at a word boundary.
        await client.write_event(SynthesizeChunk(text="".join(deltas[sent:])).event())
        await client.write_event(Synthesize(text=SENTENCE).event())
        await client.write_event(SynthesizeStop().event())
        rest = await read_until(client, "synthesize-stopped")
        assert not rest.closed, rest.types
        events += rest.events
    return events, sent


def _samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype=np.int16).astype(np.int32)


def _longest_inner_silence(pcm: bytes) -> int:
    """Samples in the longest run of silence between the first and last sound."""
    loud = np.flatnonzero(np.abs(_samples(pcm)) >= SILENT)
    gaps = np.diff(loud)
    return int(gaps.max()) - 1 if len(gaps) else 0


def _largest_step(pcm: bytes) -> int:
    """Largest jump between neighbouring samples: a click is a jump speech never makes."""
    return int(np.abs(np.diff(_samples(pcm))).max())


def test_first_clause_plays_before_the_sentence_ends(server: ServerProcess) -> None:
    events, sent = asyncio.run(_first_clause_then_the_rest(server.uri))
    assert sent == CLAUSE_WORDS, "nothing is spoken before the clause is complete"
    # One audio-start/stop cycle for the sentence, as without clause streaming.
    (streamed,) = audio_cycles(events)
    assert [e.type for e in events].count("audio-start") == 1
    _, whole = asyncio.run(synthesize(server.uri, SENTENCE))
    rate = 22050
    # The clause joins the rest without a click, and its pause is the comma's own pause
    # in the whole sentence within 20 ms: the clause was encoded with a placeholder
    # continuation, and the next clause, which sees the comma with the real words after
    # it, moves its leading silence to the pause it predicts (without any context the
    # pause was half the comma's; with the placeholder alone up to 70 ms long).
    pause = _longest_inner_silence(streamed) - _longest_inner_silence(whole)
    assert abs(pause) <= rate // 50, pause
    assert _largest_step(streamed) <= _largest_step(whole) * 1.2
    # The same words: within 10% of the whole sentence's length.
    assert abs(len(streamed) - len(whole)) < 0.1 * len(whole)


def test_fast_text_is_spoken_in_whole_sentences(server: ServerProcess) -> None:
    """Text arriving at once (far above 40 words/s) is never cut: each sentence is one
    utterance, with the same length as the sentence synthesized alone."""
    events, _ = asyncio.run(stream_text(server.uri, _deltas(REPLY)))
    cycles = audio_cycles(events)
    sentences = [
        "Sure!",
        "The kitchen lights are on, the oven is preheating to two hundred degrees, "
        "and the timer is set for twenty minutes.",
        "Would you like anything else, or is that all?",
    ]
    assert len(cycles) == len(sentences)
    for cycle, sentence in zip(cycles, sentences, strict=True):
        _, alone = asyncio.run(synthesize(server.uri, sentence))
        assert len(cycle) == len(alone), sentence
        assert np.abs(_samples(cycle) - _samples(alone)).max() <= 1


def test_clause_streaming_off_speaks_whole_sentences(tmp_path: Path) -> None:
    """With ``off``, slow text is spoken as the whole sentence: same length as one-shot."""

    async def paced(uri: str) -> list[Event]:
        async with AsyncClient.from_uri(uri) as client:
            await client.write_event(SynthesizeStart().event())
            for delta in _deltas(SENTENCE):
                await client.write_event(SynthesizeChunk(text=delta).event())
                await asyncio.sleep(1 / WORDS_PER_SECOND)  # pacing only
            await client.write_event(SynthesizeStop().event())
            return (await read_until(client, "synthesize-stopped")).events

    with run_server(tmp_path, "--clause-streaming", "off") as off:
        events = asyncio.run(paced(off.uri))
        _, whole = asyncio.run(synthesize(off.uri, SENTENCE))
    (cycle,) = audio_cycles(events)
    assert len(cycle) == len(whole)
