"""Command line: flags -> settings, logging, the Wyoming server, zeroconf, signals."""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import logging
import os
import shlex
import signal
import sys
from functools import partial
from pathlib import Path

from wyoming.server import AsyncServer, AsyncTcpServer

from wyoming_piper_stream import __version__
from wyoming_piper_stream.engine.settings import StreamingSettings
from wyoming_piper_stream.server.handler import ConnectionCount, ServerContext, SpeechEventHandler
from wyoming_piper_stream.server.scheduler import StepScheduler
from wyoming_piper_stream.server.settings import (
    DEFAULT_AUTO_PUNCTUATION,
    DEFAULT_MAX_UTTERANCE_PHONEMES,
    LimitSettings,
    ServerSettings,
    SynthesisSettings,
)
from wyoming_piper_stream.voices.library import VoiceLibrary
from wyoming_piper_stream.voices.settings import VoiceLibrarySettings, default_cache_dir

_LOGGER = logging.getLogger("wyoming_piper_stream")
ENV_ARGS = "WYOMING_PIPER_STREAM_ARGS"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wyoming-piper-stream",
        description="Wyoming TTS server that streams Piper speech chunk by chunk",
    )
    add = parser.add_argument
    add("--uri", default="stdio://", help="unix://, tcp:// or stdio:// (default: stdio://)")
    add("--voice", help="default voice name (default: the embedded en_US-joe-medium)")
    add("--data-dir", action="append", default=[], help="folder with voices (repeatable)")
    add("--download-dir", help="folder for downloaded voices (default: first data dir)")
    add("--voices-url", help="URL of the Piper voices catalogue (voices.json)")
    add("--update-voices", action="store_true", help="refresh the voices catalogue at start")
    add("--speaker", help="speaker name or id for the default voice")
    add("--noise-scale", type=float, help="generator noise (default: the voice's)")
    add("--length-scale", type=float, help="phoneme length (default: the voice's)")
    add("--noise-w-scale", "--noise-w", type=float, help="phoneme width noise")
    add("--sentence-silence", type=float, default=0.0, help="seconds of silence after sentences")
    add("--auto-punctuation", default=DEFAULT_AUTO_PUNCTUATION, help="sentence end marks")
    add("--samples-per-chunk", type=int, default=1024, help="largest audio-chunk in samples")
    add(
        "--max-utterance-phonemes",
        type=int,
        default=DEFAULT_MAX_UTTERANCE_PHONEMES,
        help="longer sentences are spoken clause by clause (0 = always whole, as Piper)",
    )
    add("--no-streaming", action="store_true", help="do not accept streamed text")
    add("--zeroconf", nargs="?", const="piper-stream", help="announce over zeroconf [name]")
    add("--use-cuda", action="store_true", help="use onnxruntime's CUDA provider if present")
    add("--chunk-size", type=int, default=128, help="largest decoder chunk in latent frames")
    add("--first-chunk-size", type=int, default=16, help="first decoder chunk in frames")
    add("--chunk-padding", type=int, help="context frames per side (default: measured)")
    add("--fixed-chunks", action="store_true", help="double chunk sizes instead of pacing")
    add("--flow-in-encoder", action="store_true", help="split after the flow (older layout)")
    add("--denoiser-strength", type=float, default=0.0, help="bias denoiser (0 = off)")
    add("--phonemizer", help="phonemizer as module:attribute or entry-point name")
    add("--max-voices", type=int, default=2, help="voices kept loaded at once")
    add("--threads", type=int, default=0, help="onnxruntime threads per graph (0 = auto)")
    add(
        "--max-concurrent",
        type=int,
        default=1,
        help="synthesis steps run at once (default 1: each uses every core)",
    )
    add("--max-text-chars", type=int, default=10_000, help="longest text per request or stream")
    add("--max-connections", type=int, default=32, help="open connections at once")
    add("--idle-timeout", type=float, default=300.0, help="seconds before an idle client is closed")
    add("--cache-dir", default=str(default_cache_dir()), help="cache of split voices")
    add("--no-cache", action="store_true", help="split and measure voices at every load")
    add("--write-timeout", type=float, default=30.0, help="seconds a client may not read")
    add("--no-preload", action="store_true", help="load the default voice on first use")
    add("--debug", action="store_true", help="log DEBUG messages")
    add("--log-format", default=logging.BASIC_FORMAT, help="format for log messages")
    add("--version", action="version", version=__version__)
    return parser


def parse_settings(argv: list[str]) -> tuple[ServerSettings, argparse.Namespace]:
    parser = build_parser()
    env_args = os.environ.get(ENV_ARGS, "")
    try:
        argv = [*argv, *shlex.split(env_args)]
    except ValueError as error:
        parser.error(f"invalid {ENV_ARGS}: {error}")
    args = parser.parse_args(argv)
    if args.first_chunk_size < 1 or args.chunk_size < 1:
        parser.error("--chunk-size and --first-chunk-size must be at least 1")
    if args.chunk_padding is not None and args.chunk_padding < 0:
        parser.error("--chunk-padding must not be negative")
    data_dirs = tuple(Path(d) for d in args.data_dir)
    download_dir = Path(args.download_dir) if args.download_dir else None
    settings = ServerSettings(
        uri=args.uri,
        zeroconf_name=args.zeroconf,
        streaming=not args.no_streaming,
        synthesis=SynthesisSettings(
            speaker=args.speaker,
            noise_scale=args.noise_scale,
            length_scale=args.length_scale,
            noise_w_scale=args.noise_w_scale,
            sentence_silence=max(0.0, args.sentence_silence or 0.0),
            auto_punctuation=args.auto_punctuation,
            samples_per_chunk=max(1, args.samples_per_chunk),
            max_utterance_phonemes=max(0, args.max_utterance_phonemes),
        ),
        streamer=StreamingSettings(
            first_chunk=args.first_chunk_size,
            chunk_size=max(args.chunk_size, args.first_chunk_size),
            chunk_padding=args.chunk_padding,
            denoiser_strength=max(0.0, args.denoiser_strength),
            separate_flow=not args.flow_in_encoder,
            adaptive=not args.fixed_chunks,
        ),
        voices=VoiceLibrarySettings(
            default_voice=args.voice,
            data_dirs=data_dirs,
            download_dir=download_dir or (data_dirs[0] if data_dirs else None),
            catalogue_url=args.voices_url,
            update_voices=args.update_voices,
            max_voices=max(1, args.max_voices),
            threads=max(0, args.threads),
            use_cuda=args.use_cuda,
            cache_dir=None if args.no_cache else Path(args.cache_dir),
            phonemizer=args.phonemizer,
        ),
        limits=LimitSettings(
            max_concurrent_synthesis=max(1, args.max_concurrent),
            max_text_chars=max(1, args.max_text_chars),
            max_connections=max(1, args.max_connections),
            idle_timeout=max(0.1, args.idle_timeout),
            write_timeout=max(0.1, args.write_timeout),
        ),
    )
    return settings, args


async def serve(settings: ServerSettings, preload: bool = True) -> None:
    library = VoiceLibrary(settings.voices, settings.streamer)
    # A worker thread per connection that may be speaking; they take turns for
    # the cores in the scheduler, not in the pool.
    workers = settings.limits.max_connections
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="synth") as executor:
        scheduler = StepScheduler(settings.limits.max_concurrent_synthesis)
        context = ServerContext(settings, library, scheduler, executor, ConnectionCount())
        server = AsyncServer.from_uri(settings.uri)
        if settings.zeroconf_name:
            await _announce(server, settings.zeroconf_name)
        preloading = asyncio.create_task(_preload(library)) if preload else None
        _LOGGER.info("Ready on %s (default voice %s)", settings.uri, library.default_voice_name)
        server_task = asyncio.create_task(server.run(partial(SpeechEventHandler, context)))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, server_task.cancel)
        try:
            await server_task
        except asyncio.CancelledError:
            _LOGGER.info("Server stopped")
        finally:
            if preloading is not None:
                preloading.cancel()


async def _preload(library: VoiceLibrary) -> None:
    """Load the default voice in the background, so the first request is fast."""
    try:
        await library.get(None)
    except Exception as error:  # reported here; requests report it again
        _LOGGER.error("Cannot load default voice %s: %s", library.default_voice_name, error)


async def _announce(server: AsyncServer, name: str) -> None:
    if not isinstance(server, AsyncTcpServer):
        raise SystemExit("error: --zeroconf needs a tcp:// uri")
    from wyoming.zeroconf import HomeAssistantZeroconf

    zeroconf = HomeAssistantZeroconf(name=name, port=server.port, host=server.host)
    await zeroconf.register_server()
    _LOGGER.info("Announced over zeroconf as %s", name)


def run(argv: list[str] | None = None) -> None:
    settings, args = parse_settings(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format=args.log_format)
    _LOGGER.debug("Settings: %s", settings)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings, preload=not args.no_preload))


if __name__ == "__main__":
    run()
