"""End to end on the real broker and real Prometheus: a simulated day through two
worker processes equals ``replay`` of the same messages - KPI records (highest
revision per key), SLA events and churn signals - also when a worker is stopped with
SIGTERM mid-stream and started again; Prometheus scraping both workers returns the
replay values; no series carries an id.

Size: ``CRM_KPI_E2E_EVENTS`` (default 200000) clean events before flaws.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections import Counter
from pathlib import Path

import pytest

from streams.codec.records import encode_signal, encode_sla
from streams.core.pipeline import CoreConfig
from streams.metrics.collector import kpi_families
from streams.replay import run_replay
from streams.simulate import SimConfig, generate
from tests.e2e.harness import (
    METRIC_LABELS,
    WorkerProcess,
    diff_kpis,
    encode_event,
    env_topics,
    heartbeat_events,
    latest_kpis,
    produce,
    read_topic,
    replay_kpis,
    topic_env,
    wait_pipeline_idle,
)
from tests.e2e.prom import Prometheus, free_port

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

EVENTS = int(os.environ.get("CRM_KPI_E2E_EVENTS", "200000"))
PARTITIONS = 6
ALLOWED_LABELS = METRIC_LABELS | {"__name__", "job", "instance"}  # the last two: Prometheus adds them


class Workload:
    """A simulated day as Kafka messages, plus what replay makes of it."""

    def __init__(self) -> None:
        customers = max(1_000, EVENTS * 3 // 10)
        config = SimConfig(seed=11, customers=customers, duration="1d", late=0.0, tail="6h")
        messages = list(generate(config))
        end = max(m.event_time_ms for m in messages)
        self.heartbeat_ms = end + 60_000
        self.heartbeats = heartbeat_events(PARTITIONS, self.heartbeat_ms)
        self.messages = [(m.topic, m.key, m.value, None) for m in messages] + [
            ("crm.interactions.v1", e.customer_id.encode(), encode_event(e), p) for p, e in self.heartbeats
        ]
        self.flaws = Counter(m.flaw for m in messages)
        lines = [("sim", i, value) for i, (_, _, value, _) in enumerate(self.messages)]
        self.replay = run_replay(lines, CoreConfig())
        self.kpis = replay_kpis(self.replay.records)
        self.sla = sorted(encode_sla(r) for r in self.replay.sla)
        self.signals = sorted(encode_signal(s) for s in self.replay.signals)


@pytest.fixture(scope="module")
def workload() -> Workload:
    work = Workload()
    assert work.replay.accepted >= EVENTS, f"simulated only {work.replay.accepted} events"
    assert work.flaws["duplicate"] > 0 and work.flaws["malformed"] > 0
    return work


def run_stream(kafka, workload: Workload, prefix: str, tmp_path: Path, *, restart_one: bool, prometheus: bool):
    """Produce, run two workers until idle, read the outputs back; with ``prometheus``,
    also check its answers while the workers still serve /metrics."""
    env = topic_env(prefix)
    asyncio.run(produce_with_topics(kafka.bootstrap, workload, env))
    ports = [free_port(), free_port()]
    workers = [WorkerProcess(kafka.bootstrap, prefix, ports[i], tmp_path / f"worker{i}.log", **env) for i in range(2)]
    prom = Prometheus([f"127.0.0.1:{p}" for p in ports]) if prometheus else None
    try:
        if restart_one:
            # stop worker 0 gracefully once output is flowing, then start it again
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not asyncio.run(read_topic(kafka.bootstrap, env["CRM_KPI_TOPICS__KPI"])):
                time.sleep(0.5)
            assert workers[0].terminate() == 0, workers[0].tail()
            time.sleep(3)
            workers[0] = WorkerProcess(kafka.bootstrap, prefix, ports[0], tmp_path / "worker0-again.log", **env)
        inputs, outputs = env_topics(env)
        wait_pipeline_idle(kafka.bootstrap, prefix, ports, inputs, outputs, PARTITIONS, timeout_s=600)
        records = asyncio.run(read_topic(kafka.bootstrap, env["CRM_KPI_TOPICS__KPI"]))
        sla = sorted(m.value for m in asyncio.run(read_topic(kafka.bootstrap, env["CRM_KPI_TOPICS__SLA"])))
        signals = sorted(m.value for m in asyncio.run(read_topic(kafka.bootstrap, env["CRM_KPI_TOPICS__SIGNALS"])))
        dlq = asyncio.run(read_topic(kafka.bootstrap, env["CRM_KPI_TOPICS__DLQ"]))
        if prom is not None:
            check_prometheus(prom, workload)
            check_dashboard_queries(prom)
        return latest_kpis(records), sla, signals, dlq
    finally:
        if prom is not None:
            prom.stop()
        for worker in workers:
            worker.stop()


async def produce_with_topics(bootstrap: str, workload: Workload, env: dict[str, str]) -> None:
    rename = {f"crm.{n}.v1": env[f"CRM_KPI_TOPICS__{n.upper()}"] for n in ("tickets", "interactions", "purchases")}
    from streams import localkafka

    localkafka.create_topics(bootstrap, list(rename.values()), partitions=PARTITIONS)
    await produce(bootstrap, ((rename[t], k, v, p) for t, k, v, p in workload.messages))


def test_two_workers_equal_replay_and_prometheus_serves_it(kafka, workload, tmp_path):
    stream, sla, signals, dlq = run_stream(kafka, workload, "e2e-a", tmp_path, restart_one=False, prometheus=True)
    problems = diff_kpis(stream, workload.kpis)
    assert not problems, "\n".join(problems)
    assert sla == workload.sla
    assert signals == workload.signals
    assert len(dlq) == sum(workload.replay.rejected.values()) == workload.flaws["malformed"]


def test_sigterm_and_restart_mid_stream_still_equals_replay(kafka, workload, tmp_path):
    stream, sla, signals, _ = run_stream(kafka, workload, "e2e-b", tmp_path, restart_one=True, prometheus=False)
    problems = diff_kpis(stream, workload.kpis)
    assert not problems, "\n".join(problems)
    assert sla == workload.sla
    assert signals == workload.signals


def check_prometheus(prom: Prometheus, workload: Workload) -> None:
    """Every KPI family's gauge (latest closed 1h window, each dimension set) equals replay."""
    lateness = CoreConfig().lateness
    # gauges show the latest final window per KPI and dims among the windows the worker
    # still retains (closed, not yet past allowed lateness)
    closed = [r for r in workload.replay.records
              if r.size == "1h" and lateness.closed(r.end_ms, workload.heartbeat_ms)
              and not lateness.expired(r.end_ms, workload.heartbeat_ms)]
    latest: dict = {}
    for record in closed:
        key = (record.kpi, record.dims)
        if key not in latest or latest[key].start_ms < record.start_ms:
            latest[key] = record
    expected = []
    for family in kpi_families(latest.values()):
        for sample in family.samples:
            expected.append((sample.name, sample.labels, sample.value))
    assert {name for name, _, _ in expected} >= {"crm_first_response_time_seconds", "crm_nps_responses"}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not prom.query("crm_tickets_created"):
        time.sleep(1)
    mismatches = []
    for name, labels, value in expected:
        selector = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        result = prom.query(f"max({name}{{{selector}}})")
        got = float(result[0]["value"][1]) if result else None
        if got is None or abs(got - value) > 1e-9 * max(1.0, abs(value)):
            mismatches.append(f"{name}{{{selector}}}: prometheus {got} vs replay {value}")
    assert not mismatches, f"{len(mismatches)} of {len(expected)} differ:\n" + "\n".join(mismatches[:20])
    # no id ever becomes a label
    ids = re.compile(r"(cus|cust|tkt|ticket|agent|ord|order|sub|lead|evt)[-_]?\d", re.I)
    for series in prom.series('{__name__=~"crm_.*"}'):
        assert set(series) <= ALLOWED_LABELS, series
        assert not any(ids.match(str(v)) for k, v in series.items() if k not in ("__name__", "instance")), series


def check_dashboard_queries(prom: Prometheus) -> None:
    """Every panel query of every committed dashboard returns at least one series
    (variables substituted: the 1d window, every priority/channel/team/product)."""
    from grafana.generate import concrete_queries, load_committed

    empty = []
    total = 0
    for dashboard in load_committed().values():
        for dash, title, expr in concrete_queries(dashboard, {"window": "1d"}):
            total += 1
            if not prom.query(expr):
                empty.append(f"{dash} / {title}: {expr}")
    assert total > 50
    assert not empty, f"{len(empty)} of {total} panel queries returned nothing:\n" + "\n".join(empty)
