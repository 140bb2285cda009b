"""``crm-kpi demo``: the live demo, and the example events through Kafka and the codec.

**Live demo** (``crm-kpi demo``, ``make demo``; :func:`run_live_demo`,
:class:`LiveDemo`): the local Kafka broker, the topics (the worker's own set), two
``crm-kpi worker`` processes (``/metrics`` on 9108/9109, or free ports when taken), Debian's
``prometheus`` with the project's rules (``deploy/prometheus/rules``) scraping both
workers every 5 s, and the simulator producing :data:`DEFAULT_DAYS` business days at
:data:`DEFAULT_SPEEDUP`× (a simulated day in ~5 minutes). It prints where to look (the
/metrics URLs, the Prometheus UI with ready graph links, ``crm-kpi tail``), shows a live
status (or plain lines with ``--headless``) and runs until Ctrl-C or SIGTERM — or for
``--duration`` seconds — then stops exactly what it started: simulator, workers (SIGTERM),
Prometheus, broker. When the simulated days are over everything stays up until then.

Where things run is printed as ``KEY=value`` lines on stdout once everything is up
(``BOOTSTRAP``, ``PROMETHEUS_URL``, ``METRICS_URLS``, ``KPI_TOPIC``, ``DEMO_STATUS_FILE``,
``DEMO_RUN_DIR``) and kept in ``.cache/demo/status.json`` (:func:`status_path`: state
``starting|running|stopping|stopped``, the pids of the processes it started); logs of the
workers and Prometheus go to ``.cache/demo/run-<time>-<pid>/``.

**Examples only** (``crm-kpi demo --examples-only``; :func:`run_demo`): the first,
minimal demo — every schema example through Kafka and the codec. One step function each:

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
import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from streams import localkafka
from streams.codec import DlqRecord, decode_dlq, encode_dlq, format_ts
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


# =========================================================================== live demo
#
# ``crm-kpi demo`` (the default): the whole system, live. One function per part, like
# the steps above; :class:`LiveDemo` owns every process it starts and stops exactly those.

DEFAULT_SPEEDUP = 300.0
"""Event time runs this many times faster than the wall clock: a simulated day in 4.8 min."""
DEFAULT_CUSTOMERS = 5000
DEFAULT_DAYS = 7
"""Simulated days (one continuous simulation; their follow-ups run on for another day)."""
DEFAULT_WORKERS = 2
DEFAULT_LIVE_PARTITIONS = 6
METRICS_PORTS = (9108, 9109)
"""Preferred /metrics ports of worker 1, 2, …; a taken port falls back to a free one."""
PROMETHEUS_PORT = 9090
SCRAPE_INTERVAL = "5s"
STATUS_EVERY_S = 2.0
"""How often the status (workers' /metrics, Prometheus) is refreshed."""
HEADLESS_EVERY_S = 10.0
"""How often ``--headless`` prints a progress line."""
WORKER_STOP_TIMEOUT_S = 45.0
READY_QUERIES: tuple[tuple[str, str], ...] = (
    ("first-reply time p90 per priority (1h windows)",
     'crm_first_response_time_seconds{window="1h",quantile="0.9",priority!=""}'),
    ("first-reply SLA hit rate", "crm_sla_first_reply_hit_rate_ratio"),
    ("events processed per second", "sum(rate(crm_events_processed_total[1m]))"),
    ("open tickets per priority (5m windows)", 'crm_open_tickets{window="5m",priority!=""}'),
    ("KPI records published per second", "sum by (final) (rate(crm_kpi_records_published_total[1m]))"),
)
"""(title, PromQL) pairs printed as ready-to-click Prometheus graph links."""

_DAY_MS = 86_400_000


class DemoError(RuntimeError):
    """A part of the live demo could not start or died; the message says which and why."""


@dataclass(frozen=True)
class LiveOptions:
    """Knobs of the live demo (``crm-kpi demo --help``)."""

    speedup: float = DEFAULT_SPEEDUP
    customers: int = DEFAULT_CUSTOMERS
    days: int = DEFAULT_DAYS
    seed: int = 1
    duration_s: float | None = None
    """Stop by itself after this many seconds of the live phase (None: until Ctrl-C)."""
    headless: bool = False
    workers: int = DEFAULT_WORKERS
    partitions: int = DEFAULT_LIVE_PARTITIONS
    start_timeout_s: float = 180.0
    """Budget for starting broker, workers and Prometheus."""


def demo_dir() -> Path:
    """``<cache>/demo`` (``.cache/demo`` in the repository unless ``CRM_KPI_CACHE_DIR``)."""
    return localkafka.cache_root() / "demo"


def status_path() -> Path:
    """The live demo's status file: where its Kafka, Prometheus and workers are (JSON)."""
    return demo_dir() / "status.json"


def pick_port(preferred: int | None, taken: set[int] | None = None) -> int:
    """``preferred`` if it can be bound on 127.0.0.1 right now, else a free port; never one
    in ``taken``."""
    taken = taken if taken is not None else set()
    if preferred and preferred not in taken:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((localkafka.HOST, preferred))
                return preferred
            except OSError:
                pass
    while True:
        port = localkafka.free_port()
        if port not in taken:
            return port


def graph_url(prometheus_url: str, expr: str, range_input: str = "30m") -> str:
    """A Prometheus UI link that graphs ``expr`` (URL-encoded)."""
    query = urllib.parse.urlencode({"g0.expr": expr, "g0.tab": "0", "g0.range_input": range_input})
    return f"{prometheus_url}/graph?{query}"


def prometheus_config(targets: Sequence[str], rule_files: Sequence[Path],
                      interval: str = SCRAPE_INTERVAL) -> dict[str, Any]:
    """The demo's Prometheus configuration: the project's rules, both workers scraped as
    job ``crm-kpi-worker`` (the name the rules select) every ``interval``."""
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [{
            "job_name": "crm-kpi-worker",
            "static_configs": [{"targets": list(targets)}],
        }],
    }


def scrape_totals(text: str) -> dict[str, float]:
    """Sum the samples of a few pipeline metrics in a /metrics text: events processed,
    KPI records published (all and final), owned partitions."""
    wanted = {
        "crm_events_processed_total": "processed",
        "crm_kpi_records_published_total": "published",
        "crm_owned_partitions": "owned",
    }
    totals = dict.fromkeys(wanted.values(), 0.0)
    totals["published_final"] = 0.0
    for line in text.splitlines():
        if not line.startswith("crm_"):
            continue
        name, _, rest = line.partition("{") if "{" in line.split(" ", 1)[0] else line.partition(" ")
        if name not in wanted:
            continue
        try:
            value = float(line.rsplit(" ", 1)[1])
        except (IndexError, ValueError):
            continue
        totals[wanted[name]] += value
        if name == "crm_kpi_records_published_total" and 'final="true"' in rest:
            totals["published_final"] += value
    return totals


def _http_get(url: str, timeout: float = 2.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - 127.0.0.1 only
        return response.read()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: SIGTERM the child if the demo dies without stopping it (kill -9, crash)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort
        pass


@dataclass
class Child:
    """A process the live demo started (a worker or Prometheus), with its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    url: str = ""
    stopped_in_s: float | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal_stop(self) -> None:
        """Send SIGTERM (graceful stop) if it still runs."""
        self._signalled_at = time.monotonic()
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)

    def wait_stopped(self, timeout: float) -> int:
        """Wait for the exit after :meth:`signal_stop`; SIGKILL after ``timeout`` s."""
        began = getattr(self, "_signalled_at", None) or time.monotonic()
        try:
            self.process.wait(max(0.0, timeout))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            self.process.wait()
        if self.stopped_in_s is None:
            self.stopped_in_s = time.monotonic() - began
        return self.process.returncode

    def poll_stopped(self) -> None:
        """Note when it exited (for the report) if it has."""
        if self.stopped_in_s is None and not self.alive() and getattr(self, "_signalled_at", None):
            self.stopped_in_s = time.monotonic() - self._signalled_at

    def tail(self, lines: int = 15) -> str:
        """The last lines of its log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.rstrip().splitlines()[-lines:])


def spawn(name: str, command: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None,
          url: str = "") -> Child:
    """Start ``command`` with its output in ``log_path``, in its own session (a Ctrl-C in
    the terminal reaches only the demo, which stops it in order) and tied to the demo's
    life (it gets SIGTERM if the demo dies)."""
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            list(command), cwd=localkafka.REPO_ROOT, env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
    return Child(name, process, log_path, url)


def wait_http_ready(child: Child, url: str, deadline: float, what: str) -> None:
    """Poll ``url`` until it answers 200; raise DemoError (with the log tail) when the
    process exits or ``deadline`` (monotonic) passes."""
    last = "no answer"
    while time.monotonic() < deadline:
        if not child.alive():
            raise DemoError(
                f"{child.name} exited with code {child.process.returncode} while starting; "
                f"log {child.log_path}:\n{child.tail()}"
            )
        try:
            _http_get(url, timeout=1.0)
            return
        except OSError as exc:
            last = str(exc)
        time.sleep(0.25)
    raise DemoError(f"{what} not ready at {url} in time ({last}); log {child.log_path}:\n{child.tail()}")


@dataclass
class LiveStatus:
    """What the status line shows; updated by the simulator and the status poller."""

    started: float = field(default_factory=time.monotonic)
    produced: int = 0
    clock_ms: int | None = None
    sim_done: bool = False
    processed: float = 0.0
    published: float = 0.0
    published_final: float = 0.0
    workers_up: int = 0
    targets_up: int | None = None
    kpi_series: int | None = None


class LiveDemo:
    """Local Kafka, topics, ``crm-kpi worker`` processes, Prometheus and the simulator.

    :meth:`start` brings everything up (synchronously, so Ctrl-C/SIGTERM unwind it),
    :meth:`run` is the live phase (asyncio: simulator, status, signals), :meth:`stop`
    stops exactly what was started — in the order simulator, workers (SIGTERM),
    Prometheus, broker — and says so. Where everything is goes to stdout as
    ``KEY=value`` lines and to :func:`status_path` as JSON.
    """

    def __init__(self, options: LiveOptions, console: Console, topics: Topics | None = None) -> None:
        self.options = options
        self.console = console
        self.topics = topics or Topics()
        self.broker: localkafka.LocalKafka | None = None
        self.workers: list[Child] = []
        self.prometheus: Child | None = None
        self.prometheus_url = ""
        self.status = LiveStatus()
        self.sim_config: Any = None
        self.stop_reason = ""
        self.failure = ""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.run_dir = demo_dir() / f"run-{stamp}-{os.getpid()}"

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        """Start broker, topics, workers and Prometheus; print where to look."""
        from streams.simulate import SimConfig

        options = self.options
        deadline = time.monotonic() + options.start_timeout_s
        try:
            self.sim_config = SimConfig(seed=options.seed, customers=options.customers,
                                        duration=f"{options.days}d")
        except ValueError as exc:
            raise DemoError(f"invalid simulation option: {exc}") from None
        prometheus_binary = shutil.which("prometheus")
        if prometheus_binary is None:
            raise DemoError("prometheus not found on PATH: install the Debian package `prometheus` "
                            "(scripts/bootstrap.sh does, as root)")
        self._prune_old_runs()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._write_status("starting")
        steps = Steps(self.console, 5)
        with steps.step("Starting the local Kafka broker (single node, KRaft)"):
            self.broker = start_broker(max(10.0, deadline - time.monotonic()), options.partitions)
            steps.note = f"Kafka {localkafka.kafka_version()} on {self.broker.bootstrap}, pid {self.broker.pid}"
        self._write_status("starting")
        with steps.step("Creating the topics"):
            created = self._create_topics()
            steps.note = f"{created} created, {options.partitions} partitions each"
        with steps.step(f"Starting {options.workers} `crm-kpi worker` processes"):
            self._start_workers()
            self._write_status("starting")
            for index in range(len(self.workers)):
                self._await_worker(index, deadline)
            steps.note = ", ".join(f"{w.name} pid {w.pid} → {w.url}" for w in self.workers)
        with steps.step(f"Starting Prometheus (scrapes the workers every {SCRAPE_INTERVAL}, project rules)"):
            for attempt in range(3):
                self._start_prometheus(prometheus_binary, PROMETHEUS_PORT if attempt == 0 else None)
                self._write_status("starting")
                assert self.prometheus is not None
                try:
                    wait_http_ready(self.prometheus, f"{self.prometheus_url}/-/ready", deadline, "Prometheus")
                    break
                except DemoError:  # another process took the port before Prometheus bound it?
                    if self.prometheus.alive() or "address already in use" not in self.prometheus.tail(30).lower() \
                            or attempt == 2:
                        raise
            steps.note = f"pid {self.prometheus.pid} → {self.prometheus_url}"
        with steps.step("Preparing the simulator (it starts with the live phase)"):
            config = self.sim_config
            steps.note = (f"{config.customers:,} customers, {options.days} day(s) from {config.start}, "
                          f"×{options.speedup:g} (a day in {format_seconds(86400 / options.speedup)})")
        self._write_status("running")
        self._print_where_to_look()

    def _create_topics(self) -> int:
        from streams.runtime.kafka import ensure_topics
        from streams.settings import load_settings

        assert self.broker is not None
        settings = load_settings(bootstrap_servers=self.broker.bootstrap, partitions=self.options.partitions,
                                 security_protocol="PLAINTEXT")
        before = set(localkafka.wait_ready(self.broker.bootstrap, timeout=30))
        asyncio.run(ensure_topics(settings))  # the worker's own topic set and configs
        after = set(localkafka.wait_ready(self.broker.bootstrap, timeout=30))
        return len(after - before)

    def _worker_env(self, port: int) -> dict[str, str]:
        assert self.broker is not None
        return {
            **os.environ,
            "CRM_KPI_BOOTSTRAP_SERVERS": self.broker.bootstrap,
            "CRM_KPI_SECURITY_PROTOCOL": "PLAINTEXT",
            "CRM_KPI_METRICS_HOST": localkafka.HOST,
            "CRM_KPI_METRICS_PORT": str(port),
            "CRM_KPI_PARTITIONS": str(self.options.partitions),
            "PYTHONUNBUFFERED": "1",
        }

    def _start_workers(self) -> None:
        taken: set[int] = set()
        for index in range(self.options.workers):
            preferred = METRICS_PORTS[index] if index < len(METRICS_PORTS) else None
            port = pick_port(preferred, taken)
            taken.add(port)
            self.workers.append(self._spawn_worker(index, port))

    def _spawn_worker(self, index: int, port: int) -> Child:
        return spawn(
            f"worker {index + 1}", [sys.executable, "-m", "streams.cli", "worker"],
            self.run_dir / f"worker-{index + 1}.log",
            env=self._worker_env(port), url=f"http://{localkafka.HOST}:{port}/metrics",
        )

    def _await_worker(self, index: int, deadline: float, attempts: int = 3) -> None:
        """Wait for worker ``index`` to serve /metrics; if another process took its port
        between the check and the bind, start it again on a free port."""
        for attempt in range(attempts):
            worker = self.workers[index]
            try:
                wait_http_ready(worker, worker.url, deadline, worker.name)
                return
            except DemoError:
                if worker.alive() or "address already in use" not in worker.tail(60).lower() \
                        or attempt == attempts - 1:
                    raise
            taken = {int(w.url.rsplit(":", 1)[1].split("/")[0]) for w in self.workers}
            self.workers[index] = self._spawn_worker(index, pick_port(None, taken))

    def _start_prometheus(self, binary: str, preferred_port: int | None) -> None:
        port = pick_port(preferred_port)
        rules = sorted((localkafka.REPO_ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
        targets = [w.url.removeprefix("http://").removesuffix("/metrics") for w in self.workers]
        config_path = self.run_dir / "prometheus.yml"
        config_path.write_text(json.dumps(prometheus_config(targets, rules), indent=2))  # JSON is YAML
        self.prometheus_url = f"http://{localkafka.HOST}:{port}"
        self.prometheus = spawn(
            "Prometheus",
            [binary, f"--config.file={config_path}", f"--storage.tsdb.path={self.run_dir / 'prometheus-data'}",
             f"--web.listen-address={localkafka.HOST}:{port}", "--storage.tsdb.retention.time=2d",
             "--log.level=warn"],
            self.run_dir / "prometheus.log", url=self.prometheus_url,
        )

    def where(self) -> dict[str, str]:
        """Machine-readable facts (also printed as ``KEY=value`` lines)."""
        assert self.broker is not None
        return {
            "BOOTSTRAP": self.broker.bootstrap,
            "PROMETHEUS_URL": self.prometheus_url,
            "METRICS_URLS": ",".join(w.url for w in self.workers),
            "KPI_TOPIC": self.topics.kpi,
            "DEMO_STATUS_FILE": str(status_path()),
            "DEMO_RUN_DIR": str(self.run_dir),
        }

    def _print_where_to_look(self) -> None:
        console, where = self.console, self.where()

        def line(label: str, value: str) -> None:
            # soft_wrap: long URLs stay on one line, so they can be clicked and copied
            console.print(f"  [bold]{label:<18}[/] {value}", soft_wrap=True)

        console.print("[bold]Where to look[/]")
        for worker in self.workers:
            line(f"{worker.name} /metrics", worker.url)
        line("Prometheus UI", self.prometheus_url)
        for title, expr in READY_QUERIES:
            console.print(f"    {title}: [dim]{escape(expr)}[/]", soft_wrap=True)
            url = graph_url(self.prometheus_url, expr)
            console.print(f"      [link={url}]{url}[/link]", soft_wrap=True)
        line("KPI records, live", f"{_venv_command('crm-kpi')} tail --bootstrap {where['BOOTSTRAP']}")
        line("Kafka bootstrap", f"{where['BOOTSTRAP']} (topics {', '.join(self.topics.all())})")
        line("status, logs", f"{status_path()}, {self.run_dir}/")
        speedup = self.options.speedup
        console.print(
            f"Event time runs ×{speedup:g}: a 5-minute window closes every {format_seconds(300 / speedup)}, an "
            f"hourly one every {format_seconds(3600 / speedup)}, a day every {format_seconds(86400 / speedup)}. "
            "The gauges show the latest closed window of each size.", soft_wrap=False)
        # plain lines for scripts and tests: no markup, no wrapping
        console.file.write("".join(f"{key}={value}\n" for key, value in where.items()))
        console.file.flush()
        until = (f"for {format_seconds(self.options.duration_s)} (--duration)"
                 if self.options.duration_s else "until Ctrl-C")
        console.print(f"[bold green]Live demo running[/] {until}.")

    # ------------------------------------------------------------------ live phase

    async def run(self) -> int:
        """Run the simulator and the status display until Ctrl-C, SIGTERM, ``duration_s``
        or a failure. Returns 0, or 1 after a failure."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        previous_term = signal.getsignal(signal.SIGTERM)

        def request(reason: str) -> None:
            if not self.stop_reason:
                self.stop_reason = reason
            stop.set()

        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGINT, request, "Ctrl-C")
            loop.add_signal_handler(signal.SIGTERM, request, "SIGTERM")
        self.status = LiveStatus()
        simulation = asyncio.create_task(self._simulate(), name="simulator")
        poller = asyncio.create_task(self._poll(stop), name="status")
        live = None if self.options.headless else Live(
            self._status_view(), console=self.console, refresh_per_second=2, transient=False)
        deadline = None if not self.options.duration_s else loop.time() + self.options.duration_s
        next_line = loop.time() + HEADLESS_EVERY_S
        try:
            if live is not None:
                live.start()
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
                dead = [w for w in self.workers if not w.alive()]
                if self.prometheus is not None and not self.prometheus.alive():
                    dead.append(self.prometheus)
                if dead:
                    child = dead[0]
                    self.failure = (f"{child.name} (pid {child.pid}) exited with code "
                                    f"{child.process.returncode}; log {child.log_path}:\n{child.tail()}")
                    break
                if simulation.done() and not self.status.sim_done:
                    self.status.sim_done = True
                    self._simulation_finished(simulation, live)
                    if self.failure:
                        break
                if deadline is not None and loop.time() >= deadline:
                    self.stop_reason = f"--duration {self.options.duration_s:g} s reached"
                    break
                if live is not None:
                    live.update(self._status_view())
                elif loop.time() >= next_line:
                    next_line += HEADLESS_EVERY_S
                    self._print_line(self.status_text())
        finally:
            if live is not None:
                live.update(self._status_view())
                live.stop()
            for task in (simulation, poller):
                task.cancel()
            for task in (simulation, poller):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, 15)
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGINT)
                loop.remove_signal_handler(signal.SIGTERM)
                signal.signal(signal.SIGTERM, previous_term)  # removal resets it to SIG_DFL
        if self.options.headless:
            self._print_line(self.status_text())
        return 1 if self.failure else 0

    def _simulation_finished(self, simulation: asyncio.Task, live: Live | None) -> None:
        printer = live.console if live is not None else self.console
        if simulation.cancelled():
            return
        error = simulation.exception()
        if error is not None:
            self.failure = f"the simulator failed: {type(error).__name__}: {error}"
            return
        until = "--duration ends it" if self.options.duration_s else "Ctrl-C"
        printer.print(f"Simulation finished: {self.status.produced:,} messages, {self.options.days} day(s) "
                      f"and their follow-ups. Workers, Prometheus and Kafka stay up until {until}.")

    async def _simulate(self) -> None:
        from streams.simulate import generate, produce

        rename = {"crm.tickets.v1": self.topics.tickets, "crm.interactions.v1": self.topics.interactions,
                  "crm.purchases.v1": self.topics.purchases}
        status = self.status

        def progress(sent: int, message: Any) -> None:
            status.produced = sent
            status.clock_ms = message.delivered_at_ms

        messages = (m if rename[m.topic] == m.topic else dataclasses.replace(m, topic=rename[m.topic])
                    for m in generate(self.sim_config))
        assert self.broker is not None
        await produce(messages, self.broker.bootstrap, speedup=self.options.speedup, progress=progress)

    async def _poll(self, stop: asyncio.Event) -> None:
        """Refresh the workers' and Prometheus' figures every :data:`STATUS_EVERY_S`."""
        round_number = 0
        while not stop.is_set():
            totals = {"processed": 0.0, "published": 0.0, "published_final": 0.0}
            up = 0
            for worker in self.workers:
                try:
                    text = (await asyncio.to_thread(_http_get, worker.url, 2.0)).decode("utf-8", "replace")
                except OSError:
                    continue
                up += 1
                for key, value in scrape_totals(text).items():
                    if key in totals:
                        totals[key] += value
            self.status.workers_up = up
            if up:
                self.status.processed = totals["processed"]
                self.status.published = totals["published"]
                self.status.published_final = totals["published_final"]
            if round_number % 3 == 0:
                self.status.targets_up = await self._prometheus_number('sum(up{job="crm-kpi-worker"})')
                self.status.kpi_series = await self._prometheus_number(
                    'count({__name__=~"crm_.+",job="crm-kpi-worker",window!=""})')
            round_number += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), STATUS_EVERY_S)

    async def _prometheus_number(self, expr: str) -> int | None:
        url = f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            body = orjson.loads(await asyncio.to_thread(_http_get, url, 3.0))
            result = body["data"]["result"]
            return int(float(result[0]["value"][1])) if result else 0
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            return None

    def status_text(self) -> str:
        """One plain line: event time, messages produced, processed, KPI records, health."""
        s = self.status
        elapsed = format_seconds(time.monotonic() - s.started)
        clock = "-"
        if s.clock_ms is not None and self.sim_config is not None:
            day_text = self._day_text(s.clock_ms)
            clock = f"{format_ts(s.clock_ms)[:16]}Z ({day_text}{', finished' if s.sim_done else ''})"
        prometheus = ("prometheus ?" if s.targets_up is None else
                      f"prometheus {s.targets_up}/{len(self.workers)} targets up, {s.kpi_series or 0:,} KPI series")
        return (f"[{elapsed}] event time {clock} | produced {s.produced:,} | processed {s.processed:,.0f} | "
                f"KPI records {s.published:,.0f} ({s.published_final:,.0f} final) | "
                f"workers {s.workers_up}/{len(self.workers)} up | {prometheus}")

    def _day_text(self, clock_ms: int) -> str:
        """``day 2 of 7``; ``opening book`` before the first day; ``follow-ups`` after the last."""
        day = (clock_ms - self.sim_config.start_ms) // _DAY_MS + 1
        if day < 1:
            return "opening book"
        if day > self.options.days:
            return f"follow-ups after day {self.options.days}"
        return f"day {day} of {self.options.days}"

    def _status_view(self) -> Table:
        s, options = self.status, self.options
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold cyan", no_wrap=True)
        grid.add_column()
        clock = "waiting for the first message"
        if s.clock_ms is not None and self.sim_config is not None:
            day_text = self._day_text(s.clock_ms)
            clock = (f"{format_ts(s.clock_ms)[:16].replace('T', ' ')} UTC · {day_text} · ×{options.speedup:g}"
                     + (" · [green]finished[/]" if s.sim_done else ""))
        grid.add_row("event time", clock)
        grid.add_row("produced", f"{s.produced:,} messages")
        grid.add_row("workers", f"{s.workers_up}/{len(self.workers)} up · {s.processed:,.0f} events processed · "
                     f"{s.published:,.0f} KPI records published ({s.published_final:,.0f} final)")
        grid.add_row("prometheus", "not answering" if s.targets_up is None else
                     f"{s.targets_up}/{len(self.workers)} targets up · {s.kpi_series or 0:,} KPI series")
        until = (f"stops after {format_seconds(options.duration_s)}" if options.duration_s else "Ctrl-C stops it")
        grid.add_row("running", f"{format_seconds(time.monotonic() - s.started)} · {until}")
        return grid

    def _print_line(self, text: str) -> None:
        self.console.file.write(text + "\n")
        self.console.file.flush()

    # ------------------------------------------------------------------ stop

    def stop(self) -> None:
        """Stop exactly what was started, in order, and say so (bounded in time)."""
        console = self.console
        started = [*self.workers, *([self.prometheus] if self.prometheus else []), *([self.broker] if self.broker else [])]
        if not started:
            self._write_status("stopped")
            return
        self._write_status("stopping")
        console.print("[bold]Stopping what the demo started:[/]")
        if self.status.produced or self.status.sim_done:
            console.print(f"  simulator: stopped after {self.status.produced:,} messages")
        for worker in self.workers:
            worker.signal_stop()
        deadline = time.monotonic() + WORKER_STOP_TIMEOUT_S
        while time.monotonic() < deadline and any(w.alive() for w in self.workers):
            for worker in self.workers:
                worker.poll_stopped()
            time.sleep(0.05)
        for worker in self.workers:
            self._report_stop(worker, worker.wait_stopped(deadline - time.monotonic()))
        if self.prometheus is not None:
            self.prometheus.signal_stop()
            self._report_stop(self.prometheus, self.prometheus.wait_stopped(15))
            shutil.rmtree(self.run_dir / "prometheus-data", ignore_errors=True)
        if self.broker is not None:
            pid = self.broker.pid
            code = self.broker.stop(timeout=20)
            how = "shut down cleanly" if code in (0, 128 + signal.SIGTERM, -signal.SIGTERM) else f"exit code {code}"
            console.print(f"  Kafka broker (pid {pid}): {how}; removed {self.broker.workdir}")
        self._write_status("stopped")
        leftovers = [c.name for c in (*self.workers, *([self.prometheus] if self.prometheus else [])) if c.alive()]
        if self.broker is not None and self.broker.running():
            leftovers.append("Kafka broker")
        if leftovers:
            console.print(f"[red]Still running: {', '.join(leftovers)}[/]")
        else:
            console.print(f"Everything the demo started is stopped. Logs: {self.run_dir}")

    def _report_stop(self, child: Child, code: int) -> None:
        took = f" in {child.stopped_in_s:.1f} s" if child.stopped_in_s is not None else ""
        how = ("exited 0" if code in (0, -signal.SIGTERM, 128 + signal.SIGTERM)
               else "killed (did not stop in time)" if code == -signal.SIGKILL else f"exit code {code}")
        self.console.print(f"  {child.name} (pid {child.pid}): SIGTERM → {how}{took}")

    # ------------------------------------------------------------------ status file

    def _write_status(self, state: str) -> None:
        children = {w.name: w.pid for w in self.workers}
        if self.prometheus is not None:
            children["prometheus"] = self.prometheus.pid
        if self.broker is not None and self.broker.pid is not None:
            children["kafka"] = self.broker.pid
        document = {
            "state": state,
            "pid": os.getpid(),
            "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "bootstrap": self.broker.bootstrap if self.broker else None,
            "prometheus_url": self.prometheus_url or None,
            "metrics_urls": [w.url for w in self.workers],
            "kpi_topic": self.topics.kpi,
            "run_dir": str(self.run_dir),
            "children": children,
            "speedup": self.options.speedup,
            "customers": self.options.customers,
            "days": self.options.days,
        }
        data = json.dumps(document, indent=2) + "\n"
        for path in (self.run_dir / "status.json", status_path()):
            with contextlib.suppress(OSError):
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.{os.getpid()}")
                tmp.write_text(data)
                tmp.replace(path)

    def _prune_old_runs(self, keep: int = 3) -> None:
        """Remove old run folders (logs) of demos that no longer run, keeping the newest few."""
        runs = sorted(demo_dir().glob("run-*"), key=lambda p: p.stat().st_mtime, reverse=True)
        for path in runs[keep:]:
            try:
                pid = int(json.loads((path / "status.json").read_text()).get("pid", 0))
            except (OSError, ValueError, AttributeError):
                pid = 0
            if pid and pid != os.getpid() and localkafka._pid_alive(pid):  # noqa: SLF001
                continue
            shutil.rmtree(path, ignore_errors=True)


def format_seconds(seconds: float | None) -> str:
    """``95`` → ``1m 35s``; ``7200`` → ``2h 00m``; below a minute ``42 s``."""
    if seconds is None:
        return "-"
    whole = int(round(seconds))
    if seconds < 10:
        return f"{seconds:.1f} s"
    if whole < 60:
        return f"{seconds:.0f} s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"


def _venv_command(name: str) -> str:
    """``.venv/bin/<name>`` relative to the current directory when that is where it lives."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        with contextlib.suppress(ValueError):
            return str(candidate.relative_to(Path.cwd()))
        return str(candidate)
    return name


def run_live_demo(options: LiveOptions | None = None, console: Console | None = None, *,
                  topics: Topics | None = None) -> int:
    """The live demo: start everything, run until Ctrl-C/SIGTERM/``duration_s``, stop
    everything it started. Returns 0 after a clean stop, 1 if something failed."""
    options = options or LiveOptions()
    if console is None:
        console = Console(highlight=False)
        if not console.is_terminal and "COLUMNS" not in os.environ:
            console.width = 160  # piped or logged: keep URLs and status lines on one line
    demo = LiveDemo(options, console, topics)
    console.rule("[bold]crm-kpi demo[/]: simulator → Kafka → 2 workers → Prometheus, live"
                 if options.workers == 2 else "[bold]crm-kpi demo[/]: live")
    code = 1
    try:
        with _sigterm_unwinds():
            demo.start()
            code = asyncio.run(demo.run())
        if demo.failure:
            console.print(f"[red]demo failed:[/] {demo.failure}")
        elif demo.stop_reason:
            console.print(f"[yellow]{demo.stop_reason}[/]: stopping.")
    except KeyboardInterrupt:
        console.print("[yellow]interrupted (Ctrl-C)[/]: stopping.")
        code = 0
    except _Terminated:
        console.print("[yellow]terminated (SIGTERM)[/]: stopping.")
        code = 0
    except localkafka.LocalKafkaError as exc:
        console.print(f"[red]demo: local Kafka failed:[/] {exc}")
    except DemoError as exc:
        console.print(f"[red]demo failed:[/] {exc}")
    except Exception as exc:  # noqa: BLE001 - reported, then everything is stopped
        console.print(f"[red]demo failed:[/] {type(exc).__name__}: {exc}")
    finally:
        with _signals_ignored():
            demo.stop()
    return code
