"""Stage 2's live figures (provisional records of open windows) catch up with the data once
the partials pause, whatever the throttle that keeps them to ~5 % of the task's time says.

The throttle waits 20x the last publication's cost: on a busy machine a one-second
publication meant twenty seconds in which nothing newer was published, and a consumer
reading the KPI topic after the input stopped could see open windows without their last
partials (the end-to-end test stream = replay failed so in CI on 2026-12-06). Here the
task is driven step by step with no broker: the commit interval is set beyond the test,
so nothing is sent, and the records a commit would send are in ``task.pending``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from types import SimpleNamespace

from streams.codec.state import Marker, encode_marker, encode_partials
from streams.core.pipeline import Processor
from streams.runtime.stage2 import Stage2Task
from streams.runtime.stats import RuntimeStats
from streams.settings import Settings, core_config
from tests.eventgen import generate

HOUR = 3_600_000


@dataclass
class Message:
    offset: int
    value: bytes


def provisional_counts(records) -> dict[tuple, int]:
    """n per open-window record: (kpi, window start, window end, dims) -> n."""
    return {(r.kpi, r.start_ms, r.end_ms, r.dims): r.n for r in records if not r.final}


def test_live_figures_catch_up_once_partials_pause_despite_the_throttle():
    settings = Settings(provisional_interval="1s", commit_interval="1h", live_commit_interval="1h")
    config = core_config(settings)
    events = sorted(generate(11, customers=30, span_ms=2 * HOUR), key=lambda e: e.occurred_at_ms)
    half = len(events) // 2

    def partials(batch) -> bytes:
        processor = Processor(config)
        for event in batch:
            processor.offer(event)
        processor.advance(processor.max_event_ms)
        return encode_partials(0, processor.drain().aggs)

    first, second = partials(events[:half]), partials(events[half:])
    start = events[0].occurred_at_ms
    marker = encode_marker(Marker(0, start, False, 1, False))  # the watermark stays at the start: windows open

    async def main() -> list[dict]:
        stage = SimpleNamespace(settings=settings, config=config, stats=RuntimeStats(), tasks={})
        task = Stage2Task(0, stage)  # its producer is never started: nothing is committed here
        seen = []
        await task.step([Message(0, first), Message(1, marker)], now=100.0, caught_up=True)
        seen.append(provisional_counts(task.pending))  # the first publication is never throttled
        task.next_provisional = 100.0 + 1_000  # as after a publication that took 50 s
        task.pending.clear()
        await task.step([Message(2, second)], now=100.5, caught_up=True)
        seen.append(provisional_counts(task.pending))  # throttled: partials still arriving
        await task.step([Message(3, marker)], now=100.8, caught_up=True)
        seen.append(provisional_counts(task.pending))  # paused, but within the interval of the last one
        await task.step([], now=101.2, caught_up=True)
        seen.append(provisional_counts(task.pending))  # paused past the interval: caught up
        task.pending.clear()
        await task.step([], now=103.0, caught_up=True)
        seen.append(provisional_counts(task.pending))  # nothing merged since: nothing to republish
        return seen

    before, throttled, too_soon, caught_up, idle = asyncio.run(main())
    assert before and throttled == {} and too_soon == {} and idle == {}
    grown = [key for key, n in caught_up.items() if n > before.get(key, 0)]
    assert grown, "the open windows were not republished with the second half of the partials"
    # what was published equals what one publication of all the partials would give
    stage = SimpleNamespace(settings=settings, config=config, stats=RuntimeStats(), tasks={})

    async def whole() -> dict:
        task = Stage2Task(0, stage)
        await task.step([Message(0, first), Message(1, second), Message(2, marker)], now=100.0, caught_up=True)
        return provisional_counts(task.pending)

    expected = asyncio.run(whole())
    assert {key: n for key, n in caught_up.items()} == {key: n for key, n in expected.items() if key in caught_up}
    assert set(expected) - set(before) <= set(caught_up)


def test_caught_up_records_commit_within_the_live_interval_state_alone_within_the_commit_interval():
    """A caught-up task commits within ``live_commit_interval`` when it has records to
    publish (live figures, finals); merged partials alone wait for ``commit_interval``
    (each commit rewrites every bucket changed since the last one)."""
    settings = Settings(provisional_interval="1h", commit_interval="1s", live_commit_interval="100ms")
    config = core_config(settings)
    events = sorted(generate(3, customers=20, span_ms=HOUR), key=lambda e: e.occurred_at_ms)
    processor = Processor(config)
    for event in events:
        processor.offer(event)
    processor.advance(processor.max_event_ms)
    partials = encode_partials(0, processor.drain().aggs)
    marker = encode_marker(Marker(0, events[0].occurred_at_ms, False, 1, False))  # windows stay open

    async def main() -> list[tuple[float, int]]:
        stage = SimpleNamespace(settings=settings, config=config, stats=RuntimeStats(), tasks={})
        task = Stage2Task(0, stage)
        commits: list[tuple[float, int]] = []

        async def flush(now: float | None = None) -> None:  # what a commit would send, no broker
            commits.append((now, len(task.pending)))
            task.pending, task.uncommitted, task.last_commit = [], 0, now

        task.flush = flush
        task.last_commit = 100.0
        offset = 0
        for now in (100.05, 100.2, 100.4, 100.9, 101.1, 101.15, 101.5, 102.2):
            await task.step([Message(offset, partials), Message(offset + 1, marker)], now=now, caught_up=True)
            offset += 2
        return commits

    commits = asyncio.run(main())
    # 100.2: the first live figures (never throttled), past 100 ms; then state only: 1 s later
    assert [now for now, _ in commits] == [100.2, 101.5]
    assert commits[0][1] > 0 and commits[1][1] == 0
