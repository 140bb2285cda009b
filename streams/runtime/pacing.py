"""Handing the event loop back during long synchronous work.

One event loop serves both stages, every task, heartbeats and ``/metrics``. A commit
encodes everything that changed since the last one (customers, tickets, window buckets,
KPI records) before it sends anything; done in one block, a big commit held every other
task's input for tenths of a second (docs/performance.md). Loops that can run long check
a :class:`LoopBudget` every few dozen items and yield once it is spent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

# CPU time a loop may hold the event loop before it yields (a batch's work is sliced
# at ~0.1 s, see stage1.ADVANCE_SLICE; encoding is finer, it is what a live worker's
# commits do every 100 ms)
ENCODE_SLICE_S = 0.01

# items between two looks at the clock
CHECK_EVERY = 64


class LoopBudget:
    """``if budget.spent(): await budget.pause()`` in a loop: yields to the event loop
    once ``seconds`` have passed since the budget began or last paused."""

    __slots__ = ("seconds", "since", "pauses")

    def __init__(self, seconds: float = ENCODE_SLICE_S) -> None:
        self.seconds = seconds
        self.since = time.perf_counter()
        self.pauses = 0

    def spent(self) -> bool:
        return time.perf_counter() - self.since >= self.seconds

    async def pause(self) -> None:
        await asyncio.sleep(0)
        self.pauses += 1
        self.since = time.perf_counter()


async def extend_sliced(out: list[Any], items: Sequence[T], make: Callable[[T], Any], budget: LoopBudget) -> None:
    """``out.extend(map(make, items))``, yielding to the event loop whenever ``budget`` is
    spent (checked every ``CHECK_EVERY`` items)."""
    for start in range(0, len(items), CHECK_EVERY):
        out.extend(map(make, items[start:start + CHECK_EVERY]))
        if budget.spent():
            await budget.pause()
