"""A hostile stream through a real worker on the real broker: 10,000 messages, about a
fifth of them built to hurt - garbage bytes, empty and null values, 5 MB messages,
JSON nested 5,000 deep, wrong types, NaN/Infinity, years 1 and 9999, a future
schema_version, unknown enum values and event types, negative amounts, over-long ids,
ids re-used with different content, messages without a Kafka key, and copies keyed by
another customer (valid events on another partition than their customer's are
dead-lettered as ``misrouted``).

The worker must not crash (still running, /metrics answering), every bad message must
be in the dead-letter topic exactly once with its reason and its original bytes, and
every good message must be counted exactly once: ``crm_events_processed_total`` equals
the good messages, ``crm_events_duplicate_total`` the re-used ids, and the KPI records
(highest revision per key), SLA events and churn signals equal ``replay`` of the same
messages (less the misrouted ones).

A second test: a keyless copy of an event that lands on another partition than its
customer's is dead-lettered as ``misrouted`` instead of being counted twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass

import pytest

from streams import localkafka
from streams.codec import (
    DlqRecord,
    Rejected,
    decode_dlq,
    decode_event,
    default_partition,
    encode_event,
)
from streams.codec.records import encode_signal, encode_sla
from streams.codec.route import route
from streams.core.events import make_event
from streams.core.pipeline import CoreConfig
from streams.replay import run_replay
from streams.runtime.kafka import MAX_MESSAGE_BYTES
from streams.simulate import SimConfig, generate
from tests.e2e.harness import (
    WorkerProcess,
    diff_kpis,
    env_topics,
    heartbeat_events,
    latest_kpis,
    metric_sum,
    produce,
    read_topic,
    replay_kpis,
    scrape,
    topic_env,
    wait_pipeline_idle,
)
from tests.e2e.prom import free_port

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

TOTAL = 10_000
PARTITIONS = 6
GOOD = None  # expected reason of a message the codec accepts


@dataclass(frozen=True)
class Message:
    topic: str  # catalogue name; renamed per test
    key: bytes | None
    value: bytes | None
    partition: int | None
    reason: str | None  # expected rejection reason, None if valid
    kind: str  # what it is, for the figures


def _doc(value: bytes) -> dict:
    return json.loads(value)


def _dump(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":"), allow_nan=True).encode()


def hostile_messages(base: list, rng: random.Random) -> list[tuple[int, Message]]:
    """(insert after position, message) pairs; ``base`` is the simulated stream."""
    out: list[tuple[int, Message]] = []

    def near(kind_filter=None) -> tuple[int, object]:
        while True:
            position = rng.randrange(len(base))
            m = base[position]
            if not m.flaw and (kind_filter is None or m.event_type in kind_filter):
                return position, m

    def add(kind: str, count: int, build) -> None:
        for i in range(count):
            position, m = near(build.types if hasattr(build, "types") else None)
            topic, key, value, reason = build(i, m)
            out.append((position, Message(topic, key, value, None, reason, kind)))

    def garbage(i, m):
        return m.topic, (m.key if i % 2 else None), b"\xff" + rng.randbytes(rng.randrange(1, 2048)), "invalid_json"

    def empty(i, m):
        return m.topic, m.key, (b"" if i % 3 else None), "invalid_json"

    def huge(i, m):
        doc = _doc(m.value)
        doc["padding"] = "x" * (5 * 1024 * 1024)
        return m.topic, m.key, _dump(doc), "too_large"

    def deep(i, m):
        depth = 5_000 + i
        opening, closing = ("[", "]") if i % 2 else ('{"k":', "}")
        if i % 3 == 0:  # the whole message
            return m.topic, m.key, (opening * depth + "1" + closing * depth).encode(), "invalid_json"
        return m.topic, m.key, m.value[:-1] + b',"x":' + (opening * depth + "1" + closing * depth).encode() + b"}", \
            "invalid_json"

    def nested_ok(i, m):  # 50 levels in an unknown field: valid, the field is dropped
        return m.topic, m.key, m.value[:-1] + b',"x":' + b"[" * 50 + b"]" * 50 + b"}", GOOD

    def wrong_type(i, m):
        doc = _doc(m.value)
        choice = i % 4
        if choice == 0:
            doc["schema_version"] = "1"
        elif choice == 1:
            doc["data"] = [doc["data"]]
        elif choice == 2:
            doc["occurred_at"] = 1_793_527_200_000
        else:
            doc["customer_id"] = 42
        return m.topic, m.key, _dump(doc), "wrong_type"

    def amount_wrong_type(i, m):
        doc = _doc(m.value)
        doc["data"]["amount_minor"] = str(doc["data"]["amount_minor"]) if i % 2 else doc["data"]["amount_minor"] + 0.5
        return m.topic, m.key, _dump(doc), "wrong_type"
    amount_wrong_type.types = ("purchase.completed", "purchase.refunded", "marketing.spend")

    def nan(i, m):
        doc = _doc(m.value)
        doc["data"]["amount_minor"] = [float("nan"), float("inf"), float("-inf")][i % 3]
        return m.topic, m.key, _dump(doc), "invalid_json"
    nan.types = amount_wrong_type.types

    def year(i, m):
        doc = _doc(m.value)
        doc["occurred_at"] = ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999Z")[i % 2]
        return m.topic, m.key, _dump(doc), "bad_timestamp"

    def future_schema(i, m):
        doc = _doc(m.value)
        doc["schema_version"] = (2, 3, 10**20)[i % 3]
        return m.topic, m.key, _dump(doc), "unsupported_schema_version"

    def unknown_enum(i, m):
        doc = _doc(m.value)
        doc["data"]["priority"] = ("critical", "URGENT", "", "p0")[i % 4]
        return m.topic, m.key, _dump(doc), "out_of_range"
    unknown_enum.types = ("ticket.created",)

    def unknown_type(i, m):
        doc = _doc(m.value)
        doc["event_type"] = ("ticket.merged", "purchase.stolen", "", "TICKET.CREATED")[i % 4]
        return m.topic, m.key, _dump(doc), "unknown_event_type"

    def negative(i, m):
        doc = _doc(m.value)
        doc["data"]["amount_minor"] = -(i + 1)
        return m.topic, m.key, _dump(doc), "out_of_range"
    negative.types = amount_wrong_type.types

    def long_id(i, m):
        doc = _doc(m.value)
        doc["event_id"] = "e" * (129 + i)
        return m.topic, m.key, _dump(doc), "out_of_range"

    def not_object(i, m):
        return m.topic, m.key, (b"[" + m.value + b"]", b"42", b'"text"', b"null")[i % 4], "not_an_object"

    def missing(i, m):
        doc = _doc(m.value)
        del doc[("event_id", "occurred_at", "customer_id", "data", "event_type")[i % 5]]
        return m.topic, m.key, _dump(doc), "missing_field"

    add("garbage bytes", 300, garbage)
    add("empty or null value", 150, empty)
    add("5 MB message", 3, huge)
    add("nested 5,000+ deep", 90, deep)
    add("nested 50 deep in an unknown field (valid)", 100, nested_ok)
    add("wrong JSON type", 200, wrong_type)
    add("amount as string or float", 100, amount_wrong_type)
    add("NaN / Infinity", 90, nan)
    add("year 1 or 9999", 100, year)
    add("future schema_version", 90, future_schema)
    add("unknown enum value", 100, unknown_enum)
    add("unknown event type", 100, unknown_type)
    add("negative amount", 100, negative)
    add("id over 128 characters", 50, long_id)
    add("not an object", 60, not_object)
    add("missing field", 100, missing)

    # the same event id again, different content, right after the original (same key, so
    # same partition and order as replay's file order): the first one wins
    for _ in range(100):
        position, m = near(("purchase.completed", "session.started", "interaction.logged"))
        doc = _doc(m.value)
        doc["source"] = "replayed-by-mistake"
        if "amount_minor" in doc["data"]:
            doc["data"]["amount_minor"] += 999
        out.append((position, Message(m.topic, m.key, _dump(doc), None, GOOD, "re-used event id, other content")))

    # valid events without a Kafka key, of customers that have no other event: on their
    # customer's partition (where the default partitioner puts the customer_id) they are
    # counted once; on another partition they are dead-lettered as misrouted
    for i in range(100):
        position, m = near()
        customer_id = f"keyless-customer-{i}"
        event = make_event("session.started", event_id=f"keyless-{i}", occurred_at_ms=m.event_time_ms,
                           customer_id=customer_id, source="app", product="crm-pro", platform="web")
        home = default_partition(customer_id.encode(), PARTITIONS)
        if i % 2:
            out.append((position, Message("crm.interactions.v1", None, encode_event(event), home, GOOD,
                                          "valid without a key, on its customer's partition")))
        else:
            out.append((position, Message("crm.interactions.v1", None, encode_event(event),
                                          (home + 1 + rng.randrange(PARTITIONS - 1)) % PARTITIONS, "misrouted",
                                          "without a key, on another partition")))

    # a copy of an event keyed by another customer's id: the default partitioner puts it
    # where that key belongs - misrouted, unless by chance that is the customer's own
    # partition, where it is a duplicate of the original
    for i in range(60):
        position, m = near()
        key = f"someone-else-{i}".encode()
        home = default_partition(m.key, PARTITIONS)
        reason = GOOD if default_partition(key, PARTITIONS) == home else "misrouted"
        out.append((position, Message(m.topic, key, m.value, None, reason, "copy keyed by another customer")))
    return out


@dataclass
class HostileWorkload:
    messages: list[Message]
    kinds: Counter
    bad_kinds: set[str]
    plain_kinds: set[str]  # simulated messages and heartbeats
    expected_reasons: Counter
    bad_values: Counter  # (reason, sha256 of the value)
    good: int
    duplicates: int
    kpis: dict
    sla: list
    signals: list


def _digest(value: bytes | None) -> str:
    return hashlib.sha256(value or b"").hexdigest()


def expected_reason(message: Message) -> str | None:
    """What the worker makes of ``message``: the codec's reason, or ``misrouted`` for a
    valid event that lands on another partition than its customer's."""
    partition = message.partition
    if partition is None and message.key is not None:
        partition = default_partition(message.key, PARTITIONS)  # where the producer puts it
    if partition is None:  # keyless, the producer's choice: only invalid ones are sent so
        decoded = decode_event(message.value or b"")
        assert isinstance(decoded, Rejected), message.kind
        return decoded.reason.value
    routed = route(message.value, topic=message.topic, partition=partition, offset=0, key=message.key, now_ms=0,
                   partitions=PARTITIONS)
    return routed.reason.value if isinstance(routed, DlqRecord) else GOOD


def build_workload() -> HostileWorkload:
    config = SimConfig(seed=66, customers=2_700, duration="1d", late=0.0, malformed=0.0, tail="6h")
    base = list(generate(config))
    # the simulated day is cut so that the whole stream is TOTAL messages; the hostile
    # ones are placed (and timed) within what is kept, so the heartbeats end every partition
    keep = TOTAL - len(hostile_messages(base, random.Random(666))) - PARTITIONS
    assert keep < len(base), (keep, len(base))
    base = base[:keep]
    hostile = hostile_messages(base, random.Random(666))
    after: dict[int, list[Message]] = {}
    for position, message in hostile:
        after.setdefault(position, []).append(message)
    messages: list[Message] = []
    for position, m in enumerate(base):
        messages.append(Message(m.topic, m.key, m.value, None, GOOD, "simulated" + (f" ({m.flaw})" if m.flaw else "")))
        messages.extend(after.get(position, ()))
    end_ms = max(m.event_time_ms for m in base)
    messages += [Message("crm.interactions.v1", e.customer_id.encode(), encode_event(e), p, GOOD, "heartbeat")
                 for p, e in heartbeat_events(PARTITIONS, end_ms + 60_000)]
    assert len(messages) == TOTAL
    for message in messages:  # the construction is what the codec and the routing say it is
        got = expected_reason(message)
        assert got == message.reason, (message.kind, got, message.reason, (message.value or b"")[:120])
    # the worker never applies a misrouted event; replay (which knows no partitions) must not either
    routed = [m for m in messages if m.reason != "misrouted"]
    replay = run_replay([("hostile", i, m.value or b"") for i, m in enumerate(routed)], CoreConfig())
    bad = [m for m in messages if m.reason is not GOOD]
    expected_reasons = Counter(m.reason for m in bad)
    assert dict(replay.rejected) == {r: n for r, n in expected_reasons.items() if r != "misrouted"}
    return HostileWorkload(
        messages=messages,
        kinds=Counter(m.kind for m in messages),
        bad_kinds={m.kind for m in bad},
        plain_kinds={m.kind for m in messages if m.kind.startswith(("simulated", "heartbeat"))},
        expected_reasons=expected_reasons,
        bad_values=Counter((m.reason, _digest(m.value)) for m in bad),
        good=len(messages) - len(bad),
        duplicates=replay.duplicates,
        kpis=replay_kpis(replay.records),
        sla=sorted(encode_sla(r) for r in replay.sla),
        signals=sorted(encode_signal(s) for s in replay.signals),
    )



def create_inputs(bootstrap: str, env: dict[str, str]) -> dict[str, str]:
    """The input topics as the worker's ensure_topics makes them (8 MiB messages), so a
    5 MB message reaches the worker and is dead-lettered as too_large."""
    rename = {f"crm.{n}.v1": env[f"CRM_KPI_TOPICS__{n.upper()}"] for n in ("tickets", "interactions", "purchases")}
    localkafka.create_topics(bootstrap, list(rename.values()), partitions=PARTITIONS,
                             config={"max.message.bytes": str(MAX_MESSAGE_BYTES)})
    return rename


def total(samples: dict, name: str, **labels: str) -> float:
    return metric_sum([samples], name, **labels)


def wait_until_done(worker: WorkerProcess, bootstrap: str, env: dict[str, str], messages: int,
                    timeout_s: float) -> dict:
    """Until every message was taken (processed + rejected = sent) and the pipeline is
    idle (:func:`tests.e2e.harness.wait_pipeline_idle`: nothing buffered behind the
    watermark, no lag, outputs stable); returns the last scrape."""
    deadline = time.monotonic() + timeout_s
    state = "no scrape yet"

    def alive() -> None:
        assert worker.process.poll() is None, f"worker died (exit {worker.process.returncode}):\n{worker.tail()}"

    while time.monotonic() < deadline:
        time.sleep(2)
        alive()
        samples = scrape(worker.metrics_port)
        if samples is None:
            state = "/metrics does not answer"
            continue
        taken = total(samples, "crm_events_processed_total") + total(samples, "crm_events_rejected_total")
        state = f"taken {taken:.0f}/{messages}"
        if taken == messages:
            inputs, outputs = env_topics(env)
            wait_pipeline_idle(bootstrap, env["CRM_KPI_APP_ID"], [worker.metrics_port], inputs, outputs,
                               PARTITIONS, max(10.0, deadline - time.monotonic()), check=alive)
            final = scrape(worker.metrics_port)
            assert final is not None, worker.tail()
            return final
    raise AssertionError(f"not done after {timeout_s:.0f}s: {state}\n{worker.tail()}")


@pytest.fixture(scope="module")
def hostile() -> HostileWorkload:
    return build_workload()


@pytest.mark.timeout(400)
def test_hostile_stream_crashes_nothing_dead_letters_every_bad_message_and_counts_every_good_one_once(
    kafka, hostile, tmp_path
):
    prefix = f"hostile-{os.getpid()}"
    env = topic_env(prefix)
    rename = create_inputs(kafka.bootstrap, env)
    began = time.monotonic()
    asyncio.run(produce(kafka.bootstrap, ((rename[m.topic], m.key, m.value, m.partition) for m in hostile.messages)))
    worker = WorkerProcess(kafka.bootstrap, prefix, free_port(), tmp_path / "worker.log", **env)
    try:
        samples = wait_until_done(worker, kafka.bootstrap, {**env, "CRM_KPI_APP_ID": prefix}, TOTAL, timeout_s=300)
        # no crash: still running, both endpoints answer
        assert worker.process.poll() is None
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.metrics_port}/healthz", timeout=5) as response:
            assert response.status == 200
        stream = latest_kpis(asyncio.run(read_topic(kafka.bootstrap, env["CRM_KPI_TOPICS__KPI"])))
        sla = sorted(m.value for m in asyncio.run(read_topic(kafka.bootstrap, env["CRM_KPI_TOPICS__SLA"])))
        signals = sorted(m.value for m in asyncio.run(read_topic(kafka.bootstrap, env["CRM_KPI_TOPICS__SIGNALS"])))
        letters = [decode_dlq(m.value) for m in asyncio.run(read_topic(kafka.bootstrap, env["CRM_KPI_TOPICS__DLQ"]))]
    finally:
        worker.stop()
    log = worker.log_path.read_text(errors="replace")
    assert "Traceback" not in log, worker.tail(60)

    # every bad message in the DLQ, once, with its reason and its exact bytes
    reasons = Counter(str(d.reason) for d in letters)
    assert reasons == hostile.expected_reasons
    assert Counter((str(d.reason), _digest(d.original)) for d in letters) == hostile.bad_values
    assert len({(d.topic, d.partition, d.offset) for d in letters}) == len(letters)
    assert all(0 < len(d.detail) <= 200 for d in letters)
    keyless_letters = sum(d.key is None for d in letters)
    # ... and counted once in the metrics
    for reason, count in hostile.expected_reasons.items():
        assert total(samples, "crm_events_rejected_total", reason=reason) == count, reason
    # every good message counted once
    processed = total(samples, "crm_events_processed_total")
    duplicates = total(samples, "crm_events_duplicate_total")
    assert processed == hostile.good
    assert duplicates == hostile.duplicates
    assert total(samples, "crm_events_dropped_late_total") == 0
    problems = diff_kpis(stream, hostile.kpis)
    assert not problems, "\n".join(problems) + (
        f"\nlate {total(samples, 'crm_events_late_total'):.0f}; SLA events stream {len(sla)} vs replay "
        f"{len(hostile.sla)}; signals stream {len(signals)} vs replay {len(hostile.signals)}; log {worker.log_path}")
    assert sla == hostile.sla
    assert signals == hostile.signals

    print(
        f"hostile-input: messages={TOTAL} bad={sum(hostile.expected_reasons.values())} "
        f"hostile_kinds={len(hostile.kinds) - len(hostile.plain_kinds)} (rejected {len(hostile.bad_kinds)}) "
        f"reasons={'/'.join(f'{r}:{n}' for r, n in sorted(reasons.items()))} keyless_dead_letters={keyless_letters} "
        f"good={hostile.good} processed={processed:.0f} duplicates={duplicates:.0f} "
        f"kpi_records_compared={len(hostile.kpis)} lost=0 duplicated=0 crashes=0 "
        f"time={time.monotonic() - began:.0f}s"
    )


@pytest.mark.timeout(240)
def test_a_keyless_copy_on_another_partition_is_dead_lettered_as_misrouted_not_counted_twice(kafka, tmp_path):
    """The catalogue makes ``customer_id`` the Kafka key: all of a customer's events meet
    on one stage-1 task, where its state and its dedupe set live. A producer that sends
    an event without a key (or with another key) lets it land on any partition; if the
    same event also arrives keyed, two tasks would each count it. The worker checks that
    a valid event is on its customer's partition (Kafka's default partitioner on the
    ``customer_id``) and dead-letters it as ``misrouted`` otherwise."""
    prefix = f"keyless-{os.getpid()}"
    env = topic_env(prefix)
    rename = create_inputs(kafka.bootstrap, env)
    start_ms = 1_793_527_200_000
    order = make_event("purchase.completed", event_id="order-1", occurred_at_ms=start_ms, customer_id="cus-1",
                       order_id="O-1", amount_minor=4_900, currency="EUR", product="crm-pro", kind="new")
    home = default_partition(b"cus-1", PARTITIONS)
    elsewhere = (home + 1) % PARTITIONS
    messages = [
        (rename["crm.purchases.v1"], b"cus-1", encode_event(order), home),
        (rename["crm.purchases.v1"], None, encode_event(order), elsewhere),  # the keyless copy
    ]
    messages += [(rename["crm.interactions.v1"], e.customer_id.encode(), encode_event(e), p)
                 for p, e in heartbeat_events(PARTITIONS, start_ms + 3_600_000)]
    replay = run_replay([("k", i, v) for i, (_, _, v, _) in enumerate(messages)], CoreConfig())
    asyncio.run(produce(kafka.bootstrap, messages))
    worker = WorkerProcess(kafka.bootstrap, prefix, free_port(), tmp_path / "worker.log", **env)
    try:
        samples = wait_until_done(worker, kafka.bootstrap, {**env, "CRM_KPI_APP_ID": prefix}, len(messages), timeout_s=150)
        stream = latest_kpis(asyncio.run(read_topic(kafka.bootstrap, env["CRM_KPI_TOPICS__KPI"])))
        letters = [decode_dlq(m.value) for m in asyncio.run(read_topic(kafka.bootstrap, env["CRM_KPI_TOPICS__DLQ"]))]
    finally:
        worker.stop()
    assert [(str(d.reason), d.partition, d.key) for d in letters] == [("misrouted", elsewhere, None)]
    assert f"partition is {home} of {PARTITIONS}" in letters[0].detail
    assert total(samples, "crm_events_rejected_total") == total(samples, "crm_events_rejected_total",
                                                                reason="misrouted") == 1
    assert total(samples, "crm_events_processed_total") == len(messages) - 1
    # replay sees the copy as a duplicate of the order: counted once either way
    problems = diff_kpis(stream, replay_kpis(replay.records))
    assert not problems, "the keyless copy was counted again:\n" + "\n".join(problems)
