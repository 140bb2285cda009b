"""Input messages (bytes) ⇄ typed :class:`~streams.core.events.Event` (catalogue §1–2).

:func:`decode_event` never raises: it returns an ``Event`` or a :class:`Rejected` whose
``reason`` is a :class:`~streams.codec.reasons.Reason`. Checks run in this order and the
first failing one decides the reason:

1. size: more than ``max_bytes`` bytes → ``too_large`` (nothing is parsed);
2. syntax: not UTF-8, malformed JSON, NaN/Infinity, trailing data, nesting deeper
   than the parser's recursion limit (~1000 levels) → ``invalid_json``;
3. the top-level value is not an object → ``not_an_object``;
4. envelope fields: a required one absent → ``missing_field``; wrong JSON type, including
   ``data`` not being an object → ``wrong_type``; ``event_id``/``customer_id`` empty or
   longer than 128 characters → ``out_of_range`` (the first problem in document order
   wins);
5. ``schema_version`` is an int other than 1 → ``unsupported_schema_version``;
6. ``event_type`` not in ``EVENT_TYPES`` → ``unknown_event_type``;
7. ``occurred_at`` not RFC 3339 with offset, or outside [1970-01-01, 2200-01-01) UTC →
   ``bad_timestamp``;
8. payload: ``missing_field`` / ``wrong_type`` / ``out_of_range`` as in step 4, then
   the survey score against its survey's scale → ``out_of_range``.

Other decisions written down here because the rest of the code relies on them:

- Unknown extra fields (envelope or payload) are accepted and dropped.
- Duplicate keys: the last occurrence wins (like ``json.loads`` and orjson).
- Integers must be JSON integers: ``1.0`` or ``true`` where an int is expected is
  ``wrong_type``. ``null`` for an optional payload field means "absent".
- ``Rejected.detail`` is ``"<JSON path>: <problem>"`` (e.g.
  ``"$.data.priority: Invalid enum value 'critical'"``), at most 200 characters; echoed
  input values are clipped to 40 characters, so the raw payload is never dumped.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Final, Union

import msgspec

from streams.codec.reasons import Reason
from streams.core.events import (
    EVENT_TYPES,
    SCHEMA_VERSION,
    SURVEY_SCORE_RANGE,
    Event,
    EventData,
    Id,
    SurveyAnswered,
)

DEFAULT_MAX_BYTES: Final = 1_048_576
"""Messages larger than this (1 MiB) are rejected as ``too_large`` unless configured."""

MIN_TS_MS: Final = 0
"""Earliest accepted event time: 1970-01-01T00:00:00Z."""

MAX_TS_MS: Final = 7_258_118_400_000
"""First event time no longer accepted: 2200-01-01T00:00:00Z."""

MAX_DETAIL_CHARS: Final = 200
_MAX_ECHO_CHARS: Final = 40
_OBJECT_START: Final = ord("{")
# JSON type of a value from its first byte (ints, as memoryview gives them), in msgspec's words
_KIND_BY_FIRST_BYTE: Final = dict(
    zip(b'["tfn', ("array", "str", "bool", "bool", "null"), strict=True)
)


class Rejected(msgspec.Struct, frozen=True, gc=False):
    """A message the codec refused: a machine-readable reason and a short human detail."""

    reason: Reason
    detail: str


class _Envelope(msgspec.Struct, gc=False):
    """The wire envelope; ``data`` stays raw until ``event_type`` picks its struct."""

    event_id: Id
    event_type: str
    schema_version: int
    occurred_at: str
    customer_id: Id
    source: str
    data: msgspec.Raw


def _typed_envelope(event_type: str, payload: type) -> type:
    """The envelope of one event type with its payload struct in place of the raw
    ``data``, tagged by ``event_type``: a union of all of them decodes a valid message
    in one pass (see :func:`_decode_fast`)."""
    return msgspec.defstruct(
        f"_Envelope_{event_type.replace('.', '_')}",
        [("event_id", Id), ("schema_version", int), ("occurred_at", str), ("customer_id", Id),
         ("source", str), ("data", payload)],
        tag_field="event_type", tag=event_type, gc=False,
    )


_TYPED_ENVELOPES: Final = {
    _typed_envelope(name, cls): name for name, (cls, _) in EVENT_TYPES.items()
}
_FAST_DECODER: Final = msgspec.json.Decoder(Union[tuple(_TYPED_ENVELOPES)])  # noqa: UP007 (a runtime union of classes)
_ENVELOPE_DECODER: Final = msgspec.json.Decoder(_Envelope)
_SYNTAX_CHECKER: Final = msgspec.json.Decoder(msgspec.Raw)
_PAYLOAD_DECODERS: Final = {
    name: msgspec.json.Decoder(cls) for name, (cls, _) in EVENT_TYPES.items()
}
_ENCODER: Final = msgspec.json.Encoder()

_WRONG_TYPE_MESSAGE: Final = re.compile(r"Expected `[^`]+`, got `[^`]+`")
_LOCATED_MESSAGE: Final = re.compile(r"(.*) - at `\$([^`]*)`", re.DOTALL)  # greedy: last "at"
_MAX_MESSAGE_CHARS: Final = 80  # msgspec messages are shorter unless they echo a value


# --- timestamps ------------------------------------------------------------------

# A timestamp is read in two parts: the minute ("YYYY-MM-DDThh:mm", whose epoch value
# is cached because consecutive events share it) and the rest (":ss", fraction, offset).
_MINUTE: Final = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([01][0-9]|2[0-3]):([0-5][0-9])")
_SECOND_FRACTION_OFFSET: Final = re.compile(
    r":([0-5][0-9]|60)(?:\.([0-9]{1,9}))?(?:[Zz]|([+-])([01][0-9]|2[0-3]):([0-5][0-9]))"
)
_MINUTE_CHARS: Final = 16
_NOT_RFC3339: Final = "not an RFC 3339 date-time with offset"
_EPOCH: Final = datetime(1970, 1, 1)
_EPOCH_ORDINAL: Final = _EPOCH.toordinal()


# Memo of the two parts, plain dicts (a hit is one lookup), each cleared when full.
_MINUTES_SEEN: Final[dict[str, int]] = {}
_WITHIN_SEEN: Final[dict[str, int]] = {}
_MAX_SEEN: Final = 65_536


def _minute_start_ms(minute: str) -> int:
    """Epoch ms of a ``YYYY-MM-DDThh:mm`` clock reading; ValueError if it is not one."""
    ms = _MINUTES_SEEN.get(minute)
    if ms is None:
        ms = _remember(_MINUTES_SEEN, minute, _parse_minute(minute))
    return ms


def _remember(seen: dict[str, int], text: str, ms: int) -> int:
    if len(seen) >= _MAX_SEEN:
        seen.clear()
    seen[text] = ms
    return ms


def _parse_minute(minute: str) -> int:
    match = _MINUTE.fullmatch(minute)
    if match is None:
        raise ValueError(_NOT_RFC3339)
    year, month, day, hour, minutes = map(int, match.groups())
    days = date(year, month, day).toordinal() - _EPOCH_ORDINAL  # ValueError: no such day
    return ((days * 24 + hour) * 60 + minutes) * 60_000


def parse_ts(text: str) -> int:
    """Parse an RFC 3339 date-time with offset into epoch milliseconds (floored).

    Accepts ``T``/``t``, ``Z``/``z`` or ``±hh:mm`` (``-00:00`` is UTC), up to 9 fraction
    digits and the leap second ``:60`` (counted as the next second, as POSIX time does).
    Raises ValueError for anything else or for times outside [1970-01-01, 2200-01-01) UTC.

    >>> parse_ts("2026-11-01T11:00:00.2509+01:00")
    1793527200250
    """
    try:
        within = _within_minute_ms(text[_MINUTE_CHARS:])  # (this problem is the one reported first)
        ms = _minute_start_ms(text[:_MINUTE_CHARS]) + within
    except ValueError as error:
        raise ValueError(f"{error}: {_echo(text)}") from None
    if not MIN_TS_MS <= ms < MAX_TS_MS:
        raise ValueError(f"outside [1970-01-01, 2200-01-01) UTC: {_echo(text)}")
    return ms


def format_ts(ms: int) -> str:
    """Epoch milliseconds → RFC 3339 UTC with milliseconds, e.g. ``2026-11-01T10:00:00.250Z``.

    Works for any time in years 1–9999 (OverflowError outside); :func:`parse_ts` only
    accepts [1970, 2200).
    """
    return (_EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds") + "Z"


def _within_minute_ms(rest: str) -> int:
    """Milliseconds that ``:ss[.fraction](Z|±hh:mm)`` adds to the minute's start (the
    offset subtracted); ValueError if it is not that. Memoised: a stream's timestamps
    repeat their second and fraction far more often than the whole reading."""
    ms = _WITHIN_SEEN.get(rest)
    if ms is None:
        ms = _remember(_WITHIN_SEEN, rest, _parse_within_minute(rest))
    return ms


def _parse_within_minute(rest: str) -> int:
    match = _SECOND_FRACTION_OFFSET.fullmatch(rest)
    if match is None:
        raise ValueError(_NOT_RFC3339)
    second, fraction, sign, offset_hour, offset_minute = match.groups()
    ms = int(second) * 1000
    if fraction is not None:
        ms += int(fraction[:3].ljust(3, "0"))
    if sign is not None:
        offset_ms = (int(offset_hour) * 60 + int(offset_minute)) * 60_000
        ms += -offset_ms if sign == "+" else offset_ms
    return ms


# --- decoding --------------------------------------------------------------------


def decode_event(raw: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Event | Rejected:
    """Decode and validate one input message; never raises (see the module doc for the order)."""
    if len(raw) <= max_bytes and raw.isascii():
        event = _decode_fast(raw)
        if event is not None:
            return event
    return _decode_checked(raw, max_bytes)


def _decode_fast(raw: bytes) -> Event | None:
    """A valid message in one pass: envelope and payload decoded together (a union of
    the event types' envelopes, tagged by ``event_type``), then the checks of steps 5, 7
    and 8. None when anything fails or looks odd: :func:`_decode_checked` then takes the
    message through the checks in their documented order and finds the reason. So this
    only ever returns what the checked path would (tests/unit/test_codec_fuzz.py
    compares the two on mutated messages)."""
    try:
        envelope = _FAST_DECODER.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        return None
    text = envelope.occurred_at
    # parse_ts, inlined, its two caches read directly (the common case is two hits)
    minute = _MINUTES_SEEN.get(text[:_MINUTE_CHARS])
    within = _WITHIN_SEEN.get(text[_MINUTE_CHARS:])
    if minute is None or within is None:
        try:
            occurred_at_ms = parse_ts(text)
        except ValueError:
            return None
    else:
        occurred_at_ms = minute + within
    data = envelope.data
    if (
        envelope.schema_version != SCHEMA_VERSION
        or not MIN_TS_MS <= occurred_at_ms < MAX_TS_MS
        or (type(data) is SurveyAnswered and not _on_scale(data))
    ):
        return None
    return Event(envelope.event_id, _TYPED_ENVELOPES[type(envelope)], occurred_at_ms, envelope.customer_id,
                 envelope.source, data, SCHEMA_VERSION)


def _on_scale(answer: SurveyAnswered) -> bool:
    low, high = SURVEY_SCORE_RANGE[answer.survey]
    return low <= answer.score <= high


def _decode_checked(raw: bytes, max_bytes: int) -> Event | Rejected:
    """Every check in the documented order (module doc): the path of messages that
    :func:`_decode_fast` declines, and the one that names a rejection's reason."""
    envelope = _decode_envelope(raw, max_bytes)
    if isinstance(envelope, Rejected):
        return envelope
    occurred_at_ms = _check_envelope(envelope)
    if isinstance(occurred_at_ms, Rejected):
        return occurred_at_ms
    data = _decode_payload(envelope)
    if isinstance(data, Rejected):
        return data
    return Event(
        event_id=envelope.event_id,
        event_type=envelope.event_type,
        occurred_at_ms=occurred_at_ms,
        customer_id=envelope.customer_id,
        source=envelope.source,
        data=data,
        schema_version=envelope.schema_version,
    )


def _decode_envelope(raw: bytes, max_bytes: int) -> _Envelope | Rejected:
    """Steps 1–4: size, syntax, top-level object, envelope fields and their types."""
    if len(raw) > max_bytes:
        return _reject(Reason.TOO_LARGE, f"$: message is {len(raw)} bytes, limit is {max_bytes}")
    if not raw.isascii():
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as error:
            return _reject(Reason.INVALID_JSON, f"$: not valid UTF-8 (byte {error.start})")
    try:
        return _ENVELOPE_DECODER.decode(raw)
    except msgspec.ValidationError as error:
        # msgspec stops at the first type error, before it has read the rest of the
        # document; syntax errors further on must still win (step 2 before step 3/4).
        return _syntax_problem(raw) or _from_validation_error(error, "$")
    except (msgspec.DecodeError, RecursionError) as error:
        return _invalid_json(error)


def _syntax_problem(raw: bytes) -> Rejected | None:
    """``invalid_json`` if the whole document is not well-formed JSON, else None."""
    try:
        _SYNTAX_CHECKER.decode(raw)
    except (msgspec.DecodeError, RecursionError) as error:
        return _invalid_json(error)
    return None


def _check_envelope(envelope: _Envelope) -> int | Rejected:
    """Steps 5–7; returns the event time in epoch ms.

    ``data`` not being an object is a step-4 type error; it is looked at only when a
    later check fails, because on the happy path the payload decoder reports it anyway.
    """
    if envelope.schema_version != SCHEMA_VERSION:
        problem = _reject(
            Reason.UNSUPPORTED_SCHEMA_VERSION,
            f"$.schema_version: {_echo(envelope.schema_version)} is not supported "
            f"(expected {SCHEMA_VERSION})",
        )
    elif envelope.event_type not in _PAYLOAD_DECODERS:
        problem = _reject(
            Reason.UNKNOWN_EVENT_TYPE, f"$.event_type: unknown type {_echo(envelope.event_type)}"
        )
    else:
        try:
            return parse_ts(envelope.occurred_at)
        except ValueError as error:
            problem = _reject(Reason.BAD_TIMESTAMP, f"$.occurred_at: {error}")
    first_byte = memoryview(envelope.data)[0]
    if first_byte != _OBJECT_START:
        kind = _KIND_BY_FIRST_BYTE.get(first_byte, "number")
        return _reject(Reason.WRONG_TYPE, f"$.data: Expected `object`, got `{kind}`")
    return problem


def _decode_payload(envelope: _Envelope) -> EventData | Rejected:
    """Step 8: decode ``data`` with the struct of its event type, then cross-field checks."""
    try:
        data = _PAYLOAD_DECODERS[envelope.event_type].decode(envelope.data)
    except msgspec.ValidationError as error:
        return _from_validation_error(error, "$.data")
    if isinstance(data, SurveyAnswered):
        return _check_survey_score(data)
    return data


def _check_survey_score(answer: SurveyAnswered) -> SurveyAnswered | Rejected:
    """The score must lie on its survey's scale (nps 0–10, csat 1–5, ces 1–7)."""
    low, high = SURVEY_SCORE_RANGE[answer.survey]
    if low <= answer.score <= high:
        return answer
    return _reject(
        Reason.OUT_OF_RANGE,
        f"$.data.score: {_echo(answer.score)} is outside {answer.survey} scale {low}..{high}",
    )


def _from_validation_error(error: msgspec.ValidationError, root: str) -> Rejected:
    """Map a msgspec validation message to a reason; ``root`` is the decoded value's path."""
    text = str(error)
    located = _LOCATED_MESSAGE.fullmatch(text)
    message, relative_path = located.groups() if located else (text, "")
    path = root + relative_path
    if message.startswith("Object missing required field"):
        reason = Reason.MISSING_FIELD
    elif _WRONG_TYPE_MESSAGE.fullmatch(message):
        is_top_level = path == "$" and message.startswith("Expected `object`")
        reason = Reason.NOT_AN_OBJECT if is_top_level else Reason.WRONG_TYPE
    else:  # constraints: lengths, bounds, patterns, enum values, numbers out of range
        reason = Reason.OUT_OF_RANGE
    return _reject(reason, f"{path}: {_clip(message, _MAX_MESSAGE_CHARS)}")


def _invalid_json(error: Exception) -> Rejected:
    if isinstance(error, RecursionError):
        return _reject(Reason.INVALID_JSON, "$: nesting too deep to parse")
    return _reject(Reason.INVALID_JSON, f"$: {error}")


def _reject(reason: Reason, detail: str) -> Rejected:
    return Rejected(reason, _clip(detail, MAX_DETAIL_CHARS))


def _echo(value: object) -> str:
    """An input value for a detail message (repr), clipped so payloads are never dumped."""
    return _clip(repr(value), _MAX_ECHO_CHARS)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- encoding --------------------------------------------------------------------


def encode_event(event: Event) -> bytes:
    """Canonical JSON message for an event; ``decode_event(encode_event(e)) == e``.

    Envelope fields in catalogue order, ``occurred_at`` via :func:`format_ts`, payload
    fields in struct order without the optional ones that are None.
    """
    return _ENCODER.encode(
        {
            "event_id": event.event_id,
            "event_type": event.event_type,
            "schema_version": event.schema_version,
            "occurred_at": format_ts(event.occurred_at_ms),
            "customer_id": event.customer_id,
            "source": event.source,
            "data": {
                name: value
                for name, value in msgspec.structs.asdict(event.data).items()
                if value is not None
            },
        }
    )
