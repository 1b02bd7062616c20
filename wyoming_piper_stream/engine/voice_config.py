"""What a voice is before it is loaded: its files and its JSON config.

Kept free of numpy and onnxruntime so the server can list voices (answer
describe) before the heavy libraries have been imported.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wyoming_piper_stream.engine.errors import ErrorCode, SpeechError

DEFAULT_HOP_LENGTH = 256
"""Audio samples per latent frame, when a voice's config does not say (as Piper)."""


class VoiceError(SpeechError):
    """A voice cannot be found, loaded or used as asked."""

    code = ErrorCode.VOICE


@dataclass(frozen=True)
class VoiceConfig:
    """What the voice's ``.onnx.json`` says, in the parts we use."""

    sample_rate: int
    phoneme_id_map: Mapping[str, Sequence[int]]
    espeak_voice: str = "en-us"
    phoneme_type: str = "espeak"
    noise_scale: float = 0.667
    length_scale: float = 1.0
    noise_w: float = 0.8
    num_speakers: int = 1
    speaker_id_map: Mapping[str, int] = field(default_factory=dict)
    language: str = ""
    dataset: str = ""
    quality: str = ""
    hop_length: int = DEFAULT_HOP_LENGTH
    """Audio samples per latent frame (the decoder's total upsampling)."""
    default_speaker_id: int = 0
    """Speaker of a multi-speaker voice when a request names none."""
    vowel_clusters: tuple[tuple[str, ...], ...] = ()
    """espeak phonemes merged into one (e.g. ``("a", "ɪ")`` -> ``aɪ``), as PiperVoice does."""

    @staticmethod
    def from_dict(config: Mapping[str, Any]) -> VoiceConfig:
        inference = config.get("inference", {})
        language = config.get("language", {})
        return VoiceConfig(
            sample_rate=int(config["audio"]["sample_rate"]),
            phoneme_id_map=config["phoneme_id_map"],
            espeak_voice=config.get("espeak", {}).get("voice", "en-us"),
            phoneme_type=config.get("phoneme_type", "espeak"),
            noise_scale=float(inference.get("noise_scale", 0.667)),
            length_scale=float(inference.get("length_scale", 1.0)),
            noise_w=float(inference.get("noise_w", 0.8)),
            num_speakers=int(config.get("num_speakers", 1)),
            speaker_id_map=dict(config.get("speaker_id_map") or {}),
            language=language.get("code", "") if isinstance(language, dict) else "",
            dataset=config.get("dataset", ""),
            quality=config.get("audio", {}).get("quality", ""),
            hop_length=int(config.get("hop_length", DEFAULT_HOP_LENGTH)),
            default_speaker_id=int(config.get("default_speaker_id", 0)),
            vowel_clusters=tuple(tuple(c) for c in config.get("vowel_clusters") or ()),
        )

    @staticmethod
    def from_file(path: Path) -> VoiceConfig:
        try:
            with open(path, encoding="utf-8") as config_file:
                return VoiceConfig.from_dict(json.load(config_file))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise VoiceError(f"bad voice config {path}: {error}") from error


@dataclass(frozen=True)
class VoiceFiles:
    """Where one voice's files are; ``model`` for stock, ``encoder``+``decoder`` for pairs,
    ``graphs`` for our cache's merged model."""

    name: str
    config: Path
    model: Path | None = None
    encoder: Path | None = None
    decoder: Path | None = None
    flow: Path | None = None
    """A separate flow graph (our three-way split): the encoder then ends at ``z_p``."""
    graphs: Path | None = None
    """Our cache's merged model of the split graphs (``graph_merge``)."""
