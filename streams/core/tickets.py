"""Ticket lifecycle: one small state per ticket, driven by ticket events in event-time
order, reporting measurements (catalogue §3.1–3.3) to a :class:`Partials`.

A measurement belongs to the window of the event that completes it: the first
response time is recorded at the first agent reply, the resolution time at the
solve, an SLA breach at the instant event time passed the due time.
"""

from __future__ import annotations

from typing import Final

from streams.core.events import (
    Event,
    TicketCreated,
    TicketEscalated,
    TicketReplied,
    TicketStatusChanged,
    occurred_at,
)
from streams.core.labels import LabelLimiter
from streams.core.partials import Partials
from streams.core.records import SlaRecord
from streams.core.sla import SlaPolicies
from streams.core.ticket_state import (
    DONE_STATUSES,
    FIRST_REPLY,
    OPEN_STATUSES,
    PAUSED_STATUSES,
    RESOLUTION,
    SlaSlot,
    TicketState,
    TimerRequest,
)

MAX_PENDING_CUSTOMER_MESSAGES: Final = 64  # bounds memory of a ticket nobody answers


def sync_levels(t: TicketState, ts: int, out: Partials) -> None:
    """Keep the open_tickets and tickets_in_breach levels in step with the ticket.

    A ticket counts as open once its ticket.created was seen and while its status is
    open, pending or on_hold; it counts as in breach while open and breached.
    """
    should_open = t.created_ms is not None and t.status in OPEN_STATUSES
    if should_open != t.counted_open:
        t.counted_open = should_open
        out.level("open_tickets", t.dims(), ts, +1 if should_open else -1)
    should_breach = should_open and t.in_breach
    if should_breach != t.counted_in_breach:
        t.counted_in_breach = should_breach
        out.level("tickets_in_breach", t.dims(), ts, +1 if should_breach else -1)


class TicketEngine:
    """Applies ticket events to ticket states. Pure: no I/O, no clocks."""

    def __init__(self, policies: SlaPolicies, limit: LabelLimiter | None = None) -> None:
        self.policies = policies
        self.limit = limit or LabelLimiter()

    # -- events -----------------------------------------------------------------------
    def apply(self, ticket: TicketState, event: Event, out: Partials) -> list[TimerRequest]:
        """Apply one ticket event; returns timers to schedule."""
        data = event.data
        ts = occurred_at(event)  # (the event's own int object: see occurred_at)
        if isinstance(data, TicketCreated):
            return self._created(ticket, data, ts, out)
        if isinstance(data, TicketReplied):
            return self._replied(ticket, data, ts, out)
        if isinstance(data, TicketStatusChanged):
            return self._status(ticket, data.status, ts, out)
        if isinstance(data, TicketEscalated):
            out.count("tickets_escalated", ticket.dims(), ts)
        return []

    def _created(self, t: TicketState, data: TicketCreated, ts: int, out: Partials) -> list[TimerRequest]:
        if t.created_ms is not None:
            return []  # a second ticket.created for the same ticket is ignored
        t.created_ms = ts
        t.priority, t.channel = data.priority, data.channel
        t.team, t.product = self.limit("team", data.team), self.limit("product", data.product)
        dims = t.dims()
        out.count("tickets_created", dims, ts)
        if t.status == "new":
            t.status = "open"
        sync_levels(t, ts, out)
        t.waiting_since.insert(0, ts)
        del t.waiting_since[MAX_PENDING_CUSTOMER_MESSAGES:]
        # SLA clocks start at creation
        policy = self.policies[data.priority]
        timers: list[TimerRequest] = []
        if t.first_agent_reply_ms is None:
            t.first_reply_sla = SlaSlot(policy.start_clock(FIRST_REPLY, ts))
            timers += self._schedule(t, FIRST_REPLY)
        if t.solves == 0:
            paused = t.status in PAUSED_STATUSES
            t.resolution_sla = SlaSlot(policy.start_clock(RESOLUTION, ts, paused=paused))
            timers += self._schedule(t, RESOLUTION)
        return timers

    def _replied(self, t: TicketState, data: TicketReplied, ts: int, out: Partials) -> list[TimerRequest]:
        dims = t.dims()
        if data.author == "customer":
            t.waiting_since.append(ts)
            del t.waiting_since[:-MAX_PENDING_CUSTOMER_MESSAGES]
            return []
        t.agent_replies += 1
        for since in t.waiting_since:
            if ts >= since:  # a reply stamped before the message (clock skew) measures nothing
                out.sample("reply_time_seconds", dims, ts, (ts - since) / 1000.0)
        t.waiting_since.clear()
        if t.first_agent_reply_ms is None:
            t.first_agent_reply_ms = ts
            if t.created_ms is not None and ts >= t.created_ms:
                out.sample("first_response_time_seconds", dims, ts, (ts - t.created_ms) / 1000.0)
            self._settle(t, FIRST_REPLY, ts, out)
        return []

    def _status(self, t: TicketState, status: str, ts: int, out: Partials) -> list[TimerRequest]:
        before = t.status
        if status == before:
            return []
        dims = t.dims()
        t.status = status
        timers: list[TimerRequest] = []
        if status == "solved" and before != "closed":
            t.solves += 1
            out.count("tickets_solved", dims, ts)
            if t.created_ms is not None and ts >= t.created_ms:
                out.sample("resolution_time_seconds", dims, ts, (ts - t.created_ms) / 1000.0)
            if t.agent_replies == 1 and not t.reopened:
                out.count("tickets_solved_first_contact", dims, ts)
            self._settle(t, RESOLUTION, ts, out)
            self._cancel(t, FIRST_REPLY)
        if status in OPEN_STATUSES and before in DONE_STATUSES:
            t.reopened = True
            t.reopens += 1
            out.count("tickets_reopened", dims, ts)
        sync_levels(t, ts, out)
        # resolution clock pauses while pending / on_hold
        slot = t.resolution_sla
        if slot is not None and not slot.settled:
            if status in PAUSED_STATUSES and not slot.clock.paused:
                slot.clock = slot.clock.pause(ts)
                slot.token += 1
            elif status == "open" and slot.clock.paused:
                slot.clock = slot.clock.resume(ts)
                slot.token += 1
                timers += self._schedule(t, RESOLUTION)
        return timers

    # -- SLA ------------------------------------------------------------------------------
    def _schedule(self, t: TicketState, metric: str) -> list[TimerRequest]:
        slot = t.slot(metric)
        if slot is None or slot.settled or slot.clock.paused:
            return []
        timers = []
        if slot.state == "running":
            assert t.priority is not None  # slots exist from ticket.created on, which sets it
            at_risk = slot.clock.due_ms(self.policies[t.priority].at_risk_fraction)
            if at_risk is not None:
                timers.append(TimerRequest(at_risk, t.customer_id, t.ticket_id, metric, "at_risk", slot.token))
        breach = slot.clock.due_ms(1)
        if breach is not None:
            timers.append(TimerRequest(breach, t.customer_id, t.ticket_id, metric, "breached", slot.token))
        return timers

    def on_timer(self, t: TicketState, timer: TimerRequest, out: Partials) -> None:
        """A scheduled SLA moment passed in event time."""
        slot = t.slot(timer.metric)
        if slot is None or slot.token != timer.token or slot.settled:
            return  # stale: the clock paused, resumed or settled since
        ts = timer.due_ms
        dims = t.dims()
        if timer.state == "at_risk":
            if slot.state != "running":
                return
            slot.state = "at_risk"
            out.count("sla_at_risk", dims, ts)
        else:
            slot.state = "breached"
            out.count(f"sla_{timer.metric}_breached", dims, ts)
            t.in_breach = True
            sync_levels(t, ts, out)
        out.sla.append(self._record(t, timer.metric, slot, slot.state, ts))

    def _settle(self, t: TicketState, metric: str, ts: int, out: Partials) -> None:
        slot = t.slot(metric)
        if slot is None or slot.settled:
            return
        slot.state = "met"
        slot.token += 1
        out.count(f"sla_{metric}_met", t.dims(), ts)
        out.sla.append(self._record(t, metric, slot, "met", ts))

    def _cancel(self, t: TicketState, metric: str) -> None:
        slot = t.slot(metric)
        if slot is not None and not slot.settled:
            slot.state = "cancelled"
            slot.token += 1

    def _record(self, t: TicketState, metric: str, slot: SlaSlot, state: str, ts: int) -> SlaRecord:
        clock = slot.clock
        due = (clock.resume(ts) if clock.paused else clock).due_ms(1)
        assert due is not None  # a running clock has a due time
        return SlaRecord(
            ticket_id=t.ticket_id,
            customer_id=t.customer_id,
            priority=t.priority or "unknown",
            metric=metric,
            state=state,
            target_s=clock.target_ms // 1000,
            elapsed_s=clock.elapsed_ms(ts) / 1000.0,
            due_at_ms=due,
            occurred_at_ms=ts,
        )

    # -- recovery -----------------------------------------------------------------------------
    def timers_of(self, t: TicketState) -> list[TimerRequest]:
        """Timers a recovered ticket state needs (the timer heap is not persisted)."""
        return self._schedule(t, FIRST_REPLY) + self._schedule(t, RESOLUTION)
