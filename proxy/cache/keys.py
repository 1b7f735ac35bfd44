"""Every Redis key and channel name the proxy uses, stated once.

    {prefix}:v3:{merchant:order}                      the order's base (a Redis Cluster hash tag:
                                                      everything about one order sits in one slot)
    <base>:gen                                        the order's generation (fences saves)
    <base>:variants                                   hash: entry key -> state|etag of each variant
    <base>:floor                                      the last webhook's lower bound (expires)
    <base>:<version>:<gw>[:t:<txn_uuid>]              one cached answer (an entry key)
    <entry>:lock | :answer | :followers | :poll       cross-replica coalescing and wait polling
    {prefix}:events                                   the pub/sub channel between replicas
    {prefix}:ratelimit:{client}:all | :upstream       a client's rate limits (web/ratelimit.py)

Merchant ids, order ids and txn uuids are validated to exclude braces and colons, so a key
can be parsed back to its base without ambiguity.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

# Bump when the entry encoding or the key layout changes: old keys are then simply not found.
FORMAT = "v3"


@dataclass(frozen=True, slots=True)
class KeySchema:
    prefix: str

    @property
    def channel(self) -> str:
        return f"{self.prefix}:events"

    def base(self, merchant_id: str, order_id: str) -> str:
        """What every key about one merchant's order starts with."""
        return f"{self.prefix}:{FORMAT}:{{{merchant_id}:{order_id}}}"

    def entry(
        self,
        merchant_id: str,
        order_id: str,
        version: str,
        full_gateway_response: bool,
        txn_uuid: str | None = None,
    ) -> str:
        """The cache key of one variant: merchant, order, version and options."""
        key = f"{self.base(merchant_id, order_id)}:{version}:{int(full_gateway_response)}"
        return key if txn_uuid is None else f"{key}:t:{txn_uuid}"


def rate_limit_key(prefix: str, client: str, scope: str) -> str:
    """A client's rate-limit state; the name is %-escaped so a brace or colon in it cannot
    break the hash tag."""
    return f"{prefix}:ratelimit:{{{quote(client, safe='')}}}:{scope}"


def base_of(key: str) -> str:
    """The order base of any key built by KeySchema (up to the hash tag's closing brace)."""
    return key[: key.index("}") + 1]


def is_attempt(key: str) -> bool:
    """Whether an entry key is one payment attempt's (`txn_uuid`) answer."""
    return ":t:" in key


def gen_key(base: str) -> str:
    return base + ":gen"


def floor_key(base: str) -> str:
    return base + ":floor"


def variants_key(base: str) -> str:
    return base + ":variants"


def lock_key(entry: str) -> str:
    return entry + ":lock"


def answer_key(entry: str) -> str:
    return entry + ":answer"


def followers_key(entry: str) -> str:
    return entry + ":followers"


def poll_key(entry: str) -> str:
    return entry + ":poll"
