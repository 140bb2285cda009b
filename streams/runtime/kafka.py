"""Kafka plumbing shared by the runtime: client options from settings (incl.
SASL/SSL), topic creation, and reading a changelog partition to its end."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import IllegalOperation, ProducerFenced
from aiokafka.helpers import create_ssl_context

from streams.settings import Settings

log = logging.getLogger("crm_kpi.kafka")

MAX_MESSAGE_BYTES = 8 * 1024 * 1024  # changelog values and partial batches can be large


def client_options(settings: Settings) -> dict[str, Any]:
    """Connection options for every aiokafka client, from settings. Secrets are
    passed to the client only, never logged."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.security_protocol,
        "client_id": settings.app_id,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(
            cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None,
            certfile=str(settings.ssl_certfile) if settings.ssl_certfile else None,
            keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
        )
    if settings.security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = settings.sasl_password_value()
    return options


def group_options() -> dict[str, Any]:
    """Consumer-group timing: batches are CPU work on the event loop, so allow for a
    slow loop before declaring a member dead (a rebalance storm helps nobody)."""
    return {"session_timeout_ms": 45_000, "heartbeat_interval_ms": 3_000, "rebalance_timeout_ms": 60_000,
            "max_poll_interval_ms": 300_000}


def stage1_changelog(settings: Settings) -> str:
    return f"{settings.app_id}.stage1-changelog"


def stage2_changelog(settings: Settings) -> str:
    return f"{settings.app_id}.stage2-changelog"


async def topic_partitions(settings: Settings, topic: str) -> int | None:
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    for item in described:
        if item.get("error_code", 0) == 0 and item.get("partitions"):
            return len(item["partitions"])
    return None


async def ensure_topics(settings: Settings) -> int:
    """Create every topic the worker needs that does not exist yet; returns the number
    of input partitions (= stage-1 tasks). Input topics must be co-partitioned."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        topics = settings.topics
        counts = {}
        if existing.intersection(topics.inputs()):
            described = await admin.describe_topics([t for t in topics.inputs() if t in existing])
            counts = {d["topic"]: len(d["partitions"]) for d in described if d.get("partitions")}
        partitions = max(counts.values(), default=settings.partitions)
        if len(set(counts.values())) > 1:
            raise RuntimeError(f"input topics are not co-partitioned: {counts}")
        compact = {"cleanup.policy": "compact"}
        # inputs accept messages above the codec's limit, so that an oversized message
        # is dead-lettered as too_large instead of being refused to its producer
        large = {"max.message.bytes": str(MAX_MESSAGE_BYTES)}
        wanted = {
            topics.tickets: (partitions, large),
            topics.interactions: (partitions, large),
            topics.purchases: (partitions, large),
            topics.partials: (partitions, {"max.message.bytes": str(MAX_MESSAGE_BYTES)}),
            topics.kpi: (partitions, compact),
            topics.sla: (partitions, {}),
            topics.signals: (partitions, {}),
            topics.dlq: (partitions, {"max.message.bytes": str(MAX_MESSAGE_BYTES)}),
            stage1_changelog(settings): (partitions, {**compact, "max.message.bytes": str(MAX_MESSAGE_BYTES)}),
            stage2_changelog(settings): (partitions, {**compact, "max.message.bytes": str(MAX_MESSAGE_BYTES)}),
        }
        missing = [
            NewTopic(name, count, settings.replication_factor, topic_configs=config)
            for name, (count, config) in wanted.items()
            if name not in existing
        ]
        if missing:
            response = await admin.create_topics(missing)
            for name, code, *_ in getattr(response, "topic_errors", []):
                if code not in (0, 36):  # 36: already exists (another worker won the race)
                    raise RuntimeError(f"could not create topic {name}: error {code}")
            log.info("created topics: %s", ", ".join(t.name for t in missing))
            await _await_leaders(admin, [t.name for t in missing])
        return partitions
    finally:
        await admin.close()


async def _await_leaders(admin: AIOKafkaAdminClient, names: list[str], timeout_s: float = 30.0) -> None:
    """New topics serve requests only once every partition has a leader."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        described = await admin.describe_topics(names)
        if all(d.get("partitions") and all(p.get("leader", -1) >= 0 for p in d["partitions"]) for d in described):
            return
        await asyncio.sleep(0.2)


Outgoing = tuple[str, bytes | None, bytes | None, int | None]  # (topic, value, key, partition)


class TaskFenced(Exception):
    """Another worker took this task over (its producer fenced ours); drop the task."""


async def send_atomically(producer: AIOKafkaProducer, records: list[Outgoing]) -> None:
    """Send ``records`` in one Kafka transaction. Raises :class:`TaskFenced` when a newer
    owner of the transactional id exists; any other failure aborts and re-raises."""
    futures = []
    try:
        await producer.begin_transaction()
        for count, (topic, value, key, partition) in enumerate(records, 1):
            futures.append(await producer.send(topic, value, key=key, partition=partition))
            if count % 2_000 == 0:
                await asyncio.sleep(0)  # let heartbeats and scrapes run during big batches
        await producer.commit_transaction()
    except (ProducerFenced, IllegalOperation) as exc:
        # a fence can also surface as IllegalOperation: aiokafka's sender stops on
        # ProducerFenced and the next send finds no transaction any more
        await asyncio.gather(*futures, return_exceptions=True)
        raise TaskFenced(str(exc)) from exc
    except BaseException:
        await asyncio.gather(*futures, return_exceptions=True)
        with contextlib.suppress(Exception):
            await producer.abort_transaction()
        raise


async def reopen_with_backoff(stage: str, index: int, error: BaseException, drop, open_task) -> None:
    """A batch of task ``index`` could not be committed (broker gone, timeout...): its
    effects exist only in memory, so throw the task away (``drop``) and restore it from
    its changelog (``open_task``), retrying with backoff until the broker answers again."""
    log.warning("%s task %d: batch failed (%s: %s); restoring it from the changelog",
                stage, index, type(error).__name__, error)
    await drop(index)
    delay = 0.5
    while True:
        try:
            await open_task(index)
            return
        except TaskFenced:
            return  # another worker owns it now
        except Exception as exc:  # noqa: BLE001 - any failure: wait and try again
            log.warning("%s task %d: restore failed (%s); retrying in %.1fs", stage, index, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


def transactional_producer(settings: Settings, transactional_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **client_options(settings),
        transactional_id=transactional_id,
        enable_idempotence=True,
        linger_ms=5,
        max_request_size=MAX_MESSAGE_BYTES,
        compression_type="lz4" if _has_lz4() else None,
    )


def _has_lz4() -> bool:
    try:
        import lz4  # noqa: F401
    except ImportError:
        return False
    return True


async def read_partition(settings: Settings, topic: str, partition: int) -> AsyncIterator[tuple[bytes, bytes | None]]:
    """Yield (key, value) of every committed record of one partition, from the start to
    the end as of now (the changelog restore). Tombstones have value None."""
    consumer = AIOKafkaConsumer(
        **client_options(settings),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
        fetch_max_bytes=4 * MAX_MESSAGE_BYTES,
    )
    tp = TopicPartition(topic, partition)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=1000)
            for message in batch.get(tp, ()):
                yield message.key, message.value
            if not batch:
                # control records (transaction markers) at the end move the position
                # without yielding records; the LSO may also still be moving
                await asyncio.sleep(0.05)
                end = (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()
