"""Structure-aware fuzzing of :func:`streams.codec.decode_event` (hypothesis).

Each example starts from a valid event, parses its envelope into a document and applies
one or two *mutations* that know the schema: they are derived from the payload structs'
own type information (``msgspec.inspect``), so every field of every event type gets
deleted, retyped, pushed out of its range or enum, nulled, or left alone while the
document around it is reshaped. Every mutation carries the rejection reason the
codec's contract (``streams/codec/events.py``) promises for it - the oracle:

- a single mutation must give exactly its reason (or, for neutral ones, the original
  event back);
- two mutations must give one of their two reasons - the codec reports the first
  failing check, never a third, made-up one;
- whatever the input: no exception, a detail of at most 200 characters that never
  echoes a long input value, and an accepted event that round-trips.

(``tests/unit/test_codec_properties.py`` covers random bytes, random JSON and byte-level
corruption; atheris was left out: it would be an extra, optional dependency.)
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import event as note
from hypothesis import strategies as st

from streams.codec import MAX_DETAIL_CHARS, Rejected, decode_event, encode_event
from streams.codec.events import DEFAULT_MAX_BYTES, _decode_checked, _decode_fast
from streams.core.events import EVENT_TYPES, SURVEY_SCORE_RANGE, Event
from tests.strategies import events

ACCEPTED = "accepted"
EXAMPLES = 400
LONG = "Z" * 300  # a long value that must never be echoed in full
Doc = dict
Mutate = Callable[[Doc], None]


@dataclass(frozen=True)
class Mutation:
    name: str
    apply: Mutate  # changes the parsed document in place
    reason: str  # the promised reason, or ACCEPTED (then the event must not change)
    raw: Callable[[bytes], bytes] | None = None  # byte-level edit after serialising
    touches: tuple[str, ...] = ()  # fields it edits (default: the first word of its name)
    order: int = 1  # byte-level edits run in this order (whole-document rewrites first)

    def fields(self) -> set[str]:
        return set(self.touches) or {self.name.split(" ")[0].split("=")[0]}


# --------------------------------------------------------------------------- mutations


def _set(path: tuple[str, ...], value: object) -> Mutate:
    def apply(doc: Doc) -> None:
        target = doc
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
    return apply


def _delete(path: tuple[str, ...]) -> Mutate:
    def apply(doc: Doc) -> None:
        target = doc
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]
    return apply


def _noop(_: Doc) -> None:
    pass


WRONG_FOR_STR = (1, 2.5, True, [], {"a": 1})
WRONG_FOR_INT = ("1", 2.5, True, [1], {})
WRONG_FOR_FLOAT = ("1.5", True, [1.5], {})


def _type_mutations(path: tuple[str, ...], info: msgspec.inspect.Type, original: object,
                    draw: st.DrawFn, *, nullable: bool = False) -> list[Mutation]:
    """Mutations of one field from its msgspec type information."""
    where = ".".join(path)
    out: list[Mutation] = []
    if isinstance(info, msgspec.inspect.UnionType):  # X | None: null means "absent"
        inner = next(t for t in info.types if not isinstance(t, msgspec.inspect.NoneType))
        if original is None:
            out.append(Mutation(f"{where}=null", _set(path, None), ACCEPTED))
        return out + _type_mutations(path, inner, original, draw, nullable=True)
    if not nullable:
        out.append(Mutation(f"{where}=null", _set(path, None), "wrong_type"))
    if isinstance(info, msgspec.inspect.StrType):
        out.append(Mutation(f"{where} not a string", _set(path, draw(st.sampled_from(WRONG_FOR_STR))), "wrong_type"))
        if info.min_length:
            out.append(Mutation(f"{where} empty", _set(path, ""), "out_of_range"))
        if info.max_length is not None:
            # characters, not bytes, count: multi-byte ones too
            too_long = draw(st.sampled_from("xé€😀")) * draw(st.integers(info.max_length + 1, info.max_length + 40))
            out.append(Mutation(f"{where} too long", _set(path, too_long), "out_of_range"))
        if info.pattern:
            out.append(Mutation(f"{where} off pattern", _set(path, draw(st.sampled_from(["eur", "E1R", "ÉUR"]))),
                                "out_of_range"))
    elif isinstance(info, msgspec.inspect.IntType):
        out.append(Mutation(f"{where} not an int", _set(path, draw(st.sampled_from(WRONG_FOR_INT))), "wrong_type"))
        if info.ge is not None:
            out.append(Mutation(f"{where} below {info.ge}",
                                _set(path, draw(st.integers(-(2**62), info.ge - 1))), "out_of_range"))
        if info.le is not None:
            out.append(Mutation(f"{where} above {info.le}",
                                _set(path, draw(st.integers(info.le + 1, 2**62))), "out_of_range"))
    elif isinstance(info, msgspec.inspect.FloatType):
        out.append(Mutation(f"{where} not a number", _set(path, draw(st.sampled_from(WRONG_FOR_FLOAT))),
                            "wrong_type"))
        if info.ge is not None:
            out.append(Mutation(f"{where} negative", _set(path, -draw(st.floats(0.001, 1e6))), "out_of_range"))
        out.append(Mutation(f"{where}=NaN", _set(path, "__NAN__"), "invalid_json",
                            raw=lambda raw: raw.replace(b'"__NAN__"', b"NaN")))
        out.append(Mutation(f"{where}=-Infinity", _set(path, "__INF__"), "invalid_json",
                            raw=lambda raw: raw.replace(b'"__INF__"', b"-Infinity")))
    elif isinstance(info, msgspec.inspect.LiteralType):
        unknown = draw(st.text(min_size=0, max_size=20).filter(lambda v: v not in info.values))
        out.append(Mutation(f"{where} unknown enum value", _set(path, unknown), "out_of_range"))
        out.append(Mutation(f"{where} enum as int", _set(path, draw(st.integers())), "wrong_type"))
    return out


def payload_mutations(event: Event, document: Doc, draw: st.DrawFn) -> list[Mutation]:
    cls = EVENT_TYPES[event.event_type][0]
    out: list[Mutation] = []
    for field in msgspec.inspect.type_info(cls).fields:
        path = ("data", field.name)
        original = document["data"].get(field.name)
        if field.required:
            out.append(Mutation(f"data.{field.name} deleted", _delete(path), "missing_field"))
        elif field.name in document["data"]:
            out.append(Mutation(f"optional data.{field.name} deleted", _delete(path), "__changes__"))
        out += _type_mutations(path, field.type, original, draw)
    if event.event_type == "survey.answered":
        low, high = SURVEY_SCORE_RANGE[document["data"]["survey"]]
        score = draw(st.sampled_from([low - 1, high + 1, -(2**40), 2**40]))
        out.append(Mutation("score off its survey's scale", _set(("data", "score"), score), "out_of_range"))
    return [m for m in out if m.reason != "__changes__"]


ENVELOPE_STR_FIELDS = ("event_id", "event_type", "occurred_at", "customer_id", "source")


def envelope_mutations(draw: st.DrawFn) -> list[Mutation]:
    out: list[Mutation] = []
    for field in (*ENVELOPE_STR_FIELDS, "schema_version", "data"):
        out.append(Mutation(f"{field} deleted", _delete((field,)), "missing_field"))
    for field in ENVELOPE_STR_FIELDS:
        out.append(Mutation(f"{field} not a string", _set((field,), draw(st.sampled_from((None, *WRONG_FOR_STR)))),
                            "wrong_type"))
    for field in ("event_id", "customer_id"):
        out.append(Mutation(f"{field} empty", _set((field,), ""), "out_of_range"))
        out.append(Mutation(f"{field} too long", _set((field,), "x" * draw(st.integers(129, 400))), "out_of_range"))
    out += [
        Mutation("schema_version not an int", _set(("schema_version",), draw(st.sampled_from(
            ["1", 1.0, True, None, [1], {"v": 1}]))), "wrong_type"),
        Mutation("future or past schema_version", _set(("schema_version",), draw(
            st.integers(-(2**62), 2**62).filter(lambda v: v != 1))), "unsupported_schema_version"),
        Mutation("unknown event_type", _set(("event_type",), draw(st.text(max_size=30).filter(
            lambda v: v not in EVENT_TYPES))), "unknown_event_type"),
        Mutation("occurred_at not RFC 3339", _set(("occurred_at",), draw(st.sampled_from([
            "2026-11-01 10:00:00", "2026-11-01T10:00:00", "2026-13-01T10:00:00Z", "2026-02-30T10:00:00Z",
            "2026-11-01T24:00:00Z", "1793527200000", "", "yesterday", LONG]))), "bad_timestamp"),
        Mutation("occurred_at outside 1970..2200", _set(("occurred_at",), draw(st.sampled_from([
            "0001-01-01T00:00:00Z", "1969-12-31T23:59:59.999Z", "2200-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z", "1970-01-01T00:30:00+01:00"]))), "bad_timestamp"),
        Mutation("data not an object", _set(("data",), draw(st.sampled_from([[], "x", 1, None, True]))),
                 "wrong_type"),
    ]
    return out


def syntax_mutations(draw: st.DrawFn) -> list[Mutation]:
    cut = draw(st.floats(0.0, 0.999))
    depth = draw(st.integers(2_000, 6_000))
    return [
        # at least the opening brace stays: cut to nothing, then followed by trailing data,
        # the line is a whole JSON object (missing_field, not invalid_json)
        Mutation("truncated", _noop, "invalid_json", raw=lambda raw: raw[: max(1, int(len(raw) * cut))]),
        Mutation("trailing data", _noop, "invalid_json", raw=lambda raw: raw + b' {"again": 1}'),
        Mutation("not UTF-8", _set(("source",), "__BYTES__"), "invalid_json",
                 raw=lambda raw: raw.replace(b"__BYTES__", b"\xc3\x28")),
        Mutation("nested too deep", _set(("deep",), "__DEEP_ARRAY__"), "invalid_json",
                 raw=lambda raw: raw.replace(b'"__DEEP_ARRAY__"', b"[" * depth + b"]" * depth)),
        # after the edits that insert keys right after the document's opening brace
        Mutation("wrapped in an array", _noop, "not_an_object", raw=lambda raw: b"[" + raw + b"]", order=2),
        # stricter than json.loads: every occurrence of a duplicated key is validated
        Mutation("earlier duplicate key of the wrong type", _noop, "wrong_type",
                 raw=lambda raw: b'{"customer_id":7,' + raw[1:], touches=("customer_id",)),
        # last: an edit after the padding (truncation) could make the message small again
        Mutation("too large", _noop, "too_large", raw=lambda raw: raw + b" " * (1_048_577 - len(raw)), order=3),
    ]


def _escaped(value: object) -> str:
    """JSON with every character of every string (keys too) written as a \\u escape."""
    if isinstance(value, str):
        return '"' + "".join(f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else json.dumps(c)[1:-1] for c in value) + '"'
    if isinstance(value, dict):
        return "{" + ",".join(f"{_escaped(k)}:{_escaped(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_escaped(v) for v in value) + "]"
    return json.dumps(value)


def _reshaper(rewrite: Callable[[dict], bytes]) -> Callable[[bytes], bytes]:
    """A whole-document rewrite (runs before every other byte-level edit)."""
    return lambda raw: rewrite(json.loads(raw))


def neutral_mutations(draw: st.DrawFn) -> list[Mutation]:
    extra = draw(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                              lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                              max_leaves=10))
    depth = draw(st.integers(1, 60))
    indent = draw(st.integers(0, 4))
    return [
        Mutation("unknown envelope field", _set(("x_unknown",), extra), ACCEPTED, touches=("x_unknown",)),
        Mutation("unknown payload field", _set(("data", "x_unknown"), extra), ACCEPTED, touches=("data.x_unknown",)),
        Mutation("unknown field nested 60 deep", _set(("x_deep",), "__DEEP_OBJECT__"), ACCEPTED,
                 touches=("x_deep",),  # (each placeholder its own: both may be drawn together)
                 raw=lambda raw: raw.replace(b'"__DEEP_OBJECT__"', b'{"a":' * depth + b"1" + b"}" * depth)),
        Mutation("pretty-printed", _noop, ACCEPTED, order=0,
                 raw=_reshaper(lambda doc: json.dumps(doc, indent=indent, ensure_ascii=False).encode())),
        Mutation("keys reversed", _noop, ACCEPTED, order=0,
                 raw=_reshaper(lambda doc: json.dumps(dict(reversed(doc.items())), ensure_ascii=False).encode())),
        Mutation("every character escaped", _noop, ACCEPTED, order=0,
                 raw=_reshaper(lambda doc: _escaped(doc).encode())),
        Mutation("duplicate key, last wins", _noop, ACCEPTED,
                 raw=lambda raw: b'{"event_id":"decoy","customer_id":"decoy",' + raw[1:],
                 touches=("event_id", "customer_id")),
    ]


# --------------------------------------------------------------------------- the fuzz tests


def serialise(document: Doc, mutations: list[Mutation]) -> bytes:
    raw = json.dumps(document, ensure_ascii=False, allow_nan=False).encode()
    for mutation in sorted(mutations, key=lambda m: m.order):
        if mutation.raw is not None:
            raw = mutation.raw(raw)
    return raw


def check_contract(raw: bytes) -> Event | Rejected:
    result = decode_event(raw)
    assert isinstance(result, Event | Rejected)
    if isinstance(result, Rejected):
        assert 0 < len(result.detail) <= MAX_DETAIL_CHARS
        assert LONG not in result.detail and "x" * 129 not in result.detail  # values are clipped
    else:
        assert decode_event(encode_event(result)) == result
        assert all(isinstance(v, float) and math.isfinite(v) or not isinstance(v, float)
                   for v in msgspec.structs.asdict(result.data).values())
    return result


@st.composite
def mutated(draw: st.DrawFn, count: int) -> tuple[Event, list[Mutation], bytes]:
    event = draw(events())
    document = json.loads(encode_event(event))
    catalogue = (payload_mutations(event, document, draw) + envelope_mutations(draw) + syntax_mutations(draw)
                 + neutral_mutations(draw))
    chosen: list[Mutation] = []
    for _ in range(count):
        mutation = draw(st.sampled_from(catalogue))
        chosen.append(mutation)
    # a whole-document rewrite would undo the placeholders other byte-level edits look for
    assume(not (any(m.order == 0 for m in chosen) and sum(m.raw is not None for m in chosen) > 1))
    touched: set[str] = set()
    for mutation in chosen:
        # two edits of one field: the last one wins and there is no oracle
        assume(not (mutation.fields() & touched))
        touched |= mutation.fields()
        try:
            mutation.apply(document)
        except (KeyError, TypeError):  # an earlier mutation removed or replaced the parent
            assume(False)
    return event, chosen, serialise(document, chosen)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(mutated(1))
def test_one_structural_mutation_gives_exactly_its_reason(case) -> None:
    event, (mutation,), raw = case
    result = check_contract(raw)
    note(mutation.reason)
    if mutation.reason == ACCEPTED:
        assert result == event, (mutation.name, raw[:300])
    else:
        assert isinstance(result, Rejected), (mutation.name, raw[:300])
        assert result.reason.value == mutation.reason, (mutation.name, result, raw[:300])


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(mutated(2))
def test_two_mutations_give_one_of_their_reasons(case) -> None:
    event, mutations, raw = case
    result = check_contract(raw)
    expected = {m.reason for m in mutations} - {ACCEPTED}
    if not expected:
        assert result == event, ([m.name for m in mutations], raw[:300])
        return
    assert isinstance(result, Rejected), ([m.name for m in mutations], raw[:300])
    if "too_large" in expected:
        expected = {"too_large"}  # checked before anything is parsed
    assert result.reason.value in expected, ([m.name for m in mutations], result, raw[:300])
    note(f"{'+'.join(sorted(m.reason for m in mutations))} -> {result.reason.value}")


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.integers(1, 2).flatmap(mutated))
def test_the_one_pass_decoder_only_accepts_what_the_checked_path_accepts(case) -> None:
    """``decode_event`` tries a one-pass decode first and falls back to the ordered
    checks; the shortcut may decline anything, but what it returns must be exactly what
    the checked path returns for the same bytes."""
    _, _, raw = case
    checked = _decode_checked(raw, DEFAULT_MAX_BYTES)
    if not (raw.isascii() and len(raw) <= DEFAULT_MAX_BYTES):  # decode_event's guard
        note("not offered to the one-pass decoder")
        return
    fast = _decode_fast(raw)
    if fast is not None:
        assert fast == checked, raw[:300]
    elif isinstance(checked, Event):
        note("one-pass decoder declined a valid event")  # allowed, but counted


@settings(max_examples=200, deadline=None)
@given(events())
def test_the_one_pass_decoder_takes_every_valid_event(event: Event) -> None:
    """The shortcut is the hot path: a valid event (as the codec writes it) must not
    fall through to the slower checked decode."""
    assert _decode_fast(encode_event(event)) == event
