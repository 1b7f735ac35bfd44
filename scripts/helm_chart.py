#!/usr/bin/env python3
"""Lint and render charts/order-proxy offline with Helm's own Go SDK (helm-python-sdk).

There is no `helm` binary here; helm-python-sdk binds Helm's Go SDK (chart loading, the
template engine, `helm lint`) through a C library, so this is Helm's code, not a copy.

    helm_chart.py lint                                # helm lint --strict, every case below
    helm_chart.py render gateway -o gateway.yaml      # a case by name ...
    helm_chart.py render --values-json '{...}' -o x.yaml   # ... or any values

Cases: `gateway` (the defaults) and `sidecar` (no gateway; the example application with the
sidecar snippet and its PodMonitor), both validated by scripts/k8s-check.sh like the overlays.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "order-proxy"
RELEASE = "order-proxy"
NAMESPACE = "order-proxy"
KUBE_VERSION = "v1.30.0"

CASES: dict[str, dict[str, Any]] = {
    "gateway": {},
    "sidecar": {
        "gateway": {"enabled": False},
        "sidecar": {"exampleApp": {"enabled": True}},
        "metrics": {"podMonitor": {"enabled": True}, "serviceMonitor": {"enabled": False}},
    },
}


def _helm() -> Any:
    try:
        import helm_python  # noqa: PLC0415 - only this script needs the 75 MB native library
    except ImportError:
        sys.exit("helm_chart: helm-python-sdk is missing from the venv: make venv")
    return helm_python


def render(values: dict[str, Any], *, namespace: str = NAMESPACE) -> str:
    """The chart's manifests for `values`, as one YAML stream (NOTES.txt left out)."""
    helm = _helm()
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(values)
        manifests: dict[str, str] = chart.render(
            values, name=RELEASE, namespace=namespace, is_install=True
        )
    docs = [
        text.strip()
        for path, text in sorted(manifests.items())
        if not path.endswith("NOTES.txt") and text.strip()
    ]
    return "\n---\n".join(docs) + "\n"


def lint(values: dict[str, Any]) -> list[str]:
    """`helm lint --strict` findings at warning level or above, as lines."""
    report = _helm().lint(CHART, values, strict=True, kube_version=KUBE_VERSION)
    problems = [
        f"{m['path']}: {m['error'].strip()}" for m in report["messages"] if m["severity"] >= 2
    ]
    return problems + [str(e).strip() for e in report["errors"] if str(e).strip() not in problems]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("lint", help="helm lint --strict every case")
    render_cmd = commands.add_parser("render", help="render a case or given values")
    render_cmd.add_argument("case", nargs="?", choices=sorted(CASES))
    render_cmd.add_argument("--values-json", help="values as JSON instead of a case")
    render_cmd.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args(argv)

    if args.command == "lint":
        failed = False
        for name, values in CASES.items():
            problems = lint(values)
            for problem in problems:
                print(f"helm_chart: lint ({name}): {problem}", file=sys.stderr)
            failed |= bool(problems)
            if not problems:
                print(f"OK    helm lint --strict ({name}, Kubernetes {KUBE_VERSION})")
        return 1 if failed else 0
    if (args.case is None) == (args.values_json is None):
        parser.error("give a case or --values-json")
    values = CASES[args.case] if args.case else json.loads(args.values_json)
    args.output.write_text(render(values), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
