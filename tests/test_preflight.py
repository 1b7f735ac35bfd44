"""`check-config --probe` and the start-up word from Redis, against real Redis and the simulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from proxy.config.secrets import Secret
from proxy.config.settings import RedisSettings
from proxy.preflight import probe_redis
from tests.support.cluster import RedisCluster3
from tests.support.processes import RedisProcess, ServiceProcess, free_port

KEY = "demo_api_key"


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("JUSPAY_", "REDIS_", "PROXY_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def probe(sim_url: str, redis_url: str, key: str = KEY) -> tuple[int, dict[str, object]]:
    result = run(
        "check-config",
        "--probe",
        env={
            "JUSPAY_BASE_URL": sim_url,
            "JUSPAY_MERCHANT_ID": "demo_merchant",
            "JUSPAY_API_KEY": key,
            "REDIS_URL": redis_url,
        },
    )
    assert key not in result.stdout + result.stderr
    return result.returncode, json.loads(result.stdout)


def test_probe_reaches_redis_and_says_juspay_accepted_the_key(
    sim: ServiceProcess, redis_server: RedisProcess
) -> None:
    code, report = probe(sim.url, redis_server.url)
    redis = report["redis"]
    assert isinstance(redis, dict)
    assert redis["mode"] == "standalone"
    assert redis["role"] == "master"
    assert redis["replicas"] == 0
    assert str(redis["version"])[0].isdigit()
    # The test server runs without RDB or AOF: the probe says what a restart would cost.
    assert redis["persistence"] == {"aof": False, "rdb_saves": ""}
    assert redis["verdict"] == "warning"
    [merchant] = report["juspay"]["merchants"]  # type: ignore[index]
    assert merchant["merchant_id"] == "demo_merchant"
    assert merchant["verdict"] == "ok"
    assert merchant["upstream_status"] == 400  # Juspay's NOT_FOUND for the probe's order id
    assert merchant["latency_ms"] >= 0
    assert (code, report["verdict"]) == (0, "ok")


def test_probe_says_which_merchant_key_juspay_refused(
    sim: ServiceProcess, redis_server: RedisProcess
) -> None:
    code, report = probe(sim.url, redis_server.url, key="sk_wrong_key_123")
    [merchant] = report["juspay"]["merchants"]  # type: ignore[index]
    assert merchant["verdict"] == "key_refused"
    assert (code, report["verdict"]) == (1, "failed")


def test_probe_says_redis_and_juspay_are_unreachable() -> None:
    closed = free_port()  # nothing listens there
    code, report = probe(f"http://127.0.0.1:{closed}", f"redis://127.0.0.1:{closed}/0")
    assert report["redis"]["verdict"] == "unreachable"  # type: ignore[index]
    [merchant] = report["juspay"]["merchants"]  # type: ignore[index]
    assert merchant["verdict"] == "unreachable"
    assert merchant["error"] == "upstream_unavailable"
    assert code == 1


@pytest.mark.slow
async def test_probe_describes_a_cluster_topology() -> None:
    with RedisCluster3() as cluster:
        url = f"redis+cluster://127.0.0.1:{cluster.ports[0]}"
        report = await probe_redis(RedisSettings(url=Secret(url, "test")))
    assert report["mode"] == "cluster"
    assert report["cluster"] == {"nodes": 3, "primaries": 3}
    assert report["role"] == "master"


def test_serve_logs_an_unreachable_redis_before_it_listens(sim: ServiceProcess) -> None:
    closed = free_port()
    port = free_port()
    proc = ServiceProcess(
        ["serve"],
        {
            "JUSPAY_BASE_URL": sim.url,
            "JUSPAY_MERCHANT_ID": "demo_merchant",
            "JUSPAY_API_KEY": KEY,
            "REDIS_URL": f"redis://127.0.0.1:{closed}/0",
            "PROXY_PORT": str(port),
        },
        b'"redis_unreachable"',
        port,
    )
    try:
        proc.start()  # returns once the line is out (fails if it never comes)
    finally:
        proc.stop()
