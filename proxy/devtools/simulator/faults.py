"""Faults the simulator injects into its order-status answers, and how each one is played."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

from aiohttp import web

from proxy.devtools.simulator.bodies import error_body, load_sample
from proxy.devtools.simulator.errors import ControlError

FAULT_KINDS = (
    "status",  # answer with `status` (e.g. 500, 503, 429) and Juspay's error body
    "latency",  # wait `delay` seconds, then answer normally
    "timeout",  # wait `delay` seconds (default 60) before answering: the caller's deadline wins
    "reset",  # drop the connection without an answer
    "partial_body",  # promise a body, send half, drop the connection
    "slow_body",  # send half the body, wait `delay`, send the rest
    "malformed",  # a published sample that is not valid JSON, with HTTP 200
    "oversized",  # a valid-looking body of `size` bytes (default 2 MiB)
    "wrong_order",  # a valid order, but for another order id
    "not_json_object",  # HTTP 200 with a JSON array
    "deep_json",  # HTTP 200 with JSON nested 100,000 levels deep
)
# Faults that need an order's body: for an unknown order the NOT_FOUND answer is sent instead.
NEEDS_ORDER = frozenset({"wrong_order", "not_json_object"})
MAX_DELAY_SECONDS = 3600.0
MAX_SIZE = 64 * 1024 * 1024


@dataclass
class Fault:
    kind: str
    status: int = 500
    delay: float = 0.0
    size: int = 2 * 1024 * 1024
    order_id: str | None = None
    remaining: int | None = None  # None: until cleared

    def describe(self) -> dict[str, Any]:
        return asdict(self)


_FIELDS = tuple(f.name for f in fields(Fault))


def _number(data: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ControlError(f"fault field {name!r} must be a number from {low:g} to {high:g}")
    return float(value)


def parse_fault(data: dict[str, Any]) -> Fault:
    """A Fault from a control request's JSON object; ControlError naming what is wrong."""
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise ControlError(f"unknown fault field(s) {unknown}; allowed: {list(_FIELDS)}")
    kind = data.get("kind")
    if kind not in FAULT_KINDS:
        raise ControlError(f"fault field 'kind' must be one of {list(FAULT_KINDS)}, not {kind!r}")
    fault = Fault(kind=kind)
    status = _number(data, "status", 100, 599)
    if status is not None:
        if status != int(status):
            raise ControlError("fault field 'status' must be a whole number")
        fault.status = int(status)
    delay = _number(data, "delay", 0, MAX_DELAY_SECONDS)
    if delay is not None:
        fault.delay = delay
    size = _number(data, "size", 1, MAX_SIZE)
    if size is not None:
        fault.size = int(size)
    remaining = _number(data, "remaining", 1, 1_000_000)
    if remaining is not None:
        fault.remaining = int(remaining)
    order_id = data.get("order_id")
    if order_id is not None and (not isinstance(order_id, str) or not order_id):
        raise ControlError("fault field 'order_id' must be a non-empty string (or absent: all)")
    fault.order_id = order_id
    return fault


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(data).encode(), content_type="application/json"
    )


async def _drop_connection(request: web.Request) -> web.Response:
    transport = request.transport
    if transport is not None:
        transport.abort()
    # aiohttp notices the closed transport and sends nothing.
    return web.Response(status=500)


async def apply_fault(
    request: web.Request,
    fault: Fault,
    order_id: str,
    body: bytes,
    pause: Callable[[float], Awaitable[None]],
) -> web.StreamResponse | None:
    """The faulty answer, or None when the fault only delays the normal one (`latency`).
    `pause` sleeps, waking early when the simulator resets or shuts down."""
    kind = fault.kind
    if kind == "latency":
        await pause(fault.delay)
        return None
    if kind == "status":
        if fault.status == 429:
            limited = error_body(429, "too_many_requests", "Too many requests", "RATE_LIMITED")
            resp = _json(limited, 429)
            resp.headers["Retry-After"] = "1"
            return resp
        failed = error_body(
            fault.status, "internal_error", "Internal server Error", "INTERNAL_ERROR"
        )
        return _json(failed, fault.status)
    if kind == "timeout":
        await pause(fault.delay or 60.0)
        return _json(error_body(504, "timeout", "took too long", "TIMEOUT"), 504)
    if kind == "reset":
        return await _drop_connection(request)
    if kind in ("partial_body", "slow_body"):
        stream = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        stream.content_length = len(body)
        await stream.prepare(request)
        half = len(body) // 2
        await stream.write(body[:half])
        if kind == "partial_body":
            return await _drop_connection(request)
        await pause(fault.delay)
        await stream.write(body[half:])
        await stream.write_eof()
        return stream
    if kind == "malformed":
        return web.Response(
            status=200, body=load_sample("pp-upi.malformed.txt"), content_type="application/json"
        )
    if kind == "oversized":
        padding = "x" * fault.size
        data = json.dumps({"order_id": order_id, "status": "CHARGED", "padding": padding})
        return web.Response(status=200, body=data.encode(), content_type="application/json")
    if kind == "wrong_order":
        other = json.loads(body)
        other["order_id"] = order_id + "X"
        return _json(other)
    if kind == "not_json_object":
        return _json([{"order_id": order_id, "status": "CHARGED"}])
    if kind == "deep_json":
        depth = 100_000
        nested = b'{"order_id": "' + order_id.encode() + b'", "x": ' + b"[" * depth
        return web.Response(
            status=200, body=nested + b"]" * depth + b"}", content_type="application/json"
        )
    return None
