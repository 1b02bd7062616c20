"""Long sentences spoken clause by clause, so the first audio need not wait for all of it.

The encoder (text encoder + duration predictor) has global attention: it must
see the whole utterance before the first frame exists, and its cost grows
faster than the utterance (on 2 cores, en_US-joe-medium: 267 ids 125 ms,
905 ids 590 ms, and +47 MB of activations). A sentence longer than a limit is
therefore cut after clause punctuation (``, ; :`` followed by a space, as
espeak-ng writes them) into pieces that each go through the encoder alone.
The phonemes, and so Piper's ids, are unchanged; only the model no longer
sees across the cut, which the punctuation's pause already separates.
Sentences under the limit, and those without clause punctuation, stay whole
(exactly Piper's audio).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from wyoming_piper_stream.engine.phonemize import Phonemizer, phonemes_to_ids, safe_phonemize

CLAUSE_BREAKS = frozenset(",;:，、；：")
"""Phonemes after which a sentence may be cut (when a space follows)."""


def clause_pieces(phonemes: Sequence[str], max_phonemes: int) -> list[list[str]]:
    """``phonemes`` of one sentence as pieces of at most ``max_phonemes`` where possible.

    Cuts only after clause punctuation; adjacent clauses are merged while the
    piece stays within the limit (fewer cuts, more context for the model). A
    single clause over the limit stays whole. ``max_phonemes <= 0``: no cuts.
    """
    phonemes = list(phonemes)
    if max_phonemes <= 0 or len(phonemes) <= max_phonemes:
        return [phonemes]
    pieces: list[list[str]] = []
    current: list[str] = []
    for clause in _clauses(phonemes):
        if current and len(current) + len(clause) > max_phonemes:
            pieces.append(current)
            current = []
        current = [*current, " ", *clause] if current else clause
    pieces.append(current)
    return pieces


def _clauses(phonemes: list[str]) -> list[list[str]]:
    """Split after each clause break that a space follows; that space is dropped."""
    clauses: list[list[str]] = []
    start = 0
    for index in range(len(phonemes) - 1):
        if phonemes[index] in CLAUSE_BREAKS and phonemes[index + 1] == " ":
            clauses.append(phonemes[start : index + 1])
            start = index + 2
    clauses.append(phonemes[start:])
    return [clause for clause in clauses if clause]


def utterance_ids(
    phonemizer: Phonemizer,
    sentence: str,
    id_map: Mapping[str, Sequence[int]],
    max_phonemes: int,
) -> Iterator[list[int]]:
    """Phoneme ids of each utterance the encoder gets for one sentence."""
    for phonemes in safe_phonemize(phonemizer, sentence):
        for piece in clause_pieces(phonemes, max_phonemes):
            if piece:
                yield phonemes_to_ids(piece, id_map)
