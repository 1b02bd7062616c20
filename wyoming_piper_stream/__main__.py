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
import threading
from collections.abc import Callable
from dataclasses import Field, fields
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from wyoming.server import AsyncServer, AsyncTcpServer, AsyncUnixServer, HandlerFactory

from wyoming_piper_stream import __version__
from wyoming_piper_stream.engine.settings import StreamingSettings
from wyoming_piper_stream.engine.settings_field import default_of, settings_field
from wyoming_piper_stream.server.context import ConnectionSlots, ServerContext
from wyoming_piper_stream.server.handler import SpeechEventHandler
from wyoming_piper_stream.server.malloc_arenas import limit_malloc_arenas
from wyoming_piper_stream.server.scheduler import StepScheduler
from wyoming_piper_stream.server.settings import (
    ClauseMode,
    ClauseSettings,
    LimitSettings,
    ServerSettings,
    SynthesisSettings,
)
from wyoming_piper_stream.voices.library import VoiceLibrary
from wyoming_piper_stream.voices.settings import PACKAGED_CACHE, VoiceLibrarySettings
from wyoming_piper_stream.web.settings import WebSettings, parse_allow

if TYPE_CHECKING:
    from aiohttp.web import AppRunner

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_LOGGER = logging.getLogger("wyoming_piper_stream")
ENV_ARGS = "WYOMING_PIPER_STREAM_ARGS"
_S = TypeVar("_S", bound="DataclassInstance")


def _bounded(kind: type, minimum: float | None) -> Callable[[str], Any]:
    """An argparse type that refuses values below the setting's minimum."""

    def parse(text: str) -> Any:
        value = kind(text)
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum:g}, not {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _shown(item: Field[Any]) -> str:
    shown = item.metadata.get("shown")
    if shown is not None:
        return str(shown)
    value = default_of(item)
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _add(parser: argparse.ArgumentParser, flags: str, cls: type, name: str, **kwargs: Any) -> None:
    """A flag for one settings field: its default, help and bounds come from the field."""
    item = settings_field(cls, name)
    kwargs.setdefault("dest", name)
    action = kwargs.get("action")
    description = kwargs.pop("negated", None) or item.metadata["help"]
    shown = "off" if action == "store_false" else _shown(item)
    if action is None and "type" not in kwargs:
        kind = kwargs.pop("kind", str)
        kwargs["type"] = _bounded(kind, item.metadata.get("minimum"))
    if action not in ("store_true", "store_false"):
        kwargs.setdefault("default", default_of(item))
    help_text = f"{description} (default: {shown})".replace("%", "%%")
    parser.add_argument(*flags.split(), help=help_text, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wyoming-piper-stream",
        description="Wyoming TTS server that streams Piper speech chunk by chunk",
    )
    server, voices, synthesis, streamer, limits, web = (
        ServerSettings,
        VoiceLibrarySettings,
        SynthesisSettings,
        StreamingSettings,
        LimitSettings,
        WebSettings,
    )
    add = partial(_add, parser)
    add("--uri", server, "uri")
    add("--voice", voices, "default_voice")
    add("--data-dir", voices, "data_dirs", action="append", type=Path, default=[])
    add("--download-dir", voices, "download_dir", kind=Path)
    add("--voices-url", voices, "catalogue_url")
    add("--update-voices", voices, "update_voices", action="store_true")
    add("--speaker", synthesis, "speaker")
    add("--noise-scale", synthesis, "noise_scale", kind=float)
    add("--length-scale", synthesis, "length_scale", kind=float)
    add("--noise-w-scale --noise-w", synthesis, "noise_w_scale", kind=float)
    add("--sentence-silence", synthesis, "sentence_silence", kind=float)
    add("--auto-punctuation", synthesis, "auto_punctuation")
    add("--samples-per-chunk", synthesis, "samples_per_chunk", kind=int)
    add("--max-utterance-phonemes", synthesis, "max_utterance_phonemes", kind=int)
    add("--clause-context", streamer, "clause_context", kind=int)
    add(
        "--no-streaming",
        server,
        "streaming",
        action="store_false",
        negated="do not accept streamed text",
    )
    clauses = ClauseSettings
    add(
        "--clause-streaming", clauses, "clause_streaming", type=ClauseMode, choices=list(ClauseMode)
    )
    add("--clause-min-words", clauses, "clause_min_words", kind=int)
    add("--clause-max-words", clauses, "clause_max_words", kind=int)
    add("--clause-fast-rate", clauses, "clause_fast_rate", kind=float)
    add("--clause-rest-words", clauses, "clause_rest_words", kind=float)
    add("--zeroconf", server, "zeroconf_name", nargs="?", const="piper-stream")
    add("--use-cuda", voices, "use_cuda", action="store_true")
    add("--chunk-size", streamer, "chunk_size", kind=int)
    add("--first-chunk-size", streamer, "first_chunk", kind=int)
    add("--chunk-padding", streamer, "chunk_padding", kind=int)
    add(
        "--fixed-chunks",
        streamer,
        "adaptive",
        action="store_false",
        negated="double chunk sizes up to --chunk-size instead of planning the whole reply",
    )
    add(
        "--flow-in-encoder",
        streamer,
        "separate_flow",
        action="store_false",
        negated="split after the flow (the encoder then also runs the flow)",
    )
    add("--denoiser-strength", streamer, "denoiser_strength", kind=float)
    add("--phonemizer", voices, "phonemizer")
    add("--max-voices", voices, "max_voices", kind=int)
    add("--threads", voices, "threads", kind=int)
    add("--max-concurrent", limits, "max_concurrent_synthesis", kind=int)
    add("--max-text-chars", limits, "max_text_chars", kind=int)
    add("--max-connections", limits, "max_connections", kind=int)
    add("--idle-timeout", limits, "idle_timeout", kind=float)
    add("--write-timeout", limits, "write_timeout", kind=float)
    add("--cache-dir", voices, "cache_dir", kind=Path)
    add("--prebuilt-cache", voices, "prebuilt_caches", action="append", type=Path, default=[])
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="split and measure voices at every load (default: off)",
    )
    add(
        "--no-preload",
        server,
        "preload",
        action="store_false",
        negated="load the default voice on first use instead of at start",
    )
    add("--local-files-only", voices, "local_files_only", action="store_true")
    parser.add_argument(
        "--backend",
        choices=("piper", "omnivoice"),
        default="piper",
        help="accepted for wyoming-piper's command line; only piper works (default: piper)",
    )
    add("--web-server", web, "web_server", action="store_true")
    add("--web-server-host", web, "web_server_host")
    add("--web-server-port", web, "web_server_port", kind=int)
    add("--web-server-allow", web, "web_server_allow", action="append", default=[], metavar="CIDR")
    add("--debug", server, "debug", action="store_true")
    add("--log-format", server, "log_format")
    parser.add_argument("--version", action="version", version=__version__)
    return parser


def parse_settings(argv: list[str]) -> ServerSettings:
    """Settings from the command line and ``WYOMING_PIPER_STREAM_ARGS``; exits on bad flags."""
    return settings_from_args(parse_args(argv))


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The checked flags (from the command line and the environment); exits on bad ones."""
    parser = build_parser()
    env_args = os.environ.get(ENV_ARGS, "")
    try:
        argv = [*argv, *shlex.split(env_args)]
    except ValueError as error:
        parser.error(f"invalid {ENV_ARGS}: {error}")
    args = parser.parse_args(argv)
    if args.chunk_size < args.first_chunk:
        parser.error("--chunk-size must be at least --first-chunk-size")
    if args.no_cache:
        args.cache_dir = None
    args.data_dirs = tuple(args.data_dirs)
    args.prebuilt_caches = (*args.prebuilt_caches, PACKAGED_CACHE)
    args.download_dir = args.download_dir or next(iter(args.data_dirs), None)
    if args.backend != "piper":
        parser.exit(2, f"{parser.prog}: error: --backend {args.backend} is not supported\n")
    try:
        args.web_server_allow = parse_allow(args.web_server_allow)
    except ValueError as error:
        parser.error(f"invalid --web-server-allow: {error}")
    return args


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    return _from_args(
        ServerSettings,
        args,
        synthesis=_from_args(SynthesisSettings, args),
        streamer=_from_args(StreamingSettings, args),
        voices=_from_args(VoiceLibrarySettings, args),
        limits=_from_args(LimitSettings, args),
        clauses=_from_args(ClauseSettings, args),
    )


def _from_args(cls: type[_S], args: argparse.Namespace, **parts: Any) -> _S:
    """A settings dataclass from the flags named after its fields (the rest: defaults)."""
    given = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
    return cls(**given, **parts)


def web_settings(args: argparse.Namespace, settings: ServerSettings) -> WebSettings:
    """The web page's settings; uploads go where downloads go (as wyoming-piper's)."""
    return _from_args(WebSettings, args, upload_dir=settings.voices.download_dir)


EXIT_OK, EXIT_FAILED = 0, 1
SHUTDOWN_SECONDS = 1.0
"""How long connections get to close at shutdown before the process ends anyway."""


class StartError(Exception):
    """The server cannot start; the message is one line for the user."""


async def serve(settings: ServerSettings, web: WebSettings | None = None) -> int:
    """Serve until SIGINT/SIGTERM (exit code 0) or a failed start (1)."""
    library = VoiceLibrary(settings.voices, settings.streamer)
    problem = library.default_voice_problem()
    if problem is not None:  # e.g. a Japanese voice without the [ja] extra: refuse to start
        raise SystemExit(f"error: {problem}")
    # A worker thread per connection that may be speaking; they take turns for
    # the cores in the scheduler, not in the pool.
    workers = settings.limits.max_connections
    executor = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="synth")
    scheduler = StepScheduler(settings.limits.max_concurrent_synthesis)
    connections = ConnectionSlots(settings.limits.max_connections)
    context = ServerContext(settings, library, scheduler, executor, connections)
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[int] = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, _finish, stop, EXIT_OK)
    server = AsyncServer.from_uri(settings.uri)
    try:
        serving = await _start(server, partial(SpeechEventHandler, context))
    except StartError as error:
        _LOGGER.error("%s", error)
        return EXIT_FAILED
    page = await _start_web(web, context) if web and web.web_server else None
    _LOGGER.info("Ready on %s (default voice %s)", settings.uri, library.default_voice_name)
    preloading = asyncio.create_task(_preload(library, stop)) if settings.preload else None
    try:
        if settings.zeroconf_name:
            await _announce(server, settings.zeroconf_name)
        ending: list[asyncio.Future[Any]] = [stop, serving]
        await asyncio.wait(ending, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await _shut_down(server, context, serving, preloading)
        if page is not None:
            await page.cleanup()
    return stop.result() if stop.done() else EXIT_OK


def _finish(stop: asyncio.Future[int], code: int) -> None:
    if not stop.done():
        stop.set_result(code)


async def _start(server: AsyncServer, handler: HandlerFactory) -> asyncio.Future[None]:
    """Bind the socket (or open stdio); the returned future ends when the server does."""
    if isinstance(server, AsyncTcpServer | AsyncUnixServer):
        try:
            await server.start(handler)
        except OSError as error:
            reason = os.strerror(error.errno) if error.errno else str(error)
            raise StartError(f"cannot listen on {_address(server)}: {reason}") from None
        return asyncio.get_running_loop().create_future()  # a socket serves until stopped
    return asyncio.ensure_future(server.run(handler))  # stdio: until stdin ends


def _address(server: AsyncTcpServer | AsyncUnixServer) -> str:
    if isinstance(server, AsyncTcpServer):
        return f"tcp://{server.host}:{server.port}"
    return f"unix://{server.socket_path}"


async def _shut_down(
    server: AsyncServer,
    context: ServerContext,
    serving: asyncio.Future[None],
    preloading: asyncio.Task[None] | None,
) -> None:
    """Stop within a second whatever runs: workers, waiting steps, clients, a voice load."""
    _LOGGER.info("Stopping")
    context.shutdown.set()  # before the scheduler: a refused step must not reach a client
    context.scheduler.close()
    if preloading is not None:
        preloading.cancel()  # the load itself runs on in a daemon thread
    serving.cancel()
    await server.stop()  # no new connections
    if not await context.connections.close_all(SHUTDOWN_SECONDS):
        _LOGGER.warning("Connections still open after %.0f s", SHUTDOWN_SECONDS)
    # Running steps end within one chunk; nothing new starts.
    context.executor.shutdown(wait=False, cancel_futures=True)
    _LOGGER.info("Server stopped")


async def _start_web(web: WebSettings, context: ServerContext) -> AppRunner:
    from wyoming_piper_stream.web.app import PageContext, start_web

    handler = partial(SpeechEventHandler, context)
    page = PageContext(web, context.library, context.stats, handler, __version__)
    try:
        return await start_web(page)
    except OSError as error:
        where = f"{web.web_server_host}:{web.web_server_port}"
        raise SystemExit(f"error: cannot serve the web page on {where}: {error}") from None


async def _preload(library: VoiceLibrary, stop: asyncio.Future[int]) -> None:
    """Load the default voice in the background; a voice that cannot load stops the server."""
    try:
        await library.get(None)
    except Exception as error:  # one line: the reason is the message
        _LOGGER.error("Cannot load the default voice %s: %s", library.default_voice_name, error)
        _finish(stop, EXIT_FAILED)


async def _announce(server: AsyncServer, name: str) -> None:
    if not isinstance(server, AsyncTcpServer):
        raise SystemExit("error: --zeroconf needs a tcp:// uri")
    from wyoming.zeroconf import HomeAssistantZeroconf

    zeroconf = HomeAssistantZeroconf(name=name, port=server.port, host=server.host)
    await zeroconf.register_server()
    _LOGGER.info("Announced over zeroconf as %s", name)


def run(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    settings = settings_from_args(args)
    level = logging.DEBUG if settings.debug else logging.INFO
    logging.basicConfig(level=level, format=settings.log_format)
    _LOGGER.debug("Settings: %s", settings)
    if limit_malloc_arenas():
        _LOGGER.debug("One malloc arena for all threads")
    code = EXIT_OK
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C before the server took over SIGINT
        code = asyncio.run(serve(settings, web_settings(args, settings)))
    _exit(code)


def _exit(code: int) -> None:
    """Exit; at once if a voice still loads in its daemon thread.

    The interpreter's normal exit tears down onnxruntime under that thread,
    which aborts the process (SIGABRT) instead of exiting with ``code``.
    """
    if any(thread.daemon and thread.is_alive() for thread in threading.enumerate()):
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
