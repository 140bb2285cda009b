"""Prometheus rules, their promtool unit tests and the Alertmanager configuration.

The real tools check syntax and behaviour (`promtool check rules|config`, `promtool test
rules deploy/prometheus/tests/*.yml`, `amtool check-config`, `amtool config routes
test`); the tests below check the conventions they cannot: every alert is complete,
has a runbook section, is tested both firing and not firing, and reads only metrics
that docs/metrics.md documents. A missing tool fails (never skips) with the Debian
package to install.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

try:
    import yaml
except ImportError:  # pragma: no cover - only on an environment without the dev extras
    yaml = None

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
RULE_TEST_FILES = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
METRICS_DOC = ROOT / "docs" / "metrics.md"

JOB = "crm-kpi-worker"
RUNBOOK_BASE = "https://github.com/crm-kpi-streams/crm-kpi-streams/blob/main/docs/runbooks.md#"
RECEIVER_BY_SEVERITY = {"page": "pager", "ticket": "ticket", "info": "null"}
DEBIAN_PACKAGE = {"promtool": "prometheus", "amtool": "prometheus-alertmanager"}


# --- helpers ----------------------------------------------------------------------------


def tool(name: str) -> str:
    """Path of a Prometheus tool; fail with the package to install when it is missing."""
    path = shutil.which(name)
    if path is None:
        package = DEBIAN_PACKAGE[name]
        pytest.fail(
            f"{name} not found on PATH: install Debian's {package} (apt-get install -y {package})",
            pytrace=False,
        )
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def relative(paths: list[Path]) -> list[str]:
    return [str(path.relative_to(ROOT)) for path in paths]


def load_yaml(path: Path) -> Any:
    if yaml is None:
        pytest.fail(
            "PyYAML is missing: add pyyaml to the dev extras (pip install pyyaml)", pytrace=False
        )
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rules() -> Iterator[dict[str, Any]]:
    for path in RULE_FILES:
        for group in load_yaml(path)["groups"]:
            yield from group["rules"]


@cache
def alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in rules() if "alert" in rule}


@cache
def recording_rule_names() -> frozenset[str]:
    return frozenset(rule["record"] for rule in rules() if "record" in rule)


def alert_names() -> list[str]:
    # Read at collection time for parametrize ids. Never fail here (that would abort the
    # whole session): a missing PyYAML or a broken file fails test_there_are_rules_... .
    if yaml is None:
        return []
    try:
        return sorted(alerts())
    except Exception:
        return []


def github_anchor(heading: str) -> str:
    """The id GitHub gives a Markdown heading: lower case, punctuation dropped, - for spaces."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def runbook_anchors() -> set[str]:
    anchors, in_code = set(), False
    for line in RUNBOOKS.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and (match := re.match(r"#{1,6}\s+(.+?)\s*#*\s*$", line)):
            anchors.add(github_anchor(match.group(1)))
    return anchors


PROMQL_KEYWORDS = {
    "and", "or", "unless", "bool", "offset", "group_left", "group_right", "inf", "nan", "atan2",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (without a full parser: strip what is not one)."""
    expr = re.sub(r"#[^\n]*", "", expr)  # comments
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges and subqueries
    # label lists of grouping and vector matching: `by (a, b)`, `on (a)`, `group_left (c)`
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"(?<![\w:.])([A-Za-z_:][\w:]*)(\s*\()?", expr):
        word, is_call = match.group(1), match.group(2)
        if not is_call and word.lower() not in PROMQL_KEYWORDS:
            names.add(word)
    return names


@cache
def documented_metrics() -> tuple[frozenset[str], tuple[str, ...], frozenset[str]]:
    """(literal names, `crm_<kpi>...` templates, KPI names) from docs/metrics.md."""
    text = METRICS_DOC.read_text(encoding="utf-8")
    literal, templates = set(), []
    for token in re.findall(r"`([^`]+)`", text):
        head = re.split(r"[{\s]", token, maxsplit=1)[0]
        if "<kpi>" in head:
            templates.append(head)
        elif re.fullmatch(r"[a-z_:][a-z0-9_:]*", head):
            literal.add(head)
    gauges = re.search(r"^## KPI gauges.*?(?=^## )", text, flags=re.S | re.M)
    kpis = set(re.findall(r"`([a-z][a-z0-9_]*)`", gauges.group(0))) if gauges else set()
    return frozenset(literal), tuple(templates), frozenset(kpis)


def is_documented(name: str) -> bool:
    literal, templates, kpis = documented_metrics()
    if name in literal:
        return True
    for suffix in ("_bucket", "_count", "_sum"):  # histogram series
        if name.endswith(suffix) and name.removesuffix(suffix) in literal:
            return True
    for template in templates:
        prefix, _, suffix = template.partition("<kpi>")
        if name.startswith(prefix) and name.endswith(suffix):
            kpi = name[len(prefix) : len(name) - len(suffix) if suffix else None]
            if kpi in kpis:
                return True
    return False


def alert_rule_tests() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in RULE_TEST_FILES:
        for test_group in load_yaml(path).get("tests") or []:
            for case in test_group.get("alert_rule_test") or []:
                yield path, case


# --- the tools --------------------------------------------------------------------------


def test_there_are_rules_and_rule_tests() -> None:
    assert [p.name for p in RULE_FILES] == ["alerts.yml", "recording.yml"]
    assert RULE_TEST_FILES, "no promtool tests in deploy/prometheus/tests/"
    assert alerts(), "no alerting rules"
    assert recording_rule_names(), "no recording rules"


def test_promtool_check_rules() -> None:
    result = run(tool("promtool"), "check", "rules", *relative(RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_config() -> None:
    result = run(tool("promtool"), "check", "config", str(PROMETHEUS_CONFIG.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr
    config = load_yaml(PROMETHEUS_CONFIG)
    assert [job["job_name"] for job in config["scrape_configs"]] == [JOB]


def test_promtool_unit_tests_pass() -> None:
    result = run(tool("promtool"), "test", "rules", *relative(RULE_TEST_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_amtool_check_config() -> None:
    result = run(tool("amtool"), "check-config", str(ALERTMANAGER_CONFIG.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=page", "alertname=CrmKpiWorkerDown"], "pager"),
        (["severity=ticket", "priority=urgent"], "ticket"),
        (["severity=info"], "null"),
        (["alertname=SomethingWithoutSeverity"], "ticket"),
    ],
)
def test_alertmanager_routes_by_severity(labels: list[str], receiver: str) -> None:
    config = str(ALERTMANAGER_CONFIG.relative_to(ROOT))
    result = run(tool("amtool"), "config", "routes", "test", f"--config.file={config}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_every_alert_reaches_the_receiver_of_its_severity() -> None:
    config = str(ALERTMANAGER_CONFIG.relative_to(ROOT))
    amtool = tool("amtool")
    for name, rule in alerts().items():
        severity = rule["labels"]["severity"]
        result = run(amtool, "config", "routes", "test", f"--config.file={config}",
                     f"alertname={name}", f"severity={severity}")  # fmt: skip
        assert result.stdout.strip() == RECEIVER_BY_SEVERITY[severity], (name, result.stdout)


def test_alertmanager_names_only_existing_alerts_and_inhibits_stalled_by_worker_down() -> None:
    config = load_yaml(ALERTMANAGER_CONFIG)
    text = ALERTMANAGER_CONFIG.read_text(encoding="utf-8")
    named = set(re.findall(r'alertname\s*=~?\s*"?([A-Za-z0-9_]+)', text))
    assert named <= set(alerts()), f"alertmanager.yml names unknown alerts: {named - set(alerts())}"
    assert any(
        'alertname="CrmKpiWorkerDown"' in rule.get("source_matchers", [])
        and 'alertname="CrmKpiPipelineStalled"' in rule.get("target_matchers", [])
        for rule in config["inhibit_rules"]
    )
    for receiver in config["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            assert webhook["url"].startswith("http://127.0.0.1:"), webhook["url"]


# --- conventions ------------------------------------------------------------------------


@pytest.mark.parametrize("name", alert_names())
def test_alert_has_for_severity_summary_description_and_runbook(name: str) -> None:
    rule = alerts()[name]
    assert re.fullmatch(r"([0-9]+[smhdw])+", str(rule.get("for", ""))), f"{name}: needs a `for`"
    assert rule.get("labels", {}).get("severity") in RECEIVER_BY_SEVERITY, f"{name}: severity"
    annotations = rule.get("annotations", {})
    assert annotations.get("summary", "").strip(), f"{name}: summary"
    description = annotations.get("description", "")
    assert "$value" in description or "$labels" in description, f"{name}: description"
    assert annotations.get("runbook_url", "").startswith(RUNBOOK_BASE), f"{name}: runbook_url"


@pytest.mark.parametrize("name", alert_names())
def test_runbook_anchor_exists(name: str) -> None:
    anchor = alerts()[name]["annotations"]["runbook_url"].removeprefix(RUNBOOK_BASE)
    assert anchor in runbook_anchors(), f"docs/runbooks.md has no section #{anchor} for {name}"


@pytest.mark.parametrize("name", alert_names())
def test_alert_is_tested_firing_and_not_firing(name: str) -> None:
    cases = [case for _, case in alert_rule_tests() if case.get("alertname") == name]
    assert any(case.get("exp_alerts") for case in cases), f"{name}: no firing test case"
    assert any(not case.get("exp_alerts") for case in cases), f"{name}: no not-firing test case"


def test_rule_tests_name_only_existing_alerts() -> None:
    # promtool passes an `exp_alerts: []` case for an alert that does not exist.
    unknown = {
        f"{path.name}: {case.get('alertname')}"
        for path, case in alert_rule_tests()
        if case.get("alertname") not in alerts()
    }
    assert not unknown, f"tests of unknown alerts: {sorted(unknown)}"


def test_rules_read_only_documented_metrics() -> None:
    undocumented = {
        f"{rule.get('record') or rule.get('alert')}: {name}"
        for rule in rules()
        for name in metric_names(rule["expr"])
        if name != "up" and name not in recording_rule_names() and not is_documented(name)
    }
    assert not undocumented, f"metrics not in docs/metrics.md: {sorted(undocumented)}"


def test_rules_select_the_worker_job() -> None:
    for rule in rules():
        for selector in re.findall(r"\b(?:crm_\w+|up)\{[^}]*\}", rule["expr"]):
            assert f'job="{JOB}"' in selector, (
                f"{rule.get('record') or rule.get('alert')}: {selector}"
            )


def test_metric_name_extraction() -> None:
    expr = (
        'sum by (priority) (rate(crm_a_total{job="x",state=~"met|b"}[1h])) > on (priority) '
        'group_left () crm:b:const or label_replace(vector(1), "p", "u", "", "") '
        "and on () histogram_quantile(0.9, sum by (le) (rate(crm_c_bucket[5m] offset 1d))) == bool inf"
    )
    assert metric_names(expr) == {"crm_a_total", "crm:b:const", "crm_c_bucket"}
    assert is_documented("crm_first_response_time_seconds_samples")
    assert is_documented("crm_batch_processing_seconds_bucket")
    assert not is_documented("crm_priority")
    assert not is_documented("crm_events_processed")


def test_first_reply_targets_match_the_sla_defaults() -> None:
    from streams.core.sla import DEFAULT_TARGETS

    for record, attribute in (
        ("crm:sla_first_reply_target_seconds:const", "first_reply_s"),
        ("crm:sla_resolution_target_seconds:const", "resolution_s"),
    ):
        targets = {}
        for rule in rules():
            if rule.get("record") == record:
                seconds = re.fullmatch(r"vector\((\d+)\)", rule["expr"].strip())
                assert seconds, rule
                targets[rule["labels"]["priority"]] = int(seconds.group(1))
        assert targets == {p: getattr(t, attribute) for p, t in DEFAULT_TARGETS.items()}, record
