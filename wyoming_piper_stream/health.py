"""Health check: `python -m wyoming_piper_stream.health [--uri URI] [--timeout SECONDS]`.

Sends a Wyoming `describe` and waits for an `info` that lists an installed TTS
program with voices and says the server's default voice is loaded and usable
(our server adds that to its info; a voice that cannot load, or has not loaded
yet under `--no-preload`, is unhealthy). Exits 0 when healthy; otherwise prints
one line to stderr and exits 1. Used by the Docker image's HEALTHCHECK.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from wyoming.client import AsyncClient
from wyoming.event import Event
from wyoming.info import Describe, Info

from wyoming_piper_stream.server.status import DEFAULT_VOICE, STATUS_KEY

DEFAULT_URI = "tcp://127.0.0.1:10200"
DEFAULT_TIMEOUT = 5.0


class HealthError(Exception):
    """The server is not healthy; the message says why."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m wyoming_piper_stream.health",
        description="Exit 0 if the server answers describe and its default voice is usable.",
    )
    parser.add_argument("--uri", default=DEFAULT_URI, help=f"server URI (default {DEFAULT_URI})")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds for the whole check (default {DEFAULT_TIMEOUT:g})",
    )
    return parser.parse_args(argv)


def voice_names(info: Info) -> list[str]:
    """Names of the voices of every installed TTS program."""
    return [voice.name for program in info.tts if program.installed for voice in program.voices]


async def fetch_info(uri: str, timeout: float) -> Event:
    """Connect, send describe and return the first info event."""
    client = AsyncClient.from_uri(uri, connect_timeout=timeout, read_timeout=timeout)
    async with client:
        await client.write_event(Describe().event())
        while True:
            event = await client.read_event()
            if event is None:
                raise HealthError(f"{uri} closed the connection before sending info")
            if Info.is_type(event.type):
                return event


async def check(uri: str, timeout: float) -> tuple[str, list[str]]:
    """The default voice and every voice served, or HealthError with a one-line reason."""
    try:
        async with asyncio.timeout(timeout):
            event = await fetch_info(uri, timeout)
    except TimeoutError as err:
        raise HealthError(f"no info from {uri} within {timeout:g} s") from err
    except ConnectionRefusedError as err:
        raise HealthError(f"connection refused at {uri}") from err
    except ValueError as err:
        raise HealthError(f"bad URI {uri!r}: {err}") from err
    except OSError as err:
        raise HealthError(f"cannot reach {uri}: {err.strerror or err}") from err
    names = voice_names(Info.from_event(event))
    if not names:
        raise HealthError(f"{uri} answered, but lists no installed TTS program with a voice")
    return default_voice(event, uri), names


def default_voice(info: Event, uri: str) -> str:
    """The default voice's name if it is usable, else HealthError saying why not."""
    status = (info.data or {}).get(STATUS_KEY)
    voice = status.get(DEFAULT_VOICE) if isinstance(status, dict) else None
    if not isinstance(voice, dict):
        raise HealthError(f"{uri} does not say whether its default voice is usable")
    if voice.get("ready") is not True:
        raise HealthError(f"default voice {voice.get('name')} is not usable: {voice.get('state')}")
    return str(voice.get("name"))


async def async_main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        default, names = await check(args.uri, args.timeout)
    except HealthError as err:
        print(f"unhealthy: {err}", file=sys.stderr)
        return 1
    print(f"healthy: default voice {default} ready; {len(names)} voice(s): {', '.join(names)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(async_main(argv))


if __name__ == "__main__":
    sys.exit(main())
