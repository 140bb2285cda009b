"""Machine-readable reasons for rejecting an input message.

The value of each member is what travels in the dead-letter record's ``reason`` field
and in the ``reason`` label of ``crm_events_rejected_total``: a small, fixed set, so it
is safe as a Prometheus label. :data:`REASON_DESCRIPTIONS` holds the one-line
explanation used by docs and metric help text. All but :data:`ROUTING_REASONS` come from
the message bytes (:func:`~streams.codec.decode_event`); those come from where the
message was read (:mod:`streams.codec.partitioning`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Reason(StrEnum):
    """Why the codec rejected a message (catalogue §1)."""

    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
    OUT_OF_RANGE = "out_of_range"
    BAD_TIMESTAMP = "bad_timestamp"
    TOO_LARGE = "too_large"
    MISROUTED = "misrouted"

    @property
    def description(self) -> str:
        """One line saying what this reason means."""
        return REASON_DESCRIPTIONS[self]


REASON_DESCRIPTIONS: Final[dict[Reason, str]] = {
    Reason.INVALID_JSON: (
        "Not JSON: malformed syntax, not UTF-8, NaN/Infinity, trailing data, or nesting "
        "deeper than the parser allows."
    ),
    Reason.NOT_AN_OBJECT: "Valid JSON, but the top-level value is not an object.",
    Reason.MISSING_FIELD: "A required envelope or payload field is absent.",
    Reason.WRONG_TYPE: (
        "A field has the wrong JSON type (e.g. a string amount, `true` as schema_version, "
        "`data` not an object)."
    ),
    Reason.UNKNOWN_EVENT_TYPE: "`event_type` is not one of the types in catalogue §2.",
    Reason.UNSUPPORTED_SCHEMA_VERSION: "`schema_version` is an integer other than 1.",
    Reason.OUT_OF_RANGE: (
        "A value of the right type outside its allowed set: enum value, negative or too "
        "large amount, empty or over-long id, bad currency code, survey score outside its "
        "survey's scale."
    ),
    Reason.BAD_TIMESTAMP: (
        "`occurred_at` is not an RFC 3339 date-time with offset, or lies outside "
        "[1970-01-01, 2200-01-01) UTC."
    ),
    Reason.TOO_LARGE: "The message is larger than the configured limit (default 1 MiB).",
    Reason.MISROUTED: (
        "A valid event on another partition than its customer's (Kafka's default murmur2 "
        "partitioner on `customer_id`, the catalogue's key): sent without that key, with another "
        "key or to an explicit partition, it would split the customer's state and dedupe."
    ),
}

#: Reasons decided by where a message was read, not by its bytes: the codec alone never
#: gives them, and no example file in ``schemas/examples/invalid`` can show them.
ROUTING_REASONS: Final[frozenset[Reason]] = frozenset({Reason.MISROUTED})
