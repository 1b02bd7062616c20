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


def _playback(trace: Trace) -> tuple[list[float], list[float]]:
    """Audio played vs time by a real-time player that stalls when no audio is there."""
    times, played = [trace.first], [0.0]
    end, total = trace.first, 0.0
    for arrived, duration in trace.chunks:
        start = max(arrived, end)
        times += [start, start + duration]
        played += [total, total + duration]
        end, total = start + duration, total + duration
    return times, played


def llm_timeline(traces: dict[str, Trace], title: str, path: Path) -> None:
    """One panel per server: words sent, audio received and audio played over time.

    ``traces`` are paced streams (``bench.llm.PacedTrace``, with ``words``: send times).
    """
    figure, panels = plt.subplots(
        len(traces), 1, figsize=(11, 3.2 * len(traces)), dpi=120, sharex=True, squeeze=False
    )
    for axes, (name, trace) in zip(panels[:, 0], traces.items(), strict=True):
        words = getattr(trace, "words", [])
        times, audio = _cumulative(trace)
        axes.step(
            times, audio, where="post", color="tab:blue", linewidth=1.6, label="audio received"
        )
        play_t, played = _playback(trace)
        _, stall = trace.underruns()
        axes.plot(
            play_t,
            played,
            color="tab:green",
            linewidth=1.6,
            label=f"audio played (silence {stall:.2f} s)",
        )
        axes.axvline(trace.first, color="tab:green", linestyle=":", linewidth=0.8)
        text_axes = axes.twinx()
        text_axes.step(
            words,
            range(1, len(words) + 1),
            where="post",
            color="tab:orange",
            linewidth=1.2,
            label="words sent",
        )
        text_axes.set_ylabel("words sent")
        text_axes.set_ylim(bottom=0)
        axes.set_ylabel("audio (s)")
        axes.set_ylim(bottom=0)
        axes.grid(True, alpha=0.3)
        axes.set_title(f"{name}: first audio {trace.first:.2f} s after the first word", fontsize=10)
        handles = axes.get_legend_handles_labels()
        extra = text_axes.get_legend_handles_labels()
        axes.legend(handles[0] + extra[0], handles[1] + extra[1], loc="upper left", fontsize=8)
    panels[-1, 0].set_xlabel("seconds since the first word was sent")
    panels[0, 0].set_xlim(left=0)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
