"""One input message → an :class:`~streams.core.events.Event` or a dead-letter record.

:func:`route` is the decision every consumer of the input topics makes per message
(the streaming worker, the demo, the integration tests): decode and validate with
:func:`~streams.codec.decode_event`; an accepted message becomes an ``Event`` for the
core, a rejected one becomes the :class:`~streams.codec.DlqRecord` to publish on
``crm.dlq.v1``, carrying the original bytes and where they were read. It never raises:
bad input must not stop a stream (catalogue §1). Given the topic's partition count, a
valid event read from another partition than its customer's is dead-lettered as
``misrouted`` (:mod:`streams.codec.partitioning`), as the streaming worker does.
"""

from __future__ import annotations

from streams.codec.dlq import DlqRecord, dlq_record
from streams.codec.events import DEFAULT_MAX_BYTES, Rejected, decode_event
from streams.codec.partitioning import default_partition, misrouted
from streams.codec.reasons import Reason
from streams.core.events import Event

_EMPTY = b""


def route(
    raw: bytes | bytearray | memoryview | None,
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    now_ms: int,
    max_bytes: int = DEFAULT_MAX_BYTES,
    partitions: int | None = None,
) -> Event | DlqRecord:
    """Decode one message read from ``topic``/``partition`` at ``offset``.

    Returns the decoded ``Event``, or the ``DlqRecord`` for the dead-letter topic with the
    rejection reason, the source coordinates, the key and the original bytes;
    ``now_ms`` (wall clock, epoch ms) becomes its ``rejected_at_ms``. With ``partitions``
    (the topic's partition count) a valid event on another partition than its
    customer's is rejected as ``misrouted``; without it, the partition is not checked.

    Never raises. A ``None`` value (a Kafka tombstone) is treated as the empty message,
    which is ``invalid_json``. Should the codec itself fail on some input — a bug, since
    :func:`decode_event` is specified never to raise — the message is still dead-lettered
    (as ``invalid_json``, the detail naming the exception) rather than stopping the
    stream; the DLQ keeps the bytes, so it can be re-submitted once the codec is fixed.
    """
    original = _EMPTY if raw is None else bytes(raw)
    try:
        decoded = decode_event(original, max_bytes=max_bytes)
    except Exception as error:  # noqa: BLE001 - the stream must go on (see docstring)
        decoded = Rejected(Reason.INVALID_JSON, f"$: codec failure {type(error).__name__}")
    if not isinstance(decoded, Rejected):
        if partitions is None:
            return decoded
        home = default_partition(decoded.customer_id.encode(), partitions)
        if home == partition:
            return decoded
        decoded = misrouted(partition, home, partitions)
    return dlq_record(
        decoded,
        topic=topic,
        partition=partition,
        offset=offset,
        key=None if key is None else bytes(key),
        original=original,
        rejected_at_ms=now_ms,
    )
