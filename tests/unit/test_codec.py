"""Hand-written cases for the event codec: every rejection reason, the order of checks,
timestamps, and the encoding (streams.codec)."""

from __future__ import annotations

import base64
import json

import pytest

from streams.codec import (
    DEFAULT_MAX_BYTES,
    MAX_DETAIL_CHARS,
    REASON_DESCRIPTIONS,
    DlqRecord,
    Reason,
    Rejected,
    decode_dlq,
    decode_event,
    dlq_record,
    encode_dlq,
    encode_event,
    format_ts,
    parse_ts,
)
from streams.core.events import Event, TicketCreated, make_event

TICKET_DATA = {"ticket_id": "ZD-1", "priority": "high", "channel": "email"}
OCCURRED_AT = "2026-11-01T10:00:00.250Z"
OCCURRED_AT_MS = 1_793_527_200_250


def message(**fields: object) -> dict:
    """A valid ticket.created message as a dict; keyword arguments replace fields."""
    base = {
        "event_id": "evt-1",
        "event_type": "ticket.created",
        "schema_version": 1,
        "occurred_at": OCCURRED_AT,
        "customer_id": "cus-1",
        "source": "zendesk",
        "data": dict(TICKET_DATA),
    }
    return base | fields


def without(document: dict, key: str) -> dict:
    return {name: value for name, value in document.items() if name != key}


def to_bytes(document: object) -> bytes:
    return json.dumps(document).encode()


def reason_of(raw: bytes, **options: int) -> Reason:
    result = decode_event(raw, **options)
    assert isinstance(result, Rejected), result
    return result.reason


def decoded(raw: bytes) -> Event:
    result = decode_event(raw)
    assert isinstance(result, Event), result
    return result


# --- accepted messages ------------------------------------------------------------


def test_a_valid_message_decodes_to_the_typed_event() -> None:
    assert decoded(to_bytes(message())) == Event(
        event_id="evt-1",
        event_type="ticket.created",
        occurred_at_ms=OCCURRED_AT_MS,
        customer_id="cus-1",
        source="zendesk",
        data=TicketCreated(ticket_id="ZD-1", priority="high", channel="email"),
    )


def test_unknown_extra_fields_are_accepted_and_ignored() -> None:
    extended = message(trace_id="abc", tenant={"region": "eu"}, data=TICKET_DATA | {"tags": [1]})
    assert decoded(to_bytes(extended)) == decoded(to_bytes(message()))


def test_null_for_an_optional_payload_field_means_absent() -> None:
    event = decoded(to_bytes(message(data=TICKET_DATA | {"team": None})))
    assert event.data.team is None


def test_an_integer_is_accepted_where_a_float_is_expected() -> None:
    data = {"interaction_id": "i-1", "channel": "app", "direction": "inbound", "handle_time_s": 30}
    event = decoded(to_bytes(message(event_type="interaction.logged", data=data)))
    assert event.data.handle_time_s == 30.0


def test_duplicate_keys_the_last_occurrence_wins() -> None:
    raw = (
        to_bytes(message())[:-1]
        + b',"event_id":"evt-2","data":{"ticket_id":"ZD-2",'
        + (b'"priority":"low","channel":"chat"}}')
    )
    event = decoded(raw)
    assert (event.event_id, event.data.ticket_id, event.data.priority) == ("evt-2", "ZD-2", "low")


def test_a_repeated_event_type_the_last_occurrence_wins() -> None:
    # (the one-pass decoder reads the type as a union tag: it must not take the first)
    session = b'"event_type":"session.started","data":{"product":"app"}'
    ticket = to_bytes(message())
    assert decoded(ticket[:-1] + b"," + session + b"}").event_type == "session.started"
    assert decoded(b"{" + session + b"," + ticket[1:]).event_type == "ticket.created"
    mixed = decode_event(ticket[:-1] + b',"event_type":"survey.answered"}')  # a ticket's data
    assert isinstance(mixed, Rejected) and mixed.reason is Reason.MISSING_FIELD


def test_surrounding_whitespace_is_allowed() -> None:
    assert decoded(b" \n\t" + to_bytes(message()) + b"\r\n ") == decoded(to_bytes(message()))


def test_non_ascii_text_is_accepted() -> None:
    event = decoded(to_bytes(message(data=TICKET_DATA | {"team": "réseau-東京-🚀"})))
    assert event.data.team == "réseau-東京-🚀"


# --- one test per reason ------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b'{"event_id": "evt-1",}',
        b"{'event_id': 'evt-1'}",
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b'{"a": -Infinity}',
        to_bytes(message()) + b"{}",
        b"\xef\xbb\xbf" + to_bytes(message()),  # UTF-8 byte order mark
        to_bytes(message()).replace(b"ZD-1", b"ZD-\xff"),  # not UTF-8
        to_bytes(message()).replace(b"ZD-1", b"\\ud800"),  # lone surrogate escape
    ],
    ids=[
        "empty",
        "truncated",
        "trailing-comma",
        "single-quotes",
        "nan",
        "infinity",
        "minus-infinity",
        "two-values",
        "bom",
        "not-utf8",
        "lone-surrogate",
    ],
)
def test_malformed_json_is_invalid_json(raw: bytes) -> None:
    assert reason_of(raw) is Reason.INVALID_JSON


@pytest.mark.parametrize("document", [[], [message()], "text", 3, None, True])
def test_a_top_level_value_other_than_an_object_is_not_an_object(document: object) -> None:
    assert reason_of(to_bytes(document)) is Reason.NOT_AN_OBJECT


@pytest.mark.parametrize(
    "document",
    [
        without(message(), "event_id"),
        without(message(), "schema_version"),
        without(message(), "source"),
        without(message(), "data"),
        message(data=without(TICKET_DATA, "priority")),
        message(event_type="purchase.refunded", data={"order_id": "o-1", "amount_minor": 5}),
    ],
)
def test_an_absent_required_field_is_missing_field(document: dict) -> None:
    assert reason_of(to_bytes(document)) is Reason.MISSING_FIELD


@pytest.mark.parametrize(
    "document",
    [
        message(event_id=17),
        message(schema_version="1"),
        message(schema_version=1.0),
        message(occurred_at=1_793_527_200_250),
        message(customer_id=None),
        message(data=[TICKET_DATA]),
        message(data="{}"),
        message(data=TICKET_DATA | {"ticket_id": 123}),
        message(data=TICKET_DATA | {"priority": None}),
        message(event_type="survey.answered", data={"survey": "nps", "score": "9"}),
        message(event_type="survey.answered", data={"survey": "nps", "score": 9.5}),
    ],
)
def test_a_field_of_the_wrong_json_type_is_wrong_type(document: dict) -> None:
    assert reason_of(to_bytes(document)) is Reason.WRONG_TYPE


@pytest.mark.parametrize(
    "document",
    [
        message(schema_version=True),
        message(event_type="survey.answered", data={"survey": "csat", "score": True}),
        message(event_type="purchase.refunded", data={"order_id": "o", "amount_minor": False}),
    ],
    ids=["schema_version", "score", "amount"],
)
def test_booleans_are_not_integers(document: dict) -> None:
    assert reason_of(to_bytes(document)) is Reason.WRONG_TYPE


@pytest.mark.parametrize("event_type", ["ticket.deleted", "Ticket.Created", "", "ticket.created "])
def test_an_event_type_not_in_the_catalogue_is_unknown_event_type(event_type: str) -> None:
    assert reason_of(to_bytes(message(event_type=event_type))) is Reason.UNKNOWN_EVENT_TYPE


@pytest.mark.parametrize("version", [0, 2, -1, 10**30])
def test_an_integer_schema_version_other_than_1_is_unsupported(version: int) -> None:
    assert reason_of(to_bytes(message(schema_version=version))) is Reason.UNSUPPORTED_SCHEMA_VERSION


@pytest.mark.parametrize(
    ("event_type", "data"),
    [
        ("ticket.created", TICKET_DATA | {"priority": "critical"}),
        ("ticket.created", TICKET_DATA | {"channel": "app"}),  # app is an interaction channel only
        ("ticket.created", TICKET_DATA | {"ticket_id": ""}),
        ("ticket.created", TICKET_DATA | {"team": "t" * 129}),
        ("purchase.refunded", {"order_id": "o-1", "amount_minor": -1, "currency": "EUR"}),
        ("purchase.refunded", {"order_id": "o-1", "amount_minor": 10**15 + 1, "currency": "EUR"}),
        ("purchase.refunded", {"order_id": "o-1", "amount_minor": 10**40, "currency": "EUR"}),
        ("purchase.refunded", {"order_id": "o-1", "amount_minor": 5, "currency": "eur"}),
        ("purchase.refunded", {"order_id": "o-1", "amount_minor": 5, "currency": "EURO"}),
        ("purchase.refunded", {"order_id": "o-1", "amount_minor": 5, "currency": "EUR\n"}),
        ("interaction.logged", {"interaction_id": "i", "channel": "app", "direction": "up"}),
        (
            "interaction.logged",
            {
                "interaction_id": "i",
                "channel": "app",
                "direction": "inbound",
                "handle_time_s": -0.5,
            },
        ),
        ("lead.lost", {"lead_id": "l-1", "reason": "r" * 513}),
        ("survey.answered", {"survey": "nps", "score": 11}),
        ("survey.answered", {"survey": "nps", "score": -1}),
        ("survey.answered", {"survey": "csat", "score": 0}),
        ("survey.answered", {"survey": "csat", "score": 6}),
        ("survey.answered", {"survey": "ces", "score": 8}),
        ("survey.answered", {"survey": "sus", "score": 5}),
    ],
)
def test_a_value_outside_its_allowed_set_is_out_of_range(event_type: str, data: dict) -> None:
    assert reason_of(to_bytes(message(event_type=event_type, data=data))) is Reason.OUT_OF_RANGE


@pytest.mark.parametrize("field", ["event_id", "customer_id"])
@pytest.mark.parametrize("value", ["", "x" * 129])
def test_envelope_ids_must_have_1_to_128_characters(field: str, value: str) -> None:
    assert reason_of(to_bytes(message(**{field: value}))) is Reason.OUT_OF_RANGE
    assert isinstance(decode_event(to_bytes(message(**{field: "é" * 128}))), Event)


def test_a_number_too_big_for_a_float_is_out_of_range() -> None:
    data = {"interaction_id": "i", "channel": "app", "direction": "inbound", "handle_time_s": 1.5}
    raw = to_bytes(message(event_type="interaction.logged", data=data))
    assert reason_of(raw.replace(b"1.5", b"1e400")) is Reason.OUT_OF_RANGE


def test_survey_scores_on_the_edges_of_each_scale_are_accepted() -> None:
    for survey, low, high in (("nps", 0, 10), ("csat", 1, 5), ("ces", 1, 7)):
        for score in (low, high):
            data = {"survey": survey, "score": score}
            assert isinstance(
                decode_event(to_bytes(message(event_type="survey.answered", data=data))), Event
            )


def test_a_message_over_the_limit_is_too_large_without_being_parsed() -> None:
    five_megabytes = b"{" + b" " * 5_000_000  # not even valid JSON: size is checked first
    assert reason_of(five_megabytes) is Reason.TOO_LARGE


def test_the_size_limit_defaults_to_1_mib_and_is_configurable() -> None:
    assert DEFAULT_MAX_BYTES == 1_048_576
    raw = to_bytes(message())
    assert isinstance(decode_event(raw, max_bytes=len(raw)), Event)
    assert reason_of(raw, max_bytes=len(raw) - 1) is Reason.TOO_LARGE
    padded = raw + b" " * (DEFAULT_MAX_BYTES - len(raw))
    assert isinstance(decode_event(padded), Event)
    assert reason_of(padded + b" ") is Reason.TOO_LARGE


@pytest.mark.parametrize(
    "document",
    [
        "[" * 100_000 + "]" * 100_000,
        "[" * 100_000,
        '{"event_id": ' + "[" * 100_000 + "]" * 100_000 + "}",
        json.dumps(message())[:-1] + ', "deep": ' + "[" * 100_000 + "]" * 100_000 + "}",
        json.dumps(message())[:-2] + ', "deep": ' + '{"a":' * 100_000 + "1" + "}" * 100_000 + "}}",
    ],
    ids=["array", "unbalanced", "in-envelope-field", "unknown-field", "inside-data"],
)
def test_100k_deep_nesting_is_rejected_not_a_crash(document: str) -> None:
    assert reason_of(document.encode()) is Reason.INVALID_JSON


def test_moderate_nesting_in_unknown_fields_is_accepted() -> None:
    raw = json.dumps(message(extra=[[[[[[[[{"a": [1]}]]]]]]]])).encode()
    assert isinstance(decode_event(raw), Event)


# --- order of checks ------------------------------------------------------------------


def test_size_is_checked_before_anything_else() -> None:
    assert reason_of(b"[" + b" " * 100, max_bytes=100) is Reason.TOO_LARGE


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"event_id": 5, "data": ', Reason.INVALID_JSON),  # syntax before types
        (b'["unterminated', Reason.INVALID_JSON),  # syntax before not_an_object
        (to_bytes(message(schema_version=2, data=[])), Reason.WRONG_TYPE),  # data type first
        (to_bytes(message(schema_version=2, event_type="x")), Reason.UNSUPPORTED_SCHEMA_VERSION),
        (to_bytes(message(event_type="x", occurred_at="yesterday")), Reason.UNKNOWN_EVENT_TYPE),
        (to_bytes(message(occurred_at="yesterday", data={})), Reason.BAD_TIMESTAMP),
        (to_bytes(without(message(schema_version=2), "source")), Reason.MISSING_FIELD),
    ],
    ids=[
        "syntax-vs-type",
        "syntax-vs-object",
        "data-type-vs-version",
        "version-vs-type",
        "type-vs-time",
        "time-vs-payload",
        "envelope-vs-version",
    ],
)
def test_the_first_failing_check_decides_the_reason(raw: bytes, reason: Reason) -> None:
    assert reason_of(raw) is reason


# --- detail messages ----------------------------------------------------------------


def test_details_name_the_json_path_and_the_problem() -> None:
    rejected = decode_event(to_bytes(message(data=TICKET_DATA | {"priority": "critical"})))
    assert rejected == Rejected(
        Reason.OUT_OF_RANGE, "$.data.priority: Invalid enum value 'critical'"
    )
    rejected = decode_event(to_bytes(message(data=without(TICKET_DATA, "channel"))))
    assert rejected == Rejected(
        Reason.MISSING_FIELD, "$.data: Object missing required field `channel`"
    )


@pytest.mark.parametrize(
    "document",
    [
        message(data=TICKET_DATA | {"priority": "SECRET" * 100_000}),
        message(event_type="SECRET" * 100_000),
        message(occurred_at="SECRET" * 100_000),
    ],
)
def test_details_are_short_and_never_dump_the_payload(document: dict) -> None:
    rejected = decode_event(to_bytes(document), max_bytes=10_000_000)
    assert isinstance(rejected, Rejected)
    assert len(rejected.detail) <= MAX_DETAIL_CHARS
    assert rejected.detail.count("SECRET") <= 10


def test_a_value_that_looks_like_a_path_does_not_move_the_reported_path() -> None:
    document = message(data=TICKET_DATA | {"priority": "x - at `$.injected`"})
    rejected = decode_event(to_bytes(document))
    assert isinstance(rejected, Rejected)
    assert rejected.detail.startswith("$.data.priority: Invalid enum value")


def test_every_reason_has_a_one_line_description() -> None:
    assert set(REASON_DESCRIPTIONS) == set(Reason)
    for reason in Reason:
        assert reason.description and "\n" not in reason.description


# --- timestamps --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected_ms"),
    [
        ("2026-11-01T10:00:00Z", 1_793_527_200_000),
        ("2026-11-01T10:00:00.250Z", 1_793_527_200_250),
        ("2026-11-01T10:00:00.25Z", 1_793_527_200_250),
        ("2026-11-01T10:00:00.2Z", 1_793_527_200_200),
        ("2026-11-01T10:00:00.123456789Z", 1_793_527_200_123),
        ("2026-11-01T10:00:00.999999999Z", 1_793_527_200_999),  # floored, never rounded up
        ("2026-11-01T11:00:00.250+01:00", 1_793_527_200_250),
        ("2026-11-01T04:30:00.250-05:30", 1_793_527_200_250),
        ("2026-11-01T10:00:00.250-00:00", 1_793_527_200_250),
        ("2026-11-02T09:59:00.250+23:59", 1_793_527_200_250),
        ("2026-11-01t10:00:00.250z", 1_793_527_200_250),
        ("2016-12-31T23:59:60Z", 1_483_228_800_000),  # leap second = next second
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T01:00:00+01:00", 0),
        ("2199-12-31T23:59:59.999Z", 7_258_118_399_999),
        ("2024-02-29T00:00:00Z", 1_709_164_800_000),
    ],
)
def test_parse_ts_reads_rfc_3339_with_offset_into_epoch_ms(text: str, expected_ms: int) -> None:
    assert parse_ts(text) == expected_ms


@pytest.mark.parametrize(
    "text",
    [
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "1969-12-31T23:59:59.999Z",
        "1970-01-01T00:59:59+01:00",
        "2200-01-01T00:00:00Z",
        "2199-12-31T23:00:00-01:00",
        "2026-11-01T10:00:00",
        "2026-11-01 10:00:00Z",
        "2026-11-01",
        "2026-11-01T10:00Z",
        "2026-11-01T10:00:00+0100",
        "2026-11-01T10:00:00+01",
        "2026-11-01T10:00:00.Z",
        "2026-11-01T10:00:00.1234567890Z",
        "2026-11-01T10:00:00,250Z",
        "2026-11-01T24:00:00Z",
        "2026-11-01T10:60:00Z",
        "2026-11-01T10:00:61Z",
        "2026-11-01T10:00:00+24:00",
        "2026-13-01T10:00:00Z",
        "2026-00-01T10:00:00Z",
        "2026-02-29T10:00:00Z",
        "2026-04-31T10:00:00Z",
        "0000-01-01T00:00:00Z",
        "+2026-11-01T10:00:00Z",
        "２０２６-11-01T10:00:00Z",
        "2026-11-01T10:00:00Z\n",
        " 2026-11-01T10:00:00Z",
        "1793527200250",
        "",
    ],
)
def test_parse_ts_rejects_anything_else(text: str) -> None:
    with pytest.raises(ValueError):
        parse_ts(text)
    assert reason_of(to_bytes(message(occurred_at=text))) is Reason.BAD_TIMESTAMP


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (1_793_527_200_250, "2026-11-01T10:00:00.250Z"),
        (1_793_527_200_007, "2026-11-01T10:00:00.007Z"),
        (7_258_118_399_999, "2199-12-31T23:59:59.999Z"),
    ],
)
def test_format_ts_writes_utc_with_milliseconds(ms: int, text: str) -> None:
    assert format_ts(ms) == text
    assert parse_ts(text) == ms


# --- encoding -----------------------------------------------------------------------


def test_encode_event_writes_the_canonical_envelope() -> None:
    event = make_event(
        "ticket.created",
        event_id="evt-1",
        occurred_at_ms=OCCURRED_AT_MS,
        customer_id="cus-1",
        source="zendesk",
        ticket_id="ZD-1",
        priority="high",
        channel="email",
        product="crm-pro",
    )
    assert encode_event(event) == (
        b'{"event_id":"evt-1","event_type":"ticket.created","schema_version":1,'
        b'"occurred_at":"2026-11-01T10:00:00.250Z","customer_id":"cus-1","source":"zendesk",'
        b'"data":{"ticket_id":"ZD-1","priority":"high","channel":"email","product":"crm-pro"}}'
    )
    assert decode_event(encode_event(event)) == event


# --- dead letters -------------------------------------------------------------------


def test_a_dlq_record_keeps_the_original_bytes_and_round_trips() -> None:
    original = b'{"event_id": 5, \xff}'
    rejected = decode_event(original)
    assert isinstance(rejected, Rejected)
    record = dlq_record(
        rejected,
        topic="crm.tickets.v1",
        partition=3,
        offset=1042,
        key=b"cus-\xff1",
        original=original,
        rejected_at_ms=1_793_527_200_000,
    )
    raw = encode_dlq(record)
    assert decode_dlq(raw) == record
    as_json = json.loads(raw)
    assert as_json["reason"] == "invalid_json"
    assert as_json["key"] == "cus-\ufffd1"
    assert base64.b64decode(as_json["original"]) == original


def test_a_dlq_record_may_have_no_key() -> None:
    record = dlq_record(
        Rejected(Reason.NOT_AN_OBJECT, "$: Expected `object`, got `array`"),
        topic="crm.purchases.v1",
        partition=0,
        offset=0,
        key=None,
        original=b"[]",
        rejected_at_ms=0,
    )
    assert record.key is None
    assert decode_dlq(encode_dlq(record)) == record
    assert isinstance(record, DlqRecord)
