"""Hand-worked sales-funnel KPIs (catalogue §3.7).

Every expected number is derived in the comment beside it from the events above it.
Windows are 1h unless stated; at("09:00") is Monday 2026-11-02 09:00 UTC. The
``customer_id`` of a lead event is the prospect's id.
"""

from __future__ import annotations

import pytest

from streams.codec.state import decode_customer, encode_customer
from streams.core.customer_state import CustomerState, LeadState
from streams.core.customers import MAX_REMEMBERED_LEADS
from tests.corekit import DAY0, Events, at, find, run

W9 = at("09:00")
W10 = at("10:00")
D0 = DAY0
SEARCH, SOCIAL, REFERRAL = {"channel": "search"}, {"channel": "social"}, {"channel": "referral"}
CMP_A = {"campaign": "cmp-a"}
EUR, USD = {"currency": "EUR"}, {"currency": "USD"}


def created(ev: Events, lead: str, when: str, prospect: str, channel: str, campaign: str | None = None):
    data = {"lead_id": lead, "channel": channel}
    if campaign:
        data["campaign"] = campaign
    ev.add("lead.created", when, prospect, **data)


def records(result, kpi: str, start: int, size: str = "1h") -> list:
    return [r for r in result.records if r.kpi == kpi and r.start_ms == start and r.size == size]


@pytest.fixture(scope="module")
def funnel():
    """Four leads created in the 09:00 hour, one lead of unknown origin, spend and revenue."""
    ev = Events()
    created(ev, "L1", "09:00", "P1", "search", "cmp-a")
    ev.add("lead.contacted", "09:10", "P1", lead_id="L1", agent_id="rep-1")  # first contact: 600 s
    ev.add("lead.contacted", "09:40", "P1", lead_id="L1")  # not the first contact: no sample
    ev.add("lead.converted", "09:50", "P1", lead_id="L1", order_id="o1")  # cycle 3000 s
    ev.add("lead.lost", "09:58", "P1", lead_id="L1")  # a converted lead cannot be lost: ignored
    created(ev, "L2", "09:05", "P2", "search")
    created(ev, "L2", "09:06", "P2", "search")  # repeated lead.created: no new lead
    ev.add("lead.contacted", "09:35", "P2", lead_id="L2")  # 1800 s
    ev.add("lead.lost", "09:55", "P2", lead_id="L2", reason="no_budget")
    created(ev, "L3", "09:20", "P3", "social", "cmp-a")
    ev.add("lead.contacted", "10:20", "P3", lead_id="L3")  # 3600 s, in the 10:00 window of the contact
    ev.add("lead.converted", "10:30", "P3", lead_id="L3")  # cycle 4200 s, in the 10:00 window
    created(ev, "L4", "09:30", "P4", "referral")  # never contacted, still open
    # a lead whose lead.created was never seen: overall counts only, no duration samples
    ev.add("lead.contacted", "09:15", "P5", lead_id="LX")
    ev.add("lead.converted", "09:45", "P5", lead_id="LX")
    ev.add("marketing.spend", "09:30", "cmp-a", amount_minor=8_000, currency="EUR", channel="search")
    ev.add("marketing.spend", "10:40", "cmp-a", amount_minor=500, currency="USD", channel="search")
    ev.add("purchase.completed", "09:51", "P1", order_id="o1", amount_minor=12_000, currency="EUR",
           product="P", kind="new")
    ev.add("purchase.completed", "10:31", "P3", order_id="o2", amount_minor=3_000, currency="USD",
           product="P", kind="new")
    return run(ev, windows="1h,1d")


# --- counts --------------------------------------------------------------------------------------


def test_leads_created_by_channel_and_campaign(funnel):
    # L1, L2, L3, L4 (the repeated lead.created of L2 is no new lead)
    assert find(funnel, "leads_created", W9).value == 4
    assert find(funnel, "leads_created", W9, SEARCH).value == 2  # L1, L2
    assert find(funnel, "leads_created", W9, SOCIAL).value == 1  # L3
    assert find(funnel, "leads_created", W9, REFERRAL).value == 1  # L4
    assert find(funnel, "leads_created", W9, CMP_A).value == 2  # L1, L3; L2 and L4 have no campaign
    assert not records(funnel, "leads_created", W10)


def test_leads_converted_take_the_dims_of_their_lead_created(funnel):
    # 09:00: L1 (search, cmp-a) and LX (unknown: overall only)
    assert find(funnel, "leads_converted", W9).value == 2
    assert find(funnel, "leads_converted", W9, SEARCH).value == 1
    assert find(funnel, "leads_converted", W9, CMP_A).value == 1
    # 10:00: L3 converts (social, cmp-a), counted in the window of the conversion
    assert find(funnel, "leads_converted", W10).value == 1
    assert find(funnel, "leads_converted", W10, SOCIAL).value == 1
    assert find(funnel, "leads_converted", W10, CMP_A).value == 1
    assert find(funnel, "leads_converted", D0, size="1d").value == 3


def test_leads_lost_ignores_converted_leads(funnel):
    # L2 lost (search, no campaign); the lead.lost of the converted L1 is ignored
    assert find(funnel, "leads_lost", W9).value == 1
    assert find(funnel, "leads_lost", W9, SEARCH).value == 1
    assert {r.dims for r in records(funnel, "leads_lost", W9)} == {(), (("channel", "search"),)}


# --- durations -------------------------------------------------------------------------------------


def test_lead_response_time_counts_the_first_contact_in_its_window(funnel):
    overall = find(funnel, "lead_response_time_seconds", W9)
    assert overall.n == 2  # L1 600 s, L2 1800 s; LX has no lead.created: no sample
    assert overall.value == pytest.approx((600 + 1800) / 2)  # 1200
    assert overall.stats["max"] == pytest.approx(1800, rel=0.01)
    assert find(funnel, "lead_response_time_seconds", W9, SEARCH).value == pytest.approx(1200)
    campaign = find(funnel, "lead_response_time_seconds", W9, CMP_A)
    assert (campaign.n, campaign.value) == (1, pytest.approx(600))  # L1 only
    # L3 was created at 09:20 and first contacted at 10:20: 3600 s in the 10:00 window
    late = find(funnel, "lead_response_time_seconds", W10, SOCIAL)
    assert (late.n, late.value) == (1, pytest.approx(3600))
    day = find(funnel, "lead_response_time_seconds", D0, size="1d")
    assert (day.n, day.value) == (3, pytest.approx((600 + 1800 + 3600) / 3))  # 2000


def test_sales_cycle_from_creation_to_conversion(funnel):
    first = find(funnel, "sales_cycle_seconds", W9)
    assert (first.n, first.value) == (1, pytest.approx(3000))  # L1 09:00 -> 09:50; LX has no start
    second = find(funnel, "sales_cycle_seconds", W10, CMP_A)
    assert (second.n, second.value) == (1, pytest.approx(4200))  # L3 09:20 -> 10:30
    day = find(funnel, "sales_cycle_seconds", D0, size="1d")
    assert (day.n, day.value) == (2, pytest.approx((3000 + 4200) / 2))  # 3600
    assert day.stats["p50"] == pytest.approx(3000, rel=0.01)


# --- rates and money per lead ---------------------------------------------------------------------------


def test_lead_conversion_rate_is_converted_over_created_in_the_window(funnel):
    rate = find(funnel, "lead_conversion_rate", W9)
    assert (rate.value, rate.n) == (pytest.approx(2 / 4), 4)  # L1 + LX converted, 4 created
    assert rate.stats == {"leads_converted": 2, "leads_created": 4}
    assert find(funnel, "lead_conversion_rate", W9, SEARCH).value == pytest.approx(1 / 2)  # L1 of L1, L2
    assert find(funnel, "lead_conversion_rate", W9, CMP_A).value == pytest.approx(1 / 2)  # L1 of L1, L3
    assert find(funnel, "lead_conversion_rate", W9, SOCIAL).value == 0.0  # L3 converts later
    # 10:00: one conversion, no lead created in the window: no rate
    assert find(funnel, "lead_conversion_rate", W10).value is None
    # the day: L1, LX, L3 converted of 4 created
    assert find(funnel, "lead_conversion_rate", D0, size="1d").value == pytest.approx(3 / 4)
    assert find(funnel, "lead_conversion_rate", D0, CMP_A, size="1d").value == pytest.approx(1.0)  # L1, L3 of 2


def test_cost_per_lead_is_spend_per_currency_over_leads_created(funnel):
    cpl = find(funnel, "cost_per_lead_minor", W9, EUR)
    assert (cpl.value, cpl.n) == (pytest.approx(8_000 / 4), 4)  # 2000
    # 10:00: USD 500 spent, funnel active (L3 converted) but no lead created: no value
    assert find(funnel, "cost_per_lead_minor", W10, USD).value is None
    assert find(funnel, "cost_per_lead_minor", D0, USD, size="1d").value == pytest.approx(500 / 4)  # 125
    assert find(funnel, "cost_per_lead_minor", D0, EUR, size="1d").value == pytest.approx(2_000)


def test_revenue_per_lead_is_revenue_per_currency_over_leads_created(funnel):
    assert find(funnel, "revenue_per_lead_minor", W9, EUR).value == pytest.approx(12_000 / 4)  # 3000
    assert find(funnel, "revenue_per_lead_minor", D0, USD, size="1d").value == pytest.approx(3_000 / 4)  # 750
    # per currency only: no record for the currency+product revenue dims
    assert {r.dims for r in records(funnel, "revenue_per_lead_minor", D0, "1d")} == {
        (("currency", "EUR"),), (("currency", "USD"),)}


def test_revenue_per_lead_nets_refunds():
    ev = Events()
    created(ev, "L1", "09:00", "P1", "search")
    created(ev, "L2", "09:10", "P2", "search")
    ev.add("purchase.completed", "09:20", "C", order_id="o1", amount_minor=10_000, currency="EUR", product="P",
           kind="renewal")
    ev.add("purchase.refunded", "09:30", "C", order_id="o1", amount_minor=4_000, currency="EUR")
    # (10000 - 4000) / 2 leads; the buyer C is no lead at all: the figure is blended
    assert find(run(ev), "revenue_per_lead_minor", W9, EUR).value == pytest.approx(3_000)


def test_no_per_lead_records_in_windows_without_funnel_activity():
    ev = Events()
    created(ev, "L1", "09:00", "P1", "search")
    ev.add("marketing.spend", "11:00", "cmp-a", amount_minor=100, currency="EUR", channel="search")
    ev.add("purchase.completed", "11:10", "C", order_id="o1", amount_minor=100, currency="EUR", product="P",
           kind="new")
    result = run(ev)
    at11 = at("11:00")
    assert not records(result, "cost_per_lead_minor", at11)
    assert not records(result, "revenue_per_lead_minor", at11)
    assert find(result, "cac_minor", at11, EUR).value == pytest.approx(100)  # the commercial KPIs are unchanged


# --- lead lifecycle rules -----------------------------------------------------------------------------


def test_a_lost_lead_won_back_counts_as_lost_and_converted():
    ev = Events()
    created(ev, "L1", "09:00", "P1", "social")
    ev.add("lead.lost", "09:10", "P1", lead_id="L1")
    ev.add("lead.lost", "09:15", "P1", lead_id="L1")  # repeated: counted once
    ev.add("lead.converted", "09:40", "P1", lead_id="L1")  # won back: 2400 s cycle
    ev.add("lead.converted", "09:45", "P1", lead_id="L1")  # repeated: counted once
    result = run(ev)
    assert find(result, "leads_lost", W9, SOCIAL).value == 1
    assert find(result, "leads_converted", W9, SOCIAL).value == 1
    assert find(result, "sales_cycle_seconds", W9).value == pytest.approx(2400)
    assert find(result, "lead_conversion_rate", W9).value == pytest.approx(1.0)


def test_leads_of_one_prospect_are_kept_apart():
    ev = Events()
    created(ev, "L1", "09:00", "P1", "search")
    created(ev, "L2", "09:20", "P1", "referral")
    ev.add("lead.contacted", "09:30", "P1", lead_id="L2")  # L2: 600 s
    ev.add("lead.contacted", "09:50", "P1", lead_id="L1")  # L1: 3000 s
    result = run(ev)
    assert find(result, "lead_response_time_seconds", W9, REFERRAL).value == pytest.approx(600)
    assert find(result, "lead_response_time_seconds", W9, SEARCH).value == pytest.approx(3000)
    assert find(result, "leads_created", W9).value == 2


def test_lead_events_count_the_prospect_as_active_but_leave_health_alone():
    ev = Events()
    created(ev, "L1", "09:00", "P1", "search")
    ev.add("lead.converted", "09:30", "P1", lead_id="L1")
    result = run(ev)
    assert find(result, "active_customers", W9).value == 1  # any event of a customer id
    assert not [r for r in result.records if r.kpi == "customer_health_score"]
    assert not result.signals


def test_lead_memory_per_customer_is_bounded():
    # one customer with more leads than remembered: the oldest lead is forgotten and its
    # conversion counts like that of an unknown lead (overall, no sales-cycle sample)
    ev = Events()
    for i in range(MAX_REMEMBERED_LEADS + 1):
        created(ev, f"L{i}", f"09:{i:02d}", "P1", "search")
    ev.add("lead.converted", "09:50", "P1", lead_id="L0")
    ev.add("lead.converted", "09:55", "P1", lead_id=f"L{MAX_REMEMBERED_LEADS}")  # still known: 55 - 16 min
    result = run(ev)
    assert find(result, "leads_created", W9).value == MAX_REMEMBERED_LEADS + 1
    assert find(result, "leads_converted", W9).value == 2
    assert find(result, "leads_converted", W9, SEARCH).value == 1  # only the remembered lead has dims
    cycle = find(result, "sales_cycle_seconds", W9)
    assert (cycle.n, cycle.value) == (1, pytest.approx((55 - MAX_REMEMBERED_LEADS) * 60))


def test_lead_state_survives_the_changelog_encoding():
    state = CustomerState("P1")
    assert state.leads is None  # a customer without leads carries no dict for them
    state.leads = {
        "L1": LeadState(created_ms=W9, channel="search", campaign="cmp-a", contacted=True),
        "LX": LeadState(converted=True),
    }
    restored = decode_customer(encode_customer(state))
    assert restored.leads == state.leads
    assert restored.leads["L1"].dims() == ((), (("channel", "search"),), (("campaign", "cmp-a"),))
    assert restored.leads["LX"].dims() == ((),)
