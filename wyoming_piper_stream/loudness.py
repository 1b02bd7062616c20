"""One fixed gain per voice, and float -> 16-bit PCM without hard clipping.

Piper peak-normalizes each sentence after synthesizing it whole. A stream cannot
know a sentence's peak before its last chunk, and per-chunk normalization makes
the volume jump. So each voice gets one gain at load: the one that brings the
median peak of a few typical sentences to full scale. A soft knee near full
scale catches the louder sentences instead of clipping them.
"""

from __future__ import annotations

import numpy as np

from .voice import SynthesisScales, Voice

# Typical assistant replies as espeak IPA. IPA symbols are shared by the
# phoneme maps of espeak voices, so these calibrate voices of any language.
CALIBRATION_PHONEMES = (
    "tˈɜːn ɔnðə kˈɪtʃən lˈaɪts.",
    "ðə wˈɛðɚ tədˈeɪ ɪz sˈʌni wɪð ɐ hˈaɪʲ ʌv sˈɛvənti tˈuː dᵻɡɹˈiːz.",
    "aɪ hæv sˈɛt ɐ tˈaɪmɚ fɔːɹ tˈɛn mˈɪnɪts.",
    "sˈɑːɹi, aɪ kʊd nˌɑːt fˈaɪnd ɐ dɪvˈaɪs kˈɔːld ɡɚɹˈɑːʒ dˈɔːɹ.",
    "juː hæv θɹˈiː mˈiːɾɪŋz tədˈeɪ.",
    "ɔːlɹˈaɪt, aɪv ˈædᵻd mˈɪlk, ˈɛɡz, ænd bɹˈɛd tə jʊɹ ʃˈɑːpɪŋ lˈɪst.",
)

KNEE = 0.9
"""Above this level the soft limiter bends the signal so it never reaches full scale."""

MAX_GAIN = 50.0
"""Cap for near-silent voices (e.g. untrained fixtures) so noise is not blown up."""

_INT16_MAX = 32767.0


def calibration_ids(voice: Voice) -> list[list[int]]:
    """Phoneme ids of the calibration sentences in the voice's own id map."""
    id_map = voice.config.phoneme_id_map
    pad = list(id_map.get("_", [0]))
    sentences = []
    for text in CALIBRATION_PHONEMES:
        ids = list(id_map.get("^", [1])) + pad
        for phoneme in text:
            if phoneme in id_map:
                ids += list(id_map[phoneme]) + pad
        ids += list(id_map.get("$", [2]))
        sentences.append(ids)
    return sentences


def calibrate_gain(voice: Voice) -> float:
    """Gain that puts the median peak of typical sentences at full scale (noise off)."""
    scales = SynthesisScales(0.0, voice.config.length_scale, 0.0)
    speaker = 0 if voice.is_multi_speaker else None
    peaks = [
        float(np.max(np.abs(voice.decode(voice.encode(ids, scales, speaker)))))
        for ids in calibration_ids(voice)
    ]
    median_peak = float(np.median(peaks))
    if median_peak <= 1.0 / MAX_GAIN:
        return MAX_GAIN
    return 1.0 / median_peak


def soft_limit(audio: np.ndarray) -> np.ndarray:
    """Identity below the knee; above it a tanh curve that approaches full scale."""
    magnitude = np.abs(audio)
    over = magnitude > KNEE
    if not np.any(over):
        return audio
    headroom = 1.0 - KNEE
    limited = audio.copy()
    limited[over] = np.sign(audio[over]) * (
        KNEE + headroom * np.tanh((magnitude[over] - KNEE) / headroom)
    )
    return limited


def to_pcm16(audio: np.ndarray, gain: float) -> bytes:
    """Float audio -> little-endian 16-bit PCM with a fixed gain."""
    scaled = soft_limit(audio.astype(np.float32) * np.float32(gain))
    return np.round(scaled * _INT16_MAX).astype("<i2").tobytes()
