"""Helpers for end-to-end tests: produce events, run worker processes, read the output
topics back, and compare them with ``replay``."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from streams.codec import default_partition, encode_event
from streams.codec.records import encode_kpi
from streams.core.events import Event, make_event, topic_for
from streams.core.registry import KPIS
from streams.localkafka import committed_offsets, end_offsets  # noqa: F401 - part of this harness's API

REPO = Path(__file__).resolve().parents[2]
# every label a worker may put on /metrics: the KPI dimensions (bounded, see
# CRM_KPI_MAX_LABEL_VALUES) and the pipeline's own (docs/metrics.md); anything else would be a leak
METRIC_LABELS = frozenset({name for kpi in KPIS for dim_set in kpi.dims for name in dim_set} | {
    "window", "quantile", "reason", "metric", "state", "survey", "score", "topic", "partition", "stage",
    "final", "le", "version", "app_id", "label", "signal", "generation",
})


def topic_env(prefix: str) -> dict[str, str]:
    """Environment that gives a worker its own set of topics (``<prefix>.<name>``)."""
    from streams.settings import Topics

    return {f"CRM_KPI_TOPICS__{name.upper()}": f"{prefix}.{name}" for name in Topics.model_fields}


def env_topics(env: dict[str, str]) -> tuple[list[str], list[str]]:
    """The input topics and the output topics (KPI, SLA, signals, DLQ) of a :func:`topic_env`."""
    inputs = [env[f"CRM_KPI_TOPICS__{name}"] for name in ("TICKETS", "INTERACTIONS", "PURCHASES")]
    outputs = [env[f"CRM_KPI_TOPICS__{name}"] for name in ("KPI", "SLA", "SIGNALS", "DLQ")]
    return inputs, outputs


def heartbeat_events(partitions: int, at_ms: int) -> list[tuple[int, Event]]:
    """One ``session.started`` per partition at the same instant, produced to each
    partition explicitly: it moves every partition's event time to ``at_ms``, so the
    stream and replay end in the same state (every timer before it fired). Each is for a
    customer whose id the default partitioner puts on that partition (the worker
    dead-letters an event on another partition than its customer's as ``misrouted``)."""
    return [
        (p, make_event("session.started", event_id=f"heartbeat-{p}", occurred_at_ms=at_ms,
                       customer_id=heartbeat_customer(p, partitions), source="e2e"))
        for p in range(partitions)
    ]


def heartbeat_customer(partition: int, partitions: int) -> str:
    """``heartbeat-<partition>``, or the first ``heartbeat-<partition>-<n>`` whose home
    partition is ``partition``."""
    candidates = (f"heartbeat-{partition}" + (f"-{n}" if n else "") for n in range(10_000))
    return next(c for c in candidates if default_partition(c.encode(), partitions) == partition)


async def produce(bootstrap: str, messages: Iterable[tuple[str, bytes | None, bytes, int | None]]) -> int:
    """Send (topic, key, value, partition) tuples in order; returns the count."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=256 * 1024,
                                max_request_size=8 * 1024 * 1024)
    await producer.start()
    count = 0
    try:
        pending = []
        for topic, key, value, partition in messages:
            pending.append(await producer.send(topic, value, key=key, partition=partition))
            count += 1
            if len(pending) >= 5_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return count


def event_messages(events: Iterable[Event]) -> Iterable[tuple[str, bytes, bytes, None]]:
    for event in events:
        yield topic_for(event.event_type), event.customer_id.encode(), encode_event(event), None


async def read_topic(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list:
    """Every committed record of a topic, from the beginning to its current end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, isolation_level="read_committed",
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()  # noqa: SLF001
            partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            return []  # the topic does not exist yet
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done = True
            for tp in tps:
                if await consumer.position(tp) < ends[tp]:
                    done = False
            if done:
                break
            batch = await consumer.getmany(timeout_ms=500, max_records=50_000)
            for messages in batch.values():
                records.extend(messages)
        return records
    finally:
        await consumer.stop()


def latest_kpis(records: list) -> dict[bytes, dict]:
    """What an upserting consumer holds: the last record per key (highest revision)."""
    latest: dict[bytes, dict] = {}
    for message in records:
        value = orjson.loads(message.value)
        current = latest.get(message.key)
        if current is None or value["revision"] >= current["revision"]:
            latest[message.key] = value
    return latest


def comparable(record: dict) -> tuple:
    return (record["value"], record["n"], orjson.dumps(record["stats"], option=orjson.OPT_SORT_KEYS))


def close(a: object, b: object, rel: float = 1e-9) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return math.isclose(float(a), float(b), rel_tol=rel, abs_tol=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], rel) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y, rel) for x, y in zip(a, b, strict=True))
    return a == b


def diff_kpis(stream: dict[bytes, dict], reference: dict[bytes, dict], limit: int = 10) -> list[str]:
    """Differences between the stream's latest records and replay's (floats to 1e-9)."""
    problems = []
    for key in sorted(reference.keys() - stream.keys())[:limit]:
        problems.append(f"missing in stream: {key.decode()}")
    for key in sorted(stream.keys() - reference.keys())[:limit]:
        problems.append(f"only in stream: {key.decode()} = {stream[key]['value']}")
    for key in sorted(stream.keys() & reference.keys()):
        a, b = stream[key], reference[key]
        if not (close(a["value"], b["value"]) and a["n"] == b["n"] and close(a["stats"], b["stats"])):
            problems.append(f"differs: {key.decode()}: stream {a['value']} n={a['n']} vs replay {b['value']} n={b['n']}")
            if len(problems) > limit:
                break
    return problems


def replay_kpis(records) -> dict[bytes, dict]:
    from streams.codec.records import kpi_key

    return {kpi_key(r): orjson.loads(encode_kpi(r)) for r in records}


class WorkerProcess:
    """A ``crm-kpi worker`` subprocess on the test broker."""

    def __init__(self, bootstrap: str, app_id: str, metrics_port: int, log_path: Path, **env: str) -> None:
        self.metrics_port = metrics_port
        self.log_path = log_path
        environment = {
            **os.environ,
            "CRM_KPI_BOOTSTRAP_SERVERS": bootstrap,
            "CRM_KPI_APP_ID": app_id,
            "CRM_KPI_METRICS_PORT": str(metrics_port),
            "CRM_KPI_IDLE_TIMEOUT": "3s",
            "CRM_KPI_PROVISIONAL_INTERVAL": "1s",
            **env,
        }
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"], cwd=REPO, env=environment,
            stdout=self.log, stderr=subprocess.STDOUT,
        )

    def terminate(self, timeout: float = 60) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.terminate()
        with contextlib.suppress(Exception):
            self.log.close()

    def tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


# --------------------------------------------------------------------------- idle pipeline


def scrape(port: int) -> dict[str, list[tuple[dict, float]]] | None:
    """A worker's /metrics as ``{sample name: [(labels, value), ...]}``; None if it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as response:
            text = response.read().decode()
    except OSError:
        return None
    samples: dict[str, list[tuple[dict, float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def metric_sum(scrapes: list[dict], name: str, **labels: str) -> float:
    return sum(value for s in scrapes for sample_labels, value in s.get(name, [])
               if all(sample_labels.get(k) == v for k, v in labels.items()))


def wait_pipeline_idle(bootstrap: str, app_id: str, ports: list[int], inputs: list[str], outputs: list[str],
                       partitions: int, timeout_s: float, check: Callable[[], None] = lambda: None) -> float:
    """Until every partition of both stages is owned, no worker reports lag, the stage-1
    group's offsets (its resume points, which reach the log end only once no event is
    still buffered behind the watermark) stand at the end of every input partition, and
    the output topics stopped growing for three polls. Output that merely pauses (a task
    waiting out its idle timeout before closing the last windows) is not idle. ``check``
    runs every poll (e.g. that the workers are alive). Returns the seconds waited."""
    began = time.monotonic()
    deadline = began + timeout_s
    last: dict | None = None
    stable = 0
    state = "no poll yet"
    while time.monotonic() < deadline:
        time.sleep(2)
        check()
        scrapes = [scrape(port) for port in ports]
        if any(s is None for s in scrapes):
            stable, state = 0, "a worker's /metrics does not answer yet"
            continue
        owned = (metric_sum(scrapes, "crm_owned_partitions", stage="stage1"),
                 metric_sum(scrapes, "crm_owned_partitions", stage="stage2"))
        lag = metric_sum(scrapes, "crm_consumer_lag")
        try:
            ends_in = asyncio.run(end_offsets(bootstrap, inputs))
            committed = asyncio.run(committed_offsets(bootstrap, f"{app_id}-stage1"))
            ends = asyncio.run(end_offsets(bootstrap, outputs))
        except Exception as exc:  # noqa: BLE001 - the broker may be busy; poll again
            stable, state = 0, f"offsets unavailable: {exc!r}"
            continue
        behind = sum(max(0, end - committed.get(tp, 0)) for tp, end in ends_in.items())
        state = f"owned {owned}, lag {lag:.0f}, input not yet resumed past {behind}"
        if owned == (partitions, partitions) and lag == 0 and behind == 0 and ends == last:
            stable += 1
            if stable >= 3:
                return time.monotonic() - began
        else:
            stable = 0
        last = ends
    raise AssertionError(f"not idle after {timeout_s:.0f}s: {state}")
