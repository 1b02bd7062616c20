"""Loading a voice for the server: the denoiser and the scales come from the settings."""

from __future__ import annotations

import asyncio

import numpy as np
from conftest import FIXTURES

from wyoming_piper_stream.engine.denoise import Denoiser, seamless_frames
from wyoming_piper_stream.engine.graphs import SynthesisScales
from wyoming_piper_stream.engine.settings import StreamingSettings
from wyoming_piper_stream.voices.builder import ReadyVoice
from wyoming_piper_stream.voices.library import VoiceLibrary
from wyoming_piper_stream.voices.settings import VoiceLibrarySettings

IDS = [1, 0] + [x for i in range(30) for x in (14 + (i * 5) % 40, 0)] + [2]


def _ready(strength: float) -> ReadyVoice:
    settings = VoiceLibrarySettings(
        default_voice="tiny-multi", data_dirs=(FIXTURES,), cache_dir=None
    )
    streaming = StreamingSettings(denoiser_strength=strength, adaptive=False)
    return asyncio.run(VoiceLibrary(settings, streaming).get(None))


def _audio(ready: ReadyVoice) -> np.ndarray:
    chunks = ready.streamer.stream(IDS, SynthesisScales(0.0, 1.0, 0.0), 1)
    return np.concatenate([chunk.audio for chunk in chunks])


def test_denoiser_strength_from_the_settings_changes_audio_not_length() -> None:
    plain, denoised = _ready(0.0), _ready(0.5)
    assert plain.streamer.postprocess is None
    assert isinstance(denoised.streamer.postprocess, Denoiser)
    before, after = _audio(plain), _audio(denoised)
    assert len(before) == len(after)
    assert not np.allclose(before, after)


def test_scales_default_to_the_voice_config_one_by_one() -> None:
    voice = _ready(0.0).voice
    assert voice.scales() == SynthesisScales(0.667, 1.0, 0.8)
    assert voice.scales(length_scale=1.5) == SynthesisScales(0.667, 1.5, 0.8)
    assert voice.scales(0.0, None, 0.0) == SynthesisScales(0.0, 1.0, 0.0)


def test_the_denoisers_edges_fall_in_the_later_stages_context() -> None:
    # The denoiser's window reaches 3 frames past a chunk's edges: the decoder's
    # later stages get that much context even where they need less themselves
    # (the seams this gives: ``test_chunked_decoder``).
    plain, denoised = _ready(0.0), _ready(0.5)
    assert denoised.voice.decodes_spans
    hop = denoised.voice.config.hop_length
    assert plain.streamer.stage_padding < seamless_frames(hop)
    assert denoised.streamer.stage_padding == seamless_frames(hop)
