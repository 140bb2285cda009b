"""SLA breaches on the watermark, health contributions and churn-signal thresholds
(catalogue §3.3, §3.6, §4), on hand-built event sets."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from streams.core.customers import HealthConfig, round6
from streams.core.pipeline import CoreConfig, Processor
from streams.core.windows import Lateness, parse_window_specs
from tests.corekit import DAY0, HOUR, Events, at, run

DAY = 24 * HOUR


def processor(**health: object) -> Processor:
    return Processor(CoreConfig(specs=parse_window_specs("1h"), lateness=Lateness(30_000, 60_000, DAY),
                                health=HealthConfig(**health)))


def apply_all(proc: Processor, events: Events, until: int | None = None):
    """Offer the events, then let event time reach ``until`` (default: the last event)."""
    for event in events.items:
        proc.offer(event)
    proc.advance(until if until is not None else proc.max_event_ms)
    return proc.drain()


# --- SLA -----------------------------------------------------------------------------------


def test_breach_is_emitted_when_another_customers_event_moves_event_time_past_the_due_time():
    ev = Events()
    # urgent: first reply due 1 h after creation (24x7 default policy); nobody answers
    ev.add("ticket.created", "09:00", "A", ticket_id="T1", priority="urgent", channel="chat")
    proc = processor()
    out = apply_all(proc, ev)
    assert [r.state for r in out.sla] == []  # event time is still 09:00
    # a different customer's event at 10:05 moves the watermark to 10:04:30
    later = Events()
    later._ids = iter(range(100, 200))
    later.add("session.started", "10:05", "B")
    proc.offer(later.items[0])
    proc.advance()  # to the watermark: 10:05 - 30 s out-of-orderness
    assert proc.watermark == at("10:04:30")
    out = proc.drain()
    first_reply = [r for r in out.sla if r.metric == "first_reply"]
    assert [(r.state, r.ticket_id, r.occurred_at_ms) for r in first_reply] == [
        ("at_risk", "T1", at("09:48")),  # 80 % of 60 min
        ("breached", "T1", at("10:00")),  # at the due time, not at the event that revealed it
    ]
    breach = first_reply[1]
    assert (breach.target_s, breach.elapsed_s, breach.due_at_ms) == (3600, 3600.0, at("10:00"))


def test_reply_before_due_is_met_and_at_the_due_instant_is_breached():
    ev = Events()
    ev.add("ticket.created", "09:00", "A", ticket_id="T1", priority="urgent", channel="chat")
    ev.add("ticket.replied", "09:59:59", "A", ticket_id="T1", author="agent")
    ev.add("ticket.created", "09:00", "B", ticket_id="T2", priority="urgent", channel="chat")
    ev.add("ticket.replied", "10:00", "B", ticket_id="T2", author="agent")
    result = run(ev)
    states = {(r.ticket_id, r.metric, r.state) for r in result.sla}
    assert ("T1", "first_reply", "met") in states
    assert ("T1", "first_reply", "breached") not in states
    assert ("T2", "first_reply", "breached") in states
    assert ("T2", "first_reply", "met") not in states


def test_resolution_clock_pauses_while_pending():
    ev = Events()
    # urgent resolution target 4 h; 3 h pending in between -> due at 16:00, solved 15:30: met
    ev.add("ticket.created", "09:00", "A", ticket_id="T1", priority="urgent", channel="chat")
    ev.add("ticket.replied", "09:10", "A", ticket_id="T1", author="agent")
    ev.add("ticket.status_changed", "10:00", "A", ticket_id="T1", status="pending")
    ev.add("ticket.status_changed", "13:00", "A", ticket_id="T1", status="open")
    ev.add("ticket.status_changed", "15:30", "A", ticket_id="T1", status="solved")
    resolution = [r for r in run(ev).sla if r.metric == "resolution"]
    assert [r.state for r in resolution] == ["at_risk", "met"]
    assert resolution[0].occurred_at_ms == at("15:12")  # 3 h 12 min of running clock = 80 %
    assert resolution[1].elapsed_s == pytest.approx(3.5 * 3600)


# --- health ------------------------------------------------------------------------------------


def test_health_contributions_add_up_to_the_score_in_every_change():
    ev = Events()
    ev.add("subscription.started", "09:00", "A", subscription_id="s1", plan="pro", mrr_minor=5_000, currency="EUR")
    for minute in range(10, 50, 10):
        ev.add("session.started", f"09:{minute}", "A", product="app")
    ev.add("survey.answered", "10:00", "A", survey="nps", score=9)
    ev.add("ticket.created", "10:05", "A", ticket_id="T1", priority="high", channel="email")
    ev.add("purchase.completed", "10:30", "A", order_id="o1", amount_minor=100, currency="EUR", product="P", kind="upsell")
    ev.add("purchase.refunded", "11:00", "A", order_id="o1", amount_minor=100, currency="EUR")
    ev.add("survey.answered", "11:30", "A", survey="csat", score=1)
    proc = Processor(CoreConfig(specs=parse_window_specs("1h"), record_health_changes=True))
    changes = apply_all(proc, ev, at("12:00")).health
    assert len(changes) >= 5
    for change in changes:
        assert math.isclose(sum(c.points for c in change.contributions), change.score_after, abs_tol=1e-6)
        assert {c.component for c in change.contributions} == {"engagement", "satisfaction", "support", "commercial"}
        assert 0 <= change.score_after <= 100
    # the refund lowers the commercial component, and the record says so
    refund = next(c for c in changes if c.occurred_at_ms == at("11:00"))
    commercial = {c.component: c.score for c in refund.contributions}["commercial"]
    assert commercial == 60.0 + 20.0 - 30.0  # subscribed, expanded, refunded


def bits(x: float) -> bytes:
    return struct.pack("<d", x)


@given(st.one_of(st.floats(0.0, 200.0), st.floats(allow_nan=True, allow_infinity=True),
                 st.floats(4000.0, 5000.0)))
@example(0.0)
@example(-0.0)
@example(-1e-9)
@example(4294.967296)
@example(0.0000005)
@example(2.5e-6)
@example(12.3456785)
def test_round6_is_round_to_6_digits_bit_for_bit(x):
    expected = round(x, 6)
    got = round6(x)
    assert bits(got) == bits(expected) or (math.isnan(got) and math.isnan(expected))


@given(st.integers(0, 4_294_967_295), st.integers(-64, 64))
def test_round6_agrees_with_round_next_to_ties(k, steps):
    """Doubles within a few ulps of (k + 1/2) * 1e-6, where rounding is decided by the
    exact decimal expansion: the fast path must hand these to round()."""
    x = (k + 0.5) / 1e6
    for _ in range(abs(steps)):
        x = math.nextafter(x, math.inf if steps > 0 else -math.inf)
    assert bits(round6(x)) == bits(round(x, 6))


# --- churn signals -------------------------------------------------------------------------------


def signals_of(events: Events, until: int | None = None, **health: object) -> list:
    proc = processor(**health)
    return apply_all(proc, events, until).signals


@pytest.mark.parametrize(("score", "fires"), [(6, True), (0, True), (7, False), (10, False)])
def test_detractor_fires_at_six_and_below(score, fires):
    ev = Events()
    ev.add("survey.answered", "09:00", "A", survey="nps", score=score)
    signals = signals_of(ev)
    assert [s.signal for s in signals] == (["detractor"] if fires else [])
    if fires:
        assert signals[0].evidence_event_ids == (ev.items[0].event_id,)


def breach_tickets(ev: Events, count: int) -> None:
    for i in range(count):
        ev.add("ticket.created", f"0{i + 1}:00", "A", ticket_id=f"T{i}", priority="urgent", channel="chat")


def test_repeated_sla_breaches_fire_at_the_second_breach_not_the_first():
    ev = Events()
    breach_tickets(ev, 1)
    assert signals_of(ev, at("23:00")) == []
    ev = Events()
    breach_tickets(ev, 2)
    signals = [s for s in signals_of(ev, at("23:00")) if s.signal == "sla_breached_repeatedly"]
    assert len(signals) == 1
    assert signals[0].occurred_at_ms == at("03:00")  # T1 (created 02:00) breaches its 1 h first reply
    assert signals[0].evidence_event_ids == ("ticket:T0", "ticket:T1")


def reopen(ev: Events, ticket: str, solved: str, reopened: str) -> None:
    ev.add("ticket.status_changed", solved, "A", ticket_id=ticket, status="solved")
    ev.add("ticket.status_changed", reopened, "A", ticket_id=ticket, status="open")


def test_repeated_reopens_fire_at_the_second_reopen():
    ev = Events()
    ev.add("ticket.created", "09:00", "A", ticket_id="T1", priority="low", channel="email")
    reopen(ev, "T1", "09:10", "09:20")
    assert [s.signal for s in signals_of(ev)] == []
    reopen(ev, "T1", "09:30", "09:40")
    signals = [s for s in signals_of(ev) if s.signal == "reopened_repeatedly"]
    assert [s.occurred_at_ms for s in signals] == [at("09:40")]


def test_inactive_fires_exactly_fourteen_days_after_the_last_event_while_subscribed():
    ev = Events()
    ev.add("subscription.started", "09:00", "A", subscription_id="s1", plan="pro", mrr_minor=1, currency="EUR")
    due = at("09:00") + 14 * DAY
    assert [s.signal for s in signals_of(ev, due - 1)] == []
    signals = signals_of(ev, due)
    assert [(s.signal, s.occurred_at_ms) for s in signals] == [("inactive", due)]


def test_inactive_does_not_fire_after_cancellation_or_with_activity():
    ev = Events()
    ev.add("subscription.started", "09:00", "A", subscription_id="s1", plan="pro", mrr_minor=1, currency="EUR")
    ev.add("subscription.cancelled", "10:00", "A", subscription_id="s1")
    assert [s.signal for s in signals_of(ev, DAY0 + 30 * DAY)] == ["cancelled"]
    ev = Events()
    ev.add("subscription.started", "09:00", "A", subscription_id="s1", plan="pro", mrr_minor=1, currency="EUR")
    ev.add("session.started", at("09:00") + 10 * DAY, "A", product="app")
    signals = signals_of(ev, at("09:00") + 20 * DAY)
    assert signals == []  # the session re-armed the timer to day 24


def test_cancel_and_refund_signals_carry_health_before_and_after():
    ev = Events()
    ev.add("subscription.started", "09:00", "A", subscription_id="s1", plan="pro", mrr_minor=1, currency="EUR")
    ev.add("purchase.completed", "09:30", "A", order_id="o1", amount_minor=100, currency="EUR", product="P", kind="new")
    ev.add("purchase.refunded", "10:00", "A", order_id="o1", amount_minor=100, currency="EUR")
    ev.add("subscription.cancelled", "11:00", "A", subscription_id="s1")
    signals = signals_of(ev)
    assert [s.signal for s in signals] == ["refund", "cancelled"]
    for signal in signals:
        assert signal.health_after < signal.health_before  # both make the customer less healthy


def test_thresholds_are_configurable():
    ev = Events()
    ev.add("survey.answered", "09:00", "A", survey="nps", score=7)
    assert [s.signal for s in signals_of(ev, detractor_max_score=7)] == ["detractor"]
