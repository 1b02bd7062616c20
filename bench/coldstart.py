"""Cold start: launch -> describe answered, launch -> first audio of a short request.

Each launch is a fresh server process. Three kinds, in interleaved rounds:
- ours with a warm cache (split graphs and voice facts already on disk),
- ours on a first-ever launch (an empty ``--cache-dir``: split, measure, calibrate),
- wyoming-piper (it keeps no cache; every launch is the same).
Describe is polled from the launch on; the 5-word request goes out as soon as
describe is answered, as Home Assistant does after connecting.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from bench.client import on_connection, one_shot
from bench.procs import Server, free_port
from bench.stats import Target, median, ms, paired_ratio, table
from bench.texts import WORDS_5

WARM, FIRST_EVER, THEIRS = "ours, warm cache", "ours, first-ever", "wyoming-piper"
KINDS = (WARM, FIRST_EVER, THEIRS)


@dataclass(frozen=True)
class Launch:
    """Seconds from process start to describe answered and to the first audio."""

    describe: float
    first_audio: float


def _args(kind: str, uri: str, scratch: Path, voice_dir: Path, voice: str) -> list[str]:
    if kind == THEIRS:
        return ["wyoming_piper", "--uri", uri, "--voice", voice, "--data-dir", str(voice_dir)]
    args = ["wyoming_piper_stream", "--uri", uri]
    if kind == FIRST_EVER:
        args += ["--cache-dir", str(scratch / "cache")]
    return args


async def _launch(kind: str, voice_dir: Path, voice: str, log_dir: Path, timeout: float) -> Launch:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as scratch:
        args = _args(kind, f"tcp://127.0.0.1:{port}", Path(scratch), voice_dir, voice)
        log = log_dir / f"cold-{kind.split(',')[0]}-{port}.log"
        server = Server(kind, args, port, log)
        started = time.perf_counter()
        server.start()
        try:
            await server.wait_ready(timeout, poll=0.01)
            described = time.perf_counter() - started
            trace = await on_connection(port, partial(one_shot, text=WORDS_5), timeout)
            return Launch(described, described + trace.first)
        finally:
            server.stop()


async def measure(
    rounds: int, voice_dir: Path, voice: str, log_dir: Path, timeout: float
) -> dict[str, list[Launch]]:
    """``rounds`` launches of each kind, the order rotating every round."""
    found: dict[str, list[Launch]] = {kind: [] for kind in KINDS}
    for index in range(rounds):
        for offset in range(len(KINDS)):
            kind = KINDS[(index + offset) % len(KINDS)]
            found[kind].append(await _launch(kind, voice_dir, voice, log_dir, timeout))
    return found


def report(found: dict[str, list[Launch]]) -> tuple[str, list[Target]]:
    rows = [
        [
            kind,
            ms(median([x.describe for x in launches])),
            ms(median([x.first_audio for x in launches])),
        ]
        for kind, launches in found.items()
    ]
    text = table(["launch", "describe ms", "first audio ms (5 words)"], rows)

    def values(kind: str) -> list[float]:
        return [x.first_audio for x in found[kind]]

    describe = median([x.describe for x in found[WARM]])
    targets = [
        Target("cold start: launch -> describe, ours (s)", describe, 0.3),
        Target(
            "cold start: launch -> first audio, warm cache (ratio)",
            paired_ratio(values(WARM), values(THEIRS)),
            1.0,
        ),
        Target(
            "cold start: launch -> first audio, first-ever (s)", median(values(FIRST_EVER)), 2.0
        ),
    ]
    return text, targets


def as_json(found: dict[str, list[Launch]]) -> dict[str, list[dict[str, float]]]:
    return {kind: [asdict(x) for x in launches] for kind, launches in found.items()}
