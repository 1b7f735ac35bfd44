"""The key schema: one place builds every key, and keys parse back to their order."""

from __future__ import annotations

from proxy.cache import keys
from proxy.cache.keys import KeySchema


def test_entry_key_holds_merchant_order_version_and_option() -> None:
    schema = KeySchema("op")
    key = schema.entry("m1", "O1", "2023-06-30", True)
    assert key == "op:v3:{m1:O1}:2023-06-30:1"
    assert schema.entry("m2", "O1", "2023-06-30", True) != key
    assert schema.entry("m1", "O1", "2021-01-01", True) != key
    assert schema.entry("m1", "O1", "2023-06-30", False) != key
    assert schema.entry("m1", "O1", "2023-06-30", True, "txn-1") == key + ":t:txn-1"


def test_every_key_of_an_order_shares_its_base_and_cluster_slot_tag() -> None:
    schema = KeySchema("op")
    base = schema.base("m1", "O1")
    entry = schema.entry("m1", "O1", "2023-06-30", False)
    derived = [
        entry,
        keys.gen_key(base),
        keys.variants_key(base),
        keys.lock_key(entry),
        keys.answer_key(entry),
        keys.followers_key(entry),
        keys.poll_key(entry),
    ]
    assert {keys.base_of(key) for key in derived} == {base}
    assert all("{m1:O1}" in key for key in derived)
    assert len(set(derived)) == len(derived)


def test_one_order_id_is_never_a_prefix_match_for_another() -> None:
    schema = KeySchema("op")
    assert keys.base_of(schema.entry("m1", "O10", "2023-06-30", False)) != schema.base("m1", "O1")
