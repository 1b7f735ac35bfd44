"""Typed keys for what the application and each request hold (no string keys, no globals)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from proxy.cache.bus import EventBus
from proxy.config.settings import ClientSettings, Settings
from proxy.core.models import Decoders
from proxy.core.orders import OrderService
from proxy.core.waits import WaitRegistry
from proxy.observe.metrics import Metrics
from proxy.web.auth_types import WebhookCheck


@dataclass(slots=True)
class Lifecycle:
    """Whether the app should receive traffic; flipped at start-up and on shutdown."""

    ready: bool = False
    draining: bool = False


@dataclass(slots=True)
class RequestRecord:
    """What the per-request log line and metrics need, filled in as the request goes."""

    request_id: str
    route: str
    client: str | None = None
    merchant_id: str | None = None
    order_id: str | None = None
    cache: str = "none"  # answered before the cache was consulted (until told otherwise)
    order_status: str | None = None
    upstream_status: int | None = None
    upstream_ms: float | None = None
    coalesced: bool = False
    error_code: str | None = None


SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
ORDER_SERVICE = web.AppKey("order_service", OrderService)
RECORD = web.RequestKey("record", RequestRecord)
CLIENT = web.RequestKey("client", ClientSettings)
WEBHOOK_AUTH = web.AppKey("webhook_auth", WebhookCheck)
OPENAPI = web.AppKey("openapi", bytes)
DECODERS = web.AppKey("decoders", Decoders)
WAITS = web.AppKey("waits", WaitRegistry)
# Only with Redis: the event bus between replicas.
BUS = web.AppKey("bus", EventBus)
# On the internal listener's app (PROXY_INTERNAL_PORT): the proxy app whose state it reports.
SERVED = web.AppKey("served", web.Application)
