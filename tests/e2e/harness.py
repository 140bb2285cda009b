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
from collections.abc import Iterable
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.codec import encode_event
from streams.codec.records import encode_kpi
from streams.core.events import Event, make_event, topic_for

REPO = Path(__file__).resolve().parents[2]


def topic_env(prefix: str) -> dict[str, str]:
    """Environment that gives a worker its own set of topics (``<prefix>.<name>``)."""
    from streams.settings import Topics

    return {f"CRM_KPI_TOPICS__{name.upper()}": f"{prefix}.{name}" for name in Topics.model_fields}


def heartbeat_events(partitions: int, at_ms: int) -> list[tuple[int, Event]]:
    """One ``session.started`` per partition at the same instant, produced to each
    partition explicitly: it moves every partition's event time to ``at_ms``, so the
    stream and replay end in the same state (every timer before it fired)."""
    return [
        (p, make_event("session.started", event_id=f"heartbeat-{p}", occurred_at_ms=at_ms,
                       customer_id=f"heartbeat-{p}", source="e2e"))
        for p in range(partitions)
    ]


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
