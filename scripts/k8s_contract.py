#!/usr/bin/env python3
"""Print how a kustomize overlay runs the order-proxy container, as JSON.

Renders the overlay with ``kubectl kustomize`` (or reads an already rendered file)
and reports, for the container named ``order-proxy`` (a regular container in the
gateway, a native-sidecar init container in the sidecar overlay):

    {"command": ["order-proxy"], "args": ["serve"], "port": 8080,
     "internal_port": 9090, "internal_host": null,
     "env_names": [...], "probes": {"startup": "/healthz", "readiness": "/readyz",
     "liveness": "/healthz"}, "probe_ports": {"startup": 9090, ...},
     "host": "0.0.0.0", "deployment": "order-proxy", "sidecar": false,
     "api_services": [...], "scraped_ports": [9090]}

``internal_port`` is PROXY_INTERNAL_PORT: /metrics, /healthz and /readyz are served there
and not on the API port, so the probes must target it, no Service that carries the API
may expose it, and a ServiceMonitor or PodMonitor must scrape it (``scraped_ports``).

``env_names`` includes the keys that ``envFrom`` brings in from ConfigMaps and
Secrets of the same render. Probe paths come from ``httpGet.path`` or, for exec
probes (the sidecar listens on loopback, out of the kubelet's reach), from the URL
in the probe command. The test suite starts the proxy with ``command + args`` and
hits each probe path; ``--check`` also holds the result to the product contract.

``--check`` and ``--fleet`` (that check alone, for any render) also fail every Deployment
running the proxy on more than one replica, or targeted by a HorizontalPodAutoscaler, whose
proxy container gets no REDIS_URL (from ``env``, or ``envFrom`` a ConfigMap or Secret of
the render that holds it): without the shared Redis each pod hears only the webhooks and
purges that reach it, and the others keep serving the old order.

    k8s_contract.py gateway            # or sidecar, dev, or a path to an overlay
    k8s_contract.py --rendered out.yaml --check
    k8s_contract.py --rendered out.yaml --fleet
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
OVERLAYS = ROOT / "k8s" / "overlays"
CONTAINER = "order-proxy"

# The product contract (README / DESIGN): what every rendered overlay must match.
EXPECTED_COMMAND = ["order-proxy", "serve"]
EXPECTED_PORT = 8080
EXPECTED_INTERNAL_PORT = 9090
EXPECTED_PROBES = {"startup": "/healthz", "readiness": "/readyz", "liveness": "/healthz"}
KNOWN_ENV = frozenset(
    {
        "JUSPAY_BASE_URL",
        "JUSPAY_ALLOW_INSECURE_HTTP",
        "JUSPAY_MERCHANT_ID",
        "JUSPAY_API_KEY",
        "JUSPAY_API_KEY_FILE",
        "JUSPAY_API_VERSION",
        "REDIS_URL",
        "PROXY_HOST",
        "PROXY_PORT",
        "PROXY_INTERNAL_PORT",
        "PROXY_INTERNAL_HOST",
        "JUSPAY_TIMEOUT_SECONDS",
        "JUSPAY_WEBHOOK_USERNAME",
        "JUSPAY_WEBHOOK_PASSWORD",
        "JUSPAY_WEBHOOK_PASSWORD_FILE",
        "PROXY_CONFIG_FILE",
        "LOG_LEVEL",
        "LOG_FORMAT",
        "PROXY_DRAIN_SECONDS",
        "PROXY_ALLOW_ANONYMOUS",
    }
)
# Secrets travel as files; these must never be set as plain env values.
FORBIDDEN_ENV = frozenset({"JUSPAY_API_KEY", "JUSPAY_WEBHOOK_PASSWORD"})

_URL_PATH = re.compile(r"https?://[^/\s'\"]+(/[^\s'\"?#]*)")


class ContractError(Exception):
    """The rendered manifests do not describe an order-proxy container as expected."""


def render(overlay: str) -> list[dict[str, Any]]:
    """Render an overlay (a name under k8s/overlays or a directory) with kubectl."""
    path = Path(overlay)
    if not path.is_dir():
        path = OVERLAYS / overlay
    if not path.is_dir():
        raise ContractError(f"no overlay directory {overlay!r} (nor {path})")
    kubectl = os.environ.get("KUBECTL", "kubectl")
    result = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ContractError(f"kubectl kustomize {path} failed:\n{result.stderr.strip()}")
    return load(result.stdout)


def load(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if isinstance(doc, dict)]


def find_container(resources: list[dict[str, Any]]) -> tuple[str, dict[str, Any], bool]:
    """Return (deployment name, container spec, is_native_sidecar)."""
    deployment, container, sidecar, _labels = find_workload(resources)
    return deployment, container, sidecar


def find_workload(
    resources: list[dict[str, Any]],
) -> tuple[str, dict[str, Any], bool, dict[str, str]]:
    """Return (deployment name, container spec, is_native_sidecar, pod labels)."""
    found: list[tuple[str, dict[str, Any], bool, dict[str, str]]] = []
    for resource in resources:
        if resource.get("kind") != "Deployment":
            continue
        pod = resource["spec"]["template"]["spec"]
        labels = resource["spec"]["template"].get("metadata", {}).get("labels", {})
        name = resource["metadata"]["name"]
        for container in pod.get("containers", []):
            if container.get("name") == CONTAINER:
                found.append((name, container, False, labels))
        for container in pod.get("initContainers", []):
            if container.get("name") == CONTAINER:
                if container.get("restartPolicy") != "Always":
                    raise ContractError(
                        f"Deployment {name}: init container {CONTAINER} is not a native "
                        "sidecar (restartPolicy: Always)"
                    )
                found.append((name, container, True, labels))
    if len(found) != 1:
        names = [entry[0] for entry in found]
        raise ContractError(f"expected one {CONTAINER} container, found {len(found)}: {names}")
    return found[0]


def env_names(container: dict[str, Any], resources: list[dict[str, Any]]) -> list[str]:
    names = {entry["name"] for entry in container.get("env", [])}
    by_kind_name = {
        (r.get("kind"), r.get("metadata", {}).get("name")): r
        for r in resources
        if r.get("kind") in {"ConfigMap", "Secret"}
    }
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        for kind, ref_key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            ref = source.get(ref_key)
            if ref is None:
                continue
            target = by_kind_name.get((kind, ref["name"]))
            if target is None:
                if kind == "Secret" or ref.get("optional"):
                    # Secrets are created out of band; their keys are not known here.
                    continue
                raise ContractError(f"envFrom {kind} {ref['name']} is not in the render")
            keys = {*target.get("data", {}), *target.get("stringData", {})}
            names.update(prefix + key for key in keys)
    return sorted(names)


def probe_path(probe: dict[str, Any] | None) -> str | None:
    if probe is None:
        return None
    if "httpGet" in probe:
        return str(probe["httpGet"].get("path", "/"))
    if "exec" in probe:
        for word in probe["exec"].get("command", []):
            match = _URL_PATH.search(str(word))
            if match:
                return match.group(1)
    return None


def env_value(container: dict[str, Any], name: str) -> str | None:
    for entry in container.get("env", []):
        if entry["name"] == name and "value" in entry:
            return str(entry["value"])
    return None


def container_port(container: dict[str, Any]) -> int:
    declared = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == "http"]
    configured = env_value(container, "PROXY_PORT")
    port = int(configured) if configured is not None else None
    if declared and port is not None and declared[0] != port:
        raise ContractError(f"port http is {declared[0]} but PROXY_PORT is {port}")
    if declared:
        return int(declared[0])
    return port if port is not None else EXPECTED_PORT


def named_port(container: dict[str, Any], port: object) -> int | None:
    """A port given by number or by the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for entry in container.get("ports", []):
        if entry.get("name") == port:
            return int(entry["containerPort"])
    return None


def probe_port(container: dict[str, Any], probe: dict[str, Any] | None) -> int | None:
    if probe is None:
        return None
    if "httpGet" in probe:
        return named_port(container, probe["httpGet"].get("port"))
    if "exec" in probe:
        for word in probe["exec"].get("command", []):
            match = re.search(r"https?://[^/:\s'\"]+:(\d+)/", str(word))
            if match:
                return int(match.group(1))
    return None


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def services(
    resources: list[dict[str, Any]], container: dict[str, Any], labels: dict[str, str]
) -> list[dict[str, Any]]:
    """Services that select the proxy's pods: name, labels, and {port name: container port}."""
    found = []
    for resource in resources:
        if resource.get("kind") != "Service":
            continue
        spec = resource.get("spec", {})
        if not _selects(spec.get("selector", {}), labels):
            continue
        ports = {
            str(p.get("name", "")): named_port(container, p.get("targetPort", p.get("port")))
            for p in spec.get("ports", [])
        }
        found.append(
            {
                "name": resource["metadata"]["name"],
                "labels": resource["metadata"].get("labels", {}),
                "ports": ports,
            }
        )
    return found


def scraped_ports(
    resources: list[dict[str, Any]],
    container: dict[str, Any],
    labels: dict[str, str],
    svcs: list[dict[str, Any]],
) -> list[int]:
    """Container ports a ServiceMonitor or PodMonitor of this render scrapes on the pods."""
    ports: set[int] = set()
    for resource in resources:
        kind = resource.get("kind")
        spec = resource.get("spec", {})
        selector = spec.get("selector", {}).get("matchLabels", {})
        if kind == "PodMonitor" and _selects(selector, labels):
            for endpoint in spec.get("podMetricsEndpoints", []):
                port = named_port(container, endpoint.get("port", endpoint.get("portNumber")))
                if port is not None:
                    ports.add(port)
        if kind == "ServiceMonitor":
            for service in svcs:
                if not _selects(selector, service["labels"]):
                    continue
                for endpoint in spec.get("endpoints", []):
                    port = service["ports"].get(endpoint.get("port"))
                    if port is not None:
                        ports.add(port)
    return sorted(ports)


def _proxy_containers(
    resources: list[dict[str, Any]],
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(Deployment, proxy container) for every Deployment that runs the proxy."""
    found = []
    for resource in resources:
        if resource.get("kind") != "Deployment":
            continue
        pod = resource.get("spec", {}).get("template", {}).get("spec", {})
        for field in ("containers", "initContainers"):
            for container in pod.get(field) or []:
                if container.get("name") == CONTAINER:
                    found.append((resource, container))
    return found


def _key_ref_given(value_from: dict[str, Any]) -> bool:
    """A valueFrom reference the pod cannot start without (an optional one may be absent)."""
    refs = [value_from.get(k) for k in ("secretKeyRef", "configMapKeyRef")]
    return any(ref is not None and not ref.get("optional") for ref in refs)


def has_redis_url(container: dict[str, Any], resources: list[dict[str, Any]]) -> bool:
    """Whether the container gets a non-empty REDIS_URL (env wins over envFrom)."""
    for entry in container.get("env") or []:
        if entry.get("name") == "REDIS_URL":
            if "valueFrom" in entry:
                return _key_ref_given(entry["valueFrom"])
            return bool(str(entry.get("value", "")).strip())
    by_kind_name = {
        (r.get("kind"), r.get("metadata", {}).get("name")): r
        for r in resources
        if r.get("kind") in {"ConfigMap", "Secret"}
    }
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if not "REDIS_URL".startswith(prefix):
            continue
        key = "REDIS_URL"[len(prefix) :]
        for kind, ref_key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            ref = source.get(ref_key)
            # A Secret made out of band: its keys are unknown here, so it vouches for nothing.
            target = by_kind_name.get((kind, ref["name"])) if ref is not None else None
            if target is None:
                continue
            values = {**(target.get("data") or {}), **(target.get("stringData") or {})}
            if str(values.get(key) or "").strip():
                return True
    return False


def fleet_problems(resources: list[dict[str, Any]]) -> list[str]:
    """Deployments that run several proxies (replicas > 1, or an HPA) without REDIS_URL."""
    scaled: set[tuple[str | None, str | None]] = set()
    for resource in resources:
        if resource.get("kind") != "HorizontalPodAutoscaler":
            continue
        target = resource.get("spec", {}).get("scaleTargetRef", {})
        if target.get("kind") == "Deployment":
            scaled.add((resource.get("metadata", {}).get("namespace"), target.get("name")))
    problems = []
    for deployment, container in _proxy_containers(resources):
        meta = deployment.get("metadata", {})
        replicas = deployment.get("spec", {}).get("replicas", 1)
        autoscaled = (meta.get("namespace"), meta.get("name")) in scaled
        if (replicas > 1 or autoscaled) and not has_redis_url(container, resources):
            why = "an HPA scales it" if autoscaled else f"{replicas} replicas"
            problems.append(
                f"Deployment {meta.get('name')}: {why} but its {CONTAINER} container has no "
                "REDIS_URL; each pod would hear only its own webhooks and purges and serve "
                "stale orders (take REDIS_URL from the Secret, see docs/deploying.md)"
            )
    return problems


def contract(resources: list[dict[str, Any]]) -> dict[str, Any]:
    deployment, container, sidecar, labels = find_workload(resources)
    internal = env_value(container, "PROXY_INTERNAL_PORT")
    svcs = services(resources, container, labels)
    api_port = container_port(container)
    return {
        "command": list(container.get("command", [])),
        "args": list(container.get("args", [])),
        "port": api_port,
        "internal_port": int(internal) if internal else None,
        "internal_host": env_value(container, "PROXY_INTERNAL_HOST"),
        "env_names": env_names(container, resources),
        "probes": {
            "startup": probe_path(container.get("startupProbe")),
            "readiness": probe_path(container.get("readinessProbe")),
            "liveness": probe_path(container.get("livenessProbe")),
        },
        "probe_ports": {
            "startup": probe_port(container, container.get("startupProbe")),
            "readiness": probe_port(container, container.get("readinessProbe")),
            "liveness": probe_port(container, container.get("livenessProbe")),
        },
        "host": env_value(container, "PROXY_HOST"),
        "deployment": deployment,
        "sidecar": sidecar,
        # Services carrying the API port, with every container port each one exposes.
        "api_services": [
            {"name": s["name"], "ports": sorted(p for p in s["ports"].values() if p)}
            for s in svcs
            if api_port in s["ports"].values()
        ],
        "scraped_ports": scraped_ports(resources, container, labels, svcs),
    }


def check(result: dict[str, Any]) -> list[str]:
    """Differences between a rendered contract and the product contract."""
    problems = []
    if result["command"] + result["args"] != EXPECTED_COMMAND:
        problems.append(f"command+args {result['command'] + result['args']} != {EXPECTED_COMMAND}")
    if result["port"] != EXPECTED_PORT:
        problems.append(f"port {result['port']} != {EXPECTED_PORT}")
    if result["probes"] != EXPECTED_PROBES:
        problems.append(f"probes {result['probes']} != {EXPECTED_PROBES}")
    unknown = sorted(set(result["env_names"]) - KNOWN_ENV)
    if unknown:
        problems.append(f"env names not in the product contract: {unknown}")
    forbidden = sorted(set(result["env_names"]) & FORBIDDEN_ENV)
    if forbidden:
        problems.append(f"secrets must come as *_FILE mounts, not env: {forbidden}")
    expected_host = "127.0.0.1" if result["sidecar"] else "0.0.0.0"  # noqa: S104
    if result["host"] != expected_host:
        problems.append(f"PROXY_HOST {result['host']!r} != {expected_host!r}")
    problems.extend(check_internal(result))
    return problems


def check_internal(result: dict[str, Any]) -> list[str]:
    """The internal listener: probes on it, scraped on it, never exposed with the API."""
    internal = result["internal_port"]
    if internal != EXPECTED_INTERNAL_PORT:
        return [f"PROXY_INTERNAL_PORT {internal} != {EXPECTED_INTERNAL_PORT}"]
    problems = []
    wrong = {k: p for k, p in result["probe_ports"].items() if p != internal}
    if wrong:
        problems.append(f"probes must target the internal port {internal}: {wrong}")
    # The sidecar's API is on loopback; its internal port must reach the pod IP.
    if result["sidecar"] and result["internal_host"] != "0.0.0.0":  # noqa: S104
        problems.append(
            f"sidecar PROXY_INTERNAL_HOST {result['internal_host']!r} != '0.0.0.0' "
            "(the kubelet and Prometheus connect to the pod IP)"
        )
    for service in result["api_services"]:
        if internal in service["ports"]:
            problems.append(
                f"Service {service['name']} exposes the API and the internal port {internal}"
            )
    if internal not in result["scraped_ports"]:
        problems.append(
            f"no ServiceMonitor or PodMonitor scrapes the internal port {internal} "
            f"(scraped: {result['scraped_ports']})"
        )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "overlay",
        nargs="?",
        default="gateway",
        help="overlay name under k8s/overlays, or a kustomize directory (default: gateway)",
    )
    source.add_argument("--rendered", type=Path, help="read already rendered YAML instead")
    parser.add_argument(
        "--check", action="store_true", help="also fail unless it matches the product contract"
    )
    parser.add_argument(
        "--fleet",
        action="store_true",
        help="only fail any Deployment with several replicas or an HPA and no REDIS_URL",
    )
    args = parser.parse_args(argv)

    try:
        if args.rendered is not None:
            resources = load(args.rendered.read_text(encoding="utf-8"))
        else:
            resources = render(args.overlay)
        if args.fleet:
            return _report(fleet_problems(resources))
        result = contract(resources)
    except ContractError as exc:
        print(f"k8s_contract: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    if args.check:
        problems = check(result) + fleet_problems(resources)
        return _report(problems)
    return 0


def _report(problems: list[str]) -> int:
    for problem in problems:
        print(f"k8s_contract: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
