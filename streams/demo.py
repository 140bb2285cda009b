"""``crm-kpi demo``: the example events through a real local Kafka broker and the codec.

What it does, one step function each (so a bigger demo — workers, Prometheus — can reuse
them and add its own steps in between):

1. :func:`start_broker` — the project's single-node Kafka (``streams.localkafka``);
2. :func:`create_demo_topics` — the catalogue topics; the input topics and the DLQ allow
   messages above the codec's 1 MiB limit, so the ``too_large`` examples (and their
   dead-letter records) can travel at all;
3. :func:`load_examples` + :func:`produce_examples` — every file in
   ``schemas/examples/{valid,invalid}`` as one message (the file's exact bytes), keyed by
   its ``customer_id`` when it parses, on the topic of its ``event_type`` when known;
4. :func:`consume_and_route` — the three input topics from the beginning, each message
   through :func:`streams.codec.route.route`;
5. :func:`publish_dead_letters` + :func:`read_dead_letters` — every rejection as a DLQ
   record on ``crm.dlq.v1``, then read back to confirm;
6. :func:`render_report` — accepted per event type, rejected per reason with an example,
   where the broker ran;

and the broker is stopped in every case (errors, Ctrl-C, SIGTERM). :func:`run_demo`
strings the steps together within a time budget (60 s by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from streams import localkafka
from streams.codec import DlqRecord, decode_dlq, encode_dlq
from streams.codec.route import route
from streams.core.events import (
    EVENT_TYPES,
    INTERACTIONS_TOPIC,
    PURCHASES_TOPIC,
    TICKETS_TOPIC,
    Event,
)
from streams.settings import Topics

EXAMPLES_DIR = localkafka.REPO_ROOT / "schemas" / "examples"
FALLBACK_KEY = b"demo-unparseable"
"""Key of example messages whose bytes do not yield a ``customer_id``."""
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""``max.message.bytes`` of the demo's input and DLQ topics, and the clients' limits: the
broker default (~1 MiB) would refuse the ``too_large`` examples before the codec sees them."""
DEFAULT_TIMEOUT_S = 60.0
_INVALID_NAME = re.compile(r"(?P<reason>[a-z_]+)--")


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Example:
    """One example file as the message the demo sends."""

    path: Path
    value: bytes
    key: bytes
    topic: str
    expected: str  # "accepted", or the rejection reason its file name states


@dataclass
class Produced:
    """Where each example landed: (topic, partition, offset) -> example."""

    at: dict[tuple[str, int, int], Example] = field(default_factory=dict)

    @property
    def per_topic(self) -> Counter[str]:
        return Counter(topic for topic, _, _ in self.at)


@dataclass
class Routed:
    """What the codec made of the input topics."""

    consumed: int = 0
    accepted: list[tuple[Event, tuple[str, int, int]]] = field(default_factory=list)
    rejected: list[DlqRecord] = field(default_factory=list)


@dataclass
class DemoResult:
    """Everything the report shows."""

    broker: dict[str, str] = field(default_factory=dict)
    topics_created: list[str] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)
    produced: Produced = field(default_factory=Produced)
    routed: Routed = field(default_factory=Routed)
    dlq_read_back: list[DlqRecord] = field(default_factory=list)
    dlq_topic: str = ""

    def surprises(self) -> list[str]:
        """Examples whose outcome differs from what their folder/file name says."""
        outcome: dict[tuple[str, int, int], str] = {
            where: "accepted" for _, where in self.routed.accepted
        }
        outcome.update(
            {(r.topic, r.partition, r.offset): str(r.reason) for r in self.routed.rejected}
        )
        return [
            f"{example.path.name}: expected {example.expected}, got {outcome.get(where, 'nothing')}"
            for where, example in sorted(self.produced.at.items(), key=lambda kv: kv[1].path.name)
            if outcome.get(where) != example.expected
        ]


# --------------------------------------------------------------------------- progress


class Steps:
    """Numbered progress lines: ``[2/6] Creating topics … done in 0.4 s (8 created)``."""

    def __init__(self, console: Console, total: int) -> None:
        self.console = console
        self.total = total
        self.number = 0
        self.note = ""

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[Steps]:
        """Print the title now and the outcome (with :attr:`note`) when the block ends."""
        self.number += 1
        self.note = ""
        self.console.print(f"[bold cyan][{self.number}/{self.total}][/] {title} …")
        began = time.monotonic()
        try:
            yield self
        except BaseException:
            self.console.print(f"      [red]failed after {time.monotonic() - began:.1f} s[/]")
            raise
        note = f" ({self.note})" if self.note else ""
        self.console.print(f"      [green]done[/] in {time.monotonic() - began:.1f} s{note}")


# --------------------------------------------------------------------------- steps


def start_broker(ready_timeout_s: float = 45.0, partitions: int = 3) -> localkafka.LocalKafka:
    """Start the project's local single-node Kafka broker (jars fetched on first use)."""
    return localkafka.start(partitions_default=partitions, ready_timeout=ready_timeout_s)


def create_demo_topics(bootstrap: str, topics: Topics, partitions: int = 3) -> list[str]:
    """Create the catalogue topics; inputs and DLQ with :data:`MAX_MESSAGE_BYTES`.
    Returns the names newly created (existing topics are left as they are)."""
    large = [*topics.inputs(), topics.dlq]
    created = localkafka.create_topics(
        bootstrap, large, partitions=partitions,
        config={"max.message.bytes": str(MAX_MESSAGE_BYTES)},
    )
    rest = [name for name in topics.all() if name not in large]
    created += localkafka.create_topics(
        bootstrap, rest, partitions=partitions, compacted=[topics.kpi] if topics.kpi in rest else ()
    )
    return created


def route_for(raw: bytes, topics: Topics) -> tuple[str, bytes]:
    """(topic, key) for a raw example: its ``event_type``'s topic and its ``customer_id``
    when the bytes parse as an object holding them, else the interactions topic and
    :data:`FALLBACK_KEY`."""
    by_catalogue_name = {
        TICKETS_TOPIC: topics.tickets,
        INTERACTIONS_TOPIC: topics.interactions,
        PURCHASES_TOPIC: topics.purchases,
    }
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        document = None
    topic, key = topics.interactions, FALLBACK_KEY
    if isinstance(document, dict):
        event_type = document.get("event_type")
        if isinstance(event_type, str) and event_type in EVENT_TYPES:
            topic = by_catalogue_name[EVENT_TYPES[event_type][1]]
        customer_id = document.get("customer_id")
        if isinstance(customer_id, str) and customer_id:
            key = customer_id.encode()
    return topic, key


def load_examples(topics: Topics, root: Path = EXAMPLES_DIR) -> list[Example]:
    """Every ``valid/*.json`` and ``invalid/*.json|.bin`` file, sorted by folder and name."""
    examples = []
    for folder, patterns in (("valid", ("*.json",)), ("invalid", ("*.json", "*.bin"))):
        paths = sorted(path for pattern in patterns for path in (root / folder).glob(pattern))
        for path in paths:
            raw = path.read_bytes()
            topic, key = route_for(raw, topics)
            match = _INVALID_NAME.match(path.name)
            expected = "accepted" if folder == "valid" else (match["reason"] if match else "rejected")
            examples.append(Example(path, raw, key, topic, expected))
    return examples


async def produce_examples(bootstrap: str, examples: Sequence[Example]) -> Produced:
    """Send each example's bytes as one message (acks=all); return where each landed."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_request_size=MAX_MESSAGE_BYTES
    )
    await producer.start()
    try:
        futures = [await producer.send(e.topic, value=e.value, key=e.key) for e in examples]
        metadata = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    produced = Produced()
    for example, meta in zip(examples, metadata, strict=True):
        produced.at[(meta.topic, meta.partition, meta.offset)] = example
    return produced


async def read_topics(bootstrap: str, names: Sequence[str], count: int) -> list[Any]:
    """Read ``names`` from the beginning (no consumer group) until ``count`` records came,
    then briefly check nothing more is there. Callers bound the time (asyncio.timeout)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        *names,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=2 * MAX_MESSAGE_BYTES,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        while len(records) < count:
            batches = await consumer.getmany(timeout_ms=300)
            records.extend(record for batch in batches.values() for record in batch)
        extra = await consumer.getmany(timeout_ms=200)
        records.extend(record for batch in extra.values() for record in batch)
    finally:
        await consumer.stop()
    return records


async def consume_and_route(bootstrap: str, topics: Topics, count: int) -> Routed:
    """Consume the input topics from the beginning and decode each message with the codec."""
    records = await read_topics(bootstrap, topics.inputs(), count)
    routed = Routed(consumed=len(records))
    now_ms = int(time.time() * 1000)
    for record in records:
        outcome = route(record.value, topic=record.topic, partition=record.partition,
                        offset=record.offset, key=record.key, now_ms=now_ms)
        if isinstance(outcome, DlqRecord):
            routed.rejected.append(outcome)
        else:
            routed.accepted.append((outcome, (record.topic, record.partition, record.offset)))
    return routed


async def publish_dead_letters(bootstrap: str, dlq_topic: str, records: Sequence[DlqRecord]) -> int:
    """Publish DLQ records (keyed like their source message); returns how many."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_request_size=MAX_MESSAGE_BYTES
    )
    await producer.start()
    try:
        futures = [
            await producer.send(
                dlq_topic, value=encode_dlq(record),
                key=None if record.key is None else record.key.encode(),
            )
            for record in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return len(records)


async def read_dead_letters(bootstrap: str, dlq_topic: str, count: int) -> list[DlqRecord]:
    """Read the DLQ topic back from the beginning and decode its records."""
    return [decode_dlq(record.value) for record in await read_topics(bootstrap, [dlq_topic], count)]


# --------------------------------------------------------------------------- report


def render_report(console: Console, result: DemoResult) -> None:
    """Tables: accepted per event type, rejected per reason (with an example), the broker."""
    accepted = Table(title="Accepted events per type", title_justify="left")
    accepted.add_column("event type")
    accepted.add_column("topic")
    accepted.add_column("events", justify="right")
    per_type = Counter(event.event_type for event, _ in result.routed.accepted)
    topic_of = {event.event_type: where[0] for event, where in result.routed.accepted}
    for event_type, count in sorted(per_type.items()):
        accepted.add_row(event_type, topic_of[event_type], str(count))
    accepted.add_section()
    accepted.add_row("[bold]total[/]", "", f"[bold]{sum(per_type.values())}[/]")
    console.print(accepted)

    by_reason: dict[str, list[DlqRecord]] = {}
    for record in result.routed.rejected:
        by_reason.setdefault(str(record.reason), []).append(record)
    read_back = Counter(str(record.reason) for record in result.dlq_read_back)
    rejected = Table(
        title=f"Rejected messages per reason (dead-lettered to {result.dlq_topic})",
        title_justify="left",
    )
    rejected.add_column("reason")
    rejected.add_column("msgs", justify="right")
    rejected.add_column("on DLQ", justify="right")
    rejected.add_column("example (file: detail)", overflow="fold")
    for reason, records in sorted(by_reason.items()):
        first = min(records, key=lambda r: _example_name(result, r))
        rejected.add_row(
            reason, str(len(records)), str(read_back[reason]),
            f"[dim]{_example_name(result, first)}:[/] {first.detail}",
        )
    rejected.add_section()
    rejected.add_row(
        "[bold]total[/]", f"[bold]{len(result.routed.rejected)}[/]",
        f"[bold]{len(result.dlq_read_back)}[/]", "",
    )
    console.print(rejected)

    broker = Table(title="Where it ran", title_justify="left", show_header=False)
    broker.add_column(style="bold")
    broker.add_column(overflow="fold")
    for name, value in result.broker.items():
        broker.add_row(name, value)
    console.print(broker)


def _example_name(result: DemoResult, record: DlqRecord) -> str:
    example = result.produced.at.get((record.topic, record.partition, record.offset))
    return example.path.name if example else f"{record.topic}@{record.partition}:{record.offset}"


# --------------------------------------------------------------------------- orchestration


class _Terminated(Exception):
    """SIGTERM arrived: unwind like Ctrl-C so the broker is stopped."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated()


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: nothing to install
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_demo(
    console: Console | None = None,
    *,
    topics: Topics | None = None,
    partitions: int = 3,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> int:
    """Run every step within ``timeout_s``; always stop the broker. Returns the exit code:
    0 when every example ended as its name says, 1 when not or on error, 130 on Ctrl-C."""
    if console is None:
        console = Console()
        if not console.is_terminal and "COLUMNS" not in os.environ:
            console.width = 120  # piped or logged: rich's 80 columns would fold the tables
    topics = topics or Topics()
    deadline = time.monotonic() + timeout_s
    result = DemoResult(dlq_topic=topics.dlq)
    steps = Steps(console, 6)
    broker: localkafka.LocalKafka | None = None
    code, keep_files = 1, False
    console.rule("[bold]crm-kpi demo[/]: example events → local Kafka → codec → DLQ")
    try:
        with _sigterm_unwinds():
            with steps.step("Starting the local Kafka broker (single node, KRaft)"):
                broker = start_broker(max(5.0, deadline - time.monotonic() - 15), partitions)
                result.broker = _broker_facts(broker)
                steps.note = f"Kafka {localkafka.kafka_version()} on {broker.bootstrap}, pid {broker.pid}"
            with steps.step("Creating the catalogue topics"):
                result.topics_created = create_demo_topics(broker.bootstrap, topics, partitions)
                steps.note = f"{len(result.topics_created)} created, {partitions} partitions each"
                result.broker["topics"] = ", ".join(topics.all())
            asyncio.run(_kafka_steps(broker.bootstrap, topics, result, steps, deadline))
        render_report(console, result)
        surprises = result.surprises()
        if len(result.dlq_read_back) != len(result.routed.rejected):
            surprises.append(
                f"{len(result.routed.rejected)} rejected but {len(result.dlq_read_back)} read back from the DLQ"
            )
        for line in surprises:
            console.print(f"[red]unexpected:[/] {line}")
        if not surprises:
            console.print(
                f"[green]All {sum(e.expected == 'accepted' for e in result.examples)} valid "
                f"examples accepted; all {sum(e.expected != 'accepted' for e in result.examples)} "
                "invalid ones rejected with the reason their file name states.[/]"
            )
        code = 1 if surprises else 0
    except KeyboardInterrupt:
        console.print("[yellow]interrupted (Ctrl-C)[/]")
        code = 130
    except _Terminated:
        console.print("[yellow]terminated (SIGTERM)[/]")
        code = 143
    except TimeoutError:
        console.print(f"[red]demo: gave up after {timeout_s:.0f} s[/]")
        keep_files = broker is not None
    except localkafka.LocalKafkaError as exc:
        console.print(f"[red]demo: local Kafka failed:[/] {exc}")
    except Exception as exc:  # noqa: BLE001 - reported, then the broker is stopped
        console.print(f"[red]demo failed:[/] {type(exc).__name__}: {exc}")
        keep_files = broker is not None
    finally:
        if broker is not None:
            _stop(console, broker, keep_files=keep_files)
    _say_what_it_did(console, result, code)
    return code


async def _kafka_steps(
    bootstrap: str, topics: Topics, result: DemoResult, steps: Steps, deadline: float
) -> None:
    # Inside the loop SIGTERM cancels the task, so the clients close in their finally
    # blocks; outside it, _sigterm_unwinds raises.
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    terminated: list[bool] = []
    watching = signal.getsignal(signal.SIGTERM) is _raise_terminated
    if watching and task is not None:
        loop.add_signal_handler(signal.SIGTERM, lambda: (terminated.append(True), task.cancel()))
    try:
        await _kafka_steps_in_time(bootstrap, topics, result, steps, deadline)
        if terminated:  # the cancellation came too late to interrupt anything
            raise _Terminated()
    except asyncio.CancelledError:
        if terminated:
            raise _Terminated() from None
        raise
    finally:
        if watching:
            loop.remove_signal_handler(signal.SIGTERM)  # resets to SIG_DFL: re-arm ours
            signal.signal(signal.SIGTERM, _raise_terminated)


async def _kafka_steps_in_time(
    bootstrap: str, topics: Topics, result: DemoResult, steps: Steps, deadline: float
) -> None:
    async with asyncio.timeout(max(1.0, deadline - time.monotonic() - 5)):
        with steps.step("Producing every example file as one message"):
            result.examples = load_examples(topics)
            result.produced = await produce_examples(bootstrap, result.examples)
            per_topic = result.produced.per_topic
            steps.note = ", ".join(f"{per_topic[name]} → {name}" for name in topics.inputs())
        with steps.step("Consuming the input topics from the beginning, decoding with the codec"):
            result.routed = await consume_and_route(bootstrap, topics, len(result.examples))
            steps.note = (
                f"{result.routed.consumed} consumed: {len(result.routed.accepted)} accepted, "
                f"{len(result.routed.rejected)} rejected"
            )
        with steps.step(f"Dead-lettering the rejected messages to {topics.dlq}"):
            sent = await publish_dead_letters(bootstrap, topics.dlq, result.routed.rejected)
            steps.note = f"{sent} DLQ records"
        with steps.step(f"Reading {topics.dlq} back to confirm"):
            result.dlq_read_back = await read_dead_letters(bootstrap, topics.dlq, sent)
            steps.note = f"{len(result.dlq_read_back)} DLQ records read back"


def _broker_facts(broker: localkafka.LocalKafka) -> dict[str, str]:
    return {
        "broker": f"Apache Kafka {localkafka.kafka_version()} (KRaft, single node), Java "
        f"process pid {broker.pid}, ready in {broker.startup_seconds:.1f} s",
        "bootstrap": broker.bootstrap,
        "working dir": f"{broker.workdir} (data {broker.data_dir.name}/, log {broker.log_path.name})",
        "jars": str(localkafka.libs_dir()),
    }


def _stop(console: Console, broker: localkafka.LocalKafka, *, keep_files: bool) -> None:
    pid = broker.pid
    # Another Ctrl-C or SIGTERM must not leave the JVM behind: the (bounded) stop runs to
    # the end.
    with _signals_ignored():
        exit_code = broker.stop(timeout=10, remove=not keep_files)
    how = (
        "shut down cleanly" if exit_code in (0, 128 + signal.SIGTERM) else f"exit code {exit_code}"
    )
    kept = f"; its log is kept at {broker.log_path}" if keep_files else f"; removed {broker.workdir}"
    console.print(f"Stopped the Kafka broker (pid {pid}, {how}){kept}.")


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """Ignore Ctrl-C and SIGTERM while the block runs (the stop is bounded in time)."""
    try:
        previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _say_what_it_did(console: Console, result: DemoResult, code: int) -> None:
    produced = len(result.produced.at)
    if not produced:
        return
    console.print(
        f"What happened: {produced} example files sent as messages to "
        f"{len(result.produced.per_topic)} input topics; {result.routed.consumed} consumed and "
        f"decoded: {len(result.routed.accepted)} accepted, {len(result.routed.rejected)} "
        f"rejected → {len(result.dlq_read_back)} DLQ records confirmed on {result.dlq_topic}."
        + ("" if code == 0 else " (incomplete, see above)")
    )
