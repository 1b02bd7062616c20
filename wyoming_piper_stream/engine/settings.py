"""How the latent is cut into chunks and post-processed."""

from __future__ import annotations

from dataclasses import dataclass

from wyoming_piper_stream.engine.pacing import ChunkSchedule, Pacing, PlannedPacing
from wyoming_piper_stream.engine.settings_field import setting
from wyoming_piper_stream.engine.voice_config import VoiceConfig

CONTEXT_PHONEMES = 128
"""Phonemes of context each side of a clause piece (``clauses``; whole words, up to this).

Measured on joe, noise off (``script/bench-audio``, long sentences cut at 200
phonemes): with 64 the cut sentence was up to 1.1% longer than uncut, 0.9 dB
louder, and a comma pause 75 ms short; with 128, 0.8%, 0.3 dB and 35 ms; with
the whole sentence, identical. The encoder (what the first audio waits for)
then sees the first piece plus up to 128 phonemes after it."""


@dataclass(frozen=True)
class StreamingSettings:
    """How the latent is cut into chunks and post-processed."""

    first_chunk: int = setting(
        16, "first decoder chunk; later ones are planned from measured step costs", minimum=1
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
        True,
        "plan the whole reply from measured step costs: first audio held back just enough "
        "on a slow device, chunks as large as arrive in time (see pacing)",
    )
    separate_flow: bool = setting(
        True,
        "run the flow chunk by chunk too (stock voices): the encoder, which the first audio "
        "waits for, then ends at the prior sample",
    )
    clause_context: int = setting(
        CONTEXT_PHONEMES,
        "phonemes of the sentence each side of a clause piece in the encoder (0 = pieces alone)",
        minimum=0,
    )

    def pacing(self, config: VoiceConfig) -> Pacing:
        """The one pacing of the server and the stream CLI for a voice."""
        largest = self.chunk_size
        first = min(self.first_chunk, largest)  # a larger first chunk would make chunk_size a lie
        if not self.adaptive:
            return ChunkSchedule(first, largest)
        return PlannedPacing(first, largest, config.hop_length / config.sample_rate)
