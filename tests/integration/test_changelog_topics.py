"""The changelog topics on a real broker: created compacted with small segments, so that
what a restore reads is bounded by the state plus one segment, not by everything
written since the broker last rolled a 1 GiB segment; a changelog made by an older
version is reported with the command that fixes it."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from streams import localkafka
from streams.runtime.kafka import (
    changelog_config_warnings,
    client_options,
    ensure_topics,
    read_partition,
    stage1_changelog,
    stage2_changelog,
    topic_configs,
)
from streams.settings import Settings

pytestmark = pytest.mark.kafka

MIB = 1024 * 1024


def settings_for(kafka, **overrides) -> Settings:
    return Settings(bootstrap_servers=kafka.bootstrap, app_id=f"changelogs-{uuid.uuid4().hex[:8]}", **overrides)


async def configs_of(settings: Settings, topics: list[str]) -> dict[str, dict[str, str]]:
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        return await topic_configs(admin, topics)
    finally:
        await admin.close()


async def read_all(settings: Settings, topic: str) -> int:
    return sum([len(batch) async for batch in read_partition(settings, topic, 0)])


def test_changelogs_are_created_compacted_with_small_segments(kafka):
    settings = settings_for(kafka)
    asyncio.run(ensure_topics(settings))
    names = [stage1_changelog(settings), stage2_changelog(settings)]
    configs = asyncio.run(configs_of(settings, names))
    for name in names:
        assert configs[name]["cleanup.policy"] == "compact"
        assert configs[name]["segment.bytes"] == str(64 * MIB)
    assert changelog_config_warnings(settings, configs) == []


def test_a_changelog_from_an_older_version_is_reported_with_its_fix(kafka, caplog):
    settings = settings_for(kafka)
    old = stage1_changelog(settings)
    # as the worker created it before: compacted, the broker's default segment.bytes (1 GiB)
    localkafka.create_topics(kafka.bootstrap, [old], partitions=kafka.partitions, compacted=[old])
    with caplog.at_level(logging.WARNING, logger="crm_kpi.kafka"):
        asyncio.run(ensure_topics(settings))
    warnings = [r.getMessage() for r in caplog.records if r.name == "crm_kpi.kafka"]
    assert len(warnings) == 1, warnings
    assert f"changelog topic {old} has segment.bytes=1073741824" in warnings[0]
    assert f"--entity-name {old} --add-config segment.bytes={64 * MIB}" in warnings[0]


@pytest.mark.timeout(180)
def test_a_restore_reads_the_state_and_one_segment_not_every_change(kafka):
    """Six MiB of changes to 500 keys on a changelog with 1 MiB segments: once the
    broker's cleaner has run (every 15 s), a restore reads a fraction of what was
    written - the 500 keys' last values plus the uncompacted active segment."""
    settings = settings_for(kafka, changelog_segment_bytes=MIB)
    asyncio.run(ensure_topics(settings))
    topic = stage1_changelog(settings)
    value = b"x" * 1000
    written = 6 * MIB // len(value)

    async def write() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all", linger_ms=5)
        await producer.start()
        try:
            for i in range(written):
                producer_future = await producer.send(topic, value, key=f"c|{i % 500}".encode(), partition=0)
                if i % 1000 == 999:
                    await producer_future
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(write())
    deadline = time.monotonic() + 120
    read = asyncio.run(read_all(settings, topic))
    while read > written * 0.4 and time.monotonic() < deadline:
        time.sleep(3)
        read = asyncio.run(read_all(settings, topic))
    print(f"changelog with 1 MiB segments: {written:,} records written, a restore read {read:,}")
    # the 500 keys plus at most a segment and a half not yet compacted (~1,600 records)
    assert read <= 500 + 1.5 * MIB // len(value), f"{read} of {written} records still to read"
