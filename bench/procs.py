"""Server subprocesses for the benchmark: start, wait until ready, watch memory, stop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.client import HOST, describe

_ENV_ARGS = ("WYOMING_PIPER_ARGS", "WYOMING_PIPER_STREAM_ARGS")  # must not change our flags


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class RssPoller(threading.Thread):
    """Polls the RSS of a process plus its children; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        # Not faster: the scan of children costs CPU that the servers under test
        # share (2 cores); the kernel's VmHWM catches short peaks of the process.
        super().__init__(daemon=True, name=f"rss-{pid}")
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            process = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop_event.is_set():
            with contextlib.suppress(psutil.Error):
                members = [process, *process.children(recursive=True)]
                self.peak = max(self.peak, sum(_rss(p) for p in members))
            self._stop_event.wait(self.interval)

    def stop(self) -> int:
        self._stop_event.set()
        self.join(timeout=2)
        return self.peak


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def _rss(process: psutil.Process) -> int:
    try:
        return process.memory_info().rss
    except psutil.Error:
        return 0


def _high_water_mark(pid: int) -> int:
    """The kernel's peak RSS (VmHWM) of one process in bytes; 0 if unknown."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass
class Server:
    """One server process under test."""

    name: str
    args: list[str]
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    poller: RssPoller | None = None
    peak_rss: int = 0
    high_water_mark: int = 0
    wrapper: tuple[str, ...] = ()
    """Runs the server, e.g. ``("taskset", "-c", "1")`` to pin it to a core."""
    _log: object = field(default=None, repr=False)

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in _ENV_ARGS}
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [*self.wrapper, sys.executable, "-m", *self.args],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.poller = RssPoller(self.process.pid)
        self.poller.start()

    async def wait_ready(self, timeout: float, poll: float = 0.2) -> None:
        """Until the server answers describe (or exits, or the time is up)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.log_path}")
            try:
                await describe(self.port, timeout=2.0)
                return
            except (TimeoutError, OSError) as error:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} not ready: {error}") from error
                await asyncio.sleep(poll)

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate (then kill) our process, with bounded waits; keep its peak RSS."""
        process = self.process
        if process is None:
            return
        self.high_water_mark = _high_water_mark(process.pid)
        if self.poller is not None:
            # The larger of the two: the poll sees children, VmHWM short peaks.
            self.peak_rss = max(self.poller.stop(), self.high_water_mark)
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if self._log is not None:
            self._log.close()  # type: ignore[attr-defined]
        self.process = None
