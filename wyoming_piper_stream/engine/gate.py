"""The step gate: how a caller above the engine decides when each synthesis step runs.

The engine calls the gate around every step (one encoder run, one chunk); the
server's scheduler hands in a gate that waits for the job's turn, while the stream
CLI and benchmarks of the engine alone run ungated.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

Gate = Callable[[float], AbstractContextManager[None]]
"""Wraps each synthesis step of one job (given its expected seconds): waits for its turn."""


@contextlib.contextmanager
def ungated(seconds: float) -> Iterator[None]:
    """The gate of a job that runs alone (the stream CLI, benchmarks of the engine)."""
    yield
