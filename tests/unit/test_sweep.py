"""Processor.sweep (streams.core.pipeline): forgetting finished tickets and old event ids
changes no result, a sweep done in slices between batches (as stage 1 does, a slice per
batch) forgets exactly what a whole sweep forgets, and the changelog view of the tickets
stays the processor's own."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.core.merge import Merger
from streams.core.pipeline import CoreConfig, Processor
from streams.core.windows import Lateness, parse_window_specs
from tests.corekit import Events
from tests.eventgen import generate

HOUR = 3_600_000

# retention and allowed lateness short against the generated span (12 h of tickets, each
# running for up to 6 h more), so sweeps do forget tickets and event ids
CFG = CoreConfig(specs=parse_window_specs("5m,1h"), lateness=Lateness(30_000, 60_000, HOUR), min_sample=3,
                 ticket_retention_ms=2 * HOUR)


def run(events, batch: int, sweep_limit: int | None):
    """Batches through one processor and a merger; after each batch one sweep call
    (``sweep_limit`` None: never, 0: a whole sweep, k: a slice of k). Returns the outputs,
    the processor, and the ticket keys a changelog built from take_dirty would hold
    (values first, then tombstones, as stage 1 writes them)."""
    proc = Processor(CFG)
    merger = Merger(CFG.specs, CFG.lateness, CFG.min_sample)
    records, sla, signals = [], [], []
    changelog: set[tuple[str, str]] = set()
    final = max(e.occurred_at_ms for e in events)

    def hand_over(watermark: int) -> None:
        out = proc.drain()
        merger.add(out.aggs)
        sla.extend(s.sort_key for s in out.sla)
        signals.extend(s.sort_key for s in out.signals)
        records.extend(merger.advance(watermark))
        _, tickets, forgotten = proc.take_dirty()
        changelog.update((t.customer_id, t.ticket_id) for t in tickets)
        changelog.difference_update(forgotten)

    for i in range(0, len(events), batch):
        for event in events[i : i + batch]:
            proc.offer(event)
        proc.advance()
        if sweep_limit is not None:
            proc.sweep(sweep_limit)
        hand_over(proc.watermark)
    proc.advance(final)
    if sweep_limit is not None:
        while proc.sweep(sweep_limit):  # the sweep in progress, begun at an earlier horizon
            pass
        while proc.sweep(sweep_limit):  # and one from the final horizon
            pass
    hand_over(final)
    records.extend(merger.flush())
    outputs = ({(r.kpi, r.size, r.start_ms, r.dims, r.revision): (r.value, r.n, r.stats) for r in records},
               sorted(sla), sorted(signals))
    return outputs, proc, changelog


def state(proc: Processor):
    return set(proc.tickets), {cid: dict(c.seen) for cid, c in proc.customers.items()}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), batch=st.integers(3, 60), limit=st.integers(1, 9))
def test_sweeping_whole_or_in_slices_changes_no_output_and_forgets_the_same(seed, batch, limit):
    events = sorted(generate(seed, customers=10, span_ms=12 * HOUR), key=lambda e: (e.occurred_at_ms, e.event_id))
    unswept, kept, kept_log = run(events, batch, None)
    whole, proc_whole, log_whole = run(events, batch, 0)
    sliced, proc_sliced, log_sliced = run(events, batch, limit)
    assert whole == unswept
    assert sliced == unswept
    assert state(proc_sliced) == state(proc_whole)
    assert log_whole == set(proc_whole.tickets) and log_sliced == set(proc_sliced.tickets)
    assert kept_log == set(kept.tickets)
    # the sweeps did forget: finished tickets idle for 2 h, event ids older than the lateness
    assert len(proc_whole.tickets) <= len(kept.tickets)
    assert sum(len(c.seen) for c in proc_whole.customers.values()) < sum(len(c.seen) for c in kept.customers.values())


def test_a_ticket_back_after_a_sweep_forgot_it_is_written_not_tombstoned():
    ev = Events()
    ev.add("ticket.created", "00:00", "A", ticket_id="T1", priority="normal", channel="email")
    ev.add("ticket.status_changed", "00:10", "A", ticket_id="T1", status="solved")
    ev.add("session.started", "03:00", "B")
    proc = Processor(CFG)
    for event in ev.items:
        proc.offer(event)
    proc.advance(ev.items[-1].occurred_at_ms)
    proc.take_dirty()  # committed
    assert not proc.sweep()
    assert ("A", "T1") not in proc.tickets  # solved 2 h 50 min ago: forgotten
    # before the next commit the ticket comes back (a customer replies to the old thread)
    back = Events()
    back._ids = iter(range(100, 200))
    back.add("ticket.replied", "03:01", "A", ticket_id="T1", author="customer")
    proc.offer(back.items[0])
    proc.advance(back.items[0].occurred_at_ms)
    _, tickets, forgotten = proc.take_dirty()
    assert [(t.customer_id, t.ticket_id) for t in tickets] == [("A", "T1")]
    assert ("A", "T1") not in forgotten  # a tombstone after its new state would delete it on restore


def test_a_sliced_sweep_resumes_where_it_stopped_and_restarts_after_a_restore():
    ev = Events()
    for i in range(10):
        ev.add("session.started", "00:00", f"c{i}")
    ev.add("session.started", "03:00", "late-comer")
    proc = Processor(CFG)
    for event in ev.items:
        proc.offer(event)
    proc.advance(ev.items[-1].occurred_at_ms)
    calls = 1
    while proc.sweep(3):
        calls += 1
    assert calls == 4  # 11 customers, 3 per call
    assert all(not proc.customers[f"c{i}"].seen for i in range(10))  # ids 3 h old: past the 1 h lateness
    assert proc.customers["late-comer"].seen
    assert proc.sweep(3)  # a new sweep
    proc.restore(list(proc.customers.values()), [], proc.applied_until_ms, proc.max_event_ms)
    calls = 1
    while proc.sweep(3):
        calls += 1
    assert calls == 4  # started over on the restored state
