"""What a webhook sender without credentials can hold: bodies in flight, RSA decryptions.

With JWT webhooks the token is the credential, so every caller's body is read before anyone
knows who sent it: those reads take one of `max_unauthenticated_bodies` slots (more at once
are a 503 before a byte of the body is read; each read is also bounded in time by the
connection's body deadline). A token that passes the cheap checks (size, shape, header,
algorithms, a kid this proxy holds) still costs an RSA decryption, about a millisecond of a
core: at most `jwt_max_per_second` start per second (a slot kept busy back to back would
still take a core), at most `jwt_max_concurrent` run at once with at most `jwt_max_queue`
waiting, off the event loop; the rest are a 503 at once, so a forged-token flood costs the
proxy a bounded share of the CPU, and Juspay retries its own webhooks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from aiohttp import web

from proxy.config.settings import RateLimit, ServerSettings
from proxy.core.errors import Overloaded
from proxy.observe.metrics import Metrics
from proxy.upstream.bulkhead import Bulkhead
from proxy.web import jwt_wire
from proxy.web.jwt_wire import WebhookTokenError
from proxy.web.ratelimit import LocalGcra

T = TypeVar("T")


class WebhookLimits:
    """The two bounds above, for one app."""

    def __init__(self, settings: ServerSettings, metrics: Metrics) -> None:
        self._metrics = metrics
        self._max_bodies = settings.max_unauthenticated_bodies
        self._bodies = 0
        # Bursts of a second's worth; GCRA as for client rate limits, in this process only.
        self._rate = RateLimit(
            settings.jwt_max_per_second, max(1, int(settings.jwt_max_per_second))
        )
        self._gcra = LocalGcra()
        self._decryptions = Bulkhead(
            max_concurrent=settings.jwt_max_concurrent,
            max_queue=settings.jwt_max_queue,
            on_shed=lambda: metrics.connections_refused.labels(reason="jwt_busy").inc(),
        )

    @property
    def bodies_in_flight(self) -> int:
        return self._bodies

    @contextlib.asynccontextmanager
    async def unauthenticated_body(self) -> AsyncIterator[None]:
        """A slot for reading one body whose sender is not known yet, or Overloaded."""
        if self._bodies >= self._max_bodies:
            self._metrics.connections_refused.labels(reason="webhook_bodies").inc()
            raise Overloaded("too many webhook bodies are being received", retry_after=1)
        self._bodies += 1
        try:
            yield
        finally:
            self._bodies -= 1

    async def decrypt(self, work: Callable[[], T]) -> T:
        """Run one decryption (`work`, blocking) in a thread, within the bounds, or Overloaded."""
        if self._gcra.acquire("jwt", self._rate) > 0:
            self._metrics.connections_refused.labels(reason="jwt_busy").inc()
            raise Overloaded("too many JWT webhooks are being decrypted", retry_after=1)
        try:
            async with self._decryptions.slot():
                return await asyncio.to_thread(work)
        except Overloaded:
            raise Overloaded("too many JWT webhooks are being decrypted", retry_after=1) from None


def cheap_refusal(token: str) -> WebhookTokenError | None:
    """What verify_token would refuse without any RSA work (size, shape, header, algorithms):
    checked first, on the event loop, so only a plausible token costs a decryption."""
    parts = token.strip().split(".")
    if len(token) > jwt_wire.MAX_TOKEN_BYTES or len(parts) not in (3, 5):
        return WebhookTokenError(jwt_wire.MALFORMED)
    header = jwt_wire.header_of(parts[0].encode("ascii", errors="replace"))
    if len(parts) == 3 or header is None:
        return WebhookTokenError(jwt_wire.NOT_ENCRYPTED if len(parts) == 3 else jwt_wire.MALFORMED)
    kid = jwt_wire.printable_kid(header.get("kid"))
    if (
        header.get("alg") not in jwt_wire.KEY_ALGORITHMS
        or header.get("enc") != jwt_wire.CONTENT_ENCRYPTION
    ):
        return WebhookTokenError(jwt_wire.BAD_ALGORITHM, kid=kid)
    if jwt_wire.REFUSED_HEADERS & header.keys():
        return WebhookTokenError(jwt_wire.BAD_HEADER, kid=kid)
    return None


WEBHOOK_LIMITS = web.AppKey("webhook_limits", WebhookLimits)
