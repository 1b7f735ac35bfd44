"""Juspay's side of the simulator: GET /orders/{id} and /order/status, answered as Juspay does."""

from __future__ import annotations

import base64
import binascii
import copy
import json
from typing import Any

from aiohttp import web

from proxy.devtools.simulator.bodies import error_body, not_found_body
from proxy.devtools.simulator.faults import NEEDS_ORDER, apply_fault
from proxy.devtools.simulator.state import SIMULATOR_STATE, RecordedRequest, SimulatorState


def basic_key(header: str | None) -> str | None:
    """The API key in a Basic header; Juspay's SDKs send `key:` or bare `key`."""
    if not header or not header.startswith("Basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.split(":", 1)[0]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(data).encode(), content_type="application/json"
    )


async def order_status(request: web.Request) -> web.StreamResponse:
    state = request.app[SIMULATOR_STATE]
    await state.read_started(request)
    try:
        return await _order_status(request, state)
    finally:
        await state.read_ended(request)


async def _order_status(request: web.Request, state: SimulatorState) -> web.StreamResponse:
    order_id = request.match_info.get("order_id") or request.query.get("order_id", "")
    state.requests.append(
        RecordedRequest(
            method=request.method,
            path=request.raw_path,
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
        )
    )
    state.calls[order_id] += 1

    key = basic_key(request.headers.get("Authorization"))
    merchant_id = request.headers.get("x-merchantid")
    if merchant_id is None:
        merchant_id = next((m for m, k in state.merchants.items() if k == key), None)
    if key is None or merchant_id is None or state.merchants.get(merchant_id) != key:
        return _json(error_body(401, "access_denied", "Unauthorized.", "UNAUTHORIZED"), 401)

    order = state.orders.get((merchant_id, order_id))
    if order is None:
        body_obj: dict[str, Any] | None = None
    else:
        body_obj = order.current()
        order.reads += 1
    fault = state.take_fault(order_id)
    if body_obj is None:
        if fault is not None and fault.kind not in NEEDS_ORDER:
            state.faults_applied[fault.kind] += 1
            result = await apply_fault(request, fault, order_id, b"{}", state.pause)
            if result is not None:
                return result
        return _json(not_found_body(order_id), 400)
    if request.query.get("options.add_full_gateway_response") == "true":
        body_obj = copy.deepcopy(body_obj)
        pgr = body_obj.setdefault("payment_gateway_response", {}) or {}
        pgr["gateway_response"] = {"raw": "full gateway response", "version": "simulated"}
        body_obj["payment_gateway_response"] = pgr
    body = json.dumps(body_obj).encode()
    if fault is not None:
        state.faults_applied[fault.kind] += 1
        result = await apply_fault(request, fault, order_id, body, state.pause)
        if result is not None:
            return result
    return web.Response(status=200, body=body, content_type="application/json")
