"""The partials topic's messages between stage 1 and stage 2 (streams.codec.state)."""

from __future__ import annotations

import msgspec
import pytest

from streams.codec.state import Marker, decode_stage_message, encode_marker, encode_partials
from streams.core.aggregates import Count, QuantileSketch


@pytest.mark.parametrize("catching_up", [False, True])
def test_a_marker_round_trips_with_its_backlog_flag(catching_up):
    marker = Marker(task=3, watermark=1_793_491_200_000, idle=False, tasks=6, catching_up=catching_up)
    assert decode_stage_message(encode_marker(marker)) == marker


def test_a_marker_written_before_the_backlog_flag_reads_as_not_catching_up():
    raw = msgspec.msgpack.encode({"m": [2, 1_793_491_200_000, True, 6]})
    assert decode_stage_message(raw) == Marker(2, 1_793_491_200_000, True, 6, False)


def test_a_marker_with_missing_fields_is_malformed():
    with pytest.raises(ValueError, match="malformed stage message"):
        decode_stage_message(msgspec.msgpack.encode({"m": [2, 1_793_491_200_000, True]}))


def test_partials_round_trip():
    sketch = QuantileSketch()
    sketch.add(12.5)
    aggs = {("tickets_created", (("priority", "high"),), 300_000): Count(4),
            ("first_response_time_seconds", (), 300_000): sketch}
    task, decoded = decode_stage_message(encode_partials(5, aggs))
    assert task == 5
    assert decoded == aggs


@pytest.mark.parametrize("message", [
    {},  # neither a batch nor a marker
    {"p": 1},  # a batch without its partials
    {"p": 1, "a": [["tickets_created", [["priority", 3]], 300_000, "count", 4]]},  # a dim value that is no string
    {"p": 1, "a": [["tickets_created", [], 300_000, "no-such-kind", 4]]},
    {"p": "one", "a": []},
])
def test_a_malformed_partials_batch_is_refused(message):
    with pytest.raises(ValueError, match="malformed stage message"):
        decode_stage_message(msgspec.msgpack.encode(message))


def test_decoded_keys_are_the_tuples_stage_two_merges_on():
    aggs = {("tickets_created", (("channel", "email"), ("priority", "high")), 300_000): Count(1)}
    _, decoded = decode_stage_message(encode_partials(0, aggs))
    (base, dims, pane), = decoded
    assert type(dims) is tuple and all(type(pair) is tuple for pair in dims) and hash(dims) == hash(aggs.popitem()[0][1])
