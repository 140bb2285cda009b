"""Typed CRM events: the envelope and one payload struct per event type.

This module is the in-memory form of ``KPI_CATALOGUE.md`` §1–2. The codec
(``streams.codec``) turns bytes into these structs and back; everything in
``streams.core`` works on them. Times are int milliseconds since the Unix epoch
(UTC) inside the core; RFC 3339 strings exist only at the edges.

Enumerations are ``Literal`` types so that msgspec validates them while decoding
and so that the set of allowed values is written down exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Annotated, Any, Final, Literal

import msgspec

# --- bounded identifier types -------------------------------------------------

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
"""Identifiers (event, customer, ticket, order, ...): 1–128 characters."""

Label = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
"""Free-form label values used as KPI dimensions (team, product, campaign, ...)."""

# The lengths matter: msgspec (like Python's re) lets ``$`` match before a final
# newline, so the pattern alone would accept "EUR\n".
Currency = Annotated[str, msgspec.Meta(min_length=3, max_length=3, pattern=r"^[A-Z]{3}$")]
"""ISO 4217 alphabetic code, e.g. ``EUR``."""

AmountMinor = Annotated[int, msgspec.Meta(ge=0, le=10**15)]
"""Money in minor units (cents), never negative, at most 10^15."""

# --- enumerations ---------------------------------------------------------------

Priority = Literal["low", "normal", "high", "urgent"]
TicketChannel = Literal["email", "chat", "phone", "web", "social"]
InteractionChannel = Literal["email", "chat", "phone", "web", "app", "social"]
Author = Literal["agent", "customer"]
TicketStatus = Literal["open", "pending", "on_hold", "solved", "closed"]
Direction = Literal["inbound", "outbound"]
SurveyKind = Literal["nps", "csat", "ces"]
PurchaseKind = Literal["new", "renewal", "upsell", "cross_sell"]

PRIORITIES: Final = ("low", "normal", "high", "urgent")
SURVEY_SCORE_RANGE: Final = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}

SCHEMA_VERSION: Final = 1


# --- payloads (one struct per event type) ---------------------------------------
# forbid_unknown_fields is left off on purpose: unknown extra fields are kept by
# the producer and ignored here (forward compatibility, catalogue §1).


class TicketCreated(msgspec.Struct, frozen=True, gc=False):
    ticket_id: Id
    priority: Priority
    channel: TicketChannel
    team: Label | None = None
    product: Label | None = None


class TicketReplied(msgspec.Struct, frozen=True, gc=False):
    ticket_id: Id
    author: Author
    agent_id: Id | None = None


class TicketStatusChanged(msgspec.Struct, frozen=True, gc=False):
    ticket_id: Id
    status: TicketStatus


class TicketEscalated(msgspec.Struct, frozen=True, gc=False):
    ticket_id: Id
    to_team: Label | None = None


class InteractionLogged(msgspec.Struct, frozen=True, gc=False):
    interaction_id: Id
    channel: InteractionChannel
    direction: Direction
    handle_time_s: Annotated[float, msgspec.Meta(ge=0, le=10**7)] | None = None
    ticket_id: Id | None = None


class SessionStarted(msgspec.Struct, frozen=True, gc=False):
    product: Label | None = None
    platform: Label | None = None


class SurveyAnswered(msgspec.Struct, frozen=True, gc=False):
    survey: SurveyKind
    score: int  # range depends on the survey kind; checked by the codec
    product: Label | None = None
    ticket_id: Id | None = None


class LeadCreated(msgspec.Struct, frozen=True, gc=False):
    lead_id: Id
    channel: Label
    campaign: Label | None = None


class LeadContacted(msgspec.Struct, frozen=True, gc=False):
    lead_id: Id
    agent_id: Id | None = None


class LeadConverted(msgspec.Struct, frozen=True, gc=False):
    lead_id: Id
    order_id: Id | None = None


class LeadLost(msgspec.Struct, frozen=True, gc=False):
    lead_id: Id
    reason: Annotated[str, msgspec.Meta(max_length=512)] | None = None


class PurchaseCompleted(msgspec.Struct, frozen=True, gc=False):
    order_id: Id
    amount_minor: AmountMinor
    currency: Currency
    product: Label
    kind: PurchaseKind


class PurchaseRefunded(msgspec.Struct, frozen=True, gc=False):
    order_id: Id
    amount_minor: AmountMinor
    currency: Currency


class SubscriptionStarted(msgspec.Struct, frozen=True, gc=False):
    subscription_id: Id
    plan: Label
    mrr_minor: AmountMinor
    currency: Currency


class SubscriptionCancelled(msgspec.Struct, frozen=True, gc=False):
    subscription_id: Id
    reason: Annotated[str, msgspec.Meta(max_length=512)] | None = None


class MarketingSpend(msgspec.Struct, frozen=True, gc=False):
    amount_minor: AmountMinor
    currency: Currency
    channel: Label


EventData = (
    TicketCreated
    | TicketReplied
    | TicketStatusChanged
    | TicketEscalated
    | InteractionLogged
    | SessionStarted
    | SurveyAnswered
    | LeadCreated
    | LeadContacted
    | LeadConverted
    | LeadLost
    | PurchaseCompleted
    | PurchaseRefunded
    | SubscriptionStarted
    | SubscriptionCancelled
    | MarketingSpend
)

# event_type -> (payload struct, topic). The single source of truth for which
# types exist and where they travel.
TICKETS_TOPIC: Final = "crm.tickets.v1"
INTERACTIONS_TOPIC: Final = "crm.interactions.v1"
PURCHASES_TOPIC: Final = "crm.purchases.v1"

EVENT_TYPES: Final[dict[str, tuple[type, str]]] = {
    "ticket.created": (TicketCreated, TICKETS_TOPIC),
    "ticket.replied": (TicketReplied, TICKETS_TOPIC),
    "ticket.status_changed": (TicketStatusChanged, TICKETS_TOPIC),
    "ticket.escalated": (TicketEscalated, TICKETS_TOPIC),
    "interaction.logged": (InteractionLogged, INTERACTIONS_TOPIC),
    "session.started": (SessionStarted, INTERACTIONS_TOPIC),
    "survey.answered": (SurveyAnswered, INTERACTIONS_TOPIC),
    "lead.created": (LeadCreated, INTERACTIONS_TOPIC),
    "lead.contacted": (LeadContacted, INTERACTIONS_TOPIC),
    "lead.converted": (LeadConverted, INTERACTIONS_TOPIC),
    "lead.lost": (LeadLost, INTERACTIONS_TOPIC),
    "purchase.completed": (PurchaseCompleted, PURCHASES_TOPIC),
    "purchase.refunded": (PurchaseRefunded, PURCHASES_TOPIC),
    "subscription.started": (SubscriptionStarted, PURCHASES_TOPIC),
    "subscription.cancelled": (SubscriptionCancelled, PURCHASES_TOPIC),
    "marketing.spend": (MarketingSpend, PURCHASES_TOPIC),
}

DATA_TYPE_NAMES: Final[dict[type, str]] = {cls: name for name, (cls, _) in EVENT_TYPES.items()}


class Event(msgspec.Struct, frozen=True, gc=False):
    """A validated event: envelope fields plus its typed payload.

    ``occurred_at_ms`` is the event time in epoch milliseconds (UTC). Unknown
    envelope and payload fields are dropped by the codec (catalogue §1).
    """

    event_id: str
    event_type: str
    occurred_at_ms: int
    customer_id: str
    source: str
    data: EventData
    schema_version: int = SCHEMA_VERSION

    @property
    def order_key(self) -> tuple[int, str]:
        """Deterministic total order used everywhere: event time, then event id."""
        return (self.occurred_at_ms, self.event_id)


class BufferedEvent(msgspec.Struct, frozen=True, order=True, gc=False):
    """An accepted event waiting in the processor's buffer for the watermark, ordered
    as the buffer applies them: event time, event id, then arrival (``seq`` is unique, so
    a comparison never reaches the event).

    A struct the garbage collector does not track, not a tuple: a live worker buffers
    out-of-orderness x rate events (~400k at 12,755 events/s), each for 30 s, and as
    tuples (with a ``(slot, offset)`` tuple inside) they were half of every young
    collection - 0.15-0.25 s each, the event loop stalled (docs/performance.md)."""

    ts: int
    event_id: str
    seq: int
    event: Event
    slot: int  # input slot and offset it came from; -1 when offered without a source
    offset: int
    pending_key: str  # its dedupe key while buffered


occurred_at: Final[Callable[[Event], Any]] = attrgetter("occurred_at_ms")
"""An event's time as the very int object the event holds. Where the core keeps the time
in state (dedupe ids, last event, recent sessions...), it reads it through this: compiled
with mypyc (streams.core.native), ``event.occurred_at_ms`` becomes a machine int and every
copy stored in state a new int object (+80 MiB for a million customers)."""


def topic_for(event_type: str) -> str:
    """The input topic an event type travels on (catalogue §2)."""
    return EVENT_TYPES[event_type][1]


def make_event(
    event_type: str,
    *,
    event_id: str,
    occurred_at_ms: int,
    customer_id: str,
    source: str = "test",
    **data: object,
) -> Event:
    """Build an event from keyword payload fields (tests, simulator). Validates the payload."""
    cls = EVENT_TYPES[event_type][0]
    payload: EventData = msgspec.convert(data, cls)
    return Event(
        event_id=event_id,
        event_type=event_type,
        occurred_at_ms=occurred_at_ms,
        customer_id=customer_id,
        source=source,
        data=payload,
    )
