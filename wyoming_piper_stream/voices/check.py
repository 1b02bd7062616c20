"""Is a stock voice usable? Its config parses and our splitter accepts its graph.

Used on uploads before they are moved into place (heavy: imports onnx).
"""

from __future__ import annotations

from pathlib import Path

from wyoming_piper_stream.engine.voice_config import VoiceConfig, VoiceError


def check_stock_voice(model: Path, config: Path) -> VoiceConfig:
    """The voice's config; raises VoiceError saying what is wrong with either file."""
    try:
        voice_config = VoiceConfig.from_file(config)
    except VoiceError as error:
        raise VoiceError(f"the config is not a Piper voice config ({error.__cause__})") from error
    if not voice_config.phoneme_id_map:
        raise VoiceError("the config has an empty phoneme_id_map")
    import onnx  # heavy: only when a voice is checked
    from google.protobuf.message import DecodeError

    from wyoming_piper_stream.engine.graph_names import SplitError
    from wyoming_piper_stream.engine.graph_split import split_model

    try:
        graph = onnx.load(str(model))
    except (DecodeError, ValueError, OSError) as error:
        raise VoiceError(f"the model is not an ONNX file ({error})") from error
    try:
        split_model(graph)
    except SplitError as error:
        raise VoiceError(f"the model is not a Piper VITS voice: {error}") from error
    return voice_config
