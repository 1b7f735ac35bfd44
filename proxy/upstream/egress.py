"""How calls to Juspay leave the host: through HTTPS_PROXY unless NO_PROXY names Juspay's host,
and verified against JUSPAY_CA_FILE when one is set (else the system's CAs).

Only the Juspay session uses this; Redis never goes through a forward proxy.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from yarl import URL

from proxy.config.secrets import Secret


@dataclass(frozen=True, slots=True)
class Proxy:
    """The forward proxy Juspay calls go through, and the header that authenticates them to
    it (sent on the CONNECT only, never to Juspay)."""

    url: URL
    headers: dict[str, str] | None


def ca_context(ca_file: Path) -> ssl.SSLContext:
    """A verifying TLS context trusting only the CAs in `ca_file` (OSError, ssl.SSLError if
    it cannot be read or holds no certificate)."""
    return ssl.create_default_context(cafile=str(ca_file))


def tls_for(ca_file: Path | None) -> ssl.SSLContext | bool:
    """JUSPAY_CA_FILE's context, else True: the system's CAs, verified."""
    return ca_context(ca_file) if ca_file is not None else True


def proxy_for(base_url: URL, https_proxy: Secret | None, no_proxy: str) -> Proxy | None:
    """HTTPS_PROXY for an https upstream that NO_PROXY does not name, else None (direct)."""
    if (
        https_proxy is None
        or base_url.scheme != "https"
        or bypasses(base_url.host or "", base_url.port, no_proxy)
    ):
        return None
    url = URL(https_proxy.reveal())
    if url.user is None:
        return Proxy(url, None)
    credentials = aiohttp.encode_basic_auth(url.user, url.password or "")
    return Proxy(url.with_user(None), {"Proxy-Authorization": credentials})


def bypasses(host: str, port: int | None, no_proxy: str) -> bool:
    """Whether NO_PROXY names `host` the way curl reads it: `*` for every host; a name that
    matches the host or a domain it is under (a leading dot is optional); an IP address or a
    CIDR block; any entry may end in `:port`."""
    host = host.lower().strip("[]")
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        name, _, entry_port = entry.rpartition(":") if _has_port(entry) else (entry, "", "")
        if entry_port and port is not None and entry_port != str(port):
            continue
        name = name.strip("[]").lstrip(".")
        if host == name or host.endswith("." + name) or _in_block(host, name):
            return True
    return False


def _has_port(entry: str) -> bool:
    # "host:443" or "[::1]:443"; a bare IPv6 address has colons but no port.
    if entry.startswith("["):
        return "]:" in entry
    return entry.count(":") == 1


def _in_block(host: str, entry: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
        return address in ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
