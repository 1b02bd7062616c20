"""The page's HTTP side (aiohttp), on the Wyoming server's event loop.

Nothing here synthesizes or loads a graph on the loop: "try it" goes through the
Wyoming handler (synthesis in worker threads), uploads are checked in a worker
thread. Every URL in the page is relative, so it works behind Home Assistant's
ingress, whose path comes in ``X-Ingress-Path`` and becomes the page's base URL.
"""

from __future__ import annotations

import asyncio
import html
import logging
import resource
from dataclasses import asdict, dataclass
from pathlib import Path

from aiohttp import BodyPartReader, web
from aiohttp.typedefs import Handler
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error

from wyoming_piper_stream.server.stats import ServerStats
from wyoming_piper_stream.voices.library import VoiceLibrary
from wyoming_piper_stream.web.custom_voices import (
    UploadError,
    delete_voice,
    install_voice,
    temp_path,
    voice_name_of,
    voice_rows,
)
from wyoming_piper_stream.web.settings import WebSettings, is_allowed
from wyoming_piper_stream.web.speak import (
    HandlerFactory,
    local_connection,
    next_event,
    request_speech,
)

_LOGGER = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
EVENT_TIMEOUT = 120.0
"""Seconds to wait for the handler's next event (the first may wait for a voice to load)."""
MAX_TEXT_FIELD = 100_000
CHANGE_HEADER = ("X-Requested-With", "piper-stream")
"""Required on every POST and DELETE: a form or script of another site cannot send it
without a CORS preflight, which this server never grants (the page has no login)."""
RELOAD_HINT = "Home Assistant sees the change at its next describe (reload the integration)."


@dataclass(frozen=True)
class PageContext:
    """What the page reads and uses, handed in by ``__main__``."""

    settings: WebSettings
    library: VoiceLibrary
    stats: ServerStats
    speak: HandlerFactory
    version: str


_CONTEXT = web.AppKey("context", PageContext)


def make_app(context: PageContext) -> web.Application:
    middlewares = [_allow_list, _same_site_changes]
    app = web.Application(middlewares=middlewares, client_max_size=MAX_TEXT_FIELD)
    app[_CONTEXT] = context
    app.router.add_get("/", _index)
    app.router.add_get("/api/voices", _voices)
    app.router.add_get("/api/status", _status)
    app.router.add_post("/api/speak", _speak)
    app.router.add_post("/api/voices", _upload)
    app.router.add_delete("/api/voices/{name}", _delete)
    app.router.add_static("/static", STATIC)
    return app


async def start_web(context: PageContext) -> web.AppRunner:
    """Serve the page; raises OSError when the address cannot be bound."""
    runner = web.AppRunner(make_app(context), access_log=None)
    await runner.setup()
    host, port = context.settings.web_server_host, context.settings.web_server_port
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    _LOGGER.info(
        "Web page on http://%s:%s/",
        context.settings.web_server_host,
        context.settings.web_server_port,
    )
    return runner


@web.middleware
async def _allow_list(request: web.Request, handler: Handler) -> web.StreamResponse:
    # request.remote is the TCP peer: forwarded headers are never trusted here.
    if not is_allowed(request.remote, request.app[_CONTEXT].settings.web_server_allow):
        _LOGGER.warning("Refused web request from %s (--web-server-allow)", request.remote)
        return web.Response(status=403, text="Forbidden\n")
    return await handler(request)


@web.middleware
async def _same_site_changes(request: web.Request, handler: Handler) -> web.StreamResponse:
    name, value = CHANGE_HEADER
    if request.method not in ("GET", "HEAD") and request.headers.get(name) != value:
        return _error(403, f"refused: a change needs the header {name}: {value}")
    return await handler(request)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"ok": False, "error": message}, status=status)


async def _index(request: web.Request) -> web.Response:
    ingress = request.headers.get("X-Ingress-Path", "").rstrip("/")
    base = html.escape(f"{ingress}/" if ingress else "./", quote=True)
    page = (STATIC / "index.html").read_text(encoding="utf-8").replace("{{BASE}}", base)
    return web.Response(text=page, content_type="text/html", headers={"Cache-Control": "no-store"})


async def _voices(request: web.Request) -> web.Response:
    context = request.app[_CONTEXT]
    rows = voice_rows(context.library, context.settings.upload_dir)
    return web.json_response(
        {
            "voices": [row.as_json() for row in rows],
            "uploads": context.settings.upload_dir is not None,
            "max_upload_bytes": context.settings.max_upload_bytes,
        }
    )


def _memory_bytes() -> int:
    """Resident memory now (Linux), else the peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


async def _status(request: web.Request) -> web.Response:
    context = request.app[_CONTEXT]
    return web.json_response(
        {
            **asdict(context.stats.snapshot()),
            "loaded_voices": context.library.loaded_names(),
            "memory_bytes": _memory_bytes(),
            "version": context.version,
        }
    )


async def _speak(request: web.Request) -> web.StreamResponse:
    """PCM (16-bit mono) as the handler sends it; the rate is in ``X-Audio-Rate``."""
    try:
        body = await request.json()
        text, voice, speaker = body["text"], body.get("voice"), body.get("speaker")
        if not isinstance(text, str) or not text.strip():
            raise ValueError("text is empty")
    except (ValueError, KeyError, TypeError) as error:
        return _error(400, f"bad request: {error}")
    context = request.app[_CONTEXT]
    async with local_connection(context.speak) as (reader, writer):
        await request_speech(writer, text, voice or None, speaker or None)
        try:
            event = await next_event(reader, EVENT_TIMEOUT)
        except TimeoutError:
            return _error(504, f"no audio within {EVENT_TIMEOUT:.0f} s")
        if event is None or not AudioStart.is_type(event.type):
            message = Error.from_event(event).text if event and Error.is_type(event.type) else ""
            return _error(400, message or "the server ended the request without audio")
        response = _audio_response(AudioStart.from_event(event))
        await response.prepare(request)
        try:
            await _stream_audio(reader, response)
        except (ConnectionError, TimeoutError) as error:
            # The page went away (or the handler went silent): leaving the block closes
            # the connection, and the handler stops the job.
            _LOGGER.info("Try-it stream ended early: %s", error or type(error).__name__)
        return response


def _audio_response(start: AudioStart) -> web.StreamResponse:
    return web.StreamResponse(
        headers={
            "Content-Type": "application/octet-stream",
            "Cache-Control": "no-store",
            "X-Audio-Rate": str(start.rate),
            "X-Audio-Width": str(start.width),
            "X-Audio-Channels": str(start.channels),
        }
    )


async def _stream_audio(reader: asyncio.StreamReader, response: web.StreamResponse) -> None:
    while (event := await next_event(reader, EVENT_TIMEOUT)) is not None:
        if AudioChunk.is_type(event.type):
            await response.write(event.payload or b"")
        elif AudioStop.is_type(event.type) or Error.is_type(event.type):
            break
    await response.write_eof()


async def _save_part(part: BodyPartReader, path: Path, budget: int) -> int:
    """Stream one uploaded file to ``path``; its size, or UploadError past ``budget``."""
    size = 0
    with path.open("wb") as out:
        while chunk := await part.read_chunk(1 << 20):
            size += len(chunk)
            if size > budget:
                raise UploadError("upload too large", status=413)
            await asyncio.to_thread(out.write, chunk)
    return size


async def _upload(request: web.Request) -> web.Response:
    context = request.app[_CONTEXT]
    upload_dir = context.settings.upload_dir
    limit = context.settings.max_upload_bytes
    if upload_dir is None:
        return _error(403, "uploads are off: start the server with --data-dir or --download-dir")
    if (request.content_length or 0) > limit + 1_000_000:
        return _error(413, f"upload too large (limit {limit // (1 << 20)} MiB)")
    upload_dir.mkdir(parents=True, exist_ok=True)
    model, config = temp_path(upload_dir), temp_path(upload_dir)
    try:
        name = await _receive(request, model, config, limit)
        await asyncio.to_thread(install_voice, context.library, upload_dir, name, model, config)
    except UploadError as error:
        suffix = f" (limit {limit // (1 << 20)} MiB)" if error.status == 413 else ""
        return _error(error.status, f"{error}{suffix}")
    finally:
        for path in (model, config):
            path.unlink(missing_ok=True)
    _LOGGER.info("Uploaded custom voice %s", name)
    return web.json_response({"ok": True, "name": name, "message": f"Added {name}. {RELOAD_HINT}"})


async def _receive(request: web.Request, model: Path, config: Path, limit: int) -> str:
    """Both files to their temp paths; the voice name from the model's file name."""
    if not request.content_type.startswith("multipart/"):
        raise UploadError("send the files as multipart/form-data (fields onnx and config)")
    name = None
    got_config = False
    used = 0
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "onnx" and part.filename:
            name = voice_name_of(part.filename)
            used += await _save_part(part, model, limit - used)
        elif part.name == "config" and part.filename:
            used += await _save_part(part, config, limit - used)
            got_config = True
    if name is None:
        raise UploadError("missing the .onnx model file")
    if not got_config:
        raise UploadError("missing the .onnx.json config file")
    return name


async def _delete(request: web.Request) -> web.Response:
    context = request.app[_CONTEXT]
    name = request.match_info["name"]
    try:
        delete_voice(context.library, context.settings.upload_dir, name)
    except UploadError as error:
        return _error(error.status, str(error))
    _LOGGER.info("Deleted custom voice %s", name)
    return web.json_response({"ok": True, "message": f"Deleted {name}. {RELOAD_HINT}"})
