"""Hand-worked KPI values (catalogue §3.1, 3.2, 3.4, 3.5, engagement of 3.6).

Every expected number is derived in the comment beside it from the events above it.
Windows are 1h unless stated; at("09:00") is Monday 2026-11-02 09:00 UTC.
"""

from __future__ import annotations

import math

import pytest

from tests.corekit import Events, at, find, run

W9 = at("09:00")
W10 = at("10:00")


def ticket(ev: Events, tid: str, when: str, priority="normal", channel="email", team=None, customer="c1"):
    kwargs = {"ticket_id": tid, "priority": priority, "channel": channel}
    if team:
        kwargs["team"] = team
    ev.add("ticket.created", when, customer, **kwargs)


def reply(ev: Events, tid: str, when: str, author="agent", customer="c1"):
    ev.add("ticket.replied", when, customer, ticket_id=tid, author=author)


def status(ev: Events, tid: str, when: str, new: str, customer="c1"):
    ev.add("ticket.status_changed", when, customer, ticket_id=tid, status=new)


# --- 3.1 response time ---------------------------------------------------------------------


def test_first_response_time_is_counted_in_the_window_of_the_reply():
    ev = Events()
    ticket(ev, "A", "09:00", priority="high")
    reply(ev, "A", "09:10")  # 600 s
    ticket(ev, "B", "09:05", priority="high")
    reply(ev, "B", "09:35")  # 1800 s
    ticket(ev, "C", "08:50", priority="low")
    reply(ev, "C", "09:20")  # 1800 s, created in the 08:00 window, counted at 09:00
    reply(ev, "C", "09:40")  # a second agent reply is not a first response
    result = run(ev)
    overall = find(result, "first_response_time_seconds", W9)
    assert overall.n == 3
    assert overall.value == pytest.approx((600 + 1800 + 1800) / 3)  # 1400
    assert overall.stats["p50"] == pytest.approx(1800, rel=0.01)
    high = find(result, "first_response_time_seconds", W9, {"priority": "high"})
    assert (high.n, high.value) == (2, 1200.0)  # (600 + 1800) / 2
    low = find(result, "first_response_time_seconds", W9, {"priority": "low"})
    assert (low.n, low.value) == (1, 1800.0)
    assert not [r for r in result.records if r.kpi == "first_response_time_seconds" and r.start_ms == at("08:00")]


def test_reply_time_measures_every_customer_message_to_the_next_agent_reply():
    ev = Events()
    ticket(ev, "A", "09:00")  # customer message 1
    reply(ev, "A", "09:02", author="customer")  # customer message 2
    reply(ev, "A", "09:10")  # answers both: 600 s and 480 s
    reply(ev, "A", "09:20", author="customer")
    reply(ev, "A", "09:50")  # 1800 s
    reply(ev, "A", "09:55")  # nothing was waiting: no sample
    record = find(run(ev), "reply_time_seconds", W9)
    assert record.n == 3
    assert record.value == pytest.approx((600 + 480 + 1800) / 3)  # 960


def test_average_handle_time_by_channel():
    ev = Events()
    ev.add("interaction.logged", "09:00", interaction_id="i1", channel="chat", direction="inbound", handle_time_s=300)
    ev.add("interaction.logged", "09:05", interaction_id="i2", channel="chat", direction="inbound", handle_time_s=600)
    ev.add("interaction.logged", "09:10", interaction_id="i3", channel="email", direction="outbound", handle_time_s=120)
    ev.add("interaction.logged", "09:15", interaction_id="i4", channel="email", direction="outbound")  # no time
    result = run(ev)
    assert find(result, "average_handle_time_seconds", W9).value == pytest.approx(340)  # 1020 / 3
    assert find(result, "average_handle_time_seconds", W9, {"channel": "chat"}).value == 450
    assert find(result, "average_handle_time_seconds", W9, {"channel": "email"}).value == 120


# --- 3.2 resolution -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resolution_day():
    ev = Events()
    ticket(ev, "T1", "09:00", team="red")
    reply(ev, "T1", "09:10")
    status(ev, "T1", "09:20", "solved")  # solve 1: 1200 s, one reply, first contact
    status(ev, "T1", "09:25", "closed")  # closed after solved: not a second solve
    ticket(ev, "T2", "09:00")
    reply(ev, "T2", "09:05")
    reply(ev, "T2", "09:15")
    status(ev, "T2", "09:30", "solved")  # solve 2: 1800 s, two replies: not first contact
    ticket(ev, "T3", "09:10")
    reply(ev, "T3", "09:12")
    status(ev, "T3", "09:14", "solved")  # solve 3: 240 s, first contact
    status(ev, "T3", "09:40", "open")  # reopen 1
    status(ev, "T3", "09:50", "solved")  # solve 4: 2400 s, reopened before: not first contact
    ticket(ev, "T4", "09:20")
    ev.add("ticket.escalated", "09:25", ticket_id="T4", to_team="tier2")  # escalation 1, stays open
    ticket(ev, "T5", "09:30")
    status(ev, "T5", "09:45", "closed")  # closed without a solve
    return run(ev)


def test_ticket_counts(resolution_day):
    assert find(resolution_day, "tickets_created", W9).value == 5
    assert find(resolution_day, "tickets_solved", W9).value == 4
    assert find(resolution_day, "tickets_reopened", W9).value == 1
    assert find(resolution_day, "tickets_escalated", W9).value == 1
    assert find(resolution_day, "tickets_created", W9, {"team": "red"}).value == 1


def test_resolution_time(resolution_day):
    record = find(resolution_day, "resolution_time_seconds", W9)
    assert record.n == 4
    assert record.value == pytest.approx((1200 + 1800 + 240 + 2400) / 4)  # 1410


def test_resolution_fcr_reopen_and_escalation_rates(resolution_day):
    assert find(resolution_day, "resolution_rate", W9).value == pytest.approx(4 / 5)
    fcr = find(resolution_day, "first_contact_resolution_rate", W9)
    assert (fcr.value, fcr.n) == (0.5, 4)  # T1 and first solve of T3
    assert find(resolution_day, "reopen_rate", W9).value == pytest.approx(1 / 4)
    assert find(resolution_day, "escalation_rate", W9).value == pytest.approx(1 / 5)


def test_open_tickets_at_window_end(resolution_day):
    # T1, T2, T3 solved, T5 closed; only T4 is open at 10:00
    assert find(resolution_day, "open_tickets", W9).value == 1


def test_open_tickets_level_carries_across_windows():
    ev = Events()
    ticket(ev, "A", "09:00")
    ticket(ev, "B", "09:10")
    status(ev, "A", "10:30", "solved")
    result = run(ev)
    assert find(result, "open_tickets", W9).value == 2
    assert find(result, "open_tickets", W10).value == 1  # 2 carried in, 1 solved


# --- 3.4 satisfaction -----------------------------------------------------------------------------


def survey_set(ev: Events, kind: str, scores: list[int], product: str | None = None):
    for i, score in enumerate(scores):
        data = {"survey": kind, "score": score}
        if product:
            data["product"] = product
        ev.add("survey.answered", f"09:{i:02d}", f"s{i}", **data)


def test_nps_from_counts_with_margin_of_error():
    ev = Events()
    survey_set(ev, "nps", [10, 10, 9, 9, 9, 8, 7, 7, 0, 6], product="app")
    record = find(run(ev, min_sample=5), "nps", W9)
    # 5 promoters, 3 passives, 2 detractors of 10: (5 - 2) / 10 * 100 = 30
    assert record.value == pytest.approx(30.0)
    assert record.n == 10
    assert (record.stats["promoters"], record.stats["passives"], record.stats["detractors"]) == (5, 3, 2)
    # p = .5, d = .2: 1.96 * 100 * sqrt((.7 - .09) / 10) = 48.41
    assert record.stats["margin_of_error"] == pytest.approx(1.96 * 100 * math.sqrt(0.061), rel=1e-9)
    assert record.stats["suppressed"] is False
    by_product = find(run(ev, min_sample=5), "nps", W9, {"product": "app"})
    assert by_product.value == pytest.approx(30.0)


def test_nps_below_min_sample_is_suppressed():
    ev = Events()
    survey_set(ev, "nps", [10, 10, 9, 9, 9, 8, 7, 7, 0, 6])
    record = find(run(ev, min_sample=30), "nps", W9)
    assert record.stats["suppressed"] is True
    assert record.n == 10


def test_csat_and_ces_shares():
    ev = Events()
    survey_set(ev, "csat", [5, 4, 3, 2, 5])  # 4-5: three of five
    result = run(ev, min_sample=1)
    assert find(result, "csat", W9).value == pytest.approx(0.6)
    ev = Events()
    survey_set(ev, "ces", [7, 5, 4, 1])  # 5-7: two of four
    assert find(run(ev, min_sample=1), "ces", W9).value == pytest.approx(0.5)


# --- 3.5 commercial -----------------------------------------------------------------------------------


def test_revenue_orders_aov_upsell_new_customers_and_cac():
    ev = Events()
    ev.add("purchase.completed", "09:00", "A", order_id="o1", amount_minor=10_000, currency="EUR", product="P1", kind="new")
    ev.add("purchase.completed", "09:10", "A", order_id="o2", amount_minor=5_000, currency="EUR", product="P2", kind="upsell")
    ev.add("purchase.completed", "09:20", "B", order_id="o3", amount_minor=2_000, currency="EUR", product="P1", kind="new")
    ev.add("purchase.refunded", "09:30", "B", order_id="o3", amount_minor=2_000, currency="EUR")
    ev.add("purchase.completed", "09:40", "C", order_id="o4", amount_minor=700, currency="USD", product="P3", kind="cross_sell")
    ev.add("marketing.spend", "09:50", "campaign-1", amount_minor=9_000, currency="EUR", channel="search")
    result = run(ev)
    eur = {"currency": "EUR"}
    # EUR: 10000 + 5000 + 2000 - 2000 refunded = 15000
    assert find(result, "revenue_minor", W9, eur).value == 15_000
    assert find(result, "revenue_minor", W9, {"currency": "USD"}).value == 700
    # the refund keeps the order's product: P1 nets 10000 + 2000 - 2000
    assert find(result, "revenue_minor", W9, {"currency": "EUR", "product": "P1"}).value == 10_000
    assert find(result, "orders", W9, eur).value == 3
    # AOV EUR = 17000 gross / 3 orders
    assert find(result, "average_order_value_minor", W9, eur).value == pytest.approx(17_000 / 3)
    # buyers A, B, C; with upsell/cross-sell: A, C
    assert find(result, "upsell_cross_sell_rate", W9).value == pytest.approx(2 / 3)
    assert find(result, "new_customers", W9).value == 3
    # CAC EUR = 9000 / 3 new customers
    assert find(result, "cac_minor", W9, eur).value == pytest.approx(3_000)


@pytest.fixture(scope="module")
def subscription_hours():
    ev = Events()
    ev.add("subscription.started", "09:00", "A", subscription_id="sa", plan="pro", mrr_minor=1_000, currency="EUR")
    ev.add("subscription.started", "09:10", "B", subscription_id="sb", plan="team", mrr_minor=2_000, currency="EUR")
    ev.add("subscription.started", "09:20", "C", subscription_id="sc", plan="pro", mrr_minor=500, currency="USD")
    ev.add("subscription.cancelled", "10:10", "A", subscription_id="sa")  # A's last subscription: churned
    ev.add("subscription.started", "10:20", "D", subscription_id="sd", plan="team", mrr_minor=1_500, currency="EUR")
    ev.add("purchase.completed", "10:30", "B", order_id="o9", amount_minor=2_000, currency="EUR", product="P1", kind="renewal")
    return run(ev)


def test_active_subscribers_and_mrr(subscription_hours):
    assert find(subscription_hours, "active_subscribers", W9).value == 3
    assert find(subscription_hours, "active_subscribers", W10).value == 3  # -A +D
    # EUR MRR at 11:00 = 1000 + 2000 - 1000 + 1500
    assert find(subscription_hours, "mrr_minor", W10, {"currency": "EUR"}).value == 3_500
    assert find(subscription_hours, "mrr_minor", W9, {"currency": "USD"}).value == 500


def test_churn_and_retention(subscription_hours):
    churn = find(subscription_hours, "churn_rate", W10)
    assert churn.value == pytest.approx(1 / 3)  # 1 churned of 3 subscribers at 10:00
    retention = find(subscription_hours, "retention_rate", W10)
    assert retention.value == pytest.approx((3 - 1) / 3)  # (3 at end - 1 new) / 3 at start
    assert find(subscription_hours, "churn_rate", W9).value is None  # nobody subscribed at 09:00


def test_clv_estimate(subscription_hours):
    # 10:00 window: EUR revenue 2000 / 3 subscribers at start = 666.7 per subscriber;
    # divided by churn 1/3 -> 2000
    assert find(subscription_hours, "clv_minor", W10, {"currency": "EUR"}).value == pytest.approx(2_000)


def test_new_customers_counts_first_purchase_or_subscription_only():
    ev = Events()
    ev.add("subscription.started", "09:00", "A", subscription_id="s1", plan="pro", mrr_minor=1, currency="EUR")
    ev.add("purchase.completed", "09:30", "A", order_id="o1", amount_minor=1, currency="EUR", product="P", kind="new")
    ev.add("purchase.completed", "10:30", "A", order_id="o2", amount_minor=1, currency="EUR", product="P", kind="renewal")
    result = run(ev)
    assert find(result, "new_customers", W9).value == 1
    assert not [r for r in result.records if r.kpi == "new_customers" and r.start_ms == W10]


# --- 3.6 engagement ----------------------------------------------------------------------------------


def test_active_customers_and_interactions_per_customer():
    ev = Events()
    ev.add("interaction.logged", "09:00", "A", interaction_id="i1", channel="chat", direction="inbound")
    ev.add("interaction.logged", "09:10", "A", interaction_id="i2", channel="chat", direction="inbound")
    ev.add("interaction.logged", "09:20", "B", interaction_id="i3", channel="phone", direction="outbound")
    ev.add("session.started", "09:30", "C", product="app")
    ev.add("marketing.spend", "09:40", "campaign-7", amount_minor=100, currency="EUR", channel="social")
    result = run(ev)
    active = find(result, "active_customers", W9)
    assert active.value == 3  # A, B, C; the campaign id of marketing.spend is no customer
    assert find(result, "interactions_per_customer", W9).value == pytest.approx(1.0)  # 3 / 3
