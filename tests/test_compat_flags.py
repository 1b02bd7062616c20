"""wyoming-piper 2.5.2's newer flags at start: --backend, --web-server-*, in one line each."""

from __future__ import annotations

import socket
import subprocess
import sys

from conftest import REPO
from server_util import free_port

START_TIMEOUT = 60.0


def start(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the server with ``args``; these all must end at start."""
    uri = f"tcp://127.0.0.1:{free_port()}"
    return subprocess.run(
        [sys.executable, "-m", "wyoming_piper_stream", "--uri", uri, *args],
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )


def test_backend_omnivoice_fails_with_one_line() -> None:
    result = start("--backend", "omnivoice")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "wyoming-piper-stream: error: --backend omnivoice is not supported"
    ]


def test_a_bad_allow_entry_is_reported_at_start() -> None:
    result = start("--web-server", "--web-server-allow", "172.30.32.300")
    assert result.returncode == 2
    assert "invalid --web-server-allow" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_busy_web_port_fails_at_start_in_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = start("--web-server", "--web-server-port", str(port), "--no-preload")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors and f"cannot serve the web page on 127.0.0.1:{port}" in errors[0]
    assert "Traceback" not in result.stderr
