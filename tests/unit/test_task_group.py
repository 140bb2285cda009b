"""Opening assigned tasks (streams.runtime.group.TaskGroup), without Kafka.

Regression: the broker went down during a rebalance, between opening two of the tasks a
worker had just been assigned. The failure escaped the rebalance callback (aiokafka logs
it and carries on), so the partitions stayed assigned to the worker without tasks: their
input was fetched and never processed, and the pipeline never went idle."""

from __future__ import annotations

import asyncio

from aiokafka.errors import KafkaConnectionError

from streams.runtime.group import TaskGroup
from streams.runtime.stats import RuntimeStats


class FlakyGroup(TaskGroup):
    stage = "stage1"
    open_retry_delay = 0.01

    def __init__(self, failures: dict[int, int]) -> None:
        super().__init__(RuntimeStats(), consumer=None, topics=["crm.tickets.v1"])
        self.failures = failures
        self.attempts: list[int] = []

    async def _open_task(self, index: int) -> None:
        self.attempts.append(index)
        if self.failures.get(index, 0):
            self.failures[index] -= 1
            raise KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 9092)]")
        self.tasks[index] = object()


def test_an_assigned_task_that_cannot_be_opened_is_retried_until_the_broker_answers():
    group = FlakyGroup({1: 3})
    asyncio.run(group.assign({0, 1, 2}))
    assert sorted(group.tasks) == [0, 1, 2]
    assert group.attempts == [0, 1, 1, 1, 1, 2]
    assert group.stats.owned[("stage1", "tasks")] == 3


def test_each_task_opened_is_timed_once_and_exported():
    """``crm_task_restore_seconds``: one observation per task opened (not per failed
    attempt), on /metrics as a histogram per stage."""
    from prometheus_client import CollectorRegistry, generate_latest

    from streams.metrics.collector import WorkerCollector

    group = FlakyGroup({1: 2})
    asyncio.run(group.assign({0, 1}))
    histogram = group.stats.restore_seconds["stage1"]
    assert histogram.n == 2 and histogram.counts[0] == 2  # both well under 0.1 s
    registry = CollectorRegistry()
    registry.register(WorkerCollector(group.stats, list, "app"))
    text = generate_latest(registry).decode()
    assert 'crm_task_restore_seconds_count{stage="stage1"} 2.0' in text
