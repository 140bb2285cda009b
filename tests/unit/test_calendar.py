"""Business-hours calendar and SLA clock: hand-worked due times plus property tests.

Every expected value in the tables below was worked out by hand (the reasoning is the
comment on each case); times are written with their explicit UTC offset so DST is
visible. 2026 facts used: Europe/Berlin switches to CEST on Sun 2026-03-29 (02:00 CET ->
03:00 CEST, at 01:00Z) and back on Sun 2026-10-25 (03:00 CEST -> 02:00 CET, at 01:00Z);
America/New_York switches to EDT on Sun 2026-03-08 (02:00 EST -> 03:00 EDT, at 07:00Z)
and back on Sun 2026-11-01 (02:00 EDT -> 01:00 EST, at 06:00Z).
Weekdays: 2026-06-01 Mon, 2026-03-27 Fri, 2026-04-02 Thu, 2026-10-23 Fri, 2026-12-24 Thu.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.core.calendar import BusinessCalendar, parse_hours
from streams.core.sla import SlaClock

MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000

BERLIN_HOLIDAYS = [
    "2026-01-01", "2026-04-03", "2026-04-06", "2026-05-01", "2026-12-25", "2026-12-26", "2027-01-01",
]

CALENDARS = {
    # Mon-Fri 09:00-17:00 Europe/Berlin (8 business hours a day) with holidays
    "berlin": BusinessCalendar("Europe/Berlin", range(5), "09:00-17:00", BERLIN_HOLIDAYS),
    # Mon-Fri split shift 08:00-12:00 + 13:00-18:00 America/New_York (9 hours a day)
    "ny_split": BusinessCalendar("America/New_York", range(5), "08:00-12:00, 13:00-18:00"),
    # every day 01:00-05:00 Europe/Berlin: contains the DST gap and the repeated hour
    "berlin_night": BusinessCalendar("Europe/Berlin", range(7), "01:00-05:00"),
    # every day 02:30-04:00 Europe/Berlin: boundaries inside the gap / the repeated hour
    "berlin_0230": BusinessCalendar("Europe/Berlin", range(7), "02:30-04:00"),
    # every day 00:30-03:30 America/New_York: contains the NY gap (02-03) and overlap (01-02)
    "ny_night": BusinessCalendar("America/New_York", range(7), "00:30-03:30"),
    # Mon-Sat Europe/Berlin, Saturday short day 10:00-14:00
    "berlin_sat": BusinessCalendar(
        "Europe/Berlin", range(6), "09:00-17:00", hours_by_weekday={"sat": "10:00-14:00"}
    ),
    # 24x7 in UTC, and all-day-every-day in Berlin (every instant counts, DST or not)
    "always": BusinessCalendar.always(),
    "berlin_all_day": BusinessCalendar("Europe/Berlin", range(7), "00:00-24:00"),
}


def at(text: str) -> int:
    """RFC 3339-ish local time with explicit offset -> epoch ms."""
    return int(datetime.fromisoformat(text).timestamp() * 1000)


# (calendar, start, duration, expected due) — add_business_ms
DUE_CASES = [
    # --- berlin: Mon-Fri 09-17, CEST in June ---
    ("berlin", "2026-06-03T10:00+02:00", 4 * HOUR, "2026-06-03T14:00+02:00"),
    # Wed 10:00 inside hours: 10:00 + 4h = 14:00 the same day
    ("berlin", "2026-06-03T15:00+02:00", 4 * HOUR, "2026-06-04T11:00+02:00"),
    # Wed 15-17 = 2h, 2h left -> Thu 09:00 + 2h = 11:00
    ("berlin", "2026-06-03T07:30+02:00", 1 * HOUR, "2026-06-03T10:00+02:00"),
    # opened before hours: the clock starts at 09:00 -> 10:00
    ("berlin", "2026-06-03T18:00+02:00", 1 * HOUR, "2026-06-04T10:00+02:00"),
    # opened after hours: nothing until Thu 09:00 -> 10:00
    ("berlin", "2026-06-06T12:00+02:00", 8 * HOUR, "2026-06-08T17:00+02:00"),
    # opened Sat: weekend closed; Mon 09:00 + 8h = Mon 17:00 (end of span, not Tue 09:00)
    ("berlin", "2026-06-05T16:00+02:00", 4 * HOUR, "2026-06-08T12:00+02:00"),
    # Fri 16-17 = 1h, weekend, Mon 09:00 + 3h = 12:00
    ("berlin", "2026-06-03T17:00+02:00", 1 * HOUR, "2026-06-04T10:00+02:00"),
    # 17:00 is closed (half-open [09:00, 17:00)): starts Thu 09:00 -> 10:00
    ("berlin", "2026-06-03T09:00+02:00", 8 * HOUR, "2026-06-03T17:00+02:00"),
    # exactly one business day from the opening instant ends at closing time
    ("berlin", "2026-06-08T09:00+02:00", 48 * HOUR, "2026-06-15T17:00+02:00"),
    # 48h = 6 days of 8h: Mon-Fri (40h) + next Mon 09-17 (8h)
    ("berlin", "2026-06-02T13:00+02:00", 120 * HOUR, "2026-06-23T13:00+02:00"),
    # Tue 13-17 4h (116 left); Wed-Fri 24h (92); Jun 8-12 40h (52); Jun 15-19 40h (12);
    # Mon Jun 22 8h (4); Tue Jun 23 09:00 + 4h = 13:00
    ("berlin", "2026-04-02T16:00+02:00", 4 * HOUR, "2026-04-07T12:00+02:00"),
    # Thu 16-17 1h; Fri Apr 3 (Good Friday) and Mon Apr 6 (Easter Monday) are holidays,
    # weekend between; Tue 09:00 + 3h = 12:00
    ("berlin", "2026-12-24T16:30+01:00", 8 * HOUR, "2026-12-28T16:30+01:00"),
    # Thu 16:30-17 0.5h; Fri Dec 25 holiday, Sat 26, Sun 27; Mon 09:00 + 7.5h = 16:30
    ("berlin", "2025-12-31T17:30+01:00", 1 * HOUR, "2026-01-02T10:00+01:00"),
    # New Year's Eve after hours; Thu Jan 1 holiday; Fri Jan 2 09:00 + 1h
    ("berlin", "2026-03-27T15:00+01:00", 4 * HOUR, "2026-03-30T11:00+02:00"),
    # DST start weekend: Fri 15-17 CET 2h; the 02:00 jump on Sunday is outside hours;
    # Mon 09:00 CEST + 2h = 11:00 CEST (a 9-17 day keeps its 8 hours)
    ("berlin", "2026-10-23T15:00+02:00", 4 * HOUR, "2026-10-26T11:00+01:00"),
    # DST end weekend: Fri 15-17 CEST 2h; Mon 09:00 CET + 2h = 11:00 CET
    # --- berlin_night: every day 01:00-05:00 local ---
    ("berlin_night", "2026-03-29T01:00+01:00", 2 * HOUR, "2026-03-29T04:00+02:00"),
    # 01:00-02:00 CET = 1h, then the clock jumps 02:00 CET -> 03:00 CEST (no time passes),
    # 03:00-04:00 CEST = the 2nd hour
    ("berlin_night", "2026-03-29T01:00+01:00", 4 * HOUR, "2026-03-30T02:00+02:00"),
    # the spring-forward night has only 3h (01-02 CET, 03-05 CEST); 1h left the next
    # night: Mon 01:00 CEST + 1h = 02:00 CEST
    ("berlin_night", "2026-03-29T01:30+01:00", 1 * HOUR, "2026-03-29T03:30+02:00"),
    # 01:30-02:00 CET = 30m, jump to 03:00 CEST, 30m more -> 03:30 CEST
    ("berlin_night", "2026-10-25T01:00+02:00", 2 * HOUR, "2026-10-25T02:00+01:00"),
    # fall back: 01:00-02:00 CEST and 02:00-03:00 CEST = 2h; the clock then shows 02:00
    # CET again (01:00Z): due at the *second* 02:00
    ("berlin_night", "2026-10-25T01:00+02:00", 4 * HOUR, "2026-10-25T04:00+01:00"),
    # 01:00 CEST (23:00Z) + 4 real hours, all open (the repeated hour counts twice):
    # 03:00Z = 04:00 CET
    ("berlin_night", "2026-10-25T02:30+01:00", 1 * HOUR, "2026-10-25T03:30+01:00"),
    # opened during the repeated hour (second pass, 01:30Z), open until 05:00 CET: +1h
    # --- berlin_0230: every day 02:30-04:00, boundaries inside the gap/overlap ---
    ("berlin_0230", "2026-03-29T00:00+01:00", 30 * MINUTE, "2026-03-29T03:30+02:00"),
    # 02:30 does not exist on Mar 29: the day opens when the clock jumps to 03:00 CEST;
    # 03:00 + 30m = 03:30 CEST
    ("berlin_0230", "2026-10-25T00:00+02:00", 2 * HOUR, "2026-10-25T03:30+01:00"),
    # opens at the first 02:30 (CEST, 00:30Z) and stays open through the repeated hour
    # until 04:00 CET (03:00Z): 00:30Z + 2h = 02:30Z = 03:30 CET
    # --- ny_night: every day 00:30-03:30 America/New_York ---
    ("ny_night", "2026-03-08T00:00-05:00", 90 * MINUTE, "2026-03-08T03:00-04:00"),
    # opens 00:30 EST (05:30Z), jump at 07:00Z (02:00 EST -> 03:00 EDT): 05:30Z + 1.5h =
    # 07:00Z = 03:00 EDT
    ("ny_night", "2026-11-01T00:00-04:00", 2 * HOUR, "2026-11-01T01:30-05:00"),
    # opens 00:30 EDT (04:30Z); 2h later is 06:30Z, shown as 01:30 EST (second 01:30)
    # --- ny_split: Mon-Fri 08-12 + 13-18 New York ---
    ("ny_split", "2026-06-01T11:00-04:00", 2 * HOUR, "2026-06-01T14:00-04:00"),
    # Mon 11-12 1h, lunch 12-13 does not count, 13-14 1h
    ("ny_split", "2026-06-01T12:15-04:00", 30 * MINUTE, "2026-06-01T13:30-04:00"),
    # opened during lunch: clock starts 13:00 -> 13:30
    ("ny_split", "2026-06-01T17:00-04:00", 3 * HOUR, "2026-06-02T10:00-04:00"),
    # Mon 17-18 1h; Tue 08:00 + 2h = 10:00
    ("ny_split", "2026-06-02T08:00-04:00", 4 * HOUR, "2026-06-02T12:00-04:00"),
    # the morning shift exactly: due 12:00 (end of span), not 13:00
    ("ny_split", "2026-03-06T16:00-05:00", 9 * HOUR, "2026-03-09T16:00-04:00"),
    # Fri 16-18 EST 2h; DST starts Sun; Mon 08-12 EDT 4h (6h used), 13:00 + 3h = 16:00 EDT
    ("ny_split", "2026-10-30T17:00-04:00", 4 * HOUR, "2026-11-02T11:00-05:00"),
    # Fri 17-18 EDT 1h; DST ends Sun; Mon 08:00 EST + 3h = 11:00 EST
    # --- berlin_sat: Mon-Sat, Saturday 10:00-14:00 ---
    ("berlin_sat", "2026-06-05T16:00+02:00", 3 * HOUR, "2026-06-06T12:00+02:00"),
    # Fri 16-17 1h; Sat opens 10:00, + 2h = 12:00
    ("berlin_sat", "2026-06-06T13:00+02:00", 2 * HOUR, "2026-06-08T10:00+02:00"),
    # Sat 13-14 1h; Sunday closed; Mon 09:00 + 1h = 10:00
    # --- 24x7 ---
    ("always", "2026-03-29T01:30+01:00", 1 * HOUR, "2026-03-29T03:30+02:00"),
    # every ms counts: 00:30Z + 1h = 01:30Z, which Berlin shows as 03:30 CEST
    ("always", "2026-06-06T23:00+00:00", 4 * HOUR, "2026-06-07T03:00+00:00"),
    # Saturday night counts too: 23:00Z + 4h
    ("berlin_all_day", "2026-03-28T22:00+01:00", 4 * HOUR, "2026-03-29T03:00+02:00"),
    # all day every day in Berlin is 24x7: 21:00Z + 4h = 01:00Z = 03:00 CEST
    # --- duration 0 ---
    ("berlin", "2026-06-06T12:00+02:00", 0, "2026-06-06T12:00+02:00"),
    # a zero duration is due at the start itself, even on a Saturday (documented choice)
]


@pytest.mark.parametrize(
    ("calendar", "start", "duration_ms", "expected"),
    DUE_CASES,
    ids=[f"{c}-{s}-{d // MINUTE}m" for c, s, d, _ in DUE_CASES],
)
def test_due_time_matches_hand_worked_value(calendar, start, duration_ms, expected):
    cal = CALENDARS[calendar]
    due = cal.add_business_ms(at(start), duration_ms)
    assert due == at(expected), datetime.fromtimestamp(due / 1000, ZoneInfo(cal.time_zone))
    assert cal.business_ms_between(at(start), due) == duration_ms


# (calendar, start, end, expected business ms) — business_ms_between
BETWEEN_CASES = [
    ("berlin_night", "2026-03-29T00:00+01:00", "2026-03-30T00:00+02:00", 3 * HOUR),
    # the 01:00-05:00 night of the spring-forward day loses 02:00-03:00: 1h CET + 2h CEST
    ("berlin_night", "2026-10-25T00:00+02:00", "2026-10-26T00:00+01:00", 5 * HOUR),
    # fall back: 01-02 CEST, 02-03 CEST, 02-03 CET (repeated hour twice), 03-05 CET = 5h
    ("berlin_night", "2026-06-01T00:00+02:00", "2026-06-02T00:00+02:00", 4 * HOUR),
    # an ordinary night: 4h
    ("berlin_0230", "2026-03-29T00:00+01:00", "2026-03-30T00:00+02:00", 1 * HOUR),
    # 02:30-04:00 on the gap day: opens at the jump (03:00 CEST) -> 1h
    ("berlin_0230", "2026-10-25T00:00+02:00", "2026-10-26T00:00+01:00", 150 * MINUTE),
    # first 02:30 CEST (00:30Z) to 04:00 CET (03:00Z) = 2.5h
    ("ny_night", "2026-03-08T00:00-05:00", "2026-03-09T00:00-04:00", 2 * HOUR),
    # 00:30 EST (05:30Z) to 03:30 EDT (07:30Z): 3 wall hours minus the missing one
    ("ny_night", "2026-11-01T00:00-04:00", "2026-11-02T00:00-05:00", 4 * HOUR),
    # 00:30 EDT (04:30Z) to 03:30 EST (08:30Z): 01:00-02:00 counted twice
    ("berlin", "2026-03-27T09:00+01:00", "2026-03-30T17:00+02:00", 16 * HOUR),
    # Fri 8h + Mon 8h; the DST weekend changes nothing in 9-17
    ("berlin", "2026-12-24T00:00+01:00", "2027-01-04T00:00+01:00", 5 * 8 * HOUR),
    # Dec 24 Thu, 25 Fri hol, 28-31 Mon-Thu, 2027-01-01 Fri hol: 24, 28, 29, 30, 31 = 5 days
    ("ny_split", "2026-06-01T00:00-04:00", "2026-06-08T00:00-04:00", 45 * HOUR),
    # one full week: 5 days x 9h
    ("berlin_all_day", "2026-03-29T00:00+01:00", "2026-03-30T00:00+02:00", 23 * HOUR),
    # a 24x7 calendar in Berlin: the spring-forward day is 23 real hours
    ("berlin_all_day", "2026-10-25T00:00+02:00", "2026-10-26T00:00+01:00", 25 * HOUR),
    # ...and the fall-back day 25 real hours
    ("berlin", "2026-06-03T12:00+02:00", "2026-06-03T11:00+02:00", 0),
    # end before start -> 0
]


@pytest.mark.parametrize(
    ("calendar", "start", "end", "expected"),
    BETWEEN_CASES,
    ids=[f"{c}-{s}-{e}" for c, s, e, _ in BETWEEN_CASES],
)
def test_business_time_between_matches_hand_worked_value(calendar, start, end, expected):
    assert CALENDARS[calendar].business_ms_between(at(start), at(end)) == expected


# SlaClock with pauses: (calendar, target, [(op, time), ...], fraction, expected due)
CLOCK_CASES = [
    ("berlin", 4 * HOUR, [("start", "2026-06-01T16:00+02:00"), ("pause", "2026-06-01T16:30+02:00"),
                          ("resume", "2026-06-02T10:00+02:00")], 1, "2026-06-02T13:30+02:00"),
    # Mon 16:00-16:30 = 30m banked; paused overnight; resumed Tue 10:00 with 3.5h left
    ("berlin", 4 * HOUR, [("start", "2026-06-01T16:00+02:00"), ("pause", "2026-06-01T16:30+02:00"),
                          ("resume", "2026-06-02T10:00+02:00")], Fraction(4, 5), "2026-06-02T12:42+02:00"),
    # at risk at 4h*4/5 = 3h12m: 30m banked, 2h42m after Tue 10:00 = 12:42
    ("berlin", 8 * HOUR, [("start", "2026-06-01T15:00+02:00"), ("pause", "2026-06-01T16:00+02:00"),
                          ("resume", "2026-06-02T07:00+02:00")], 1, "2026-06-02T16:00+02:00"),
    # 1h banked (15-16); resumed before opening, so the remaining 7h start Tue 09:00 -> 16:00
    # (unpaused it would be 15:00: the pause removed Mon 16-17)
    ("berlin", 2 * HOUR, [("start", "2026-06-01T16:00+02:00"), ("pause", "2026-06-01T18:00+02:00"),
                          ("resume", "2026-06-02T08:00+02:00")], 1, "2026-06-02T10:00+02:00"),
    # a pause entirely outside hours changes nothing: 1h Mon (16-17), 1h Tue -> 10:00
    ("berlin", 8 * HOUR, [("start", "2026-04-02T10:00+02:00"), ("pause", "2026-04-02T12:00+02:00"),
                          ("resume", "2026-04-07T11:00+02:00")], 1, "2026-04-07T17:00+02:00"),
    # 2h banked Thu; paused over Good Friday, the weekend and Easter Monday; Tue 11 + 6h
    ("always", 4 * HOUR, [("start", "2026-03-28T22:00+01:00"), ("pause", "2026-03-28T23:00+01:00"),
                          ("resume", "2026-03-29T03:30+02:00")], 1, "2026-03-29T06:30+02:00"),
    # 24x7 across the DST night: 1h banked; resumed 01:30Z with 3h left -> 04:30Z = 06:30 CEST
    ("berlin_night", 3 * HOUR, [("start", "2026-10-25T01:00+02:00"), ("pause", "2026-10-25T02:30+02:00"),
                                ("resume", "2026-10-25T02:30+01:00")], 1, "2026-10-25T04:00+01:00"),
    # 01:00-02:30 CEST = 1.5h banked; paused for exactly one real hour (the first pass of
    # 02:30 to the second); resumed 01:30Z with 1.5h left -> 03:00Z = 04:00 CET
]


@pytest.mark.parametrize(
    ("calendar", "target_ms", "ops", "fraction", "expected"),
    CLOCK_CASES,
    ids=[f"{c}-{ops[0][1]}-{frac}" for c, _, ops, frac, _ in CLOCK_CASES],
)
def test_clock_due_after_pauses_matches_hand_worked_value(calendar, target_ms, ops, fraction, expected):
    clock = None
    for op, when in ops:
        if op == "start":
            clock = SlaClock.start(CALENDARS[calendar], target_ms, at(when))
        else:
            clock = getattr(clock, op)(at(when))
    due = clock.due_ms(fraction)
    assert due == at(expected)
    assert clock.elapsed_ms(due) == clock.threshold_ms(fraction)
    assert clock.reached(due, fraction) and not clock.reached(due - 1, fraction)


HAND_WORKED_CASES = len(DUE_CASES) + len(BETWEEN_CASES) + len(CLOCK_CASES)


def test_there_are_at_least_thirty_hand_worked_cases():
    assert HAND_WORKED_CASES >= 30


# --- construction and small behaviours ---------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weekdays": []}, "no business time"),
        ({"hours": ""}, "no business time"),
        ({"weekdays": [5], "hours_by_weekday": {"sat": []}}, "no business time"),
        ({"time_zone": "Mars/Olympus"}, "unknown time zone"),
        ({"hours": "25:00-26:00"}, "bad time '25:00'"),
        ({"hours": "17:00-09:00"}, "ends before it starts"),
        ({"hours": "09:00-12:00, 11:00-13:00"}, "overlap"),
        ({"weekdays": ["funday"]}, "unknown weekday"),
        ({"holidays": ["2026-13-01"]}, "bad holiday"),
        ({"hours_by_weekday": {"sun": "10:00-12:00"}}, "not a business weekday"),
    ],
)
def test_bad_calendars_are_rejected_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BusinessCalendar(**{"time_zone": "Europe/Berlin", **kwargs})


def test_hours_are_sorted_and_adjacent_intervals_merged():
    assert parse_hours("13:00-18:00, 08:00-12:00, 12:00-13:00") == ((480, 1080),)
    assert parse_hours(["08:00-12:00", "13:00-24:00"]) == ((480, 720), (780, 1440))


def test_always_calendar_counts_every_millisecond_and_equal_calendars_compare_equal():
    always = BusinessCalendar.always()
    assert always.is_always and CALENDARS["berlin_all_day"].is_always
    assert always.business_ms_between(5, 1_000_000_000_005) == 1_000_000_000_000
    assert always.add_business_ms(7, 3) == 10
    assert BusinessCalendar("Europe/Berlin") == BusinessCalendar("Europe/Berlin", [0, 1, 2, 3, 4])
    assert hash(BusinessCalendar("Europe/Berlin")) == hash(BusinessCalendar("Europe/Berlin"))


def test_is_business_time_and_next_business_instant_use_half_open_spans():
    berlin = CALENDARS["berlin"]
    assert berlin.is_business_time(at("2026-06-03T09:00+02:00"))
    assert not berlin.is_business_time(at("2026-06-03T17:00+02:00"))
    assert berlin.next_business_ms(at("2026-06-05T17:00+02:00")) == at("2026-06-08T09:00+02:00")
    assert berlin.next_business_ms(at("2026-06-03T10:00+02:00")) == at("2026-06-03T10:00+02:00")


def test_negative_duration_is_rejected():
    with pytest.raises(ValueError, match="negative"):
        CALENDARS["berlin"].add_business_ms(0, -1)


def test_a_year_of_business_time_is_fast_and_exact():
    berlin = BusinessCalendar("Europe/Berlin", range(5), "09:00-17:00")
    start = at("2026-01-05T09:00+01:00")  # a Monday
    due = berlin.add_business_ms(start, 52 * 40 * HOUR)  # 52 weeks of 40h
    # the 52nd week is Mon 2026-12-28 .. Fri 2027-01-01 (no holidays here): Friday 17:00
    assert due == at("2027-01-01T17:00+01:00")
    assert berlin.business_ms_between(start, due) == 52 * 40 * HOUR


# --- SlaClock behaviours ---------------------------------------------------------------


def test_clock_is_paused_while_pending_and_round_trips_through_wire_form():
    berlin = CALENDARS["berlin"]
    clock = SlaClock.start(berlin, 4 * HOUR, at("2026-06-01T10:00+02:00"))
    paused = clock.pause(at("2026-06-01T11:00+02:00"))
    assert paused.paused and paused.due_ms() is None
    assert paused.elapsed_ms(at("2026-06-05T11:00+02:00")) == HOUR
    assert paused.pause(at("2026-06-01T12:00+02:00")) is paused  # pausing twice is a no-op
    wire = paused.to_wire()
    assert all(v is None or type(v) is int for v in wire.values())
    assert SlaClock.from_wire(wire, berlin) == paused
    resumed = paused.resume(at("2026-06-01T10:30+02:00"))  # earlier than the pause: clamped
    assert resumed.running_since_ms == at("2026-06-01T11:00+02:00")
    assert resumed.due_ms() == at("2026-06-01T14:00+02:00")
    assert SlaClock.from_wire(resumed.to_wire(), berlin) == resumed


def test_clock_created_paused_starts_at_first_resume():
    clock = SlaClock.start(CALENDARS["always"], HOUR, 1_000, paused=True)
    assert clock.due_ms() is None and clock.elapsed_ms(10**9) == 0
    assert clock.resume(5_000).due_ms() == 5_000 + HOUR


def test_threshold_already_reached_before_resume_is_due_at_the_resume():
    clock = SlaClock.start(CALENDARS["always"], 10 * MINUTE, 0).pause(20 * MINUTE)
    assert clock.elapsed_ms(20 * MINUTE) == 20 * MINUTE
    assert clock.resume(30 * MINUTE).due_ms() == 30 * MINUTE


@pytest.mark.parametrize(
    "wire",
    [
        {"target_ms": 1, "started_ms": 0, "banked_ms": 0, "running_since_ms": 0},
        {"target_ms": "1", "started_ms": 0, "banked_ms": 0, "running_since_ms": 0, "paused_at_ms": None},
        {"target_ms": 1, "started_ms": 0, "banked_ms": 0, "running_since_ms": None, "paused_at_ms": None},
    ],
)
def test_bad_wire_forms_are_rejected(wire):
    with pytest.raises(ValueError, match="wire form"):
        SlaClock.from_wire(wire, CALENDARS["always"])


def test_at_risk_fraction_uses_exact_integer_arithmetic():
    clock = SlaClock.start(CALENDARS["always"], 3_600_001, 0)
    assert clock.threshold_ms(0.8) == 3_600_001 * 4 // 5
    assert clock.threshold_ms("4/5") == clock.threshold_ms(Fraction(4, 5)) == 2_880_000
    assert clock.threshold_ms() == clock.threshold_ms(1) == clock.threshold_ms(Fraction(1)) == 3_600_001
    assert clock.threshold_ms(2) == 7_200_002
    for negative in (-1, Fraction(-1, 2), "-0.5"):
        with pytest.raises(ValueError, match="negative"):
            clock.threshold_ms(negative)


# --- property tests ------------------------------------------------------------------

# Each zone with the local dates of its 2026 DST transitions (anchors for random times):
# Lord Howe shifts by 30 minutes at 02:00; Santiago switches at midnight (the day of
# 2026-09-06 starts at 01:00; 23:00-24:00 of 2026-04-04 happens twice).
ZONE_ANCHORS = {
    "UTC": [datetime(2026, 6, 15)],
    "Europe/Berlin": [datetime(2026, 3, 29), datetime(2026, 10, 25)],
    "America/New_York": [datetime(2026, 3, 8), datetime(2026, 11, 1)],
    "Australia/Lord_Howe": [datetime(2026, 4, 5), datetime(2026, 10, 4)],
    "America/Santiago": [datetime(2026, 4, 4), datetime(2026, 9, 6)],
}
EPOCH = datetime(1970, 1, 1)

# Local minutes around each zone's DST change: opening boundaries drawn from here land
# in the gap or the repeated hour on the anchor days.
DST_MINUTES = {
    "UTC": range(0, 1441),
    "Europe/Berlin": range(110, 191),
    "America/New_York": range(50, 191),
    "Australia/Lord_Howe": range(80, 161),
    "America/Santiago": [*range(0, 75), *range(1365, 1441)],
}


@st.composite
def day_hours(draw, zone="UTC"):
    """0-3 disjoint intervals at minute resolution, as (start, end) minutes: any minute,
    quarter hours, or minutes around the zone's DST change."""
    boundary = st.one_of(
        st.integers(0, 1440), st.sampled_from(range(0, 1441, 15)), st.sampled_from(DST_MINUTES[zone])
    )
    count = draw(st.integers(0, 3))
    bounds = sorted(draw(st.sets(boundary, min_size=2 * count, max_size=2 * count)))
    return tuple((bounds[i], bounds[i + 1]) for i in range(0, 2 * count, 2))


def _hhmm(minute):
    return f"{minute // 60:02d}:{minute % 60:02d}"


@st.composite
def calendars(draw):
    """A random calendar, the plain description the slow reference walk uses, and a
    UTC-midnight anchor on one of the zone's DST days."""
    zone = draw(st.sampled_from(sorted(ZONE_ANCHORS)))
    weekdays = draw(st.sets(st.integers(0, 6), min_size=1))
    if draw(st.booleans()):  # the same hours every day
        hours = dict.fromkeys(range(7), draw(day_hours(zone)))
    else:
        hours = {d: draw(day_hours(zone)) for d in range(7)}
    if not any(hours[d] for d in weekdays):
        hours[min(weekdays)] = ((540, 1020),)
    anchor = draw(st.sampled_from(ZONE_ANCHORS[zone]))
    holidays = draw(
        st.sets(st.integers(-7, 21).map(lambda n: (anchor + timedelta(days=n)).date()), max_size=3)
    )
    calendar = BusinessCalendar(
        zone, weekdays, (), holidays,
        {d: [(_hhmm(a), _hhmm(b)) for a, b in hours[d]] for d in weekdays},
    )
    return calendar, (zone, weekdays, hours, holidays), anchor


def slow_business_ms(spec, start_ms, end_ms):
    """Reference: walk minute by minute. A minute counts if the highest wall-clock reading
    seen so far (the clock never re-runs a repeated hour) is in opening hours on a
    business date. Needs minute-aligned inputs."""
    zone, weekdays, hours, holidays = spec
    tz = ZoneInfo(zone)
    high_water = None
    total = 0
    t = start_ms - DAY  # a day of look-back so the high-water mark is right at start
    while t < end_ms:
        local = datetime.fromtimestamp(t // 1000, tz).replace(tzinfo=None)
        if high_water is None or local > high_water:
            high_water = local
        if t >= start_ms:
            day, minute = high_water.date(), high_water.hour * 60 + high_water.minute
            if (
                day not in holidays
                and day.weekday() in weekdays
                and any(a <= minute < b for a, b in hours[day.weekday()])
            ):
                total += MINUTE
        t += MINUTE
    return total


def _anchor_ms(anchor):
    return int((anchor - EPOCH).total_seconds() * 1000)


@settings(max_examples=70, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=calendars(),
    start_day=st.integers(-8, 1),
    start_minute=st.integers(0, 1439),
    length_days=st.integers(0, 21),
    length_minutes=st.integers(0, 1439),
)
def test_fast_business_time_equals_minute_by_minute_walk(
    data, start_day, start_minute, length_days, length_minutes
):
    calendar, spec, anchor = data
    start = _anchor_ms(anchor) + start_day * DAY + start_minute * MINUTE
    end = start + length_days * DAY + length_minutes * MINUTE
    assert calendar.business_ms_between(start, end) == slow_business_ms(spec, start, end)


@st.composite
def dst_day_calendars(draw):
    """Open every day, with 1-2 intervals whose boundaries sit around the DST change."""
    zone = draw(st.sampled_from(sorted(set(ZONE_ANCHORS) - {"UTC"})))
    count = draw(st.integers(1, 2))
    bounds = sorted(draw(st.sets(st.sampled_from(DST_MINUTES[zone]), min_size=2 * count,
                                 max_size=2 * count)))
    hours = tuple((bounds[i], bounds[i + 1]) for i in range(0, 2 * count, 2))
    calendar = BusinessCalendar(zone, range(7), [(_hhmm(a), _hhmm(b)) for a, b in hours])
    spec = (zone, set(range(7)), dict.fromkeys(range(7), hours), set())
    return calendar, spec, draw(st.sampled_from(ZONE_ANCHORS[zone]))


@settings(max_examples=60, deadline=None)
@given(
    data=dst_day_calendars(),
    start_minute=st.integers(-1440, 1440),
    length_minutes=st.integers(0, 3 * 1440),
)
def test_dst_days_match_minute_by_minute_walk(data, start_minute, length_minutes):
    # opening hours with boundaries inside the gap / repeated hour, intervals around it
    calendar, spec, anchor = data
    start = _anchor_ms(anchor) + start_minute * MINUTE
    end = start + length_minutes * MINUTE
    assert calendar.business_ms_between(start, end) == slow_business_ms(spec, start, end)
    due = calendar.add_business_ms(start, calendar.business_ms_between(start, end))
    assert due <= end and calendar.business_ms_between(due, end) == 0


@settings(max_examples=150, deadline=None)
@given(
    data=calendars(),
    start_day=st.integers(-10, 10),
    start_ms_of_day=st.integers(0, DAY - 1),
    length_days=st.integers(0, 70),
    length_ms_of_day=st.integers(0, DAY - 1),
)
def test_week_skipping_agrees_with_summing_single_days(
    data, start_day, start_ms_of_day, length_days, length_ms_of_day
):
    # chunks of one day never take the whole-week shortcut, so this pins the shortcut
    calendar, _, anchor = data
    start = _anchor_ms(anchor) + start_day * DAY + start_ms_of_day
    end = start + length_days * DAY + length_ms_of_day
    chunked = sum(
        calendar.business_ms_between(t, min(t + DAY, end))
        for t in range(start, end, DAY)
    )
    assert calendar.business_ms_between(start, end) == chunked


@settings(max_examples=150, deadline=None)
@given(
    data=calendars(),
    start_day=st.integers(-10, 10),
    start_ms_of_day=st.integers(0, DAY - 1),
    duration_hours=st.integers(0, 300),
    duration_rest=st.integers(0, HOUR - 1),
    split=st.integers(0, 30 * DAY),
)
def test_add_business_ms_is_the_inverse_of_business_ms_between(
    data, start_day, start_ms_of_day, duration_hours, duration_rest, split
):
    calendar, _, anchor = data
    duration = duration_hours * HOUR + duration_rest
    start = _anchor_ms(anchor) + start_day * DAY + start_ms_of_day
    due = calendar.add_business_ms(start, duration)
    assert due >= start
    assert calendar.business_ms_between(start, due) == duration
    if duration > 0:  # earliest such instant, and it is business time just before it
        assert calendar.business_ms_between(start, due - 1) == duration - 1
    middle = start + split
    assert calendar.business_ms_between(start, middle) + calendar.business_ms_between(
        middle, due
    ) == calendar.business_ms_between(start, max(middle, due))


@settings(max_examples=100, deadline=None)
@given(
    data=calendars(),
    target=st.integers(0, 100 * HOUR),
    steps=st.lists(
        st.tuples(st.sampled_from(["pause", "resume", "look"]),
                  st.one_of(st.integers(0, 4 * HOUR), st.integers(0, 3 * DAY))),
        max_size=12,
    ),
    fraction=st.sampled_from([Fraction(1), Fraction(4, 5), Fraction(1, 2), Fraction(9, 10)]),
)
def test_due_never_moves_backwards_and_elapsed_is_monotonic(data, target, steps, fraction):
    calendar, _, anchor = data
    now = _anchor_ms(anchor)
    clock = SlaClock.start(calendar, target, now)
    due = clock.due_ms(fraction)
    elapsed = 0
    for op, gap in steps:
        now += gap
        if op != "look":
            clock = getattr(clock, op)(now)
        new_elapsed = clock.elapsed_ms(now)
        assert new_elapsed >= elapsed
        elapsed = new_elapsed
        new_due = clock.due_ms(fraction)
        if new_due is None:
            assert clock.paused
            continue
        if due is not None:
            if op == "look":
                assert new_due == due  # constant while running: independent of "now"
            assert new_due >= due  # a pause only ever postpones
        assert clock.reached(new_due, fraction)
        due = new_due
    wire = clock.to_wire()
    assert SlaClock.from_wire(wire, calendar) == clock


def test_reference_walk_agrees_with_hand_worked_dst_nights():
    # guards the reference itself against being wrong in the same way as the code
    spec = ("Europe/Berlin", set(range(7)), {d: ((60, 300),) for d in range(7)}, set())
    assert slow_business_ms(spec, at("2026-03-29T00:00+01:00"), at("2026-03-30T00:00+02:00")) == 3 * HOUR
    assert slow_business_ms(spec, at("2026-10-25T00:00+02:00"), at("2026-10-26T00:00+01:00")) == 5 * HOUR
    assert date(2026, 3, 29).weekday() == 6
