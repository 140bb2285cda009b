"""The custom Prometheus collector (docs/metrics.md).

``collect()`` reads, at scrape time, the latest final KPI records of the stage-2 tasks
this worker owns and the worker's runtime stats, and yields metric families. Nothing is
updated per event: the hot path never touches Prometheus objects.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from streams import __version__
from streams.core.records import KpiRecord
from streams.core.registry import KPI_BY_NAME, Kpi
from streams.runtime.stats import RuntimeStats

QUANTILES = (("0.5", "p50"), ("0.9", "p90"), ("0.99", "p99"))


def kpi_label_names(kpi: Kpi) -> list[str]:
    """Every dimension label the KPI can carry, sorted, after ``window``."""
    names = sorted({name for dim_set in kpi.dims for name in dim_set})
    return ["window", *names]


def _labels(record: KpiRecord, names: list[str]) -> list[str]:
    dims = dict(record.dims)
    return [record.size if name == "window" else dims.get(name, "") for name in names]


def _number(value: object) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    return float(value)


def kpi_families(records: Iterable[KpiRecord]) -> Iterator[GaugeMetricFamily]:
    """Gauge families for the latest KPI records, named and labelled per docs/metrics.md.

    Names (``Kpi.metric`` / ``Kpi.metrics``) and HELP texts (``Kpi.help``) come from the
    KPI registry; a record of a KPI without a registry entry is a bug (KeyError)."""
    by_kpi: dict[str, list[KpiRecord]] = {}
    for record in records:
        by_kpi.setdefault(record.kpi, []).append(record)
    for name in sorted(by_kpi):
        kpi = KPI_BY_NAME[name]
        labels = kpi_label_names(kpi)
        rows = sorted(by_kpi[name], key=lambda r: (r.size, r.dims))
        if kpi.kind == "distribution":
            yield from _distribution(kpi, labels, rows)
        elif kpi.kind == "score":
            yield from _score(kpi, labels, rows)
        else:
            family = GaugeMetricFamily(kpi.metric, kpi.help, labels=labels)
            for record in rows:
                value = _number(record.value)
                if value is not None:
                    family.add_metric(_labels(record, labels), value)
            yield family


def _distribution(kpi: Kpi, labels: list[str], rows: list[KpiRecord]) -> Iterator[GaugeMetricFamily]:
    base = f"crm_{kpi.name}"
    quantiles = GaugeMetricFamily(base, kpi.help, labels=[*labels, "quantile"])
    mean = GaugeMetricFamily(f"{base}_mean", f"mean of {kpi.name}: {kpi.help}", labels=labels)
    samples = GaugeMetricFamily(f"{base}_samples", f"samples behind {kpi.name} in the window: {kpi.help}",
                                labels=labels)
    for record in rows:
        values = _labels(record, labels)
        for quantile, key in QUANTILES:
            q = _number(record.stats.get(key))
            if q is not None:
                quantiles.add_metric([*values, quantile], q)
        if (m := _number(record.value)) is not None:
            mean.add_metric(values, m)
        samples.add_metric(values, float(record.n))
    yield from (quantiles, mean, samples)


def _score(kpi: Kpi, labels: list[str], rows: list[KpiRecord]) -> Iterator[GaugeMetricFamily]:
    value_family = GaugeMetricFamily(kpi.metric, kpi.help, labels=labels)
    responses = GaugeMetricFamily(f"crm_{kpi.name}_responses", f"responses behind {kpi.name}: {kpi.help}",
                                  labels=labels)
    margin = GaugeMetricFamily("crm_nps_margin_of_error", f"95% margin of error of NPS (points): {kpi.help}",
                               labels=labels)
    for record in rows:
        values = _labels(record, labels)
        responses.add_metric(values, float(record.n))
        if record.stats.get("suppressed"):
            continue  # noise: below min_sample there is no value to show
        if (v := _number(record.value)) is not None:
            value_family.add_metric(values, v)
        if kpi.name == "nps" and (moe := _number(record.stats.get("margin_of_error"))) is not None:
            margin.add_metric(values, moe)
    yield value_family
    yield responses
    if kpi.name == "nps":
        yield margin


class WorkerCollector(Collector):
    """Everything a worker exposes, built from snapshots at scrape time."""

    def __init__(self, stats: RuntimeStats, latest_records: Callable[[], list[KpiRecord]], app_id: str) -> None:
        self.stats = stats
        self.latest_records = latest_records
        self.app_id = app_id

    def collect(self) -> Iterator:
        yield from kpi_families(self.latest_records())
        yield from self._counters()
        yield from self._pipeline()

    def _counters(self) -> Iterator:
        s = self.stats
        for base in sorted({b for b, _ in s.ticket_counts}):
            kpi = KPI_BY_NAME.get(base)
            help_text = kpi.help if kpi else "tickets solved with one agent reply and no reopen before the solve"
            family = CounterMetricFamily(f"crm_{base}", help_text, labels=["priority"])
            for (b, priority), value in sorted(s.ticket_counts.items()):
                if b == base:
                    family.add_metric([priority], value)
            yield family
        sla = CounterMetricFamily("crm_sla_events", "SLA events emitted (at_risk, breached, met)",
                                  labels=["metric", "state", "priority"])
        for (metric, state, priority), value in sorted(s.sla_events.items()):
            sla.add_metric([metric, state, priority], value)
        yield sla
        surveys = CounterMetricFamily("crm_survey_responses", "survey answers by score", labels=["survey", "score"])
        for (survey, score), value in sorted(s.survey_responses.items()):
            surveys.add_metric([survey, str(score)], value)
        yield surveys
        signals = CounterMetricFamily("crm_churn_signals", KPI_BY_NAME["churn_signals"].help, labels=["signal"])
        for signal, value in sorted(s.signals.items()):
            signals.add_metric([signal], value)
        yield signals

    def _pipeline(self) -> Iterator:
        s = self.stats
        now = time.time()
        processed = CounterMetricFamily("crm_events_processed", "valid events taken from an input topic",
                                        labels=["topic", "partition"])
        for (topic, partition), value in sorted(s.processed.items()):
            processed.add_metric([topic, str(partition)], value)
        yield processed
        rejected = CounterMetricFamily("crm_events_rejected", "messages sent to the dead-letter topic", labels=["reason"])
        for reason, value in sorted(s.rejected.items()):
            rejected.add_metric([reason], value)
        yield rejected
        yield CounterMetricFamily("crm_events_duplicate", "events dropped as duplicates", value=s.duplicates)
        yield CounterMetricFamily("crm_events_late", "events behind the watermark, applied (revisions)", value=s.late)
        yield CounterMetricFamily("crm_events_dropped_late", "events beyond allowed lateness, dropped",
                                  value=s.dropped_late)
        published = CounterMetricFamily("crm_kpi_records_published", "records written to the KPI topic",
                                        labels=["final"])
        for final, value in sorted(s.published.items()):
            published.add_metric([final], value)
        yield published
        lag = GaugeMetricFamily("crm_consumer_lag", "records between the consumer position and the log end",
                                labels=["topic", "partition"])
        for (topic, partition), value in sorted(s.lag.items()):
            lag.add_metric([topic, str(partition)], value)
        yield lag
        watermark = GaugeMetricFamily("crm_watermark_lag_seconds", "wall clock minus the event-time watermark",
                                      labels=["stage", "partition"])
        for (stage, partition), value in sorted(s.watermarks.items()):
            if value > 0:
                watermark.add_metric([stage, str(partition)], max(0.0, now - value / 1000))
        yield watermark
        age = GaugeMetricFamily("crm_last_event_age_seconds", "seconds since the partition last delivered an event",
                                labels=["partition"])
        for partition, when in sorted(s.last_input.items()):
            age.add_metric([str(partition)], max(0.0, now - when))
        yield age
        for name, histograms, help_text in (
            ("crm_batch_size", s.batch_sizes, "events (stage1) or partial messages (stage2) per batch"),
            ("crm_batch_processing_seconds", s.batch_seconds,
             "time to commit one Kafka transaction (encode, send, broker's confirmation); a task commits "
             "the batches since its last commit at once"),
            ("crm_task_restore_seconds", s.restore_seconds,
             "time to open a task: restore its state from the changelog and seek its input (after an "
             "assignment or a failed batch)"),
        ):
            family = HistogramMetricFamily(name, help_text, labels=["stage"])
            for stage, histogram in sorted(histograms.items()):
                family.add_metric([stage], histogram.cumulative(), histogram.total)
            yield family
        stalls = HistogramMetricFamily("crm_event_loop_stall_seconds",
                                       "times the worker's event loop was held for 0.25 s or more, and for how long "
                                       "(the log names where)")
        stalls.add_metric([], s.loop_stalls.cumulative(), s.loop_stalls.total)
        yield stalls
        gc_seconds = CounterMetricFamily("crm_gc_pause_seconds", "seconds the worker spent in garbage collection "
                                         "(the whole process waits meanwhile)", labels=["generation"])
        gc_collections = CounterMetricFamily("crm_gc_collections", "garbage collections", labels=["generation"])
        for generation, seconds in sorted(s.gc_seconds.items()):
            gc_seconds.add_metric([generation], seconds)
            gc_collections.add_metric([generation], s.gc_collections[generation])
        yield gc_seconds
        yield gc_collections
        recoveries = CounterMetricFamily("crm_task_recoveries", "tasks restored from their changelog after a failed batch",
                                         labels=["stage"])
        for stage, value in sorted(s.recoveries.items()):
            recoveries.add_metric([stage], value)
        yield recoveries
        overflow = CounterMetricFamily("crm_label_overflow", "label values beyond the bound, published as 'other'",
                                       labels=["label"])
        for label, value in sorted(s.label_overflow.items()):
            overflow.add_metric([label], value)
        yield overflow
        owned = GaugeMetricFamily("crm_owned_partitions", "partitions this worker owns", labels=["stage"])
        for (stage, _), value in sorted(s.owned.items()):
            owned.add_metric([stage], value)
        yield owned
        info = GaugeMetricFamily("crm_worker_info", "build information", labels=["version", "app_id"])
        info.add_metric([__version__, self.app_id], 1)
        yield info
