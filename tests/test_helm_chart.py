"""The Helm chart, rendered by Helm's own Go SDK, ships what the kustomize gateway overlay ships."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import helm_chart  # noqa: E402
import k8s_contract  # noqa: E402

sys.path.remove(str(ROOT / "scripts"))

pytestmark = pytest.mark.slow

# Labels Helm adds to say who made an object; the overlay has no counterpart.
HELM_LABELS = frozenset(
    {
        "helm.sh/chart",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/managed-by",
        "app.kubernetes.io/version",
    }
)
# Maps whose entries are data (settings, labels, resources), documented as a whole.
FREE_FORM = frozenset(
    {
        "settings",
        "resources",
        "labels",
        "clientPodLabels",
        "namespaceLabels",
        "podLabels",
        "podSelector",
    }
)
_KUSTOMIZE_HASH = re.compile(r"^(.+)-[a-z0-9]{10}$")


def chart(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(helm_chart.render(values)) if isinstance(d, dict)]


def proxy_container(resources: list[dict[str, Any]]) -> dict[str, Any]:
    _, container, _ = k8s_contract.find_container(resources)
    return container


def values_like(overlay: list[dict[str, Any]], case: str = "gateway") -> dict[str, Any]:
    """The chart values that state the overlay's settings: image, the env and TOML settings,
    the Secret and where REDIS_URL comes from (and the name of the sidecar's PodMonitor), over
    the chart's values for that case. Everything else must match by default."""
    container = proxy_container(overlay)
    repository, _, tag = container["image"].rpartition(":")
    by_name = {(r["kind"], r["metadata"]["name"]): r for r in overlay}
    env_map = next(
        by_name[("ConfigMap", ref["configMapRef"]["name"])]
        for ref in container["envFrom"]
        if "configMapRef" in ref
    )
    config = next(r for r in overlay if r["kind"] == "ConfigMap" and "config.toml" in r["data"])
    secret = next(v["secret"] for v in by_name_volumes(overlay) if "secret" in v)
    redis: dict[str, Any] = {"enabled": False}
    for entry in container.get("env", []):
        if entry["name"] == "REDIS_URL":
            ref = entry["valueFrom"]["secretKeyRef"]
            redis = {
                "enabled": True,
                "urlSecret": {
                    "name": ref["name"],
                    "key": ref["key"],
                    "optional": bool(ref.get("optional", False)),
                },
            }
    values = {
        **helm_chart.CASES[case],
        "image": {"repository": repository, "tag": tag},
        "settings": env_map["data"],
        "configToml": config["data"]["config.toml"],
        "secrets": {"name": secret["secretName"]},
        "redis": redis,
    }
    monitors = [r["metadata"]["name"] for r in overlay if r["kind"] == "PodMonitor"]
    if monitors:
        (name,) = monitors
        values["metrics"] = {**values.get("metrics", {})}
        values["metrics"]["podMonitor"] = {**values["metrics"]["podMonitor"], "name": name}
    return values


def by_name_volumes(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    deployment = next(r for r in resources if r["kind"] == "Deployment")
    return list(deployment["spec"]["template"]["spec"]["volumes"])


def normalized(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """Objects by kind/name, without what only says who rendered them: Helm's labels, the
    settings checksum, kustomize's hash suffixes, the namespace (and its Namespace object,
    which a chart leaves to `helm install --create-namespace`)."""
    renames = {}
    for r in resources:
        match = _KUSTOMIZE_HASH.match(r["metadata"]["name"])
        if r["kind"] == "ConfigMap" and match:
            renames[r["metadata"]["name"]] = match.group(1)

    def clean(node: Any, key: str = "") -> Any:
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                if k in HELM_LABELS or k.startswith("checksum/") or k == "namespace":
                    continue
                cleaned = clean(v, k)
                if k == "annotations" and not cleaned:
                    continue
                out[k] = cleaned
            return out
        if isinstance(node, list):
            items = [clean(v, key) for v in node]
            if key in {"env", "volumes", "volumeMounts", "ports"} and all(
                isinstance(i, dict) and "name" in i for i in items
            ):
                items.sort(key=lambda i: i["name"])
            return items
        if isinstance(node, str):
            return renames.get(node, node)
        return node

    return {
        f"{r['kind']}/{renames.get(r['metadata']['name'], r['metadata']['name'])}": clean(r)
        for r in resources
        if r["kind"] != "Namespace"
    }


def differences(left: Any, right: Any, path: str = "") -> list[str]:
    if isinstance(left, dict) and isinstance(right, dict):
        out = []
        for key in sorted(set(left) | set(right)):
            where = f"{path}.{key}" if path else key
            if key not in left or key not in right:
                out.append(f"{where}: only in {'chart' if key in left else 'overlay'}")
            else:
                out += differences(left[key], right[key], where)
        return out
    if isinstance(left, list) and isinstance(right, list) and len(left) == len(right):
        return [
            d
            for i, (a, b) in enumerate(zip(left, right, strict=True))
            for d in differences(a, b, f"{path}[{i}]")
        ]
    return [] if left == right else [f"{path}: chart {left!r} != overlay {right!r}"]


@pytest.fixture(scope="module")
def overlay() -> list[dict[str, Any]]:
    return k8s_contract.render("gateway")


def test_the_chart_and_the_gateway_overlay_render_the_same_objects(
    overlay: list[dict[str, Any]],
) -> None:
    assert differences(normalized(chart(values_like(overlay))), normalized(overlay)) == []


def test_the_charts_sidecar_example_and_the_sidecar_overlay_render_the_same_objects() -> None:
    sidecar = k8s_contract.render("sidecar")
    rendered = chart(values_like(sidecar, "sidecar"))
    assert differences(normalized(rendered), normalized(sidecar)) == []


def test_the_packaged_chart_renders_as_the_chart_directory(tmp_path: Path) -> None:
    # files/ links to k8s/monitoring: the archive must hold the linked files' contents.
    helm = helm_chart._helm()
    archive = Path(helm.package(helm_chart.CHART, destination=str(tmp_path)))
    with helm.Chart.load_archive(archive.read_bytes()) as packaged:
        from_archive = packaged.render({}, name=helm_chart.RELEASE, namespace="order-proxy")
    (rule_text,) = [t for p, t in from_archive.items() if p.endswith("prometheusrule.yaml")]
    (rule,) = [r for r in chart({}) if r["kind"] == "PrometheusRule"]
    assert yaml.safe_load(rule_text)["spec"] == rule["spec"]


def test_the_comparison_notices_a_value_that_differs(overlay: list[dict[str, Any]]) -> None:
    values = values_like(overlay)
    values["gateway"] = {"replicaCount": 3}
    assert differences(normalized(chart(values)), normalized(overlay)) == [
        "Deployment/order-proxy.spec.replicas: chart 3 != overlay 2"
    ]


def test_redis_url_comes_from_a_secret_by_default_and_no_secret_is_inlined() -> None:
    rendered = chart({})
    container = proxy_container(rendered)
    (redis,) = [e for e in container["env"] if e["name"] == "REDIS_URL"]
    assert redis == {
        "name": "REDIS_URL",
        "valueFrom": {"secretKeyRef": {"name": "order-proxy-secrets", "key": "redis-url"}},
    }
    assert not [r for r in rendered if r["kind"] == "Secret"]
    names = {e["name"] for e in container["env"]}
    assert not names & k8s_contract.FORBIDDEN_ENV
    assert k8s_contract.check(k8s_contract.contract(rendered)) == []


def test_every_value_is_documented_and_unknown_values_are_refused() -> None:
    lines = (ROOT / "charts" / "order-proxy" / "values.yaml").read_text().splitlines()
    parents: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)([\w./-]+):(.*)$", line)
        if not match:
            continue
        indent, key, rest = len(match.group(1)), match.group(2), match.group(3).strip()
        parents = [(n, k) for n, k in parents if n < indent]
        in_data = any(k in FREE_FORM for _, k in parents)
        parents.append((indent, key))
        if rest and not in_data:  # a value, not a section: it says what it is
            assert lines[i - 1].strip().startswith("#"), f"values.yaml:{i + 1} {key}"
    problems = helm_chart.lint({"gateway": {"replicas": 3}})
    assert any("additional properties 'replicas' not allowed" in p for p in problems), problems


def test_runbook_urls_point_at_the_operations_page_under_a_base_url() -> None:
    def alerts(values: dict[str, Any]) -> list[dict[str, Any]]:
        (rule,) = [r for r in chart(values) if r["kind"] == "PrometheusRule"]
        return [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]

    assert {a["annotations"]["runbook_url"] for a in alerts({})} >= {
        "docs/operations.md#orderproxy5xx"
    }
    base = "https://git.example.com/order-proxy/blob/main/"
    urls = {
        a["alert"]: a["annotations"]["runbook_url"]
        for a in alerts({"metrics": {"prometheusRule": {"runbookBaseUrl": base}}})
    }
    assert urls["OrderProxy5xx"] == base + "docs/operations.md#orderproxy5xx"
    assert all(u.startswith(base + "docs/operations.md#") for u in urls.values())


def test_the_sidecar_snippet_runs_the_proxy_on_loopback_with_its_internal_port_scraped() -> None:
    rendered = chart(helm_chart.CASES["sidecar"])
    result = k8s_contract.contract(rendered)
    assert result["sidecar"] is True
    assert result["host"] == "127.0.0.1"
    assert result["internal_host"] == "0.0.0.0"  # noqa: S104 - the kubelet and Prometheus
    assert k8s_contract.check(result) == []
