"""The RFC 9211 `Cache-Status` header of an order answer, beside X-Cache.

One member, named for the proxy: `order-proxy; hit; ttl=N` when the cache answered (N: seconds
of freshness left), else the reason it went to Juspay: `fwd=miss` (nothing usable cached, or
Redis could not be asked), `fwd=request` (the caller's `Cache-Control: no-cache`) or `fwd=stale`
(a stale final entry, served because Juspay failed). `stored` when the answer was kept;
`collapsed` when it was shared with another request's read.
"""

from __future__ import annotations

from proxy.core.orders import CacheResult, OrderAnswer

_HIT = "order-proxy; hit; ttl="
_FORWARDED = {
    CacheResult.MISS: "order-proxy; fwd=miss",
    CacheResult.ERROR: "order-proxy; fwd=miss",
    CacheResult.BYPASS: "order-proxy; fwd=request",
    CacheResult.STALE: "order-proxy; fwd=stale",
}


def cache_status(answer: OrderAnswer) -> str:
    """The header's value for one answer."""
    if answer.cache is CacheResult.HIT:
        return _HIT + str(answer.ttl if answer.ttl is not None else 0)
    value = _FORWARDED[answer.cache]
    if answer.stored:
        value += "; stored"
    if answer.coalesced:
        value += "; collapsed"
    return value
