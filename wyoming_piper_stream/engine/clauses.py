"""Long sentences spoken clause by clause, so the first audio need not wait for all of it.

The encoder (text encoder + duration predictor) has global attention: it must
see the whole utterance before the first frame exists, and its cost grows
faster than the utterance (on 2 cores, en_US-joe-medium: 267 ids 125 ms,
905 ids 590 ms, and +47 MB of activations). A sentence longer than a limit is
therefore cut after clause punctuation into pieces that each go through the
encoder on their own. The phonemes, and so Piper's ids, are unchanged.
Sentences under the limit, and those without clause punctuation, stay whole
(exactly Piper's audio).

A piece alone is an utterance that ends at its comma: the model ends it with
a short pause (279 ms on the tests' sentence, against 464 ms at the same comma
mid-sentence), and speaks it louder. Louder because the text encoder's
attention is global and this model speaks a clause more quietly the longer the
utterance around it is: "the porch lights are off," alone measures -22.7 dB
(active-speech RMS, noise off), inside 64 phonemes of other words each side
-27.2 dB, inside 128 each side -29.4 dB, with the latent's RMS falling with it
(1.72, 1.55, 1.50). It depends on the text around the piece, so no fixed gain
can undo it. So each piece goes through the encoder with the words of the
sentence around it (``SentencePiece.before``/``after``, up to
``CONTEXT_PHONEMES``; a placeholder continuation when the rest has not arrived
yet), and only the frames the duration predictor gives the piece's own ids
are decoded (``PieceWindow``): pause, loudness and prosody near the cut are
the mid-sentence ones, exactly so when the context reaches the sentence's ends.
The comma's pause at a cut is the one the piece after it predicts, which sees
the comma with the real words after it (``chunked_decoder.CutPause``).

Cuts come from the phonemes where the phonemizer keeps the punctuation (espeak-ng
writes ``, ; :`` and a space; pinyin keeps ``，、；：``; Japanese writes ``,`` for
``、``). Where it drops it (Hebrew) or where a script marks phrases with spaces
(Thai), the cuts come from the text: only where they map onto Piper's phonemes of
the whole sentence exactly.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from piper.const import BOS, PAD
from piper.phoneme_ids import DEFAULT_PHONEME_ID_MAP

from wyoming_piper_stream.engine.phonemize import Phonemizer, phonemes_to_ids, safe_phonemize
from wyoming_piper_stream.engine.settings import CONTEXT_PHONEMES

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


def _sentence_cuts(
    phonemizer: Phonemizer, sentence: str, max_phonemes: int, continues: bool = False
) -> Iterator[tuple[list[str], list[list[str]]]]:
    """Each phonemized sentence of ``sentence`` with its pieces (Piper's phonemes, cut).

    ``continues``: the text is a clause whose sentence goes on (clause streaming);
    espeak-ng ends a clause alone with its break and a space, and the space is
    dropped as at every cut, so the phonemes are those of the clause in the sentence.
    """
    sentences = safe_phonemize(phonemizer, sentence)
    if continues and sentences:
        sentences[-1] = _strip(sentences[-1])
    for phonemes in sentences:
        pieces = clause_pieces(phonemes, max_phonemes)
        if len(sentences) == 1 and max(map(len, pieces)) > max_phonemes > 0:
            cuts = _punctuation_cuts(phonemes) + _text_cuts(phonemizer, sentence, phonemes)
            pieces = _merge(phonemes, cuts, max_phonemes)
        yield phonemes, [piece for piece in pieces if piece]


def utterance_phonemes(
    phonemizer: Phonemizer, sentence: str, max_phonemes: int, continues: bool = False
) -> Iterator[list[str]]:
    """Phonemes of each utterance the encoder gets for one sentence (Piper's, in pieces)."""
    for _, pieces in _sentence_cuts(phonemizer, sentence, max_phonemes, continues):
        yield from pieces


def utterance_ids(
    phonemizer: Phonemizer,
    sentence: str,
    id_map: Mapping[str, Sequence[int]],
    max_phonemes: int,
    phoneme_type: str = "espeak",
    *,
    continues: bool = False,
) -> Iterator[list[int]]:
    """Phoneme ids of each piece alone (no context: how cuts were spoken before);
    ``continues``: for a clause of a sentence that goes on."""
    for piece in utterance_phonemes(phonemizer, sentence, max_phonemes, continues):
        yield phonemes_to_ids(piece, id_map, phoneme_type)


PLACEHOLDER = tuple(
    " ænd ðɛn ðə nˈɛkst pˈɑːɹt ʌv ðɪs sˈɛntəns wɪl kˈʌm ˈæftɚ ɪt ɪn ɐ fjˈuː sˈɛkəndz"
)
"""Stands for words after a piece that have not arrived yet ("and then the next part
of this sentence will come after it in a few seconds"; espeak IPA, used for espeak
voices only). Measured on joe, noise off, every clause of the bench sentences cut:
comma pauses at cuts came out 9 ms short on average with this, 46 ms with "and the
rest", 31 ms with "and then it will be done soon", 45 ms with "and so on"."""


@dataclass(frozen=True)
class SentencePiece:
    """A piece of one sentence, as phonemes, with the sentence around it.

    ``before``/``after`` are the sentence's phonemes before and after the piece,
    exactly as they join it (with the space between them, if there is one).
    ``before == ()``: the piece starts the sentence. ``after == ()``: it ends the
    sentence; ``after is None``: the sentence goes on but its text is not known
    yet (``PLACEHOLDER`` stands in). Without either it is a whole sentence:
    exactly Piper's utterance.
    """

    phonemes: tuple[str, ...]
    before: tuple[str, ...] = ()
    after: tuple[str, ...] | None = ()


@dataclass(frozen=True)
class PieceWindow:
    """The ids the encoder gets for a piece, and which of them are the piece's own.

    The piece owns ids ``[first, end)``: from the space before it, if any (so a
    seam falls inside the comma's pause, not on a word), to its last phoneme's PAD.
    """

    ids: list[int]
    first: int
    end: int
    break_before: int = 0
    """Ids of the clause break that ends the text before the piece (``ids[first - n:first]``)."""
    break_after: int = 0
    """Ids of the clause break that ends the piece, when text follows (``ids[end - n:end]``)."""
    joint: int = 0
    """Ids of the space that joins the piece to the text before it (``ids[first:first + n]``)."""

    @property
    def has_context(self) -> bool:
        return self.first > 0 or self.end < len(self.ids)

    def frames(self, durations: np.ndarray) -> tuple[int, int]:
        """Latent frames ``[start, stop)`` of the piece's own ids."""
        bounds = np.concatenate([[0], np.cumsum(durations)])
        return int(bounds[self.first]), int(bounds[self.end])

    def break_frames_before(self, durations: np.ndarray) -> int:
        """Frames this encoding gives the break before the piece (seen as context)."""
        return int(durations[self.first - self.break_before : self.first].sum())

    def break_frames_after(self, durations: np.ndarray) -> int | None:
        """Frames this encoding gives the break that ends the piece (None: no break there)."""
        if not self.break_after:
            return None
        return int(durations[self.end - self.break_after : self.end].sum())

    def joint_frames(self, durations: np.ndarray) -> int:
        """Frames of the joining space: pause the piece may give up at its start."""
        return int(durations[self.first : self.first + self.joint].sum())


def piece_window(
    piece: SentencePiece,
    id_map: Mapping[str, Sequence[int]],
    context: int = CONTEXT_PHONEMES,
    phoneme_type: str = "espeak",
) -> PieceWindow:
    """Piece plus up to ``context`` phonemes of whole words each side, as Piper's ids.

    Pinyin voices have ids of their own layout (PAD per syllable): their pieces
    get no context.
    """
    phonemes = list(piece.phonemes)
    id_map = id_map or DEFAULT_PHONEME_ID_MAP  # as phonemes_to_ids reads an empty map
    if phoneme_type == "pinyin":
        context = 0
    after = piece.after
    if after is None:
        after = PLACEHOLDER if phoneme_type == "espeak" else ()
    left = _last_words(piece.before, context)
    right = _first_words(after, context)
    ids = phonemes_to_ids([*left, *phonemes, *right], id_map, phoneme_type)
    head = len(id_map[BOS]) + len(id_map[PAD])
    own_left = left[:-1] if left[-1:] == [" "] else left  # the joining space is the piece's
    first = head + _id_count(own_left, id_map) if left else 0
    cut_before = _break_ids(own_left, id_map)
    joint = _id_count(left[len(own_left) :], id_map)
    if not right:
        return PieceWindow(ids, first, len(ids), cut_before, 0, joint)
    end = head + _id_count([*left, *phonemes], id_map)
    return PieceWindow(ids, first, end, cut_before, _break_ids(phonemes, id_map), joint)


def _break_ids(phonemes: Sequence[str], id_map: Mapping[str, Sequence[int]]) -> int:
    """Ids of the clause break that ends ``phonemes`` (0: they end otherwise)."""
    if not phonemes or phonemes[-1] not in CLAUSE_BREAKS:
        return 0
    return _id_count(phonemes[-1:], id_map)


def _id_count(phonemes: Sequence[str], id_map: Mapping[str, Sequence[int]]) -> int:
    """Ids ``phonemes_to_ids`` writes for these phonemes (each with its PAD)."""
    pad = len(id_map[PAD])
    return sum(len(id_map[p]) + pad for p in phonemes if p in id_map)


def _last_words(phonemes: Sequence[str], limit: int) -> list[str]:
    """The end of ``phonemes``: at most ``limit`` of them, from a word's start."""
    words = list(phonemes)
    joint = [" "] if words[-1:] == [" "] else []
    words = words[: len(words) - len(joint)]
    if len(words) > limit:
        tail = words[len(words) - limit :] if limit > 0 else []
        words = tail[tail.index(" ") + 1 :] if " " in tail else tail
    return [*words, *joint] if words else []


def _first_words(phonemes: Sequence[str], limit: int) -> list[str]:
    """The start of ``phonemes``: at most ``limit`` of them, up to a word's end."""
    words = list(phonemes)
    joint = [" "] if words[:1] == [" "] else []
    words = words[len(joint) :]
    if len(words) > limit:
        head = words[:limit]
        words = head[: len(head) - 1 - head[::-1].index(" ")] if " " in head else head
    return [*joint, *words] if words else []


def sentence_pieces(
    phonemes: Sequence[str], pieces: Sequence[Sequence[str]]
) -> list[SentencePiece]:
    """``pieces`` (in order, cut from ``phonemes`` at most one space apart), each
    with the sentence around it."""
    whole = list(phonemes)
    located: list[SentencePiece] = []
    position = 0
    for piece in pieces:
        if whole[position : position + len(piece)] != list(piece) and whole[
            position : position + 1
        ] == [" "]:
            position += 1
        if whole[position : position + len(piece)] != list(piece):
            raise ValueError("pieces are not cut from these phonemes")
        end = position + len(piece)
        located.append(SentencePiece(tuple(piece), tuple(whole[:position]), tuple(whole[end:])))
        position = end
    return located


LATER_PIECES = 4
"""A sentence's pieces after its first are joined up to this many times the cut limit.

Only the first piece's encoder run delays the first audio. One run over the
rest is less work than a context window around each clause (the tests'
80 words, measured when their first piece was 166 phonemes: windows of 587 + 817
ids instead of 587 + 817 + 497; now 287 + 905), and the rest is then spoken as
in the whole sentence, with one cut. The limit bounds the
encoder's memory on a run-on sentence."""


def _later_joined(pieces: list[SentencePiece], limit: int) -> list[SentencePiece]:
    """The first piece, then the later ones joined while within ``limit`` phonemes."""
    joined = pieces[:2]
    for piece in pieces[2:]:
        group = _joined(joined[-1], piece)
        if len(group.phonemes) <= limit:
            joined[-1] = group
        else:
            joined.append(piece)
    return joined


def _joined(first: SentencePiece, last: SentencePiece) -> SentencePiece:
    """One piece from the start of ``first`` to the end of ``last`` (same sentence)."""
    upto = (*last.before, *last.phonemes)
    return SentencePiece(upto[len(first.before) :], first.before, last.after)


def piece_ids(piece: SentencePiece) -> int:
    """About how many of Piper's ids a piece has: each phoneme and a PAD, BOS, PAD, EOS."""
    return 2 * len(piece.phonemes) + 3


def first_piece_limit(max_phonemes: int, context: int) -> int:
    """Longest first piece: with its context after it, the encoder run the first audio
    waits for sees at most ``max_phonemes`` (a first clause longer than that stays whole).

    The tests' 80 words at 200: a first window of 587 ids (first audio 300 ms, 0.15x
    wyoming-piper's) became one of 287 (0.08x)."""
    if max_phonemes <= 0:
        return 0
    return max(1, max_phonemes - context)


CutPays = Callable[[SentencePiece, SentencePiece, SentencePiece], bool]
"""(first piece, second piece, the two joined): is the first audio sooner with the cut?
The pacing's call (``ChunkedDecoder.cut_pays``): it knows this device's costs."""


def utterance_pieces(
    phonemizer: Phonemizer,
    sentence: str,
    max_phonemes: int,
    context: int = CONTEXT_PHONEMES,
    *,
    before: Sequence[str] = (),
    continues: bool = False,
    cut_pays: CutPays | None = None,
) -> Iterator[SentencePiece]:
    """The pieces the encoder gets for one text sentence (espeak may split it further).

    The first piece is at most ``first_piece_limit`` long; the rest of the
    sentence follows as one piece (``LATER_PIECES``). A sentence is cut only
    where that saves encoder work: when the first piece's window (``context``
    phonemes after it) would hold the whole sentence anyway, it stays whole,
    exactly Piper's utterance (and so does a part of streamed text).

    Clause streaming speaks a sentence in parts as its text arrives: ``before`` is
    what was spoken of it already (phonemes, with the joining space), and
    ``continues`` says that more of it will follow, not known yet.

    ``cut_pays`` may keep the first cut out: where the short first window gains little
    first audio, or nothing (a device too slow for the rest's encoder run).
    """
    limit = first_piece_limit(max_phonemes, context)
    found = list(_sentence_cuts(phonemizer, sentence, limit, continues))
    for index, (phonemes, cut) in enumerate(found):
        pieces = _later_joined(sentence_pieces(phonemes, cut), LATER_PIECES * max_phonemes)
        after = pieces[0].after if pieces else None
        if len(pieces) > 1 and after is not None and len(after) <= context:
            pieces = [SentencePiece(tuple(phonemes))]
        elif len(pieces) > 1 and cut_pays is not None:
            joined = _joined(pieces[0], pieces[1])
            if not cut_pays(pieces[0], pieces[1], joined):
                pieces = [joined, *pieces[2:]]
        spoken = tuple(before) if index == 0 else ()
        goes_on = continues and index == len(found) - 1
        for piece in pieces:
            rest = None if goes_on and not piece.after else piece.after
            yield SentencePiece(piece.phonemes, (*spoken, *piece.before), rest)
