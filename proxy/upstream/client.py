"""The Juspay client: builds the upstream URL, injects credentials, reads bounded bodies.

The URL is built only from the configured origin and an already-validated order id, then
checked again before sending: an unchecked join would hand our API key to whatever host a
caller managed to name. Redirects are never followed, for the same reason. Every low-level
failure is translated here, once, into the proxy's error tree.

An answer (a 200 or a 4xx) is returned as Juspay gave it, body intact and decoded if it can
be, without judging it: whether it is the order asked for, and whether it may be cached, is
the caching policy's one decision, taken by the order service.
"""

from __future__ import annotations

import asyncio
import base64
import random
import time
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp
import msgspec
import structlog
from yarl import URL

from proxy import __version__
from proxy.config.secrets import Secret, SecretFile
from proxy.config.settings import MerchantSettings, UpstreamSettings
from proxy.core.errors import (
    CircuitOpen,
    UpstreamAuthFailed,
    UpstreamBadBody,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamServerError,
    UpstreamTimeout,
)
from proxy.core.models import Decoders, OrderStatusView
from proxy.observe import tracing
from proxy.observe.metrics import Metrics
from proxy.upstream.bulkhead import Bulkhead
from proxy.upstream.circuit import CircuitBreaker, CircuitState
from proxy.upstream.egress import proxy_for, tls_for

log = structlog.get_logger("proxy.upstream")

_AUTH_LOG_EVERY_SECONDS = 10.0

# A product User-Agent on every call: HDFC SmartGateway (the same API) is reported to sit behind
# a CDN that refuses generic client agents such as aiohttp's own.
USER_AGENT = f"order-proxy/{__version__}"
TXN_UUID = "txn_uuid"
FULL_GATEWAY_RESPONSE = "options.add_full_gateway_response"
# Juspay's own answers that mean "try again": the read is idempotent, so retrying is safe.
_RETRY_STATUSES = frozenset({502, 503, 504})
_CONTENT_TYPE_MAX = 128
_DEADLINE_SLACK = 0.005


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    """One order-status read, as the proxy will send it."""

    merchant_id: str
    order_id: str
    version: str
    full_gateway_response: bool
    routing_id: str | None = None
    # One payment attempt (validated by the caller-facing handler); None: the order's answer.
    txn_uuid: str | None = None


@dataclass(frozen=True, slots=True)
class UpstreamAnswer:
    """What Juspay answered with a 200 or a 4xx, body intact (not yet judged by the policy)."""

    status: int
    body: bytes
    content_type: str
    # The decoded status view; None for a body that is not JSON we understand.
    view: OrderStatusView | None
    elapsed: float


class Credentials:
    """Per-merchant Authorization values; keys held in files are re-read when they change."""

    def __init__(
        self, merchants: tuple[MerchantSettings, ...], check_interval: float = 1.0
    ) -> None:
        self._sources: dict[str, Secret | SecretFile] = {}
        for merchant in merchants:
            if merchant.api_key_file is not None:
                self._sources[merchant.merchant_id] = SecretFile(
                    merchant.api_key_file, merchant.api_key, check_interval=check_interval
                )
            else:
                self._sources[merchant.merchant_id] = merchant.api_key
        self._headers: dict[str, tuple[str, str]] = {}

    def authorization(self, merchant_id: str) -> str:
        source = self._sources[merchant_id]
        key = source.get().reveal() if isinstance(source, SecretFile) else source.reveal()
        cached = self._headers.get(merchant_id)
        if cached is not None and cached[0] == key:
            return cached[1]
        # Juspay: Basic auth with the API key as username and an empty password.
        header = "Basic " + base64.b64encode(f"{key}:".encode()).decode("ascii")
        self._headers[merchant_id] = (key, header)
        return header

    def __repr__(self) -> str:
        return f"Credentials(merchants={sorted(self._sources)!r})"


def build_session(settings: UpstreamSettings) -> aiohttp.ClientSession:
    """The one long-lived session for all upstream calls, with explicit bounds, through
    HTTPS_PROXY and verified against JUSPAY_CA_FILE where set (proxy.upstream.egress)."""
    proxy = proxy_for(settings.base_url, settings.https_proxy, settings.no_proxy)
    connector = aiohttp.TCPConnector(
        limit=settings.max_connections,
        limit_per_host=settings.max_connections,
        ttl_dns_cache=60,
        keepalive_timeout=30,
        ssl=tls_for(settings.ca_file),
    )
    timeout = aiohttp.ClientTimeout(
        total=settings.timeout_seconds,
        connect=settings.connect_timeout_seconds,
        sock_connect=settings.connect_timeout_seconds,
        sock_read=settings.timeout_seconds,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        headers={"User-Agent": USER_AGENT},
        raise_for_status=False,
        # No cookies: nothing Juspay sets may leak from one caller's request into another's.
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=True,
        proxy=proxy.url if proxy is not None else None,
        # Only the settings above: nothing read from the environment at request time.
        trust_env=False,
    )


class JuspayClient:
    """Reads one order's status from Juspay."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: UpstreamSettings,
        credentials: Credentials,
        metrics: Metrics,
        decoders: Decoders,
    ) -> None:
        self._session = session
        self._settings = settings
        self._credentials = credentials
        self._metrics = metrics
        self._decode_view = decoders.status_view.decode
        self._base = settings.base_url
        # Credentials for HTTPS_PROXY, if it has them (aiohttp sends them on the CONNECT only).
        proxy = proxy_for(settings.base_url, settings.https_proxy, settings.no_proxy)
        self._proxy_headers = proxy.headers if proxy is not None else None
        self._orders_path = self._base.path.rstrip("/") + "/orders/"
        self._bulkhead = Bulkhead(
            max_concurrent=settings.max_concurrent,
            max_queue=settings.max_queue,
            on_shed=metrics.upstream_rejected.labels(reason="shed").inc,
        )
        metrics.gauge_function(metrics.upstream_queued, lambda: self._bulkhead.waiting)
        self._circuit = CircuitBreaker(settings.circuit, on_change=self._circuit_changed)
        # Read at scrape time: an idle proxy's open circuit turns half-open when its time is
        # up, without a request to move it (the "circuit open" alert must not outlive it).
        metrics.gauge_function(metrics.circuit_state, lambda: self._circuit.observed_state)
        # Merchant -> when its refused key was last logged (merchants are configured: bounded).
        self._auth_logged: dict[str, float] = {}

    def _circuit_changed(self, old: CircuitState, new: CircuitState) -> None:
        # Also refreshed at scrape time (observed_state), which may read half-open earlier.
        self._metrics.circuit_state.set(new)
        event = log.warning if new is CircuitState.OPEN else log.info
        event("circuit_state_changed", old=old.name.lower(), new=new.name.lower())

    def url_for(
        self, order_id: str, full_gateway_response: bool, txn_uuid: str | None = None
    ) -> URL:
        """The upstream URL, rebuilt from the configured origin and a quoted id, then checked."""
        quoted = quote(order_id, safe="")
        url = self._base.with_path(self._orders_path + quoted, encoded=True)
        query: dict[str, str] = {}
        if full_gateway_response:
            query[FULL_GATEWAY_RESPONSE] = "true"
        if txn_uuid is not None:
            query[TXN_UUID] = txn_uuid
        if query:
            url = url.with_query(query)
        # Belt and braces: the id was validated, but the URL is what carries our credentials.
        if (
            url.scheme != self._base.scheme
            or url.host != self._base.host
            or url.port != self._base.port
            or url.raw_path != self._orders_path + quoted
            or "/" in quoted
            or dict(url.query) != query
        ):
            raise UpstreamBadBody("refusing to build an upstream URL outside the configured origin")
        return url

    def _headers(self, call: UpstreamCall) -> dict[str, str]:
        headers = {
            "Authorization": self._credentials.authorization(call.merchant_id),
            "x-merchantid": call.merchant_id,
            "version": call.version,
            "Accept": "application/json",
            "Content-Type": "application/x-www-form-urlencoded",
            # Also set on the session; repeated here so an injected session sends it too.
            "User-Agent": USER_AGENT,
        }
        if call.routing_id is not None:
            headers["x-routing-id"] = call.routing_id
        trace = tracing.CURRENT.get()
        if trace is not None:
            # The caller's trace id, our own span id: Juspay's side of the trace joins it.
            headers.update(trace.outgoing())
        return headers

    async def fetch(self, call: UpstreamCall) -> UpstreamAnswer:
        """Read from Juspay: bulkhead, circuit breaker, retries, one overall deadline."""
        deadline = asyncio.get_running_loop().time() + self._settings.timeout_seconds
        with tracing.span(
            "GET juspay /orders/{order_id}",
            "client",
            **{
                "http.request.method": "GET",
                "server.address": self._base.host or "",
                "server.port": self._base.port or 443,
                "order_proxy.merchant_id": call.merchant_id,
                "order_proxy.order_id": call.order_id,
            },
        ) as span:
            try:
                async with asyncio.timeout_at(deadline), self._bulkhead.slot():
                    answer = await self._with_retries(call, deadline)
            except TimeoutError as exc:
                # The deadline passed while queued or between attempts.
                raise UpstreamTimeout("Juspay did not answer within the deadline") from exc
            if span is not None:
                span.set_attribute("http.response.status_code", answer.status)
            return answer

    async def _with_retries(self, call: UpstreamCall, deadline: float) -> UpstreamAnswer:
        # The circuit sees what the caller sees: one read, retries included, is one success or
        # one failure, so its threshold counts failed reads, not attempts.
        loop = asyncio.get_running_loop()
        try:
            self._circuit.before_call()
        except CircuitOpen:
            self._metrics.upstream_rejected.labels(reason="circuit_open").inc()
            raise
        try:
            answer = await self._attempts(call, deadline)
        except UpstreamError as exc:
            self._circuit.record(failed=_is_outage(exc))
            raise
        except asyncio.CancelledError:
            # The overall deadline passed mid-read (a timeout, so an outage), or the caller left.
            # The loop may fire the deadline a clock tick early: allow a few milliseconds.
            if loop.time() >= deadline - _DEADLINE_SLACK:
                self._circuit.record(failed=True)
            else:
                self._circuit.release()
            raise
        except BaseException:
            self._circuit.release()
            raise
        self._circuit.record(failed=False)
        return answer

    async def _attempts(self, call: UpstreamCall, deadline: float) -> UpstreamAnswer:
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._counted_attempt(call, deadline)
            except UpstreamError as exc:
                delay = self._retry_delay(exc, attempt)
                if delay is None or loop.time() + delay >= deadline:
                    raise
                self._metrics.upstream_retries.inc()
                tracing.event(
                    "retry",
                    attempt=attempt,
                    error_code=exc.error_code,
                    delay_seconds=round(delay, 3),
                )
                await asyncio.sleep(delay)

    def _retry_delay(self, exc: UpstreamError, attempt: int) -> float | None:
        """Seconds to wait before the next attempt, or None when this error is final."""
        settings = self._settings
        if attempt >= settings.max_attempts:
            return None
        if isinstance(exc, UpstreamRateLimited):
            return float(exc.retry_after or 1)
        retryable = isinstance(exc, UpstreamConnectionError | UpstreamTimeout) or (
            isinstance(exc, UpstreamServerError) and exc.upstream_status in _RETRY_STATUSES
        )
        if not retryable:
            return None
        # Exponential backoff with full jitter.
        ceiling = min(
            settings.backoff_max_seconds, settings.backoff_base_seconds * 2 ** (attempt - 1)
        )
        return random.uniform(0, ceiling)  # noqa: S311 - jitter, not cryptography

    async def _counted_attempt(self, call: UpstreamCall, deadline: float) -> UpstreamAnswer:
        """One HTTP attempt, timed; counted here if it failed (an answer is counted by the
        order service once the policy has judged it)."""
        metrics = self._metrics
        started = time.perf_counter()
        metrics.upstream_in_flight.inc()
        outcome: str | None = "connection_error"
        try:
            answer = await self._attempt(call, started, deadline)
        except UpstreamError as exc:
            outcome = exc.outcome
            raise
        else:
            outcome = None
            return answer
        finally:
            metrics.upstream_in_flight.dec()
            trace_id = tracing.sampled_trace_id()
            metrics.upstream_duration.observe(
                time.perf_counter() - started, {"trace_id": trace_id} if trace_id else None
            )
            if outcome is not None:
                metrics.upstream_requests.labels(outcome=outcome).inc()

    async def _attempt(self, call: UpstreamCall, started: float, deadline: float) -> UpstreamAnswer:
        url = self.url_for(call.order_id, call.full_gateway_response, call.txn_uuid)
        remaining = deadline - asyncio.get_running_loop().time()
        timeout = aiohttp.ClientTimeout(
            total=max(0.001, min(self._settings.attempt_timeout_seconds, remaining)),
            sock_connect=self._settings.connect_timeout_seconds,
        )
        try:
            async with self._session.get(
                url,
                headers=self._headers(call),
                allow_redirects=False,
                timeout=timeout,
                proxy_headers=self._proxy_headers,
            ) as resp:
                status = resp.status
                if status in (401, 403):
                    self._log_auth_failed(call.merchant_id, status)
                    raise UpstreamAuthFailed(f"Juspay refused the proxy's credentials ({status})")
                if status == 429:
                    raise UpstreamRateLimited(
                        "Juspay is rate limiting the proxy",
                        retry_after=_retry_after(resp.headers.get("Retry-After")),
                    )
                if status >= 500:
                    raise UpstreamServerError(f"Juspay answered {status}", upstream_status=status)
                if status != 200 and not 400 <= status < 500:
                    raise UpstreamBadBody(f"unexpected upstream status {status}")
                body = await self._read_body(resp)
                content_type = _content_type(resp.headers.get("Content-Type"))
        except UpstreamError:
            raise
        except TimeoutError as exc:
            raise UpstreamTimeout("Juspay did not answer within the deadline") from exc
        except aiohttp.ClientPayloadError as exc:
            raise UpstreamConnectionError("Juspay's answer was cut short") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamConnectionError(f"cannot reach Juspay ({type(exc).__name__})") from exc
        except OSError as exc:
            raise UpstreamConnectionError(f"cannot reach Juspay ({type(exc).__name__})") from exc
        elapsed = time.perf_counter() - started
        return UpstreamAnswer(status, body, content_type, self._view(body), elapsed)

    def _log_auth_failed(self, merchant_id: str, status: int) -> None:
        """Juspay refused our key: every caller of this merchant gets a 502 until an operator
        fixes it, so it is an error line (at most one per merchant every few seconds)."""
        now = time.monotonic()
        last = self._auth_logged.get(merchant_id)
        if last is not None and now - last < _AUTH_LOG_EVERY_SECONDS:
            return
        self._auth_logged[merchant_id] = now
        log.error(
            "upstream_auth_failed",
            merchant_id=merchant_id,
            upstream_status=status,
            detail="Juspay refused the proxy's API key for this merchant: check its key "
            "(JUSPAY_API_KEY / _FILE or the merchant's api_key_file) and the base URL",
        )

    async def _read_body(self, resp: aiohttp.ClientResponse) -> bytes:
        limit = self._settings.max_body_bytes
        declared = resp.content_length
        if declared is not None and declared > limit:
            raise UpstreamBadBody(f"upstream body of {declared} bytes is over the {limit} limit")
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise UpstreamBadBody(f"upstream body is over the {limit} byte limit")
            chunks.append(chunk)
        return b"".join(chunks)

    def _view(self, body: bytes) -> OrderStatusView | None:
        try:
            return self._decode_view(body)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            # RecursionError: hostile nesting is a bad body like any other, never a 500.
            return None


def _is_outage(exc: UpstreamError) -> bool:
    """Errors that say Juspay is unwell (they count towards opening the circuit)."""
    return isinstance(
        exc,
        UpstreamConnectionError | UpstreamTimeout | UpstreamServerError | UpstreamRateLimited,
    )


def _content_type(value: str | None) -> str:
    if not value or len(value) > _CONTENT_TYPE_MAX or not value.isprintable():
        return "application/json"
    return value


def _retry_after(value: str | None, *, low: int = 1, high: int = 60) -> int:
    """Retry-After in whole seconds, clamped; an HTTP-date or garbage gives the floor."""
    try:
        seconds = int(value) if value is not None else low
    except ValueError:
        seconds = low
    return max(low, min(high, seconds))


async def close_session(session: aiohttp.ClientSession) -> None:
    await session.close()
    # Give the connector's transports a loop turn to close (aiohttp's documented advice).
    await asyncio.sleep(0)
