"""Home Assistant add-on: announce the Wyoming service to the Supervisor once describe answers.

Waits until the server at 127.0.0.1:10200 answers describe, then sends
``{"service": "wyoming", "config": {"uri": "tcp://<hostname>:10200"}}`` to
``$SUPERVISOR_API/discovery`` (default ``http://supervisor``) with the add-on's
``SUPERVISOR_TOKEN``; Home Assistant then offers the Wyoming integration by itself.
Needs only the standard library and the server's own health check.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

PORT = 10200
WAIT_SECONDS = 600.0
"""A first start may download and split the voice first (but describe answers early)."""
RETRIES = 5


def log(message: str) -> None:
    print(f"piper-stream-addon discovery: {message}", file=sys.stderr, flush=True)


def wait_for_describe(uri: str, deadline: float) -> bool:
    while time.monotonic() < deadline:
        check = [sys.executable, "-m", "wyoming_piper_stream.health", "--uri", uri]
        if subprocess.run(check, capture_output=True, timeout=30).returncode == 0:
            return True
        time.sleep(0.5)
    return False


def announce(api: str, token: str, hostname: str) -> None:
    body = {"service": "wyoming", "config": {"uri": f"tcp://{hostname}:{PORT}"}}
    request = urllib.request.Request(
        f"{api.rstrip('/')}/discovery",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        reply = json.loads(response.read() or b"{}")
    if reply.get("result") != "ok":
        raise OSError(f"the Supervisor answered {reply}")


def main() -> int:
    token = os.environ.get("SUPERVISOR_TOKEN")
    if not token:
        log("no SUPERVISOR_TOKEN (not run by the Supervisor): nothing to announce")
        return 0
    api = os.environ.get("SUPERVISOR_API", "http://supervisor")
    uri = os.environ.get("PIPER_STREAM_URI", f"tcp://127.0.0.1:{PORT}")
    wait = float(os.environ.get("PIPER_STREAM_DISCOVERY_WAIT", WAIT_SECONDS))
    if not wait_for_describe(uri, time.monotonic() + wait):
        log(f"the server did not answer describe within {wait:.0f} s")
        return 1
    for attempt in range(1, RETRIES + 1):
        try:
            announce(api, token, socket.gethostname())
            log("announced the wyoming service to Home Assistant")
            return 0
        except (OSError, ValueError, urllib.error.URLError) as error:
            log(f"announcing failed ({error}), attempt {attempt} of {RETRIES}")
            time.sleep(min(30, 2**attempt))
    return 1


if __name__ == "__main__":
    sys.exit(main())
