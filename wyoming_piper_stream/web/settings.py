"""Where the web page listens, who may reach it, where uploaded voices go."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from wyoming_piper_stream.engine.settings_field import setting

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_MAX_UPLOAD_BYTES = 1 << 30
"""Largest upload (model and config together): Piper "high" voices are ~110 MB."""


@dataclass(frozen=True)
class WebSettings:
    """The web page's settings, from ``--web-server*`` (field names are the flags')."""

    web_server: bool = setting(False, "serve the web page: voices, try it, custom voices, status")
    web_server_host: str = setting("127.0.0.1", "address of the web page")
    web_server_port: int = setting(5000, "port of the web page", minimum=1)
    web_server_allow: tuple[IPNetwork, ...] = setting(
        (), "only this address or CIDR range may use the web page (repeatable)", shown="any"
    )
    upload_dir: Path | None = None
    """Where uploaded voices are written (``--download-dir``); ``None``: uploads are off."""

    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES


def parse_allow(values: list[str]) -> tuple[IPNetwork, ...]:
    """Addresses or CIDR ranges; raises ValueError on a typo (checked at start)."""
    return tuple(ipaddress.ip_network(value, strict=False) for value in values)


def is_allowed(peer: str | None, allow: tuple[IPNetwork, ...]) -> bool:
    """Whether the TCP peer (never a forwarded header) may use the page."""
    if not allow:
        return True
    if not peer:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d
    return any(address in network for network in allow)
