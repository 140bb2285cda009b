"""A compact random generator of plausible event sets for property tests of the core.

Each customer gets a few tickets with a lifecycle (created, replies, status changes,
escalations), surveys, sessions, purchases/refunds and subscriptions, spread over a
time span. With ``leads`` (the default) a sales funnel is added: prospects (and a few
existing customers) with leads that are contacted, converted or lost, a few events of
unknown leads and repeated steps, and campaign spend. The funnel draws from its own
random stream and its events are numbered after the others, so for a given seed the
non-funnel events are exactly those of ``leads=False`` (the generator's output before
the funnel existed). Events are returned sorted by (time, id); tests shuffle them as
needed.
"""

from __future__ import annotations

import random

from streams.core.events import Event, make_event

MIN = 60_000


def generate(seed: int, customers: int = 12, start_ms: int = 1_793_000_000_000, span_ms: int = 6 * 3_600_000,
             leads: bool = True) -> list[Event]:
    """A plausible event set for ``seed`` (see the module docstring)."""
    rng = random.Random(seed)
    events: list[Event] = []
    counter = 0

    def add(event_type: str, ts: int, customer: str, **data: object) -> None:
        nonlocal counter
        counter += 1
        events.append(make_event(event_type, event_id=f"g{seed}-{counter}", occurred_at_ms=ts,
                                 customer_id=customer, source="gen", **data))

    for c in range(customers):
        cid = f"cust-{c}"
        for t in range(rng.randint(0, 3)):
            tid = f"{cid}-t{t}"
            ts = start_ms + rng.randrange(span_ms)
            add("ticket.created", ts, cid, ticket_id=tid, priority=rng.choice(["low", "normal", "high", "urgent"]),
                channel=rng.choice(["email", "chat", "phone"]), team=rng.choice(["red", "blue"]))
            for _ in range(rng.randint(0, 4)):
                ts += rng.randint(1, 90) * MIN
                roll = rng.random()
                if roll < 0.45:
                    add("ticket.replied", ts, cid, ticket_id=tid, author=rng.choice(["agent", "agent", "customer"]))
                elif roll < 0.85:
                    add("ticket.status_changed", ts, cid, ticket_id=tid,
                        status=rng.choice(["open", "pending", "on_hold", "solved", "solved", "closed"]))
                else:
                    add("ticket.escalated", ts, cid, ticket_id=tid)
        for _ in range(rng.randint(0, 2)):
            kind = rng.choice(["nps", "csat", "ces"])
            low, high = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}[kind]
            add("survey.answered", start_ms + rng.randrange(span_ms), cid, survey=kind,
                score=rng.randint(low, high), product=rng.choice(["app", "web"]))
        for _ in range(rng.randint(0, 3)):
            add("session.started", start_ms + rng.randrange(span_ms), cid, product="app")
        if rng.random() < 0.4:
            add("interaction.logged", start_ms + rng.randrange(span_ms), cid, interaction_id=f"{cid}-i",
                channel=rng.choice(["chat", "phone"]), direction="inbound", handle_time_s=rng.randint(10, 900))
        for o in range(rng.randint(0, 2)):
            ts = start_ms + rng.randrange(span_ms)
            currency = rng.choice(["EUR", "USD"])
            add("purchase.completed", ts, cid, order_id=f"{cid}-o{o}", amount_minor=rng.randint(100, 90_000),
                currency=currency, product=rng.choice(["P1", "P2"]),
                kind=rng.choice(["new", "renewal", "upsell", "cross_sell"]))
            if rng.random() < 0.2:
                add("purchase.refunded", ts + rng.randint(1, 120) * MIN, cid, order_id=f"{cid}-o{o}",
                    amount_minor=rng.randint(1, 100), currency=currency)
        if rng.random() < 0.5:
            ts = start_ms + rng.randrange(span_ms)
            add("subscription.started", ts, cid, subscription_id=f"{cid}-s", plan="pro",
                mrr_minor=rng.randint(500, 5_000), currency="EUR")
            if rng.random() < 0.3:
                add("subscription.cancelled", ts + rng.randint(1, 240) * MIN, cid, subscription_id=f"{cid}-s")
    if rng.random() < 0.5:
        add("marketing.spend", start_ms + rng.randrange(span_ms), "campaign-1", amount_minor=10_000,
            currency="EUR", channel="search")
    if leads:
        _funnel(random.Random(seed * 7_919 + 1), add, customers, start_ms, span_ms)
    events.sort(key=lambda e: (e.occurred_at_ms, e.event_id))
    return events


def _funnel(rng: random.Random, add, customers: int, start_ms: int, span_ms: int) -> None:
    """Lead events (§3.7): created -> contacted (0-2 times) -> converted, lost or still open."""
    for p in range(max(1, customers // 2)):
        # most leads are new prospects; some come from existing customers (expansion deals)
        cid = f"cust-{rng.randrange(customers)}" if rng.random() < 0.25 else f"prospect-{p}"
        lead = f"{cid}-lead{p}"
        ts = start_ms + rng.randrange(span_ms)
        data: dict[str, object] = {"lead_id": lead, "channel": rng.choice(["search", "social", "referral"])}
        campaign = rng.choice([None, "cmp-a", "cmp-b"])
        if campaign:
            data["campaign"] = campaign
        add("lead.created", ts, cid, **data)
        if rng.random() < 0.05:
            add("lead.created", ts + rng.randint(1, 30) * MIN, cid, **data)  # repeated: not a new lead
        contacted = ts
        for _ in range(rng.choice([0, 1, 1, 2])):
            contacted += rng.randint(1, 180) * MIN
            add("lead.contacted", contacted, cid, lead_id=lead, agent_id=f"rep-{rng.randint(1, 3)}")
        roll = rng.random()
        outcome_ms = contacted + rng.randint(1, 600) * MIN
        if roll < 0.35:
            add("lead.converted", outcome_ms, cid, lead_id=lead, order_id=f"{cid}-won{p}")
            if rng.random() < 0.5:
                add("purchase.completed", outcome_ms + MIN, cid, order_id=f"{cid}-won{p}",
                    amount_minor=rng.randint(1_000, 50_000), currency=rng.choice(["EUR", "USD"]),
                    product="P1", kind="new")
            if rng.random() < 0.1:
                add("lead.lost", outcome_ms + rng.randint(1, 60) * MIN, cid, lead_id=lead)  # ignored
        elif roll < 0.65:
            add("lead.lost", outcome_ms, cid, lead_id=lead, reason=rng.choice(["no_budget", "not_a_fit"]))
            if rng.random() < 0.15:
                add("lead.converted", outcome_ms + rng.randint(1, 600) * MIN, cid, lead_id=lead)  # won back
    if rng.random() < 0.3:
        # events of a lead whose lead.created was never seen: overall figures only
        ts = start_ms + rng.randrange(span_ms)
        add("lead.contacted", ts, "prospect-x", lead_id="unknown-lead")
        add("lead.converted", ts + rng.randint(1, 120) * MIN, "prospect-x", lead_id="unknown-lead")
    for campaign in ("cmp-a", "cmp-b"):
        if rng.random() < 0.6:
            add("marketing.spend", start_ms + rng.randrange(span_ms), campaign, amount_minor=rng.randint(1_000, 20_000),
                currency=rng.choice(["EUR", "USD"]), channel="search")


def shuffle_within(events: list[Event], bound_ms: int, rng: random.Random) -> list[Event]:
    """Arrival order where no event arrives after one more than ``bound_ms`` younger
    than it: sort by event time plus a random delay in [0, bound_ms)."""
    keyed = [(e.occurred_at_ms + rng.randrange(bound_ms), i, e) for i, e in enumerate(events)]
    keyed.sort()
    return [e for _, _, e in keyed]
