"""Small statistics, table and target helpers shared by the benchmarks, and their pause."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass

SETTLE_SECONDS = 0.2
"""Pause before each measured request or synthesis. An onnxruntime pool may spin on a
core after its run: wyoming-piper's (Piper's) does for 60-70 ms (onnxruntime's default),
ours for 2 ms. Back to back, that would slow whichever comes next; a user's requests are
seconds apart."""


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def p95(values: Sequence[float]) -> float:
    """95th percentile, linear between order statistics (max for tiny samples)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = 0.95 * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def paired_ratio(ours: Sequence[float], theirs: Sequence[float]) -> float:
    """Median over rounds of ours/theirs measured in the same round.

    Pairing by round cancels slow drifts of a shared, noisy machine better than
    a ratio of two medians.
    """
    ratios = [a / b for a, b in zip(ours, theirs, strict=False) if b > 0]
    return median(ratios)


@dataclass(frozen=True)
class Target:
    """One goal: ``value <= limit``."""

    name: str
    value: float
    limit: float

    @property
    def passed(self) -> bool:
        return not math.isnan(self.value) and self.value <= self.limit

    def line(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return f"  {verdict}  {self.name}: {self.value:.3f} (target <= {self.limit:g})"

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "passed": self.passed}


def ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.0f}"


def fmt_ratio(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}x"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain text table with right-aligned columns (the first left-aligned)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        parts = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts)

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def json_safe(value: object) -> object:
    """``value`` with NaN floats (no data) replaced by None, so the JSON is standard."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
