"""Distinct-count buckets in the stage-2 changelog: appended in chunks, rewritten every
``max_chunks`` commits (streams.core.chunks), with the members the Merger reports as
added since the last commit. What a compacted changelog holds must always be the
bucket: the union of its live chunks equals the merger's set, and an evicted bucket
leaves no chunk behind."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.codec.state import decode_bucket, encode_bucket, encode_distinct_chunk
from streams.core.aggregates import Distinct
from streams.core.chunks import DistinctChunks
from streams.core.merge import Merger
from streams.core.pipeline import CoreConfig, Processor
from streams.core.windows import Lateness, parse_window_specs
from streams.runtime.pacing import LoopBudget
from streams.runtime.stage2 import PACK_SLICE, encode_chunk
from tests.eventgen import generate


def apply(log: dict, key, writes) -> None:
    """What compaction keeps of the writes: the last value per (bucket, chunk)."""
    for chunk, members in writes:
        if members is None:
            log.pop((key, chunk), None)
        else:
            log[(key, chunk)] = set(members)


def norm(writes) -> list:
    """Writes with each chunk's members sorted (a chunk is a collection in no order)."""
    return [(chunk, None if members is None else sorted(members)) for chunk, members in writes]


def union(log: dict, key) -> set[int] | None:
    parts = [members for (k, _), members in log.items() if k == key]
    return set().union(*parts) if parts else None


def test_a_new_bucket_is_written_whole_then_appended_then_rewritten():
    chunks = DistinctChunks(max_chunks=3, max_members=10)
    assert norm(chunks.plan("b", {1, 2}, None)) == [(0, [1, 2])]
    assert norm(chunks.plan("b", {1, 2, 3}, {3})) == [(1, [3])]
    assert norm(chunks.plan("b", {1, 2, 3}, set())) == []  # nothing new: nothing to write
    assert norm(chunks.plan("b", {1, 2, 3, 4}, {4})) == [(2, [4])]
    # three chunks: the next commit rewrites the bucket and deletes chunks 1 and 2
    assert norm(chunks.plan("b", {1, 2, 3, 4, 5}, {5})) == [(0, [1, 2, 3, 4, 5]), (1, None), (2, None)]
    assert chunks.forget("b") == [0]


def test_a_set_beyond_max_members_is_split_and_the_split_is_undone_when_it_shrinks():
    chunks = DistinctChunks(max_chunks=4, max_members=3)
    writes = chunks.plan("b", set(range(7)), None)
    assert [c for c, _ in writes] == [0, 1, 2] and set().union(*(m for _, m in writes)) == set(range(7))
    assert all(len(m) <= 3 for _, m in writes)
    # a batch of fresh members larger than a chunk may hold: rewritten whole, split again
    writes = chunks.plan("b", set(range(12)), set(range(7, 12)))
    assert [c for c, _ in writes] == [0, 1, 2, 3]
    assert chunks.forget("b") == [0, 1, 2, 3]


def test_an_unknown_bucket_or_an_empty_one_still_gets_chunk_zero():
    chunks = DistinctChunks()
    assert norm(chunks.plan("b", {9}, {9})) == [(0, [9])]  # never written: fresh is not enough
    assert norm(chunks.plan("e", set(), None)) == [(0, [])]
    assert chunks.forget("never seen") == [0]
    with pytest.raises(ValueError):
        DistinctChunks(max_chunks=0)


def test_due_rewrites_share_the_commits_budget_and_wait_for_a_later_commit():
    chunks = DistinctChunks(max_chunks=2, rewrite_budget=15)
    a, b = set(range(10)), set(range(100, 110))
    for key, members in (("a", a), ("b", b)):
        assert norm(chunks.plan(key, members, None)) == [(0, sorted(members))]
    chunks.begin_commit()
    assert norm(chunks.plan("a", a | {10}, {10})) == [(1, [10])]
    assert norm(chunks.plan("b", b | {110}, {110})) == [(1, [110])]
    a, b = a | {10, 11}, b | {110, 111}
    chunks.begin_commit()  # both are due: "a" takes 12 of the 15, "b" (12) must wait
    assert norm(chunks.plan("a", a, {11})) == [(0, sorted(a)), (1, None)]
    assert norm(chunks.plan("b", b, {111})) == [(2, [111])]
    chunks.begin_commit()
    b = b | {112}
    assert norm(chunks.plan("b", b, {112})) == [(0, sorted(b)), (1, None), (2, None)]


def test_a_postponed_rewrite_is_forced_at_twice_max_chunks():
    chunks = DistinctChunks(max_chunks=2, rewrite_budget=0)
    members = {1}
    assert norm(chunks.plan("b", members, None)) == [(0, [1])]
    for new in (2, 3, 4):
        chunks.begin_commit()
        members = members | {new}
        assert norm(chunks.plan("b", members, {new})) == [(new - 1, [new])]
    chunks.begin_commit()
    members = members | {5}
    assert norm(chunks.plan("b", members, {5})) == [(0, sorted(members)), (1, None), (2, None), (3, None)]
    with pytest.raises(ValueError):
        DistinctChunks(rewrite_budget=-1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sets(st.integers(0, 60), max_size=12), min_size=1, max_size=40),
       st.integers(1, 5), st.integers(1, 8), st.sampled_from([0, 5, 30, 10_000]))
def test_the_live_chunks_always_union_to_the_set(batches, max_chunks, max_members, budget):
    chunks = DistinctChunks(max_chunks=max_chunks, max_members=max_members, rewrite_budget=budget)
    log: dict = {}
    members: set[int] = set()
    for i, batch in enumerate(batches):
        new = batch - members
        members |= new
        chunks.begin_commit()
        writes = chunks.plan("b", members, None if i == 0 else new)
        for _, written in writes:  # each member once, within a chunk's size
            assert written is None or (len(set(written)) == len(written) <= max_members)
        apply(log, "b", writes)
        assert union(log, "b") == members
        assert len([k for k in log if k[0] == "b"]) <= max(2 * max_chunks, -(-len(members) // max_members))
    for chunk in chunks.forget("b"):
        log.pop(("b", chunk), None)
    assert union(log, "b") is None


@settings(max_examples=100, deadline=None)
@given(st.sets(st.integers(0, 2**64 - 1), max_size=50), st.randoms(use_true_random=False))
def test_a_chunk_in_any_order_reads_back_as_the_bucket_of_its_members(members, rng):
    assert encode_distinct_chunk(sorted(members)) == encode_bucket(Distinct(set(members)))
    shuffled = list(members)
    rng.shuffle(shuffled)
    restored = decode_bucket(encode_distinct_chunk(shuffled))
    assert isinstance(restored, Distinct) and restored.members == members


@pytest.mark.parametrize("size", [0, 5, PACK_SLICE, PACK_SLICE + 1, 3 * PACK_SLICE + 7])
def test_a_big_chunk_is_packed_in_slices_to_the_same_bytes(size):
    members = {(i * 0x9E3779B97F4A7C15) % 2**64 for i in range(size)}
    budget = LoopBudget(seconds=0.0)  # always spent: pause after every slice
    raw = asyncio.run(encode_chunk(members, budget))
    assert raw == encode_distinct_chunk(members)
    assert decode_bucket(raw).members == members
    # beyond one slice, the loop may run after every slice
    assert budget.pauses == (-(-size // PACK_SLICE) if size > PACK_SLICE else 0)


def test_the_first_due_rewrite_of_a_commit_goes_ahead_even_beyond_the_budget():
    chunks = DistinctChunks(max_chunks=2, rewrite_budget=5)
    big, other = set(range(20)), set(range(100, 120))
    for key, members in (("big", big), ("other", other)):
        chunks.plan(key, members, None)
    chunks.begin_commit()
    big, other = big | {20}, other | {120}
    assert norm(chunks.plan("big", big, {20})) == [(1, [20])]
    assert norm(chunks.plan("other", other, {120})) == [(1, [120])]
    chunks.begin_commit()  # both due, both larger than the budget: only the first goes ahead
    big, other = big | {21}, other | {121}
    assert norm(chunks.plan("big", big, {21})) == [(0, sorted(big)), (1, None)]
    assert norm(chunks.plan("other", other, {121})) == [(2, [121])]
    chunks.begin_commit()  # the next commit takes the other one
    other = other | {122}
    assert norm(chunks.plan("other", other, {122})) == [(0, sorted(other)), (1, None), (2, None)]


def test_merger_fresh_members_rebuild_every_distinct_bucket_through_expiry():
    config = CoreConfig(specs=parse_window_specs("1h,1d"), lateness=Lateness(30_000, 60_000, 2 * 3_600_000))
    events = sorted(generate(5, customers=40, span_ms=3 * 86_400_000), key=lambda e: e.occurred_at_ms)
    processor = Processor(config)
    merger = Merger(config.specs, config.lateness, config.min_sample)
    chunks = DistinctChunks(max_chunks=3)
    log: dict = {}
    appended = rewritten = removed = 0
    for offset in range(0, len(events), 15):
        for event in events[offset : offset + 15]:
            processor.offer(event)
        processor.advance()
        merger.add(processor.drain().aggs)
        merger.advance(processor.watermark)
        changes = merger.take_changes()
        for i, base, dims, bucket, agg in changes.buckets:
            if isinstance(agg, Distinct):
                key = (i, base, dims, bucket)
                writes = chunks.plan(key, agg.members, changes.fresh.get(key))
                appended += len(writes) == 1 and writes[0][0] > 0
                rewritten += any(m is None for _, m in writes)
                apply(log, key, writes)
        for key in changes.removed_buckets:
            for chunk in chunks.forget(key):
                log.pop((key, chunk), None)
            removed += 1
        live = {(state.position, base, dims, bucket): agg.members
                for state in merger.states for (base, dims, bucket), agg in state.buckets.items()
                if isinstance(agg, Distinct)}
        assert {key for key, _ in log} == set(live)
        for key, members in live.items():
            assert union(log, key) == members
    assert appended and rewritten and removed, "the run must append, rewrite and evict buckets"


def test_absorb_merges_and_returns_only_the_new_members():
    bucket, batch = Distinct({1, 2}), Distinct({2, 3})
    assert bucket.absorb(batch) == {3}
    assert bucket.members == {1, 2, 3} and batch.members == {2, 3}
    assert bucket.absorb(Distinct({1})) == set()
