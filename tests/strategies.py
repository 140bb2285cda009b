"""Hypothesis strategies for valid :class:`~streams.core.events.Event` values.

``events()`` draws any of the 16 event types with realistic ids, labels drawn from small
sets (so KPI dimensions repeat), amounts, and event times in [2020, 2030) UTC::

    from tests.strategies import events

    @given(events())                                  # any type
    @given(events(["ticket.created", "ticket.replied"]))
    @given(events(wild_text=True))                    # arbitrary Unicode ids and labels

Every drawn event is valid for the codec: ``decode_event(encode_event(e)) == e``.
Ids are not unique across draws (hypothesis likes small numbers); when a test needs
distinct events, say so: ``st.lists(events(), unique_by=lambda e: e.event_id)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import get_args

from hypothesis import strategies as st

from streams.core import events as ev
from streams.core.events import EVENT_TYPES, SURVEY_SCORE_RANGE, Event

TIME_MIN_MS = 1_577_836_800_000  # 2020-01-01T00:00:00Z
TIME_MAX_MS = 1_893_456_000_000 - 1  # last millisecond of 2029

PRODUCTS = ("crm-pro", "crm-lite", "helpdesk", "analytics")
TEAMS = ("billing", "technical", "onboarding", "tier-2")
SOURCES = ("zendesk", "shop", "app", "salesforce", "stripe")
CURRENCIES = ("EUR", "USD", "GBP", "CHF")
PLANS = ("starter", "team", "business", "enterprise")
PLATFORMS = ("ios", "android", "web", "desktop")
CAMPAIGNS = ("spring-sale", "webinar-q3", "partner-referral", "retargeting")
LEAD_CHANNELS = ("ads", "organic", "referral", "event", "outbound")
REASONS = ("too expensive", "missing feature", "switched vendor", "no budget")


def _literal(alias: object) -> st.SearchStrategy[str]:
    """The allowed values of one of the ``Literal`` enums in ``streams.core.events``."""
    return st.sampled_from(get_args(alias))


def _optional(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.none() | strategy


def _prefixed_id(prefix: str) -> st.SearchStrategy[str]:
    return st.integers(1, 9_999_999).map(lambda number: f"{prefix}-{number:07d}")


# 1–128 characters of any Unicode except surrogates (which are not valid in UTF-8).
_WILD_TEXT = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=128)


class _Text:
    """Where ids and labels come from: realistic by default, arbitrary Unicode if wild."""

    def __init__(self, wild: bool) -> None:
        self.wild = wild

    def id(self, prefix: str) -> st.SearchStrategy[str]:
        return _WILD_TEXT if self.wild else _prefixed_id(prefix)

    def label(self, choices: tuple[str, ...]) -> st.SearchStrategy[str]:
        return _WILD_TEXT if self.wild else st.sampled_from(choices)

    def reason(self) -> st.SearchStrategy[str]:
        wild = st.text(st.characters(exclude_categories=("Cs",)), max_size=512)
        return wild if self.wild else st.sampled_from(REASONS)


def _amounts() -> st.SearchStrategy[int]:
    return st.integers(0, 2_000_000) | st.integers(0, 10**15)


def _survey_answers(text: _Text) -> st.SearchStrategy[ev.SurveyAnswered]:
    def answer(kind: str) -> st.SearchStrategy[ev.SurveyAnswered]:
        low, high = SURVEY_SCORE_RANGE[kind]
        return st.builds(
            ev.SurveyAnswered,
            survey=st.just(kind),
            score=st.integers(low, high),
            product=_optional(text.label(PRODUCTS)),
            ticket_id=_optional(text.id("T")),
        )

    return _literal(ev.SurveyKind).flatmap(answer)


def _payload_strategies(text: _Text) -> dict[str, st.SearchStrategy]:
    """event_type → strategy for its payload struct."""
    ticket_id = text.id("T")
    return {
        "ticket.created": st.builds(
            ev.TicketCreated,
            ticket_id=ticket_id,
            priority=_literal(ev.Priority),
            channel=_literal(ev.TicketChannel),
            team=_optional(text.label(TEAMS)),
            product=_optional(text.label(PRODUCTS)),
        ),
        "ticket.replied": st.builds(
            ev.TicketReplied,
            ticket_id=ticket_id,
            author=_literal(ev.Author),
            agent_id=_optional(text.id("agent")),
        ),
        "ticket.status_changed": st.builds(
            ev.TicketStatusChanged, ticket_id=ticket_id, status=_literal(ev.TicketStatus)
        ),
        "ticket.escalated": st.builds(
            ev.TicketEscalated, ticket_id=ticket_id, to_team=_optional(text.label(TEAMS))
        ),
        "interaction.logged": st.builds(
            ev.InteractionLogged,
            interaction_id=text.id("int"),
            channel=_literal(ev.InteractionChannel),
            direction=_literal(ev.Direction),
            handle_time_s=_optional(
                st.floats(0, 10**7, allow_nan=False)
                if text.wild
                else st.integers(5, 7200).map(float)
            ),
            ticket_id=_optional(ticket_id),
        ),
        "session.started": st.builds(
            ev.SessionStarted,
            product=_optional(text.label(PRODUCTS)),
            platform=_optional(text.label(PLATFORMS)),
        ),
        "survey.answered": _survey_answers(text),
        "lead.created": st.builds(
            ev.LeadCreated,
            lead_id=text.id("lead"),
            channel=text.label(LEAD_CHANNELS),
            campaign=_optional(text.label(CAMPAIGNS)),
        ),
        "lead.contacted": st.builds(
            ev.LeadContacted, lead_id=text.id("lead"), agent_id=_optional(text.id("agent"))
        ),
        "lead.converted": st.builds(
            ev.LeadConverted, lead_id=text.id("lead"), order_id=_optional(text.id("ord"))
        ),
        "lead.lost": st.builds(
            ev.LeadLost, lead_id=text.id("lead"), reason=_optional(text.reason())
        ),
        "purchase.completed": st.builds(
            ev.PurchaseCompleted,
            order_id=text.id("ord"),
            amount_minor=_amounts(),
            currency=st.sampled_from(CURRENCIES),
            product=text.label(PRODUCTS),
            kind=_literal(ev.PurchaseKind),
        ),
        "purchase.refunded": st.builds(
            ev.PurchaseRefunded,
            order_id=text.id("ord"),
            amount_minor=_amounts(),
            currency=st.sampled_from(CURRENCIES),
        ),
        "subscription.started": st.builds(
            ev.SubscriptionStarted,
            subscription_id=text.id("sub"),
            plan=text.label(PLANS),
            mrr_minor=_amounts(),
            currency=st.sampled_from(CURRENCIES),
        ),
        "subscription.cancelled": st.builds(
            ev.SubscriptionCancelled,
            subscription_id=text.id("sub"),
            reason=_optional(text.reason()),
        ),
        "marketing.spend": st.builds(
            ev.MarketingSpend,
            amount_minor=_amounts(),
            currency=st.sampled_from(CURRENCIES),
            channel=text.label(LEAD_CHANNELS),
        ),
    }


def occurred_at_ms() -> st.SearchStrategy[int]:
    """Event times in epoch ms within [2020-01-01, 2030-01-01) UTC."""
    return st.integers(TIME_MIN_MS, TIME_MAX_MS)


def events(
    event_types: Iterable[str] | None = None, *, wild_text: bool = False
) -> st.SearchStrategy[Event]:
    """Valid events of the given types (default: all 16), see the module doc."""
    chosen = list(EVENT_TYPES) if event_types is None else list(event_types)
    unknown = set(chosen) - set(EVENT_TYPES)
    if unknown:
        raise ValueError(f"unknown event types: {sorted(unknown)}")
    text = _Text(wild_text)
    data = _payload_strategies(text)
    return st.one_of(
        [
            st.builds(
                Event,
                event_id=text.id("evt"),
                event_type=st.just(event_type),
                occurred_at_ms=occurred_at_ms(),
                customer_id=text.id("cus"),
                source=text.label(SOURCES),
                data=data[event_type],
            )
            for event_type in chosen
        ]
    )
