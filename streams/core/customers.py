"""Per-customer state: commercial and subscription KPIs (§3.5), satisfaction (§3.4),
engagement (§3.6), the customer health score and churn signals (§3.6), and the sales
funnel (§3.7: the leads of a prospect, whose ``customer_id`` it keeps when it converts).

A customer's events arrive in event-time order (the processor buffers them), so
every rule here reads like the business rule it implements.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from streams.core.customer_state import (
    OVERALL,
    CustomerState,
    InactivityTimer,
    LeadState,
    Subscription,
)
from streams.core.events import (
    Event,
    InteractionLogged,
    LeadContacted,
    LeadConverted,
    LeadCreated,
    LeadLost,
    MarketingSpend,
    PurchaseCompleted,
    PurchaseRefunded,
    SessionStarted,
    SubscriptionCancelled,
    SubscriptionStarted,
    SurveyAnswered,
    occurred_at,
)
from streams.core.labels import LabelLimiter
from streams.core.partials import Partials
from streams.core.records import ChurnSignal, Contribution, Dims, HealthChange

DAY_MS: Final = 86_400_000
MAX_REMEMBERED_ORDERS: Final = 256  # refunds of older orders lose their product/kind dims
MAX_RECENT: Final = 64  # bound on each per-customer recent-event list
# Bound on the leads remembered per customer (a prospect normally has one). Beyond it the
# oldest lead is forgotten: its later events count like those of an unknown lead
# (overall only, no response-time or sales-cycle sample) and a repeated conversion or
# loss of it would count again.
MAX_REMEMBERED_LEADS: Final = 16


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """Weights of the health components and churn-signal thresholds (all configurable)."""

    engagement_weight: float = 0.3
    satisfaction_weight: float = 0.3
    support_weight: float = 0.2
    commercial_weight: float = 0.2
    lookback_ms: int = 30 * DAY_MS  # the "in 30d" of the signals and components
    detractor_max_score: int = 6  # NPS answers at or below raise `detractor`
    breaches_threshold: int = 2  # SLA breaches in lookback raising `sla_breached_repeatedly`
    reopens_threshold: int = 2  # reopens in lookback raising `reopened_repeatedly`
    inactive_after_ms: int = 14 * DAY_MS  # no event this long while subscribed -> `inactive`
    sessions_for_full_engagement: int = 8  # sessions in lookback that score 100 on frequency

    def __post_init__(self) -> None:
        weights = self.weights()
        if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError("health weights must be non-negative and not all zero")

    def weights(self) -> dict[str, float]:
        return {
            "engagement": self.engagement_weight,
            "satisfaction": self.satisfaction_weight,
            "support": self.support_weight,
            "commercial": self.commercial_weight,
        }


# events that change a health component directly (ticket changes arrive through
# on_ticket_change); other events leave the score as it was
# (most frequent first: isinstance tries them in order)
HEALTH_INPUTS: Final = (
    SessionStarted, SubscriptionStarted, PurchaseCompleted, PurchaseRefunded, SubscriptionCancelled, SurveyAnswered,
)

COMPONENTS: Final = ("engagement", "satisfaction", "support", "commercial")  # the order of HealthConfig.weights

Signal = tuple[str, tuple[str, ...], str]  # (signal name, evidence event ids, detail)

LEAD_EVENTS: Final = (LeadCreated, LeadContacted, LeadConverted, LeadLost)
LeadEvent = LeadCreated | LeadContacted | LeadConverted | LeadLost


def _recent(items: tuple, now_ms: int, lookback_ms: int) -> tuple:
    """Drop ``(time, id)`` entries older than the lookback and cap the length."""
    cutoff = now_ms - lookback_ms
    kept = [item for item in items if item[0] > cutoff]
    return tuple(kept[-MAX_RECENT:])


def _recent_times(times: tuple, now_ms: int, lookback_ms: int) -> tuple:
    """:func:`_recent` of bare event times (sessions, expansions)."""
    cutoff = now_ms - lookback_ms
    kept = [t for t in times if t > cutoff]
    return tuple(kept[-MAX_RECENT:])


class CustomerEngine:
    """Applies customer-level events and computes health and churn signals. Pure."""

    def __init__(
        self, config: HealthConfig | None = None, *, record_changes: bool = False, limit: LabelLimiter | None = None
    ) -> None:
        self.config = config or HealthConfig()
        self.limit = limit or LabelLimiter()  # bounds currency, product, campaign, lead channel
        self.record_changes = record_changes  # keep HealthChange records (replay --health-out)
        self._weights = tuple(self.config.weights().items())
        assert tuple(name for name, _ in self._weights) == COMPONENTS
        self._total_weight = math.fsum(w for _, w in self._weights)

    # -- events --------------------------------------------------------------------------------
    def apply(self, c: CustomerState, event: Event, out: Partials) -> InactivityTimer | None:
        """Apply one event of this customer (any type); returns an inactivity timer to arm."""
        data = event.data
        ts = occurred_at(event)  # (the event's own int object: see occurred_at)
        if isinstance(data, MarketingSpend):
            # customer_id is a campaign here: spend counts, nobody became active
            currency = self.limit("currency", data.currency)
            out.total("marketing_spend_minor", ((("currency", currency),),), ts, data.amount_minor)
            return None
        out.distinct("active_customers", OVERALL, ts, c.customer_id)
        c.last_event_ms = ts
        signal: Signal | None = None
        if isinstance(data, SessionStarted):  # (the most frequent types first)
            c.sessions = _recent_times((*c.sessions, ts), ts, self.config.lookback_ms)
        elif isinstance(data, SubscriptionStarted):
            self._subscribe(c, data, ts, out)
        elif isinstance(data, PurchaseCompleted):
            self._purchase(c, event, data, out)
        elif isinstance(data, PurchaseRefunded):
            signal = self._refund(c, event, data, out)
        elif isinstance(data, SubscriptionCancelled):
            signal = self._cancel(c, event, data, out)
        elif isinstance(data, InteractionLogged):
            out.count("interactions", OVERALL, ts)
            if data.handle_time_s is not None:
                dims = ((), (("channel", data.channel),))
                out.sample("average_handle_time_seconds", dims, ts, data.handle_time_s)
        elif isinstance(data, SurveyAnswered):
            signal = self._survey(c, event, data, out)
        elif isinstance(data, LEAD_EVENTS):
            self._lead(c, data, ts, out)
        if signal is not None or isinstance(data, HEALTH_INPUTS):
            self.recompute(c, ts, event.event_id, out, signal)
        return self._arm_inactivity(c)

    def _arm_inactivity(self, c: CustomerState) -> InactivityTimer | None:
        """One inactivity timer per subscribed customer; it re-arms itself on firing
        when activity happened since, so the timer heap does not grow per event."""
        if c.inactivity_due_ms is not None or not c.subscribed or c.last_event_ms is None:
            return None
        c.inactivity_due_ms = c.last_event_ms + self.config.inactive_after_ms
        return InactivityTimer(c.inactivity_due_ms, c.customer_id, c.inactivity_due_ms)

    def _new_customer(self, c: CustomerState, ts: int, out: Partials) -> None:
        if c.first_commercial_ms is None:
            c.first_commercial_ms = ts
            out.count("new_customers", OVERALL, ts)

    def _purchase(self, c: CustomerState, event: Event, data: PurchaseCompleted, out: Partials) -> None:
        ts = occurred_at(event)  # (the event's own int object: see occurred_at)
        self._new_customer(c, ts, out)
        currency, product = self.limit("currency", data.currency), self.limit("product", data.product)
        dims = money_dims(currency, product, data.kind)
        out.total("purchases_minor", dims, ts, data.amount_minor)
        out.count("orders", dims, ts)
        out.distinct("purchasing_customers", OVERALL, ts, c.customer_id)
        if data.kind in ("upsell", "cross_sell"):
            out.distinct("expanding_customers", OVERALL, ts, c.customer_id)
            c.expansions = _recent_times((*c.expansions, ts), ts, self.config.lookback_ms)
        orders = c.orders if c.orders is not None else {}
        c.orders = orders
        orders[data.order_id] = (currency, product, data.kind)
        if len(orders) > MAX_REMEMBERED_ORDERS:
            del orders[next(iter(orders))]

    def _refund(self, c: CustomerState, event: Event, data: PurchaseRefunded, out: Partials) -> Signal:
        ts = occurred_at(event)  # (the event's own int object: see occurred_at)
        order = c.orders.get(data.order_id) if c.orders else None
        currency = self.limit("currency", data.currency)
        if order is not None and order[0] == currency:
            dims = money_dims(currency, order[1], order[2])
        else:
            dims = ((("currency", currency),),)
        out.total("refunds_minor", dims, ts, data.amount_minor)
        out.count("refunds", dims, ts)
        c.refunds = _recent((*c.refunds, (ts, event.event_id)), ts, self.config.lookback_ms)
        return ("refund", (event.event_id,), f"order {data.order_id}")

    def _subscribe(self, c: CustomerState, data: SubscriptionStarted, ts: int, out: Partials) -> None:
        self._new_customer(c, ts, out)
        if data.subscription_id in c.subscriptions:
            return
        if not c.subscriptions:
            out.level("active_subscribers", OVERALL, ts, +1)
            out.count("subscribers_gained", OVERALL, ts)
        currency = self.limit("currency", data.currency)
        c.subscriptions[data.subscription_id] = Subscription(data.mrr_minor, currency)
        out.level("mrr_minor", ((("currency", currency),),), ts, data.mrr_minor)

    def _cancel(self, c: CustomerState, event: Event, data: SubscriptionCancelled, out: Partials) -> Signal:
        ts = occurred_at(event)  # (the event's own int object: see occurred_at)
        sub = c.subscriptions.pop(data.subscription_id, None)
        if sub is not None:
            mrr, currency = sub.mrr_minor, sub.currency
            out.level("mrr_minor", ((("currency", currency),),), ts, -mrr)
            if not c.subscriptions:
                out.level("active_subscribers", OVERALL, ts, -1)
                out.count("subscribers_churned", OVERALL, ts)
        return ("cancelled", (event.event_id,), f"subscription {data.subscription_id}")

    def _survey(self, c: CustomerState, event: Event, data: SurveyAnswered, out: Partials) -> Signal | None:
        ts = occurred_at(event)  # (the event's own int object: see occurred_at)
        product = self.limit("product", data.product)
        dims: tuple[Dims, ...] = ((), (("product", product),)) if product else OVERALL
        out.survey(data.survey, dims, ts, data.score)
        if data.survey == "nps":
            c.last_nps = data.score
            if data.score <= self.config.detractor_max_score:
                return ("detractor", (event.event_id,), f"nps {data.score}")
        elif data.survey == "csat":
            c.last_csat = data.score
        return None

    # -- sales funnel (§3.7) ----------------------------------------------------------------
    def _lead(self, c: CustomerState, data: LeadEvent, ts: int, out: Partials) -> None:
        """One lead event. Counts and samples go to the window of this event and to the
        channel/campaign of the lead's lead.created (overall only when it is unknown).
        Each lead is created, first contacted, converted and lost at most once: repeats
        of the same step are ignored, like a second ticket.created."""
        leads = c.leads if c.leads is not None else {}
        c.leads = leads
        lead = leads.get(data.lead_id)
        if lead is None:
            lead = leads[data.lead_id] = LeadState()
            if len(leads) > MAX_REMEMBERED_LEADS:
                del leads[next(iter(leads))]
        if isinstance(data, LeadCreated):
            if lead.created_ms is not None:
                return  # a second lead.created of the same lead is no new lead
            lead.created_ms = ts
            lead.channel, lead.campaign = self.limit("channel", data.channel), self.limit("campaign", data.campaign)
            out.count("leads_created", lead.dims(), ts)
        elif isinstance(data, LeadContacted):
            if lead.contacted:
                return
            lead.contacted = True
            if lead.created_ms is not None and ts >= lead.created_ms:
                out.sample("lead_response_time_seconds", lead.dims(), ts, (ts - lead.created_ms) / 1000.0)
        elif isinstance(data, LeadConverted):
            if lead.converted:
                return
            lead.converted = True  # a lost lead can still be won back
            out.count("leads_converted", lead.dims(), ts)
            if lead.created_ms is not None and ts >= lead.created_ms:
                out.sample("sales_cycle_seconds", lead.dims(), ts, (ts - lead.created_ms) / 1000.0)
        else:  # LeadLost; a converted lead is a customer now: it cannot be lost
            if lead.lost or lead.converted:
                return
            lead.lost = True
            out.count("leads_lost", lead.dims(), ts)

    # -- support feedback from the ticket engine --------------------------------------------
    def on_ticket_change(
        self, c: CustomerState, ts: int, cause_id: str, out: Partials, *,
        open_delta: int = 0, reopened_by: str | None = None, breached_ticket: str | None = None,
    ) -> None:
        """Called by the processor when a ticket of this customer opened/closed, was
        reopened or breached an SLA; updates support components and signals."""
        lookback = self.config.lookback_ms
        c.open_tickets = max(0, c.open_tickets + open_delta)
        signal: Signal | None = None
        if reopened_by is not None:
            c.reopens = _recent((*c.reopens, (ts, reopened_by)), ts, lookback)
            if len(c.reopens) == self.config.reopens_threshold:
                signal = (
                    "reopened_repeatedly", tuple(i for _, i in c.reopens), f"{len(c.reopens)} reopens in lookback"
                )
        if breached_ticket is not None:
            c.breaches = _recent((*c.breaches, (ts, breached_ticket)), ts, lookback)
            if len(c.breaches) == self.config.breaches_threshold:
                signal = (
                    "sla_breached_repeatedly", tuple(i for _, i in c.breaches),
                    f"{len(c.breaches)} SLA breaches in lookback",
                )
        self.recompute(c, ts, cause_id, out, signal)

    def on_inactivity_timer(
        self, c: CustomerState, timer: InactivityTimer, out: Partials
    ) -> InactivityTimer | None:
        """The inactivity moment passed in event time; returns a re-armed timer if the
        customer was active since it was armed."""
        if c.inactivity_due_ms != timer.due_ms:
            return None  # stale
        c.inactivity_due_ms = None
        if not c.subscribed or c.last_event_ms is None:
            return None
        if c.last_event_ms + self.config.inactive_after_ms > timer.due_ms:
            return self._arm_inactivity(c)
        days = self.config.inactive_after_ms // DAY_MS
        self.recompute(c, timer.due_ms, "", out, ("inactive", (), f"no event for {days}d while subscribed"))
        return None

    # -- health ----------------------------------------------------------------------------------
    def components(self, c: CustomerState, now_ms: int) -> dict[str, float]:
        """Component scores 0-100 at ``now_ms`` (see docs/health.md for the rules)."""
        return dict(zip(COMPONENTS, self._scores(c, now_ms), strict=True))

    def _scores(self, c: CustomerState, now_ms: int) -> tuple[float, float, float, float]:
        """(engagement, satisfaction, support, commercial) at ``now_ms``: the hot path of
        every health recompute, so the empty lists (most customers have no breach,
        reopen, refund or expansion) cost one truth test each."""
        cfg = self.config
        cutoff = now_ms - cfg.lookback_ms
        sessions = [t for t in c.sessions if t > cutoff] if c.sessions else c.sessions
        frequency = min(1.0, len(sessions) / cfg.sessions_for_full_engagement)
        if sessions:
            age_days = (now_ms - sessions[-1]) / DAY_MS
            recency = 1.0 if age_days <= 7 else max(0.0, (30 - age_days) / 23)
        else:
            recency = 0.0
        engagement = 100.0 * (0.5 * frequency + 0.5 * recency)
        nps, csat = c.last_nps, c.last_csat
        if nps is not None and csat is not None:
            satisfaction = (nps * 10.0 + (csat - 1) * 25.0) / 2
        elif nps is not None:
            satisfaction = nps * 10.0
        elif csat is not None:
            satisfaction = (csat - 1) * 25.0
        else:
            satisfaction = 50.0
        breaches = sum(1 for t, _ in c.breaches if t > cutoff) if c.breaches else 0
        reopens = sum(1 for t, _ in c.reopens if t > cutoff) if c.reopens else 0
        support = _clamp(100.0 - 25.0 * breaches - 15.0 * reopens - 5.0 * c.open_tickets)
        refunds = 1 if c.refunds and any(t > cutoff for t, _ in c.refunds) else 0
        expansions = 1 if c.expansions and any(t > cutoff for t in c.expansions) else 0
        commercial = _clamp((60.0 if c.subscriptions else 20.0) + 20.0 * expansions - 30.0 * refunds)
        return engagement, satisfaction, support, commercial

    def recompute(
        self, c: CustomerState, now_ms: int, cause_id: str, out: Partials, signal: Signal | None = None
    ) -> None:
        """Recompute the health score; record the change and any pending churn signal."""
        scores = self._scores(c, now_ms)
        total = self._total_weight
        # unrolled over the four components (this runs for most events)
        (_, w0), (_, w1), (_, w2), (_, w3) = self._weights
        s0, s1, s2, s3 = scores
        points = (round6(w0 * s0 / total), round6(w1 * s1 / total), round6(w2 * s2 / total),
                  round6(w3 * s3 / total))
        after = round6(math.fsum(points))
        before = c.health if c.health is not None else after
        if c.health is None or after != c.health:
            if self.record_changes:  # the breakdown is only for health-change records
                contributions = tuple(
                    Contribution(name, round(score, 6), weight, point)
                    for (name, weight), score, point in zip(self._weights, scores, points, strict=True)
                )
                out.health.append(HealthChange(c.customer_id, now_ms, cause_id, before, after, contributions))
            out.sample("customer_health_score", OVERALL, now_ms, after)
            c.health = after
        if signal is not None:
            name, evidence, detail = signal
            out.signals.append(ChurnSignal(name, c.customer_id, now_ms, evidence, before, after, detail))
            out.count("churn_signals", ((), (("signal", name),)), now_ms)


# round6 takes its arithmetic path below this (x * 1e6 < 2**32): there a double's
# rounding error is under 2**-21, far inside the 1e-6 margin around a tie
_ROUND6_LIMIT: Final = 4294967296.0


def round6(x: float) -> float:
    """``round(x, 6)``, bit for bit, at a fraction of its cost for the health score's
    points (0-100). ``round(x, 6)`` formats the exact decimal expansion of ``x`` and
    parses it back (~0.25 µs); here the integer nearest to ``x * 1e6`` comes from the
    double product, which is within 2**-21 of the exact one below the limit, so it is
    the same integer unless the product lies within 1e-6 of a tie (then, and for zero,
    negative, huge or non-finite values, ``round`` itself decides). Dividing that
    integer (exact as a double) by 1e6 is correctly rounded, as ``round``'s parse is.
    ``tests/unit/test_sla_health_signals.py`` checks the bits on random and near-tie values."""
    y = x * 1e6
    if not 0.0 < y < _ROUND6_LIMIT:
        return round(x, 6)
    n = math.floor(y)
    fraction = y - n
    if 0.499999 < fraction < 0.500001:
        return round(x, 6)
    return (n + 1 if fraction > 0.5 else n) / 1e6


def money_dims(currency: str, product: str, kind: str) -> tuple[Dims, ...]:
    return (
        (("currency", currency),),
        (("currency", currency), ("product", product)),
        (("currency", currency), ("kind", kind)),
    )


def _clamp(value: float) -> float:
    return min(100.0, max(0.0, value))
