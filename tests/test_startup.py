"""Start-up as a user meets it: "Ready" means listening, a clear line when it cannot start,
and a health check that says whether the default voice is usable."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO
from server_util import (
    START_TIMEOUT,
    describe_once,
    free_port,
    run_server,
    synthesize,
)

MISSING_VOICE = "en_US-doesnotexist-medium"


def run_to_exit(*args: str) -> subprocess.CompletedProcess[str]:
    """The server with ``args``, expected to exit by itself."""
    return subprocess.run(
        [sys.executable, "-m", "wyoming_piper_stream", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        cwd=REPO,
        check=False,
    )


def health(uri: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wyoming_piper_stream.health", "--uri", uri, "--timeout", "10"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_port_in_use_is_one_line_and_exit_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_to_exit("--uri", f"tcp://127.0.0.1:{port}")
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        f"ERROR:wyoming_piper_stream:cannot listen on tcp://127.0.0.1:{port}: "
        "Address already in use"
    ]


def test_ready_is_logged_once_the_port_accepts(tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "wyoming_piper_stream", "--uri", f"tcp://127.0.0.1:{port}"],
            stdin=subprocess.DEVNULL,
            stderr=log,
            cwd=REPO,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while "Ready on" not in log_path.read_text():
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.01)
        describe_once(port, timeout=10)  # one try: it must already listen
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0, log_path.read_text()


def test_default_voice_that_cannot_load_stops_the_server() -> None:
    result = run_to_exit("--uri", f"tcp://127.0.0.1:{free_port()}", "--voice", MISSING_VOICE)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert errors == [
        f"ERROR:wyoming_piper_stream:Cannot load the default voice {MISSING_VOICE}: "
        f"unknown voice '{MISSING_VOICE}'"
    ]
    assert "Traceback" not in result.stderr


async def test_without_preload_unhealthy_until_the_voice_loads(tmp_path: Path) -> None:
    with run_server(tmp_path, "--no-preload") as server:
        before = health(server.uri)
        assert before.returncode == 1
        assert before.stderr.strip() == (
            "unhealthy: default voice en_US-joe-medium is not usable: not loaded yet"
        )
        _, pcm = await synthesize(server.uri, "Hello there.")
        assert len(pcm) > 0
        after = health(server.uri)
        assert after.returncode == 0, after.stderr
        assert after.stdout.startswith("healthy: default voice en_US-joe-medium ready")


async def test_without_preload_a_voice_that_failed_stays_unhealthy(tmp_path: Path) -> None:
    with run_server(tmp_path, "--no-preload", "--voice", MISSING_VOICE) as server:
        events, _ = await synthesize(server.uri, "Hello there.")
        assert [event.type for event in events] == ["error"]
        result = health(server.uri)
        assert result.returncode == 1
        assert result.stderr.strip() == (
            f"unhealthy: default voice {MISSING_VOICE} is not usable: "
            f"failed to load: unknown voice '{MISSING_VOICE}'"
        )
