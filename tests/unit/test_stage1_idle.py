"""When a stage-1 task may call itself idle (and so advance event time to its last
event's time), without Kafka: the task and its group's lag check are driven with a fake
consumer that reports highwater marks and fetch-response times the way aiokafka does.

The regression (issue #9, gap 5): during a broker outage the consumer receives nothing,
and its highwater marks - from the last fetch before the outage - say the task is caught
up. After ``idle_timeout`` the task declared itself idle and moved event time to its max
event time; the backlog that reached the task after the reconnect was then *late* and
applied out of event-time order (the broker-restart chaos run diverged from replay in the
health score)."""

from __future__ import annotations

import asyncio
import types

import pytest

from streams.codec import encode_event
from streams.core.events import make_event
from streams.runtime import stage1
from streams.runtime.stage1 import Stage1, Stage1Task
from streams.runtime.stats import RuntimeStats
from streams.settings import core_config, load_settings
from tests.corekit import at

INPUTS = ["crm.tickets.v1", "crm.interactions.v1", "crm.purchases.v1"]
INTERACTIONS = 1


class FakeConsumer:
    """``highwater`` and ``last_poll_timestamp`` per partition, as set by the test."""

    def __init__(self) -> None:
        self.high: dict[tuple[str, int], int] = {}
        self.polled: dict[tuple[str, int], int] = {}

    def fetch_response(self, index: int, ends: dict[int, int], at_ms: int) -> None:
        for slot, topic in enumerate(INPUTS):
            self.high[(topic, index)] = ends.get(slot, 0)
            self.polled[(topic, index)] = at_ms

    def highwater(self, tp):
        return self.high.get((tp.topic, tp.partition))

    def last_poll_timestamp(self, tp):
        return self.polled.get((tp.topic, tp.partition))


class Message:
    def __init__(self, offset: int, value: bytes) -> None:
        self.offset, self.value, self.key = offset, value, b"c1"


class Clock:
    """Monotonic seconds and wall milliseconds that move together."""

    def __init__(self) -> None:
        self.mono = 1_000.0
        self.wall0 = 1_795_000_000_000

    @property
    def wall_ms(self) -> int:
        return self.wall0 + int(round((self.mono - 1_000.0) * 1000))

    def tick(self, seconds: float) -> None:
        self.mono += seconds


@pytest.fixture
def harness(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(stage1, "wall_ms", lambda: clock.wall_ms, raising=False)
    monkeypatch.setattr(stage1, "transactional_producer", lambda settings, tid: None)
    settings = load_settings(idle_timeout="3s")
    consumer = FakeConsumer()
    group = types.SimpleNamespace(settings=settings, config=core_config(settings), stats=RuntimeStats(),
                                  inputs=INPUTS, tasks_total=1, partials_partitions=1, consumer=consumer)
    group.behind = lambda index, task: Stage1.behind(group, index, task)
    group.backlog = lambda index, task: Stage1.backlog(group, index, task)
    task = Stage1Task(0, group)
    commits: list[int] = []

    async def commit(out, dead_letters, customers, tickets, forgotten, watermark):
        commits.append(watermark)

    task._commit = commit
    return types.SimpleNamespace(clock=clock, consumer=consumer, group=group, task=task, commits=commits)


def step(h, batches=()) -> None:
    """One iteration of ``Stage1.run`` for the task: hand over ``batches`` (slot, messages)."""
    for slot, _ in batches:
        h.task.delivered_ms[slot] = h.clock.wall_ms
    lagging = Stage1._lagging(h.group, 0, h.task)
    asyncio.run(h.task.step(list(batches), h.clock.mono, lagging))


def interaction(event_id: str, hhmmss: str) -> bytes:
    return encode_event(make_event("session.started", event_id=event_id, occurred_at_ms=at(hhmmss),
                                   customer_id="c1", source="web"))


def consume_offsets_0_and_1(h, after_s: float) -> None:
    """A fetch response puts the interactions partition's end at 2; ``after_s`` later its
    two records (10:00:00 and 10:00:10) are handed over to the task."""
    h.consumer.fetch_response(0, {INTERACTIONS: 2}, h.clock.wall_ms)
    h.clock.tick(after_s)
    step(h, [(INTERACTIONS, [Message(0, interaction("e1", "10:00:00")),
                             Message(1, interaction("e2", "10:00:10"))])])


def consume_backlog_then_lose_the_broker(h) -> None:
    """Offsets 0-1 of interactions arrive and are consumed; the last fetch response
    before the outage says the partition ends at 2 (it really holds a third record,
    offset 2, from 10:00:05 - produced just before the outage, or during it)."""
    consume_offsets_0_and_1(h, after_s=0.05)
    # the broker goes away: no fetch response from now on, nothing received
    for _ in range(40):  # 8 s of 200 ms polls that return nothing
        h.clock.tick(0.2)
        step(h)


def test_a_task_that_hears_nothing_because_the_broker_is_down_is_not_idle(harness):
    h = harness
    consume_backlog_then_lose_the_broker(h)
    assert not h.task.idle
    # event time did not jump to the max event time (10:00:10)...
    assert h.task.processor.applied_until_ms < at("10:00:05")
    # ...so the record that was waiting in the log is on time after the reconnect
    h.consumer.fetch_response(0, {INTERACTIONS: 3}, h.clock.wall_ms)
    h.clock.tick(0.05)
    step(h, [(INTERACTIONS, [Message(2, interaction("e3", "10:00:05"))])])
    assert h.task.processor.counters.late == 0
    assert h.group.stats.late == 0


def test_the_idle_clock_restarts_when_the_broker_answers_again(harness):
    h = harness
    consume_backlog_then_lose_the_broker(h)
    # the broker is back and really has nothing more: idle only after a full idle
    # timeout of fresh responses, not at once because the outage already lasted 8 s
    for i in range(14):  # 2.8 s of 200 ms polls, each with a fetch response
        h.clock.tick(0.2)
        h.consumer.fetch_response(0, {INTERACTIONS: 2}, h.clock.wall_ms)
        step(h)
        assert not h.task.idle, f"idle after {0.2 * (i + 1):.1f}s of responses"
    for _ in range(3):
        h.clock.tick(0.2)
        h.consumer.fetch_response(0, {INTERACTIONS: 2}, h.clock.wall_ms)
        step(h)
    assert h.task.idle
    assert h.task.processor.applied_until_ms == at("10:00:10")


def test_a_loop_stuck_through_an_outage_does_not_count_it_as_quiet_time(harness):
    """The run loop blocks in a commit while the broker is down; when it comes back, the
    first fetch response may already be in when the task is checked next. That one
    response does not make the 8 s before it quiet time."""
    h = harness
    consume_offsets_0_and_1(h, after_s=0.05)
    h.clock.tick(0.3)
    h.consumer.fetch_response(0, {INTERACTIONS: 2}, h.clock.wall_ms)
    h.clock.tick(0.1)
    step(h)  # caught up, confirmed
    h.clock.tick(8.0)  # stuck (no check) through the outage
    h.consumer.fetch_response(0, {INTERACTIONS: 2}, h.clock.wall_ms)
    h.clock.tick(0.1)
    step(h)
    assert not h.task.idle


def test_a_partition_whose_highwater_predates_the_records_just_consumed_is_lagging(harness):
    """aiokafka does not fetch a partition while it holds records of it: right after the
    last buffered records are handed over, the highwater mark is as old as the fetch that
    brought them, and the log may have grown since. Until a newer response, that slot
    holds event time back (Processor.watermark) like a slot with a visible backlog."""
    h = harness
    consume_offsets_0_and_1(h, after_s=0.5)
    h.clock.tick(0.2)
    assert Stage1._lagging(h.group, 0, h.task) == {INTERACTIONS}
    h.consumer.fetch_response(0, {INTERACTIONS: 2}, h.clock.wall_ms)
    h.clock.tick(0.2)
    assert Stage1._lagging(h.group, 0, h.task) == set()
    h.clock.tick(2.5)  # no response for longer than the confirmation lasts
    assert Stage1._lagging(h.group, 0, h.task) == {0, 1, 2}


@pytest.mark.parametrize(
    ("position", "high", "polled", "delivered", "now", "expected"),
    [
        (5, 5, 1_000, 900, 1_500, True),
        (4, 5, 1_000, 900, 1_500, False),  # a visible backlog
        (5, None, None, -1, 1_500, False),  # never fetched
        (5, 5, 900, 900, 1_500, False),  # no response since the last records were handed over
        (5, 5, 1_000, 900, 3_001, False),  # the response is too old (broker unreachable?)
        (0, 0, 1_000, -1, 1_200, True),  # an empty partition
    ],
)
def test_confirmed_caught_up(position, high, polled, delivered, now, expected):
    assert stage1.confirmed_caught_up(position, high, polled, delivered, now) is expected


def test_events_are_counted_per_topic_and_partition_and_exported_from_zero(harness):
    """crm_events_processed_total has a partition label: an event is counted in the
    partition it came from (the bench times each event against its own partition's
    count), and a task's series exist at 0 from when the worker takes it."""
    from streams.metrics.collector import WorkerCollector

    h = harness
    h.group.stats.task_taken(INPUTS, 0)
    assert h.group.stats.processed[(INPUTS[INTERACTIONS], 0)] == 0
    consume_offsets_0_and_1(h, after_s=0.05)
    families = {f.name: f for f in WorkerCollector(h.group.stats, list, "app").collect()}
    exported = {(s.labels["topic"], s.labels["partition"]): s.value
                for s in families["crm_events_processed"].samples if s.name == "crm_events_processed_total"}
    assert exported == {(topic, "0"): (2 if topic == INPUTS[INTERACTIONS] else 0) for topic in INPUTS}
