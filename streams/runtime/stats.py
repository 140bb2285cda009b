"""Counters and gauges of one worker, updated by the stages on the event loop and read
by the Prometheus collector at scrape time (same loop: no locking needed)."""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field

from streams.core.aggregates import Count, Survey
from streams.core.records import ChurnSignal, SlaRecord

# count bases exported as cumulative counters, per priority (catalogue §6: the parts of
# every ratio, so PromQL can recompute it)
TICKET_COUNTERS = (
    "tickets_created",
    "tickets_solved",
    "tickets_solved_first_contact",
    "tickets_reopened",
    "tickets_escalated",
)
BATCH_SIZE_BUCKETS = (1, 10, 100, 1_000, 5_000, 20_000, 100_000)
BATCH_SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
STALL_SECONDS_BUCKETS = (0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# a task's restore from its changelog; 45 s is the group's session timeout
RESTORE_SECONDS_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 45.0, 90.0, 300.0)


@dataclass
class Histogram:
    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.n += 1

    def cumulative(self) -> list[tuple[str, int]]:
        running, out = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
        return out


@dataclass
class RuntimeStats:
    processed: Counter = field(default_factory=Counter)  # (topic, partition) -> events
    rejected: Counter = field(default_factory=Counter)  # reason -> messages
    duplicates: int = 0
    late: int = 0
    dropped_late: int = 0
    published: Counter = field(default_factory=Counter)  # "true"/"false" (final) -> records
    sla_events: Counter = field(default_factory=Counter)  # (metric, state, priority)
    signals: Counter = field(default_factory=Counter)  # signal -> count
    ticket_counts: Counter = field(default_factory=Counter)  # (base, priority)
    survey_responses: Counter = field(default_factory=Counter)  # (survey, score)
    lag: dict[tuple[str, int], int] = field(default_factory=dict)
    watermarks: dict[tuple[str, int], int] = field(default_factory=dict)  # (stage, partition) -> ms
    last_input: dict[int, float] = field(default_factory=dict)  # partition -> unix seconds
    owned: dict[tuple[str, str], int] = field(default_factory=dict)
    recoveries: Counter = field(default_factory=Counter)  # stage -> tasks restored after a failed batch
    label_overflow: Counter = field(default_factory=Counter)  # label -> values mapped to "other"
    batch_sizes: dict[str, Histogram] = field(default_factory=dict)
    batch_seconds: dict[str, Histogram] = field(default_factory=dict)
    restore_seconds: dict[str, Histogram] = field(default_factory=dict)
    loop_stalls: Histogram = field(default_factory=lambda: Histogram(STALL_SECONDS_BUCKETS))
    gc_seconds: Counter = field(default_factory=Counter)  # generation -> seconds in garbage collection
    gc_collections: Counter = field(default_factory=Counter)  # generation -> collections

    def task_taken(self, input_topics: list[str], partition: int) -> None:
        """A stage-1 task of ``partition`` is this worker's now: its input series from 0."""
        for topic in input_topics:
            self.processed[(topic, partition)] += 0

    def zero(self) -> RuntimeStats:
        """Export every known counter series from start-up at 0, so that the first
        increase after a restart is visible to ``rate()`` (alerts depend on it). The
        processed-events series are per partition: they start at 0 when this worker
        takes a stage-1 task (:meth:`task_taken`)."""
        from streams.codec import Reason
        from streams.core.events import PRIORITIES

        for reason in Reason:
            self.rejected[reason.value] += 0
        for metric in ("first_reply", "resolution"):
            for state in ("at_risk", "breached", "met"):
                for priority in PRIORITIES:
                    self.sla_events[(metric, state, priority)] += 0
        for final in ("true", "false"):
            self.published[final] += 0
        for stage in ("stage1", "stage2"):
            self.recoveries[stage] += 0
            self.restore_seconds.setdefault(stage, Histogram(RESTORE_SECONDS_BUCKETS))
        from streams.core.labels import LIMITED_LABELS

        for label in LIMITED_LABELS:
            self.label_overflow[label] += 0
        for generation in ("0", "1", "2"):
            self.gc_seconds[generation] += 0
            self.gc_collections[generation] += 0
        return self

    def observe_gc(self, generation: int, seconds: float) -> None:
        """One garbage collection of ``generation`` that held the worker ``seconds``."""
        key = str(generation)
        self.gc_seconds[key] += seconds
        self.gc_collections[key] += 1

    def observe_batch(self, stage: str, size: int) -> None:
        self.batch_sizes.setdefault(stage, Histogram(BATCH_SIZE_BUCKETS)).observe(size)

    def observe_seconds(self, stage: str, seconds: float) -> None:
        self.batch_seconds.setdefault(stage, Histogram(BATCH_SECONDS_BUCKETS)).observe(seconds)

    def observe_restore(self, stage: str, seconds: float) -> None:
        """A task of ``stage`` was opened: restored from its changelog in ``seconds``."""
        self.restore_seconds.setdefault(stage, Histogram(RESTORE_SECONDS_BUCKETS)).observe(seconds)

    def sla_events_from(self, records: list[SlaRecord]) -> None:
        for record in records:
            self.sla_events[(record.metric, record.state, record.priority)] += 1

    def signals_from(self, signals: list[ChurnSignal]) -> None:
        for signal in signals:
            self.signals[signal.signal] += 1

    def counts_from(self, aggs: dict) -> None:
        """Cumulative counters from a batch of stage-1 partials (per priority for ticket
        counts, per score for survey answers)."""
        for (base, dims, _pane), agg in aggs.items():
            if base in TICKET_COUNTERS and len(dims) == 1 and dims[0][0] == "priority":
                assert isinstance(agg, Count)
                self.ticket_counts[(base, dims[0][1])] += agg.n
            elif isinstance(agg, Survey) and not dims:
                for offset, count in enumerate(agg.counts):
                    if count:
                        self.survey_responses[(base, agg.low + offset)] += count

    def forget_partition(self, stage: str, topics: list[str], partition: int) -> None:
        """A revoked partition's series disappear."""
        for topic in topics:
            self.lag.pop((topic, partition), None)
        self.watermarks.pop((stage, partition), None)
        if stage == "stage1":
            self.last_input.pop(partition, None)
