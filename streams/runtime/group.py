"""What stage 1 and stage 2 share: a consumer-group member that owns one *task* per
partition index. A task is opened (restored from its changelog) when its partition is
assigned, dropped when it is revoked or taken over by another worker (fenced), and
restored again with backoff when a batch cannot be committed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener

from streams.runtime.kafka import TaskFenced, group_options, reopen_with_backoff
from streams.runtime.stats import RuntimeStats

log = logging.getLogger("crm_kpi.group")


HEARTBEAT_EVERY_S = group_options()["heartbeat_interval_ms"] / 1000


@contextlib.asynccontextmanager
async def heartbeats(consumer: AIOKafkaConsumer | None, every_s: float = HEARTBEAT_EVERY_S) -> AsyncIterator[None]:
    """Keep the consumer's group membership alive while the rebalance listener runs.

    aiokafka (0.12-0.14, ``GroupCoordinator.ensure_active_group``) stops its heartbeat
    task before it rejoins and starts it again only after the listener has returned, so
    a listener that takes longer than the session timeout - restoring tasks from their
    changelogs: ~11 s for a quarter of a million customers on this machine - gets the
    member expelled; it then rejoins, is assigned the same partitions, restores them
    again, and never gets out of that loop. Java's consumer heartbeats from its own
    thread meanwhile; this does the same with aiokafka's own heartbeat request. A
    rebalance that starts meanwhile is noted by that request (the member rejoins after
    the listener) as aiokafka's heartbeat task would."""
    coordinator = getattr(consumer, "_coordinator", None)
    beat = getattr(coordinator, "_do_heartbeat", None)
    if beat is None:  # no group, or an aiokafka without it: nothing to keep alive
        yield
        return

    async def loop() -> None:
        while True:
            await asyncio.sleep(every_s)
            if not getattr(coordinator, "member_id", ""):
                return  # expelled or left: the coordinator rejoins after the listener
            try:
                await beat()
            except Exception as exc:  # noqa: BLE001 - the coordinator's own task would retry too
                log.warning("heartbeat during the rebalance listener failed: %s: %s", type(exc).__name__, exc)

    task = asyncio.create_task(loop(), name="rebalance-heartbeats")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, group: TaskGroup) -> None:
        self.group = group

    async def on_partitions_revoked(self, revoked):
        # (aiokafka's heartbeat task still runs while partitions are revoked)
        await self.group.revoke({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned):
        async with heartbeats(self.group.consumer):
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

    async def _open_timed(self, index: int) -> None:
        """:meth:`_open_task`, its duration observed (``crm_task_restore_seconds``)."""
        began = time.monotonic()
        await self._open_task(index)
        self.stats.observe_restore(self.stage, time.monotonic() - began)

    async def start(self) -> None:
        await self.consumer.start()
        self.consumer.subscribe(self.topics, listener=_Rebalance(self))

    async def assign(self, partitions: set[int]) -> None:
        async with self.lock:
            for index in sorted(partitions - set(self.tasks)):
                await self._open_assigned(index)
            self.stats.owned[(self.stage, "tasks")] = len(self.tasks)
            log.info("%s owns partitions %s", self.stage, sorted(self.tasks))

    open_retry_delay = 0.5  # seconds before the first retry; doubles up to 30 s

    async def _open_assigned(self, index: int) -> None:
        """Open a newly assigned task; while the broker cannot be reached (it restarts
        during the rebalance), retry with backoff until it answers. Giving up would leave
        the partition assigned to this member without a task: its input never processed."""
        delay = self.open_retry_delay
        while True:
            try:
                await self._open_timed(index)
                return
            except TaskFenced:
                return  # another worker owns it now
            except Exception as exc:  # noqa: BLE001 - any failure: wait and try again
                log.warning("%s task %d: opening the assigned task failed (%s: %s); retrying in %.1fs",
                            self.stage, index, type(exc).__name__, exc, delay)
                if index in self.tasks:  # failed after registering (seeking its input)
                    await self._drop(index)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def revoke(self, partitions: set[int]) -> None:
        async with self.lock:
            for index in sorted(partitions & set(self.tasks)):
                await self._flush(index)
                await self._drop(index)
            self.stats.owned[(self.stage, "tasks")] = len(self.tasks)

    async def _flush(self, index: int) -> None:
        """Commit a task's work since its last commit before letting it go (a task that
        is behind commits only every ``commit_interval``). If that fails, the next owner
        redoes the work from the last commit: nothing is lost either way."""
        try:
            await self.tasks[index].flush()
        except Exception as exc:  # noqa: BLE001 - fenced, broker gone...: the next owner redoes it
            log.warning("%s task %d: final commit skipped (%s: %s)", self.stage, index, type(exc).__name__, exc)

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
        await reopen_with_backoff(self.stage, index, error, self._drop, self._open_timed)

    async def stop(self) -> None:
        async with self.lock:
            for index in sorted(self.tasks):
                await self._flush(index)
            for task in self.tasks.values():
                await task.close()
            self.tasks.clear()
        await self.consumer.stop()  # leaves the group
