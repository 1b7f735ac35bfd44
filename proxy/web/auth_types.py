"""The small interface app keys need from the auth module (kept apart to avoid an import cycle)."""

from __future__ import annotations

from typing import Protocol

from proxy.web.webhook_jwt import JwtKeyring


class WebhookCheck(Protocol):
    """What the webhook handler asks of proxy.auth.WebhookAuth."""

    @property
    def enabled(self) -> bool: ...

    @property
    def has_jwt(self) -> bool: ...

    def merchants_for(self, header: str | None) -> frozenset[str]: ...

    def keyring_for(self, kid: str | None) -> tuple[str, JwtKeyring] | None: ...

    def requires_jwt(self, merchant_id: str) -> bool: ...
