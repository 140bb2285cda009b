"""Merger.latest_final (what the gauges show) is kept as windows are published, revised
and expire; it must always equal the newest final window per series among the
published ones, also after a restore from the changelog."""

from __future__ import annotations

import pytest

from streams.core.merge import Merger
from streams.core.pipeline import CoreConfig, Processor
from streams.core.records import KpiRecord
from streams.core.windows import Lateness, parse_window_specs
from tests.eventgen import generate


def newest_final_by_scan(merger: Merger) -> dict[tuple[str, str, tuple], KpiRecord]:
    """The definition: scan every published entry (what latest_final did before)."""
    latest: dict[tuple[str, str, tuple], KpiRecord] = {}
    for state in merger.states:
        size, name = state.spec.size_ms, state.spec.name
        for (kpi, dims, start), (revision, (value, n, stats)) in state.published.items():
            if revision < 0:
                continue
            key = (kpi, name, dims)
            if key not in latest or latest[key].start_ms < start:
                latest[key] = KpiRecord(kpi, name, start, start + size, dims, value, n, dict(stats), revision, True)
    return latest


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_latest_final_equals_a_scan_of_the_published_windows_at_every_step(seed):
    # a short allowed lateness, so that windows expire during the run; a late event now
    # and then, so that closed windows get revisions
    config = CoreConfig(specs=parse_window_specs("5m,1h"), lateness=Lateness(30_000, 60_000, 2 * 3_600_000),
                        min_sample=3)
    events = sorted(generate(seed, customers=30, span_ms=12 * 3_600_000), key=lambda e: e.occurred_at_ms)
    for i in range(0, len(events) - 6, 20):  # every 20th event arrives six events (~25 min) late
        events.insert(i + 6, events.pop(i))
    processor = Processor(config)
    merger = Merger(config.specs, config.lateness, config.min_sample)
    changes = []
    expired_once = revised = False
    for offset in range(0, len(events), 25):
        for event in events[offset : offset + 25]:
            processor.offer(event)
        processor.advance()
        merger.add(processor.drain().aggs)
        records = merger.advance(processor.watermark) + merger.provisional()
        revised = revised or any(r.revision > 0 for r in records)
        changes.append(merger.take_changes())
        expired_once = expired_once or any(c.removed_published for c in changes[-1:])
        assert merger.latest_final() == newest_final_by_scan(merger)
    assert expired_once and revised, "the run must exercise expiry and revisions"
    assert merger.latest_final()

    restored = Merger(config.specs, config.lateness, config.min_sample)
    buckets, published = {}, {}
    for change in changes:  # what a compacted changelog holds at the end
        for i, base, dims, bucket, agg in change.buckets:
            buckets[(i, base, dims, bucket)] = agg
        for key in change.removed_buckets:
            buckets.pop(key, None)
        for i, kpi, dims, start, entry in change.published:
            published[(i, kpi, dims, start)] = entry
        for key in change.removed_published:
            published.pop(key, None)
    restored.restore([(*k, v) for k, v in buckets.items()], [(*k, v) for k, v in published.items()],
                     changes[-1].specs, changes[-1].watermark, changes[-1].dropped_late)
    assert restored.latest_final() == merger.latest_final()
