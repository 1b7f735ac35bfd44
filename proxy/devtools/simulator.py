"""A Juspay-compatible order-status server for the demo, the tests and the benchmarks.

It checks credentials the way Juspay does (Basic auth with the API key as username, 401
`access_denied` otherwise), answers unknown orders with Juspay's 400 NOT_FOUND, serves orders
seeded from Juspay's published samples, plays scripted lifecycles (NEW -> PENDING_VBV ->
CHARGED, failures, refunds that settle) and injects faults: latency, 5xx, 429, timeouts,
connection resets, cut-short and slow bodies, malformed JSON and oversized bodies.

A small control API under /__sim/ lets a test in another process (or a person with curl)
script orders and faults: list orders, put or script one, advance it, add a refund, inject
faults (latency, 5xx, 429, ...), and fire a Juspay-shaped webhook at a proxy. docs/simulator.md
documents each route. It listens on loopback only unless told
otherwise; it is a test double, not a server to expose.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import json
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import aiohttp
from aiohttp import web

# Juspay's numeric ids for each status (keyed on the string everywhere else).
STATUS_IDS = {
    "NEW": 10,
    "STARTED": 20,
    "CHARGED": 21,
    "JUSPAY_DECLINED": 22,
    "PENDING_VBV": 23,
    "VBV_SUCCESSFUL": 24,
    "AUTHORIZED": 25,
    "AUTHENTICATION_FAILED": 26,
    "AUTHORIZATION_FAILED": 27,
    "AUTHORIZING": 28,
    "COD_INITIATED": 29,
    "VOIDED": 31,
    "VOID_INITIATED": 32,
    "CAPTURE_INITIATED": 33,
    "CAPTURE_FAILED": 34,
    "VOID_FAILED": 35,
    "AUTO_REFUNDED": 36,
    "NOT_FOUND": 40,
}
# The published samples the simulator serves as they are (valid JSON, one per order id).
SEED_SAMPLES = (
    "pp-card.json",
    "pp-netbanking.json",
    "pp-wallets.json",
    "ec-emi.json",
    "ec-mandate.json",
)
TEMPLATE_SAMPLE = "pp-card.json"
# Orders seeded still in progress (`seed_in_progress`): id -> the statuses they go through.
IN_PROGRESS_SEEDS = {
    "SIM-PENDING-1": ("PENDING_VBV", "CHARGED"),
    "SIM-AUTHORIZING-1": ("AUTHORIZING", "AUTHORIZATION_FAILED"),
}
# CHARGED with a refund PENDING that settles to SUCCESS.
REFUND_SEED = "SIM-REFUND-1"
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


def load_sample(name: str) -> bytes:
    return resources.files("proxy.devtools").joinpath("samples", name).read_bytes()


def sample_names() -> list[str]:
    folder = resources.files("proxy.devtools").joinpath("samples")
    return sorted(item.name for item in folder.iterdir() if item.name.endswith((".json", ".txt")))


def basic_key(header: str | None) -> str | None:
    """The API key in a Basic header; Juspay's SDKs send `key:` or bare `key`."""
    if not header or not header.startswith("Basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.split(":", 1)[0]


@dataclass
class Stage:
    body: dict[str, Any]
    after_reads: int | None = None
    after_seconds: float | None = None


@dataclass
class SimOrder:
    stages: list[Stage]
    index: int = 0
    reads: int = 0
    entered_at: float = field(default_factory=time.monotonic)
    # Seeded in-progress orders: their clock starts at their first read, so they can be tried
    # whenever one gets round to it.
    idle_until_read: bool = False

    def current(self, *, read: bool = True) -> dict[str, Any]:
        if self.idle_until_read:
            if not read:
                return self.stages[self.index].body
            self.idle_until_read = False
            self.entered_at = time.monotonic()
        # Move on while the next stage's condition holds (reads or time since the last move).
        while self.index + 1 < len(self.stages):
            stage = self.stages[self.index + 1]
            ready_by_reads = stage.after_reads is not None and self.reads >= stage.after_reads
            ready_by_time = (
                stage.after_seconds is not None
                and time.monotonic() - self.entered_at >= stage.after_seconds
            )
            if not (ready_by_reads or ready_by_time):
                break
            self.index += 1
            self.reads = 0
            self.entered_at = time.monotonic()
        return self.stages[self.index].body

    def advance(self) -> None:
        if self.index + 1 < len(self.stages):
            self.index += 1
            self.reads = 0
            self.entered_at = time.monotonic()


@dataclass
class Fault:
    kind: str
    status: int = 500
    delay: float = 0.0
    size: int = 2 * 1024 * 1024
    order_id: str | None = None
    remaining: int | None = None  # None: until cleared


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


class SimulatorState:
    """Orders, faults and a record of what was asked; shared by the app and the test."""

    def __init__(self, merchants: dict[str, str] | None = None) -> None:
        self.merchants = dict(merchants or {"demo_merchant": "demo_api_key"})
        self.orders: dict[tuple[str, str], SimOrder] = {}
        self.faults: list[Fault] = []
        self.requests: deque[RecordedRequest] = deque(maxlen=2000)
        self.calls: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        # Woken whenever a read starts, for callers waiting until reads are in flight.
        self._read_started = asyncio.Condition()
        self.closing = asyncio.Event()
        self._template = json.loads(load_sample(TEMPLATE_SAMPLE))

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    # --- orders ---------------------------------------------------------------------------
    def seed_samples(self, merchant_id: str | None = None) -> list[str]:
        merchants = [merchant_id] if merchant_id else list(self.merchants)
        seeded = []
        for name in SEED_SAMPLES:
            body = json.loads(load_sample(name))
            for merchant in merchants:
                self.orders[(merchant, body["order_id"])] = SimOrder([Stage(dict(body))])
            seeded.append(body["order_id"])
        return seeded

    def order_body(
        self,
        merchant_id: str,
        order_id: str,
        status: str,
        refunds: list[dict[str, Any]] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """A realistic order body (from the card sample) with the given id and status."""
        body: dict[str, Any] = copy.deepcopy(self._template)
        body.update(
            order_id=order_id,
            merchant_id=merchant_id,
            status=status,
            status_id=STATUS_IDS.get(status, 0),
            refunds=list(refunds or []),
            refunded=bool(refunds) and all(r.get("status") == "SUCCESS" for r in refunds or []),
            amount_refunded=sum(
                r.get("amount", 0) for r in refunds or [] if r.get("status") == "SUCCESS"
            ),
        )
        body["txn_detail"]["order_id"] = order_id
        body["txn_detail"]["status"] = status
        body.update(extra)
        return body

    def put_order(
        self,
        merchant_id: str,
        order_id: str,
        status: str,
        refunds: list[dict[str, Any]] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        body = self.order_body(merchant_id, order_id, status, refunds, **extra)
        self.orders[(merchant_id, order_id)] = SimOrder([Stage(body)])
        return body

    def script(self, merchant_id: str, order_id: str, stages: list[Stage]) -> None:
        self.orders[(merchant_id, order_id)] = SimOrder(stages)

    def lifecycle(
        self,
        merchant_id: str,
        order_id: str,
        statuses: list[str],
        *,
        after_reads: int | None = None,
        after_seconds: float | None = None,
    ) -> None:
        """Statuses in order, each next one reached after some reads or seconds (or advance())."""
        stages = [Stage(self.order_body(merchant_id, order_id, statuses[0]))]
        for status in statuses[1:]:
            stages.append(
                Stage(
                    self.order_body(merchant_id, order_id, status),
                    after_reads=after_reads,
                    after_seconds=after_seconds,
                )
            )
        self.script(merchant_id, order_id, stages)

    def refund_lifecycle(self, merchant_id: str, order_id: str, **when: Any) -> None:
        """CHARGED with a refund PENDING, then the refund SUCCESS."""
        refund = {
            "id": f"rf_{order_id}",
            "unique_request_id": f"rf_{order_id}",
            "amount": 1,
            "status": "PENDING",
            "sent_to_gateway": False,
            "initiated_by": "API",
            "refund_type": "STANDARD",
            "created": "2021-11-23T15:35:32Z",
        }
        pending = self.order_body(merchant_id, order_id, "CHARGED", [refund])
        settled = self.order_body(
            merchant_id,
            order_id,
            "CHARGED",
            [{**refund, "status": "SUCCESS", "sent_to_gateway": True}],
        )
        self.script(merchant_id, order_id, [Stage(pending), Stage(settled, **when)])

    def advance(self, merchant_id: str, order_id: str) -> None:
        self.orders[(merchant_id, order_id)].advance()

    def seed_in_progress(self, settle_seconds: float, merchant_id: str | None = None) -> list[str]:
        """Orders still moving, for trying `?wait=` and webhooks: each settles `settle_seconds`
        after its first read (or at once with advance())."""
        merchants = [merchant_id] if merchant_id else list(self.merchants)
        seeded = [*IN_PROGRESS_SEEDS, REFUND_SEED]
        for merchant in merchants:
            for order_id, statuses in IN_PROGRESS_SEEDS.items():
                self.lifecycle(merchant, order_id, list(statuses), after_seconds=settle_seconds)
            self.refund_lifecycle(merchant, REFUND_SEED, after_seconds=settle_seconds)
            for order_id in seeded:
                self.orders[(merchant, order_id)].idle_until_read = True
        return seeded

    def add_refund(
        self,
        merchant_id: str,
        order_id: str,
        *,
        amount: float = 1.0,
        status: str = "PENDING",
        settle_seconds: float | None = None,
    ) -> dict[str, Any]:
        """Add a refund to the order as it is now; a PENDING one turns SUCCESS after
        `settle_seconds` (or with advance())."""
        order = self.orders[(merchant_id, order_id)]
        body = copy.deepcopy(order.current())
        refunds = list(body.get("refunds") or [])
        number = len(refunds) + 1
        refund = {
            "id": f"rf_{order_id}_{number}",
            "unique_request_id": f"rf_{order_id}_{number}",
            "amount": amount,
            "status": status,
            "sent_to_gateway": status != "PENDING",
            "initiated_by": "API",
            "refund_type": "STANDARD",
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        now = self.order_body(
            merchant_id, order_id, body.get("status", "CHARGED"), [*refunds, refund]
        )
        stages = [Stage(now)]
        if status == "PENDING":
            settled = {**refund, "status": "SUCCESS", "sent_to_gateway": True}
            stages.append(
                Stage(
                    self.order_body(merchant_id, order_id, now["status"], [*refunds, settled]),
                    after_seconds=settle_seconds,
                )
            )
        self.script(merchant_id, order_id, stages)
        return refund

    # --- faults ---------------------------------------------------------------------------
    def add_fault(self, fault: Fault) -> None:
        if fault.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {fault.kind!r}")
        self.faults.append(fault)

    def clear_faults(self) -> None:
        self.faults.clear()

    def take_fault(self, order_id: str) -> Fault | None:
        for fault in self.faults:
            if fault.order_id in (None, order_id):
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self.faults.remove(fault)
                return fault
        return None

    async def started_read(self) -> None:
        async with self._read_started:
            self._read_started.notify_all()

    async def until_in_flight(self, count: int, within: float) -> bool:
        """Wait until at least `count` reads are being answered; False if time ran out."""
        async with self._read_started:
            try:
                async with asyncio.timeout(within):
                    await self._read_started.wait_for(lambda: self.in_flight >= count)
            except TimeoutError:
                return False
        return True

    async def pause(self, seconds: float) -> None:
        """Sleep, but wake at once when the simulator shuts down."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closing.wait(), timeout=seconds)


SIMULATOR_STATE = web.AppKey("simulator_state", SimulatorState)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(data).encode(), content_type="application/json"
    )


def _error(status: int, error_code: str, message: str, code: str) -> web.Response:
    return _json(
        {
            "status": "error",
            "error_code": error_code,
            "error_message": message,
            "error_info": {
                "user_message": message,
                "developer_message": message,
                "code": code,
                "category": "USER_ERROR" if status < 500 else "SERVER_ERROR",
            },
        },
        status,
    )


async def _drop_connection(request: web.Request) -> web.Response:
    transport = request.transport
    if transport is not None:
        transport.abort()
    # aiohttp notices the closed transport and sends nothing.
    return web.Response(status=500)


async def _apply_fault(
    request: web.Request, state: SimulatorState, fault: Fault, order_id: str, body: bytes
) -> web.StreamResponse | None:
    kind = fault.kind
    if kind == "latency":
        await state.pause(fault.delay)
        return None
    if kind == "status":
        if fault.status == 429:
            resp = _error(429, "too_many_requests", "Too many requests", "RATE_LIMITED")
            resp.headers["Retry-After"] = "1"
            return resp
        return _error(fault.status, "internal_error", "Internal server Error", "INTERNAL_ERROR")
    if kind == "timeout":
        await state.pause(fault.delay or 60.0)
        return _error(504, "timeout", "took too long", "TIMEOUT")
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
        await state.pause(fault.delay)
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


async def order_status(request: web.Request) -> web.StreamResponse:
    state = request.app[SIMULATOR_STATE]
    state.in_flight += 1
    state.max_in_flight = max(state.max_in_flight, state.in_flight)
    await state.started_read()
    try:
        return await _order_status(request, state)
    finally:
        state.in_flight -= 1


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
        return _error(401, "access_denied", "Unauthorized.", "UNAUTHORIZED")

    order = state.orders.get((merchant_id, order_id))
    if order is None:
        body_obj: dict[str, Any] | None = None
    else:
        body_obj = order.current()
        order.reads += 1
    fault = state.take_fault(order_id)
    if body_obj is None:
        if fault is not None and fault.kind not in ("wrong_order", "not_json_object"):
            result = await _apply_fault(request, state, fault, order_id, b"{}")
            if result is not None:
                return result
        return _json(
            {
                "status": "NOT_FOUND",
                "error_info": {
                    "user_message": "Order Not Found",
                    "developer_message": "Order Not Found",
                    "code": "RESOURCE_NOT_FOUND",
                    "category": "USER_ERROR",
                },
                "status_id": 40,
                "order_id": order_id,
            },
            400,
        )
    if request.query.get("options.add_full_gateway_response") == "true":
        body_obj = copy.deepcopy(body_obj)
        pgr = body_obj.setdefault("payment_gateway_response", {}) or {}
        pgr["gateway_response"] = {"raw": "full gateway response", "version": "simulated"}
        body_obj["payment_gateway_response"] = pgr
    body = json.dumps(body_obj).encode()
    if fault is not None:
        result = await _apply_fault(request, state, fault, order_id, body)
        if result is not None:
            return result
    return web.Response(status=200, body=body, content_type="application/json")


# --- control API (for tests driving a simulator in another process) ------------------------


async def control_stats(request: web.Request) -> web.Response:
    state = request.app[SIMULATOR_STATE]
    return _json(
        {
            "total": state.total_calls,
            "calls": dict(state.calls),
            "in_flight": state.in_flight,
            "max_in_flight": state.max_in_flight,
        }
    )


async def control_requests(request: web.Request) -> web.Response:
    state = request.app[SIMULATOR_STATE]
    return _json([r.__dict__ for r in state.requests])


async def control_put_order(request: web.Request) -> web.Response:
    state = request.app[SIMULATOR_STATE]
    data = await request.json()
    merchant_id = data.get("merchant_id") or next(iter(state.merchants))
    if "statuses" in data:
        state.lifecycle(
            merchant_id,
            data["order_id"],
            data["statuses"],
            after_reads=data.get("after_reads"),
            after_seconds=data.get("after_seconds"),
        )
    else:
        state.put_order(merchant_id, data["order_id"], data["status"], data.get("refunds"))
    return _json({"ok": True})


async def control_advance(request: web.Request) -> web.Response:
    state = request.app[SIMULATOR_STATE]
    data = await request.json()
    state.advance(data.get("merchant_id") or next(iter(state.merchants)), data["order_id"])
    return _json({"ok": True})


async def control_list_orders(request: web.Request) -> web.Response:
    state = request.app[SIMULATOR_STATE]
    listed = []
    for (merchant_id, order_id), order in state.orders.items():
        body = order.current(read=False)
        listed.append(
            {
                "merchant_id": merchant_id,
                "order_id": order_id,
                "status": body.get("status"),
                "refunds": [r.get("status") for r in body.get("refunds") or []],
                "stages_left": len(order.stages) - order.index - 1,
            }
        )
    return _json(listed)


def _known_order(state: SimulatorState, data: dict[str, Any]) -> tuple[str, str] | web.Response:
    merchant_id = data.get("merchant_id") or next(iter(state.merchants))
    order_id = data.get("order_id")
    if not isinstance(order_id, str) or (merchant_id, order_id) not in state.orders:
        return _json({"error": f"no order {order_id!r} for merchant {merchant_id!r}"}, 404)
    return merchant_id, order_id


async def control_add_refund(request: web.Request) -> web.Response:
    state = request.app[SIMULATOR_STATE]
    data = await request.json()
    found = _known_order(state, data)
    if isinstance(found, web.Response):
        return found
    refund = state.add_refund(
        *found,
        amount=float(data.get("amount", 1.0)),
        status=str(data.get("status", "PENDING")),
        settle_seconds=data.get("settle_after_seconds"),
    )
    return _json({"ok": True, "refund": refund})


async def control_fire_webhook(request: web.Request) -> web.Response:
    """POST a Juspay-shaped webhook for one order (its current body) to `url` (a proxy's
    /webhooks/juspay), with the Basic pair given; answers with what the proxy said."""
    state = request.app[SIMULATOR_STATE]
    data = await request.json()
    found = _known_order(state, data)
    if isinstance(found, web.Response):
        return found
    merchant_id = found[0]
    url = data.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return _json({"error": "url must be the proxy's webhook URL"}, 400)
    order = copy.deepcopy(state.orders[found].current())
    order["merchant_id"] = merchant_id
    event = {
        "id": f"evt_sim_{time.monotonic_ns()}",
        "event_name": data.get("event_name") or _event_for(order),
        "date_created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "content": {"order": order},
    }
    auth = None
    if data.get("username") is not None:
        auth = aiohttp.BasicAuth(str(data["username"]), str(data.get("password", "")))
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, json=event, auth=auth, timeout=aiohttp.ClientTimeout(10)) as resp,
        ):
            answer = await resp.text()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        return _json({"error": f"could not reach {url}: {type(exc).__name__}"}, 502)
    return _json({"event_name": event["event_name"], "status": status, "answer": answer})


def _event_for(order: dict[str, Any]) -> str:
    if order.get("refunds"):
        return "ORDER_REFUNDED"
    status = order.get("status")
    if status == "CHARGED":
        return "ORDER_SUCCEEDED"
    if status in ("AUTHENTICATION_FAILED", "AUTHORIZATION_FAILED", "JUSPAY_DECLINED"):
        return "ORDER_FAILED"
    return "TXN_CREATED"


async def control_faults(request: web.Request) -> web.Response:
    state = request.app[SIMULATOR_STATE]
    if request.method == "DELETE":
        state.clear_faults()
        return _json({"ok": True})
    data = await request.json()
    try:
        state.add_fault(Fault(**data))
    except (TypeError, ValueError) as exc:
        return _json({"error": str(exc)}, 400)
    return _json({"ok": True})


async def control_wait_in_flight(request: web.Request) -> web.Response:
    """Answer once `count` reads are in flight (or `timeout` seconds pass): a test in another
    process can then act while a read is held, without polling."""
    state = request.app[SIMULATOR_STATE]
    data = await request.json()
    reached = await state.until_in_flight(int(data.get("count", 1)), float(data.get("timeout", 5)))
    return _json({"reached": reached, "in_flight": state.in_flight})


async def control_reset(request: web.Request) -> web.Response:
    state = request.app[SIMULATOR_STATE]
    state.clear_faults()
    state.calls.clear()
    state.requests.clear()
    state.max_in_flight = state.in_flight
    return _json({"ok": True})


async def _wake_sleepers(app: web.Application) -> None:
    app[SIMULATOR_STATE].closing.set()


def create_simulator_app(state: SimulatorState | None = None) -> web.Application:
    app = web.Application()
    app[SIMULATOR_STATE] = state if state is not None else SimulatorState()
    app.on_shutdown.append(_wake_sleepers)
    app.router.add_get("/orders/{order_id}", order_status)
    app.router.add_get("/order/status", order_status)
    app.router.add_get("/__sim/stats", control_stats)
    app.router.add_get("/__sim/requests", control_requests)
    app.router.add_get("/__sim/orders", control_list_orders)
    app.router.add_post("/__sim/orders", control_put_order)
    app.router.add_post("/__sim/refunds", control_add_refund)
    app.router.add_post("/__sim/webhooks", control_fire_webhook)
    app.router.add_post("/__sim/advance", control_advance)
    app.router.add_post("/__sim/faults", control_faults)
    app.router.add_delete("/__sim/faults", control_faults)
    app.router.add_post("/__sim/reset", control_reset)
    app.router.add_post("/__sim/wait_in_flight", control_wait_in_flight)
    return app
