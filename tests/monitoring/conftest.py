"""Fixtures for the monitoring tests (k8s/monitoring)."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestServer

from proxy.devtools.simulator import SimulatorState
from tests.conftest import ProxyFactory, make_settings
from tests.monitoring.exposition import (
    Series,
    drive_every_label_set,
    parse,
    sample_names,
    scrape,
)
from tests.support.processes import RedisProcess

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "k8s" / "monitoring"


def _load_script(name: str) -> ModuleType:
    path = ROOT / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_scripts_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look the module up in sys.modules while the class is built
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def monitoring_dir() -> Path:
    return MONITORING


@pytest.fixture(scope="session")
def check_promql() -> ModuleType:
    return _load_script("check_promql")


@pytest.fixture(scope="session")
def gen_prometheusrule() -> ModuleType:
    return _load_script("gen_prometheusrule")


@pytest.fixture(scope="session")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((MONITORING / "dashboard.json").read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="session")
def rules() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((MONITORING / "rules.yaml").read_text(encoding="utf-8"))
    return data


@pytest.fixture
def own_redis() -> Iterator[RedisProcess]:
    """A redis-server only this test uses, so the test may stop it."""
    server = RedisProcess().start()
    yield server
    server.close()


@pytest.fixture
async def live_exposition(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    own_redis: RedisProcess,
) -> str:
    """A /metrics scrape of a real proxy after traffic that creates every series the
    dashboard and the rules select: hits, misses, bypass, a 400, a 502 from an upstream 5xx,
    Juspay's NOT_FOUND, and a Redis outage (cache="error", order_proxy_redis_errors_total)."""
    proxy = await make_proxy(
        settings=make_settings(simulator.make_url(""), redis_url=own_redis.url)
    )
    await drive_every_label_set(proxy, simulator_state, own_redis)
    return await scrape(proxy)


@pytest.fixture
def live_series(live_exposition: str) -> Series:
    return parse(live_exposition)


@pytest.fixture
def exported_metric_names(live_exposition: str) -> set[str]:
    """Sample names (order_proxy_requests_total, ..._bucket, ...) of the live scrape."""
    return sample_names(live_exposition)
