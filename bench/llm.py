"""LLM-paced replies: text arrives word by word, as Home Assistant forwards an LLM's deltas.

Three servers on the same joe voice, in interleaved rounds (the order rotates each
round): ours (clause streaming ``auto``), ours with ``--clause-streaming off``
(sentence by sentence, as before clause streaming) and wyoming-piper 2.5.2. Each
reply is sent as synthesize-start, one synthesize-chunk per word at a fixed rate
(words/s), the whole text as synthesize, synthesize-stop. All run with noise off
(deterministic lengths; timing does not depend on it). Reported per case, as
medians over rounds, all times from the first word sent:
- first audio;
- silence after the first audio: a real-time player that starts at the first
  chunk and stalls whenever the next chunk is not there yet;
- end: when that player has played everything;
- early: clauses our server spoke before their sentence ended (from its log).
Writes bench-out/llm.json and bench-out/llm-timeline-*.png.

Usage: ``script/bench --llm [--rounds N] [--rates 4,8,15,40]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from wyoming.client import AsyncTcpClient
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop

from bench.client import HOST, Trace, _read_until, one_shot
from bench.plot import llm_timeline
from bench.procs import Server, free_port
from bench.stats import Target, fmt_ratio, json_safe, median, paired_ratio, table
from bench.texts import WORDS_25

OUT_DIR = Path("bench-out")
VOICE = "en_US-joe-medium"
OURS, OFF, THEIRS = "ours", "ours-off", "wyoming-piper"
SERVERS = (OURS, OFF, THEIRS)
RATES = (4.0, 8.0, 15.0, 40.0)

REPLIES: dict[str, str] = {
    "short-then-long": (
        "Sure! I turned off the living room lights, then I locked the door, and the "
        "thermostat downstairs is now set to twenty degrees for the whole night so the "
        "house stays warm while you sleep. Anything else?"
    ),
    "long-first": (
        "The weather tomorrow looks mostly dry, with a light breeze from the west in the "
        "morning and a few clouds building up over the hills in the afternoon before some "
        "light rain moves in around dinner time. Bring a jacket."
    ),
    "list": (
        "Here is your shopping list: milk, eggs and a loaf of bread from the bakery; "
        "two kinds of cheese for the weekend; apples, pears and bananas; and coffee "
        "beans if they are on sale. Should I send it to your phone?"
    ),
    "no-punctuation": (
        "I checked the calendar for tomorrow and it looks like you have a meeting with "
        "the design team at ten in the morning followed by lunch with your sister at the "
        "new place downtown and then a dentist appointment at four."
    ),
}
"""Replies by kind. short-then-long: "Sure!", then 34 words with commas after words 7
and 12 (the issue's example); long-first: 38 words, a comma after word 6; list: clauses
of 1-9 words; no-punctuation: 42 words without a comma."""

_EARLY = re.compile(rb"Spoke (\d+) clause\(s\) before their sentence ended")


@dataclass
class PacedTrace(Trace):
    """A paced stream: audio chunks plus when each word was sent (from the first word)."""

    words: list[float] = field(default_factory=list)
    early: int = 0

    def played(self) -> tuple[float, float]:
        """(silence after the first audio, end of playback) of a real-time player."""
        _, stall = self.underruns()
        return stall, self.first + self.audio_seconds + stall


async def paced_stream(client: AsyncTcpClient, text: str, rate: float) -> PacedTrace:
    """Home Assistant's events for ``text``, one word every ``1 / rate`` s."""
    words = text.split(" ")
    deltas = [words[0], *(" " + w for w in words[1:])]
    trace = PacedTrace()
    await client.write_event(SynthesizeStart().event())
    started = time.perf_counter()
    reader = asyncio.create_task(_read_until(client, started, _stopped, trace))
    try:
        for index, delta in enumerate(deltas):
            await asyncio.sleep(max(0.0, started + index / rate - time.perf_counter()))
            trace.words.append(time.perf_counter() - started)
            await client.write_event(SynthesizeChunk(text=delta).event())
        await client.write_event(Synthesize(text=text).event())
        await client.write_event(SynthesizeStop().event())
        await reader
        return trace
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader


def _stopped(event_type: str) -> bool:
    return event_type == "synthesize-stopped"


@dataclass(frozen=True)
class Sample:
    first: float
    silence: float
    end: float
    early: int
    audio: float
    """Seconds of speech: against ``ours-off`` (noise off), what the cuts changed."""


Key = tuple[str, float]  # (reply, rate)


@dataclass
class Run:
    samples: dict[str, dict[Key, list[Sample]]]
    traces: dict[str, dict[Key, list[PacedTrace]]]
    failures: list[str]

    def values(self, server: str, key: Key, attr: str) -> list[float]:
        return [getattr(s, attr) for s in self.samples[server].get(key, [])]


async def _one(server: Server, text: str, rate: float, timeout: float) -> PacedTrace:
    since = server.log_path.stat().st_size
    async with AsyncTcpClient(HOST, server.port) as client:
        trace = await asyncio.wait_for(paced_stream(client, text, rate), timeout)
    await asyncio.sleep(0.05)  # the handler logs as the stream ends
    with server.log_path.open("rb") as log:
        log.seek(since)
        trace.early = sum(int(m.group(1)) for m in _EARLY.finditer(log.read()))
    return trace


async def run_rounds(servers: dict[str, Server], rounds: int, rates: tuple[float, ...]) -> Run:
    run = Run({s: {} for s in SERVERS}, {s: {} for s in SERVERS}, [])
    for index in range(rounds):
        order = SERVERS[index % 3 :] + SERVERS[: index % 3]
        for rate in rates:
            for reply, text in REPLIES.items():
                key = (reply, rate)
                for name in order:
                    timeout = 60.0 + len(text.split()) / rate
                    try:
                        trace = await _one(servers[name], text, rate, timeout)
                    except Exception as error:  # keep going; reported at the end
                        run.failures.append(f"round {index + 1} {reply}@{rate:g} {name}: {error!r}")
                        continue
                    silence, end = trace.played()
                    sample = Sample(trace.first, silence, end, trace.early, trace.audio_seconds)
                    run.samples[name].setdefault(key, []).append(sample)
                    run.traces[name].setdefault(key, []).append(trace)
        print(f"  round {index + 1}/{rounds} done", flush=True)
    return run


def _servers(data_dir: Path) -> dict[str, Server]:
    OUT_DIR.mkdir(exist_ok=True)
    ports = {name: free_port() for name in SERVERS}
    uri = {name: f"tcp://127.0.0.1:{port}" for name, port in ports.items()}
    args = {
        OURS: ["wyoming_piper_stream", "--uri", uri[OURS]],
        OFF: ["wyoming_piper_stream", "--uri", uri[OFF], "--clause-streaming", "off"],
        THEIRS: ["wyoming_piper", "--uri", uri[THEIRS], "--voice", VOICE],
    }
    args[THEIRS] += ["--data-dir", str(data_dir)]
    for name in SERVERS:  # deterministic speech: lengths compare across servers
        args[name] += ["--noise-scale", "0", "--noise-w-scale", "0"]
    return {
        name: Server(name, args[name], ports[name], OUT_DIR / f"server-llm-{name}.log")
        for name in SERVERS
    }


def _row(run: Run, key: Key) -> list[str]:
    reply, rate = key
    cells = [f"{reply} @{rate:g}"]
    for attr in ("first", "silence", "end"):
        for name in SERVERS:
            cells.append(f"{median(run.values(name, key, attr)):.2f}")
        ratio = paired_ratio(run.values(OURS, key, attr), run.values(THEIRS, key, attr))
        cells.append(fmt_ratio(ratio))
    cells.append(f"{max(run.values(OURS, key, 'early'), default=0):.0f}")
    ours, off = median(run.values(OURS, key, "audio")), median(run.values(OFF, key, "audio"))
    cells.append(f"{ours:.2f}/{off:.2f}")
    return cells


HEADER = [
    "reply @words/s",
    *(f"{attr} {s}" for attr in ("first", "silence", "end") for s in (*SERVERS, "ratio")),
    "early",
    "speech s ours/off",
]


def targets(run: Run, rates: tuple[float, ...]) -> list[Target]:
    found: list[Target] = []
    if 8.0 in rates:
        key = ("long-first", 8.0)
        found.append(
            Target("first audio, long-first @8 (s)", median(run.values(OURS, key, "first")), 1.5)
        )
        ratio = paired_ratio(run.values(OURS, key, "first"), run.values(THEIRS, key, "first"))
        found.append(Target("first audio, long-first @8 (x wyoming-piper)", ratio, 0.3))
        key = ("short-then-long", 8.0)
        silence = median(run.values(OURS, key, "silence"))
        found.append(Target("silence after first audio, short-then-long @8 (s)", silence, 0.8))
    if 40.0 in rates:
        keys = [(reply, 40.0) for reply in REPLIES]
        early = sum(max(run.values(OURS, k, "early"), default=0) for k in keys)
        found.append(Target("clauses spoken early @40", early, 0))
        for key in keys:
            # Seconds later than sentence by sentence (same round); 0.1 s of noise allowed
            # on a shared machine: nothing is cut, so the work is the same.
            later = median(
                [
                    a - b
                    for a, b in zip(
                        run.values(OURS, key, "first"), run.values(OFF, key, "first"), strict=False
                    )
                ]
            )
            found.append(Target(f"first audio {key[0]} @40, ours - off (s)", later, 0.1))
    return found


def report(run: Run, rounds: int, rates: tuple[float, ...]) -> list[Target]:
    keys = [(reply, rate) for rate in rates for reply in REPLIES]
    print(
        f"\nLLM-paced replies, {rounds} interleaved rounds; seconds from the first word "
        f"(medians); ratio = ours / wyoming-piper, same round; early = clauses spoken "
        f"before their sentence ended (ours, max over rounds); speech s = seconds of "
        f"audio, ours vs clause streaming off (noise off: the difference is the cuts')"
    )
    print(table(HEADER, [_row(run, key) for key in keys]))
    found = targets(run, rates)
    print("\nTargets:")
    for target in found:
        print(target.line())
    for failure in run.failures:
        print(f"  request failed: {failure}")
    return found


def write_outputs(run: Run, found: list[Target], rounds: int) -> None:
    for reply in ("short-then-long", "long-first"):
        key = (reply, 8.0)
        traces = {
            name: _median_round(run.traces[name][key])
            for name in SERVERS
            if key in run.traces[name]
        }
        if traces:
            path = OUT_DIR / f"llm-timeline-{reply}.png"
            llm_timeline(traces, f"{reply} reply at 8 words/s (each server's median round)", path)
            print(f"wrote {path}")
    data = {
        "rounds": rounds,
        "replies": REPLIES,
        "samples": {
            name: {f"{r}@{rate:g}": [asdict(s) for s in xs] for (r, rate), xs in by_key.items()}
            for name, by_key in run.samples.items()
        },
        "targets": [t.as_dict() for t in found],
        "failures": run.failures,
    }
    path = OUT_DIR / "llm.json"
    path.write_text(json.dumps(json_safe(data), indent=1))
    print(f"wrote {path}")


def _median_round(traces: list[PacedTrace]) -> PacedTrace:
    """The trace with the median silence (then first audio): a typical round, not an outlier."""
    return sorted(traces, key=lambda t: (t.played()[0], t.first))[len(traces) // 2]


async def benchmark(rounds: int, rates: tuple[float, ...], voices: Path) -> Run:
    servers = _servers(voices)
    try:
        for server in servers.values():
            server.start()
        for server in servers.values():
            await server.wait_ready(180.0)
            async with AsyncTcpClient(HOST, server.port) as client:
                await asyncio.wait_for(one_shot(client, WORDS_25), 180.0)  # warm
            print(f"{server.name} ready and warm (port {server.port})", flush=True)
        return await run_rounds(servers, rounds, rates)
    finally:
        for server in servers.values():
            server.stop()


def main(argv: list[str], voice_dir: Path | None = None) -> None:
    parser = argparse.ArgumentParser(prog="script/bench --llm", description=__doc__)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    parser.add_argument(
        "--rates", default="4,8,15,40", help="words per second, comma-separated (4,8,15,40)"
    )
    args = parser.parse_args(argv)
    rates = tuple(float(r) for r in args.rates.split(","))
    rounds = max(1, args.rounds)
    from bench.server import voice_dir as make_voice_dir  # the shared voice folder

    with tempfile.TemporaryDirectory(prefix="bench-voices-") as folder:
        run = asyncio.run(benchmark(rounds, rates, voice_dir or make_voice_dir(Path(folder))))
    found = report(run, rounds, rates)
    write_outputs(run, found, rounds)
