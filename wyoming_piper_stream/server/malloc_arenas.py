"""The C library's allocator: one arena for the whole server process.

glibc gives threads that allocate at the same time arenas of their own (up to 8
per core) and keeps their freed memory. The server's synthesis threads, the
event loop and onnxruntime's pools then hold several arenas' worth of freed
chunks. Measured with ``bench.memory --server ours`` (joe, after the bench's
texts and 4 clients at once): peak 207.5 MB with glibc's default, 202.4 MB with
2 arenas, 200.4 MB with 1, at the same CPU time.
"""

from __future__ import annotations

import ctypes
import os

M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)
ARENAS = 1


def limit_malloc_arenas() -> bool:
    """Use one malloc arena, unless ``MALLOC_ARENA_MAX`` already says how many.

    Call before threads start. False where the C library has no ``mallopt``
    (musl, macOS): their allocators have no per-thread arenas to limit.
    """
    if "MALLOC_ARENA_MAX" in os.environ:  # the user's (or the image's) choice
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    return bool(mallopt(M_ARENA_MAX, ARENAS))
