"""One fixed gain per voice, and float -> 16-bit PCM without hard clipping.

Piper peak-normalizes each sentence after synthesizing it whole. A stream cannot
know a sentence's peak before its last chunk, and per-chunk normalization makes
the volume jump. So each voice gets one gain at load: the one that, on average
over typical sentences, is as loud (in dB) as Piper's per-sentence normalization,
i.e. 1 / the geometric mean of their peaks. A soft knee near full scale catches
the louder sentences instead of clipping them.
"""

from __future__ import annotations

import numpy as np

from wyoming_piper_stream.engine.graphs import SynthesisScales, Voice
from wyoming_piper_stream.engine.phonemize import phonemes_to_ids

# Typical assistant replies as espeak IPA. IPA symbols are shared by the
# phoneme maps of espeak voices, so these calibrate voices of any language.
CALIBRATION_PHONEMES = (
    "tˈɜːn ɔnðə kˈɪtʃən lˈaɪts.",
    "ðə wˈɛðɚ tədˈeɪ ɪz sˈʌni wɪð ɐ hˈaɪʲ ʌv sˈɛvənti tˈuː dᵻɡɹˈiːz.",
    "aɪ hæv sˈɛt ɐ tˈaɪmɚ fɔːɹ tˈɛn mˈɪnɪts.",
    "sˈɑːɹi, aɪ kʊd nˌɑːt fˈaɪnd ɐ dɪvˈaɪs kˈɔːld ɡɚɹˈɑːʒ dˈɔːɹ.",
    "juː hæv θɹˈiː mˈiːɾɪŋz tədˈeɪ.",
    "ɔːlɹˈaɪt, aɪv ˈædᵻd mˈɪlk, ˈɛɡz, ænd bɹˈɛd tə jʊɹ ʃˈɑːpɪŋ lˈɪst.",
    "jʊɹ flˈaɪt tə dˈɛnvɚ dᵻpˈɑːɹts æt nˈaɪn fˈɔːɹɾi fˈaɪv.",
    "ðə dˈɪʃwɑːʃɚ wɪl biː dˈʌn ɪn ɐbˌaʊt twˈɛnti mˈɪnɪts.",
    "aɪv ˈædᵻd ɐ ɹᵻmˈaɪndɚ tə wˈɔːɾɚ ðə plˈænts ˌɔn sˈʌndeɪ.",
    "ðə bˈɛdɹuːm lˈæmp ɪz ɔːlɹˌɛdiʲ ˈɔn.",
    "kˈɜːɹəntliʲ ɪɾ ɪz ˈeɪtiːn dᵻɡɹˈiːz ænd klˈaʊdiʲ aʊtsˈaɪd.",
    "sˈɑːɹi, aɪ dɪdnˌɑːt ˌʌndɚstˈænd wʌt juː sˈɛd.",
)

KNEE = 0.9
"""Above this level the soft limiter bends the signal so it never reaches full scale."""

MAX_GAIN = 50.0
"""Cap for near-silent voices (e.g. untrained fixtures) so noise is not blown up."""

_INT16_MAX = 32767.0


def calibration_ids(voice: Voice) -> list[list[int]]:
    """Phoneme ids of the calibration sentences in the voice's own id map."""
    id_map = voice.config.phoneme_id_map
    # Symbols a voice's map lacks are left out quietly: these are our sentences, not a user's.
    return [
        phonemes_to_ids([p for p in text if p in id_map], id_map) for text in CALIBRATION_PHONEMES
    ]


def calibrate_gain(voice: Voice) -> float:
    """Gain as loud on average (dB) as Piper's per-sentence peak normalization (noise off).

    Piper scales sentence i by 1/peak_i; a fixed gain g differs from that by
    20*log10(g*peak_i) dB, which averages to 0 for g = 1/geometric mean of the peaks.
    (The median of a handful of sentences left joe ~1 dB quieter than Piper.)
    """
    scales = SynthesisScales(0.0, voice.config.length_scale, 0.0)
    speaker = 0 if voice.is_multi_speaker else None
    peaks = np.array(
        [
            float(np.max(np.abs(voice.synthesize_whole(ids, scales, speaker))))
            for ids in calibration_ids(voice)
        ]
    )
    # Floored so a near-silent sentence (log -> -inf) cannot push the gain past MAX_GAIN.
    peaks = np.maximum(peaks, 1.0 / MAX_GAIN)
    return float(1.0 / np.exp(np.mean(np.log(peaks))))


def soft_limit(audio: np.ndarray) -> np.ndarray:
    """Identity below the knee; above it a curve that approaches full scale.

    ``knee + h * d / (d + h)`` (d: excess over the knee, h: headroom) has slope 1 at
    the knee, like the identity, and saturates slowly: 3x full scale still maps to
    0.995. (tanh reached full scale in 16 bits from ~1.4x on: clipping plateaus.)
    """
    magnitude = np.abs(audio)
    over = magnitude > KNEE
    if not np.any(over):
        return audio
    headroom = 1.0 - KNEE
    excess = magnitude[over] - KNEE
    limited = audio.copy()
    limited[over] = np.sign(audio[over]) * (KNEE + headroom * excess / (excess + headroom))
    return limited


def to_pcm16(audio: np.ndarray, gain: float) -> bytes:
    """Float audio -> little-endian 16-bit PCM with a fixed gain."""
    scaled = soft_limit(audio.astype(np.float32) * np.float32(gain))
    return np.round(scaled * _INT16_MAX).astype("<i2").tobytes()
