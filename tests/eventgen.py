"""A compact random generator of plausible event sets for property tests of the core.

Each customer gets a few tickets with a lifecycle (created, replies, status changes,
escalations), surveys, sessions, purchases/refunds and subscriptions, spread over a
time span. Events are returned sorted by (time, id); tests shuffle them as needed.
"""

from __future__ import annotations

import random

from streams.core.events import Event, make_event

MIN = 60_000


def generate(seed: int, customers: int = 12, start_ms: int = 1_793_000_000_000, span_ms: int = 6 * 3_600_000) -> list[Event]:
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
    events.sort(key=lambda e: (e.occurred_at_ms, e.event_id))
    return events


def shuffle_within(events: list[Event], bound_ms: int, rng: random.Random) -> list[Event]:
    """Arrival order where no event arrives after one more than ``bound_ms`` younger
    than it: sort by event time plus a random delay in [0, bound_ms)."""
    keyed = [(e.occurred_at_ms + rng.randrange(bound_ms), i, e) for i, e in enumerate(events)]
    keyed.sort()
    return [e for _, _, e in keyed]
