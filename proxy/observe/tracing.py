"""W3C trace context, always continued, and OpenTelemetry spans when an exporter is set.

Every request that brings a valid `traceparent` has its trace id on its access line, and a
call it makes to Juspay carries that trace id with a span id of the proxy's own (and the
caller's `tracestate`). That much costs a header lookup; nothing else runs without a header.

With tracing on (TracingSettings.enabled) the sampling decision is taken here, before the SDK
is touched: a request that is not sampled costs a random draw (or the header's flags), no span.
A sampled one gets a server span, begun by the request middleware, and child spans for the
Juspay read (retries as events), the Redis round trips and the wait for a coalesced read.

The context travels in one ContextVar (copied into the tasks a request starts, such as its
upstream read); the SDK's own context is not used, and there is no global tracer: the server
span's TraceContext carries the Tracing that made it.
"""

from __future__ import annotations

import asyncio
import random
import re
from contextvars import ContextVar
from dataclasses import dataclass, replace
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

import structlog

from proxy import __version__
from proxy.config.settings import TracingSettings

if TYPE_CHECKING:
    from aiohttp import web
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

    from proxy.appkeys import RequestRecord

log = structlog.get_logger("proxy.tracing")

TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"
# Flags whose lowest bit (sampled) is set.
_SAMPLED_FLAGS = frozenset(f"{n:02x}" for n in range(256) if n & 1)
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_MAX_TRACESTATE = 512  # W3C: vendors may drop it past 512 characters; we do


@dataclass(slots=True)  # not frozen: one is made per traced request, and frozen init is slow
class TraceContext:
    """The trace a request belongs to, and the span that is current in it (when recording)."""

    trace_id: str  # 32 lower-case hex digits
    sampled: bool
    tracestate: str | None = None
    # Recording only: the current SDK span, and the Tracing that made it.
    span: Span | None = None
    tracing: Tracing | None = None

    def outgoing(self) -> dict[str, str]:
        """traceparent (and tracestate) for a call made now: this trace, the current span's id
        (a fresh one when nothing records), the sampling flag."""
        if self.span is not None:
            span_id = "%016x" % self.span.get_span_context().span_id  # noqa: UP031
        else:
            # An id nobody records (not a secret): it only has to be new and not all zero.
            span_id = "%016x" % (random.getrandbits(64) or 1)
        headers = {TRACEPARENT: f"00-{self.trace_id}-{span_id}-{'01' if self.sampled else '00'}"}
        if self.tracestate:
            headers[TRACESTATE] = self.tracestate
        return headers


CURRENT: ContextVar[TraceContext | None] = ContextVar("order_proxy_trace", default=None)


# version-traceid-parentid-flags, lower-case hex; a later version may append "-..." fields.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")


def parse_traceparent(value: str) -> tuple[str, str, bool] | None:
    """(trace id, parent span id, sampled) of a valid W3C traceparent, else None. Version ff
    is invalid; version 00 has exactly four fields."""
    found = _TRACEPARENT.fullmatch(value) or _TRACEPARENT.fullmatch(value.strip().lower())
    if found is None:
        return None
    version, trace_id, parent_id, flags, rest = found.groups()
    if version == "ff" or (rest is not None and version == "00"):
        return None
    if trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    return trace_id, parent_id, flags in _SAMPLED_FLAGS


def continued(traceparent: str, tracestate: str | None) -> TraceContext | None:
    """The caller's trace, continued without recording (tracing off), or None if invalid."""
    parsed = parse_traceparent(traceparent)
    if parsed is None:
        return None
    return TraceContext(parsed[0], parsed[2], _state(tracestate))


def _state(tracestate: str | None) -> str | None:
    if not tracestate or len(tracestate) > _MAX_TRACESTATE or not tracestate.isprintable():
        return None
    return tracestate.strip()


class Tracing:
    """The SDK's provider and exporter for one app: started in its cleanup context."""

    def __init__(self, settings: TracingSettings) -> None:
        self.settings = settings
        self._provider: TracerProvider | None = None
        self._tracer: Tracer | None = None
        sampler = settings.sampler
        self._parent_based = sampler.startswith("parentbased_")
        root = sampler.removeprefix("parentbased_")
        self._ratio = {"always_on": 1.0, "always_off": 0.0}.get(root, settings.sampler_arg)
        # traceidratio: sampled when the trace id's low 64 bits fall under this bound.
        self._bound = round(self._ratio * (1 << 64))

    def start(self) -> None:
        # The SDK is imported only when tracing is on.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )
        from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON  # noqa: PLC0415

        resource = Resource.create(
            {"service.name": self.settings.service_name, "service.version": __version__}
        )
        # Sampling is decided before a span is started (see decide), so the SDK records all.
        provider = TracerProvider(sampler=ALWAYS_ON, resource=resource, shutdown_on_exit=False)
        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=self.settings.traces_url))
        )
        self._provider = provider
        self._tracer = provider.get_tracer("order-proxy", __version__)
        log.info(
            "tracing_on",
            endpoint=self.settings.traces_url,
            sampler=self.settings.sampler,
            ratio=self._ratio,
        )

    async def flush(self) -> None:
        """Export what has ended so far (the exporter blocks: it runs off the loop)."""
        if self._provider is not None:
            await asyncio.to_thread(self._provider.force_flush)

    async def close(self) -> None:
        provider, self._provider, self._tracer = self._provider, None, None
        if provider is not None:
            await asyncio.to_thread(provider.shutdown)

    def decide(self, traceparent: str | None, tracestate: str | None) -> TraceContext | None:
        """The request's trace before any span: the caller's, not recorded (not sampled); a
        pending one to record (sampled: `server_span` begins it); or None (no caller trace,
        and this request is not sampled)."""
        parsed = parse_traceparent(traceparent) if traceparent else None
        if parsed is None:
            if self._ratio < 1.0 and random.random() >= self._ratio:  # noqa: S311 - sampling
                return None
            return _Pending("", True, tracing=self)  # a new trace: its id comes with the span
        trace_id, parent_id, parent_sampled = parsed
        state = _state(tracestate)
        # Parent-based: the caller decided. Else the trace id's low 64 bits, as the spec says.
        sampled = parent_sampled if self._parent_based else int(trace_id[16:], 16) < self._bound
        if not sampled:
            return TraceContext(trace_id, False, state)
        return _Pending(trace_id, True, state, tracing=self, parent_id=parent_id)

    def server_span(
        self, trace: TraceContext, name: str, attributes: dict[str, Any]
    ) -> TraceContext:
        """Begin the server span of a sampled request; its context replaces `trace`."""
        from opentelemetry import trace as api  # noqa: PLC0415

        assert self._tracer is not None
        parent = None
        if isinstance(trace, _Pending) and trace.parent_id:
            remote = api.SpanContext(
                trace_id=int(trace.trace_id, 16),
                span_id=int(trace.parent_id, 16),
                is_remote=True,
                trace_flags=api.TraceFlags(api.TraceFlags.SAMPLED),
                trace_state=_trace_state(trace.tracestate),
            )
            parent = api.set_span_in_context(api.NonRecordingSpan(remote))
        span = self._tracer.start_span(
            name, context=parent, kind=api.SpanKind.SERVER, attributes=attributes
        )
        trace_id = "%032x" % span.get_span_context().trace_id  # noqa: UP031
        return TraceContext(trace_id, True, trace.tracestate, span=span, tracing=self)

    def child(
        self,
        parent: Span,
        name: str,
        kind: str,
        attributes: dict[str, Any],
        start_ns: int | None = None,
    ) -> Span:
        from opentelemetry import trace as api  # noqa: PLC0415

        assert self._tracer is not None
        return self._tracer.start_span(
            name,
            context=api.set_span_in_context(parent),
            kind=getattr(api.SpanKind, kind.upper()),
            attributes=attributes,
            start_time=start_ns,
        )

    @property
    def started(self) -> bool:
        return self._tracer is not None


@dataclass(slots=True)
class _Pending(TraceContext):
    """A sampled request continuing a caller's trace, before its server span exists."""

    parent_id: str = ""


def _trace_state(value: str | None) -> Any:
    from opentelemetry.trace.span import TraceState  # noqa: PLC0415

    if not value:
        return None
    try:
        return TraceState.from_header([value])
    except ValueError:
        return None


class _Span:
    """`with span(...)`: a child of the current span while the block runs (recording only)."""

    __slots__ = ("_span", "_token")

    def __init__(self, name: str, kind: str, attributes: dict[str, Any]) -> None:
        self._span: Span | None = None
        self._token: Any = None
        trace = CURRENT.get()
        if trace is None or trace.span is None or trace.tracing is None:
            return
        self._span = trace.tracing.child(trace.span, name, kind, attributes)
        self._token = CURRENT.set(replace(trace, span=self._span))

    def __enter__(self) -> Span | None:
        return self._span

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        span = self._span
        if span is None:
            return
        CURRENT.reset(self._token)
        if exc is not None and not isinstance(exc, asyncio.CancelledError):
            from opentelemetry.trace import Status, StatusCode  # noqa: PLC0415

            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            span.set_attribute("error.type", getattr(exc, "error_code", type(exc).__name__))
        span.end()


class _NoSpan:
    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: object) -> None:
        return None


NO_SPAN: Final = _NoSpan()
# The attributes of a Redis round trip's span.
REDIS: Final = {"db.system.name": "redis"}


def span(name: str, kind: str = "internal", **attributes: Any) -> _Span | _NoSpan:
    """A child span of the current one for a block; a shared no-op when nothing records."""
    trace = CURRENT.get()
    if trace is None or trace.span is None:
        return NO_SPAN
    return _Span(name, kind, attributes)


def past_span(name: str, start_ns: int, **attributes: Any) -> None:
    """A child span of the current one that began at `start_ns` (time.time_ns) and ends now:
    for what turns out to be worth a span only once it is over."""
    trace = CURRENT.get()
    if trace is not None and trace.span is not None and trace.tracing is not None:
        trace.tracing.child(trace.span, name, "internal", attributes, start_ns).end()


def event(name: str, **attributes: Any) -> None:
    """An event on the current span (a retry...), if one records."""
    trace = CURRENT.get()
    if trace is not None and trace.span is not None:
        trace.span.add_event(name, attributes)


def sampled_trace_id() -> str | None:
    """The current trace id if it is recorded (for exemplars: a trace the backend has)."""
    trace = CURRENT.get()
    return trace.trace_id if trace is not None and trace.span is not None else None


def request_trace(request: web.Request, route: str, tracing: Tracing | None) -> TraceContext | None:
    """The request's trace: with tracing on, decided here (a sampled one gets its server span,
    named for its route's template); else the caller's, continued, if it sent a valid one."""
    headers = request.headers
    traceparent = headers.get(TRACEPARENT)
    if tracing is None or not tracing.started:
        return continued(traceparent, headers.get(TRACESTATE)) if traceparent else None
    trace = tracing.decide(traceparent, headers.get(TRACESTATE))
    if trace is None or trace.tracing is None:
        return trace
    resource = request.match_info.route.resource
    template = resource.canonical if resource is not None else route
    return tracing.server_span(
        trace,
        f"{request.method} {template}",
        {"http.request.method": request.method, "http.route": template},
    )


def finish_trace(trace: TraceContext, record: RequestRecord, status: int) -> None:
    """End a recorded request's server span with what the request came to, as its access line
    says it (never a secret)."""
    span = trace.span
    if span is None:
        return
    span.set_attribute("http.response.status_code", status)
    span.set_attribute("order_proxy.cache", record.cache)
    for name in ("merchant_id", "order_id", "order_status", "error_code", "client"):
        value = getattr(record, name)
        if value is not None:
            span.set_attribute(f"order_proxy.{name}", value)
    if record.coalesced:
        span.set_attribute("order_proxy.coalesced", True)
    if status >= 500:
        from opentelemetry.trace import Status, StatusCode  # noqa: PLC0415

        span.set_status(Status(StatusCode.ERROR))
    span.end()
