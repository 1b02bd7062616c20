"""When to speak part of a streamed sentence before it ends (clause streaming of LLM text).

Home Assistant forwards an LLM reply delta by delta. Sentences stay what
sentence-stream finds (as today); inside a sentence that is still arriving,
a complete clause is spoken early only when waiting for the sentence end
would leave the player idle:
- nothing is playing and the clause has at least ``min_words`` words, or
- the buffered audio will run out before the sentence is likely to end:
  before ``rest_words`` more words arrive at the measured text rate, plus
  the synthesis latency of the rest.
Otherwise the policy waits and the whole sentence is synthesized (better
prosody). Text arriving at ``fast_rate`` words/s or more is never cut: the
audio is then exactly today's. As a last resort a stretch of more than
``max_words`` words without clause punctuation is cut at a word boundary
(``_word_cut``: preferably not after a weak word nor before a vowel).

A clause ends at ``, ; :`` (optionally followed by closing quotes or brackets)
with a space after it, or at the end of the text so far after a letter (a
delta " lights," need not wait for the next word; after a digit it may be
"1,000"), at the CJK marks ``，、；：``, or at an en or em dash followed by a
space. These are the marks espeak-ng itself ends a clause at,
so the clause phonemized alone has the phonemes it has inside the sentence
(``tests/test_clause_phonemes.py``). Two look-alikes are not clause ends:
a comma after a period (``U.S.,``: espeak reads the period as the sentence end
when the comma is cut off, and drops the comma inside the sentence) and a
spaced hyphen (`` - ``: espeak makes no pause there, and the word before it
changes, "to" tə -> tuː).

Pure: the caller passes the arrival times (any monotonic clock, in seconds) and
the seconds of audio still buffered at the player; no sleeping, no I/O.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

from sentence_stream import SentenceBoundaryDetector
from sentence_stream.util import remove_asterisks

from wyoming_piper_stream.server.settings import ClauseMode, ClauseSettings

SYNTHESIS_LATENCY = 0.25
"""Seconds from handing a piece to the engine to its first audio, with a margin
(the encoder and a first chunk: 0.07-0.17 s for 5-25 words on 2 cores)."""

SECONDS_PER_WORD = 0.35
"""Speech per word, to count text handed out but not yet synthesized as buffered
(en_US-joe-medium: 25 words -> 8.6 s)."""

RATE_WINDOW_WORDS = 24
"""The text rate is measured over about this many recent words."""

_CLOSERS = "\"'\u201d\u2019)\\]\u00bb"
_CLAUSE_END = re.compile(
    rf"(?<![.\s])[,;:][{_CLOSERS}]*(?=\s)"  # , ; : then a space (not "U.S.,")
    r"|(?<=[^\W\d_])[,;:]$"  # or last for now after a letter (not "1,000" or "5:30")
    r"|[\uff0c\u3001\uff1b\uff1a]"  # ，、；：
    r"|[\u2013\u2014](?=\s)"  # en or em dash, then a space
)
_SENTENCE_END_PENDING = re.compile(rf"[.!?\u2026\u3002\uff01\uff1f][{_CLOSERS}]*\s*$")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WORD_GAP = re.compile(r"\S\s+(?=\S)")
_WEAK_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "to",
        "of",
        "and",
        "or",
        "but",
        "for",
        "at",
        "by",
        "in",
        "on",
        "with",
        "from",
        "that",
        "this",
        "than",
        "as",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "has",
        "have",
        "had",
        "will",
        "would",
        "can",
        "could",
        "should",
        "may",
        "might",
        "must",
        "do",
        "does",
        "did",
        "your",
        "my",
        "his",
        "her",
        "its",
        "our",
        "their",
        "you",
        "he",
        "she",
        "it",
        "we",
        "they",
        "i",
        "me",
        "him",
        "them",
        "us",
        "not",
        "no",
        "so",
        "if",
        "then",
        "when",
        "there",
        "about",
        "before",
    ]
)
"""English words espeak-ng reads differently at the end of an utterance (weak forms,
stress): a word-boundary cut is not made after them if another place is near."""
LAST_RESORT_CHOICES = 4
"""A word-boundary cut picks among the last few gaps between complete words."""


@dataclass(frozen=True)
class TextPiece:
    """Text to speak: a whole sentence, or the next part of one that is still arriving."""

    text: str
    ends_sentence: bool
    """False: an early clause (or word-boundary cut); the sentence continues."""


def word_count(text: str) -> float:
    """Words in ``text``; CJK characters, written without spaces, count half a word each."""
    cjk = len(_CJK.findall(text))
    return len(_CJK.sub(" ", text).split()) + cjk / 2


class TextRate:
    """Words per second of the text arriving, over a window of recent words."""

    def __init__(self) -> None:
        self._arrivals: deque[tuple[float, float]] = deque()  # (time, words so far)
        self._words = 0.0
        self._after_space = True

    def add(self, now: float, text: str) -> None:
        cjk = len(_CJK.findall(text))
        plain = _CJK.sub(" ", text)
        # Count word starts, so a word split across deltas counts once.
        starts = sum(
            1
            for index, char in enumerate(plain)
            if not char.isspace() and (plain[index - 1].isspace() if index else self._after_space)
        )
        if plain:
            self._after_space = plain[-1].isspace()
        self._words += starts + cjk / 2
        self._arrivals.append((now, self._words))
        while len(self._arrivals) > 2 and self._words - self._arrivals[1][1] >= RATE_WINDOW_WORDS:
            self._arrivals.popleft()

    def rate(self, now: float) -> float:
        """Words/s: at most the rate so far, and lower while the next word is late."""
        if not self._arrivals:
            return 0.0
        first, base = self._arrivals[0]
        last = self._arrivals[-1][0]
        words = self._words - base
        measured = words / (last - first) if last > first else float("inf")
        if now <= first:
            return measured
        return min(measured, (words + 1) / (now - first))

    def slower_than(self, rate: float) -> float:
        """The time from which ``rate(t)`` is below ``rate`` if no more text arrives."""
        first, base = self._arrivals[0]
        return first + (self._words - base + 1) / rate


class ClausePolicy:
    """One text stream: sentences as sentence-stream finds them, and early clauses."""

    def __init__(self, settings: ClauseSettings) -> None:
        self.settings = settings
        self._detector = SentenceBoundaryDetector()
        self._rate = TextRate()
        self._spoken = 0
        """Characters at the start of the pending text already handed out early."""
        self._handed: deque[tuple[float, float]] = deque()  # (time, words) recently handed out
        self.early_pieces = 0
        """Pieces handed out before their sentence ended (for the log and the tests)."""

    @property
    def _pending(self) -> str:
        """Text of the sentence still arriving (not yet handed out as a whole sentence)."""
        return self._detector.current_sentence + self._detector.remaining_text

    def add(self, text: str, now: float, ahead: float | None) -> list[TextPiece]:
        """``text`` arrived at ``now``; ``ahead``: seconds of audio buffered at the player
        (None: nothing played yet). Returns what to speak now, in order."""
        self._rate.add(now, text)
        spoken = self._pending[: self._spoken]
        pieces = []
        for sentence in self._detector.add_chunk(text):
            pieces.append(
                self._rest_of(sentence, spoken, now) if spoken else self._whole(sentence, now)
            )
            spoken = ""
        return [*pieces, *self.poll(now, ahead)]

    def poll(self, now: float, ahead: float | None) -> list[TextPiece]:
        """No new text: is a clause due now (the buffered audio has played on)?"""
        cut = self._cut()
        if cut is None or not self._due(now, ahead):
            return []
        text = self._pending[self._spoken : cut]
        self._spoken = cut
        self._handed_out(now, text)
        self.early_pieces += 1
        return [TextPiece(text.strip(), ends_sentence=False)]

    def finish(self, now: float) -> list[TextPiece]:
        """The stream ended: the rest (a sentence's end closes its early clauses)."""
        spoken = self._pending[: self._spoken]
        rest = self._detector.finish()
        if spoken:
            return [self._rest_of(rest, spoken, now)]
        return [self._whole(rest, now)] if rest.strip() else []

    def recheck_at(self, now: float, ahead: float | None) -> float | None:
        """When ``poll`` may speak a waiting clause if no text arrives; None: nothing waits."""
        if self.settings.clause_streaming is not ClauseMode.AUTO or self._cut() is None:
            return None
        rate = self._rate.rate(now)
        if rate >= self.settings.clause_fast_rate:
            return self._rate.slower_than(self.settings.clause_fast_rate)
        spare = self._buffered(now, ahead) - self._needed(rate)
        return now + max(0.02, spare)

    # ------------------------------------------------------------ internals

    def _whole(self, sentence: str, now: float) -> TextPiece:
        self._handed_out(now, sentence)
        return TextPiece(sentence, ends_sentence=True)

    def _rest_of(self, sentence: str, spoken: str, now: float) -> TextPiece:
        """The part of a finished sentence that was not spoken early (may be empty)."""
        self._spoken = 0
        head = remove_asterisks(spoken.strip())
        if sentence.startswith(head):
            rest = sentence[len(head) :].strip()
        else:  # asterisks removed across the cut: drop the spoken words instead
            rest = " ".join(sentence.split()[len(spoken.split()) :])
        self._handed_out(now, rest)
        return TextPiece(rest, ends_sentence=True)

    def _cut(self) -> int | None:
        """End of the text to speak early (in the pending text), if there is any."""
        settings = self.settings
        if settings.clause_streaming is ClauseMode.OFF:
            return None
        pending = self._pending
        if _SENTENCE_END_PENDING.search(pending):
            return None  # the sentence looks complete: its end is confirmed with the next word
        cut = None
        for match in _CLAUSE_END.finditer(pending, self._spoken):
            cut = match.end()
        stretch_from = cut or self._spoken
        if word_count(pending[stretch_from:]) > settings.clause_max_words:
            cut = _word_cut(pending, stretch_from) or cut
        if cut is None or word_count(pending[self._spoken : cut]) < settings.clause_min_words:
            return None
        return cut

    def _due(self, now: float, ahead: float | None) -> bool:
        if self.settings.clause_streaming is ClauseMode.ALWAYS:
            return True
        rate = self._rate.rate(now)
        if rate >= self.settings.clause_fast_rate:
            return False
        return self._buffered(now, ahead) < self._needed(rate)

    def _needed(self, rate: float) -> float:
        """Buffered seconds that cover the sentence's likely rest: its arrival and synthesis."""
        return SYNTHESIS_LATENCY + self.settings.clause_rest_words / max(rate, 1e-6)

    def _buffered(self, now: float, ahead: float | None) -> float:
        """Audio at the player plus text handed out too recently to have been synthesized."""
        while self._handed and now - self._handed[0][0] > SYNTHESIS_LATENCY:
            self._handed.popleft()
        return (ahead or 0.0) + SECONDS_PER_WORD * sum(words for _, words in self._handed)

    def _handed_out(self, now: float, text: str) -> None:
        self._handed.append((now, word_count(text)))


def _word_cut(text: str, start: int) -> int | None:
    """Where to cut ``text[start:]`` between complete words (the last word may be partial).

    espeak-ng reads the word before a cut as utterance-final: after a weak word
    ("to" tə -> tuː) or before a vowel (linking r) the phonemes change. Of 126 cuts
    in 5 long English sentences 35 changed a phoneme; cut only after a word not in
    ``_WEAK_WORDS`` and before a consonant, 4 of 43 did (stress marks only).
    """
    gaps = list(_WORD_GAP.finditer(text, start))[-LAST_RESORT_CHOICES:]
    if not gaps:
        return None
    clean = [gap for gap in gaps if _clean_cut(text, gap.start() + 1, gap.end())]
    return (clean or gaps)[-1].start() + 1


def _clean_cut(text: str, before: int, after: int) -> bool:
    previous = text[:before].split()[-1].strip(_CLOSERS + ",;:").lower()
    return previous not in _WEAK_WORDS and text[after].lower() not in "aeiouh"
