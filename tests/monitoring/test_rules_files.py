"""rules.yaml, the generated PrometheusRule, the promtool tests and the kustomization agree."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

ALERTS = {
    "OrderProxyUpstreamErrorRate",
    "OrderProxyUpstreamAuthFailed",
    "OrderProxyHitRatioCollapse",
    "OrderProxyHitLatencyHigh",
    "OrderProxyRedisErrors",
    "OrderProxy5xx",
    "OrderProxyCircuitOpen",
    "OrderProxyCacheDiverged",
}


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _alert_rules(rules: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]


def test_prometheusrule_groups_equal_rules_yaml(
    monitoring_dir: Path, rules: dict[str, Any]
) -> None:
    resource = _load(monitoring_dir / "prometheusrule.yaml")
    assert resource["spec"]["groups"] == rules["groups"]


def test_prometheusrule_is_regenerated(
    monitoring_dir: Path, gen_prometheusrule: ModuleType
) -> None:
    rules_text = (monitoring_dir / "rules.yaml").read_text(encoding="utf-8")
    current = (monitoring_dir / "prometheusrule.yaml").read_text(encoding="utf-8")
    assert current == gen_prometheusrule.render(rules_text), (
        "prometheusrule.yaml is stale: run python scripts/gen_prometheusrule.py"
    )


def test_prometheusrule_resource(monitoring_dir: Path) -> None:
    resource = _load(monitoring_dir / "prometheusrule.yaml")
    assert resource["apiVersion"] == "monitoring.coreos.com/v1"
    assert resource["kind"] == "PrometheusRule"
    assert resource["metadata"]["name"] == "order-proxy"
    assert resource["metadata"]["labels"]["release"] == "prometheus"


def test_all_alerts_are_defined(rules: dict[str, Any]) -> None:
    assert {rule["alert"] for rule in _alert_rules(rules)} == ALERTS


def test_alerts_have_severity_annotations_and_runbook(rules: dict[str, Any]) -> None:
    for rule in _alert_rules(rules):
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        annotations = rule["annotations"]
        assert annotations["summary"].strip(), name
        assert annotations["description"].strip(), name
        assert annotations["runbook_url"] == f"docs/operations.md#{name.lower()}", name


def test_refused_api_key_is_critical(rules: dict[str, Any]) -> None:
    (rule,) = [r for r in _alert_rules(rules) if r["alert"] == "OrderProxyUpstreamAuthFailed"]
    assert rule["labels"]["severity"] == "critical"


def test_every_alert_has_a_firing_and_a_quiet_promtool_case(monitoring_dir: Path) -> None:
    tests = _load(monitoring_dir / "rules_test.yaml")
    assert tests["rule_files"] == ["rules.yaml"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in tests["tests"]:
        for alert_test in case.get("alert_rule_test", []):
            if alert_test.get("exp_alerts"):
                firing.add(alert_test["alertname"])
            else:
                quiet.add(alert_test["alertname"])
    assert ALERTS - firing == set()
    assert ALERTS - quiet == set()


def test_kustomization_shape(monitoring_dir: Path) -> None:
    kustomization = _load(monitoring_dir / "kustomization.yaml")
    assert kustomization["resources"] == ["prometheusrule.yaml"]
    (generator,) = kustomization["configMapGenerator"]
    assert generator["name"] == "order-proxy-dashboard"
    assert generator["files"] == ["dashboard.json"]
    assert generator["options"]["labels"] == {
        "grafana_dashboard": "1",
        "app.kubernetes.io/name": "order-proxy",
        "app.kubernetes.io/part-of": "order-proxy",
    }
    assert generator["options"]["disableNameSuffixHash"] is True


def test_dashboard_fits_in_a_configmap_applied_client_side(monitoring_dir: Path) -> None:
    # `kubectl apply` (client side) copies the object into the
    # last-applied-configuration annotation, capped at 256 KiB in total.
    assert (monitoring_dir / "dashboard.json").stat().st_size < 200 * 1024


def test_kustomize_build(monitoring_dir: Path) -> None:
    kubectl = shutil.which("kubectl")
    assert kubectl is not None, (
        "kubectl is missing: `make test` installs it (Debian package kubectl) via "
        "scripts/ensure-tools.sh"
    )
    result = subprocess.run(
        [kubectl, "kustomize", str(monitoring_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    docs = {doc["kind"]: doc for doc in yaml.safe_load_all(result.stdout)}
    assert set(docs) == {"ConfigMap", "PrometheusRule"}
    configmap = docs["ConfigMap"]
    assert configmap["metadata"]["name"] == "order-proxy-dashboard"
    assert configmap["metadata"]["labels"] == {
        "grafana_dashboard": "1",
        "app.kubernetes.io/name": "order-proxy",
        "app.kubernetes.io/part-of": "order-proxy",
    }
    dashboard_text = (monitoring_dir / "dashboard.json").read_text(encoding="utf-8")
    assert configmap["data"]["dashboard.json"] == dashboard_text
    assert docs["PrometheusRule"]["metadata"]["name"] == "order-proxy"
