"""Mergeable partial aggregates: hand-worked survey KPIs, exact merges, wire round-trips."""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.core.aggregates import (
    AGGREGATE_KINDS,
    Count,
    Distinct,
    Level,
    Ratio,
    Sketch,
    Sum,
    Survey,
    ces_result,
    csat_result,
    decode_partial,
    encode_partial,
    member_hash,
    nps_result,
)
from streams.core.registry import BASES


def survey_of(kind: str, scores: list[int]) -> Survey:
    survey = Survey(kind)
    for score in scores:
        survey.add(score)
    return survey


# -- NPS, CSAT, CES ----------------------------------------------------------------------
def test_nps_hand_worked_example():
    # 5 promoters, 3 passives, 2 detractors: NPS = (5 - 2) / 10 * 100 = 30.
    # p = 0.5, d = 0.2: p + d - (p - d)^2 = 0.7 - 0.09 = 0.61; 0.61 / 10 = 0.061;
    # sqrt(0.061) = 0.246982; margin = 1.96 * 100 * 0.246982 = 48.408
    result = nps_result(promoters=5, passives=3, detractors=2, min_sample=30)
    assert result["value"] == 30.0
    assert result["n"] == 10
    assert (result["promoters"], result["passives"], result["detractors"]) == (5, 3, 2)
    assert result["margin_of_error"] == pytest.approx(48.408, abs=0.001)
    assert result["suppressed"] is True


def test_nps_survey_buckets_scores_into_promoters_passives_detractors():
    survey = survey_of("nps", [10, 10, 9, 9, 9, 8, 7, 7, 6, 0])
    assert survey.result(min_sample=30) == nps_result(5, 3, 2, 30)
    assert survey.n == 10


@pytest.mark.parametrize(
    ("scores", "value"), [([10] * 40, 100.0), ([0] * 40, -100.0), ([8] * 40, 0.0), ([9, 6] * 20, 0.0)]
)
def test_nps_extremes(scores, value):
    result = survey_of("nps", scores).result(min_sample=30)
    assert result["value"] == value
    assert result["suppressed"] is False
    if len(set(scores)) == 1:  # everyone in one group: no spread
        assert result["margin_of_error"] == 0.0


def test_nps_margin_matches_the_catalogue_formula_written_with_shares():
    promoters, passives, detractors = 123, 45, 67
    n = promoters + passives + detractors
    p, d = promoters / n, detractors / n
    expected = 1.96 * 100 * math.sqrt((p + d - (p - d) ** 2) / n)
    result = nps_result(promoters, passives, detractors, 30)
    assert result["margin_of_error"] == pytest.approx(expected, rel=1e-12)
    assert result["value"] == pytest.approx((p - d) * 100, rel=1e-12)


def test_csat_is_the_share_of_four_and_five():
    result = survey_of("csat", [5, 4, 3, 1, 5]).result(min_sample=1)
    assert result == {"value": 0.6, "n": 5, "satisfied": 3, "suppressed": False}


def test_ces_is_the_share_of_five_to_seven():
    result = survey_of("ces", [7, 5, 4, 1]).result(min_sample=1)
    assert result == {"value": 0.5, "n": 4, "low_effort": 2, "suppressed": False}


@pytest.mark.parametrize("kind", ["nps", "csat", "ces"])
@pytest.mark.parametrize(("responses", "suppressed"), [(29, True), (30, False)])
def test_scores_below_min_sample_are_suppressed_but_still_computed(kind, responses, suppressed):
    top = {"nps": 10, "csat": 5, "ces": 7}[kind]
    result = survey_of(kind, [top] * responses).result(min_sample=30)
    assert result["suppressed"] is suppressed
    assert result["n"] == responses
    assert result["value"] == (100.0 if kind == "nps" else 1.0)


@pytest.mark.parametrize("kind", ["nps", "csat", "ces"])
def test_no_responses_means_no_value(kind):
    result = Survey(kind).result(min_sample=30)
    assert result["value"] is None and result["n"] == 0 and result["suppressed"] is True
    if kind == "nps":
        assert result["margin_of_error"] is None


def test_pure_result_functions_take_counts():
    assert csat_result(satisfied=0, responses=0, min_sample=0)["value"] is None
    assert ces_result(low_effort=3, responses=4, min_sample=5)["suppressed"] is True


@pytest.mark.parametrize(("kind", "score"), [("nps", 11), ("nps", -1), ("csat", 0), ("csat", 6), ("ces", 8), ("ces", True)])
def test_survey_scores_off_the_scale_are_rejected(kind, score):
    with pytest.raises(ValueError):
        Survey(kind).add(score)


def test_surveys_of_different_kinds_do_not_merge():
    with pytest.raises(ValueError):
        Survey("nps").merge(Survey("csat"))
    with pytest.raises(ValueError):
        Survey("stars")


# -- counters, ratio, level ----------------------------------------------------------------
def test_ratio_is_none_on_zero_denominator():
    assert Ratio().value is None
    ratio = Ratio()
    ratio.add(0, 0)
    assert ratio.value is None
    ratio.add(1)
    ratio.add(0)
    ratio.add(1)
    assert (ratio.numerator, ratio.denominator, ratio.value) == (2, 3, 2 / 3)


def test_count_sum_and_level_accumulate_integers():
    count, total, level = Count(), Sum(), Level()
    count.add()
    count.add(4)
    total.add(1999)
    total.add(-500)
    level.add(+1)
    level.add(+1)
    level.add(-3)
    assert (count.n, total.total, level.delta) == (5, 1499, -1)


@pytest.mark.parametrize(
    ("agg", "bad"), [(Count(), 1.5), (Count(), True), (Sum(), 10.0), (Level(), "1"), (Ratio(), 0.5)]
)
def test_non_integer_amounts_are_rejected(agg, bad):
    with pytest.raises(TypeError):
        agg.add(bad)


def test_count_cannot_go_down():
    with pytest.raises(ValueError):
        Count().add(-1)


# -- distinct ---------------------------------------------------------------------------------
def test_distinct_counts_each_id_once_and_merges_by_union():
    a, b = Distinct(), Distinct()
    for member in ("c1", "c2", "c1"):
        a.add(member)
    for member in ("c2", "c3"):
        b.add(member)
    assert a.count == 2
    a.merge(b)
    assert a.count == 3
    hashes = sorted(member_hash(m) for m in ("c1", "c2", "c3"))
    assert a.to_wire() == b"".join(h.to_bytes(8, "big") for h in hashes)  # packed, sorted
    assert Distinct.from_wire(a.to_wire()) == a
    assert Distinct.from_wire(hashes) == a  # the earlier wire form: a list of ints
    assert Distinct.from_wire(base64.b64encode(a.to_wire()).decode()) == a  # bytes through JSON


def test_member_hash_is_stable_across_processes():
    # fixed values: blake2b is unsalted, unlike hash() (PYTHONHASHSEED does not matter)
    assert member_hash("customer-42") == 0x33E0FB1AB541CC2A
    assert member_hash("") == 0xE4A6A0577479B2B4
    assert member_hash("c1") != member_hash("c2")


def test_distinct_wire_rejects_out_of_range_hashes():
    with pytest.raises(ValueError):
        Distinct.from_wire([2**64])
    with pytest.raises(ValueError):
        Distinct.from_wire([-1])
    with pytest.raises(ValueError):
        Distinct.from_wire(b"\x00" * 7)  # not whole 64-bit hashes
    with pytest.raises(ValueError):
        Distinct.from_wire("not base64!")


# -- registry and wire --------------------------------------------------------------------------
def test_every_base_aggregate_of_the_kpi_registry_has_a_wire_kind():
    assert {base.aggregate for base in BASES} <= set(AGGREGATE_KINDS)
    assert AGGREGATE_KINDS["sketch"] is Sketch


def test_encode_and_decode_partial_round_trip():
    survey = survey_of("csat", [5, 3])
    kind, wire = encode_partial(survey)
    assert (kind, wire) == ("survey", ["csat", [0, 0, 1, 0, 1]])
    assert decode_partial(kind, msgspec.msgpack.decode(msgspec.msgpack.encode(wire))) == survey


@pytest.mark.parametrize(
    ("kind", "wire"),
    [
        ("median", 1),
        ("count", "3"),
        ("count", -1),
        ("count", True),
        ("sum", 1.5),
        ("ratio", [1]),
        ("survey", ["nps", [1, 2]]),
        ("survey", ["csat", [0, 0, -1, 0, 0]]),
        ("distinct", ["a"]),
        ("sketch", [0.005]),
    ],
)
def test_decode_partial_rejects_unknown_kinds_and_bad_payloads(kind, wire):
    with pytest.raises(ValueError):
        decode_partial(kind, wire)


def test_encode_partial_rejects_unregistered_objects():
    with pytest.raises(TypeError):
        encode_partial(object())  # type: ignore[arg-type]


# -- properties: merge is exact, associative and commutative, for every kind ----------------
Adder = Callable[[Any, Any], None]


def _add(agg: Any, item: Any) -> None:
    agg.add(item)


def _add_ratio(agg: Any, item: tuple[int, int]) -> None:
    agg.add(*item)


durations = st.one_of(
    st.just(0.0),
    st.floats(min_value=0.0, max_value=1e-8, allow_nan=False),
    st.floats(min_value=0.0, max_value=1e7, allow_nan=False, allow_infinity=False),
)


@st.composite
def kind_and_inputs(draw: st.DrawFn) -> tuple[str, Callable[[], Any], Adder, list[Any]]:
    kind = draw(st.sampled_from(sorted(AGGREGATE_KINDS)))
    if kind == "count":
        return kind, Count, _add, draw(st.lists(st.integers(0, 1000)))
    if kind == "sum":
        return kind, Sum, _add, draw(st.lists(st.integers(-(10**12), 10**12)))
    if kind == "level":
        return kind, Level, _add, draw(st.lists(st.integers(-1000, 1000)))
    if kind == "ratio":
        return kind, Ratio, _add_ratio, draw(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3))))
    if kind == "sketch":
        return kind, Sketch, _add, draw(st.lists(durations, max_size=200))
    if kind == "distinct":
        return kind, Distinct, _add, draw(st.lists(st.text("abc", max_size=4), max_size=60))
    survey = draw(st.sampled_from(("nps", "csat", "ces")))
    low, high = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}[survey]
    return kind, lambda: Survey(survey), _add, draw(st.lists(st.integers(low, high), max_size=100))


def build(factory: Callable[[], Any], adder: Adder, items: list[Any]) -> Any:
    agg = factory()
    for item in items:
        adder(agg, item)
    return agg


def wire_bytes(agg: Any) -> bytes:
    kind, wire = encode_partial(agg)
    return msgspec.json.encode([kind, wire])


@given(kind_and_inputs(), st.data())
def test_merge_of_any_split_in_any_order_equals_the_whole(case, data):
    _, factory, adder, items = case
    cuts = sorted(data.draw(st.lists(st.integers(0, len(items)), max_size=4)))
    bounds = [0, *cuts, len(items)]
    parts = [build(factory, adder, items[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    whole = build(factory, adder, items)

    order = data.draw(st.permutations(range(len(parts))))
    left_fold = factory()
    for i in order:
        left_fold.merge(parts[i])

    right_fold = parts[order[-1]].copy()
    for i in reversed(order[:-1]):
        merged = parts[i].copy()
        merged.merge(right_fold)
        right_fold = merged

    assert wire_bytes(left_fold) == wire_bytes(whole) == wire_bytes(right_fold)
    assert left_fold == whole


@given(kind_and_inputs())
def test_merge_is_commutative_and_associative_for_three_partials(case):
    _, factory, adder, items = case
    a = build(factory, adder, items[: len(items) // 2])
    b = build(factory, adder, items[len(items) // 2 :])
    c = build(factory, adder, items[::3])

    ab_c = a.copy()
    ab_c.merge(b)
    ab_c.merge(c)
    bc = b.copy()
    bc.merge(c)
    a_bc = a.copy()
    a_bc.merge(bc)
    cb_a = c.copy()
    cb_a.merge(b)
    cb_a.merge(a)
    assert wire_bytes(ab_c) == wire_bytes(a_bc) == wire_bytes(cb_a)


@given(kind_and_inputs())
def test_wire_round_trips_through_msgpack_and_json_for_every_kind(case):
    _, factory, adder, items = case
    agg = build(factory, adder, items)
    kind, wire = encode_partial(agg)
    for codec in (msgspec.msgpack, msgspec.json):
        back = decode_partial(kind, codec.decode(codec.encode(wire)))
        assert type(back) is type(agg)
        assert back == agg
        assert back.to_wire() == wire


@given(kind_and_inputs())
def test_copy_is_independent_of_the_original(case):
    _, factory, adder, items = case
    agg = build(factory, adder, items)
    before = wire_bytes(agg)
    clone = agg.copy()
    clone.merge(agg)  # doubles the clone, must not touch the original
    assert wire_bytes(agg) == before
