"""Late input on the real broker: an event within allowed lateness republishes its
window with ``revision + 1``; one beyond it is counted as dropped-late and changes
nothing."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request

import orjson
import pytest

from streams import localkafka
from streams.codec import encode_event
from streams.core.events import make_event, topic_for
from tests.e2e.harness import (
    WorkerProcess,
    env_topics,
    heartbeat_events,
    produce,
    read_topic,
    topic_env,
    wait_pipeline_idle,
)
from tests.e2e.prom import free_port
from tests.e2e.test_stream_equals_replay import PARTITIONS
from tests.eventgen import generate

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
HOUR = 3_600_000


def scrape(port: int, metric: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = re.findall(rf"^{metric}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    return sum(float(v) for v in values)


def spend(event_id: str, at_ms: int, amount: int):
    return make_event("marketing.spend", event_id=event_id, occurred_at_ms=at_ms, customer_id="campaign-late",
                      amount_minor=amount, currency="EUR", channel="tv")


def test_late_event_revises_its_window_and_a_too_late_one_changes_nothing(kafka, tmp_path):
    env = topic_env("late")
    events = generate(5, customers=60)
    end = max(e.occurred_at_ms for e in events)
    beat = end + 60_000
    messages = [(topic_for(e.event_type), e.customer_id.encode(), encode_event(e), None) for e in events]
    messages += [(topic_for(e.event_type), e.customer_id.encode(), encode_event(e), p)
                 for p, e in heartbeat_events(PARTITIONS, beat)]
    rename = {f"crm.{n}.v1": env[f"CRM_KPI_TOPICS__{n.upper()}"] for n in ("tickets", "interactions", "purchases")}
    localkafka.create_topics(kafka.bootstrap, list(rename.values()), partitions=PARTITIONS)
    asyncio.run(produce(kafka.bootstrap, [(rename[t], k, v, p) for t, k, v, p in messages]))
    port = free_port()
    worker = WorkerProcess(kafka.bootstrap, "late", port, tmp_path / "worker.log", **env)
    inputs, outputs = env_topics(env)

    def wait_idle(bootstrap: str, topic: str, ports: list[int], timeout_s: float) -> list:
        wait_pipeline_idle(bootstrap, "late", ports, inputs, outputs, PARTITIONS, timeout_s)
        return asyncio.run(read_topic(bootstrap, topic))

    kpi_topic = env["CRM_KPI_TOPICS__KPI"]
    try:
        before = wait_idle(kafka.bootstrap, kpi_topic, [port], timeout_s=180)
        # the backlog consumed, the open windows are published live (final: false)
        live = [r for r in (orjson.loads(m.value) for m in before) if not r["final"]]
        assert live and all(r["revision"] == -1 for r in live)
        # within allowed lateness: a window closed hours ago gets a revision
        late_at = (beat - 3 * HOUR) // HOUR * HOUR + 10 * 60_000
        late = spend("late-within", late_at, 12_345)
        asyncio.run(produce(kafka.bootstrap, [(rename["crm.purchases.v1"], b"campaign-late", encode_event(late), 0)]))
        after = wait_idle(kafka.bootstrap, kpi_topic, [port], timeout_s=120)
        seen = {(m.partition, m.offset) for m in before}
        new = [orjson.loads(m.value) for m in after if (m.partition, m.offset) not in seen]
        revised = [r for r in new if r["kpi"] == "cac_minor" and r["window"]["size"] == "1h"]
        assert revised, f"no revision of cac_minor 1h among {len(new)} new records"
        assert all(r["final"] for r in revised)
        previous = {(r["kpi"], r["window"]["size"], r["window"]["start"], tuple(sorted(r["dims"].items()))): r
                    for r in (orjson.loads(m.value) for m in before)}
        for record in revised:
            key = (record["kpi"], record["window"]["size"], record["window"]["start"],
                   tuple(sorted(record["dims"].items())))
            old = previous.get(key)
            assert old is None or record["revision"] == old["revision"] + 1, (record, old)
            assert record["stats"]["marketing_spend_minor"] >= 12_345
        assert scrape(port, "crm_events_late_total") >= 1
        # beyond allowed lateness (grace 60 s + 1 day): dropped, counted, nothing published
        dropped_before = scrape(port, "crm_events_dropped_late_total")
        too_late = spend("late-beyond", beat - 3 * 24 * HOUR, 999)
        asyncio.run(produce(kafka.bootstrap, [(rename["crm.purchases.v1"], b"campaign-late",
                                                encode_event(too_late), 0)]))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and scrape(port, "crm_events_dropped_late_total") <= dropped_before:
            time.sleep(1)
        assert scrape(port, "crm_events_dropped_late_total") == dropped_before + 1
        final = wait_idle(kafka.bootstrap, kpi_topic, [port], timeout_s=60)
        assert len(final) == len(after), "a dropped-late event must not publish anything"
    finally:
        worker.stop()
