"""Window assignment, panes, watermark and lateness rules (streams.core.windows)."""

from __future__ import annotations

import pytest

from streams.core.windows import DAY_MS, Lateness, WindowSpec, pane_size_ms, parse_window_specs

MIN = 60_000
HOUR = 60 * MIN


def test_default_specs_are_tumbling_except_30d_rolling_daily():
    specs = parse_window_specs("5m,1h,1d,30d")
    assert [(s.name, s.rolling) for s in specs] == [("5m", False), ("1h", False), ("1d", False), ("30d", True)]
    assert specs[-1].advance_ms == DAY_MS
    assert pane_size_ms(specs) == 5 * MIN


def test_tumbling_assignment_is_epoch_aligned():
    spec = WindowSpec(HOUR, HOUR)
    assert list(spec.starts(10 * HOUR + 59 * MIN)) == [10 * HOUR]
    assert list(spec.starts(11 * HOUR)) == [11 * HOUR]  # [start, end): the end belongs to the next


def test_rolling_30d_window_contains_30_windows_per_instant():
    spec = WindowSpec(30 * DAY_MS, DAY_MS)
    ts = 100 * DAY_MS + 5 * HOUR
    starts = list(spec.starts(ts))
    assert len(starts) == 30
    assert starts[0] == 71 * DAY_MS and starts[-1] == 100 * DAY_MS
    assert all(s <= ts < s + spec.size_ms for s in starts)
    assert list(spec.buckets_of(71 * DAY_MS)) == [d * DAY_MS for d in range(71, 101)]


@pytest.mark.parametrize("text", ["7m", "0m", "", "soon"])
def test_bad_window_sizes_are_rejected(text):
    with pytest.raises(ValueError):
        parse_window_specs(text)


def test_watermark_close_expiry_and_too_late():
    rule = Lateness(out_of_orderness_ms=30_000, grace_ms=60_000, allowed_lateness_ms=DAY_MS)
    assert rule.watermark(10 * HOUR) == 10 * HOUR - 30_000
    end = 10 * HOUR
    assert not rule.closed(end, end + 59_999)
    assert rule.closed(end, end + 60_000)
    assert not rule.expired(end, end + 60_000 + DAY_MS - 1)
    assert rule.expired(end, end + 60_000 + DAY_MS)
    wm = 50 * HOUR
    assert rule.too_late(wm - 60_000 - DAY_MS - 1, wm)
    assert not rule.too_late(wm - 60_000 - DAY_MS, wm)


@pytest.mark.parametrize("field", ["out_of_orderness_ms", "grace_ms", "allowed_lateness_ms"])
def test_negative_lateness_settings_are_refused(field):
    with pytest.raises(ValueError, match="must not be negative"):
        Lateness(**{field: -1})
