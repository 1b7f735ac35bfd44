"""What a read of one order is and what it produces: the query, the answer, a miss."""

from __future__ import annotations

import asyncio
import enum

import msgspec

from proxy.cache.entries import CachedEntry


class CacheResult(enum.StrEnum):
    """How an answer was produced; the value is the metric label, `header` the X-Cache value."""

    HIT = "hit"
    MISS = "miss"
    BYPASS = "bypass"
    STALE = "stale"
    # The cache could not be asked (Redis down); the caller sees MISS.
    ERROR = "error"

    @property
    def header(self) -> str:
        return "MISS" if self is CacheResult.ERROR else self.value.upper()


class OrderQuery(msgspec.Struct, frozen=True):
    """A validated request for one order, as the caller asked for it."""

    merchant_id: str
    order_id: str
    version: str
    full_gateway_response: bool = False
    routing_id: str | None = None
    no_cache: bool = False
    # No-cache only: the loop time the request arrived; only a read that started at or after
    # it may answer the request.
    not_before: float | None = None
    # One payment attempt (`txn_uuid`): forwarded and keyed; its answer is not the order's.
    txn_uuid: str | None = None


def fresh(query: OrderQuery) -> OrderQuery:
    """The same query as a no-cache read starting now."""
    return msgspec.structs.replace(
        query, no_cache=True, not_before=asyncio.get_running_loop().time()
    )


class OrderAnswer(msgspec.Struct, frozen=True):
    """An order's answer, and how it was produced (for X-Cache, Age and the request record)."""

    entry: CachedEntry
    cache: CacheResult
    age: int | None
    coalesced: bool = False
    upstream_status: int | None = None
    upstream_elapsed: float | None = None
    # A hit: seconds of freshness left (Cache-Status ttl=). A read: whether its answer was kept.
    ttl: int | None = None
    stored: bool = False


class Miss(msgspec.Struct, frozen=True):
    """A read the cache did not answer (a miss, a failed lookup or a no-cache read): what
    `fetch` needs to answer it from Juspay."""

    key: str
    query: OrderQuery
    # MISS, ERROR (Redis could not be asked) or BYPASS (no-cache).
    cache: CacheResult
    # What the lookup saw of the order's generation (see _Flight.seen).
    seen: tuple[str, object] | None = None
    # An entry past its freshness, served only if Juspay fails (stale-if-error).
    stale: CachedEntry | None = None
