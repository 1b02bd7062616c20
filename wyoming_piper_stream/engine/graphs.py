"""Piper voices as two ONNX sessions: encoder (ids -> latent) and decoder (latent -> audio).

A voice comes in one of three layouts, all with a Piper JSON config:
- stock: ``X.onnx`` + ``X.onnx.json``, split in memory at load;
- split by us: ``X.encoder.onnx`` + ``X.decoder.onnx`` + ``X.onnx.json``;
- Piper's training export: ``encoder.onnx`` + ``decoder.onnx`` + a config in one folder
  (its decoder also holds the flow, and takes ``y_mask``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from wyoming_piper_stream.engine.graph_names import (
    DURATIONS_NAME,
    LATENT_NAME,
    MASK_NAME,
    PRIOR_NAME,
    SPAN_NAME,
    SPEAKER_EMBEDDING_NAME,
    TRIM_NAME,
    TRIMMED_LAYERS_KEY,
)
from wyoming_piper_stream.engine.voice_config import VoiceConfig, VoiceError, VoiceFiles

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class SynthesisScales:
    """VITS sampling scales; the voice config gives the defaults."""

    noise_scale: float
    length_scale: float
    noise_w: float

    def as_array(self) -> np.ndarray:
        return np.array([self.noise_scale, self.length_scale, self.noise_w], dtype=np.float32)


@dataclass(frozen=True)
class Latent:
    """Encoder output for one utterance: frames along the last axis."""

    z: np.ndarray
    y_mask: np.ndarray
    g: np.ndarray | None = None
    durations: np.ndarray | None = None
    """Frames per phoneme id (the duration predictor's), when the encoder exposes them."""

    @property
    def num_frames(self) -> int:
        return int(self.z.shape[2])

    def frames(self, start: int, end: int) -> Latent:
        return Latent(self.z[:, :, start:end], self.y_mask[:, :, start:end], self.g)


@dataclass(frozen=True)
class SessionSettings:
    """How onnxruntime runs the graphs."""

    threads: int = 0
    """intra-op threads per session; 0 lets onnxruntime decide."""

    use_cuda: bool = False


def _providers(use_cuda: bool) -> list[str]:
    if not use_cuda:
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    _LOGGER.warning("CUDA requested but onnxruntime has no CUDA provider: using the CPU")
    return ["CPUExecutionProvider"]


def _session(model: bytes | str, settings: SessionSettings) -> ort.InferenceSession:
    options = ort.SessionOptions()
    # 0 = one intra-op thread per core. Measured on 2 cores (joe, 823 frames):
    # 2 threads beat 1 for every graph and size, small chunks included
    # (decoder, 26 frames: 21 vs 43 ms; encoder 176 vs 304 ms; flow, 56 frames:
    # 15 vs 27 ms), even with another process busy on one core.
    options.intra_op_num_threads = settings.threads
    # The graphs are sequential chains: parallel branches gain nothing.
    options.inter_op_num_threads = 1
    # A voice has three sessions, each with its own pool; spinning idle pools
    # steal the cores from the one that runs (measured on 2 cores: total time
    # 866 -> 579 ms on a 5-word sentence, 4864 -> 4577 ms on 80 words).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # No memory patterns: a pattern is one block per input shape, allocated beside
    # the first run's tensors, and nearly every run here has a new shape (chunk
    # sizes, utterance lengths), so the arenas grew with each (joe, the bench's
    # texts twice in one process: peak 350 -> 278 MB; the server after the bench's
    # requests, with lazy onnx: 300 -> 275 MB). Per-tensor allocation is as fast
    # (CPU time, interleaved: decoder 14.09 -> 13.98 s, encoder 5.21 -> 4.68 s) and
    # the output is the same to the bit.
    options.enable_mem_pattern = False
    # The voice's one arena (``_new_shared_arena``), not one per session.
    options.add_session_config_entry("session.use_env_allocators", "1")
    return ort.InferenceSession(
        model, sess_options=options, providers=_providers(settings.use_cuda)
    )


def _new_shared_arena() -> None:
    """The sessions created next share one new CPU arena (until the next call).

    An arena keeps the most its sessions ever held at once. Per session, the
    encoder's (80 MB on a long clause with its context), the decoder's and the
    flow's add up, though they never run at the same time; shared, the decoder
    and flow reuse the encoder's (joe, in one process: encoder on 817 ids, then
    decoder and flow chunks: 250 -> 198 MB; the server after the bench's requests:
    275 -> 220 MB), at the same CPU time per frame. Registering again replaces the
    environment's allocator for later sessions only: each voice gets its own.
    """
    memory = ort.OrtMemoryInfo(
        "Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT
    )
    ort.create_and_register_allocator(memory, ort.OrtArenaCfg({}))


class Voice:
    """A loaded voice: config plus encoder and decoder sessions (thread-safe to run)."""

    def __init__(
        self,
        name: str,
        config: VoiceConfig,
        encoder: ort.InferenceSession,
        decoder: ort.InferenceSession,
        flow: ort.InferenceSession | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.encoder = encoder
        self.decoder = decoder
        self.flow = flow
        self._encoder_inputs = {i.name for i in encoder.get_inputs()}
        self._encoder_outputs = [o.name for o in encoder.get_outputs()]
        self._decoder_inputs = {i.name for i in decoder.get_inputs()}
        self.flow_trimmed_layers = 0
        """Flow layers that drop ``run_flow``'s ``trim`` (0: the flow takes none)."""
        if flow is not None and TRIM_NAME in {i.name for i in flow.get_inputs()}:
            metadata = flow.get_modelmeta().custom_metadata_map
            self.flow_trimmed_layers = int(metadata.get(TRIMMED_LAYERS_KEY, "0"))

    @property
    def has_durations(self) -> bool:
        """The encoder gives frames per id (our split does; Piper's own export does not)."""
        return DURATIONS_NAME in self._encoder_outputs

    @property
    def is_multi_speaker(self) -> bool:
        # Judged by the session's inputs: a single-speaker export may carry a
        # constant ``sid`` initializer.
        return "sid" in self._encoder_inputs

    def default_scales(self) -> SynthesisScales:
        return self.scales()

    def scales(
        self,
        noise_scale: float | None = None,
        length_scale: float | None = None,
        noise_w: float | None = None,
    ) -> SynthesisScales:
        """Sampling scales; each ``None`` is the voice config's value."""
        config = self.config
        return SynthesisScales(
            config.noise_scale if noise_scale is None else noise_scale,
            config.length_scale if length_scale is None else length_scale,
            config.noise_w if noise_w is None else noise_w,
        )

    def speaker_id(self, speaker: str | int | None) -> int | None:
        """Speaker by name or id; None for the voice's first speaker."""
        if not self.is_multi_speaker:
            if speaker not in (None, "", 0, "0"):
                raise VoiceError(f"voice {self.name} has only one speaker, not {speaker!r}")
            return None
        if speaker is None or speaker == "":
            return self.config.default_speaker_id
        if isinstance(speaker, str) and speaker in self.config.speaker_id_map:
            return self.config.speaker_id_map[speaker]
        try:
            speaker_id = int(speaker)
        except (TypeError, ValueError):
            speaker_id = -1
        if 0 <= speaker_id < max(self.config.num_speakers, 1):
            return speaker_id
        names = ", ".join(self.config.speaker_id_map) or f"0..{self.config.num_speakers - 1}"
        raise VoiceError(f"voice {self.name} has no speaker {speaker!r} (has: {names})")

    def encode(
        self, phoneme_ids: Sequence[int], scales: SynthesisScales, speaker_id: int | None = None
    ) -> Latent:
        ids = np.array([phoneme_ids], dtype=np.int64)
        feed: dict[str, np.ndarray] = {
            "input": ids,
            "input_lengths": np.array([ids.shape[1]], dtype=np.int64),
            "scales": scales.as_array(),
        }
        if self.is_multi_speaker:
            feed["sid"] = np.array([speaker_id or 0], dtype=np.int64)
        outputs = dict(zip(self._encoder_outputs, self.encoder.run(None, feed), strict=True))
        z = outputs[PRIOR_NAME] if self.flow is not None else outputs[LATENT_NAME]
        y_mask = outputs.get(MASK_NAME)
        if y_mask is None:  # our split: z is already masked
            y_mask = np.ones((1, 1, z.shape[2]), dtype=z.dtype)
        durations = outputs.get(DURATIONS_NAME)
        return Latent(
            z=z,
            y_mask=y_mask,
            g=outputs.get(SPEAKER_EMBEDDING_NAME),
            durations=None if durations is None else durations.reshape(-1).astype(np.int64),
        )

    def run_flow(self, prior: Latent, trim: tuple[int, int] = (0, 0)) -> Latent:
        """The flow on a stretch of ``z_p``; identity when the decoder holds the flow.

        ``trim``: frames each ``flow_trimmed_layers`` layer drops left and right; the
        result then lacks that many frames times the layers on each side.
        """
        if self.flow is None:
            return prior
        feed = {PRIOR_NAME: prior.z, MASK_NAME: prior.y_mask}
        if prior.g is not None:
            feed[SPEAKER_EMBEDDING_NAME] = prior.g
        if self.flow_trimmed_layers:
            feed[TRIM_NAME] = np.array(trim, dtype=np.int64)
        elif trim != (0, 0):
            raise ValueError(f"voice {self.name}: the flow drops no frames")
        z = self.flow.run(None, feed)[0]
        layers = self.flow_trimmed_layers
        mask = prior.y_mask[:, :, layers * trim[0] : prior.num_frames - layers * trim[1]]
        return Latent(z, mask, prior.g)

    def synthesize_whole(
        self, phoneme_ids: Sequence[int], scales: SynthesisScales, speaker_id: int | None = None
    ) -> np.ndarray:
        """Audio of one utterance in one piece (no chunks), through every graph."""
        return self.decode(self.run_flow(self.encode(phoneme_ids, scales, speaker_id)))

    @property
    def decodes_spans(self) -> bool:
        """Only the first decoder stage runs over a span's context (our split does)."""
        return SPAN_NAME in self._decoder_inputs

    def decode(self, latent: Latent, span: tuple[int, int] | None = None) -> np.ndarray:
        """Audio (float, 1-D) of the latent's frames ``span`` (default: all of them).

        The frames outside the span are context. Their audio is not computed where
        the decoder ``decodes_spans``; that audio is then exact only at least
        ``stage_padding`` frames inside the span (see ``measure_stage_padding``).
        """
        start, end = span or (0, latent.num_frames)
        feed: dict[str, np.ndarray] = {LATENT_NAME: latent.z}
        if self.decodes_spans:
            feed[SPAN_NAME] = np.array([start, end], dtype=np.int64)
        if "y_mask" in self._decoder_inputs:
            feed["y_mask"] = latent.y_mask
        if SPEAKER_EMBEDDING_NAME in self._decoder_inputs:
            if latent.g is None:
                raise VoiceError(f"voice {self.name}: decoder needs a speaker embedding")
            feed[SPEAKER_EMBEDDING_NAME] = latent.g
        audio: np.ndarray = self.decoder.run(None, feed)[0].reshape(-1)
        if self.decodes_spans:
            return audio
        hop = self.config.hop_length
        return audio[start * hop : end * hop]

    def zero_latent(self, num_frames: int, speaker_id: int | None = None) -> Latent:
        """An all-zero latent (for the denoiser's bias), with the speaker's embedding."""
        ids = [self.config.phoneme_id_map.get("^", [1])[0]]
        template = self.encode(ids, self.default_scales(), speaker_id)
        channels = template.z.shape[1]
        return Latent(
            z=np.zeros((1, channels, num_frames), dtype=template.z.dtype),
            y_mask=np.ones((1, 1, num_frames), dtype=template.z.dtype),
            g=template.g,
        )


def load_voice(
    files: VoiceFiles, settings: SessionSettings | None = None, separate_flow: bool = False
) -> Voice:
    """Load a voice from its files; stock graphs are split in memory."""
    settings = settings or SessionSettings()
    config = VoiceConfig.from_file(files.config)
    flow = None
    _new_shared_arena()
    try:
        if files.model is not None:
            # Only to split: a split voice loads without onnx (14 MB).
            from wyoming_piper_stream.engine.graph_split import split_path

            graphs = split_path(files.model, separate_flow)
            encoder = _session(graphs.encoder.SerializeToString(), settings)
            decoder = _session(graphs.decoder.SerializeToString(), settings)
            if graphs.flow is not None:
                flow = _session(graphs.flow.SerializeToString(), settings)
        elif files.encoder is not None and files.decoder is not None:
            encoder = _session(str(files.encoder), settings)
            decoder = _session(str(files.decoder), settings)
            if files.flow is not None:
                flow = _session(str(files.flow), settings)
        else:
            raise VoiceError(f"voice {files.name}: no model files")
    except VoiceError:
        raise
    except Exception as error:  # onnx/onnxruntime raise many types for a bad file
        raise VoiceError(f"cannot load voice {files.name}: {error}") from error
    return Voice(files.name, config, encoder, decoder, flow)
