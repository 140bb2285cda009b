"""Core fold throughput: events/s through Processor and Merger on one core, decode excluded.

Run: ``python -m bench.core_bench [--events 200000] [--source simulate|eventgen] [--batch 5000]
[--repeat 2] [--gc worker|default] [--profile 20]``

Input (``--source``): a simulated day of CRM activity for enough customers to reach
``--events`` — from the project simulator ``streams.simulate`` (the default: realistic
mix, dominated by sessions and subscriptions, tickets on a diurnal curve) or from the
compact test generator ``tests.eventgen`` (every customer has tickets, surveys,
sessions, purchases: ticket-heavy) — sorted by (event time, id), as a partition delivers
them within the out-of-orderness bound. Events are decoded beforehand: only the core is
timed.

Timed per batch of ``--batch`` events, as the streaming worker runs the core:

- stage 1 (the *fold*): ``Processor.offer`` for each event, then ``advance()`` and
  ``drain()`` — dedupe, buffering, ticket/customer state, SLA and inactivity timers,
  pane partials;
- stage 2 (the *merge*): ``Merger.add(partials)`` and ``Merger.advance(watermark)`` —
  window buckets, closing and publishing KPI records — plus the final ``flush``.

Baseline, in the same process and run: a plain Python loop over the same events that
reads ``event.occurred_at_ms`` and counts events per type in a dict — about the least
any per-event Python code can do — so "× baseline" says how many trivial loops one core
event costs, fairly independent of the machine. Best of ``--repeat`` runs (fresh state
each); peak RSS from ``getrusage``. ``--profile N`` adds one cProfile'd run and prints its
N most expensive functions (own time), to show where the time goes. A measurement tool,
not a test.
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import time
from dataclasses import dataclass

from streams.core import native
from streams.core.events import Event
from streams.core.merge import Merger
from streams.core.pipeline import CoreConfig, Processor

DAY_MS = 86_400_000
START_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z
TARGET_EVENTS_PER_S = 300_000  # the goal for the fold


def eventgen_day(target_events: int, seed: int = 2026) -> list[Event]:
    """About ``target_events`` events of one day from ``tests.eventgen`` (a compact mix:
    every customer has tickets, surveys, sessions, purchases), sorted by (time, id)."""
    from tests.eventgen import generate  # the repository root is on sys.path (python -m)

    sample = generate(seed, customers=500, start_ms=START_MS, span_ms=DAY_MS)
    customers = max(1, round(target_events * 500 / max(1, len(sample))))
    events = generate(seed, customers=customers, start_ms=START_MS, span_ms=DAY_MS)
    events.sort(key=lambda event: (event.occurred_at_ms, event.event_id))
    return events


def simulator_day(target_events: int, seed: int = 2026) -> list[Event]:
    """About ``target_events`` clean events from the project simulator (``streams.simulate``:
    one day of arrivals plus their follow-ups, opening subscriptions announced first),
    decoded here — untimed — and sorted by (time, id)."""
    from streams.codec import decode_event
    from streams.simulate import SimConfig, generate

    def run(customers: int) -> list[Event]:
        config = SimConfig(seed=seed, customers=customers, duplicates=0, late=0, malformed=0)
        return [decode_event(message.value) for message in generate(config)]

    sample = run(2_000)
    events = run(max(1, round(target_events * 2_000 / max(1, len(sample)))))
    assert all(isinstance(event, Event) for event in events)
    events.sort(key=lambda event: (event.occurred_at_ms, event.event_id))
    return events


SOURCES = {"simulate": simulator_day, "eventgen": eventgen_day}


def baseline_seconds(events: list[Event]) -> float:
    """Seconds for the trivial loop: read the event time, count per type."""
    started = time.perf_counter()
    counts: dict[str, int] = {}
    latest = 0
    for event in events:
        ts = event.occurred_at_ms
        if ts > latest:
            latest = ts
        counts[event.event_type] = counts.get(event.event_type, 0) + 1
    elapsed = time.perf_counter() - started
    assert sum(counts.values()) == len(events)
    return elapsed


@dataclass
class Timing:
    """Seconds spent per phase in one run, and what came out."""

    offer: float = 0.0
    advance: float = 0.0
    drain: float = 0.0
    merge_add: float = 0.0
    merge_advance: float = 0.0
    flush: float = 0.0
    kpi_records: int = 0
    sla_records: int = 0
    signals: int = 0
    partial_keys: int = 0
    applied: int = 0
    timers_fired: int = 0

    @property
    def fold(self) -> float:
        return self.offer + self.advance + self.drain

    @property
    def merge(self) -> float:
        return self.merge_add + self.merge_advance + self.flush


def run_core(events: list[Event], batch: int, config: CoreConfig) -> Timing:
    """One pass of all events through a fresh Processor and Merger, timed by phase."""
    clock = time.perf_counter
    timing = Timing()
    processor = Processor(config)
    merger = Merger(config.specs, config.lateness, config.min_sample)

    def step(until: int | None) -> None:
        t0 = clock()
        processor.advance(until)
        t1 = clock()
        partials = processor.drain()
        t2 = clock()
        merger.add(partials.aggs)
        t3 = clock()
        records = merger.advance(processor.watermark)
        t4 = clock()
        timing.advance += t1 - t0
        timing.drain += t2 - t1
        timing.merge_add += t3 - t2
        timing.merge_advance += t4 - t3
        timing.kpi_records += len(records)
        timing.sla_records += len(partials.sla)
        timing.signals += len(partials.signals)
        timing.partial_keys += len(partials.aggs)

    offer = processor.offer
    for start in range(0, len(events), batch):
        chunk = events[start : start + batch]
        t0 = clock()
        for event in chunk:
            offer(event)
        timing.offer += clock() - t0
        step(None)
    step(processor.max_event_ms)  # end of input: apply what is still buffered
    t0 = clock()
    timing.kpi_records += len(merger.flush())
    timing.flush = clock() - t0
    timing.applied = processor.counters.applied
    timing.timers_fired = processor.counters.timers_fired
    return timing


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 1024 / 1024


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:>12,.0f} ev/s {seconds / count * 1e6:>8.2f} µs/ev"


def main() -> None:
    """Generate, run, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="approximate event count")
    parser.add_argument("--source", choices=sorted(SOURCES), default="simulate",
                        help="where the events come from")
    parser.add_argument("--batch", type=int, default=5_000, help="events per offer/advance/drain")
    parser.add_argument("--repeat", type=int, default=2, help="runs; the fastest fold counts")
    parser.add_argument("--windows", default="5m,1h,1d,30d", help="window sizes")
    parser.add_argument("--gc", choices=("worker", "default"), default="worker",
                        help="garbage-collector thresholds: the worker's tuned ones or CPython's defaults")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also profile one run and print the top N functions")
    args = parser.parse_args()

    from streams.core.windows import parse_window_specs

    config = CoreConfig(specs=parse_window_specs(args.windows))
    began = time.perf_counter()
    events = SOURCES[args.source](args.events)
    generated_s = time.perf_counter() - began
    customers = len({event.customer_id for event in events})
    tickets = sum(event.event_type == "ticket.created" for event in events)
    rss_inputs = peak_rss_mb()
    print(
        f"python {platform.python_version()} on {platform.machine()}; {len(events):,} events "
        f"from {args.source} ({customers:,} customers, {tickets:,} tickets, "
        f"{(events[-1].occurred_at_ms - events[0].occurred_at_ms) / DAY_MS:.1f} days of event time) "
        f"generated in {generated_s:.1f} s; "
        f"windows {args.windows}; batches of {args.batch:,}; best of {args.repeat}; gc {args.gc}; "
        f"core {native.status}"
    )

    if args.gc == "worker":
        from streams.runtime.worker import tune_gc

        tune_gc()  # as the streaming worker runs (after the input exists, like its restored state)
    base = min(baseline_seconds(events) for _ in range(max(3, args.repeat)))
    runs = [run_core(events, args.batch, config) for _ in range(args.repeat)]
    best = min(runs, key=lambda timing: timing.fold)
    n = len(events)

    print(f"{'baseline loop (read time, count type)':<42}{_rate(n, base)}")
    print(f"{'stage 1 fold: offer+advance+drain':<42}{_rate(n, best.fold)}  "
          f"{best.fold / base:5.1f}× baseline")
    print(f"{'  offer':<42}{_rate(n, best.offer)}")
    print(f"{'  advance (apply + timers)':<42}{_rate(n, best.advance)}")
    print(f"{'  drain (hand-over, no copying)':<42}{best.drain * 1e3:>12.1f} ms in all")
    print(f"{'stage 2 merge: add+advance+flush':<42}{_rate(n, best.merge)}  "
          f"{best.merge / base:5.1f}× baseline")
    print(f"{'  Merger.add':<42}{_rate(n, best.merge_add)}")
    print(f"{'  Merger.advance':<42}{_rate(n, best.merge_advance)}")
    print(f"{'  final flush':<42}{best.flush * 1e3:>12.1f} ms in all")
    print(f"{'fold + merge':<42}{_rate(n, best.fold + best.merge)}  "
          f"{(best.fold + best.merge) / base:5.1f}× baseline")
    verdict = "meets" if n / best.fold >= TARGET_EVENTS_PER_S else "below"
    print(f"fold target {TARGET_EVENTS_PER_S:,} ev/s: {verdict} "
          f"({n / best.fold / TARGET_EVENTS_PER_S:.0%} of it)")
    print(f"out: {best.applied:,} applied, {best.timers_fired:,} timers fired, "
          f"{best.partial_keys:,} partial aggregates handed to stage 2 "
          f"({best.partial_keys / n:.2f} per event), {best.kpi_records:,} KPI records, "
          f"{best.sla_records:,} SLA events, {best.signals:,} churn signals")
    print(f"peak RSS {peak_rss_mb():,.0f} MB (after generating the input: {rss_inputs:,.0f} MB)")
    if args.profile:
        profile(events, args.batch, config, args.profile)


def profile(events: list[Event], batch: int, config: CoreConfig, top: int) -> None:
    """One more run under cProfile; print the ``top`` functions by own time."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    run_core(events, batch, config)
    profiler.disable()
    print(f"profile of one run (cProfile slows it down), top {top} by own time:")
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(top)


if __name__ == "__main__":
    main()
