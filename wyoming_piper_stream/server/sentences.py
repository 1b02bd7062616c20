"""Text -> sentences as wyoming-piper finds them, cleaned up for espeak-ng.

sentence-stream already ends sentences at ``。！？`` (Chinese, Japanese) and ``؟``
(Arabic); Hebrew's sof pasuq ``׃`` is added here. Thai writes no sentence marks:
its space-delimited phrases are cut in ``engine.clauses``.
"""

from __future__ import annotations

import re
import unicodedata

from sentence_stream import SentenceBoundaryDetector

SENTENCE_ENDS = frozenset(".?!。？！．؟׃")
"""Sentence-final marks of every script we speak; a sentence ending in one gets no more."""

# Hebrew sof pasuq ends a verse: a sentence, where sentence-stream does not see one.
_SOF_PASUQ = re.compile(r"(?<=׃)\s+")
# Scripts written without spaces, where a full-width 。 fits (and an ASCII "." does not).
_FULL_WIDTH_SCRIPTS = ("CJK", "HIRAGANA", "KATAKANA")
_FULL_STOP = "。"


def split_sentences(text: str, auto_punctuation: str) -> list[str]:
    """Sentences as wyoming-piper finds them, with missing end punctuation added."""
    detector = SentenceBoundaryDetector()
    sentences = list(detector.add_chunk(text))
    sentences.append(detector.finish())
    return [
        punctuate(part, auto_punctuation)
        for sentence in sentences
        for part in _SOF_PASUQ.split(sentence)
        if part.strip()
    ]


# Characters espeak-ng cannot take (NUL fails the whole request, a lone surrogate cannot
# be encoded) and other control characters: read as a space, so the words around them
# are still spoken. Whitespace controls (tab, newline, ...) are left to the line handling.
_UNSPEAKABLE = {
    code: " "
    for code in (*range(0x00, 0x20), *range(0x7F, 0xA0), *range(0xD800, 0xE000))
    if not chr(code).isspace()
}


def punctuate(sentence: str, auto_punctuation: str) -> str:
    """One line, ending in a sentence mark: ``auto_punctuation[0]`` is added where none is
    (``。`` after Chinese or Japanese, if ``auto_punctuation`` has it)."""
    text = " ".join(sentence.translate(_UNSPEAKABLE).strip().splitlines())
    if not auto_punctuation or not text or text[-1] in auto_punctuation:
        return text
    if text[-1] in SENTENCE_ENDS:
        return text
    if _FULL_STOP in auto_punctuation and _is_full_width_script(text[-1]):
        return text + _FULL_STOP
    return text + auto_punctuation[0]


def _is_full_width_script(char: str) -> bool:
    return unicodedata.name(char, "").startswith(_FULL_WIDTH_SCRIPTS)
