"""Event-time windows: specs, assignment to windows and panes, watermark, lateness.

Semantics (the reference is Kafka Streams / Flink; see docs/architecture.md):

* Windows are aligned to the UTC epoch. A tumbling window of size S covers
  ``[k*S, (k+1)*S)``. A *rolling* window (any size of 2 days or more that is a
  whole number of days, e.g. ``30d``) advances daily: it covers
  ``[k*1d - S + 1d, k*1d + 1d)``, so each day closes one 30-day window.
* Every window is a union of *panes*: the largest duration that divides every
  window size and advance (5 minutes for the defaults). Stage 1 folds events into
  pane partials only; stage 2 merges panes into windows.
* ``watermark = max event time seen - out_of_orderness``. A window closes when the
  watermark reaches ``end + grace`` and is kept until ``end + grace +
  allowed_lateness``; later input for it produces revisions. An event older than
  ``watermark - grace - allowed_lateness`` cannot reach any retained window: it is
  *dropped late* and changes nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import reduce

from streams.core.durations import format_duration, parse_duration

DAY_MS = 86_400_000
MIN_TIME = -(2**62)  # "no event seen yet"; far below any real timestamp
MAX_TIME = 2**62  # "+infinity" watermark used to flush everything


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """One window size: tumbling (advance == size) or rolling (advance < size)."""

    size_ms: int
    advance_ms: int

    @property
    def name(self) -> str:
        return format_duration(self.size_ms)

    @property
    def rolling(self) -> bool:
        return self.advance_ms < self.size_ms

    def last_start(self, ts_ms: int) -> int:
        """Start of the latest window containing ``ts_ms``."""
        return (ts_ms // self.advance_ms) * self.advance_ms

    def starts(self, ts_ms: int) -> range:
        """Starts of every window containing ``ts_ms`` (one for tumbling windows)."""
        last = self.last_start(ts_ms)
        first = last - self.size_ms + self.advance_ms
        return range(first, last + 1, self.advance_ms)

    def bucket_start(self, ts_ms: int) -> int:
        """Start of the advance-sized bucket holding ``ts_ms`` (== window start if tumbling)."""
        return (ts_ms // self.advance_ms) * self.advance_ms

    def buckets_of(self, window_start_ms: int) -> range:
        """Bucket starts that make up the window starting at ``window_start_ms``."""
        return range(window_start_ms, window_start_ms + self.size_ms, self.advance_ms)

    def windows_of_bucket(self, bucket_start_ms: int) -> range:
        """Window starts of every window that contains the bucket."""
        return self.starts(bucket_start_ms)


def parse_window_specs(text: str | list[str] | tuple[str, ...]) -> tuple[WindowSpec, ...]:
    """Parse ``"5m,1h,1d,30d"`` into specs. Sizes of 2 days or more that are whole days
    are rolling and advance daily; all others are tumbling. Duplicates are removed and
    the result is sorted by size."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    specs: dict[int, WindowSpec] = {}
    for part in parts:
        part = part.strip()
        if not part:
            continue
        size = parse_duration(part)
        if size <= 0:
            raise ValueError(f"window size must be positive: {part}")
        if size > DAY_MS and size % DAY_MS == 0:
            specs[size] = WindowSpec(size, DAY_MS)
        else:
            if DAY_MS % size != 0 and size % DAY_MS != 0:
                raise ValueError(f"window size {part} must divide a day or be whole days")
            specs[size] = WindowSpec(size, size)
    if not specs:
        raise ValueError("no window sizes given")
    return tuple(specs[size] for size in sorted(specs))


def pane_size_ms(specs: tuple[WindowSpec, ...]) -> int:
    """The pane: greatest common divisor of every window size and advance."""
    return reduce(math.gcd, [v for s in specs for v in (s.size_ms, s.advance_ms)])


def pane_start(ts_ms: int, pane_ms: int) -> int:
    return (ts_ms // pane_ms) * pane_ms


@dataclass(frozen=True, slots=True)
class Lateness:
    """Out-of-orderness bound, grace and allowed lateness, in milliseconds."""

    out_of_orderness_ms: int = 30_000
    grace_ms: int = 60_000
    allowed_lateness_ms: int = DAY_MS

    def __post_init__(self) -> None:
        if min(self.out_of_orderness_ms, self.grace_ms, self.allowed_lateness_ms) < 0:
            raise ValueError("out-of-orderness, grace and allowed lateness must not be negative")

    def watermark(self, max_event_ms: int) -> int:
        if max_event_ms <= MIN_TIME:
            return MIN_TIME
        return max_event_ms - self.out_of_orderness_ms

    def too_late(self, ts_ms: int, watermark_ms: int) -> bool:
        """True when no retained window can take an event at ``ts_ms`` any more."""
        if watermark_ms <= MIN_TIME:
            return False
        return ts_ms < watermark_ms - self.grace_ms - self.allowed_lateness_ms

    def closed(self, window_end_ms: int, watermark_ms: int) -> bool:
        return watermark_ms >= window_end_ms + self.grace_ms

    def expired(self, window_end_ms: int, watermark_ms: int) -> bool:
        return watermark_ms >= window_end_ms + self.grace_ms + self.allowed_lateness_ms

    @classmethod
    def parse(cls, out_of_orderness: str, grace: str, allowed_lateness: str) -> Lateness:
        return cls(
            parse_duration(out_of_orderness), parse_duration(grace), parse_duration(allowed_lateness)
        )
