"""The control API under /__sim/: put orders (any field, or a whole body), script them, add
refunds, inject faults, read stats, reset. A bad request is a 400 that names the problem."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from proxy.devtools.simulator.bodies import REFUND_STATUSES
from proxy.devtools.simulator.errors import ControlError
from proxy.devtools.simulator.faults import parse_fault
from proxy.devtools.simulator.parsing import (
    known_merchant,
    number,
    order_id_of,
    order_key,
    read_object,
    reply,
)
from proxy.devtools.simulator.state import SIMULATOR_STATE, SimulatorState, Stage

ORDER_FIELDS = {
    "merchant_id",
    "order_id",
    "status",
    "refunds",
    "fields",
    "body",
    "statuses",
    "after_reads",
    "after_seconds",
}


async def stats(request: web.Request) -> web.Response:
    return reply(request.app[SIMULATOR_STATE].stats())


async def recorded_requests(request: web.Request) -> web.Response:
    return reply([r.__dict__ for r in request.app[SIMULATOR_STATE].requests])


async def list_orders(request: web.Request) -> web.Response:
    listed = []
    for (merchant_id, order_id), order in request.app[SIMULATOR_STATE].orders.items():
        body = order.current(read=False)
        refunds = body.get("refunds")
        listed.append(
            {
                "merchant_id": merchant_id,
                "order_id": order_id,
                "status": body.get("status"),
                "refunds": [r.get("status") for r in refunds if isinstance(r, dict)]
                if isinstance(refunds, list)
                else [],
                "stages_left": len(order.stages) - order.index - 1,
            }
        )
    return reply(listed)


def _status(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ControlError(f"'{where}' must be an order status such as CHARGED, not {value!r}")
    return value


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ControlError(f"'{where}' must be a JSON object")
    return value


def _refunds(value: object) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise ControlError("'refunds' must be a list of refund objects")
    return value


def _stage_body(
    state: SimulatorState, key: tuple[str, str], item: object, at: str
) -> dict[str, Any]:
    """A lifecycle stage: a status, or {"status", "refunds", "fields"}, or {"body"}."""
    if isinstance(item, str):
        return state.order_body(*key, _status(item, at))
    spec = _object(item, at)
    unknown = sorted(set(spec) - {"status", "refunds", "fields", "body"})
    if unknown:
        raise ControlError(f"unknown field(s) {unknown} in {at}")
    if "body" in spec:
        if len(spec) > 1:
            raise ControlError(f"{at}: 'body' is a whole body, given alone")
        return _object(spec["body"], f"{at}.body")
    fields = _object(spec.get("fields", {}), f"{at}.fields")
    return state.order_body(
        *key, _status(spec.get("status"), f"{at}.status"), _refunds(spec.get("refunds")), **fields
    )


async def put_order(request: web.Request) -> web.Response:
    """Put one order: a whole `body`; or `status` (+ `refunds`, + any top-level `fields`);
    or, for an order already served, only `fields` to change; or a script of `statuses`."""
    state = request.app[SIMULATOR_STATE]
    data = await read_object(request, ORDER_FIELDS)
    key = known_merchant(state, data.get("merchant_id")), order_id_of(data)
    given = {name for name in ("body", "statuses", "status", "refunds", "fields") if name in data}
    timing = {name for name in ("after_reads", "after_seconds") if name in data}
    if "body" in given:
        if given != {"body"} or timing:
            raise ControlError("'body' is the whole order: send it without other order fields")
        state.put_body(*key, _object(data["body"], "body"))
    elif "statuses" in given:
        if given != {"statuses"}:
            raise ControlError("'statuses' scripts every stage: put fields inside each stage")
        _script(state, key, data)
    else:
        if timing:
            raise ControlError("'after_reads' and 'after_seconds' go with 'statuses'")
        fields = _object(data.get("fields", {}), "fields")
        if "status" not in data:
            if key not in state.orders:
                raise ControlError(
                    f"order {key[1]!r} is new: 'status' is required (or a whole 'body')"
                )
            if not given:
                raise ControlError("nothing to put: give 'status', 'refunds', 'fields' or 'body'")
            extra = {**fields, **({"refunds": data["refunds"]} if "refunds" in data else {})}
            _refunds(extra.get("refunds"))
            state.update_order(*key, **extra)
        else:
            status = _status(data["status"], "status")
            state.put_order(*key, status, _refunds(data.get("refunds")), **fields)
    return reply({"ok": True, "order": state.order(*key).current(read=False)})


def _script(state: SimulatorState, key: tuple[str, str], data: dict[str, Any]) -> None:
    statuses = data["statuses"]
    if not isinstance(statuses, list) or not statuses:
        raise ControlError("'statuses' must be a non-empty list of stages")
    after_reads = number(data, "after_reads", 1, 1_000_000, whole=True)
    after_seconds = number(data, "after_seconds", 0, 86400)
    stages = [Stage(_stage_body(state, key, statuses[0], "statuses[0]"))]
    for i, item in enumerate(statuses[1:], start=1):
        stages.append(
            Stage(
                _stage_body(state, key, item, f"statuses[{i}]"),
                after_reads=None if after_reads is None else int(after_reads),
                after_seconds=after_seconds,
            )
        )
    state.script(*key, stages)


async def advance(request: web.Request) -> web.Response:
    state = request.app[SIMULATOR_STATE]
    key = order_key(state, await read_object(request, {"merchant_id", "order_id"}))
    order = state.order(*key)
    order.advance()
    left = len(order.stages) - order.index - 1
    return reply(
        {"ok": True, "status": order.current(read=False).get("status"), "stages_left": left}
    )


async def add_refund(request: web.Request) -> web.Response:
    state = request.app[SIMULATOR_STATE]
    allowed = {"merchant_id", "order_id", "amount", "status", "settle_after_seconds"}
    data = await read_object(request, allowed)
    key = order_key(state, data)
    amount = number(data, "amount", 0.01, 1e12)
    status = data.get("status", "PENDING")
    if status not in REFUND_STATUSES:
        raise ControlError(f"'status' must be one of {list(REFUND_STATUSES)}, not {status!r}")
    added = state.add_refund(
        *key,
        amount=1.0 if amount is None else amount,
        status=status,
        settle_seconds=number(data, "settle_after_seconds", 0, 86400),
    )
    return reply({"ok": True, "refund": added})


async def faults(request: web.Request) -> web.Response:
    state = request.app[SIMULATOR_STATE]
    if request.method == "DELETE":
        state.clear_faults()
        return reply({"ok": True})
    fault = parse_fault(
        await read_object(request, {"kind", "status", "delay", "size", "order_id", "remaining"})
    )
    state.add_fault(fault)
    return reply({"ok": True, "fault": fault.describe()})


async def wait_in_flight(request: web.Request) -> web.Response:
    """Answer once `count` reads are in flight (or `timeout` seconds pass): a test in another
    process can then act while a read is held, without polling."""
    state = request.app[SIMULATOR_STATE]
    data = await read_object(request, {"count", "timeout"})
    count = number(data, "count", 1, 10_000, whole=True)
    timeout = number(data, "timeout", 0, 60)
    reached = await state.until_in_flight(
        1 if count is None else int(count), 5.0 if timeout is None else timeout
    )
    return reply({"reached": reached, "in_flight": state.in_flight})


async def reset(request: web.Request) -> web.Response:
    """Clear faults, counts and recorded requests (orders stay); held reads answer first."""
    state = request.app[SIMULATOR_STATE]
    await read_object(request, set())
    await state.reset()
    return reply({"ok": True, **state.stats()})
