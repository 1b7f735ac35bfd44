"""Drive real processes through seeded order lifecycles under faults, and record a history.

Topology (all on 127.0.0.1): one redis-server, one simulator, two `order-proxy serve`
processes A and B sharing the Redis; B reaches it through a Relay, so its link can be cut.

One seed is one run: a few orders walk through Juspay lifecycles in the simulator, each change
followed by Juspay's webhook to a random proxy (retried until a 200), while readers ask both
proxies (plain, no-cache, ?wait=, batchGet) and two nemeses purge, slow single upstream reads
down, pause Redis and cut B's link. Every actor draws from its own random.Random derived
from the seed, so a seed replays the same plan (the interleaving is up to the machine).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import itertools
import json
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from random import Random
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tests.history.model import Answer, Change, History, Invalidation, State
from tests.support.processes import RedisProcess, ServiceProcess, proxy_process, simulator_process
from tests.support.relay import Relay
from tests.support.simctl import control
from tests.support.topology import PersistentRedis, SentinelSet

MERCHANT, API_KEY = "demo_merchant", "demo_api_key"
HOOK_USER, HOOK_PASSWORD = "juspay", "history-hook-password"
OPERATOR_KEY = "opk_history_operator_0123456789abcdef"
PROXIES = ("A", "B")
# Juspay's numeric status ids, for realistic webhook bodies.
STATUS_IDS = {
    "NEW": 10,
    "CHARGED": 21,
    "PENDING_VBV": 23,
    "AUTHENTICATION_FAILED": 26,
    "AUTO_REFUNDED": 36,
}
READ_TIMEOUT = aiohttp.ClientTimeout(total=8)
HOOK_TIMEOUT = aiohttp.ClientTimeout(total=5)
HOOK_ATTEMPTS = 40


def _rng(name: str) -> Random:
    """One actor's random stream, derived from the seed by name (str seeds are stable)."""
    return Random(name)  # noqa: S311 - a replayable schedule, not a secret


def now() -> float:
    return time.monotonic()


def basic(user: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass(frozen=True)
class Schedule:
    """How much one seed does. Counts and times are bounds, not targets."""

    seconds: float = 10.0  # lifecycles and traffic; in-flight work then finishes
    orders: int = 6
    readers: int = 3
    read_pause: tuple[float, float] = (0.02, 0.15)
    settle_seconds: float = 2.6  # quiet time before the final reads of every order
    nemesis_every: tuple[float, float] = (0.4, 1.4)
    # Juspay stamps webhooks to the second (two events of one order can share a stamp);
    # millisecond stamps take that collision out, to see what else fails.
    ms_stamps: bool = False


@dataclass(frozen=True)
class Step:
    status: str
    refunds: tuple[dict[str, Any], ...] = ()
    event: str = ""  # the webhook Juspay sends for this change; "" for none

    @property
    def state(self) -> State:
        return State.of(self.status, list(self.refunds))


def _refund(order_id: str, n: int, status: str, amount: float) -> dict[str, Any]:
    return {
        "id": f"rf_{order_id}_{n}",
        "unique_request_id": f"urq_{order_id}_{n}",
        "amount": amount,
        "status": status,
        "created": "2026-11-21T12:00:00Z",
    }


def lifecycle(rng: Random, order_id: str) -> list[Step]:
    """One order's states in Juspay's order (the first is how it starts, no webhook)."""
    kind = rng.choice(["charge", "retry", "refunds", "auto_refund"])
    steps: list[Step]
    if kind == "charge":
        steps = [
            Step("NEW"),
            Step("PENDING_VBV", event="TXN_CREATED"),
            Step("CHARGED", event="ORDER_SUCCEEDED"),
        ]
        if rng.random() < 0.5:
            pending = (_refund(order_id, 1, "PENDING", 40.0),)
            steps.append(Step("CHARGED", pending, "ORDER_REFUNDED" if rng.random() < 0.6 else ""))
            steps.append(
                Step("CHARGED", (_refund(order_id, 1, "SUCCESS", 40.0),), "ORDER_REFUNDED")
            )
    elif kind == "retry":
        steps = [Step("PENDING_VBV"), Step("AUTHENTICATION_FAILED", event="ORDER_FAILED")]
        for _ in range(rng.randint(0, 1)):
            steps.append(Step("PENDING_VBV", event="TXN_CREATED"))
            steps.append(Step("AUTHENTICATION_FAILED", event="ORDER_FAILED"))
        steps.append(Step("PENDING_VBV", event="TXN_CREATED"))
        steps.append(Step("CHARGED", event="ORDER_SUCCEEDED"))
    elif kind == "refunds":
        first = _refund(order_id, 1, "SUCCESS", 25.0)
        steps = [
            Step("CHARGED"),
            Step(
                "CHARGED",
                (_refund(order_id, 1, "PENDING", 25.0),),
                "ORDER_REFUNDED" if rng.random() < 0.6 else "",
            ),
            Step("CHARGED", (first,), "ORDER_REFUNDED"),
            Step("CHARGED", (first, _refund(order_id, 2, "PENDING", 10.0)), "ORDER_REFUNDED"),
        ]
        if rng.random() < 0.5:
            review = _refund(order_id, 2, "MANUAL_REVIEW", 10.0)
            steps.append(Step("CHARGED", (first, review), "REFUND_MANUAL_REVIEW_NEEDED"))
        if rng.random() < 0.7:
            steps.append(
                Step("CHARGED", (first, _refund(order_id, 2, "SUCCESS", 10.0)), "ORDER_REFUNDED")
            )
        else:
            steps.append(
                Step(
                    "CHARGED",
                    (first, _refund(order_id, 2, "FAILURE", 10.0)),
                    "ORDER_REFUND_FAILED",
                )
            )
    else:
        steps = [Step("PENDING_VBV")]
        if rng.random() < 0.5:
            steps.append(Step("AUTHENTICATION_FAILED", event="ORDER_FAILED"))
        steps.append(Step("AUTO_REFUNDED", event="AUTO_REFUND_SUCCEEDED"))
    return steps


def order_body(order_id: str, step: Step) -> dict[str, Any]:
    """The order as a Juspay webhook carries it."""
    refunds = [dict(r) for r in step.refunds]
    return {
        "id": f"ord_{order_id}",
        "order_id": order_id,
        "merchant_id": MERCHANT,
        "customer_id": "cust_history",
        "status": step.status,
        "status_id": STATUS_IDS.get(step.status, 0),
        "amount": 100.0,
        "currency": "INR",
        "refunded": bool(refunds) and all(r["status"] == "SUCCESS" for r in refunds),
        "amount_refunded": sum(r["amount"] for r in refunds if r["status"] == "SUCCESS"),
        "refunds": refunds,
    }


# --- the processes ------------------------------------------------------------------------


# The Redis topologies a cluster can run on (see open_cluster and Run._network).
TOPOLOGIES = ("standalone", "rdb", "aof", "sentinel")


@dataclass
class Cluster:
    topology: str
    sim: ServiceProcess
    proxies: dict[str, ServiceProcess]
    http: aiohttp.ClientSession
    run_id: str
    # standalone, rdb, aof: the one Redis, and B's link to it through a relay.
    redis: RedisProcess | None = None
    relay: Relay | None = None
    # sentinel: a primary, a replica behind a relay, and a Sentinel (one failover each).
    ha: SentinelSet | None = None
    # Proxies running several processes (`--workers`): an invalidation one of them
    # acknowledges reaches its siblings over the bus, like another replica's.
    multi_process: frozenset[str] = frozenset()
    runs: int = 0

    def url(self, proxy: str) -> str:
        return self.proxies[proxy].url

    def primary_client(self) -> aioredis.Redis:
        """A client of the current primary (for CLIENT PAUSE); the caller closes it."""
        if self.ha is not None:
            return aioredis.Redis(port=self.ha.primary.port)
        assert self.redis is not None
        return aioredis.Redis(port=self.redis.port)


def _config(path: Path, key_prefix: str) -> Path:
    digest = hashlib.sha256(OPERATOR_KEY.encode()).hexdigest()
    path.write_text(
        "[[clients]]\n"
        'name = "history-operator"\n'
        f'key_sha256 = "{digest}"\n'
        'merchants = ["*"]\n'
        "operator = true\n"
        "\n[redis]\n"
        f'key_prefix = "{key_prefix}"\n'
    )
    return path


def _proxy_env(sim: ServiceProcess, redis_url: str, config: Path) -> dict[str, str]:
    return {
        "JUSPAY_BASE_URL": sim.url,
        "JUSPAY_MERCHANT_ID": MERCHANT,
        "JUSPAY_API_KEY": API_KEY,
        "JUSPAY_TIMEOUT_SECONDS": "3",
        "REDIS_URL": redis_url,
        "JUSPAY_WEBHOOK_USERNAME": HOOK_USER,
        "JUSPAY_WEBHOOK_PASSWORD": HOOK_PASSWORD,
        "PROXY_CONFIG_FILE": str(config),
        "PROXY_DRAIN_SECONDS": "2",
    }


async def _start(proc: ServiceProcess, stack: contextlib.AsyncExitStack) -> ServiceProcess:
    # Started off the loop: the relay (on this loop) must keep forwarding meanwhile.
    await asyncio.to_thread(proc.start)
    stack.push_async_callback(asyncio.to_thread, proc.stop)
    return proc


@contextlib.asynccontextmanager
async def open_cluster(topology: str = "standalone", workers: int = 2) -> AsyncIterator[Cluster]:
    """Redis in `topology`, the simulator, and proxies A (`--workers workers`) and B; for the
    standalone, rdb and aof topologies B reaches Redis through a relay. Everything is stopped
    on exit. A sentinel cluster fails over once: open one per seed."""
    if topology not in TOPOLOGIES:
        raise ValueError(f"unknown topology {topology!r}")
    run_id = hashlib.sha256(f"{time.time_ns()}".encode()).hexdigest()[:8]
    async with contextlib.AsyncExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="order-proxy-hist-")))
        redis: RedisProcess | None = None
        relay: Relay | None = None
        ha: SentinelSet | None = None
        if topology == "sentinel":
            ha = await SentinelSet.start()
            stack.push_async_callback(ha.close)
            url_a = url_b = ha.url
        else:
            redis = (
                RedisProcess()
                if topology == "standalone"
                else PersistentRedis(aof=topology == "aof")
            )
            await asyncio.to_thread(redis.start)
            stack.push_async_callback(asyncio.to_thread, redis.close)
            relay = await Relay(redis.port).start()
            stack.push_async_callback(relay.close)
            url_a, url_b = redis.url, relay.url()
        sim = await _start(simulator_process(MERCHANT, API_KEY), stack)
        config = _config(tmp / "proxy.toml", f"history-{run_id}")
        a = await _start(proxy_process(_proxy_env(sim, url_a, config), workers=workers), stack)
        b = await _start(proxy_process(_proxy_env(sim, url_b, config)), stack)
        http = await stack.enter_async_context(
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
        )
        yield Cluster(
            topology,
            sim,
            {"A": a, "B": b},
            http,
            run_id,
            redis=redis,
            relay=relay,
            ha=ha,
            multi_process=frozenset({"A"}) if workers > 1 else frozenset(),
        )


# --- one seed -----------------------------------------------------------------------------


@dataclass
class _Order:
    order_id: str
    steps: list[Step]
    poke: asyncio.Event = field(default_factory=asyncio.Event)


class Run:
    def __init__(self, cluster: Cluster, seed: int, schedule: Schedule) -> None:
        self.cluster = cluster
        self.seed = seed
        self.schedule = schedule
        self.history = History(
            seed=seed, t0=now(), topology=cluster.topology, multi_process=cluster.multi_process
        )
        self.deadline = self.history.t0 + schedule.seconds
        self._ops = itertools.count(1)
        self._auth = {"Authorization": basic(OPERATOR_KEY)}
        self._hook_auth = {"Authorization": basic(HOOK_USER, HOOK_PASSWORD)}
        self._group: asyncio.TaskGroup | None = None
        cluster.runs += 1
        stem = f"h{cluster.run_id}-{cluster.runs}-s{seed}"
        plan = _rng(f"{seed}/plan")
        self.orders = [
            _Order(f"{stem}-o{i}", lifecycle(plan, f"{stem}-o{i}")) for i in range(schedule.orders)
        ]
        self.history.orders = [o.order_id for o in self.orders]

    @property
    def http(self) -> aiohttp.ClientSession:
        return self.cluster.http

    def _over(self) -> bool:
        return now() >= self.deadline

    async def execute(self) -> History:
        history = self.history
        for order in self.orders:
            await self._change(order.order_id, order.steps[0])
        history.t0 = now()
        self.deadline = history.t0 + self.schedule.seconds
        try:
            # A failing actor cancels the others; the group also awaits the slow reads.
            async with asyncio.TaskGroup() as group:
                self._group = group
                for index, order in enumerate(self.orders):
                    group.create_task(self._drive_order(index, order))
                for index in range(self.schedule.readers):
                    group.create_task(self._reader(index))
                group.create_task(self._operator())
                group.create_task(self._network())
        finally:
            await self._heal()
            with contextlib.suppress(aiohttp.ClientError, AssertionError):
                await control(self.http, self.cluster.sim, "faults", method="DELETE")
        history.note(now(), "", "schedule over; settling before the final reads")
        await asyncio.sleep(self.schedule.settle_seconds)
        await self._final_reads()
        return history

    # --- the simulator and webhooks -----------------------------------------------------

    async def _change(self, order_id: str, step: Step) -> None:
        before = now()
        await control(
            self.http,
            self.cluster.sim,
            "orders",
            merchant_id=MERCHANT,
            order_id=order_id,
            status=step.status,
            refunds=[dict(r) for r in step.refunds],
        )
        self.history.changes.append(Change(order_id, step.state, before, now(), step.event))

    async def _drive_order(self, index: int, order: _Order) -> None:
        rng = _rng(f"{self.seed}/order/{index}")
        retries = _rng(f"{self.seed}/order/{index}/retries")
        mean_gap = self.schedule.seconds / len(order.steps)
        sent: list[dict[str, Any]] = []
        for n, step in enumerate(order.steps[1:], start=1):
            gap = rng.uniform(0.25, 1.5) * mean_gap
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(order.poke.wait(), timeout=gap)
            order.poke.clear()
            if self._over():
                return
            lag = rng.uniform(0.1, 0.8) if step.event and rng.random() < 0.3 else 0.0
            if not lag:
                await self._change(order.order_id, step)
            if not step.event:
                continue
            event = {
                "id": f"evt_{order.order_id}_{n}",
                "event_name": step.event,
                "date_created": _stamp(time.time(), ms=self.schedule.ms_stamps),
                "content": {"order": order_body(order.order_id, step)},
            }
            acked = await self._deliver(order.order_id, event, retries, replay=False)
            if lag:
                # Juspay's read side lags its webhook: reads show the old state a while
                # longer. Once they catch up, nothing older than the webhook may be served:
                # the webhook binds from then on.
                self.history.note(now(), order.order_id, f"read side lags by {lag:.2f}s")
                await asyncio.sleep(lag)
                await self._change(order.order_id, step)
                self.history.counts["lagging_reads"] += 1
                if acked is not None:
                    caught_up = self.history.changes[-1].after
                    self.history.invalidations[acked] = dataclasses.replace(
                        self.history.invalidations[acked],
                        ack=max(self.history.invalidations[acked].ack, caught_up),
                    )
            sent.append(event)
            if len(sent) > 1 and rng.random() < 0.2:
                # Juspay delivers duplicates: an older event arrives again, late.
                await self._deliver(order.order_id, rng.choice(sent[:-1]), retries, replay=True)

    async def _deliver(
        self, order_id: str, event: dict[str, Any], rng: Random, *, replay: bool
    ) -> int | None:
        """POST the webhook to a random proxy until one answers 200, as Juspay retries; the
        index of its acknowledged invalidation in the history (None: none recorded)."""
        body = json.dumps(event).encode()
        name = str(event["event_name"])
        headers = {**self._hook_auth, "Content-Type": "application/json"}
        history = self.history
        for _ in range(HOOK_ATTEMPTS):
            proxy = rng.choice(PROXIES)
            url = f"{self.cluster.url(proxy)}/webhooks/juspay"
            try:
                async with self.http.post(
                    url, data=body, headers=headers, timeout=HOOK_TIMEOUT
                ) as resp:
                    text = await resp.text()
                    ack = now()
                    if resp.status == 200:
                        result = _result_of(text)
                        if replay:
                            history.note(
                                ack, order_id, f"replayed {name} acked by {proxy}: {result}"
                            )
                        else:
                            history.invalidations.append(
                                Invalidation(order_id, proxy, ack, "webhook", f"{name}: {result}")
                            )
                            return len(history.invalidations) - 1
                        return None
                    history.note(ack, order_id, f"webhook {name} to {proxy}: {resp.status}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                history.note(now(), order_id, f"webhook {name} to {proxy}: {type(exc).__name__}")
            history.counts["webhook_retries"] += 1
            await asyncio.sleep(rng.uniform(0.1, 0.3))
        history.note(now(), order_id, f"webhook {name} never acknowledged")
        history.counts["webhooks_abandoned"] += 1
        return None

    # --- readers ------------------------------------------------------------------------

    async def _reader(self, index: int) -> None:
        rng = _rng(f"{self.seed}/reader/{index}")
        ids = [o.order_id for o in self.orders]
        while not self._over():
            proxy = rng.choice(PROXIES)
            roll = rng.random()
            if roll < 0.45:
                await self._get(proxy, rng.choice(ids), "get")
            elif roll < 0.62:
                await self._get(proxy, rng.choice(ids), "no-cache")
            elif roll < 0.72:
                await self._get(proxy, rng.choice(ids), "wait", wait=rng.choice([0.5, 1.0]))
            else:
                await self._batch(proxy, rng.sample(ids, rng.randint(1, min(4, len(ids)))))
            await asyncio.sleep(rng.uniform(*self.schedule.read_pause))

    async def _get(
        self, proxy: str, order_id: str, kind: str, *, wait: float | None = None, note: str = ""
    ) -> None:
        op = next(self._ops)
        headers = dict(self._auth)
        if kind == "no-cache":
            headers["Cache-Control"] = "no-cache"
        params = {"wait": str(wait)} if wait is not None else {}
        url = f"{self.cluster.url(proxy)}/orders/{order_id}"
        start = now()
        try:
            async with self.http.get(
                url, headers=headers, params=params, timeout=READ_TIMEOUT
            ) as resp:
                raw = await resp.read()
                end = now()
                status, x_cache = resp.status, resp.headers.get("X-Cache", "")
                if "X-Wait" in resp.headers:
                    note = f"{note} X-Wait={resp.headers['X-Wait']}".strip()
        except (aiohttp.ClientError, TimeoutError) as exc:
            note = f"{note} {type(exc).__name__}".strip()
            self._record(Answer(op, kind, proxy, order_id, start, now(), None, "", None, note))
            return
        state = _state_of(raw) if status == 200 else None
        self._record(Answer(op, kind, proxy, order_id, start, end, status, x_cache, state, note))

    async def _batch(self, proxy: str, ids: list[str], kind: str = "batch") -> None:
        op = next(self._ops)
        url = f"{self.cluster.url(proxy)}/orders:batchGet"
        start = now()
        try:
            async with self.http.post(
                url, json={"order_ids": ids}, headers=self._auth, timeout=READ_TIMEOUT
            ) as resp:
                raw = await resp.read()
                end = now()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            for order_id in ids:
                self._record(
                    Answer(
                        op, kind, proxy, order_id, start, now(), None, "", None, type(exc).__name__
                    )
                )
            return
        items = _batch_items(raw) if status == 200 else None
        if items is None:
            for order_id in ids:
                self._record(Answer(op, kind, proxy, order_id, start, end, status, "", None))
            return
        for item in items:
            item_status = item.get("http_status")
            body = item.get("body")
            self._record(
                Answer(
                    op,
                    kind,
                    proxy,
                    str(item.get("order_id")),
                    start,
                    end,
                    item_status if isinstance(item_status, int) else None,
                    str(item.get("cache") or ""),
                    State.from_body(body) if item_status == 200 else None,
                )
            )

    def _record(self, answer: Answer) -> None:
        self.history.answers.append(answer)

    async def _final_reads(self) -> None:
        ids = [o.order_id for o in self.orders]
        for proxy in PROXIES:
            for order_id in ids:
                await self._get(proxy, order_id, "final")
            await self._batch(proxy, ids, "final-batch")

    # --- nemeses ------------------------------------------------------------------------

    async def _operator(self) -> None:
        """Purges, and single slow upstream reads that a state change then overtakes."""
        rng = _rng(f"{self.seed}/operator")
        history = self.history
        while not self._over():
            await asyncio.sleep(rng.uniform(*self.schedule.nemesis_every))
            if self._over():
                return
            order = rng.choice(self.orders)
            proxy = rng.choice(PROXIES)
            if rng.random() < 0.4:
                await self._purge(proxy, order.order_id)
                continue
            delay = round(rng.uniform(0.3, 1.0), 3)
            await control(
                self.http,
                self.cluster.sim,
                "faults",
                kind="latency",
                delay=delay,
                order_id=order.order_id,
                remaining=1,
            )
            history.counts["slow_reads"] += 1
            history.note(now(), order.order_id, f"nemesis: next upstream read takes {delay}s")
            kind = rng.choice(["get", "no-cache"])
            assert self._group is not None
            self._group.create_task(self._get(proxy, order.order_id, kind, note="slow"))
            await asyncio.sleep(rng.uniform(0.05, 0.25))
            order.poke.set()  # its next state change (and webhook) now, mid-read
            if rng.random() < 0.5:
                # A no-cache read once the state has (likely) changed, while the slow one is
                # still out: it must not be answered by that older upstream read.
                await asyncio.sleep(rng.uniform(0.02, 0.1))
                self._group.create_task(
                    self._get(proxy, order.order_id, "no-cache", note="after-slow")
                )

    async def _purge(self, proxy: str, order_id: str) -> None:
        url = f"{self.cluster.url(proxy)}/cache/orders/{order_id}"
        try:
            async with self.http.delete(url, headers=self._auth, timeout=READ_TIMEOUT) as resp:
                text = await resp.text()
                ack = now()
                if resp.status == 200:
                    entries = json.loads(text).get("entries")
                    self.history.invalidations.append(
                        Invalidation(order_id, proxy, ack, "purge", f"entries={entries}")
                    )
                else:
                    self.history.note(ack, order_id, f"purge via {proxy}: {resp.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.history.note(now(), order_id, f"purge via {proxy}: {type(exc).__name__}")

    async def _network(self) -> None:
        """Redis pauses (CLIENT PAUSE ... ALL) and, by topology: cuts of B's link to Redis,
        Redis outages (standalone), crashes and restarts from the RDB snapshot or the AOF
        (rdb, aof), a failover to a lagging replica (sentinel, once)."""
        rng = _rng(f"{self.seed}/network")
        topology = self.cluster.topology
        failed_over = False
        while not self._over():
            await asyncio.sleep(rng.uniform(*self.schedule.nemesis_every))
            if self._over():
                return
            roll = rng.random()
            if roll < 0.3:
                await self._pause(rng)
            elif topology == "sentinel":
                if not failed_over and roll > 0.5:
                    failed_over = True
                    await self._failover(rng)
            elif roll < 0.6:
                await self._cut(rng)
            elif topology == "standalone":
                await self._outage(rng)
            else:
                await self._crash(rng)

    async def _pause(self, rng: Random) -> None:
        ms = rng.randint(200, 800)
        client = self.cluster.primary_client()
        try:
            await client.client_pause(ms, all=True)
        except (RedisError, OSError):
            return
        finally:
            await client.aclose()
        self.history.counts["redis_pauses"] += 1
        self.history.note(now(), "", f"nemesis: Redis paused for {ms} ms")

    def _hold(self, rng: Random, low: float, high: float) -> float:
        # A short schedule does not wait long past its end for a fault to heal.
        return min(rng.uniform(low, high), max(0.5, self.deadline + 1.0 - now()))

    async def _cut(self, rng: Random) -> None:
        relay = self.cluster.relay
        assert relay is not None
        history = self.history
        hold = self._hold(rng, 1.0, 3.0)
        reset = rng.random() < 0.3
        relay.cut()
        history.counts["relay_cuts"] += 1
        history.note(now(), "", f"nemesis: B's Redis link cut for {hold:.2f}s")
        try:
            await asyncio.sleep(hold)
            if reset:
                relay.reset()
                history.note(now(), "", "nemesis: B's Redis connections reset")
        finally:
            relay.restore()
        history.note(now(), "", "nemesis: B's Redis link restored")

    async def _outage(self, rng: Random) -> None:
        """Redis stops (both proxies lose it), then starts again empty."""
        redis = self.cluster.redis
        assert redis is not None
        hold = self._hold(rng, 0.5, 1.5)
        await asyncio.to_thread(redis.stop)
        self.history.counts["redis_outages"] += 1
        self.history.note(now(), "", f"nemesis: Redis down for {hold:.2f}s")
        try:
            await asyncio.sleep(hold)
        finally:
            await asyncio.to_thread(redis.start)
        self.history.note(now(), "", "nemesis: Redis back (empty)")

    async def _crash(self, rng: Random) -> None:
        """SIGKILL Redis and restart it from its files: an RDB snapshot taken a moment before
        (so the writes since are lost), or the AOF."""
        redis = self.cluster.redis
        assert isinstance(redis, PersistentRedis)
        history = self.history
        if self.cluster.topology == "rdb":
            client = self.cluster.primary_client()
            try:
                await client.save()
            except (RedisError, OSError):
                return
            finally:
                await client.aclose()
            history.note(now(), "", "nemesis: Redis snapshot saved")
            await asyncio.sleep(rng.uniform(0.2, 0.8))  # changes and webhooks go on
        await asyncio.to_thread(redis.crash)
        history.counts["redis_crashes"] += 1
        history.note(now(), "", f"nemesis: Redis killed ({self.cluster.topology})")
        await asyncio.to_thread(redis.start)
        history.note(now(), "", "nemesis: Redis restarted from its files")

    async def _failover(self, rng: Random) -> None:
        """The replica falls behind, the primary dies, Sentinel promotes the replica."""
        ha = self.cluster.ha
        assert ha is not None
        history = self.history
        ha.relay.cut()
        history.note(now(), "", "nemesis: the replica's link held (it lags)")
        await asyncio.sleep(rng.uniform(0.2, 0.8))  # changes and webhooks go on
        await asyncio.to_thread(ha.crash_primary)
        history.counts["failovers"] += 1
        history.note(now(), "", "nemesis: primary killed")
        await ha.until_switched()
        history.note(now(), "", "nemesis: Sentinel promoted the replica")

    async def _heal(self) -> None:
        """Whatever a nemesis left broken when the schedule ended (pauses expire alone)."""
        if self.cluster.relay is not None:
            self.cluster.relay.restore()
        if self.cluster.redis is not None and self.cluster.redis.proc is None:
            await asyncio.to_thread(self.cluster.redis.start)
        client = self.cluster.primary_client()
        with contextlib.suppress(RedisError, OSError):
            await client.client_unpause()
        await client.aclose()


def _stamp(at: float, *, ms: bool) -> str:
    """A webhook's date_created: Juspay's "2026-11-21T12:00:00Z" (or with milliseconds)."""
    second = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at))
    return f"{second}.{int(at * 1000) % 1000:03d}Z" if ms else f"{second}Z"


def _result_of(text: str) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        return "(not JSON)"
    return str(data.get("result")) if isinstance(data, dict) else "(not an object)"


def _state_of(raw: bytes) -> State | None:
    try:
        return State.from_body(json.loads(raw))
    except ValueError:
        return None


def _batch_items(raw: bytes) -> list[dict[str, Any]] | None:
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    items = data.get("orders") if isinstance(data, dict) else None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        return None
    return items


async def run_seed(cluster: Cluster, seed: int, schedule: Schedule | None = None) -> History:
    return await Run(cluster, seed, schedule or Schedule()).execute()
