"""Batch mode: JSON-lines files -> the same core as the streaming runtime -> KPI records.

``replay`` is the reference the streaming runtime must reproduce: it decodes every
line with the same codec, drops duplicates (first occurrence in file order wins, as
on a Kafka partition), applies the events in (event time, event id) order through one
:class:`~streams.core.pipeline.Processor`, merges with one
:class:`~streams.core.merge.Merger`, and at the end closes every window
(watermark +infinity for windows). At the end of the input event time stands at the
last event's time: every event is applied, and SLA and inactivity timers fire up to
that instant - a ticket still open at the end of the data is not declared breached
by time that never passed. (The streaming worker reaches the same state when its
partitions go idle; see docs/architecture.md.)
"""

from __future__ import annotations

import gzip
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from streams.codec import Rejected, decode_event, dlq_record, encode_dlq
from streams.codec.records import kpi_sort_key
from streams.core.events import Event
from streams.core.merge import Merger
from streams.core.pipeline import CoreConfig, Processor
from streams.core.records import ChurnSignal, HealthChange, KpiRecord, SlaRecord

CHUNK = 20_000  # events between watermark advances (bounds memory, not results)


@dataclass
class ReplayResult:
    records: list[KpiRecord] = field(default_factory=list)
    sla: list[SlaRecord] = field(default_factory=list)
    signals: list[ChurnSignal] = field(default_factory=list)
    health: list[HealthChange] = field(default_factory=list)
    lines: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: Counter = field(default_factory=Counter)
    dropped_late: int = 0


def read_lines(paths: Iterable[Path]) -> Iterator[tuple[str, int, bytes]]:
    """Yield (file name, line number, raw bytes) of every non-blank line; ``.gz`` files are
    decompressed on the fly."""
    for path in paths:
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rb") as handle:
            for number, line in enumerate(handle, 1):
                line = line.rstrip(b"\r\n")
                if line.strip():
                    yield str(path), number, line


def run_replay(
    lines: Iterable[tuple[str, int, bytes]],
    config: CoreConfig,
    *,
    on_reject: Callable[[bytes], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Run the core over raw input lines; returns records sorted as ``replay`` writes them."""
    result = ReplayResult()
    events: list[Event] = []
    seen: set[str] = set()
    for source, number, raw in lines:
        result.lines += 1
        decoded = decode_event(raw)
        if isinstance(decoded, Rejected):
            result.rejected[str(decoded.reason)] += 1
            if on_reject is not None:
                record = dlq_record(decoded, topic=source, partition=-1, offset=number, key=None,
                                    original=raw, rejected_at_ms=int(time.time() * 1000))
                on_reject(encode_dlq(record))
        else:
            key = f"{decoded.customer_id}\x00{decoded.event_id}"
            if key in seen:
                result.duplicates += 1
            else:
                seen.add(key)
                events.append(decoded)
        if progress is not None and result.lines % 10_000 == 0:
            progress(result.lines)
    del seen
    result.accepted = len(events)
    run_events(events, config, result)
    return result


def run_events(events: list[Event], config: CoreConfig, result: ReplayResult | None = None) -> ReplayResult:
    """Apply decoded, de-duplicated events (any order) and close every window."""
    result = result or ReplayResult(accepted=len(events))
    events = sorted(events, key=lambda e: (e.occurred_at_ms, e.event_id))
    processor = Processor(config)
    merger = Merger(config.specs, config.lateness, config.min_sample)
    for offset in range(0, len(events), CHUNK):
        for event in events[offset : offset + CHUNK]:
            processor.offer(event)
        _step(processor, merger, result)
    # input ended: nothing is in flight any more, so event time is the last event's time
    _step(processor, merger, result, processor.max_event_ms)
    result.records.extend(merger.flush())
    result.dropped_late = processor.counters.dropped_late + merger.dropped_late
    result.duplicates += processor.counters.duplicates
    result.records.sort(key=kpi_sort_key)
    result.sla.sort(key=lambda r: r.sort_key)
    result.signals.sort(key=lambda s: s.sort_key)
    return result


def _step(processor: Processor, merger: Merger, result: ReplayResult, until: int | None = None) -> None:
    processor.advance(until)
    batch = processor.drain()
    merger.add(batch.aggs)
    result.sla.extend(batch.sla)
    result.signals.extend(batch.signals)
    result.health.extend(batch.health)
    result.records.extend(merger.advance(processor.watermark))


def write_jsonl(path: Path, items: Iterable, encode: Callable[[object], bytes]) -> int:
    count = 0
    with open(path, "wb") as handle:
        for item in items:
            handle.write(encode(item))
            handle.write(b"\n")
            count += 1
    return count

