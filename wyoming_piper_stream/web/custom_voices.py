"""The voices table of the page, and custom voices: upload (checked, atomic) and delete.

Uploaded voices are stock Piper voices (``NAME.onnx`` + ``NAME.onnx.json``) written to
the upload dir. Each file is streamed to a hidden temp file beside its destination
(never a name the voice scan picks up), checked, then renamed into place: config first,
model last, so the voice appears whole at the next describe or not at all.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from wyoming_piper_stream.engine.voice_config import VoiceError, VoiceFiles
from wyoming_piper_stream.voices.check import check_stock_voice
from wyoming_piper_stream.voices.files import embedded_voice_files
from wyoming_piper_stream.voices.library import VoiceLibrary

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
"""A voice name is one plain path component: no separators, no leading dot."""
_LAYOUT_SUFFIXES = (".encoder", ".decoder", ".flow")
"""Names ending so would be read as parts of a split voice."""


class UploadError(ValueError):
    """An upload or delete we refuse, with a message for the user and an HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class VoiceRow:
    """One line of the voices table."""

    name: str
    language: str
    quality: str
    speakers: list[str]
    size_bytes: int
    source: str
    """``embedded``, ``custom`` (uploaded, deletable) or ``data dir``."""
    loaded: bool
    default: bool

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _files_of(files: VoiceFiles) -> list[Path]:
    paths = [files.config, files.model, files.encoder, files.decoder, files.flow]
    return [path for path in paths if path is not None]


def _size(files: VoiceFiles) -> int:
    return sum(path.stat().st_size for path in _files_of(files) if path.is_file())


def _is_custom(files: VoiceFiles, upload_dir: Path | None) -> bool:
    if upload_dir is None or files.model is None:
        return False
    folder = upload_dir.resolve()
    return all(path.resolve().parent == folder for path in _files_of(files))


def voice_rows(library: VoiceLibrary, upload_dir: Path | None) -> list[VoiceRow]:
    """Every voice the server offers, with what the page shows about it."""
    loaded = set(library.loaded_names())
    rows = []
    for name, files in sorted(library.find().items()):
        try:
            config = library.config(files)
        except VoiceError:
            continue  # describe skips it too (and logs why)
        speakers = list(config.speaker_id_map) or (
            [str(i) for i in range(config.num_speakers)] if config.num_speakers > 1 else []
        )
        if _is_custom(files, upload_dir):
            source = "custom"
        elif files == embedded_voice_files():
            source = "embedded"
        else:
            source = "data dir"
        rows.append(
            VoiceRow(
                name=name,
                language=config.language or config.espeak_voice,
                quality=config.quality,
                speakers=speakers,
                size_bytes=_size(files),
                source=source,
                loaded=name in loaded,
                default=name == library.default_voice_name,
            )
        )
    return rows


def voice_name_of(filename: str) -> str:
    """The voice name an uploaded ``.onnx`` file gives, or UploadError."""
    base = Path(filename.replace("\\", "/")).name
    if not base.endswith(".onnx"):
        raise UploadError("the model file must end in .onnx")
    name = base.removesuffix(".onnx")
    if not SAFE_NAME.fullmatch(name) or name.endswith(_LAYOUT_SUFFIXES):
        raise UploadError(
            f"invalid voice name {name!r}: use letters, digits, '.', '-' and '_' "
            "(at most 100), not ending in .encoder, .decoder or .flow"
        )
    return name


def temp_path(upload_dir: Path) -> Path:
    """A hidden file in the upload dir that the voice scan ignores."""
    return upload_dir / f".upload-{secrets.token_hex(8)}.part"


def install_voice(
    library: VoiceLibrary, upload_dir: Path, name: str, model: Path, config: Path
) -> None:
    """Check the uploaded temp files and move them into place (runs in a worker thread).

    On any error the temp files are removed and UploadError says why.
    """
    try:
        if name in library.find():
            raise UploadError(f"a voice named {name!r} exists already: delete it first", 409)
        try:
            check_stock_voice(model, config)
        except VoiceError as error:
            raise UploadError(f"not a usable Piper voice: {error}") from error
        os.replace(config, upload_dir / f"{name}.onnx.json")
        os.replace(model, upload_dir / f"{name}.onnx")
    finally:
        for path in (model, config):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def delete_voice(library: VoiceLibrary, upload_dir: Path | None, name: str) -> None:
    """Remove an uploaded voice; built-in ones (embedded, other folders) stay."""
    files = library.find().get(name)
    if files is None:
        raise UploadError(f"no voice named {name!r}", status=404)
    if not _is_custom(files, upload_dir):
        raise UploadError(f"{name} is built in, not an uploaded voice: it cannot be deleted", 403)
    if name == library.default_voice_name:
        raise UploadError(f"{name} is the default voice (--voice): it cannot be deleted", 403)
    # Model first: without it the scan no longer sees the voice.
    for path in sorted(_files_of(files), key=lambda p: p == files.config):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    library.forget(name)
