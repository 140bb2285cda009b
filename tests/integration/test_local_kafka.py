"""The project's local broker really is a Kafka broker: aiokafka produces, consumes in a
group, and the catalogue topics exist as configured."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streams import localkafka

pytestmark = pytest.mark.kafka

REPO_ROOT = Path(__file__).resolve().parents[2]


async def _produce_and_consume(bootstrap: str, topic: str, count: int):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        sent = [
            await producer.send(topic, value=f"v{i}".encode(), key=f"customer-{i % 17}".encode())
            for i in range(count)
        ]
        metadata = await asyncio.gather(*sent)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"{topic}-reader",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    received = []
    try:
        async with asyncio.timeout(30):
            while len(received) < count:
                batches = await consumer.getmany(timeout_ms=500, max_records=count)
                for records in batches.values():
                    received.extend(records)
        await consumer.commit()
    finally:
        await consumer.stop()
    return metadata, received


def test_keyed_messages_round_trip_and_each_key_stays_on_one_partition(kafka):
    topic = kafka.new_topic("roundtrip", partitions=6)

    metadata, received = asyncio.run(_produce_and_consume(kafka.bootstrap, topic, 100))

    assert sorted(record.value for record in received) == sorted(
        f"v{i}".encode() for i in range(100)
    )
    partitions_by_key: dict[bytes, set[int]] = {}
    for record in received:
        partitions_by_key.setdefault(record.key, set()).add(record.partition)
    assert len(partitions_by_key) == 17
    assert all(len(parts) == 1 for parts in partitions_by_key.values()), partitions_by_key
    # 17 keys over 6 partitions: the broker really has several partitions in use.
    assert len({record.partition for record in received}) > 1
    assert {meta.partition for meta in metadata} == {record.partition for record in received}


def test_catalogue_topics_exist_and_kpi_topic_is_compacted(kafka):
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    names, compacted = localkafka.catalogue_topics()

    async def describe():
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
        await admin.start()
        try:
            topics = await admin.describe_topics(names)
            configs = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
            )
        finally:
            await admin.close()
        policies = {}
        for response in configs:
            for resource in response.resources:
                entries = {entry[0]: entry[1] for entry in resource[4]}
                policies[resource[3]] = entries["cleanup.policy"]
        return topics, policies

    topics, policies = asyncio.run(describe())

    assert {topic["topic"]: len(topic["partitions"]) for topic in topics} == {
        name: kafka.partitions for name in names
    }
    assert {"crm.kpi.v1", "crm.kpi-partials", "crm.tickets.v1", "crm.dlq.v1"} <= set(names)
    assert compacted == ["crm.kpi.v1"]
    assert {name for name, policy in policies.items() if policy == "compact"} == {"crm.kpi.v1"}


def _status(cache_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CRM_KPI_CACHE_DIR": str(cache_dir)}
    return subprocess.run(
        [sys.executable, "-m", "streams.localkafka", "status"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_status_reports_not_running_without_state(tmp_path):
    result = _status(tmp_path)

    assert result.returncode == 3, result.stderr
    assert result.stdout.strip() == "not running"


def test_cli_status_recognises_a_running_broker_from_its_state_file(kafka, tmp_path):
    broker = kafka.broker
    state = localkafka.state_path(tmp_path)
    state.parent.mkdir(parents=True)
    state.write_text(
        json.dumps(
            {
                "pid": broker.pid,
                "bootstrap": broker.bootstrap,
                "workdir": str(broker.workdir),
                "config": str(broker.config_path),
                "kafka_version": localkafka.kafka_version(),
            }
        )
    )

    result = _status(tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "running" in result.stdout and "answering" in result.stdout
    assert result.stdout.splitlines()[-1] == broker.bootstrap
