"""Output records of the core: KPI records (§5), SLA events (§4), churn signals and
health changes (§3.6). Times are epoch ms here; the codec renders RFC 3339."""

from __future__ import annotations

import msgspec

Dims = tuple[tuple[str, str], ...]
"""Dimension values as sorted (name, value) pairs; ``()`` is the overall figure."""


def dims_key(dims: Dims) -> str:
    """Stable text form used in topic keys: ``channel=email,priority=high`` (or ``-``)."""
    if not dims:
        return "-"
    return ",".join(f"{name}={value}" for name, value in dims)


class KpiRecord(msgspec.Struct, frozen=True):
    kpi: str
    size: str
    start_ms: int
    end_ms: int
    dims: Dims
    value: float | int | None
    n: int
    stats: dict[str, object]
    revision: int = 0
    final: bool = True

    @property
    def key(self) -> tuple[str, str, int, Dims]:
        return (self.kpi, self.size, self.start_ms, self.dims)

    def topic_key(self, start_text: str) -> str:
        """Key on crm.kpi.v1: ``kpi|size|start|dims``."""
        return f"{self.kpi}|{self.size}|{start_text}|{dims_key(self.dims)}"


class SlaRecord(msgspec.Struct, frozen=True):
    ticket_id: str
    customer_id: str
    priority: str
    metric: str  # first_reply | resolution
    state: str  # at_risk | breached | met
    target_s: int
    elapsed_s: float
    due_at_ms: int
    occurred_at_ms: int

    @property
    def sort_key(self) -> tuple:
        return (self.occurred_at_ms, self.customer_id, self.ticket_id, self.metric, self.state)


class Contribution(msgspec.Struct, frozen=True):
    component: str
    score: float  # component score 0-100
    weight: float
    points: float  # weight * score / total weight: the contribution to the health score


class ChurnSignal(msgspec.Struct, frozen=True):
    signal: str
    customer_id: str
    occurred_at_ms: int
    evidence_event_ids: tuple[str, ...]
    health_before: float
    health_after: float
    detail: str = ""

    @property
    def sort_key(self) -> tuple:
        return (self.occurred_at_ms, self.customer_id, self.signal)


class HealthChange(msgspec.Struct, frozen=True):
    customer_id: str
    occurred_at_ms: int
    cause_event_id: str
    score_before: float
    score_after: float
    contributions: tuple[Contribution, ...]
