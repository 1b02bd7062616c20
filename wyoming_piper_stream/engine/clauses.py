"""Long sentences spoken clause by clause, so the first audio need not wait for all of it.

The encoder (text encoder + duration predictor) has global attention: it must
see the whole utterance before the first frame exists, and its cost grows
faster than the utterance (on 2 cores, en_US-joe-medium: 267 ids 125 ms,
905 ids 590 ms, and +47 MB of activations). A sentence longer than a limit is
therefore cut after clause punctuation into pieces that each go through the
encoder alone. The phonemes, and so Piper's ids, are unchanged; only the model
no longer sees across the cut, which the punctuation's pause already separates.
Sentences under the limit, and those without clause punctuation, stay whole
(exactly Piper's audio).

Cuts come from the phonemes where the phonemizer keeps the punctuation (espeak-ng
writes ``, ; :`` and a space; pinyin keeps ``，、；：``; Japanese writes ``,`` for
``、``). Where it drops it (Hebrew) or where a script marks phrases with spaces
(Thai), the cuts come from the text: only where they map onto Piper's phonemes of
the whole sentence exactly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence

from wyoming_piper_stream.engine.phonemize import Phonemizer, phonemes_to_ids, safe_phonemize

CLAUSE_BREAKS = frozenset(",;:，、；：،؛")
"""Clause punctuation of every script, in text and in phonemes: a sentence may be cut after it.

ASCII ``, ; :`` (Latin, Hebrew, and espeak-ng's phonemes of any language), CJK ``，、；：``,
Arabic ``، ؛``. Hebrew's maqaf ``־`` joins words and is no break.
"""

# A Thai phrase ends at a space between two Thai characters: Thai writes no spaces
# between words, only between phrases and sentences.
_THAI_PHRASE_SPACE = re.compile(r"(?<=[\u0e01-\u0e5b])\s+(?=[\u0e01-\u0e5b])")
_WIDE_BREAKS = "".join(sorted(c for c in CLAUSE_BREAKS if not c.isascii()))
# ASCII marks break only before a space ("1,000" stays a number); the others always.
_TEXT_CLAUSE_END = re.compile(rf"(?<=[,;:])\s+|(?<=[{_WIDE_BREAKS}])\s*")


def clause_pieces(phonemes: Sequence[str], max_phonemes: int) -> list[list[str]]:
    """``phonemes`` of one sentence as pieces of at most ``max_phonemes`` where possible.

    Cuts only after clause punctuation (the space after it, if any, is dropped);
    adjacent clauses are merged while the piece stays within the limit (fewer cuts,
    more context for the model). A single clause over the limit stays whole.
    ``max_phonemes <= 0``: no cuts.
    """
    phonemes = list(phonemes)
    if max_phonemes <= 0 or len(phonemes) <= max_phonemes:
        return [phonemes]
    return _merge(phonemes, _punctuation_cuts(phonemes), max_phonemes)


def _punctuation_cuts(phonemes: list[str]) -> list[int]:
    """Indices of clause punctuation that more speech follows."""
    last = len(phonemes) - 1
    return [
        index
        for index, phoneme in enumerate(phonemes)
        if phoneme in CLAUSE_BREAKS and index < last and phonemes[index + 1 :] != [" "]
    ]


def _merge(phonemes: list[str], cuts: Iterable[int], max_phonemes: int) -> list[list[str]]:
    """Clauses ending after each cut index, merged greedily up to ``max_phonemes``."""
    clauses: list[list[str]] = []  # each keeps the space that follows it, for merging
    start = 0
    for cut in sorted(set(cuts)):
        end = cut + 2 if phonemes[cut + 1 : cut + 2] == [" "] else cut + 1
        if end > start:
            clauses.append(phonemes[start:end])
            start = end
    clauses.append(phonemes[start:])

    pieces: list[list[str]] = []
    current: list[str] = []
    for clause in clauses:
        if current and len(_strip(current + clause)) > max_phonemes:
            pieces.append(_strip(current))
            current = []
        current = current + clause
    pieces.append(_strip(current))
    return [piece for piece in pieces if piece]


def _strip(piece: list[str]) -> list[str]:
    return piece[:-1] if piece and piece[-1] == " " else piece


def text_phrases(sentence: str) -> list[str]:
    """The sentence's text cut after clause punctuation and at Thai phrase spaces."""
    parts = _TEXT_CLAUSE_END.split(sentence)
    phrases = [p for part in parts for p in _THAI_PHRASE_SPACE.split(part)]
    return [phrase.strip() for phrase in phrases if phrase.strip()]


def _text_cuts(phonemizer: Phonemizer, sentence: str, phonemes: list[str]) -> list[int]:
    """Cut indices in ``phonemes`` (Piper's, of the whole sentence) at the text's phrase ends."""
    phrases = text_phrases(sentence)
    if len(phrases) < 2:
        return []
    return _phrase_cuts(phonemizer, phrases, phonemes) or _word_cuts(phrases, phonemes)


def _phrase_cuts(phonemizer: Phonemizer, phrases: list[str], phonemes: list[str]) -> list[int]:
    """Each phrase phonemized alone, if one after the other (with a space between them or
    not) they are ``phonemes`` (Thai; espeak-ng's Chinese, which drops ``，``)."""
    cuts, position = [], 0
    for phrase in phrases:
        phrase_phonemes = [p for s in safe_phonemize(phonemizer, phrase) for p in s]
        if phonemes[position : position + len(phrase_phonemes)] != phrase_phonemes:
            return []  # the phrase alone sounds different: no cut at its end
        position += len(phrase_phonemes)
        if 0 < position < len(phonemes):
            cuts.append(position - 1)
        if phonemes[position : position + 1] == [" "]:
            position += 1
    return cuts if position == len(phonemes) else []


def _word_cuts(phrases: list[str], phonemes: list[str]) -> list[int]:
    """For phonemes without punctuation and one space-separated word per word of the text
    (Hebrew, whose diacritizer reads a phrase alone differently): after each phrase's words."""
    if any(phoneme in CLAUSE_BREAKS for phoneme in phonemes):
        return []
    spaces = [i for i, phoneme in enumerate(phonemes) if phoneme == " "]
    word_counts = [len(phrase.split()) for phrase in phrases]
    if len(spaces) + 1 != sum(word_counts):
        return []
    cuts, words = [], 0
    for count in word_counts[:-1]:
        words += count
        cuts.append(spaces[words - 1] - 1)  # the last phoneme before that space
    return cuts


def utterance_phonemes(
    phonemizer: Phonemizer, sentence: str, max_phonemes: int
) -> Iterator[list[str]]:
    """Phonemes of each utterance the encoder gets for one sentence (Piper's, in pieces)."""
    sentences = safe_phonemize(phonemizer, sentence)
    for phonemes in sentences:
        pieces = clause_pieces(phonemes, max_phonemes)
        if len(sentences) == 1 and max(map(len, pieces)) > max_phonemes > 0:
            cuts = _punctuation_cuts(phonemes) + _text_cuts(phonemizer, sentence, phonemes)
            pieces = _merge(phonemes, cuts, max_phonemes)
        yield from (piece for piece in pieces if piece)


def utterance_ids(
    phonemizer: Phonemizer,
    sentence: str,
    id_map: Mapping[str, Sequence[int]],
    max_phonemes: int,
    phoneme_type: str = "espeak",
) -> Iterator[list[int]]:
    """Phoneme ids of each utterance the encoder gets for one sentence."""
    for piece in utterance_phonemes(phonemizer, sentence, max_phonemes):
        yield phonemes_to_ids(piece, id_map, phoneme_type)
