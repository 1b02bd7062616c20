"""The Home Assistant add-on: its files against the Supervisor's documented schema, the run
script's command line (run for real), and discovery against a fake Supervisor on 127.0.0.1.

The schema is the one documented for add-on developers ("Add-on configuration":
required and optional keys, option types); see the table below.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from conftest import REPO
from PIL import Image
from server_util import run_server

from wyoming_piper_stream import __version__
from wyoming_piper_stream.__main__ import build_parser, parse_settings

ADDON = REPO / "piper_stream"
LIB = ADDON / "rootfs/usr/local/lib/piper-stream-addon"
ENTRY = ADDON / "rootfs/usr/local/bin/piper-stream-addon"
ARCHES = {"armhf", "armv7", "aarch64", "amd64", "i386"}
MAP_TYPES = {
    "homeassistant_config", "addon_config", "ssl", "addons", "backup", "share", "media",
    "all_addon_configs", "data",
}  # fmt: skip


def is_str(value: object) -> bool:
    return isinstance(value, str)


def is_bool(value: object) -> bool:
    return isinstance(value, bool)


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_list_of(check: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda value: isinstance(value, list) and all(check(item) for item in value)


def is_dict(value: object) -> bool:
    return isinstance(value, dict)


def is_map(value: object) -> bool:
    def entry(item: object) -> bool:
        if isinstance(item, str):
            return item.split(":")[0] in MAP_TYPES
        return isinstance(item, dict) and item.get("type") in MAP_TYPES

    return isinstance(value, list) and all(entry(item) for item in value)


REQUIRED = {
    "name": is_str,
    "version": is_str,
    "slug": is_str,
    "description": is_str,
    "arch": lambda value: is_list_of(is_str)(value) and set(value) <= ARCHES,
}
OPTIONAL = {
    "machine": is_list_of(is_str), "url": is_str, "startup": lambda v: v in (
        "initialize", "system", "services", "application", "once"),
    "webui": is_str, "boot": lambda v: v in ("auto", "manual", "manual_only"),
    "ports": is_dict, "ports_description": is_dict, "host_network": is_bool,
    "host_ipc": is_bool, "host_dbus": is_bool, "host_pid": is_bool, "host_uts": is_bool,
    "devices": is_list_of(is_str), "homeassistant": is_str, "hassio_role": lambda v: v in (
        "default", "homeassistant", "backup", "manager", "admin"),
    "hassio_api": is_bool, "homeassistant_api": is_bool, "docker_api": is_bool,
    "privileged": is_list_of(is_str), "full_access": is_bool,
    "apparmor": lambda v: isinstance(v, bool | str), "map": is_map, "environment": is_dict,
    "audio": is_bool, "video": is_bool, "gpio": is_bool, "usb": is_bool, "uart": is_bool,
    "udev": is_bool, "devicetree": is_bool, "kernel_modules": is_bool, "stdin": is_bool,
    "legacy": is_bool, "options": is_dict, "schema": lambda v: v is False or is_dict(v),
    "image": is_str, "codenotary": is_str, "timeout": is_int, "tmpfs": is_bool,
    "discovery": is_list_of(is_str), "services": is_list_of(is_str), "auth_api": is_bool,
    "ingress": is_bool, "ingress_port": is_int, "ingress_entry": is_str,
    "ingress_stream": is_bool, "panel_icon": is_str, "panel_title": is_str,
    "panel_admin": is_bool, "backup": lambda v: v in ("hot", "cold"), "backup_pre": is_str,
    "backup_post": is_str, "backup_exclude": is_list_of(is_str), "advanced": is_bool,
    "stage": lambda v: v in ("stable", "experimental", "deprecated"), "init": is_bool,
    "watchdog": is_str, "realtime": is_bool, "journald": is_bool,
    "breaking_versions": is_list_of(is_str), "ulimits": is_dict,
}  # fmt: skip
"""The documented keys and their types."""

_RANGE = re.compile(r"^(?P<kind>int|float|str)(\((?P<low>[^,]*),(?P<high>[^)]*)\))?$")


def check_option(schema_type: str, value: object) -> bool:
    """Does ``value`` pass the documented schema type (without its ``?``)?"""
    if schema_type == "bool":
        return is_bool(value)
    if schema_type in ("email", "url", "password", "device"):
        return is_str(value)
    if schema_type == "port":
        return is_int(value) and 1 <= value <= 65535  # type: ignore[operator]
    if schema_type.startswith("list(") and schema_type.endswith(")"):
        return value in schema_type[5:-1].split("|")
    if schema_type.startswith("match(") and schema_type.endswith(")"):
        return is_str(value) and re.fullmatch(schema_type[6:-1], value) is not None  # type: ignore[arg-type]
    match = _RANGE.match(schema_type)
    assert match, f"not a documented schema type: {schema_type}"
    kind = match["kind"]
    if kind == "str":
        ok, size = is_str(value), len(value) if is_str(value) else 0  # type: ignore[arg-type]
    elif kind == "int":
        ok, size = is_int(value), value
    else:
        ok, size = isinstance(value, int | float) and not is_bool(value), value
    low, high = match["low"], match["high"]
    return bool(
        ok
        and (not low or float(low) <= size)  # type: ignore[operator]
        and (not high or size <= float(high))  # type: ignore[operator]
    )


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return load(ADDON / "config.yaml")


def option_flags() -> dict[str, str]:
    """The run script's option -> flag table, read from the script itself."""
    namespace: dict[str, Any] = {}
    exec(compile((LIB / "options.py").read_text(), "options.py", "exec"), namespace)
    return namespace["OPTION_FLAGS"]


def run_options(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(LIB / "options.py"), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


# ---------------------------------------------------------------- the add-on's files


def test_repository_and_config_follow_the_documented_schema(config: dict[str, Any]) -> None:
    repository = load(REPO / "repository.yaml")
    assert is_str(repository["name"])
    assert set(repository) <= {"name", "url", "maintainer"}
    for key, check in REQUIRED.items():
        assert key in config and check(config[key]), key
    unknown = set(config) - set(REQUIRED) - set(OPTIONAL)
    assert not unknown, f"keys the Supervisor does not know: {unknown}"
    for key, value in config.items():
        assert {**REQUIRED, **OPTIONAL}[key](value), f"{key}: {value!r}"
    assert re.fullmatch(r"[a-z0-9_]+", config["slug"]) and config["slug"] == ADDON.name
    assert set(config["arch"]) == {"amd64", "aarch64"}
    assert config["discovery"] == ["wyoming"]
    assert "10200/tcp" in config["ports"]
    assert config["ingress"] is True and config["ingress_port"] == 8099
    assert config["version"] == __version__  # the PyPI release the image installs


def test_options_and_schema_agree(config: dict[str, Any]) -> None:
    options, schema = config["options"], config["schema"]
    for name, schema_type in schema.items():
        optional = schema_type.endswith("?")
        if optional:
            assert name not in options, f"{name} is optional ('?'): it must have no default"
        else:
            assert name in options, f"{name} is required: it needs a default in options"
    for name, value in options.items():
        assert name in schema, f"option {name} has no schema"
        assert check_option(schema[name].rstrip("?"), value), f"{name}={value!r} vs {schema[name]}"


def test_every_option_is_a_real_server_flag(config: dict[str, Any]) -> None:
    flags = option_flags()
    assert set(flags) == set(config["schema"])
    actions = {flag: a for a in build_parser()._actions for flag in a.option_strings}
    for name, flag in flags.items():
        assert flag in actions, f"{name} -> {flag}: not a flag of the server"
        is_switch = actions[flag].nargs == 0
        assert is_switch == (config["schema"][name] == "bool"), name


def test_translations_name_every_option_and_port(config: dict[str, Any]) -> None:
    translations = load(ADDON / "translations/en.yaml")
    assert set(translations["configuration"]) == set(config["schema"])
    for name, text in translations["configuration"].items():
        assert text["name"] and text["description"], name
    assert set(translations["network"]) == set(config["ports"])


def test_build_files_images_and_docs(config: dict[str, Any]) -> None:
    build = load(ADDON / "build.yaml")
    assert set(build["build_from"]) == set(config["arch"])
    assert "EXTRAS" in build["args"]
    dockerfile = (ADDON / "Dockerfile").read_text()
    for line in ("ARG BUILD_FROM", "FROM ${BUILD_FROM}", "ARG EXTRAS", "ARG BUILD_VERSION"):
        assert line in dockerfile, line
    with Image.open(ADDON / "icon.png") as icon:
        assert icon.format == "PNG" and icon.size[0] == icon.size[1] >= 96
    with Image.open(ADDON / "logo.png") as logo:
        assert logo.format == "PNG" and logo.size[0] > logo.size[1]
    docs = (ADDON / "DOCS.md").read_text()
    for name in config["schema"]:
        assert f"`{name}`" in docs, f"DOCS.md does not explain {name}"
    assert ENTRY.stat().st_mode & stat.S_IXUSR


# ---------------------------------------------------------------- the run script

SAMPLE_OPTIONS = {
    "voice": "en_US-lessac-medium",
    "speaker": "p225",
    "length_scale": 1.2,
    "sentence_silence": 0.25,
    "samples_per_chunk": 2048,
    "chunk_size": 96,
    "first_chunk_size": 12,
    "max_utterance_phonemes": 150,
    "max_voices": 3,
    "max_concurrent": 1,
    "phonemizer": "",
    "update_voices": True,
    "local_files_only": False,
    "debug_logging": True,
}
EXPECTED_COMMAND = [
    "wyoming-piper-stream",
    "--uri", "tcp://0.0.0.0:10200",
    "--data-dir", "/data",
    "--data-dir", "/share/piper",
    "--download-dir", "/data",
    "--cache-dir", "/data/cache",
    "--web-server",
    "--web-server-host", "0.0.0.0",
    "--web-server-port", "8099",
    "--web-server-allow", "172.30.32.2",
    "--voice", "en_US-lessac-medium",
    "--speaker", "p225",
    "--length-scale", "1.2",
    "--sentence-silence", "0.25",
    "--samples-per-chunk", "2048",
    "--chunk-size", "96",
    "--first-chunk-size", "12",
    "--max-utterance-phonemes", "150",
    "--max-voices", "3",
    "--max-concurrent", "1",
    "--update-voices",
    "--debug",
]  # fmt: skip


def test_run_script_turns_options_into_the_command_line(tmp_path: Path) -> None:
    options = tmp_path / "options.json"
    options.write_text(json.dumps(SAMPLE_OPTIONS))
    result = run_options("--print", str(options))
    assert result.returncode == 0, result.stderr
    argv = json.loads(result.stdout)
    assert argv == EXPECTED_COMMAND
    settings = parse_settings(argv[1:])  # the server's own parser takes it as it is
    assert settings.uri == "tcp://0.0.0.0:10200"
    assert settings.voices.default_voice == "en_US-lessac-medium"
    assert settings.voices.data_dirs == (Path("/data"), Path("/share/piper"))
    assert settings.voices.cache_dir == Path("/data/cache")
    assert settings.synthesis.length_scale == 1.2 and settings.synthesis.speaker == "p225"
    assert settings.synthesis.noise_scale is None  # unset optional: the voice's own
    assert (settings.streamer.chunk_size, settings.streamer.first_chunk) == (96, 12)
    assert settings.voices.update_voices and settings.debug
    assert settings.voices.phonemizer is None  # empty string: not passed


def test_run_script_execs_the_server_with_that_command_line(tmp_path: Path) -> None:
    # A stand-in server on PATH records the argv it was exec'd with.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "argv.json"
    stand_in = bin_dir / "wyoming-piper-stream"
    stand_in.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"open({str(record)!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
    )
    stand_in.chmod(0o755)
    options = tmp_path / "options.json"
    options.write_text(json.dumps(SAMPLE_OPTIONS))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = run_options(str(options), env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(record.read_text()) == EXPECTED_COMMAND[1:]


def test_run_script_refuses_missing_options_in_one_line(tmp_path: Path) -> None:
    result = run_options(str(tmp_path / "missing.json"))
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "cannot read the add-on options" in result.stderr


def test_run_script_skips_unknown_options_with_a_warning(tmp_path: Path) -> None:
    options = tmp_path / "options.json"
    options.write_text(json.dumps({"voice": "x", "max_piper_procs": 2}))
    result = run_options("--print", str(options))
    assert json.loads(result.stdout)[-2:] == ["--voice", "x"]
    assert "ignoring unknown option 'max_piper_procs'" in result.stderr


# ---------------------------------------------------------------- discovery


@dataclass
class FakeSupervisor:
    """Records what is posted to /discovery, answering as the Supervisor does."""

    url: str = ""
    posts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@pytest.fixture
async def supervisor() -> AsyncIterator[FakeSupervisor]:
    fake = FakeSupervisor()

    async def discovery(request: web.Request) -> web.Response:
        fake.posts.append((request.headers.get("Authorization", ""), await request.json()))
        return web.json_response({"result": "ok", "data": {"uuid": "0" * 32}})

    app = web.Application()
    app.router.add_post("/discovery", discovery)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()


async def run_discovery(supervisor: FakeSupervisor, uri: str, wait: float) -> tuple[int, str]:
    env = {
        **os.environ,
        "SUPERVISOR_TOKEN": "test-token-123",
        "SUPERVISOR_API": supervisor.url,
        "PIPER_STREAM_URI": uri,
        "PIPER_STREAM_DISCOVERY_WAIT": str(wait),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(LIB / "discovery.py"), env=env, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode or 0, stderr.decode()


async def test_discovery_announces_wyoming_with_the_token_once_describe_answers(
    supervisor: FakeSupervisor, tmp_path: Path
) -> None:
    # Preloading, as the add-on runs: the health check passes once the default voice is usable.
    with run_server(tmp_path) as server:
        code, log = await run_discovery(supervisor, server.uri, wait=60)
    assert code == 0, log
    assert supervisor.posts == [
        (
            "Bearer test-token-123",
            {"service": "wyoming", "config": {"uri": f"tcp://{socket.gethostname()}:10200"}},
        )
    ]


async def test_discovery_posts_nothing_while_describe_does_not_answer(
    supervisor: FakeSupervisor,
) -> None:
    with socket.socket() as silent:  # accepts connections, never answers describe
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        uri = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
        code, log = await run_discovery(supervisor, uri, wait=3)
    assert code == 1
    assert "did not answer describe" in log
    assert supervisor.posts == []
