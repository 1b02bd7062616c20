"""A real server with ``--web-server`` on free loopback ports, and HTTP helpers for it."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from server_util import FIXTURE_VOICES, ServerProcess, free_port, run_server

TINY_SINGLE = FIXTURE_VOICES / "tiny-single"
CHANGE = {"X-Requested-With": "piper-stream"}
"""The header the page sends with every change (POST, DELETE)."""
PAGE_TIMEOUT = aiohttp.ClientTimeout(total=120)


@dataclass
class WebServer:
    """The server process, its page's URL and its upload folder."""

    server: ServerProcess
    url: str
    voices_dir: Path


@contextlib.contextmanager
def run_web_server(root: Path, *extra_args: str) -> Iterator[WebServer]:
    """Our server with the page on a free port; its voice folder holds ``tiny-multi``."""
    voices_dir = root / "voices"
    voices_dir.mkdir(parents=True, exist_ok=True)
    for suffix in (".onnx", ".onnx.json"):
        shutil.copy(FIXTURE_VOICES / f"tiny-multi{suffix}", voices_dir / f"tiny-multi{suffix}")
    port = free_port()
    args = ("--data-dir", str(voices_dir), "--web-server", "--web-server-port", str(port))
    with run_server(root, *args, "--max-voices", "4", *extra_args) as server:
        url = f"http://127.0.0.1:{port}/"
        _wait_for_page(url, server)
        yield WebServer(server, url, voices_dir)
    assert "Traceback" not in server.log(), server.log_tail()


def _wait_for_page(url: str, server: ServerProcess) -> None:
    """The page starts with the Wyoming server; allow a moment for the bind."""
    import urllib.request

    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"web page not served at {url}:\n{server.log_tail()}")
            time.sleep(0.1)


def voice_form(model: Path, config: Path, model_name: str | None = None) -> aiohttp.FormData:
    """A multipart upload as the page's form sends it (fields ``onnx`` and ``config``)."""
    form = aiohttp.FormData()
    form.add_field("onnx", model.read_bytes(), filename=model_name or model.name)
    form.add_field("config", config.read_bytes(), filename=config.name)
    return form


def folder_listing(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


async def call(method: str, url: str, **kwargs: object) -> tuple[int, dict]:
    """One HTTP request to the page; its status and JSON body."""
    async with (
        aiohttp.ClientSession(timeout=PAGE_TIMEOUT) as session,
        session.request(method, url, headers=CHANGE, **kwargs) as response,  # type: ignore[arg-type]
    ):
        return response.status, await response.json()
