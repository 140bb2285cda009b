"""A restore longer than the group's session timeout, on a real broker: aiokafka sends
no heartbeats while the rebalance listener runs, so without the runtime's own
(streams.runtime.group.heartbeats) the member was expelled mid-restore, rejoined, got the
same partitions and restored them again - for ever, if a restore always takes that long."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer

from streams.runtime.group import TaskGroup
from streams.runtime.stats import RuntimeStats

pytestmark = pytest.mark.kafka

SESSION_MS = 6_000  # the broker's minimum (group.min.session.timeout.ms)
RESTORE_S = 5.0  # per task: two tasks take 10 s, beyond the session


class SlowRestores(TaskGroup):
    stage = "stage1"

    def __init__(self, consumer: AIOKafkaConsumer, topic: str) -> None:
        super().__init__(RuntimeStats(), consumer, [topic])
        self.opened: list[int] = []

    async def _open_task(self, index: int) -> None:
        self.opened.append(index)
        await asyncio.sleep(RESTORE_S)  # a long restore, the event loop free meanwhile
        self.tasks[index] = _Task()


class _Task:
    async def flush(self) -> None:
        return None

    async def close(self) -> None:
        return None


@pytest.mark.timeout(120)
def test_a_restore_longer_than_the_session_timeout_keeps_the_member_in_its_group(kafka):
    topic = kafka.new_topic("long-restore", partitions=2)

    async def scenario() -> tuple[list[int], int, set[int]]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=kafka.bootstrap, group_id=f"long-restore-{uuid.uuid4().hex[:8]}",
            enable_auto_commit=False, auto_offset_reset="earliest", session_timeout_ms=SESSION_MS,
            heartbeat_interval_ms=1_000, rebalance_timeout_ms=60_000, max_poll_interval_ms=300_000,
        )
        group = SlowRestores(consumer, topic)
        await group.start()
        try:
            # poll as the stage loops do, for the restores and as long again after them
            deadline = time.monotonic() + 2 * 2 * RESTORE_S + 2 * SESSION_MS / 1000
            while time.monotonic() < deadline:
                await consumer.getmany(timeout_ms=200)
            generation = consumer._coordinator.generation  # noqa: SLF001 - the group's view of us
            return group.opened, generation, {tp.partition for tp in consumer.assignment()}
        finally:
            await group.stop()

    opened, generation, assigned = asyncio.run(scenario())
    # each task restored once, in the first generation, and still ours
    assert opened == [0, 1], f"restores: {opened} (generation {generation})"
    assert generation == 1 and assigned == {0, 1}
