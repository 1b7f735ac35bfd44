"""Client keys: the internal services allowed to call the proxy, and their rate limits."""

from __future__ import annotations

import math

from proxy.config.errors import SettingsError
from proxy.config.meta import bounds
from proxy.config.settings import ClientSettings, RateLimit
from proxy.config.tomlfile import ClientToml

_SHA256_HEX = frozenset("0123456789abcdef")


def clients_from(items: list[ClientToml], merchant_ids: set[str]) -> tuple[ClientSettings, ...]:
    clients: list[ClientSettings] = []
    seen_names: set[str] = set()
    seen_hashes: set[str] = set()
    for index, item in enumerate(items):
        where = f"PROXY_CONFIG_FILE clients[{index}]"
        if not item.name or not item.name.isprintable() or len(item.name) > 64:
            raise SettingsError(f"{where}.name", "must be 1-64 printable characters")
        digest = item.key_sha256.strip().lower()
        if len(digest) != 64 or not set(digest) <= _SHA256_HEX:
            raise SettingsError(
                f"{where}.key_sha256",
                "must be the 64-hex-digit SHA-256 of the client key "
                "(`order-proxy client-key` makes a key and its hash)",
            )
        if item.name in seen_names or digest in seen_hashes:
            raise SettingsError(where, "client name and key must be unique")
        seen_names.add(item.name)
        seen_hashes.add(digest)
        for merchant in item.merchants:
            if merchant != "*" and merchant not in merchant_ids:
                raise SettingsError(f"{where}.merchants", f"{merchant!r} is not a listed merchant")
        clients.append(
            ClientSettings(
                name=item.name,
                key_sha256=digest,
                merchants=tuple(item.merchants),
                operator=item.operator,
                rate_limit=_rate_limit(where, "", item.rate_per_second, item.burst),
                upstream_rate_limit=_rate_limit(
                    where, "upstream_", item.upstream_rate_per_second, item.upstream_burst
                ),
            )
        )
    return tuple(clients)


def _rate_limit(where: str, kind: str, rate: float | None, burst: int | None) -> RateLimit | None:
    """`{kind}rate_per_second` and `{kind}burst` of one client; burst defaults to one second's
    worth of requests (at least 1)."""
    if rate is None:
        if burst is not None:
            raise SettingsError(f"{where}.{kind}burst", f"needs {kind}rate_per_second as well")
        return None
    low, high = bounds(RateLimit, "rate_per_second")
    if not low <= rate <= high:  # also refuses nan and inf
        raise SettingsError(
            f"{where}.{kind}rate_per_second", f"must be between {low} and {high}, got {rate}"
        )
    low, high = bounds(RateLimit, "burst")
    if burst is None:
        burst = max(1, math.ceil(rate))
    elif not low <= burst <= high:
        raise SettingsError(f"{where}.{kind}burst", f"must be {low} to {high}, got {burst}")
    return RateLimit(rate_per_second=rate, burst=burst)
