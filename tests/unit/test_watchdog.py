"""The event-loop stall watchdog (streams/runtime/watchdog.py): a loop held by blocking
work is measured, and the log names the function that held it."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import time
from collections import Counter
from pathlib import Path

from streams.metrics.collector import WorkerCollector
from streams.runtime.stats import STALL_SECONDS_BUCKETS, Histogram, RuntimeStats
from streams.runtime.watchdog import LoopWatchdog, describe_stall, innermost_own_frame

HERE = str(Path(__file__).resolve().parent)


def hold_the_loop(seconds: float) -> None:
    time.sleep(seconds)  # blocking work on the loop's thread


def test_a_blocked_loop_is_measured_and_the_blocking_function_named(caplog):
    stalls: list[float] = []

    async def main() -> None:
        watchdog = LoopWatchdog(stalls.append, threshold_s=0.1, interval_s=0.02, package_dir=HERE)
        watchdog.start()
        await asyncio.sleep(0.1)
        hold_the_loop(0.4)
        await asyncio.sleep(0.1)
        await watchdog.stop()
        assert watchdog._gc not in gc.callbacks and not watchdog.thread.is_alive()

    with caplog.at_level(logging.WARNING, logger="crm_kpi.watchdog"):
        asyncio.run(main())
    assert len(stalls) == 1 and 0.3 <= stalls[0] < 1.5
    message = caplog.records[0].getMessage()
    assert "event loop blocked" in message and "hold_the_loop" in message, message


def test_a_loop_that_keeps_moving_reports_nothing(caplog):
    stalls: list[float] = []

    async def main() -> None:
        watchdog = LoopWatchdog(stalls.append, threshold_s=0.2, interval_s=0.02, package_dir=HERE)
        watchdog.start()
        for _ in range(20):
            hold_the_loop(0.01)
            await asyncio.sleep(0.01)
        await watchdog.stop()

    with caplog.at_level(logging.WARNING, logger="crm_kpi.watchdog"):
        asyncio.run(main())
    assert stalls == [] and not caplog.records


def test_the_innermost_frame_of_the_package_is_named():
    import sys

    frame = sys._getframe()
    assert innermost_own_frame(frame, HERE).endswith("test_the_innermost_frame_of_the_package_is_named")
    assert innermost_own_frame(frame, "/nowhere") is None


def test_a_core_frame_is_named_with_the_runtime_call_it_came_from():
    import sys

    leaf_ns: dict = {"sys": sys}
    exec(compile("def leaf():\n    return sys._getframe()\n", f"{HERE}/core/inner.py", "exec"), leaf_ns)
    caller_ns: dict = {"leaf": leaf_ns["leaf"]}
    exec(compile("def step():\n    x = 1\n    return leaf()\n", f"{HERE}/runtime/stage.py", "exec"), caller_ns)
    frame = caller_ns["step"]()
    assert innermost_own_frame(frame, HERE) == "inner.py:2 leaf < stage.py:3 step"


def test_stall_lines_are_rate_limited_to_the_longest_with_a_count(caplog):
    stalls: list[float] = []

    async def main() -> None:
        watchdog = LoopWatchdog(stalls.append, threshold_s=0.1, interval_s=0.02, package_dir=HERE,
                                log_interval_s=1.0)
        watchdog.start()
        for seconds in (0.15, 0.15, 0.35, 0.15):
            await asyncio.sleep(0.05)
            hold_the_loop(seconds)
        await asyncio.sleep(1.2)  # the held stalls are logged once the interval has passed
        await watchdog.stop()

    with caplog.at_level(logging.WARNING, logger="crm_kpi.watchdog"):
        asyncio.run(main())
    assert len(stalls) == 4
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2, lines
    assert "[the longest of 3 stalls" in lines[1], lines
    longest = float(re.search(r"blocked (\d+\.\d+) s", lines[1]).group(1))
    assert longest == round(max(stalls[1:]), 2) and max(stalls[1:]) == stalls[2], (lines, stalls)


def test_a_stall_line_names_places_and_collections():
    line = describe_stall(0.84, Counter({"stage2.py:201 step": 9, "state.py:162 encode_bucket": 3}), 12, {2: 0.31})
    assert line == ("event loop blocked 0.84 s; in stage2.py:201 step (9 of 12 samples), "
                    "state.py:162 encode_bucket (3 of 12 samples); gc gen 2 0.31 s")
    assert describe_stall(0.3, Counter(), 0, {}) == "event loop blocked 0.30 s"


def test_stalls_are_exported_in_their_buckets():
    histogram = Histogram(STALL_SECONDS_BUCKETS)
    for seconds in (0.3, 0.3, 2.0):
        histogram.observe(seconds)
    cumulative = dict(histogram.cumulative())
    assert cumulative["0.25"] == 0 and cumulative["0.5"] == 2 and cumulative["2.5"] == 3 and cumulative["+Inf"] == 3


def test_every_garbage_collection_is_timed_and_exported_by_generation():
    stats = RuntimeStats().zero()
    seen: list[tuple[int, float]] = []

    def observe_gc(generation: int, seconds: float) -> None:
        seen.append((generation, seconds))
        stats.observe_gc(generation, seconds)

    async def main() -> None:
        watchdog = LoopWatchdog(lambda seconds: None, observe_gc=observe_gc)
        watchdog.start()
        garbage = [[] for _ in range(1000)]
        for a, b in zip(garbage, garbage[1:], strict=False):
            a.append(b)
            b.append(a)  # cycles: only a collection frees them
        del garbage, a, b
        gc.collect(1)
        gc.collect(2)
        await watchdog.stop()
        gc.collect(0)  # after stop: not seen

    asyncio.run(main())
    assert [generation for generation, _ in seen[-2:]] == [1, 2], seen
    assert all(0 <= seconds < 5 for _, seconds in seen)
    assert stats.gc_collections["1"] >= 1 and stats.gc_collections["2"] >= 1
    assert stats.gc_seconds["2"] == sum(seconds for generation, seconds in seen if generation == 2) > 0
    families = {family.name: family for family in WorkerCollector(stats, list, "app").collect()}
    exported = {sample.labels["generation"]: sample.value for sample in families["crm_gc_pause_seconds"].samples
                if sample.name == "crm_gc_pause_seconds_total"}
    assert set(exported) == {"0", "1", "2"} and exported["2"] == stats.gc_seconds["2"]
    collections = {sample.labels["generation"]: sample.value for sample in families["crm_gc_collections"].samples
                   if sample.name == "crm_gc_collections_total"}
    assert collections["1"] == stats.gc_collections["1"]
