"""Settings, built once from the command line and passed down as frozen dataclasses."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_AUTO_PUNCTUATION = ".?!。？！．؟"
DEFAULT_MAX_UTTERANCE_PHONEMES = 200  # ~40 words, ~5 s of speech


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "wyoming-piper-stream"


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
class StreamingSettings:
    """How the latent is cut into chunks and post-processed."""

    first_chunk: int = 16
    """Frames in the first chunk: small, so the first audio comes early."""

    chunk_size: int = 128
    """Largest chunk in frames: chunks grow to this to cut padding overhead."""

    chunk_padding: int | None = None
    """Context frames each side; ``None`` measures the voice's receptive field."""

    denoiser_strength: float = 0.0
    """0 turns the bias denoiser off (bit-identical output)."""

    adaptive: bool = True
    """Size chunks by measured decode speed so playback never runs dry (see ``pacing``)."""

    separate_flow: bool = True
    """Run the flow chunk by chunk too (stock voices): the encoder, which the
    first audio waits for, then ends at the prior sample."""


@dataclass(frozen=True)
class VoiceLibrarySettings:
    """Where voices come from and how many stay loaded."""

    default_voice: str | None = None
    """Voice used when a request names none; ``None``: the embedded voice."""

    data_dirs: tuple[Path, ...] = ()
    download_dir: Path | None = None
    catalogue_url: str | None = None
    update_voices: bool = False

    max_voices: int = 2
    """Voices kept loaded at once (least recently used is dropped)."""

    threads: int = 0
    """onnxruntime intra-op threads per graph; 0: one per core."""

    use_cuda: bool = False
    cache_dir: Path | None = None
    """Where split graphs and voice measurements are kept; ``None``: no cache."""

    phonemizer: str | None = None
    """``module:attribute`` or entry-point name of a phonemizer; ``None``: espeak-ng."""


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
    synthesis: SynthesisSettings = SynthesisSettings()
    streamer: StreamingSettings = StreamingSettings()
    voices: VoiceLibrarySettings = VoiceLibrarySettings()
    limits: LimitSettings = LimitSettings()
