"""Stage 1: input topics -> decode -> core Processor -> partials, SLA events, churn
signals, dead letters; state in a changelog, all in one Kafka transaction per batch.

One *task* per input partition index (tickets[i], interactions[i], purchases[i] are
co-partitioned and assigned together by the range assignor). Each task owns a
transactional producer (``<app>-stage1-<i>``, so a zombie is fenced when the task
moves) and commits, atomically per batch: its outputs, its changed states, and a meta
record with its input positions. After a restart the task restores its state from the
changelog and reads its input again from the lowest offset still only *buffered*
(waiting for the watermark); input below the checkpoint position whose event time is at
or before the checkpoint's ``applied_until`` was already applied and is skipped. So
every input event is applied exactly once - without trusting consumer-group offsets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from streams.codec import HomePartitions, Rejected, decode_event, dlq_record, encode_dlq, misrouted
from streams.codec.records import encode_signal, encode_sla
from streams.codec.state import (
    Marker,
    TaskMeta,
    decode_customer,
    decode_ids,
    decode_meta,
    decode_ticket,
    encode_customer,
    encode_ids,
    encode_marker,
    encode_meta,
    encode_partials,
    encode_ticket,
)
from streams.core.chunks import IdChunk, IdChunks
from streams.core.customer_state import CustomerState
from streams.core.pipeline import CoreConfig, Processor
from streams.core.registry import BASE_BY_NAME, FAMILIES
from streams.core.sla import SlaPolicies
from streams.core.ticket_state import TicketState
from streams.runtime.group import TaskGroup
from streams.runtime.kafka import (
    MAX_MESSAGE_BYTES,
    Outgoing,
    TaskFenced,
    client_options,
    group_options,
    read_partition,
    send_atomically,
    stage1_changelog,
    transactional_producer,
)
from streams.runtime.pacing import LoopBudget, extend_sliced
from streams.runtime.stats import RuntimeStats
from streams.settings import Settings

log = logging.getLogger("crm_kpi.stage1")

META_KEY = b"m"

# A fetch response older than this no longer proves that an input partition is caught up:
# the consumer long-polls every 500 ms while it has nothing to hand over, so silence for
# longer means it cannot reach the broker (or the event loop was busy) - not that nothing
# was produced.
CONFIRMATION_MAX_AGE_MS = 2_000

# Group offsets are for operators' tools only (recovery reads the changelog): committed at
# most this often, not after every batch (a round trip to the coordinator each time:
# 10-30 % of a busy live worker's loop, measured)
GROUP_OFFSETS_INTERVAL_S = 1.0

# events and timers applied between two hand-backs of the event loop (~0.1 s of core work)
ADVANCE_SLICE = 2_000

# a task's memory sweep (once a minute) looks at this many tickets and customers per
# batch (~20-40 ms): in one go, a million customers held every task's input for a second
SWEEP_SLICE = 20_000
SWEEP_EVERY_S = 60.0


def wall_ms() -> int:
    return int(time.time() * 1000)


def confirmed_caught_up(position: int, highwater: int | None, polled_ms: int | None,
                        delivered_ms: int, now_ms: int) -> bool:
    """Whether an input partition is known to hold nothing beyond ``position``: a fetch
    response (at wall time ``polled_ms``) put its end at or before the position *after*
    the last records of it were handed over (at ``delivered_ms``), and that response is
    recent. A highwater mark alone is not enough: aiokafka does not fetch a partition
    while it still holds records of it, nor anything while the broker is unreachable, so
    the mark can be from before the records just consumed, or from before an outage."""
    if highwater is None or polled_ms is None or position < highwater:
        return False
    return polled_ms > delivered_ms and now_ms - polled_ms <= CONFIRMATION_MAX_AGE_MS


def family_partition(family: str, partitions: int) -> int:
    """Stage-2 partition of a KPI family: the routing key of partials."""
    return FAMILIES.index(family) % partitions


RESTORE_SLICE = 20_000  # changelog records decoded between two yields to the event loop (~40 ms)
RESTORED_MESSAGE = ("stage1 task %d: restored %d customers (%d with their dedupe ids in %d chunks), %d tickets; "
                    "resuming at %s (checkpoint %s)")
"""The log line of a restored task (the chaos suite and the bench's restart phase read it)."""


def customer_key(customer_id: str) -> bytes:
    return b"c|" + customer_id.encode()


def ticket_key(customer_id: str, ticket_id: str) -> bytes:
    return b"t|" + customer_id.encode() + b"\x00" + ticket_id.encode()


def ids_key(customer_id: str, chunk: int) -> bytes:
    """Key of a chunk of a customer's dedupe ids (see :class:`streams.core.chunks.IdChunks`)."""
    return b"i|" + customer_id.encode() + b"\x00" + str(chunk).encode()


def id_chunk_records(customer_id: str, chunks: list[IdChunk]) -> list[tuple[bytes, bytes | None]]:
    """Changelog records (key, value; ``None``: a tombstone) of a customer's id chunks."""
    return [(ids_key(customer_id, number), None if ids is None else encode_ids(ids)) for number, ids in chunks]


def customer_changelog(customer: CustomerState, id_chunks: IdChunks,
                       chunk_writes: list[tuple[bytes, bytes | None]]) -> tuple[bytes, bytes]:
    """A changed customer's changelog record (key, value); the records of its id chunks to
    write or delete with it are appended to ``chunk_writes``."""
    inline, chunks = id_chunks.plan(customer.customer_id, customer.seen)
    if chunks:
        chunk_writes.extend(id_chunk_records(customer.customer_id, chunks))
    return customer_key(customer.customer_id), encode_customer(customer, ids=inline)


def restore_ids(customers: dict[str, CustomerState], id_records: dict[bytes, bytes], id_chunks: IdChunks,
                bound: int, cutoff: int) -> int:
    """Give the restored customers the ids of their chunks (``id_records``: the live
    ``i|`` records of the changelog) and ``id_chunks`` their layout; returns how many
    chunks belonged to no customer (none should: a customer and its chunks are written
    in the same transaction, and customers are never deleted). ``bound`` and ``cutoff``:
    see :meth:`IdChunks.restored`."""
    by_customer: dict[str, dict[int, dict[str, int]]] = defaultdict(dict)
    for key, raw in id_records.items():
        owner, _, number = key[2:].rpartition(b"\x00")
        by_customer[owner.decode()][int(number)] = decode_ids(raw)
    orphans = 0
    for customer_id, chunks in by_customer.items():
        customer = customers.get(customer_id)
        if customer is None:
            orphans += len(chunks)
            continue
        id_chunks.restored(customer_id, customer.seen, chunks, bound, cutoff)
    return orphans


class StateRestore:
    """Stage 1's state from the live records of its changelog (the last value of each key,
    as compaction leaves them; the meta record aside): customers, tickets and the chunks of
    the busy customers' dedupe ids. Records are added one at a time, so that
    :meth:`Stage1Task.open` can yield to the event loop between slices; :meth:`finish`
    then gives the customers the ids of their chunks, and ``id_chunks`` their layout
    (``bound``: the per-customer bound of dedupe ids; ``cutoff``: the restored task's
    :meth:`Processor.dedupe_cutoff`)."""

    def __init__(self, policies: SlaPolicies, id_chunks: IdChunks, bound: int, cutoff: int) -> None:
        self.policies = policies
        self.id_chunks = id_chunks
        self.bound = bound
        self.cutoff = cutoff
        self.customers: dict[str, CustomerState] = {}
        self.tickets: list[TicketState] = []
        self.id_records: dict[bytes, bytes] = {}
        self.orphan_chunks = 0

    @classmethod
    def of(cls, records: Mapping[bytes, bytes], policies: SlaPolicies, id_chunks: IdChunks, bound: int,
           cutoff: int) -> StateRestore:
        """All of ``records`` at once (tests, benchmarks)."""
        restore = cls(policies, id_chunks, bound, cutoff)
        for key, value in records.items():
            restore.add(key, value)
        restore.finish()
        return restore

    def add(self, key: bytes, value: bytes) -> None:
        kind = key[:2]
        if kind == b"c|":
            customer = decode_customer(value)
            self.customers[customer.customer_id] = customer
        elif kind == b"t|":
            self.tickets.append(decode_ticket(value, self.policies))
        elif kind == b"i|":
            self.id_records[key] = value  # decoded in finish(), once every customer is known

    def finish(self) -> int:
        """Give the customers their chunked ids; returns the chunks of no customer."""
        if self.id_records:
            self.orphan_chunks = restore_ids(self.customers, self.id_records, self.id_chunks, self.bound,
                                             self.cutoff)
        return self.orphan_chunks


class Stage1Task:
    """The processor of one input partition index and its transactional producer."""

    def __init__(self, index: int, stage: Stage1) -> None:
        self.index = index
        self.stage = stage
        self.settings = stage.settings
        self.processor = Processor(stage.config)
        self.id_chunks = IdChunks(spill_at=stage.settings.dedupe_inline_ids)
        self.homes = HomePartitions(stage.tasks_total)  # customer_id -> its input partition
        self.producer = transactional_producer(stage.settings, f"{stage.settings.app_id}-stage1-{index}")
        self.positions: dict[int, int] = {}
        self.skip_before: dict[int, int] = {}
        self.skip_until_ms = self.processor.applied_until_ms
        self.last_input = time.monotonic()
        self.delivered_ms: dict[int, int] = {}  # slot -> wall ms its last records were handed over
        self.quiet_since: float | None = None  # since when every check found the input caught up
        self.checked_at: float | None = None
        self.idle = False
        self.reported_watermark: int | None = None
        self.idle_reported = False
        self.reported_overflow: dict[str, int] = {}
        self.resume: dict[int, int] = {}
        # the tasks of a worker sweep at different times of the minute, not all in the same rounds
        self.last_sweep = time.monotonic() - SWEEP_EVERY_S * index / max(1, stage.tasks_total)
        self.sweeping = False
        self.last_commit = time.monotonic()
        self.uncommitted = 0  # input messages consumed since the last commit
        self.dead_letters: list[tuple[bytes | None, bytes]] = []  # to publish with the next commit

    # -- life cycle ------------------------------------------------------------------------------
    async def open(self) -> dict[int, int]:
        """Fence older producers of this task, restore state; returns where to read from."""
        await self.producer.start()  # InitProducerId: fences zombies, aborts their transaction
        # the last value of every key, as compaction would leave it; decoded afterwards, so
        # a key written many times since the last cleaning is decoded once
        records: dict[bytes, bytes] = {}
        async for batch in read_partition(self.settings, stage1_changelog(self.settings), self.index):
            for message in batch:
                if message.value is None:
                    records.pop(message.key, None)
                else:
                    records[message.key] = message.value
        raw_meta = records.pop(META_KEY, None)
        if raw_meta is None:
            log.info("stage1 task %d: no state, starting from the beginning", self.index)
            return {}
        meta = decode_meta(raw_meta)
        restore = StateRestore(self.stage.config.policies, self.id_chunks,
                               self.stage.config.dedupe_max_ids_per_customer,
                               self.processor.dedupe_cutoff(meta.applied_until_ms))
        for count, (key, value) in enumerate(records.items(), 1):
            restore.add(key, value)
            if count % RESTORE_SLICE == 0:
                await asyncio.sleep(0)  # heartbeats and /metrics meanwhile
        del records
        if restore.finish():
            log.warning("stage1 task %d: %d chunks of dedupe ids of no customer in the changelog (ignored)",
                        self.index, restore.orphan_chunks)
        self.processor.restore(list(restore.customers.values()), restore.tickets,
                               meta.applied_until_ms, meta.max_event_ms, meta.slot_max)
        self.processor.labels.restore(meta.labels)
        self.skip_before = dict(meta.positions)
        self.skip_until_ms = meta.applied_until_ms
        self.positions = dict(meta.resume)
        self.reported_watermark = meta.applied_until_ms
        log.info(RESTORED_MESSAGE, self.index, len(restore.customers), len(self.id_chunks.spilled),
                 len(restore.id_records), len(restore.tickets), meta.resume, meta.positions)
        return dict(meta.resume)

    async def close(self) -> None:
        try:
            await self.producer.stop()
        except Exception as exc:  # a fenced or broken producer must not block the rebalance
            log.warning("stage1 task %d: producer stop: %s", self.index, exc)

    # -- one batch ---------------------------------------------------------------------------------
    async def step(self, batches: list[tuple[int, list[Any]]], now: float, lagging: set[int]) -> None:
        stats = self.stage.stats
        processor = self.processor
        # before offering anything: which inputs still have a backlog decides how far the
        # watermark may go, and so which events count as late (see Processor.watermark)
        processor.set_lagging(lagging)
        dead_letters = self.dead_letters
        homes = self.homes
        consumed = 0
        for slot, messages in batches:
            topic = self.stage.inputs[slot]
            series = (topic, self.index)  # crm_events_processed_total{topic,partition}
            position = self.positions.get(slot, 0)
            for message in messages:
                if message.offset < position:
                    continue  # delivered twice (stale fetch across a rebalance)
                position = message.offset + 1
                raw = message.value if message.value is not None else b""
                decoded = decode_event(raw)
                if not isinstance(decoded, Rejected):
                    # on another partition than its customer's, it would split the
                    # customer's state and dedupe over two tasks: dead-letter it
                    home = homes[decoded.customer_id]
                    if home != self.index:
                        decoded = misrouted(self.index, home, homes.partitions)
                if message.offset < self.skip_before.get(slot, -1) and (
                    isinstance(decoded, Rejected) or decoded.occurred_at_ms <= self.skip_until_ms
                ):
                    continue  # reflected in the restored state already
                consumed += 1
                if consumed % 2_000 == 0:
                    await asyncio.sleep(0)  # keep heartbeats and scrapes alive in big batches
                if isinstance(decoded, Rejected):
                    stats.rejected[decoded.reason.value] += 1
                    record = dlq_record(decoded, topic=topic, partition=self.index, offset=message.offset,
                                        key=message.key, original=raw, rejected_at_ms=int(time.time() * 1000))
                    dead_letters.append((message.key, encode_dlq(record)))
                    continue
                outcome = processor.offer(decoded, (slot, message.offset))
                stats.processed[series] += 1
                if outcome == "duplicate":
                    stats.duplicates += 1
                elif outcome == "late":
                    stats.late += 1
                elif outcome == "dropped_late":
                    stats.dropped_late += 1
            self.positions[slot] = position
        if consumed:
            self.last_input = now
            self.idle = False
            stats.last_input[self.index] = time.time()
            stats.observe_batch("stage1", consumed)
        # idle = caught up with the log end and nothing new for the idle timeout; a task
        # that is merely slow (restoring, catching up) must keep holding event time back.
        # The idle clock runs only while the broker keeps confirming that there is nothing
        # to read (``lagging`` empty at every check, checks close together): receiving
        # nothing because the broker is down, or because this loop was stuck waiting for
        # it, says nothing about what is waiting in the log.
        unwatched = self.checked_at is None or (now - self.checked_at) * 1000 > CONFIRMATION_MAX_AGE_MS
        if lagging:
            self.quiet_since = None
        elif self.quiet_since is None or unwatched:
            self.quiet_since = now
        self.checked_at = now
        quiet_for = 0.0 if self.quiet_since is None else now - max(self.quiet_since, self.last_input)
        if not consumed and not lagging and quiet_for * 1000 >= self.settings.idle_timeout_ms:
            # nothing arrived for a while: no event is in flight, event time is the
            # last event's time (later input is handled as late, with revisions)
            if not self.idle:
                log.info("stage1 task %d: idle (caught up, nothing new for %.1fs); event time %d -> %d",
                         self.index, quiet_for, processor.applied_until_ms,
                         max(processor.applied_until_ms, processor.max_event_ms))
            until = max(processor.applied_until_ms, processor.max_event_ms)
            self.idle = True
        else:
            until = processor.watermark
        # in slices: a backlog's batch is seconds of core work, and the loop also serves
        # /metrics, heartbeats and stage 2
        while processor.advance(until, ADVANCE_SLICE):
            await asyncio.sleep(0)
        if self.sweeping or now - self.last_sweep > SWEEP_EVERY_S:
            self.sweeping = processor.sweep(SWEEP_SLICE)
            if not self.sweeping:
                self.last_sweep = now
        self.uncommitted += consumed
        # behind the log end: keep folding batches and commit at most every
        # commit_interval (fewer, bigger transactions: a customer changed in many batches
        # is written to the changelog once, partials are pre-aggregated over more events);
        # caught up: at most every live_commit_interval (100 ms), so results are held
        # back that long at most while a busy live stream does not pay a transaction,
        # and a rewrite of every changed customer, for each small batch
        behind = self.stage.behind(self.index, self)
        interval_ms = self.settings.commit_interval_ms if behind else self.settings.live_commit_interval_ms
        if (now - self.last_commit) * 1000 < interval_ms:
            return
        await self.flush(now)

    async def flush(self, now: float | None = None) -> None:
        """Commit everything since the last commit in one transaction: partials and
        watermark markers, SLA events, churn signals, dead letters, changed state and
        input positions (nothing changed and no marker due: no transaction)."""
        stats = self.stage.stats
        processor = self.processor
        out = processor.drain()
        customers, tickets, forgotten = processor.take_dirty()
        dead_letters, self.dead_letters = self.dead_letters, []
        watermark = processor.applied_until_ms
        marker_due = watermark != self.reported_watermark or self.idle != self.idle_reported
        if not (out.aggs or out.sla or out.signals or dead_letters or customers or tickets or forgotten
                or self.uncommitted or marker_due):
            return
        started = time.perf_counter()
        await self._commit(out, dead_letters, customers, tickets, forgotten, watermark)
        self.uncommitted = 0
        self.last_commit = time.monotonic() if now is None else now
        self.reported_watermark = watermark
        self.idle_reported = self.idle
        for label, count in processor.labels.overflow.items():
            stats.label_overflow[label] += count - self.reported_overflow.get(label, 0)
            self.reported_overflow[label] = count
        stats.sla_events_from(out.sla)
        stats.signals_from(out.signals)
        stats.counts_from(out.aggs)
        stats.watermarks[("stage1", self.index)] = watermark
        stats.observe_seconds("stage1", time.perf_counter() - started)

    async def _commit(self, out, dead_letters, customers, tickets, forgotten, watermark: int) -> None:
        topics = self.settings.topics
        stage = self.stage
        changelog = stage1_changelog(self.settings)
        by_family: dict[str, dict] = defaultdict(dict)
        for key, agg in out.aggs.items():
            by_family[BASE_BY_NAME[key[0]].family][key] = agg
        buffered = self.processor.resume_offsets()
        meta = TaskMeta(
            applied_until_ms=watermark,
            max_event_ms=self.processor.max_event_ms,
            slot_max=dict(self.processor.slot_max),
            labels=self.processor.labels.snapshot(),
            positions=dict(self.positions),
            resume={slot: min(buffered.get(slot, pos), pos) for slot, pos in self.positions.items()},
        )
        # catching up: more than a full batch waiting (a live stream at high rate often has
        # a few records waiting; that is not a backlog)
        catching_up = stage.backlog(self.index, self) > self.settings.batch_max_events
        marker = encode_marker(Marker(self.index, watermark, self.idle, stage.tasks_total, catching_up))
        outgoing: list[Outgoing] = []
        for family, aggs in by_family.items():
            outgoing.append((topics.partials, encode_partials(self.index, aggs), family.encode(),
                             family_partition(family, stage.partials_partitions)))
        # markers after the partials on every stage-2 partition: ordering per partition
        outgoing.extend((topics.partials, marker, b"marker", p) for p in range(stage.partials_partitions))
        outgoing.extend((topics.sla, encode_sla(r), r.ticket_id.encode(), None) for r in out.sla)
        outgoing.extend((topics.signals, encode_signal(s), s.customer_id.encode(), None) for s in out.signals)
        outgoing.extend((topics.dlq, value, key, None) for key, value in dead_letters)
        # the changed state in slices (see streams.runtime.pacing): tens of thousands of
        # customers per commit while catching up
        budget = LoopBudget()
        index = self.index
        id_chunks = self.id_chunks
        id_chunks.begin_commit()
        id_chunk_writes: list[tuple[bytes, bytes | None]] = []

        def customer_record(c: CustomerState) -> Outgoing:
            key, value = customer_changelog(c, id_chunks, id_chunk_writes)
            return (changelog, value, key, index)

        await extend_sliced(outgoing, customers, customer_record, budget)
        outgoing.extend((changelog, value, key, index) for key, value in id_chunk_writes)
        await extend_sliced(outgoing, tickets,
                            lambda t: (changelog, encode_ticket(t), ticket_key(t.customer_id, t.ticket_id), index),
                            budget)
        outgoing.extend((changelog, None, ticket_key(c, t), self.index) for c, t in forgotten)
        outgoing.append((changelog, encode_meta(meta), META_KEY, self.index))
        await send_atomically(self.producer, outgoing)
        self.resume = meta.resume


class Stage1(TaskGroup):
    """The stage-1 consumer group member of this worker and its tasks."""

    stage = "stage1"

    def __init__(self, settings: Settings, config: CoreConfig, stats: RuntimeStats, tasks_total: int) -> None:
        self.settings = settings
        self.config = config
        self.tasks_total = tasks_total
        self.partials_partitions = tasks_total
        self.inputs = settings.topics.inputs()
        self.slot_of = {topic: slot for slot, topic in enumerate(self.inputs)}
        consumer = AIOKafkaConsumer(
            **client_options(settings),
            group_id=f"{settings.app_id}-stage1",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            partition_assignment_strategy=(RangePartitionAssignor,),
            **group_options(),
            max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
            fetch_max_bytes=4 * MAX_MESSAGE_BYTES,
            # aiokafka (like the Java client) has one fetch in flight per broker, for the
            # partitions with nothing buffered; while a batch is processed those are the
            # quiet ones, and the broker holds such a fetch until fetch_max_wait (Kafka's
            # default 500 ms). Meanwhile the busy partitions, consumed, cannot be fetched
            # again: with one input topic quiet, a live worker settled at 2-3 rounds a
            # second with events 0.4 s old on arrival (docs/performance.md, 2026-12-07)
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
        )
        super().__init__(stats, consumer, self.inputs)
        self.offsets_committed = 0.0  # monotonic time of the last group offset commit

    async def _open_task(self, index: int) -> None:
        """Restore a task from its changelog and point the consumer at its resume offsets."""
        task = Stage1Task(index, self)
        try:
            resume = await task.open()
        except BaseException:
            await task.close()
            raise
        self.tasks[index] = task
        self.stats.task_taken(self.inputs, index)
        for slot, topic in enumerate(self.inputs):
            tp = TopicPartition(topic, index)
            if slot in resume:
                self.consumer.seek(tp, resume[slot])
            else:
                await self.consumer.seek_to_beginning(tp)
                task.positions[slot] = 0

    async def run(self, stopping: asyncio.Event) -> None:
        """Consume in batches until ``stopping`` is set, then finish the batch in hand."""
        while not stopping.is_set():
            data = await self.consumer.getmany(timeout_ms=200, max_records=self.settings.batch_max_events)
            fetched_ms = wall_ms()  # a fetch of these partitions can only be sent after this
            grouped: dict[int, list[tuple[int, list[Any]]]] = defaultdict(list)
            for tp, messages in data.items():
                grouped[tp.partition].append((self.slot_of[tp.topic], messages))
            async with self.lock:
                now = time.monotonic()
                for index, task in list(self.tasks.items()):
                    for slot, _ in grouped.get(index, ()):
                        task.delivered_ms[slot] = fetched_ms
                    try:
                        await task.step(grouped.get(index, []), now, self._lagging(index, task))
                    except (TaskFenced, TimeoutError, KafkaError, OSError) as exc:
                        await self.handle_failure(index, exc)
                    await asyncio.sleep(0)
                if now - self.offsets_committed >= GROUP_OFFSETS_INTERVAL_S:
                    await self._commit_group_offsets()
                    self.offsets_committed = now
                self._record_lag()

    async def _commit_group_offsets(self) -> None:
        """Best-effort group offsets (the resume points) so that operators see progress
        with ordinary Kafka tools; recovery itself uses the changelog, not these."""
        offsets = {}
        for index, task in self.tasks.items():
            for slot, offset in task.resume.items():
                offsets[TopicPartition(self.inputs[slot], index)] = OffsetAndMetadata(offset, "")
        if offsets:
            try:
                await self.consumer.commit(offsets)
            except Exception as exc:  # during a rebalance commits may fail; harmless
                log.debug("group offset commit skipped: %s", exc)

    def _lagging(self, index: int, task: Stage1Task) -> set[int]:
        """Input slots of the task not confirmed caught up: records not consumed or not
        fetched yet, or no recent fetch response since the last records were handed over
        (see :func:`confirmed_caught_up`; during a broker outage every slot lags)."""
        lagging = set()
        now_ms = wall_ms()
        for slot, topic in enumerate(self.inputs):
            tp = TopicPartition(topic, index)
            if not confirmed_caught_up(task.positions.get(slot, 0), self.consumer.highwater(tp),
                                       self.consumer.last_poll_timestamp(tp), task.delivered_ms.get(slot, -1),
                                       now_ms):
                lagging.add(slot)
        return lagging

    def behind(self, index: int, task: Stage1Task) -> bool:
        """Whether the consumer knows of input of the task beyond what it consumed (the
        highwater marks of the last fetch responses): more is waiting right now."""
        return self.backlog(index, task) > 0

    def backlog(self, index: int, task: Stage1Task) -> int:
        """Input records of the task known to be waiting (highwater marks of the last
        fetch responses minus its positions)."""
        waiting = 0
        for slot, topic in enumerate(self.inputs):
            high = self.consumer.highwater(TopicPartition(topic, index))
            if high is not None:
                waiting += max(0, high - task.positions.get(slot, 0))
        return waiting

    def _record_lag(self) -> None:
        for index, task in self.tasks.items():
            for slot, topic in enumerate(self.inputs):
                tp = TopicPartition(topic, index)
                high = self.consumer.highwater(tp)
                if high is not None:
                    self.stats.lag[(topic, index)] = max(0, high - task.positions.get(slot, 0))
