"""Grafana dashboards as code (grafana/generate.py) and the committed JSON.

The JSON must be exactly what the generator writes; every panel has a query, a unit and
a description (the KPI registry's, for KPI panels); every metric a query reads is
documented in docs/metrics.md or recorded by deploy/prometheus/rules/recording.yml;
every registry KPI is on a dashboard; queries are valid PromQL once the template
variables are substituted (checked by promtool, which fails - never skips - when missing).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest

from grafana import generate
from streams.core.registry import KPI_BY_NAME, KPIS
from streams.core.sla import DEFAULT_TARGETS
from streams.metrics.collector import kpi_label_names

try:
    import yaml
except ImportError:  # pragma: no cover - only without the dev extras
    yaml = None

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS_DIR = ROOT / "grafana" / "dashboards"
METRICS_DOC = ROOT / "docs" / "metrics.md"
RECORDING_RULES = ROOT / "deploy" / "prometheus" / "rules" / "recording.yml"
DATASOURCE_PROVISIONING = ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVISIONING = ROOT / "grafana" / "provisioning" / "dashboards" / "crm-kpi.yml"

EXPECTED = {
    "support-operations.json": "crm-support-operations",
    "customer-experience.json": "crm-customer-experience",
    "revenue-churn.json": "crm-revenue-churn",
    "pipeline-health.json": "crm-pipeline-health",
}
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "group_left", "group_right", "inf", "nan"}


# --- helpers ------------------------------------------------------------------------------


def load_yaml(path: Path):
    if yaml is None:
        pytest.fail("PyYAML is missing: install the dev extras (pip install -e '.[dev]')", pytrace=False)
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@cache
def dashboards() -> dict[str, dict]:
    return generate.load_committed(DASHBOARDS_DIR)


def all_panels() -> list[tuple[str, dict]]:
    return [(name, panel) for name, dash in dashboards().items() for panel in generate.iter_panels(dash)]


def all_queries() -> list[tuple[str, str, str]]:
    return [query for dash in dashboards().values() for query in generate.panel_queries(dash)]


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (strip strings, matchers, ranges, label lists)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(\s*\()?", expr):
        word, is_call = match.group(1), match.group(2)
        if not is_call and word.lower() not in PROMQL_WORDS:
            names.add(word)
    return names


def selectors(expr: str) -> list[tuple[str, dict[str, tuple[str, str]]]]:
    """``(metric, {label: (operator, value)})`` for every ``metric{...}`` selector."""
    found = []
    for match in re.finditer(r"([A-Za-z_:][\w:]*)\{([^}]*)\}", expr):
        matchers: dict[str, tuple[str, str]] = {}
        for label, op, value in re.findall(r'(\w+)\s*(=~|!=|!~|=)\s*"([^"]*)"', match.group(2)):
            # a label may carry two matchers (priority=~"$priority",priority!=""): keep both
            key = label if label not in matchers else f"{label}#2"
            matchers[key] = (op, value)
        found.append((match.group(1), matchers))
    return found


@cache
def documented_metrics() -> frozenset[str]:
    """Every metric name docs/metrics.md documents: literal names, histogram series and the
    ``crm_<kpi>...`` templates of the KPI gauge table expanded for the KPIs of their row."""
    text = METRICS_DOC.read_text(encoding="utf-8")
    names: set[str] = set()
    for line in text.splitlines():
        tokens = re.findall(r"`([^`]+)`", line)
        heads = [re.split(r"[{\s|]", token, maxsplit=1)[0] for token in tokens]
        kpis = [head for head in heads if head in KPI_BY_NAME]
        for head in heads:
            if "<kpi>" in head:
                names.update(head.replace("<kpi>", kpi) for kpi in kpis)
            elif re.fullmatch(r"(?:crm|process)_[a-z0-9_]+", head):  # ours, and the process collector's
                names.add(head)
        if "| histogram |" in line:
            for head in heads:
                names.update(f"{head}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
    return frozenset(names)


@cache
def recording_rules() -> frozenset[str]:
    return frozenset(
        rule["record"] for group in load_yaml(RECORDING_RULES)["groups"] for rule in group["rules"] if "record" in rule
    )


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: install Debian's prometheus (apt-get install -y prometheus)", pytrace=False)
    return path


# --- the committed JSON -----------------------------------------------------------------------


def test_regenerating_yields_the_committed_json_byte_for_byte() -> None:
    files = generate.generate()
    assert sorted(files) == sorted(EXPECTED)
    for name, text in files.items():
        path = DASHBOARDS_DIR / name
        assert path.is_file(), f"{path} missing: run python -m grafana.generate"
        assert path.read_bytes() == text.encode("utf-8"), f"{path} is stale: run python -m grafana.generate"
    extra = {path.name for path in DASHBOARDS_DIR.glob("*.json")} - set(files)
    assert not extra, f"JSON in grafana/dashboards/ that the generator does not write: {extra}"


def test_generation_is_deterministic_and_keys_are_sorted() -> None:
    assert generate.generate() == generate.generate()
    for name, dash in dashboards().items():
        assert generate.render(dash) == (DASHBOARDS_DIR / name).read_text(encoding="utf-8")


def test_check_mode_passes_on_the_committed_files(tmp_path: Path) -> None:
    assert generate.main(["--check"]) == 0
    (tmp_path / "support-operations.json").write_text("{}\n")
    assert generate.main(["--check", "--out", str(tmp_path)]) == 1


def test_dashboards_have_stable_unique_uids_and_titles() -> None:
    found = {name: dash["uid"] for name, dash in dashboards().items()}
    assert found == EXPECTED
    titles = [dash["title"] for dash in dashboards().values()]
    assert len(set(titles)) == len(titles)
    for dash in dashboards().values():
        ids = [panel["id"] for panel in dash["panels"]]
        assert len(set(ids)) == len(ids), f"{dash['title']}: duplicate panel ids"
        assert generate.TAG in dash["tags"]


# --- panels -----------------------------------------------------------------------------------


def test_every_panel_has_a_query_a_unit_and_a_description() -> None:
    for name, panel in all_panels():
        where = f"{name}: {panel.get('title')!r}"
        assert panel.get("title"), where
        assert panel.get("description", "").strip(), f"{where} has no description"
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{where} has no unit"
        exprs = [target.get("expr", "") for target in panel.get("targets", [])]
        assert exprs and all(expr.strip() for expr in exprs), f"{where} has no query"
        assert panel["datasource"]["uid"] == "${datasource}", where


def test_panels_fit_the_24_column_grid_without_overlapping() -> None:
    for name, dash in dashboards().items():
        cells: dict[tuple[int, int], str] = {}
        for panel in dash["panels"]:  # rows here are expanded: their panels are top-level
            pos, title = panel["gridPos"], panel["title"]
            assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, f"{name}: {title!r} {pos}"
            for x in range(pos["x"], pos["x"] + pos["w"]):
                for y in range(pos["y"], pos["y"] + pos["h"]):
                    assert (x, y) not in cells, f"{name}: {title!r} overlaps {cells[(x, y)]!r}"
                    cells[(x, y)] = title


def test_kpi_panels_take_description_and_unit_from_the_registry() -> None:
    by_metric = generate.kpi_metric_names()
    seen = 0
    for name, panel in all_panels():
        metrics = {m for target in panel["targets"] for m in metric_names(target["expr"])}
        kpis = {by_metric[m] for m in metrics if m in by_metric}
        for kpi_name in kpis:
            kpi = KPI_BY_NAME[kpi_name]
            assert kpi.help in panel["description"], f"{name}: {panel['title']!r} lacks the registry text of {kpi_name}"
            seen += 1
        value_metrics = {m for m in metrics if m in by_metric and not m.endswith(("_samples", "_responses"))}
        units = {generate.kpi_unit(KPI_BY_NAME[by_metric[m]]) for m in value_metrics}
        if len(units) == 1 and metrics <= set(by_metric):
            assert panel["fieldConfig"]["defaults"]["unit"] == units.pop(), f"{name}: {panel['title']!r}"
        if any(KPI_BY_NAME[k].unit == "minor_units" for k in kpis):
            assert "minor units" in panel["description"], f"{name}: {panel['title']!r} lacks the money note"
    assert seen > 50


def test_kpi_titles_come_from_registry_names() -> None:
    assert generate.kpi_title(KPI_BY_NAME["first_response_time_seconds"]) == "First response time"
    assert generate.kpi_title(KPI_BY_NAME["sla_first_reply_hit_rate"]) == "SLA first reply hit rate"
    assert generate.kpi_title(KPI_BY_NAME["mrr_minor"]) == "MRR"
    # every KPI is named by its registry title in a panel title or a series legend
    names = {panel["title"] for _, panel in all_panels()}
    names |= {target.get("legendFormat", "") for _, panel in all_panels() for target in panel["targets"]}
    for kpi in KPIS:
        assert any(name.startswith(generate.kpi_title(kpi)) for name in names), kpi.name


def test_every_registry_kpi_appears_on_a_dashboard() -> None:
    by_metric = generate.kpi_metric_names()
    shown = {by_metric[m] for _, _, expr in all_queries() for m in metric_names(expr) if m in by_metric}
    missing = sorted(set(KPI_BY_NAME) - shown)
    assert not missing, f"KPIs on no dashboard: {missing}"


def test_every_metric_is_documented_or_a_recording_rule() -> None:
    documented, recorded = documented_metrics(), recording_rules()
    assert "crm_first_response_time_seconds_samples" in documented  # the doc parser works
    assert "crm_batch_size_bucket" in documented
    used = {m for _, _, expr in all_queries() for m in metric_names(expr)}
    assert used
    unknown = sorted(m for m in used if m not in documented and m not in recorded and m != "up")
    assert not unknown, f"metrics neither in docs/metrics.md nor recording rules: {unknown}"


def test_kpi_queries_select_one_dimension_set_and_use_max() -> None:
    by_metric = generate.kpi_metric_names()
    for dash, title, expr in all_queries():
        for metric, matchers in selectors(expr):
            if metric not in by_metric:
                continue
            kpi = KPI_BY_NAME[by_metric[metric]]
            where = f"{dash}: {title!r}: {expr}"
            assert matchers.get("window") == ("=", "$window"), where
            assert matchers.get("job") == ("=", "crm-kpi-worker"), where
            assert matchers.get("state") == ("=", ""), where
            selected = set()
            for label in kpi_label_names(kpi)[1:]:
                assert label in matchers, f"{where}: dimension label {label} not pinned"
                op, value = matchers[label]
                if not (op == "=" and value == ""):
                    selected.add(label)
                if op == "=~":
                    assert matchers.get(f"{label}#2") == ("!=", ""), f"{where}: {label} must exclude the overall"
            assert tuple(sorted(selected)) in {tuple(sorted(d)) for d in kpi.dims}, where
            assert re.search(rf"\bmax(?: by \([^)]*\) )?\({re.escape(metric)}\{{", expr), f"{where}: use max by"


def test_counters_are_summed_over_workers() -> None:
    for dash, title, expr in all_queries():
        if "_total{" in expr:
            assert re.search(r"\bsum(?: by \([^)]*\) )?\((?:rate|increase)\(", expr), f"{dash}: {title!r}"


# --- SLA targets, variables, datasource ---------------------------------------------------------


def test_first_reply_panels_draw_each_priority_target_as_threshold_lines() -> None:
    panels = {panel["title"]: panel for _, panel in all_panels()}
    for priority, target in DEFAULT_TARGETS.items():
        matching = [
            panel for title, panel in panels.items()
            if title.startswith("First response time, ") and priority in title
        ]
        assert len(matching) == 1, priority
        panel = matching[0]
        steps = [step["value"] for step in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]]
        assert target.first_reply_ms / 1000 in steps
        assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] != "off"
        assert all(f'priority="{priority}"' in target_["expr"] for target_ in panel["targets"])
    target_panel = panels["First response time p90 by priority vs SLA target"]
    assert any("crm:sla_first_reply_target_seconds:const" in t["expr"] for t in target_panel["targets"])


def test_template_variables() -> None:
    for dash in dashboards().values():
        variables = {v["name"]: v for v in dash["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["current"]["value"] == generate.DATASOURCE_UID
        used = set(re.findall(r"\$(\w+)", json.dumps([t for _, _, t in generate.panel_queries(dash)])))
        assert {u for u in used if not u.startswith("__")} <= set(variables), dash["title"]
        if "window" in variables:
            window = variables["window"]
            assert [o["value"] for o in window["options"]] == ["5m", "1h", "1d", "30d"]
            assert window["current"]["value"] == "1h"
        for name in ("priority", "channel", "team", "product"):
            if name in variables:
                variable = variables[name]
                assert variable["type"] == "query" and variable["query"].startswith("label_values(")
                assert variable["includeAll"] is True and variable["allValue"] == ".*"
    support = dashboards()["support-operations.json"]
    assert {v["name"] for v in support["templating"]["list"]} >= {"window", "priority", "channel", "team"}
    for name in ("customer-experience.json", "revenue-churn.json"):
        assert "product" in {v["name"] for v in dashboards()[name]["templating"]["list"]}


def test_substitution_produces_promql_without_variables() -> None:
    queries = [q for dash in dashboards().values() for q in generate.concrete_queries(dash)]
    assert len(queries) == len(all_queries())
    for dash, title, expr in queries:
        assert "$" not in expr, f"{dash}: {title!r}: {expr}"
    assert generate.substitute('x{window="$window",p=~"${priority}"}[$__rate_interval]') == 'x{window="1h",p=~"high"}[1m]'
    assert generate.substitute('x{p=~"$priority"}', {"priority": ".*"}) == 'x{p=~".*"}'
    with pytest.raises(KeyError):
        generate.substitute("x{a=\"$nope\"}")


def test_substituted_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses every query (as a recording rule): catches typos before Grafana does."""
    queries = [expr for dash in dashboards().values() for _, _, expr in generate.concrete_queries(dash)]
    rules = {"groups": [{"name": "dashboard-queries", "rules": [
        {"record": f"dashboard:query_{index}:check", "expr": expr} for index, expr in enumerate(queries)
    ]}]}
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    result = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_provisioned_datasource_uid_is_the_dashboards_default() -> None:
    datasources = load_yaml(DATASOURCE_PROVISIONING)["datasources"]
    assert [d["uid"] for d in datasources] == [generate.DATASOURCE_UID]
    assert datasources[0]["type"] == "prometheus" and datasources[0]["url"] == "http://prometheus:9090"
    providers = load_yaml(DASHBOARD_PROVISIONING)["providers"]
    assert providers[0]["type"] == "file" and providers[0]["options"]["path"]
