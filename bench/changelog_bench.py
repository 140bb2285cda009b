"""Stage-1 changelog of a busy customer: bytes and CPU per event, its dedupe ids in its record vs in chunks.

Run: ``python -m bench.changelog_bench [--per-day 20000] [--days 2] [--per-commit 1]``

One customer gets ``--per-day`` events a day (sessions and interactions, UUID event ids,
evenly spread) for ``--days`` days, through one :class:`~streams.core.pipeline.Processor`
with the default lateness (so a day of ids is remembered for dedupe) and a sweep every
simulated minute, as a task does. Every ``--per-commit`` events are one commit: the
customer's changelog records are planned and encoded as the stage-1 runtime does
(:func:`streams.runtime.stage1.customer_changelog`) in two
layouts over the same input in the same run:

* ``in the record``: the customer's record holds all its ids (``spill_at`` at its
  maximum: the layout before ``CRM_KPI_DEDUPE_INLINE_IDS``);
* ``in chunks``: the default ``spill_at`` (256): ids beyond it go to chunks appended per
  commit and rewritten every 32.

A live worker commits every 100 ms, and a customer with a few events a minute is in a
different commit with each of them: ``--per-commit 1``. Figures are for the last day
only (the first fills the dedupe horizon): bytes and records written per event, CPU
per event of planning and encoding (the processor's own work, the same in both, is not
timed), what a restore reads at the end (records, bytes, decode time). Nothing is
asserted; the ratio of the two layouts is the figure to quote.
"""

from __future__ import annotations

import argparse
import platform
import random
import time
import uuid

from streams.core.chunks import SPILL_AT, IdChunks
from streams.core.events import Event, make_event
from streams.core.pipeline import CoreConfig, Processor
from streams.core.sla import SlaPolicies
from streams.runtime.stage1 import StateRestore, customer_changelog

DAY_MS = 86_400_000
MINUTE_MS = 60_000
START_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z
INLINE_MAX = 100_000  # the setting's maximum: every customer keeps its ids in its record


def busy_customer(per_day: int, days: float, seed: int = 7) -> list[Event]:
    """The events of one busy customer, evenly spread, with UUID event ids."""
    rng = random.Random(seed)
    count = int(per_day * days)
    step = DAY_MS / per_day
    events = []
    for i in range(count):
        ts = START_MS + int(i * step)
        event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        if i % 3:
            events.append(make_event("session.started", event_id=event_id, occurred_at_ms=ts,
                                     customer_id="acme-corp", source="web", product="app"))
        else:
            events.append(make_event("interaction.logged", event_id=event_id, occurred_at_ms=ts,
                                     customer_id="acme-corp", source="crm", interaction_id=f"i{i}",
                                     channel="chat", direction="inbound", handle_time_s=120))
    return events


def run(events: list[Event], spill_at: int, per_commit: int, measure_from_ms: int) -> dict[str, float]:
    """Feed ``events`` through a Processor, committing every ``per_commit``; the changelog
    cost of the customer in the layout of ``spill_at``."""
    proc = Processor(CoreConfig())
    chunks = IdChunks(spill_at)
    log: dict[bytes, bytes] = {}
    written = records = measured_events = 0
    seconds = 0.0
    next_sweep = events[0].occurred_at_ms + MINUTE_MS
    for start in range(0, len(events), per_commit):
        batch = events[start:start + per_commit]
        for event in batch:
            proc.offer(event)
        now = batch[-1].occurred_at_ms
        proc.advance(now)
        proc.drain()
        if now >= next_sweep:
            proc.sweep()
            next_sweep = now + MINUTE_MS
        customers, _, _ = proc.take_dirty()
        began = time.perf_counter()
        chunks.begin_commit()
        out: list[tuple[bytes, bytes | None]] = []
        chunk_writes: list[tuple[bytes, bytes | None]] = []
        for customer in customers:
            out.append(customer_changelog(customer, chunks, chunk_writes))
        out.extend(chunk_writes)
        spent = time.perf_counter() - began
        for key, value in out:
            if value is None:
                log.pop(key, None)
            else:
                log[key] = value
        if now >= measure_from_ms:
            seconds += spent
            measured_events += len(batch)
            written += sum(len(key) + len(value or b"") for key, value in out)
            records += len(out)
    # a restore of the compacted log
    began = time.perf_counter()
    cutoff = proc.dedupe_cutoff(proc.applied_until_ms)
    restored = StateRestore.of(log, SlaPolicies.default(), IdChunks(spill_at), 50_000, cutoff).customers
    restore_seconds = time.perf_counter() - began
    live = proc.customers["acme-corp"].seen
    # every id still needed is back, in order (a restore from chunks drops what the next
    # sweep would: older than the cutoff)
    needed = [event_id for event_id, ts in live.items() if ts >= cutoff]
    wanted = set(needed)
    assert [event_id for event_id in restored["acme-corp"].seen if event_id in wanted] == needed, "the restore lost ids"
    return {
        "events": measured_events,
        "bytes_per_event": written / measured_events,
        "records_per_event": records / measured_events,
        "us_per_event": seconds / measured_events * 1e6,
        "ids_remembered": len(live),
        "restore_records": len(log),
        "restore_bytes": sum(len(k) + len(v) for k, v in log.items()),
        "restore_ms": restore_seconds * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-day", type=int, default=20_000, help="the busy customer's events a day")
    parser.add_argument("--days", type=float, default=2.0, help="days of events (figures: the last day)")
    parser.add_argument("--per-commit", type=int, default=1, help="the customer's events per commit")
    args, _ = parser.parse_known_args()  # `python -m bench -- ...` passes every benchmark's arguments
    events = busy_customer(args.per_day, args.days)
    measure_from = START_MS + int((args.days - 1) * DAY_MS)
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}; "
          f"{len(events):,} events of one customer over {args.days:g} days ({args.per_day:,} a day), "
          f"{args.per_commit} per commit; figures for the last day")
    results = {}
    for name, spill_at in (("in the record", INLINE_MAX), (f"in chunks (spill_at {SPILL_AT})", SPILL_AT)):
        results[name] = r = run(events, spill_at, args.per_commit, measure_from)
        print(f"  ids {name:<26} {r['bytes_per_event']:>11,.0f} B/event {r['records_per_event']:5.2f} records/event "
              f"{r['us_per_event']:8.1f} µs/event | remembered {r['ids_remembered']:,}; restore reads "
              f"{r['restore_records']:,} records, {r['restore_bytes'] / 1e6:.2f} MB in {r['restore_ms']:.1f} ms")
    before, after = results.values()
    print(f"  chunks / record: bytes {after['bytes_per_event'] / before['bytes_per_event']:.4f}x, "
          f"CPU {after['us_per_event'] / before['us_per_event']:.4f}x")


if __name__ == "__main__":
    main()
