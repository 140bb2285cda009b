"""Business-hours calendars: which instants count towards an SLA clock.

A :class:`BusinessCalendar` is an IANA time zone, a set of business weekdays, opening
hours per weekday (one or more local wall-clock intervals at minute resolution, e.g.
``09:00-17:00`` or ``08:00-12:00, 13:00-18:00``) and a set of local holiday dates.
Times are int epoch milliseconds (UTC), as everywhere in ``streams.core``.

Semantics (the one rule everything follows)
-------------------------------------------
An opening interval ``[open, close)`` on a business date ``D`` becomes the UTC span
``[reach(D open), reach(D close))`` where ``reach(L)`` is *the first instant at which
the local wall clock reads ``L`` or later*. ``close`` may be ``24:00`` (= next day's
``00:00``). Business time is the union of these spans; every interval is half-open.
In terms of ``datetime.fold`` (PEP 495) this means, deterministically:

* normal local time: its only UTC instant;
* **ambiguous** local time (fall-back overlap, e.g. 02:30 in Berlin on 2026-10-25):
  the *first* occurrence, ``fold=0`` — for opening *and* closing times;
* **nonexistent** local time (spring-forward gap, e.g. 02:30 in Berlin on
  2026-03-29): the instant the clock jumps (01:00Z, shown as 03:00). This is neither
  fold: ``fold=0`` would be an hour late (03:30), ``fold=1`` an hour early (01:30).

Consequences: a 09:00-17:00 day keeps 8 business hours on DST days (the jump is at
night); an interval containing the spring-forward gap loses the missing hour (01:00-05:00
in Berlin on 2026-03-29 has 3 hours); an interval containing the whole repeated hour
gains it (01:00-05:00 on 2026-10-25 has 5 hours: 02:00-03:00 counts twice); an interval
that closes inside the repeated hour closes at its first occurrence; one that opens
inside it stays open through the repetition. Equivalently: an instant is business time
iff the *highest* wall-clock reading shown so far is inside opening hours on a business
date (the SLA clock never re-runs an hour it has already seen, but it keeps counting
real time).

Speed: each local date's spans and each Monday-aligned week's total are computed once
per calendar (small bounded caches), so a lookup walks a couple of partial days and
skips whole weeks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MINUTE_MS = 60_000
DAY_MS = 86_400_000
DAY_MINUTES = 1_440
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_ONE_MS = timedelta(milliseconds=1)


def _offset_ms(aware: datetime) -> int:
    """UTC offset of an aware datetime in milliseconds."""
    offset = aware.utcoffset()
    assert offset is not None, "an aware datetime has an offset"
    return offset // _ONE_MS
_CACHE_LIMIT = 8_192  # cached days (and weeks) per calendar before the cache is reset

WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKDAY_FULL_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_TIME = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*$")
_INTERVAL_SPLIT = re.compile(r"\s*[-–]\s*")

Interval = tuple[int, int]
"""An opening interval as (start minute, end minute) since local midnight; end <= 1440."""

HoursSpec = str | Iterable[str | tuple[str | time, str | time]]
"""Hours as written by people: ``"09:00-17:00"``, ``"08:00-12:00, 13:00-18:00"``, a list
of such strings, or a list of (start, end) pairs of ``"HH:MM"`` strings / ``time``."""


# --- parsing helpers (also used by the TOML loader) ---------------------------------


def parse_time_of_day(value: str | time) -> int:
    """``"HH:MM"`` (00:00-24:00) or a ``datetime.time`` -> minutes since local midnight."""
    if isinstance(value, time):
        if value.second or value.microsecond:
            raise ValueError(f"bad time {value.isoformat()!r} (minute resolution only)")
        return value.hour * 60 + value.minute
    if not isinstance(value, str):
        raise ValueError(f"bad time {value!r} (expected a string HH:MM)")
    match = _TIME.match(value)
    if match:
        hours, minutes = int(match.group(1)), int(match.group(2))
        if (hours < 24 and minutes < 60) or (hours == 24 and minutes == 0):
            return hours * 60 + minutes
    raise ValueError(f"bad time {value!r} (expected HH:MM between 00:00 and 24:00)")


def _format_minute(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def parse_hours(spec: HoursSpec) -> tuple[Interval, ...]:
    """Normalise an hours spec into sorted, non-overlapping intervals (adjacent ones merged).

    ``"08:00-12:00, 13:00-18:00"`` -> ``((480, 720), (780, 1080))``. An interval must end
    after it starts on the same date: split an overnight shift at midnight (``22:00-24:00``
    on one day, ``00:00-06:00`` on the next). An empty spec means closed.
    """
    parts: list[str | tuple[str | time, str | time]] = []
    for item in [spec] if isinstance(spec, str) else spec:
        if isinstance(item, str):  # "08:00-12:00, 13:00-18:00" holds two intervals
            parts.extend(p for p in (s.strip() for s in item.split(",")) if p)
        else:
            parts.append(item)
    intervals: list[Interval] = []
    for part in parts:
        if isinstance(part, str):
            pieces = _INTERVAL_SPLIT.split(part.strip())
            if len(pieces) != 2:
                raise ValueError(f"bad opening interval {part!r} (expected HH:MM-HH:MM)")
            start_text, end_text = pieces
        elif isinstance(part, tuple | list) and len(part) == 2:
            start_text, end_text = part
        else:
            raise ValueError(f"bad opening interval {part!r} (expected HH:MM-HH:MM)")
        start, end = parse_time_of_day(start_text), parse_time_of_day(end_text)
        if start == DAY_MINUTES:
            raise ValueError(f"bad opening interval {part!r} (24:00 can only close an interval)")
        if end <= start:
            raise ValueError(
                f"opening interval {_format_minute(start)}-{_format_minute(end)} ends before "
                "it starts (split overnight hours at 24:00)"
            )
        intervals.append((start, end))
    intervals.sort()
    merged: list[Interval] = []
    for start, end in intervals:
        if merged and start < merged[-1][1]:
            prev = merged[-1]
            raise ValueError(
                f"opening intervals {_format_minute(prev[0])}-{_format_minute(prev[1])} and "
                f"{_format_minute(start)}-{_format_minute(end)} overlap"
            )
        if merged and start == merged[-1][1]:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return tuple(merged)


def parse_weekday(value: str | int) -> int:
    """``"mon"``/``"Monday"``/``0`` -> 0 ... ``"sun"``/``"Sunday"``/``6`` -> 6."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 6:
        return value
    if isinstance(value, str):
        key = value.strip().lower()
        for index, name in enumerate(_WEEKDAY_FULL_NAMES):
            if key in (name, name[:3]):
                return index
    raise ValueError(f"unknown weekday {value!r} (expected mon..sun or 0..6)")


def load_zone(name: str) -> ZoneInfo:
    """``ZoneInfo(name)`` with a one-line ``ValueError`` for unknown or malformed names."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"unknown time zone {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {name!r} (expected an IANA name such as Europe/Berlin)"
        ) from None


def _parse_holiday(value: date | str) -> date:
    if isinstance(value, datetime):
        raise ValueError(f"bad holiday {value.isoformat()!r} (expected a date YYYY-MM-DD)")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"bad holiday {value!r} (expected a date YYYY-MM-DD)")


# --- the calendar ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Week:
    total_ms: int
    first_start_ms: int | None  # None when the week has no business time
    last_end_ms: int | None


class BusinessCalendar:
    """Business hours in one IANA time zone; see the module docstring for the exact rule.

    Immutable after construction (equality and hash use the configuration only; the
    caches are private). Raises ``ValueError`` when the calendar has no business time at
    all (no weekdays, or every business weekday closed), which would make due times
    unreachable.
    """

    __slots__ = (
        "_always",
        "_day_cache",
        "_holiday_ordinals",
        "_holidays",
        "_hours",
        "_key",
        "_time_zone",
        "_tz",
        "_week_cache",
        "_weekdays",
    )

    def __init__(
        self,
        time_zone: str = "UTC",
        weekdays: Iterable[int | str] = (0, 1, 2, 3, 4),
        hours: HoursSpec = "09:00-17:00",
        holidays: Iterable[date | str] = (),
        hours_by_weekday: Mapping[int | str, HoursSpec] | None = None,
    ) -> None:
        """Build a calendar.

        ``weekdays``: business weekdays, 0=Mon..6=Sun (or names ``mon``..``sun``).
        ``hours``: the opening hours of every business weekday (see :func:`parse_hours`).
        ``hours_by_weekday``: per-weekday overrides of ``hours`` (keys must be business
        weekdays; an empty spec closes that day). ``holidays``: local dates that are closed.
        """
        self._tz = load_zone(time_zone)
        self._time_zone = time_zone
        if isinstance(weekdays, str | int):
            raise ValueError("weekdays must be a collection of weekdays, e.g. [0, 1, 2, 3, 4]")
        days = frozenset(parse_weekday(d) for d in weekdays)
        default_hours = parse_hours(hours)
        per_day: list[tuple[Interval, ...]] = [default_hours if d in days else () for d in range(7)]
        for key, spec in (hours_by_weekday or {}).items():
            day = parse_weekday(key)
            if day not in days:
                raise ValueError(
                    f"hours given for {WEEKDAY_NAMES[day]}, which is not a business weekday"
                )
            per_day[day] = parse_hours(spec)
        if not any(per_day):
            raise ValueError("calendar has no business time (no weekdays or no opening hours)")
        self._weekdays = frozenset(d for d in days if per_day[d])
        self._hours = tuple(per_day)
        self._holidays = frozenset(_parse_holiday(h) for h in holidays)
        self._holiday_ordinals = frozenset(h.toordinal() for h in self._holidays)
        self._always = all(h == ((0, DAY_MINUTES),) for h in self._hours) and not self._holidays
        self._key = (
            "24x7" if self._always else time_zone,
            self._hours,
            () if self._always else tuple(sorted(self._holidays)),
        )
        self._day_cache: dict[int, tuple[tuple[int, int], ...]] = {}
        self._week_cache: dict[int, _Week] = {}

    @classmethod
    def always(cls) -> BusinessCalendar:
        """The 24×7 calendar: every millisecond is business time."""
        return cls("UTC", range(7), "00:00-24:00")

    # --- introspection ---------------------------------------------------------------

    @property
    def time_zone(self) -> str:
        """The IANA time zone name."""
        return self._time_zone

    @property
    def weekdays(self) -> frozenset[int]:
        """Business weekdays (0=Mon..6=Sun) that have opening hours."""
        return self._weekdays

    @property
    def holidays(self) -> frozenset[date]:
        """Closed local dates."""
        return self._holidays

    @property
    def is_always(self) -> bool:
        """True for a calendar in which every instant is business time (24×7)."""
        return self._always

    def hours_on(self, weekday: int) -> tuple[Interval, ...]:
        """Opening intervals (minutes since local midnight) of a weekday; () if closed."""
        return self._hours[weekday]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BusinessCalendar) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        if self._always:
            return "BusinessCalendar.always()"
        hours = {
            WEEKDAY_NAMES[d]: ", ".join(f"{_format_minute(a)}-{_format_minute(b)}" for a, b in h)
            for d, h in enumerate(self._hours)
            if h
        }
        return (
            f"BusinessCalendar(time_zone={self._time_zone!r}, hours={hours!r}, "
            f"holidays={len(self._holidays)})"
        )

    # --- local time <-> UTC ----------------------------------------------------------

    def _offset_ms_at(self, second: int) -> int:
        return _offset_ms(datetime.fromtimestamp(second, self._tz))

    def _local_ordinal(self, at_ms: int) -> int:
        """Local date (proleptic ordinal) shown by the wall clock at ``at_ms``."""
        return datetime.fromtimestamp(at_ms // 1000, self._tz).toordinal()

    def _reach(self, ordinal: int, minute: int) -> int:
        """First UTC instant at which the wall clock reads (date ``ordinal``, ``minute``) or later."""
        if minute == DAY_MINUTES:
            ordinal, minute = ordinal + 1, 0
        day = date.fromordinal(ordinal)
        naive = datetime(day.year, day.month, day.day, minute // 60, minute % 60)
        local_ms = (ordinal - _EPOCH_ORDINAL) * DAY_MS + minute * MINUTE_MS
        first = local_ms - _offset_ms(naive.replace(tzinfo=self._tz))
        second = local_ms - _offset_ms(naive.replace(tzinfo=self._tz, fold=1))
        if first <= second:  # normal time (equal) or ambiguous (fold=0 is the earlier one)
            return first
        # Nonexistent: the clock jumps over it at a transition T with second < T <= first.
        # Transitions are whole seconds; binary-search the first second with the new offset.
        before = self._offset_ms_at(second // 1000)
        low, high = second // 1000, -(-first // 1000)
        while high - low > 1:
            mid = (low + high) // 2
            if self._offset_ms_at(mid) == before:
                low = mid
            else:
                high = mid
        return high * 1000

    def _day_spans(self, ordinal: int) -> tuple[tuple[int, int], ...]:
        """UTC business spans ``(start_ms, end_ms)`` of one local date, in order."""
        spans = self._day_cache.get(ordinal)
        if spans is None:
            intervals = self._hours[(ordinal - 1) % 7]  # ordinal 1 (0001-01-01) is a Monday
            if not intervals or ordinal in self._holiday_ordinals:
                spans = ()
            else:
                built = []
                for open_minute, close_minute in intervals:
                    start = self._reach(ordinal, open_minute)
                    end = self._reach(ordinal, close_minute)
                    if end > start:  # an interval inside a DST gap vanishes
                        built.append((start, end))
                spans = tuple(built)
            if len(self._day_cache) >= _CACHE_LIMIT:
                self._day_cache.clear()
            self._day_cache[ordinal] = spans
        return spans

    def _week(self, monday: int) -> _Week:
        """Total and extent of the business time of the 7 local dates from ``monday``."""
        week = self._week_cache.get(monday)
        if week is None:
            spans = [s for d in range(monday, monday + 7) for s in self._day_spans(d)]
            if spans:
                total = sum(end - start for start, end in spans)
                week = _Week(total, spans[0][0], spans[-1][1])
            else:
                week = _Week(0, None, None)
            if len(self._week_cache) >= _CACHE_LIMIT:
                self._week_cache.clear()
            self._week_cache[monday] = week
        return week

    # --- public queries ----------------------------------------------------------------

    def is_business_time(self, at_ms: int) -> bool:
        """True if the instant ``at_ms`` lies inside a business span (spans are half-open)."""
        if self._always:
            return True
        ordinal = self._local_ordinal(at_ms)
        # During an overlap that crosses midnight the open span may belong to the day before.
        for day in (ordinal - 1, ordinal, ordinal + 1):
            for start, end in self._day_spans(day):
                if start <= at_ms < end:
                    return True
        return False

    def business_ms_between(self, start_ms: int, end_ms: int) -> int:
        """Business milliseconds in ``[start_ms, end_ms)``; 0 if ``end_ms <= start_ms``."""
        if end_ms <= start_ms:
            return 0
        if self._always:
            return end_ms - start_ms
        total = 0
        day = self._local_ordinal(start_ms)  # earlier dates' spans end at or before start
        last = self._local_ordinal(end_ms) + 1  # later dates' spans start after end
        while day <= last:
            if (day - 1) % 7 == 0 and day + 6 <= last:
                week = self._week(day)
                if week.first_start_ms is None or week.last_end_ms is None or (
                    week.first_start_ms >= start_ms and week.last_end_ms <= end_ms
                ):
                    total += week.total_ms
                    day += 7
                    continue
            for start, end in self._day_spans(day):
                if end <= start_ms:
                    continue
                if start >= end_ms:
                    return total
                total += min(end, end_ms) - max(start, start_ms)
            day += 1
        return total

    def add_business_ms(self, start_ms: int, duration_ms: int) -> int:
        """Earliest instant ``T >= start_ms`` with ``business_ms_between(start_ms, T) == duration_ms``.

        A positive duration starting outside business hours starts counting at the next
        opening. The result is always inside or at the *end* of a business span (a target
        used up exactly at 17:00 is due at 17:00, not at the next opening).
        ``duration_ms == 0`` returns ``start_ms`` itself, even outside business hours (the
        earliest instant satisfying the definition). Negative durations raise ``ValueError``.
        """
        if duration_ms < 0:
            raise ValueError(f"duration must not be negative: {duration_ms}")
        if duration_ms == 0:
            return start_ms
        if self._always:
            return start_ms + duration_ms
        remaining = duration_ms
        day = self._local_ordinal(start_ms)
        while True:
            if (day - 1) % 7 == 0:
                week = self._week(day)
                if week.first_start_ms is None or (
                    week.first_start_ms >= start_ms and week.total_ms < remaining
                ):
                    remaining -= week.total_ms
                    day += 7
                    continue
            for start, end in self._day_spans(day):
                if end <= start_ms:
                    continue
                start = max(start, start_ms)
                if end - start >= remaining:
                    return start + remaining
                remaining -= end - start
            day += 1

    def next_business_ms(self, at_ms: int) -> int:
        """The earliest business instant ``>= at_ms`` (``at_ms`` itself if it is business time)."""
        return self.add_business_ms(at_ms, 1) - 1
