"""Text -> sentences as wyoming-piper finds them, cleaned up for espeak-ng."""

from __future__ import annotations

from sentence_stream import SentenceBoundaryDetector


def split_sentences(text: str, auto_punctuation: str) -> list[str]:
    """Sentences as wyoming-piper finds them, with missing end punctuation added."""
    detector = SentenceBoundaryDetector()
    sentences = list(detector.add_chunk(text))
    sentences.append(detector.finish())
    return [punctuate(s, auto_punctuation) for s in sentences if s.strip()]


# Characters espeak-ng cannot take (NUL fails the whole request, a lone surrogate cannot
# be encoded) and other control characters: read as a space, so the words around them
# are still spoken. Whitespace controls (tab, newline, ...) are left to the line handling.
_UNSPEAKABLE = {
    code: " "
    for code in (*range(0x00, 0x20), *range(0x7F, 0xA0), *range(0xD800, 0xE000))
    if not chr(code).isspace()
}


def punctuate(sentence: str, auto_punctuation: str) -> str:
    text = " ".join(sentence.translate(_UNSPEAKABLE).strip().splitlines())
    if auto_punctuation and text and text[-1] not in auto_punctuation:
        text += auto_punctuation[0]
    return text
