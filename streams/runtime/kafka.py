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
from aiokafka.conn import collect_hosts, create_conn
from aiokafka.errors import IllegalOperation, KafkaError, ProducerFenced, SaslAuthenticationFailed
from aiokafka.helpers import create_ssl_context
from aiokafka.structs import ConsumerRecord

from streams.codec.partitioning import murmur2
from streams.settings import Settings

log = logging.getLogger("crm_kpi.kafka")

MAX_MESSAGE_BYTES = 8 * 1024 * 1024  # changelog values and partial batches can be large
BATCH_BYTES = 1024 * 1024  # record batch per partition in a transaction (a bigger record gets its own)


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


class KafkaUnavailable(Exception):
    """The worker cannot use Kafka at all (wrong credentials, no broker reachable); the
    message is one line for an operator and never contains a secret."""


async def check_connection(settings: Settings, timeout_s: float = 30.0) -> None:
    """Connect (and authenticate) to the first bootstrap server that answers, then close.
    Raises :class:`KafkaUnavailable` with one clear line when authentication fails or no
    server can be reached - instead of the clients' retries and stack traces."""
    options = client_options(settings)
    secret = options.get("sasl_plain_password")
    failures = []
    for host, port, _ in collect_hosts(settings.bootstrap_servers, randomize=False):
        server = f"{host}:{port}"
        try:
            conn = await asyncio.wait_for(create_conn(
                host, port, client_id=settings.app_id, ssl_context=options.get("ssl_context"),
                security_protocol=settings.security_protocol, sasl_mechanism=options.get("sasl_mechanism"),
                sasl_plain_username=options.get("sasl_plain_username"), sasl_plain_password=secret,
            ), timeout_s)
        except SaslAuthenticationFailed as exc:
            source = ("CRM_KPI_SASL_PASSWORD" if settings.sasl_password is not None
                      else "CRM_KPI_SASL_PASSWORD_FILE")
            raise KafkaUnavailable(_redact(
                f"Kafka authentication failed for user {settings.sasl_username!r} "
                f"({settings.security_protocol} {settings.sasl_mechanism}) at {server}: {exc} "
                f"- check {source} and CRM_KPI_SASL_USERNAME", secret)) from None
        except (OSError, KafkaError, ValueError) as exc:  # TimeoutError is an OSError
            failures.append(f"{server}: {type(exc).__name__}: {exc}")
            continue
        conn.close()
        return
    raise KafkaUnavailable(_redact(f"cannot connect to Kafka ({settings.security_protocol}): "
                                   + "; ".join(failures), secret))


def _redact(message: str, secret: str | None) -> str:
    return message.replace(secret, "***") if secret else message


def group_options() -> dict[str, Any]:
    """Consumer-group timing: batches are CPU work on the event loop, so allow for a
    slow loop before declaring a member dead (a rebalance storm helps nobody)."""
    return {"session_timeout_ms": 45_000, "heartbeat_interval_ms": 3_000, "rebalance_timeout_ms": 60_000,
            "max_poll_interval_ms": 300_000}


def stage1_changelog(settings: Settings) -> str:
    return f"{settings.app_id}.stage1-changelog"


def stage2_changelog(settings: Settings) -> str:
    return f"{settings.app_id}.stage2-changelog"


def changelog_configs(settings: Settings) -> dict[str, str]:
    """Topic configs of the changelogs: compacted, and segments small enough that the
    part Kafka has not compacted yet - at least the active segment, which it never
    compacts - stays a small share of a restore (with the broker's 1 GiB default a
    long-running worker's restore read everything written since the last roll)."""
    return {"cleanup.policy": "compact", "max.message.bytes": str(MAX_MESSAGE_BYTES),
            "segment.bytes": str(settings.changelog_segment_bytes)}


def changelog_config_warnings(settings: Settings, configs: dict[str, dict[str, str]]) -> list[str]:
    """What is wrong with the configs of existing changelog topics (created by an older
    version or by hand), each with the command that fixes it. The worker does not alter
    them itself: the AlterConfigs request aiokafka has replaces a topic's whole config."""
    wanted = changelog_configs(settings)
    lines = []
    for topic, config in sorted(configs.items()):
        if "compact" not in config.get("cleanup.policy", "").split(","):
            lines.append(f"changelog topic {topic} is not compacted (cleanup.policy="
                         f"{config.get('cleanup.policy', '?')}): it keeps every state change forever and a restore "
                         f"reads them all; kafka-configs.sh --bootstrap-server <broker> --alter --entity-type topics "
                         f"--entity-name {topic} --add-config cleanup.policy=compact")
        segment = config.get("segment.bytes")
        if segment is not None and segment.isdigit() and int(segment) > settings.changelog_segment_bytes:
            lines.append(f"changelog topic {topic} has segment.bytes={segment}: Kafka never compacts the active "
                         f"segment, so a restore may read that much per partition on top of the state; "
                         f"kafka-configs.sh --bootstrap-server <broker> --alter --entity-type topics "
                         f"--entity-name {topic} --add-config segment.bytes={wanted['segment.bytes']}")
    return lines


async def topic_configs(admin: AIOKafkaAdminClient, topics: list[str]) -> dict[str, dict[str, str]]:
    """The effective configs of ``topics`` (name -> value), as DescribeConfigs answers."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t) for t in topics])
    out: dict[str, dict[str, str]] = {}
    for response in responses:
        for error_code, _message, _kind, name, entries in response.resources:
            if error_code == 0:
                out[name] = {entry[0]: entry[1] for entry in entries if entry[1] is not None}
    return out


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
            stage1_changelog(settings): (partitions, changelog_configs(settings)),
            stage2_changelog(settings): (partitions, changelog_configs(settings)),
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
        older = [name for name in (stage1_changelog(settings), stage2_changelog(settings)) if name in existing]
        if older:
            for line in changelog_config_warnings(settings, await topic_configs(admin, older)):
                log.warning("%s", line)
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


class KeyPartitioner:
    """The partition Kafka's default partitioner gives a key (murmur2, as the Java
    client and aiokafka compute it), memoised: KPI keys come back with every revision
    (and murmur2 costs microseconds per key where the core runs interpreted). Keyless
    records go round robin."""

    def __init__(self, max_entries: int = 200_000) -> None:
        self.max_entries = max_entries
        self._hashes: dict[bytes, int] = {}
        self._next = 0

    def __call__(self, key: bytes | None, partitions: int) -> int:
        if key is None:
            self._next += 1
            return self._next % partitions
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= self.max_entries:
                self._hashes.clear()
            hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return hashed % partitions


_partition_of = KeyPartitioner()


async def send_atomically(producer: AIOKafkaProducer, records: list[Outgoing]) -> None:
    """Send ``records`` in one Kafka transaction. Raises :class:`TaskFenced` when a newer
    owner of the transactional id exists; any other failure aborts and re-raises.

    Records are appended to one record batch per topic partition (aiokafka's batch
    API) instead of one ``send()`` coroutine each: a transaction carries thousands of
    records (KPI records, changelog entries), and the per-message path costs several
    times the record's encoding. Keyed records without a partition go where Kafka's
    default partitioner would put them."""
    futures = []
    try:
        await producer.begin_transaction()
        partition_count: dict[str, int] = {}
        open_batches: dict[tuple[str, int], Any] = {}
        for count, (topic, value, key, partition) in enumerate(records, 1):
            if partition is None:
                n = partition_count.get(topic)
                if n is None:
                    n = partition_count[topic] = len(await producer.partitions_for(topic))
                partition = _partition_of(key, n)
            batch = open_batches.get((topic, partition))
            if batch is None:
                batch = open_batches[(topic, partition)] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:  # full: ship it
                futures.append(await producer.send_batch(batch, topic, partition=partition))
                batch = open_batches[(topic, partition)] = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None) is None:
                    raise ValueError(f"record of {len(value or b'')} bytes does not fit a batch of {topic}")
            if count % 2_000 == 0:
                await asyncio.sleep(0)  # let heartbeats and scrapes run during big batches
        for (topic, partition), batch in open_batches.items():
            futures.append(await producer.send_batch(batch, topic, partition=partition))
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
        max_batch_size=BATCH_BYTES,
        max_request_size=MAX_MESSAGE_BYTES,
        compression_type="lz4" if _has_lz4() else None,
    )


def _has_lz4() -> bool:
    try:
        import lz4  # noqa: F401
    except ImportError:
        return False
    return True


async def read_partition(settings: Settings, topic: str, partition: int) -> AsyncIterator[list[ConsumerRecord]]:
    """Yield every committed record of one partition, from the start to the end as of now
    (the changelog restore), a fetched batch at a time (``.key``, ``.value``; tombstones
    have value None): a restore reads a million records, and resuming an async generator
    per record was a few per cent of it."""
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
            if batch.get(tp):
                yield batch[tp]
            if not batch:
                # control records (transaction markers) at the end move the position
                # without yielding records; the LSO may also still be moving
                await asyncio.sleep(0.05)
                end = (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()
