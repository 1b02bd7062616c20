"""A voice's graphs as the branches of one model, so that one onnxruntime session runs them.

Each session has its own intra-op pool. Separate sessions per graph must let their
pools sleep between operators, or an idle pool spins on the cores the running one
needs; a sleeping pool pays a wake-up at every operator. One session has one pool,
which may spin (``graphs.SPIN_MICROSECONDS``). Joe on 2 cores, the server over TCP,
interleaved with the three sessions it replaces, 0.3 s between requests: total time
0.81-0.90x on 5 words to 20 short sentences, first audio 0.86-1.09x.

The model has one ``If`` per branch but the last: ``run_<branch>`` (bool) chooses it.
A branch's inputs and outputs are the graph's own, named ``<branch>/<name>``; an
``If`` needs the same outputs from each side, so each branch also gives a scalar
zero for every output of the others. Only the chosen branch runs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import onnx
from onnx import ModelProto, TensorProto, helper

from wyoming_piper_stream.engine.graph_names import (
    BRANCHES_KEY,
    DECODER_BRANCH,
    ENCODER_BRANCH,
    FLOW_BRANCH,
    branch_flag,
    branch_tensor,
)
from wyoming_piper_stream.engine.graph_split import split_path
from wyoming_piper_stream.engine.voice_config import VoiceFiles

_Named = TypeVar("_Named", onnx.ValueInfoProto, onnx.TensorProto)


class MergeError(ValueError):
    """The graphs cannot be one model (different opsets: their operators differ)."""


def merge_graphs(branches: Sequence[tuple[str, ModelProto]]) -> ModelProto:
    """One model running any of ``branches`` (name, graph), chosen per call.

    Its metadata (``BRANCHES_KEY``) lists each branch's inputs, outputs and metadata,
    so a loader routes calls without parsing the model.
    """
    if len({_opsets(model) for _, model in branches}) > 1:
        raise MergeError("the graphs use different opsets")
    outputs = [
        (branch_tensor(name, out.name), out.type.tensor_type.elem_type)
        for name, model in branches
        for out in model.graph.output
    ]
    inputs = [_renamed(name, value) for name, model in branches for value in _fed(model)]
    flags = [
        helper.make_tensor_value_info(branch_flag(name), TensorProto.BOOL, [])
        for name, _ in branches[:-1]
    ]
    bodies = [_body(name, model, outputs) for name, model in branches]
    graph = helper.make_graph(
        [_choice(branches, bodies, outputs)],
        "voice",
        flags + inputs,
        [helper.make_tensor_value_info(name, kind, None) for name, kind in outputs],
        initializer=[
            _renamed(name, tensor) for name, model in branches for tensor in model.graph.initializer
        ],
    )
    first = branches[0][1]
    merged = helper.make_model(graph, opset_imports=list(first.opset_import))
    merged.ir_version = max(model.ir_version for _, model in branches)
    helper.set_model_props(merged, {BRANCHES_KEY: json.dumps(_listing(branches))})
    return merged


def _fed(model: ModelProto) -> list[onnx.ValueInfoProto]:
    """The graph's inputs a caller feeds: older exports also list initializers as
    inputs (a single-speaker voice's constant ``sid``)."""
    constants = {tensor.name for tensor in model.graph.initializer}
    return [value for value in model.graph.input if value.name not in constants]


def _opsets(model: ModelProto) -> frozenset[tuple[str, int]]:
    return frozenset((entry.domain or "", entry.version) for entry in model.opset_import)


def _listing(branches: Sequence[tuple[str, ModelProto]]) -> dict[str, object]:
    return {
        name: {
            "inputs": [value.name for value in _fed(model)],
            "outputs": [value.name for value in model.graph.output],
            "metadata": {prop.key: prop.value for prop in model.metadata_props},
        }
        for name, model in branches
    }


def _renamed(branch: str, named: _Named) -> _Named:
    """A copy of a graph's input or initializer under the branch's name for it."""
    renamed = type(named)()
    renamed.CopyFrom(named)
    renamed.name = branch_tensor(branch, named.name)
    return renamed


def _body(branch: str, model: ModelProto, outputs: Sequence[tuple[str, int]]) -> onnx.GraphProto:
    """The branch's graph with every name prefixed (a subgraph shares the model's
    namespace), giving its own outputs and a zero for each of the others'."""
    graph = onnx.GraphProto()
    graph.CopyFrom(model.graph)

    def rename(name: str) -> str:
        return branch_tensor(branch, name) if name else name  # "" = an omitted input

    for node in graph.node:
        node.input[:] = [rename(name) for name in node.input]
        node.output[:] = [rename(name) for name in node.output]
        node.name = rename(node.name)
    for value in graph.value_info:
        value.name = rename(value.name)
    own = {branch_tensor(branch, value.name) for value in graph.output}
    zeros = [
        helper.make_node(
            "Constant", [], [_zero(branch, name)], value=helper.make_tensor("", kind, [], [0])
        )
        for name, kind in outputs
        if name not in own
    ]
    return helper.make_graph(
        [*graph.node, *zeros],
        f"{branch}_branch",
        [],
        [
            helper.make_tensor_value_info(name if name in own else _zero(branch, name), kind, None)
            for name, kind in outputs
        ],
        value_info=list(graph.value_info),
    )


def _zero(branch: str, output: str) -> str:
    return branch_tensor(branch, f"zero:{output}")


def _choice(
    branches: Sequence[tuple[str, ModelProto]],
    bodies: Sequence[onnx.GraphProto],
    outputs: Sequence[tuple[str, int]],
) -> onnx.NodeProto:
    """``If run_a: a, else if run_b: b, ... else: the last`` as nested ``If`` nodes."""
    names = [name for name, _ in outputs]
    choice_body = bodies[-1]
    for depth in range(len(branches) - 2, -1, -1):
        results = names if depth == 0 else [f"{name}@{depth}" for name in names]
        node = helper.make_node(
            "If",
            [branch_flag(branches[depth][0])],
            results,
            then_branch=bodies[depth],
            else_branch=choice_body,
        )
        if depth == 0:
            return node
        choice_body = helper.make_graph(
            [node],
            f"after_{branches[depth - 1][0]}",
            [],
            [
                helper.make_tensor_value_info(name, kind, None)
                for name, (_, kind) in zip(results, outputs, strict=True)
            ],
        )
    raise ValueError("a merged model needs at least two graphs")


def voice_models(files: VoiceFiles, separate_flow: bool) -> list[tuple[str, ModelProto]]:
    """The graphs of a stock voice (split) or of a pair (as they are), by branch name."""
    if files.model is not None:
        split = split_path(files.model, separate_flow)
        graphs = [split.encoder, split.flow, split.decoder]
    else:
        graphs = [_load(files.encoder), _load(files.flow), _load(files.decoder)]
    names = (ENCODER_BRANCH, FLOW_BRANCH, DECODER_BRANCH)
    return [(name, graph) for name, graph in zip(names, graphs, strict=True) if graph is not None]


def _load(path: Path | None) -> ModelProto | None:
    return None if path is None else onnx.load(str(path))
