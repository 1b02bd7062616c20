"""A voice's graphs as branches of one session speak exactly as in sessions of their own."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import FIXTURES, NOISE_OFF

from wyoming_piper_stream.engine.graph_merge import MergeError, merge_graphs, voice_models
from wyoming_piper_stream.engine.graphs import BranchGraph, SessionGraph, Voice, load_voice
from wyoming_piper_stream.engine.voice_config import VoiceConfig, VoiceFiles
from wyoming_piper_stream.voices.files import voice_files_at

IDS = list(range(1, 60))  # any ids in the tiny voices' map
PAIR = FIXTURES / "tiny-multi-presplit"

needs_fixtures = pytest.mark.skipif(
    not (FIXTURES / "tiny-multi.onnx").exists() or not (PAIR / "encoder.onnx").exists(),
    reason="fixture voices not built (script/make-fixture-voices)",
)


def _graph_kinds(voice: Voice) -> set[type]:
    graphs = [voice.encoder, voice.decoder, voice.flow]
    return {type(graph) for graph in graphs if graph is not None}


def _speech(voice: Voice, sid: int) -> np.ndarray:
    return voice.decode(voice.run_flow(voice.encode(IDS, NOISE_OFF, sid)))


@needs_fixtures
@pytest.mark.parametrize("separate_flow", [False, True], ids=["two-graphs", "three-graphs"])
def test_a_merged_model_on_disk_speaks_as_the_split_graphs(
    tmp_path: Path, separate_flow: bool
) -> None:
    stock = voice_files_at(FIXTURES / "tiny-multi.onnx")
    path = tmp_path / "voice.onnx"
    onnx.save(merge_graphs(voice_models(stock, separate_flow)), str(path))
    merged = load_voice(VoiceFiles("tiny", stock.config, graphs=path))
    assert _graph_kinds(merged) == {BranchGraph}
    assert (merged.flow is not None) == separate_flow
    reference = _separate_sessions(stock, separate_flow)
    for sid in range(3):
        assert np.array_equal(_speech(merged, sid), _speech(reference, sid))


def _separate_sessions(files: VoiceFiles, separate_flow: bool) -> Voice:
    """The voice with a session per graph, as before the merge (and as a fallback)."""
    from wyoming_piper_stream.engine.graphs import SessionSettings, _session

    graphs = {
        name: SessionGraph(_session(model.SerializeToString(), SessionSettings()))
        for name, model in voice_models(files, separate_flow)
    }
    config = VoiceConfig.from_file(files.config)
    return Voice("tiny", config, graphs["encoder"], graphs["decoder"], graphs.get("flow"))


@needs_fixtures
def test_a_pair_whose_opsets_differ_gets_a_session_per_graph(tmp_path: Path) -> None:
    """Operators differ between opsets, so such graphs cannot be one model's branches;
    the voice still loads, and speaks as the pair merged would."""
    pair = tmp_path / "pair"
    shutil.copytree(PAIR, pair)
    decoder = onnx.load(str(pair / "decoder.onnx"))
    decoder.opset_import[0].version += 1  # every operator here is the same in 16
    onnx.save(decoder, str(pair / "decoder.onnx"))
    with pytest.raises(MergeError, match="opsets"):
        merge_graphs(voice_models(voice_files_at(pair), False))

    separate = load_voice(voice_files_at(pair))
    merged = load_voice(voice_files_at(PAIR))
    assert _graph_kinds(separate) == {SessionGraph}
    assert _graph_kinds(merged) == {BranchGraph}
    for sid in range(3):
        assert np.array_equal(_speech(separate, sid), _speech(merged, sid))


@needs_fixtures
def test_an_initializer_listed_as_an_input_is_not_fed(tmp_path: Path) -> None:
    """Older exports list their constants among the inputs too (a single-speaker voice's
    ``sid``): merged, the voice stays single-speaker and speaks the same."""
    pair = tmp_path / "pair"
    shutil.copytree(FIXTURES / "tiny-single-presplit", pair)
    encoder = onnx.load(str(pair / "encoder.onnx"))
    (sid,) = [tensor for tensor in encoder.graph.initializer if tensor.name == "sid"]
    encoder.graph.input.append(
        onnx.helper.make_tensor_value_info("sid", sid.data_type, list(sid.dims))
    )
    onnx.save(encoder, str(pair / "encoder.onnx"))
    listed = load_voice(voice_files_at(pair))
    plain = load_voice(voice_files_at(FIXTURES / "tiny-single-presplit"))
    assert _graph_kinds(listed) == {BranchGraph}
    assert not listed.is_multi_speaker
    assert np.array_equal(_speech(listed, 0), _speech(plain, 0))
