"""The web page's HTTP side against the real server: voices, try it, uploads, status, ingress."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from server_util import JOE, describe, synthesize
from web_util import (
    CHANGE,
    PAGE_TIMEOUT,
    TINY_SINGLE,
    WebServer,
    call,
    folder_listing,
    run_web_server,
    voice_form,
)
from wyoming.tts import SynthesizeVoice

TEXT = "The page speaks through the same handler as Home Assistant."


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    with run_web_server(tmp_path_factory.mktemp("web"), "--backend", "piper") as server:
        yield server


async def get_json(web: WebServer, path: str) -> dict:
    status, body = await call("GET", web.url + path)
    assert status == 200, body
    return body


async def voice_names(web: WebServer) -> list[str]:
    info = await describe(web.server.uri)
    return [voice.name for program in info.tts for voice in program.voices]


async def test_page_uses_relative_urls_and_the_ingress_path(web: WebServer) -> None:
    async with aiohttp.ClientSession(timeout=PAGE_TIMEOUT) as session:
        async with session.get(web.url) as response:
            page = await response.text()
        ingress = {"X-Ingress-Path": "/api/hassio_ingress/Tok3n"}
        async with session.get(web.url, headers=ingress) as response:
            behind_ingress = await response.text()
        for asset in ("static/app.js", "static/style.css"):
            async with session.get(web.url + asset) as response:
                assert response.status == 200
    assert '<base href="./">' in page
    assert '<base href="/api/hassio_ingress/Tok3n/">' in behind_ingress
    # No absolute URL anywhere: the page must work under any prefix.
    assert not re.search(r'(href|src)="/', page.replace('<base href="./">', ""))
    script = (Path(__file__).parents[1] / "wyoming_piper_stream/web/static/app.js").read_text()
    assert not re.search(r'fetch\(\s*[`"\']/', script)


async def test_voices_table_lists_embedded_and_folder_voices(web: WebServer) -> None:
    voices = {v["name"]: v for v in (await get_json(web, "api/voices"))["voices"]}
    joe = voices[JOE]
    assert (joe["source"], joe["default"], joe["language"], joe["quality"]) == (
        "embedded",
        True,
        "en_US",
        "medium",
    )
    assert joe["size_bytes"] > 10_000_000
    multi = voices["tiny-multi"]
    assert multi["speakers"] == ["alice", "bob", "carol"]
    assert multi["source"] == "custom"  # in the upload folder: deletable
    assert sorted(voices) == sorted(await voice_names(web))


async def test_try_it_streams_the_handlers_audio_and_counts_in_status(web: WebServer) -> None:
    before = await get_json(web, "api/status")
    voice = {"voice": "tiny-multi", "speaker": "bob"}
    async with (
        aiohttp.ClientSession(timeout=PAGE_TIMEOUT) as session,
        session.post(
            web.url + "api/speak", json={"text": TEXT, **voice}, headers=CHANGE
        ) as response,
    ):
        assert response.status == 200
        assert response.headers["X-Audio-Rate"] == "22050"
        pieces = [piece async for piece in response.content.iter_any()]
    from_page = b"".join(pieces)
    _, from_wyoming = await synthesize(
        web.server.uri, TEXT, SynthesizeVoice(name="tiny-multi", speaker="bob")
    )
    # Same handler, same voice and speaker, noise 0: the same speech (chunk plans may
    # differ by timing, and chunked decoding matches to within one 16-bit step).
    assert len(from_page) == len(from_wyoming) > 22050
    page_pcm = np.frombuffer(from_page, np.int16).astype(int)
    wyoming_pcm = np.frombuffer(from_wyoming, np.int16).astype(int)
    assert np.abs(page_pcm - wyoming_pcm).max() <= 2
    after = await get_json(web, "api/status")
    assert after["requests"] == before["requests"] + 2
    assert after["audio_seconds"] > before["audio_seconds"] + 2 * len(from_page) / 2 / 22050 - 0.01
    assert after["first_audio_p50"] > 0 and after["first_audio_p95"] >= after["first_audio_p50"]
    assert after["rtf_p50"] > 0
    assert "tiny-multi" in after["loaded_voices"]
    assert after["memory_bytes"] > 50_000_000
    assert after["uptime"] > before["uptime"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"text": TEXT, "voice": "no-such-voice"}, "unknown voice 'no-such-voice'"),
        ({"text": TEXT, "voice": "tiny-multi", "speaker": "nobody"}, "nobody"),
        ({"text": "  "}, "text is empty"),
        ({"voice": JOE}, "bad request"),
    ],
)
async def test_try_it_errors_are_clear(web: WebServer, body: dict, message: str) -> None:
    status, reply = await call("POST", web.url + "api/speak", json=body)
    assert status == 400
    assert message in reply["error"]


async def test_upload_shows_at_describe_speaks_and_delete_removes_it(web: WebServer) -> None:
    config = TINY_SINGLE.with_suffix(".onnx.json")
    form = voice_form(TINY_SINGLE.with_suffix(".onnx"), config, "my_voice-x_low.onnx")
    status, reply = await call("POST", web.url + "api/voices", data=form)
    assert status == 200, reply
    assert reply["name"] == "my_voice-x_low"
    assert "my_voice-x_low" in await voice_names(web)
    assert {"my_voice-x_low.onnx", "my_voice-x_low.onnx.json"} <= set(
        folder_listing(web.voices_dir)
    )
    _, pcm = await synthesize(web.server.uri, TEXT, SynthesizeVoice(name="my_voice-x_low"))
    assert len(pcm) > 22050

    status, reply = await call("DELETE", web.url + "api/voices/my_voice-x_low")
    assert status == 200, reply
    status, refused = await call("DELETE", web.url + f"api/voices/{JOE}")
    assert status == 403
    assert "cannot be deleted" in refused["error"]
    assert "my_voice-x_low" not in await voice_names(web)
    assert folder_listing(web.voices_dir) == ["tiny-multi.onnx", "tiny-multi.onnx.json"]
    events, _ = await synthesize(web.server.uri, TEXT, SynthesizeVoice(name="my_voice-x_low"))
    assert events[-1].type == "error"  # the forgotten voice is not served from memory


def not_a_vits_graph(path: Path) -> Path:
    """A valid ONNX model with no HiFi-GAN in it."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Neg", ["input"], ["output"])], "g", [x], [y])
    onnx.save(helper.make_model(graph), str(path))
    return path


@pytest.mark.parametrize(
    ("case", "status", "message"),
    [
        ("garbage", 400, "not an ONNX file"),
        ("not-vits", 400, "not a Piper VITS voice"),
        ("bad-config", 400, "not a Piper voice config"),
        ("bad-name", 400, "invalid voice name"),
        ("exists", 409, "exists already"),
        ("no-config", 400, "missing the .onnx.json"),
    ],
)
async def test_bad_uploads_get_a_message_and_leave_nothing(
    web: WebServer, tmp_path: Path, case: str, status: int, message: str
) -> None:
    model, config = TINY_SINGLE.with_suffix(".onnx"), TINY_SINGLE.with_suffix(".onnx.json")
    name = "fresh.onnx"
    if case == "garbage":
        model = tmp_path / "garbage.onnx"
        model.write_bytes(b"\x08\x07 not protobuf at all" * 100)
    elif case == "not-vits":
        model = not_a_vits_graph(tmp_path / "neg.onnx")
    elif case == "bad-config":
        config = tmp_path / "bad.onnx.json"
        config.write_text('{"audio": {}}')
    elif case == "bad-name":
        name = "bad name!.onnx"
    elif case == "exists":
        name = "tiny-multi.onnx"
    before = folder_listing(web.voices_dir)
    form = voice_form(model, config, name)
    if case == "no-config":
        form = aiohttp.FormData()
        form.add_field("onnx", model.read_bytes(), filename=name)
    got, reply = await call("POST", web.url + "api/voices", data=form)
    assert got == status, reply
    assert message in reply["error"]
    assert folder_listing(web.voices_dir) == before  # no temp file, no half voice
    assert "fresh" not in await voice_names(web)


async def test_a_page_that_leaves_mid_stream_harms_nobody(web: WebServer) -> None:
    long_text = " ".join([TEXT] * 20)
    async with (
        aiohttp.ClientSession(timeout=PAGE_TIMEOUT) as session,
        session.post(web.url + "api/speak", json={"text": long_text}, headers=CHANGE) as response,
    ):
        assert response.status == 200
        first = await response.content.readany()
        assert first  # audio is streaming; now the page goes away
    _, pcm = await synthesize(web.server.uri, TEXT)
    assert len(pcm) > 22050  # the next request is served as usual
    status, body = await call("GET", web.url + "api/status")
    assert status == 200 and body["requests"] >= 1
