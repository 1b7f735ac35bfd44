"""Helpers for the cache package's tests: entries and a key schema under a private prefix."""

from __future__ import annotations

import time
import uuid

import pytest

from proxy.cache.entries import CachedEntry, etag_for
from proxy.cache.keys import KeySchema


def make_entry(
    key: str, body: bytes = b'{"status": "CHARGED"}', *, fresh_for: float = 600.0
) -> CachedEntry:
    now = time.time()
    return CachedEntry(
        key=key,
        status_code=200,
        body=body,
        content_type="application/json",
        etag=etag_for(body),
        fetched_at=now,
        fresh_until=now + fresh_for,
        order_status="CHARGED",
        status_class="final",
    )


@pytest.fixture
def schema() -> KeySchema:
    return KeySchema(f"test-{uuid.uuid4().hex[:12]}")
