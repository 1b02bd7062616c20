"""What the server's peak RSS consists of: each step of a server's life, in one process.

Imports (Python, numpy, onnxruntime, the server's modules), the voice's
session, the phonemizer, the rest of the voice's preparation, then each benchmark
text spoken as the server speaks it (``server.job_pcm.pcm_for_job``), and 4 jobs
of 25 words at once (interleaved chunk by chunk, as the scheduler's turns do), all
texts again, and last what importing onnx would add.
Prints VmRSS after each step and VmHWM (the kernel's peak) with its growth, so
the peak can be charged to a step.

``--server ours|wyoming-piper``: a real server instead, started as ``script/bench``
starts it, sent the benchmark's requests once each: its VmRSS, VmHWM and CPU
time (all threads: steadier than wall time on a shared machine) after each;
``--rounds N`` sends them N times (as the bench's rounds), ``--repeat N`` then
the 25 words N more times (median CPU ms). ``PYTHONPATH=OTHER_CHECKOUT`` measures
another version of our server.

``--work 25w [--repeat N]``: the graph calls of one text spoken in this process
(ids or frames each, padding and flow context included) and their CPU time, and
the CPU time outside the graphs (limiter, PCM, per-chunk Python).

Usage: ``.venv-bench/bin/python -m bench.memory [--server NAME [--repeat N]]``
(the split cache of the default cache dir is used, as by ``script/bench``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

_MB = 1024


def status() -> dict[str, int]:
    """Memory lines of /proc/self/status, in kB."""
    found: dict[str, int] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            found[key] = int(value.split()[0])
    return found


class Steps:
    """Prints one line per step: RSS, its growth, anon/file parts, and the peak."""

    def __init__(self) -> None:
        self.last = status()
        print(f"{'step':44s} {'RSS':>6s} {'+RSS':>6s} {'anon':>6s} {'file':>6s} {'peak':>6s} +peak")

    def __call__(self, name: str) -> None:
        now = status()
        grown = now["VmRSS"] - self.last["VmRSS"]
        peak_grown = now["VmHWM"] - self.last["VmHWM"]
        print(
            f"{name:44s} {now['VmRSS'] / _MB:6.1f} {grown / _MB:+6.1f}"
            f" {now['RssAnon'] / _MB:6.1f} {now['RssFile'] / _MB:6.1f} {now['VmHWM'] / _MB:6.1f}"
            f" {peak_grown / _MB:+6.1f}",
            flush=True,
        )
        self.last = now


def in_process() -> None:
    step = Steps()
    step("python")
    import numpy  # noqa: F401

    step("import numpy")
    import onnxruntime  # noqa: F401

    step("import onnxruntime")
    from wyoming_piper_stream import __main__  # noqa: F401

    step("import server modules")
    import threading

    from bench.texts import TEXTS, WORDS_25
    from wyoming_piper_stream.engine import graphs
    from wyoming_piper_stream.engine.pacing import PlaybackClock
    from wyoming_piper_stream.engine.settings import StreamingSettings
    from wyoming_piper_stream.server.job_pcm import pcm_for_job
    from wyoming_piper_stream.server.jobs import SpeechJob
    from wyoming_piper_stream.server.sentences import split_sentences
    from wyoming_piper_stream.server.settings import SynthesisSettings
    from wyoming_piper_stream.voices import builder
    from wyoming_piper_stream.voices.files import embedded_voice_files
    from wyoming_piper_stream.voices.settings import VoiceLibrarySettings

    step("import job path")
    make_session = graphs._session

    def measured_session(model: Any, settings: Any, **options: Any) -> Any:
        session = make_session(model, settings, **options)
        step("session (the voice's graphs)")
        return session

    graphs._session = measured_session  # type: ignore[assignment]
    load_phonemizer = builder.load_phonemizer

    def measured_phonemizer(*args: Any, **kwargs: Any) -> Any:
        phonemizer = load_phonemizer(*args, **kwargs)
        step("phonemizer")
        return phonemizer

    builder.load_phonemizer = measured_phonemizer  # type: ignore[assignment]
    ready = builder.VoiceBuilder(VoiceLibrarySettings(), StreamingSettings()).prepare(
        embedded_voice_files()
    )
    step("voice ready (facts, costs, streamer)")
    settings = SynthesisSettings()

    def job(text: str) -> Any:
        sentences = tuple(split_sentences(text, settings.auto_punctuation))
        clock = PlaybackClock()
        clock.expect_text([len(s) for s in sentences])
        job = SpeechJob(sentences, None, None)
        return pcm_for_job(ready, job, settings, None, threading.Event(), clock)

    for name, text in TEXTS.items():
        for _ in job(text):
            pass
        step(f"spoke {name}")
    jobs = [job(WORDS_25) for _ in range(4)]
    while jobs:
        jobs = [j for j in jobs if next(j, None) is not None]
    step("spoke 4x25w interleaved")
    for text in TEXTS.values():
        for _ in job(text):
            pass
    step("spoke all texts again")
    if "onnx" not in sys.modules:
        import onnx  # noqa: F401

        step("import onnx (needed only to split a voice)")


def work(text_name: str, repeat: int) -> None:
    """Graph calls, units (ids or frames, padding and context included) and CPU ms of
    one text spoken as the server speaks it; beside it, what lies outside the graphs."""
    import threading
    import time

    from bench.texts import TEXTS
    from wyoming_piper_stream.engine.pacing import PlaybackClock
    from wyoming_piper_stream.engine.settings import StreamingSettings
    from wyoming_piper_stream.server.job_pcm import pcm_for_job
    from wyoming_piper_stream.server.jobs import SpeechJob
    from wyoming_piper_stream.server.sentences import split_sentences
    from wyoming_piper_stream.server.settings import SynthesisSettings
    from wyoming_piper_stream.voices.builder import VoiceBuilder
    from wyoming_piper_stream.voices.files import embedded_voice_files
    from wyoming_piper_stream.voices.settings import VoiceLibrarySettings

    ready = VoiceBuilder(VoiceLibrarySettings(), StreamingSettings()).prepare(
        embedded_voice_files()
    )
    voice = ready.voice
    calls: list[tuple[str, int, float]] = []
    for name in ("encode", "run_flow", "decode"):
        run = getattr(voice, name)

        def counted(x: Any, *args: Any, run: Any = run, name: str = name) -> Any:
            started = time.process_time()
            out = run(x, *args)
            units = len(x) if name == "encode" else x.num_frames
            calls.append((name, units, time.process_time() - started))
            return out

        setattr(voice, name, counted)
    settings = SynthesisSettings()
    sentences = tuple(split_sentences(TEXTS[text_name], settings.auto_punctuation))
    for _ in range(repeat):
        calls.clear()
        clock = PlaybackClock()
        clock.expect_text([len(s) for s in sentences])
        started = time.process_time()
        job = SpeechJob(sentences, None, None)
        pcm = b"".join(pcm_for_job(ready, job, settings, None, threading.Event(), clock))
        total = time.process_time() - started
        in_graphs = sum(c[2] for c in calls)
        frames = len(pcm) // 2 / voice.config.hop_length
        print(
            f"{text_name}: {frames:.0f} audio frames, CPU {total * 1000:.0f} ms, "
            f"outside the graphs {(total - in_graphs) * 1000:.0f} ms"
        )
        for name in ("encode", "run_flow", "decode"):
            mine = [c for c in calls if c[0] == name]
            print(
                f"  {name:8s} {len(mine):2d} calls, {sum(c[1] for c in mine):5d} units "
                f"{[c[1] for c in mine]}, CPU {sum(c[2] for c in mine) * 1000:.0f} ms"
            )


def server_status(pid: int) -> str:
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return f"RSS {found['VmRSS'] / _MB:6.1f} MB, peak {found['VmHWM'] / _MB:6.1f} MB"


async def real_server(name: str, rounds: int, repeat: int) -> None:
    """The requests of ``script/bench``, ``rounds`` times (then the 25 words ``repeat``
    more times) to one real server: RSS, peak and the server's CPU ms for each."""
    import statistics
    import tempfile
    from collections.abc import Awaitable, Callable
    from functools import partial

    from bench.client import llm_stream, on_connection, one_shot, simultaneous
    from bench.procs import cpu_seconds
    from bench.server import make_servers, voice_dir
    from bench.texts import STREAM_REPLY, TEXTS, WORDS_25, stream_pieces

    with tempfile.TemporaryDirectory(prefix="bench-voices-") as folder:
        server = make_servers(voice_dir(Path(folder)))[name]
        server.start()
        assert server.process is not None
        pid = server.process.pid

        async def measured(label: str, request: Callable[[], Awaitable[object]]) -> float:
            before = cpu_seconds(pid)
            await request()
            used = (cpu_seconds(pid) - before) * 1000
            print(f"{label:24s} {server_status(pid)}, CPU {used:6.0f} ms", flush=True)
            return used

        try:
            await server.wait_ready(120)
            print(f"{name} {'ready':18s} {server_status(pid)}", flush=True)
            texts = [("warm 25w", WORDS_25), *TEXTS.items()]
            for label, text in texts:
                await measured(
                    label, partial(on_connection, server.port, partial(one_shot, text=text), 120)
                )
            pieces = stream_pieces(STREAM_REPLY, 30)
            stream = partial(llm_stream, pieces=pieces, delay=0.05)
            await measured("stream", partial(on_connection, server.port, stream, 120))
            await measured("4x25w", partial(simultaneous, server.port, WORDS_25, 4, 120))
            if repeat:
                one = partial(on_connection, server.port, partial(one_shot, text=WORDS_25), 120)
                used = [await measured("25w again", one) for _ in range(repeat)]
                print(f"25w CPU ms: median {statistics.median(used):.0f}, min {min(used):.0f}")
        finally:
            server.stop()


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", choices=("ours", "wyoming-piper"), help="a real server")
    parser.add_argument("--rounds", type=int, default=1, help="the bench's requests N times")
    parser.add_argument("--repeat", type=int, default=0, help="25 words this many more times")
    parser.add_argument("--work", metavar="TEXT", help="graph work of one text (e.g. 25w)")
    args = parser.parse_args()
    if args.work:
        work(args.work, max(1, args.repeat))
    elif args.server:
        import asyncio

        asyncio.run(real_server(args.server, args.rounds, args.repeat))
    else:
        in_process()


if __name__ == "__main__":
    main()
