"""piper-tts's phoneme types and what each one's phonemizer needs installed.

Light (standard library only), so the server can check its default voice at start
without importing the phonemizers, whose packages are heavy.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PhonemeTypeSupport:
    """What one of piper-tts's phoneme types needs beyond our own dependencies."""

    extra: str | None
    """Our pip extra (same name as piper-tts's) that installs its packages; None: none needed."""
    modules: tuple[str, ...] = ()
    """Modules its phonemizer imports; checked without importing them (they are heavy)."""
    what: str = ""
    """The phonemizer, as named in messages."""


PHONEME_TYPES: Mapping[str, PhonemeTypeSupport] = {
    "espeak": PhonemeTypeSupport(None, what="espeak-ng (bundled with piper-tts)"),
    "text": PhonemeTypeSupport(None, what="Unicode codepoints"),
    "hebrew": PhonemeTypeSupport(None, what="Nakdimon + IPA rules (bundled with piper-tts)"),
    "pinyin": PhonemeTypeSupport(
        "zh", ("g2pw", "transformers", "unicode_rbnf"), "the Chinese phonemizer (g2pW)"
    ),
    "japanese": PhonemeTypeSupport(
        "ja", ("pyopenjtalk",), "the Japanese phonemizer (pyopenjtalk-plus)"
    ),
    # tltk imports requests without declaring it.
    "thai": PhonemeTypeSupport(
        "th", ("tltk", "unicode_rbnf", "requests"), "the Thai phonemizer (TLTK)"
    ),
}
"""Every phoneme type of piper-tts 1.8.0 and what its phonemizer needs."""

G2PW_DIR_NAME = "g2pW"
"""Folder (in the resource dir) holding the g2pW model, as PiperVoice names it."""


def _module_missing(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is None
    except (ImportError, ValueError):  # a broken or blocked package counts as missing
        return True


def g2pw_dir(resource_dir: Path | None) -> Path:
    """Where pinyin voices need the g2pW model: ``RESOURCE_DIR/g2pW`` (PiperVoice: its
    download_dir), the current folder without a resource dir, as PiperVoice."""
    return (resource_dir if resource_dir is not None else Path.cwd()) / G2PW_DIR_NAME


def missing_g2pw_model(resource_dir: Path | None) -> str | None:
    """One line saying where to put the g2pW model if it is not there, else None."""
    model_dir = g2pw_dir(resource_dir)
    if (model_dir / "g2pw.onnx").is_file():
        return None
    # PiperVoice would download it here; we never fetch models at run time.
    return (
        f"pinyin voices need the g2pW model in {model_dir} (no g2pw.onnx there): unpack the "
        "archive at piper.phonemize_chinese.G2PW_URL into it (README: phoneme types)"
    )


def missing_phonemizer(phoneme_type: str, resource_dir: Path | None = None) -> str | None:
    """One line naming the extra (or model) to install if ``phoneme_type``'s phonemizer is
    absent, else None.

    Imports nothing heavy: the server checks its default voice with it at start.
    """
    type_name = str(getattr(phoneme_type, "value", phoneme_type))  # PhonemeType or str
    support = PHONEME_TYPES.get(type_name)
    if support is None or support.extra is None:
        return None
    missing = [name for name in support.modules if _module_missing(name)]
    if not missing:
        return missing_g2pw_model(resource_dir) if type_name == "pinyin" else None
    return (
        f"{type_name} voices need {support.what}, which is not installed "
        f"(missing {', '.join(missing)}): pip install 'wyoming-piper-stream[{support.extra}]'"
    )
