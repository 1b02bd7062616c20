"""End to end: the real server downloads its ``--voice`` from a catalogue on localhost.

A ``ThreadingHTTPServer`` on 127.0.0.1 serves a Piper-style ``voices.json`` whose voice
``en_US-tiny-medium`` is the tiny fixture voice. The server is started with that
``--voice`` and an empty data dir, as a user would start it the first time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.server
import json
import logging
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from http_util import serving
from server_util import (
    ERROR_TIMEOUT,
    FIXTURE_VOICES,
    JOE,
    ServerProcess,
    describe,
    exchange,
    free_port,
    run_server,
    synthesize,
    synthesize_events,
    wait_for_log,
)
from wyoming.audio import AudioStart
from wyoming.error import Error
from wyoming.tts import SynthesizeVoice

VOICE = "en_US-tiny-medium"
OTHER = "en_US-other-medium"
"""In the catalogue too, but not the configured ``--voice``: never downloaded."""
FIXTURE = FIXTURE_VOICES / "tiny-single"
DOWNLOAD_TIMEOUT = 60.0
"""Seconds until the voice downloaded in the background at start must be listed."""
TEXT = "Turn on the kitchen lights."


# ---------------------------------------------------------------- catalogue server


class _Handler(http.server.SimpleHTTPRequestHandler):
    server: _CatalogueServer

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.requests.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        logging.getLogger(__name__).debug(format, *args)


class _CatalogueServer(http.server.ThreadingHTTPServer):
    """Serves a folder laid out like rhasspy/piper-voices and records every request."""

    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), partial(_Handler, directory=str(root)))
        self.root = root
        self.requests: list[str] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/voices.json"

    def requested(self) -> list[str]:
        with self.lock:
            return list(self.requests)

    def add_voice(self, key: str, source: Path) -> dict[str, Any]:
        """Copies ``source`` (.onnx + .onnx.json) under Piper's path; returns its entry."""
        language, name, quality = key.split("-")
        folder = f"{language.split('_')[0]}/{language}/{name}/{quality}"
        files: dict[str, dict[str, Any]] = {}
        for suffix in (".onnx", ".onnx.json"):
            target = self.root / folder / f"{key}{suffix}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f"{source}{suffix}", target)
            data = target.read_bytes()
            files[f"{folder}/{key}{suffix}"] = {
                "size_bytes": len(data),
                "md5_digest": hashlib.md5(data).hexdigest(),
            }
        return {
            "key": key,
            "name": name,
            "language": {"code": language, "family": language.split("_")[0]},
            "quality": quality,
            "num_speakers": 1,
            "speaker_id_map": {},
            "files": files,
            "aliases": [],
        }

    def publish(self, *entries: dict[str, Any]) -> None:
        catalogue = {entry["key"]: entry for entry in entries}
        (self.root / "voices.json").write_text(json.dumps(catalogue, indent=2), encoding="utf-8")


@pytest.fixture
def catalogue(tmp_path: Path) -> Iterator[_CatalogueServer]:
    root = tmp_path / "served"
    root.mkdir()
    with serving(_CatalogueServer(root)) as httpd:
        yield httpd


@pytest.fixture
def voices_dir(tmp_path: Path) -> Path:
    """The server's --data-dir (and so its download dir): empty at start."""
    path = tmp_path / "voices"
    path.mkdir()
    return path


@contextlib.contextmanager
def start_server(
    tmp_path: Path, voices_dir: Path, url: str, *extra: str
) -> Iterator[ServerProcess]:
    """Our server with ``--voice`` from the catalogue at ``url``; no traceback allowed."""
    with run_server(
        tmp_path / "logs",
        *extra,
        "--voice",
        VOICE,
        "--data-dir",
        str(voices_dir),
        "--voices-url",
        url,
        # The split cache goes elsewhere, so the data dir holds only what was downloaded.
        "--cache-dir",
        str(tmp_path / "cache"),
    ) as server:
        yield server
    assert "Traceback" not in server.log(), server.log_tail()


def listing(folder: Path) -> list[str]:
    """Every name in the folder, hidden temp files included."""
    return sorted(path.name for path in folder.iterdir())


async def voice_names(server: ServerProcess) -> list[str]:
    info = await describe(server.uri)
    return [voice.name for program in info.tts for voice in program.voices]


async def wait_for_voice(server: ServerProcess, name: str) -> list[str]:
    deadline = time.monotonic() + DOWNLOAD_TIMEOUT
    while time.monotonic() < deadline:
        names = await voice_names(server)
        if name in names:
            return names
        if server.process.poll() is not None:
            pytest.fail(f"server exited with {server.process.returncode}:\n{server.log_tail()}")
        await asyncio.sleep(0.2)
    pytest.fail(f"{name} not listed after {DOWNLOAD_TIMEOUT} s:\n{server.log_tail()}")


def error_text(events: list) -> str:
    errors = [Error.from_event(event) for event in events if Error.is_type(event.type)]
    assert len(errors) == 1, f"expected one error event, got {[e.type for e in events]}"
    return errors[0].text


# ---------------------------------------------------------------- tests


async def test_configured_voice_is_downloaded_at_start_and_spoken(
    tmp_path: Path, voices_dir: Path, catalogue: _CatalogueServer
) -> None:
    catalogue.publish(catalogue.add_voice(VOICE, FIXTURE), catalogue.add_voice(OTHER, FIXTURE))

    with start_server(tmp_path, voices_dir, catalogue.url) as server:
        names = await wait_for_voice(server, VOICE)
        assert JOE in names  # the embedded voice stays available
        assert OTHER not in names

        events, pcm = await synthesize(server.uri, TEXT)  # no voice: the default
        starts = [AudioStart.from_event(e) for e in events if AudioStart.is_type(e.type)]
        assert events[-1].type == "audio-stop", [e.type for e in events]
        assert len(starts) == 1 and starts[0].rate == 22050
        assert len(pcm) > 22050 * 2 // 4, f"only {len(pcm)} bytes of audio"
        await wait_for_log(server, f"Spoke {len(TEXT)} chars with {VOICE}")

    assert listing(voices_dir) == [f"{VOICE}.onnx", f"{VOICE}.onnx.json", "voices.json"]
    for suffix in (".onnx", ".onnx.json"):
        expected = Path(f"{FIXTURE}{suffix}").read_bytes()
        assert (voices_dir / f"{VOICE}{suffix}").read_bytes() == expected
    assert not any(OTHER in path for path in catalogue.requested())


def publish_with_wrong_md5(catalogue: _CatalogueServer) -> None:
    """The voice in the catalogue, its model's checksum wrong (as a broken download)."""
    entry = catalogue.add_voice(VOICE, FIXTURE)
    model = next(info for path, info in entry["files"].items() if path.endswith(".onnx"))
    model["md5_digest"] = "0" * 32
    catalogue.publish(entry)


async def test_wrong_md5_is_an_error_and_leaves_nothing(
    tmp_path: Path, voices_dir: Path, catalogue: _CatalogueServer
) -> None:
    publish_with_wrong_md5(catalogue)

    # Loaded on first use: with preloading, a default voice that fails stops the server.
    with start_server(tmp_path, voices_dir, catalogue.url, "--no-preload") as server:
        reply = await exchange(server.uri, synthesize_events(TEXT), "audio-stop", ERROR_TIMEOUT)
        assert reply.closed, f"connection left open after {reply.types}"
        assert "audio-start" not in reply.types
        text = error_text(reply.events)
        assert "md5 mismatch" in text and f"{VOICE}.onnx" in text and "0" * 32 in text, text
        assert VOICE not in await voice_names(server)

        # A failed voice is not fetched again for every request (a 60 MB model each time).
        model_fetches = sum(path.endswith(".onnx") for path in catalogue.requested())
        again = await exchange(server.uri, synthesize_events(TEXT), "audio-stop", ERROR_TIMEOUT)
        assert "md5 mismatch" in error_text(again.events)
        assert sum(path.endswith(".onnx") for path in catalogue.requested()) == model_fetches

    assert listing(voices_dir) == ["voices.json"]


def test_default_voice_that_fails_to_download_stops_the_server(
    tmp_path: Path, voices_dir: Path, catalogue: _CatalogueServer
) -> None:
    """As offline, or with a bad catalogue: one line says why, and the exit code is 1."""
    publish_with_wrong_md5(catalogue)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "wyoming_piper_stream",
            *("--uri", f"tcp://127.0.0.1:{free_port()}", "--voice", VOICE),
            *("--data-dir", str(voices_dir), "--voices-url", catalogue.url),
        ],
        capture_output=True,
        text=True,
        timeout=DOWNLOAD_TIMEOUT,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1, result.stderr
    assert f"Cannot load the default voice {VOICE}: " in errors[0]
    assert "md5 mismatch" in errors[0]
    assert "Traceback" not in result.stderr


async def test_client_cannot_make_the_server_download_another_catalogue_voice(
    tmp_path: Path, voices_dir: Path, catalogue: _CatalogueServer
) -> None:
    catalogue.publish(catalogue.add_voice(VOICE, FIXTURE), catalogue.add_voice(OTHER, FIXTURE))

    with start_server(tmp_path, voices_dir, catalogue.url) as server:
        await wait_for_voice(server, VOICE)
        send = synthesize_events(TEXT, SynthesizeVoice(name=OTHER))
        reply = await exchange(server.uri, send, "audio-stop", ERROR_TIMEOUT)
        assert reply.closed, f"connection left open after {reply.types}"
        assert f"unknown voice {OTHER!r}" in error_text(reply.events)

    assert not any(OTHER in path for path in catalogue.requested()), catalogue.requested()
    assert not any(name.startswith(OTHER) for name in listing(voices_dir))


async def test_local_files_only_never_uses_the_network(
    tmp_path: Path, voices_dir: Path, catalogue: _CatalogueServer
) -> None:
    # The same catalogue and --voice that the first test downloads, even with
    # --update-voices: with --local-files-only nothing is fetched, ever.
    catalogue.publish(catalogue.add_voice(VOICE, FIXTURE))
    args = ("--voice", VOICE, "--data-dir", str(voices_dir), "--voices-url", catalogue.url)
    # --no-preload: a default voice that cannot load at start would stop the server.
    offline = ("--update-voices", "--local-files-only", "--no-preload")
    with run_server(tmp_path / "logs", *args, *offline) as server:
        assert VOICE not in await voice_names(server)
        reply = await exchange(server.uri, synthesize_events(TEXT), "audio-stop", ERROR_TIMEOUT)
        assert reply.closed, f"connection left open after {reply.types}"
        assert "--local-files-only" in error_text(reply.events)
        events, pcm = await synthesize(server.uri, TEXT, SynthesizeVoice(name=JOE))
        assert events[-1].type == "audio-stop" and len(pcm) > 22050  # voices on disk still speak
    assert catalogue.requested() == []
    assert listing(voices_dir) == []
    assert "Traceback" not in server.log(), server.log_tail()
