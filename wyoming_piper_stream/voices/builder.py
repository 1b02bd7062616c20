"""Turning voice files into a ready voice: split (cached), measure, phonemizer, streamer."""

from __future__ import annotations

import ctypes
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from wyoming_piper_stream.engine.chunked_decoder import (
    ChunkedDecoder,
    measure_flow_padding,
    measure_flow_trim,
    measure_padding,
    measure_stage_padding,
)
from wyoming_piper_stream.engine.denoise import (
    SEAMLESS_PADDING,
    STFT_HOP,
    Denoiser,
    bias_spectrogram,
    seamless_frames,
)
from wyoming_piper_stream.engine.graph_names import SplitError
from wyoming_piper_stream.engine.graphs import SessionSettings, Voice, load_voice
from wyoming_piper_stream.engine.loudness import calibrate_gain
from wyoming_piper_stream.engine.pacing import CostModel
from wyoming_piper_stream.engine.phoneme_types import missing_phonemizer
from wyoming_piper_stream.engine.phonemize import (
    MissingPhonemizerError,
    Phonemizer,
    load_phonemizer,
)
from wyoming_piper_stream.engine.settings import StreamingSettings
from wyoming_piper_stream.engine.voice_config import VoiceConfig, VoiceError, VoiceFiles
from wyoming_piper_stream.voices.cache import VoiceCache, VoiceFacts, entry_key, machine_key
from wyoming_piper_stream.voices.files import missing_files
from wyoming_piper_stream.voices.settings import VoiceLibrarySettings

_LOGGER = logging.getLogger(__name__)
BIAS_FRAMES = 88  # ~1 s of an all-zero latent for the denoiser's bias


def make_denoiser(voice: Voice, strength: float, padding: int) -> Denoiser | None:
    """The bias denoiser for a voice, or None at strength 0 (output stays bit-identical)."""
    if strength <= 0:
        return None
    if padding * voice.config.hop_length < SEAMLESS_PADDING or voice.config.hop_length % STFT_HOP:
        _LOGGER.warning("Chunk padding %d frames is not seamless for the denoiser", padding)
    # One bias, the default speaker's: per-speaker biases would cost a decode each.
    bias = voice.decode(voice.zero_latent(BIAS_FRAMES, voice.speaker_id(None)))
    return Denoiser(bias_spectrogram(bias), strength)


def _return_freed_memory() -> None:
    """Give the C heap's free pages back to the system.

    A load reads and parses the model file (63 MB for joe) and frees it again; glibc
    keeps such pages. Given back, the server's resident memory after loading joe is
    151 MB instead of 158, and its peak after the bench's texts 200 MB instead of 206.
    Not glibc (musl, macOS): nothing to do.
    """
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is not None:
        trim(0)


@dataclass(frozen=True)
class ReadyVoice:
    """A loaded voice with what streaming it needs."""

    voice: Voice
    phonemizer: Phonemizer
    streamer: ChunkedDecoder
    gain: float
    store_costs: Callable[[], None] = field(default=lambda: None, compare=False)
    """Keep the step costs learned so far beside the voice cache (after each job)."""


class VoiceBuilder:
    """Prepares voices with one library's settings (runs in a worker thread)."""

    def __init__(self, settings: VoiceLibrarySettings, streaming: StreamingSettings) -> None:
        self.settings = settings
        self.streaming = streaming
        self._cache = (
            VoiceCache(settings.cache_dir, settings.prebuilt_caches) if settings.cache_dir else None
        )

    def prepare(self, files: VoiceFiles) -> ReadyVoice:
        absent = missing_files(files)
        if absent:
            raise VoiceError(f"voice {files.name}: missing {', '.join(map(str, absent))}")
        started = time.perf_counter()
        if self.settings.phonemizer is None:
            # Before the split, which takes seconds: a missing extra fails at once.
            config = VoiceConfig.from_file(files.config)
            missing = missing_phonemizer(config.phoneme_type, self.settings.resource_dir)
            if missing is not None:
                raise MissingPhonemizerError(f"voice {files.name}: {missing}")
        separate_flow = self.streaming.separate_flow and files.model is not None
        key = entry_key(files, separate_flow) if self._cache else ""
        try:
            voice = self._load(files, key, separate_flow)
        except VoiceError as error:
            if not (separate_flow and isinstance(error.__cause__, SplitError)):
                raise
            _LOGGER.info(
                "Voice %s: no separable flow (%s); flow stays in the encoder", files.name, error
            )
            key = entry_key(files, False) if self._cache else ""
            voice = self._load(files, key, False)
        phonemizer = load_phonemizer(
            self.settings.phonemizer,
            espeak_voice=voice.config.espeak_voice,
            phoneme_type=voice.config.phoneme_type,
            vowel_clusters=voice.config.vowel_clusters,
            resource_dir=self.settings.resource_dir,
        )
        facts = self._facts(voice, key)
        padding = self.streaming.chunk_padding
        if padding is None:
            padding = facts.padding
        stage_padding = self._stage_padding(voice, facts, padding)
        costs = self._costs(key)
        streamer = ChunkedDecoder(
            voice,
            padding=padding,
            pacing=self.streaming.pacing(voice.config),
            postprocess=make_denoiser(voice, self.streaming.denoiser_strength, stage_padding),
            flow_padding=facts.flow_padding,
            context=self.streaming.clause_context,
            costs=costs,
            stage_padding=stage_padding,
            flow_trim=facts.flow_trim,
        )
        _LOGGER.info(
            "Loaded voice %s in %.2f s (padding %d frames, %d after the first stage, "
            "flow padding %s, %d less per layer, gain %.2f)",
            files.name,
            time.perf_counter() - started,
            padding,
            stage_padding,
            facts.flow_padding if voice.flow is not None else "-",
            streamer.flow_trim,
            facts.gain,
        )
        _return_freed_memory()
        return ReadyVoice(
            voice=voice,
            phonemizer=phonemizer,
            streamer=streamer,
            gain=facts.gain,
            store_costs=self._cost_keeper(key, costs),
        )

    def _stage_padding(self, voice: Voice, facts: VoiceFacts, padding: int) -> int:
        """Context of the decoder's later stages: the denoiser's edges must fall in it too."""
        stage = padding if facts.stage_padding is None else min(facts.stage_padding, padding)
        if self.streaming.denoiser_strength > 0:
            stage = max(stage, min(padding, seamless_frames(voice.config.hop_length)))
        return stage

    def _costs(self, key: str) -> CostModel:
        if self._cache is None or not key:
            return CostModel()
        return self._cache.costs(key, machine_key(self.settings.threads))

    def _cost_keeper(self, key: str, costs: CostModel) -> Callable[[], None]:
        """Writes the costs when they changed since the last write."""
        cache = self._cache
        if cache is None or not key:
            return lambda: None
        machine = machine_key(self.settings.threads)
        stored = [costs.updates]

        def store() -> None:
            if costs.updates != stored[0]:
                stored[0] = costs.updates
                cache.store_costs(key, machine, costs)

        return store

    def _session_settings(self) -> SessionSettings:
        return SessionSettings(threads=self.settings.threads, use_cuda=self.settings.use_cuda)

    def _load(self, files: VoiceFiles, key: str, separate_flow: bool) -> Voice:
        cached = self._cached_split(files, key, separate_flow)
        try:
            return load_voice(cached, self._session_settings(), separate_flow)
        except VoiceError:
            if cached is files or self._cache is None:
                raise
            _LOGGER.warning("Cached graphs of %s are unreadable: splitting again", files.name)
            self._cache.drop(key)
            return load_voice(files, self._session_settings(), separate_flow)

    def _cached_split(self, files: VoiceFiles, key: str, separate_flow: bool) -> VoiceFiles:
        """Stock voices load from split graphs cached on disk (the split takes seconds)."""
        if self._cache is None or files.model is None:
            return files
        try:
            return self._cache.split_files(files, key, separate_flow)
        except SplitError as error:
            raise VoiceError(f"cannot split voice {files.name}: {error}") from error
        except OSError as error:
            _LOGGER.warning("Voice cache unusable (%s): splitting in memory", error)
            return files

    def _facts(self, voice: Voice, key: str) -> VoiceFacts:
        facts = self._cache.facts(key) if self._cache else None
        if facts is None:
            padding, flow_padding = measure_padding(voice), measure_flow_padding(voice)
            facts = VoiceFacts(
                padding=padding,
                gain=calibrate_gain(voice),
                flow_padding=flow_padding,
                stage_padding=measure_stage_padding(voice, padding),
                flow_trim=measure_flow_trim(voice, flow_padding),
            )
            if self._cache:
                self._cache.store_facts(key, facts)
        return facts
