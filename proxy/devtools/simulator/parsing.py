"""Reading control requests: a JSON object with known fields, a merchant the simulator serves,
an order id; and the middleware that answers a ControlError with a 400 naming the problem."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from proxy.devtools.simulator.errors import ControlError
from proxy.devtools.simulator.state import SimulatorState

MAX_ORDER_ID = 128


def reply(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(data).encode(), content_type="application/json"
    )


async def read_object(request: web.Request, allowed: set[str]) -> dict[str, Any]:
    """The body as a JSON object holding only `allowed` fields; ControlError otherwise."""
    raw = await request.read()
    try:
        data = json.loads(raw) if raw.strip() else {}
    except (ValueError, RecursionError):
        raise ControlError("the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise ControlError(f"the body must be a JSON object, not {type(data).__name__}")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ControlError(f"unknown field(s) {unknown}; allowed: {sorted(allowed)}")
    return data


def known_merchant(state: SimulatorState, merchant_id: object) -> str:
    if merchant_id is None:
        return state.default_merchant
    if not isinstance(merchant_id, str) or merchant_id not in state.merchants:
        raise ControlError(
            f"'merchant_id' {merchant_id!r} is not a merchant of this simulator "
            f"(it serves {sorted(state.merchants)})"
        )
    return merchant_id


def order_id_of(data: dict[str, Any]) -> str:
    order_id = data.get("order_id")
    if not isinstance(order_id, str) or not 0 < len(order_id) <= MAX_ORDER_ID:
        raise ControlError(f"'order_id' is required: a string of 1 to {MAX_ORDER_ID} characters")
    return order_id


def order_key(state: SimulatorState, data: dict[str, Any]) -> tuple[str, str]:
    """(merchant, order id) of an order the simulator knows; 404 ControlError otherwise."""
    key = known_merchant(state, data.get("merchant_id")), order_id_of(data)
    state.order(*key)
    return key


def number(
    data: dict[str, Any], name: str, low: float, high: float, *, whole: bool = False
) -> float | None:
    """An optional number within bounds (None when absent or null)."""
    value = data.get(name)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not low <= value <= high
        or (whole and value != int(value))
    ):
        kind = "a whole number" if whole else "a number"
        raise ControlError(f"'{name}' must be {kind} from {low:g} to {high:g}, not {value!r}")
    return float(value)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def control_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ControlError as exc:
        return reply({"error": str(exc)}, exc.status)
