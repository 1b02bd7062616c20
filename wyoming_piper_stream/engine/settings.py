"""How the latent is cut into chunks and post-processed."""

from __future__ import annotations

from dataclasses import dataclass


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
