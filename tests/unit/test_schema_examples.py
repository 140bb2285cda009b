"""The JSON Schemas in ``schemas/`` and the codec agree on every example and on generated
messages.

Each valid example must pass both ``event.schema.json`` and ``decode_event``; each invalid
example ``<reason>--<name>.<ext>`` must be rejected by the codec with exactly ``<reason>``
and by the schema side too. The schema side is: strict JSON parsing (UTF-8, no NaN), the
byte limit documented in the schema (``x-max-message-bytes``), then schema validation.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

from streams.codec import (
    DEFAULT_MAX_BYTES,
    ROUTING_REASONS,
    Reason,
    Rejected,
    decode_event,
    encode_event,
    parse_ts,
)
from streams.core.events import EVENT_TYPES, SURVEY_SCORE_RANGE, Event, Id, topic_for
from tests.strategies import events

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
VALID_EXAMPLES = sorted((SCHEMAS / "examples" / "valid").iterdir())
INVALID_EXAMPLES = sorted((SCHEMAS / "examples" / "invalid").iterdir())
INVALID_NAME = re.compile(r"(?P<reason>[a-z_]+)--[a-z0-9-]+\.(?:json|bin)")


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


ENVELOPE = _load(SCHEMAS / "envelope.schema.json")
EVENT = _load(SCHEMAS / "event.schema.json")
PAYLOADS = {
    path.name.removesuffix(".schema.json"): _load(path) for path in (SCHEMAS / "events").iterdir()
}


def _is_codec_date_time(instance: object) -> bool:
    """The ``date-time`` format as the codec reads it (raises ValueError when not)."""
    if isinstance(instance, str):
        parse_ts(instance)
    return True


def _validator() -> Draft202012Validator:
    registry = Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema))
        for schema in (ENVELOPE, EVENT, *PAYLOADS.values())
    )
    # Our own date-time check rather than jsonschema's optional rfc3339-validator: the
    # schema must mean exactly what the codec does, whatever happens to be installed.
    format_checker = FormatChecker(formats=())
    format_checker.checks("date-time", raises=ValueError)(_is_codec_date_time)
    return Draft202012Validator(EVENT, registry=registry, format_checker=format_checker)


VALIDATOR = _validator()


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_strictly(raw: bytes) -> object:
    """RFC 8259 JSON: UTF-8 without BOM, and no NaN/Infinity (which ``json`` allows)."""
    return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)


def expected_reason(path: Path) -> Reason:
    match = INVALID_NAME.fullmatch(path.name)
    assert match, f"{path.name} is not named <reason>--<short-name>.json|bin"
    return Reason(match["reason"])


# --- the schemas themselves ---------------------------------------------------------


@pytest.mark.parametrize("schema", [ENVELOPE, EVENT, *PAYLOADS.values()], ids=lambda s: s["$id"])
def test_every_schema_is_a_valid_draft_2020_12_schema(schema: dict) -> None:
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_there_is_one_payload_schema_per_event_type_with_its_topic() -> None:
    assert set(PAYLOADS) == set(EVENT_TYPES)
    for event_type, schema in PAYLOADS.items():
        assert schema["x-topic"] == topic_for(event_type)
    event_type_enum = EVENT["allOf"][1]["properties"]["event_type"]["enum"]
    assert event_type_enum == list(EVENT_TYPES)


def test_the_size_limit_in_the_schemas_is_the_codec_default() -> None:
    assert ENVELOPE["x-max-message-bytes"] == EVENT["x-max-message-bytes"] == DEFAULT_MAX_BYTES
    assert str(DEFAULT_MAX_BYTES) in ENVELOPE["$comment"]


def _schema_for(info: msgspec.inspect.Type) -> dict[str, Any]:
    """The JSON Schema keywords a msgspec field type stands for (no descriptions)."""
    if isinstance(info, msgspec.inspect.UnionType):
        (inner,) = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
        schema = _schema_for(inner)
        return schema | {"type": [schema["type"], "null"]}
    if isinstance(info, msgspec.inspect.LiteralType):
        return {"type": "string", "enum": sorted(info.values)}  # msgspec sorts them too
    if isinstance(info, msgspec.inspect.StrType):
        keywords = {
            "minLength": info.min_length,
            "maxLength": info.max_length,
            "pattern": info.pattern,
        }
        return {"type": "string"} | {k: v for k, v in keywords.items() if v is not None}
    kind = {msgspec.inspect.IntType: "integer", msgspec.inspect.FloatType: "number"}[type(info)]
    return {"type": kind} | {
        k: v for k, v in (("minimum", info.ge), ("maximum", info.le)) if v is not None
    }


@pytest.mark.parametrize("event_type", list(EVENT_TYPES))
def test_payload_schemas_match_the_payload_structs(event_type: str) -> None:
    struct = msgspec.inspect.type_info(EVENT_TYPES[event_type][0])
    schema = PAYLOADS[event_type]
    expected = {field.name: _schema_for(field.type) for field in struct.fields}
    if event_type == "survey.answered":  # per-survey scales live in the schema's allOf
        expected["score"] |= {"minimum": 0, "maximum": 10}
    actual = {
        name: {
            k: sorted(v) if k == "enum" else v for k, v in keywords.items() if k != "description"
        }
        for name, keywords in schema["properties"].items()
    }
    assert actual == expected
    assert schema["required"] == [field.name for field in struct.fields if field.required]


def test_survey_scales_in_the_schema_match_the_codec() -> None:
    scales = {
        rule["if"]["properties"]["survey"]["const"]: (
            rule["then"]["properties"]["score"]["minimum"],
            rule["then"]["properties"]["score"]["maximum"],
        )
        for rule in PAYLOADS["survey.answered"]["allOf"]
    }
    assert scales == SURVEY_SCORE_RANGE


def test_envelope_ids_match_the_id_type() -> None:
    expected = _schema_for(msgspec.inspect.type_info(Id))
    for field in ("event_id", "customer_id"):
        keywords = dict(ENVELOPE["properties"][field])
        del keywords["description"]
        assert keywords == expected


# --- examples -------------------------------------------------------------------------


@pytest.mark.parametrize("path", VALID_EXAMPLES, ids=lambda path: path.name)
def test_valid_example_passes_the_schema_and_the_codec(path: Path) -> None:
    raw = path.read_bytes()
    errors = [error.message for error in VALIDATOR.iter_errors(parse_strictly(raw))]
    assert errors == []
    event = decode_event(raw)
    assert isinstance(event, Event), event
    assert event.event_type == path.name.split("--")[0].removesuffix(".json")
    assert decode_event(encode_event(event)) == event


def test_there_is_a_valid_example_for_every_event_type() -> None:
    covered = {path.name.split("--")[0].removesuffix(".json") for path in VALID_EXAMPLES}
    assert covered == set(EVENT_TYPES)


@pytest.mark.parametrize("path", INVALID_EXAMPLES, ids=lambda path: path.name)
def test_invalid_example_is_rejected_by_the_codec_with_the_reason_in_its_name(path: Path) -> None:
    rejected = decode_event(path.read_bytes())
    assert isinstance(rejected, Rejected), rejected
    assert rejected.reason is expected_reason(path), rejected.detail


@pytest.mark.parametrize("path", INVALID_EXAMPLES, ids=lambda path: path.name)
def test_invalid_example_is_rejected_by_the_schema_side(path: Path) -> None:
    raw = path.read_bytes()
    reason = expected_reason(path)
    if reason is Reason.INVALID_JSON:
        with pytest.raises((ValueError, RecursionError)):
            parse_strictly(raw)
        return
    assert path.suffix == ".json", "only messages that are not JSON may be .bin"
    document = parse_strictly(raw)
    if reason is Reason.TOO_LARGE:
        assert len(raw) > EVENT["x-max-message-bytes"]
    else:
        assert not VALIDATOR.is_valid(document)


def test_every_reason_has_at_least_two_invalid_examples() -> None:
    # a routing reason (misrouted) depends on where a message was read, not on its bytes
    counts = {reason: 0 for reason in Reason if reason not in ROUTING_REASONS}
    for path in INVALID_EXAMPLES:
        counts[expected_reason(path)] += 1
    assert min(counts.values()) >= 2, counts


# --- generated messages -----------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(events(wild_text=True))
def test_every_encoded_event_passes_the_schema(original: Event) -> None:
    assert VALIDATOR.is_valid(json.loads(encode_event(original)))


ENVELOPE_FIELDS = list(ENVELOPE["required"])
REPLACEMENTS = [
    None, True, False, 0, 1, 2, -1, 7, 11, 10**15, 10**15 + 1, 2.5, -0.5, "", "x", "x" * 129,
    "r" * 513, "EUR", "eur", "low", "agent", "nps", "ces", "inbound", "ticket.created",
    "2026-11-01T10:00:00Z", "2026-11-01T10:00:00", "1969-12-31T23:59:59Z", [], {}, ["x"],
]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(events(), st.data())
def test_codec_and_schema_agree_after_changing_one_field(
    original: Event, data: st.DataObject
) -> None:
    document = json.loads(encode_event(original))
    payload_fields = list(PAYLOADS[original.event_type]["properties"])
    in_data = data.draw(st.booleans())
    target = document["data"] if in_data else document
    field = data.draw(st.sampled_from(payload_fields if in_data else ENVELOPE_FIELDS))
    if data.draw(st.sampled_from(["delete", "replace", "replace", "replace"])) == "delete":
        target.pop(field, None)
    else:
        target[field] = data.draw(st.sampled_from(REPLACEMENTS))
    decoded = decode_event(json.dumps(document).encode())
    event(f"codec: {decoded.reason if isinstance(decoded, Rejected) else 'accepted'}")
    assert isinstance(decoded, Event) == VALIDATOR.is_valid(document), decoded
