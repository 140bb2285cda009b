"""Mergeable partial aggregates: what stage 1 folds events into and stage 2 merges.

Every aggregate is a small mutable object with the same interface:

* ``add(...)`` — fold one measurement in;
* ``merge(other)`` — fold another partial of the same kind in, **in place and exactly**
  (integer additions, set unions, min/max): the result is identical, bit for bit, for
  any split of the inputs and any merge order (associative and commutative);
* ``to_wire()`` / ``from_wire(data)`` — a deterministic plain form (ints, floats,
  strings, bytes, None and lists only), so msgspec can ship it as msgpack or JSON;
* ``copy()``, ``__eq__``, and the result as properties or ``result()``.

:data:`AGGREGATE_KINDS` maps the wire ``kind`` to the class; :func:`encode_partial` /
:func:`decode_partial` are what a runtime uses to put partials on a topic.

KPI values are computed from the merged integers at the end (never by averaging
averages), which is why any merge order gives identical KPI records.
"""

from __future__ import annotations

import array
import base64
import binascii
import hashlib
import math
import sys
from typing import Any, ClassVar, Final

import msgspec

from streams.core.sketch import QuantileSketch

Sketch = QuantileSketch
"""Quantile sketch of durations (and other non-negative values); wire kind ``sketch``."""


def _convert(data: Any, type_: Any, kind: str) -> Any:
    """Validate a wire payload; malformed input raises ``ValueError`` naming the kind."""
    try:
        return msgspec.convert(data, type_)
    except msgspec.ValidationError as exc:
        raise ValueError(f"{kind} wire: {exc}") from None


def _wire_int(data: Any, kind: str) -> int:
    """An int payload: the common case (a plain int) without msgspec's general path."""
    return data if type(data) is int else _convert(data, int, kind)


def _check_int(value: object, what: str) -> int:
    """``value`` if it is an int and not a bool. The ``add`` methods that call this take
    ``object``, not ``int``: compiled (streams.core.native), an ``int`` parameter would
    already have turned ``True`` into ``1``."""
    if type(value) is not int:  # bool is an int subclass but never a valid amount
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    return value  # type: ignore[return-value]


# -- counters ----------------------------------------------------------------------------
class Count:
    """Number of occurrences (non-negative)."""

    kind: ClassVar[str] = "count"
    __slots__ = ("n",)

    def __init__(self, n: int = 0) -> None:
        self.n = n

    def add(self, k: object = 1) -> None:
        """Count ``k`` more occurrences (``k >= 0``)."""
        n = _check_int(k, "count increment")
        if n < 0:
            raise ValueError(f"count increment must be >= 0, got {k}")
        self.n += n

    def merge(self, other: Count) -> None:
        """Add ``other``'s count."""
        self.n += other.n

    def to_wire(self) -> int:
        """Wire form: the count as an int."""
        return self.n

    @classmethod
    def from_wire(cls, data: Any) -> Count:
        """Inverse of :meth:`to_wire`."""
        n = _wire_int(data, cls.kind)
        if n < 0:
            raise ValueError(f"count wire: negative count {n}")
        return cls(n)

    def copy(self) -> Count:
        """Independent copy."""
        return Count(self.n)

    def __eq__(self, other: object) -> bool:
        return self.n == other.n if isinstance(other, Count) else NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Count({self.n})"


class Sum:
    """Sum of integer amounts — money in minor units (currency is a KPI dimension)."""

    kind: ClassVar[str] = "sum"
    __slots__ = ("total",)

    def __init__(self, total: int = 0) -> None:
        self.total = total

    def add(self, amount: object) -> None:
        """Add an integer ``amount`` (may be negative, e.g. a correction)."""
        self.total += _check_int(amount, "sum amount")

    def merge(self, other: Sum) -> None:
        """Add ``other``'s total."""
        self.total += other.total

    def to_wire(self) -> int:
        """Wire form: the total as an int (msgpack: within int64/uint64)."""
        return self.total

    @classmethod
    def from_wire(cls, data: Any) -> Sum:
        """Inverse of :meth:`to_wire`."""
        return cls(_wire_int(data, cls.kind))

    def copy(self) -> Sum:
        """Independent copy."""
        return Sum(self.total)

    def __eq__(self, other: object) -> bool:
        return self.total == other.total if isinstance(other, Sum) else NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Sum({self.total})"


class Level:
    """Signed change of a gauge within a pane (open tickets, active subscribers, MRR).

    The level at an instant is a base plus the deltas before it; merging adds deltas.
    """

    kind: ClassVar[str] = "level"
    __slots__ = ("delta",)

    def __init__(self, delta: int = 0) -> None:
        self.delta = delta

    def add(self, delta: object) -> None:
        """Apply a signed integer change."""
        self.delta += _check_int(delta, "level delta")

    def merge(self, other: Level) -> None:
        """Add ``other``'s delta."""
        self.delta += other.delta

    def to_wire(self) -> int:
        """Wire form: the delta as an int."""
        return self.delta

    @classmethod
    def from_wire(cls, data: Any) -> Level:
        """Inverse of :meth:`to_wire`."""
        return cls(_wire_int(data, cls.kind))

    def copy(self) -> Level:
        """Independent copy."""
        return Level(self.delta)

    def __eq__(self, other: object) -> bool:
        return self.delta == other.delta if isinstance(other, Level) else NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Level({self.delta:+d})"


class Ratio:
    """Numerator and denominator counts of a rate; ``value`` is None when nothing was counted."""

    kind: ClassVar[str] = "ratio"
    __slots__ = ("numerator", "denominator")

    def __init__(self, numerator: int = 0, denominator: int = 0) -> None:
        self.numerator = numerator
        self.denominator = denominator

    def add(self, numerator: object, denominator: object = 1) -> None:
        """Add to both counts, e.g. ``add(1 if met else 0)`` for a hit rate."""
        self.numerator += _check_int(numerator, "ratio numerator")
        self.denominator += _check_int(denominator, "ratio denominator")

    def merge(self, other: Ratio) -> None:
        """Add ``other``'s counts."""
        self.numerator += other.numerator
        self.denominator += other.denominator

    @property
    def value(self) -> float | None:
        """numerator / denominator, or None when the denominator is 0."""
        return ratio_value(self.numerator, self.denominator)

    def to_wire(self) -> list[int]:
        """Wire form: ``[numerator, denominator]``."""
        return [self.numerator, self.denominator]

    @classmethod
    def from_wire(cls, data: Any) -> Ratio:
        """Inverse of :meth:`to_wire`."""
        numerator, denominator = _convert(data, tuple[int, int], cls.kind)
        return cls(numerator, denominator)

    def copy(self) -> Ratio:
        """Independent copy."""
        return Ratio(self.numerator, self.denominator)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ratio):
            return NotImplemented
        return (self.numerator, self.denominator) == (other.numerator, other.denominator)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Ratio({self.numerator}/{self.denominator})"


def ratio_value(numerator: int, denominator: int) -> float | None:
    """``numerator / denominator`` (one correctly rounded division), None if denominator is 0."""
    return numerator / denominator if denominator else None


# -- surveys -----------------------------------------------------------------------------
SURVEY_SCALES: Final[dict[str, tuple[int, int]]] = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}
"""Score range (inclusive) of each survey kind (catalogue §2, ``survey.answered``)."""

Z_95: Final = 1.96


def nps_result(promoters: int, passives: int, detractors: int, min_sample: int) -> dict[str, Any]:
    """NPS from the three counts (catalogue §3.4), never from averaged scores.

    ``value = 100 * (promoters - detractors) / n`` in ``[-100, 100]`` and the 95% margin
    of error ``1.96 * 100 * sqrt((p + d - (p - d)^2) / n)`` with ``p``, ``d`` the
    promoter/detractor shares, computed as ``196 * sqrt(((P + D) * n - (P - D)^2) / n^3)``
    from the integer counts so the result does not depend on how they were summed.
    ``suppressed`` is true when ``n < min_sample``; with ``n == 0`` value and margin are None.
    """
    n = promoters + passives + detractors
    if n:
        value: float | None = 100 * (promoters - detractors) / n
        spread = (promoters + detractors) * n - (promoters - detractors) ** 2
        margin: float | None = Z_95 * 100 * math.sqrt(spread / n**3)
    else:
        value = margin = None
    return {
        "value": value,
        "n": n,
        "promoters": promoters,
        "passives": passives,
        "detractors": detractors,
        "margin_of_error": margin,
        "suppressed": n < min_sample,
    }


def csat_result(satisfied: int, responses: int, min_sample: int) -> dict[str, Any]:
    """CSAT: share of responses scoring 4–5 (``satisfied``) among all csat ``responses``."""
    return {
        "value": ratio_value(satisfied, responses),
        "n": responses,
        "satisfied": satisfied,
        "suppressed": responses < min_sample,
    }


def ces_result(low_effort: int, responses: int, min_sample: int) -> dict[str, Any]:
    """CES: share of responses scoring 5–7 (``low_effort``) among all ces ``responses``."""
    return {
        "value": ratio_value(low_effort, responses),
        "n": responses,
        "low_effort": low_effort,
        "suppressed": responses < min_sample,
    }


class Survey:
    """Response counts per score for one survey kind (``nps`` 0–10, ``csat`` 1–5, ``ces`` 1–7)."""

    kind: ClassVar[str] = "survey"
    __slots__ = ("survey", "counts")

    def __init__(self, survey: str, counts: list[int] | None = None) -> None:
        if survey not in SURVEY_SCALES:
            raise ValueError(f"unknown survey kind {survey!r} (expected nps, csat or ces)")
        low, high = SURVEY_SCALES[survey]
        self.survey = survey
        self.counts = list(counts) if counts is not None else [0] * (high - low + 1)
        if len(self.counts) != high - low + 1:
            raise ValueError(f"{survey} needs {high - low + 1} score counts, got {len(self.counts)}")

    @property
    def low(self) -> int:
        """Lowest score of this survey kind."""
        return SURVEY_SCALES[self.survey][0]

    def add(self, score: object, count: object = 1) -> None:
        """Count ``count`` responses with ``score`` (must be on the survey's scale)."""
        low, high = SURVEY_SCALES[self.survey]
        if type(score) is not int or not low <= score <= high:
            raise ValueError(f"{self.survey} score must be an int in [{low}, {high}], got {score!r}")
        n = _check_int(count, "survey count")
        if n < 0:
            raise ValueError(f"survey count must be >= 0, got {count}")
        self.counts[score - low] += n

    def merge(self, other: Survey) -> None:
        """Add ``other``'s counts (same survey kind only)."""
        if other.survey != self.survey:
            raise ValueError(f"cannot merge {other.survey} responses into {self.survey}")
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]

    @property
    def n(self) -> int:
        """Number of responses."""
        return sum(self.counts)

    def count_between(self, low_score: int, high_score: int) -> int:
        """Responses scoring in ``[low_score, high_score]``."""
        low = self.low
        return sum(self.counts[low_score - low : high_score - low + 1])

    def result(self, min_sample: int) -> dict[str, Any]:
        """The survey's KPI (value, n, counts, suppressed; NPS adds the margin of error)."""
        if self.survey == "nps":
            return nps_result(
                self.count_between(9, 10), self.count_between(7, 8), self.count_between(0, 6), min_sample
            )
        if self.survey == "csat":
            return csat_result(self.count_between(4, 5), self.n, min_sample)
        return ces_result(self.count_between(5, 7), self.n, min_sample)

    def to_wire(self) -> list[Any]:
        """Wire form: ``[survey, [count per score, lowest score first]]``."""
        return [self.survey, list(self.counts)]

    @classmethod
    def from_wire(cls, data: Any) -> Survey:
        """Inverse of :meth:`to_wire`."""
        survey, counts = _convert(data, tuple[str, list[int]], cls.kind)
        if any(c < 0 for c in counts):
            raise ValueError("survey wire: negative count")
        return cls(survey, counts)

    def copy(self) -> Survey:
        """Independent copy."""
        return Survey(self.survey, self.counts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Survey):
            return NotImplemented
        return self.survey == other.survey and self.counts == other.counts

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Survey({self.survey!r}, {self.counts})"


# -- distinct ----------------------------------------------------------------------------
_LITTLE_ENDIAN: Final = sys.byteorder == "little"
assert array.array("Q").itemsize == 8


# an empty BLAKE2b-64 state: copying it skips the constructor's keyword parsing (a third
# of member_hash's cost, which runs for about every event)
_BLAKE2B_64: Final = hashlib.blake2b(digest_size=8)


def member_hash(member: str) -> int:
    """Stable 64-bit id of a string: the 8-byte BLAKE2b digest, big-endian, unsigned.

    Identical in every process and platform (unlike ``hash()``, which is salted).
    """
    state = _BLAKE2B_64.copy()
    state.update(member.encode())
    return int.from_bytes(state.digest(), "big")


def packed_hashes(ordered: list[int]) -> bytes:
    """A :class:`Distinct` set's wire form from its members sorted ascending."""
    return packed_bytes(array.array("Q", ordered))


def packed_bytes(packed: array.array) -> bytes:
    """Members packed as native 64-bit ints, as wire bytes (big-endian; ``packed`` is
    byte-swapped in place). Their order is kept: :meth:`Distinct.to_wire` sorts them,
    changelog chunks (streams.core.chunks) need not be."""
    if _LITTLE_ENDIAN:
        packed.byteswap()
    return packed.tobytes()


class Distinct:
    """Exact distinct count of string ids (customers), kept as 64-bit hashes.

    Merge is set union. Two different ids collide with probability 2^-64; among ``k``
    ids the chance of any collision is about ``k^2 / 2^65`` (1e-8 for a million ids),
    and a collision undercounts by one. Memory is ~60–80 bytes per id in a Python set
    (a 36-byte int plus the set slot; 78 measured at 100k ids) and ~9 bytes per id in
    msgpack, so a window with 100k active customers costs ~8 MB; far beyond that a
    HyperLogLog would be the next step (catalogue §3.6 allows a sketch there).
    """

    kind: ClassVar[str] = "distinct"
    __slots__ = ("members",)

    def __init__(self, members: set[int] | None = None) -> None:
        self.members: set[int] = members if members is not None else set()

    def add(self, member: str) -> None:
        """Count ``member`` (idempotent)."""
        self.members.add(member_hash(member))

    def merge(self, other: Distinct) -> None:
        """Union with ``other``."""
        self.members |= other.members

    def absorb(self, other: Distinct) -> set[int]:
        """Union with ``other``; returns the members that were new here (what stage 2
        appends to its changelog, see streams.core.chunks)."""
        new = other.members - self.members
        self.members |= new
        return new

    @property
    def count(self) -> int:
        """Number of distinct members."""
        return len(self.members)

    def to_wire(self) -> bytes:
        """Wire form: the sorted 64-bit hashes packed big-endian, 8 bytes each.

        Packed, because a window's distinct set holds one hash per active customer and
        every batch ships them: as bytes they cost nothing to encode and decode (a list
        of ints costs a Python object per hash on both sides)."""
        return packed_hashes(sorted(self.members))

    @classmethod
    def from_wire(cls, data: Any) -> Distinct:
        """Inverse of :meth:`to_wire`; also takes the hashes as a list of ints (the
        earlier wire form) or as base64 text (packed bytes that went through JSON)."""
        if isinstance(data, str):
            try:
                data = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("distinct wire: text is not base64") from None
        if isinstance(data, (bytes, bytearray, memoryview)):
            if len(data) % 8:
                raise ValueError(f"distinct wire: {len(data)} bytes is not a whole number of 64-bit hashes")
            packed = array.array("Q")
            packed.frombytes(data)
            if _LITTLE_ENDIAN:
                packed.byteswap()
            return cls(set(packed))
        hashes = _convert(data, list[int], cls.kind)
        if any(not 0 <= h < 2**64 for h in hashes):
            raise ValueError("distinct wire: hashes must be unsigned 64-bit ints")
        return cls(set(hashes))

    def copy(self) -> Distinct:
        """Independent copy."""
        return Distinct(set(self.members))

    def __eq__(self, other: object) -> bool:
        return self.members == other.members if isinstance(other, Distinct) else NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Distinct(count={self.count})"


# -- registry ----------------------------------------------------------------------------
Aggregate = Count | Sum | Level | Ratio | Survey | Distinct | QuantileSketch

AGGREGATE_KINDS: Final[dict[str, Any]] = {
    cls.kind: cls for cls in (Count, Sum, Level, Ratio, Survey, Distinct, QuantileSketch)
}
"""Wire kind -> aggregate class."""


def encode_partial(agg: Aggregate) -> tuple[str, Any]:
    """``(kind, wire)`` of an aggregate, ready for msgspec msgpack/JSON encoding."""
    kind = getattr(agg, "kind", None)
    if kind is None or AGGREGATE_KINDS.get(kind) is not type(agg):
        raise TypeError(f"not a registered aggregate: {type(agg).__name__}")
    return kind, agg.to_wire()


def decode_partial(kind: str, wire: Any) -> Aggregate:
    """Inverse of :func:`encode_partial`; ``ValueError`` on an unknown kind or bad payload."""
    cls = AGGREGATE_KINDS.get(kind)
    if cls is None:
        raise ValueError(f"unknown aggregate kind {kind!r}")
    return cls.from_wire(wire)
