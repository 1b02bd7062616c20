"""Timeline picture: audio received vs wall time, with real-time playback lines."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.client import Trace

COLORS = {"ours": "tab:blue", "wyoming-piper": "tab:orange"}


def _cumulative(trace: Trace) -> tuple[list[float], list[float]]:
    times, audio = [0.0], [0.0]
    total = 0.0
    for arrived, duration in trace.chunks:
        total += duration
        times.append(arrived)
        audio.append(total)
    times.append(trace.end)
    audio.append(total)
    return times, audio


def timeline(traces: dict[str, Trace], title: str, path: Path) -> None:
    """Cumulative audio seconds received per server; dashed: playback from its first chunk."""
    figure, axes = plt.subplots(figsize=(11, 6.5), dpi=120)
    for name, trace in traces.items():
        color = COLORS.get(name)
        times, audio = _cumulative(trace)
        count, _stall = trace.underruns()
        label = (
            f"{name}: audio received (first {trace.first * 1000:.0f} ms, "
            f"done {trace.end:.2f} s, {count} underruns)"
        )
        axes.step(times, audio, where="post", color=color, linewidth=2, label=label)
        start, length = trace.first, trace.audio_seconds
        axes.plot(
            [start, start + length],
            [0, length],
            linestyle="--",
            color=color,
            linewidth=1.2,
            label=f"{name}: real-time playback from first chunk",
        )
        axes.axvline(start, color=color, linestyle=":", linewidth=0.8)
    axes.set_xlabel("wall time since the request was sent (s)")
    axes.set_ylabel("audio (s)")
    axes.set_title(title)
    axes.set_xlim(left=0)
    axes.set_ylim(bottom=0)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=9)
    axes.text(
        0.99,
        0.02,
        "playback line above the received curve = underrun",
        transform=axes.transAxes,
        ha="right",
        va="bottom",
        fontsize=8,
        color="gray",
    )
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
