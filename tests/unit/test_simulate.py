"""The simulator (streams.simulate): determinism, valid bytes, delivery flaws, realistic
shapes, and a simulated day that the core turns into plausible KPIs."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import statistics
from collections import Counter
from pathlib import Path

import pytest

from streams.codec import Rejected, decode_event
from streams.core.events import Event, topic_for
from streams.core.pipeline import CoreConfig
from streams.core.records import KpiRecord
from streams.core.sla import DEFAULT_TARGETS
from streams.core.windows import parse_window_specs
from streams.replay import ReplayResult, read_lines, run_replay
from streams.simulate import (
    DAY,
    MALFORMED_REASONS,
    OPENING_BOOK_MS,
    OUT_OF_ORDERNESS_MS,
    SimConfig,
    SimMessage,
    Tally,
    generate,
    hour_of,
    mixture_log_median,
    observe,
    send_delay_s,
    summary_rows,
    write_jsonl,
)

SMALL = SimConfig(seed=3, customers=300, tickets_per_customer_per_day=0.5)
# large enough for ~600 urgent tickets (FRT p50 within a few % of the median), small
# enough to generate (~2 s) and replay (~6 s) inside the unit-test budget
DAY_CONFIG = SimConfig(seed=11, customers=2000, tickets_per_customer_per_day=5)


@pytest.fixture(scope="module")
def day() -> list[SimMessage]:
    return list(generate(DAY_CONFIG))


@pytest.fixture(scope="module")
def events(day: list[SimMessage]) -> list[Event]:
    """Decoded clean events (no duplicates, no malformed), in event-time order."""
    decoded = [decode_event(m.value) for m in day if m.flaw in ("", "late")]
    return sorted(decoded, key=lambda e: e.order_key)  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def replayed(day: list[SimMessage]) -> ReplayResult:
    lines = (("sim", number, m.value) for number, m in enumerate(day, 1))
    return run_replay(lines, CoreConfig(specs=parse_window_specs("1d,30d")))


def record(result: ReplayResult, kpi: str, size: str, start_ms: int, **dims: str) -> KpiRecord:
    key = tuple(sorted(dims.items()))
    found = [r for r in result.records if (r.kpi, r.size, r.start_ms, r.dims) == (kpi, size, start_ms, key)]
    assert len(found) == 1, f"{kpi} {size} {dims}: {len(found)} records"
    return found[0]


def widest(result: ReplayResult, kpi: str, **dims: str) -> KpiRecord:
    """The 30d record with the largest sample: with a multi-day run, the one holding all of it."""
    key = tuple(sorted(dims.items()))
    return max((r for r in result.records if r.kpi == kpi and r.size == "30d" and r.dims == key),
               key=lambda r: r.n)


def first_reply_times_s(events: list[Event]) -> dict[str, list[float]]:
    """FRT samples per priority straight from the events (created → first agent reply)."""
    created: dict[str, tuple[int, str]] = {}
    answered: set[str] = set()
    samples: dict[str, list[float]] = {}
    for e in events:
        if e.event_type == "ticket.created":
            created[e.data.ticket_id] = (e.occurred_at_ms, e.data.priority)
        elif e.event_type == "ticket.replied" and e.data.author == "agent" and e.data.ticket_id not in answered:
            answered.add(e.data.ticket_id)
            at, priority = created[e.data.ticket_id]
            samples.setdefault(priority, []).append((e.occurred_at_ms - at) / 1000)
    return samples


def clean_values(config: SimConfig) -> list[bytes]:
    return sorted(m.value for m in generate(config) if m.flaw in ("", "late"))


# --- determinism ----------------------------------------------------------------------------


def test_same_seed_gives_byte_identical_messages_and_files(tmp_path: Path):
    first, second = list(generate(SMALL)), list(generate(SMALL))
    assert len(first) > 1000
    assert first == second
    write_jsonl(iter(first), tmp_path / "a.jsonl.gz")
    write_jsonl(iter(second), tmp_path / "b.jsonl.gz")
    assert (tmp_path / "a.jsonl.gz").read_bytes() == (tmp_path / "b.jsonl.gz").read_bytes()


def test_different_seed_gives_different_messages():
    other = dataclasses.replace(SMALL, seed=4)
    assert [m.value for m in generate(SMALL)] != [m.value for m in generate(other)]


def test_delivery_flaw_knobs_do_not_change_the_clean_events():
    flawless = dataclasses.replace(SMALL, duplicates=0.0, late=0.0, malformed=0.0)
    noisy = dataclasses.replace(SMALL, duplicates=0.05, late=0.05, malformed=0.05)
    assert clean_values(flawless) == clean_values(noisy)


# --- validity -------------------------------------------------------------------------------


def test_every_clean_message_decodes_and_agrees_with_its_envelope(day: list[SimMessage]):
    for message in day:
        if message.flaw == "malformed":
            continue
        event = decode_event(message.value)
        assert isinstance(event, Event), (event, message.value)
        assert event.event_type == message.event_type
        assert message.topic == topic_for(event.event_type)
        assert message.key == event.customer_id.encode()
        assert message.event_time_ms == event.occurred_at_ms


def test_malformed_messages_are_rejected_with_the_intended_reasons(day: list[SimMessage]):
    malformed = [m for m in day if m.flaw == "malformed"]
    for message in malformed:
        rejected = decode_event(message.value)
        assert isinstance(rejected, Rejected), message.value
        assert rejected.reason == message.expected_reason
        assert b"\n" not in message.value and message.value.strip()
    assert {m.expected_reason for m in malformed} == set(MALFORMED_REASONS)


def test_a_week_holds_every_event_type_of_the_catalogue():
    from streams.core.events import EVENT_TYPES

    week = SimConfig(seed=2, customers=1000, duration="7d", tickets_per_customer_per_day=0.05)
    counts = Counter(m.event_type for m in generate(week) if not m.flaw)
    assert set(counts) == set(EVENT_TYPES)
    assert counts["purchase.refunded"] < counts["purchase.completed"] / 10


# --- delivery flaws ---------------------------------------------------------------------------


@pytest.mark.parametrize("flaw, share", [("duplicate", "duplicates"), ("late", "late"), ("malformed", "malformed")])
def test_flaw_shares_are_near_the_configured_values(day: list[SimMessage], flaw: str, share: str):
    clean = sum(1 for m in day if m.flaw in ("", "late"))
    observed = sum(1 for m in day if m.flaw == flaw)
    p = getattr(DAY_CONFIG, share)
    expected = p * clean
    assert abs(observed - expected) <= 4 * math.sqrt(clean * p * (1 - p)) + 1, (observed, expected)


def test_duplicates_are_exact_resends_of_an_earlier_message(day: list[SimMessage]):
    delivered: set[bytes] = set()
    for message in day:
        if message.flaw == "duplicate":
            assert message.value in delivered
        elif message.flaw != "malformed":
            delivered.add(message.value)


def test_messages_come_in_delivery_order_with_jitter_inside_the_bound(day: list[SimMessage]):
    jitter = DAY_CONFIG.jitter_ms
    assert all(a.delivered_at_ms <= b.delivered_at_ms for a, b in zip(day, day[1:], strict=False))
    for message in day:
        delay = message.delivered_at_ms - message.event_time_ms
        if message.flaw == "late":
            assert 60_000 <= delay <= 600_000
        elif message.flaw in ("", "malformed"):
            assert 0 <= delay <= jitter < OUT_OF_ORDERNESS_MS


def test_late_events_arrive_behind_the_out_of_orderness_bound(day: list[SimMessage]):
    newest, behind, late = 0, 0, 0
    for message in day:
        if message.flaw == "late":
            late += 1
            behind += message.event_time_ms < newest - OUT_OF_ORDERNESS_MS
        newest = max(newest, message.event_time_ms)
    assert late > 0 and behind / late > 0.9


# --- shapes -----------------------------------------------------------------------------------


def test_arrivals_lie_in_the_period_and_follow_ups_stop_at_the_horizon(events: list[Event]):
    start, end = DAY_CONFIG.start_ms, DAY_CONFIG.end_ms
    assert all(start - OPENING_BOOK_MS <= e.occurred_at_ms < DAY_CONFIG.horizon_ms for e in events)
    created = [e.occurred_at_ms for e in events
               if e.event_type == "ticket.created" or (e.event_type == "lead.created" and e.source == "crm")]
    assert all(start <= ts < end for ts in created)
    backfill = [e for e in events if e.occurred_at_ms < start]
    # the opening book: existing subscriptions and open leads, announced just before start
    assert backfill and {e.event_type for e in backfill} == {"subscription.started", "lead.created"}
    assert {e.source for e in backfill} == {"billing-backfill", "crm-backfill"}


def test_tickets_arrive_mostly_in_business_hours(events: list[Event]):
    hours = Counter(hour_of(e.occurred_at_ms) for e in events if e.event_type == "ticket.created")
    business = sum(hours[h] for h in range(9, 17)) / 8
    night = sum(hours[h] for h in range(0, 6)) / 6
    assert business > 5 * night > 0


def test_priority_mix_is_realistic(events: list[Event]):
    priorities = Counter(e.data.priority for e in events if e.event_type == "ticket.created")
    total = sum(priorities.values())
    assert 0.03 < priorities["urgent"] / total < 0.07
    assert 0.45 < priorities["normal"] / total < 0.65


def test_surveys_after_breached_tickets_score_lower(events: list[Event]):
    created: dict[str, tuple[int, str]] = {}
    breached: dict[str, bool] = {}
    scores: dict[bool, list[int]] = {True: [], False: []}
    for e in events:
        if e.event_type == "ticket.created":
            created[e.data.ticket_id] = (e.occurred_at_ms, e.data.priority)
        elif e.event_type == "ticket.replied" and e.data.author == "agent" and e.data.ticket_id not in breached:
            at, priority = created[e.data.ticket_id]
            breached[e.data.ticket_id] = e.occurred_at_ms - at >= DEFAULT_TARGETS[priority].first_reply_ms
        elif e.event_type == "survey.answered" and e.data.survey == "csat" and e.data.ticket_id:
            scores[breached[e.data.ticket_id]].append(e.data.score)
    assert len(scores[True]) > 30 and len(scores[False]) > 300
    assert statistics.mean(scores[True]) < statistics.mean(scores[False]) - 0.5


def test_configured_frt_median_is_what_comes_out():
    config = SimConfig(seed=5, customers=500, tickets_per_customer_per_day=2, frt_median={"normal": "30m"})
    decoded = [decode_event(m.value) for m in generate(config) if m.flaw in ("", "late")]
    samples = first_reply_times_s(sorted(decoded, key=lambda e: e.order_key))
    assert len(samples["normal"]) > 300
    assert statistics.median(samples["normal"]) == pytest.approx(1800, rel=0.2)


def test_fewer_agents_slow_the_first_replies():
    def normal_frt_median(agents: int | None) -> float:
        config = SimConfig(seed=5, customers=500, tickets_per_customer_per_day=2, agents=agents)
        decoded = [decode_event(m.value) for m in generate(config) if m.flaw in ("", "late")]
        return statistics.median(first_reply_times_s(sorted(decoded, key=lambda e: e.order_key))["normal"])

    staffed = normal_frt_median(None)
    assert normal_frt_median(10) > 2 * staffed  # default for ~880 tickets/day is 36 agents


def test_mixture_median_of_a_single_lognormal_is_its_median():
    assert mixture_log_median({0.7: 1.0}, 1.0) == pytest.approx(0.7, abs=1e-9)
    assert mixture_log_median({-1.0: 1.0, 1.0: 1.0}, 0.5) == pytest.approx(0.0, abs=1e-9)


# --- the day through the core -------------------------------------------------------------------


def test_replay_accepts_exactly_the_clean_events(day: list[SimMessage], replayed: ReplayResult):
    tally = Tally()
    for _ in observe(day, tally):
        pass
    assert replayed.accepted == tally.events
    assert replayed.duplicates == tally.duplicates
    assert dict(replayed.rejected) == dict(tally.malformed)
    assert replayed.dropped_late == 0


def test_replayed_day_gives_plausible_kpis(replayed: ReplayResult):
    day0 = DAY_CONFIG.start_ms
    nps = record(replayed, "nps", "1d", day0)
    assert -100 <= nps.value <= 100 and nps.n >= 30 and not nps.stats["suppressed"]
    for kpi in ("csat", "ces"):
        assert 0.5 <= record(replayed, kpi, "1d", day0).value <= 1
    for metric in ("first_reply", "resolution"):
        hit = record(replayed, f"sla_{metric}_hit_rate", "1d", day0)
        assert hit.stats[f"sla_{metric}_met"] > 0 and hit.stats[f"sla_{metric}_breached"] > 0
        assert 0.5 < hit.value < 1
    for currency in ("EUR", "USD", "GBP"):
        assert record(replayed, "revenue_minor", "1d", day0, currency=currency).value > 0
    churn = record(replayed, "churn_rate", "1d", day0)
    assert churn.value is not None and 0 <= churn.value <= 1 and churn.n > 1000
    assert 0 < record(replayed, "first_contact_resolution_rate", "1d", day0).value < 1
    assert 0 < record(replayed, "reopen_rate", "1d", day0).value < 0.2
    assert 0 < record(replayed, "escalation_rate", "1d", day0).value < 0.2
    assert record(replayed, "new_customers", "1d", day0).value > 0
    assert record(replayed, "cac_minor", "1d", day0, currency="EUR").value > 0
    assert 0 < record(replayed, "upsell_cross_sell_rate", "1d", day0).value < 1
    assert record(replayed, "average_handle_time_seconds", "1d", day0).value > 0
    assert replayed.sla and replayed.signals


@pytest.mark.parametrize("priority", ["urgent", "high", "normal", "low"])
def test_replayed_frt_p50_is_near_the_configured_median(replayed: ReplayResult, priority: str):
    frt = widest(replayed, "first_response_time_seconds", priority=priority)
    assert frt.n > 400
    configured_s = DAY_CONFIG.frt_median_ms(priority) / 1000
    assert frt.stats["p50"] == pytest.approx(configured_s, rel=0.25)


# --- knobs, writers, pacing ---------------------------------------------------------------------


@pytest.mark.parametrize("knobs, words", [
    ({"duration": "1x"}, "duration"),
    ({"duration": "0s"}, "duration must be positive"),
    ({"start": "yesterday"}, "start"),
    ({"late": 0.7}, "late"),
    ({"duplicates": -0.1}, "duplicates"),
    ({"customers": 0}, "customers"),
    ({"agents": 0}, "agents"),
    ({"frt_median": {"critical": "1h"}}, "unknown priorities"),
    ({"frt_median": {"high": "soon"}}, "frt_median.high"),
])
def test_bad_knobs_are_refused_with_a_reason(knobs: dict, words: str):
    with pytest.raises(ValueError, match=words):
        SimConfig(**knobs)


def test_partial_median_overrides_keep_the_other_defaults():
    config = SimConfig(frt_median={"urgent": "5m"})
    assert config.frt_median_ms("urgent") == 300_000
    assert config.frt_median_ms("low") == 6 * 3_600_000


@pytest.mark.parametrize("name", ["events.jsonl", "events.jsonl.gz"])
def test_written_lines_read_back_as_the_message_values(tmp_path: Path, name: str):
    messages = list(generate(dataclasses.replace(SMALL, duration="6h")))
    path = tmp_path / name
    assert write_jsonl(messages, path) == len(messages)
    assert [raw for _, _, raw in read_lines([path])] == [m.value for m in messages]


def test_tally_and_summary_count_by_topic_type_and_flaw():
    tally = Tally()
    messages = list(observe(generate(SMALL), tally))
    assert tally.messages == len(messages)
    assert tally.events + tally.duplicates + sum(tally.malformed.values()) == len(messages)
    labels = dict(summary_rows(tally))
    assert labels["crm.tickets.v1"] and labels["  ticket.created"]
    assert SMALL.start_ms - OPENING_BOOK_MS <= tally.first_event_ms < SMALL.start_ms  # the opening book
    assert tally.last_event_ms < SMALL.horizon_ms <= SMALL.start_ms + 2 * DAY


def test_send_delay_follows_rate_and_speedup():
    # rate 100/s: message 50 is due at 0.5 s
    assert send_delay_s(50, 0, 0, 0.2, rate=100, speedup=None) == pytest.approx(0.3)
    # speedup 60: one simulated minute after the first message is due after 1 s
    assert send_delay_s(0, 60_000, 0, 0.25, rate=None, speedup=60) == pytest.approx(0.75)
    # both: the later constraint wins; neither: never wait
    assert send_delay_s(10, 60_000, 0, 0.0, rate=1, speedup=60) == pytest.approx(10)
    assert send_delay_s(10**6, 10**9, 0, 0.0, rate=None, speedup=None) <= 0


class _AckLaterProducer:
    """Stands in for AIOKafkaProducer in the ordering test below (no broker involved: what
    is tested is when ``produce`` sends, relative to acknowledgements). Every send is
    acknowledged 5 ms later, like a batch lingering; the log records both, in order."""

    log: list[tuple[str, int]] = []

    def __init__(self, **_options) -> None:
        self.pending: list[asyncio.Task] = []

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def flush(self) -> None:
        await asyncio.gather(*self.pending)

    async def send(self, topic, value, key=None):
        number = int(value)
        self.log.append(("send", number))
        future = asyncio.get_running_loop().create_future()

        async def ack() -> None:
            await asyncio.sleep(0.005)
            self.log.append(("ack", number))
            future.set_result(None)

        self.pending.append(asyncio.create_task(ack()))
        return future


@pytest.mark.parametrize("max_skew_ms", [None, 0, 20_000])
def test_max_skew_holds_a_message_until_everything_delivered_long_enough_before_is_acknowledged(
    monkeypatch, max_skew_ms
):
    import aiokafka

    from streams.simulate import produce

    monkeypatch.setattr(aiokafka, "AIOKafkaProducer", _AckLaterProducer)
    _AckLaterProducer.log = []
    delivered = [i * 10_000 for i in range(12)]  # one message every 10 s of simulated time
    messages = [SimMessage(f"t{i % 3}", b"k", str(i).encode(), d, "x", d, "") for i, d in enumerate(delivered)]
    assert asyncio.run(produce(messages, "127.0.0.1:1", max_skew_ms=max_skew_ms)) == 12
    log = _AckLaterProducer.log
    violations = [
        (j, k)
        for k in range(12)
        for j in range(k)
        if delivered[j] < delivered[k] - (max_skew_ms or 0) and log.index(("ack", j)) > log.index(("send", k))
    ]
    if max_skew_ms is None:
        assert violations  # no ordering promise: later messages go out before earlier acks
    else:
        assert violations == []
    if max_skew_ms == 20_000:  # messages within the skew are not held back: two in flight at a time
        assert log.index(("send", 1)) < log.index(("ack", 0))


def test_max_skew_must_not_be_negative():
    from streams.simulate import produce

    with pytest.raises(ValueError, match="max_skew_ms"):
        asyncio.run(produce([], "127.0.0.1:1", max_skew_ms=-1))
