"""SLA policies: defaults, the TOML format and every one-line error message."""

from __future__ import annotations

from datetime import date, datetime
from fractions import Fraction
from pathlib import Path

import pytest

from streams.core.calendar import BusinessCalendar
from streams.core.sla import (
    DEFAULT_TARGETS,
    PRIORITIES,
    SlaConfigError,
    SlaPolicies,
    SlaPolicy,
    SlaTarget,
    load_policies,
    parse_policies,
)

HOUR = 3_600_000
EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "sla-policies.example.toml"


def test_defaults_are_the_catalogue_targets_on_a_24x7_calendar():
    policies = SlaPolicies.default()
    assert list(policies) == ["low", "normal", "high", "urgent"] == list(PRIORITIES)
    expected_hours = {"urgent": (1, 4), "high": (4, 24), "normal": (8, 48), "low": (24, 120)}
    for priority, (first_reply_h, resolution_h) in expected_hours.items():
        policy = policies[priority]
        assert policy.target == SlaTarget(first_reply_h * HOUR, resolution_h * HOUR)
        assert policy.target.first_reply_s == first_reply_h * 3600
        assert policy.calendar.is_always
        assert policy.at_risk_fraction == Fraction(4, 5)


def test_an_empty_file_means_the_defaults():
    assert parse_policies("") == SlaPolicies.default()


def test_example_file_loads_with_its_calendars_and_overrides():
    policies = load_policies(EXAMPLE)
    assert policies["urgent"].calendar.is_always
    assert policies["urgent"].target == DEFAULT_TARGETS["urgent"]
    high = policies["high"]
    assert high.target == SlaTarget(4 * HOUR, 24 * HOUR)
    assert high.calendar.time_zone == "Europe/Berlin"
    assert high.calendar.weekdays == frozenset(range(5))
    assert high.calendar.hours_on(0) == ((540, 1020),)
    assert date(2026, 12, 25) in high.calendar.holidays
    assert policies["normal"].calendar is high.calendar  # one named calendar, shared
    assert policies["normal"].target.resolution_ms == 48 * HOUR  # "2d"
    low = policies["low"]
    assert low.calendar.time_zone == "America/New_York"
    assert low.calendar.hours_on(0) == ((480, 720), (780, 1080))
    assert low.calendar.hours_on(5) == ((600, 840),)  # Saturday override
    assert low.at_risk_fraction == Fraction(9, 10)
    assert high.at_risk_fraction == Fraction(4, 5)


def test_targets_accept_duration_strings_and_int_seconds_and_defaults_apply():
    policies = parse_policies(
        """
        [defaults]
        calendar = "office"
        at_risk_fraction = 0.75

        [calendars.office]
        time_zone = "Europe/Berlin"
        weekdays = ["Monday", "tue", 2, "thu", "fri"]
        hours = "08:00-12:00, 13:00-17:00"
        holidays = [2026-12-25, "2026-12-26"]

        [priorities.high]
        first_reply = 5400
        resolution = "1d"

        [priorities.urgent]
        calendar = "24x7"
        at_risk_fraction = 1
        """
    )
    high = policies["high"]
    assert high.target == SlaTarget(90 * 60_000, 24 * HOUR)
    assert high.at_risk_fraction == Fraction(3, 4)
    assert high.calendar == BusinessCalendar(
        "Europe/Berlin", range(5), "08:00-12:00,13:00-17:00", ["2026-12-25", "2026-12-26"]
    )
    assert policies["normal"].target == DEFAULT_TARGETS["normal"]
    assert policies["normal"].calendar == high.calendar
    assert policies["urgent"].calendar.is_always and policies["urgent"].at_risk_fraction == 1


def test_a_policy_starts_clocks_for_both_metrics():
    policy = SlaPolicies.default()["high"]
    reply = policy.start_clock("first_reply", 1_000)
    resolution = policy.start_clock("resolution", 1_000)
    assert reply.due_ms() == 1_000 + 4 * HOUR
    assert reply.due_ms(policy.at_risk_fraction) == 1_000 + 4 * HOUR * 4 // 5
    assert resolution.due_ms() == 1_000 + 24 * HOUR
    with pytest.raises(ValueError, match="unknown SLA metric"):
        policy.start_clock("first_response", 0)


def test_policy_objects_validate_themselves():
    always = BusinessCalendar.always()
    with pytest.raises(ValueError, match="unknown priority 'critical'"):
        SlaPolicy("critical", DEFAULT_TARGETS["high"], always)
    with pytest.raises(ValueError, match=r"at_risk_fraction must be in \(0, 1\]"):
        SlaPolicy("high", DEFAULT_TARGETS["high"], always, Fraction(3, 2))
    with pytest.raises(ValueError, match="first_reply_ms must be a positive int"):
        SlaTarget(-1, HOUR)
    with pytest.raises(ValueError, match="resolution_ms must be whole seconds"):
        SlaTarget(HOUR, HOUR + 1)
    with pytest.raises(ValueError, match="need one policy per priority"):
        SlaPolicies({"high": SlaPolicy("high", DEFAULT_TARGETS["high"], always)})


OFFICE = '[calendars.office]\ntime_zone = "Europe/Berlin"\n'

# (TOML text, the exact one-line error)
ERRORS = [
    ("defaults = [", "invalid TOML: Invalid value (at end of document)"),
    ("priority = 1", "priority: unknown key (expected one of defaults, calendars, priorities)"),
    ("defaults = 1", "defaults: must be a table"),
    ('[defaults]\ncalender = "24x7"',
     "defaults.calender: unknown key (expected one of calendar, at_risk_fraction)"),
    ('[defaults]\ncalendar = "office"', "defaults.calendar: unknown calendar 'office' (defined: 24x7)"),
    ("[defaults]\nat_risk_fraction = 1.5", "defaults.at_risk_fraction: must be a number in (0, 1], got 1.5"),
    ('[defaults]\nat_risk_fraction = "most"',
     "defaults.at_risk_fraction: must be a number in (0, 1], got 'most'"),
    ("calendars = 1", "calendars: must be a table"),
    ('[calendars.24x7]\ntime_zone = "UTC"', "calendars.24x7: '24x7' is built in and cannot be redefined"),
    ("calendars = { office = 1 }", "calendars.office: must be a table"),
    (OFFICE + 'timezone = "UTC"',
     "calendars.office.timezone: unknown key "
     "(expected one of time_zone, weekdays, hours, hours_by_weekday, holidays)"),
    ('[calendars.office]\nweekdays = ["mon"]',
     'calendars.office.time_zone: missing (e.g. time_zone = "Europe/Berlin")'),
    ("[calendars.office]\ntime_zone = 1", "calendars.office.time_zone: must be a string, got 1"),
    ('[calendars.office]\ntime_zone = "Europe/Berln"',
     "calendars.office.time_zone: unknown time zone 'Europe/Berln' "
     "(expected an IANA name such as Europe/Berlin)"),
    (OFFICE + 'weekdays = "mon"', 'calendars.office.weekdays: must be a list such as ["mon", "tue"]'),
    (OFFICE + 'weekdays = ["mon", "funday"]',
     "calendars.office.weekdays: unknown weekday 'funday' (expected mon..sun or 0..6)"),
    (OFFICE + "weekdays = [7]", "calendars.office.weekdays: unknown weekday 7 (expected mon..sun or 0..6)"),
    (OFFICE + "hours = [9, 17]",
     'calendars.office.hours: must be a list of intervals such as ["09:00-17:00"]'),
    (OFFICE + 'hours = ["25:00-26:00"]',
     "calendars.office.hours: bad time '25:00' (expected HH:MM between 00:00 and 24:00)"),
    (OFFICE + 'hours = ["09:00-17:60"]',
     "calendars.office.hours: bad time '17:60' (expected HH:MM between 00:00 and 24:00)"),
    (OFFICE + 'hours = ["17:00-09:00"]',
     "calendars.office.hours: opening interval 17:00-09:00 ends before it starts "
     "(split overnight hours at 24:00)"),
    (OFFICE + 'hours = ["08:00-12:00", "11:00-18:00"]',
     "calendars.office.hours: opening intervals 08:00-12:00 and 11:00-18:00 overlap"),
    (OFFICE + 'hours = ["09:00"]', "calendars.office.hours: bad opening interval '09:00' (expected HH:MM-HH:MM)"),
    (OFFICE + 'hours = ["24:00-24:00"]',
     "calendars.office.hours: bad opening interval '24:00-24:00' (24:00 can only close an interval)"),
    (OFFICE + "hours_by_weekday = 1", "calendars.office.hours_by_weekday: must be a table"),
    (OFFICE + '[calendars.office.hours_by_weekday]\nfunday = ["10:00-12:00"]',
     "calendars.office.hours_by_weekday.funday: unknown weekday 'funday' (expected mon..sun or 0..6)"),
    (OFFICE + '[calendars.office.hours_by_weekday]\nfri = ["10:00-1200"]',
     "calendars.office.hours_by_weekday.fri: bad time '1200' (expected HH:MM between 00:00 and 24:00)"),
    (OFFICE + '[calendars.office.hours_by_weekday]\nsun = ["10:00-12:00"]',
     "calendars.office.hours_by_weekday: hours given for sun, which is not in weekdays"),
    (OFFICE + 'holidays = "2026-12-25"',
     "calendars.office.holidays: must be a list of dates such as [2026-12-25]"),
    (OFFICE + 'holidays = ["2026-13-01"]',
     "calendars.office.holidays: bad date '2026-13-01' (expected YYYY-MM-DD)"),
    (OFFICE + "holidays = [2026-12-25T00:00:00]",
     "calendars.office.holidays: bad date '2026-12-25T00:00:00' (expected YYYY-MM-DD)"),
    (OFFICE + "holidays = [1]", "calendars.office.holidays: bad date 1 (expected YYYY-MM-DD)"),
    (OFFICE + "weekdays = []",
     "calendars.office: calendar has no business time (no weekdays or no opening hours)"),
    (OFFICE + "hours = []",
     "calendars.office: calendar has no business time (no weekdays or no opening hours)"),
    ('[priorities.critical]\nfirst_reply = "1h"',
     "priorities.critical: unknown priority 'critical' (expected one of low, normal, high, urgent)"),
    ('priorities = { high = "4h" }', "priorities.high: must be a table"),
    ('[priorities.high]\nfirst_response = "1h"',
     "priorities.high.first_response: unknown key "
     "(expected one of first_reply, resolution, calendar, at_risk_fraction)"),
    ('[priorities.high]\nfirst_reply = "4 hours"',
     "priorities.high.first_reply: not a duration: '4 hours' (expected e.g. 30m, 4h, 2d or seconds as an int)"),
    ('[priorities.high]\nfirst_reply = "-4h"', "priorities.high.first_reply: negative target '-4h'"),
    ("[priorities.high]\nresolution = -3600", "priorities.high.resolution: negative target -3600"),
    ('[priorities.high]\nfirst_reply = "0m"',
     "priorities.high.first_reply: target must be greater than zero, got '0m'"),
    ('[priorities.high]\nfirst_reply = "1500ms"',
     "priorities.high.first_reply: target must be whole seconds, got '1500ms'"),
    ("[priorities.high]\nfirst_reply = 1.5",
     'priorities.high.first_reply: must be a duration such as "4h", got 1.5'),
    ("[priorities.high]\nfirst_reply = true",
     'priorities.high.first_reply: must be a duration such as "4h", got True'),
    ('[priorities.high]\ncalendar = "office"',
     "priorities.high.calendar: unknown calendar 'office' (defined: 24x7)"),
    (OFFICE + '[priorities.high]\ncalendar = "ofice"',
     "priorities.high.calendar: unknown calendar 'ofice' (defined: 24x7, office)"),
    ("[priorities.high]\nat_risk_fraction = 0",
     "priorities.high.at_risk_fraction: must be a number in (0, 1], got 0"),
]


@pytest.mark.parametrize(("text", "message"), ERRORS, ids=[m.split(":")[0] + f"-{i}" for i, (_, m) in enumerate(ERRORS)])
def test_bad_policy_files_fail_with_one_line_reason(text, message):
    with pytest.raises(SlaConfigError) as caught:
        parse_policies(text, source="sla.toml")
    assert str(caught.value) == f"sla.toml: {message}"
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "absent.toml"
    with pytest.raises(SlaConfigError) as caught:
        load_policies(path)
    assert str(caught.value) == f"{path}: cannot read SLA policy file (No such file or directory)"


def test_load_policies_reports_the_file_name(tmp_path):
    path = tmp_path / "sla.toml"
    path.write_text('[priorities.urgent]\nfirst_reply = "soon"\n', encoding="utf-8")
    with pytest.raises(SlaConfigError, match=rf"^{path}: priorities\.urgent\.first_reply: not a duration"):
        load_policies(path)


def test_toml_native_dates_and_times_of_day_parse():
    policies = parse_policies(OFFICE + "holidays = [2026-10-03]\n[defaults]\ncalendar = \"office\"\n")
    assert policies["low"].calendar.holidays == frozenset({date(2026, 10, 3)})
    assert not policies["low"].calendar.is_business_time(
        int(datetime.fromisoformat("2026-10-03T10:00+02:00").timestamp() * 1000)
    )
