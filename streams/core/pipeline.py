"""Stage 1 of the pipeline, pure: events in, pane partials and side records out.

A :class:`Processor` owns a set of customers (one Kafka partition in the streaming
runtime, everything in ``replay``). For each event it

1. drops duplicates (same customer and event id) within a bounded memory,
2. drops events too late for any retained window (counted, changes nothing),
3. buffers the rest until the watermark passes them, then applies them in
   (event time, event id) order, interleaved with SLA and inactivity timers in
   event-time order, to ticket and customer state,
4. folds the resulting measurements into :class:`~streams.core.partials.Partials`.

Because the order of application depends only on event times and ids, the result
does not depend on how input was batched or interleaved within the
out-of-orderness bound — the property that makes streaming equal ``replay``.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from streams.core.customer_state import CustomerState, InactivityTimer
from streams.core.customers import CustomerEngine, HealthConfig
from streams.core.events import BufferedEvent, Event, occurred_at
from streams.core.labels import LabelLimiter
from streams.core.partials import Partials
from streams.core.sla import SlaPolicies
from streams.core.ticket_state import TicketState, TimerRequest
from streams.core.tickets import TicketEngine
from streams.core.windows import MIN_TIME, Lateness, WindowSpec, pane_size_ms, parse_window_specs

TICKET_PREFIX = "ticket."


@dataclass(frozen=True, slots=True)
class CoreConfig:
    """Everything the core needs to know; built from :class:`streams.settings.Settings`."""

    specs: tuple[WindowSpec, ...] = field(default_factory=lambda: parse_window_specs("5m,1h,1d,30d"))
    lateness: Lateness = field(default_factory=Lateness)
    min_sample: int = 30
    policies: SlaPolicies = field(default_factory=SlaPolicies.default)
    health: HealthConfig = field(default_factory=HealthConfig)
    dedupe_max_ids_per_customer: int = 50_000
    ticket_retention_ms: int = 30 * 86_400_000  # finished tickets are forgotten after this idle time
    record_health_changes: bool = False  # keep every HealthChange (replay --health-out); memory!
    max_label_values: int = 100  # distinct values per free-form label before "other"
    label_allowlist: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def pane_ms(self) -> int:
        return pane_size_ms(self.specs)


Source = tuple[int, int]  # (input slot, offset): where a buffered event came from


@dataclass(slots=True)
class Counters:
    """Pipeline-health counts of one processor (monotonic)."""

    accepted: int = 0
    duplicates: int = 0
    late: int = 0  # accepted behind the watermark (within allowed lateness)
    dropped_late: int = 0
    dedupe_evictions: int = 0  # ids forgotten early because of the per-customer bound
    applied: int = 0
    timers_fired: int = 0


# Timer heap entries: (due_ms, rank, customer_id, ticket_id, metric, state, token, payload).
# The rank makes ordering deterministic at equal times: SLA timers of tickets before
# inactivity timers; ticket/metric/state names order the rest.
_SLA_RANK = 0
_INACTIVE_RANK = 1


class Processor:
    """Stage-1 processor for the customers of one partition (or all of them)."""

    def __init__(self, config: CoreConfig | None = None) -> None:
        self.config = config or CoreConfig()
        self.lateness = self.config.lateness
        self.labels = LabelLimiter(self.config.max_label_values, self.config.label_allowlist)
        self.tickets_engine = TicketEngine(self.config.policies, self.labels)
        self.customers_engine = CustomerEngine(
            self.config.health, record_changes=self.config.record_health_changes, limit=self.labels
        )
        self.max_event_ms = MIN_TIME
        self.slot_max: dict[int, int] = {}  # max event time per input slot
        self.lagging: frozenset[int] = frozenset()
        self._watermark: int | None = None  # cached; None after anything it depends on moved
        self.applied_until_ms = MIN_TIME  # every accepted event at or before this was applied
        self.buffer: list[BufferedEvent] = []  # a heap: event time, event id, arrival
        self.pending: set[str] = set()  # dedupe keys of buffered events
        self.pending_offsets: dict[int, list[int]] = {}  # slot -> heap of buffered offsets
        self.released_offsets: dict[int, set[int]] = {}
        self.timers: list[tuple] = []
        self.tickets: dict[tuple[str, str], TicketState] = {}
        self.customers: dict[str, CustomerState] = {}
        self.dirty_customers: set[str] = set()
        self.dirty_tickets: set[tuple[str, str]] = set()
        self.forgotten_tickets: set[tuple[str, str]] = set()
        self.counters = Counters()
        self.out = Partials(self.config.pane_ms)
        self._seq = 0
        # a sweep in progress (see sweep): its horizon, what it looks at, how far it got
        self._sweep_horizon: int | None = None
        self._sweep_tickets: list[tuple[str, str]] = []
        self._sweep_customers: list[str] = []
        self._sweep_at = 0

    # -- input ----------------------------------------------------------------------------------
    @property
    def watermark(self) -> int:
        """Max event time minus the out-of-orderness bound - but while an input slot
        (topic partition) still has a backlog, no later than that slot's own max event
        time: Kafka may hand over one topic's backlog before another's, and the other
        topic's older events must not become late because of it."""
        cached = self._watermark
        if cached is None:
            cached = self._watermark = self._compute_watermark()
        return cached

    def _compute_watermark(self) -> int:
        if self.lagging:
            held = min(self.slot_max.get(slot, MIN_TIME) for slot in self.lagging)
            return self.lateness.watermark(min(held, self.max_event_ms))
        return self.lateness.watermark(self.max_event_ms)

    def set_lagging(self, slots: Iterable[int]) -> None:
        """Input slots that still have unconsumed records (set by the runtime per batch)."""
        self.lagging = frozenset(slots)
        self._watermark = None

    def offer(self, event: Event, source: Source | None = None) -> str:
        """Take one decoded event. Returns ``accepted``, ``late``, ``duplicate`` or
        ``dropped_late``. ``source`` (input slot, offset) lets the runtime know which
        input is still only buffered (see :meth:`resume_offsets`)."""
        ts = event.occurred_at_ms
        # an event at or after the max event time is never too late (the watermark is
        # behind it): in-order input skips the watermark altogether
        if ts < self.max_event_ms and self.lateness.too_late(ts, self.watermark):
            self.counters.dropped_late += 1
            return "dropped_late"
        customer = self.customers.get(event.customer_id)
        pending_key = f"{event.customer_id}\x00{event.event_id}"
        if (customer is not None and event.event_id in customer.seen) or pending_key in self.pending:
            self.counters.duplicates += 1
            return "duplicate"
        self.counters.accepted += 1
        if ts > self.max_event_ms:
            self.max_event_ms = ts
            self._watermark = None
        slot = source[0] if source is not None else -1
        if ts > self.slot_max.get(slot, MIN_TIME):
            self.slot_max[slot] = ts
            self._watermark = None
        if ts <= self.applied_until_ms:
            # behind what was already applied: apply now, out of order (late, within lateness)
            self.counters.late += 1
            self._apply(event)
            return "late"
        self._seq += 1
        self.pending.add(pending_key)
        offset = -1
        if source is not None:
            offset = source[1]
            offsets = self.pending_offsets.get(slot)
            if offsets is None:
                offsets = self.pending_offsets[slot] = []
            heapq.heappush(offsets, offset)
        heapq.heappush(self.buffer, BufferedEvent(ts, event.event_id, self._seq, event, slot, offset, pending_key))
        return "accepted"

    def resume_offsets(self) -> dict[int, int]:
        """Per input slot, the lowest offset of an event still buffered (not applied).
        Input from there on must be read again after a restart; everything before it
        is reflected in the state."""
        result = {}
        for slot, heap in self.pending_offsets.items():
            released = self.released_offsets.get(slot, set())
            while heap and heap[0] in released:
                released.discard(heapq.heappop(heap))
            if heap:
                result[slot] = heap[0]
        return result

    def advance(self, watermark_ms: int | None = None, limit: int = 0) -> bool:
        """Apply buffered events and fire timers up to the watermark, in event-time order.

        With ``limit`` > 0, stop after that many events and timers and return True if
        more are due (call again with the same watermark to go on): the runtime hands
        the event loop back between slices of a big backlog. Returns False when done."""
        until = self.watermark if watermark_ms is None else watermark_ms
        buffer, timers = self.buffer, self.timers
        done = 0
        while True:
            next_event = buffer[0].ts if buffer and buffer[0].ts <= until else None
            next_timer = timers[0][0] if timers and timers[0][0] <= until else None
            if next_event is None and next_timer is None:
                break
            if limit and done >= limit:
                return True
            done += 1
            # a timer due at the same instant as an event fires first: at 100 % of the
            # target the SLA is breached, so a reply at exactly the due time is late
            if next_timer is not None and (next_event is None or next_timer <= next_event):
                self._fire(heapq.heappop(timers))
            else:
                entry = heapq.heappop(buffer)
                self.pending.discard(entry.pending_key)
                if entry.slot >= 0:
                    released = self.released_offsets.get(entry.slot)
                    if released is None:
                        released = self.released_offsets[entry.slot] = set()
                    released.add(entry.offset)
                self._apply(entry.event)
        if until > self.applied_until_ms:
            self.applied_until_ms = until
        return False

    def drain(self) -> Partials:
        """Hand over the partials and records produced since the last drain."""
        return self.out.drain()

    # -- application ------------------------------------------------------------------------------
    def _customer(self, customer_id: str) -> CustomerState:
        state = self.customers.get(customer_id)
        if state is None:
            state = self.customers[customer_id] = CustomerState(customer_id)
        return state

    def _apply(self, event: Event) -> None:
        self.counters.applied += 1
        out = self.out
        customer = self._customer(event.customer_id)
        self._remember(customer, event)
        if event.event_type.startswith(TICKET_PREFIX):
            data: Any = event.data  # a ticket event's payload: it has a ticket_id
            ticket = self._ticket(event.customer_id, data.ticket_id, event.occurred_at_ms)
            was_open, reopens_before = ticket.counted_open, ticket.reopens
            for timer in self.tickets_engine.apply(ticket, event, out):
                self._push_sla(timer)
            # the customer engine sees every event too (engagement, health)
            self._arm(self.customers_engine.apply(customer, event, out))
            reopened = ticket.reopens != reopens_before
            if ticket.counted_open != was_open or reopened:
                self.customers_engine.on_ticket_change(
                    customer, event.occurred_at_ms, event.event_id, out,
                    open_delta=int(ticket.counted_open) - int(was_open),
                    reopened_by=event.event_id if reopened else None,
                )
        else:
            self._arm(self.customers_engine.apply(customer, event, out))

    def _remember(self, customer: CustomerState, event: Event) -> None:
        """Record the applied event id for dedupe, within the per-customer bound."""
        seen = customer.seen
        seen[event.event_id] = occurred_at(event)  # (the event's own int: see occurred_at)
        if len(seen) > self.config.dedupe_max_ids_per_customer:
            del seen[next(iter(seen))]
            self.counters.dedupe_evictions += 1
        self.dirty_customers.add(customer.customer_id)

    def _ticket(self, customer_id: str, ticket_id: str, ts: int) -> TicketState:
        """The ticket's state. A finished ticket untouched for longer than the retention
        is treated as forgotten, whether or not a sweep already removed it, so the
        result never depends on when sweeps ran."""
        key = (customer_id, ticket_id)
        ticket = self.tickets.get(key)
        if ticket is not None and ticket.expired(ts, self.config.ticket_retention_ms):
            ticket = None
        if ticket is None:
            ticket = self.tickets[key] = TicketState(ticket_id, customer_id)
            # forgotten by a sweep since the last commit and back now: the changelog must
            # get the new state, not a tombstone written after it
            self.forgotten_tickets.discard(key)
        ticket.last_event_ms = ts
        self.dirty_tickets.add(key)
        return ticket

    def dedupe_cutoff(self, horizon_ms: int) -> int:
        """Event ids older than this (their event time), with event time at ``horizon_ms``,
        are too old to matter: a duplicate of one would be dropped as too late."""
        return horizon_ms - self.lateness.grace_ms - self.lateness.allowed_lateness_ms

    def sweep(self, limit: int = 0) -> bool:
        """Free memory: forget finished tickets idle for longer than the retention and
        event ids too old to matter (a duplicate that old is dropped as too late).
        Results never depend on when this runs.

        A sweep looks at the tickets and customers there are when it starts. With
        ``limit`` > 0 it looks at that many at most per call and returns True while it is
        unfinished (call again to go on: the runtime does once per batch, so a million
        customers are not a second-long pause); without, it finishes now and returns
        False. Events applied between two calls change nothing: the horizon is fixed when
        the sweep starts and event time only grows, so each entry, looked at in its
        current state, is judged as conservatively as by a sweep at the start."""
        if self._sweep_horizon is None:
            self._sweep_horizon = self.applied_until_ms
            self._sweep_tickets = list(self.tickets)
            self._sweep_customers = list(self.customers)
            self._sweep_at = 0
        horizon = self._sweep_horizon
        retention = self.config.ticket_retention_ms
        cutoff = self.dedupe_cutoff(horizon)
        tickets, customers = self._sweep_tickets, self._sweep_customers
        n_tickets = len(tickets)
        total = n_tickets + len(customers)
        end = total if limit <= 0 else min(total, self._sweep_at + limit)
        for i in range(self._sweep_at, end):
            if i < n_tickets:
                key = tickets[i]
                ticket = self.tickets.get(key)
                if ticket is not None and ticket.expired(horizon, retention):
                    del self.tickets[key]
                    self.dirty_tickets.discard(key)
                    self.forgotten_tickets.add(key)
            else:
                customer = self.customers.get(customers[i - n_tickets])
                if customer is None:
                    continue
                old = [event_id for event_id, ts in customer.seen.items() if ts < cutoff]
                if old:
                    for event_id in old:
                        del customer.seen[event_id]
                    self.dirty_customers.add(customer.customer_id)
        self._sweep_at = end
        if end < total:
            return True
        self._sweep_horizon = None
        self._sweep_tickets, self._sweep_customers = [], []
        return False

    def take_dirty(self) -> tuple[list[CustomerState], list[TicketState], list[tuple[str, str]]]:
        """States changed since the last call (for the changelog), and forgotten tickets."""
        customers = [self.customers[c] for c in self.dirty_customers if c in self.customers]
        tickets = [self.tickets[k] for k in self.dirty_tickets if k in self.tickets]
        forgotten = list(self.forgotten_tickets)
        self.dirty_customers, self.dirty_tickets, self.forgotten_tickets = set(), set(), set()
        return customers, tickets, forgotten

    def restore(self, customers: list[CustomerState], tickets: list[TicketState],
                applied_until_ms: int, max_event_ms: int, slot_max: dict[int, int] | None = None) -> None:
        """Rebuild from changelogged state (after a restart or rebalance). Timers are
        derived from the states; buffered input is read again from Kafka."""
        self.customers = {c.customer_id: c for c in customers}
        self.tickets = {(t.customer_id, t.ticket_id): t for t in tickets}
        self._sweep_horizon = None  # a sweep in progress looked at the state replaced here
        self._sweep_tickets, self._sweep_customers = [], []
        self.applied_until_ms = applied_until_ms
        self.max_event_ms = max_event_ms
        self._watermark = None
        # Input after the resume offsets is read again, so a slot's max event time may
        # only count what was applied: otherwise a slot re-read from its resume offset
        # would hold the watermark at a time its re-read events have not reached yet.
        self.slot_max = {slot: min(ts, applied_until_ms) for slot, ts in (slot_max or {}).items()}
        self.timers = []
        for ticket in self.tickets.values():
            for timer in self.tickets_engine.timers_of(ticket):
                self._push_sla(timer)
        for customer in self.customers.values():
            if customer.inactivity_due_ms is not None:
                due = customer.inactivity_due_ms
                self._arm(InactivityTimer(due, customer.customer_id, due))

    def _fire(self, entry: tuple) -> None:
        self.counters.timers_fired += 1
        payload = entry[-1]
        out = self.out
        if isinstance(payload, TimerRequest):
            ticket = self.tickets.get((payload.customer_id, payload.ticket_id))
            if ticket is None:
                return
            self.dirty_tickets.add((payload.customer_id, payload.ticket_id))
            self.dirty_customers.add(payload.customer_id)
            was_breach = ticket.in_breach
            self.tickets_engine.on_timer(ticket, payload, out)
            if ticket.in_breach and not was_breach:
                self.customers_engine.on_ticket_change(
                    self._customer(payload.customer_id), payload.due_ms, "", out,
                    breached_ticket=f"ticket:{payload.ticket_id}",
                )
        else:
            customer = self.customers.get(payload.customer_id)
            if customer is not None:
                self.dirty_customers.add(payload.customer_id)
                self._arm(self.customers_engine.on_inactivity_timer(customer, payload, out))

    def _push_sla(self, timer: TimerRequest) -> None:
        heapq.heappush(
            self.timers,
            (timer.due_ms, _SLA_RANK, timer.customer_id, timer.ticket_id, timer.metric,
             timer.state != "at_risk", timer.token, timer),
        )

    def _arm(self, timer: InactivityTimer | None) -> None:
        if timer is not None:
            heapq.heappush(
                self.timers, (timer.due_ms, _INACTIVE_RANK, timer.customer_id, "", "", 0, timer.token, timer)
            )
