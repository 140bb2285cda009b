"""Long loops of a commit hand the event loop back (streams.runtime.pacing) and still
produce exactly what one block would."""

from __future__ import annotations

import asyncio

from streams.runtime.pacing import CHECK_EVERY, LoopBudget, extend_sliced


def test_extend_sliced_equals_one_extend_and_yields_when_the_budget_is_spent():
    items = list(range(3 * CHECK_EVERY + 5))
    spent, fresh = LoopBudget(seconds=0.0), LoopBudget(seconds=3600.0)
    out_spent: list = ["head"]
    out_fresh: list = []
    asyncio.run(extend_sliced(out_spent, items, lambda i: (i, i * i), spent))
    asyncio.run(extend_sliced(out_fresh, items, lambda i: (i, i * i), fresh))
    assert out_spent == ["head", *((i, i * i) for i in items)]
    assert out_fresh == out_spent[1:]
    assert spent.pauses == 4 and fresh.pauses == 0  # a look at the clock per 64 items
