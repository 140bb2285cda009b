"""Properties of the event codec over large input spaces (hypothesis).

decode_event must round-trip every valid event, and must return an Event or a Rejected
(never raise) for any bytes at all: random bytes, any JSON value, envelope-shaped
objects with odd field values, and byte-level corruptions of valid messages.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import event as note_outcome
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.codec import (
    MAX_DETAIL_CHARS,
    MAX_TS_MS,
    MIN_TS_MS,
    Rejected,
    decode_event,
    encode_event,
    format_ts,
    parse_ts,
)
from streams.core.events import EVENT_TYPES, Event
from tests.strategies import events

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


ENVELOPE_FIELDS = (
    "event_id",
    "event_type",
    "schema_version",
    "occurred_at",
    "customer_id",
    "source",
    "data",
)


def assert_well_behaved(raw: bytes) -> Event | Rejected:
    """The codec's contract for arbitrary input: a result, never an exception."""
    result = decode_event(raw)
    assert isinstance(result, Event | Rejected)
    note_outcome(result.reason if isinstance(result, Rejected) else "accepted")
    if isinstance(result, Rejected):
        assert 0 < len(result.detail) <= MAX_DETAIL_CHARS
    else:
        assert decode_event(encode_event(result)) == result
    return result


# --- valid events -----------------------------------------------------------------------


@settings(max_examples=500)
@given(events())
def test_realistic_events_round_trip(event: Event) -> None:
    assert decode_event(encode_event(event)) == event


@settings(max_examples=500)
@given(events(wild_text=True))
def test_events_with_arbitrary_unicode_text_round_trip(event: Event) -> None:
    assert decode_event(encode_event(event)) == event


@given(events(), st.dictionaries(st.text(max_size=12), json_values, max_size=4), st.booleans())
def test_unknown_extra_fields_never_change_the_decoded_event(
    event: Event, extra: dict, in_payload: bool
) -> None:
    document = json.loads(encode_event(event))
    if in_payload:
        target, known = document["data"], EVENT_TYPES[event.event_type][0].__struct_fields__
    else:
        target, known = document, ENVELOPE_FIELDS
    target.update({key: value for key, value in extra.items() if key not in known})
    assert decode_event(json.dumps(document).encode()) == event


# --- arbitrary input --------------------------------------------------------------------


@settings(max_examples=1000)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    assert_well_behaved(raw)


@settings(max_examples=1000)
@given(json_values)
def test_arbitrary_json_values_never_raise(value: object) -> None:
    assert_well_behaved(json.dumps(value).encode())


TYPICAL_ENVELOPE_VALUES = {
    "event_id": st.text(max_size=130),
    "event_type": st.sampled_from(list(EVENT_TYPES)),
    "schema_version": st.sampled_from([1, 1, 1, 2, True]),
    "occurred_at": st.sampled_from(["2026-11-01T10:00:00Z", "2026-11-01T10:00:00"])
    | st.text(max_size=30),
    "customer_id": st.text(max_size=130),
    "source": st.text(max_size=10),
    "data": st.dictionaries(
        st.sampled_from(["ticket_id", "priority", "channel", "survey", "score", "product"]),
        st.sampled_from(["T-1", "high", "email", "nps", 3, 11, ""]) | json_values,
        max_size=6,
    ),
}


@st.composite
def envelope_shaped(draw: st.DrawFn) -> dict:
    """Objects whose fields mostly pass the envelope checks, so later checks get exercised."""
    document = {}
    for field, typical in TYPICAL_ENVELOPE_VALUES.items():
        kind = draw(st.sampled_from(["typical"] * 8 + ["odd", "absent"]))
        if kind != "absent":
            document[field] = draw(typical if kind == "typical" else json_values)
    return document


@settings(max_examples=500)
@given(envelope_shaped())
def test_envelope_shaped_objects_never_raise(document: dict) -> None:
    assert_well_behaved(json.dumps(document).encode())


@settings(max_examples=500)
@given(events(), st.data())
def test_corrupted_valid_messages_never_raise(event: Event, data: st.DataObject) -> None:
    raw = bytearray(encode_event(event))
    position = data.draw(st.integers(0, len(raw) - 1))
    corruption = data.draw(st.sampled_from(["truncate", "replace", "insert", "delete"]))
    if corruption == "truncate":
        del raw[position:]
    elif corruption == "replace":
        raw[position] = data.draw(st.integers(0, 255))
    elif corruption == "insert":
        raw[position:position] = data.draw(st.binary(min_size=1, max_size=4))
    else:
        del raw[position]
    assert_well_behaved(bytes(raw))


@settings(max_examples=60)
@given(events(), st.integers(1, 5_000), st.sampled_from(["array", "object"]))
def test_nesting_at_any_depth_never_raises(event: Event, depth: int, kind: str) -> None:
    opening, closing = ("[", "]") if kind == "array" else ('{"k":', "}")
    nested = (opening * depth + "1" + closing * depth).encode()
    result = assert_well_behaved(encode_event(event)[:-1] + b',"nested":' + nested + b"}")
    if depth <= 100:
        assert result == event


# --- timestamps ---------------------------------------------------------------------


@settings(max_examples=500)
@given(st.integers(MIN_TS_MS, MAX_TS_MS - 1))
def test_format_then_parse_is_the_identity(ms: int) -> None:
    assert parse_ts(format_ts(ms)) == ms


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _offset_text(minutes: int, utc_spelling: str) -> str:
    if minutes == 0:
        return utc_spelling
    hours, rest = divmod(abs(minutes), 60)
    return f"{'+' if minutes > 0 else '-'}{hours:02d}:{rest:02d}"


@settings(max_examples=500)
@given(
    local=st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2198, 12, 30)),
    offset_minutes=st.integers(-(24 * 60 - 1), 24 * 60 - 1),
    fraction=st.text("0123456789", max_size=9),
    utc_spelling=st.sampled_from(["Z", "z", "+00:00", "-00:00"]),
    separator=st.sampled_from("Tt"),
)
def test_parse_ts_agrees_with_datetime_arithmetic(
    local: datetime, offset_minutes: int, fraction: str, utc_spelling: str, separator: str
) -> None:
    text = local.strftime(f"%Y-%m-%d{separator}%H:%M:%S")
    text += f".{fraction}" if fraction else ""
    text += _offset_text(offset_minutes, utc_spelling)
    moment = local.replace(microsecond=0, tzinfo=timezone(timedelta(minutes=offset_minutes)))
    expected_ms = (moment - EPOCH) // timedelta(milliseconds=1) + int(fraction[:3].ljust(3, "0"))
    assert parse_ts(text) == expected_ms
