"""Typed keys for what the application and each request hold (no string keys, no globals)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
from aiohttp import web

from proxy.cache.bus import EventBus
from proxy.cache.facade import OrderCache
from proxy.config.settings import ClientSettings, Settings
from proxy.core.models import Decoders
from proxy.core.orders import OrderService
from proxy.core.waits import WaitRegistry
from proxy.observe.metrics import Metrics
from proxy.observe.tracing import Tracing
from proxy.upstream.client import JuspayClient

if TYPE_CHECKING:
    # Types only: proxy.web.auth reads the request keys below.
    from proxy.web.auth import WebhookAuth


@dataclass(slots=True)
class Lifecycle:
    """Whether the app should receive traffic; flipped at start-up and on shutdown."""

    ready: bool = False
    draining: bool = False
    # Under `serve --workers N`: the supervisor's census of the pod's workers (for /readyz).
    census_file: Path | None = None


class RequestRecord(msgspec.Struct):
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
    trace_id: str | None = None  # the W3C trace this request belongs to, if any


@dataclass(frozen=True, slots=True)
class CacheHealth:
    """What /readyz reports of the cache: its layer, Redis' answer, the bus between replicas."""

    cache: OrderCache
    bus: EventBus | None


SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
ORDER_SERVICE = web.AppKey("order_service", OrderService)
RECORD = web.RequestKey("record", RequestRecord)
CLIENT = web.RequestKey("client", ClientSettings)
# Annotated rather than given the type: the type's module imports this one.
WEBHOOK_AUTH: web.AppKey[WebhookAuth] = web.AppKey("webhook_auth")
OPENAPI = web.AppKey("openapi", bytes)
DECODERS = web.AppKey("decoders", Decoders)
WAITS = web.AppKey("waits", WaitRegistry)
# Only with Redis: the event bus between replicas.
BUS = web.AppKey("bus", EventBus)
# The Juspay client, once started (tests check the URLs it builds).
UPSTREAM = web.AppKey("upstream", JuspayClient)
# On the app serving /readyz, once started.
CACHE_HEALTH = web.AppKey("cache_health", CacheHealth)
# With tracing on (an OTEL_* exporter set): the SDK's provider and exporter.
TRACING = web.AppKey("tracing", Tracing)
# With PROXY_INTERNAL_PORT: the app of the internal routes, which the proxy app then lacks.
INTERNAL_APP = web.AppKey("internal_app", web.Application)
