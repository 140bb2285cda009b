"""SLA policies and clocks (KPI_CATALOGUE.md §3.3 and §4).

* :class:`SlaTarget` / :class:`SlaPolicy` / :class:`SlaPolicies`: per priority a
  first-reply and a resolution target (business time) on a :class:`BusinessCalendar`,
  plus the at-risk fraction. :func:`load_policies` reads them from TOML (format in
  ``docs/sla.md`` and ``deploy/sla-policies.example.toml``).
* :class:`SlaClock`: one SLA metric of one ticket, an immutable value that can pause,
  resume, tell the business time elapsed and the instant a fraction of the target is
  reached. It serialises to plain types (``to_wire``/``from_wire``) for changelogged state.

Boundaries (the ticket state machine relies on these):

* ``due_ms(f)`` is the *earliest* instant at which elapsed business time reaches
  ``target_ms * f`` (floor, integer arithmetic). The metric is **reached at** ``due_ms``:
  a reply at ``occurred_at < due_ms(1)`` meets the target, one at ``>= due_ms(1)`` is
  breached (``elapsed >= target``). Because ``due_ms`` lies inside or at the end of a
  business span, a reply after closing time on the due day is a breach, as it should be.
* Fractions are exact rationals (:class:`fractions.Fraction`; floats are read through
  their decimal ``repr``, so ``0.8`` is exactly 4/5): at-risk threshold = ``target * 4 // 5``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, cast, get_args

from streams.core.calendar import (
    WEEKDAY_NAMES,
    BusinessCalendar,
    load_zone,
    parse_hours,
    parse_weekday,
)
from streams.core.durations import parse_duration
from streams.core.events import Priority

SlaMetric = Literal["first_reply", "resolution"]
PRIORITIES: tuple[str, ...] = get_args(Priority)  # ("low", "normal", "high", "urgent")
METRICS: tuple[str, ...] = get_args(SlaMetric)
ALWAYS_CALENDAR_NAME = "24x7"

_HOUR_MS = 3_600_000
DEFAULT_AT_RISK_FRACTION = Fraction(4, 5)


def as_fraction(value: Fraction | int | float | str) -> Fraction:
    """An exact fraction from a Fraction, int, decimal string (``"0.8"``, ``"4/5"``) or
    float (read via its shortest decimal ``repr``, so ``0.8`` -> 4/5, not 0.800000000000000044)."""
    if isinstance(value, bool):
        raise ValueError(f"not a fraction: {value!r}")
    if isinstance(value, Fraction | int):
        return Fraction(value)
    if isinstance(value, float):
        return Fraction(repr(value))
    if isinstance(value, str):
        try:
            return Fraction(value.strip())
        except (ValueError, ZeroDivisionError):
            pass
    raise ValueError(f"not a fraction: {value!r}")


# --- policies ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SlaTarget:
    """Targets of one priority in business milliseconds (whole seconds, > 0)."""

    first_reply_ms: int
    resolution_ms: int

    def __post_init__(self) -> None:
        for name in ("first_reply_ms", "resolution_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
            if value % 1000:
                raise ValueError(f"{name} must be whole seconds, got {value} ms")

    @property
    def first_reply_s(self) -> int:
        """First-reply target in seconds (the ``target_s`` of SLA records)."""
        return self.first_reply_ms // 1000

    @property
    def resolution_s(self) -> int:
        """Resolution target in seconds."""
        return self.resolution_ms // 1000

    def target_ms(self, metric: SlaMetric) -> int:
        """The target of ``metric`` (``first_reply`` or ``resolution``) in ms."""
        if metric == "first_reply":
            return self.first_reply_ms
        if metric == "resolution":
            return self.resolution_ms
        raise ValueError(f"unknown SLA metric {metric!r} (expected first_reply or resolution)")


DEFAULT_TARGETS: Mapping[str, SlaTarget] = {
    "urgent": SlaTarget(1 * _HOUR_MS, 4 * _HOUR_MS),
    "high": SlaTarget(4 * _HOUR_MS, 24 * _HOUR_MS),
    "normal": SlaTarget(8 * _HOUR_MS, 48 * _HOUR_MS),
    "low": SlaTarget(24 * _HOUR_MS, 120 * _HOUR_MS),
}
"""The catalogue's defaults (§3.3), on a 24×7 calendar."""


@dataclass(frozen=True, slots=True)
class SlaPolicy:
    """The SLA of one priority: targets, the calendar they run on, the at-risk fraction."""

    priority: str
    target: SlaTarget
    calendar: BusinessCalendar
    at_risk_fraction: Fraction = DEFAULT_AT_RISK_FRACTION

    def __post_init__(self) -> None:
        if self.priority not in PRIORITIES:
            raise ValueError(
                f"unknown priority {self.priority!r} (expected one of {', '.join(PRIORITIES)})"
            )
        fraction = as_fraction(self.at_risk_fraction)
        if not 0 < fraction <= 1:
            raise ValueError(f"at_risk_fraction must be in (0, 1], got {self.at_risk_fraction}")
        object.__setattr__(self, "at_risk_fraction", fraction)

    def start_clock(self, metric: SlaMetric, at_ms: int, *, paused: bool = False) -> SlaClock:
        """A new clock for ``metric`` started at ``at_ms`` (e.g. the ticket's creation)."""
        return SlaClock.start(self.calendar, self.target.target_ms(metric), at_ms, paused=paused)


class SlaPolicies(Mapping[str, SlaPolicy]):
    """Policies for all four priorities (a read-only mapping priority -> policy)."""

    __slots__ = ("_by_priority",)

    def __init__(self, policies: Mapping[str, SlaPolicy]) -> None:
        """Requires exactly one policy per priority, keyed by its own priority."""
        missing = [p for p in PRIORITIES if p not in policies]
        unknown = [p for p in policies if p not in PRIORITIES]
        if missing or unknown:
            raise ValueError(f"need one policy per priority; missing {missing}, unknown {unknown}")
        for priority, policy in policies.items():
            if policy.priority != priority:
                raise ValueError(f"policy for {priority!r} says priority {policy.priority!r}")
        self._by_priority = {p: policies[p] for p in PRIORITIES}

    @classmethod
    def default(cls) -> SlaPolicies:
        """The catalogue defaults: urgent 1h/4h, high 4h/24h, normal 8h/48h, low 24h/120h,
        24×7, at risk at 0.8."""
        always = BusinessCalendar.always()
        return cls({p: SlaPolicy(p, DEFAULT_TARGETS[p], always) for p in PRIORITIES})

    def __getitem__(self, priority: str) -> SlaPolicy:
        return self._by_priority[priority]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_priority)

    def __len__(self) -> int:
        return len(self._by_priority)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SlaPolicies) and self._by_priority == other._by_priority

    def __hash__(self) -> int:
        return hash(tuple(self._by_priority.items()))

    def __repr__(self) -> str:
        return f"SlaPolicies({self._by_priority!r})"


# --- TOML loading --------------------------------------------------------------------------


class SlaConfigError(ValueError):
    """A bad SLA policy file; the message is one line naming the file and the key."""


_TOP_KEYS = ("defaults", "calendars", "priorities")
_DEFAULTS_KEYS = ("calendar", "at_risk_fraction")
_CALENDAR_KEYS = ("time_zone", "weekdays", "hours", "hours_by_weekday", "holidays")
_PRIORITY_KEYS = ("first_reply", "resolution", "calendar", "at_risk_fraction")


def load_policies(path: str | Path) -> SlaPolicies:
    """Read SLA policies from a TOML file (format: ``docs/sla.md``).

    Raises :class:`SlaConfigError` (a ``ValueError``) with a one-line reason such as
    ``sla.toml: priorities.high.first_reply: negative target '-4h'``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SlaConfigError(f"{path}: cannot read SLA policy file ({exc.strerror})") from None
    return parse_policies(text, source=str(path))


def parse_policies(text: str, source: str = "<sla policies>") -> SlaPolicies:
    """Parse the TOML text of an SLA policy file; see :func:`load_policies`."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SlaConfigError(f"{source}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:  # pragma: no cover - loads takes str
        raise SlaConfigError(f"{source}: invalid TOML: {exc}") from None
    try:
        return _policies_from_document(document)
    except _KeyError as exc:
        raise SlaConfigError(f"{source}: {exc.key}: {exc.reason}") from None


class _KeyError(Exception):
    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


def _check_keys(table: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise _KeyError(
                f"{where}.{key}" if where else key,
                f"unknown key (expected one of {', '.join(allowed)})",
            )


def _table(value: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _KeyError(key, "must be a table")
    return value


def _policies_from_document(document: Mapping[str, Any]) -> SlaPolicies:
    _check_keys(document, _TOP_KEYS, "")
    defaults = _table(document.get("defaults", {}), "defaults")
    _check_keys(defaults, _DEFAULTS_KEYS, "defaults")
    calendars: dict[str, BusinessCalendar] = {ALWAYS_CALENDAR_NAME: BusinessCalendar.always()}
    for name, spec in _table(document.get("calendars", {}), "calendars").items():
        key = f"calendars.{name}"
        if name == ALWAYS_CALENDAR_NAME:
            raise _KeyError(key, f"{ALWAYS_CALENDAR_NAME!r} is built in and cannot be redefined")
        calendars[name] = _calendar(_table(spec, key), key)

    default_calendar = _calendar_ref(
        defaults.get("calendar", ALWAYS_CALENDAR_NAME), calendars, "defaults.calendar"
    )
    default_fraction = _fraction(
        defaults.get("at_risk_fraction", DEFAULT_AT_RISK_FRACTION), "defaults.at_risk_fraction"
    )
    priorities = _table(document.get("priorities", {}), "priorities")
    for name in priorities:
        if name not in PRIORITIES:
            raise _KeyError(
                f"priorities.{name}",
                f"unknown priority {name!r} (expected one of {', '.join(PRIORITIES)})",
            )
    policies: dict[str, SlaPolicy] = {}
    for priority in PRIORITIES:
        key = f"priorities.{priority}"
        spec = _table(priorities.get(priority, {}), key)
        _check_keys(spec, _PRIORITY_KEYS, key)
        default_target = DEFAULT_TARGETS[priority]
        first_reply = _target_ms(
            spec.get("first_reply", default_target.first_reply_ms // 1000), f"{key}.first_reply"
        )
        resolution = _target_ms(
            spec.get("resolution", default_target.resolution_ms // 1000), f"{key}.resolution"
        )
        calendar = (
            _calendar_ref(spec["calendar"], calendars, f"{key}.calendar")
            if "calendar" in spec
            else default_calendar
        )
        fraction = (
            _fraction(spec["at_risk_fraction"], f"{key}.at_risk_fraction")
            if "at_risk_fraction" in spec
            else default_fraction
        )
        policies[priority] = SlaPolicy(
            priority, SlaTarget(first_reply, resolution), calendar, fraction
        )
    return SlaPolicies(policies)


def _target_ms(value: Any, key: str) -> int:
    """A target: a duration string ("4h", "30m", "2d") or an int number of seconds."""
    if isinstance(value, bool):
        raise _KeyError(key, f'must be a duration such as "4h", got {value!r}')
    if isinstance(value, int):
        target = value * 1000
        shown = repr(value)
    elif isinstance(value, str):
        shown = repr(value)
        if value.strip().startswith("-"):
            raise _KeyError(key, f"negative target {shown}")
        try:
            target = parse_duration(value)
        except ValueError:
            raise _KeyError(
                key, f"not a duration: {shown} (expected e.g. 30m, 4h, 2d or seconds as an int)"
            ) from None
    else:
        raise _KeyError(key, f'must be a duration such as "4h", got {value!r}')
    if target < 0:
        raise _KeyError(key, f"negative target {shown}")
    if target == 0:
        raise _KeyError(key, f"target must be greater than zero, got {shown}")
    if target % 1000:
        raise _KeyError(key, f"target must be whole seconds, got {shown}")
    return target


def _fraction(value: Any, key: str) -> Fraction:
    try:
        fraction = as_fraction(value)
    except ValueError:
        raise _KeyError(key, f"must be a number in (0, 1], got {value!r}") from None
    if not 0 < fraction <= 1:
        raise _KeyError(key, f"must be a number in (0, 1], got {value!r}")
    return fraction


def _calendar_ref(
    value: Any, calendars: Mapping[str, BusinessCalendar], key: str
) -> BusinessCalendar:
    if not isinstance(value, str) or value not in calendars:
        raise _KeyError(
            key, f"unknown calendar {value!r} (defined: {', '.join(sorted(calendars))})"
        )
    return calendars[value]


def _calendar(spec: Mapping[str, Any], key: str) -> BusinessCalendar:
    _check_keys(spec, _CALENDAR_KEYS, key)
    if "time_zone" not in spec:
        raise _KeyError(f"{key}.time_zone", 'missing (e.g. time_zone = "Europe/Berlin")')
    time_zone = spec["time_zone"]
    if not isinstance(time_zone, str):
        raise _KeyError(f"{key}.time_zone", f"must be a string, got {time_zone!r}")

    weekdays_value = spec.get("weekdays", ["mon", "tue", "wed", "thu", "fri"])
    if not isinstance(weekdays_value, list):
        raise _KeyError(f"{key}.weekdays", 'must be a list such as ["mon", "tue"]')
    try:
        weekdays = [parse_weekday(d) for d in weekdays_value]
    except ValueError as exc:
        raise _KeyError(f"{key}.weekdays", str(exc)) from None

    hours = _hours(spec.get("hours", ["09:00-17:00"]), f"{key}.hours")
    by_weekday_spec = _table(spec.get("hours_by_weekday", {}), f"{key}.hours_by_weekday")
    by_weekday: dict[int, Any] = {}
    for day_name, day_hours in by_weekday_spec.items():
        day_key = f"{key}.hours_by_weekday.{day_name}"
        try:
            day = parse_weekday(day_name)
        except ValueError as exc:
            raise _KeyError(day_key, str(exc)) from None
        by_weekday[day] = _hours(day_hours, day_key)

    holidays_value = spec.get("holidays", [])
    if not isinstance(holidays_value, list):
        raise _KeyError(f"{key}.holidays", "must be a list of dates such as [2026-12-25]")
    holidays: list[date] = []
    for holiday in holidays_value:
        if isinstance(holiday, str):
            try:
                holiday = date.fromisoformat(holiday.strip())
            except ValueError:
                raise _KeyError(
                    f"{key}.holidays", f"bad date {holiday!r} (expected YYYY-MM-DD)"
                ) from None
        if not isinstance(holiday, date) or isinstance(holiday, datetime):
            shown = holiday.isoformat() if hasattr(holiday, "isoformat") else holiday
            raise _KeyError(f"{key}.holidays", f"bad date {shown!r} (expected YYYY-MM-DD)")
        holidays.append(holiday)

    for day in by_weekday:
        if day not in weekdays:
            raise _KeyError(
                f"{key}.hours_by_weekday",
                f"hours given for {WEEKDAY_NAMES[day]}, which is not in weekdays",
            )
    try:
        load_zone(time_zone)
    except ValueError as exc:
        raise _KeyError(f"{key}.time_zone", str(exc)) from None
    try:  # (weekday numbers are one of the key forms BusinessCalendar accepts)
        return BusinessCalendar(time_zone, weekdays, hours, holidays, cast("dict[int | str, Any]", by_weekday))
    except ValueError as exc:  # no business time at all
        raise _KeyError(key, str(exc)) from None


def _hours(value: Any, key: str) -> list[str]:
    """Validate an hours value; returns it as a list of interval strings."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _KeyError(key, 'must be a list of intervals such as ["09:00-17:00"]')
    try:
        parse_hours(value)
    except ValueError as exc:
        raise _KeyError(key, str(exc)) from None
    return value


# --- the clock ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SlaClock:
    """The SLA clock of one metric of one ticket (immutable; methods return new clocks).

    ``banked_ms`` is the business time of finished running segments; the current segment
    runs from ``running_since_ms`` (``None`` while paused, then ``paused_at_ms`` says since
    when). Times earlier than the latest start/pause/resume are clamped to it, so
    out-of-order calls never make elapsed time go backwards. ``calendar`` is not part of
    the wire form: the caller passes the policy's calendar to :meth:`from_wire`.
    """

    calendar: BusinessCalendar
    target_ms: int
    started_ms: int
    banked_ms: int
    running_since_ms: int | None
    paused_at_ms: int | None

    @classmethod
    def start(
        cls, calendar: BusinessCalendar, target_ms: int, at_ms: int, *, paused: bool = False
    ) -> SlaClock:
        """A clock started at ``at_ms`` with a target of ``target_ms`` business ms (>= 0).

        With ``paused=True`` it is created paused (e.g. a ticket created as pending) and
        starts counting at the first :meth:`resume`.
        """
        if target_ms < 0:
            raise ValueError(f"target_ms must not be negative: {target_ms}")
        if paused:
            return cls(calendar, target_ms, at_ms, 0, None, at_ms)
        return cls(calendar, target_ms, at_ms, 0, at_ms, None)

    @property
    def paused(self) -> bool:
        """True while the clock is paused."""
        return self.running_since_ms is None

    def pause(self, at_ms: int) -> SlaClock:
        """Stop counting at ``at_ms`` (no-op if already paused)."""
        if self.running_since_ms is None:
            return self
        at_ms = max(at_ms, self.running_since_ms)
        banked = self.banked_ms + self.calendar.business_ms_between(self.running_since_ms, at_ms)
        return replace(self, banked_ms=banked, running_since_ms=None, paused_at_ms=at_ms)

    def resume(self, at_ms: int) -> SlaClock:
        """Start counting again at ``at_ms`` (no-op if running)."""
        if self.running_since_ms is not None:
            return self
        at_ms = max(at_ms, self.paused_at_ms if self.paused_at_ms is not None else at_ms)
        return replace(self, running_since_ms=at_ms, paused_at_ms=None)

    def elapsed_ms(self, at_ms: int) -> int:
        """Business ms counted up to ``at_ms``, excluding paused spans (never decreasing)."""
        if self.running_since_ms is None or at_ms <= self.running_since_ms:
            return self.banked_ms
        return self.banked_ms + self.calendar.business_ms_between(self.running_since_ms, at_ms)

    def threshold_ms(self, fraction: Fraction | int | float | str = 1) -> int:
        """``floor(target_ms * fraction)`` in exact integer arithmetic."""
        # the breach (1) and the policies' at-risk fractions are int and Fraction already:
        # building a Fraction per timer armed was ~0.6 % of the worker's CPU
        ratio = fraction if type(fraction) is int or type(fraction) is Fraction else as_fraction(fraction)
        if ratio < 0:
            raise ValueError(f"fraction must not be negative: {fraction!r}")
        if type(ratio) is int:
            return self.target_ms * ratio
        return self.target_ms * ratio.numerator // ratio.denominator

    def due_ms(self, fraction: Fraction | int | float | str = 1) -> int | None:
        """The instant elapsed time reaches ``threshold_ms(fraction)``; ``None`` while paused.

        While running it is constant (it does not depend on "now"); after a pause and
        resume it is recomputed from the remaining business time and never moves earlier.
        If the threshold was already reached before the current running segment, the
        segment start (a past instant) is returned: the moment has passed, and callers
        keep their own "already emitted" flags.
        """
        if self.running_since_ms is None:
            return None
        remaining = self.threshold_ms(fraction) - self.banked_ms
        if remaining <= 0:
            return self.running_since_ms
        return self.calendar.add_business_ms(self.running_since_ms, remaining)

    def reached(self, at_ms: int, fraction: Fraction | int | float | str = 1) -> bool:
        """True if elapsed business time at ``at_ms`` is ``>= threshold_ms(fraction)``
        (for a running clock: ``at_ms >= due_ms(fraction)``)."""
        return self.elapsed_ms(at_ms) >= self.threshold_ms(fraction)

    def to_wire(self) -> dict[str, int | None]:
        """Plain-type form for changelogged state (the calendar is not included)."""
        return {
            "target_ms": self.target_ms,
            "started_ms": self.started_ms,
            "banked_ms": self.banked_ms,
            "running_since_ms": self.running_since_ms,
            "paused_at_ms": self.paused_at_ms,
        }

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any], calendar: BusinessCalendar) -> SlaClock:
        """Inverse of :meth:`to_wire`, with the calendar of the ticket's policy."""
        try:
            values = {key: wire[key] for key in _WIRE_KEYS}
        except KeyError as exc:
            raise ValueError(f"SlaClock wire form misses {exc.args[0]!r}") from None
        for key, value in values.items():
            optional = key in ("running_since_ms", "paused_at_ms")
            if (value is None and not optional) or (
                value is not None and (isinstance(value, bool) or not isinstance(value, int))
            ):
                raise ValueError(f"SlaClock wire form: {key} must be an int, got {value!r}")
        if (values["running_since_ms"] is None) == (values["paused_at_ms"] is None):
            raise ValueError(
                "SlaClock wire form: exactly one of running_since_ms and paused_at_ms must be set"
            )
        return cls(calendar, **values)


_WIRE_KEYS = ("target_ms", "started_ms", "banked_ms", "running_since_ms", "paused_at_ms")
