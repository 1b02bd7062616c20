"""A clause spoken early gets the phoneme ids it has inside its whole sentence.

Each sentence is streamed with every clause cut (``always``, no minimum length);
the parts go through the engine's path for clauses (``utterance_ids`` with
``continues``), and put back together with the space every cut drops they must
give the whole sentence's ids, as Piper phonemizes it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import pytest

from wyoming_piper_stream.engine.clauses import utterance_ids
from wyoming_piper_stream.engine.phonemize import EspeakPhonemizer
from wyoming_piper_stream.server.clause_policy import ClausePolicy
from wyoming_piper_stream.server.settings import ClauseMode, ClauseSettings

EVERY_CLAUSE = ClauseSettings(
    clause_streaming=ClauseMode.ALWAYS, clause_min_words=1, clause_max_words=1000
)

ENGLISH = [
    "Hello there, how are you doing today?",
    "It costs 1,250 dollars, or about 1,100 euros; that is 5.5% more than last year.",
    "At 7:30 a.m., the meeting starts: bring the Q3 report, the slides, and coffee.",
    "Dr. Smith arrived at 5 p.m., and Mr. Jones, sadly, left early.",
    "Is it red, green, or blue?",
    'He said, "yes, of course," and walked out; nobody knew why.',
    "She whispered 'wait,' then ran — fast — toward the door.",
    "First, preheat the oven to 180 °C; second, mix 2 cups of flour, 3 eggs, and milk.",
    "The score was 3–2, which surprised everyone: nobody expected it.",
    "You can call me at 555-0134, or e-mail me, whichever you prefer.",
    "The U.N. met in Geneva, Switzerland, on March 3rd, 2024.",
    "Wow, that's really amazing, isn't it?",
    "I read it yesterday, and I will read it again, I think.",
    "The list: apples, pears, plums, and the end.",
]


class _EveryPhoneme(Mapping[str, Sequence[int]]):
    """An id map that knows every phoneme (any voice's map would drop unknown ones)."""

    def __getitem__(self, phoneme: str) -> Sequence[int]:
        return [ord(c) for c in phoneme]

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 1  # not empty: an empty map means Piper's default one

    def __contains__(self, phoneme: object) -> bool:
        return isinstance(phoneme, str)


ID_MAP = _EveryPhoneme()
BOS, PAD, EOS, SPACE = ord("^"), ord("_"), ord("$"), ord(" ")


def _parts(sentence: str) -> list[str]:
    """The sentence cut at every clause, as a stream word by word would be."""
    policy = ClausePolicy(EVERY_CLAUSE)
    pieces = []
    for index, word in enumerate(sentence.split(" ")):
        pieces += policy.add(word if index == 0 else " " + word, float(index), None)
    pieces += policy.finish(100.0)
    assert pieces[-1].ends_sentence and all(not p.ends_sentence for p in pieces[:-1])
    return [p.text for p in pieces]


def _ids(phonemizer: EspeakPhonemizer, text: str, continues: bool) -> list[list[int]]:
    return list(utterance_ids(phonemizer, text, ID_MAP, 0, continues=continues))


def _joined(utterances: list[list[int]], separator: list[int]) -> list[int]:
    """Utterances put back into one: BOS/EOS dropped at each seam, ``separator`` put in."""
    joined = utterances[0]
    for ids in utterances[1:]:
        joined = [*joined[:-1], *separator, *ids[2:]]
    return joined


@pytest.fixture(scope="module")
def english() -> EspeakPhonemizer:
    return EspeakPhonemizer("en-us")


@pytest.mark.parametrize("sentence", ENGLISH)
def test_clauses_alone_have_the_ids_they_have_in_the_sentence(
    english: EspeakPhonemizer, sentence: str
) -> None:
    parts = _parts(sentence)
    assert len(parts) > 1, "every test sentence has a clause to cut"
    utterances = [
        ids
        for index, part in enumerate(parts)
        for ids in _ids(english, part, continues=index < len(parts) - 1)
    ]
    whole = _ids(english, sentence, continues=False)
    # espeak also ends a sentence at "Dr." or "a.m.": compare utterance by utterance.
    assert _joined(utterances, [SPACE, PAD]) == _joined(whole, [SPACE, PAD])
    for ids in utterances[:-1]:
        assert ids[-3] != SPACE, "a clause ends at its punctuation, not with a space"


def test_chinese_clauses_alone_have_their_ids_in_the_sentence() -> None:
    """espeak-ng reads ，、；： without a pause or a space: the parts simply concatenate."""
    chinese = EspeakPhonemizer("cmn")
    sentence = "我们明天去公园散步，然后回家吃饭；苹果、香蕉和橙子都很好吃。"
    policy = ClausePolicy(EVERY_CLAUSE)
    pieces = [p for char in sentence for p in policy.add(char, 0.0, None)]
    pieces += policy.finish(1.0)
    assert [p.text for p in pieces] == [
        "我们明天去公园散步，",
        "然后回家吃饭；",
        "苹果、",
        "香蕉和橙子都很好吃。",
    ]
    utterances = [
        ids for p in pieces for ids in _ids(chinese, p.text, continues=not p.ends_sentence)
    ]
    assert _joined(utterances, []) == _joined(_ids(chinese, sentence, False), [])


UNPUNCTUATED = [
    "I want to go home tonight because the weather is getting worse every single hour.",
    "The garage door is closed and the porch lights are off and the thermostat downstairs "
    "is set to sixty eight degrees.",
    "When you get a chance could you please check whether the garage door is closed before "
    "the heavy storm that the forecast says will arrive.",
    "I checked the calendar for tomorrow and it looks like you have a meeting with the design "
    "team at ten in the morning followed by lunch with your sister at the new place downtown.",
]


def test_word_cuts_rarely_change_the_phonemes(english: EspeakPhonemizer) -> None:
    """A last-resort cut between words makes espeak read the word before it as final.

    The policy avoids weak words and vowels after the cut; what may remain is a stress
    mark. Counted over every cut of these sentences at 6 words (many more than the
    default 12 makes): at most one in five changes a phoneme (28% for any gap).
    """
    settings = ClauseSettings(
        clause_streaming=ClauseMode.ALWAYS, clause_min_words=4, clause_max_words=6
    )
    cuts = changed = 0
    for sentence in UNPUNCTUATED:
        policy = ClausePolicy(settings)
        pieces = []
        for index, word in enumerate(sentence.split(" ")):
            pieces += policy.add(word if index == 0 else " " + word, float(index), None)
        pieces += policy.finish(100.0)
        whole = _joined(_ids(english, sentence, False), [SPACE, PAD])
        assert len(pieces) > 2
        for k in range(1, len(pieces)):
            # Everything up to this cut, read as a clause alone: the sentence's start?
            head = _joined(_ids(english, " ".join(p.text for p in pieces[:k]), True), [])
            cuts += 1
            changed += head[:-1] != whole[: len(head) - 1]
    assert changed <= cuts / 5, (changed, cuts)
