"""The KPI registry: one entry per published KPI (catalogue §3.8).

Prometheus HELP text, ``docs/kpis.md``, the dashboards and the KPI records all read
this table, so a formula is written down exactly once. ``BASES`` lists the internal
mergeable aggregates that stage 1 folds events into; every published KPI is derived
from bases of its own *family* (the family is also the routing key of partials
between stage 1 and stage 2, so a KPI's inputs always meet on one stage-2 task).
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


@dataclass(frozen=True, slots=True)
class Kpi:
    """A published KPI: what it is, how it is computed and how to read it."""

    name: str
    family: Family
    kind: Kind
    unit: Unit
    dims: tuple[DimSet, ...]
    formula: str
    direction: Literal["higher_is_better", "lower_is_better", "neutral"]
    moves: str
    gamed: str
    catalogue: str

    @property
    def help(self) -> str:
        """One-line description for Prometheus HELP and terminal listings."""
        return f"{self.formula} [{self.unit}]"


@dataclass(frozen=True, slots=True)
class Base:
    """An internal mergeable aggregate folded by stage 1."""

    name: str
    family: Family
    aggregate: Literal["sketch", "count", "sum", "level", "survey", "distinct"]
    dims: tuple[DimSet, ...]


def _k(*args: object) -> Kpi:
    return Kpi(*args)  # type: ignore[arg-type]


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
       "surveying only happy customers; a low response count makes NPS noise", "3.4"),
    _k("csat", "satisfaction", "score", "ratio", PRODUCT_DIMS,
       "csat responses scoring 4-5 / csat responses; suppressed below min_sample",
       "higher_is_better", "the last support interaction", "asking only after good tickets", "3.4"),
    _k("ces", "satisfaction", "score", "ratio", PRODUCT_DIMS,
       "ces responses scoring 5-7 / ces responses; suppressed below min_sample",
       "higher_is_better", "effort to get help", "asking only after easy tickets", "3.4"),
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
       "campaign efficiency", "booking spend in another window", "3.5"),
    _k("active_subscribers", "commercial", "level", "customers", OVERALL,
       "customers with at least one active subscription, at the window end", "higher_is_better",
       "acquisition minus churn", "delaying cancellations", "3.5"),
    _k("mrr_minor", "commercial", "level", "minor_units", CURRENCY,
       "monthly recurring revenue of active subscriptions, per currency, at the window end",
       "higher_is_better", "subscriptions, plan mix", "discounted annual deals booked as monthly", "3.5"),
    _k("churn_rate", "commercial", "ratio", "ratio", OVERALL,
       "customers whose last active subscription was cancelled in the window / "
       "active subscribers at the window start", "lower_is_better",
       "product value, support experience, price", "pausing instead of cancelling", "3.5"),
    _k("retention_rate", "commercial", "ratio", "ratio", OVERALL,
       "(subscribers at end - new subscribers in window) / subscribers at start",
       "higher_is_better", "churn, win-backs", "counting win-backs as retained", "3.5"),
    _k("clv_minor", "commercial", "quotient", "minor_units", CURRENCY,
       "estimate: revenue per subscriber at the window start / churn_rate of the window "
       "(average revenue per customer per period x expected lifetime in periods)",
       "higher_is_better", "price, expansion, churn", "a window without churn has no estimate", "3.5"),
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
       "weights tuned to look good; read the contributions", "3.6"),
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
