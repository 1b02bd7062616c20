"""Piper voices as ONNX graphs: encoder (ids -> prior), flow (prior -> latent) and
decoder (latent -> audio), run as the branches of one session (``graph_merge``).

A voice comes in one of four layouts, all with a Piper JSON config:
- stock: ``X.onnx`` + ``X.onnx.json``, split in memory at load;
- split by us: ``X.encoder.onnx`` + ``X.decoder.onnx`` (+ ``X.flow.onnx``) + ``X.onnx.json``;
- Piper's training export: ``encoder.onnx`` + ``decoder.onnx`` + a config in one folder
  (its decoder also holds the flow, and takes ``y_mask``);
- our cache's: one merged model of the split graphs.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import onnxruntime as ort

from wyoming_piper_stream.engine.graph_names import (
    BRANCHES_KEY,
    DECODER_BRANCH,
    DURATIONS_NAME,
    ENCODER_BRANCH,
    FLOW_BRANCH,
    LATENT_NAME,
    MASK_NAME,
    PRIOR_NAME,
    SPAN_NAME,
    SPEAKER_EMBEDDING_NAME,
    TRIM_NAME,
    TRIMMED_LAYERS_KEY,
    branch_flag,
    branch_tensor,
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


SPIN_MICROSECONDS = "2000"
"""How long an idle worker of a voice's pool spins before it sleeps: across the gaps
between operators and between a job's steps. onnxruntime's default kept a core busy
for 60-70 ms after each run, taken from the event loop, the next client and other
programs on the device. Joe on 2 cores, in one process, 0.2 s between jobs: total time
with 2 ms 163/597/2414/976/2112 ms, with the default 192/609/2264/986/2068 ms (5w,
25w, 80w, 3 sentences, 20 short); 7 ms of CPU after a job, against 63."""


def _session(
    model: bytes | str, settings: SessionSettings, spinning: bool = False
) -> ort.InferenceSession:
    options = ort.SessionOptions()
    # The graphs are sequential chains: parallel branches gain nothing.
    options.inter_op_num_threads = 1
    cores = usable_cores()
    if spinning and cores > 1:
        # A voice's one session (``graph_merge``): its pool may spin between
        # operators, as no other pool of the voice waits beside it. Sized by the
        # cores we may run on: a worker spinning on the core of the thread it
        # waits for would only slow it.
        options.intra_op_num_threads = settings.threads or cores
        options.add_session_config_entry("session.intra_op.spin_duration_us", SPIN_MICROSECONDS)
    else:
        # 0 = one intra-op thread per core of the machine. Measured on 2 cores (joe,
        # 823 frames): 2 threads beat 1 for every graph and size, small chunks
        # included (decoder, 26 frames: 21 vs 43 ms; encoder 176 vs 304 ms; flow,
        # 56 frames: 15 vs 27 ms), even with another process busy on one core. On
        # one core shared with busy programs (``script/bench --slow 5``), one
        # thread got a smaller share of it: 80 words took 24.0 s, two 15.4 s.
        options.intra_op_num_threads = settings.threads
        # Sessions of their own: an idle spinning pool steals the cores of the one
        # that runs (2 cores, three per voice: total time 866 -> 579 ms on a
        # 5-word sentence, 4864 -> 4577 ms on 80 words). One core: a spinning
        # worker would steal it from the thread it waits for.
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


def save_optimized(model: bytes, path: Path) -> None:
    """Write ``model`` as onnxruntime's basic optimizations leave it, for a faster load.

    Loading optimizes a model again, and the merged voice's branches take longer than
    three graphs (joe, 2 cores: 1.11 s against 0.82 s); the saved basic pass (constant
    folding, eliminations: standard operators only, so any machine and provider can
    load it) brings the load to 0.65 s, with the same graphs after it.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(path)
    options.intra_op_num_threads = 1
    ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


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


class Graph(Protocol):
    """One of a voice's graphs as the voice runs it: a session, or a branch of one."""

    @property
    def inputs(self) -> frozenset[str]: ...

    @property
    def outputs(self) -> tuple[str, ...]: ...

    @property
    def metadata(self) -> Mapping[str, str]: ...

    def run(self, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]: ...


class SessionGraph:
    """A graph with a session of its own."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self._session = session
        self.inputs = frozenset(arg.name for arg in session.get_inputs())
        self.outputs = tuple(arg.name for arg in session.get_outputs())
        self.metadata: Mapping[str, str] = dict(session.get_modelmeta().custom_metadata_map)

    def run(self, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return cast(list[np.ndarray], self._session.run(None, dict(feed)))


class BranchGraph:
    """A graph that is one branch of the voice's single session (``graph_merge``)."""

    def __init__(
        self, session: ort.InferenceSession, name: str, listing: Mapping[str, Any]
    ) -> None:
        self._session = session
        self._name = name
        self.inputs = frozenset(listing[name]["inputs"])
        self.outputs = tuple(listing[name]["outputs"])
        self.metadata: Mapping[str, str] = dict(listing[name]["metadata"])
        self._fetch = [branch_tensor(name, output) for output in self.outputs]
        own = {branch_tensor(name, tensor) for tensor in self.inputs}
        flags = {branch_flag(other) for other in list(listing)[:-1]}
        # Every input of the model must be fed: the other branches' get placeholders,
        # which only the branch not chosen would read.
        self._idle = {
            arg.name: _placeholder(arg)
            for arg in session.get_inputs()
            if arg.name not in own and arg.name not in flags
        }
        self._idle.update({flag: np.array(flag == branch_flag(name)) for flag in flags})

    def run(self, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        full = dict(self._idle)
        full.update((branch_tensor(self._name, key), value) for key, value in feed.items())
        return cast(list[np.ndarray], self._session.run(self._fetch, full))


_NUMPY_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}


def _placeholder(arg: ort.NodeArg) -> np.ndarray:
    """A smallest tensor of the input's type and rank."""
    shape = [dim if isinstance(dim, int) and dim > 0 else 1 for dim in arg.shape]
    return np.zeros(shape, dtype=_NUMPY_TYPES.get(arg.type, np.float32))


def branch_graphs(session: ort.InferenceSession) -> dict[str, BranchGraph]:
    """The branches of a merged voice model's session, by name."""
    metadata = session.get_modelmeta().custom_metadata_map
    if BRANCHES_KEY not in metadata:
        raise VoiceError("not a merged voice model (no list of branches)")
    listing: dict[str, Any] = json.loads(metadata[BRANCHES_KEY])
    return {name: BranchGraph(session, name, listing) for name in listing}


class Voice:
    """A loaded voice: config plus its encoder, decoder and flow graphs (thread-safe to run)."""

    def __init__(
        self,
        name: str,
        config: VoiceConfig,
        encoder: Graph,
        decoder: Graph,
        flow: Graph | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.encoder = encoder
        self.decoder = decoder
        self.flow = flow
        self._encoder_inputs = encoder.inputs
        self._encoder_outputs = encoder.outputs
        self._decoder_inputs = decoder.inputs
        self.flow_trimmed_layers = 0
        """Flow layers that drop ``run_flow``'s ``trim`` (0: the flow takes none)."""
        if flow is not None and TRIM_NAME in flow.inputs:
            self.flow_trimmed_layers = int(flow.metadata.get(TRIMMED_LAYERS_KEY, "0"))

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
        outputs = dict(zip(self._encoder_outputs, self.encoder.run(feed), strict=True))
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
        z = self.flow.run(feed)[0]
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
        audio: np.ndarray = self.decoder.run(feed)[0].reshape(-1)
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
    """Load a voice from its files into one session where its graphs allow.

    Our cache's merged model loads as it is (without onnx, 14 MB); a stock voice is
    split, and graphs in files of their own are merged, in memory.
    """
    settings = settings or SessionSettings()
    config = VoiceConfig.from_file(files.config)
    _new_shared_arena()
    try:
        if files.graphs is not None:
            graphs: Mapping[str, Graph] = branch_graphs(
                _session(str(files.graphs), settings, spinning=True)
            )
        elif files.model is not None or (files.encoder and files.decoder):
            graphs = _graphs_in_memory(files, settings, separate_flow)
        else:
            raise VoiceError(f"voice {files.name}: no model files")
    except VoiceError:
        raise
    except Exception as error:  # onnx/onnxruntime raise many types for a bad file
        raise VoiceError(f"cannot load voice {files.name}: {error}") from error
    return Voice(
        files.name, config, graphs[ENCODER_BRANCH], graphs[DECODER_BRANCH], graphs.get(FLOW_BRANCH)
    )


def _graphs_in_memory(
    files: VoiceFiles, settings: SessionSettings, separate_flow: bool
) -> Mapping[str, Graph]:
    from wyoming_piper_stream.engine.graph_merge import MergeError, merge_graphs, voice_models

    models = voice_models(files, separate_flow)
    try:
        merged = merge_graphs(models)
    except MergeError as error:
        _LOGGER.info("Voice %s: a session per graph (%s)", files.name, error)
        return {
            name: SessionGraph(_session(model.SerializeToString(), settings))
            for name, model in models
        }
    return branch_graphs(_session(merged.SerializeToString(), settings, spinning=True))
