"""Bounded label values for free-form dimensions (team, product, campaign, currency,
lead channel).

Every dimension value becomes a KPI record key and a Prometheus series, so a stream with
a million product names must not make a million series. A :class:`LabelLimiter` lets
through the values of an allow-list when one is configured for the label, otherwise the
first ``max_values`` distinct values it sees; every other value becomes ``other`` and is
counted in :attr:`LabelLimiter.overflow`.

Determinism: with an allow-list, or while every label stays within its bound, results do
not depend on order. Beyond the bound "the first values seen" depends on what a stage-1
task saw first, so replay and the stream can then disagree on which values were kept.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping
from typing import Final, overload

OTHER: Final = "other"
LIMITED_LABELS: Final = ("team", "product", "campaign", "currency", "channel")


class LabelLimiter:
    """Maps label values into a bounded set (see the module docstring)."""

    __slots__ = ("max_values", "allow", "seen", "overflow")

    def __init__(self, max_values: int = 100, allow: Mapping[str, Collection[str]] | None = None) -> None:
        if max_values < 1:
            raise ValueError("max_values must be at least 1")
        self.max_values = max_values
        self.allow = {label: frozenset(values) for label, values in (allow or {}).items()}
        self.seen: dict[str, set[str]] = {}
        self.overflow: Counter[str] = Counter()

    @overload
    def __call__(self, label: str, value: str) -> str: ...
    @overload
    def __call__(self, label: str, value: None) -> None: ...
    @overload
    def __call__(self, label: str, value: str | None) -> str | None: ...

    def __call__(self, label: str, value: str | None) -> str | None:
        """The value to use for ``label``: itself, or ``other`` past the bound."""
        if value is None:
            return None
        allowed = self.allow.get(label)
        if allowed is not None:
            if value in allowed:
                return value
        else:
            seen = self.seen.get(label)
            if seen is None:
                seen = self.seen[label] = set()
            if value in seen:
                return value
            if len(seen) < self.max_values:
                seen.add(value)
                return value
        self.overflow[label] += 1
        return OTHER

    def snapshot(self) -> dict[str, list[str]]:
        """The values kept so far (persisted with a stage-1 task's state)."""
        return {label: sorted(values) for label, values in self.seen.items()}

    def restore(self, kept: Mapping[str, Collection[str]]) -> None:
        self.seen = {label: set(values) for label, values in kept.items()}
