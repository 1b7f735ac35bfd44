"""Per-client rate limits: shared by replicas through Redis, per process while Redis is down,
429 in Juspay's error shape with Retry-After, and a metric labelled by configured names only."""

from __future__ import annotations

import base64
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from proxy.appkeys import METRICS
from proxy.cache.keys import rate_limit_key
from proxy.cache.pipeline import AutoPipeline
from proxy.config import SettingsError, load_settings
from proxy.config.settings import ClientSettings, RateLimit, Settings
from proxy.core.errors import RateLimited
from proxy.devtools.simulator import SimulatorState
from proxy.observe.metrics import Metrics
from proxy.web.auth import hash_key
from proxy.web.ratelimit import SCOPES, LocalGcra, RateLimiter, SharedGcra
from tests.conftest import MERCHANT, ProxyFactory, make_settings
from tests.support.processes import RedisProcess

ORDER = "JP1636474794"
LIMITED_KEY = "opk_limited_client_0123456789abcdef"
FREE_KEY = "opk_unlimited_client_fedcba9876543210"
UPSTREAM_KEY = "opk_upstream_limited_client_5a5a5a5a"
# One request per 1000 s: within a test, exactly `burst` requests conform, whatever the timing.
SLOW = 0.001
Client = TestClient[web.Request, web.Application]


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def limited_settings(simulator: TestServer, redis_url: str | None, burst: int = 3) -> Settings:
    return make_settings(
        simulator.make_url(""),
        redis_url=redis_url,
        clients=(
            ClientSettings(
                "limited", hash_key(LIMITED_KEY), ("*",), rate_limit=RateLimit(SLOW, burst)
            ),
            ClientSettings("free", hash_key(FREE_KEY), ("*",)),
            ClientSettings(
                "crawler",
                hash_key(UPSTREAM_KEY),
                ("*",),
                upstream_rate_limit=RateLimit(SLOW, 1),
            ),
        ),
    )


def sample(proxy: Client, name: str, **labels: str) -> float:
    return float(proxy.app[METRICS].registry.get_sample_value(name, labels) or 0.0)


def limited_count(proxy: Client, name: str, scope: str) -> float:
    return sample(proxy, "order_proxy_rate_limited_total", client=name, scope=scope)


async def statuses(proxies: list[Client], key: str, n: int) -> list[int]:
    """n reads of one order, taking turns among the proxies."""
    out = []
    for i in range(n):
        resp = await proxies[i % len(proxies)].get(f"/orders/{ORDER}", headers=basic(key))
        out.append(resp.status)
    return out


# --- the algorithm -----------------------------------------------------------------------


def test_local_gcra_allows_the_burst_then_the_rate() -> None:
    now = [100.0]
    gcra = LocalGcra(clock=lambda: now[0])
    limit = RateLimit(rate_per_second=2.0, burst=3)  # one request per 0.5 s, 3 at once
    assert [gcra.acquire("k", limit) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert gcra.acquire("k", limit) == pytest.approx(0.5)
    now[0] += 0.25
    assert gcra.acquire("k", limit) == pytest.approx(0.25)  # refusals take nothing
    now[0] += 0.25
    assert gcra.acquire("k", limit) == 0.0
    assert gcra.acquire("k", limit) == pytest.approx(0.5)
    now[0] += 10  # idle: the burst comes back, and never more than the burst
    assert [gcra.acquire("k", limit) for _ in range(4)][-1] == pytest.approx(0.5)
    assert gcra.acquire("other", limit) == 0.0  # keys are independent
    # A rate whose interval is not exact in binary still admits its whole burst.
    thirds = RateLimit(rate_per_second=3.0, burst=3)
    assert [gcra.acquire("t", thirds) for _ in range(4)][:3] == [0.0, 0.0, 0.0]


async def test_shared_gcra_script_allows_the_burst_and_says_how_long_to_wait(
    redis_client: aioredis.Redis,
) -> None:
    pipe = AutoPipeline(redis_client, timeout=1.0)
    gcra = SharedGcra(pipe)
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    key = rate_limit_key(prefix, "svc", "all")
    odd_key = rate_limit_key(prefix, "odd", "all")
    limit = RateLimit(rate_per_second=SLOW, burst=2)
    try:
        assert [await gcra.acquire(key, limit) for _ in range(2)] == [0.0, 0.0]
        wait = await gcra.acquire(key, limit)
        assert 990 < wait <= 1000  # one interval (1000 s), less the time since the first
        assert await gcra.acquire(key, limit) == pytest.approx(wait, abs=5)
        # An interval that is not a whole number of microseconds still fits a whole burst.
        odd = RateLimit(rate_per_second=1.5, burst=2)
        assert [await gcra.acquire(odd_key, odd) for _ in range(2)] == [0.0, 0.0]
        assert 0 < await gcra.acquire(odd_key, odd) <= 0.667
        # The state is one number that expires when the limit is back to a full burst.
        ttl_ms = await redis_client.pttl(key)
        assert 1_990_000 < ttl_ms <= 2_000_000
    finally:
        await redis_client.delete(key, odd_key)
        await pipe.close()


def test_rate_limit_keys_sit_under_the_prefix_with_one_hash_tag_per_client() -> None:
    assert rate_limit_key("op", "billing", "all") == "op:ratelimit:{billing}:all"
    assert rate_limit_key("op", "billing", "upstream") == "op:ratelimit:{billing}:upstream"
    # A brace or colon in a client name cannot break out of the hash tag.
    assert rate_limit_key("op", "a}b:{c", "all") == "op:ratelimit:{a%7Db%3A%7Bc}:all"


# --- settings ----------------------------------------------------------------------------

CLIENT_TOML = """
[[clients]]
name = "billing"
key_sha256 = "{digest}"
merchants = ["*"]
{limits}
"""


def load_with_limits(tmp_path: Path, limits: str) -> Settings:
    config = tmp_path / "proxy.toml"
    config.write_text(CLIENT_TOML.format(digest=hash_key(LIMITED_KEY), limits=limits))
    return load_settings(
        {"JUSPAY_MERCHANT_ID": "m1", "JUSPAY_API_KEY": "k", "PROXY_CONFIG_FILE": str(config)}
    )


def test_client_limits_are_read_from_the_toml_file(tmp_path: Path) -> None:
    settings = load_with_limits(
        tmp_path,
        "rate_per_second = 50\nburst = 100\nupstream_rate_per_second = 2.5\nupstream_burst = 5",
    )
    (client,) = settings.clients
    assert client.rate_limit == RateLimit(50.0, 100)
    assert client.upstream_rate_limit == RateLimit(2.5, 5)
    # check-config shows them.
    (shown,) = settings.describe()["auth"]["clients"]
    assert shown["rate_limit"] == "50/s, burst 100"
    assert shown["upstream_rate_limit"] == "2.5/s, burst 5"
    # The burst defaults to one second's worth; no limit at all is the default.
    (client,) = load_with_limits(tmp_path, "upstream_rate_per_second = 2.5").clients
    assert client.rate_limit is None
    assert client.upstream_rate_limit == RateLimit(2.5, 3)


@pytest.mark.parametrize(
    ("limits", "setting"),
    [
        ("rate_per_second = 0", "clients[0].rate_per_second"),
        ("rate_per_second = -1", "clients[0].rate_per_second"),
        ("rate_per_second = 0.0001", "clients[0].rate_per_second"),
        ("rate_per_second = 2_000_000", "clients[0].rate_per_second"),
        ("rate_per_second = nan", "clients[0].rate_per_second"),
        ("rate_per_second = 5\nburst = 0", "clients[0].burst"),
        ("burst = 10", "clients[0].burst"),
        ("upstream_burst = 10", "clients[0].upstream_burst"),
        ("upstream_rate_per_second = inf", "clients[0].upstream_rate_per_second"),
    ],
)
def test_bad_client_limits_are_refused_naming_the_setting(
    tmp_path: Path, limits: str, setting: str
) -> None:
    with pytest.raises(SettingsError) as err:
        load_with_limits(tmp_path, limits)
    assert setting in str(err.value)
    assert "\n" not in str(err.value)


# --- through the proxy -------------------------------------------------------------------


async def test_over_the_limit_is_a_429_in_juspays_error_shape_with_retry_after(
    make_proxy: ProxyFactory, simulator: TestServer, redis_server: RedisProcess
) -> None:
    proxy = await make_proxy(settings=limited_settings(simulator, redis_server.url, burst=2))
    assert await statuses([proxy], LIMITED_KEY, 2) == [200, 200]
    resp = await proxy.get(f"/orders/{ORDER}", headers=basic(LIMITED_KEY))
    assert resp.status == 429
    retry_after = int(resp.headers["Retry-After"])
    assert 990 <= retry_after <= 1000
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["Content-Type"].startswith("application/json")
    body = await resp.json()
    assert set(body) == {"status", "error_code", "error_message", "error_info"}
    assert body["status"] == "error"
    assert body["error_code"] == "rate_limited"
    assert "limited" in body["error_message"]
    assert body["error_info"]["code"] == "RATE_LIMITED"
    assert body["error_info"]["category"] == "USER_ERROR"
    assert body["error_info"]["user_message"]
    assert body["error_info"]["developer_message"] == body["error_message"]
    # Juspay's SDK path is limited alike; other clients are not affected.
    old_path = await proxy.get(f"/order/status?order_id={ORDER}", headers=basic(LIMITED_KEY))
    assert old_path.status == 429
    assert await statuses([proxy], FREE_KEY, 5) == [200] * 5
    assert limited_count(proxy, "limited", "all") == 2


async def test_two_proxies_sharing_one_redis_enforce_one_limit(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    redis_server: RedisProcess,
    redis_client: aioredis.Redis,
) -> None:
    settings = limited_settings(simulator, redis_server.url, burst=3)
    a = await make_proxy(settings=settings)
    b = await make_proxy(settings=settings)
    # Taking turns: together they admit the burst once, not once each.
    assert await statuses([a, b], LIMITED_KEY, 6) == [200, 200, 200, 429, 429, 429]
    assert limited_count(a, "limited", "all") + limited_count(b, "limited", "all") == 3
    key = rate_limit_key(settings.redis.key_prefix, "limited", "all")
    assert await redis_client.pttl(key) > 0  # under the prefix, expiring


async def test_with_redis_down_limits_are_per_process_and_no_request_fails(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    own_redis: RedisProcess,
) -> None:
    settings = limited_settings(simulator, own_redis.url, burst=2)
    a = await make_proxy(settings=settings)
    b = await make_proxy(settings=settings)
    own_redis.stop()
    # Each process enforces the limit alone: the burst once per process, no 5xx.
    assert await statuses([a, b], LIMITED_KEY, 6) == [200, 200, 200, 200, 429, 429]
    assert await statuses([a], FREE_KEY, 3) == [200] * 3
    assert sample(a, "order_proxy_redis_errors_total", operation="ratelimit") >= 1
    assert limited_count(a, "limited", "all") == 1
    # Redis down: each process read Juspay once and answered the rest from what it keeps
    # through an outage (the grace), so the limits above were about requests, not Juspay.
    assert simulator_state.calls[ORDER] == 2


async def test_limiter_falls_back_to_local_and_shares_again_when_redis_answers(
    own_redis: RedisProcess,
) -> None:
    now = [1000.0]
    slow = ClientSettings("svc", hash_key(LIMITED_KEY), ("*",), rate_limit=RateLimit(SLOW, 2))
    fast = ClientSettings("fast", hash_key(FREE_KEY), ("*",), rate_limit=RateLimit(1.0, 100))
    metrics = Metrics()
    redis = aioredis.Redis.from_url(own_redis.url)
    limiter = RateLimiter((slow, fast), metrics, prefix="fb", redis=redis, clock=lambda: now[0])
    slow_key = rate_limit_key("fb", "svc", "all")
    fast_key = rate_limit_key("fb", "fast", "all")

    def commands() -> float:
        return metrics.registry.get_sample_value("order_proxy_redis_commands_total") or 0.0

    try:
        await limiter.acquire(slow, "all")
        assert await redis.exists(slow_key) == 1
        assert limiter.shared
        await limiter.acquire(slow, "all")
        assert commands() == 2
        # Over the limit in this process alone: refused without asking Redis.
        with pytest.raises(RateLimited) as refused:
            await limiter.acquire(slow, "all")
        assert commands() == 2
        assert refused.value.retry_after == 1000
        assert refused.value.status == 429

        own_redis.stop()
        await redis.connection_pool.disconnect()
        now[0] += 1000  # one more request conforms
        await limiter.acquire(slow, "all")  # Redis fails: decided here, admitted
        assert not limiter.shared
        assert metrics.registry.get_sample_value(
            "order_proxy_redis_errors_total", {"operation": "ratelimit"}
        )
        with pytest.raises(RateLimited):
            await limiter.acquire(slow, "all")  # the local state counted it

        own_redis.start()  # empty: the shared state is gone
        asked = commands()
        now[0] += 0.5  # within the pause after a failure, every check is local
        await limiter.acquire(fast, "all")
        assert commands() == asked
        assert await redis.exists(fast_key) == 0
        now[0] += 1  # past it: Redis is asked again
        await limiter.acquire(fast, "all")
        assert limiter.shared
        assert await redis.exists(fast_key) == 1
    finally:
        await limiter.close()
        await redis.aclose()


async def test_upstream_limit_counts_only_reads_that_would_call_juspay(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    redis_server: RedisProcess,
) -> None:
    simulator_state.put_order(MERCHANT, "OTHER1", "CHARGED")
    proxy = await make_proxy(settings=limited_settings(simulator, redis_server.url))
    creds = basic(UPSTREAM_KEY)
    first = await proxy.get(f"/orders/{ORDER}", headers=creds)
    assert (first.status, first.headers["X-Cache"]) == (200, "MISS")
    for _ in range(5):  # cache hits are not limited by the upstream limit
        hit = await proxy.get(f"/orders/{ORDER}", headers=creds)
        assert (hit.status, hit.headers["X-Cache"]) == (200, "HIT")
    miss = await proxy.get("/orders/OTHER1", headers=creds)
    assert miss.status == 429
    assert (await miss.json())["error_code"] == "rate_limited"
    assert int(miss.headers["Retry-After"]) >= 990
    no_cache = await proxy.get(f"/orders/{ORDER}", headers={**creds, "Cache-Control": "no-cache"})
    assert no_cache.status == 429
    batch = await proxy.post(
        "/orders:batchGet", json={"order_ids": [ORDER, "OTHER1"]}, headers=creds
    )
    items = (await batch.json())["orders"]
    # The refused id was looked up (a miss) before its upstream call was refused.
    assert [(i["http_status"], i["cache"]) for i in items] == [(200, "HIT"), (429, "MISS")]
    assert items[1]["body"]["error_code"] == "rate_limited"
    assert simulator_state.calls["OTHER1"] == 0  # refused before Juspay
    assert simulator_state.calls[ORDER] == 1
    assert limited_count(proxy, "crawler", "upstream") == 3
    # Another client's misses are its own.
    other = await proxy.get("/orders/OTHER1", headers=basic(FREE_KEY))
    assert (other.status, other.headers["X-Cache"]) == (200, "MISS")


async def test_rate_limited_metric_carries_configured_client_names_only(
    make_proxy: ProxyFactory, simulator: TestServer, redis_server: RedisProcess
) -> None:
    settings = limited_settings(simulator, redis_server.url, burst=1)
    proxy = await make_proxy(settings=settings)
    for key in (LIMITED_KEY, UPSTREAM_KEY, FREE_KEY, "opk_not_a_client_key_at_all_000000"):
        for order_id in (ORDER, "MISSING1", "MISSING2"):
            await proxy.get(f"/orders/{order_id}", headers=basic(key))
    labels = {
        (s.labels["client"], s.labels["scope"])
        for metric in proxy.app[METRICS].registry.collect()
        if metric.name == "order_proxy_rate_limited"
        for s in metric.samples
        if s.name == "order_proxy_rate_limited_total"
    }
    # Pre-created at zero for each configured limit, and nothing else, ever.
    assert labels == {("limited", "all"), ("crawler", "upstream")}
    assert all(scope in SCOPES for _, scope in labels)
    assert limited_count(proxy, "limited", "all") == 2
    assert limited_count(proxy, "crawler", "upstream") == 1
    metrics_text = await (await proxy.get("/metrics")).text()
    assert 'order_proxy_rate_limited_total{client="limited",scope="all"} 2.0' in metrics_text


async def test_no_limits_configured_adds_no_check_and_no_series(
    make_proxy: ProxyFactory, simulator: TestServer, redis_server: RedisProcess
) -> None:
    settings = limited_settings(simulator, redis_server.url)
    free_only = replace(settings, clients=(settings.clients[1],))
    proxy = await make_proxy(settings=free_only)
    assert await statuses([proxy], FREE_KEY, 5) == [200] * 5
    assert "order_proxy_rate_limited_total{" not in await (await proxy.get("/metrics")).text()
