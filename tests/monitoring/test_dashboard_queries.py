"""The PromQL in dashboard.json and rules.yaml reads only what the proxy exports.

Uses scripts/check_promql.py; the exported names come from the
`exported_metric_names` fixture (a live scrape of the proxy after traffic that
creates every series the queries select, see tests/monitoring/exposition.py).
"""

from __future__ import annotations

import re
from types import ModuleType
from typing import Any

import pytest

from tests.monitoring.exposition import Series, labelled

# Labels Prometheus adds to every scraped series (target labels); the proxy never sets them.
TARGET_LABELS = frozenset({"namespace", "pod", "job", "instance", "__name__"})


def _all_exprs(node: Any) -> list[str]:
    """Every "expr" value anywhere in a JSON document, found without knowing its layout."""
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        for value in node.values():
            found += _all_exprs(value)
        return found
    if isinstance(node, list):
        return [expr for item in node for expr in _all_exprs(item)]
    return []


# ---------------------------------------------------------------- the checker


def test_analyse_finds_metric_names_everywhere(check_promql: ModuleType) -> None:
    analysis = check_promql.analyse(
        "sum by (le) (rate(a_bucket[5m])) / on () group_left b"
        ' + max_over_time(c[10m:1m]) + {__name__="d"} + absent(e offset 1h)'
    )
    assert analysis.metric_names == {"a_bucket", "b", "c", "d", "e"}


@pytest.mark.parametrize(
    "expr",
    [
        'x{order_id="1"}',
        "sum by (order_id) (x)",
        "sum without (order_id) (x)",
        "x / on (order_id) y",
        "x / ignoring (order_id) y",
        "x * on () group_left (order_id) y",
        'label_replace(x, "order_id", "$1", "path", "(.*)")',
        'label_replace(x, "dst", "$1", "order_id", "(.*)")',
        'label_join(x, "dst", ",", "a", "order_id")',
        'count_values("order_id", x)',
    ],
)
def test_check_reports_an_order_id_label(check_promql: ModuleType, expr: str) -> None:
    query = check_promql.Query("test", expr)
    problems = check_promql.check([query], {"x", "y"})
    assert problems == ["test: uses label 'order_id'"]


def test_check_reports_an_unexported_metric(check_promql: ModuleType) -> None:
    query = check_promql.Query("test", "rate(order_proxy_requests_total[5m]) + nope_total")
    assert check_promql.check([query], {"order_proxy_requests_total"}) == [
        "test: metric 'nope_total' is not exported"
    ]


def test_check_allows_recorded_names_only_where_asked(check_promql: ModuleType) -> None:
    in_rules = check_promql.Query("rule", "ns:x:rate5m > 1", may_use_recorded=True)
    in_dashboard = check_promql.Query("panel", "ns:x:rate5m > 1")
    assert check_promql.check([in_rules], set(), {"ns:x:rate5m"}) == []
    assert check_promql.check([in_dashboard], set(), {"ns:x:rate5m"}) == [
        "panel: metric 'ns:x:rate5m' is not exported"
    ]


def test_check_reports_parse_errors_and_unknown_variables(check_promql: ModuleType) -> None:
    problems = check_promql.check(
        [
            check_promql.Query("broken", "sum(rate(x[5m])"),
            check_promql.Query("typo", 'x{namespace=~"$namepsace"}'),
        ],
        {"x"},
    )
    assert len(problems) == 2
    assert problems[0].startswith("broken: does not parse")
    assert problems[1] == "typo: unknown template variable '$namepsace'"


def test_check_reports_missing_dashboard_filters(check_promql: ModuleType) -> None:
    good = check_promql.Query(
        "good", 'rate(x{namespace=~"$namespace", pod=~"${pod}"}[$__rate_interval])', True
    )
    bad = check_promql.Query("bad", 'x{namespace=~"$namespace"} / y{pod=~"$pod"}', True)
    assert check_promql.check([good], {"x"}) == []
    assert check_promql.check([bad], {"x", "y"}) == [
        'bad: x lacks pod=~"$pod"',
        'bad: y lacks namespace=~"$namespace"',
    ]


# ---------------------------------------------------------------- the files


def test_every_dashboard_expr_is_extracted(
    check_promql: ModuleType, dashboard: dict[str, Any]
) -> None:
    extracted = [q.expr for q in check_promql.dashboard_queries(dashboard) if q.needs_filters]
    assert sorted(extracted) == sorted(_all_exprs(dashboard))
    # The collapsed "Internals" row keeps its panels nested; they must be found too.
    nested = [p for row in dashboard["panels"] for p in row.get("panels", [])]
    assert nested, "expected a collapsed row with nested panels"
    nested_exprs = {t["expr"] for p in nested for t in p["targets"]}
    assert nested_exprs <= set(extracted)


def test_every_expr_parses(
    check_promql: ModuleType, dashboard: dict[str, Any], rules: dict[str, Any]
) -> None:
    queries = check_promql.dashboard_queries(dashboard) + check_promql.rule_queries(rules)
    failures = []
    for query in queries:
        try:
            check_promql.analyse(check_promql.substitute(query.expr))
        except ValueError as exc:
            failures.append(f"{query.source}: {exc}")
    assert not failures, "\n".join(failures)


def test_dashboard_selectors_filter_by_namespace_and_pod(
    check_promql: ModuleType, dashboard: dict[str, Any]
) -> None:
    # exported=None: names are not checked here, so what is left are the filter
    # problems (plus parse/order_id problems, which other tests report too).
    problems = check_promql.check(check_promql.dashboard_queries(dashboard), None)
    assert not problems, "\n".join(problems)


def test_dashboard_reads_only_exported_metrics(
    check_promql: ModuleType, dashboard: dict[str, Any], exported_metric_names: set[str]
) -> None:
    problems = [
        problem
        for problem in check_promql.check(
            check_promql.dashboard_queries(dashboard), exported_metric_names
        )
        if "is not exported" in problem
    ]
    assert not problems, "\n".join(problems)


def test_rules_read_only_exported_or_recorded_metrics(
    check_promql: ModuleType, rules: dict[str, Any], exported_metric_names: set[str]
) -> None:
    problems = check_promql.check(
        check_promql.rule_queries(rules),
        exported_metric_names,
        check_promql.recorded_names(rules),
    )
    assert not problems, "\n".join(problems)


def _matches(op: str, pattern: str, actual: str) -> bool:
    # PromQL regex matchers are anchored at both ends; a missing label reads as "".
    if op == "=":
        return actual == pattern
    if op == "!=":
        return actual != pattern
    found = re.fullmatch(pattern, actual) is not None
    return found if op == "=~" else not found


def test_every_selector_selects_a_series_of_the_live_scrape(
    check_promql: ModuleType,
    dashboard: dict[str, Any],
    rules: dict[str, Any],
    live_series: Series,
) -> None:
    """A panel or rule whose label matchers select nothing shows "No data" or never fires:
    after the traffic of the live fixture, every selector must find at least one series."""
    recorded = check_promql.recorded_names(rules)
    queries = check_promql.dashboard_queries(dashboard) + check_promql.rule_queries(rules)
    empty = []
    for query in queries:
        for selector in check_promql.analyse(check_promql.substitute(query.expr)).selectors:
            if selector.name in recorded:
                continue
            matchers = [m for m in selector.matchers if m[0] not in TARGET_LABELS]
            candidates = labelled(live_series, selector.name)
            if not any(
                all(_matches(op, pattern, labels.get(label, "")) for label, op, pattern in matchers)
                for labels in candidates
            ):
                empty.append(f"{query.source}: {selector.name} {matchers} selects nothing")
    assert not empty, "\n".join(empty)


def test_no_expr_uses_an_order_id_label(
    check_promql: ModuleType, dashboard: dict[str, Any], rules: dict[str, Any]
) -> None:
    queries = check_promql.dashboard_queries(dashboard) + check_promql.rule_queries(rules)
    offenders = [
        q.source
        for q in queries
        if "order_id" in check_promql.analyse(check_promql.substitute(q.expr)).label_names
    ]
    assert not offenders


def test_every_panel_has_a_unit(check_promql: ModuleType, dashboard: dict[str, Any]) -> None:
    missing = [
        p.get("title")
        for p in check_promql.panels(dashboard)
        if p["type"] != "row" and not p.get("fieldConfig", {}).get("defaults", {}).get("unit")
    ]
    assert not missing


def test_rate_and_error_panels_use_the_agreed_units(
    check_promql: ModuleType, dashboard: dict[str, Any]
) -> None:
    units = {
        p["title"]: p["fieldConfig"]["defaults"]["unit"]
        for p in check_promql.panels(dashboard)
        if p["type"] != "row"
    }
    assert units["Requests/s by cache result"] == "reqps"
    assert units["Upstream calls saved/s"] == "reqps"
    assert units["Cache hit ratio"] == "percentunit"
    assert units["Cache hit ratio (order, order_status)"] == "percentunit"
    assert units["Request latency by cache result (p50 / p95 / p99)"] == "s"
    assert units["Upstream (Juspay) latency (p50 / p95 / p99)"] == "s"
    assert units["Memory cache size by pod"] == "bytes"


@pytest.mark.parametrize(
    ("title", "threshold"),
    [
        ("Cache hit ratio", 0.5),
        ("Cache hit ratio (order, order_status)", 0.5),
        ("Cache-hit p99", 0.005),
        ("Request latency by cache result (p50 / p95 / p99)", 0.005),
        ("Proxy 5xx ratio", 0.01),
        ("Proxy 5xx ratio by code", 0.01),
        ("Upstream error ratio", 0.05),
        ("Upstream error ratio by outcome", 0.05),
        ("Redis errors/s by operation", 0.1),
    ],
)
def test_alerting_panels_show_the_alert_threshold(
    check_promql: ModuleType, dashboard: dict[str, Any], title: str, threshold: float
) -> None:
    (panel,) = [p for p in check_promql.panels(dashboard) if p.get("title") == title]
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert threshold in [step["value"] for step in steps]


def test_datasource_and_template_variables(
    check_promql: ModuleType, dashboard: dict[str, Any]
) -> None:
    assert dashboard["schemaVersion"] >= 39
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("namespace", "pod"):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"]["uid"] == "${datasource}"
        assert "label_values(order_proxy_requests_total" in variables[name]["query"]["query"]
    assert variables["pod"]["multi"] is True
    assert variables["pod"]["includeAll"] is True

    for panel in check_promql.panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_panel_ids_are_unique(check_promql: ModuleType, dashboard: dict[str, Any]) -> None:
    ids = [p["id"] for p in check_promql.panels(dashboard)]
    assert len(ids) == len(set(ids))
