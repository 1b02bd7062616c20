"""The server's settings, built once from the command line and passed down frozen."""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from wyoming_piper_stream.engine.settings import StreamingSettings
from wyoming_piper_stream.engine.settings_field import setting
from wyoming_piper_stream.voices.settings import VoiceLibrarySettings


@dataclass(frozen=True)
class SynthesisSettings:
    """How text becomes speech; ``None`` means "the voice's own default"."""

    speaker: str | None = setting(None, "speaker name or id of the default voice", shown="first")
    noise_scale: float | None = setting(None, "generator noise", minimum=0.0, shown="the voice's")
    length_scale: float | None = setting(
        None, "phoneme length (speaking slower above 1)", minimum=0.01, shown="the voice's"
    )
    noise_w_scale: float | None = setting(
        None, "phoneme width noise", minimum=0.0, shown="the voice's"
    )
    sentence_silence: float = setting(0.0, "seconds of silence between sentences", minimum=0.0)
    auto_punctuation: str = setting(
        ".?!。？！．؟", "appended to a sentence lacking one (`。` after Chinese or Japanese)"
    )
    samples_per_chunk: int = setting(1024, "largest audio-chunk event, in samples", minimum=1)
    max_utterance_phonemes: int = setting(
        200,  # ~40 words, ~5 s of speech
        "longer sentences go through the encoder clause by clause (0 = never, as Piper)",
        minimum=0,
    )


class ClauseMode(enum.StrEnum):
    """``--clause-streaming``."""

    AUTO = "auto"
    """Speak a clause early only when the player would otherwise fall silent."""
    OFF = "off"
    """Whole sentences only (as before clause streaming)."""
    ALWAYS = "always"
    """Speak every complete clause as soon as it is complete."""


@dataclass(frozen=True)
class ClauseSettings:
    """Clause streaming of streamed text: when a clause is spoken before its sentence ends
    (``clause_policy``)."""

    clause_streaming: ClauseMode = setting(
        ClauseMode.AUTO,
        "speak a clause of streamed text before its sentence ends: auto (when the player "
        "would fall silent), off, always",
    )
    clause_min_words: int = setting(
        4,
        "shortest part of a sentence spoken early (~1.3 s of speech, which covers the "
        "synthesis of the next part many times)",
        minimum=1,
    )
    clause_max_words: int = setting(
        12,
        "words without clause punctuation before a last-resort cut between words (they "
        "arrive in 1.5 s at 8 words/s; their ~4 s of speech covers 16 more words at 4/s)",
        minimum=1,
    )
    clause_fast_rate: float = setting(
        30.0, "text at this many words/s or faster is never cut early", minimum=0.0
    )
    clause_rest_words: float = setting(
        3.0,
        "words a sentence is assumed to still need: a clause is spoken once the buffered "
        "audio would run out before they arrive",
        minimum=0.0,
    )


@dataclass(frozen=True)
class LimitSettings:
    """Bounds that keep one client from starving the others."""

    max_concurrent_synthesis: int = setting(
        1,
        "synthesis steps run at once (each already uses every core); jobs take turns, "
        "most urgent first",
        minimum=1,
    )
    max_text_chars: int = setting(10_000, "longest text per request or stream", minimum=1)
    max_connections: int = setting(
        32, "open connections at once; more are told the server is busy", minimum=1
    )
    idle_timeout: float = setting(
        300.0, "seconds before a silent connection is closed", minimum=0.1
    )
    write_timeout: float = setting(
        30.0, "seconds a client may leave our audio unread before it is dropped", minimum=0.1
    )


@dataclass(frozen=True)
class ServerSettings:
    """Everything the server needs, from the command line."""

    uri: str = setting("stdio://", "`tcp://HOST:PORT`, `unix://PATH` or `stdio://`")
    zeroconf_name: str | None = setting(None, "announce over zeroconf [as NAME]", shown="off")
    streaming: bool = setting(True, "accept streamed text (synthesize-start/chunk/stop)")
    preload: bool = setting(True, "load the default voice at start instead of on first use")
    debug: bool = setting(False, "log DEBUG messages")
    log_format: str = setting(logging.BASIC_FORMAT, "format of log messages")
    synthesis: SynthesisSettings = setting(default_factory=SynthesisSettings)
    streamer: StreamingSettings = setting(default_factory=StreamingSettings)
    voices: VoiceLibrarySettings = setting(default_factory=VoiceLibrarySettings)
    limits: LimitSettings = setting(default_factory=LimitSettings)
    clauses: ClauseSettings = setting(default_factory=ClauseSettings)
