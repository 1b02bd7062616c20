"""One fixed gain per voice, and float -> 16-bit PCM without hard clipping.

Piper peak-normalizes each sentence after synthesizing it whole. A stream cannot
know a sentence's peak before its last chunk, and per-chunk normalization makes
the volume jump. So each voice gets one gain at load: the one that, on average
over typical sentences, is as loud (in dB) as Piper's per-sentence normalization,
i.e. 1 / the geometric mean of their peaks. A look-ahead limiter (``Limiter``,
one per stream) catches the louder sentences' peaks with a smooth gain dip
instead of bending or clipping single samples.
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
"""Below this level the limiter never acts: output is the input times the gain."""

CEILING = 0.97
"""Peaks are held at this level: the limiter's gain is ``CEILING / |x|`` at a peak."""

ATTACK_SECONDS = 0.005
"""Look-ahead and ramp length: the gain falls linearly over this time before a peak
and rises over it again after the hold, so it moves by at most (1 - gain) per 5 ms
and never bends single samples (no added high-frequency energy)."""

HOLD_SECONDS = 0.020
"""The gain stays down this long after a peak, so close peaks (one voiced period
apart, ~5-10 ms) share one dip instead of pumping between them."""

MAX_GAIN = 50.0
"""Cap for near-silent voices (e.g. untrained fixtures) so noise is not blown up."""

_INT16_MAX = 32767.0
DEFAULT_SAMPLE_RATE = 22050


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


class Limiter:
    """Look-ahead peak limiter for one stream (a job): its state carries across chunks.

    Sample ``n`` needs gain ``r[n] = min(1, CEILING / |x[n]|)``. With ``h[m]``
    the minimum of ``r`` over the ``hold`` samples up to ``m``, the gain applied
    to ``n`` is the mean of ``h[n + 1 .. n + attack]``: it falls linearly over
    ``attack`` samples to reach each peak's value at the peak, stays down for
    the hold, and rises linearly again. Every output sample is a fixed function
    of a fixed window of input, so chunking never changes the output; it comes
    ``attack`` samples late (``process`` holds them back, ``flush`` releases them).
    """

    def __init__(self, gain: float, sample_rate: int = DEFAULT_SAMPLE_RATE) -> None:
        self.gain = np.float32(gain)
        self.attack = max(1, round(ATTACK_SECONDS * sample_rate))
        self.hold = max(self.attack, round(HOLD_SECONDS * sample_rate))
        self._keep = self.hold + self.attack
        self._x = np.zeros(self._keep, dtype=np.float32)  # the last samples seen ...
        self._r = np.ones(self._keep)  # ... and the gain each needs (float64: monotonic)
        self._pending = 0  # of those, not yet given out
        self.limited = 0
        """Samples given out so far with a gain below 1 (for benchmarks)."""

    def process(self, audio: np.ndarray) -> np.ndarray:
        """Scaled, limited audio, ``attack`` samples late (the first call gives fewer)."""
        scaled = audio.astype(np.float32).reshape(-1) * self.gain
        x = np.concatenate([self._x, scaled])
        r = np.concatenate([self._r, _needed_gain(scaled)])
        start = self._keep - self._pending
        end = max(start, len(x) - self.attack)
        self._pending = len(x) - end
        self._x, self._r = x[-self._keep :], r[-self._keep :]
        out = x[start:end]
        ahead = r[start + 1 - self.hold : end + self.attack]
        if len(out) == 0 or ahead.min() >= 1.0:
            return out
        held = np.lib.stride_tricks.sliding_window_view(ahead, self.hold + 1).min(axis=1)
        gain: np.ndarray = np.lib.stride_tricks.sliding_window_view(held, self.attack).mean(axis=1)
        self.limited += int(np.count_nonzero(gain < 1.0))
        limited: np.ndarray = out * gain
        return limited

    def flush(self) -> np.ndarray:
        """The held-back samples, as if silence followed."""
        return self.process(np.zeros(self.attack, dtype=np.float32))


def _needed_gain(x: np.ndarray) -> np.ndarray:
    magnitude = np.abs(x.astype(np.float64))
    return np.where(magnitude > CEILING, CEILING / np.maximum(magnitude, CEILING), 1.0)


class PcmStream:
    """Float chunks of one stream -> 16-bit PCM through the stream's own limiter."""

    def __init__(self, gain: float, sample_rate: int = DEFAULT_SAMPLE_RATE) -> None:
        self.limiter = Limiter(gain, sample_rate)

    def feed(self, audio: np.ndarray) -> bytes:
        return _pcm16(self.limiter.process(audio))

    def end(self) -> bytes:
        return _pcm16(self.limiter.flush())


def _pcm16(audio: np.ndarray) -> bytes:
    return np.round(audio * _INT16_MAX).astype("<i2").tobytes()


def to_pcm16(audio: np.ndarray, gain: float, sample_rate: int = DEFAULT_SAMPLE_RATE) -> bytes:
    """Float audio of a whole stream -> little-endian 16-bit PCM with a fixed gain."""
    stream = PcmStream(gain, sample_rate)
    return stream.feed(audio) + stream.end()
