"""Ticket state: what the KPIs remember about one ticket and its SLA slots, and the timer
requests the ticket engine hands to the processor.

msgspec structs (small; the stage-1 changelog encodes them, see streams.codec.state), kept apart
from the engine in :mod:`streams.core.tickets` so that module can be compiled with mypyc
(see :mod:`streams.core`); they are re-exported there.
"""

from __future__ import annotations

from typing import Final

import msgspec

from streams.core.records import Dims
from streams.core.sla import SlaClock

OPEN_STATUSES: Final = frozenset({"open", "pending", "on_hold"})
DONE_STATUSES: Final = frozenset({"solved", "closed"})
PAUSED_STATUSES: Final = frozenset({"pending", "on_hold"})
OVERALL_DIMS: Final[tuple[Dims, ...]] = ((),)

# SLA metric slots on a ticket
FIRST_REPLY: Final = "first_reply"
RESOLUTION: Final = "resolution"


def ticket_dims(priority: str | None, channel: str | None, team: str | None) -> tuple[Dims, ...]:
    """Dimension sets a ticket's measurements go to: overall, priority, channel, team."""
    sets: list[Dims] = [()]
    if priority:
        sets.append((("priority", priority),))
    if channel:
        sets.append((("channel", channel),))
    if team:
        sets.append((("team", team),))
    return tuple(sets)


class SlaSlot(msgspec.Struct):
    """One SLA metric of one ticket: its clock and how far it got."""

    clock: SlaClock
    state: str = "running"  # running | at_risk | breached | met | cancelled
    token: int = 0  # bumped whenever scheduled timers become stale

    @property
    def settled(self) -> bool:
        return self.state in ("breached", "met", "cancelled")


def _quiet(slot: SlaSlot | None) -> bool:
    """No timer of this slot can fire any more (none, settled, or paused)."""
    return slot is None or slot.settled or slot.clock.paused


class TicketState(msgspec.Struct):
    """Everything the KPIs need to remember about one ticket."""

    ticket_id: str
    customer_id: str
    created_ms: int | None = None
    priority: str | None = None
    channel: str | None = None
    team: str | None = None
    product: str | None = None
    status: str = "new"
    first_agent_reply_ms: int | None = None
    agent_replies: int = 0
    reopened: bool = False
    reopens: int = 0
    last_event_ms: int = 0
    solves: int = 0
    in_breach: bool = False
    counted_open: bool = False  # reflected in the open_tickets level
    counted_in_breach: bool = False  # reflected in the tickets_in_breach level
    waiting_since: list[int] = msgspec.field(default_factory=list)
    first_reply_sla: SlaSlot | None = None
    resolution_sla: SlaSlot | None = None

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def dims(self) -> tuple[Dims, ...]:
        if self.created_ms is None:
            return OVERALL_DIMS
        return ticket_dims(self.priority, self.channel, self.team)

    def expired(self, now_ms: int, retention_ms: int) -> bool:
        """Finished (not open, no SLA timer to come) and idle for longer than the retention.

        A ticket closed without being solved keeps its running SLA clocks (they breach
        in due time): it is kept until they settle, or whether a sweep had run before its
        timer fired would decide whether the breach is counted."""
        return (not self.counted_open and self.status != "new" and now_ms - self.last_event_ms > retention_ms
                and _quiet(self.first_reply_sla) and _quiet(self.resolution_sla))

    def slot(self, metric: str) -> SlaSlot | None:
        return self.first_reply_sla if metric == FIRST_REPLY else self.resolution_sla


class TimerRequest(msgspec.Struct, frozen=True, gc=False):
    """Ask the processor to call :func:`on_sla_timer` at ``due_ms`` (event time)."""

    due_ms: int
    customer_id: str
    ticket_id: str
    metric: str
    state: str  # at_risk | breached
    token: int
