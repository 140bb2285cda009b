"""Misrouted input: the home partition of a customer is where Kafka's default partitioner
puts its ``customer_id`` key (murmur2, as the Java client and aiokafka compute it); a valid
event read from another partition is dead-lettered as ``misrouted``."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from streams.codec import (
    MAX_DETAIL_CHARS,
    REASON_DESCRIPTIONS,
    ROUTING_REASONS,
    DlqRecord,
    HomePartitions,
    Reason,
    default_partition,
    encode_event,
    murmur2,
)
from streams.codec.route import route
from streams.core.events import Event, make_event

# org.apache.kafka.common.utils.UtilsTest#testMurmur2 (signed 32-bit, as Java returns them)
JAVA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("data", "java"), sorted(JAVA_VECTORS.items()))
def test_murmur2_equals_the_java_clients(data: bytes, java: int) -> None:
    assert murmur2(data) == java & 0xFFFFFFFF


@given(st.binary(max_size=300))
def test_murmur2_equals_aiokafkas(data: bytes) -> None:
    assert murmur2(data) == aiokafka_murmur2(data)


@given(st.text(min_size=1, max_size=128), st.integers(1, 64))
def test_the_home_partition_is_where_aiokafkas_default_partitioner_puts_the_key(customer_id: str, partitions: int):
    key = customer_id.encode()
    expected = DefaultPartitioner()(key, list(range(partitions)), list(range(partitions)))
    assert default_partition(key, partitions) == expected
    assert HomePartitions(partitions)[customer_id] == expected


def test_home_partitions_are_memoised_and_bounded() -> None:
    homes = HomePartitions(6, max_entries=100)
    ids = [f"cus-{i}" for i in range(250)]
    for customer_id in ids:
        assert homes[customer_id] == default_partition(customer_id.encode(), 6)
        assert len(homes) <= 100
    assert "cus-249" in homes
    with pytest.raises(ValueError):
        HomePartitions(0)


def _purchase(customer_id: str) -> Event:
    return make_event("purchase.completed", event_id="order-1", occurred_at_ms=1_793_527_200_000,
                      customer_id=customer_id, order_id="O-1", amount_minor=4_900, currency="EUR",
                      product="crm-pro", kind="new")


@pytest.mark.parametrize("key", [b"cus-1", None, b"someone-else"])
def test_route_accepts_a_valid_event_on_its_customers_partition_whatever_its_key(key) -> None:
    event = _purchase("cus-1")
    home = default_partition(b"cus-1", 6)
    routed = route(encode_event(event), topic="t", partition=home, offset=1, key=key, now_ms=0, partitions=6)
    assert routed == event


@pytest.mark.parametrize("key", [b"cus-1", None, b"someone-else"])
def test_route_dead_letters_a_valid_event_on_another_partition_as_misrouted(key) -> None:
    event = _purchase("cus-1")
    home = default_partition(b"cus-1", 6)
    elsewhere = (home + 1) % 6
    raw = encode_event(event)
    routed = route(raw, topic="t", partition=elsewhere, offset=7, key=key, now_ms=5, partitions=6)
    assert isinstance(routed, DlqRecord)
    assert routed.reason is Reason.MISROUTED
    assert routed.original == raw and routed.partition == elsewhere and routed.offset == 7
    assert f"partition is {home} of 6" in routed.detail and len(routed.detail) <= MAX_DETAIL_CHARS
    # without the partition count nothing is checked (replay, the demo's example check)
    assert route(raw, topic="t", partition=elsewhere, offset=7, key=key, now_ms=5) == event


def test_an_invalid_message_keeps_its_codec_reason_on_any_partition() -> None:
    for partition in range(6):
        routed = route(b"{not json", topic="t", partition=partition, offset=0, key=None, now_ms=0, partitions=6)
        assert isinstance(routed, DlqRecord) and routed.reason is Reason.INVALID_JSON


def test_misrouted_is_a_routing_reason_with_a_description() -> None:
    assert Reason.MISROUTED in ROUTING_REASONS and Reason.MISROUTED.value == "misrouted"
    assert "\n" not in REASON_DESCRIPTIONS[Reason.MISROUTED]


def test_simulated_customers_spread_over_partitions() -> None:
    # not a property of the code, a sanity check of the hash: no partition starves
    rng = random.Random(3)
    counts = [0] * 6
    for _ in range(6_000):
        counts[default_partition(f"cus-{rng.randrange(10**9)}".encode(), 6)] += 1
    assert min(counts) > 800
