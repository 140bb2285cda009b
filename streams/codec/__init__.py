"""Bytes ⇄ typed records at the edges of the pipeline.

Input events: :func:`decode_event` (never raises; returns an ``Event`` or a
:class:`Rejected`) and :func:`encode_event`. Rejections carry a :class:`Reason` and go
to the dead-letter topic as :class:`DlqRecord`.
"""

from streams.codec.dlq import DlqRecord, decode_dlq, dlq_record, encode_dlq
from streams.codec.events import (
    DEFAULT_MAX_BYTES,
    MAX_DETAIL_CHARS,
    MAX_TS_MS,
    MIN_TS_MS,
    Rejected,
    decode_event,
    encode_event,
    format_ts,
    parse_ts,
)
from streams.codec.partitioning import HomePartitions, default_partition, misrouted, murmur2
from streams.codec.reasons import REASON_DESCRIPTIONS, ROUTING_REASONS, Reason

__all__ = [
    "DEFAULT_MAX_BYTES",
    "MAX_DETAIL_CHARS",
    "MAX_TS_MS",
    "MIN_TS_MS",
    "REASON_DESCRIPTIONS",
    "ROUTING_REASONS",
    "DlqRecord",
    "HomePartitions",
    "Reason",
    "Rejected",
    "decode_dlq",
    "decode_event",
    "default_partition",
    "dlq_record",
    "encode_dlq",
    "encode_event",
    "format_ts",
    "misrouted",
    "murmur2",
    "parse_ts",
]
