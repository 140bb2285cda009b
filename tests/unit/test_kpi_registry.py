"""The KPI registry is the single source of KPI names, help texts and docs (catalogue §3.8).

* every KPI computed anywhere has a registry entry, and every entry is computed;
* every Prometheus family the collector builds takes its name and HELP from the entry;
* ``docs/kpis.md`` is exactly what :func:`streams.core.registry.render_markdown` writes;
* ``crm-kpi kpis`` lists the registry (table, ``--json``, ``--markdown``).
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import pytest
from prometheus_client.core import GaugeMetricFamily
from typer.testing import CliRunner

from streams.cli import app as cli_app
from streams.codec import Rejected, decode_event
from streams.core import kpis as formulas
from streams.core.registry import (
    ALL_WINDOWS,
    BASE_BY_NAME,
    BASES,
    FAMILIES,
    KPI_BY_NAME,
    KPIS,
    MARKDOWN_PATH,
    REGENERATE,
    render_markdown,
)
from streams.metrics.collector import kpi_families, kpi_label_names
from streams.replay import ReplayResult, run_events
from streams.simulate import SimConfig
from streams.simulate import generate as simulate
from tests.corekit import config
from tests.eventgen import generate

ROOT = Path(__file__).resolve().parents[2]
METRICS_DOC = ROOT / "docs" / "metrics.md"


@cache
def rich_run() -> ReplayResult:
    """Two days of the compact generator (every event type, leads included), all window sizes."""
    events = generate(1, customers=60, span_ms=2 * 86_400_000)
    return run_events(events, config(",".join(ALL_WINDOWS), min_sample=3))


@cache
def simulated_run() -> ReplayResult:
    """A simulated day (the realistic mix the demo and end-to-end tests use)."""
    sim = SimConfig(seed=7, customers=600, duration="1d", duplicates=0.0, late=0.0, malformed=0.0)
    events = [e for e in (decode_event(m.value) for m in simulate(sim)) if not isinstance(e, Rejected)]
    return run_events(events, config(",".join(ALL_WINDOWS), min_sample=3))


def latest(records) -> list:
    """The latest record per (kpi, size, dims): what the gauges show."""
    found = {}
    for record in sorted(records, key=lambda r: (r.start_ms, r.revision)):
        found[(record.kpi, record.size, record.dims)] = record
    return list(found.values())


# --- registry <-> computed KPIs ---------------------------------------------------------------


@pytest.mark.parametrize("source", [rich_run, simulated_run], ids=["eventgen", "simulate"])
def test_every_computed_kpi_has_a_registry_entry(source):
    computed = {record.kpi for record in source().records}
    assert computed, "no records"
    assert not computed - set(KPI_BY_NAME), f"KPIs computed without a registry entry: {computed - set(KPI_BY_NAME)}"


def test_every_registry_kpi_is_computed_from_a_rich_event_set():
    computed = {record.kpi for record in rich_run().records}
    missing = [kpi.name for kpi in KPIS if kpi.name not in computed]
    assert not missing, f"registry KPIs never computed: {missing}"
    # and with a value, not only as empty placeholders
    valued = {record.kpi for record in rich_run().records if record.value is not None}
    assert not [kpi.name for kpi in KPIS if kpi.name not in valued]


def test_records_use_only_the_dimension_sets_of_their_registry_entry():
    for record in rich_run().records + simulated_run().records:
        names = tuple(name for name, _ in record.dims)
        allowed = {tuple(sorted(dim_set)) for dim_set in KPI_BY_NAME[record.kpi].dims}
        assert names in allowed, f"{record.kpi} published with dims {names}; registry says {allowed}"


def test_the_formulas_read_only_registered_bases_of_the_kpis_family():
    used = [*formulas.DISTRIBUTIONS, *formulas.COUNTS, *formulas.LEVELS, *formulas.FUNNEL_ACTIVITY]
    for name, (numerator, denominators) in formulas.RATIOS.items():
        used += [numerator, *denominators]
        assert all(BASE_BY_NAME[b].family == KPI_BY_NAME[name].family for b in (numerator, *denominators)), name
    assert not [base for base in used if base not in BASE_BY_NAME]
    for name in (*formulas.DISTRIBUTIONS, *formulas.COUNTS, *formulas.LEVELS):
        assert BASE_BY_NAME[name].family == KPI_BY_NAME[name].family, name


def test_every_entry_is_complete():
    assert len({kpi.name for kpi in KPIS}) == len(KPIS)
    assert len({base.name for base in BASES}) == len(BASES)
    for kpi in KPIS:
        assert kpi.family in FAMILIES, kpi.name
        assert kpi.dims and all(isinstance(dim_set, tuple) for dim_set in kpi.dims), kpi.name
        assert kpi.windows and set(kpi.windows) <= set(ALL_WINDOWS), kpi.name
        for text in (kpi.formula, kpi.moves, kpi.gamed, kpi.catalogue):
            assert text.strip() and "\n" not in text, kpi.name
        assert re.fullmatch(r"3\.[1-7]", kpi.catalogue), kpi.name


def test_clv_and_survey_scores_are_documented_for_the_rolling_30_days():
    assert KPI_BY_NAME["clv_minor"].windows == ("30d",)
    assert KPI_BY_NAME["nps"].windows == ("30d",)
    assert KPI_BY_NAME["first_response_time_seconds"].windows == ALL_WINDOWS
    # documented for 30d, but published for every size
    assert {r.size for r in rich_run().records if r.kpi == "clv_minor"} == set(ALL_WINDOWS)


# --- registry <-> Prometheus ----------------------------------------------------------------------


def families() -> list[GaugeMetricFamily]:
    return list(kpi_families(latest(rich_run().records)))


def test_every_prometheus_family_takes_name_and_help_from_the_registry():
    by_metric = {metric: kpi for kpi in KPIS for metric in kpi.metrics}
    built = families()
    for family in built:
        kpi = by_metric.get(family.name)
        assert kpi is not None, f"{family.name} is no metric of any registry KPI"
        assert kpi.help in family.documentation, f"{family.name}: HELP {family.documentation!r} lacks the registry text"
        if family.name == kpi.metric:
            assert family.documentation == kpi.help, family.name
    # the registry's list of series is exactly what the collector builds
    assert {family.name for family in built} == {metric for kpi in KPIS for metric in kpi.metrics}


def test_metric_names_follow_the_naming_rules():
    for family in families():
        kpi = next(k for k in KPIS if family.name in k.metrics)
        assert family.name.startswith("crm_") and not family.name.endswith("_total"), family.name
        if kpi.unit == "ratio" and family.name == kpi.metric:
            assert family.name.endswith("_ratio"), family.name
        if kpi.kind == "distribution":
            assert set(kpi.metrics) == {f"crm_{kpi.name}", f"crm_{kpi.name}_mean", f"crm_{kpi.name}_samples"}
            if family.name == kpi.metric:
                assert {sample.labels.get("quantile") for sample in family.samples} == {"0.5", "0.9", "0.99"}


@cache
def bounded_labels() -> frozenset[str]:
    """The label names docs/metrics.md declares bounded ("Labels come only from bounded sets - ... - never")."""
    text = " ".join(METRICS_DOC.read_text(encoding="utf-8").split())
    match = re.search(r"Labels come only from bounded sets — (.*?) — never", text)
    assert match, "docs/metrics.md lost its list of bounded labels"
    return frozenset(re.findall(r"`(\w+)`", match.group(1)))


def test_every_kpi_label_is_a_documented_bounded_label():
    assert {"window", "priority", "campaign", "currency"} <= bounded_labels()
    for kpi in KPIS:
        unbounded = set(kpi_label_names(kpi)) - bounded_labels()
        assert not unbounded, f"{kpi.name} would export labels not documented as bounded: {unbounded}"


def test_every_kpi_is_listed_in_the_metrics_doc_table():
    text = METRICS_DOC.read_text(encoding="utf-8")
    table = text[text.index("| KPI kind | series |"):text.index("## Counters")]
    listed = set(re.findall(r"`([a-z_]+)`", table))
    assert not [kpi.name for kpi in KPIS if kpi.name not in listed]


# --- registry <-> docs/kpis.md ----------------------------------------------------------------------


def test_docs_kpis_md_is_generated_from_the_registry():
    path = ROOT / MARKDOWN_PATH
    assert path.is_file(), f"{path} missing: run {REGENERATE}"
    assert path.read_text(encoding="utf-8") == render_markdown(), f"{path} is stale: run {REGENERATE}"


def test_kpis_md_has_one_section_per_kpi_with_every_field():
    text = render_markdown()
    for kpi in KPIS:
        section = text.split(f"\n### {kpi.name}\n", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
        for needle in (kpi.formula, kpi.moves, kpi.gamed, f"§{kpi.catalogue}", *kpi.metrics):
            assert needle in section, f"{kpi.name}: {needle!r} missing"
        assert f"[`{kpi.name}`](#{kpi.name})" in text


# --- crm-kpi kpis -------------------------------------------------------------------------------------


def invoke(*args: str):
    result = CliRunner().invoke(cli_app, ["kpis", *args], env={"COLUMNS": "240"})
    assert result.exit_code == 0, result.output
    return result.output


def test_cli_lists_every_kpi_with_unit_and_dims():
    output = invoke()
    for kpi in KPIS:
        assert kpi.name in output
    assert "lead_conversion_rate" in output and "campaign" in output


def test_cli_json_is_the_registry():
    listed = json.loads(invoke("--json"))
    assert [item["name"] for item in listed] == [kpi.name for kpi in KPIS]
    lead = next(item for item in listed if item["name"] == "lead_conversion_rate")
    assert lead["dims"] == [[], ["channel"], ["campaign"]]
    assert lead["unit"] == "ratio" and lead["metrics"] == ["crm_lead_conversion_rate_ratio"]
    assert lead["help"] == KPI_BY_NAME["lead_conversion_rate"].help
    assert set(lead) >= {"formula", "direction", "moves", "gamed", "windows", "family", "kind", "catalogue"}
    commercial = json.loads(invoke("--json", "--family", "commercial"))
    assert {item["family"] for item in commercial} == {"commercial"}


def test_cli_markdown_is_the_committed_doc():
    assert invoke("--markdown") == (ROOT / MARKDOWN_PATH).read_text(encoding="utf-8")


def test_cli_rejects_an_unknown_family():
    result = CliRunner().invoke(cli_app, ["kpis", "--family", "nope"])
    assert result.exit_code == 2
