"""Sentences and clauses in every script: real Chinese, Japanese, Arabic, Hebrew and Thai.

Sentence splitting and auto-punctuation know each script's marks; a long sentence is cut
into encoder pieces only at its clause marks (or Thai phrase spaces), and the pieces are
always Piper's phonemes of the whole sentence, in order.
"""

from __future__ import annotations

import pytest

from wyoming_piper_stream.engine.clauses import (
    CLAUSE_BREAKS,
    text_phrases,
    utterance_ids,
    utterance_phonemes,
)
from wyoming_piper_stream.engine.phoneme_types import missing_phonemizer
from wyoming_piper_stream.engine.phonemize import (
    EspeakPhonemizer,
    Phonemizer,
    load_phonemizer,
    phonemes_to_ids,
)
from wyoming_piper_stream.server.sentences import punctuate, split_sentences
from wyoming_piper_stream.server.settings import SynthesisSettings

AUTO = SynthesisSettings().auto_punctuation

# ---------------------------------------------------------------- sentences


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        (
            "你好。今天天气很好！你觉得呢？我们去公园吧",
            ["你好。", "今天天气很好！", "你觉得呢？", "我们去公园吧。"],
        ),
        (
            "こんにちは。お元気ですか？はい、元気です",
            ["こんにちは。", "お元気ですか？", "はい、元気です。"],
        ),
        ("مرحبا. كيف حالك؟ أنا بخير، شكرا", ["مرحبا.", "كيف حالك؟", "أنا بخير، شكرا."]),
        (
            "בראשית ברא אלהים את השמים ואת הארץ׃ והארץ היתה תהו ובהו",
            ["בראשית ברא אלהים את השמים ואת הארץ׃", "והארץ היתה תהו ובהו."],
        ),
        ("שלום, מה שלומך? אני בסדר", ["שלום, מה שלומך?", "אני בסדר."]),
        ("สวัสดีครับ วันนี้อากาศดีมาก", ["สวัสดีครับ วันนี้อากาศดีมาก."]),
        ("Hello there. How are you", ["Hello there.", "How are you."]),
    ],
)
def test_sentences_of_every_script(text: str, sentences: list[str]) -> None:
    assert split_sentences(text, AUTO) == sentences


def test_auto_punctuation_keeps_every_scripts_own_end_mark() -> None:
    assert punctuate("בראשית ברא אלהים׃", AUTO) == "בראשית ברא אלהים׃"
    assert punctuate("كيف حالك؟", AUTO) == "كيف حالك؟"
    assert punctuate("好的", AUTO) == "好的。"
    assert punctuate("はい", AUTO) == "はい。"
    assert punctuate("カタカナ", AUTO) == "カタカナ。"
    assert punctuate("好的", ".!?") == "好的."  # only marks the user allowed are added
    assert punctuate("hello", AUTO) == "hello."
    assert punctuate("hello", "") == "hello"


def test_clause_marks_of_every_script_are_in_the_one_set() -> None:
    assert set(",;:，、；：،؛") <= CLAUSE_BREAKS
    assert "־" not in CLAUSE_BREAKS  # Hebrew maqaf joins words
    assert not CLAUSE_BREAKS & set(".?!。？！؟׃")


@pytest.mark.parametrize(
    ("sentence", "phrases"),
    [
        (
            "你好，今天天气很好、我们去公园吧；好吗：是的。",
            ["你好，", "今天天气很好、", "我们去公园吧；", "好吗：", "是的。"],
        ),
        ("مرحبا، كيف حالك؛ أنا بخير.", ["مرحبا،", "كيف حالك؛", "أنا بخير."]),
        ("בית־ספר גדול, ילדים רבים: כן", ["בית־ספר גדול,", "ילדים רבים:", "כן"]),
        ("สวัสดีครับ วันนี้อากาศดีมาก ผมจะไปตลาด", ["สวัสดีครับ", "วันนี้อากาศดีมาก", "ผมจะไปตลาด"]),
        ("It costs 1,000 dollars, or so.", ["It costs 1,000 dollars,", "or so."]),
    ],
)  # fmt: skip
def test_text_phrases(sentence: str, phrases: list[str]) -> None:
    assert text_phrases(sentence) == phrases


# ---------------------------------------------------------------- clause cuts


def _consumes(pieces: list[list[str]], whole: list[str]) -> bool:
    """The pieces are ``whole`` in order, with at most a space dropped between two."""
    position = 0
    for piece in pieces:
        if whole[position : position + len(piece)] != piece:
            return False
        position += len(piece)
        if whole[position : position + 1] == [" "]:
            position += 1
    return position == len(whole)


def _check_cut(phonemizer: Phonemizer, sentence: str, limit: int) -> list[list[str]]:
    (whole,) = phonemizer.phonemize(sentence)
    assert len(whole) > limit
    pieces = list(utterance_phonemes(phonemizer, sentence, limit))
    assert len(pieces) >= 2, "".join(whole)
    assert _consumes(pieces, whole)
    assert list(utterance_phonemes(phonemizer, sentence, 0)) == [whole]  # 0: never cut
    return pieces


def test_chinese_espeak_is_cut_at_full_width_commas_it_does_not_write() -> None:
    phonemizer = EspeakPhonemizer("cmn")
    sentence = "今天早上我去了市场买菜，然后回家做了一顿丰盛的午饭，下午又和朋友一起去公园散步。"
    pieces = _check_cut(phonemizer, sentence, 40)
    # Each piece is what espeak-ng says for one clause alone.
    clauses = text_phrases(sentence)
    assert ["".join(p) for p in pieces] == ["".join(phonemizer.phonemize(c)[0]) for c in clauses]


def test_arabic_is_cut_after_its_comma() -> None:
    phonemizer = EspeakPhonemizer("ar", use_tashkeel=False)
    sentence = (
        "ذهبت إلى السوق في الصباح الباكر، واشتريت الخبز والحليب والفواكه الطازجة، ثم عدت إلى البيت."
    )
    pieces = _check_cut(phonemizer, sentence, 50)
    assert all(piece[-1] == "," for piece in pieces[:-1])


def test_hebrew_is_cut_after_its_commas_which_its_phonemes_drop() -> None:
    phonemizer = load_phonemizer(None, espeak_voice="he", phoneme_type="hebrew")
    sentence = "הלכתי לשוק בבוקר המוקדם, קניתי לחם וחלב ופירות טריים, ואחר כך חזרתי הביתה לאכול."
    pieces = _check_cut(phonemizer, sentence, 50)
    # Cut after the words before each comma: 4 words, 5 words, 5 words.
    assert ["".join(p).count(" ") + 1 for p in pieces] == [4, 5, 5]


@pytest.mark.skipif(
    missing_phonemizer("japanese") is not None, reason=str(missing_phonemizer("japanese"))
)
def test_japanese_is_cut_after_its_commas() -> None:
    phonemizer = load_phonemizer(None, espeak_voice="ja", phoneme_type="japanese")
    sentence = (
        "今日は朝早く起きて駅まで歩きました、それから電車に乗って会社に行きました、"
        "夜は家族と晩ご飯を食べました。"
    )
    pieces = _check_cut(phonemizer, sentence, 40)
    assert all(piece[-1] == "," for piece in pieces[:-1])


@pytest.mark.skipif(missing_phonemizer("thai") is not None, reason=str(missing_phonemizer("thai")))
def test_thai_is_cut_at_its_phrase_spaces() -> None:
    phonemizer = load_phonemizer(None, espeak_voice="th", phoneme_type="thai")
    sentence = "เมื่อเช้านี้ฉันตื่นแต่เช้าไปตลาด ซื้อผักผลไม้และปลาสดมาทำอาหาร แล้วก็กลับบ้านมาพักผ่อนกับครอบครัว"
    pieces = _check_cut(phonemizer, sentence, 40)
    assert len(pieces) == 3


def test_pinyin_ids_of_pieces_pad_like_piper() -> None:
    pytest.importorskip("unicode_rbnf", reason=str(missing_phonemizer("pinyin")))

    class Pinyin:
        def phonemize(self, text: str) -> list[list[str]]:
            return [["n", "i", "3", "h", "ao", "3", "，", "z", "ai", "4", "j", "ian", "4", "。"]]

    from piper.phonemize_chinese import PHONEME_TO_ID

    ids = list(utterance_ids(Pinyin(), "你好，再见。", PHONEME_TO_ID, 8, "pinyin"))
    assert ids == [
        phonemes_to_ids(["n", "i", "3", "h", "ao", "3", "，"], PHONEME_TO_ID, "pinyin"),
        phonemes_to_ids(["z", "ai", "4", "j", "ian", "4", "。"], PHONEME_TO_ID, "pinyin"),
    ]
