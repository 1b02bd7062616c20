"""Spectral-subtraction denoiser for Piper/VITS audio (vectorized numpy STFT/ISTFT).

A VITS decoder (HiFi-GAN) fed an all-zero latent still emits a faint, stationary
"bias" signal; that same hum sits under all its speech. The denoiser estimates the
bias's per-bin magnitude once per voice and subtracts ``bias_spec * strength`` from
every STFT frame's magnitude, keeping each frame's original phase.

Streaming use: the streamer applies the ``Denoiser`` to the *padded* decoded chunk
(chunk plus its ``chunk_padding`` latent frames each side) and only then trims the
padding. Two reasons no seam artifacts are added:

* this module zero-pads ``N_FFT // 2`` at both ends (``center=True``), so frames near a
  chunk's edges see half-empty windows; those edge effects land in the padding that is
  trimmed away;
* chunk boundaries and paddings are multiples of ``STFT_HOP`` (a latent frame, the
  voice's ``hop_length``, is 256 samples or a multiple of it: the loader checks), so a
  padded chunk's frame grid coincides with the grid of the whole utterance: with
  padding >= ``SEAMLESS_PADDING`` samples (3 latent frames) every kept sample is
  computed from exactly the frames a whole-utterance denoise would use, so the
  stitched stream equals denoising the whole utterance at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

N_FFT = 1024
STFT_HOP = 256
N_BINS = N_FFT // 2 + 1

# The overlap-add below sums N_FFT // STFT_HOP shifted copies instead of looping per frame.
assert N_FFT % STFT_HOP == 0

# Minimum STFT_HOP-aligned chunk padding (samples) for seamless chunked denoising: the
# leftmost frame covering the first kept sample then starts inside the padded chunk.
SEAMLESS_PADDING = N_FFT - STFT_HOP


def seamless_frames(hop_length: int) -> int:
    """``SEAMLESS_PADDING`` in latent frames (rounded up)."""
    return -(-SEAMLESS_PADDING // hop_length)


def _window() -> np.ndarray:
    """Periodic Hann window (float64).

    Periodic (not np.hanning's symmetric) so the squared windows at hop N_FFT/4 sum to
    a constant in steady state; the ISTFT divides by the actual sum anyway.
    """
    n = np.arange(N_FFT)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / N_FFT)


def _n_frames(length: int) -> int:
    # Frames needed to cover `length` samples after N_FFT // 2 padding at each end.
    return 1 + length // STFT_HOP


def stft(x: np.ndarray) -> np.ndarray:
    """Complex STFT of a 1-D signal: shape [n_frames, N_BINS], n_frames = 1 + len(x) // STFT_HOP.

    Zero-pads N_FFT // 2 at both ends (centered frames), so every sample, including
    those of inputs shorter than one frame, lies under a frame. Zero rather than
    reflect padding: it works for any length (reflect needs len > N_FFT // 2).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"stft expects 1-D audio, got shape {x.shape}")
    pad = N_FFT // 2
    # Right-pad enough that the last frame fits entirely (frames start every STFT_HOP samples).
    n_frames = _n_frames(len(x))
    total = (n_frames - 1) * STFT_HOP + N_FFT
    padded = np.zeros(total, dtype=np.float64)
    padded[pad : pad + len(x)] = x
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::STFT_HOP]
    return np.fft.rfft(frames * _window(), axis=-1)


def _overlap_add(frames: np.ndarray) -> np.ndarray:
    """Overlap-add [n_frames, N_FFT] frames spaced STFT_HOP apart (no per-frame loop).

    Each frame is N_FFT // STFT_HOP blocks of STFT_HOP samples; block k of frame t lands on output
    block t + k, so the sum is N_FFT // STFT_HOP shifted slice-adds over all frames at once.
    """
    n_frames = frames.shape[0]
    ratio = N_FFT // STFT_HOP
    blocks = frames.reshape(n_frames, ratio, STFT_HOP)
    out = np.zeros((n_frames + ratio - 1, STFT_HOP), dtype=frames.dtype)
    for k in range(ratio):
        out[k : k + n_frames] += blocks[:, k]
    return out.reshape(-1)


def istft(spec: np.ndarray, length: int) -> np.ndarray:
    """Inverse of `stft`: float64 signal of exactly `length` samples.

    `length` is required because 256 different input lengths share one frame count.
    Weighted overlap-add (synthesis window = analysis window), divided by the summed
    squared window, so ``istft(stft(x), len(x))`` reconstructs x to float rounding.
    """
    spec = np.asarray(spec)
    if spec.ndim != 2 or spec.shape[1] != N_BINS:
        raise ValueError(f"istft expects [n_frames, {N_BINS}], got shape {spec.shape}")
    if length < 0 or spec.shape[0] < _n_frames(length):
        raise ValueError(f"{spec.shape[0]} frames cannot cover {length} samples")
    window = _window()
    frames = np.fft.irfft(spec, n=N_FFT, axis=-1) * window
    signal = _overlap_add(frames)
    win_sq = _overlap_add(np.broadcast_to(window**2, frames.shape))
    pad = N_FFT // 2
    signal = signal[pad : pad + length]
    win_sq = win_sq[pad : pad + length]
    # Every kept sample is under a frame centre region, so win_sq >= 0.25 there;
    # the guard only matters for a caller passing a hand-made spectrogram.
    result: np.ndarray = signal / np.maximum(win_sq, 1e-8)
    return result


def bias_spectrogram(bias_audio: np.ndarray) -> np.ndarray:
    """Per-bin bias magnitude [N_BINS] (float32) of the audio a voice decodes from zeros.

    Mean magnitude over frames, not the first frame as Piper's original denoiser did:
    the bias is stationary, so averaging gives a lower-variance estimate, and with
    centered (zero-padded) frames the first frame is half padding and would
    under-estimate it. Only frames lying wholly inside the audio are averaged when there
    are any, for the same reason; audio shorter than N_FFT falls back to all frames.
    """
    bias_audio = np.asarray(bias_audio, dtype=np.float64)
    if bias_audio.ndim != 1 or len(bias_audio) == 0:
        raise ValueError(f"bias audio must be non-empty 1-D, got shape {bias_audio.shape}")
    if len(bias_audio) >= N_FFT:
        frames = np.lib.stride_tricks.sliding_window_view(bias_audio, N_FFT)[::STFT_HOP]
        magnitude = np.abs(np.fft.rfft(frames * _window(), axis=-1))
    else:
        magnitude = np.abs(stft(bias_audio))
    mean: np.ndarray = magnitude.mean(axis=0).astype(np.float32)
    return mean


@dataclass(frozen=True, eq=False)
class Denoiser:
    """Subtracts ``bias_spec * strength`` from every frame's STFT magnitude.

    eq=False: identity equality/hash, since comparing the ndarray field elementwise
    would make ``==`` ambiguous and hashing fail.
    """

    bias_spec: np.ndarray = field(repr=False)
    strength: float = 0.0

    def __post_init__(self) -> None:
        bias = np.array(self.bias_spec, dtype=np.float64)  # private copy
        if bias.shape != (N_BINS,):
            raise ValueError(f"bias_spec must have shape ({N_BINS},), got {bias.shape}")
        if not np.all(np.isfinite(bias)) or np.any(bias < 0):
            raise ValueError("bias_spec must be finite and non-negative")
        if not (np.isfinite(self.strength) and self.strength >= 0):
            raise ValueError(f"strength must be finite and >= 0, got {self.strength}")
        bias.flags.writeable = False  # the dataclass is frozen; keep its array frozen too
        object.__setattr__(self, "bias_spec", bias)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """Denoised 1-D float32 audio, same length as `audio`.

        strength == 0 returns ``np.asarray(audio, dtype=np.float32)``: for float32 input
        that is the input itself, untouched (no STFT round-trip rounding).
        """
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError(f"Denoiser expects 1-D audio, got shape {audio.shape}")
        if self.strength == 0 or len(audio) == 0:
            return audio
        spec = stft(audio)
        magnitude = np.abs(spec)
        denoised = np.maximum(magnitude - self.bias_spec * self.strength, 0.0)
        # Scaling the complex value by new/old magnitude keeps its phase exactly, without
        # an angle/cos/sin round trip; bins with zero magnitude stay zero.
        gain = np.divide(denoised, magnitude, out=np.zeros_like(magnitude), where=magnitude > 0)
        return istft(spec * gain, len(audio)).astype(np.float32)
