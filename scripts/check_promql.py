"""Check the PromQL in the order-proxy Grafana dashboard and Prometheus rules.

Every expression is taken from dashboard.json (panels[].targets[].expr, panels
nested in collapsed rows, and the selectors inside template-variable
label_values() queries) and from rules.yaml (every rule's expr). Grafana
template variables are substituted, each expression is parsed with
promql_parser, and the parsed tree is checked:

* it parses;
* every vector selector names its metric, and that name is one the service
  exports (rules may also use the series recorded in rules.yaml);
* no label named order_id is used anywhere (matchers, by/without, on/ignoring,
  group_left/right, label_replace/label_join, count_values): one series per
  order would be unbounded cardinality;
* dashboard panel queries filter every selector by namespace=~"$namespace" and
  pod=~"$pod".

    python scripts/check_promql.py --exposition metrics.txt   # names from a scrape
    python scripts/check_promql.py --names names.txt          # one sample name a line
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import promql_parser
import yaml

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "k8s" / "monitoring" / "dashboard.json"
RULES = ROOT / "k8s" / "monitoring" / "rules.yaml"

FORBIDDEN_LABELS = frozenset({"order_id"})

# Values put in place of Grafana variables before parsing. The dashboard
# variables get sentinel values so the filter check can tell "$namespace" from a
# hard-coded namespace; the interval variables get a real duration.
VARIABLE_VALUES: Mapping[str, str] = {
    "namespace": "__grafana_var_namespace__",
    "pod": "__grafana_var_pod__",
    "datasource": "prometheus",
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "1h",
}
REQUIRED_FILTERS: Mapping[str, str] = {
    "namespace": VARIABLE_VALUES["namespace"],
    "pod": VARIABLE_VALUES["pod"],
}

# $var, ${var}, ${var:format}, [[var]]
_VARIABLE = re.compile(r"\$\{(\w+)(?::[\w-]+)?\}|\$(\w+)|\[\[(\w+)\]\]")
# label_values(selector, label) or label_values(label)
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(?P<selector>.+),\s*)?(?P<label>\w+)\s*\)\s*$")


@dataclass(frozen=True)
class Query:
    """One PromQL expression and where it was found."""

    source: str
    expr: str
    # Dashboard panel queries must filter by $namespace and $pod; template
    # variable queries (the namespace list itself) and rules need not.
    needs_filters: bool = False
    # Rules may read series recorded by other rules.
    may_use_recorded: bool = False


@dataclass(frozen=True)
class Selector:
    name: str | None
    matchers: tuple[tuple[str, str, str], ...]  # (label, "=~", value)


@dataclass
class Analysis:
    """What a parsed expression reads."""

    selectors: list[Selector] = field(default_factory=list)
    label_names: set[str] = field(default_factory=set)

    @property
    def metric_names(self) -> set[str]:
        return {s.name for s in self.selectors if s.name is not None}


class UnknownVariableError(ValueError):
    pass


def substitute(expr: str, values: Mapping[str, str] = VARIABLE_VALUES) -> str:
    """Replace Grafana template variables; raise UnknownVariableError for others."""

    def repl(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g is not None)
        if name.isdigit():
            # $1 in label_replace() is a regex group reference, not a variable.
            return match.group(0)
        if name not in values:
            raise UnknownVariableError(f"unknown template variable {match.group(0)!r}")
        return values[name]

    return _VARIABLE.sub(repl, expr)


def _walk_panels(panels: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    for panel in panels:
        yield panel
        # Collapsed rows keep their panels nested inside the row.
        yield from _walk_panels(panel.get("panels") or [])


def panels(dashboard: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """All panels of a dashboard, including those nested in collapsed rows."""
    return list(_walk_panels(dashboard.get("panels") or []))


def dashboard_queries(dashboard: Mapping[str, Any], name: str = "dashboard.json") -> list[Query]:
    queries = []
    for panel in panels(dashboard):
        for target in panel.get("targets") or []:
            if "expr" in target:
                queries.append(
                    Query(
                        f"{name}: panel {panel.get('title')!r} target {target.get('refId')}",
                        target["expr"],
                        needs_filters=True,
                    )
                )
    for variable in (dashboard.get("templating") or {}).get("list") or []:
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, Mapping) else str(query or "")
        source = f"{name}: variable {variable.get('name')!r}"
        match = _LABEL_VALUES.match(text)
        if match is None:
            # Not label_values(): treat as PromQL (query_result() etc. would fail here).
            queries.append(Query(source, text))
        elif match.group("selector"):
            queries.append(Query(source, match.group("selector")))
    return queries


def rule_queries(rules: Mapping[str, Any], name: str = "rules.yaml") -> list[Query]:
    queries = []
    for group in rules.get("groups") or []:
        for rule in group.get("rules") or []:
            what = f"alert {rule['alert']}" if "alert" in rule else f"record {rule.get('record')}"
            queries.append(
                Query(
                    f"{name}: group {group.get('name')!r} {what}",
                    rule["expr"],
                    may_use_recorded=True,
                )
            )
    return queries


def recorded_names(rules: Mapping[str, Any]) -> set[str]:
    return {
        rule["record"]
        for group in rules.get("groups") or []
        for rule in group.get("rules") or []
        if "record" in rule
    }


def _op(op: promql_parser.MatchOp) -> str:
    for candidate, text in (
        (promql_parser.MatchOp.Equal, "="),
        (promql_parser.MatchOp.NotEqual, "!="),
        (promql_parser.MatchOp.Re, "=~"),
        (promql_parser.MatchOp.NotRe, "!~"),
    ):
        if op == candidate:
            return text
    raise ValueError(f"unknown matcher operator {op!r}")


def analyse(expr: str) -> Analysis:
    """Parse a PromQL expression (ValueError if it does not parse) and collect what it reads."""
    tree = promql_parser.parse(expr)
    result = Analysis()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            groups = [node.matchers.matchers, *node.matchers.or_matchers]
            matchers = tuple((m.name, _op(m.op), m.value) for group in groups for m in group)
            name = node.name
            if name is None:  # {__name__="metric"}
                names = [v for (label, op, v) in matchers if (label, op) == ("__name__", "=")]
                name = names[0] if names else None
            result.selectors.append(Selector(name, matchers))
            result.label_names.update(label for (label, _, _) in matchers if label != "__name__")
        elif isinstance(node, promql_parser.AggregateExpr):
            if node.modifier is not None:
                result.label_names.update(node.modifier.labels)
            param = node.param
            if str(node.op) == "count_values" and isinstance(param, promql_parser.StringLiteral):
                result.label_names.add(param.val)
        elif isinstance(node, promql_parser.BinaryExpr):
            modifier = node.modifier
            if modifier is not None:
                if modifier.matching is not None:
                    result.label_names.update(modifier.matching.labels)
                result.label_names.update(modifier.group_labels or [])
        elif isinstance(node, promql_parser.Call):
            args = node.args
            if node.func.name == "label_replace" and len(args) == 5:
                label_args = [args[1], args[3]]
            elif node.func.name == "label_join" and len(args) >= 3:
                label_args = [args[1], *args[3:]]
            else:
                label_args = []
            result.label_names.update(
                a.val for a in label_args if isinstance(a, promql_parser.StringLiteral)
            )

    promql_parser.walk(tree, visit)
    return result


def check(
    queries: Iterable[Query],
    exported: AbstractSet[str] | None,
    recorded: AbstractSet[str] = frozenset(),
) -> list[str]:
    """Return one line per problem found; [] when every query passes.

    exported=None skips the metric-name check (parse, label and filter checks still run).
    """
    problems = []
    for query in queries:
        try:
            analysis = analyse(substitute(query.expr))
        except UnknownVariableError as exc:
            problems.append(f"{query.source}: {exc}")
            continue
        except ValueError as exc:
            problems.append(f"{query.source}: does not parse: {exc}")
            continue
        if not analysis.selectors:
            problems.append(f"{query.source}: reads no series")
        for selector in analysis.selectors:
            if selector.name is None:
                problems.append(f"{query.source}: selector without a fixed metric name")
                continue
            if exported is not None:
                allowed = exported | recorded if query.may_use_recorded else exported
                if selector.name not in allowed:
                    problems.append(f"{query.source}: metric {selector.name!r} is not exported")
            if query.needs_filters:
                for label, value in REQUIRED_FILTERS.items():
                    if (label, "=~", value) not in selector.matchers:
                        problems.append(
                            f'{query.source}: {selector.name} lacks {label}=~"${label}"'
                        )
        for label in sorted(analysis.label_names & FORBIDDEN_LABELS):
            problems.append(f"{query.source}: uses label {label!r}")
    return problems


def names_from_exposition(text: str) -> set[str]:
    """Sample names (with _total/_bucket/... suffixes) from Prometheus text format."""
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    return {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dashboard", type=Path, default=DASHBOARD)
    parser.add_argument("--rules", type=Path, default=RULES)
    names = parser.add_mutually_exclusive_group()
    names.add_argument(
        "--exposition", type=Path, help="a /metrics scrape of the running proxy (text format)"
    )
    names.add_argument("--names", type=Path, help="file with one exported sample name per line")
    args = parser.parse_args(argv)

    exported: set[str] | None = None
    if args.exposition:
        exported = names_from_exposition(args.exposition.read_text(encoding="utf-8"))
    elif args.names:
        lines = args.names.read_text(encoding="utf-8").splitlines()
        exported = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    else:
        print("no --exposition/--names given: metric names are not checked", file=sys.stderr)

    dashboard = json.loads(args.dashboard.read_text(encoding="utf-8"))
    rules = yaml.safe_load(args.rules.read_text(encoding="utf-8"))
    queries = dashboard_queries(dashboard, args.dashboard.name) + rule_queries(
        rules, args.rules.name
    )
    problems = check(queries, exported, recorded_names(rules))
    for problem in problems:
        print(problem)
    print(f"{len(queries)} expressions checked, {len(problems)} problems", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
