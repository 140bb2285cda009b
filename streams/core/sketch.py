"""Mergeable quantile sketch for non-negative durations (DDSketch-style).

Why this design
---------------
Catalogue §3.1 asks for p50/p90/p99 with at most 1% relative error, computed from
partials that stage 1 emits per partition, pane and worker and stage 2 merges in
whatever order they arrive. A DDSketch (Masson, Rim, Lee: "DDSketch: a fast and
fully-mergeable quantile sketch with relative-error guarantees", VLDB 2019) fits:

* a value ``v`` lands in bucket ``i = ceil(log(v) / log(gamma))`` with
  ``gamma = (1 + alpha) / (1 - alpha)``; bucket ``i`` covers ``(gamma^(i-1), gamma^i]``;
* the bucket's representative ``2 * gamma^i / (gamma + 1)`` is within relative error
  ``alpha`` of every value in the bucket, so any quantile is within ``alpha`` of the
  exact order statistic of the same rank (default ``alpha = 0.005``: 0.5%, half of the
  catalogue's 1% budget, leaving room for floating-point effects at bucket edges);
* bucket counts are integers, so merging is integer addition: associative and
  commutative *bit for bit*, whatever the split or order of the inputs.

Everything else the sketch keeps is merged exactly too: ``count`` (int), ``min`` and
``max`` (``min``/``max`` of floats), and the sum, which is kept as an **integer number
of milli-units** (``round(value * 1000)`` per value). A float sum would depend on the
order of additions and break bit-for-bit merge equality; the price is that
:attr:`QuantileSketch.mean` has **1 ms resolution** (each value is rounded to the
nearest millisecond before it is summed, so the mean is off by at most 0.5 ms).

Rank convention
---------------
``quantile(q)`` estimates the element of 0-based rank ``floor(q * (count - 1))`` of the
sorted values (numpy's ``method="lower"``): p50 of ``[1, 2, 3, 4]`` estimates ``2``.
``quantile(0)`` is exactly ``min`` and ``quantile(1)`` exactly ``max``.

Memory bound
------------
No bucket collapsing is needed: durations span a bounded range. The number of buckets
is at most ``log(max / min_positive) / log(gamma) + 2`` (about ``100 * ln(max/min)``
for ``alpha = 0.005``): 1 ms .. 30 days is ~2,200 buckets in the worst case (roughly
200 KB as a Python dict, ~11 KB on the wire); real windows fill far fewer because
the values of one window cluster. Values below :data:`MIN_POSITIVE_VALUE` share one
zero bucket.

Determinism: the bucket of a value depends only on ``math.log`` of it, so the same
values give the same wire form in every process on the same platform (libm
implementations may differ in the last ulp across platforms, which can move a value
lying exactly on a bucket edge to the neighbouring bucket; accuracy is unaffected).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import msgspec

DEFAULT_ALPHA = 0.005
"""Default relative accuracy: quantiles within 0.5% of the exact order statistic."""

MIN_POSITIVE_VALUE = 1e-9
"""Values below this (in seconds: a nanosecond) are counted in the zero bucket."""

MAX_VALUE = 1e300
"""Largest accepted value; keeps ``value * 1000`` and bucket representatives finite."""

MILLI = 1000

# Wire layout: [alpha, count, sum_milli, min, max, zero_count, [[index, count], ...]]
_WireType = tuple[float, int, int, float | None, float | None, int, list[tuple[int, int]]]


def rank_of(q: float, count: int) -> int:
    """0-based rank of the order statistic that ``quantile(q)`` estimates."""
    return math.floor(q * (count - 1))


def to_milli(value: float) -> int:
    """A value in integer milli-units, as it enters the exact sum."""
    return round(value * MILLI)


class QuantileSketch:
    """DDSketch-style mergeable quantile sketch of non-negative values (seconds).

    ``count``, ``min``, ``max`` and ``sum_milli`` are exact; quantiles carry relative
    error at most ``alpha``. See the module docstring for the design and limits.
    """

    kind: ClassVar[str] = "sketch"

    __slots__ = (
        "alpha",
        "gamma",
        "count",
        "sum_milli",
        "min",
        "max",
        "zero_count",
        "buckets",
        "_inv_log_gamma",
        "_log_gamma",
    )

    def __init__(self, alpha: float = DEFAULT_ALPHA) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"sketch alpha must be in (0, 1), got {alpha!r}")
        self.alpha = float(alpha)
        self.gamma = (1.0 + alpha) / (1.0 - alpha)
        self._log_gamma = math.log(self.gamma)
        self._inv_log_gamma = 1.0 / self._log_gamma
        self.count = 0
        self.sum_milli = 0
        self.min: float | None = None
        self.max: float | None = None
        self.zero_count = 0
        self.buckets: dict[int, int] = {}

    # -- input ----------------------------------------------------------------------
    def add(self, value: float, count: object = 1) -> None:
        """Add ``value`` (finite, ``0 <= value <= MAX_VALUE``) ``count`` times.

        Raises ``ValueError`` for negative, NaN, infinite or too large values and for
        ``count < 1``; the caller decides what a bad measurement means.
        """
        value = float(value) + 0.0  # int -> float, and -0.0 -> 0.0 (stable min/max)
        if not 0.0 <= value <= MAX_VALUE:
            raise ValueError(f"sketch values must be finite and in [0, {MAX_VALUE:g}], got {value!r}")
        if count != 1 and (not isinstance(count, int) or count < 1):
            raise ValueError(f"sketch count must be a positive int, got {count!r}")
        if value < MIN_POSITIVE_VALUE:
            self.zero_count += count
        else:
            index = math.ceil(math.log(value) * self._inv_log_gamma)
            buckets = self.buckets
            buckets[index] = buckets.get(index, 0) + count
        self.count += count
        self.sum_milli += round(value * MILLI) * count
        if self.min is None or value < self.min:
            self.min = value
        if self.max is None or value > self.max:
            self.max = value

    def extend(self, values: Iterable[float]) -> None:
        """Add every value of ``values`` once."""
        add = self.add
        for value in values:
            add(value)

    def merge(self, other: QuantileSketch) -> None:
        """Fold ``other`` into this sketch (in place, exact: integer additions only).

        Raises ``ValueError`` if the sketches were built with different ``alpha``.
        """
        if other.alpha != self.alpha:
            raise ValueError(f"cannot merge sketches with alpha {self.alpha} and {other.alpha}")
        if not other.count:
            return
        buckets = self.buckets
        for index, bucket_count in other.buckets.items():
            buckets[index] = buckets.get(index, 0) + bucket_count
        self.zero_count += other.zero_count
        self.count += other.count
        self.sum_milli += other.sum_milli
        if self.min is None or other.min < self.min:  # type: ignore[operator]
            self.min = other.min
        if self.max is None or other.max > self.max:  # type: ignore[operator]
            self.max = other.max

    # -- results --------------------------------------------------------------------
    @property
    def mean(self) -> float | None:
        """Exact mean of the values rounded to milli-units (1 ms resolution); None if empty."""
        if not self.count:
            return None
        return self.sum_milli / (MILLI * self.count)

    @property
    def sum(self) -> float:
        """Sum of the values at milli-unit resolution."""
        return self.sum_milli / MILLI

    def quantile(self, q: float) -> float | None:
        """Estimate of the ``q``-quantile (``0 <= q <= 1``); None for an empty sketch.

        Returns the representative of the bucket holding rank ``floor(q * (count - 1))``,
        clamped to ``[min, max]``; ``q == 0`` gives ``min`` and ``q == 1`` gives ``max``.
        """
        return self.quantiles((q,))[0]

    def quantiles(self, qs: Sequence[float]) -> list[float | None]:
        """Several quantiles with one pass over the sorted buckets (see :meth:`quantile`)."""
        for q in qs:
            if not 0.0 <= q <= 1.0:
                raise ValueError(f"quantile must be in [0, 1], got {q!r}")
        if not self.count:
            return [None for _ in qs]
        wanted = sorted((rank_of(q, self.count), position) for position, q in enumerate(qs))
        out: list[float | None] = [None] * len(qs)
        lowest, highest = self.min, self.max
        assert lowest is not None and highest is not None
        cumulative = self.zero_count
        items = iter(sorted(self.buckets.items()))
        index = None  # bucket holding the rank; None: the zero bucket
        for rank, position in wanted:
            while cumulative <= rank:
                index, bucket_count = next(items)
                cumulative += bucket_count
            representative = 0.0 if index is None else self._representative(index)
            out[position] = min(max(representative, lowest), highest)
        for position, q in enumerate(qs):
            if q == 0.0:
                out[position] = lowest
            elif q == 1.0:
                out[position] = highest
        return out

    def _representative(self, index: int) -> float:
        """Value reported for bucket ``index``: 2 * gamma^index / (gamma + 1)."""
        return 2.0 * math.exp(index * self._log_gamma) / (self.gamma + 1.0)

    def bucket_count(self) -> int:
        """Number of non-empty buckets (memory grows with this, not with ``count``)."""
        return len(self.buckets) + (1 if self.zero_count else 0)

    # -- wire -------------------------------------------------------------------------
    def to_wire(self) -> list[Any]:
        """Deterministic plain form for msgpack/JSON.

        ``[alpha, count, sum_milli, min, max, zero_count, [[index, count], ...]]`` with
        buckets sorted by index; ``min``/``max`` are ``None`` when empty. For msgpack,
        ``sum_milli`` must fit in uint64 (a cumulative ~1.8e16 s: never in practice).
        """
        return [
            self.alpha,
            self.count,
            self.sum_milli,
            self.min,
            self.max,
            self.zero_count,
            sorted(self.buckets.items()),  # (index, count) pairs; indexes are unique
        ]

    @classmethod
    def from_wire(cls, data: Any) -> QuantileSketch:
        """Rebuild a sketch from :meth:`to_wire` output (lists or tuples).

        Raises ``ValueError`` (``msgspec.ValidationError``) on a malformed payload.
        """
        alpha, count, sum_milli, low, high, zero_count, pairs = msgspec.convert(data, _WireType)
        sketch = cls(alpha)
        buckets = dict(pairs)
        if len(buckets) != len(pairs) or min(buckets.values(), default=1) < 1:
            raise ValueError("sketch wire: duplicate bucket index or non-positive bucket count")
        if zero_count < 0 or count != zero_count + sum(buckets.values()):
            raise ValueError("sketch wire: count does not match the bucket counts")
        if (low is None) != (count == 0) or (high is None) != (count == 0):
            raise ValueError("sketch wire: min/max must be null exactly when the sketch is empty")
        sketch.count = count
        sketch.sum_milli = sum_milli
        sketch.min = low
        sketch.max = high
        sketch.zero_count = zero_count
        sketch.buckets = buckets
        return sketch

    def copy(self) -> QuantileSketch:
        """Independent copy (merging into it leaves this sketch unchanged)."""
        clone = QuantileSketch(self.alpha)
        clone.count = self.count
        clone.sum_milli = self.sum_milli
        clone.min = self.min
        clone.max = self.max
        clone.zero_count = self.zero_count
        clone.buckets = dict(self.buckets)
        return clone

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QuantileSketch):
            return NotImplemented
        return (
            self.alpha == other.alpha
            and self.count == other.count
            and self.sum_milli == other.sum_milli
            and self.min == other.min
            and self.max == other.max
            and self.zero_count == other.zero_count
            and self.buckets == other.buckets
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"QuantileSketch(alpha={self.alpha}, count={self.count}, mean={self.mean}, "
            f"min={self.min}, max={self.max}, buckets={self.bucket_count()})"
        )
