"""KPI derivation: one window's merged base aggregates -> the published KPI values.

Every formula of catalogue §3 (3.1-3.7) lives here, and only here; ``registry.KPIS`` says in
words what each one computes. Values are computed from integer counts and sums at
the end (never by averaging averages), so any merge order gives identical results.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from streams.core.aggregates import Count, Distinct, Sketch, Sum
from streams.core.records import Dims

# base -> dims -> merged aggregate, for one window
WindowAggs = dict[str, dict[Dims, Any]]  # base -> dims -> Aggregate
# (kpi, dims, value, n, stats)
Derived = tuple[str, Dims, float | int | None, int, dict[str, object]]
LevelAt = Callable[[str, Dims], int]  # level of a base at the window start / end

DISTRIBUTIONS = (
    "first_response_time_seconds",
    "reply_time_seconds",
    "average_handle_time_seconds",
    "resolution_time_seconds",
    "customer_health_score",
    "lead_response_time_seconds",
    "sales_cycle_seconds",
)
COUNTS = (
    "tickets_created",
    "tickets_solved",
    "tickets_reopened",
    "tickets_escalated",
    "sla_at_risk",
    "orders",
    "new_customers",
    "churn_signals",
    "leads_created",
    "leads_converted",
    "leads_lost",
)
LEVELS = ("open_tickets", "tickets_in_breach", "active_subscribers", "mrr_minor")
# ratio KPI -> (numerator base, denominator base(s) summed)
RATIOS: dict[str, tuple[str, tuple[str, ...]]] = {
    "resolution_rate": ("tickets_solved", ("tickets_created",)),
    "first_contact_resolution_rate": ("tickets_solved_first_contact", ("tickets_solved",)),
    "reopen_rate": ("tickets_reopened", ("tickets_solved",)),
    "escalation_rate": ("tickets_escalated", ("tickets_created",)),
    "sla_first_reply_hit_rate": ("sla_first_reply_met", ("sla_first_reply_met", "sla_first_reply_breached")),
    "sla_resolution_hit_rate": ("sla_resolution_met", ("sla_resolution_met", "sla_resolution_breached")),
    "lead_conversion_rate": ("leads_converted", ("leads_created",)),
}
# bases whose presence in a window means the sales funnel was active (§3.7)
FUNNEL_ACTIVITY = ("leads_created", "leads_converted", "leads_lost", "lead_response_time_seconds")


def _n(aggs: WindowAggs, base: str, dims: Dims) -> int:
    agg = aggs.get(base, {}).get(dims)
    if agg is None:
        return 0
    if isinstance(agg, Count):
        return agg.n
    if isinstance(agg, Sum):
        return agg.total
    if isinstance(agg, Distinct):
        return agg.count
    raise TypeError(f"{base} is not a count")


def _dims(aggs: WindowAggs, *bases: str) -> list[Dims]:
    found: set[Dims] = set()
    for base in bases:
        found.update(aggs.get(base, {}))
    return sorted(found)


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def distribution_stats(sketch: Sketch) -> dict[str, object]:
    p50, p90, p99 = sketch.quantiles((0.5, 0.9, 0.99))
    return {"mean": sketch.mean, "p50": p50, "p90": p90, "p99": p99, "min": sketch.min, "max": sketch.max}


def derive(aggs: WindowAggs, level_start: LevelAt, level_end: LevelAt, min_sample: int) -> list[Derived]:
    """All KPI values of one window (every family present in ``aggs``)."""
    out: list[Derived] = []
    for name in DISTRIBUTIONS:
        for dims, sketch in sorted(aggs.get(name, {}).items()):
            if sketch.count:
                out.append((name, dims, sketch.mean, sketch.count, distribution_stats(sketch)))
    for name in COUNTS:
        for dims in _dims(aggs, name):
            n = _n(aggs, name, dims)
            out.append((name, dims, n, n, {}))
    for dims in _dims(aggs, "sla_first_reply_breached", "sla_resolution_breached"):
        first = _n(aggs, "sla_first_reply_breached", dims)
        resolution = _n(aggs, "sla_resolution_breached", dims)
        out.append(("sla_breaches", dims, first + resolution, first + resolution,
                    {"first_reply": first, "resolution": resolution}))
    for name, (num_base, den_bases) in RATIOS.items():
        for dims in _dims(aggs, num_base, *den_bases):
            numerator = _n(aggs, num_base, dims)
            denominator = sum(_n(aggs, base, dims) for base in den_bases)
            stats: dict[str, object] = {num_base: numerator, **{base: _n(aggs, base, dims) for base in den_bases}}
            out.append((name, dims, _ratio(numerator, denominator), denominator, stats))
    for name in LEVELS:
        for dims in _dims(aggs, name):
            value = level_end(name, dims)
            out.append((name, dims, value, value, {"change": aggs[name][dims].delta}))
    out.extend(_satisfaction(aggs, min_sample))
    out.extend(_commercial(aggs, level_start, level_end))
    out.extend(_funnel(aggs))
    out.extend(_engagement(aggs))
    return out


def _satisfaction(aggs: WindowAggs, min_sample: int) -> Iterable[Derived]:
    for kind in ("nps", "csat", "ces"):
        for dims, survey in sorted(aggs.get(kind, {}).items()):
            result = survey.result(min_sample)
            stats = {key: val for key, val in result.items() if key not in ("value", "n")}
            yield (kind, dims, result["value"], result["n"], stats)


def _commercial(aggs: WindowAggs, level_start: LevelAt, level_end: LevelAt) -> Iterable[Derived]:
    for dims in _dims(aggs, "purchases_minor", "refunds_minor"):
        purchases = _n(aggs, "purchases_minor", dims)
        refunds = _n(aggs, "refunds_minor", dims)
        n = _n(aggs, "orders", dims) + _n(aggs, "refunds", dims)
        yield ("revenue_minor", dims, purchases - refunds, n,
               {"purchases_minor": purchases, "refunds_minor": refunds})
    for dims in _dims(aggs, "orders"):
        orders = _n(aggs, "orders", dims)
        yield ("average_order_value_minor", dims, _ratio(_n(aggs, "purchases_minor", dims), orders), orders,
               {"purchases_minor": _n(aggs, "purchases_minor", dims), "orders": orders})
    if _dims(aggs, "purchasing_customers"):
        buyers = _n(aggs, "purchasing_customers", ())
        expanding = _n(aggs, "expanding_customers", ())
        yield ("upsell_cross_sell_rate", (), _ratio(expanding, buyers), buyers,
               {"expanding_customers": expanding, "purchasing_customers": buyers})
    new_customers = _n(aggs, "new_customers", ())
    for dims in _dims(aggs, "marketing_spend_minor"):
        spend = _n(aggs, "marketing_spend_minor", dims)
        yield ("cac_minor", dims, _ratio(spend, new_customers), new_customers,
               {"marketing_spend_minor": spend, "new_customers": new_customers})
    subscription_activity = _dims(aggs, "active_subscribers", "subscribers_gained", "subscribers_churned")
    if subscription_activity:
        at_start = level_start("active_subscribers", ())
        at_end = level_end("active_subscribers", ())
        gained = _n(aggs, "subscribers_gained", ())
        churned = _n(aggs, "subscribers_churned", ())
        churn = _ratio(churned, at_start)
        yield ("churn_rate", (), churn, at_start,
               {"subscribers_churned": churned, "subscribers_at_start": at_start})
        yield ("retention_rate", (), _ratio(at_end - gained, at_start), at_start,
               {"subscribers_at_start": at_start, "subscribers_at_end": at_end, "subscribers_gained": gained})
        for dims in _dims(aggs, "purchases_minor", "refunds_minor"):
            if len(dims) != 1:
                continue  # per currency only
            revenue = _n(aggs, "purchases_minor", dims) - _n(aggs, "refunds_minor", dims)
            per_subscriber = _ratio(revenue, at_start)
            clv = per_subscriber / churn if per_subscriber is not None and churn else None
            yield ("clv_minor", dims, clv, at_start,
                   {"revenue_minor": revenue, "subscribers_at_start": at_start, "churn_rate": churn,
                    "estimate": True})


def _funnel(aggs: WindowAggs) -> Iterable[Derived]:
    """Cost and revenue per lead (§3.7): money per currency / leads created overall.

    Published per currency with spend (resp. revenue) in the window, and only for
    windows with funnel activity: a deployment without lead events gets no per-lead
    records (rather than a null per currency and window); the value is ``None`` when
    the window has conversions or losses but no new lead.
    """
    if not _dims(aggs, *FUNNEL_ACTIVITY):
        return
    leads = _n(aggs, "leads_created", ())
    for dims in _dims(aggs, "marketing_spend_minor"):
        spend = _n(aggs, "marketing_spend_minor", dims)
        yield ("cost_per_lead_minor", dims, _ratio(spend, leads), leads,
               {"marketing_spend_minor": spend, "leads_created": leads})
    for dims in _dims(aggs, "purchases_minor", "refunds_minor"):
        if len(dims) != 1:
            continue  # per currency only
        revenue = _n(aggs, "purchases_minor", dims) - _n(aggs, "refunds_minor", dims)
        yield ("revenue_per_lead_minor", dims, _ratio(revenue, leads), leads,
               {"revenue_minor": revenue, "leads_created": leads})


def _engagement(aggs: WindowAggs) -> Iterable[Derived]:
    if _dims(aggs, "active_customers"):
        active = _n(aggs, "active_customers", ())
        yield ("active_customers", (), active, active, {"exact": True})
        interactions = _n(aggs, "interactions", ())
        yield ("interactions_per_customer", (), _ratio(interactions, active), active,
               {"interactions": interactions, "active_customers": active})
