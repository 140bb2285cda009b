"""The KPI registry: one entry per published KPI (catalogue §3.8).

Prometheus HELP text, ``docs/kpis.md`` (:func:`render_markdown`), ``crm-kpi kpis``,
the dashboards and the KPI records all read this table, so a formula is written down
exactly once. ``BASES`` lists the internal mergeable aggregates that stage 1 folds
events into; every published KPI is derived from bases of its own *family* (the family
is also the routing key of partials between stage 1 and stage 2, so a KPI's inputs
always meet on one stage-2 task).

``tests/unit/test_kpi_registry.py`` fails when a KPI is computed without an entry
here, when an entry is never computed, when a Prometheus family's HELP text is not the
entry's, or when the committed ``docs/kpis.md`` differs from :func:`render_markdown`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Kind = Literal["distribution", "count", "sum", "ratio", "score", "level", "distinct", "quotient"]
Family = Literal["support", "sla", "satisfaction", "commercial", "engagement", "health"]
Unit = Literal["seconds", "count", "ratio", "score", "minor_units", "customers", "per_customer"]

DimSet = tuple[str, ...]
TICKET_DIMS: Final[tuple[DimSet, ...]] = ((), ("priority",), ("channel",), ("team",))
PRODUCT_DIMS: Final[tuple[DimSet, ...]] = ((), ("product",))
MONEY_DIMS: Final[tuple[DimSet, ...]] = (("currency",), ("currency", "product"), ("currency", "kind"))
LEAD_DIMS: Final[tuple[DimSet, ...]] = ((), ("channel",), ("campaign",))
OVERALL: Final[tuple[DimSet, ...]] = ((),)
CURRENCY: Final[tuple[DimSet, ...]] = (("currency",),)


Window = str  # a window size as configured: "5m", "1h", "1d", "30d"
ALL_WINDOWS: Final[tuple[Window, ...]] = ("5m", "1h", "1d", "30d")
"""The default window sizes (catalogue §3). Every KPI is *published* for every
configured size; ``Kpi.windows`` says for which of them the figure is meaningful."""
LONG_WINDOWS: Final[tuple[Window, ...]] = ("1d", "30d")
ROLLING_30D: Final[tuple[Window, ...]] = ("30d",)

Direction = Literal["higher_is_better", "lower_is_better", "neutral"]


@dataclass(frozen=True, slots=True)
class Kpi:
    """A published KPI: what it is, how it is computed and how to read it.

    ``formula`` is the formula in words (it becomes the Prometheus HELP text), ``dims``
    the dimension sets it is published for (``()`` is the overall figure), ``moves``
    what moves it, ``gamed`` how it is gamed or misread, ``catalogue`` the section of
    KPI_CATALOGUE.md, ``windows`` the window sizes it is meaningful for (documentation:
    it is published for every configured size).
    """

    name: str
    family: Family
    kind: Kind
    unit: Unit
    dims: tuple[DimSet, ...]
    formula: str
    direction: Direction
    moves: str
    gamed: str
    catalogue: str
    windows: tuple[Window, ...] = ALL_WINDOWS

    @property
    def help(self) -> str:
        """One-line description for Prometheus HELP and terminal listings."""
        return f"{self.formula} [{self.unit}]"

    @property
    def metric(self) -> str:
        """The Prometheus gauge of the headline value (catalogue §6): ``crm_<kpi>``, with
        ``_ratio`` for ratios; a distribution's gauge carries the ``quantile`` label."""
        return f"crm_{self.name}_ratio" if self.unit == "ratio" else f"crm_{self.name}"

    @property
    def metrics(self) -> tuple[str, ...]:
        """Every Prometheus gauge family the collector exports for this KPI (docs/metrics.md)."""
        if self.kind == "distribution":
            return (self.metric, f"crm_{self.name}_mean", f"crm_{self.name}_samples")
        if self.kind == "score":
            extra = ("crm_nps_margin_of_error",) if self.name == "nps" else ()
            return (self.metric, f"crm_{self.name}_responses", *extra)
        return (self.metric,)

    def as_dict(self) -> dict[str, object]:
        """Machine-readable form (``crm-kpi kpis --json``)."""
        return {
            "name": self.name,
            "family": self.family,
            "kind": self.kind,
            "unit": self.unit,
            "dims": [list(dim_set) for dim_set in self.dims],
            "windows": list(self.windows),
            "formula": self.formula,
            "direction": self.direction,
            "moves": self.moves,
            "gamed": self.gamed,
            "catalogue": self.catalogue,
            "help": self.help,
            "metrics": list(self.metrics),
        }


@dataclass(frozen=True, slots=True)
class Base:
    """An internal mergeable aggregate folded by stage 1."""

    name: str
    family: Family
    aggregate: Literal["sketch", "count", "sum", "level", "survey", "distinct"]
    dims: tuple[DimSet, ...]


def _k(*args: object, windows: tuple[Window, ...] = ALL_WINDOWS) -> Kpi:
    return Kpi(*args, windows=windows)  # type: ignore[arg-type,misc]


KPIS: Final[tuple[Kpi, ...]] = (
    # --- 3.1 response time -------------------------------------------------------
    _k("first_response_time_seconds", "support", "distribution", "seconds", TICKET_DIMS,
       "time from ticket.created to the first public agent reply, in the window of that reply",
       "lower_is_better", "staffing vs. ticket volume, routing, auto-acknowledgements",
       "canned first replies lower it without helping; watch reply_time and FCR", "3.1"),
    _k("reply_time_seconds", "support", "distribution", "seconds", TICKET_DIMS,
       "for each customer message followed by an agent reply, the time to that reply",
       "lower_is_better", "staffing, backlog, shift coverage",
       "answering only the newest message hides waits; count is per customer message", "3.1"),
    _k("average_handle_time_seconds", "support", "distribution", "seconds", ((), ("channel",)),
       "mean of interaction.logged handle_time_s", "lower_is_better",
       "channel mix, case complexity, tooling",
       "rushing interactions lowers it and raises reopens", "3.1"),
    # --- 3.2 resolution ------------------------------------------------------------
    _k("tickets_created", "support", "count", "count", TICKET_DIMS,
       "number of ticket.created events", "neutral", "demand, incidents, releases",
       "merging or splitting tickets changes it", "3.2"),
    _k("tickets_solved", "support", "count", "count", TICKET_DIMS,
       "transitions into status solved (a later closed is not a second solve)", "higher_is_better",
       "agent capacity, backlog", "solving without fixing shows up as reopens", "3.2"),
    _k("tickets_reopened", "support", "count", "count", TICKET_DIMS,
       "transitions from solved/closed back to open, pending or on_hold", "lower_is_better",
       "premature solves, unclear answers", "closing new tickets instead of reopening hides it", "3.2"),
    _k("tickets_escalated", "support", "count", "count", TICKET_DIMS,
       "number of ticket.escalated events", "lower_is_better", "first-line skills, product defects",
       "not escalating keeps it low but hurts resolution time", "3.2"),
    _k("resolution_time_seconds", "support", "distribution", "seconds", TICKET_DIMS,
       "time from ticket.created to each solve, in the window of the solve", "lower_is_better",
       "complexity, backlog, waiting on customers", "solving early and reopening later lowers it", "3.2"),
    _k("resolution_rate", "support", "ratio", "ratio", TICKET_DIMS,
       "tickets_solved / tickets_created in the window (can exceed 1 when the backlog shrinks)",
       "higher_is_better", "capacity vs. demand", "premature solves raise it; read reopen_rate beside it", "3.2"),
    _k("first_contact_resolution_rate", "support", "ratio", "ratio", TICKET_DIMS,
       "share of tickets solved in the window with exactly one agent reply and no reopen before the solve",
       "higher_is_better", "agent knowledge, self-service quality",
       "closing tickets early lifts it; the reopen rate exposes that", "3.2"),
    _k("reopen_rate", "support", "ratio", "ratio", TICKET_DIMS,
       "tickets_reopened / tickets_solved in the window", "lower_is_better",
       "answer quality, premature solves", "opening new tickets instead of reopening hides it", "3.2"),
    _k("escalation_rate", "support", "ratio", "ratio", TICKET_DIMS,
       "tickets_escalated / tickets_created in the window", "lower_is_better",
       "first-line skills, product complexity", "discouraging escalation lowers it and slows resolution", "3.2"),
    _k("open_tickets", "support", "level", "count", TICKET_DIMS,
       "tickets whose status is not solved or closed, at the window end", "lower_is_better",
       "demand vs. capacity", "solving and reopening later lowers it for a while", "3.2"),
    # --- 3.3 SLA ----------------------------------------------------------------------
    _k("sla_first_reply_hit_rate", "sla", "ratio", "ratio", TICKET_DIMS,
       "first-reply SLA met / (met + breached), counted at the reply or the breach",
       "higher_is_better", "staffing per priority, routing, business-hours coverage",
       "re-prioritising tickets to lax targets raises it", "3.3"),
    _k("sla_resolution_hit_rate", "sla", "ratio", "ratio", TICKET_DIMS,
       "resolution SLA met / (met + breached), counted at the solve or the breach; "
       "the clock pauses while pending or on_hold", "higher_is_better",
       "backlog, complexity, pending discipline", "parking tickets in pending stops the clock", "3.3"),
    _k("sla_breaches", "sla", "count", "count", TICKET_DIMS,
       "first-reply and resolution SLA breaches, at the moment event time passed the due time",
       "lower_is_better", "staffing, spikes in demand", "lowering priorities hides breaches", "3.3"),
    _k("sla_at_risk", "sla", "count", "count", TICKET_DIMS,
       "SLA clocks that passed at_risk_fraction of their target", "lower_is_better",
       "backlog age", "same as breaches", "3.3"),
    _k("tickets_in_breach", "sla", "level", "count", TICKET_DIMS,
       "open tickets that have breached an SLA, at the window end", "lower_is_better",
       "backlog of overdue tickets", "solving overdue tickets without fixing them", "3.3"),
    # --- 3.4 satisfaction ----------------------------------------------------------------
    _k("nps", "satisfaction", "score", "score", PRODUCT_DIMS,
       "(promoters 9-10 - detractors 0-6) / responses x 100, with n and 95% margin of error; "
       "suppressed below min_sample", "higher_is_better", "support experience, product quality",
       "surveying only happy customers; a low response count makes NPS noise", "3.4", windows=ROLLING_30D),
    _k("csat", "satisfaction", "score", "ratio", PRODUCT_DIMS,
       "csat responses scoring 4-5 / csat responses; suppressed below min_sample",
       "higher_is_better", "the last support interaction", "asking only after good tickets", "3.4",
       windows=ROLLING_30D),
    _k("ces", "satisfaction", "score", "ratio", PRODUCT_DIMS,
       "ces responses scoring 5-7 / ces responses; suppressed below min_sample",
       "higher_is_better", "effort to get help", "asking only after easy tickets", "3.4", windows=ROLLING_30D),
    # --- 3.5 commercial ---------------------------------------------------------------------
    _k("revenue_minor", "commercial", "sum", "minor_units", MONEY_DIMS,
       "completed purchase amounts minus refunds, per currency (minor units, no FX)",
       "higher_is_better", "orders, prices, refunds", "pulling renewals forward", "3.5"),
    _k("orders", "commercial", "count", "count", MONEY_DIMS,
       "number of purchase.completed events", "higher_is_better", "demand, campaigns",
       "splitting orders", "3.5"),
    _k("average_order_value_minor", "commercial", "quotient", "minor_units", MONEY_DIMS,
       "completed purchase amount / orders, per currency", "higher_is_better",
       "bundles, upsell, price", "bundling unrelated items", "3.5"),
    _k("upsell_cross_sell_rate", "commercial", "ratio", "ratio", OVERALL,
       "distinct customers with an upsell or cross_sell purchase / distinct purchasing customers",
       "higher_is_better", "account management, product fit", "discount-driven add-ons", "3.5"),
    _k("new_customers", "commercial", "count", "customers", OVERALL,
       "customers whose first-ever purchase or subscription is in the window", "higher_is_better",
       "acquisition campaigns", "re-registering existing customers under new ids", "3.5"),
    _k("cac_minor", "commercial", "quotient", "minor_units", CURRENCY,
       "marketing spend / new_customers, per currency", "lower_is_better",
       "campaign efficiency", "booking spend in another window", "3.5", windows=LONG_WINDOWS),
    _k("active_subscribers", "commercial", "level", "customers", OVERALL,
       "customers with at least one active subscription, at the window end", "higher_is_better",
       "acquisition minus churn", "delaying cancellations", "3.5"),
    _k("mrr_minor", "commercial", "level", "minor_units", CURRENCY,
       "monthly recurring revenue of active subscriptions, per currency, at the window end",
       "higher_is_better", "subscriptions, plan mix", "discounted annual deals booked as monthly", "3.5"),
    _k("churn_rate", "commercial", "ratio", "ratio", OVERALL,
       "customers whose last active subscription was cancelled in the window / "
       "active subscribers at the window start", "lower_is_better",
       "product value, support experience, price", "pausing instead of cancelling", "3.5", windows=ROLLING_30D),
    _k("retention_rate", "commercial", "ratio", "ratio", OVERALL,
       "(subscribers at end - new subscribers in window) / subscribers at start",
       "higher_is_better", "churn, win-backs", "counting win-backs as retained", "3.5", windows=ROLLING_30D),
    _k("clv_minor", "commercial", "quotient", "minor_units", CURRENCY,
       "estimate: revenue per subscriber at the window start / churn_rate of the window "
       "(average revenue per customer per period x expected lifetime in periods)",
       "higher_is_better", "price, expansion, churn", "a window without churn has no estimate", "3.5",
       windows=ROLLING_30D),
    # --- 3.7 sales funnel (commercial family: cost and revenue per lead need spend and revenue) ---
    _k("leads_created", "commercial", "count", "count", LEAD_DIMS,
       "number of new leads (first lead.created of a lead_id), by the lead's channel and campaign",
       "higher_is_better", "campaigns, spend, seasonality, website traffic",
       "logging junk or duplicate leads inflates it; read lead_conversion_rate beside it", "3.7"),
    _k("leads_converted", "commercial", "count", "count", LEAD_DIMS,
       "leads converted (first lead.converted of a lead), in the window of the conversion, "
       "by the channel and campaign of its lead.created (overall only when that is unknown)",
       "higher_is_better", "lead quality, sales capacity, offer and price",
       "converting existing customers' upgrades as leads; read new_customers beside it", "3.7"),
    _k("leads_lost", "commercial", "count", "count", LEAD_DIMS,
       "leads lost (first lead.lost of a lead not converted), in the window of the loss, "
       "by the channel and campaign of its lead.created (overall only when that is unknown)",
       "lower_is_better", "lead quality, response time, competition, price",
       "never closing dead leads keeps it low while the pipeline silently rots", "3.7"),
    _k("lead_response_time_seconds", "commercial", "distribution", "seconds", LEAD_DIMS,
       "time from lead.created to the lead's first lead.contacted, in the window of that contact",
       "lower_is_better", "sales staffing, routing, lead volume spikes",
       "a token first touch (auto-email logged as a contact) lowers it without helping", "3.7"),
    _k("lead_conversion_rate", "commercial", "ratio", "ratio", LEAD_DIMS,
       "leads_converted / leads_created in the window (conversions of older leads count, so it "
       "can exceed 1 when few leads arrive)", "higher_is_better",
       "lead quality, sales follow-up, offer", "creating only warm leads or deleting cold ones raises it", "3.7",
       windows=LONG_WINDOWS),
    _k("sales_cycle_seconds", "commercial", "distribution", "seconds", LEAD_DIMS,
       "time from lead.created to lead.converted, in the window of the conversion",
       "lower_is_better", "deal size, buying process, sales follow-up",
       "creating the lead only when the deal is nearly closed shortens it", "3.7", windows=LONG_WINDOWS),
    _k("cost_per_lead_minor", "commercial", "quotient", "minor_units", CURRENCY,
       "marketing spend / leads_created (overall), per currency; published for windows with funnel activity",
       "lower_is_better", "campaign efficiency, bidding, channel mix",
       "buying cheap low-quality leads or booking spend in another window", "3.7", windows=LONG_WINDOWS),
    _k("revenue_per_lead_minor", "commercial", "quotient", "minor_units", CURRENCY,
       "revenue (completed minus refunded) / leads_created (overall), per currency; blended: revenue of "
       "existing customers counts too; published for windows with funnel activity",
       "higher_is_better", "conversion, order value, existing-customer revenue",
       "fewer, filtered leads raise it; it is not the revenue of the window's leads", "3.7",
       windows=LONG_WINDOWS),
    # --- 3.6 engagement and health ----------------------------------------------------------------
    _k("active_customers", "engagement", "distinct", "customers", OVERALL,
       "distinct customers with any event in the window (exact, 64-bit hashes)",
       "higher_is_better", "product usage, campaigns", "bot traffic", "3.6"),
    _k("interactions_per_customer", "engagement", "quotient", "per_customer", OVERALL,
       "interaction.logged events / active_customers", "neutral",
       "support demand per customer", "logging trivial touches", "3.6"),
    _k("customer_health_score", "health", "distribution", "score", OVERALL,
       "distribution of customer health scores (0-100) computed in the window", "higher_is_better",
       "engagement, satisfaction, support experience, commercial standing",
       "weights tuned to look good; read the contributions", "3.6", windows=ROLLING_30D),
    _k("churn_signals", "health", "count", "count", ((), ("signal",)),
       "churn signals raised (detractor, sla_breached_repeatedly, inactive, reopened_repeatedly, "
       "cancelled, refund)", "lower_is_better", "customer experience", "raising thresholds", "3.6"),
)

BASES: Final[tuple[Base, ...]] = (
    Base("first_response_time_seconds", "support", "sketch", TICKET_DIMS),
    Base("reply_time_seconds", "support", "sketch", TICKET_DIMS),
    Base("average_handle_time_seconds", "support", "sketch", ((), ("channel",))),
    Base("tickets_created", "support", "count", TICKET_DIMS),
    Base("tickets_solved", "support", "count", TICKET_DIMS),
    Base("tickets_reopened", "support", "count", TICKET_DIMS),
    Base("tickets_escalated", "support", "count", TICKET_DIMS),
    Base("tickets_solved_first_contact", "support", "count", TICKET_DIMS),
    Base("resolution_time_seconds", "support", "sketch", TICKET_DIMS),
    Base("open_tickets", "support", "level", TICKET_DIMS),
    Base("sla_first_reply_met", "sla", "count", TICKET_DIMS),
    Base("sla_first_reply_breached", "sla", "count", TICKET_DIMS),
    Base("sla_resolution_met", "sla", "count", TICKET_DIMS),
    Base("sla_resolution_breached", "sla", "count", TICKET_DIMS),
    Base("sla_at_risk", "sla", "count", TICKET_DIMS),
    Base("tickets_in_breach", "sla", "level", TICKET_DIMS),
    Base("nps", "satisfaction", "survey", PRODUCT_DIMS),
    Base("csat", "satisfaction", "survey", PRODUCT_DIMS),
    Base("ces", "satisfaction", "survey", PRODUCT_DIMS),
    Base("purchases_minor", "commercial", "sum", MONEY_DIMS),
    Base("refunds_minor", "commercial", "sum", MONEY_DIMS),
    Base("orders", "commercial", "count", MONEY_DIMS),
    Base("refunds", "commercial", "count", MONEY_DIMS),
    Base("purchasing_customers", "commercial", "distinct", OVERALL),
    Base("expanding_customers", "commercial", "distinct", OVERALL),
    Base("new_customers", "commercial", "count", OVERALL),
    Base("marketing_spend_minor", "commercial", "sum", CURRENCY),
    Base("active_subscribers", "commercial", "level", OVERALL),
    Base("mrr_minor", "commercial", "level", CURRENCY),
    Base("subscribers_gained", "commercial", "count", OVERALL),
    Base("subscribers_churned", "commercial", "count", OVERALL),
    Base("leads_created", "commercial", "count", LEAD_DIMS),
    Base("leads_converted", "commercial", "count", LEAD_DIMS),
    Base("leads_lost", "commercial", "count", LEAD_DIMS),
    Base("lead_response_time_seconds", "commercial", "sketch", LEAD_DIMS),
    Base("sales_cycle_seconds", "commercial", "sketch", LEAD_DIMS),
    Base("active_customers", "engagement", "distinct", OVERALL),
    Base("interactions", "engagement", "count", OVERALL),
    Base("customer_health_score", "health", "sketch", OVERALL),
    Base("churn_signals", "health", "count", ((), ("signal",))),
)

KPI_BY_NAME: Final[dict[str, Kpi]] = {k.name: k for k in KPIS}
BASE_BY_NAME: Final[dict[str, Base]] = {b.name: b for b in BASES}
FAMILIES: Final[tuple[Family, ...]] = ("support", "sla", "satisfaction", "commercial", "engagement", "health")


def family_of(base_name: str) -> Family:
    """The routing family of a base aggregate."""
    return BASE_BY_NAME[base_name].family


# --- reading the registry: docs/kpis.md and the terminal listing ---------------------------------

FAMILY_TITLES: Final[dict[Family, str]] = {
    "support": "Support: response time and resolution",
    "sla": "SLA",
    "satisfaction": "Satisfaction",
    "commercial": "Commercial and sales funnel",
    "engagement": "Engagement",
    "health": "Customer health and churn signals",
}
DIRECTION_TEXT: Final[dict[Direction, str]] = {
    "higher_is_better": "higher is better",
    "lower_is_better": "lower is better",
    "neutral": "neither direction is good in itself",
}
MARKDOWN_PATH: Final = "docs/kpis.md"
REGENERATE: Final = "crm-kpi kpis --markdown > docs/kpis.md"


def dims_text(dims: tuple[DimSet, ...]) -> str:
    """``((), ("priority",), ("currency", "product"))`` -> ``overall, priority, currency+product``."""
    return ", ".join("+".join(dim_set) if dim_set else "overall" for dim_set in dims)


def windows_text(windows: tuple[Window, ...]) -> str:
    """``all`` for the default sizes, else the sizes, e.g. ``30d`` or ``1d, 30d``."""
    return "all" if tuple(windows) == ALL_WINDOWS else ", ".join(windows)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(kpis: tuple[Kpi, ...] = KPIS) -> str:
    """``docs/kpis.md``: the registry as a reference page (a pure function of the table).

    The committed file must equal this text byte for byte (a unit test checks it);
    regenerate it with ``crm-kpi kpis --markdown > docs/kpis.md``.
    """
    lines = [
        "# KPI reference",
        "",
        f"<!-- Generated from streams/core/registry.py by render_markdown(); do not edit. "
        f"Regenerate: {REGENERATE} -->",
        "",
        "Every KPI the pipeline publishes, generated from the KPI registry "
        "(`streams/core/registry.py`), the same table that gives the Prometheus HELP texts, "
        "the `crm-kpi kpis` listing and the dashboard descriptions (catalogue §3.8). "
        "The formulas themselves live in `streams/core/kpis.py`.",
        "",
        "- **Windows**: every KPI is published for every configured window size "
        f"({', '.join(ALL_WINDOWS)} by default); *windows* names the sizes a figure is "
        "meaningful for (e.g. NPS needs the rolling 30 days to collect enough answers).",
        "- **Dimensions**: `overall` is the figure without dimensions (`dims: {}` in the KPI "
        "record); `a+b` is a combined dimension set. Money is always per `currency` (minor "
        "units, no FX).",
        "- A measurement belongs to the window of the event that completes it (a response "
        "time to the window of the reply, a sales cycle to the window of the conversion).",
        "- **Prometheus**: the gauges of the latest closed window per size (docs/metrics.md).",
        "",
        "## Summary",
        "",
        "| KPI | family | kind | unit | dimensions | windows | direction | § |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kpi in kpis:
        lines.append(
            f"| [`{kpi.name}`](#{kpi.name}) | {kpi.family} | {kpi.kind} | {kpi.unit} | {dims_text(kpi.dims)} | "
            f"{windows_text(kpi.windows)} | {DIRECTION_TEXT[kpi.direction]} | {kpi.catalogue} |"
        )
    for family in FAMILIES:
        members = [kpi for kpi in kpis if kpi.family == family]
        if not members:
            continue
        lines += ["", f"## {FAMILY_TITLES[family]}"]
        for kpi in members:
            lines += [
                "",
                f"### {kpi.name}",
                "",
                f"- **Formula**: {_cell(kpi.formula)}.",
                f"- **Kind, unit**: {kpi.kind}, {kpi.unit}.",
                f"- **Dimensions**: {dims_text(kpi.dims)}.",
                f"- **Windows**: {windows_text(kpi.windows)}.",
                f"- **Direction**: {DIRECTION_TEXT[kpi.direction]}.",
                f"- **What moves it**: {_cell(kpi.moves)}.",
                f"- **How it is gamed**: {_cell(kpi.gamed)}.",
                f"- **Prometheus**: {', '.join(f'`{metric}`' for metric in kpi.metrics)}.",
                f"- **Catalogue**: §{kpi.catalogue}.",
            ]
    return "\n".join(lines) + "\n"
