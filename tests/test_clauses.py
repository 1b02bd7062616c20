"""Long sentences cut into clause-sized encoder pieces: only at clause punctuation, losslessly."""

from __future__ import annotations

import itertools

import pytest

from wyoming_piper_stream.engine.clauses import clause_pieces
from wyoming_piper_stream.engine.phonemize import EspeakPhonemizer


def _rejoined(pieces: list[list[str]]) -> list[str]:
    """The pieces put back together with the space each cut dropped."""
    joined: list[str] = []
    for piece in pieces:
        joined += [" ", *piece] if joined else piece
    return joined


def _phonemes(text: str) -> list[str]:
    (sentence,) = EspeakPhonemizer("en-us").phonemize(text)
    return sentence


LONG = _phonemes(
    "When you get a chance, could you please check whether the garage door is closed, "
    "the porch lights are off, the thermostat downstairs is set to sixty eight degrees; "
    "the dishwasher has finished its cycle: and the back gate is latched, because I am "
    "heading to bed soon."
)


def test_short_sentence_stays_whole() -> None:
    assert clause_pieces(LONG, len(LONG)) == [LONG]
    assert clause_pieces(LONG, 0) == [LONG]  # 0 = off: always whole, as Piper


@pytest.mark.parametrize("limit", [20, 60, 120, 200])
def test_pieces_end_at_clause_marks_and_rejoin_to_the_sentence(limit: int) -> None:
    pieces = clause_pieces(LONG, limit)

    assert len(pieces) >= 2
    assert _rejoined(pieces) == LONG
    for piece in pieces[:-1]:
        assert piece[-1] in ",;:", "".join(piece)
    for piece in pieces:
        assert piece[0] != " " and piece[-1] != " "


def test_clauses_are_merged_up_to_the_limit() -> None:
    limit = 120
    pieces = clause_pieces(LONG, limit)
    clauses = clause_pieces(LONG, 1)  # every clause alone

    assert len(clauses) == 7  # six clause marks
    assert len(pieces) < len(clauses)
    assert all(len(piece) <= limit for piece in pieces)
    # Merging is greedy: no piece could have taken the next clause too.
    for piece, following in itertools.pairwise(pieces):
        next_clause = next(c for c in clauses if following[: len(c)] == c)
        assert len(piece) + 1 + len(next_clause) > limit


def test_a_clause_over_the_limit_is_not_cut_mid_clause() -> None:
    no_commas = _phonemes("the quick brown fox jumps over the lazy dog and runs all the way home")
    assert clause_pieces(no_commas, 10) == [no_commas]


def test_a_clause_mark_without_a_space_after_it_is_cut_too_and_merged_back_without_one() -> None:
    # Japanese writes "," for 、 and pinyin keeps "，", with no space after either.
    phonemes = list("ab,cd, ef，gh")
    assert clause_pieces(phonemes, 3) == [list("ab,"), list("cd,"), list("ef，"), list("gh")]
    assert clause_pieces(phonemes, 7) == [list("ab,cd,"), list("ef，gh")]
