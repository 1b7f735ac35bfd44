"""The small interface app keys need from the auth module (kept apart to avoid an import cycle)."""

from __future__ import annotations

from typing import Protocol


class WebhookCheck(Protocol):
    def check(self, header: str | None) -> bool: ...
