"""Flags: one source of defaults (the settings dataclasses), checked at parse time."""

from __future__ import annotations

from pathlib import Path

import pytest

from wyoming_piper_stream.__main__ import build_parser, parse_settings
from wyoming_piper_stream.engine.settings import StreamingSettings
from wyoming_piper_stream.flags_table import markdown_table
from wyoming_piper_stream.server.settings import LimitSettings, ServerSettings, SynthesisSettings
from wyoming_piper_stream.voices.settings import VoiceLibrarySettings

README = Path(__file__).resolve().parent.parent / "README.md"


def test_no_flags_give_the_settings_defaults() -> None:
    settings = parse_settings([])
    assert settings.synthesis == SynthesisSettings()
    assert settings.streamer == StreamingSettings()
    assert settings.limits == LimitSettings()
    assert settings.voices == VoiceLibrarySettings()
    assert settings.uri == ServerSettings().uri
    assert settings.preload and settings.streaming and not settings.debug


def test_every_flag_shows_its_default_in_help() -> None:
    for action in build_parser()._actions:
        if action.dest not in ("help", "version"):
            assert action.help and "(default: " in action.help, action.option_strings


def test_readme_flag_table_is_the_parsers() -> None:
    assert markdown_table() in README.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "argv",
    [
        ["--chunk-size", "0"],
        ["--first-chunk-size", "-3"],
        ["--chunk-size", "8", "--first-chunk-size", "16"],
        ["--max-connections", "0"],
        ["--idle-timeout", "0"],
        ["--samples-per-chunk", "0"],
        ["--max-utterance-phonemes", "-1"],
        ["--length-scale", "0"],
        ["--noise-scale", "-0.5"],
        ["--threads", "x"],
    ],
)
def test_out_of_range_flags_are_refused_with_one_message(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_settings(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("wyoming-piper-stream: error: ")
    assert argv[0] in error


def test_flags_reach_the_settings() -> None:
    settings = parse_settings(
        [
            "--no-streaming",
            "--fixed-chunks",
            "--no-cache",
            "--max-concurrent",
            "2",
            "--noise-w",
            "0.3",
        ]
    )
    assert not settings.streaming
    assert not settings.streamer.adaptive
    assert settings.voices.cache_dir is None
    assert settings.limits.max_concurrent_synthesis == 2
    assert settings.synthesis.noise_w_scale == 0.3
