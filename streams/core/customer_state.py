"""Customer state: what the KPIs, the health score and the funnel remember about one
customer, and the inactivity timer the customer engine arms.

msgspec structs (a worker holds a million customers; the stage-1 changelog encodes them,
see streams.codec.state), kept apart from the engine in :mod:`streams.core.customers` so
that module can be compiled with mypyc (see :mod:`streams.core`); they are re-exported there.
"""

from __future__ import annotations

from typing import Final

import msgspec

from streams.core.records import Dims

OVERALL: Final[tuple[Dims, ...]] = ((),)


class LeadState(msgspec.Struct, array_like=True):
    """What the funnel KPIs remember about one lead of a customer (§3.7).

    ``created_ms`` is ``None`` for a lead seen only through contact, conversion or loss
    events (its lead.created is unknown): such a lead counts overall only.
    """

    created_ms: int | None = None
    channel: str | None = None
    campaign: str | None = None
    contacted: bool = False
    converted: bool = False
    lost: bool = False

    def dims(self) -> tuple[Dims, ...]:
        """Dimension sets of the lead's measurements: overall, channel, campaign."""
        if self.created_ms is None:
            return OVERALL
        sets: list[Dims] = [()]
        if self.channel:
            sets.append((("channel", self.channel),))
        if self.campaign:
            sets.append((("campaign", self.campaign),))
        return tuple(sets)


class Subscription(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One active subscription of a customer: ``[mrr_minor, currency]`` on the wire (as
    the tuple it replaced). Not a tuple because a customer's subscription map would then
    be tracked by the garbage collector until a full collection: with these values it
    never is (a quarter of all events start a subscription)."""

    mrr_minor: int
    currency: str


class CustomerState(msgspec.Struct, gc=False, omit_defaults=True):
    """One customer's state. A worker holds one per customer it has seen (a million is
    normal), so it is kept small: the recent-event lists are tuples (the empty one is
    shared), orders and leads exist only once there is one, and the struct is not
    tracked by the garbage collector (it holds no reference cycles). Its changelog record
    leaves out the fields still at their defaults (``omit_defaults``): a typical customer
    sets 5-7 of the 17, and a live worker writes one record per customer changed; records
    with every field, as written before, read back the same."""

    customer_id: str
    first_commercial_ms: int | None = None
    subscriptions: dict[str, Subscription] = msgspec.field(default_factory=dict)
    orders: dict[str, tuple[str, str, str]] | None = None
    last_event_ms: int | None = None
    sessions: tuple[int, ...] = ()
    last_nps: int | None = None
    last_csat: int | None = None
    breaches: tuple[tuple[int, str], ...] = ()
    reopens: tuple[tuple[int, str], ...] = ()
    refunds: tuple[tuple[int, str], ...] = ()
    expansions: tuple[int, ...] = ()
    open_tickets: int = 0
    health: float | None = None
    inactivity_due_ms: int | None = None  # the one armed inactivity timer, if any
    seen: dict[str, int] = msgspec.field(default_factory=dict)  # applied event id -> time (dedupe)
    leads: dict[str, LeadState] | None = None  # lead_id -> state, bounded

    @property
    def subscribed(self) -> bool:
        return bool(self.subscriptions)


class InactivityTimer(msgspec.Struct, frozen=True, gc=False):
    due_ms: int
    customer_id: str
    token: int  # the due time it was armed for (stale entries are ignored)
