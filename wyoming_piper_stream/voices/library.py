"""The voices a server offers: found on disk, loaded on demand, kept in an LRU.

Voice names are looked up only among the voices found; a name is never a path.
Loading runs in a worker thread, so describe and other clients never wait for it;
the heavy engine modules (numpy, onnxruntime, espeak) are imported there too, so a
new server answers describe before they are. The thread is a daemon: a load cannot
be interrupted (onnx, onnxruntime), and a server told to stop must not wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from wyoming.info import Attribution, TtsVoice, TtsVoiceSpeaker

from wyoming_piper_stream.engine.phoneme_types import missing_phonemizer
from wyoming_piper_stream.engine.settings import StreamingSettings
from wyoming_piper_stream.engine.voice_config import VoiceConfig, VoiceError, VoiceFiles
from wyoming_piper_stream.voices.download import (
    DEFAULT_CATALOGUE_URL,
    DownloadSettings,
    download_voice,
)
from wyoming_piper_stream.voices.files import EMBEDDED_VOICE_NAME, discover_voices
from wyoming_piper_stream.voices.settings import VoiceLibrarySettings

if TYPE_CHECKING:
    from wyoming_piper_stream.voices.builder import ReadyVoice

_LOGGER = logging.getLogger(__name__)

LOAD_RETRY_SECONDS = 60.0
"""After a voice failed to load (or download), requests get the same error this long."""
PIPER_ATTRIBUTION = Attribution(name="rhasspy", url="https://github.com/rhasspy/piper")
_T = TypeVar("_T")


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
        self._failed: dict[str, tuple[float, Exception]] = {}
        self._ever_loaded: set[str] = set()

    @property
    def default_voice_name(self) -> str:
        return self.settings.default_voice or EMBEDDED_VOICE_NAME

    def default_voice_status(self) -> dict[str, object]:
        """Whether the default voice is usable: loaded (now or before) and not failed since."""
        name = self.default_voice_name
        failed = self._failed.get(name)
        if failed is not None:
            state = f"failed to load: {failed[1]}"
        elif name in self._ever_loaded:
            state = "ready"
        elif name in self._loading:
            state = "loading"
        else:
            state = "not loaded yet"
        return {"name": name, "ready": state == "ready", "state": state}

    def find(self) -> dict[str, VoiceFiles]:
        """Rescanned on each call, so voices added to a data dir appear without restarts."""
        dirs = self.settings.data_dirs
        download_dir = self.settings.download_dir
        if download_dir is not None and download_dir not in dirs:
            dirs = (*dirs, download_dir)
        return discover_voices(dirs)

    def default_voice_problem(self) -> str | None:
        """Why the default voice cannot load, if its phonemizer (or its model) is not installed
        (cheap: no imports); None when it can, or when it is not on disk yet."""
        files = self.find().get(self.default_voice_name)
        if files is None or self.settings.phonemizer is not None:
            return None
        try:
            phoneme_type = self._config(files.config).phoneme_type
            missing = missing_phonemizer(phoneme_type, self.settings.resource_dir)
        except VoiceError:
            return None  # a bad config is reported when the voice loads
        return None if missing is None else f"voice {files.name}: {missing}"

    def describe(self) -> list[TtsVoice]:
        voices = []
        for files in self.find().values():
            try:
                voices.append(describe_voice(files, self._config(files.config)))
            except VoiceError as error:
                _LOGGER.warning("Skipping voice %s: %s", files.name, error)
        return sorted(voices, key=lambda v: v.name)

    def config(self, files: VoiceFiles) -> VoiceConfig:
        """The voice's JSON config, re-read only when the file changed."""
        return self._config(files.config)

    def loaded_names(self) -> list[str]:
        """Voices loaded now, least recently used first."""
        return list(self._loaded)

    def forget(self, name: str) -> None:
        """Drop a loaded voice whose files are gone (deleted through the web page)."""
        self._loaded.pop(name, None)
        self._failed.pop(name, None)

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
        failed = self._failed.get(name)
        if failed is not None and time.monotonic() - failed[0] < LOAD_RETRY_SECONDS:
            # Do not download or split again for every request after a failure.
            raise failed[1]
        task = self._loading.get(name)
        if task is None:
            task = asyncio.create_task(_in_daemon_thread(self._find_and_prepare, name))
            self._loading[name] = task
            task.add_done_callback(lambda _: self._loading.pop(name, None))
        try:
            ready = await asyncio.shield(task)
        except Exception as error:
            if self.find().get(name) is not None or name == self.settings.default_voice:
                self._failed[name] = (time.monotonic(), error)
            raise
        self._failed.pop(name, None)
        self._ever_loaded.add(name)
        self._remember(name, ready)
        return ready

    def _remember(self, name: str, ready: ReadyVoice) -> None:
        self._loaded[name] = ready
        self._loaded.move_to_end(name)
        while len(self._loaded) > self.settings.max_voices:
            dropped, _ = self._loaded.popitem(last=False)
            _LOGGER.info("Unloaded voice %s (over --max-voices)", dropped)

    def _find_and_prepare(self, name: str) -> ReadyVoice:
        files = self.find().get(name)
        download_dir = self.settings.download_dir
        if (
            files is None
            and name == self.settings.default_voice
            and download_dir is not None
            and not self.settings.local_files_only
        ):
            # Only the configured default voice is fetched: a client cannot make
            # the server download whatever it names.
            download_voice(name, self._download_settings(download_dir))
            files = self.find().get(name)
        if files is None:
            offline = " (--local-files-only)" if self.settings.local_files_only else ""
            raise VoiceError(f"unknown voice {name!r}{offline}")
        _LOGGER.info("Loading voice %s", name)
        from wyoming_piper_stream.voices.builder import (
            VoiceBuilder,  # heavy: numpy, onnxruntime, espeak-ng
        )

        return VoiceBuilder(self.settings, self.streaming).prepare(files)

    def _download_settings(self, download_dir: Path) -> DownloadSettings:
        return DownloadSettings(
            download_dir=download_dir,
            catalogue_url=self.settings.catalogue_url or DEFAULT_CATALOGUE_URL,
            update_catalogue=self.settings.update_voices,
        )


async def _in_daemon_thread(function: Callable[[str], _T], argument: str) -> _T:
    """``function(argument)`` in a daemon thread (``to_thread``'s would hold up the exit)."""
    loop = asyncio.get_running_loop()
    result: asyncio.Future[_T] = loop.create_future()

    def settle(value: _T | None, error: BaseException | None) -> None:
        if result.done():  # the waiter went away
            return
        if error is not None:
            result.set_exception(error)
        else:
            result.set_result(value)  # type: ignore[arg-type]

    def run() -> None:
        try:
            value, error = function(argument), None
        except Exception as failure:  # handed to the awaiting task
            value, error = None, failure
        with contextlib.suppress(RuntimeError):  # the loop is closed: the server has stopped
            loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=run, name=f"load {argument}", daemon=True).start()
    return await result
