"""Properties of the core that make streaming equal to replay.

* folding per-customer partitions separately and merging equals folding everything;
* any arrival order within the out-of-orderness bound gives identical records;
* a late event within allowed lateness yields revision n+1 equal to a batch run
  that included it.
"""

from __future__ import annotations

import random
import zlib
from collections import defaultdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.core.events import make_event
from streams.core.merge import Merger
from streams.core.pipeline import Processor
from tests.corekit import config
from tests.eventgen import generate, shuffle_within

WINDOWS = "5m,1h,1d,30d"


def values(records) -> dict:
    """Latest value per record key (what an upserting consumer holds)."""
    latest = {}
    for r in records:
        key = (r.kpi, r.size, r.start_ms, r.dims)
        if key not in latest or r.revision >= latest[key].revision:
            latest[key] = r
    return {k: (r.value, r.n, r.stats) for k, r in latest.items()}


def close(merger: Merger, watermark: int, close_slice: int) -> list:
    """``merger.advance``, or in slices of ``close_slice`` windows as stage 2 does."""
    if not close_slice:
        return merger.advance(watermark)
    records, more = merger.advance_some(watermark, close_slice)
    while more:
        some, more = merger.advance_some(watermark, close_slice)
        records += some
    return records


def live(merger: Merger, live_slice: int) -> list:
    """``merger.provisional``, or in slices of ``live_slice`` windows as stage 2 does."""
    if not live_slice:
        return merger.provisional()
    records, more = merger.provisional_some(live_slice)
    while more:
        some, more = merger.provisional_some(live_slice)
        records += some
    return records


def stream(events_per_partition: list[list], cfg, batch: int, final_watermark: int, advance_slice: int = 0,
           close_slice: int = 0, live_slice: int | None = None):
    """Drive one processor per partition like the runtime does, in batches, with one
    merger whose watermark is the minimum over partitions (``advance_slice``: advance
    in slices of that many events and timers, as stage 1 does; ``close_slice``: close
    windows that many at a time, as stage 2 does; ``live_slice``: also publish live
    figures after each round, that many windows at a time, 0: all at once)."""
    processors = [Processor(cfg) for _ in events_per_partition]
    merger = Merger(cfg.specs, cfg.lateness, cfg.min_sample)
    records, sla, signals = [], [], []
    cursors = [0] * len(processors)
    while any(c < len(evs) for c, evs in zip(cursors, events_per_partition, strict=True)):
        for i, (proc, evs) in enumerate(zip(processors, events_per_partition, strict=True)):
            for event in evs[cursors[i] : cursors[i] + batch]:
                proc.offer(event)
            cursors[i] += batch
            until = proc.watermark
            while proc.advance(until, advance_slice):
                assert advance_slice, "without a limit, advance finishes in one call"
            out = proc.drain()
            merger.add(out.aggs)
            sla += out.sla
            signals += out.signals
        records += close(merger, min(p.watermark for p in processors), close_slice)
        if live_slice is not None:
            records += live(merger, live_slice)
    for proc in processors:
        proc.advance(final_watermark)
        out = proc.drain()
        merger.add(out.aggs)
        sla += out.sla
        signals += out.signals
    records += close(merger, final_watermark, close_slice)
    records += merger.flush()
    return records, sorted(s.sort_key for s in sla), sorted(s.sort_key for s in signals)


def batch_run(events, cfg):
    final = max(e.occurred_at_ms for e in events)
    return stream([sorted(events, key=lambda e: (e.occurred_at_ms, e.event_id))], cfg, 10**9, final)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), partitions=st.integers(2, 5), batch=st.integers(1, 50))
def test_partitioned_fold_then_merge_equals_single_fold(seed, partitions, batch):
    cfg = config(WINDOWS, min_sample=3)
    events = generate(seed)
    expected_records, expected_sla, expected_signals = batch_run(events, cfg)
    by_partition: dict[int, list] = defaultdict(list)
    for event in events:
        by_partition[zlib.crc32(event.customer_id.encode()) % partitions].append(event)
    final = max(e.occurred_at_ms for e in events)
    records, sla, signals = stream(list(by_partition.values()), cfg, batch, final)
    assert values(records) == values(expected_records)
    assert sla == expected_sla
    assert signals == expected_signals


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), batch=st.integers(5, 200), advance_slice=st.integers(0, 7),
       close_slice=st.integers(0, 3), live_slice=st.integers(0, 3))
def test_advancing_closing_and_publishing_in_slices_gives_exactly_the_same_output(seed, batch, advance_slice,
                                                                                  close_slice, live_slice):
    cfg = config(WINDOWS, min_sample=3)
    events = sorted(generate(seed), key=lambda e: (e.occurred_at_ms, e.event_id))
    final = max(e.occurred_at_ms for e in events)
    whole = stream([events], cfg, batch, final, live_slice=0)
    sliced = stream([events], cfg, batch, final, advance_slice, close_slice, live_slice)
    assert sliced == whole
    assert any(not r.final for r in whole[0]), "live figures were published"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), shuffle_seed=st.integers(0, 10_000), batch=st.integers(1, 40))
def test_any_arrival_order_within_the_bound_gives_identical_records(seed, shuffle_seed, batch):
    cfg = config(WINDOWS, min_sample=3)
    events = generate(seed)
    expected = batch_run(events, cfg)
    arrived = shuffle_within(events, cfg.lateness.out_of_orderness_ms, random.Random(shuffle_seed))
    final = max(e.occurred_at_ms for e in events)
    records, sla, signals = stream([arrived], cfg, batch, final)
    assert values(records) == values(expected[0])
    assert (sla, signals) == (expected[1], expected[2])
    # nothing was revised: with order inside the bound every window's first final is right
    assert all(r.revision <= 0 for r in records)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), pick=st.integers(0, 10**6))
def test_late_event_within_lateness_yields_next_revision_equal_to_batch(seed, pick):
    # Late events are applied to per-customer state when they arrive (out of order),
    # so order-dependent figures (health, "first purchase") may differ from a batch run;
    # windowed sums of order-free events revise exactly. marketing.spend is such an event.
    cfg = config("5m,1h", min_sample=3)
    events = generate(seed)
    rng = random.Random(pick)
    start, end = events[0].occurred_at_ms, events[-1].occurred_at_ms
    late = make_event("marketing.spend", event_id=f"late-{pick}", occurred_at_ms=rng.randint(start, end),
                      customer_id="campaign-9", amount_minor=rng.randint(1, 10_000), currency="EUR", channel="tv")
    rest = events
    events = [*events, late]
    # deliver the late event after the stream moved 2 h past it (window closed, within 1 day)
    proc = Processor(cfg)
    merger = Merger(cfg.specs, cfg.lateness, cfg.min_sample)
    records = []
    for event in sorted(rest, key=lambda e: (e.occurred_at_ms, e.event_id)):
        proc.offer(event)
        proc.advance()
        merger.add(proc.drain().aggs)
        records += merger.advance(proc.watermark)
    horizon = max(late.occurred_at_ms + 2 * 3_600_000, proc.max_event_ms)
    proc.advance(horizon)
    merger.add(proc.drain().aggs)
    records += merger.advance(horizon)
    before = values(records)
    outcome = proc.offer(late)
    proc.advance(horizon)
    merger.add(proc.drain().aggs)
    revised = merger.advance(horizon)
    assert outcome == "late"
    assert revised, "a late event must republish its window"
    keys = {(r.kpi, r.size, r.start_ms, r.dims) for r in revised}
    for r in revised:
        assert r.final
        previous = [x for x in records if (x.kpi, x.size, x.start_ms, x.dims) == (r.kpi, r.size, r.start_ms, r.dims)]
        assert r.revision == (max(x.revision for x in previous) + 1 if previous else 0)
    # the upserted view now equals a batch run that had the event all along
    expected_all = values(
        stream([sorted(events, key=lambda e: (e.occurred_at_ms, e.event_id))], cfg, 10**9, horizon)[0]
    )
    after = {**before, **values(revised)}
    for key in keys:
        assert after[key] == expected_all[key]
