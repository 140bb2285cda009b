"""Dead-letter records for ``crm.dlq.v1``: a rejected message with why and where it came from.

The record keeps the original bytes exactly (base64 in JSON), so a fixed producer or a
replay tool can re-submit them unchanged.
"""

from __future__ import annotations

from typing import Final

import msgspec

from streams.codec.events import Rejected
from streams.codec.reasons import Reason


class DlqRecord(msgspec.Struct, frozen=True, gc=False):
    """One rejected input message, as published on the dead-letter topic."""

    reason: Reason
    detail: str
    topic: str
    partition: int
    offset: int
    key: str | None  # the message key as UTF-8 text (undecodable bytes replaced)
    original: bytes  # the message value exactly as received; base64 in JSON
    rejected_at_ms: int  # wall-clock time of the rejection, epoch ms


_ENCODER: Final = msgspec.json.Encoder()
_DECODER: Final = msgspec.json.Decoder(DlqRecord)


def dlq_record(
    rejected: Rejected,
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    original: bytes,
    rejected_at_ms: int,
) -> DlqRecord:
    """Build the dead-letter record for a message the codec rejected."""
    return DlqRecord(
        reason=rejected.reason,
        detail=rejected.detail,
        topic=topic,
        partition=partition,
        offset=offset,
        key=None if key is None else key.decode("utf-8", errors="replace"),
        original=bytes(original),
        rejected_at_ms=rejected_at_ms,
    )


def encode_dlq(record: DlqRecord) -> bytes:
    """JSON bytes of a dead-letter record."""
    return _ENCODER.encode(record)


def decode_dlq(raw: bytes) -> DlqRecord:
    """Parse a dead-letter record; raises ``msgspec.DecodeError`` if it is not one."""
    return _DECODER.decode(raw)
