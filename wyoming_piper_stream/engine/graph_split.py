"""Split a stock Piper VITS graph into an encoder and a HiFi-GAN decoder.

The cut is found by graph structure, not by one export's tensor names: the
decoder starts at the Conv that feeds the first upsampling ConvTranspose
(HiFi-GAN's ``conv_pre``); its data input is the latent ``z * y_mask``. For
multi-speaker voices a second Conv (``cond``) adds the speaker embedding ``g``.

Usage: ``python -m wyoming_piper_stream.engine.graph_split VOICE.onnx [OUT_DIR]``
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import ModelProto, NodeProto
from onnx.utils import Extractor

from wyoming_piper_stream.engine.graph_names import (
    DURATIONS_NAME,
    LATENT_NAME,
    MASK_NAME,
    PRIOR_NAME,
    SPAN_NAME,
    SPEAKER_EMBEDDING_NAME,
    TRIM_NAME,
    TRIMMED_LAYERS_KEY,
    SplitError,
)

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitGraphs:
    """Encoder and decoder of one voice, ready for onnxruntime."""

    encoder: ModelProto
    """phoneme ids -> ``z`` [1, C, T] (already masked), ``g`` when multi-speaker, and
    ``durations`` [1, 1, ids]: the frames the duration predictor gives each id."""

    decoder: ModelProto
    """``z`` (and ``g``), ``span`` -> ``output``: the audio of the span's frames."""

    flow: ModelProto | None = None
    """With ``separate_flow``: ``z_p``, ``y_mask`` (and ``g``) -> ``z``; the encoder
    then ends at the prior sample ``z_p`` instead of ``z``."""


@dataclass(frozen=True)
class _Cut:
    latent: str
    speaker_embedding: str | None


@dataclass(frozen=True)
class _FlowCut:
    prior: str
    mask: str


def _producers(graph: onnx.GraphProto) -> dict[str, NodeProto]:
    return {out: node for node in graph.node for out in node.output}


def _depends_on(graph: onnx.GraphProto, source: str) -> set[str]:
    """All tensor names computed (transitively) from ``source``."""
    reached = {source}
    for node in graph.node:  # ONNX graphs are topologically sorted
        if any(name in reached for name in node.input):
            reached.update(node.output)
    return reached


def _find_cut(graph: onnx.GraphProto) -> _Cut:
    first_upsample = next((n for n in graph.node if n.op_type == "ConvTranspose"), None)
    if first_upsample is None:
        raise SplitError("no ConvTranspose: this is not a HiFi-GAN voice")

    producers = _producers(graph)
    from_phonemes = _depends_on(graph, graph.input[0].name)

    # Walk back from the first upsampling along data inputs until the Convs
    # that start HiFi-GAN: conv_pre (fed by the phoneme path) and cond (fed by g).
    frontier = [first_upsample.input[0]]
    conv_pre: NodeProto | None = None
    cond: NodeProto | None = None
    for _ in range(16):
        next_frontier: list[str] = []
        for name in frontier:
            node = producers.get(name)
            if node is None:
                continue
            if node.op_type == "Conv":
                if node.input[0] in from_phonemes:
                    conv_pre = conv_pre or node
                else:
                    cond = cond or node
            else:
                next_frontier.extend(i for i in node.input if i in producers)
        if conv_pre is not None:
            break
        frontier = next_frontier
    if conv_pre is None:
        raise SplitError("could not find the HiFi-GAN input convolution")

    speaker = cond.input[0] if cond is not None else None
    return _Cut(latent=conv_pre.input[0], speaker_embedding=speaker)


def _find_flow_cut(graph: onnx.GraphProto, latent: str) -> _FlowCut:
    """The flow's inputs: the prior sample ``z_p`` and the frame mask ``y_mask``.

    ``z_p = m_p + noise * exp(logs_p) * noise_scale`` is the Add after the last
    random-normal node (the earlier one is the duration predictor's noise);
    the latent is ``flow(z_p) * y_mask``.
    """
    random_nodes = [n for n in graph.node if n.op_type in ("RandomNormalLike", "RandomNormal")]
    if not random_nodes:
        raise SplitError("no prior sampling node: cannot separate the flow")
    consumers: dict[str, list[NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    frontier = [random_nodes[-1].output[0]]
    for _ in range(8):
        nodes = [n for name in frontier for n in consumers.get(name, [])]
        prior = next((n.output[0] for n in nodes if n.op_type == "Add"), None)
        if prior is not None:
            break
        frontier = [out for n in nodes for out in n.output]
    else:
        raise SplitError("could not find the prior sample z_p")
    masking = _producers(graph).get(latent)
    if masking is None or masking.op_type != "Mul":
        raise SplitError("the latent is not masked by y_mask")
    from_prior = _depends_on(graph, prior)
    masks = [name for name in masking.input if name not in from_prior]
    if len(masks) != 1:
        raise SplitError("could not tell y_mask from the flow output")
    return _FlowCut(prior=prior, mask=masks[0])


def _find_durations(graph: onnx.GraphProto) -> str | None:
    """The duration predictor's frames per id: ``w_ceil``, the Ceil whose cumulative
    sum builds the alignment path. None if the export lacks it (older voices still
    split, their clause pieces just cannot be cut at a frame)."""
    cumsum_inputs = {node.input[0] for node in graph.node if node.op_type == "CumSum"}
    ceils = [n.output[0] for n in graph.node if n.op_type == "Ceil"]
    ceils = [name for name in ceils if name in cumsum_inputs]
    return ceils[0] if len(ceils) == 1 else None


def _rename_tensors(model: ModelProto, renames: dict[str, str]) -> None:
    """Rename tensors throughout one graph, in one pass over its nodes."""
    graph = model.graph
    for node in graph.node:
        if any(name in renames for name in node.input):
            node.input[:] = [renames.get(name, name) for name in node.input]
        if any(name in renames for name in node.output):
            node.output[:] = [renames.get(name, name) for name in node.output]
    for value in [*graph.input, *graph.output]:
        value.name = renames.get(value.name, value.name)


LARGE_INITIALIZER_BYTES = 1024
"""Weights past this size go to shape inference as typed inputs, not as data."""


def _inferred_shapes(model: ModelProto) -> list[onnx.ValueInfoProto]:
    """The inferred type and shape of every tensor, for the extractor.

    Inference never needs the values of the large weights, only their shapes; it
    copies the model to C++ and back, so giving it the weights (tens of MB) costs
    most of the split's time. Small initializers (shape constants) stay data.
    """
    light = ModelProto()
    light.ir_version = model.ir_version
    light.opset_import.extend(model.opset_import)
    graph = light.graph
    graph.node.extend(model.graph.node)
    graph.input.extend(model.graph.input)
    graph.output.extend(model.graph.output)
    graph.value_info.extend(model.graph.value_info)
    declared = {value.name for value in model.graph.input}
    for weight in model.graph.initializer:
        if weight.ByteSize() <= LARGE_INITIALIZER_BYTES:
            graph.initializer.append(weight)
        elif weight.name not in declared:
            graph.input.append(
                onnx.helper.make_tensor_value_info(weight.name, weight.data_type, weight.dims)
            )
    return list(onnx.shape_inference.infer_shapes(light).graph.value_info)


def add_span_input(decoder: ModelProto) -> bool:
    """Give the decoder a ``span`` input: its stages after the first run only over
    those frames (``graph_names.SPAN_NAME``).

    A chunk's context frames are there for the decoder's receptive field, and
    nearly all of it is the first stage's (``conv_pre``, then the first upsampling
    and its resblocks; joe: 10 frames). The later stages, which cost most per
    frame, need about one frame of it. So the first stage's output is sliced
    before the second upsampling. Returns False, and leaves the graph as it is,
    when it has fewer than two upsamplings.
    """
    graph = decoder.graph
    upsamples = [n for n in graph.node if n.op_type == "ConvTranspose"]
    if len(upsamples) < 2:
        return False
    strides = next((a.ints for a in upsamples[0].attribute if a.name == "strides"), [1])
    stage_output = upsamples[1].input[0]
    sliced = f"{stage_output}/{SPAN_NAME}"
    own = f"{SPAN_NAME}/"
    stride = _constant(graph, own + "stride", strides[0])
    nodes = [
        onnx.helper.make_node("Mul", [SPAN_NAME, stride], [own + "samples"]),
        *_elements(graph, own + "samples", own + "start", own + "end"),
        # along time (axis 2), in the first stage's samples
        onnx.helper.make_node(
            "Slice", [stage_output, own + "start", own + "end", _number(graph, 2)], [sliced]
        ),
    ]
    for node in graph.node:
        node.input[:] = [sliced if name == stage_output else name for name in node.input]
    at = list(graph.node).index(upsamples[1])
    for offset, node in enumerate(nodes):
        graph.node.insert(at + offset, node)
    graph.input.append(onnx.helper.make_tensor_value_info(SPAN_NAME, onnx.TensorProto.INT64, [2]))
    return True


def add_trim_input(flow: ModelProto) -> int:
    """Give the separate flow a ``trim`` input (``graph_names.TRIM_NAME``); returns how
    many coupling layers drop it (0: the graph is left as it is).

    Each coupling layer reaches a few frames each side (joe: 7 of the flow's 30), so
    what a layer computes near the edges of a call's context is used by no later
    layer's kept frames. Dropping it after each layer but the last saves about a
    third of the context's work. The frame mask the layers multiply by is cut
    alike. A coupling layer ends in a channel Concat of its Split's halves.
    """
    graph = flow.graph
    halves = {name for node in graph.node if node.op_type == "Split" for name in node.output}
    ends = [n for n in graph.node if n.op_type == "Concat" and any(i in halves for i in n.input)]
    layers = len(ends) - 1
    if layers < 1:
        return 0
    cuts = _TimeCuts(graph)
    head = cuts.sides()
    for level in range(1, layers + 1):
        head += cuts.times(level)
        head += cuts.cut(MASK_NAME, level, f"{MASK_NAME}/{TRIM_NAME}{level}")
    _use_mask_of_level(graph, {end.output[0] for end in ends[:-1]})
    for end in ends[:-1]:
        output = end.output[0]
        trimmed = f"{output}/{TRIM_NAME}"
        for node in graph.node:
            node.input[:] = [trimmed if name == output else name for name in node.input]
        at = list(graph.node).index(end) + 1
        for offset, node in enumerate(cuts.cut(output, 1, trimmed)):
            graph.node.insert(at + offset, node)
    for offset, node in enumerate(head):
        graph.node.insert(offset, node)
    # Lengths inferred before the cuts are wrong after them (onnxruntime warns and
    # plans buffers by them).
    del graph.value_info[:]
    graph.input.append(onnx.helper.make_tensor_value_info(TRIM_NAME, onnx.TensorProto.INT64, [2]))
    onnx.helper.set_model_props(flow, {TRIMMED_LAYERS_KEY: str(layers)})
    return layers


def _use_mask_of_level(graph: onnx.GraphProto, trimmed: set[str]) -> None:
    """Nodes after ``k`` trimmed layer outputs take the mask cut ``k`` times."""
    level: dict[str, int] = {}
    for node in graph.node:
        here = max((level.get(name, 0) for name in node.input if name != MASK_NAME), default=0)
        for name in node.output:
            level[name] = here + 1 if name in trimmed else here
        if here and MASK_NAME in node.input:
            cut = f"{MASK_NAME}/{TRIM_NAME}{here}"
            node.input[:] = [cut if name == MASK_NAME else name for name in node.input]


def _constant(graph: onnx.GraphProto, name: str, value: int) -> str:
    """An int64 [1] initializer ``name`` (added once)."""
    if not any(weight.name == name for weight in graph.initializer):
        graph.initializer.append(
            onnx.helper.make_tensor(name, onnx.TensorProto.INT64, [1], [value])
        )
    return name


def _number(graph: onnx.GraphProto, value: int) -> str:
    """``value`` as an int64 [1] initializer, named apart from the export's tensors."""
    return _constant(graph, f"int64/{value}", value)


def _elements(graph: onnx.GraphProto, pair: str, first: str, second: str) -> list[NodeProto]:
    """Nodes giving the two elements of the 1-D ``pair`` as 1-element tensors."""
    zero, one, two = (_number(graph, value) for value in (0, 1, 2))
    return [
        onnx.helper.make_node("Slice", [pair, zero, one], [first]),
        onnx.helper.make_node("Slice", [pair, one, two], [second]),
    ]


class _TimeCuts:
    """Nodes that cut tensors along time by ``level`` times the ``trim`` input."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.graph = graph

    @staticmethod
    def frames(side: str, level: int) -> str:
        """The tensor of ``level`` times the trim on ``side`` (left, right)."""
        return f"{TRIM_NAME}/{side}{level}"

    def sides(self) -> list[NodeProto]:
        return _elements(self.graph, TRIM_NAME, self.frames("left", 1), self.frames("right", 1))

    def times(self, level: int) -> list[NodeProto]:
        if level == 1:
            return []
        factor = _number(self.graph, level)
        return [
            onnx.helper.make_node("Mul", [self.frames(side, 1), factor], [self.frames(side, level)])
            for side in ("left", "right")
        ]

    def cut(self, tensor: str, level: int, out: str) -> list[NodeProto]:
        """``out`` = ``tensor`` without ``level * trim`` frames each side."""
        make = onnx.helper.make_node
        two, three = (_number(self.graph, value) for value in (2, 3))
        return [
            make("Shape", [tensor], [f"{out}/shape"]),
            make("Slice", [f"{out}/shape", two, three], [f"{out}/frames"]),
            make("Sub", [f"{out}/frames", self.frames("right", level)], [f"{out}/end"]),
            make("Slice", [tensor, self.frames("left", level), f"{out}/end", two], [out]),
        ]


def split_model(model: ModelProto, separate_flow: bool = False) -> SplitGraphs:
    """Cut a stock single-graph voice into encoder and decoder (and flow) graphs."""
    graph = model.graph
    cut = _find_cut(graph)
    flow_cut = _find_flow_cut(graph, cut.latent) if separate_flow else None
    _LOGGER.debug(
        "Split at latent=%s speaker=%s flow=%s", cut.latent, cut.speaker_embedding, flow_cut
    )

    initializer_names = {i.name for i in graph.initializer}
    input_names = [i.name for i in graph.input if i.name not in initializer_names]
    speaker = [cut.speaker_embedding] if cut.speaker_embedding else []
    decoder_inputs = [cut.latent, *speaker]
    latent_outputs = [flow_cut.prior, flow_cut.mask, *speaker] if flow_cut else decoder_inputs
    durations = _find_durations(graph)
    encoder_outputs = [*latent_outputs, *([durations] if durations else [])]
    cuts = [(input_names, encoder_outputs), (decoder_inputs, [o.name for o in graph.output])]
    if flow_cut:
        cuts.append((latent_outputs, [cut.latent]))

    known = len(graph.value_info)
    graph.value_info.extend(_inferred_shapes(model))
    try:
        extractor = Extractor(model)
        parts = [extractor.extract_model(inputs, outputs) for inputs, outputs in cuts]
    finally:  # the caller's model is lent, not changed
        del graph.value_info[known:]
    renames = {cut.latent: LATENT_NAME}
    if cut.speaker_embedding:
        renames[cut.speaker_embedding] = SPEAKER_EMBEDDING_NAME
    if flow_cut:
        renames.update({flow_cut.prior: PRIOR_NAME, flow_cut.mask: MASK_NAME})
    if durations is not None:
        renames[durations] = DURATIONS_NAME
    for part in parts:
        _rename_tensors(part, renames)
        # Export metadata (opset imports, producer) must carry over for onnxruntime.
        part.ir_version = model.ir_version
    add_span_input(parts[1])
    if flow_cut:
        add_trim_input(parts[2])
    return SplitGraphs(*parts)


def split_path(voice_path: Path, separate_flow: bool = False) -> SplitGraphs:
    """``split_model`` of a stock voice file; a file that is not ONNX is a ``SplitError``."""
    try:
        model = onnx.load(str(voice_path))
    except DecodeError as error:  # protobuf's error for a file that is not ONNX at all
        raise SplitError(f"not an ONNX model ({error})") from error
    return split_model(model, separate_flow=separate_flow)


def split_file(
    voice_path: Path, out_dir: Path | None = None, separate_flow: bool = False
) -> list[Path]:
    """Write ``<stem>.encoder.onnx`` and ``<stem>.decoder.onnx`` (and the config).

    With ``separate_flow`` also ``<stem>.flow.onnx``, and the encoder ends at ``z_p``.
    Returns every file written.
    """
    out_dir = out_dir or voice_path.parent
    stem = voice_path.name.removesuffix(".onnx")
    graphs = split_path(voice_path, separate_flow)
    # Only now: a failed split leaves no empty output folder behind.
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = {"encoder": graphs.encoder, "decoder": graphs.decoder, "flow": graphs.flow}
    written = []
    for part, graph in parts.items():
        path = out_dir / f"{stem}.{part}.onnx"
        if graph is None:  # a flow left from an earlier split would be run twice
            path.unlink(missing_ok=True)
            continue
        onnx.save(graph, str(path))
        written.append(path)
    config = voice_path.with_name(voice_path.name + ".json")
    config_out = out_dir / config.name
    if config.exists() and config.resolve() != config_out.resolve():
        shutil.copyfile(config, config_out)
        written.append(config_out)
    return written
