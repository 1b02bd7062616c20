"""Stream Piper speech from phoneme ids: JSON lines in, raw 16-bit PCM out.

    python -m wyoming_piper_stream.stream_cli --voice X.onnx < ids.jsonl | aplay -r 22050 -f S16_LE

Each stdin line is ``{"phoneme_ids": [...], "speaker_id": n}`` (``speaker_id``
optional; ``"speaker": "name"`` also works). Audio is written to stdout as raw
little-endian 16-bit mono PCM at the voice's sample rate, flushed after every
chunk, so playback starts before the utterance is decoded.

A bad line is reported as one ``line N: skipped: ...`` line on stderr and the
next lines still play. Exit code: 0 if every line played, 1 if any line was
skipped (the audio of the others is still complete), 2 if the voice or the
arguments are unusable.

Differences from Piper's ``infer_onnx_streaming.py`` (which this reproduces):
padding is measured from the voice (its fixed 5 frames leave audible seams) and
cut off exactly on every chunk including the last; short utterances are played
(the seed returned from its generator: silence); one fixed gain instead of
per-chunk peak normalization (volume jumps); multi-speaker voices work (the seed
tested a numpy array's truth value); scales default to the voice config's.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, TextIO

from wyoming_piper_stream.engine.chunked_decoder import ChunkedDecoder
from wyoming_piper_stream.engine.graphs import SynthesisScales, Voice
from wyoming_piper_stream.engine.loudness import PcmStream
from wyoming_piper_stream.engine.settings import StreamingSettings
from wyoming_piper_stream.engine.voice_config import VoiceError, VoiceFiles
from wyoming_piper_stream.voices.builder import VoiceBuilder
from wyoming_piper_stream.voices.files import voice_files_at
from wyoming_piper_stream.voices.settings import VoiceLibrarySettings, default_cache_dir

_LOGGER = logging.getLogger(__name__)


EXIT_OK, EXIT_SKIPPED, EXIT_UNUSABLE = 0, 1, 2


class BadLine(ValueError):
    """An input line that cannot be spoken; the message says why."""


@dataclass(frozen=True)
class Utterance:
    phoneme_ids: list[int]
    speaker_id: int | None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not an id


def parse_line(line: bytes, voice: Voice) -> Utterance:
    """One JSON line -> an utterance the voice can speak, or ``BadLine``."""
    try:
        data = json.loads(line)
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
        raise BadLine(f"invalid JSON ({error})") from None
    if not isinstance(data, dict):
        raise BadLine('expected a JSON object like {"phoneme_ids": [1, 0, 2]}')
    ids = data.get("phoneme_ids")
    if not isinstance(ids, list) or not ids or not all(_is_int(i) for i in ids):
        raise BadLine("phoneme_ids must be a non-empty list of integers")
    # Negative ids would silently index the embedding from its end; ids past the
    # map are untrained rows (or crash onnxruntime past the table).
    highest = max(i for values in voice.config.phoneme_id_map.values() for i in values)
    if not all(0 <= i <= highest for i in ids):
        bad = next(i for i in ids if not 0 <= i <= highest)
        raise BadLine(f"phoneme id {bad} is outside this voice's range 0..{highest}")
    speaker = data.get("speaker_id", data.get("speaker"))
    if speaker is not None and not (_is_int(speaker) or isinstance(speaker, str)):
        raise BadLine("speaker_id must be an integer (or speaker a name)")
    try:
        return Utterance(ids, voice.speaker_id(speaker))
    except VoiceError as error:
        raise BadLine(str(error)) from None


def speak_lines(
    lines: Iterable[bytes],
    streamer: ChunkedDecoder,
    scales: SynthesisScales,
    gain: float,
    out: BinaryIO,
    err: TextIO,
) -> int:
    """Speak every line to ``out``; report bad ones on ``err``. Returns lines skipped."""
    skipped = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            utterance = parse_line(line, streamer.voice)
        except BadLine as error:
            print(f"line {number}: skipped: {error}", file=err, flush=True)
            skipped += 1
            continue
        pcm = PcmStream(gain, streamer.voice.config.sample_rate)  # one limiter per line
        held: list[bytes] = []  # the pacing holds the start until the rest can keep up
        for chunk in streamer.stream(utterance.phoneme_ids, scales, utterance.speaker_id):
            held.append(pcm.feed(chunk.audio))
            if not chunk.held:
                out.write(b"".join(held))
                out.flush()  # a listener hears each chunk as soon as it is released
                held.clear()
        held.append(pcm.end())
        out.write(b"".join(held))
        out.flush()
    return skipped


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, not {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, not {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m wyoming_piper_stream.stream_cli",
        description="Read JSON lines of phoneme ids on stdin, write raw 16-bit mono PCM "
        "to stdout, chunk by chunk.",
        epilog="Exit code: 0 all lines played, 1 some lines skipped (see stderr), "
        "2 unusable voice or arguments.",
    )
    model = parser.add_argument_group("voice (--voice, or --encoder with --decoder)")
    model.add_argument("--voice", type=Path, help="stock Piper voice X.onnx (split on the fly)")
    model.add_argument("--encoder", type=Path, help="encoder model (.onnx)")
    model.add_argument("--decoder", type=Path, help="decoder model (.onnx)")
    model.add_argument(
        "--config",
        type=Path,
        help="voice config (default: X.onnx.json beside the model, or config.json in the "
        "encoder's folder)",
    )
    parser.add_argument(
        "--sample-rate",
        type=int,
        help="expected rate (default: the config's); the audio is never resampled, "
        "a different value only warns",
    )
    parser.add_argument("--noise-scale", type=_non_negative_float, help="default: config's")
    parser.add_argument(
        "--noise-w-scale",
        "--noise-w",
        "--noise-scale-w",  # the seed's name
        dest="noise_w_scale",
        type=_non_negative_float,
        help="phoneme width noise (default: config's)",
    )
    parser.add_argument("--length-scale", type=_positive_float, help="default: config's")
    defaults = StreamingSettings()
    parser.add_argument(
        "--chunk-size",
        type=_positive_int,
        default=defaults.chunk_size,
        help="largest chunk, in latent frames (256 samples each)",
    )
    parser.add_argument(
        "--first-chunk-size",
        type=_positive_int,
        default=defaults.first_chunk,
        help="first chunk, in frames; later ones are planned from measured step costs",
    )
    parser.add_argument(
        "--fixed-chunks",
        action="store_true",
        help="double chunk sizes up to --chunk-size instead of planning them",
    )
    parser.add_argument(
        "--chunk-padding",
        type=_non_negative_int,
        help="context frames each side of a chunk (default: measured from the voice)",
    )
    parser.add_argument(
        "--denoiser-strength", type=_non_negative_float, default=0.0, help="0 = off"
    )
    parser.add_argument(
        "--gain", type=_positive_float, help="fixed gain (default: calibrated per voice)"
    )
    parser.add_argument(
        "--flow-in-encoder",
        action="store_true",
        help="split a stock voice after the flow (default: the flow runs chunk by chunk)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=default_cache_dir(),
        help="split graphs and measurements, shared with the server (default: %(default)s)",
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="split and measure the voice at every run"
    )
    parser.add_argument("--debug", action="store_true", help="log per-chunk timings")
    return parser


def _voice_files(args: argparse.Namespace) -> VoiceFiles:
    if args.voice is not None:
        files = voice_files_at(args.voice)
    else:
        # Named like ours (X.encoder.onnx): finds X.onnx.json and a separate X.flow.onnx.
        files = replace(
            voice_files_at(args.encoder),
            model=None,
            encoder=args.encoder,
            decoder=args.decoder,
        )
        if not files.config.is_file():  # Piper's training export: config.json beside
            files = replace(files, config=args.encoder.with_name("config.json"))
    return replace(files, config=args.config) if args.config is not None else files


def _check_sample_rate(asked: int | None, rate: int) -> None:
    if asked is not None and asked != rate:
        _LOGGER.warning(
            "--sample-rate %d differs from the voice's %d Hz: the PCM is at %d Hz",
            asked,
            rate,
            rate,
        )


def _builder(args: argparse.Namespace) -> VoiceBuilder:
    """The server's voice builder, with this command's chunks and cache."""
    streaming = StreamingSettings(
        # A first chunk larger than the largest would make --chunk-size a lie.
        first_chunk=min(args.first_chunk_size, args.chunk_size),
        chunk_size=args.chunk_size,
        chunk_padding=args.chunk_padding,
        denoiser_strength=args.denoiser_strength,
        adaptive=not args.fixed_chunks,  # the one default: planned, as the server
        separate_flow=not args.flow_in_encoder,
    )
    library = VoiceLibrarySettings(cache_dir=None if args.no_cache else args.cache_dir)
    return VoiceBuilder(library, streaming)


def _build(args: argparse.Namespace) -> tuple[ChunkedDecoder, SynthesisScales, float]:
    ready = _builder(args).prepare(_voice_files(args))
    voice = ready.voice
    _check_sample_rate(args.sample_rate, voice.config.sample_rate)
    gain = ready.gain if args.gain is None else args.gain
    scales = voice.scales(args.noise_scale, args.length_scale, args.noise_w_scale)
    streamer = ready.streamer
    _LOGGER.info(
        "Voice %s: %d Hz 16-bit mono PCM, chunks %d..%d frames, padding %d, gain %.3f, %s",
        voice.name,
        voice.config.sample_rate,
        streamer.pacing.first_chunk,
        streamer.pacing.max_chunk,
        streamer.padding,
        gain,
        scales,
    )
    return streamer, scales, gain


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    pair = args.encoder is not None and args.decoder is not None
    partial = (args.encoder is None) != (args.decoder is None)
    if partial or pair == (args.voice is not None):
        parser.error("give --voice X.onnx, or both --encoder and --decoder")
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(levelname)s:%(name)s:%(message)s",
        stream=sys.stderr,
    )
    try:
        streamer, scales, gain = _build(args)
    except VoiceError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_UNUSABLE
    try:
        skipped = speak_lines(
            sys.stdin.buffer, streamer, scales, gain, sys.stdout.buffer, sys.stderr
        )
    except BrokenPipeError:  # the player went away (e.g. `| head -c`): stop quietly
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    return EXIT_SKIPPED if skipped else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
