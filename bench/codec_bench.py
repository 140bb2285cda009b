"""Micro-benchmark of the input codec: ``python -m bench.codec_bench [--events N]``.

For each input topic it builds a realistic mix of valid events, encodes them once, then
times ``decode_event`` over the batch and ``orjson.loads`` over the same bytes (parsing
into dicts, no validation) as the baseline. Prints ns per event, best of ``--repeat``
runs. A measurement tool, not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import platform
import random
import time
from collections.abc import Callable

import msgspec
import orjson

from streams.codec import decode_event, encode_event
from streams.core.events import (
    INTERACTIONS_TOPIC,
    PURCHASES_TOPIC,
    TICKETS_TOPIC,
    Event,
    make_event,
)

START_MS = 1_793_527_200_000  # 2026-11-01T10:00:00Z

# topic -> [(event_type, weight, payload builder)]
Payload = Callable[[random.Random, int], dict]
MIXES: dict[str, list[tuple[str, int, Payload]]] = {
    TICKETS_TOPIC: [
        (
            "ticket.created",
            25,
            lambda rng, n: {
                "ticket_id": f"ZD-{n}",
                "priority": rng.choice(["low", "normal", "high", "urgent"]),
                "channel": rng.choice(["email", "chat", "phone", "web"]),
                "team": rng.choice(["billing", "technical", "onboarding"]),
                "product": rng.choice(["crm-pro", "crm-lite"]),
            },
        ),
        (
            "ticket.replied",
            45,
            lambda rng, n: {
                "ticket_id": f"ZD-{n // 3}",
                "author": rng.choice(["agent", "customer"]),
                "agent_id": f"agt-{rng.randrange(400):04d}",
            },
        ),
        (
            "ticket.status_changed",
            25,
            lambda rng, n: {
                "ticket_id": f"ZD-{n // 3}",
                "status": rng.choice(["open", "pending", "solved", "closed"]),
            },
        ),
        ("ticket.escalated", 5, lambda rng, n: {"ticket_id": f"ZD-{n // 3}", "to_team": "tier-2"}),
    ],
    INTERACTIONS_TOPIC: [
        (
            "interaction.logged",
            30,
            lambda rng, n: {
                "interaction_id": f"call-{n}",
                "channel": rng.choice(["phone", "chat", "email"]),
                "direction": rng.choice(["inbound", "outbound"]),
                "handle_time_s": float(rng.randrange(30, 1800)),
            },
        ),
        (
            "session.started",
            40,
            lambda rng, n: {"product": "crm-pro", "platform": rng.choice(["ios", "web"])},
        ),
        (
            "survey.answered",
            10,
            lambda rng, n: {"survey": "nps", "score": rng.randrange(11), "product": "crm-pro"},
        ),
        (
            "lead.created",
            10,
            lambda rng, n: {"lead_id": f"lead-{n}", "channel": "ads", "campaign": "webinar-q4"},
        ),
        ("lead.contacted", 10, lambda rng, n: {"lead_id": f"lead-{n // 2}", "agent_id": "sdr-014"}),
    ],
    PURCHASES_TOPIC: [
        (
            "purchase.completed",
            50,
            lambda rng, n: {
                "order_id": f"ord-{n}",
                "amount_minor": rng.randrange(500, 500_000),
                "currency": rng.choice(["EUR", "USD"]),
                "product": rng.choice(["crm-pro", "crm-lite"]),
                "kind": rng.choice(["new", "renewal", "upsell", "cross_sell"]),
            },
        ),
        (
            "purchase.refunded",
            5,
            lambda rng, n: {"order_id": f"ord-{n // 2}", "amount_minor": 4900, "currency": "EUR"},
        ),
        (
            "subscription.started",
            20,
            lambda rng, n: {
                "subscription_id": f"sub-{n}",
                "plan": rng.choice(["team", "business"]),
                "mrr_minor": rng.randrange(900, 90_000),
                "currency": "EUR",
            },
        ),
        (
            "subscription.cancelled",
            10,
            lambda rng, n: {"subscription_id": f"sub-{n // 2}", "reason": "too expensive"},
        ),
        (
            "marketing.spend",
            15,
            lambda rng, n: {
                "amount_minor": rng.randrange(10**6),
                "currency": "EUR",
                "channel": "ads",
            },
        ),
    ],
}


def sample_events(topic: str, count: int, seed: int = 7) -> list[Event]:
    """A deterministic, realistic mix of ``count`` valid events for one topic."""
    rng = random.Random(seed)
    mix = MIXES[topic]
    weights = [weight for _, weight, _ in mix]
    chosen = rng.choices(mix, weights=weights, k=count)
    return [
        make_event(
            event_type,
            event_id=f"evt-{topic}-{n:08d}",
            occurred_at_ms=START_MS + n * 250 + rng.randrange(250),
            customer_id=f"cus-{rng.randrange(50_000):06d}",
            source="bench",
            **payload(rng, n),
        )
        for n, (event_type, _, payload) in enumerate(chosen)
    ]


def best_ns_per_item(
    function: Callable[[bytes], object], messages: list[bytes], repeat: int
) -> float:
    """Fastest of ``repeat`` passes over ``messages``, in nanoseconds per message."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter_ns()
        for raw in messages:
            function(raw)
        best = min(best, time.perf_counter_ns() - started)
    return best / len(messages)


def main() -> None:
    """Run the benchmark and print one line per topic."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per topic")
    parser.add_argument("--repeat", type=int, default=5, help="passes; the best one counts")
    args = parser.parse_args()

    print(
        f"python {platform.python_version()}, msgspec {msgspec.__version__}, "
        f"orjson {orjson.__version__}; {args.events} events per topic, best of {args.repeat}"
    )
    print(f"{'topic':<22}{'bytes/event':>12}{'decode ns':>12}{'orjson ns':>12}{'ratio':>8}")
    for topic in MIXES:
        messages = [encode_event(event) for event in sample_events(topic, args.events)]
        assert all(isinstance(decode_event(raw), Event) for raw in messages)
        decode_ns = best_ns_per_item(decode_event, messages, args.repeat)
        orjson_ns = best_ns_per_item(orjson.loads, messages, args.repeat)
        size = sum(map(len, messages)) / len(messages)
        print(
            f"{topic:<22}{size:>12.0f}{decode_ns:>12.0f}{orjson_ns:>12.0f}"
            f"{decode_ns / orjson_ns:>8.2f}"
        )


if __name__ == "__main__":
    main()
