"""A realistic, seeded generator of CRM events for the three input topics.

``generate(SimConfig(...))`` yields :class:`SimMessage` objects in **delivery order**
(event time plus transport jitter; late ones later): Kafka topic, key (customer id),
value (canonical JSON from :func:`streams.codec.encode_event`, or deliberately malformed
bytes) and the event time. :func:`write_jsonl` writes them to a file (``.gz``
supported, byte-identical for the same seed); :func:`produce` sends them to Kafka,
optionally rate-limited or replayed in compressed event time (``speedup``).

What is simulated (details, distributions and defaults: ``docs/simulator.md``):

* **Customers** with lifecycles. The opening book (``customers``) is 80 % subscribers,
  8 % trials and 12 % open prospects. Subscribers renew (monthly or annually), expand
  (upsell, cross-sell add-ons with their own subscription), get refunds now and then and
  churn (``subscription.cancelled`` with a reason; the hazard rises with bad support
  experiences). Trials convert or lapse at their end. New leads arrive every day
  (``lead.created`` → ``lead.contacted`` → ``lead.converted`` with a subscription and a
  first order, or ``lead.lost``). ``marketing.spend`` is reported once a day per
  campaign (``customer_id`` = campaign id).
* **Support**: agents on shifts (night/early/day/late, business-hours heavy, thin on
  weekends); tickets arrive on a diurnal and weekly load curve with realistic priority,
  channel, team and product mixes. First reply and resolution times are lognormal; the
  median grows with *pressure* (arrivals per agent on shift at creation time) and with
  understaffing, and is calibrated so that the first-reply p50 over the simulated
  period equals the configured median. Tickets see customer replies, pending / on-hold
  spans, escalations, reopens, auto-close after 3 days, ``interaction.logged`` with
  handle times, and surveys (NPS/CSAT/CES) whose scores fall when the ticket breached
  its SLA, was reopened or escalated. Subscribers start ``session.started`` sessions
  (product usage) on the same daily curve.
* **Delivery flaws**, drawn from their own random stream (so changing a share never
  changes the clean events): duplicates (exact re-sends of an earlier message), late
  events (delivered 1–10 minutes after their event time, beyond the 30 s
  out-of-orderness bound), jitter within the bound, and malformed messages (extra
  messages the codec rejects, across eight rejection reasons).

Arrivals (new tickets, leads, sessions, orders, ...) happen inside
``[start, start + duration)``; the follow-ups of what started inside (replies, solves,
surveys, refunds) are emitted up to ``tail`` after the end, so lifecycles are complete
and response-time percentiles are not biased by cutting tickets off at the end. When
``opening_book`` is on, the subscriptions that exist at ``start`` are announced by
``subscription.started`` events (source ``billing-backfill``) in the 5 minutes before
``start``, so that subscriber counts, MRR and churn rates have a base.

Same seed and knobs → byte-identical output.
"""

from __future__ import annotations

import asyncio
import bisect
import gzip
import heapq
import itertools
import math
import random
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import msgspec

from streams.codec import encode_event, format_ts, parse_ts
from streams.core.durations import parse_duration
from streams.core.events import EVENT_TYPES, PRIORITIES, make_event
from streams.core.sla import DEFAULT_TARGETS

SECOND: Final = 1_000
MINUTE: Final = 60_000
HOUR: Final = 3_600_000
DAY: Final = 86_400_000

OPENING_BOOK_MS: Final = 5 * MINUTE  # the backfill of existing subscriptions before start
OUT_OF_ORDERNESS_MS: Final = 30 * SECOND  # the pipeline's default bound (late = beyond it)
LATE_DELAY_MS: Final = (1 * MINUTE, 10 * MINUTE)
DUPLICATE_DELAY_MS: Final = (100, 2 * MINUTE)  # a producer retry re-sends within this

DEFAULT_FRT_MEDIAN: Final = MappingProxyType(
    {"urgent": "15m", "high": "1h", "normal": "2h", "low": "6h"}
)
DEFAULT_RESOLUTION_MEDIAN: Final = MappingProxyType(
    {"urgent": "150m", "high": "10h", "normal": "20h", "low": "48h"}
)


# --- knobs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimConfig:
    """Knobs of the simulator (all have defaults; ``docs/simulator.md`` explains each).

    * ``seed``: random seed. Same seed and knobs → byte-identical messages.
    * ``start``: RFC 3339 start of the simulated period (default Monday 2026-11-02 00:00Z).
    * ``duration``: length of the period in which new activity arrives (``6h``, ``1d``,
      ``7d``). Follow-ups of that activity run on for up to ``tail`` (default ``1d``;
      ``0s`` cuts everything at the end).
    * ``customers``: size of the opening customer book (subscribers, trials, prospects);
      new prospects are added as leads arrive.
    * ``tickets_per_customer_per_day``: support tickets per active customer (subscriber
      or trial) per average day of the week.
    * ``frt_median``: first-reply-time median per priority (durations); the simulated
      FRT p50 of each priority comes out at this value with the default staffing.
      Partial mappings are merged with the defaults (urgent 15m, high 1h, normal 2h,
      low 6h).
    * ``resolution_median``: resolution-time median per priority for tickets that take
      more than one contact (urgent 150m, high 10h, normal 20h, low 48h), before pressure
      and escalation effects.
    * ``agents``: support agents across all shifts; ``None`` sizes the team for the load
      (about 25 tickets per agent-day). Fewer agents than that slow every reply.
    * ``duplicates``, ``late``, ``malformed``: shares of clean events that are re-sent
      (0.5 %), delivered 1–10 minutes late (0.2 %), or accompanied by a malformed
      message (0.1 %).
    * ``jitter``: every other message is delivered up to this after its event time
      (default ``10s``; keep it within the pipeline's out-of-orderness bound, 30 s).
    * ``opening_book``: announce the subscriptions and open leads existing at ``start``
      just before it.
    """

    seed: int = 1
    start: str = "2026-11-02T00:00:00Z"
    duration: str = "1d"
    customers: int = 5000
    tickets_per_customer_per_day: float = 0.08
    frt_median: Mapping[str, str] = field(default_factory=lambda: DEFAULT_FRT_MEDIAN)
    resolution_median: Mapping[str, str] = field(default_factory=lambda: DEFAULT_RESOLUTION_MEDIAN)
    agents: int | None = None
    duplicates: float = 0.005
    late: float = 0.002
    malformed: float = 0.001
    jitter: str = "10s"
    tail: str = "1d"
    opening_book: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "frt_median", _merged_medians(self.frt_median, DEFAULT_FRT_MEDIAN, "frt_median"))
        object.__setattr__(
            self, "resolution_median",
            _merged_medians(self.resolution_median, DEFAULT_RESOLUTION_MEDIAN, "resolution_median"),
        )
        try:
            parse_ts(self.start)
        except ValueError as error:
            raise ValueError(f"start: {error}") from None
        for name in ("duration", "jitter", "tail"):
            _checked_duration(name, getattr(self, name))
        if self.duration_ms <= 0:
            raise ValueError("duration must be positive")
        if not 1 <= self.customers <= 10_000_000:
            raise ValueError(f"customers must be in 1..10000000, got {self.customers}")
        if not 0 <= self.tickets_per_customer_per_day <= 100:
            raise ValueError("tickets_per_customer_per_day must be in 0..100")
        if self.agents is not None and self.agents < 1:
            raise ValueError(f"agents must be at least 1, got {self.agents}")
        for name in ("duplicates", "late", "malformed"):
            share = getattr(self, name)
            if not 0 <= share <= 0.5:
                raise ValueError(f"{name} must be a share in [0, 0.5], got {share}")

    @property
    def start_ms(self) -> int:
        return parse_ts(self.start)

    @property
    def duration_ms(self) -> int:
        return parse_duration(self.duration)

    @property
    def end_ms(self) -> int:
        """End of the arrival period (exclusive)."""
        return self.start_ms + self.duration_ms

    @property
    def horizon_ms(self) -> int:
        """No event is generated at or after this time (end + tail)."""
        return self.end_ms + parse_duration(self.tail)

    @property
    def jitter_ms(self) -> int:
        return parse_duration(self.jitter)

    def frt_median_ms(self, priority: str) -> int:
        return parse_duration(self.frt_median[priority])

    def resolution_median_ms(self, priority: str) -> int:
        return parse_duration(self.resolution_median[priority])


def _checked_duration(name: str, text: str) -> int:
    try:
        return parse_duration(text)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{name}: {error}") from None


def _merged_medians(given: Mapping[str, str], defaults: Mapping[str, str], name: str) -> Mapping[str, str]:
    unknown = sorted(set(given) - set(PRIORITIES))
    if unknown:
        raise ValueError(f"{name}: unknown priorities {unknown} (expected {', '.join(PRIORITIES)})")
    merged = {p: given.get(p, defaults[p]) for p in PRIORITIES}
    for priority, text in merged.items():
        if _checked_duration(f"{name}.{priority}", text) <= 0:
            raise ValueError(f"{name}.{priority} must be positive, got {text!r}")
    return MappingProxyType(merged)


# --- messages --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SimMessage:
    """One message to deliver.

    ``topic`` is the catalogue topic of ``event_type`` (for malformed messages: of the
    type the message was meant to be); ``key`` is the customer id; ``value`` the bytes.
    ``delivered_at_ms`` is the simulated arrival time (messages come in its order);
    ``flaw`` is ``""``, ``"duplicate"``, ``"late"`` or ``"malformed"``, and
    ``expected_reason`` the codec's rejection reason for malformed ones.
    """

    topic: str
    key: bytes
    value: bytes
    event_time_ms: int
    event_type: str
    delivered_at_ms: int
    flaw: str = ""
    expected_reason: str = ""


# --- tables: the shape of the business ---------------------------------------------------------

Table = tuple[tuple[Any, float], ...]

# relative arrival intensity per UTC hour on a weekday (business-hours heavy)
HOURLY_LOAD: Final = (
    0.10, 0.07, 0.06, 0.06, 0.08, 0.15, 0.30, 0.55, 0.85, 1.00, 1.00, 0.95,
    0.85, 0.90, 0.95, 0.90, 0.80, 0.65, 0.50, 0.40, 0.32, 0.25, 0.18, 0.13,
)
WEEKDAY_LOAD: Final = (1.10, 1.00, 1.00, 0.95, 0.90, 0.30, 0.25)  # Monday .. Sunday
_MEAN_DAILY_LOAD: Final = sum(HOURLY_LOAD) * sum(WEEKDAY_LOAD) / 7

# support shifts: (name, first hour, end hour (exclusive, may wrap), share of agents)
SHIFTS: Final = (("night", 22, 6, 0.10), ("early", 6, 14, 0.25), ("day", 9, 17, 0.40), ("late", 14, 22, 0.25))
WEEKEND_ROTA: Final = 0.35  # share of each shift working on Saturday and Sunday
TICKETS_PER_AGENT_DAY: Final = 25

PRIORITY_MIX: Final[Table] = (("urgent", 0.05), ("high", 0.20), ("normal", 0.55), ("low", 0.20))
TICKET_CHANNEL_MIX: Final[Table] = (("email", 0.40), ("chat", 0.25), ("phone", 0.15), ("web", 0.15), ("social", 0.05))
TEAM_MIX: Final[Table] = (("frontline", 0.45), ("technical", 0.30), ("billing", 0.15), ("onboarding", 0.10))
ESCALATION_TEAM: Final = {"frontline": "technical", "technical": "engineering", "billing": "finance",
                          "onboarding": "technical", "enterprise": "engineering"}
# log-multiplier of the first-reply median per channel (live channels are answered faster)
CHANNEL_FRT_LOG: Final = {"email": math.log(1.3), "chat": math.log(0.5), "phone": math.log(0.4),
                          "web": math.log(1.3), "social": math.log(1.0)}
FCR_SHARE: Final = {"email": 0.25, "chat": 0.45, "phone": 0.50, "web": 0.25, "social": 0.35}
ESCALATION_SHARE: Final = {"urgent": 0.25, "high": 0.12, "normal": 0.05, "low": 0.02}
ESCALATION_RESOLUTION_FACTOR: Final = 1.6
REOPEN_SHARE: Final = 0.05  # of solved tickets (x1.8 for first-contact solves: closed too early)
SURVEY_SHARE: Final = 0.35  # of solved tickets that get an answered survey
SURVEY_MIX: Final[Table] = (("csat", 0.55), ("nps", 0.30), ("ces", 0.15))
EXCHANGES_MIX: Final[Table] = ((1, 0.50), (2, 0.30), (3, 0.15), (4, 0.05))
WAITING_MIX: Final[Table] = (("pending", 0.55), ("on_hold", 0.08), ("", 0.37))
AUTO_CLOSE_MS: Final = 3 * DAY
FRT_SIGMA: Final = 1.0
RESOLUTION_SIGMA: Final = 0.9
FRT_PRESSURE_EXPONENT: Final = 0.6  # FRT median ∝ pressure^0.6
RESOLUTION_PRESSURE_EXPONENT: Final = 0.3
STAFFING_EXPONENT: Final = 1.0  # half the agents → twice the median
# handle time medians (seconds) per interaction channel
HANDLE_TIME_MEDIAN_S: Final = {"email": 240.0, "chat": 480.0, "phone": 360.0, "web": 180.0,
                               "social": 180.0, "app": 120.0}
HANDLE_TIME_SIGMA: Final = 0.6

SEGMENT_MIX: Final[Table] = (("smb", 0.70), ("mid", 0.25), ("enterprise", 0.05))
SEGMENT_TICKET_WEIGHT: Final = {"smb": 1.0, "mid": 2.0, "enterprise": 4.0}
SEGMENT_PLANS: Final[dict[str, Table]] = {
    "smb": (("starter", 0.55), ("pro", 0.45)),
    "mid": (("pro", 0.50), ("business", 0.50)),
    "enterprise": (("enterprise", 1.0),),
}
SEGMENT_SEATS: Final = {"smb": (1, 5), "mid": (5, 40), "enterprise": (20, 150)}
SEGMENT_ANNUAL_SHARE: Final = {"smb": 0.2, "mid": 0.4, "enterprise": 1.0}
SEGMENT_SESSIONS_PER_DAY: Final = {"smb": 1.0, "mid": 2.0, "enterprise": 4.0}
SEAT_PRICE_MINOR: Final = {"starter": 1500, "pro": 3900, "business": 7900, "enterprise": 9900}
ANNUAL_DISCOUNT: Final = 0.85
MAIN_PRODUCT: Final = "crm-core"
ADDONS: Final = {"analytics": 4900, "integrations": 2900, "mobile": 1900}  # flat MRR (minor)
CURRENCY_MIX: Final[Table] = (("EUR", 0.55), ("USD", 0.35), ("GBP", 0.10))
PLATFORM_MIX: Final[Table] = (("web", 0.60), ("ios", 0.20), ("android", 0.15), ("desktop", 0.05))
BOOK_MIX: Final[Table] = (("subscriber", 0.80), ("trial", 0.08), ("prospect", 0.12))
ADDON_AT_START_SHARE: Final = 0.3

# daily hazards (per average day) of the commercial lifecycle
MONTHLY_CHURN: Final = 0.025
FRUSTRATION_CHURN_FACTOR: Final = 1.5  # hazard × (1 + 1.5 × frustration)
UPSELL_PER_DAY: Final = {"smb": 0.003, "mid": 0.006, "enterprise": 0.012}
CROSS_SELL_PER_DAY: Final = 0.002
RELATIONSHIP_NPS_PER_DAY: Final = 0.004
CSM_CONTACT_PER_DAY: Final = {"smb": 0.005, "mid": 0.02, "enterprise": 0.08}
TRIAL_DAYS: Final = 14
TRIAL_CONVERSION: Final = 0.40
REFUND_SHARE: Final = {"new": 0.05, "renewal": 0.03, "upsell": 0.04, "cross_sell": 0.04}
CHURN_REASONS: Final[Table] = (("price", 0.25), ("missing_feature", 0.20), ("switched_competitor", 0.20),
                               ("budget_cut", 0.15), ("no_longer_needed", 0.15), ("poor_support", 0.05))

# sales funnel
LEADS_PER_CUSTOMER_DAY: Final = 0.004
LEAD_RESPONSE_MEDIAN_MS: Final = 2 * HOUR
LEAD_CONTACT_PER_DAY: Final = 0.25
LEAD_CONVERT_PER_DAY: Final = 0.03
LEAD_LOST_PER_DAY: Final = 0.04
LEAD_LOST_REASONS: Final[Table] = (("no_budget", 0.3), ("chose_competitor", 0.25), ("no_response", 0.3),
                                   ("not_a_fit", 0.15))
SALES_REPS: Final = 8
# (channel, campaign or None, share of leads); paid campaigns also report spend
LEAD_SOURCES: Final[Table] = (
    (("search", "cmp-search-brand"), 0.18), (("search", "cmp-search-generic"), 0.15),
    (("social", "cmp-social-retargeting"), 0.12), (("display", "cmp-display-q4"), 0.08),
    (("events", "cmp-webinar-series"), 0.07), (("referral", None), 0.15), (("organic", None), 0.25),
)
COST_PER_PAID_LEAD_MINOR: Final = 20_000  # EUR cents; daily budgets are sized from it
SPEND_WEEKEND_FACTOR: Final = 0.6

# the codec rejection reasons malformed messages exercise
MALFORMED_REASONS: Final = (
    "invalid_json", "not_an_object", "missing_field", "wrong_type", "unknown_event_type",
    "unsupported_schema_version", "out_of_range", "bad_timestamp",
)


# --- small pure helpers ---------------------------------------------------------------------------


def weekday_of(ts_ms: int) -> int:
    """0 = Monday … 6 = Sunday (UTC). 1970-01-01 was a Thursday."""
    return (ts_ms // DAY + 3) % 7


def hour_of(ts_ms: int) -> int:
    return (ts_ms % DAY) // HOUR


def is_weekend(ts_ms: int) -> bool:
    return weekday_of(ts_ms) >= 5


def load_at(ts_ms: int) -> float:
    """Relative arrival intensity at an instant (hour-of-day × day-of-week)."""
    return HOURLY_LOAD[hour_of(ts_ms)] * WEEKDAY_LOAD[weekday_of(ts_ms)]


def shift_covers(first_hour: int, end_hour: int, hour: int) -> bool:
    if first_hour < end_hour:
        return first_hour <= hour < end_hour
    return hour >= first_hour or hour < end_hour  # wraps past midnight


def staff_share(weekend: bool, hour: int) -> float:
    """Share of all agents on duty at an hour."""
    share = sum(s for _, first, end, s in SHIFTS if shift_covers(first, end, hour))
    return share * (WEEKEND_ROTA if weekend else 1.0)


def log_pressure(ts_ms: int) -> float:
    """log(arrivals per agent on duty) at an instant, up to a constant."""
    return math.log(load_at(ts_ms) / staff_share(is_weekend(ts_ms), hour_of(ts_ms)))


def assign_shifts(agent_ids: list[str]) -> dict[str, list[str]]:
    """Split agents over :data:`SHIFTS` by share; every shift gets at least one agent
    (a very small team works more than one shift)."""
    counts = [max(1, round(share * len(agent_ids))) for *_, share in SHIFTS]
    rotation = itertools.cycle(agent_ids)
    return {name: [next(rotation) for _ in range(count)] for (name, *_), count in zip(SHIFTS, counts, strict=True)}


def cumulative(table: Table) -> tuple[tuple[Any, ...], tuple[float, ...]]:
    """Values and cumulative weights of a (value, weight) table, for :func:`pick`."""
    values = tuple(value for value, _ in table)
    return values, tuple(itertools.accumulate(weight for _, weight in table))


def pick(rng: random.Random, table: tuple[tuple[Any, ...], tuple[float, ...]]) -> Any:
    """A value drawn from a :func:`cumulative` table."""
    values, cum = table
    return values[bisect.bisect_right(cum, rng.random() * cum[-1])]


def lognormal_ms(rng: random.Random, median_ms: float, sigma: float, cap_ms: float = 30 * DAY) -> int:
    """A lognormal duration with the given median, at least 1 s and at most ``cap_ms``."""
    return int(min(cap_ms, max(SECOND, median_ms * math.exp(sigma * rng.gauss(0.0, 1.0)))))


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson count (Knuth below 30, a rounded normal above)."""
    if mean <= 0:
        return 0
    if mean >= 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def happens(rng: random.Random, daily_rate: float, days: float) -> bool:
    """Whether a Poisson process of ``daily_rate`` fires at least once in ``days``."""
    return rng.random() < 1.0 - math.exp(-daily_rate * days)


def normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def mixture_log_median(components: Mapping[float, float], sigma: float) -> float:
    """Median (in logs) of the mixture ``Σ w · LogNormal(f, σ)`` given {f: w}.

    Used to calibrate the FRT: if every ticket's log-median is ``log(scale) + f``, the
    overall median is ``scale · exp(mixture_log_median)``.
    """
    total = sum(components.values())
    low, high = min(components) - 6 * sigma, max(components) + 6 * sigma
    for _ in range(60):
        mid = (low + high) / 2
        below = sum(w * normal_cdf((mid - f) / sigma) for f, w in components.items()) / total
        low, high = (mid, high) if below < 0.5 else (low, mid)
    return (low + high) / 2


def survey_score(rng: random.Random, survey: str, mood: float) -> int:
    """A survey answer on its scale from a latent satisfaction (≈ N(mood, 1))."""
    latent = mood + rng.gauss(0.0, 1.0)
    if survey == "nps":
        return min(10, max(0, round(8.2 + 1.8 * latent)))
    if survey == "csat":
        return min(5, max(1, round(4.1 + 0.9 * latent)))
    return min(7, max(1, round(5.3 + 1.1 * latent)))  # ces: 7 = very easy


def support_experience(frt_breached: bool, resolution_breached: bool, reopened: bool,
                       escalated: bool, fast: bool) -> float:
    """How a ticket moves the customer's latent satisfaction (negative = worse)."""
    return (0.2 - 1.3 * frt_breached - 1.1 * resolution_breached - 0.9 * reopened
            - 0.3 * escalated + 0.3 * fast)


# --- the load curve of one chunk of time -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Curve:
    """Hour slots of ``[start, end)`` weighted by the load curve.

    ``mass`` is the expected-count multiplier: 1.0 is an average day of the week, so a
    rate "per day" times ``mass`` is the expected count in the chunk.
    """

    slots: tuple[tuple[int, int], ...]
    cum: tuple[float, ...]
    mass: float

    @classmethod
    def between(cls, start_ms: int, end_ms: int) -> Curve:
        slots, weights = [], []
        hour_start = start_ms - start_ms % HOUR
        while hour_start < end_ms:
            lo, hi = max(start_ms, hour_start), min(end_ms, hour_start + HOUR)
            if hi > lo:
                slots.append((lo, hi))
                weights.append(load_at(hour_start) * (hi - lo) / HOUR)
            hour_start += HOUR
        return cls(tuple(slots), tuple(itertools.accumulate(weights)), sum(weights) / _MEAN_DAILY_LOAD)

    def sample(self, rng: random.Random) -> int:
        index = bisect.bisect_right(self.cum, rng.random() * self.cum[-1])
        lo, hi = self.slots[min(index, len(self.slots) - 1)]
        return lo + int(rng.random() * (hi - lo))


# --- customers ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Customer:
    """Simulation state of one customer (or prospect)."""

    customer_id: str
    segment: str
    currency: str
    status: str  # prospect | trial | subscriber | churned | lapsed | lost
    mood: float  # baseline satisfaction, ~N(0, 0.6)
    sessions_per_day: float
    plan: str = ""
    seats: int = 0
    annual: bool = False
    cycle_offset: int = 0  # renewal day within the billing cycle
    products: list[str] = field(default_factory=lambda: [MAIN_PRODUCT])
    subscriptions: list[tuple[str, str]] = field(default_factory=list)  # (subscription id, product)
    lead_id: str = ""
    since_ms: int = 0  # when the current status began
    trial_end_ms: int = 0
    frustration: float = 0.0  # decays daily; grows with breaches and reopens

    @property
    def active(self) -> bool:
        return self.status in ("subscriber", "trial")

    @property
    def mrr_minor(self) -> int:
        return SEAT_PRICE_MINOR[self.plan] * self.seats if self.plan else 0


def new_customer(rng: random.Random, customer_id: str, status: str, since_ms: int) -> Customer:
    """A customer with a segment, plan, seats and habits drawn from the business tables."""
    segment = pick(rng, _SEGMENTS)
    low, high = SEGMENT_SEATS[segment]
    return Customer(
        customer_id=customer_id,
        segment=segment,
        currency=pick(rng, _CURRENCIES),
        status=status,
        mood=rng.gauss(0.0, 0.6),
        sessions_per_day=SEGMENT_SESSIONS_PER_DAY[segment] * math.exp(0.6 * rng.gauss(0.0, 1.0)),
        plan=pick(rng, _PLANS[segment]),
        seats=rng.randint(low, high),
        annual=rng.random() < SEGMENT_ANNUAL_SHARE[segment],
        cycle_offset=rng.randrange(365),
        since_ms=since_ms,
    )


def billing_amount(c: Customer) -> int:
    """What one renewal charges: a month, or a discounted year."""
    return round(c.mrr_minor * 12 * ANNUAL_DISCOUNT) if c.annual else c.mrr_minor


def renews_on(c: Customer, day_number: int) -> bool:
    """Monthly plans renew every 30 days, annual ones every 365, at the customer's offset."""
    period = 365 if c.annual else 30
    return (day_number - c.cycle_offset) % period == 0


_SEGMENTS: Final = cumulative(SEGMENT_MIX)
_PLANS: Final = {segment: cumulative(table) for segment, table in SEGMENT_PLANS.items()}
_CURRENCIES: Final = cumulative(CURRENCY_MIX)
_PRIORITIES: Final = cumulative(PRIORITY_MIX)
_TICKET_CHANNELS: Final = cumulative(TICKET_CHANNEL_MIX)
_TEAMS: Final = cumulative(TEAM_MIX)
_SURVEYS: Final = cumulative(SURVEY_MIX)
_EXCHANGES: Final = cumulative(EXCHANGES_MIX)
_WAITING: Final = cumulative(WAITING_MIX)
_PLATFORMS: Final = cumulative(PLATFORM_MIX)
_BOOK: Final = cumulative(BOOK_MIX)
_CHURN_REASONS: Final = cumulative(CHURN_REASONS)
_LEAD_LOST_REASONS: Final = cumulative(LEAD_LOST_REASONS)
_LEAD_SOURCES: Final = cumulative(LEAD_SOURCES)
_MALFORMED: Final = cumulative(tuple((reason, 1.0) for reason in MALFORMED_REASONS))


# --- malformed messages ------------------------------------------------------------------------------


def malform(rng: random.Random, value: bytes, reason: str) -> bytes:
    """Bytes derived from a valid message that the codec rejects with ``reason``.

    Never contains a newline (one message per JSON line).
    """
    if reason == "invalid_json":
        if rng.random() < 0.5:
            return value[: max(1, len(value) // 2)]  # truncated in transit
        cut = value.index(b'"source"') + 1
        return value[:cut] + b"\xff" + value[cut:]  # not UTF-8
    if reason == "not_an_object":
        return b"[" + value + b"]"
    doc = msgspec.json.decode(value)
    if reason == "missing_field":
        del doc[rng.choice(("event_id", "occurred_at", "customer_id", "data"))]
    elif reason == "wrong_type":
        doc["schema_version"] = "1"
    elif reason == "unknown_event_type":
        doc["event_type"] = doc["event_type"].split(".")[0] + ".merged"
    elif reason == "unsupported_schema_version":
        doc["schema_version"] = 2
    elif reason == "out_of_range":
        doc["customer_id"] = ""
    elif reason == "bad_timestamp":
        doc["occurred_at"] = doc["occurred_at"].replace("T", " ").removesuffix("Z")
    else:
        raise ValueError(f"unknown malformation {reason!r}")
    return msgspec.json.encode(doc)


# --- the outbox: flaws and delivery order -------------------------------------------------------------


@dataclass(slots=True)
class Tally:
    """Counts of a simulated stream, by topic and event type and by flaw (see :func:`observe`)."""

    by_type: Counter = field(default_factory=Counter)  # (topic, event_type) -> clean events
    duplicates: int = 0
    late: int = 0
    malformed: Counter = field(default_factory=Counter)  # expected reason -> messages
    messages: int = 0
    first_event_ms: int | None = None
    last_event_ms: int | None = None

    @property
    def events(self) -> int:
        return sum(self.by_type.values())

    def add(self, message: SimMessage) -> None:
        self.messages += 1
        if message.flaw == "duplicate":
            self.duplicates += 1
            return
        if message.flaw == "malformed":
            self.malformed[message.expected_reason] += 1
            return
        if message.flaw == "late":
            self.late += 1
        self.by_type[(message.topic, message.event_type)] += 1
        ts = message.event_time_ms
        if self.first_event_ms is None or ts < self.first_event_ms:
            self.first_event_ms = ts
        if self.last_event_ms is None or ts > self.last_event_ms:
            self.last_event_ms = ts


class Outbox:
    """Encodes events, applies delivery flaws and releases messages in delivery order."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.rng = random.Random(f"{config.seed}/delivery")
        self.horizon_ms = config.horizon_ms
        self.jitter_ms = config.jitter_ms
        self.heap: list[tuple[int, int, SimMessage]] = []
        self.sequence = 0
        self.event_ids = itertools.count(1)
        self.prefix = f"sim{config.seed}-"
        self.beyond_horizon = 0

    def put(self, ts_ms: int, event_type: str, customer_id: str, source: str, data: dict) -> bool:
        """Emit one event (False if it falls at or after the horizon and is dropped)."""
        if ts_ms >= self.horizon_ms:
            self.beyond_horizon += 1
            return False
        event = make_event(
            event_type, event_id=f"{self.prefix}{next(self.event_ids):09d}", occurred_at_ms=ts_ms,
            customer_id=customer_id, source=source, **data,
        )
        value = encode_event(event)
        topic, key = EVENT_TYPES[event_type][1], customer_id.encode()
        rng, config = self.rng, self.config
        late_roll, duplicate_roll, malformed_roll, jitter_roll = (rng.random() for _ in range(4))
        if late_roll < config.late:
            delivered, flaw = ts_ms + rng.randint(*LATE_DELAY_MS), "late"
        else:
            delivered, flaw = ts_ms + int(jitter_roll * (self.jitter_ms + 1)), ""
        self._push(SimMessage(topic, key, value, ts_ms, event_type, delivered, flaw))
        if duplicate_roll < config.duplicates:
            resent = delivered + rng.randint(*DUPLICATE_DELAY_MS)
            self._push(SimMessage(topic, key, value, ts_ms, event_type, resent, "duplicate"))
        if malformed_roll < config.malformed:
            reason = pick(rng, _MALFORMED)
            bad = malform(rng, value, reason)
            at = ts_ms + int(rng.random() * (self.jitter_ms + 1))
            self._push(SimMessage(topic, key, bad, ts_ms, event_type, at, "malformed", reason))
        return True

    def _push(self, message: SimMessage) -> None:
        self.sequence += 1
        heapq.heappush(self.heap, (message.delivered_at_ms, self.sequence, message))

    def release(self, before_ms: int | None = None) -> Iterator[SimMessage]:
        """Messages delivered before ``before_ms`` (all when None), in delivery order."""
        heap = self.heap
        while heap and (before_ms is None or heap[0][0] < before_ms):
            yield heapq.heappop(heap)[2]


# --- the support desk ---------------------------------------------------------------------------------

Step = tuple[int, str, dict]  # (event time, event type, payload)


@dataclass(frozen=True, slots=True)
class TicketOutcome:
    priority: str
    frt_breached: bool
    resolution_breached: bool
    reopened: bool
    escalated: bool


class SupportDesk:
    """Agents, shifts and the ticket lifecycle model.

    ``frt_scale_ms[p]`` is calibrated so that, over the arrival curve of the simulated
    period and the channel mix, the median first reply of priority ``p`` equals the
    configured median when the team has its default size.
    """

    def __init__(self, config: SimConfig, rng: random.Random, active_customers: int, next_id: Callable[[str], str]):
        self.config = config
        self.rng = rng
        self.next_id = next_id
        expected_daily = max(1.0, active_customers * config.tickets_per_customer_per_day)
        self.default_agents = max(3, math.ceil(expected_daily / TICKETS_PER_AGENT_DAY))
        self.agents = config.agents or self.default_agents
        self.staffing_log = STAFFING_EXPONENT * math.log(self.default_agents / self.agents)
        self.rota = self._rota()
        offset = self._frt_mixture_offset()
        self.frt_scale_ms = {p: config.frt_median_ms(p) / math.exp(offset) for p in PRIORITIES}
        self.resolution_median_ms = {p: config.resolution_median_ms(p) for p in PRIORITIES}

    # -- staffing --------------------------------------------------------------------------
    def _rota(self) -> dict[tuple[bool, int], tuple[str, ...]]:
        """Agent ids on duty per (weekend, hour); every hour has at least one agent."""
        ids = [f"agent-{n:03d}" for n in range(1, self.agents + 1)]
        by_shift = assign_shifts(ids)
        rota = {}
        for weekend in (False, True):
            for hour in range(24):
                on_duty = []
                for name, start, end, _ in SHIFTS:
                    if shift_covers(start, end, hour):
                        team = by_shift[name]
                        on_duty += team[: max(1, math.ceil(len(team) * WEEKEND_ROTA))] if weekend else team
                rota[weekend, hour] = tuple(on_duty) or tuple(ids[:1])
        return rota

    def agent_at(self, ts_ms: int) -> str:
        agents = self.rota[is_weekend(ts_ms), hour_of(ts_ms)]
        return agents[int(self.rng.random() * len(agents))]

    def _frt_mixture_offset(self) -> float:
        """log-median of the FRT mixture with unit scale over the simulated period."""
        components: dict[float, float] = {}
        start, end = self.config.start_ms, self.config.end_ms
        hour_start = start - start % HOUR
        while hour_start < end:
            weight = load_at(hour_start) * (min(end, hour_start + HOUR) - max(start, hour_start))
            pressure = FRT_PRESSURE_EXPONENT * log_pressure(hour_start)
            for channel, share in TICKET_CHANNEL_MIX:
                key = round(pressure + CHANNEL_FRT_LOG[channel], 9)
                components[key] = components.get(key, 0.0) + weight * share
            hour_start += HOUR
        return mixture_log_median(components, FRT_SIGMA)

    # -- one ticket ------------------------------------------------------------------------
    def ticket(self, c: Customer, created_ms: int) -> tuple[list[Step], TicketOutcome]:
        """The whole lifecycle of one ticket as time-ordered steps, and how it went."""
        rng = self.rng
        ticket_id = self.next_id("tkt")
        priority, channel = pick(rng, _PRIORITIES), pick(rng, _TICKET_CHANNELS)
        team = "enterprise" if c.segment == "enterprise" else pick(rng, _TEAMS)
        product = c.products[0] if rng.random() < 0.7 else rng.choice(c.products)
        steps: list[Step] = [(created_ms, "ticket.created", {
            "ticket_id": ticket_id, "priority": priority, "channel": channel, "team": team, "product": product,
        })]
        if channel in ("chat", "phone"):
            steps.append(self.interaction(created_ms + SECOND, ticket_id, channel, "inbound"))
        first_reply_ms = created_ms + self._first_reply_delay_ms(priority, channel, created_ms)
        steps += self._agent_reply(first_reply_ms, ticket_id, channel)
        escalated = rng.random() < ESCALATION_SHARE[priority]
        first_contact = rng.random() < FCR_SHARE[channel]
        if first_contact:
            solved_ms, paused_ms = first_reply_ms + lognormal_ms(rng, 4 * MINUTE, 0.8), 0
        else:
            target_ms = created_ms + self._resolution_ms(priority, created_ms, escalated)
            exchange_steps, last_ms, paused_ms = self._exchanges(
                ticket_id, channel, first_reply_ms, max(target_ms, first_reply_ms + 10 * MINUTE))
            steps += exchange_steps
            solved_ms = max(target_ms, last_ms + MINUTE)
        if escalated:
            at = created_ms + int(rng.uniform(0.05, 0.6) * (solved_ms - created_ms))
            steps.append((at, "ticket.escalated", {"ticket_id": ticket_id, "to_team": ESCALATION_TEAM[team]}))
        steps.append((solved_ms, "ticket.status_changed", {"ticket_id": ticket_id, "status": "solved"}))
        targets = DEFAULT_TARGETS[priority]
        frt_ms = first_reply_ms - created_ms
        reopened = rng.random() < REOPEN_SHARE * (1.8 if first_contact else 1.0)
        last_solved_ms = solved_ms
        if reopened:
            reopen_steps, last_solved_ms = self._reopen(ticket_id, channel, priority, solved_ms)
            steps += reopen_steps
        steps.append((last_solved_ms + AUTO_CLOSE_MS, "ticket.status_changed",
                      {"ticket_id": ticket_id, "status": "closed"}))
        outcome = TicketOutcome(
            priority=priority,
            frt_breached=frt_ms >= targets.first_reply_ms,
            resolution_breached=solved_ms - created_ms - paused_ms >= targets.resolution_ms,
            reopened=reopened,
            escalated=escalated,
        )
        if rng.random() < SURVEY_SHARE:
            fast = frt_ms < targets.first_reply_ms / 4
            steps.append(self._survey(c, ticket_id, product, last_solved_ms, outcome, fast))
        steps.sort(key=lambda step: step[0])
        return steps, outcome

    def _first_reply_delay_ms(self, priority: str, channel: str, created_ms: int) -> int:
        """Lognormal around the calibrated median, moved by pressure, channel and staffing."""
        log_median = (math.log(self.frt_scale_ms[priority]) + FRT_PRESSURE_EXPONENT * log_pressure(created_ms)
                      + CHANNEL_FRT_LOG[channel] + self.staffing_log)
        return lognormal_ms(self.rng, math.exp(log_median), FRT_SIGMA, cap_ms=10 * DAY)

    def _resolution_ms(self, priority: str, created_ms: int, escalated: bool) -> int:
        """Creation to solve for a ticket that needs more than one contact."""
        median = self.resolution_median_ms[priority] * math.exp(
            RESOLUTION_PRESSURE_EXPONENT * log_pressure(created_ms) + 0.5 * self.staffing_log)
        if escalated:
            median *= ESCALATION_RESOLUTION_FACTOR
        return lognormal_ms(self.rng, median, RESOLUTION_SIGMA)

    def interaction(self, ts_ms: int, ticket_id: str | None, channel: str, direction: str) -> Step:
        handle_s = lognormal_ms(self.rng, HANDLE_TIME_MEDIAN_S[channel] * SECOND, HANDLE_TIME_SIGMA, 4 * HOUR) / SECOND
        data = {"interaction_id": self.next_id("int"), "channel": channel, "direction": direction,
                "handle_time_s": round(handle_s, 1)}
        if ticket_id is not None:
            data["ticket_id"] = ticket_id
        return (ts_ms, "interaction.logged", data)

    def _agent_reply(self, ts_ms: int, ticket_id: str, channel: str) -> list[Step]:
        return [
            (ts_ms, "ticket.replied", {"ticket_id": ticket_id, "author": "agent", "agent_id": self.agent_at(ts_ms)}),
            self.interaction(ts_ms, ticket_id, channel, "outbound"),
        ]

    def _exchanges(self, ticket_id: str, channel: str, after_ms: int, until_ms: int) -> tuple[list[Step], int, int]:
        """Back-and-forth between the first reply and the solve.

        Each exchange may start by parking the ticket (pending on the customer, or
        on hold for a third party), then the customer (or the third party) answers and
        an agent replies. Returns the steps, the time of the last one and the paused time.
        """
        rng = self.rng
        count = pick(rng, _EXCHANGES)
        bounds = [after_ms, *sorted(after_ms + int(rng.random() * (until_ms - after_ms)) for _ in range(count - 1)),
                  until_ms]
        steps: list[Step] = []
        now, paused = after_ms, 0
        for start, end in itertools.pairwise(bounds):
            length = max(end - start, 4 * SECOND)
            waiting = pick(rng, _WAITING)
            park_ms = max(now, start) + SECOND
            if waiting:
                steps.append((park_ms, "ticket.status_changed", {"ticket_id": ticket_id, "status": waiting}))
            answer_ms = park_ms + SECOND + int(rng.uniform(0.1, 0.6) * length)
            if waiting != "on_hold":
                steps.append((answer_ms, "ticket.replied", {"ticket_id": ticket_id, "author": "customer"}))
            if waiting:
                steps.append((answer_ms + SECOND, "ticket.status_changed", {"ticket_id": ticket_id, "status": "open"}))
                paused += answer_ms + SECOND - park_ms
            now = answer_ms + 2 * SECOND + int(rng.uniform(0.2, 0.9) * max(0, start + length - answer_ms))
            steps += self._agent_reply(now, ticket_id, channel)
        return steps, now, paused

    def _reopen(self, ticket_id: str, channel: str, priority: str, solved_ms: int) -> tuple[list[Step], int]:
        """The customer writes back after the solve: reopen, reply, solve again."""
        rng = self.rng
        back_ms = solved_ms + lognormal_ms(rng, 6 * HOUR, 1.0, cap_ms=5 * DAY)
        reply_ms = back_ms + lognormal_ms(rng, self.frt_scale_ms[priority], FRT_SIGMA, cap_ms=3 * DAY)
        again_ms = reply_ms + lognormal_ms(rng, self.resolution_median_ms[priority] * 0.2, RESOLUTION_SIGMA)
        steps = [
            (back_ms, "ticket.replied", {"ticket_id": ticket_id, "author": "customer"}),
            (back_ms + SECOND, "ticket.status_changed", {"ticket_id": ticket_id, "status": "open"}),
            *self._agent_reply(reply_ms, ticket_id, channel),
            (again_ms, "ticket.status_changed", {"ticket_id": ticket_id, "status": "solved"}),
        ]
        return steps, again_ms

    def _survey(self, c: Customer, ticket_id: str, product: str, solved_ms: int, outcome: TicketOutcome,
                fast: bool) -> Step:
        rng = self.rng
        kind = pick(rng, _SURVEYS)
        experience = support_experience(outcome.frt_breached, outcome.resolution_breached, outcome.reopened,
                                        outcome.escalated, fast)
        score = survey_score(rng, kind, c.mood + experience)
        at = solved_ms + lognormal_ms(rng, 90 * MINUTE, 1.0, cap_ms=3 * DAY)
        return (at, "survey.answered", {"survey": kind, "score": score, "product": product, "ticket_id": ticket_id})


# --- the simulation ---------------------------------------------------------------------------------------


class Simulation:
    """Drives customers, the sales funnel, marketing and the support desk day by day.

    Each day (or the last partial day) generates the activity that *arrives* in it,
    with all follow-ups, into the :class:`Outbox`; then every message delivered before
    the end of that day is released (nothing generated later can be delivered earlier),
    so memory stays bounded by about a day of traffic plus the open tails.
    """

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.outbox = Outbox(config)
        self.ids: Counter = Counter()
        self.population_rng = random.Random(f"{config.seed}/population")
        self.commerce_rng = random.Random(f"{config.seed}/commerce")
        self.usage_rng = random.Random(f"{config.seed}/usage")
        self.sales_rng = random.Random(f"{config.seed}/sales")
        self.support_rng = random.Random(f"{config.seed}/support")
        self.customers = self._opening_book()
        active = sum(1 for c in self.customers if c.active)
        self.desk = SupportDesk(config, self.support_rng, active, self.next_id)

    def next_id(self, prefix: str) -> str:
        self.ids[prefix] += 1
        return f"{prefix}-{self.ids[prefix]:07d}"

    def emit(self, ts_ms: int, event_type: str, customer_id: str, source: str, **data: Any) -> bool:
        return self.outbox.put(ts_ms, event_type, customer_id, source, data)

    # -- driver ------------------------------------------------------------------------------------
    def run(self) -> Iterator[SimMessage]:
        config = self.config
        if config.opening_book:
            self._announce_book(config.start_ms - OPENING_BOOK_MS)
        chunk_start = config.start_ms
        while chunk_start < config.end_ms:
            chunk_end = min(config.end_ms, chunk_start - chunk_start % DAY + DAY)
            self._chunk(chunk_start, chunk_end)
            yield from self.outbox.release(chunk_end)
            chunk_start = chunk_end
        yield from self.outbox.release()

    def _chunk(self, start_ms: int, end_ms: int) -> None:
        curve = Curve.between(start_ms, end_ms)
        days = (end_ms - start_ms) / DAY
        self._marketing(start_ms, end_ms, days)
        self._new_leads(curve)
        for customer in list(self.customers):
            if customer.since_ms >= start_ms:
                continue  # joined (or changed status) during this chunk: next chunk on
            if customer.status == "prospect":
                self._prospect_day(customer, curve)
            elif customer.status == "trial":
                self._trial_day(customer, start_ms, end_ms, curve)
            elif customer.status == "subscriber":
                self._subscriber_day(customer, start_ms, end_ms, curve)
            if customer.active:
                self._sessions(customer, curve)
            customer.frustration *= math.exp(-days / 30)
        self._tickets(curve)

    # -- opening book ---------------------------------------------------------------------------
    def _opening_book(self) -> list[Customer]:
        rng, start = self.population_rng, self.config.start_ms
        customers = []
        for _ in range(self.config.customers):
            status = pick(rng, _BOOK)
            c = new_customer(rng, self.next_id("cus"), status, start - DAY)
            if status == "subscriber" and rng.random() < ADDON_AT_START_SHARE:
                c.products.append(rng.choice(sorted(ADDONS)))
            elif status == "trial":
                c.trial_end_ms = start + rng.randrange(TRIAL_DAYS * DAY)
            elif status == "prospect":
                c.lead_id = self.next_id("lead")
            customers.append(c)
        return customers

    def _announce_book(self, at_ms: int) -> None:
        rng = self.population_rng
        # open prospects' leads are announced too, so that conversions from day one carry
        # their channel and campaign (their sales cycle counts from the announcement);
        # a separate random stream keeps every other event of a seed unchanged
        lead_rng = random.Random(f"{self.config.seed}/book-leads")
        for c in self.customers:
            if c.status == "prospect" and c.lead_id:
                channel, campaign = pick(lead_rng, _LEAD_SOURCES)
                data = {"lead_id": c.lead_id, "channel": channel}
                if campaign:
                    data["campaign"] = campaign
                self.emit(at_ms + int(lead_rng.random() * OPENING_BOOK_MS), "lead.created", c.customer_id,
                          "crm-backfill", **data)
            if c.status != "subscriber":
                continue
            for product in c.products:
                ts = at_ms + int(rng.random() * OPENING_BOOK_MS)
                self._subscribe(c, product, ts, source="billing-backfill")

    # -- commerce -------------------------------------------------------------------------------
    def _subscribe(self, c: Customer, product: str, ts_ms: int, source: str = "billing") -> None:
        subscription_id = self.next_id("sub")
        c.subscriptions.append((subscription_id, product))
        if product == MAIN_PRODUCT:
            plan, mrr = c.plan, c.mrr_minor
        else:
            plan, mrr = f"addon-{product}", ADDONS[product]
        self.emit(ts_ms, "subscription.started", c.customer_id, source, subscription_id=subscription_id,
                  plan=plan, mrr_minor=mrr, currency=c.currency)

    def _order(self, c: Customer, ts_ms: int, kind: str, product: str, amount_minor: int) -> str:
        """A completed purchase, refunded later now and then (whole or in part)."""
        rng = self.commerce_rng
        order_id = self.next_id("ord")
        self.emit(ts_ms, "purchase.completed", c.customer_id, "shop", order_id=order_id,
                  amount_minor=amount_minor, currency=c.currency, product=product, kind=kind)
        if rng.random() < REFUND_SHARE[kind]:
            refund = amount_minor if rng.random() < 0.7 else round(amount_minor * rng.uniform(0.2, 0.8))
            self.emit(ts_ms + lognormal_ms(rng, 20 * HOUR, 1.0, cap_ms=14 * DAY), "purchase.refunded",
                      c.customer_id, "shop", order_id=order_id, amount_minor=refund, currency=c.currency)
        return order_id

    def _become_subscriber(self, c: Customer, ts_ms: int) -> str:
        c.status, c.since_ms = "subscriber", ts_ms
        c.cycle_offset = ts_ms // DAY % (365 if c.annual else 30)
        self._subscribe(c, MAIN_PRODUCT, ts_ms)
        return self._order(c, ts_ms + SECOND, "new", MAIN_PRODUCT, billing_amount(c))

    def _subscriber_day(self, c: Customer, start_ms: int, end_ms: int, curve: Curve) -> None:
        rng, days = self.commerce_rng, curve.mass
        billing_ms = start_ms - start_ms % DAY + HOUR + int(rng.random() * 2 * HOUR)  # nightly billing run
        if start_ms <= billing_ms < end_ms and renews_on(c, billing_ms // DAY):
            self._order(c, billing_ms, "renewal", MAIN_PRODUCT, billing_amount(c))
        churn_rate = MONTHLY_CHURN / 30 * (1 + FRUSTRATION_CHURN_FACTOR * c.frustration)
        if happens(rng, churn_rate, days):
            self._churn(c, curve.sample(rng))
            return
        if happens(rng, UPSELL_PER_DAY[c.segment], days):
            added = rng.randint(1, max(1, c.seats // 5))
            c.seats += added
            self._order(c, curve.sample(rng), "upsell", MAIN_PRODUCT, SEAT_PRICE_MINOR[c.plan] * added)
        missing = [p for p in sorted(ADDONS) if p not in c.products]
        if missing and happens(rng, CROSS_SELL_PER_DAY, days):
            product, ts = rng.choice(missing), curve.sample(rng)
            c.products.append(product)
            self._subscribe(c, product, ts)
            self._order(c, ts + SECOND, "cross_sell", product, ADDONS[product])
        if happens(rng, RELATIONSHIP_NPS_PER_DAY, days):
            score = survey_score(rng, "nps", c.mood + 0.1 - 0.5 * min(c.frustration, 3.0))
            self.emit(curve.sample(rng), "survey.answered", c.customer_id, "surveys", survey="nps", score=score,
                      product=MAIN_PRODUCT)
        if happens(rng, CSM_CONTACT_PER_DAY[c.segment], days):
            step = self.desk.interaction(curve.sample(rng), None, rng.choice(("phone", "email")), "outbound")
            self.emit(step[0], step[1], c.customer_id, "crm", **step[2])

    def _churn(self, c: Customer, ts_ms: int) -> None:
        rng = self.commerce_rng
        reason = "poor_support" if c.frustration > 1 and rng.random() < 0.6 else pick(rng, _CHURN_REASONS)
        for offset, (subscription_id, _) in enumerate(c.subscriptions):
            self.emit(ts_ms + offset * SECOND, "subscription.cancelled", c.customer_id, "billing",
                      subscription_id=subscription_id, reason=reason)
        c.subscriptions.clear()
        c.status, c.since_ms = "churned", ts_ms

    def _trial_day(self, c: Customer, start_ms: int, end_ms: int, curve: Curve) -> None:
        if not start_ms <= c.trial_end_ms < end_ms:
            return
        if self.commerce_rng.random() < TRIAL_CONVERSION:
            self._become_subscriber(c, c.trial_end_ms)
        else:
            c.status, c.since_ms = "lapsed", c.trial_end_ms

    # -- sales funnel and marketing ------------------------------------------------------------
    def _new_leads(self, curve: Curve) -> None:
        rng = self.sales_rng
        for _ in range(poisson(rng, self.config.customers * LEADS_PER_CUSTOMER_DAY * curve.mass)):
            ts = curve.sample(rng)
            c = new_customer(rng, self.next_id("cus"), "prospect", ts)
            c.lead_id = self.next_id("lead")
            self.customers.append(c)
            channel, campaign = pick(rng, _LEAD_SOURCES)
            data = {"lead_id": c.lead_id, "channel": channel}
            if campaign:
                data["campaign"] = campaign
            self.emit(ts, "lead.created", c.customer_id, "crm", **data)
            contact_ms = ts + lognormal_ms(rng, LEAD_RESPONSE_MEDIAN_MS, 1.2, cap_ms=7 * DAY)
            self.emit(contact_ms, "lead.contacted", c.customer_id, "crm", lead_id=c.lead_id,
                      agent_id=f"sales-{rng.randint(1, SALES_REPS):02d}")

    def _prospect_day(self, c: Customer, curve: Curve) -> None:
        rng, days = self.sales_rng, curve.mass
        if happens(rng, LEAD_CONTACT_PER_DAY, days):
            self.emit(curve.sample(rng), "lead.contacted", c.customer_id, "crm", lead_id=c.lead_id,
                      agent_id=f"sales-{rng.randint(1, SALES_REPS):02d}")
        if happens(rng, LEAD_CONVERT_PER_DAY, days):
            ts = curve.sample(rng)
            order_id = self._become_subscriber(c, ts + SECOND)
            self.emit(ts, "lead.converted", c.customer_id, "crm", lead_id=c.lead_id, order_id=order_id)
        elif happens(rng, LEAD_LOST_PER_DAY, days):
            ts = curve.sample(rng)
            self.emit(ts, "lead.lost", c.customer_id, "crm", lead_id=c.lead_id, reason=pick(rng, _LEAD_LOST_REASONS))
            c.status, c.since_ms = "lost", ts

    def _marketing(self, start_ms: int, end_ms: int, days: float) -> None:
        """Each paid campaign reports its spend for the (part of the) day at its end."""
        if end_ms - start_ms < 2 * MINUTE:
            return
        rng = self.sales_rng
        paid_leads_per_day = self.config.customers * LEADS_PER_CUSTOMER_DAY
        weekend = SPEND_WEEKEND_FACTOR if is_weekend(start_ms) else 1.0
        for (channel, campaign), share in LEAD_SOURCES:
            if campaign is None:
                continue
            budget = paid_leads_per_day * share * COST_PER_PAID_LEAD_MINOR * days * weekend
            amount = round(budget * math.exp(0.15 * rng.gauss(0.0, 1.0)))
            self.emit(end_ms - MINUTE, "marketing.spend", campaign, "ads", amount_minor=amount, currency="EUR",
                      channel=channel)

    # -- usage and support ------------------------------------------------------------------------
    def _sessions(self, c: Customer, curve: Curve) -> None:
        rng = self.usage_rng
        for _ in range(poisson(rng, c.sessions_per_day * curve.mass)):
            product = c.products[0] if rng.random() < 0.75 else rng.choice(c.products)
            self.emit(curve.sample(rng), "session.started", c.customer_id, "app", product=product,
                      platform=pick(rng, _PLATFORMS))

    def _tickets(self, curve: Curve) -> None:
        rng = self.support_rng
        active = [c for c in self.customers if c.active]
        if not active:
            return
        # segment weights pick who raises a ticket; the total comes from the per-customer rate
        weights = list(itertools.accumulate(SEGMENT_TICKET_WEIGHT[c.segment] for c in active))
        expected = len(active) * self.config.tickets_per_customer_per_day * curve.mass
        count = poisson(rng, expected)
        for c in rng.choices(active, cum_weights=weights, k=count) if count else ():
            steps, outcome = self.desk.ticket(c, curve.sample(rng))
            for ts, event_type, data in steps:
                self.emit(ts, event_type, c.customer_id, "zendesk" if event_type != "survey.answered" else "surveys",
                          **data)
            c.frustration += outcome.frt_breached + outcome.resolution_breached + 0.5 * outcome.reopened


def generate(config: SimConfig | None = None) -> Iterator[SimMessage]:
    """Simulated messages in delivery order (see the module docstring)."""
    return Simulation(config or SimConfig()).run()


# --- consumers of the stream ------------------------------------------------------------------------------


def observe(messages: Iterable[SimMessage], tally: Tally,
            progress: Callable[[Tally, SimMessage], None] | None = None, every: int = 1000) -> Iterator[SimMessage]:
    """Pass messages through, counting them in ``tally`` and calling ``progress`` every
    ``every`` messages (and once at the end)."""
    message = None
    for message in messages:
        tally.add(message)
        if progress is not None and tally.messages % every == 0:
            progress(tally, message)
        yield message
    if progress is not None and message is not None:
        progress(tally, message)


def write_jsonl(messages: Iterable[SimMessage], path: str | Path) -> int:
    """Write each message's value as one line; ``.gz`` paths are gzip-compressed (with a
    fixed header, so the same messages give the same file bytes). Returns the line count."""
    path = Path(path)
    count = 0
    with open(path, "wb") as raw:
        handle = gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0) \
            if path.name.endswith(".gz") else raw
        try:
            batch: list[bytes] = []
            for message in messages:
                batch.append(message.value)
                batch.append(b"\n")
                count += 1
                if len(batch) >= 8192:
                    handle.writelines(batch)
                    batch.clear()
            handle.writelines(batch)
        finally:
            if handle is not raw:
                handle.close()
    return count


def send_delay_s(index: int, delivered_ms: int, first_delivered_ms: int, elapsed_s: float,
                 rate: float | None, speedup: float | None) -> float:
    """Seconds to wait before sending message number ``index`` (0-based).

    ``rate``: at most this many messages per second. ``speedup``: a message delivered
    ``d`` ms after the first one is sent ``d / speedup`` ms after the start. With both,
    the later of the two wins.
    """
    due_s = 0.0
    if rate:
        due_s = index / rate
    if speedup:
        due_s = max(due_s, (delivered_ms - first_delivered_ms) / 1000.0 / speedup)
    return due_s - elapsed_s


async def produce(
    messages: Iterable[SimMessage],
    bootstrap: str,
    *,
    rate: float | None = None,
    speedup: float | None = None,
    progress: Callable[[int, SimMessage], None] | None = None,
    max_in_flight: int = 20_000,
    max_skew_ms: int | None = None,
    **producer_config: Any,
) -> int:
    """Send the messages to Kafka (``bootstrap`` = ``host:port[,...]``); returns how many.

    Key = customer id, topic per message, value as generated. ``rate`` limits the
    messages per second; ``speedup`` replays delivery time compressed N× relative to
    the wall clock (a business day in ~15 minutes at 100). Without either, sends as fast
    as the broker takes them. Kafka timestamps are left to the producer's clock: event
    time travels in ``occurred_at``, and old simulated times as record timestamps would
    meet the topic's retention. Raises the producer's error if a send fails; stops by
    itself when the messages are exhausted (after every send is acknowledged).
    ``producer_config`` is passed to ``AIOKafkaProducer`` (security settings, ...).

    ``max_skew_ms`` keeps the simulated delivery order visible across partitions: a
    message is sent only once every message delivered more than ``max_skew_ms``
    (simulated time) before it is acknowledged. Without it, per-partition batching
    (``linger_ms``) can make one partition's message visible tens of milliseconds after
    another partition's later ones - nothing in real time, but at a 1000x speed-up that
    is tens of seconds of event time, beyond the workers' out-of-orderness bound, and
    the event counts as late. Tests that compare a live stream with ``replay`` set it
    below the bound minus the jitter.
    """
    from aiokafka import AIOKafkaProducer

    if rate is not None and rate <= 0:
        raise ValueError("rate must be positive")
    if speedup is not None and speedup <= 0:
        raise ValueError("speedup must be positive")
    if max_skew_ms is not None and max_skew_ms < 0:
        raise ValueError("max_skew_ms must not be negative")
    options: dict[str, Any] = {"acks": "all", "enable_idempotence": True, "linger_ms": 20,
                               "max_batch_size": 512 * 1024}
    options.update(producer_config)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **options)
    sent = 0
    try:
        await producer.start()
        loop = asyncio.get_running_loop()
        started = loop.time()
        first_delivered: int | None = None
        in_flight: list[asyncio.Future] = []
        unacked: deque[tuple[int, asyncio.Future]] = deque()
        for message in messages:
            if first_delivered is None:
                first_delivered = message.delivered_at_ms
            if rate or speedup:
                delay = send_delay_s(sent, message.delivered_at_ms, first_delivered, loop.time() - started,
                                     rate, speedup)
                if delay > 0.002:
                    await asyncio.sleep(delay)
            if max_skew_ms is not None:
                while unacked and unacked[0][0] < message.delivered_at_ms - max_skew_ms:
                    await unacked.popleft()[1]
            future = await producer.send(message.topic, message.value, key=message.key)
            in_flight.append(future)
            if max_skew_ms is not None:
                unacked.append((message.delivered_at_ms, future))
            sent += 1
            if progress is not None:
                progress(sent, message)
            if len(in_flight) >= max_in_flight:
                await asyncio.gather(*in_flight)
                in_flight.clear()
        await producer.flush()
        await asyncio.gather(*in_flight)
    finally:
        await producer.stop()
    return sent


def summary_rows(tally: Tally) -> list[tuple[str, str]]:
    """Label/value rows of a closing summary (events by topic and type, then the flaws)."""
    rows = []
    for topic in sorted({topic for topic, _ in tally.by_type}):
        types = sorted((event_type, count) for (t, event_type), count in tally.by_type.items() if t == topic)
        rows.append((topic, f"{sum(count for _, count in types):,}"))
        rows += [(f"  {event_type}", f"{count:,}") for event_type, count in types]
    rows.append(("events (clean)", f"{tally.events:,}"))
    rows.append(("  of which late (1-10 min)", f"{tally.late:,}"))
    rows.append(("duplicates (re-sent)", f"{tally.duplicates:,}"))
    detail = ", ".join(f"{reason} {count}" for reason, count in sorted(tally.malformed.items()))
    rows.append(("malformed", f"{sum(tally.malformed.values()):,}" + (f" ({detail})" if detail else "")))
    rows.append(("messages", f"{tally.messages:,}"))
    if tally.first_event_ms is not None and tally.last_event_ms is not None:
        rows.append(("event time", f"{format_ts(tally.first_event_ms)} .. {format_ts(tally.last_event_ms)}"))
    return rows
