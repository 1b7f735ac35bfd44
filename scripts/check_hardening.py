#!/usr/bin/env python3
"""Hold rendered manifests to the hardening rules the schemas cannot express.

For every pod template (Deployment, StatefulSet, DaemonSet, Job, CronJob, Pod):
  * pod: runAsNonRoot, seccompProfile RuntimeDefault, no service-account token;
  * every container, init and sidecar included: no privilege escalation, a
    read-only root filesystem, all capabilities dropped, CPU and memory requests
    and limits, an image with an explicit tag (not :latest);
and for the order-proxy container:
  * uid/gid 10001 and a writable /tmp mount;
  * terminationGracePeriodSeconds > preStop sleep + PROXY_DRAIN_SECONDS, so the
    kubelet never kills the proxy mid-drain.
Every Secret in the render must hold placeholders only (REPLACE_ME).

    check_hardening.py rendered.yaml [more.yaml ...]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

PROXY_CONTAINER = "order-proxy"
PROXY_UID = 10001
PLACEHOLDER = "REPLACE_ME"
DEFAULT_DRAIN_SECONDS = 20
DEFAULT_GRACE_SECONDS = 30  # Kubernetes' default terminationGracePeriodSeconds


def pod_spec(resource: dict[str, Any]) -> dict[str, Any] | None:
    kind = resource.get("kind")
    spec = resource.get("spec") or {}
    if kind == "Pod":
        return spec
    if kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
        return spec["template"]["spec"]  # type: ignore[no-any-return]
    if kind == "CronJob":
        return spec["jobTemplate"]["spec"]["template"]["spec"]  # type: ignore[no-any-return]
    return None


def drain_seconds(container: dict[str, Any], resources: list[dict[str, Any]]) -> int:
    """PROXY_DRAIN_SECONDS as the container will see it (env wins over envFrom)."""
    for entry in container.get("env", []):
        if entry["name"] == "PROXY_DRAIN_SECONDS" and "value" in entry:
            return int(entry["value"])
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        if ref is None:
            continue
        for r in resources:
            if r.get("kind") == "ConfigMap" and r["metadata"]["name"] == ref["name"]:
                value = (r.get("data") or {}).get("PROXY_DRAIN_SECONDS")
                if value is not None:
                    return int(value)
    return DEFAULT_DRAIN_SECONDS


def check_container(where: str, container: dict[str, Any]) -> list[str]:
    problems = []
    sc = container.get("securityContext") or {}
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{where}: allowPrivilegeEscalation must be false")
    if sc.get("readOnlyRootFilesystem") is not True:
        problems.append(f"{where}: readOnlyRootFilesystem must be true")
    if sc.get("privileged"):
        problems.append(f"{where}: must not be privileged")
    if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
        problems.append(f"{where}: capabilities.drop must include ALL")
    resources = container.get("resources") or {}
    for section in ("requests", "limits"):
        for name in ("cpu", "memory"):
            if name not in (resources.get(section) or {}):
                problems.append(f"{where}: resources.{section}.{name} is not set")
    image = str(container.get("image", ""))
    last = image.rsplit("/", 1)[-1]
    if "@" not in last and (":" not in last or last.endswith(":latest")):
        problems.append(f"{where}: image {image!r} needs an explicit tag or digest")
    return problems


def check_proxy(
    where: str,
    pod: dict[str, Any],
    container: dict[str, Any],
    resources: list[dict[str, Any]],
) -> list[str]:
    problems = []
    pod_sc = pod.get("securityContext") or {}
    sc = {**pod_sc, **(container.get("securityContext") or {})}
    if sc.get("runAsUser") != PROXY_UID or sc.get("runAsGroup") != PROXY_UID:
        problems.append(f"{where}: must run as {PROXY_UID}:{PROXY_UID}")
    if not any(m.get("mountPath") == "/tmp" for m in container.get("volumeMounts", [])):  # noqa: S108
        problems.append(f"{where}: needs a writable volume at /tmp")
    pre_stop = ((container.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}
    budget = int(pre_stop.get("seconds", 0)) + drain_seconds(container, resources)
    grace = int(pod.get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS))
    if grace <= budget:
        problems.append(
            f"{where}: terminationGracePeriodSeconds {grace} must exceed preStop sleep + "
            f"PROXY_DRAIN_SECONDS = {budget}"
        )
    return problems


def check_pod(where: str, pod: dict[str, Any], resources: list[dict[str, Any]]) -> list[str]:
    problems = []
    sc = pod.get("securityContext") or {}
    if sc.get("runAsNonRoot") is not True:
        problems.append(f"{where}: securityContext.runAsNonRoot must be true")
    if (sc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        problems.append(f"{where}: securityContext.seccompProfile.type must be RuntimeDefault")
    if pod.get("automountServiceAccountToken") is not False:
        problems.append(f"{where}: automountServiceAccountToken must be false")
    for field in ("initContainers", "containers"):
        for container in pod.get(field, []):
            name = f"{where} {field[:-1]} {container.get('name')}"
            problems.extend(check_container(name, container))
            if container.get("name") == PROXY_CONTAINER:
                problems.extend(check_proxy(name, pod, container, resources))
    return problems


def check_secret(where: str, secret: dict[str, Any]) -> list[str]:
    problems = []
    if secret.get("data"):
        problems.append(f"{where}: use stringData placeholders, not base64 data")
    for key, value in (secret.get("stringData") or {}).items():
        if value != PLACEHOLDER:
            problems.append(f"{where}: {key} must be the placeholder {PLACEHOLDER}")
    return problems


def check_file(path: Path) -> list[str]:
    with path.open(encoding="utf-8") as fh:
        resources = [doc for doc in yaml.safe_load_all(fh) if isinstance(doc, dict)]
    problems: list[str] = []
    for resource in resources:
        where = f"{path}: {resource.get('kind')}/{resource.get('metadata', {}).get('name')}"
        if resource.get("kind") == "Secret":
            problems.extend(check_secret(where, resource))
        pod = pod_spec(resource)
        if pod is not None:
            problems.extend(check_pod(where, pod, resources))
    return problems


def main(argv: list[str] | None = None) -> int:
    paths = [Path(arg) for arg in (sys.argv[1:] if argv is None else argv)]
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    problems = [problem for path in paths for problem in check_file(path)]
    for problem in problems:
        print(f"ERROR {problem}", file=sys.stderr)
    if not problems:
        print(f"OK    hardening rules hold for {', '.join(map(str, paths))}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
