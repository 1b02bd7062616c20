"""The look-ahead limiter: smooth gain, never over the ceiling, chunking changes nothing."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from wyoming_piper_stream.engine.loudness import (
    ATTACK_SECONDS,
    CEILING,
    Limiter,
    PcmStream,
    to_pcm16,
)

RATE = 22050


def _speech_like(seconds: float = 1.0, peak: float = 2.5) -> np.ndarray:
    """Voiced bursts with a few peaks far over full scale, and silences between."""
    t = np.arange(int(seconds * RATE)) / RATE
    envelope = np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None) ** 2
    wave = np.sin(2 * np.pi * 140 * t) + 0.3 * np.sin(2 * np.pi * 2900 * t)
    return (peak * envelope * wave / 1.3).astype(np.float32)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 3000), min_size=1, max_size=20))
def test_chunked_output_equals_one_chunk(sizes: list[int]) -> None:
    audio = _speech_like()
    whole = to_pcm16(audio, 1.3)
    stream = PcmStream(1.3)
    cuts = np.cumsum(sizes)
    pieces = np.split(audio, cuts[cuts < len(audio)])
    assert b"".join(stream.feed(p) for p in pieces) + stream.end() == whole
    assert len(whole) == 2 * len(audio)


def test_peaks_are_held_under_the_ceiling_with_a_smooth_gain() -> None:
    audio = _speech_like()
    limiter = Limiter(1.0, RATE)
    out = np.concatenate([limiter.process(audio), limiter.flush()])
    assert np.max(np.abs(out)) <= CEILING + 1e-6
    assert limiter.limited > 0
    gain = np.ones_like(out)
    loud = np.abs(audio) > 1e-3
    gain[loud] = out[loud] / audio[loud]
    # The gain moves at most its full depth per attack time, in both directions.
    attack = round(ATTACK_SECONDS * RATE)
    steps = np.abs(np.diff(gain[loud]))[np.diff(np.nonzero(loud)[0]) == 1]
    assert steps.max() <= (1 - gain.min()) / attack + 1e-6


def test_quiet_audio_passes_unchanged_only_delayed() -> None:
    audio = _speech_like(peak=0.8)
    limiter = Limiter(1.0, RATE)
    first = limiter.process(audio)
    assert len(first) == len(audio) - round(ATTACK_SECONDS * RATE)
    out = np.concatenate([first, limiter.flush()])
    assert np.array_equal(out, audio) and limiter.limited == 0


def test_each_stream_has_its_own_state() -> None:
    loud, quiet = _speech_like(), _speech_like(peak=0.5)
    first, second = PcmStream(1.0), PcmStream(1.0)
    first.feed(loud)
    assert second.feed(quiet) + second.end() == to_pcm16(quiet, 1.0)
