"""Stage 2 of the pipeline, pure: merge pane partials into windows, close windows on
the watermark, publish KPI records with revisions.

For every window spec the merger keeps *buckets*: the window itself for tumbling
windows, one day for rolling windows (a 30-day window is the merge of its 30 daily
buckets). Levels (gauges such as open tickets) are kept as per-bucket deltas plus a
base that absorbs evicted buckets, so a level at any retained instant is exact.

Publication:
* provisional: an open window that changed is published with ``final: false`` and
  ``revision: -1`` (live figures; optional);
* final: when the watermark reaches ``end + grace`` every record of the window is
  published with ``revision: 0, final: true``;
* revisions: a later partial (within allowed lateness) republishes only the records
  whose value changed, with ``revision + 1``;
* expiry: at ``end + grace + allowed_lateness`` the window is forgotten; partials
  for it are counted as dropped late.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, NamedTuple

from streams.core.aggregates import Level
from streams.core.kpis import WindowAggs, derive
from streams.core.partials import PartialKey
from streams.core.records import Dims, KpiRecord
from streams.core.registry import BASE_BY_NAME
from streams.core.windows import MIN_TIME, Lateness, WindowSpec

PROVISIONAL_REVISION = -1


_LEVEL_BASES = frozenset(name for name, base in BASE_BY_NAME.items() if base.aggregate == "level")
_DISTINCT_BASES = frozenset(name for name, base in BASE_BY_NAME.items() if base.aggregate == "distinct")


def _fingerprint(record: KpiRecord) -> tuple:
    # stats keys are unique, so sorting the items orders by key alone
    return (record.value, record.n, tuple(sorted(record.stats.items())))


class _SpecState:
    """Buckets and publication state of one window spec."""

    __slots__ = ("spec", "name", "position", "buckets", "index", "levels", "level_base", "known", "dirty",
                 "finalized", "published", "latest")

    def __init__(self, spec: WindowSpec, position: int) -> None:
        self.spec = spec
        self.name = spec.name  # "5m", "1h"... (computed once: it is on every record)
        self.position = position  # index in Merger.states (changelog keys)
        self.buckets: dict[tuple[str, Dims, int], Any] = {}  # Aggregate
        self.index: dict[int, set[tuple[str, Dims]]] = defaultdict(set)  # bucket -> keys present
        self.levels: dict[tuple[str, Dims], dict[int, int]] = defaultdict(dict)  # bucket deltas
        self.level_base: dict[tuple[str, Dims], int] = defaultdict(int)
        self.known: set[int] = set()  # retained window starts that hold any data
        self.dirty: set[int] = set()  # window starts changed since last publication
        self.finalized: set[int] = set()  # window starts published as final
        self.published: dict[tuple[str, Dims, int], tuple[int, tuple]] = {}
        # (kpi, dims) -> start of its newest window published as final: what gauges show,
        # kept as windows are published and expire, so a scrape costs O(series), not
        # O(retained windows)
        self.latest: dict[tuple[str, Dims], int] = {}


class Merger:
    """Stage-2 merger for the KPI families routed to it (all of them in ``replay``)."""

    def __init__(self, specs: tuple[WindowSpec, ...], lateness: Lateness, min_sample: int) -> None:
        self.lateness = lateness
        self.min_sample = min_sample
        self.states = [_SpecState(spec, i) for i, spec in enumerate(specs)]
        self.watermark = MIN_TIME
        self.dropped_late = 0  # partial aggregates that arrived after their window expired
        # changelog support: what changed since the last take_changes()
        self._changed_buckets: set[tuple[int, str, Dims, int]] = set()
        self._removed_buckets: set[tuple[int, str, Dims, int]] = set()
        self._changed_published: set[tuple[int, str, Dims, int]] = set()
        self._removed_published: set[tuple[int, str, Dims, int]] = set()
        # members added to distinct-count buckets since the last take_changes (None: the
        # bucket is new since, all of it is): their changelog is appended, not rewritten
        self._fresh: dict[tuple[int, str, Dims, int], set[int] | None] = {}

    # -- input --------------------------------------------------------------------------------
    def add(self, partials: dict[PartialKey, Any]) -> None:
        """Merge one batch of pane partials (the batch is not modified).

        Partials are grouped by pane first: everything that depends only on the pane
        and the window spec (bucket, expiry, the windows it touches) is done once per
        pane and spec, not once per partial."""
        by_pane: dict[int, list[tuple[str, Dims, Any]]] = {}
        for (base, dims, pane), agg in partials.items():
            items = by_pane.get(pane)
            if items is None:
                items = by_pane[pane] = []
            items.append((base, dims, agg))
        watermark, expired = self.watermark, self.lateness.expired
        changed, fresh = self._changed_buckets, self._fresh
        for index, state in enumerate(self.states):
            spec = state.spec
            size = spec.size_ms
            buckets, levels = state.buckets, state.levels
            for pane, items in by_pane.items():
                bucket = spec.bucket_start(pane)
                if expired(bucket + size, watermark):
                    self.dropped_late += len(items)
                    continue
                present = state.index[bucket]
                touched_level = False
                for base, dims, agg in items:
                    key = (base, dims, bucket)
                    change = (index, base, dims, bucket)
                    existing = buckets.get(key)
                    if existing is None:
                        buckets[key] = agg.copy()
                        present.add((base, dims))  # (an existing bucket is in the index)
                        if base in _DISTINCT_BASES:
                            fresh[change] = None
                    elif base in _DISTINCT_BASES:
                        new = existing.absorb(agg)
                        if not new:
                            continue  # nothing to merge, no window changed
                        if change not in fresh:
                            fresh[change] = new
                        elif (known := fresh[change]) is not None:
                            known |= new
                    else:
                        existing.merge(agg)
                    # (an evicted bucket never comes back: eviction and the expiry
                    # check above use the same monotonic watermark)
                    changed.add(change)
                    if base in _LEVEL_BASES:
                        series = levels[(base, dims)]
                        series[bucket] = series.get(bucket, 0) + agg.delta
                        touched_level = True
                for start in spec.windows_of_bucket(bucket):
                    if not expired(start + size, watermark):
                        state.dirty.add(start)
                        state.known.add(start)
                if touched_level:
                    # the level of every later window moved too
                    state.dirty.update(start for start in state.known if start + size > bucket)

    # -- output ---------------------------------------------------------------------------------
    def advance(self, watermark: int) -> list[KpiRecord]:
        """Move the watermark; returns final records of windows that closed and
        revisions of closed windows that changed. Expired windows are forgotten."""
        records, _ = self.advance_some(watermark, 0)
        return records

    def advance_some(self, watermark: int, max_windows: int) -> tuple[list[KpiRecord], bool]:
        """:meth:`advance` in slices: publish at most ``max_windows`` windows (0: all) and
        say whether more are due (call again with the same watermark to go on; the
        records of all the calls are those of one :meth:`advance`, in the same order).
        Closing a day's windows of every KPI and dimension is a second of work that the
        runtime splits to hand its event loop back in between."""
        if watermark > self.watermark:
            self.watermark = watermark
        records: list[KpiRecord] = []
        published = 0
        for state in self.states:
            size = state.spec.size_ms
            # closed windows not yet final (maybe published provisionally) and closed
            # windows that changed since (revisions)
            candidates = state.dirty | (state.known - state.finalized)
            closing = sorted(s for s in candidates if self.lateness.closed(s + size, self.watermark))
            for start in closing:
                if max_windows and published >= max_windows:
                    return records, True
                records.extend(self._publish(state, start, final=True))
                state.dirty.discard(start)
                published += 1
            self._evict(state)
        return records, False

    def latest_final(self) -> dict[tuple[str, str, Dims], KpiRecord]:
        """The latest final record per (kpi, window size, dims): what gauges show."""
        latest: dict[tuple[str, str, Dims], KpiRecord] = {}
        for state in self.states:
            size, name, published = state.spec.size_ms, state.spec.name, state.published
            for (kpi, dims), start in state.latest.items():
                revision, print_ = published[(kpi, dims, start)]
                if revision < 0:  # (a closed window is never published provisionally again)
                    continue
                value, n, stats = print_
                latest[(kpi, name, dims)] = KpiRecord(kpi, name, start, start + size, dims, value, n, dict(stats),
                                                      revision, True)
        return latest

    def provisional(self) -> list[KpiRecord]:
        """Records of open windows that changed since their last publication."""
        return self.provisional_some(0)[0]

    def provisional_some(self, max_windows: int) -> tuple[list[KpiRecord], bool]:
        """:meth:`provisional` in slices: publish at most ``max_windows`` windows (0: all)
        and say whether more are waiting (call again to go on; with no merge in between,
        the records of all the calls are those of one :meth:`provisional`, in the same
        order). A live publication of every open window of every size held a worker's
        event loop for up to 0.3 s."""
        records: list[KpiRecord] = []
        published = 0
        for state in self.states:
            if not state.dirty:
                continue
            for start in sorted(state.dirty):
                if max_windows and published >= max_windows:
                    return records, True
                records.extend(self._publish(state, start, final=False))
                state.dirty.discard(start)
                published += 1
        return records, False

    def flush(self) -> list[KpiRecord]:
        """Close every window now (``replay`` at the end of its input)."""
        records: list[KpiRecord] = []
        for state in self.states:
            for start in sorted(state.known):
                if start not in state.finalized or start in state.dirty:
                    records.extend(self._publish(state, start, final=True))
            state.dirty.clear()
        return records

    # -- internals --------------------------------------------------------------------------------
    def _window_aggs(self, state: _SpecState, start: int) -> WindowAggs:
        """The window's aggregates: its buckets merged per (base, dims). A bucket is
        copied only when a second one must be merged into it (the first of a rolling
        window's buckets is often the only one that holds a series: copying a day's set
        of active customers for each of the 30 windows it is in was most of a live
        provisional publication)."""
        aggs: WindowAggs = defaultdict(dict)
        copies: set[tuple[str, Dims]] = set()  # (base, dims) whose aggregate is a copy
        for bucket in state.spec.buckets_of(start):
            for base, dims in state.index.get(bucket, ()):
                agg = state.buckets[(base, dims, bucket)]
                series = aggs[base]
                current = series.get(dims)
                if current is None:
                    series[dims] = agg
                    continue
                if (base, dims) not in copies:
                    current = series[dims] = current.copy()
                    copies.add((base, dims))
                current.merge(agg)
        return aggs

    def _level_at(self, state: _SpecState, base: str, dims: Dims, instant: int) -> int:
        """Level of ``base`` just before ``instant``: base + deltas of earlier buckets."""
        key = (base, dims)
        total = state.level_base.get(key, 0)
        for bucket, delta in state.levels.get(key, {}).items():
            if bucket < instant:
                total += delta
        return total

    def _publish(self, state: _SpecState, start: int, *, final: bool) -> list[KpiRecord]:
        spec = state.spec
        end = start + spec.size_ms
        aggs = self._window_aggs(state, start)
        derived = derive(
            aggs,
            lambda base, dims: self._level_at(state, base, dims, start),
            lambda base, dims: self._level_at(state, base, dims, end),
            self.min_sample,
        )
        was_final = start in state.finalized
        if final:
            state.finalized.add(start)
        records: list[KpiRecord] = []
        index, name = state.position, state.name
        for kpi, dims, value, n, stats in derived:
            record = KpiRecord(kpi, name, start, end, dims, value, n, stats)
            key = (kpi, dims, start)
            print_ = _fingerprint(record)
            previous = state.published.get(key)
            if final:
                if was_final and previous is not None:
                    if previous[1] == print_:
                        continue
                    revision = previous[0] + 1
                else:
                    revision = 0
                state.published[key] = (revision, print_)
                series = (kpi, dims)
                if state.latest.get(series, MIN_TIME) <= start:
                    state.latest[series] = start
                self._changed_published.add((index, *key))
                self._removed_published.discard((index, *key))
                records.append(_with(record, revision, True))
            else:
                if previous is not None and previous[1] == print_:
                    continue
                # kept in memory only: what a provisional record said matters just to skip
                # repeating it; after a restore, the next provisional publication of a
                # window may repeat records whose value did not change
                state.published[key] = (PROVISIONAL_REVISION, print_)
                records.append(_with(record, PROVISIONAL_REVISION, False))
        return records

    def _evict(self, state: _SpecState) -> None:
        spec = state.spec
        index = state.position
        expired = self.lateness.expired
        for bucket in [b for b in state.index if expired(b + spec.size_ms, self.watermark)]:
            for base, dims in state.index.pop(bucket):
                agg = state.buckets.pop((base, dims, bucket))
                self._removed_buckets.add((index, base, dims, bucket))
                self._changed_buckets.discard((index, base, dims, bucket))
                self._fresh.pop((index, base, dims, bucket), None)
                if isinstance(agg, Level):
                    state.level_base[(base, dims)] += state.levels[(base, dims)].pop(bucket, 0)
        gone = {s for s in state.known if expired(s + spec.size_ms, self.watermark)}
        if gone:
            state.known -= gone
            state.finalized -= gone
            state.dirty -= gone
            for key in [k for k in state.published if k[2] in gone]:
                del state.published[key]
                # windows expire oldest first: when a series' newest final window goes,
                # none of its final windows is left
                if state.latest.get(key[:2]) == key[2]:
                    del state.latest[key[:2]]
                self._removed_published.add((index, *key))
                self._changed_published.discard((index, *key))

    # -- changelog --------------------------------------------------------------------------------
    def take_changes(self) -> MergerChanges:
        """Everything that changed since the last call, for the runtime's changelog."""
        changes = MergerChanges(
            buckets=[
                (i, base, dims, bucket, self.states[i].buckets[(base, dims, bucket)])
                for i, base, dims, bucket in self._changed_buckets
            ],
            removed_buckets=list(self._removed_buckets),
            published=[
                (i, kpi, dims, start, self.states[i].published[(kpi, dims, start)])
                for i, kpi, dims, start in self._changed_published
            ],
            removed_published=list(self._removed_published),
            specs=[
                SpecMeta(i, sorted(st.known), sorted(st.finalized), sorted(st.dirty),
                         sorted((base, dims, value) for (base, dims), value in st.level_base.items()))
                for i, st in enumerate(self.states)
            ],
            watermark=self.watermark,
            dropped_late=self.dropped_late,
            fresh=self._fresh,
        )
        self._fresh = {}
        self._changed_buckets.clear()
        self._removed_buckets.clear()
        self._changed_published.clear()
        self._removed_published.clear()
        return changes

    def restore(self, buckets: list, published: list, specs: list[SpecMeta], watermark: int,
                dropped_late: int) -> None:
        """Rebuild from the changelog (inverse of the union of all take_changes())."""
        self.watermark = watermark
        self.dropped_late = dropped_late
        for i, base, dims, bucket, agg in buckets:
            state = self.states[i]
            state.buckets[(base, dims, bucket)] = agg
            state.index[bucket].add((base, dims))
            if isinstance(agg, Level):
                state.levels[(base, dims)][bucket] = agg.delta
        for i, kpi, dims, start, entry in published:
            state = self.states[i]
            state.published[(kpi, dims, start)] = entry
            if entry[0] >= 0 and state.latest.get((kpi, dims), MIN_TIME) <= start:
                state.latest[(kpi, dims)] = start
        for meta in specs:
            state = self.states[meta.index]
            state.known, state.finalized, state.dirty = set(meta.known), set(meta.finalized), set(meta.dirty)
            state.level_base.update({(base, dims): value for base, dims, value in meta.level_base})


class SpecMeta(NamedTuple):
    index: int  # type: ignore[assignment]  # (shadows tuple.index; the wire name)
    known: list[int]
    finalized: list[int]
    dirty: list[int]
    level_base: list[tuple[str, Dims, int]]


class MergerChanges(NamedTuple):
    buckets: list[tuple[int, str, Dims, int, Any]]
    removed_buckets: list[tuple[int, str, Dims, int]]
    published: list[tuple[int, str, Dims, int, tuple[int, tuple]]]
    removed_published: list[tuple[int, str, Dims, int]]
    specs: list[SpecMeta]
    watermark: int
    dropped_late: int
    # members added to each changed distinct-count bucket since the last take (None: all)
    fresh: dict[tuple[int, str, Dims, int], set[int] | None] = {}


def _with(record: KpiRecord, revision: int, final: bool) -> KpiRecord:
    return KpiRecord(
        record.kpi, record.size, record.start_ms, record.end_ms, record.dims,
        record.value, record.n, record.stats, revision, final,
    )
