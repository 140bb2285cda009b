"""Bounded cardinality: free-form label values beyond the bound (or outside an
allow-list) become ``other``, are counted, and keep series count and memory flat."""

from __future__ import annotations

import tracemalloc

from streams.core.labels import OTHER, LabelLimiter
from streams.core.merge import Merger
from streams.core.pipeline import CoreConfig, Processor
from streams.core.windows import Lateness, parse_window_specs
from streams.metrics.collector import kpi_families
from tests.corekit import Events, at, run


def test_first_values_pass_then_other_and_overflow_is_counted():
    limit = LabelLimiter(max_values=2)
    assert [limit("product", p) for p in ("a", "b", "c", "a", "d")] == ["a", "b", OTHER, "a", OTHER]
    assert limit.overflow["product"] == 2
    assert limit("team", "x") == "x"  # bounds are per label
    assert limit("product", None) is None


def test_allow_list_wins_over_the_bound():
    limit = LabelLimiter(max_values=1000, allow={"team": ["red", "blue"]})
    assert [limit("team", t) for t in ("red", "green", "blue")] == ["red", OTHER, "blue"]
    assert limit("product", "anything") == "anything"


def test_limiter_state_round_trips():
    limit = LabelLimiter(max_values=3)
    for value in ("a", "b", "c"):
        limit("product", value)
    again = LabelLimiter(max_values=3)
    again.restore(limit.snapshot())
    assert again("product", "d") == OTHER and again("product", "b") == "b"


def test_kpi_records_use_other_beyond_the_bound():
    ev = Events()
    for i in range(5):
        ev.add("purchase.completed", f"09:{i:02d}", f"c{i}", order_id=f"o{i}", amount_minor=100, currency="EUR",
               product=f"product-{i}", kind="new")
    result = run(ev, max_label_values=3)
    products = {dict(r.dims).get("product") for r in result.records if r.kpi == "revenue_minor"}
    assert products == {None, "product-0", "product-1", "product-2", OTHER}
    other = next(r for r in result.records if r.kpi == "revenue_minor" and dict(r.dims).get("product") == OTHER
                 and r.start_ms == at("09:00"))
    assert other.value == 200  # the 4th and 5th product


def test_a_million_product_names_keep_series_bounded_and_memory_flat():
    bound = 50
    config = CoreConfig(specs=parse_window_specs("1h"), lateness=Lateness(30_000, 60_000, 86_400_000),
                        max_label_values=bound)
    processor = Processor(config)
    merger = Merger(config.specs, config.lateness, config.min_sample)
    engine, limit = processor.customers_engine, processor.labels
    from streams.core.customers import money_dims

    def fold(names: range) -> None:
        out, ts = processor.out, at("09:00")
        for start in range(names.start, names.stop, 100_000):
            for i in range(start, min(start + 100_000, names.stop)):
                out.total("purchases_minor", money_dims("EUR", limit("product", f"product-{i}"), "new"), ts, 100)
            merger.add(processor.drain().aggs)

    tracemalloc.start()
    fold(range(0, 100_000))
    after_first, _ = tracemalloc.get_traced_memory()
    fold(range(100_000, 1_000_000))
    after_all, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert limit.overflow["product"] == 1_000_000 - bound
    # memory does not grow with the number of distinct names (10x the names, same state)
    assert after_all - after_first < 2_000_000, (after_first, after_all)
    records = merger.flush()
    series = sum(len(family.samples) for family in kpi_families(records))
    products = {dict(r.dims).get("product") for r in records}
    assert len(products) == bound + 2  # the bound, "other", and the no-product dims set
    assert series < 10 * (bound + 2)
    assert engine.limit is limit
