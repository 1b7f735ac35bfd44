"""The in-process store: bounds, expiry, O(variants) invalidation and fenced saves."""

from __future__ import annotations

from proxy.cache.keys import KeySchema
from proxy.cache.memory import MemoryStore
from tests.cache.conftest import make_entry

SCHEMA = KeySchema("p")


def key(order_id: str, version: str = "2023-06-30") -> str:
    return SCHEMA.entry("m1", order_id, version, False)


def test_memory_store_is_bounded_by_entries_lru_first() -> None:
    store = MemoryStore(max_entries=2, max_bytes=10**6)
    a, b, c = key("A"), key("B"), key("C")
    store.set(a, make_entry(a), 60)
    store.set(b, make_entry(b), 60)
    assert store.get(a) is not None  # a is now the most recent
    store.set(c, make_entry(c), 60)
    assert store.get(b) is None
    assert store.get(a) is not None
    assert len(store) == 2


def test_memory_store_is_bounded_by_bytes() -> None:
    store = MemoryStore(max_entries=1000, max_bytes=10_000)
    for i in range(50):
        store.set(key(f"K{i}"), make_entry(key(f"K{i}"), b"x" * 1000), 60)
    assert store.bytes <= 10_000
    assert len(store) < 50
    store.set(key("HUGE"), make_entry(key("HUGE"), b"x" * 20_000), 60)
    assert store.get(key("HUGE")) is None


def test_memory_store_entries_expire() -> None:
    now = [100.0]
    store = MemoryStore(max_entries=10, max_bytes=10**6, clock=lambda: now[0])
    store.set(key("A"), make_entry(key("A")), 5)
    assert store.get(key("A")) is not None
    now[0] = 105.0
    assert store.get(key("A")) is None
    assert store.bytes == 0


def test_invalidating_an_order_drops_every_variant_and_nothing_else() -> None:
    store = MemoryStore(max_entries=100, max_bytes=10**6)
    variants = [key("O1", v) for v in ("2023-06-30", "2021-01-01")]
    kept = key("O10")
    for k in [*variants, kept]:
        store.set(k, make_entry(k), 60)
    assert store.invalidate(SCHEMA.base("m1", "O1")) == 2
    assert all(store.get(k) is None for k in variants)
    assert store.get(kept) is not None
    assert store.bytes == len(make_entry(kept).body) + len(kept) + 512


def test_invalidation_touches_only_the_orders_own_keys() -> None:
    # O(variants): with many orders cached, invalidating one looks at its keys alone.
    store = MemoryStore(max_entries=100_000, max_bytes=10**9)
    for i in range(20_000):
        store.set(key(f"N{i}"), make_entry(key(f"N{i}")), 60)
    base = SCHEMA.base("m1", "N7")
    assert store._by_base[base] == {key("N7")}  # the index the invalidation walks
    assert store.invalidate(base) == 1
    assert len(store) == 19_999


def test_a_save_noted_before_an_invalidation_is_refused() -> None:
    store = MemoryStore(max_entries=10, max_bytes=10**6)
    base, k = SCHEMA.base("m1", "F1"), key("F1")
    fence = store.fence(base)
    store.invalidate(base)
    assert store.set(k, make_entry(k), 60, fence) is False
    assert store.get(k) is None
    assert store.set(k, make_entry(k), 60, store.fence(base)) is True


def test_clearing_the_store_fences_out_every_read_in_flight() -> None:
    store = MemoryStore(max_entries=10, max_bytes=10**6)
    base, k = SCHEMA.base("m1", "F2"), key("F2")
    fence = store.fence(base)
    store.clear()
    assert store.set(k, make_entry(k), 60, fence) is False


def test_forgetting_old_generations_never_lets_an_old_fence_pass() -> None:
    # Generations are bounded like entries: evicting one moves the floor, so a fence taken
    # before can never match a generation that restarted from zero.
    store = MemoryStore(max_entries=2, max_bytes=10**6)
    base, k = SCHEMA.base("m1", "G0"), key("G0")
    fence = store.fence(base)
    store.invalidate(base)
    for i in range(1, 4):  # pushes G0's generation out of the bounded table
        store.invalidate(SCHEMA.base("m1", f"G{i}"))
    assert store.set(k, make_entry(k), 60, fence) is False
