"""Dashboards as code: build the Grafana dashboards with grafana-foundation-sdk and write
them as committed JSON to ``grafana/dashboards/`` (stable uids, sorted keys, so the same
code always writes the same bytes).

    python -m grafana.generate            # rewrite grafana/dashboards/*.json
    python -m grafana.generate --check    # exit 1 if the committed JSON is stale

Where the numbers come from:

* metric names and labels: docs/metrics.md (built by ``streams/metrics/collector.py``);
* KPI titles, units and descriptions: the KPI registry (``streams/core/registry.py``),
  never restated here by hand;
* SLA targets drawn as threshold lines: ``streams.core.sla.DEFAULT_TARGETS`` (the
  recording rules ``crm:sla_*_target_seconds:const`` carry the same numbers).

Habits of every KPI query (docs/metrics.md, deploy/prometheus/rules/recording.yml): the
selector names the dimension set explicitly (``priority!=""`` plus ``channel="",team=""``
for per-priority, every dimension label empty for the overall figure), pins
``job="crm-kpi-worker"`` and ``state=""``, and reads gauges with ``max by (...)`` so a KPI
that moves to another worker during a rebalance is not counted twice.

:func:`panel_queries` lists every panel query of a dashboard and :func:`substitute`
replaces the template variables with concrete values, so tests can run each query
against a real Prometheus.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from grafana_foundation_sdk.builders import bargauge, prometheus, stat, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as dashboard_models

from streams.core.registry import KPI_BY_NAME, KPIS, Kpi
from streams.core.sla import DEFAULT_AT_RISK_FRACTION, DEFAULT_TARGETS
from streams.metrics.collector import kpi_label_names

HERE = Path(__file__).resolve().parent
DASHBOARDS_DIR = HERE / "dashboards"

# grafana/provisioning/datasources/prometheus.yml provisions the data source with this uid;
# the dashboards' `datasource` variable defaults to it.
DATASOURCE_UID = "crm-prometheus"
DATASOURCE_REF = dashboard_models.DataSourceRef(type_val="prometheus", uid="${datasource}")
# The scrape job of the workers (deploy/prometheus/*.yml, the PodMonitor's jobLabel);
# the recording rules and alerts select the same job.
JOB = 'job="crm-kpi-worker"'
TAG = "crm-kpi"
ALERTS_ANNOTATION = 'ALERTS{alertstate="firing",alertname=~"Crm.*"}'
WINDOWS = ("5m", "1h", "1d", "30d")
DEFAULT_WINDOW = "1h"
QUANTILES = (("0.5", "p50"), ("0.9", "p90"), ("0.99", "p99"))
ALL = ".*"  # allValue of every multi-value variable: a regex matching any label value

# Template variables that filter a dimension label, and where their values come from.
# Only series that carry a non-empty label value list it, so "" (overall) never shows.
DIMENSION_VARIABLES: Mapping[str, str] = {
    "priority": f"label_values(crm_sla_events_total{{{JOB}}}, priority)",
    "channel": f"label_values(crm_tickets_created{{{JOB}}}, channel)",
    "team": f"label_values(crm_tickets_created{{{JOB}}}, team)",
    "product": f"label_values(crm_nps_responses{{{JOB}}}, product)",
}

# Concrete values for :func:`substitute`: the dashboards' defaults with one priority
# picked, Grafana's built-in interval variables at a 15 s scrape interval.
DEFAULT_VALUES: Mapping[str, str] = {
    "window": DEFAULT_WINDOW,
    "priority": "high",
    "channel": ALL,
    "team": ALL,
    "product": ALL,
    "datasource": DATASOURCE_UID,
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
}

# --- the registry, read for titles, units and descriptions ------------------------------

_ACRONYMS = {"nps": "NPS", "csat": "CSAT", "ces": "CES", "sla": "SLA", "cac": "CAC", "clv": "CLV", "mrr": "MRR"}
_UNIT_SUFFIXES = ("_seconds", "_minor")
GRAFANA_UNIT: Mapping[str, str] = {
    "seconds": "s",
    "ratio": "percentunit",
    "count": "short",
    "customers": "short",
    "per_customer": "short",
    "minor_units": "none",  # minor units of a currency: no Grafana currency unit fits all currencies
    "score": "none",
}
_DIRECTION = {
    "higher_is_better": "Higher is better.",
    "lower_is_better": "Lower is better.",
    "neutral": "Neither direction is good in itself.",
}
MONEY_NOTE = (
    "Money is in minor units of each currency (cents for EUR/USD; 12345 = 123.45), one series "
    "per currency, never converted or added across currencies."
)
LATEST_WINDOW_NOTE = (
    "Each point is the value of the latest closed window of the selected size (variable "
    "window), so the line steps once per window."
)


def kpi_title(kpi: Kpi) -> str:
    """A human title from the registry name: ``first_response_time_seconds`` -> ``First response time``."""
    name = kpi.name
    for suffix in _UNIT_SUFFIXES:
        name = name.removesuffix(suffix)
    words = [_ACRONYMS.get(word, word) for word in name.split("_")]
    words[0] = words[0][:1].upper() + words[0][1:]
    return " ".join(words)


def kpi_unit(kpi: Kpi) -> str:
    """The Grafana unit of a KPI's value series."""
    return GRAFANA_UNIT[kpi.unit]


def kpi_text(kpi: Kpi) -> str:
    """The registry's description of one KPI, as shown in a panel description."""
    return (
        f"{kpi_title(kpi)} ({kpi.name}): {kpi.help}. {_DIRECTION[kpi.direction]} "
        f"Moves with: {kpi.moves}. Misleads when: {kpi.gamed}. Catalogue §{kpi.catalogue}."
    )


def describe(*kpi_names: str, note: str = "") -> str:
    """Panel description: an optional note, then each KPI's registry entry."""
    kpis = [KPI_BY_NAME[name] for name in kpi_names]
    parts = [note] if note else []
    parts += [kpi_text(kpi) for kpi in kpis]
    if any(kpi.unit == "minor_units" for kpi in kpis) and MONEY_NOTE not in note:
        parts.append(MONEY_NOTE)
    return "\n\n".join(parts)


def kpi_series(kpi: Kpi) -> dict[str, str]:
    """Every gauge a KPI is exported as (docs/metrics.md), by role."""
    base = f"crm_{kpi.name}"
    value = base + "_ratio" if kpi.unit == "ratio" else base
    series = {"value": value}
    if kpi.kind == "distribution":
        series |= {"mean": f"{base}_mean", "samples": f"{base}_samples"}
    if kpi.kind == "score":
        series["responses"] = f"{base}_responses"
        if kpi.name == "nps":
            series["margin_of_error"] = "crm_nps_margin_of_error"
    return series


def kpi_metric_names() -> dict[str, str]:
    """Gauge metric name -> KPI name, for every KPI of the registry."""
    return {metric: kpi.name for kpi in KPIS for metric in kpi_series(kpi).values()}


# --- PromQL ---------------------------------------------------------------------------------


def kpi_expr(
    name: str,
    dims: tuple[str, ...] = (),
    *,
    series: str = "value",
    quantile: str | None = None,
    fixed: Mapping[str, str] | None = None,
) -> str:
    """``max by (dims)`` of one dimension set of a KPI gauge in the latest ``$window``.

    ``dims`` are grouped and filtered by their template variable; ``fixed`` pins labels to
    a value (``{"priority": "urgent"}``); every other dimension label must be empty.
    """
    kpi = KPI_BY_NAME[name]
    fixed = dict(fixed or {})
    wanted = tuple(sorted({*dims, *fixed}))
    if wanted not in {tuple(sorted(dim_set)) for dim_set in kpi.dims}:
        raise ValueError(f"{name} has no dimension set {wanted}; it has {kpi.dims}")
    matchers = [JOB, 'window="$window"']
    for label in kpi_label_names(kpi)[1:]:
        if label in fixed:
            matchers.append(f'{label}="{fixed[label]}"')
        elif label in dims:
            if label in DIMENSION_VARIABLES:
                matchers.append(f'{label}=~"${label}"')
            matchers.append(f'{label}!=""')
        else:
            matchers.append(f'{label}=""')
    if quantile is not None:
        matchers.append(f'quantile="{quantile}"')
    matchers.append('state=""')
    selector = kpi_series(kpi)[series] + "{" + ",".join(matchers) + "}"
    return f"max by ({', '.join(dims)}) ({selector})" if dims else f"max({selector})"


def rate_expr(metric: str, by: tuple[str, ...], matchers: str = "", interval: str = "$__rate_interval") -> str:
    """Per-second rate of a counter summed over workers (counters add up, docs/metrics.md)."""
    selector = "{" + ",".join(filter(None, [JOB, matchers])) + "}"
    group = f"sum by ({', '.join(by)}) " if by else "sum"
    return f"{group}(rate({metric}{selector}[{interval}]))"


def histogram_quantile_expr(quantile: str, metric: str) -> str:
    return (
        f"histogram_quantile({quantile}, sum by (stage, le) "
        f"(rate({metric}_bucket{{{JOB}}}[$__rate_interval])))"
    )


def legend_of(dims: Iterable[str]) -> str:
    return " ".join(f"{{{{{dim}}}}}" for dim in dims)


# --- panel and dashboard specs --------------------------------------------------------------

Thresholds = tuple[tuple[float | None, str], ...]
NEUTRAL: Thresholds = ((None, "green"),)


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str
    instant: bool = False


@dataclass(frozen=True)
class PanelSpec:
    """What a panel shows; :func:`render_panel` turns it into an SDK builder."""

    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]
    viz: Literal["timeseries", "stat", "bargauge"] = "timeseries"
    width: int = 12
    height: int = 8
    thresholds: Thresholds = NEUTRAL
    threshold_lines: bool = False  # draw the thresholds as dashed lines on a time series
    step: bool = True  # KPI gauges are constant for a window: draw steps, not slopes
    min: float | None = None
    max: float | None = None
    decimals: int | None = None
    dashed: str | None = None  # regex of series names drawn dashed (targets)
    band: tuple[str, str] | None = None  # (upper, lower) series names: fill between them
    repeat: str | None = None


@dataclass(frozen=True)
class RowSpec:
    title: str
    panels: tuple[PanelSpec, ...]


@dataclass(frozen=True)
class DashboardSpec:
    uid: str
    filename: str
    title: str
    description: str
    variables: tuple[str, ...]
    rows: tuple[RowSpec, ...]
    variable_queries: Mapping[str, str] = field(default_factory=dict)


def kpi_panel(
    name: str,
    by: str | tuple[str, ...] = (),
    *,
    overall: bool = True,
    title: str | None = None,
    series: str = "value",
    width: int = 12,
    viz: Literal["timeseries", "stat", "bargauge"] = "timeseries",
    thresholds: Thresholds = NEUTRAL,
    threshold_lines: bool = False,
    note: str = "",
) -> PanelSpec:
    """One KPI series by a dimension set, with the overall figure as a line named ``all``."""
    kpi = KPI_BY_NAME[name]
    dims = (by,) if isinstance(by, str) else by
    queries = []
    if dims:
        queries.append(Query(kpi_expr(name, dims, series=series), legend_of(dims)))
    # Money KPIs have no overall figure: currency is always a dimension.
    if overall and () in kpi.dims and dims:
        queries.append(Query(kpi_expr(name, (), series=series), "all"))
    if not dims:
        queries.append(Query(kpi_expr(name, (), series=series), kpi_title(kpi)))
    unit = "short" if series in ("samples", "responses") else kpi_unit(kpi)
    what = {"samples": " samples", "responses": " responses (n)", "mean": " mean"}.get(series, "")
    shown = [d for d in dims if d != "currency"]
    default_title = f"{kpi_title(kpi)}{what}" + (f" by {', '.join(shown)}" if shown else "")
    return PanelSpec(
        title=title or default_title,
        description=describe(name, note=note or LATEST_WINDOW_NOTE),
        unit=unit,
        queries=tuple(queries),
        viz=viz,
        width=width,
        thresholds=thresholds,
        threshold_lines=threshold_lines,
        **_range_of(kpi, series),
    )


# Ratios that are shares of one population stay in [0, 1]; resolution, reopen and
# escalation rates divide counts of different tickets and can exceed 1 in a window.
_SHARES = ("sla_first_reply_hit_rate", "sla_resolution_hit_rate", "first_contact_resolution_rate",
           "csat", "ces", "upsell_cross_sell_rate", "churn_rate")


def _range_of(kpi: Kpi, series: str) -> dict:
    if series not in ("value", "mean"):
        return {}
    if kpi.name == "nps":
        return {"min": -100, "max": 100}
    if kpi.name == "customer_health_score":
        return {"min": 0, "max": 100}
    if kpi.name in _SHARES:
        return {"min": 0, "max": 1}
    if kpi.unit == "ratio":
        return {"min": 0}
    return {}


def quantile_panel(
    name: str,
    by: str | None = None,
    *,
    fixed: Mapping[str, str] | None = None,
    title: str | None = None,
    width: int = 8,
    thresholds: Thresholds = NEUTRAL,
    note: str = "",
    with_mean: bool = False,
) -> PanelSpec:
    """p50/p90/p99 of a distribution KPI, overall, by a dimension or for a fixed label."""
    kpi = KPI_BY_NAME[name]
    dims = (by,) if by else ()
    queries = [
        Query(kpi_expr(name, dims, quantile=q, fixed=fixed), f"{label} {legend_of(dims)}".strip())
        for q, label in QUANTILES
    ]
    if with_mean:
        queries.append(Query(kpi_expr(name, dims, series="mean", fixed=fixed), f"mean {legend_of(dims)}".strip()))
    default = f"{kpi_title(kpi)} p50/p90/p99" + (" and mean" if with_mean else "") + (f" by {by}" if by else "")
    return PanelSpec(
        title=title or default,
        description=describe(name, note=note or LATEST_WINDOW_NOTE),
        unit=kpi_unit(kpi),
        queries=tuple(queries),
        width=width,
        thresholds=thresholds,
        threshold_lines=thresholds != NEUTRAL,
        **_range_of(kpi, "value"),
    )


def stat_panel(name: str, *, quantile: str | None = None, series: str = "value", title: str | None = None,
               thresholds: Thresholds = NEUTRAL, dims: tuple[str, ...] = ()) -> PanelSpec:
    """The overall figure of a KPI as a big number (latest value)."""
    kpi = KPI_BY_NAME[name]
    label = dict(QUANTILES).get(quantile or "", "")
    expr = kpi_expr(name, dims, quantile=quantile, series=series)
    unit = "short" if series in ("samples", "responses") else kpi_unit(kpi)
    what = {"samples": " samples", "responses": " responses (n)"}.get(series, "")
    return PanelSpec(
        title=title or f"{kpi_title(kpi)}{what}" + (f" {label}" if label else ""),
        description=describe(name, note=f"Overall figure, latest closed window. {LATEST_WINDOW_NOTE}"),
        unit=unit,
        queries=(Query(expr, legend_of(dims) or kpi_title(kpi)),),
        viz="stat",
        width=4,
        height=4,
        thresholds=thresholds,
    )


# --- thresholds that mean something ---------------------------------------------------------

# Example targets for SLA attainment; tune per contract.
SLA_HIT_THRESHOLDS: Thresholds = ((None, "red"), (0.9, "orange"), (0.95, "green"))
# deploy/prometheus/rules/alerts.yml CrmTicketsInBreachHigh fires above 20.
IN_BREACH_THRESHOLDS: Thresholds = ((None, "green"), (20, "red"))
# The usual reading of NPS: below 0 more detractors than promoters, above 30 good.
NPS_THRESHOLDS: Thresholds = ((None, "red"), (0, "orange"), (30, "green"))
# CrmKpiConsumerLagHigh fires above 10000 records; CrmKpiDeadLetterRateHigh above 1%.
LAG_THRESHOLDS: Thresholds = ((None, "green"), (10_000, "red"))
REJECT_THRESHOLDS: Thresholds = ((None, "green"), (0.01, "red"))
WORKERS_THRESHOLDS: Thresholds = ((None, "red"), (1, "green"))


def sla_thresholds(target_ms: int) -> Thresholds:
    """At-risk (orange) and breach (red) lines of one SLA target, in seconds."""
    target_s = target_ms / 1000
    return ((None, "green"), (float(target_s * DEFAULT_AT_RISK_FRACTION), "orange"), (target_s, "red"))


def _hours(ms: int) -> str:
    return f"{ms // 3_600_000}h"


# --- the four dashboards ------------------------------------------------------------------------


def support_operations() -> DashboardSpec:
    frt, res = "first_response_time_seconds", "resolution_time_seconds"
    at_risk = f"{float(DEFAULT_AT_RISK_FRACTION):.0%}"
    now = RowSpec("Now (overall, latest closed window)", (
        stat_panel("tickets_created"),
        stat_panel("open_tickets"),
        stat_panel("tickets_in_breach", thresholds=IN_BREACH_THRESHOLDS),
        stat_panel("sla_first_reply_hit_rate", thresholds=SLA_HIT_THRESHOLDS),
        stat_panel("sla_resolution_hit_rate", thresholds=SLA_HIT_THRESHOLDS),
        stat_panel(frt, quantile="0.9"),
    ))

    def per_priority(name: str, metric: Literal["first_reply", "resolution"]) -> list[PanelSpec]:
        panels = []
        for priority, target in DEFAULT_TARGETS.items():
            target_ms = target.first_reply_ms if metric == "first_reply" else target.resolution_ms
            panels.append(quantile_panel(
                name, fixed={"priority": priority}, width=6,
                title=f"{kpi_title(KPI_BY_NAME[name])}, {priority} (target {_hours(target_ms)})",
                thresholds=sla_thresholds(target_ms),
                note=(f"{priority.capitalize()} tickets only. Dashed lines: the default "
                      f"{metric.replace('_', ' ')} SLA target of {_hours(target_ms)} (red) and its "
                      f"at-risk point at {at_risk} of it (orange), from streams.core.sla.DEFAULT_TARGETS. "
                      f"{LATEST_WINDOW_NOTE}"),
            ))
        return panels

    def p90_vs_target(name: str, target_rule: str) -> PanelSpec:
        kpi = KPI_BY_NAME[name]
        return PanelSpec(
            title=f"{kpi_title(kpi)} p90 by priority vs SLA target",
            description=describe(name, note=(
                f"p90 per priority (solid) against the SLA target of that priority (dashed, "
                f"recording rule {target_rule}). {LATEST_WINDOW_NOTE}")),
            unit="s",
            queries=(
                Query(kpi_expr(name, ("priority",), quantile="0.9"), "p90 {{priority}}"),
                Query(f'{target_rule}{{priority=~"$priority"}}', "target {{priority}}"),
            ),
            width=8,
            dashed="^target ",
        )

    first_reply = RowSpec("First response time vs SLA target", (
        *per_priority(frt, "first_reply"),
        p90_vs_target(frt, "crm:sla_first_reply_target_seconds:const"),
        quantile_panel(frt, "channel"),
        quantile_panel(frt, "team"),
    ))
    replies = RowSpec("Reply and handle time", (
        quantile_panel("reply_time_seconds", with_mean=True),
        quantile_panel("reply_time_seconds", "priority"),
        kpi_panel("average_handle_time_seconds", "channel", series="mean", width=8,
                  title="Average handle time by channel"),
    ))
    resolution = RowSpec("Resolution time vs SLA target", (
        *per_priority(res, "resolution"),
        p90_vs_target(res, "crm:sla_resolution_target_seconds:const"),
        quantile_panel(res, "channel"),
        quantile_panel(res, "team"),
    ))
    sla_events = PanelSpec(
        title="SLA events per hour by SLA and state",
        description=describe("sla_breaches", "sla_at_risk", note=(
            "SLA events per hour from the counter crm_sla_events_total (summed over workers), by "
            "SLA metric (first_reply, resolution) and state (at_risk, breached, met), for the "
            "selected priorities. Counted when event time passes the due time, not when the late "
            "reply arrives.")),
        unit="short",
        queries=(Query(
            rate_expr("crm_sla_events_total", ("metric", "state"), 'priority=~"$priority"') + " * 3600",
            "{{metric}} {{state}}"),),
        width=8,
        step=False,
    )
    sla = RowSpec("SLA attainment, breaches and at-risk", (
        kpi_panel("sla_first_reply_hit_rate", "priority", width=8,
                  thresholds=SLA_HIT_THRESHOLDS, threshold_lines=True),
        kpi_panel("sla_resolution_hit_rate", "priority", width=8,
                  thresholds=SLA_HIT_THRESHOLDS, threshold_lines=True),
        sla_events,
        kpi_panel("sla_breaches", "priority", width=8),
        kpi_panel("sla_at_risk", "priority", width=8),
        kpi_panel("tickets_in_breach", "priority", width=8,
                  thresholds=IN_BREACH_THRESHOLDS, threshold_lines=True),
    ))
    counts = ("tickets_created", "tickets_solved", "tickets_reopened", "tickets_escalated")
    volume = RowSpec("Backlog and ticket volume", (
        kpi_panel("open_tickets", "priority", width=8),
        kpi_panel("open_tickets", "team", width=8),
        PanelSpec(
            title="Tickets created, solved, reopened, escalated",
            description=describe(*counts, note=f"Overall counts per window. {LATEST_WINDOW_NOTE}"),
            unit="short",
            queries=tuple(Query(kpi_expr(name), kpi_title(KPI_BY_NAME[name])) for name in counts),
            width=8,
        ),
        kpi_panel("tickets_created", "channel"),
        kpi_panel("tickets_solved", "team"),
    ))
    quality = RowSpec("Resolution, first-contact resolution, reopen and escalation rates", tuple(
        kpi_panel(name, "priority", width=6)
        for name in ("resolution_rate", "first_contact_resolution_rate", "reopen_rate", "escalation_rate")
    ))
    return DashboardSpec(
        uid="crm-support-operations",
        filename="support-operations.json",
        title="CRM / Support operations",
        description="Response and resolution times against SLA targets, SLA attainment, breaches, backlog and resolution quality.",
        variables=("datasource", "window", "priority", "channel", "team"),
        rows=(now, first_reply, replies, resolution, sla, volume, quality),
    )


def nps_band(dims: tuple[str, ...], title: str, repeat: str | None = None, width: int = 12) -> PanelSpec:
    value = kpi_expr("nps", dims)
    margin = kpi_expr("nps", dims, series="margin_of_error")
    on = f"on ({', '.join(dims)}) " if dims else ""
    upper, lower = "upper (95%)", "lower (95%)"
    return PanelSpec(
        title=title,
        description=describe("nps", note=(
            "NPS with its 95% margin of error as a band (nps ± crm_nps_margin_of_error). A score "
            "below min_sample responses is suppressed and has no line, only its response count. "
            f"{LATEST_WINDOW_NOTE}")),
        unit="none",
        queries=(
            Query(value, "NPS"),
            Query(f"{value} + {on}{margin}", upper),
            Query(f"{value} - {on}{margin}", lower),
        ),
        width=width,
        thresholds=NPS_THRESHOLDS,
        min=-100,
        max=100,
        band=(upper, lower),
        repeat=repeat,
    )


def survey_scores(survey: str, width: int = 8) -> PanelSpec:
    return PanelSpec(
        title=f"{survey.upper()} answers by score",
        description=describe(survey, note=(
            f"{survey.upper()} answers per score in the last window-sized range, from the counter "
            "crm_survey_responses_total (all products, summed over workers).")),
        unit="short",
        queries=(Query(
            f'sum by (score) (increase(crm_survey_responses_total{{{JOB},survey="{survey}"}}[$window]))',
            "{{score}}", instant=True),),
        viz="bargauge",
        width=width,
    )


def customer_experience() -> DashboardSpec:
    now = RowSpec("Now (overall, latest closed window)", (
        stat_panel("nps", thresholds=NPS_THRESHOLDS),
        stat_panel("nps", series="responses"),
        stat_panel("csat"),
        stat_panel("csat", series="responses"),
        stat_panel("ces"),
        stat_panel("ces", series="responses"),
    ))
    nps = RowSpec("NPS", (
        nps_band((), "NPS ± margin of error, all products"),
        kpi_panel("nps", "product", thresholds=NPS_THRESHOLDS, threshold_lines=True),
        kpi_panel("nps", "product", series="responses", width=12),
        survey_scores("nps", width=12),
        nps_band(("product",), "NPS ± margin of error: $product", repeat="product", width=8),
    ))
    csat_ces = RowSpec("CSAT and CES", (
        kpi_panel("csat", "product"),
        kpi_panel("csat", "product", series="responses"),
        kpi_panel("ces", "product"),
        kpi_panel("ces", "product", series="responses"),
        survey_scores("csat", width=12),
        survey_scores("ces", width=12),
    ))
    engagement = RowSpec("Engagement", (
        kpi_panel("active_customers"),
        kpi_panel("interactions_per_customer"),
    ))
    return DashboardSpec(
        uid="crm-customer-experience",
        filename="customer-experience.json",
        title="CRM / Customer experience",
        description="NPS with margin of error, CSAT and CES with their response counts, per product; engagement.",
        variables=("datasource", "window", "product"),
        rows=(now, nps, csat_ces, engagement),
    )


def revenue_and_churn() -> DashboardSpec:
    now = RowSpec("Now (latest closed window)", (
        stat_panel("revenue_minor", dims=("currency",)),
        stat_panel("mrr_minor", dims=("currency",)),
        stat_panel("active_subscribers"),
        stat_panel("new_customers"),
        stat_panel("churn_rate"),
        stat_panel("retention_rate"),
    ))
    revenue = RowSpec("Revenue and orders", (
        kpi_panel("revenue_minor", "currency", width=8, title="Revenue by currency"),
        kpi_panel("revenue_minor", ("currency", "product"), width=8),
        kpi_panel("revenue_minor", ("currency", "kind"), width=8),
        kpi_panel("orders", "currency", width=8, title="Orders by currency"),
        kpi_panel("orders", ("currency", "product"), width=8),
        kpi_panel("average_order_value_minor", "currency", width=8, title="Average order value by currency"),
        kpi_panel("upsell_cross_sell_rate", width=8),
        kpi_panel("new_customers", width=8),
        kpi_panel("cac_minor", "currency", width=8, title="CAC by currency"),
    ))
    subscriptions = RowSpec("Subscriptions, churn and lifetime value", (
        kpi_panel("active_subscribers", width=8),
        kpi_panel("mrr_minor", "currency", width=8, title="MRR by currency"),
        kpi_panel("clv_minor", "currency", width=8, title="CLV by currency"),
        PanelSpec(
            title="Churn and retention rates",
            description=describe("churn_rate", "retention_rate", note=LATEST_WINDOW_NOTE),
            unit="percentunit",
            queries=(Query(kpi_expr("churn_rate"), "churn rate"),
                     Query(kpi_expr("retention_rate"), "retention rate")),
            width=24,
            min=0,
            max=1,
        ),
    ))
    funnel = RowSpec("Sales funnel", (
        kpi_panel("leads_created", "channel", width=8),
        kpi_panel("leads_created", "campaign", width=8),
        kpi_panel("leads_converted", "channel", width=8),
        kpi_panel("leads_lost", "channel", width=8),
        kpi_panel("lead_conversion_rate", "channel", width=8),
        kpi_panel("lead_conversion_rate", "campaign", width=8),
        quantile_panel("lead_response_time_seconds", width=12, with_mean=True),
        quantile_panel("sales_cycle_seconds", width=12, with_mean=True),
        kpi_panel("cost_per_lead_minor", "currency", width=12, title="Cost per lead by currency"),
        kpi_panel("revenue_per_lead_minor", "currency", width=12, title="Revenue per lead by currency"),
    ))
    health = RowSpec("Customer health and churn signals", (
        quantile_panel("customer_health_score", width=12, with_mean=True,
                       title="Customer health score distribution (p50/p90/p99, mean)"),
        kpi_panel("customer_health_score", series="samples", title="Customers scored"),
        kpi_panel("churn_signals", "signal"),
        PanelSpec(
            title="Churn signals raised in the last window-sized range",
            description=describe("churn_signals", note=(
                "Churn signals per signal in the last window-sized range, from the counter "
                "crm_churn_signals_total (summed over workers).")),
            unit="short",
            queries=(Query(f"sum by (signal) (increase(crm_churn_signals_total{{{JOB}}}[$window]))",
                           "{{signal}}", instant=True),),
            viz="bargauge",
        ),
    ))
    return DashboardSpec(
        uid="crm-revenue-churn",
        filename="revenue-churn.json",
        title="CRM / Revenue and churn",
        description="Revenue, orders, AOV, upsell, acquisition cost, subscribers, MRR, churn and retention, CLV, "
                    "sales funnel (leads, conversion, response time, sales cycle, cost and revenue per lead), "
                    "customer health and churn signals.",
        variables=("datasource", "window", "product", "channel"),
        rows=(now, revenue, subscriptions, funnel, health),
        variable_queries={"product": f"label_values(crm_revenue_minor{{{JOB}}}, product)",
                          "channel": f"label_values(crm_leads_created{{{JOB}}}, channel)"},
    )


def pipeline_health() -> DashboardSpec:
    def panel(title: str, description: str, unit: str, queries: tuple[Query, ...], **options) -> PanelSpec:
        return PanelSpec(title=title, description=description, unit=unit, queries=queries, step=False, **options)

    def big_number(title: str, description: str, unit: str, expr: str, thresholds: Thresholds = NEUTRAL) -> PanelSpec:
        return panel(title, description, unit, (Query(expr, title),), viz="stat", width=4, height=4,
                     thresholds=thresholds)

    processed = rate_expr("crm_events_processed_total", ("topic",), interval="1m")
    lag_by_topic = f"sum by (topic) (max by (topic, partition) (crm_consumer_lag{{{JOB}}}))"
    now = RowSpec("Now", (
        big_number("Workers up", "Worker /metrics endpoints Prometheus scrapes successfully (up).", "short",
             f"sum(up{{{JOB}}})", WORKERS_THRESHOLDS),
        big_number("Events in per second", "Valid input events per second, all topics (crm_events_processed_total, 1m rate).",
             "short", f"sum(rate(crm_events_processed_total{{{JOB}}}[1m]))"),
        big_number("Consumer lag", "Records between the consumer group's position and the log end, all input "
             "topics (crm_consumer_lag; max per partition, so a rebalance does not double it).",
             "short", f"sum({lag_by_topic})", LAG_THRESHOLDS),
        big_number("Rejected share", "Share of input messages sent to the dead-letter topic over 5 minutes "
             "(recording rule crm:events_rejected:ratio_rate5m; the alert fires above 1%).",
             "percentunit", "crm:events_rejected:ratio_rate5m", REJECT_THRESHOLDS),
        big_number("Watermark lag", "Worst wall clock minus event-time watermark over stages and partitions "
             "(crm_watermark_lag_seconds). Large while replaying history or a simulated period.",
             "s", f"max(crm_watermark_lag_seconds{{{JOB}}})"),
        big_number("Stage-1 partitions owned", "Input partitions owned by the workers of the group "
             "(crm_owned_partitions, stage 1): the ceiling of parallelism.",
             "short", f'sum(crm_owned_partitions{{{JOB},stage="stage1"}})'),
    ))
    throughput = RowSpec("Throughput and data quality", (
        panel("Events processed per second by topic",
              "Valid events taken from each input topic per second (crm_events_processed_total, 1m rate, summed over workers).",
              "short", (Query(processed, "{{topic}}"),)),
        panel("KPI records published per second",
              "Records written to the KPI topic per second (crm_kpi_records_published_total): final=true "
              "for closed windows and revisions, final=false for provisional open-window values.",
              "short", (Query(rate_expr("crm_kpi_records_published_total", ("final",)), "final={{final}}"),)),
        panel("Rejected messages per second by reason",
              "Messages sent to the dead-letter topic per second by rejection reason (crm_events_rejected_total).",
              "short", (Query(rate_expr("crm_events_rejected_total", ("reason",)), "{{reason}}"),), width=8),
        panel("Rejected share of input",
              "rejected / (valid + rejected) over 5 minutes (recording rule crm:events_rejected:ratio_rate5m). "
              "The CrmKpiDeadLetterRateHigh alert fires above 1% (dashed line).",
              "percentunit", (Query("crm:events_rejected:ratio_rate5m", "rejected share"),), width=8,
              thresholds=REJECT_THRESHOLDS, threshold_lines=True),
        panel("Duplicates, late and dropped-late events per second",
              "Events dropped as duplicates (crm_events_duplicate_total), applied behind the watermark as "
              "revisions (crm_events_late_total) and dropped beyond allowed lateness (crm_events_dropped_late_total).",
              "short", (
                  Query(rate_expr("crm_events_duplicate_total", ()), "duplicates"),
                  Query(rate_expr("crm_events_late_total", ()), "late (revisions)"),
                  Query(rate_expr("crm_events_dropped_late_total", ()), "dropped late"),
              ), width=8),
    ))
    lag = RowSpec("Lag and event time", (
        panel("Consumer lag by topic",
              "Records between the consumer position and the log end per topic (crm_consumer_lag, max per "
              "partition before summing). The CrmKpiConsumerLagHigh alert fires above 10000 (dashed line).",
              "short", (Query(lag_by_topic, "{{topic}}"),), width=8,
              thresholds=LAG_THRESHOLDS, threshold_lines=True),
        panel("Watermark lag by stage",
              "Wall clock minus the event-time watermark, worst partition per stage (crm_watermark_lag_seconds). "
              "Windows close at watermark + grace, so this is how late KPIs are.",
              "s", (Query(f"max by (stage) (crm_watermark_lag_seconds{{{JOB}}})", "{{stage}}"),), width=8),
        panel("Last event age by partition",
              "Seconds since each input partition last delivered an event (crm_last_event_age_seconds). "
              "An idle partition stops holding the watermark back after the idle timeout.",
              "s", (Query(f"max by (partition) (crm_last_event_age_seconds{{{JOB}}})", "partition {{partition}}"),),
              width=8),
    ))
    batches = RowSpec("Batches and workers", (
        panel("Batch size p50/p99 by stage",
              "Events (stage 1) or partial messages (stage 2) per batch, from the crm_batch_size histogram.",
              "short", tuple(Query(histogram_quantile_expr(q, "crm_batch_size"), f"{label} {{{{stage}}}}")
                             for q, label in (("0.5", "p50"), ("0.99", "p99"))), width=8),
        panel("Commit time p50/p99 by stage",
              "Time to commit one Kafka transaction (encode the results and changed state of the batches "
              "since the last commit, send, await the broker), from the crm_batch_processing_seconds histogram.",
              "s", tuple(Query(histogram_quantile_expr(q, "crm_batch_processing_seconds"), f"{label} {{{{stage}}}}")
                         for q, label in (("0.5", "p50"), ("0.99", "p99"))), width=8),
        panel("Partitions owned by worker and stage",
              "Partitions each worker owns per stage (crm_owned_partitions). Scale-out adds workers to the "
              "consumer group; the partition count bounds the useful number of workers.",
              "short", (Query(f"sum by (instance, stage) (crm_owned_partitions{{{JOB}}})", "{{instance}} {{stage}}"),),
              width=8),
        panel("Workers up",
              "1 when Prometheus scraped the worker's /metrics successfully (up). CrmKpiWorkerDown pages after 5m at 0.",
              "short", (Query(f"up{{{JOB}}}", "{{instance}}"),), min=0, max=1,
              thresholds=WORKERS_THRESHOLDS, width=8),
        panel("Consumer lag by worker",
              "Lag of the partitions each worker owns (recording rule instance:crm_consumer_lag:sum); "
              "lag that grows on one worker while it processes nothing is the stalled-pipeline alert.",
              "short", (Query("instance:crm_consumer_lag:sum", "{{instance}}"),), width=8),
        panel("Event-loop stalls by worker",
              "Share of the time each worker's event loop was held for 0.25 s or more by one piece of work "
              "(crm_event_loop_stall_seconds): input, scrapes and gauges wait meanwhile. The worker's log "
              "names where each stall was spent.",
              "percentunit", (Query(f"sum by (instance) (rate(crm_event_loop_stall_seconds_sum{{{JOB}}}"
                                    "[$__rate_interval]))", "{{instance}}"),), min=0, width=8),
        panel("CPU and garbage collection by worker",
              "CPU each worker uses (process_cpu_seconds_total; 100 % is one core, about the most one "
              "Python worker process can use) and the part of the time spent in CPython's garbage collector "
              "(crm_gc_pause_seconds_total), during which the whole worker waits.",
              "percentunit", (
                  Query(f"sum by (instance) (rate(process_cpu_seconds_total{{{JOB}}}[$__rate_interval]))",
                        "{{instance}} CPU"),
                  Query(f"sum by (instance) (rate(crm_gc_pause_seconds_total{{{JOB}}}[$__rate_interval]))",
                        "{{instance}} in gc"),
              ), min=0, width=16),
        panel("Task restore time by stage (6 h)",
              "Time to open a task - restore its state from the changelog and seek its input - after an "
              "assignment or a failed batch (crm_task_restore_seconds), mean and p99 over the last 6 hours: "
              "how long a restarted or rebalanced worker holds its partitions' results back. The group's "
              "session timeout is 45 s; empty when no task was opened in the 6 hours.",
              "s", (
                  Query(f"sum by (stage) (increase(crm_task_restore_seconds_sum{{{JOB}}}[6h])) / "
                        f"sum by (stage) (increase(crm_task_restore_seconds_count{{{JOB}}}[6h]))", "mean {{stage}}"),
                  Query(f"histogram_quantile(0.99, sum by (stage, le) "
                        f"(increase(crm_task_restore_seconds_bucket{{{JOB}}}[6h])))", "p99 {{stage}}"),
              ), min=0, width=8),
    ))
    return DashboardSpec(
        uid="crm-pipeline-health",
        filename="pipeline-health.json",
        title="CRM / Pipeline health",
        description="Throughput, consumer lag, rejects, duplicates and late events, event-time lag, batches, partitions and workers.",
        variables=("datasource",),
        rows=(now, throughput, lag, batches),
    )


DASHBOARDS = (support_operations, customer_experience, revenue_and_churn, pipeline_health)


# --- rendering with grafana-foundation-sdk ------------------------------------------------------


def _thresholds(steps: Thresholds) -> dashboard_builders.ThresholdsConfig:
    return dashboard_builders.ThresholdsConfig().mode(dashboard_models.ThresholdsMode.ABSOLUTE).steps(
        [dashboard_models.Threshold(value=value, color=color) for value, color in steps]
    )


def _target(query: Query, ref_id: str) -> prometheus.Dataquery:
    target = (
        prometheus.Dataquery()
        .expr(query.expr)
        .legend_format(query.legend)
        .ref_id(ref_id)
        .datasource(DATASOURCE_REF)
    )
    return target.instant() if query.instant else target.range()


def render_panel(spec: PanelSpec):
    """An SDK panel builder for a spec."""
    if spec.viz == "stat":
        builder = (
            stat.Panel()
            .graph_mode(common_models.BigValueGraphMode.AREA)
            .color_mode(common_models.BigValueColorMode.VALUE if spec.thresholds != NEUTRAL
                        else common_models.BigValueColorMode.NONE)
            .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        )
    elif spec.viz == "bargauge":
        builder = (
            bargauge.Panel()
            .orientation(common_models.VizOrientation.HORIZONTAL)
            .display_mode(common_models.BarGaugeDisplayMode.BASIC)
            .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        )
    else:
        builder = (
            timeseries.Panel()
            .line_interpolation(common_models.LineInterpolation.STEP_AFTER if spec.step
                                else common_models.LineInterpolation.LINEAR)
            .fill_opacity(10)
            .show_points(common_models.VisibilityMode.NEVER)
            .legend(common_builders.VizLegendOptions()
                    .display_mode(common_models.LegendDisplayMode.LIST)
                    .placement(common_models.LegendPlacement.BOTTOM)
                    .show_legend(True))
            .tooltip(common_builders.VizTooltipOptions()
                     .mode(common_models.TooltipDisplayMode.MULTI)
                     .sort(common_models.SortOrder.DESCENDING))
        )
        if spec.threshold_lines:
            builder = builder.thresholds_style(
                common_builders.GraphThresholdsStyleConfig().mode(common_models.GraphThresholdsStyleMode.DASHED)
            )
        if spec.dashed:
            builder = builder.override_by_regexp(spec.dashed, [
                dashboard_models.DynamicConfigValue(id_val="custom.lineStyle", value={"dash": [10, 10], "fill": "dash"}),
                dashboard_models.DynamicConfigValue(id_val="custom.fillOpacity", value=0),
            ])
        if spec.band:
            upper, lower = spec.band
            builder = builder.override_by_name(upper, [
                dashboard_models.DynamicConfigValue(id_val="custom.fillBelowTo", value=lower),
                dashboard_models.DynamicConfigValue(id_val="custom.lineWidth", value=0),
                dashboard_models.DynamicConfigValue(id_val="custom.fillOpacity", value=20),
            ]).override_by_name(lower, [
                dashboard_models.DynamicConfigValue(id_val="custom.lineWidth", value=0),
                dashboard_models.DynamicConfigValue(id_val="custom.fillOpacity", value=0),
            ])
    builder = (
        builder.title(spec.title)
        .description(spec.description)
        .datasource(DATASOURCE_REF)
        .unit(spec.unit)
        .thresholds(_thresholds(spec.thresholds))
        .span(spec.width)
        .height(spec.height)
    )
    if spec.min is not None:
        builder = builder.min(spec.min)
    if spec.max is not None:
        builder = builder.max(spec.max)
    if spec.decimals is not None:
        builder = builder.decimals(spec.decimals)
    if spec.repeat:
        builder = builder.repeat(spec.repeat).repeat_direction("h").max_per_row(3)
    for index, query in enumerate(spec.queries):
        builder = builder.with_target(_target(query, chr(ord("A") + index)))
    return builder


def _variables(spec: DashboardSpec) -> Iterator:
    for name in spec.variables:
        if name == "datasource":
            yield (
                dashboard_builders.DatasourceVariable("datasource")
                .label("Data source")
                .type("prometheus")
                .current(dashboard_models.VariableOption(selected=True, text="Prometheus", value=DATASOURCE_UID))
            )
        elif name == "window":
            options = [
                dashboard_models.VariableOption(selected=size == DEFAULT_WINDOW, text=size, value=size)
                for size in WINDOWS
            ]
            yield (
                dashboard_builders.CustomVariable("window")
                .label("Window")
                .description("KPI window size: gauges show the latest closed window of this size")
                .values(",".join(WINDOWS))
                .current(dashboard_models.VariableOption(selected=True, text=DEFAULT_WINDOW, value=DEFAULT_WINDOW))
                .options(options)
            )
        else:
            query = spec.variable_queries.get(name, DIMENSION_VARIABLES[name])
            yield (
                dashboard_builders.QueryVariable(name)
                .label(name.capitalize())
                .query(query)
                .datasource(DATASOURCE_REF)
                .refresh(dashboard_models.VariableRefresh.ON_TIME_RANGE_CHANGED)
                .sort(dashboard_models.VariableSort.ALPHABETICAL_ASC)
                .multi(True)
                .include_all(True)
                .all_value(ALL)
                .current(dashboard_models.VariableOption(selected=True, text=["All"], value=["$__all"]))
            )


def build(spec: DashboardSpec) -> dict:
    """The dashboard as a JSON-ready dict (panel ids numbered in order)."""
    builder = (
        dashboard_builders.Dashboard(spec.title)
        .uid(spec.uid)
        .description(spec.description)
        .tags([TAG])
        .editable()
        .timezone("utc")  # windows are aligned to the UTC epoch
        .time("now-24h", "now")
        .refresh("1m")
        .tooltip(dashboard_models.DashboardCursorSync.CROSSHAIR)
        .link(
            dashboard_builders.DashboardLink("CRM dashboards")
            .type(dashboard_models.DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )
    builder = builder.annotation(
        dashboard_builders.AnnotationQuery()
        .name("Annotations & Alerts")
        .datasource(dashboard_models.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
        .enable(True)
        .hide(True)
        .icon_color("rgba(0, 211, 255, 1)")
        .type("dashboard")
        .built_in(1)
    ).annotation(
        # the project's alerts (deploy/prometheus/rules/alerts.yml) while they fire
        dashboard_builders.AnnotationQuery()
        .name("CRM alerts firing")
        .datasource(DATASOURCE_REF)
        .enable(True)
        .icon_color("red")
        .expr(ALERTS_ANNOTATION)
    )
    for variable in _variables(spec):
        builder = builder.with_variable(variable)
    for row in spec.rows:
        builder = builder.with_row(dashboard_builders.Row(row.title))
        for panel in row.panels:
            builder = builder.with_panel(render_panel(panel))
    data = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    for number, panel in enumerate(data["panels"], start=1):
        panel["id"] = number
    return data


def render(data: dict) -> str:
    """Deterministic JSON text: sorted keys, two-space indent, trailing newline."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def generate() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {spec.filename: render(build(spec)) for spec in (make() for make in DASHBOARDS)}


# --- queries for tests -----------------------------------------------------------------------------


def iter_panels(dashboard_json: Mapping) -> Iterator[Mapping]:
    """Every non-row panel, including panels nested in collapsed rows."""
    for panel in dashboard_json.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def panel_queries(dashboard_json: Mapping) -> list[tuple[str, str, str]]:
    """``(dashboard title, panel title, expr)`` for every query of every panel."""
    return [
        (dashboard_json["title"], panel["title"], target["expr"])
        for panel in iter_panels(dashboard_json)
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)")


def substitute(expr: str, values: Mapping[str, str] | None = None) -> str:
    """Replace Grafana template variables (``$window``, ``${priority}``, ``$__rate_interval``)
    by concrete values: :data:`DEFAULT_VALUES` updated with ``values``. ``.*`` stands for
    "All". Raises ``KeyError`` for a variable without a value."""
    merged = {**DEFAULT_VALUES, **(values or {})}

    def replace(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name not in merged:
            raise KeyError(f"no value for template variable ${name} in: {expr}")
        return merged[name]

    return _VARIABLE.sub(replace, expr)


def concrete_queries(dashboard_json: Mapping, values: Mapping[str, str] | None = None) -> list[tuple[str, str, str]]:
    """:func:`panel_queries` with the variables substituted: PromQL ready to run."""
    return [(dash, title, substitute(expr, values)) for dash, title, expr in panel_queries(dashboard_json)]


def load_committed(directory: Path = DASHBOARDS_DIR) -> dict[str, dict]:
    """File name -> parsed JSON of the committed dashboards."""
    return {path.name: json.loads(path.read_text()) for path in sorted(directory.glob("*.json"))}


# --- command line --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grafana.generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DASHBOARDS_DIR, help="output folder (default: grafana/dashboards)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if the files differ")
    args = parser.parse_args(argv)
    files = generate()
    stale = sorted(
        name for name, text in files.items()
        if not (args.out / name).is_file() or (args.out / name).read_text() != text
    )
    extra = sorted(path.name for path in args.out.glob("*.json") if path.name not in files) if args.out.is_dir() else []
    if args.check:
        for name in stale:
            print(f"stale: {args.out / name} (run: python -m grafana.generate)", file=sys.stderr)
        for name in extra:
            print(f"not generated: {args.out / name}", file=sys.stderr)
        return 1 if stale or extra else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.out / name).write_text(text)
    for name in files:
        panels = sum(1 for _ in iter_panels(json.loads(files[name])))
        print(f"{args.out / name}: {panels} panels{' (updated)' if name in stale else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
