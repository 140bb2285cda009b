"""Small helpers for core tests: build events tersely, run the core, look records up."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from streams.core.events import Event, make_event
from streams.core.pipeline import CoreConfig
from streams.core.records import KpiRecord
from streams.core.windows import Lateness, parse_window_specs
from streams.replay import ReplayResult, run_events

# Monday 2026-11-02 00:00 UTC
DAY0 = int(datetime(2026, 11, 2, tzinfo=UTC).timestamp() * 1000)
MIN = 60_000
HOUR = 3_600_000


def at(hhmm: str, day: int = 0) -> int:
    """Epoch ms of ``HH:MM`` (or ``HH:MM:SS``) on DAY0 + day."""
    parts = [int(p) for p in hhmm.split(":")]
    seconds = parts[0] * 3600 + parts[1] * 60 + (parts[2] if len(parts) > 2 else 0)
    return DAY0 + day * 86_400_000 + seconds * 1000


class Events:
    """Builds events with increasing ids, so same-instant events keep their written order."""

    def __init__(self) -> None:
        self.items: list[Event] = []
        self._ids = itertools.count(1)

    def add(self, event_type: str, when: str | int, customer: str = "c1", **data: object) -> Event:
        ts = at(when) if isinstance(when, str) else when
        event = make_event(
            event_type, event_id=f"e{next(self._ids):05d}", occurred_at_ms=ts, customer_id=customer, **data
        )
        self.items.append(event)
        return event


def config(windows: str = "1h", min_sample: int = 30, **kwargs: object) -> CoreConfig:
    return CoreConfig(specs=parse_window_specs(windows), lateness=Lateness(30_000, 60_000, 86_400_000),
                      min_sample=min_sample, **kwargs)


def run(events: Events | list[Event], windows: str = "1h", min_sample: int = 30, **kwargs: object) -> ReplayResult:
    items = events.items if isinstance(events, Events) else events
    return run_events(list(items), config(windows, min_sample, **kwargs))


def find(result: ReplayResult, kpi: str, start: int, dims: dict[str, str] | None = None, size: str | None = None) -> KpiRecord:
    key_dims = tuple(sorted((dims or {}).items()))
    matches = [
        r for r in result.records
        if r.kpi == kpi and r.start_ms == start and r.dims == key_dims and (size is None or r.size == size)
    ]
    assert len(matches) == 1, f"{kpi} {dims} at {start}: {len(matches)} records"
    return matches[0]
