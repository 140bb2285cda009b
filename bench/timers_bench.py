"""SLA timer load: memory per open ticket and time per event with 100k open tickets.

Run: ``python -m bench.timers_bench [--tickets 100000] [--hours 4] [--activity 100000]``

Three phases through one :class:`~streams.core.pipeline.Processor` (default SLA policies,
windows 5m,1h,1d,30d), fed in batches of ``--batch`` (offer each, then advance and drain):

1. **open**: ``--tickets`` ``ticket.created`` events spread over ``--hours`` hours, four
   tickets per customer, priorities low/normal/high/urgent 30/45/20/5 %. Each ticket
   arms a first-reply and a resolution SLA (an at-risk and a breach timer each). Memory
   of the resulting state: the resident set size (``/proc/self/statm``, after
   ``gc.collect``) before and after, and — in a second, separate run — the bytes
   ``tracemalloc`` sees allocated and still live (state, timer heap, dedupe ids; the
   input events are allocated before tracing starts and are not counted).
2. **activity**: ``--activity`` replies and status changes against that state over the
   next two hours (agent and customer replies, pending/on_hold/open/solved), each of
   which cancels, pauses, resumes or settles timers; time per event.
3. **fire**: the watermark jumps six days ahead, so every SLA timer still armed fires
   (at-risk, breached); time per timer fired.

Figures depend on the machine; nothing is asserted.
"""

from __future__ import annotations

import argparse
import gc
import linecache
import os
import platform
import random
import time
import tracemalloc

from streams.core.events import Event, make_event
from streams.core.pipeline import CoreConfig, Processor

HOUR_MS = 3_600_000
START_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z
PRIORITIES = (("low", 30), ("normal", 45), ("high", 20), ("urgent", 5))
TICKETS_PER_CUSTOMER = 4
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """Current resident set size of this process (Linux), after a full collection."""
    gc.collect()
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * PAGE_SIZE


def creations(tickets: int, hours: float, seed: int = 1) -> list[Event]:
    """``ticket.created`` events spread evenly (with jitter) over ``hours``, sorted."""
    rng = random.Random(seed)
    span = int(hours * HOUR_MS)
    names = [name for name, _ in PRIORITIES]
    weights = [weight for _, weight in PRIORITIES]
    events = [
        make_event(
            "ticket.created",
            event_id=f"c-{n}",
            occurred_at_ms=START_MS + n * span // tickets + rng.randrange(1_000),
            customer_id=f"cus-{n // TICKETS_PER_CUSTOMER:06d}",
            source="bench",
            ticket_id=f"T-{n}",
            priority=rng.choices(names, weights)[0],
            channel=rng.choice(["email", "chat", "phone", "web"]),
            team=rng.choice(["billing", "technical", "onboarding"]),
        )
        for n in range(tickets)
    ]
    events.sort(key=lambda event: (event.occurred_at_ms, event.event_id))
    return events


def activity(tickets: int, count: int, after_ms: int, seed: int = 2) -> list[Event]:
    """Replies and status changes on random open tickets over the two hours after ``after_ms``."""
    rng = random.Random(seed)
    span = 2 * HOUR_MS
    events = []
    for n in range(count):
        ticket = rng.randrange(tickets)
        common = {
            "event_id": f"a-{n}",
            "occurred_at_ms": after_ms + 1 + n * span // count,
            "customer_id": f"cus-{ticket // TICKETS_PER_CUSTOMER:06d}",
            "source": "bench",
            "ticket_id": f"T-{ticket}",
        }
        roll = rng.random()
        if roll < 0.45:
            events.append(make_event("ticket.replied", author="agent", agent_id="agt-1", **common))
        elif roll < 0.60:
            events.append(make_event("ticket.replied", author="customer", **common))
        else:
            status = rng.choice(["pending", "on_hold", "open", "solved", "solved"])
            events.append(make_event("ticket.status_changed", status=status, **common))
    return events


def feed(processor: Processor, events: list[Event], batch: int) -> tuple[float, int]:
    """Offer in batches, advancing and draining after each; returns (seconds, SLA records)."""
    sla = 0
    started = time.perf_counter()
    for start in range(0, len(events), batch):
        for event in events[start : start + batch]:
            processor.offer(event)
        processor.advance()
        sla += len(processor.drain().sla)
    return time.perf_counter() - started, sla


def open_tickets(processor: Processor) -> int:
    return sum(ticket.is_open for ticket in processor.tickets.values())


def traced_state(events: list[Event], batch: int, top: int) -> tuple[int, int, list[str]]:
    """Open the tickets under tracemalloc: (live bytes, peak bytes, the ``top`` allocation
    sites of what is still live, as ``file:line size``)."""
    gc.collect()
    tracemalloc.start()
    try:
        processor = Processor(CoreConfig())
        feed(processor, events, batch)
        processor.advance(events[-1].occurred_at_ms)
        processor.drain()
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
        snapshot = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    del processor
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sites = []
    for stat in snapshot.statistics("lineno")[:top]:
        frame = stat.traceback[0]
        code = linecache.getline(frame.filename, frame.lineno).strip()
        where = f"{os.path.relpath(frame.filename, root)}:{frame.lineno}"
        sites.append(f"{stat.size / 1e6:7.1f} MB  {where:<28} {code[:60]}")
    return current, peak, sites


def main() -> None:
    """Run the three phases and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=100_000, help="tickets to open")
    parser.add_argument("--hours", type=float, default=4.0, help="hours the creations spread over")
    parser.add_argument("--activity", type=int, default=100_000, help="replies/status changes")
    parser.add_argument("--batch", type=int, default=5_000, help="events per offer/advance/drain")
    parser.add_argument("--no-tracemalloc", action="store_true", help="skip the traced run")
    args = parser.parse_args()

    created = creations(args.tickets, args.hours)
    last_created_ms = created[-1].occurred_at_ms
    later = activity(args.tickets, args.activity, last_created_ms)
    print(
        f"python {platform.python_version()}; {args.tickets:,} tickets over {args.hours:g} h "
        f"({args.tickets // TICKETS_PER_CUSTOMER:,} customers), then {len(later):,} replies/"
        f"status changes over 2 h; batches of {args.batch:,}"
    )

    # 1. open --------------------------------------------------------------------------
    rss_before = rss_bytes()
    processor = Processor(CoreConfig())
    seconds, sla_open = feed(processor, created, args.batch)
    processor.advance(last_created_ms)
    sla_open += len(processor.drain().sla)
    rss_after = rss_bytes()
    still_open = open_tickets(processor)
    armed = len(processor.timers)
    fired_open = processor.counters.timers_fired
    state_rss = rss_after - rss_before
    print(f"open:     {seconds / len(created) * 1e6:8.2f} µs/event "
          f"({len(created) / seconds:,.0f} ev/s); {still_open:,} open tickets, {armed:,} timers "
          f"armed, {fired_open:,} fired already ({sla_open:,} SLA events: urgent/high tickets "
          f"at risk or breached within the {args.hours:g} h)")
    print(f"memory:   RSS +{state_rss / 1e6:,.1f} MB = {state_rss / still_open:,.0f} bytes per "
          f"open ticket (ticket + customer state, timers, dedupe ids)")

    # 2. activity --------------------------------------------------------------------
    fired_before = processor.counters.timers_fired
    seconds, sla_activity = feed(processor, later, args.batch)
    fired = processor.counters.timers_fired - fired_before
    print(f"activity: {seconds / len(later) * 1e6:8.2f} µs/event "
          f"({len(later) / seconds:,.0f} ev/s) incl. {fired:,} timers fired on the way; "
          f"{open_tickets(processor):,} still open, {len(processor.timers):,} timers in the heap "
          f"(stale ones are skipped when due), {sla_activity:,} SLA events")

    # 3. fire ------------------------------------------------------------------------
    fired_before = processor.counters.timers_fired
    heap = len(processor.timers)
    started = time.perf_counter()
    processor.advance(later[-1].occurred_at_ms + 6 * 24 * HOUR_MS)
    sla_fired = len(processor.drain().sla)
    seconds = time.perf_counter() - started
    fired = processor.counters.timers_fired - fired_before
    print(f"fire:     {seconds / max(1, fired) * 1e6:8.2f} µs/timer ({fired:,} timers fired in "
          f"{seconds * 1e3:,.0f} ms, heap held {heap:,}; {sla_fired:,} SLA events: at-risk and "
          f"breaches; stale timers fire as no-ops)")
    del processor

    if not args.no_tracemalloc:
        current, peak, sites = traced_state(created, args.batch, top=6)
        print(f"traced:   {current / 1e6:,.1f} MB live after opening = {current / still_open:,.0f} "
              f"bytes per open ticket (peak {peak / 1e6:,.1f} MB; tracemalloc run, separate)")
        print("          largest live allocation sites:")
        for site in sites:
            print(f"          {site}")

if __name__ == "__main__":
    main()
