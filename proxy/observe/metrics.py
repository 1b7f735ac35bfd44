"""Prometheus metrics, on a registry each application owns (never the global default).

Label values are always drawn from small fixed sets: routes, status codes, cache results,
outcomes. An order id, merchant id or request id is never a label.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.openmetrics import exposition as openmetrics

from proxy import __version__
from proxy.observe import accesslog

# Set (by `serve --workers N`) before prometheus_client is imported: every worker then keeps
# its values in files there, and /metrics on any worker answers for all of them. Gauges say how
# workers' values combine (`multiprocess_mode`); Gauge.set_function is not supported there, so
# gauges computed from state are set at scrape time and every second (see `Metrics.refresh`).
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_DIR_ENV) or None


# Sub-millisecond cache hits up to multi-second upstream calls, in one set of buckets.
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
CACHE_RESULTS = ("hit", "miss", "bypass", "stale", "error", "none")
ROUTES = ("order", "order_status", "batch", "purge", "webhook")
UPSTREAM_OUTCOMES = (
    "ok",
    "not_found",
    "client_error",
    "auth_failed",
    "rate_limited",
    "server_error",
    "timeout",
    "connection_error",
    "bad_body",
)
REDIS_OPERATIONS = (
    "get",
    "set",
    "note",
    "invalidate",
    "ping",
    "lock",
    "publish",
    "subscribe",
    "ratelimit",
)
# Why a bound without a key refused a connection or request (proxy/web/bounds.py, webhooks).
CONNECTION_REFUSALS = (
    "max_connections",
    "header_bytes",
    "header_timeout",
    "body_timeout",
    "bad_request",
    "webhook_bodies",
    "jwt_busy",
)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100)
EXPOSITION_CONTENT_TYPE = CONTENT_TYPE_LATEST
# What a scraper that asks for it gets: the only format that carries exemplars.
OPENMETRICS_CONTENT_TYPE = openmetrics.CONTENT_TYPE_LATEST


class Metrics:
    """Every metric the proxy exports, created once per application."""

    def __init__(self) -> None:  # noqa: PLR0915 - one statement per metric
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "order_proxy_requests",
            "Caller-facing requests by route, HTTP status and cache result.",
            ["route", "code", "cache"],
            registry=r,
        )
        self.request_duration = Histogram(
            "order_proxy_request_duration_seconds",
            "Time to answer a caller-facing request, by route and cache result.",
            ["route", "cache"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_requests = Counter(
            "order_proxy_upstream_requests",
            "Calls made to Juspay, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.upstream_duration = Histogram(
            "order_proxy_upstream_request_duration_seconds",
            "Duration of one call to Juspay, including reading the body.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_rejected = Counter(
            "order_proxy_upstream_rejected",
            "Calls to Juspay not made: circuit open or bulkhead full.",
            ["reason"],
            registry=r,
        )
        self.upstream_retries = Counter(
            "order_proxy_upstream_retries",
            "Upstream attempts that were retries of a failed attempt.",
            registry=r,
        )
        self.upstream_queued = Gauge(
            "order_proxy_upstream_queued",
            "Upstream calls waiting for a bulkhead slot.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.upstream_in_flight = Gauge(
            "order_proxy_upstream_in_flight",
            "Calls to Juspay under way.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.circuit_state = Gauge(
            "order_proxy_circuit_state",
            "Upstream circuit breaker: 0 closed, 1 half-open, 2 open.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.cache_lookups = Counter(
            "order_proxy_cache_lookups",
            "Cache lookups by layer and result.",
            ["layer", "result"],
            registry=r,
        )
        self.cache_stores = Counter(
            "order_proxy_cache_stores",
            "Entries written to the cache, by layer and status class.",
            ["layer", "status_class"],
            registry=r,
        )
        self.fenced_saves = Counter(
            "order_proxy_cache_fenced_saves",
            "Saves refused because the order was invalidated while their read was in flight.",
            registry=r,
        )
        self.rejected_entries = Counter(
            "order_proxy_cache_rejected_entries",
            "Entries read from Redis and not served: undecodable, written for another key, "
            "a body that fails its checksum, or stored before Redis restarted or failed over.",
            ["reason"],
            registry=r,
        )
        self.lagging_rereads = Counter(
            "order_proxy_webhook_lagging_rereads",
            "Reads from Juspay that showed less than a webhook had just said (Juspay's read "
            "side lagging): answered, but cached briefly and read again until they catch up.",
            registry=r,
        )
        self.verifications = Counter(
            "order_proxy_cache_verifications",
            "Sampled cache hits re-read from Juspay in the background: did the cache match?",
            ["result"],
            registry=r,
        )
        self.invalidations = Counter(
            "order_proxy_cache_invalidations",
            "Orders invalidated (generation moved on, every variant dropped), by source.",
            ["source"],
            registry=r,
        )
        self.policy_decisions = Counter(
            "order_proxy_policy_decisions",
            "Caching decisions on upstream answers, by status class and decision.",
            ["status_class", "decision"],
            registry=r,
        )
        self.coalesced = Counter(
            "order_proxy_coalesced_requests",
            "Requests that shared another request's upstream call.",
            registry=r,
        )
        self.calls_saved = Counter(
            "order_proxy_upstream_calls_saved",
            "Requests answered without an upstream call of their own.",
            registry=r,
        )
        self.in_flight = Gauge(
            "order_proxy_in_flight_requests",
            "Caller-facing requests being handled.",
            registry=r,
            multiprocess_mode="livesum",
        )
        # Counted in a plain int by the one event loop and read at scrape time: no lock
        # per request.
        self.requests_in_flight = 0
        self._gauge_functions: list[tuple[Gauge, Callable[[], float]]] = []
        self.gauge_function(self.in_flight, lambda: self.requests_in_flight)
        self.log_lines_dropped = Counter(
            "order_proxy_log_lines_dropped",
            "Log lines (access lines included) dropped because stdout did not keep up.",
            registry=r,
        )
        self._dropped_seen = accesslog.dropped_total()
        self.redis_errors = Counter(
            "order_proxy_redis_errors",
            "Failed Redis operations (the proxy fails open and goes to Juspay).",
            ["operation"],
            registry=r,
        )
        self.redis_round_trips = Counter(
            "order_proxy_redis_round_trips",
            "Round trips to Redis (each carries one auto-pipelined batch of commands).",
            registry=r,
        )
        self.redis_commands = Counter(
            "order_proxy_redis_commands",
            "Commands sent to Redis.",
            registry=r,
        )
        self.redis_up = Gauge(
            "order_proxy_redis_up",
            "1 when the last Redis operation succeeded, 0 when it failed.",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.memory_entries = Gauge(
            "order_proxy_memory_cache_entries",
            "Entries in the in-process cache.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.memory_bytes = Gauge(
            "order_proxy_memory_cache_bytes",
            "Bytes held by the in-process cache (bodies and keys).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.auth_failures = Counter(
            "order_proxy_auth_failures",
            "Requests refused: bad or missing credentials, merchant or role not allowed; "
            "webhooks also by why a JWT was refused (jwt_<reason>).",
            ["reason"],
            registry=r,
        )
        self.rate_limited = Counter(
            "order_proxy_rate_limited",
            "Requests refused with 429 by a client's rate limit, by client name (configured "
            "clients only) and scope: all (every request) or upstream (reads calling Juspay).",
            ["client", "scope"],
            registry=r,
        )
        self.webhook_events = Counter(
            "order_proxy_webhook_events",
            "Juspay webhooks received, by event and what the proxy did with them.",
            ["event", "result"],
            registry=r,
        )
        self.webhook_unknown_events = Counter(
            "order_proxy_webhook_unknown_events",
            "Juspay webhook events the proxy does not know by name, by name class: order, "
            "refund, txn, mandate, chargeback, notification, other.",
            ["family"],
            registry=r,
        )
        self.purges = Counter(
            "order_proxy_cache_purges",
            "Cache entries dropped by purge requests and webhooks.",
            ["source"],
            registry=r,
        )
        self.waiters = Gauge(
            "order_proxy_waiters",
            "Callers waiting (?wait=) for an order to become final.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.wait_results = Counter(
            "order_proxy_wait_results",
            "How waits ended: final, timeout, shed (too many waiters), or preempted (the slot "
            "went to a client holding fewer).",
            ["result"],
            registry=r,
        )
        self.wait_wakeups = Counter(
            "order_proxy_wait_wakeups",
            "Watches that saw their order settle, by what told them: poll, webhook, peer.",
            ["cause"],
            registry=r,
        )
        self.wait_polls = Counter(
            "order_proxy_wait_polls",
            "Upstream polls made on behalf of waiting callers.",
            registry=r,
        )
        self.wait_polls_saved = Counter(
            "order_proxy_wait_polls_saved",
            "Waiters served by a polling schedule they did not have to run themselves.",
            registry=r,
        )
        self.connections_refused = Counter(
            "order_proxy_connections_refused",
            "Connections and requests refused by a bound that holds without a key: "
            "max_connections, header_bytes, header_timeout, body_timeout, bad_request (the "
            "HTTP parser's 400), webhook_bodies, jwt_busy.",
            ["reason"],
            registry=r,
        )
        self.batch_size = Histogram(
            "order_proxy_batch_size",
            "Order ids per batchGet request.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.build_info = Gauge(
            "order_proxy_build_info",
            "Always 1; the version label tells which build is running.",
            ["version"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.build_info.labels(version=__version__).set(1)
        self._request_children: dict[tuple[str, int, str], tuple[Any, Any]] = {}
        # Pre-create the label sets an operator expects to see at zero before the first event.
        for outcome in UPSTREAM_OUTCOMES:
            self.upstream_requests.labels(outcome=outcome)
        for reason in ("circuit_open", "shed"):
            self.upstream_rejected.labels(reason=reason)
        for operation in REDIS_OPERATIONS:
            self.redis_errors.labels(operation=operation)
        for result in ("match", "diverged"):
            self.verifications.labels(result=result)
        for reason in ("undecodable", "foreign_key", "checksum", "epoch"):
            self.rejected_entries.labels(reason=reason)
        for reason in CONNECTION_REFUSALS:
            self.connections_refused.labels(reason=reason)
        for source in ("purge", "webhook", "refresh"):
            self.invalidations.labels(source=source)
        # Hit and miss series exist from the start, so rate() sees their first increase.
        for route in ("order", "order_status"):
            for cache in ("hit", "miss"):
                self.requests.labels(route=route, code="200", cache=cache)

    def gauge_function(self, gauge: Gauge, value: Callable[[], float]) -> None:
        """Gauge.set_function that also works in multiprocess mode: set at every refresh."""
        self._gauge_functions.append((gauge, value))

    def refresh(self) -> None:
        """Bring computed gauges and the dropped-lines count up to date (at scrape time, and
        every second in each worker of `serve --workers N`)."""
        for gauge, value in self._gauge_functions:
            gauge.set(value())
        dropped = accesslog.dropped_total()
        if dropped > self._dropped_seen:
            self.log_lines_dropped.inc(dropped - self._dropped_seen)
            self._dropped_seen = dropped

    def redis_batch(self, size: int) -> None:
        self.redis_round_trips.inc()
        self.redis_commands.inc(size)

    def observe_request(
        self, route: str, code: int, cache: str, duration: float, trace_id: str | None = None
    ) -> None:
        """Count and time one caller-facing request (label children looked up once); a
        recorded trace's id becomes the bucket's exemplar (OpenMetrics, single process)."""
        key = (route, code, cache)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self.requests.labels(route=route, code=str(code), cache=cache),
                self.request_duration.labels(route=route, cache=cache),
            )
            # Bounded: routes, status codes and cache results are all small fixed sets.
            self._request_children[key] = children
        children[0].inc()
        if trace_id is None:
            children[1].observe(duration)
        else:
            children[1].observe(duration, {"trace_id": trace_id})

    def render(self, *, open_metrics: bool = False) -> bytes:
        """The exposition: Prometheus text, or OpenMetrics (with exemplars) when asked."""
        self.refresh()
        generate = openmetrics.generate_latest if open_metrics else generate_latest
        path = multiprocess_dir()
        if path is None:
            return generate(self.registry)
        # Every worker's values, live and dead (counters), from the shared directory.
        # prometheus-client keeps no exemplars in this mode.
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path)  # type: ignore[no-untyped-call]
        return generate(registry)
