"""What the cache holds for one key, the one builder of it, and how a stored one is checked."""

from __future__ import annotations

import enum
import hashlib

import msgspec


class CachedEntry(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """Juspay's bytes plus what is needed to answer, and whom they belong to.

    gc=False: it holds only bytes, strings and numbers (no cycles are possible), so the
    garbage collector need not track tens of thousands of them.
    """

    # The key it was written for (merchant, order, version, options): an entry read back
    # under any other key is not an answer for that key.
    key: str
    status_code: int
    body: bytes
    content_type: str
    # blake2b of the body: the ETag callers see, and the checksum a read verifies.
    etag: str
    # Wall-clock seconds, because entries are shared between replicas.
    fetched_at: float
    fresh_until: float
    order_status: str
    # The policy's class for this answer ("final", "failure", ...): decides stale use.
    status_class: str
    # The order's Redis generation it was stored under ("" in memory): an entry is served
    # only while its order is still in that generation.
    generation: str = ""
    # The epoch of the Redis primary its read was fenced on ("" in memory; see epoch.py): an
    # entry is served only by that primary in that term, never after a restart or promotion.
    epoch: str = ""
    # What a caller acts on, independent of the version and options asked for (see
    # state_of): a fresh read whose state differs from a stored variant's invalidates them all.
    state: str = ""


def etag_for(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def new_entry(
    key: str,
    status_code: int,
    body: bytes,
    content_type: str,
    *,
    order_status: str,
    status_class: str,
    now: float,
    ttl: int,
    state: str = "",
) -> CachedEntry:
    """The entry for one upstream answer under `key`, fresh for `ttl` seconds from `now`."""
    return CachedEntry(
        key=key,
        status_code=status_code,
        body=body,
        content_type=content_type,
        etag=etag_for(body),
        fetched_at=now,
        fresh_until=now + ttl,
        order_status=order_status,
        status_class=status_class,
        state=state,
    )


class Rejected(enum.StrEnum):
    """Why a stored entry was not served (a bounded metric label)."""

    UNDECODABLE = "undecodable"
    FOREIGN_KEY = "foreign_key"
    CHECKSUM = "checksum"
    # Stored before the Redis that holds it restarted or was promoted (see epoch.py).
    EPOCH = "epoch"


class EntryCodec:
    """msgpack encoding of entries, and the checks a read from a shared store must pass."""

    def __init__(self) -> None:
        self._encode = msgspec.msgpack.Encoder().encode
        self._decode = msgspec.msgpack.Decoder(CachedEntry).decode

    def encode(self, entry: CachedEntry) -> bytes:
        return self._encode(entry)

    def decode(self, raw: bytes, key: str) -> CachedEntry | Rejected:
        """The entry stored under `key`, or why it cannot be served for it."""
        try:
            entry = self._decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            # Written by another build, damaged, or hostile: not an answer we can vouch for.
            return Rejected.UNDECODABLE
        if entry.key != key:
            return Rejected.FOREIGN_KEY
        if etag_for(entry.body) != entry.etag:
            return Rejected.CHECKSUM
        return entry
