"""The quantile sketch: ≤1% relative error on p50/p90/p99, exact merges, edge cases."""

from __future__ import annotations

import math
import random

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.core.sketch import (
    DEFAULT_ALPHA,
    MAX_VALUE,
    MIN_POSITIVE_VALUE,
    QuantileSketch,
    rank_of,
    to_milli,
)

QUANTILES = (0.5, 0.9, 0.99)
N_VALUES = 1_000_000


def wire_bytes(sketch: QuantileSketch) -> bytes:
    return msgspec.json.encode(sketch.to_wire())


def exact(sorted_values: list[float], q: float) -> float:
    """Order statistic with the sketch's rank convention: rank floor(q * (n - 1))."""
    return sorted_values[math.floor(q * (len(sorted_values) - 1))]


def sketch_of(values: list[float]) -> QuantileSketch:
    sketch = QuantileSketch()
    sketch.extend(values)
    return sketch


def relative_error(estimate: float, truth: float) -> float:
    return abs(estimate - truth) / truth if truth else abs(estimate)


# -- accuracy on a million values ------------------------------------------------------
def lognormal(rng: random.Random) -> float:
    return rng.lognormvariate(5.0, 1.5)  # median ~148 s, long tail: response times


def exponential(rng: random.Random) -> float:
    return rng.expovariate(1 / 600)  # mean 10 min


def bimodal(rng: random.Random) -> float:
    # quick chat replies (seconds) mixed with slow e-mail replies (hours)
    if rng.random() < 0.7:
        return rng.lognormvariate(math.log(30), 0.5)
    return rng.gauss(4 * 3600, 1800) % (24 * 3600)


@pytest.mark.parametrize(
    ("draw", "seed"), [(lognormal, 11), (exponential, 22), (bimodal, 33)], ids=["lognormal", "exponential", "bimodal"]
)
def test_p50_p90_p99_within_one_percent_of_exact_order_statistic_on_a_million_values(draw, seed):
    rng = random.Random(seed)
    values = [draw(rng) for _ in range(N_VALUES)]
    sketch = sketch_of(values)
    values.sort()

    for q in QUANTILES:
        estimate = sketch.quantile(q)
        truth = exact(values, q)
        assert relative_error(estimate, truth) <= 0.01, (q, estimate, truth)
        # the design bound is alpha (0.5%); allow a hair for float rounding at bucket edges
        assert relative_error(estimate, truth) <= DEFAULT_ALPHA * (1 + 1e-9), (q, estimate, truth)
    assert sketch.count == N_VALUES
    assert sketch.min == values[0] and sketch.max == values[-1]
    assert sketch.quantile(0.0) == values[0] and sketch.quantile(1.0) == values[-1]
    assert sketch.mean == sum(to_milli(v) for v in values) / (1000 * N_VALUES)
    assert abs(sketch.mean - math.fsum(values) / N_VALUES) <= 0.0005 + 1e-9
    assert sketch.bucket_count() < 3000


@given(
    st.lists(
        st.floats(min_value=0.0, max_value=1e9, allow_nan=False, allow_infinity=False), min_size=1, max_size=300
    ),
    st.sampled_from((0.0, 0.01, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0)),
)
def test_any_quantile_is_within_alpha_of_the_exact_order_statistic(values, q):
    sketch = sketch_of(values)
    truth = exact(sorted(values), q)
    estimate = sketch.quantile(q)
    if truth < MIN_POSITIVE_VALUE:
        assert estimate <= MIN_POSITIVE_VALUE  # the zero bucket reports 0, clamped to min
    else:
        assert relative_error(estimate, truth) <= DEFAULT_ALPHA * (1 + 1e-9)


def test_rank_convention_is_the_lower_order_statistic():
    sketch = sketch_of([1.0, 2.0, 3.0, 4.0])
    assert rank_of(0.5, 4) == 1
    assert sketch.quantile(0.5) == pytest.approx(2.0, rel=DEFAULT_ALPHA)
    assert sketch.quantile(0.99) == pytest.approx(3.0, rel=DEFAULT_ALPHA)
    assert sketch.quantiles([0.99, 0.5, 0.0, 1.0]) == [
        sketch.quantile(0.99), sketch.quantile(0.5), 1.0, 4.0
    ]


# -- merging ---------------------------------------------------------------------------
def test_merged_halves_equal_the_sketch_of_the_whole_bit_for_bit():
    rng = random.Random(7)
    values = [lognormal(rng) for _ in range(50_000)] + [0.0] * 10
    rng.shuffle(values)
    whole = sketch_of(values)
    first, second = sketch_of(values[:20_000]), sketch_of(values[20_000:])

    forward = first.copy()
    forward.merge(second)
    backward = second.copy()
    backward.merge(first)

    assert forward == whole and backward == whole
    assert wire_bytes(forward) == wire_bytes(whole) == wire_bytes(backward)
    assert forward.quantiles(QUANTILES) == whole.quantiles(QUANTILES)
    assert forward.mean == whole.mean


def test_merge_order_and_grouping_do_not_change_the_result():
    rng = random.Random(8)
    parts = [[exponential(rng) for _ in range(rng.randrange(0, 500))] for _ in range(6)]
    whole = sketch_of([v for part in parts for v in part])
    for trial in range(5):
        order = list(range(len(parts)))
        random.Random(trial).shuffle(order)
        acc = QuantileSketch()
        for i in order:
            acc.merge(sketch_of(parts[i]))
        assert wire_bytes(acc) == wire_bytes(whole)


def test_merge_leaves_the_other_sketch_untouched_and_copy_is_independent():
    a, b = sketch_of([1.0, 2.0]), sketch_of([3.0])
    before = wire_bytes(b)
    a.merge(b)
    assert wire_bytes(b) == before
    clone = a.copy()
    clone.add(100.0)
    assert a.count == 3 and clone.count == 4


def test_merging_sketches_of_different_alpha_is_refused():
    with pytest.raises(ValueError, match="alpha"):
        QuantileSketch(0.01).merge(QuantileSketch(0.005))


def test_merging_an_empty_sketch_changes_nothing():
    a = sketch_of([5.0])
    a.merge(QuantileSketch())
    assert a == sketch_of([5.0])
    empty = QuantileSketch()
    empty.merge(sketch_of([5.0]))
    assert empty == sketch_of([5.0])


# -- wire --------------------------------------------------------------------------------
@pytest.mark.parametrize("values", [[], [0.0], [0.5, 0.5, 7.0], [1e-12, 3.0, 86_400.0 * 30]])
def test_wire_round_trips_through_msgpack_and_json(values):
    sketch = sketch_of(values)
    for codec in (msgspec.msgpack, msgspec.json):
        back = QuantileSketch.from_wire(codec.decode(codec.encode(sketch.to_wire())))
        assert back == sketch
        assert back.to_wire() == sketch.to_wire()
        assert back.quantiles(QUANTILES) == sketch.quantiles(QUANTILES)


def test_wire_layout_is_documented_and_sorted():
    sketch = sketch_of([10.0, 0.0, 1.0, 10.0])
    alpha, count, sum_milli, low, high, zero_count, buckets = sketch.to_wire()
    assert (alpha, count, sum_milli, low, high, zero_count) == (DEFAULT_ALPHA, 4, 21_000, 0.0, 10.0, 1)
    assert [c for _, c in buckets] == [1, 2]
    assert [i for i, _ in buckets] == sorted(i for i, _ in buckets)


def test_ints_and_negative_zero_give_the_same_wire_as_floats():
    assert wire_bytes(sketch_of([3, 0])) == wire_bytes(sketch_of([3.0, -0.0]))


@pytest.mark.parametrize(
    "wire",
    [
        [0.005, 1, 0, None, None, 1, []],  # min/max missing while count > 0
        [0.005, 2, 0, 1.0, 1.0, 0, [[0, 1]]],  # count disagrees with buckets
        [0.005, 1, 0, 1.0, 1.0, 0, [[0, 1], [0, 1]]],  # duplicate index
        [0.005, 1, 0, 1.0, 1.0, 0, [[0, -1], [1, 2]]],  # negative bucket
        [2.0, 0, 0, None, None, 0, []],  # alpha out of range
        ["x", 0, 0, None, None, 0, []],
        [0.005, 0, 0],
    ],
)
def test_malformed_wire_is_rejected_with_value_error(wire):
    with pytest.raises(ValueError):
        QuantileSketch.from_wire(wire)


# -- edge cases -----------------------------------------------------------------------------
def test_empty_sketch_has_no_quantiles_mean_min_or_max():
    sketch = QuantileSketch()
    assert sketch.quantile(0.5) is None
    assert sketch.quantiles(QUANTILES) == [None, None, None]
    assert sketch.mean is None and sketch.min is None and sketch.max is None
    assert sketch.count == 0 and sketch.bucket_count() == 0


def test_zeros_are_counted_in_the_zero_bucket_and_reported_as_zero():
    sketch = sketch_of([0.0] * 5 + [10.0] * 5)
    assert sketch.zero_count == 5 and sketch.buckets and sum(sketch.buckets.values()) == 5
    assert sketch.quantile(0.3) == 0.0
    assert sketch.quantile(0.9) == 10.0  # representative clamped to max
    assert sketch.mean == 5.0


def test_values_below_the_minimum_share_the_zero_bucket_and_stay_within_min_max():
    sketch = sketch_of([1e-12, 2e-12])
    assert sketch.zero_count == 2 and not sketch.buckets
    assert 1e-12 <= sketch.quantile(0.5) <= 2e-12


def test_single_value_is_returned_exactly_for_every_quantile():
    sketch = sketch_of([123.456])
    assert sketch.quantiles((0.0, 0.5, 0.9, 0.99, 1.0)) == [123.456] * 5
    assert sketch.mean == 123.456


def test_add_with_count_equals_repeated_adds():
    repeated = sketch_of([2.5] * 7)
    weighted = QuantileSketch()
    weighted.add(2.5, count=7)
    assert wire_bytes(weighted) == wire_bytes(repeated)


@pytest.mark.parametrize("value", [1e12, 1e200, MAX_VALUE])
def test_huge_values_keep_relative_accuracy(value):
    sketch = sketch_of([value, value / 2, 1.0])
    assert sketch.quantile(0.5) == pytest.approx(value / 2, rel=DEFAULT_ALPHA)
    assert sketch.quantile(1.0) == value
    assert sketch.mean == pytest.approx((value * 1.5 + 1) / 3, rel=1e-12)
    assert QuantileSketch.from_wire(msgspec.json.decode(wire_bytes(sketch))) == sketch


def test_mean_has_millisecond_resolution():
    sketch = sketch_of([0.0004, 0.0004, 0.0016])  # 0, 0, 2 milli-units
    assert sketch.sum_milli == 2
    assert sketch.mean == pytest.approx(2 / 3000)


@pytest.mark.parametrize("bad", [-1.0, -1e-300, math.nan, math.inf, -math.inf, MAX_VALUE * 10])
def test_negative_non_finite_and_too_large_values_are_rejected(bad):
    sketch = QuantileSketch()
    with pytest.raises(ValueError):
        sketch.add(bad)
    assert sketch.count == 0


@pytest.mark.parametrize("count", [0, -1, 1.5])
def test_add_rejects_non_positive_or_fractional_counts(count):
    with pytest.raises(ValueError):
        QuantileSketch().add(1.0, count=count)


@pytest.mark.parametrize("q", [-0.01, 1.01, math.nan])
def test_quantile_outside_zero_one_is_rejected(q):
    with pytest.raises(ValueError):
        sketch_of([1.0]).quantile(q)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1])
def test_alpha_must_be_between_zero_and_one(alpha):
    with pytest.raises(ValueError):
        QuantileSketch(alpha)
