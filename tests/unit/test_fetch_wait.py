"""The stage-1 consumer's fetch wait (``fetch_max_wait``): aiokafka has one fetch in
flight per broker, for the partitions with nothing buffered, and the broker holds it
until ``fetch_max_wait`` when they have nothing new. With one input topic quiet, Kafka's
default (500 ms) held a live worker's busy partitions back for up to that long each
round: the latency phase of the benchmark (docs/performance.md, 2026-12-07) went from
p99 1.2-1.75 s to 0.5-0.9 s with 50 ms. This checks the setting and that it reaches the
consumer; the effect is measured by ``bench`` (never timed in a test)."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from streams.runtime.stage1 import Stage1
from streams.runtime.stats import RuntimeStats
from streams.settings import Settings, core_config


def test_default_is_50ms_not_kafkas_500ms():
    settings = Settings()
    assert settings.fetch_max_wait == "50ms"
    assert settings.fetch_max_wait_ms == 50


@pytest.mark.parametrize("value", ["0ms", "0s", "11s", "1m", "soon"])
def test_out_of_range_or_malformed_is_refused(value):
    with pytest.raises(ValidationError, match="fetch_max_wait"):
        Settings(fetch_max_wait=value)


@pytest.mark.parametrize(("value", "ms"), [("1ms", 1), ("200ms", 200), ("10s", 10_000)])
def test_accepted_range(value, ms):
    assert Settings(fetch_max_wait=value).fetch_max_wait_ms == ms


def test_stage1_consumer_uses_it():
    async def build() -> int:
        settings = Settings(fetch_max_wait="75ms")
        stage = Stage1(settings, core_config(settings), RuntimeStats(), tasks_total=6)
        return stage.consumer._fetch_max_wait_ms

    assert asyncio.run(build()) == 75
