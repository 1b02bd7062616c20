"""The page's HTTP guards in process: the allow list and the upload size limit."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from web_util import CHANGE, TINY_SINGLE, folder_listing, voice_form

from wyoming_piper_stream.engine.settings import StreamingSettings
from wyoming_piper_stream.server.stats import ServerStats
from wyoming_piper_stream.voices.library import VoiceLibrary
from wyoming_piper_stream.voices.settings import VoiceLibrarySettings
from wyoming_piper_stream.web.app import PageContext, make_app
from wyoming_piper_stream.web.settings import WebSettings, is_allowed, parse_allow


def no_speech(*_: object) -> None:
    raise AssertionError("these tests never speak")


def page(upload_dir: Path, **settings: object) -> TestClient:
    library = VoiceLibrary(
        VoiceLibrarySettings(data_dirs=(upload_dir,), download_dir=upload_dir), StreamingSettings()
    )
    web = WebSettings(upload_dir=upload_dir, **settings)  # type: ignore[arg-type]
    context = PageContext(web, library, ServerStats(), no_speech, "test")  # type: ignore[arg-type]
    return TestClient(TestServer(make_app(context), host="127.0.0.1"))


@pytest.mark.parametrize(
    ("peer", "allow", "allowed"),
    [
        ("172.30.32.2", ["172.30.32.2"], True),
        ("172.30.32.3", ["172.30.32.2"], False),
        ("::ffff:172.30.32.2", ["172.30.32.0/24"], True),
        ("10.1.2.3", ["192.168.0.0/16", "10.0.0.0/8"], True),
        ("fe80::1", ["10.0.0.0/8"], False),
        (None, ["10.0.0.0/8"], False),
        ("not an address", ["10.0.0.0/8"], False),
        ("203.0.113.9", [], True),
    ],
)
def test_allow_list_matches_the_tcp_peer(peer: str | None, allow: list[str], allowed: bool) -> None:
    assert is_allowed(peer, parse_allow(allow)) is allowed


def test_a_typo_in_the_allow_list_is_an_error() -> None:
    with pytest.raises(ValueError):
        parse_allow(["172.30.32.300"])
    assert parse_allow(["10.1.2.3/8"]) == (ipaddress.ip_network("10.0.0.0/8"),)


@pytest.mark.parametrize(("allow", "status"), [("10.0.0.0/8", 403), ("127.0.0.1/32", 200)])
async def test_allow_list_guards_every_route(tmp_path: Path, allow: str, status: int) -> None:
    forged = {"X-Forwarded-For": "10.0.0.1", "X-Real-IP": "10.0.0.1"}
    async with page(tmp_path, web_server_allow=parse_allow([allow])) as client:
        for path in ("/", "/api/voices", "/api/status", "/static/app.js"):
            response = await client.get(path, headers=forged)
            assert response.status == status, path
        response = await client.delete("/api/voices/anything", headers=CHANGE)
        assert response.status == (403 if status == 403 else 404)


async def test_upload_over_the_limit_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    model, config = TINY_SINGLE.with_suffix(".onnx"), TINY_SINGLE.with_suffix(".onnx.json")
    async with page(tmp_path, max_upload_bytes=model.stat().st_size // 2) as client:
        response = await client.post("/api/voices", data=voice_form(model, config), headers=CHANGE)
        body = await response.json()
    assert response.status == 413
    assert "too large" in body["error"]
    assert folder_listing(tmp_path) == []


def test_the_web_layer_uses_only_the_servers_stats() -> None:
    import ast

    package = Path(__file__).resolve().parent.parent / "wyoming_piper_stream"
    used = set()
    for path in (package / "web").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "wyoming_piper_stream.server"
            ):
                used.add(node.module)
    assert used == {"wyoming_piper_stream.server.stats"}
    importers = [
        path.relative_to(package)
        for path in package.rglob("*.py")
        if "wyoming_piper_stream.web" in path.read_text(encoding="utf-8")
        and path.parent.name != "web"
    ]
    assert [str(p) for p in importers] == ["__main__.py"]


async def test_changes_without_the_page_header_are_refused(tmp_path: Path) -> None:
    """A form or script of another site cannot send the header without a preflight."""
    model, config = TINY_SINGLE.with_suffix(".onnx"), TINY_SINGLE.with_suffix(".onnx.json")
    async with page(tmp_path) as client:
        upload = await client.post("/api/voices", data=voice_form(model, config))
        body = await upload.json()
        speak = await client.post("/api/speak", json={"text": "hello"})
        delete = await client.delete("/api/voices/tiny-single")
        preflight = await client.options(
            "/api/voices",
            headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
        )
    assert (upload.status, speak.status, delete.status) == (403, 403, 403)
    assert "X-Requested-With" in body["error"]
    assert "Access-Control-Allow-Origin" not in preflight.headers
    assert folder_listing(tmp_path) == []
