"""Stage 2: partials topic -> core Merger -> KPI records on ``crm.kpi.v1``.

One task per partials partition; each KPI family is routed to one partition, so a
task sees every input of the KPIs it derives. The global watermark of a task is the
minimum over the stage-1 tasks' markers (idle ones excluded). Per batch one
transaction carries the KPI records, the merger's changed state and the task's input
position, so a restart continues exactly where the last commit left off.
"""

from __future__ import annotations

import array
import asyncio
import logging
import time
from collections.abc import Collection
from itertools import islice
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from streams.codec.records import encode_kpi, kpi_key
from streams.codec.state import (
    Marker,
    decode_bucket,
    decode_plain,
    decode_published,
    decode_spec_meta,
    decode_stage_message,
    encode_bucket,
    encode_distinct_chunk,
    encode_distinct_packed,
    encode_plain,
    encode_published,
    encode_spec_meta,
)
from streams.core.aggregates import Distinct
from streams.core.chunks import DistinctChunks
from streams.core.merge import Merger
from streams.core.pipeline import CoreConfig
from streams.core.records import KpiRecord
from streams.core.windows import MIN_TIME
from streams.runtime.group import TaskGroup
from streams.runtime.kafka import (
    MAX_MESSAGE_BYTES,
    Outgoing,
    TaskFenced,
    client_options,
    group_options,
    read_partition,
    send_atomically,
    stage2_changelog,
    transactional_producer,
)
from streams.runtime.pacing import CHECK_EVERY, LoopBudget, extend_sliced
from streams.runtime.stats import RuntimeStats
from streams.settings import Settings

log = logging.getLogger("crm_kpi.stage2")

META_KEY = b"m"
RESTORED_MESSAGE = "stage2 task %d: restored %d buckets, %d published records; resuming at %d"
"""The log line of a restored task (the bench's restart phase reads it)."""

# windows published (final, or live figures) between two hand-backs of the event loop
CLOSE_SLICE = 4

# members of a distinct-count chunk packed between two looks at the commit's LoopBudget
PACK_SLICE = 20_000

# Partials come in small transactions (every stage-1 task commits every 100 ms when live):
# fetched as soon as there is any, stage 2 ran ~90 batches a second of one or two
# messages each, each paying a fetch round trip and a step. The broker holds a fetch
# until this much is waiting or this long has passed: in a live stream, ~10 batches a
# second; a backlog fills the minimum at once.
FETCH_MIN_BYTES = 256 * 1024
FETCH_MAX_WAIT_MS = 100


def global_watermark(marks: dict[int, tuple[int, bool]], tasks_total: int) -> int:
    """Minimum watermark over the stage-1 tasks that are not idle; when every task is
    idle, the maximum (nothing holds event time back). Until every task has reported,
    nothing closes."""
    if tasks_total <= 0 or len(marks) < tasks_total:
        return MIN_TIME
    active = [wm for wm, idle in marks.values() if not idle]
    if active:
        return min(active)
    return max(wm for wm, _ in marks.values())


async def encode_chunk(members: Collection[int], budget: LoopBudget) -> bytes:
    """A distinct-count bucket's changelog chunk, packed in slices of ``PACK_SLICE``
    members between which the event loop may run (a day's set of active customers is
    ~0.3 s of packing). ``members`` must not change until this returns: it is the
    bucket's own set, and only this task's batch, waiting for the commit, changes it."""
    if len(members) <= PACK_SLICE:
        return encode_distinct_chunk(members)
    packed = array.array("Q")
    remaining = iter(members)
    while True:
        before = len(packed)
        packed.extend(islice(remaining, PACK_SLICE))
        if len(packed) == before:
            return encode_distinct_packed(packed)
        if budget.spent():
            await budget.pause()


def _bucket_key(index: int, base: str, dims, bucket: int) -> bytes:
    return b"b|" + encode_plain((index, base, dims, bucket))


def _chunk_key(index: int, base: str, dims, bucket: int, chunk: int) -> bytes:
    """Chunk 0 of a distinct-count bucket is its ``b|`` key; later chunks are ``d|`` keys
    (see streams.core.chunks)."""
    if chunk == 0:
        return _bucket_key(index, base, dims, bucket)
    return b"d|" + encode_plain((index, base, dims, bucket, chunk))


def _published_key(index: int, kpi: str, dims, start: int) -> bytes:
    return b"p|" + encode_plain((index, kpi, dims, start))


def _parse_key(key: bytes) -> tuple[int, str, tuple, int]:
    """(spec index, name, dims, start) of a ``b|`` or ``p|`` key."""
    return _normalised(decode_plain(key[2:]))


def _parse_chunk_key(key: bytes) -> tuple[tuple[int, str, tuple, int], int]:
    """(bucket, chunk number) of a ``d|`` key."""
    fields = decode_plain(key[2:])
    return _normalised(fields), int(fields[4])


def _normalised(fields) -> tuple[int, str, tuple, int]:
    index, name, dims, start = fields[:4]
    return int(index), name, tuple((str(k), str(v)) for k, v in dims), int(start)


class Stage2Task:
    def __init__(self, index: int, stage: Stage2) -> None:
        self.index = index
        self.stage = stage
        self.settings = stage.settings
        config = stage.config
        self.merger = Merger(config.specs, config.lateness, config.min_sample)
        self.chunks = DistinctChunks()  # changelog chunks of the distinct-count buckets
        self.producer = transactional_producer(stage.settings, f"{stage.settings.app_id}-stage2-{index}")
        self.marks: dict[int, tuple[int, bool]] = {}
        self.catching_up: set[int] = set()  # stage-1 tasks whose last marker said they catch up
        self.tasks_total = 0
        self.position = 0
        self.next_provisional = 0.0  # monotonic time of the next provisional publication
        self.last_provisional = 0.0  # monotonic time of the last one
        self.unpublished = False  # partials merged since the last provisional publication
        self.last_commit = time.monotonic()
        self.pending: list[KpiRecord] = []  # records merged but not committed yet
        self.uncommitted = 0  # partials messages consumed since the last commit

    async def open(self) -> int | None:
        await self.producer.start()
        buckets, chunks, published, specs, meta = {}, {}, {}, {}, None
        async for batch in read_partition(self.settings, stage2_changelog(self.settings), self.index):
            for message in batch:
                key, value = message.key, message.value
                kind = key[:2]
                if key == META_KEY:
                    meta = decode_plain(value) if value is not None else None
                elif kind == b"b|":
                    buckets[key] = value
                elif kind == b"d|":
                    chunks[key] = value
                elif kind == b"p|":
                    published[key] = value
                elif kind == b"s|":
                    specs[key] = value
        if meta is None:
            return None
        restored = {}
        for key, value in buckets.items():
            if value is not None:
                index, base, dims, bucket, agg = self._parse_bucket(key, value)
                restored[(index, base, dims, bucket)] = agg
                if isinstance(agg, Distinct):
                    self.chunks.restored((index, base, dims, bucket), 1)
        for key, value in chunks.items():
            if value is None:
                continue
            bucket_id, chunk = _parse_chunk_key(key)
            agg = restored.get(bucket_id)
            if not isinstance(agg, Distinct):  # chunk 0 (the b| key) is gone: so is the bucket
                continue
            agg.merge(decode_bucket(value))
            self.chunks.restored(bucket_id, max(self.chunks.counts[bucket_id], chunk + 1))
        self.merger.restore(
            [(*key, agg) for key, agg in restored.items()],
            [self._parse_published(k, v) for k, v in published.items() if v is not None],
            [decode_spec_meta(v) for v in specs.values() if v is not None],
            meta["watermark"], meta["dropped_late"],
        )
        self.marks = {int(task): (wm, idle) for task, (wm, idle) in meta["marks"].items()}
        self.tasks_total = meta["tasks"]
        self.position = meta["position"]
        log.info(RESTORED_MESSAGE, self.index, len(buckets), len(published), self.position)
        return self.position

    def _parse_bucket(self, key: bytes, value: bytes):
        return (*_parse_key(key), decode_bucket(value))

    def _parse_published(self, key: bytes, value: bytes):
        return (*_parse_key(key), decode_published(value))

    async def close(self) -> None:
        try:
            await self.producer.stop()
        except Exception as exc:
            log.warning("stage2 task %d: producer stop: %s", self.index, exc)

    async def step(self, messages: list[Any], now: float, caught_up: bool) -> None:
        """Merge a batch. Commit (records, state, position in one transaction) at most
        every ``live_commit_interval`` when caught up, every ``commit_interval`` while
        behind: a task catching up merges many batches per transaction, so a bucket that
        every batch touches is written to the changelog once per interval, not once per
        batch."""
        stats = self.stage.stats
        consumed = merged = 0
        for message in messages:
            if message.offset < self.position:
                continue
            self.position = message.offset + 1
            consumed += 1
            try:
                decoded = decode_stage_message(message.value)
            except ValueError as exc:  # not ours; never stop the stream for it
                log.warning("stage2 task %d: skipped offset %d: %s", self.index, message.offset, exc)
                continue
            if isinstance(decoded, Marker):
                self.marks[decoded.task] = (decoded.watermark, decoded.idle)
                self.tasks_total = decoded.tasks
                if decoded.catching_up:
                    self.catching_up.add(decoded.task)
                else:
                    self.catching_up.discard(decoded.task)
            else:
                self.merger.add(decoded[1])
                merged += 1
        if consumed:
            stats.observe_batch("stage2", consumed)
        self.uncommitted += consumed
        # closing windows in slices (a day's windows of every KPI and dimension are a
        # second of work): the event loop also serves stage 1 and /metrics
        watermark = global_watermark(self.marks, self.tasks_total)
        while True:
            records, more = self.merger.advance_some(watermark, CLOSE_SLICE)
            self.pending.extend(records)
            if not more:
                break
            await asyncio.sleep(0)
        # live figures of open windows only when the input is live: while stage 1 catches
        # up on a backlog, windows close within seconds and their finals follow
        interval_s = self.settings.provisional_interval_ms / 1000
        # once the partials pause (markers may still come), the live figures catch up with
        # what was merged, at the next interval whatever the throttle below says: they must
        # not stay behind the data while nothing moves
        self.unpublished = self.unpublished or merged > 0
        settled = not merged and self.unpublished and now >= self.last_provisional + interval_s
        if caught_up and not self.catching_up and (now >= self.next_provisional or settled):
            spent = 0.0  # CPU seconds of the publication (not the time others ran in between)
            while True:
                began = time.perf_counter()
                records, more = self.merger.provisional_some(CLOSE_SLICE)
                self.pending.extend(records)
                spent += time.perf_counter() - began
                if not more:
                    break
                await asyncio.sleep(0)
            # live figures are a convenience: at most ~5 % of the worker's time goes to them,
            # shared by its tasks (publishing every open window of every size is costly when
            # event time moves fast; 5 % per task was 6 % of a live worker's CPU, measured)
            self.next_provisional = now + max(interval_s, 20 * spent * max(1, len(self.stage.tasks)))
            self.last_provisional = now
            self.unpublished = False
        # records to publish (finals, live figures) go out within live_commit_interval once
        # caught up; state alone (merged partials, the input position) waits for
        # commit_interval: a commit re-encodes every bucket changed since the last one, and
        # at 100 ms stage 2's commits were 11 % of a live worker's profile samples
        interval_ms = self.settings.commit_interval_ms
        if caught_up and self.pending:
            interval_ms = self.settings.live_commit_interval_ms
        if (now - self.last_commit) * 1000 < interval_ms:
            return
        await self.flush(now)

    async def flush(self, now: float | None = None) -> None:
        """Commit what was merged since the last commit (nothing to do: no transaction)."""
        if not self.uncommitted and not self.pending:
            return
        stats = self.stage.stats
        records, self.pending = self.pending, []
        started = time.perf_counter()
        await self._commit(records)
        self.uncommitted = 0
        self.last_commit = time.monotonic() if now is None else now
        for record in records:
            stats.published["true" if record.final else "false"] += 1
        stats.watermarks[("stage2", self.index)] = self.merger.watermark
        stats.observe_seconds("stage2", time.perf_counter() - started)

    async def _commit(self, records: list[KpiRecord]) -> None:
        changes = self.merger.take_changes()
        changelog = stage2_changelog(self.settings)
        part = self.index
        meta = {
            "watermark": changes.watermark,
            "dropped_late": changes.dropped_late,
            "marks": {str(task): [wm, idle] for task, (wm, idle) in self.marks.items()},
            "tasks": self.tasks_total,
            "position": self.position,
        }
        # encoded in slices (see streams.runtime.pacing): a day's worth of windows closing,
        # or the live figures of every open window, are thousands of records
        budget = LoopBudget()
        kpi_topic = self.settings.topics.kpi
        outgoing: list[Outgoing] = []
        await extend_sliced(outgoing, records, lambda record: (kpi_topic, encode_kpi(record), kpi_key(record), None),
                            budget)
        self.chunks.begin_commit()
        for count, (i, base, dims, bucket, agg) in enumerate(changes.buckets, 1):
            if count % CHECK_EVERY == 0 and budget.spent():
                await budget.pause()
            if isinstance(agg, Distinct):
                # appended in chunks: a day's set of active customers is not rewritten per commit
                key = (i, base, dims, bucket)
                for chunk, members in self.chunks.plan(key, agg.members, changes.fresh.get(key)):
                    value = None if members is None else await encode_chunk(members, budget)
                    outgoing.append((changelog, value, _chunk_key(i, base, dims, bucket, chunk), part))
            else:
                outgoing.append((changelog, encode_bucket(agg), _bucket_key(i, base, dims, bucket), part))
        for i, base, dims, bucket in changes.removed_buckets:
            chunks = self.chunks.forget((i, base, dims, bucket))
            outgoing.extend((changelog, None, _chunk_key(i, base, dims, bucket, chunk), part) for chunk in chunks)
        outgoing.extend((changelog, encode_published(entry), _published_key(i, kpi, dims, start), part)
                        for i, kpi, dims, start, entry in changes.published)
        outgoing.extend((changelog, None, _published_key(i, kpi, dims, start), part)
                        for i, kpi, dims, start in changes.removed_published)
        outgoing.extend((changelog, encode_spec_meta(m), f"s|{m.index}".encode(), part) for m in changes.specs)
        outgoing.append((changelog, encode_plain(meta), META_KEY, part))
        await send_atomically(self.producer, outgoing)


class Stage2(TaskGroup):
    """The stage-2 consumer group member of this worker and its tasks."""

    stage = "stage2"

    def __init__(self, settings: Settings, config: CoreConfig, stats: RuntimeStats) -> None:
        self.settings = settings
        self.config = config
        self.topic = settings.topics.partials
        consumer = AIOKafkaConsumer(
            **client_options(settings),
            group_id=f"{settings.app_id}-stage2",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
            fetch_max_bytes=4 * MAX_MESSAGE_BYTES,
            fetch_min_bytes=FETCH_MIN_BYTES,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            **group_options(),
        )
        super().__init__(stats, consumer, [self.topic])

    async def _open_task(self, index: int) -> None:
        task = Stage2Task(index, self)
        try:
            position = await task.open()
        except BaseException:
            await task.close()
            raise
        self.tasks[index] = task
        tp = TopicPartition(self.topic, index)
        if position is None:
            await self.consumer.seek_to_beginning(tp)
        else:
            self.consumer.seek(tp, position)

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            data = await self.consumer.getmany(timeout_ms=200, max_records=2_000)
            by_partition = {tp.partition: messages for tp, messages in data.items()}
            async with self.lock:
                now = time.monotonic()
                for index, task in list(self.tasks.items()):
                    tp = TopicPartition(self.topic, index)
                    high = self.consumer.last_stable_offset(tp)
                    messages = by_partition.get(index, [])
                    # caught up: nothing new arrived, or only a transaction marker remains
                    caught_up = not messages or (high is not None and messages[-1].offset + 2 >= high)
                    try:
                        await task.step(messages, now, caught_up)
                    except (TaskFenced, TimeoutError, KafkaError, OSError) as exc:
                        await self.handle_failure(index, exc)
                        continue
                    await asyncio.sleep(0)
                    if high is not None:
                        # the consumer's position steps over transaction markers too
                        position = await self.consumer.position(tp)
                        self.stats.lag[(self.topic, index)] = max(0, high - position)

    def latest_records(self) -> list[KpiRecord]:
        """Latest final record per KPI, window size and dims, of the owned tasks."""
        records: list[KpiRecord] = []
        for task in self.tasks.values():
            records.extend(task.merger.latest_final().values())
        return records
