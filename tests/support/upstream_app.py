"""A scripted Juspay stand-in on 127.0.0.1: each order's answer set by the test, calls counted,
answers held until released."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass

from aiohttp import web
from yarl import URL

from proxy.devtools.simulator import STATUS_IDS, load_sample
from proxy.devtools.simulator import bodies as simulator_bodies

# A request the test expects that has not arrived by then will not: fail instead of hanging.
ARRIVAL_TIMEOUT = 5.0


def order_body(order_id: str, status: str, merchant_id: str) -> bytes:
    """Juspay's published card sample (its one refund settled), re-addressed to this order
    and status, so the proxy decodes and classifies a realistic body."""
    body = json.loads(load_sample("pp-card.json"))
    body.update(
        order_id=order_id, merchant_id=merchant_id, status=status, status_id=STATUS_IDS[status]
    )
    body["txn_detail"].update(order_id=order_id, status=status)
    return json.dumps(body).encode()


def not_found_body(order_id: str) -> bytes:
    """Juspay's answer for an order it does not know (sent with HTTP 400, or 404 in old docs)."""
    return json.dumps(simulator_bodies.not_found_body(order_id)).encode()


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes


class Upstream:
    """GET /orders/{order_id}: the answer scripted for that id (Juspay's NOT_FOUND otherwise).

    The answer is taken when the request arrives, so a test can hold it, change what Juspay
    would now say, and release the older answer (a read that raced a status change).
    """

    def __init__(self, merchant_id: str) -> None:
        self.merchant_id = merchant_id
        self.calls: Counter[str] = Counter()
        # Every request's order id, in arrival order: a test awaits this to know a read is
        # at Juspay (rather than sleeping and hoping).
        self.arrivals: asyncio.Queue[str] = asyncio.Queue()
        self._answers: dict[str, Answer] = {}
        self._gate: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self.url = URL()

    def order(self, order_id: str, status: str) -> bytes:
        """Answer 200 with a realistic order body in `status`; the body."""
        body = order_body(order_id, status, self.merchant_id)
        self._answers[order_id] = Answer(200, body)
        return body

    def respond(self, order_id: str, status: int, body: bytes) -> None:
        self._answers[order_id] = Answer(status, body)

    def hold(self) -> None:
        """Requests arriving from now on wait until release()."""
        if self._gate is None:
            self._gate = asyncio.Event()

    def release(self) -> None:
        if self._gate is not None:
            self._gate.set()
            self._gate = None

    async def arrived(self) -> str:
        """The order id of the next request to arrive (waits for it, bounded)."""
        return await asyncio.wait_for(self.arrivals.get(), ARRIVAL_TIMEOUT)

    async def _handle(self, request: web.Request) -> web.Response:
        order_id = request.match_info["order_id"]
        self.calls[order_id] += 1
        answer = self._answers.get(order_id, Answer(400, not_found_body(order_id)))
        gate = self._gate
        self.arrivals.put_nowait(order_id)
        if gate is not None:
            await gate.wait()
        return web.Response(status=answer.status, body=answer.body, content_type="application/json")

    async def start(self) -> Upstream:
        app = web.Application()
        app.router.add_get("/orders/{order_id}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = URL.build(scheme="http", host=host, port=port)
        return self

    async def close(self) -> None:
        self.release()
        if self._runner is not None:
            await self._runner.cleanup()
