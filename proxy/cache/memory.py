"""The in-process store: an LRU bounded by entries and bytes, indexed by order, fenced by
per-order generations.

It is the whole cache without Redis, and the front layer before Redis with it. Either way a
save carries the generation its read noted before calling Juspay (a `Fence`), and is refused
if the order was invalidated since: the same rule the Redis store applies with its script.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from proxy.cache.entries import CachedEntry
from proxy.cache.keys import base_of

# Bytes an entry costs beyond its body and key: the Struct, its strings, the LRU node, the
# order index and allocator slack. Measured: 100k 4 KB entries through a 64 MiB store grew
# RSS by 66.5 MiB with 320 here, so 512 keeps the byte bound honest.
_ENTRY_OVERHEAD = 512

# A local generation: (the order's counter, the store-wide floor). The floor moves when the
# store forgets generations (eviction, clear), which invalidates every fence noted before.
Fence = tuple[int, int]


class MemoryStore:
    """Entries with their expiry, an index from each order to its variants, and generations."""

    def __init__(
        self,
        *,
        max_entries: int,
        max_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._clock = clock
        # key -> (entry, expires at, bytes, base, born: when the read behind it started)
        self._data: OrderedDict[str, tuple[CachedEntry, float, int, str, float]] = OrderedDict()
        # base -> keys of its variants: invalidating one order is O(its variants), not a scan.
        self._by_base: dict[str, set[str]] = {}
        # base -> generation, for orders invalidated lately; bounded like the entries.
        self._gens: OrderedDict[str, int] = OrderedDict()
        self._counter = 0
        self._floor = 0
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._data)

    def now(self) -> float:
        """This store's clock (what `born` is measured in)."""
        return self._clock()

    # --- generations ------------------------------------------------------------------------
    def fence(self, base: str) -> Fence:
        """The order's generation now; a read notes it before it calls Juspay."""
        return (self._gens.get(base, 0), self._floor)

    def current(self, base: str, fence: Fence) -> bool:
        return fence == (self._gens.get(base, 0), self._floor)

    def invalidate(self, base: str) -> int:
        """Bump the order's generation and drop every variant; the count dropped."""
        self._counter += 1
        self._gens[base] = self._counter
        self._gens.move_to_end(base)
        if len(self._gens) > self._max_entries:
            self._gens.popitem(last=False)
            # A forgotten generation would read as 0 again: fence out every read in flight.
            self._floor += 1
        keys = self._by_base.pop(base, None)
        if not keys:
            return 0
        for key in keys:
            self._drop(key, unindex=False)
        return len(keys)

    def clear(self) -> None:
        """Forget everything, and fence out every read in flight."""
        self._data.clear()
        self._by_base.clear()
        self._gens.clear()
        self._floor += 1
        self.bytes = 0

    # --- entries ----------------------------------------------------------------------------
    def get(self, key: str, max_age: float | None = None) -> CachedEntry | None:
        """The live entry for `key`; with `max_age`, only if the read behind it started at
        most that many seconds ago."""
        item = self._data.get(key)
        if item is None:
            return None
        now = self._clock()
        if now >= item[1]:
            self._drop(key)
            return None
        if max_age is not None and now - item[4] > max_age:
            return None
        self._data.move_to_end(key)
        return item[0]

    def variants(self, base: str) -> list[CachedEntry]:
        """The live entries of every variant of one order."""
        found = (self.get(key) for key in list(self._by_base.get(base, ())))
        return [entry for entry in found if entry is not None]

    def etag_of(self, key: str) -> str | None:
        entry = self.get(key)
        return entry.etag if entry is not None else None

    def set(
        self,
        key: str,
        entry: CachedEntry,
        ttl: float,
        fence: Fence | None = None,
        born: float | None = None,
    ) -> bool:
        """Store unless the order was invalidated since `fence` was noted; True if stored.
        `born` (this store's clock; default now): when the read behind the entry started; the
        entry expires `ttl` seconds after it."""
        base = base_of(key)
        if fence is not None and not self.current(base, fence):
            return False
        if ttl <= 0:
            return False
        size = len(entry.body) + len(key) + _ENTRY_OVERHEAD
        if size > self._max_bytes:
            return False
        now = self._clock()
        born = now if born is None else min(born, now)
        if born + ttl <= now:
            return False
        self._drop(key)
        self._data[key] = (entry, born + ttl, size, base, born)
        self._by_base.setdefault(base, set()).add(key)
        self.bytes += size
        while len(self._data) > self._max_entries or self.bytes > self._max_bytes:
            self._drop(next(iter(self._data)))
        return True

    def _drop(self, key: str, *, unindex: bool = True) -> bool:
        item = self._data.pop(key, None)
        if item is None:
            return False
        self.bytes -= item[2]
        if unindex:
            keys = self._by_base.get(item[3])
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_base[item[3]]
        return True
