"""Download Piper voices listed in the rhasspy/piper-voices catalogue (``voices.json``).

Every file goes to a hidden temp file beside its destination, is checked against the
catalogue's size and digests, and only then is ``os.replace``d into place, so an
interrupted or corrupt transfer never leaves a file that looks like a voice. Voices land
flat in the download folder as ``<key>.onnx`` + ``<key>.onnx.json``, the layout the
server scans in its data folders.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO
from urllib.parse import quote, unquote, urljoin, urlsplit

from wyoming_piper_stream.engine.errors import ErrorCode, SpeechError

_LOGGER = logging.getLogger(__name__)

DEFAULT_CATALOGUE_URL = "https://huggingface.co/rhasspy/piper-voices/resolve/main/voices.json"
CATALOGUE_FILE_NAME = "voices.json"
"""Name of the cached catalogue inside the download folder."""

_CHUNK_BYTES = 1 << 20
_PROGRESS_MIN_BYTES = 1_000_000
"""Smaller files (configs, the catalogue) arrive too fast for progress lines to help."""
_PROGRESS_STEP_PERCENT = 10
_PROGRESS_INTERVAL_S = 5.0
_DIGEST_FIELDS = (("md5_digest", "md5"), ("sha256_digest", "sha256"))
"""Catalogue field -> hashlib algorithm; each one present in an entry is checked."""
# Unicode word characters are allowed (e.g. "pt_PT-tugão-medium"); path separators and
# a leading dot are not, so a key can only ever name a file inside the download folder.
_SAFE_KEY = re.compile(r"[\w-][\w.-]*")


@dataclass(frozen=True)
class DownloadSettings:
    """Where voices go and where the catalogue comes from."""

    download_dir: Path
    catalogue_url: str = DEFAULT_CATALOGUE_URL
    """Voice files are fetched relative to this URL's folder."""
    update_catalogue: bool = False
    """Refetch the catalogue even when a cached copy exists."""
    timeout: float = 30.0
    """Seconds to wait on any single network operation."""


class DownloadError(SpeechError):
    """A voice or the catalogue cannot be fetched, or what arrived is not what was listed."""

    code = ErrorCode.DOWNLOAD


@dataclass(frozen=True)
class _RemoteFile:
    url: str
    dest: Path
    size: int
    digests: tuple[tuple[str, str], ...]
    """(hashlib algorithm, expected lowercase hex digest) pairs."""


# --- Catalogue ----------------------------------------------------------------------------


def load_catalogue(settings: DownloadSettings) -> dict[str, dict[str, Any]]:
    """The voice catalogue by key, with every alias mapping to the same entry.

    Uses the cached ``voices.json`` in the download folder, fetching it first when it is
    missing or ``update_catalogue`` is set. A failed refresh falls back to the cache so a
    network outage does not stop a server that already has its voices.
    """
    path = settings.download_dir / CATALOGUE_FILE_NAME
    if settings.update_catalogue or not path.exists():
        _refresh_catalogue(settings, path)
    return _resolve_aliases(_read_catalogue(path, str(path)))


def _refresh_catalogue(settings: DownloadSettings, path: Path) -> None:
    try:
        _fetch_catalogue(settings, path)
    except DownloadError as err:
        if not path.exists():
            raise
        _LOGGER.warning("Could not refresh the voice catalogue, using cached %s: %s", path, err)


def _fetch_catalogue(settings: DownloadSettings, path: Path) -> None:
    _LOGGER.info("Fetching voice catalogue %s", settings.catalogue_url)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _temp_path(path) as tmp:
        _fetch(settings.catalogue_url, tmp, settings.timeout, size=None, hashers=())
        # Parse before replacing: an error page or truncated JSON must not evict a good cache.
        _read_catalogue(tmp, settings.catalogue_url)
        os.replace(tmp, path)


def _read_catalogue(path: Path, source: str) -> dict[str, Any]:
    try:
        catalogue = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DownloadError(f"Voice catalogue from {source} is unreadable: {err}") from err
    if not isinstance(catalogue, dict):
        raise DownloadError(f"Voice catalogue from {source} is not a JSON object")
    return catalogue


def _resolve_aliases(raw: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    # Each entry's "key" is set to its catalogue key, so a lookup by alias still knows
    # the canonical name the files are stored under.
    catalogue = {
        key: {**entry, "key": key} for key, entry in raw.items() if isinstance(entry, dict)
    }
    for key in list(catalogue):
        for alias in catalogue[key].get("aliases") or ():
            # A real key wins over another voice's alias of the same name.
            catalogue.setdefault(str(alias), catalogue[key])
    return catalogue


# --- Voices -------------------------------------------------------------------------------


def download_voice(name: str, settings: DownloadSettings) -> Path:
    """Make sure voice ``name`` (a catalogue key or alias) is in the download folder.

    Files already there with the catalogue's size are kept; the rest are fetched and
    verified. Returns the path of the voice's ``.onnx`` model.
    """
    catalogue = load_catalogue(settings)
    entry = _lookup(name, catalogue, settings)
    files = _voice_files(entry, settings)
    missing = [file for file in files if not _is_present(file)]
    if missing:
        _download_all(missing, settings.timeout)
    else:
        _LOGGER.debug("Voice %s is already in %s", entry["key"], settings.download_dir)
    return files[-1].dest


def _lookup(
    name: str, catalogue: Mapping[str, dict[str, Any]], settings: DownloadSettings
) -> dict[str, Any]:
    entry = catalogue.get(name)
    if entry is not None:
        return entry
    matches = difflib.get_close_matches(name, catalogue, n=3)
    hint = f"did you mean {', '.join(matches)}?" if matches else "try refreshing the catalogue"
    source = settings.download_dir / CATALOGUE_FILE_NAME
    raise DownloadError(f"Unknown voice {name!r}: not in the voice catalogue {source}; {hint}")


def _voice_files(entry: Mapping[str, Any], settings: DownloadSettings) -> list[_RemoteFile]:
    """The voice's config and model, in that order (the order they are put in place)."""
    key = _checked_key(entry["key"])
    files = entry.get("files")
    if not isinstance(files, dict):
        raise DownloadError(f"Catalogue entry {key!r} lists no files")
    config = _pick_file(files, ".onnx.json", key)
    model = _pick_file(files, ".onnx", key)
    return [
        _remote_file(config, files[config], settings.download_dir / f"{key}.onnx.json", settings),
        _remote_file(model, files[model], settings.download_dir / f"{key}.onnx", settings),
    ]


def _checked_key(key: str) -> str:
    if not _SAFE_KEY.fullmatch(key):
        raise DownloadError(f"Catalogue key {key!r} is not a safe file name")
    return key


def _pick_file(files: Mapping[str, Any], suffix: str, key: str) -> str:
    candidates = [path for path in files if path.endswith(suffix)]
    if len(candidates) != 1:
        raise DownloadError(
            f"Catalogue entry {key!r} must list exactly one {suffix} file, found {candidates}"
        )
    return candidates[0]


def _remote_file(rel_path: str, info: Any, dest: Path, settings: DownloadSettings) -> _RemoteFile:
    _check_relative_path(rel_path)
    try:
        size = int(info["size_bytes"])
        digests = tuple(
            (algorithm, str(info[field]).lower())
            for field, algorithm in _DIGEST_FIELDS
            if info.get(field)
        )
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise DownloadError(f"Catalogue lists {rel_path!r} without a valid size: {err}") from err
    url = urljoin(settings.catalogue_url, quote(rel_path))
    return _RemoteFile(url=url, dest=dest, size=size, digests=digests)


def _check_relative_path(rel_path: str) -> None:
    # Catalogue paths are joined onto the catalogue URL; ".." or a leading "/" would let a
    # tampered catalogue point outside the voices repository.
    path = PurePosixPath(rel_path)
    if not rel_path or "\\" in rel_path or path.is_absolute() or ".." in path.parts:
        raise DownloadError(f"Catalogue file path {rel_path!r} is not a safe relative path")


def _is_present(file: _RemoteFile) -> bool:
    if not file.dest.is_file():
        return False
    size = file.dest.stat().st_size
    if size != file.size:
        _LOGGER.info("Replacing %s: %d bytes, catalogue says %d", file.dest, size, file.size)
        return False
    return True


def _download_all(files: Sequence[_RemoteFile], timeout: float) -> None:
    """Fetch and verify every file, then move them all into place in order.

    Nothing is moved until everything verified, so a failure leaves no part of the voice;
    the model comes last because the server treats a voice as present once its .onnx is.
    """
    with ExitStack() as stack:
        temps = []
        for file in files:
            tmp = stack.enter_context(_temp_path(file.dest))
            _download_verified(file, tmp, timeout)
            temps.append(tmp)
        for file, tmp in zip(files, temps, strict=True):
            os.replace(tmp, file.dest)
            _LOGGER.info("Downloaded %s (%s)", file.dest, file.url)


def _download_verified(file: _RemoteFile, tmp: Path, timeout: float) -> None:
    _LOGGER.debug("Downloading %s to %s", file.url, tmp)
    hashers = [hashlib.new(algorithm) for algorithm, _ in file.digests]
    received = _fetch(file.url, tmp, timeout, size=file.size, hashers=hashers)
    if received != file.size:
        raise DownloadError(
            f"Size mismatch for {file.url}: expected {file.size} bytes, got {received}"
        )
    for (algorithm, expected), hasher in zip(file.digests, hashers, strict=True):
        got = hasher.hexdigest()
        if got != expected:
            raise DownloadError(
                f"{algorithm} mismatch for {file.url}: expected {expected}, got {got}"
            )


# --- Transfer -----------------------------------------------------------------------------


@contextmanager
def _temp_path(dest: Path) -> Iterator[Path]:
    """A fresh name beside ``dest``, deleted on exit unless it was moved into place.

    Same folder so ``os.replace`` is atomic; a leading dot and ``.part`` suffix so a data
    folder scan never mistakes it for a voice. Only a name: the file is created with
    ``open(..., "xb")`` so it gets normal umask permissions (``mkstemp`` would give 0600).
    """
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.part")
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def _fetch(url: str, dest: Path, timeout: float, size: int | None, hashers: Sequence[Any]) -> int:
    """Stream ``url`` into the new file ``dest``; returns the number of bytes written.

    With a known ``size``, stops reading past it so a lying server cannot fill the disk.
    """
    # Imported here: urllib.request and http.client are 1.1 MB of a server's
    # resident memory, and most servers never download.
    import http.client
    from urllib.error import HTTPError, URLError
    from urllib.request import urlopen

    try:
        with urlopen(url, timeout=timeout) as response, dest.open("xb") as out:
            length = _content_length(response)
            if size is not None and length is not None and length != size:
                raise DownloadError(
                    f"Size mismatch for {url}: expected {size} bytes, server sends {length}"
                )
            label = PurePosixPath(unquote(urlsplit(url).path)).name
            progress = _Progress(label, size if size is not None else length)
            received = _copy(response, out, hashers, size, progress)
    except HTTPError as err:
        raise DownloadError(f"HTTP error {err.code} ({err.reason}) fetching {url}") from err
    except URLError as err:
        raise DownloadError(f"Could not reach {url}: {err.reason}") from err
    except (OSError, http.client.HTTPException) as err:
        raise DownloadError(f"Download of {url} failed: {err!r}") from err
    # urllib returns a short body without complaint when the connection drops early.
    if length is not None and received < length:
        raise DownloadError(f"Connection closed after {received} of {length} bytes from {url}")
    return received


def _content_length(response: Any) -> int | None:
    value = response.headers.get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _copy(
    response: Any, out: BinaryIO, hashers: Sequence[Any], limit: int | None, progress: _Progress
) -> int:
    received = 0
    while chunk := response.read(_CHUNK_BYTES):
        received += len(chunk)
        if limit is not None and received > limit:
            break  # reported as a size mismatch by the caller
        out.write(chunk)
        for hasher in hashers:
            hasher.update(chunk)
        progress.update(received)
    return received


class _Progress:
    """Logs "Downloading X: 45% (28.4/63.2 MB)" every 10% or every few seconds."""

    def __init__(self, label: str, total: int | None) -> None:
        self._label = label
        self._total = total if total is not None and total >= _PROGRESS_MIN_BYTES else None
        self._next_percent = _PROGRESS_STEP_PERCENT
        self._last_log = time.monotonic()

    def update(self, received: int) -> None:
        if self._total is None:
            return
        percent = min(100, 100 * received // self._total)
        now = time.monotonic()
        if percent < self._next_percent and now - self._last_log < _PROGRESS_INTERVAL_S:
            return
        _LOGGER.info(
            "Downloading %s: %d%% (%.1f/%.1f MB)",
            self._label,
            percent,
            received / 1e6,
            self._total / 1e6,
        )
        self._next_percent = (percent // _PROGRESS_STEP_PERCENT + 1) * _PROGRESS_STEP_PERCENT
        self._last_log = now
