"""Every bench scenario by key, with the label the report shows, in the order they run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.env import Env
from bench.forged_jwe import scenario_forged_jwe
from bench.scenarios_ceilings import (
    scenario_bare,
    scenario_forward,
    scenario_lowlevel,
    scenario_nginx,
    scenario_redis_get,
)
from bench.scenarios_load import (
    scenario_accessline,
    scenario_burst_memory,
    scenario_burst_redis,
    scenario_decode,
    scenario_memory,
    scenario_waiters,
)
from bench.scenarios_proxy import (
    scenario_hit_trace_off,
    scenario_hit_traced_1pct,
    scenario_hit_traced_all,
    scenario_proxy_memory_hit,
    scenario_proxy_memory_hit_app,
    scenario_proxy_memory_hit_default,
    scenario_proxy_miss,
    scenario_proxy_miss_default,
    scenario_proxy_miss_one,
    scenario_proxy_redis_hit,
    scenario_workers_1,
    scenario_workers_2,
)

SCENARIOS: dict[str, tuple[str, Callable[[Env], dict[str, Any]]]] = {
    "lowlevel": ("ceiling: aiohttp low-level web.Server, bytes from memory", scenario_lowlevel),
    "bare": ("ceiling: aiohttp web.Application, bytes from memory", scenario_bare),
    "redis_get": ("ceiling: aiohttp + 1 redis GET", scenario_redis_get),
    "forward": ("ceiling: aiohttp forward to simulator", scenario_forward),
    "nginx": ("ceiling: nginx proxy_cache HIT", scenario_nginx),
    "proxy_memory_hit_default": (
        "proxy: in-process HIT, default (info, JSON log to file)",
        scenario_proxy_memory_hit_default,
    ),
    "proxy_memory_hit_app": (
        "proxy: in-process HIT, default, fast lane off (web.Application)",
        scenario_proxy_memory_hit_app,
    ),
    "proxy_memory_hit": ("proxy: in-process HIT, quiet logs", scenario_proxy_memory_hit),
    "proxy_hit_trace_off": (
        "proxy: in-process HIT, caller traceparent, tracing off",
        scenario_hit_trace_off,
    ),
    "proxy_hit_traced_1pct": (
        "proxy: in-process HIT, tracing on, 1% sampled",
        scenario_hit_traced_1pct,
    ),
    "proxy_hit_traced_all": (
        "proxy: in-process HIT, tracing on, all sampled",
        scenario_hit_traced_all,
    ),
    "proxy_redis_hit": (
        "proxy: Redis HIT (memory layer off), default (info)",
        scenario_proxy_redis_hit,
    ),
    "proxy_miss_default": (
        "proxy: MISS (256 orders), default (info, log to file)",
        scenario_proxy_miss_default,
    ),
    "proxy_miss": ("proxy: MISS (PENDING_VBV, 256 orders), quiet", scenario_proxy_miss),
    "proxy_miss_one": ("proxy: MISS, 1 order (coalesced)", scenario_proxy_miss_one),
    "burst_memory": ("proxy: burst, 1 uncached order (in-proc)", scenario_burst_memory),
    "burst_redis": ("proxy: burst, 1 uncached order (Redis)", scenario_burst_redis),
    "memory": ("proxy: 100k orders in-process, 64 MiB", scenario_memory),
    "waiters": ("proxy: 100 waiters, 2 replicas, settles at 5s", scenario_waiters),
    "forged_jwe": ("proxy: HIT p99 under a forged-JWE flood", scenario_forged_jwe),
    "decode": ("decode: msgspec status view vs json", scenario_decode),
    "accessline": ("access line: msgspec + sink vs structlog", scenario_accessline),
    "workers_1": ("workers: 1 process, default + Redis, both cores", scenario_workers_1),
    "workers_2": ("workers: serve --workers 2, default + Redis", scenario_workers_2),
}
