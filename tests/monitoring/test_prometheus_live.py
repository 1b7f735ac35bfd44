"""A real Prometheus scrapes a real proxy: the counts, the dashboard's hit ratio and the
recording rules come out as the traffic that was sent says they must.

Prometheus (the Debian package's binary) runs on 127.0.0.1 on a free port, with its config
and TSDB in a temporary directory, scraping the proxy's /metrics every second and loading
k8s/monitoring/rules.yaml. The test polls Prometheus' HTTP API, with a deadline, until the
final counts are in; it never sleeps "long enough".
"""

from __future__ import annotations

import asyncio
import math
import shutil
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import aiohttp
import pytest
import yaml

from tests.conftest import ProxyFactory
from tests.monitoring.exposition import SAMPLE_ORDERS, expect
from tests.support.processes import free_port

NAMESPACE = "order-proxy-test"
POD = "order-proxy-0"
JOB = "order-proxy"
HITS_PER_ORDER = 9
DEADLINE_SECONDS = 30.0
POLL_SECONDS = 0.2

T = TypeVar("T")


class PrometheusProcess:
    """One prometheus server on 127.0.0.1 with its config and TSDB under `workdir`."""

    def __init__(self, binary: str, workdir: Path, config: dict[str, Any]) -> None:
        self.binary = binary
        self.workdir = workdir
        self.config = config
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PrometheusProcess:
        config_path = self.workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(self.config), encoding="utf-8")
        (self.workdir / "data").mkdir()
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={config_path}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        return self

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    async def wait_ready(self, http: aiohttp.ClientSession) -> None:
        """Poll /-/ready until it answers 200; fail at once if the process exits."""

        async def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"prometheus exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                async with http.get(f"{self.url}/-/ready") as resp:
                    return resp.status == 200
            except aiohttp.ClientConnectionError:
                return False

        await poll(ready, bool, what="prometheus /-/ready", log=self.log_tail)

    async def query(self, http: aiohttp.ClientSession, expr: str) -> list[dict[str, Any]]:
        async with http.get(f"{self.url}/api/v1/query", params={"query": expr}) as resp:
            body = await resp.json()
        assert body["status"] == "success", body
        assert body["data"]["resultType"] == "vector", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def value(self, http: aiohttp.ClientSession, expr: str) -> float | None:
        """The value of a query that yields one series; None while it yields none."""
        result = await self.query(http, expr)
        if not result:
            return None
        assert len(result) == 1, f"{expr} gave {len(result)} series: {result}"
        return float(result[0]["value"][1])


async def poll(
    fetch: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    what: str,
    log: Callable[[], str] | None = None,
) -> T:
    """Call `fetch` until `done(result)`, or fail after DEADLINE_SECONDS with the last result."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_SECONDS
    while True:
        last = await fetch()
        if done(last):
            return last
        if loop.time() >= deadline:
            detail = f"\nprometheus log:\n{log()}" if log is not None else ""
            pytest.fail(f"{what}: still {last!r} after {DEADLINE_SECONDS}s{detail}")
        await asyncio.sleep(POLL_SECONDS)


@pytest.fixture
def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        pytest.fail(
            "prometheus not found on PATH: install the Debian `prometheus` package "
            "(apt-get install prometheus); `make test` runs scripts/ensure-tools.sh, "
            "which installs it."
        )
    return path


@pytest.fixture
def start_prometheus(
    prometheus_binary: str, tmp_path: Path
) -> Iterator[Callable[[dict[str, Any]], PrometheusProcess]]:
    started: list[PrometheusProcess] = []

    def start(config: dict[str, Any]) -> PrometheusProcess:
        workdir = tmp_path / f"prometheus-{len(started)}"
        workdir.mkdir()
        server = PrometheusProcess(prometheus_binary, workdir, config)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


def _dashboard_expr(check_promql: ModuleType, dashboard: dict[str, Any], title: str) -> str:
    (panel,) = [p for p in check_promql.panels(dashboard) if p.get("title") == title]
    (target,) = panel["targets"]
    expr: str = target["expr"]
    # What Grafana sends when $namespace and $pod select this test's target.
    values = {**check_promql.VARIABLE_VALUES, "namespace": NAMESPACE, "pod": POD}
    substituted: str = check_promql.substitute(expr, values)
    return substituted


async def test_prometheus_sees_the_known_mix_of_hits_and_misses(
    make_proxy: ProxyFactory,
    start_prometheus: Callable[[dict[str, Any]], PrometheusProcess],
    check_promql: ModuleType,
    dashboard: dict[str, Any],
    monitoring_dir: Path,
) -> None:
    # The proxy creates its hit and miss series at 0 at start-up, so rate() sees their
    # first increase (a series born at 1 has no baseline).
    proxy = await make_proxy()
    assert proxy.server.host == "127.0.0.1"
    prometheus = start_prometheus(
        {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(monitoring_dir / "rules.yaml")],
            "scrape_configs": [
                {
                    "job_name": JOB,
                    "scrape_interval": "1s",
                    "scrape_timeout": "1s",
                    "static_configs": [
                        {
                            "targets": [f"127.0.0.1:{proxy.server.port}"],
                            "labels": {"namespace": NAMESPACE, "pod": POD},
                        }
                    ],
                }
            ],
        }
    )
    hits_q = 'sum(order_proxy_requests_total{cache="hit"})'
    misses_q = 'sum(order_proxy_requests_total{cache="miss"})'

    async with aiohttp.ClientSession() as http:
        await prometheus.wait_ready(http)

        async def counts() -> tuple[float | None, float | None]:
            return await prometheus.value(http, hits_q), await prometheus.value(http, misses_q)

        # The zero baseline is in Prometheus before any traffic.
        await poll(
            counts, lambda c: c == (0.0, 0.0), what="baseline scrape", log=prometheus.log_tail
        )
        assert await prometheus.value(http, f'up{{job="{JOB}"}}') == 1.0

        for order in SAMPLE_ORDERS:
            await expect(proxy.get(f"/orders/{order}"), 200, "MISS")
            for _ in range(HITS_PER_ORDER):
                await expect(proxy.get(f"/orders/{order}"), 200, "HIT")

        orders = len(SAMPLE_ORDERS)
        final = (float(orders * HITS_PER_ORDER), float(orders))
        await poll(counts, lambda c: c == final, what="hit/miss counts", log=prometheus.log_tail)
        assert final == (45.0, 5.0)

        upstream_ok = await prometheus.value(
            http, 'sum(order_proxy_upstream_requests_total{outcome="ok"})'
        )
        assert upstream_ok == 5.0

        # The dashboard's "Cache hit ratio" panel, as Grafana would send it.
        ratio = await prometheus.value(
            http, _dashboard_expr(check_promql, dashboard, "Cache hit ratio")
        )
        assert ratio is not None
        assert math.isclose(ratio, 0.9, rel_tol=1e-9), ratio

        # The recording rule the hit-ratio alert reads, evaluated by Prometheus itself.
        recorded = f'namespace_job:order_proxy_cache_hit:ratio_rate5m{{namespace="{NAMESPACE}"}}'
        await poll(
            lambda: prometheus.value(http, recorded),
            lambda v: v is not None and math.isclose(v, 0.9, rel_tol=1e-9),
            what=recorded,
            log=prometheus.log_tail,
        )
