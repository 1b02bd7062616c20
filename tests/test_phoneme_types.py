"""Every phoneme type of piper-tts 1.8.0: ids equal PiperVoice's, and each type's tiny
fixture voice streams through the real server (or fails with one line naming the extra).

Types whose phonemizer is not installed skip with the reason the server would give.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES, REPO
from piper import PiperVoice
from piper.config import PiperConfig, SynthesisConfig
from server_util import ServerProcess, run_server, synthesize
from wyoming.error import Error
from wyoming.tts import SynthesizeVoice

from wyoming_piper_stream.engine.phoneme_types import PHONEME_TYPES, missing_phonemizer
from wyoming_piper_stream.engine.phonemize import (
    MissingPhonemizerError,
    PiperPhonemizer,
    load_phonemizer,
    phonemes_to_ids,
)
from wyoming_piper_stream.engine.settings import StreamingSettings
from wyoming_piper_stream.server.sentences import punctuate
from wyoming_piper_stream.server.settings import SynthesisSettings
from wyoming_piper_stream.voices.library import VoiceLibrary
from wyoming_piper_stream.voices.settings import VoiceLibrarySettings

TYPE_FIXTURES = FIXTURES / "phoneme-types"

SENTENCES: dict[str, list[str]] = {
    "hebrew": [
        "שלום, מה שלומך היום?",
        "אני רוצה להזמין שולחן לשניים בשעה שמונה בערב.",
        "מזג האוויר בתל אביב חם ולח.",
        "הרכבת לירושלים יוצאת בעוד עשר דקות.",
        "תדליק בבקשה את האור במטבח.",
        "הילדים משחקים בגן אחרי בית־הספר.",
        "בראשית ברא אלהים את השמים ואת הארץ׃",
        "קניתי לחם, חלב וביצים בסופרמרקט.",
        "האם אתה יודע איפה נמצאת התחנה המרכזית?",
        "תודה רבה על העזרה, יום טוב!",
    ],
    "japanese": [
        "今日は良い天気ですね。",
        "明日の朝、七時に起こしてください。",
        "台所の電気をつけてください。",
        "東京駅までどのくらいかかりますか？",
        "彼は毎日図書館で本を読んでいます。",
        "すみません、もう一度言っていただけますか？",
        "週末は友達と映画を見に行きました。",
        "温度は二十三度、湿度は六十パーセントです。",
        "新しいレストランはとても美味しかったです！",
        "日本語を勉強するのは難しいけれど、楽しいです。今日はここまで。",
    ],
    "thai": [
        "สวัสดีครับ วันนี้อากาศดีมาก",
        "กรุณาเปิดไฟในห้องครัวด้วย",
        "พรุ่งนี้ฉันจะไปทำงานแต่เช้า",
        "รถไฟฟ้ามาถึงสถานีแล้ว",
        "ขอบคุณมากครับ ยินดีที่ได้รู้จัก",
        "อุณหภูมิวันนี้ 32 องศา",
        "คุณชอบกินอาหารไทยไหม?",
        "เด็กๆ กำลังเล่นฟุตบอลในสนาม",
        "ราคา 1,250 บาท",
        "ข่าวเช้านี้บอกว่าฝนจะตกหนัก. พรุ่งนี้แดดออก",
    ],
    "text": [
        "Hello world.",
        "Ünïcödé, with accents!",
        "Numbers 1, 2 and 3?",
        "Tabs\tand  spaces.",
        "日本語のテキスト。",
        "שלום עולם",
        "مرحبا بالعالم",
        "สวัสดี",
        "Émile a mangé des crêpes.",
        "",
    ],
}

# Pinyin phonemes as piper's ChinesePhonemizer writes them (g2pW itself needs a model
# download, so only the ids are compared here): initial, final, tone; pauses.
PINYIN_PHONEMES = [
    ["n", "i", "3", "h", "ao", "3", "。"],
    ["j", "in", "1", "t", "ian", "1", "t", "ian", "1", "q", "i", "4", "h", "en", "3"],
    ["h", "ao", "3", "，", "w", "o", "3", "m", "en", "5", "q", "v", "4", "！"],
    ["Ø", "a", "1", "、", "Ø", "er", "4", "？"],
    ["zh", "ong", "1", "g", "uo", "2", "；", "sh", "ang", "4", "h", "ai", "3", "："],
    ["x", "ie", "4", "x", "ie", "5", " ", "n", "i", "3", "."],
    ["l", "ve", "4", "s", "e", "4", "?", "…", "d", "ui", "4", "!"],
    ["ch", "i", "1", "f", "an", "4", "—", "r", "en", "2", ",", "c", "ai", "4", ":"],
    ["j", "van", "3", "x", "vn", "2", ";", "z", "ou", "3", "unknown", "。"],
    [],
]


def _config(phoneme_type: str) -> dict[str, Any]:
    path = TYPE_FIXTURES / f"tiny-{phoneme_type}.onnx.json"
    return json.loads(path.read_text(encoding="utf-8"))


def _skip_if_missing(phoneme_type: str) -> None:
    missing = missing_phonemizer(phoneme_type)
    if missing is not None:
        pytest.skip(missing)


def test_every_piper_phoneme_type_is_known() -> None:
    from piper.config import PhonemeType

    assert set(PHONEME_TYPES) == {t.value for t in PhonemeType}


@pytest.mark.parametrize("phoneme_type", ["hebrew", "japanese", "thai", "text"])
def test_ids_equal_piper_voice(phoneme_type: str) -> None:
    _skip_if_missing(phoneme_type)
    config = _config(phoneme_type)
    reference = PiperVoice(session=None, config=PiperConfig.from_dict(config))  # type: ignore[arg-type]
    ours = load_phonemizer(
        None, espeak_voice=config["espeak"]["voice"], phoneme_type=config["phoneme_type"]
    )
    if phoneme_type != "text":
        assert isinstance(ours, PiperPhonemizer)
    id_map = config["phoneme_id_map"]
    for text in SENTENCES[phoneme_type]:
        expected = reference.phonemize(text)
        actual = ours.phonemize(text)
        assert actual == expected, text
        assert [phonemes_to_ids(s, id_map, phoneme_type) for s in actual] == [
            reference.phonemes_to_ids(s) for s in expected
        ], text
    if phoneme_type != "text":  # real speech, not empty
        assert all(ours.phonemize(text) for text in SENTENCES[phoneme_type])


def test_pinyin_ids_equal_piper_voice() -> None:
    pytest.importorskip("unicode_rbnf", reason=missing_phonemizer("pinyin") or "")
    config = _config("pinyin")
    reference = PiperVoice(session=None, config=PiperConfig.from_dict(config))  # type: ignore[arg-type]
    for phonemes in PINYIN_PHONEMES:
        ids = phonemes_to_ids(phonemes, config["phoneme_id_map"], "pinyin")
        assert ids == reference.phonemes_to_ids(phonemes), phonemes
    # Piper pads after each syllable's tone and each pause, not after every phoneme.
    assert phonemes_to_ids(["n", "i", "3", "。"], config["phoneme_id_map"], "pinyin") == [
        1, 10, 39, 66, 0, 69, 0, 2,
    ]  # fmt: skip


def test_an_empty_id_map_means_pipers_default_map() -> None:
    config = dict(_config("text"), phoneme_id_map={})
    reference = PiperVoice(session=None, config=PiperConfig.from_dict(config))  # type: ignore[arg-type]
    phonemes = list("hello, wörld")
    assert phonemes_to_ids(phonemes, {}) == reference.phonemes_to_ids(phonemes)


def test_pinyin_without_its_model_fails_with_one_line(tmp_path: Path) -> None:
    with pytest.raises(MissingPhonemizerError) as failure:
        load_phonemizer(None, espeak_voice="cmn", phoneme_type="pinyin", resource_dir=tmp_path)
    message = str(failure.value)
    assert "\n" not in message
    if missing_phonemizer("pinyin", tmp_path) and "wyoming-piper-stream[zh]" in message:
        return  # the zh extra itself is absent
    assert str(tmp_path / "g2pW") in message
    assert "G2PW_URL" in message
    assert not (tmp_path / "g2pW").exists()  # nothing was downloaded


@pytest.mark.parametrize(("phoneme_type", "extra"), [("japanese", "ja"), ("thai", "th")])
def test_a_missing_extra_is_named(
    monkeypatch: pytest.MonkeyPatch, phoneme_type: str, extra: str
) -> None:
    hidden = PHONEME_TYPES[phoneme_type].modules[0]
    _hide_modules(monkeypatch, hidden)
    with pytest.raises(MissingPhonemizerError) as failure:
        load_phonemizer(None, espeak_voice="xx", phoneme_type=phoneme_type)
    assert str(failure.value).endswith(f"pip install 'wyoming-piper-stream[{extra}]'")
    assert hidden in str(failure.value)


def test_the_phonemizers_are_imported_only_when_such_a_voice_loads() -> None:
    code = (
        "import sys\n"
        "from wyoming_piper_stream.engine import phonemize\n"
        "from wyoming_piper_stream.voices import library, builder\n"
        "from wyoming_piper_stream.server import handler\n"
        "heavy = ['pyopenjtalk', 'tltk', 'transformers', 'g2pw', 'pandas', 'unicode_rbnf',\n"
        "         'piper.phonemize_hebrew', 'piper.phonemize_japanese', 'piper.phonemize_thai',\n"
        "         'piper.phonemize_chinese']\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]", result.stderr


# ---------------------------------------------------------------- end to end

# A sitecustomize that makes the named modules unimportable, so a test can show the
# server without an extra that this machine has installed.
_HIDER = """
import importlib.abc, os, sys

_HIDDEN = set(filter(None, os.environ.get("WPS_TEST_HIDE_MODULES", "").split(",")))


class _Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _Hide())
"""


def _hide_modules(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Hide modules in this process (for load_phonemizer)."""
    import importlib.util

    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> Any:
        if name.split(".")[0] in names:
            return None
        return real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def _hidden_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *names: str) -> None:
    """Hide modules in server subprocesses started from now on."""
    hider_dir = tmp_path / "hider"
    hider_dir.mkdir()
    (hider_dir / "sitecustomize.py").write_text(_HIDER, encoding="utf-8")
    path = os.pathsep.join(filter(None, [str(hider_dir), os.environ.get("PYTHONPATH")]))
    monkeypatch.setenv("PYTHONPATH", path)
    monkeypatch.setenv("WPS_TEST_HIDE_MODULES", ",".join(names))


def _type_voices(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for config in TYPE_FIXTURES.glob("*.onnx.json"):
        shutil.copy(config, path / config.name)
        graph = config.with_suffix("")  # a symlink to the shared tiny graph
        shutil.copy(graph, path / graph.name)
    return path


@pytest.fixture(scope="module")
def type_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("phoneme-types")
    voices = _type_voices(root / "voices")
    with run_server(root, "--data-dir", str(voices), "--max-voices", "2") as server:
        server.data_dir = voices
        yield server
    assert "Traceback" not in server.log(), server.log_tail()


def _piper_samples(phoneme_type: str, text: str) -> int:
    """Samples PiperVoice makes of ``text`` with the fixture voice, noise off."""
    graph = TYPE_FIXTURES / f"tiny-{phoneme_type}.onnx"
    voice = PiperVoice.load(graph, config_path=f"{graph}.json")
    syn_config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    return sum(len(chunk.audio_float_array) for chunk in voice.synthesize(text, syn_config))


@pytest.mark.parametrize("phoneme_type", ["hebrew", "japanese", "thai", "text"])
async def test_each_type_streams_through_the_server(
    type_server: ServerProcess, phoneme_type: str
) -> None:
    _skip_if_missing(phoneme_type)
    text = SENTENCES[phoneme_type][0]
    events, pcm = await synthesize(
        type_server.uri, text, SynthesizeVoice(name=f"tiny-{phoneme_type}")
    )
    assert events[0].type == "audio-start", [e.type for e in events]
    assert events[-1].type == "audio-stop"
    # Same ids as Piper -> same durations: exactly Piper's number of samples (of the text
    # as the server speaks it: with a full stop added where it lacks one, as wyoming-piper).
    spoken = punctuate(text, SynthesisSettings().auto_punctuation)
    assert len(pcm) // 2 == _piper_samples(phoneme_type, spoken)
    assert max(pcm) > 0


async def test_pinyin_voice_fails_with_an_error_event_and_others_still_speak(
    type_server: ServerProcess,
) -> None:
    events, pcm = await synthesize(type_server.uri, "你好。", SynthesizeVoice(name="tiny-pinyin"))
    errors = [Error.from_event(e) for e in events if Error.is_type(e.type)]
    assert len(errors) == 1 and pcm == b""
    assert "\n" not in errors[0].text
    assert "g2pW" in errors[0].text or "wyoming-piper-stream[zh]" in errors[0].text
    _, after = await synthesize(type_server.uri, "Hello.", SynthesizeVoice(name="tiny-text"))
    assert len(after) > 0


async def test_a_voice_without_its_extra_gets_an_error_event(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _hidden_env(monkeypatch, tmp_path, "pyopenjtalk")
    voices = _type_voices(tmp_path / "voices")
    with run_server(tmp_path, "--data-dir", str(voices)) as server:
        events, pcm = await synthesize(
            server.uri, "今日は良い天気ですね。", SynthesizeVoice(name="tiny-japanese")
        )
        errors = [Error.from_event(e) for e in events if Error.is_type(e.type)]
        assert len(errors) == 1 and pcm == b""
        assert errors[0].code == "phonemizer"
        assert errors[0].text.startswith("voice tiny-japanese: japanese voices need")
        assert errors[0].text.endswith("pip install 'wyoming-piper-stream[ja]'")
        # Other voices are unaffected.
        _, other = await synthesize(server.uri, "Hello.", SynthesizeVoice(name="tiny-text"))
        assert len(other) > 0


def test_a_default_voice_without_its_extra_stops_the_server_at_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _hidden_env(monkeypatch, tmp_path, "tltk")
    voices = _type_voices(tmp_path / "voices")
    args = ("--uri", "tcp://127.0.0.1:0", "--data-dir", str(voices), "--voice", "tiny-thai")
    result = subprocess.run(
        [sys.executable, "-m", "wyoming_piper_stream", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    # The missing list also names TLTK's other dependencies where the extra is absent.
    assert line.startswith(
        "error: voice tiny-thai: thai voices need the Thai phonemizer (TLTK), which is not "
        "installed (missing tltk"
    )
    assert line.endswith("): pip install 'wyoming-piper-stream[th]'")


def test_a_loaded_voice_honours_its_vowel_clusters(tmp_path: Path) -> None:
    config = json.loads((FIXTURES / "tiny-single.onnx.json").read_text(encoding="utf-8"))
    config["vowel_clusters"] = [["a", "ɪ"], ["o", "ʊ"]]
    (tmp_path / "clusters.onnx.json").write_text(json.dumps(config), encoding="utf-8")
    shutil.copy(FIXTURES / "tiny-single.onnx", tmp_path / "clusters.onnx")
    settings = VoiceLibrarySettings(default_voice="clusters", data_dirs=(tmp_path,))
    ready = asyncio.run(VoiceLibrary(settings, StreamingSettings()).get(None))

    text = "I like my kite, and so do you."
    reference = PiperVoice(session=None, config=PiperConfig.from_dict(config))  # type: ignore[arg-type]
    phonemes = ready.phonemizer.phonemize(text)
    assert phonemes == reference.phonemize(text)
    assert "aɪ" in phonemes[0] and "oʊ" in phonemes[0]
