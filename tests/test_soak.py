"""The quick soak (4 clients x 6 requests against a real server) passes: run as a user runs it.

``python -m bench.soak --quick`` starts its own server, so this test owns two levels of
processes: it starts the soak in a session of its own and, should the soak overrun
its time, ends that whole session (the soak and the server it started).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

SOAK_TIMEOUT = 300.0
"""Seconds for the whole quick soak (about 30 s on 2 idle cores; a loaded machine is slower)."""
STOP_TIMEOUT = 30.0


def run_soak(out: Path, *args: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k != "WYOMING_PIPER_STREAM_ARGS"}
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.soak", "--out", str(out), *args],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the soak and its server
    )
    try:
        output, _ = process.communicate(timeout=SOAK_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            output, _ = process.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate(timeout=STOP_TIMEOUT)
        pytest.fail(f"soak still running after {SOAK_TIMEOUT} s:\n{output[-4000:]}")
    return process.returncode, output


def test_quick_soak_passes(tmp_path: Path) -> None:
    returncode, output = run_soak(tmp_path, "--quick")
    log = tmp_path / "soak-server.log"
    server_log = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
    assert returncode == 0, f"{output[-4000:]}\nserver log:\n{server_log}"
    assert "FAIL" not in output, output
    assert "PASS  no request failed" in output, output
    assert "PASS  all 24 requests ran" in output, output
