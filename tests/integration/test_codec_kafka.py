"""The codec against a real broker: 1,000 valid events and at least 20 invalid messages per
rejection reason go through Kafka; a consumer routing with the codec gets every valid
event back equal to what was sent, and every invalid one lands on a dead-letter topic
with the right reason, its source coordinates and its original bytes. Counts add up
exactly."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import orjson
import pytest

from streams.codec import (
    DEFAULT_MAX_BYTES,
    ROUTING_REASONS,
    DlqRecord,
    Reason,
    Rejected,
    decode_dlq,
    decode_event,
    encode_dlq,
    encode_event,
)
from streams.codec.route import route
from streams.core.events import Event, make_event
from tests.eventgen import generate

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]

VALID_COUNT = 1_000
INVALID_PER_REASON = 24
# The broker's default limit is ~1 MiB; too_large messages are just over the codec's
# 1 MiB, and their DLQ records carry them base64-encoded (~1.4 MiB).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
TOPIC_CONFIG = {"max.message.bytes": str(MAX_MESSAGE_BYTES)}
START_MS = 1_793_527_200_000  # 2026-11-01T10:00:00Z


# --------------------------------------------------------------------------- invalid input

Document = dict


def _base_documents(index: int) -> list[Document]:
    """Valid documents of a few types (fresh ids per index) for the mutators to break."""
    stamp = START_MS + index * 1_000
    events = [
        make_event("ticket.created", event_id=f"bad-t-{index}", occurred_at_ms=stamp,
                   customer_id=f"cus-bad-{index}", ticket_id=f"T-{index}", priority="high",
                   channel="email", team="billing"),
        make_event("purchase.completed", event_id=f"bad-p-{index}", occurred_at_ms=stamp,
                   customer_id=f"cus-bad-{index}", order_id=f"O-{index}", amount_minor=4_900,
                   currency="EUR", product="crm-pro", kind="upsell"),
        make_event("survey.answered", event_id=f"bad-s-{index}", occurred_at_ms=stamp,
                   customer_id=f"cus-bad-{index}", survey="nps", score=9, product="crm-pro"),
    ]
    return [orjson.loads(encode_event(event)) for event in events]


def _dump(document: object) -> bytes:
    return orjson.dumps(document)


_DELETE = object()  # marker: remove the field


def _set(document: Document, path: str, value: object) -> Document:
    """A copy of ``document`` with ``path`` ("field" or "data.field") set to ``value``,
    or deleted when ``value`` is ``_DELETE``."""
    copy = orjson.loads(orjson.dumps(document))
    *parents, leaf = path.split(".")
    target = copy
    for parent in parents:
        target = target[parent]
    if value is _DELETE:
        del target[leaf]
    else:
        target[leaf] = value
    return copy


def _with(document: Document, path: str, value: object) -> bytes:
    """The bytes of :func:`_set`."""
    return _dump(_set(document, path, value))


Mutator = Callable[[list[Document], int], bytes]

MUTATORS: dict[Reason, list[Mutator]] = {
    Reason.INVALID_JSON: [
        lambda docs, i: _dump(docs[0])[: 20 + i],  # truncated
        lambda docs, i: _dump(docs[1])[:-1] + b",}",  # trailing comma
        lambda docs, i: _dump(docs[0]) + _dump(docs[1]),  # two messages concatenated
        lambda docs, i: bytes([0xFF, 0xFE]) + random.Random(i).randbytes(40),  # garbage
        lambda docs, i: _dump(docs[2]).replace(b'"score":9', b'"score":NaN'),
        lambda docs, i: _dump(docs[0]).replace(b'"', b"'"),  # Python repr style
        lambda docs, i: b"",
        lambda docs, i: b"[" * 2_000 + b"]" * 2_000,  # nesting too deep
        lambda docs, i: _dump(docs[1]).decode().encode("utf-16"),  # BOM + UTF-16
        lambda docs, i: b"\x08\x96\x01\x12\x07testing",  # protobuf-ish
    ],
    Reason.NOT_AN_OBJECT: [
        lambda docs, i: _dump([docs[0], docs[1]]),  # a batch as an array
        lambda docs, i: _dump(_dump(docs[0]).decode()),  # double-encoded string
        lambda docs, i: b"null",
        lambda docs, i: str(i).encode(),
        lambda docs, i: b"true",
        lambda docs, i: _dump([]),
    ],
    Reason.MISSING_FIELD: [
        *(
            (lambda docs, i, field=field: _with(docs[0], field, _DELETE))
            for field in ("event_id", "event_type", "schema_version", "occurred_at",
                          "customer_id", "source", "data")
        ),
        lambda docs, i: _with(docs[0], "data.priority", _DELETE),
        lambda docs, i: _with(docs[0], "data.ticket_id", _DELETE),
        lambda docs, i: _with(docs[1], "data.currency", _DELETE),
        lambda docs, i: _with(docs[2], "data.score", _DELETE),
    ],
    Reason.WRONG_TYPE: [
        lambda docs, i: _with(docs[0], "event_id", i),
        lambda docs, i: _with(docs[0], "schema_version", "1"),
        lambda docs, i: _with(docs[0], "schema_version", True),
        lambda docs, i: _with(docs[0], "schema_version", 1.0),
        lambda docs, i: _with(docs[0], "occurred_at", START_MS + i),
        lambda docs, i: _with(docs[0], "customer_id", [f"cus-{i}"]),
        lambda docs, i: _with(docs[0], "data", [docs[0]["data"]]),
        lambda docs, i: _with(docs[0], "data.ticket_id", None),
        lambda docs, i: _with(docs[1], "data.amount_minor", str(4_900 + i)),
        lambda docs, i: _with(docs[2], "data.score", 8.5),
    ],
    Reason.UNKNOWN_EVENT_TYPE: [
        lambda docs, i: _with(docs[0], "event_type", f"ticket.deleted.{i}"),
        lambda docs, i: _with(docs[0], "event_type", ""),
        lambda docs, i: _with(docs[0], "event_type", "Ticket.Created"),
        lambda docs, i: _with(docs[1], "event_type", "order.placed"),
    ],
    Reason.UNSUPPORTED_SCHEMA_VERSION: [
        lambda docs, i: _with(docs[0], "schema_version", 2),
        lambda docs, i: _with(docs[1], "schema_version", 0),
        lambda docs, i: _with(docs[2], "schema_version", -1 - i),
        lambda docs, i: _with(docs[0], "schema_version", 100 + i),
    ],
    Reason.OUT_OF_RANGE: [
        lambda docs, i: _with(docs[0], "data.priority", "critical"),
        lambda docs, i: _with(docs[0], "data.channel", "fax"),
        lambda docs, i: _with(docs[0], "event_id", ""),
        lambda docs, i: _with(docs[0], "customer_id", "c" * (129 + i)),
        lambda docs, i: _with(docs[1], "data.amount_minor", -1 - i),
        lambda docs, i: _with(docs[1], "data.amount_minor", 10**15 + 1 + i),
        lambda docs, i: _with(docs[1], "data.currency", "eur"),
        lambda docs, i: _with(docs[1], "data.kind", "gift"),
        lambda docs, i: _with(docs[2], "data.score", 11 + i),
        lambda docs, i: _with(_set(docs[2], "data.survey", "csat"), "data.score", 0),
    ],
    Reason.BAD_TIMESTAMP: [
        lambda docs, i: _with(docs[0], "occurred_at", "2026-11-01"),
        lambda docs, i: _with(docs[0], "occurred_at", f"2026-11-01T10:{i % 60:02d}:00"),
        lambda docs, i: _with(docs[0], "occurred_at", "2026-02-30T10:00:00Z"),
        lambda docs, i: _with(docs[0], "occurred_at", "1969-12-31T23:59:59Z"),
        lambda docs, i: _with(docs[0], "occurred_at", "2200-01-01T00:00:00Z"),
        lambda docs, i: _with(docs[0], "occurred_at", "2026-11-01 10:00:00Z"),
        lambda docs, i: _with(docs[0], "occurred_at", str(START_MS + i)),
        lambda docs, i: _with(docs[0], "occurred_at", "2026-11-01T10:00:00+0100"),
        lambda docs, i: _with(docs[0], "occurred_at", "2026-11-01T10:00:00.0000000001Z"),
    ],
    Reason.TOO_LARGE: [
        lambda docs, i: _with(docs[0], "data.padding", "x" * (DEFAULT_MAX_BYTES + i)),
        lambda docs, i: _dump(docs[1]) + b" " * (DEFAULT_MAX_BYTES + i),
    ],
}


@dataclass(frozen=True)
class Message:
    key: bytes
    value: bytes
    reason: Reason | None  # None: valid
    event: Event | None = None


def invalid_messages() -> list[Message]:
    """``INVALID_PER_REASON`` messages per reason, cycling through that reason's mutators.
    Each one is checked against the codec first, so a broken builder fails here, clearly."""
    messages = []
    for reason, mutators in MUTATORS.items():
        for index in range(INVALID_PER_REASON):
            raw = mutators[index % len(mutators)](_base_documents(index), index)
            decoded = decode_event(raw)
            assert isinstance(decoded, Rejected) and decoded.reason is reason, (
                f"builder {index % len(mutators)} of {reason} gives {decoded!r}"
            )
            messages.append(Message(f"bad-{reason}-{index}".encode(), raw, reason))
    return messages


def valid_messages() -> list[Message]:
    events = generate(seed=11, customers=160, start_ms=START_MS, span_ms=86_400_000)
    assert len(events) >= VALID_COUNT
    events = events[:VALID_COUNT]
    assert len({event.event_id for event in events}) == VALID_COUNT
    return [Message(e.customer_id.encode(), encode_event(e), None, e) for e in events]


# --------------------------------------------------------------------------- Kafka helpers


async def produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> list:
    """Send (key, value) pairs; return their RecordMetadata in the same order."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=MAX_MESSAGE_BYTES
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, value=value, key=key) for key, value in messages]
        return list(await asyncio.gather(*futures))
    finally:
        await producer.stop()


async def read_exactly(bootstrap: str, topic: str, count: int, timeout_s: float = 30) -> list:
    """All records of ``topic`` from the beginning: waits for ``count`` and then checks
    that nothing more arrives."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=2 * MAX_MESSAGE_BYTES,
    )
    await consumer.start()
    records: list = []
    try:
        async with asyncio.timeout(timeout_s):
            while len(records) < count:
                batches = await consumer.getmany(timeout_ms=500)
                for batch in batches.values():
                    records.extend(batch)
        extra = await consumer.getmany(timeout_ms=300)
        records.extend(record for batch in extra.values() for record in batch)
    finally:
        await consumer.stop()
    return records


async def route_topic(bootstrap: str, source: str, dlq: str, count: int) -> tuple[list, list[Event]]:
    """The routing loop under test: read ``source``, decode with the codec, publish every
    rejection on ``dlq``. Returns (consumed records, accepted events)."""
    records = await read_exactly(bootstrap, source, count)
    events: list[Event] = []
    dead_letters: list[tuple[bytes, bytes]] = []
    now_ms = int(time.time() * 1000)
    for record in records:
        routed = route(record.value, topic=record.topic, partition=record.partition,
                       offset=record.offset, key=record.key, now_ms=now_ms)
        if isinstance(routed, DlqRecord):
            dead_letters.append((record.key, encode_dlq(routed)))
        else:
            events.append(routed)
    await produce(bootstrap, dlq, dead_letters)
    return records, events


# --------------------------------------------------------------------------- the test


def test_valid_events_round_trip_and_every_invalid_message_is_dead_lettered_with_its_reason(kafka):
    source = kafka.new_topic("codec-in", partitions=3, config=TOPIC_CONFIG)
    dlq = kafka.new_topic("codec-dlq", partitions=3, config=TOPIC_CONFIG)
    valid, invalid = valid_messages(), invalid_messages()
    messages = valid + invalid
    random.Random(5).shuffle(messages)  # invalid input arrives between valid events

    async def scenario():
        metadata = await produce(kafka.bootstrap, source, [(m.key, m.value) for m in messages])
        consumed, events = await route_topic(kafka.bootstrap, source, dlq, len(messages))
        dead = await read_exactly(kafka.bootstrap, dlq, len(invalid))
        return metadata, consumed, events, dead

    started = time.monotonic()
    metadata, consumed, events, dead = asyncio.run(scenario())
    elapsed = time.monotonic() - started

    # counts add up exactly
    assert len(consumed) == len(messages)
    assert len(events) == VALID_COUNT
    assert len(events) + len(dead) == len(consumed)
    # every valid event back, equal to what was sent
    sent_events = sorted((m.event for m in valid), key=lambda e: e.event_id)
    assert sorted(events, key=lambda e: e.event_id) == sent_events
    # every invalid message on the DLQ once, with the right reason, where it came from
    records = [decode_dlq(record.value) for record in dead]
    produced_reasons = Counter(m.reason for m in invalid)
    # every reason of the codec (misrouted is decided by the partition: test_hostile_input.py)
    assert set(produced_reasons) == set(Reason) - ROUTING_REASONS
    assert min(produced_reasons.values()) >= 20
    assert Counter(r.reason for r in records) == produced_reasons
    sent_at = {(source, meta.partition, meta.offset): m for meta, m in zip(metadata, messages, strict=True)}
    seen = set()
    for record in records:
        where = (record.topic, record.partition, record.offset)
        assert where not in seen
        seen.add(where)
        message = sent_at[where]
        assert record.reason is message.reason, (record.detail, message.key)
        assert record.original == message.value
        assert record.key == message.key.decode()
    assert elapsed < 30, f"took {elapsed:.1f}s"
