"""The simulator's state: orders (bodies and scripted lifecycles), faults, and what was asked."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from proxy.devtools.simulator.bodies import (
    IN_PROGRESS_SEEDS,
    REFUND_SEED,
    SEED_SAMPLES,
    load_sample,
    load_template,
    order_body,
    refund,
)
from proxy.devtools.simulator.errors import ControlError
from proxy.devtools.simulator.faults import FAULT_KINDS, Fault
from proxy.devtools.simulator.jwt import JwtKeys

# How long a reset waits for the reads it released to finish, so that its stats are true.
_RESET_DRAIN_SECONDS = 2.0


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
        self.faults_applied: Counter[str] = Counter()
        self.max_in_flight = 0
        # The reads being answered; one whose caller hung up no longer counts as in flight.
        self._reads: dict[int, web.Request] = {}  # by id(): requests are not hashable
        # Woken whenever a read starts or ends, for callers waiting on the reads in flight.
        self._reads_changed = asyncio.Condition()
        self.closing = asyncio.Event()
        # Set (and replaced) to wake every held read at once: on reset and at shutdown.
        self._wake = asyncio.Event()
        self._template = load_template()
        # Keys for JWT webhooks, per merchant (made on first use).
        self.jwt = JwtKeys()

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    @property
    def in_flight(self) -> int:
        """Reads being answered to a caller that is still connected."""
        return sum(
            1
            for r in self._reads.values()
            if r.transport is not None and not r.transport.is_closing()
        )

    @property
    def default_merchant(self) -> str:
        return next(iter(self.merchants))

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
        return order_body(self._template, merchant_id, order_id, status, refunds, **extra)

    def put_order(
        self,
        merchant_id: str,
        order_id: str,
        status: str,
        refunds: list[dict[str, Any]] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Serve this order from now on; `extra` puts any top-level field (offers, mandate,
        chargebacks, txn_detail, payment_gateway_response, ...)."""
        body = self.order_body(merchant_id, order_id, status, refunds, **extra)
        self.orders[(merchant_id, order_id)] = SimOrder([Stage(body)])
        return body

    def put_body(self, merchant_id: str, order_id: str, body: dict[str, Any]) -> None:
        """Serve exactly this body for the order (any JSON object, as Juspay might send it)."""
        self.orders[(merchant_id, order_id)] = SimOrder([Stage(copy.deepcopy(body))])

    def update_order(self, merchant_id: str, order_id: str, **fields: Any) -> dict[str, Any]:
        """Replace top-level fields of the order as it is now (its script ends there)."""
        body = copy.deepcopy(self.order(merchant_id, order_id).current(read=False))
        body.update(copy.deepcopy(fields))
        self.put_body(merchant_id, order_id, body)
        return body

    def order(self, merchant_id: str, order_id: str) -> SimOrder:
        found = self.orders.get((merchant_id, order_id))
        if found is None:
            raise ControlError(f"no order {order_id!r} for merchant {merchant_id!r}", status=404)
        return found

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
        pending = {**refund(order_id, 1, 1, "PENDING"), "id": f"rf_{order_id}"}
        pending["unique_request_id"] = pending["id"]
        settled = {**pending, "status": "SUCCESS", "sent_to_gateway": True}
        first = self.order_body(merchant_id, order_id, "CHARGED", [pending])
        then = self.order_body(merchant_id, order_id, "CHARGED", [settled])
        self.script(merchant_id, order_id, [Stage(first), Stage(then, **when)])

    def advance(self, merchant_id: str, order_id: str) -> None:
        self.order(merchant_id, order_id).advance()

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
        """Add a refund to the order as it is now (its other fields kept); a PENDING one turns
        SUCCESS after `settle_seconds` (or with advance())."""
        body = copy.deepcopy(self.order(merchant_id, order_id).current())
        refunds = list(body.get("refunds") or [])
        added = refund(order_id, len(refunds) + 1, amount, status)
        now = _with_refunds(body, [*refunds, added])
        stages = [Stage(now)]
        if status == "PENDING":
            settled = {**added, "status": "SUCCESS", "sent_to_gateway": True}
            stages.append(
                Stage(_with_refunds(body, [*refunds, settled]), after_seconds=settle_seconds)
            )
        self.script(merchant_id, order_id, stages)
        return added

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

    # --- reads in flight ------------------------------------------------------------------
    async def read_started(self, request: web.Request) -> None:
        self._reads[id(request)] = request
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        async with self._reads_changed:
            self._reads_changed.notify_all()

    async def read_ended(self, request: web.Request) -> None:
        self._reads.pop(id(request), None)
        async with self._reads_changed:
            self._reads_changed.notify_all()

    async def until_in_flight(self, count: int, within: float) -> bool:
        """Wait until at least `count` reads are being answered; False if time ran out."""
        async with self._reads_changed:
            try:
                async with asyncio.timeout(within):
                    await self._reads_changed.wait_for(lambda: self.in_flight >= count)
            except TimeoutError:
                return False
        return True

    async def pause(self, seconds: float) -> None:
        """Sleep, but wake at once when the simulator resets or shuts down."""
        if self.closing.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    def release_held(self) -> None:
        """Wake every read held by a fault (latency, timeout, slow body): each answers now."""
        self._wake.set()
        self._wake = asyncio.Event()

    def close(self) -> None:
        self.closing.set()
        self._wake.set()

    async def reset(self) -> None:
        """Forget faults, counts and recorded requests (orders stay); release held reads and
        wait (bounded) until they are answered, so the stats read afterwards are true."""
        self.clear_faults()
        self.release_held()
        async with self._reads_changed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_RESET_DRAIN_SECONDS):
                    await self._reads_changed.wait_for(lambda: self.in_flight == 0)
        self.calls.clear()
        self.requests.clear()
        self.faults_applied.clear()
        self.max_in_flight = self.in_flight

    def stats(self) -> dict[str, Any]:
        return {
            "total": self.total_calls,
            "calls": dict(self.calls),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "faults": [f.describe() for f in self.faults],
            "faults_applied": dict(self.faults_applied),
        }


def _with_refunds(body: dict[str, Any], refunds: list[dict[str, Any]]) -> dict[str, Any]:
    """The body with this `refunds[]`, and the totals Juspay derives from it."""
    settled = [r for r in refunds if r.get("status") == "SUCCESS"]
    out = copy.deepcopy(body)
    out.update(
        refunds=refunds,
        refunded=len(settled) == len(refunds),
        amount_refunded=sum(r.get("amount", 0) for r in settled),
    )
    return out


SIMULATOR_STATE = web.AppKey("simulator_state", SimulatorState)
