"""The peers bench's floor contender against a real broker (bench/peers_bench.py): the
capture of a worker's topics holds exactly their committed records, in order per
partition; the floor then takes its input and sends every captured record again, in the
transactions it was told to use - keyed ones where Kafka's default partitioner puts
them, the others to the partition they came from - and reads the partials back."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter, defaultdict

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.peers_bench import INPUTS, capture_outputs, prepare_floor, produce, run_floor
from bench.peers_contenders import FLOOR_PREFIX, KEYED, floor_topic
from streams import localkafka
from streams.codec.partitioning import default_partition
from streams.simulate import SimConfig, generate

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

EVENTS = 400


async def write_transactions(bootstrap: str, topics: dict[str, int], rng: random.Random) -> list[tuple]:
    """Three committed transactions and an aborted one over ``topics`` (name -> partitions);
    returns the committed (topic, partition, key, value) in the order sent."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"floortest-{uuid.uuid4().hex}",
                                enable_idempotence=True)
    await producer.start()
    committed = []
    try:
        for number in range(4):
            await producer.begin_transaction()
            sent = []
            for topic, partitions in topics.items():
                for _ in range(rng.randint(1, 12)):
                    partition = rng.randrange(partitions)
                    key = f"k{rng.randrange(50)}".encode() if rng.random() < 0.9 else None
                    value = rng.randbytes(rng.randint(1, 300)) if rng.random() < 0.95 else None
                    await producer.send(topic, value, key=key, partition=partition)
                    sent.append((topic, partition, key, value))
            if number == 2:
                await producer.abort_transaction()
            else:
                await producer.commit_transaction()
                committed += sent
    finally:
        await producer.stop()
    return committed


async def read_all(bootstrap: str, topics: dict[str, int]) -> dict[tuple[str, int], list]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                isolation_level="read_committed")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for topic, n in topics.items() for p in range(n)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        found: dict[tuple[str, int], list] = defaultdict(list)
        for _ in range(60):
            for tp, messages in (await consumer.getmany(timeout_ms=500)).items():
                found[(tp.topic, tp.partition)] += [(m.key, m.value) for m in messages]
            if all([await consumer.position(tp) >= ends[tp] for tp in tps]):
                break
        return found
    finally:
        await consumer.stop()


def test_the_floor_captures_and_sends_again_exactly_what_the_worker_wrote(kafka, tmp_path):
    tag = uuid.uuid4().hex[:8]
    prefix, app_id = f"floortest-{tag}.", f"floortest-app-{tag}"
    worker_topics = {f"{prefix}crm.kpi.v1": 3, f"{prefix}crm.sla.v1": 2, f"{prefix}crm.churn-signals.v1": 1,
                     f"{prefix}crm.dlq.v1": 1, f"{prefix}crm.kpi-partials": 2,
                     f"{app_id}.stage1-changelog": 3, f"{app_id}.stage2-changelog": 2}
    for topic, partitions in worker_topics.items():
        localkafka.create_topics(kafka.bootstrap, [topic], partitions=partitions)
    committed = asyncio.run(write_transactions(kafka.bootstrap, worker_topics, random.Random(7)))

    # the capture: the committed records, none of the aborted ones, in order per partition
    path = tmp_path / "capture.msgpack"
    captured = asyncio.run(capture_outputs(kafka.bootstrap, app_id, path, prefix, idle_s=5))
    assert captured["complete"] and captured["records"] == len(committed)
    assert captured["offsets"] > len(committed)  # the aborted records and the markers
    rows = msgspec.msgpack.decode(path.read_bytes())
    names = {topic: floor_topic(topic, app_id, prefix) for topic in worker_topics}
    per_partition: dict[tuple[str, int], list] = defaultdict(list)
    for topic, partition, key, value in committed:
        per_partition[(names[topic], partition)].append((key, value))
    captured_per_partition: dict[tuple[str, int], list] = defaultdict(list)
    for topic, partition, key, value in rows:
        captured_per_partition[(topic, partition)].append((key, value))
    assert captured_per_partition == per_partition
    assert captured["partitions"] == {names[topic]: n for topic, n in worker_topics.items()}

    # the floor: its input, then every captured record again in five transactions
    messages = [(m.topic, m.key, m.value) for m in generate(SimConfig(seed=3, customers=300, duration="1d"))]
    localkafka.create_topics(kafka.bootstrap, [prefix + topic for topic in INPUTS], partitions=6)
    asyncio.run(produce(kafka.bootstrap, messages[:EVENTS], prefix))
    prepared = prepare_floor(kafka.bootstrap, {"app_id": app_id, "activity": {"stage1_commits": 3, "stage2_commits": 2}},
                             tmp_path, prefix)
    assert prepared["transactions"] == 5
    result = run_floor(kafka.bootstrap, prepared, [prefix + topic for topic in INPUTS], EVENTS, tmp_path, 120, tag)
    assert result["finished"] and result["events"] == EVENTS, result
    assert result["transactions"] == 5 and result["records_sent"] == len(committed)
    partials = [row for row in committed if row[0] == f"{prefix}crm.kpi-partials"]
    assert result["partials_read"] == len(partials)
    assert not prepared["path"].exists()  # the capture is removed after the run

    floor_topics = {names[topic]: n for topic, n in worker_topics.items()}
    sent = asyncio.run(read_all(kafka.bootstrap, floor_topics))
    assert sum(map(len, sent.values())) == len(committed)
    for topic, partitions in floor_topics.items():
        if topic.removeprefix(FLOOR_PREFIX) not in KEYED:  # to the partition they came from, in order
            for partition in range(partitions):
                assert sent.get((topic, partition), []) == per_partition.get((topic, partition), [])
            continue
        # by key, where Kafka's default partitioner puts them (keyless: round robin)
        wanted = Counter((default_partition(key, partitions) if key is not None else None, key, value)
                         for partition in range(partitions) for key, value in per_partition.get((topic, partition), []))
        got = Counter((partition if key is not None else None, key, value)
                      for partition in range(partitions) for key, value in sent.get((topic, partition), []))
        assert got == wanted, topic
