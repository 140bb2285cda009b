"""The contenders of ``bench/peers_bench.py``, each run in its own process.

``python -m bench.peers_contenders <role> ...`` where role is

* ``ceiling``: aiokafka ``getmany`` + ``orjson.loads`` of every message, nothing else;
* ``floor``: the worker's transport with a core that costs nothing: the ceiling's
  consumption, the worker's typed decode and home-partition check of every message, and
  the records the worker itself wrote in the same bench run (read back from its output,
  partials and changelog topics, ``--outputs``) sent again through the worker's own
  transactional send, in as many transactions, while stage 2's reading of the partials
  back is done too (see :func:`run_floor`);
* ``faust``: writes a naive faust-streaming app (one agent over the three topics, a faust
  ``Table`` updated per event) to a temporary directory and ``exec``s ``faust worker``
  on it, so the measured process is the faust worker itself;
* ``quix``: a Quix Streams application (tumbling event-time windows, ``occurred_at``
  timestamp extractor) doing the same aggregations;
* ``memory``: a stage-1 ``Processor`` holding 1M customers and 100k open tickets.

Every stream contender prints ``BENCH {"first": ...}`` when it sees its first input
message and ``BENCH {"done": ...}`` when it has taken ``--total`` input messages; each
carries the process CPU seconds (``getrusage(RUSAGE_SELF)``, all threads) and the wall
clock, so the parent computes the CPU of the work without start-up. Nothing here
asserts a time.

The naive peers compute, per 1-hour tumbling window of event time: events per
``event_type``, the mean first-response time (``ticket.created`` → first
``ticket.replied`` by an agent, per ticket) and NPS (``survey.answered`` with
``survey == "nps"``: % promoters 9–10 − % detractors 0–6).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
INPUTS = ("crm.tickets.v1", "crm.interactions.v1", "crm.purchases.v1")
HOUR_MS = 3_600_000


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def vm_hwm() -> int:
    """Peak RSS of this process image (VmHWM). Not ``ru_maxrss``: that keeps the peak of
    the process before ``exec``, i.e. of the forked bench parent holding the workload."""
    with open("/proc/self/status") as handle:
        return next((int(line.split()[1]) * 1024 for line in handle if line.startswith("VmHWM:")), 0)


def report(kind: str, **extra: object) -> None:
    """One machine-readable progress line for the parent."""
    payload = {kind: {"cpu": cpu_seconds(), "wall": time.time(), "maxrss": vm_hwm(), **extra}}
    print("BENCH " + json.dumps(payload), flush=True)


# --------------------------------------------------------------------------- ceiling


async def _ceiling(bootstrap: str, topics: list[str], total: int, group: str) -> None:
    import orjson
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    seen = 0
    loads = orjson.loads
    try:
        while seen < total:
            batch = await consumer.getmany(timeout_ms=500, max_records=20_000)
            if batch and seen == 0:
                report("first")
            for messages in batch.values():
                for message in messages:
                    loads(message.value)
                seen += len(messages)
            if seen // 100_000 != (seen - sum(len(m) for m in batch.values())) // 100_000:
                report("progress", n=seen)
        report("done", n=seen)
    finally:
        await consumer.stop()


def run_ceiling(args: argparse.Namespace) -> None:
    import asyncio

    asyncio.run(_ceiling(args.bootstrap, args.topics.split(","), args.total, args.group))


# --------------------------------------------------------------------------- floor

FLOOR_PREFIX = "floor."  # the floor writes to floor.<topic>, never to the worker's topics
PARTIALS = "crm.kpi-partials"
# the worker sends these by key (Kafka's default partitioner); the partials and the
# changelogs to the partition of the task that wrote them
KEYED = frozenset({"crm.kpi.v1", "crm.sla.v1", "crm.churn-signals.v1", "crm.dlq.v1"})


def floor_topic(topic: str, app_id: str, prefix: str = "") -> str:
    """The floor's name of a topic the worker wrote: ``floor.`` and the topic's default
    name (without the worker's topic ``prefix``; its changelogs without the app id)."""
    if topic.startswith(app_id + "."):
        topic = topic[len(app_id) + 1:]
    return FLOOR_PREFIX + topic.removeprefix(prefix)


def transaction_share(counts: dict[str, int], transactions: int, index: int) -> dict[str, range]:
    """Which records of each topic transaction ``index`` (of ``transactions``) sends: the
    ``index``-th of ``transactions`` even shares, in the order the worker wrote them."""
    return {topic: range(n * index // transactions, n * (index + 1) // transactions)
            for topic, n in counts.items()}


async def _floor(args: argparse.Namespace) -> None:
    import msgspec
    from aiokafka import AIOKafkaConsumer

    from streams.codec import HomePartitions, Rejected, decode_event
    from streams.runtime.kafka import send_atomically, transactional_producer
    from streams.runtime.worker import tune_gc
    from streams.settings import Settings

    # (topic, partition, key, value) in the order the worker wrote them, per topic
    captured = msgspec.msgpack.decode(Path(args.outputs).read_bytes(),
                                      type=list[tuple[str, int, bytes | None, bytes | None]])
    records: dict[str, list[tuple[bytes | None, bytes | None, int | None]]] = {}
    for topic, partition, key, value in captured:
        keyed = topic.removeprefix(FLOOR_PREFIX) in KEYED
        records.setdefault(topic, []).append((value, key, None if keyed else partition))
    del captured
    tune_gc()  # as the worker does: what is loaded out of the collector's sight, its thresholds
    counts = {topic: len(rows) for topic, rows in records.items()}
    partials_sent = counts.get(FLOOR_PREFIX + PARTIALS, 0)
    transactions = max(1, args.transactions)
    producer = transactional_producer(Settings(bootstrap_servers=args.bootstrap, app_id=args.group),
                                      f"{args.group}-floor")
    consumer = AIOKafkaConsumer(*args.topics.split(","), bootstrap_servers=args.bootstrap, group_id=args.group,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_partition_fetch_bytes=4 * 1024 * 1024)
    # stage 2 reads the partials back (committed ones only, as the worker does)
    reader = AIOKafkaConsumer(FLOOR_PREFIX + PARTIALS, bootstrap_servers=args.bootstrap, group_id=None,
                              auto_offset_reset="earliest", enable_auto_commit=False,
                              isolation_level="read_committed")
    await producer.start()
    await consumer.start()
    await reader.start()
    homes = HomePartitions(args.partitions)
    seen = read = sent = 0
    try:
        while seen < args.total:
            batch = await consumer.getmany(timeout_ms=500, max_records=20_000)
            if batch and seen == 0:
                report("first")
            before = seen
            for messages in batch.values():
                for message in messages:
                    decoded = decode_event(message.value if message.value is not None else b"")
                    if not isinstance(decoded, Rejected):
                        homes[decoded.customer_id]  # noqa: B018 - the worker's misrouting check
                seen += len(messages)
            due = transactions if seen >= args.total else seen * transactions // args.total
            while sent < due:
                share = transaction_share(counts, transactions, sent)
                await send_atomically(producer, [(topic, *records[topic][i])
                                                 for topic, span in share.items() for i in span])
                sent += 1
            read += sum(len(m) for m in (await reader.getmany(timeout_ms=0)).values())
            if seen // 100_000 != before // 100_000:
                report("progress", n=seen)
        deadline = time.monotonic() + 60
        while read < partials_sent and time.monotonic() < deadline:
            read += sum(len(m) for m in (await reader.getmany(timeout_ms=500)).values())
        report("done", n=seen, details={
            "transactions": sent, "records_sent": sum(counts.values()),
            "bytes_sent": sum(len(v or b"") + len(k or b"") for rows in records.values() for v, k, _ in rows),
            "records_per_topic": counts, "partials_read": read})
    finally:
        await reader.stop()
        await consumer.stop()
        await producer.stop()


def run_floor(args: argparse.Namespace) -> None:
    """Everything the worker does per event except its core: what an aiokafka worker
    producing the same output would cost if its KPI work were free. Left out: the
    worker's watermark and changelog bookkeeping, /metrics, and encoding (the records
    are sent as the worker encoded them)."""
    import asyncio

    if not args.outputs:
        raise SystemExit("floor: --outputs (the worker's captured records) is required")
    asyncio.run(_floor(args))


# --------------------------------------------------------------------------- faust

FAUST_APP = textwrap.dedent('''
    """Naive faust-streaming KPIs: one agent, a faust Table updated per event (bench)."""
    import json, os, resource, time
    from datetime import datetime

    import faust

    TOTAL = int(os.environ["BENCH_TOTAL"])
    HOUR_MS = 3_600_000
    app = faust.App(os.environ["BENCH_GROUP"], broker="kafka://" + os.environ["BENCH_BOOTSTRAP"],
                    web_enabled=False, autodiscover=False, store="memory://",
                    topic_partitions=int(os.environ["BENCH_PARTITIONS"]), topic_replication_factor=1,
                    datadir=os.environ["BENCH_DATADIR"], consumer_auto_offset_reset="earliest")
    source = app.topic(*os.environ["BENCH_TOPICS"].split(","), value_serializer="raw", key_serializer="raw")
    # window|kpi|part -> number; ticket id -> created ms (or -1 once the first agent reply came)
    kpis = app.Table("bench-kpis", default=int)
    tickets = app.Table("bench-tickets", default=int)
    state = {"n": 0}

    def cpu():
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def report(kind, **extra):
        with open("/proc/self/status") as handle:
            peak = next((int(line.split()[1]) * 1024 for line in handle if line.startswith("VmHWM:")), 0)
        print("BENCH " + json.dumps({kind: {"cpu": cpu(), "wall": time.time(), "maxrss": peak, **extra}}),
              flush=True)

    @app.agent(source)
    async def fold(stream):
        async for value in stream:
            if state["n"] == 0:
                report("first")
            state["n"] += 1
            if state["n"] % 100_000 == 0:
                report("progress", n=state["n"])
            try:
                event = json.loads(value)
                at = int(datetime.fromisoformat(event["occurred_at"]).timestamp() * 1000)
            except (ValueError, KeyError, TypeError):
                event = None
            if event is not None:
                window = at - at % HOUR_MS
                kind = event["event_type"]
                data = event.get("data") or {}
                kpis[f"{window}|count|{kind}"] += 1
                if kind == "ticket.created":
                    tickets[data["ticket_id"]] = at
                elif kind == "ticket.replied" and data.get("author") == "agent":
                    created = tickets[data["ticket_id"]]
                    if created > 0:
                        tickets[data["ticket_id"]] = -1
                        kpis[f"{window}|frt|sum_ms"] += at - created
                        kpis[f"{window}|frt|n"] += 1
                elif kind == "survey.answered" and data.get("survey") == "nps":
                    score = data["score"]
                    kpis[f"{window}|nps|n"] += 1
                    if score >= 9:
                        kpis[f"{window}|nps|promoters"] += 1
                    elif score <= 6:
                        kpis[f"{window}|nps|detractors"] += 1
            if state["n"] == TOTAL:
                report("done", n=state["n"], keys=len(kpis), tickets=len(tickets))
''')


def run_faust(args: argparse.Namespace) -> None:
    """Write the app and replace this process with ``faust worker`` (same pid)."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-faust-"))
    (workdir / "bench_faust_peer.py").write_text(FAUST_APP)
    env = {**os.environ, "BENCH_TOTAL": str(args.total), "BENCH_BOOTSTRAP": args.bootstrap,
           "BENCH_GROUP": args.group, "BENCH_TOPICS": args.topics,
           "BENCH_PARTITIONS": str(args.partitions), "BENCH_DATADIR": str(workdir / "data"),
           "PYTHONPATH": os.pathsep.join([str(workdir), str(REPO_ROOT)])}
    os.chdir(workdir)
    os.execve(sys.executable, [sys.executable, "-m", "faust", "-A", "bench_faust_peer", "worker",
                               "-l", "warn", "--without-web"], env)


# --------------------------------------------------------------------------- quix


def run_quix(args: argparse.Namespace) -> None:
    """Quix Streams: per input topic a dataframe (tickets: a stateful first-response
    step), concatenated, exploded into KPI items, ``group_by`` the KPI key (a
    repartition topic, which is how Quix aggregates across message keys) and a 1-hour
    tumbling window ``reduce`` emitted when final.

    Grace is a day (``--quix-grace-ms``), not the worker's 60 s: Quix closes a window
    when the *partition's* latest timestamp passes its end + grace, and the repartition
    topic interleaves three input topics that the consumer reads hours apart in event
    time, so with 60 s it skipped ~80 % of the messages as late (and did less work). The
    skipped ones are counted (``late`` in the ``final`` line)."""
    import logging
    from datetime import datetime, timedelta

    import orjson
    from quixstreams import Application

    state_dir = Path(tempfile.mkdtemp(prefix="bench-quix-"))
    app = Application(broker_address=args.bootstrap, consumer_group=args.group,
                      auto_offset_reset="earliest", commit_interval=1.0, state_dir=state_dir,
                      loglevel=logging.WARNING)
    progress = {"n": 0}
    total = args.total

    def occurred_at(value, headers, timestamp, timestamp_type) -> int:  # noqa: ARG001
        try:
            return int(datetime.fromisoformat(value["occurred_at"]).timestamp() * 1000)
        except (TypeError, KeyError, ValueError):
            return timestamp

    def count_input(value) -> None:
        if progress["n"] == 0:
            report("first")
        progress["n"] += 1
        if progress["n"] % 100_000 == 0:
            report("progress", n=progress["n"])
        if progress["n"] == total:
            report("done", n=progress["n"])

    def items(value) -> list[dict]:
        kind = value.get("event_type")
        out = [{"k": f"count|{kind}", "x": 1}]
        data = value.get("data") or {}
        if kind == "survey.answered" and data.get("survey") == "nps":
            score = data.get("score", 0)
            out.append({"k": "nps", "x": 1 if score >= 9 else (-1 if score <= 6 else 0)})
        return out

    def ticket_items(value, state) -> list[dict]:
        out = items(value)
        data = value.get("data") or {}
        kind = value.get("event_type")
        if kind == "ticket.created":
            state.set(data["ticket_id"], occurred_at(value, None, 0, None))
        elif kind == "ticket.replied" and data.get("author") == "agent":
            created = state.get(data["ticket_id"], 0)
            if created > 0:
                state.set(data["ticket_id"], -1)
                out.append({"k": "frt", "x": occurred_at(value, None, 0, None) - created})
        return out

    def topic(name: str):
        return app.topic(name, value_deserializer="json", key_deserializer="bytes",
                         timestamp_extractor=occurred_at)

    names = args.topics.split(",")
    frames = []
    for name in names:
        sdf = app.dataframe(topic(name)).update(count_input)
        if name == names[0]:  # the tickets topic
            frames.append(sdf.apply(ticket_items, stateful=True))
        else:
            frames.append(sdf.apply(items))
    sdf = frames[0]
    for other in frames[1:]:
        sdf = sdf.concat(other)
    sdf = sdf.apply(lambda values: values, expand=True)
    sdf = sdf.group_by(lambda item: item["k"], name="kpi")

    def initial(item: dict) -> list:
        x = item["x"]
        return [1, x, 1 if x > 0 else 0, 1 if x < 0 else 0]  # n, sum, promoters, detractors

    def reduce(agg: list, item: dict) -> list:
        x = item["x"]
        return [agg[0] + 1, agg[1] + x, agg[2] + (x > 0), agg[3] + (x < 0)]

    late = {"n": 0}

    def on_late(*_: object) -> bool:
        late["n"] += 1
        return False  # counted here instead of one warning line per message

    grace = timedelta(milliseconds=args.quix_grace_ms)
    sdf = sdf.tumbling_window(timedelta(hours=1), grace_ms=grace, on_late=on_late) \
        .reduce(reduce, initial).final()
    sdf.update(lambda value: None)
    del orjson  # imported above only to make sure Quix's fast JSON path is available
    app.run()
    report("final", n=progress["n"], late=late["n"])


# --------------------------------------------------------------------------- memory


def run_memory(args: argparse.Namespace) -> None:
    """1M customers (one ``session.started`` each) and 100k open tickets (four per
    customer, from bench/timers_bench.py) in one stage-1 Processor; RSS and VmHWM."""
    import gc
    import heapq
    import itertools

    from bench.timers_bench import START_MS, creations, feed, open_tickets, rss_bytes
    from streams.core.events import make_event
    from streams.core.pipeline import CoreConfig, Processor

    rss_start = rss_bytes()
    processor = Processor(CoreConfig())
    span = 4 * HOUR_MS
    # the tickets' customers (cus-000000 ... four tickets each) are among the sessions'
    created = creations(args.tickets, 4.0)
    sessions = (
        make_event("session.started", event_id=f"s-{n}", occurred_at_ms=START_MS + n * span // args.customers,
                   customer_id=f"cus-{n:06d}", source="bench")
        for n in range(args.customers)
    )
    began, cpu = time.perf_counter(), cpu_seconds()
    merged = heapq.merge(sessions, created, key=lambda event: event.occurred_at_ms)
    while chunk := list(itertools.islice(merged, 5_000)):
        feed(processor, chunk, len(chunk))
    processor.advance(START_MS + span)
    processor.drain()
    seconds, used = time.perf_counter() - began, cpu_seconds() - cpu
    gc.collect()
    rss_end = rss_bytes()
    with open("/proc/self/status") as handle:
        hwm = next(int(line.split()[1]) * 1024 for line in handle if line.startswith("VmHWM:"))
    result = {
        "customers": len(processor.customers), "open_tickets": open_tickets(processor),
        "timers": len(processor.timers), "events": args.customers + len(created),
        "rss_bytes": rss_end, "rss_start_bytes": rss_start, "vmhwm_bytes": hwm,
        "state_rss_bytes": rss_end - rss_start, "seconds": seconds, "cpu_seconds": used,
    }
    print("BENCH " + json.dumps({"memory": result}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["ceiling", "floor", "faust", "quix", "memory"])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topics", default=",".join(INPUTS))
    parser.add_argument("--total", type=int, default=0, help="input messages to take")
    parser.add_argument("--group", default="bench")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--quix-grace-ms", type=int, default=86_400_000,
                        help="grace of the Quix windows (see run_quix: why a day)")
    parser.add_argument("--outputs", default=None, help="floor: the worker's records (bench/peers_bench.py captures them)")
    parser.add_argument("--transactions", type=int, default=1, help="floor: how many transactions send them")
    args = parser.parse_args()
    {"ceiling": run_ceiling, "floor": run_floor, "faust": run_faust, "quix": run_quix, "memory": run_memory}[args.role](args)


if __name__ == "__main__":
    main()
