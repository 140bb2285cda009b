"""What stage 1 and stage 2 share: a consumer-group member that owns one *task* per
partition index. A task is opened (restored from its changelog) when its partition is
assigned, dropped when it is revoked or taken over by another worker (fenced), and
restored again with backoff when a batch cannot be committed."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener

from streams.runtime.kafka import TaskFenced, reopen_with_backoff
from streams.runtime.stats import RuntimeStats

log = logging.getLogger("crm_kpi.group")


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, group: TaskGroup) -> None:
        self.group = group

    async def on_partitions_revoked(self, revoked):
        await self.group.revoke({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned):
        await self.group.assign({tp.partition for tp in assigned})


class TaskGroup:
    """Base of :class:`~streams.runtime.stage1.Stage1` and :class:`~streams.runtime.stage2.Stage2`."""

    stage = "stage"

    def __init__(self, stats: RuntimeStats, consumer: AIOKafkaConsumer, topics: list[str]) -> None:
        self.stats = stats
        self.consumer = consumer
        self.topics = topics
        self.tasks: dict[int, Any] = {}
        self.lock = asyncio.Lock()  # held while a batch is processed and during rebalances

    async def _open_task(self, index: int) -> None:
        """Create, restore and register the task of partition ``index``; seek its input."""
        raise NotImplementedError

    async def start(self) -> None:
        await self.consumer.start()
        self.consumer.subscribe(self.topics, listener=_Rebalance(self))

    async def assign(self, partitions: set[int]) -> None:
        async with self.lock:
            for index in sorted(partitions - set(self.tasks)):
                await self._open_task(index)
            self.stats.owned[(self.stage, "tasks")] = len(self.tasks)
            log.info("%s owns partitions %s", self.stage, sorted(self.tasks))

    async def revoke(self, partitions: set[int]) -> None:
        async with self.lock:
            for index in sorted(partitions & set(self.tasks)):
                await self._drop(index)
            self.stats.owned[(self.stage, "tasks")] = len(self.tasks)

    async def _drop(self, index: int) -> None:
        """Forget a task and the series of its partition."""
        task = self.tasks.pop(index, None)
        if task is not None:
            await task.close()
        self.stats.forget_partition(self.stage, self.topics, index)

    async def handle_failure(self, index: int, error: BaseException) -> None:
        """A task's batch failed. Fenced: another worker owns the task now (our loop was
        busy through a rebalance) - let it go. Otherwise its effects exist only in
        memory: restore it from the changelog, retrying until the broker answers."""
        if isinstance(error, TaskFenced):
            log.warning("%s task %d was taken over by another worker; dropping it", self.stage, index)
            await self._drop(index)
            self.stats.owned[(self.stage, "tasks")] = len(self.tasks)
            return
        self.stats.recoveries[self.stage] += 1
        await reopen_with_backoff(self.stage, index, error, self._drop, self._open_task)

    async def stop(self) -> None:
        async with self.lock:
            for task in self.tasks.values():
                await task.close()
            self.tasks.clear()
        await self.consumer.stop()  # leaves the group
