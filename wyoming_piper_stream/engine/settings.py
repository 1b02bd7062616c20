"""How the latent is cut into chunks and post-processed."""

from __future__ import annotations

from dataclasses import dataclass

from wyoming_piper_stream.engine.settings_field import setting


@dataclass(frozen=True)
class StreamingSettings:
    """How the latent is cut into chunks and post-processed."""

    first_chunk: int = setting(
        16, "first decoder chunk; later ones are sized to stay ahead of playback", minimum=1
    )
    chunk_size: int = setting(
        128, "largest decoder chunk, latent frames (1 frame = 256 samples)", minimum=1
    )
    chunk_padding: int | None = setting(
        None, "context frames each side of a chunk", minimum=0, shown="measured"
    )
    denoiser_strength: float = setting(
        0.0, "bias denoiser (0 = off, bit-identical output)", minimum=0.0
    )
    adaptive: bool = setting(
        True, "size chunks by measured decode speed so playback never runs dry (see pacing)"
    )
    separate_flow: bool = setting(
        True,
        "run the flow chunk by chunk too (stock voices): the encoder, which the first audio "
        "waits for, then ends at the prior sample",
    )
