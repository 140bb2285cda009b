"""Stage-1 accumulator: measurements folded into pane partials.

Ticket, customer and SLA logic report what they measured (``count``, ``sample``,
``level``...) with the event time that completes the measurement and the dimension
sets it belongs to. ``Partials`` adds it to the aggregate of
``(base, dims, pane_start)``. One ``Partials`` holds a batch; ``drain`` hands the
batch to stage 2 (or to the in-process merger in ``replay``). Per-batch
pre-aggregation is why stage-2 traffic does not grow with the input rate.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from streams.core.aggregates import Count, Distinct, Level, Sketch, Sum, Survey
from streams.core.records import ChurnSignal, Dims, HealthChange, SlaRecord

PartialKey = tuple[str, Dims, int]  # (base name, dims, pane start ms)


class Partials:
    """Pane partials of one batch plus the side outputs (SLA events, signals)."""

    __slots__ = ("pane_ms", "aggs", "sla", "signals", "health")

    def __init__(self, pane_ms: int) -> None:
        self.pane_ms = pane_ms
        self.aggs: dict[PartialKey, Any] = {}  # Aggregate
        self.sla: list[SlaRecord] = []
        self.signals: list[ChurnSignal] = []
        self.health: list[HealthChange] = []

    # -- measurements -----------------------------------------------------------------
    def _get(self, base: str, dims: Dims, ts_ms: int, factory):
        key = (base, dims, ts_ms - ts_ms % self.pane_ms)
        agg = self.aggs.get(key)
        if agg is None:
            agg = self.aggs[key] = factory()
        return agg

    def count(self, base: str, dim_sets: Iterable[Dims], ts_ms: int, k: int = 1) -> None:
        for dims in dim_sets:
            self._get(base, dims, ts_ms, Count).add(k)

    def total(self, base: str, dim_sets: Iterable[Dims], ts_ms: int, amount: int) -> None:
        for dims in dim_sets:
            self._get(base, dims, ts_ms, Sum).add(amount)

    def sample(self, base: str, dim_sets: Iterable[Dims], ts_ms: int, value: float) -> None:
        for dims in dim_sets:
            self._get(base, dims, ts_ms, Sketch).add(value)

    def level(self, base: str, dim_sets: Iterable[Dims], ts_ms: int, delta: int) -> None:
        for dims in dim_sets:
            self._get(base, dims, ts_ms, Level).add(delta)

    def survey(self, base: str, dim_sets: Iterable[Dims], ts_ms: int, score: int) -> None:
        for dims in dim_sets:
            self._get(base, dims, ts_ms, lambda: Survey(base)).add(score)

    def distinct(self, base: str, dim_sets: Iterable[Dims], ts_ms: int, member: str) -> None:
        for dims in dim_sets:
            self._get(base, dims, ts_ms, Distinct).add(member)

    # -- batch hand-over ------------------------------------------------------------------
    def empty(self) -> bool:
        return not (self.aggs or self.sla or self.signals or self.health)

    def drain(self) -> Partials:
        """Return the filled batch and reset this accumulator."""
        out = Partials(self.pane_ms)
        out.aggs, self.aggs = self.aggs, {}
        out.sla, self.sla = self.sla, []
        out.signals, self.signals = self.signals, []
        out.health, self.health = self.health, []
        return out
