"""Pluggable phonemizer hook: text -> sentences of Piper phonemes -> Piper phoneme ids.

The default phonemizers reproduce ``piper.PiperVoice.phonemize`` exactly for each of
piper-tts's phoneme types: espeak (same espeak-ng bridge, same ``[[ raw phonemes ]]``
handling) and text are ours; hebrew, japanese, thai and pinyin are piper-tts's own
phonemizers, imported only when such a voice loads (their packages are heavy). Ids follow
``PiperVoice.phonemes_to_ids`` (pinyin pads per syllable), so they equal Piper's.
Users can plug in their own phonemizer with ``module:attribute`` or an entry point name.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import re
import threading
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar, Protocol, cast, runtime_checkable

from piper import voice as piper_voice
from piper.const import BOS, EOS, PAD
from piper.phoneme_ids import DEFAULT_PHONEME_ID_MAP
from piper.phonemize_espeak import EspeakPhonemizer as PiperEspeakBridge
from piper.tashkeel import TashkeelDiacritizer

from wyoming_piper_stream.engine.errors import ErrorCode, SpeechError
from wyoming_piper_stream.engine.phoneme_types import (
    PHONEME_TYPES,
    g2pw_dir,
    missing_phonemizer,
)

_LOGGER = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "wyoming_piper_stream.phonemizers"

# Same pattern as piper.voice: non-greedy and without DOTALL, so blocks never span lines.
_PHONEME_BLOCK_PATTERN = re.compile(r"(\[\[.*?\]\])")

# Piper's default for Arabic diacritization (PiperVoice.taskeen_threshold).
_TASKEEN_THRESHOLD = 0.8

_MAX_TEXT_IN_MESSAGE = 80


class PhonemizerError(SpeechError):
    """A phonemizer could not be loaded, or failed on some text."""

    code = ErrorCode.PHONEMIZER


class MissingPhonemizerError(PhonemizerError):
    """The voice's phoneme type needs an optional extra (or model) that is not installed."""


@runtime_checkable
class Phonemizer(Protocol):
    """Turns text into sentences, each a list of Piper phonemes (NFD codepoints or clusters)."""

    def phonemize(self, text: str) -> list[list[str]]: ...


def phonemes_to_ids(
    phonemes: Sequence[str], id_map: Mapping[str, Sequence[int]], phoneme_type: str = "espeak"
) -> list[int]:
    """Piper's phoneme ids: BOS, PAD, then each phoneme's ids + PAD, then EOS.

    Phonemes missing from ``id_map`` are skipped, as Piper does. An empty ``id_map`` means
    Piper's default map, as in ``PiperVoice.phonemes_to_ids``; "pinyin" voices use Piper's
    Chinese ids (PAD after each syllable's tone or a pause, not after every phoneme).
    """
    if phoneme_type == "pinyin":
        return _pinyin_ids(phonemes, id_map)
    if not id_map:
        id_map = DEFAULT_PHONEME_ID_MAP
    try:
        bos, pad, eos = id_map[BOS], id_map[PAD], id_map[EOS]
    except KeyError as err:
        raise PhonemizerError(f"phoneme id map lacks the required symbol {err.args[0]!r}") from None

    ids = [*bos, *pad]
    missing: dict[str, None] = {}  # ordered set, so we log once per call, not per phoneme
    for phoneme in phonemes:
        if phoneme not in id_map:
            missing[phoneme] = None
            continue
        ids.extend(id_map[phoneme])
        ids.extend(pad)
    ids.extend(eos)

    if missing:
        _LOGGER.warning(
            "Skipped %d phoneme(s) missing from the id map: %s",
            sum(1 for p in phonemes if p in missing),
            " ".join(repr(p) for p in missing),
        )
    return ids


def _pinyin_ids(phonemes: Sequence[str], id_map: Mapping[str, Sequence[int]]) -> list[int]:
    # Only reached for a loaded pinyin voice, whose phonemizer already imported this.
    from piper.phonemize_chinese import phonemes_to_ids as chinese_phonemes_to_ids

    try:
        return chinese_phonemes_to_ids(list(phonemes), id_map)
    except KeyError as err:
        raise PhonemizerError(f"phoneme id map lacks the required symbol {err.args[0]!r}") from None


@dataclass(frozen=True)
class TextPhonemizer:
    """Phonemes are the NFD codepoints of the text (Piper's "text" phoneme type).

    Like Piper, this is always a single sentence, possibly empty.
    """

    def phonemize(self, text: str) -> list[list[str]]:
        return [list(unicodedata.normalize("NFD", text))]


def _as_cluster_set(
    vowel_clusters: Iterable[Sequence[str]] | None,
) -> set[tuple[str, ...]] | None:
    # Same normalization as PiperConfig.from_dict: falsy -> None, each cluster -> tuple.
    return {tuple(cluster) for cluster in vowel_clusters} if vowel_clusters else None


@dataclass(eq=False)
class EspeakPhonemizer:
    """espeak-ng phonemizer identical to ``PiperVoice.phonemize`` for "espeak" voices."""

    espeak_voice: str
    vowel_clusters: Iterable[Sequence[str]] | None = None
    use_tashkeel: bool = True
    """Diacritize Arabic ("ar") text first, as PiperVoice does by default."""

    # espeak-ng is one process-global C library and the bridge's set_voice + get_phonemes
    # pair must not interleave with another caller. We share piper's own lock rather than
    # owning one, because PiperVoice.phonemize may run in this process too (tests, other
    # code) and a private lock would not exclude it. The fallback only guards against a
    # future piper without that attribute.
    _lock: ClassVar[threading.Lock] = getattr(piper_voice, "_ESPEAK_PHONEMIZER_LOCK", None) or (
        threading.Lock()
    )

    _clusters: set[tuple[str, ...]] | None = field(init=False, repr=False)
    _bridge: PiperEspeakBridge = field(init=False, repr=False)
    _diacritizer: TashkeelDiacritizer | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        self._clusters = _as_cluster_set(self.vowel_clusters)
        with self._lock:
            # Re-initializing espeak-ng is harmless for other users: everyone passes
            # piper's bundled data dir and sets the voice before each call.
            self._bridge = PiperEspeakBridge()
            try:
                # Fail at load time on a bad voice name, not on the first request.
                self._bridge.phonemize(self.espeak_voice, "")
            except RuntimeError as err:
                raise PhonemizerError(
                    f"espeak-ng has no voice {self.espeak_voice!r}: {err}"
                ) from err
        if self.espeak_voice == "ar" and self.use_tashkeel:
            self._diacritizer = TashkeelDiacritizer()

    def _espeak(self, text: str) -> list[list[str]]:
        with self._lock:
            return self._bridge.phonemize(self.espeak_voice, text, vowel_clusters=self._clusters)

    def phonemize(self, text: str) -> list[list[str]]:
        # Mirrors piper.voice.PiperVoice.phonemize (piper-tts 1.8.0) step by step, quirks
        # included (e.g. a text part starting with "[[" counts as raw), so ids match.
        phonemes: list[list[str]] = []
        text_parts = _PHONEME_BLOCK_PATTERN.split(text)
        prev_raw_phonemes = False
        for i, text_part in enumerate(text_parts):
            if text_part.startswith("[["):
                prev_raw_phonemes = True
                if not phonemes:
                    phonemes.append([])
                if i > 0 and text_parts[i - 1].endswith(" "):
                    phonemes[-1].append(" ")
                # Raw phonemes are codepoints as written (Piper does not NFD them).
                phonemes[-1].extend(text_part[2:-2].strip())
                if i < len(text_parts) - 1 and text_parts[i + 1].startswith(" "):
                    phonemes[-1].append(" ")
                continue

            if self._diacritizer is not None:
                text_part = self._diacritizer(text_part, taskeen_threshold=_TASKEEN_THRESHOLD)

            part_phonemes = self._espeak(text_part)
            if prev_raw_phonemes and part_phonemes:
                # The first clause continues the sentence the raw block belongs to.
                phonemes[-1].extend(part_phonemes[0])
                part_phonemes = part_phonemes[1:]
            phonemes.extend(part_phonemes)
            prev_raw_phonemes = False

        if phonemes and not phonemes[-1]:
            phonemes.pop()
        return phonemes


def _shorten(text: str) -> str:
    if len(text) <= _MAX_TEXT_IN_MESSAGE:
        return repr(text)
    return repr(text[:_MAX_TEXT_IN_MESSAGE]) + f"... ({len(text)} chars)"


def _describe(phonemizer: object) -> str:
    cls = type(phonemizer)
    return f"{cls.__module__}.{cls.__qualname__}"


def safe_phonemize(phonemizer: Phonemizer, text: str) -> list[list[str]]:
    """Run ``phonemizer`` and check its output, raising only PhonemizerError.

    User phonemizers can fail in any way; the server turns PhonemizerError into an error
    event instead of dying, and a malformed result is caught here rather than silently
    producing wrong ids (a str "sentence" would otherwise be read as single characters).
    """
    name = _describe(phonemizer)
    try:
        result = phonemizer.phonemize(text)
    except Exception as err:
        raise PhonemizerError(
            f"phonemizer {name} failed on text {_shorten(text)}: {type(err).__name__}: {err}"
        ) from err

    if isinstance(result, str | bytes) or not isinstance(result, Sequence):
        raise PhonemizerError(
            f"phonemizer {name} returned {type(result).__name__} for text {_shorten(text)}; "
            "expected a list of sentences, each a list of phoneme strings"
        )
    sentences: list[list[str]] = []
    for sentence in result:
        if (
            isinstance(sentence, str | bytes)
            or not isinstance(sentence, Sequence)
            or not all(isinstance(p, str) for p in sentence)
        ):
            raise PhonemizerError(
                f"phonemizer {name} returned a malformed sentence {sentence!r:.80} for text "
                f"{_shorten(text)}; expected a list of phoneme strings"
            )
        sentences.append(list(sentence))
    return sentences


class PiperPhonemizer:
    """One of piper-tts's own phonemizers (hebrew, japanese, thai, pinyin), one call at a time.

    TLTK and g2pW keep state between calls; the lock keeps two jobs from interleaving.
    """

    def __init__(self, phonemizer: Phonemizer) -> None:
        self.phonemizer = phonemizer
        self._lock = threading.Lock()

    def phonemize(self, text: str) -> list[list[str]]:
        with self._lock:
            return self.phonemizer.phonemize(text)


def _chinese_phonemizer(resource_dir: Path | None) -> Phonemizer:
    from piper.phonemize_chinese import ChinesePhonemizer

    try:  # the model is there (missing_phonemizer): ChinesePhonemizer downloads nothing
        return ChinesePhonemizer(g2pw_dir(resource_dir))
    except OSError as err:  # transformers: the bert-base-chinese tokenizer is not cached
        raise MissingPhonemizerError(
            "pinyin voices need the bert-base-chinese tokenizer in the Hugging Face cache "
            f"(README: phoneme types): {str(err).splitlines()[0]}"
        ) from err


def _piper_phonemizer(phoneme_type: str, resource_dir: Path | None) -> Phonemizer:
    """piper-tts's phonemizer for a non-espeak type, imported only now (heavy packages)."""
    if phoneme_type == "pinyin":
        return _chinese_phonemizer(resource_dir)
    if phoneme_type == "hebrew":
        from piper.phonemize_hebrew import HebrewPhonemizer

        return HebrewPhonemizer()
    if phoneme_type == "japanese":
        from piper.phonemize_japanese import JapanesePhonemizer

        return JapanesePhonemizer()
    from piper.phonemize_thai import ThaiPhonemizer

    return ThaiPhonemizer()


def _default_phonemizer(
    *,
    espeak_voice: str,
    phoneme_type: str,
    vowel_clusters: Iterable[Sequence[str]] | None,
    resource_dir: Path | None,
) -> Phonemizer:
    # PhonemeType is a str enum, so == works for it and for plain strings alike.
    type_name = str(getattr(phoneme_type, "value", phoneme_type))
    if type_name == "espeak":
        return EspeakPhonemizer(espeak_voice, vowel_clusters=vowel_clusters)
    if type_name == "text":
        return TextPhonemizer()
    if type_name not in PHONEME_TYPES:
        raise PhonemizerError(
            f"unknown phoneme type {type_name!r} (piper-tts knows {', '.join(PHONEME_TYPES)}); "
            f"pass a custom phonemizer (module:attribute or an entry point in group "
            f"{ENTRY_POINT_GROUP!r}) for this voice"
        )
    missing = missing_phonemizer(type_name, resource_dir)
    if missing is not None:
        raise MissingPhonemizerError(missing)
    try:
        return PiperPhonemizer(_piper_phonemizer(type_name, resource_dir))
    except PhonemizerError:
        raise
    except Exception as err:
        raise PhonemizerError(
            f"loading the {type_name} phonemizer failed: {type(err).__name__}: {err}"
        ) from err


def _available_entry_points() -> str:
    try:
        names = sorted({ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)})
    except Exception as err:  # broken metadata must not hide the original error
        return f"(could not list entry points: {err})"
    if not names:
        return f"no entry points are installed in group {ENTRY_POINT_GROUP!r}"
    return f"entry points in group {ENTRY_POINT_GROUP!r}: {', '.join(names)}"


def _accepts_espeak_voice(factory: Callable[..., Any]) -> bool | None:
    """Whether ``factory`` takes ``espeak_voice=``; None if its signature is unknown."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    return any(
        p.kind is inspect.Parameter.VAR_KEYWORD
        or (p.name == "espeak_voice" and p.kind is not inspect.Parameter.POSITIONAL_ONLY)
        for p in params
    )


def _instantiate(target: object, origin: str, espeak_voice: str) -> Phonemizer:
    if not isinstance(target, type) and callable(getattr(target, "phonemize", None)):
        return target  # type: ignore[return-value]  # ready-made object
    if not callable(target):
        raise PhonemizerError(
            f"{origin} is a {type(target).__name__}, neither an object with .phonemize "
            "nor a class/factory returning one"
        )

    # Decide from the signature rather than catching TypeError, which would also
    # swallow genuine TypeErrors raised inside the factory.
    accepts = _accepts_espeak_voice(target)
    try:
        if accepts is None:
            try:
                obj = target(espeak_voice=espeak_voice)
            except TypeError:
                obj = target()
        elif accepts:
            obj = target(espeak_voice=espeak_voice)
        else:
            obj = target()
    except PhonemizerError:
        raise
    except Exception as err:
        raise PhonemizerError(
            f"creating the phonemizer from {origin} failed: {type(err).__name__}: {err}"
        ) from err

    if not callable(getattr(obj, "phonemize", None)):
        raise PhonemizerError(
            f"{origin} returned a {type(obj).__name__}, which has no phonemize(text) method"
        )
    return cast(Phonemizer, obj)


def _import_target(spec: str) -> object:
    module_name, _, attr_path = (part.strip() for part in spec.partition(":"))
    if not module_name or not attr_path:
        raise PhonemizerError(
            f"invalid phonemizer spec {spec!r}: expected 'module:attribute' or an entry "
            f"point name; {_available_entry_points()}"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        missing = err.name or ""
        if module_name == missing or module_name.startswith(missing + "."):  # not a dependency
            raise PhonemizerError(
                f"phonemizer module {module_name!r} not found (spec {spec!r}); "
                f"{_available_entry_points()}"
            ) from err
        raise PhonemizerError(f"importing phonemizer module {module_name!r} failed: {err}") from err
    except Exception as err:
        raise PhonemizerError(
            f"importing phonemizer module {module_name!r} failed: {type(err).__name__}: {err}"
        ) from err

    target: object = module
    for attr in attr_path.split("."):
        try:
            target = getattr(target, attr)
        except AttributeError:
            raise PhonemizerError(
                f"phonemizer module {module_name!r} has no attribute {attr_path!r} "
                f"(spec {spec!r}); {_available_entry_points()}"
            ) from None
    return target


def _load_entry_point(name: str) -> object:
    matches = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not matches:
        raise PhonemizerError(
            f"unknown phonemizer {name!r}: not 'module:attribute' and not an installed "
            f"entry point; {_available_entry_points()}"
        )
    if len(matches) > 1:
        _LOGGER.warning(
            "Several entry points named %r in %s; using %s",
            name,
            ENTRY_POINT_GROUP,
            matches[0].value,
        )
    try:
        return matches[0].load()
    except Exception as err:
        raise PhonemizerError(
            f"loading phonemizer entry point {name!r} ({matches[0].value}) failed: "
            f"{type(err).__name__}: {err}"
        ) from err


def load_phonemizer(
    spec: str | None,
    *,
    espeak_voice: str,
    phoneme_type: str,
    vowel_clusters: Iterable[Sequence[str]] | None = None,
    resource_dir: Path | None = None,
) -> Phonemizer:
    """Resolve a phonemizer.

    - ``None`` or blank: the built-in phonemizer for the voice's ``phoneme_type``
      (``resource_dir/g2pW`` holds the model of "pinyin" voices).
    - ``"module:attribute"``: imported; ``attribute`` (may be dotted) is an object with
      ``.phonemize`` or a class/factory, called with ``espeak_voice=`` if it accepts it.
    - ``"NAME"``: entry point ``NAME`` in group ``wyoming_piper_stream.phonemizers``,
      resolved the same way.

    Raises PhonemizerError with a readable message on any failure.
    """
    if spec is None or not spec.strip():
        return _default_phonemizer(
            espeak_voice=espeak_voice,
            phoneme_type=phoneme_type,
            vowel_clusters=vowel_clusters,
            resource_dir=resource_dir,
        )

    spec = spec.strip()
    if ":" in spec:
        target, origin = _import_target(spec), repr(spec)
    else:
        target, origin = _load_entry_point(spec), f"entry point {spec!r}"
    phonemizer = _instantiate(target, origin, espeak_voice)
    _LOGGER.debug("Using phonemizer %s from %s", _describe(phonemizer), origin)
    return phonemizer
