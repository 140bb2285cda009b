"""``crm-kpi tail`` without a broker: value formatting by unit, filters, the upsert (highest
revision per key) and the newest window per series."""

from __future__ import annotations

import io

import orjson
import pytest
from rich.console import Console

from streams.tail import (
    KpiBoard,
    TailFilter,
    format_dims,
    format_duration,
    format_money,
    format_start,
    format_value,
    parse_dims,
    record_key,
    render,
    table_rows,
    unit_of,
)


def record(kpi: str, value: object, *, size: str = "1h", start: str = "2026-11-02T10:00:00Z",
           dims: dict | None = None, n: int = 10, revision: int = 0, final: bool = True,
           stats: dict | None = None) -> dict:
    return {"kpi": kpi, "window": {"size": size, "start": start, "end": "2026-11-02T11:00:00Z"},
            "dims": dims or {}, "value": value, "n": n, "stats": stats or {}, "revision": revision,
            "final": final}


def message(rec: dict) -> tuple[bytes, bytes]:
    return record_key(rec).encode(), orjson.dumps(rec)


@pytest.mark.parametrize(("seconds", "text"), [
    (0.25, "250ms"), (12.34, "12.3s"), (59.94, "59.9s"), (59.96, "1m 00s"), (245, "4m 05s"),
    (7620, "2h 07m"), (3 * 86400 + 4 * 3600 + 59, "3d 04h"), (-90, "-1m 30s"),
])
def test_durations_read_like_durations(seconds, text):
    assert format_duration(seconds) == text


def test_money_uses_the_currency_exponent():
    assert format_money(123450, "EUR") == "1,234.50 EUR"
    assert format_money(5000, "JPY") == "5,000 JPY"
    assert format_money(1234, "KWD") == "1.234 KWD"
    assert format_money(1234, None) == "1,234 minor units"


def test_values_are_formatted_by_registry_unit():
    assert format_value(record("first_response_time_seconds", 4605.7)) == "1h 16m"
    assert format_value(record("sla_first_reply_hit_rate", 0.9345)) == "93.5%"
    assert format_value(record("csat", 0.8)) == "80.0%"  # unit ratio, kind score
    assert format_value(record("nps", 42.0, stats={"margin_of_error": 7.25})) == "+42.0 ±7.2"
    assert format_value(record("nps", -3.0)) == "-3.0"
    assert format_value(record("customer_health_score", 73.24)) == "73.2"
    assert format_value(record("revenue_minor", 987654, dims={"currency": "EUR", "kind": "new"})) == "9,876.54 EUR"
    assert format_value(record("tickets_created", 1234)) == "1,234"
    assert format_value(record("interactions_per_customer", 1.2345)) == "1.23"
    assert format_value(record("clv_minor", None, dims={"currency": "EUR"})) == "—"
    assert format_value(record("nps", 50.0, n=12, stats={"suppressed": True})) == "suppressed (n=12)"


def test_unknown_kpis_are_formatted_by_their_name():
    assert unit_of("some_future_wait_seconds") == "seconds"
    assert unit_of("some_future_rate") == "ratio"
    assert format_value(record("some_future_cost_minor", 250, dims={"currency": "USD"})) == "2.50 USD"
    assert format_value(record("some_future_count", 7)) == "7"


def test_dims_and_starts_read_well():
    assert format_dims({}) == "(overall)"
    assert format_dims({"priority": "high", "channel": "chat"}) == "channel=chat, priority=high"
    assert format_start("2026-11-02T10:00:00Z") == "2026-11-02 10:00"
    assert format_start("2026-11-02T10:00:30Z") == "2026-11-02 10:00:30"


def test_parse_dims_accepts_repeats_and_commas():
    assert parse_dims(["priority=high", "channel=chat,team=billing"]) == {
        "priority": "high", "channel": "chat", "team": "billing"}
    assert parse_dims(["priority="]) == {"priority": ""}
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_dims(["priority"])


def test_upsert_keeps_the_highest_revision_per_key():
    board = KpiBoard()
    provisional = record("tickets_created", 5, revision=-1, final=False)
    final = record("tickets_created", 7, revision=0)
    revised = record("tickets_created", 8, revision=1)
    for rec in (provisional, final, revised):
        assert board.offer(*message(rec))
    assert not board.offer(*message(final)), "a lower revision never replaces a higher one"
    assert not board.offer(*message(provisional))
    (only,) = board.records.values()
    assert only["value"] == 8 and only["revision"] == 1
    assert board.offer(None, orjson.dumps(revised)), "equal revision: the later record wins (key rebuilt)"
    assert len(board.records) == 1
    assert not board.offer(b"k", b"not json") and board.malformed == 1
    assert not board.offer(b"k", None)  # a tombstone
    assert board.received == 8


def test_newest_window_per_series_sorted_by_registry_order():
    board = KpiBoard()
    older = record("tickets_created", 3, start="2026-11-02T09:00:00Z")
    newer = record("tickets_created", 4, start="2026-11-02T10:00:00Z", revision=-1, final=False)
    high = record("tickets_created", 1, dims={"priority": "high"})
    daily = record("tickets_created", 40, size="1d", start="2026-11-02T00:00:00Z")
    frt = record("first_response_time_seconds", 60.0, size="5m")
    for rec in (older, newer, high, daily, frt):
        board.offer(*message(rec))
    rows = board.latest_per_series()
    assert [(r["kpi"], r["window"]["size"], r["dims"], r["value"]) for r in rows] == [
        ("first_response_time_seconds", "5m", {}, 60.0),  # registry order: 3.1 before 3.2
        ("tickets_created", "1h", {}, 4),  # the newest window, although provisional
        ("tickets_created", "1h", {"priority": "high"}, 1),
        ("tickets_created", "1d", {}, 40),
    ]
    cells = table_rows(rows)
    assert cells[1] == ("tickets_created", "1h", "2026-11-02 10:00", "(overall)", "4", "10", "provisional", "-1")
    assert cells[0][4] == "1m 00s"


def test_filters_select_kpi_glob_dims_and_window():
    board = KpiBoard(filter=TailFilter(kpi="sla_*", dims={"priority": "high"}, window="1h"))
    assert board.offer(*message(record("sla_breaches", 2, dims={"priority": "high"})))
    assert not board.offer(*message(record("sla_breaches", 2, dims={"priority": "low"})))
    assert not board.offer(*message(record("sla_breaches", 2, dims={"priority": "high"}, size="5m")))
    assert not board.offer(*message(record("tickets_created", 2, dims={"priority": "high"})))
    overall_only = TailFilter(dims={"priority": "", "channel": "", "team": ""})
    assert overall_only.matches(record("tickets_created", 1))
    assert not overall_only.matches(record("tickets_created", 1, dims={"team": "billing"}))


def test_render_limits_rows_and_says_what_is_hidden():
    board = KpiBoard()
    for priority in ("low", "normal", "high", "urgent"):
        board.offer(*message(record("tickets_created", 1, dims={"priority": priority})))
    console = Console(width=160, record=True, file=io.StringIO())
    console.print(render(board, title="crm.kpi.v1", limit=2))
    text = console.export_text()
    assert "crm.kpi.v1" in text and "priority=high" in text and "priority=urgent" not in text
    assert "4 series" in text and "2 series not shown" in text
