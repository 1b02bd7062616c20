"""The server's settings, built once from the command line and passed down frozen."""

from __future__ import annotations

from dataclasses import dataclass, field

from wyoming_piper_stream.engine.settings import StreamingSettings
from wyoming_piper_stream.voices.settings import VoiceLibrarySettings

DEFAULT_AUTO_PUNCTUATION = ".?!。？！．؟"
DEFAULT_MAX_UTTERANCE_PHONEMES = 200  # ~40 words, ~5 s of speech


@dataclass(frozen=True)
class SynthesisSettings:
    """How text becomes speech; ``None`` means "the voice's own default"."""

    speaker: str | None = None
    """Speaker (name or id) of the default voice."""

    noise_scale: float | None = None
    length_scale: float | None = None
    noise_w_scale: float | None = None

    sentence_silence: float = 0.0
    """Seconds of silence after each sentence."""

    auto_punctuation: str = DEFAULT_AUTO_PUNCTUATION
    """A sentence not ending in one of these gets the first one appended."""

    samples_per_chunk: int = 1024
    """Largest number of samples in one audio-chunk event."""

    max_utterance_phonemes: int = DEFAULT_MAX_UTTERANCE_PHONEMES
    """Longer sentences go through the encoder clause by clause (see ``clauses``);
    0 keeps every sentence whole, exactly as Piper speaks it."""


@dataclass(frozen=True)
class LimitSettings:
    """Bounds that keep one client from starving the others."""

    max_concurrent_synthesis: int = 1
    """Synthesis steps (an encoder run, a chunk) run at once; the rest wait their
    turn, most urgent first (see ``scheduler``)."""

    max_text_chars: int = 10_000
    """Longest text of one request or one stream."""

    max_connections: int = 32
    """Open connections at once; more are told the server is busy."""

    idle_timeout: float = 300.0
    """Seconds a connection may stay silent (no job running) before it is closed."""

    write_timeout: float = 30.0
    """Seconds a client may leave our audio unread before it is dropped."""


@dataclass(frozen=True)
class ServerSettings:
    """Everything the server needs, from the command line."""

    uri: str = "stdio://"
    zeroconf_name: str | None = None
    streaming: bool = True
    synthesis: SynthesisSettings = field(default_factory=SynthesisSettings)
    streamer: StreamingSettings = field(default_factory=StreamingSettings)
    voices: VoiceLibrarySettings = field(default_factory=VoiceLibrarySettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
