"""KPI record format (catalogue §5): window bounds in whole seconds, topic keys, order."""

from __future__ import annotations

import orjson

from streams.codec.records import encode_kpi, kpi_key, kpi_sort_key
from streams.core.records import KpiRecord
from tests.corekit import at


def record(**overrides) -> KpiRecord:
    fields = dict(kpi="first_response_time_seconds", size="1h", start_ms=at("10:00"), end_ms=at("11:00"),
                  dims=(("priority", "high"),), value=512.0, n=41, stats={"p50": 430.1})
    fields.update(overrides)
    return KpiRecord(**fields)


def test_record_matches_the_catalogue_example_shape():
    body = orjson.loads(encode_kpi(record()))
    assert body == {
        "kpi": "first_response_time_seconds",
        "window": {"size": "1h", "start": "2026-11-02T10:00:00Z", "end": "2026-11-02T11:00:00Z"},
        "dims": {"priority": "high"},
        "value": 512.0,
        "n": 41,
        "stats": {"p50": 430.1},
        "revision": 0,
        "final": True,
    }


def test_topic_key_is_kpi_size_start_dims():
    assert kpi_key(record()) == b"first_response_time_seconds|1h|2026-11-02T10:00:00Z|priority=high"
    assert kpi_key(record(dims=())) == b"first_response_time_seconds|1h|2026-11-02T10:00:00Z|-"


def test_replay_order_is_kpi_then_size_then_start_then_dims():
    records = [record(size="1d", start_ms=at("00:00"), end_ms=at("00:00", 1)), record(),
               record(kpi="csat"), record(dims=())]
    ordered = sorted(records, key=kpi_sort_key)
    assert [r.kpi for r in ordered] == ["csat", *["first_response_time_seconds"] * 3]
    assert [r.size for r in ordered[1:]] == ["1h", "1h", "1d"]
    assert ordered[1].dims == ()


def test_keys_are_sorted_at_every_level_so_equal_records_are_equal_bytes():
    raw = encode_kpi(record(dims=(("priority", "high"), ("channel", "email")), stats={"p90": 1.5, "mean": 2.0}))
    assert raw.startswith(b'{"dims":{"channel":"email","priority":"high"},"final":true,"kpi":')
    assert b'"stats":{"mean":2.0,"p90":1.5},"value":512.0,"window":{"end":"2026-11-02T11:00:00Z","size":"1h",' in raw


def test_a_missing_or_non_finite_value_is_null():
    assert orjson.loads(encode_kpi(record(value=None)))["value"] is None
    assert encode_kpi(record(value=float("nan"), stats={"max": float("inf")})) == encode_kpi(
        record(value=None, stats={"max": None}))
