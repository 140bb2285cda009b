"""``route``: an accepted message becomes the same Event the codec decodes; a rejected one
becomes a dead-letter record with its reason, source coordinates and original bytes; and
nothing, whatever the bytes, makes it raise."""

from __future__ import annotations

from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.codec import DlqRecord, Reason, decode_dlq, encode_dlq, encode_event
from streams.codec.route import route
from streams.core.events import Event, make_event
from tests.strategies import events

NOW_MS = 1_793_527_200_123
WHERE = {"topic": "crm.tickets.v1", "partition": 3, "offset": 41, "now_ms": NOW_MS}


def _ticket_created() -> Event:
    return make_event(
        "ticket.created",
        event_id="evt-1",
        occurred_at_ms=1_793_527_200_000,
        customer_id="cus-1",
        ticket_id="T-1",
        priority="high",
        channel="email",
    )


@given(events())
def test_a_valid_message_routes_to_the_event_it_encodes(event):
    routed = route(encode_event(event), key=event.customer_id.encode(), **WHERE)

    assert routed == event


def test_a_rejected_message_routes_to_a_dlq_record_with_reason_source_and_original_bytes():
    raw = encode_event(_ticket_created()).replace(b'"high"', b'"critical"')

    routed = route(raw, key=b"cus-1", **WHERE)

    assert isinstance(routed, DlqRecord)
    assert routed.reason is Reason.OUT_OF_RANGE
    assert "$.data.priority" in routed.detail
    assert (routed.topic, routed.partition, routed.offset) == ("crm.tickets.v1", 3, 41)
    assert routed.key == "cus-1"
    assert routed.original == raw
    assert routed.rejected_at_ms == NOW_MS
    assert decode_dlq(encode_dlq(routed)) == routed


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", Reason.INVALID_JSON),
        (b"[1, 2]", Reason.NOT_AN_OBJECT),
        (b'{"event_id": "e"}', Reason.MISSING_FIELD),
        (b"x" * 70, Reason.TOO_LARGE),
    ],
)
def test_each_rejection_keeps_the_codec_reason(raw, reason):
    routed = route(raw, key=None, max_bytes=64, **WHERE)

    assert isinstance(routed, DlqRecord)
    assert routed.reason is reason
    assert routed.key is None
    assert routed.original == raw


def test_a_tombstone_is_dead_lettered_as_invalid_json_with_empty_original():
    routed = route(None, key=b"cus-1", **WHERE)

    assert isinstance(routed, DlqRecord)
    assert routed.reason is Reason.INVALID_JSON
    assert routed.original == b""


def test_buffer_types_are_accepted_and_the_original_is_stored_as_bytes():
    raw = bytearray(b"[]")

    routed = route(memoryview(raw), key=bytearray(b"\xffkey"), **WHERE)

    assert isinstance(routed, DlqRecord)
    assert type(routed.original) is bytes and routed.original == b"[]"
    assert routed.key == "\ufffdkey"  # undecodable key bytes are replaced, not fatal


def test_a_codec_failure_is_dead_lettered_instead_of_raised():
    with mock.patch("streams.codec.route.decode_event", side_effect=RuntimeError("boom")):
        routed = route(b"{}", key=None, **WHERE)

    assert isinstance(routed, DlqRecord)
    assert routed.reason is Reason.INVALID_JSON
    assert "RuntimeError" in routed.detail
    assert routed.original == b"{}"


@given(st.binary(max_size=300), st.none() | st.binary(max_size=20))
def test_arbitrary_bytes_never_raise(raw, key):
    routed = route(raw, key=key, **WHERE)

    assert isinstance(routed, Event | DlqRecord)
    if isinstance(routed, DlqRecord):
        assert routed.original == raw
