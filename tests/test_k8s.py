"""The manifests are tested like code: rendered, validated, and their container contract run."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from proxy.web.auth import hash_key
from tests.support.processes import RedisProcess, ServiceProcess, free_port, simulator_process

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def test_k8s_check_renders_and_validates_every_overlay() -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "k8s-check.sh")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "all checks passed" in result.stdout


def contract(overlay: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "k8s_contract.py"), overlay],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return json.loads(out)  # type: ignore[no-any-return]


@pytest.mark.parametrize("overlay", ["gateway", "sidecar"])
async def test_the_rendered_container_starts_and_answers_its_probes(
    overlay: str, tmp_path: Path, redis_server: RedisProcess
) -> None:
    spec = contract(overlay)
    # The Dockerfile's ENTRYPOINT/CMD and the manifest agree on the start command.
    assert spec["command"] == ["order-proxy"]
    assert spec["args"] == ["serve"]
    assert spec["port"] == 8080
    # Probes and scrapes go to the internal listener; the API port serves neither.
    assert spec["internal_port"] == 9090
    assert set(spec["probe_ports"].values()) == {9090}  # type: ignore[attr-defined]

    sim = simulator_process("demo_merchant", "demo_api_key").start()
    key_file = tmp_path / "juspay-api-key"
    key_file.write_text("demo_api_key\n")
    hook_file = tmp_path / "webhook-password"
    hook_file.write_text("hook-password\n")
    config = tmp_path / "config.toml"
    config.write_text(
        f'[[clients]]\nname = "probe"\nkey_sha256 = "{hash_key("opk_probe")}"\nmerchants = ["*"]\n'
    )
    port = free_port()
    internal_port = free_port()
    # A value for every variable the manifest sets, as a cluster would (loopback only here).
    values = {
        "JUSPAY_API_KEY_FILE": str(key_file),
        "JUSPAY_BASE_URL": sim.url,
        "JUSPAY_MERCHANT_ID": "demo_merchant",
        "JUSPAY_TIMEOUT_SECONDS": "10",
        "JUSPAY_WEBHOOK_PASSWORD_FILE": str(hook_file),
        "JUSPAY_WEBHOOK_USERNAME": "juspay",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "info",
        "PROXY_CONFIG_FILE": str(config),
        "PROXY_DRAIN_SECONDS": "5",
        "PROXY_HOST": "127.0.0.1",
        "PROXY_PORT": str(port),
        "PROXY_INTERNAL_PORT": str(internal_port),
        "PROXY_INTERNAL_HOST": "127.0.0.1",
        "REDIS_URL": redis_server.url,  # from the Secret's redis-url in a cluster
    }
    env_names = set(spec["env_names"])  # type: ignore[arg-type]
    missing = env_names - set(values)
    assert not missing, f"the manifest sets variables this test does not know: {missing}"
    proxy = ServiceProcess(
        list(spec["args"]),  # type: ignore[arg-type]
        {name: values[name] for name in env_names},
        b'"listening"',
        port,
        # Exactly the manifest's command: the console script the image's ENTRYPOINT runs.
        program=[str(Path(sys.executable).with_name(spec["command"][0]))],  # type: ignore[index]
    )
    try:
        proxy.start()
        async with aiohttp.ClientSession() as http:
            probes: dict[str, str] = spec["probes"]  # type: ignore[assignment]
            internal = f"http://127.0.0.1:{internal_port}"
            for kind, path in probes.items():
                async with http.get(f"{internal}{path}") as resp:
                    assert resp.status == 200, (kind, path, await resp.text())
                async with http.get(f"{proxy.url}{path}") as resp:
                    assert resp.status == 404, (kind, path, "served on the API port")
            async with http.get(f"{internal}/metrics") as resp:
                assert resp.status == 200
                assert "order_proxy_requests_total" in await resp.text()
        proxy.terminate()
        assert await asyncio.to_thread(proxy.wait, 15) == 0
    finally:
        proxy.stop()
        sim.stop()


def test_k8s_check_fails_an_overlay_whose_replicas_share_no_redis(tmp_path: Path) -> None:
    # A copy of what k8s-check reads, plus an overlay: the gateway without REDIS_URL.
    for part in ("scripts", "k8s"):
        shutil.copytree(ROOT / part, tmp_path / part)
    shutil.copy(ROOT / "Dockerfile", tmp_path / "Dockerfile")
    bad = tmp_path / "k8s" / "overlays" / "no-redis"
    bad.mkdir()
    (bad / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        "resources:\n"
        "  - ../gateway\n"
        "patches:\n"
        "  - patch: |-\n"
        "      apiVersion: apps/v1\n"
        "      kind: Deployment\n"
        "      metadata:\n"
        "        name: order-proxy\n"
        "      spec:\n"
        "        template:\n"
        "          spec:\n"
        "            containers:\n"
        "              - name: order-proxy\n"
        "                env:\n"
        "                  - name: REDIS_URL\n"
        "                    $patch: delete\n"
    )
    result = subprocess.run(
        ["bash", str(tmp_path / "scripts" / "k8s-check.sh")],
        cwd=tmp_path,
        env={**os.environ, "VENV": str(ROOT / ".venv")},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode != 0, result.stdout[-3000:]
    assert "k8s/overlays/no-redis runs several proxies without a shared Redis" in result.stderr
    assert "Deployment order-proxy: an HPA scales it" in result.stderr
    assert "no REDIS_URL" in result.stderr


def _deployment(replicas: int, env: list[dict[str, Any]], env_from: list[Any]) -> dict[str, Any]:
    container = {"name": "order-proxy", "env": env, "envFrom": env_from}
    return {
        "kind": "Deployment",
        "metadata": {"name": "proxy", "namespace": "ns"},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [container]}}},
    }


HPA = {
    "kind": "HorizontalPodAutoscaler",
    "metadata": {"name": "proxy", "namespace": "ns"},
    "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "proxy"}},
}
FROM_SECRET = [
    {"name": "REDIS_URL", "valueFrom": {"secretKeyRef": {"name": "s", "key": "redis-url"}}}
]
ENV_MAP = {"configMapRef": {"name": "env"}}


def _config_map(**data: str) -> dict[str, Any]:
    return {"kind": "ConfigMap", "metadata": {"name": "env", "namespace": "ns"}, "data": data}


@pytest.mark.parametrize(
    ("resources", "fails"),
    [
        ([_deployment(1, [], [])], False),  # one pod, no HPA: an in-process cache is fine
        ([_deployment(3, [], [])], True),
        ([_deployment(1, [], []), HPA], True),
        ([_deployment(3, FROM_SECRET, [])], False),
        ([_deployment(1, FROM_SECRET, []), HPA], False),
        ([_deployment(2, [{"name": "REDIS_URL", "value": "redis://r:6379/0"}], [])], False),
        ([_deployment(2, [{"name": "REDIS_URL", "value": " "}], [])], True),  # empty: unset
        ([_deployment(2, [], [ENV_MAP]), _config_map(REDIS_URL="redis://r:6379/0")], False),
        ([_deployment(2, [], [ENV_MAP]), _config_map(LOG_LEVEL="info")], True),
        # env wins over envFrom: an empty value there unsets the ConfigMap's.
        (
            [
                _deployment(2, [{"name": "REDIS_URL", "value": ""}], [ENV_MAP]),
                _config_map(REDIS_URL="redis://r:6379/0"),
            ],
            True,
        ),
        # A Secret made out of band may or may not hold it: not enough.
        ([_deployment(2, [], [{"secretRef": {"name": "elsewhere"}}])], True),
        # An optional reference may resolve to nothing.
        (
            [
                _deployment(
                    2,
                    [
                        {
                            "name": "REDIS_URL",
                            "valueFrom": {
                                "secretKeyRef": {"name": "s", "key": "k", "optional": True}
                            },
                        }
                    ],
                    [],
                )
            ],
            True,
        ),
    ],
)
def test_the_fleet_check_wants_redis_url_wherever_several_pods_run(
    resources: list[dict[str, Any]], fails: bool, tmp_path: Path
) -> None:
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump_all(resources))
    script = ROOT / "scripts" / "k8s_contract.py"
    result = subprocess.run(
        [sys.executable, str(script), "--rendered", str(rendered), "--fleet"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == (1 if fails else 0), result.stderr
    assert ("no REDIS_URL" in result.stderr) == fails
