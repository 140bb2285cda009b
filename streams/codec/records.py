"""Output records as bytes: KPI records (catalogue §5), SLA events (§4), churn
signals and health changes (§3.6). One JSON object per record; keys are the
topic keys consumers upsert on."""

from __future__ import annotations

import functools

import msgspec
import orjson

from streams.codec.events import format_ts
from streams.core.records import ChurnSignal, HealthChange, KpiRecord, SlaRecord, dims_key


@functools.lru_cache(maxsize=4096)
def window_ts(ms: int) -> str:
    """Window bounds are whole seconds: ``2026-11-01T10:00:00Z`` (catalogue §5).
    Memoised: every record of a window carries the same bounds, twice (value and key)."""
    text = format_ts(ms)
    return text.replace(".000Z", "Z") if ms % 1000 == 0 else text


class _Window(msgspec.Struct, gc=False):
    size: str
    start: str
    end: str


class _KpiWire(msgspec.Struct, gc=False):
    """A KPI record as written to crm.kpi.v1 (catalogue §5)."""

    kpi: str
    window: _Window
    dims: dict[str, str]
    value: float | int | None
    n: int
    stats: dict[str, object]
    revision: int
    final: bool


# keys sorted at every level, as before (orjson OPT_SORT_KEYS); a struct encodes in a
# third of the time of building and sorting the same dict (0.9 against 2.9 µs/record)
_kpi_encoder = msgspec.json.Encoder(order="sorted")


def encode_kpi(record: KpiRecord) -> bytes:
    return _kpi_encoder.encode(_KpiWire(
        record.kpi, _Window(record.size, window_ts(record.start_ms), window_ts(record.end_ms)),
        dict(record.dims), record.value, record.n, record.stats, record.revision, record.final,
    ))


def kpi_key(record: KpiRecord) -> bytes:
    """``kpi|size|start|dims`` (catalogue §5)."""
    return (
        f"{record.kpi}|{record.size}|{window_ts(record.start_ms)}|{dims_key(record.dims)}".encode()
    )


def kpi_sort_key(record: KpiRecord) -> tuple:
    """Order of ``replay`` output: kpi, window size, window start, dims."""
    return (record.kpi, record.end_ms - record.start_ms, record.start_ms, record.dims)


def sla_to_dict(record: SlaRecord) -> dict:
    return {
        "ticket_id": record.ticket_id,
        "customer_id": record.customer_id,
        "priority": record.priority,
        "metric": record.metric,
        "state": record.state,
        "target_s": record.target_s,
        "elapsed_s": record.elapsed_s,
        "due_at": format_ts(record.due_at_ms),
        "occurred_at": format_ts(record.occurred_at_ms),
    }


def encode_sla(record: SlaRecord) -> bytes:
    return orjson.dumps(sla_to_dict(record), option=orjson.OPT_SORT_KEYS)


def signal_to_dict(signal: ChurnSignal) -> dict:
    return {
        "signal": signal.signal,
        "customer_id": signal.customer_id,
        "occurred_at": format_ts(signal.occurred_at_ms),
        "evidence_event_ids": list(signal.evidence_event_ids),
        "health_before": signal.health_before,
        "health_after": signal.health_after,
        "detail": signal.detail,
    }


def encode_signal(signal: ChurnSignal) -> bytes:
    return orjson.dumps(signal_to_dict(signal), option=orjson.OPT_SORT_KEYS)


def health_to_dict(change: HealthChange) -> dict:
    return {
        "customer_id": change.customer_id,
        "occurred_at": format_ts(change.occurred_at_ms),
        "cause_event_id": change.cause_event_id,
        "score_before": change.score_before,
        "score_after": change.score_after,
        "contributions": [
            {"component": c.component, "score": c.score, "weight": c.weight, "points": c.points}
            for c in change.contributions
        ],
    }


def encode_health(change: HealthChange) -> bytes:
    return orjson.dumps(health_to_dict(change), option=orjson.OPT_SORT_KEYS)
