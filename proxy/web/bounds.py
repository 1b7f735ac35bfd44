"""Connection bounds that hold without a key: header bytes and time, body time, connections.

aiohttp bounds each header line and the number of lines, not their total, and keeps a
connection whose headers never end for its keep-alive timeout (an hour by default). Here a
runner's server hands out connections that also bound:

- the bytes of a request's headers not yet finished (`max_header_bytes`): over it, 431 and
  the connection closes;
- the time to finish them (`header_timeout_seconds`, from the request's first byte) and the
  time to finish a body once its headers are in (`body_timeout_seconds`): a handler reading
  the body gets RequestTimeout (408), an idle connection is closed;
- idle keep-alive (`keepalive_seconds`);
- open connections per listener (`max_connections`): over it a connection gets a fixed 503 and
  is closed before any parser or task exists for it.

A request the HTTP parser refuses is answered a plain 400 with no `Server` header and nothing
quoted from the request, and logged as one rate-limited warning line naming the error's kind
only: the parser's message quotes the raw bytes, and those may hold a client key.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from typing import Any, cast

import structlog
from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from proxy.config.settings import ServerSettings
from proxy.core.errors import RequestTimeout
from proxy.observe.metrics import Metrics
from proxy.web.fastlane import FAST_LANE, FastLane
from proxy.web.serverheader import ServerlessRequest

log = structlog.get_logger("proxy.bounds")

# At most one `request_refused` line per this many seconds per listener (the rest are counted).
REFUSAL_LOG_SECONDS = 10.0


def _raw(status: str) -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nConnection: close\r\n"
        f"Content-Length: {len(status) + 1}\r\n\r\n{status}\n"
    ).encode("ascii")


_HEADERS_TOO_LARGE = _raw("431 Request Header Fields Too Large")
_HEADERS_TIMEOUT = _raw("408 Request Timeout")
_TOO_MANY_CONNECTIONS = _raw("503 Service Unavailable").replace(
    b"Connection: close\r\n", b"Connection: close\r\nRetry-After: 1\r\n"
)


class BoundedRunner(web.AppRunner):
    """An AppRunner whose server bounds every connection as the settings say."""

    def __init__(
        self, app: web.Application, settings: ServerSettings, metrics: Metrics, **kwargs: Any
    ) -> None:
        super().__init__(app, keepalive_timeout=settings.keepalive_seconds, **kwargs)
        self._settings = settings
        self._metrics = metrics

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        # The fast lane, when on, is the request handler (the Application for the rest).
        lane = self.app.get(FAST_LANE) if self._settings.fast_lane else None
        return BoundedServer(plain, self._settings, self._metrics, handler=lane)


class RefusalLog:
    """One warning line per `interval` seconds for refused requests; the rest are counted."""

    def __init__(self, interval: float = REFUSAL_LOG_SECONDS) -> None:
        self._interval = interval
        self._next = 0.0
        self._suppressed = 0

    def note(self, kind: str, status: int) -> None:
        now = time.monotonic()
        if now < self._next:
            self._suppressed += 1
            return
        self._next = now + self._interval
        suppressed, self._suppressed = self._suppressed, 0
        # The error's kind only: its message quotes the request's bytes.
        log.warning("request_refused", kind=kind, status=status, suppressed=suppressed)


class BoundedServer(web.Server):
    """aiohttp's Server, handing out BoundedHandlers (or a refusal when full)."""

    def __init__(
        self,
        plain: web.Server,
        settings: ServerSettings,
        metrics: Metrics,
        handler: FastLane | None = None,
    ) -> None:
        # The same handler (or the fast lane before it), request factory and keyword arguments
        # as the app's own server.
        super().__init__(
            handler or plain.request_handler,
            # The app's own factory, making requests that drop `Server` without a signal.
            request_factory=functools.partial(
                cast(Any, plain.request_factory), _cls=ServerlessRequest
            ),
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,  # the loop the app runs on (private: no accessor)
            **plain._kwargs,  # the runner's and the app's handler arguments
        )
        self.settings = settings
        self.metrics = metrics
        self.refusals = RefusalLog()
        self.open = 0

    def __call__(self) -> RequestHandler:  # the protocol factory the listening site uses
        if self.open >= self.settings.max_connections:
            self.metrics.connections_refused.labels(reason="max_connections").inc()
            return _Refuse()  # type: ignore[return-value]
        self.open += 1
        return BoundedHandler(self, loop=self._loop, **self._kwargs)


class _Refuse(asyncio.Protocol):
    """A connection over the limit: a fixed 503, then closed (no parser, no task)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        writer = cast(asyncio.WriteTransport, transport)  # uvloop's are not asyncio subclasses
        writer.write(_TOO_MANY_CONNECTIONS)
        writer.close()


class _BareResponse(web.Response):
    """A response without aiohttp's `Server` header (the parser's refusals skip the app's
    response hooks, which strip it everywhere else)."""

    async def _prepare_headers(self) -> None:
        await super()._prepare_headers()
        self.headers.popall(hdrs.SERVER, None)


class BoundedHandler(RequestHandler):
    """aiohttp's connection handler with the bounds above (see the module docstring)."""

    __slots__ = (
        "_armed_at",
        "_body",
        "_bounded",
        "_counted",
        "_deadline",
        "_header_bytes",
        "_late",
        "_timer",
    )

    def __init__(self, server: BoundedServer, **kwargs: Any) -> None:
        super().__init__(server, **kwargs)
        self._bounded = server
        self._counted = True
        self._header_bytes = 0
        self._body: StreamReader | None = None  # a body still arriving
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None  # when the request in progress is late
        self._late: Callable[[], None] | None = None  # what to do then
        self._armed_at = 0.0  # the deadline the live timer was armed for

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._counted:
            self._counted = False
            self._bounded.open -= 1
        self._drop_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._force_close or self._close or self._upgraded or not data:
            super().data_received(data)
            return
        body = self._body
        if body is not None and body.is_eof():
            self._body = body = None
            self._cancel_timer()
        if body is not None:
            super().data_received(data)
            if body.is_eof():
                self._body = None
                self._cancel_timer()
            return
        # Between requests, or in the middle of one's headers.
        settings = self._bounded.settings
        before = self._request_count
        if self._header_bytes == 0:
            self._start_timer(settings.header_timeout_seconds, self._headers_late)
        self._header_bytes += len(data)
        super().data_received(data)
        if self._request_count != before:
            # One or more requests are complete (what follows them in this chunk is not
            # counted: at most one read's worth, and the keep-alive bound still holds).
            self._header_bytes = 0
            self._cancel_timer()
            if self._messages:
                payload = self._messages[-1][1]
                if isinstance(payload, StreamReader) and not payload.is_eof():
                    self._body = payload
                    self._start_timer(settings.body_timeout_seconds, self._body_late)
        elif self._header_bytes > settings.max_header_bytes:
            self._refuse("header_bytes", _HEADERS_TOO_LARGE)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError) or status >= 500:
            return super().handle_error(request, status, exc, message)
        self._bounded.refusals.note(type(exc).__name__, status)
        self._bounded.metrics.connections_refused.labels(reason="bad_request").inc()
        if request.writer.output_size > 0:
            raise ConnectionError("a response was already sent on this connection")
        response = _BareResponse(status=status, text="Bad Request\n")
        response.force_close()
        return response

    # One deadline at a time, kept lazily: a keep-alive connection starts and meets a header
    # deadline on every request, and a timer armed and cancelled each time costs ~3 us of a
    # ~90 us hit (measured). Instead the deadline is a number; one timer, armed only when none
    # is, fires at the earliest deadline it was armed for, re-arms if the deadline moved on,
    # and lapses if it was met. Per connection at most one timer is live, as before.
    def _start_timer(self, seconds: float, callback: Callable[[], None]) -> None:
        deadline = self._loop.time() + seconds
        self._deadline = deadline
        self._late = callback
        if self._timer is not None and self._armed_at <= deadline:
            return  # it fires first and re-arms for this deadline
        self._arm(deadline)

    def _cancel_timer(self) -> None:
        self._deadline = None  # met: the armed timer, if any, finds nothing due and lapses

    def _drop_timer(self) -> None:
        self._deadline = self._late = None  # (the bound method would keep self alive)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed_at = deadline
        self._timer = self._loop.call_at(deadline, self._due)

    def _due(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None:
            return
        if self._loop.time() < deadline:
            self._arm(deadline)
            return
        late, self._deadline = self._late, None
        if late is not None:
            late()

    def _headers_late(self) -> None:
        if self._header_bytes > 0 and self._body is None:
            self._refuse("header_timeout", _HEADERS_TIMEOUT)

    def _body_late(self) -> None:
        body, self._body = self._body, None
        if body is None or body.is_eof() or self.transport is None:
            return
        self._bounded.metrics.connections_refused.labels(reason="body_timeout").inc()
        if self._request_in_progress:
            # The handler gets a 408 to answer; nothing more is read from this connection.
            self._lingering_time = 0.0
            self.close()
            body.set_exception(RequestTimeout("the request body did not arrive in time"))
        else:
            self.force_close()

    def _refuse(self, reason: str, answer: bytes) -> None:
        self._bounded.metrics.connections_refused.labels(reason=reason).inc()
        if self.transport is not None and not self._request_in_progress:
            self.transport.write(answer)
        self.force_close()
