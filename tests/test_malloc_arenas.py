"""The server limits glibc's malloc arenas, unless the user set how many."""

from __future__ import annotations

import platform

import pytest

from wyoming_piper_stream.server.malloc_arenas import limit_malloc_arenas


def test_the_users_malloc_arena_max_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="needs glibc's mallopt")
def test_glibc_is_told_to_use_one_arena(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert limit_malloc_arenas() is True
