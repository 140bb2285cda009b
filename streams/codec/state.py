"""Binary (msgpack) forms of what travels between the stages and into the changelogs:

* partial batches and watermark markers on the internal partials topic;
* stage-1 state: customer and ticket states, and the task's meta record;
* stage-2 state: merger buckets, published revisions and per-spec metadata.

Everything here is a pure function of its input; tests round-trip each form.
"""

from __future__ import annotations

import array
from collections.abc import Iterable
from typing import Any

import msgspec

from streams.core.aggregates import Distinct, decode_partial, encode_partial, packed_bytes
from streams.core.customer_state import CustomerState
from streams.core.merge import SpecMeta
from streams.core.partials import PartialKey
from streams.core.records import Dims
from streams.core.sla import SlaClock, SlaPolicies
from streams.core.ticket_state import SlaSlot, TicketState

_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder()
_customer_dec = msgspec.msgpack.Decoder(CustomerState)


def _dims(raw: Any) -> Dims:
    return tuple((str(name), str(value)) for name, value in raw)


def _fingerprint(raw: Any) -> tuple:
    value, n, stats = raw
    return (value, n, tuple((key, val) for key, val in stats))


# --- stage 1 -> stage 2 ----------------------------------------------------------------------


class Marker(msgspec.Struct, frozen=True, array_like=True):
    """A stage-1 task's progress: all its input up to ``watermark`` is in the partials
    that precede this marker on every partials partition."""

    task: int
    watermark: int
    idle: bool
    tasks: int  # number of stage-1 tasks (input partitions) in total
    catching_up: bool = False  # more than a batch of the task's input waited when it committed


def encode_partials(task: int, aggs: dict[PartialKey, object]) -> bytes:
    items = []
    for (base, dims, pane), agg in aggs.items():
        kind, wire = encode_partial(agg)
        items.append((base, dims, pane, kind, wire))
    return _enc.encode({"p": task, "a": items})


def encode_marker(marker: Marker) -> bytes:
    return _enc.encode({"m": [marker.task, marker.watermark, marker.idle, marker.tasks, marker.catching_up]})


class _StageMessage(msgspec.Struct, gc=False):
    """The wire form of either message, decoded typed: keys and dims arrive as the
    tuples and strings they are used as, with no per-partial conversion."""

    p: int | None = None
    a: list[tuple[str, tuple[tuple[str, str], ...], int, str, Any]] | None = None
    m: Marker | None = None  # (older markers: four fields, catching_up defaults)


_stage_dec = msgspec.msgpack.Decoder(_StageMessage)


def decode_stage_message(raw: bytes) -> tuple[int, dict[PartialKey, object]] | Marker:
    """A partials batch ``(task, aggs)`` or a :class:`Marker`. Raises ValueError if malformed."""
    try:
        message = _stage_dec.decode(raw)
        if message.m is not None:
            return message.m
        if message.p is None or message.a is None:
            raise ValueError("neither a partials batch nor a marker")
        return message.p, {(base, dims, pane): decode_partial(kind, wire) for base, dims, pane, kind, wire in message.a}
    except (msgspec.DecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed stage message: {exc}") from None


# --- stage-1 state ------------------------------------------------------------------------------


def encode_customer(state: CustomerState, ids: bool = True) -> bytes:
    """The customer's changelog record; ``ids=False`` leaves out its dedupe ids (``seen``:
    they are in chunks of their own, see :class:`streams.core.chunks.IdChunks`)."""
    if ids:
        return _enc.encode(state)
    seen = state.seen
    state.seen = {}  # an empty dict is the default: left out of the record
    try:
        return _enc.encode(state)
    finally:
        state.seen = seen


def decode_customer(raw: bytes) -> CustomerState:
    state = _customer_dec.decode(raw)
    # msgpack has no tuples: restore the tuple-typed fields
    if state.orders is not None:
        state.orders = {k: tuple(v) for k, v in state.orders.items()}
    return state


_ids_dec = msgspec.msgpack.Decoder(dict[str, int])


def encode_ids(ids: dict[str, int]) -> bytes:
    """A chunk of a customer's dedupe ids: event id -> event time, in the order applied."""
    return _enc.encode(ids)


def decode_ids(raw: bytes) -> dict[str, int]:
    return _ids_dec.decode(raw)


_SLOT_FIELDS = ("first_reply_sla", "resolution_sla")


def encode_ticket(ticket: TicketState) -> bytes:
    fields = msgspec.structs.asdict(ticket)
    for name in _SLOT_FIELDS:
        slot = fields[name]
        if slot is not None:
            fields[name] = {"clock": slot.clock.to_wire(), "state": slot.state, "token": slot.token}
    return _enc.encode(fields)


def decode_ticket(raw: bytes, policies: SlaPolicies) -> TicketState:
    fields = _dec.decode(raw)
    calendar = policies[fields["priority"]].calendar if fields.get("priority") in policies else None
    for name in _SLOT_FIELDS:
        slot = fields.get(name)
        if slot is not None:
            if calendar is None:
                raise ValueError(f"ticket {fields.get('ticket_id')!r} has an SLA clock but no priority")
            fields[name] = SlaSlot(SlaClock.from_wire(slot["clock"], calendar), slot["state"], slot["token"])
    return TicketState(**fields)


class TaskMeta(msgspec.Struct):
    """Stage-1 task progress stored with its state, in the same transaction.

    ``positions``: per input slot, the next offset to consume at checkpoint time;
    ``resume``: per input slot, where to start reading after a restart (the lowest
    offset still only buffered); ``applied_until_ms``: event time up to which every
    accepted event was applied - input between ``resume`` and ``positions`` with a
    later event time was buffered and must be offered again, the rest is skipped.
    """

    applied_until_ms: int
    max_event_ms: int
    positions: dict[int, int]
    resume: dict[int, int]
    slot_max: dict[int, int] = {}
    labels: dict[str, list[str]] = {}  # label values kept by the task's LabelLimiter


_meta_dec = msgspec.msgpack.Decoder(TaskMeta)


def encode_meta(meta: TaskMeta) -> bytes:
    return _enc.encode(meta)


def decode_meta(raw: bytes) -> TaskMeta:
    return _meta_dec.decode(raw)


# --- stage-2 state ---------------------------------------------------------------------------------


def encode_bucket(agg: object) -> bytes:
    return _enc.encode(encode_partial(agg))


def encode_distinct_chunk(members: Iterable[int]) -> bytes:
    """A changelog chunk of a distinct-count bucket from its members in any order (the
    bucket is the union of its chunks, read back as a set); sorted, the same bytes as
    ``encode_bucket(Distinct(set(members)))``."""
    return encode_distinct_packed(array.array("Q", members))


def encode_distinct_packed(packed: array.array) -> bytes:
    """:func:`encode_distinct_chunk` of members already packed as native 64-bit ints
    (the runtime packs a big chunk in slices); ``packed`` is byte-swapped in place."""
    return _enc.encode((Distinct.kind, packed_bytes(packed)))


def decode_bucket(raw: bytes) -> object:
    kind, wire = _dec.decode(raw)
    return decode_partial(kind, wire)


def encode_published(entry: tuple[int, tuple]) -> bytes:
    revision, (value, n, stats) = entry
    return _enc.encode((revision, (value, n, list(stats))))


def decode_published(raw: bytes) -> tuple[int, tuple]:
    revision, fingerprint = _dec.decode(raw)
    return int(revision), _fingerprint(fingerprint)


def encode_spec_meta(meta: SpecMeta) -> bytes:
    return _enc.encode(tuple(meta))


def decode_spec_meta(raw: bytes) -> SpecMeta:
    index, known, finalized, dirty, level_base = _dec.decode(raw)
    return SpecMeta(index, known, finalized, dirty, [(b, _dims(d), v) for b, d, v in level_base])


def encode_plain(value: Any) -> bytes:
    return _enc.encode(value)


def decode_plain(raw: bytes) -> Any:
    return _dec.decode(raw)
