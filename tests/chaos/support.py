"""Helpers of the chaos suite: a simulated day and what ``replay`` makes of it, a fleet
of worker processes that can be SIGKILLed, SIGTERMed and restarted, a rate-limited
producer thread, waiting until the pipeline is idle, and the comparison of every output
topic with replay, summed up in the figures each scenario prints."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import random
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from bench.peers_bench import restored_state
from streams import simulate
from streams.codec import decode_dlq, encode_event
from streams.codec.records import encode_signal, encode_sla
from streams.core.durations import parse_duration
from streams.core.pipeline import CoreConfig
from streams.core.windows import Lateness
from streams.replay import run_replay
from streams.settings import Topics
from tests.e2e.harness import (
    close,
    end_offsets,
    heartbeat_events,
    latest_kpis,
    produce,
    read_topic,
    replay_kpis,
    wait_pipeline_idle,
)

REPO = Path(__file__).resolve().parents[2]
PARTITIONS = 6
TOPICS = Topics()
# The day streams in 60-150 s: ~1000x faster than real time. Kafka makes no promise
# about the order in which messages of *different* partitions become visible, and a
# producer's per-partition batching skews it by tens of milliseconds - tens of seconds
# of event time at this speed, more than the default 30 s out-of-orderness bound. An
# event that arrives beyond the bound is late: applied out of event-time order (with a
# revision), so order-dependent figures (a customer's health samples) can then differ
# from replay, which applies everything in order. So the producer keeps the simulated
# delivery order visible to within MAX_SKEW_MS (see ``simulate.produce``) and the
# workers and replay use a bound above that skew plus the simulator's 10 s jitter.
OUT_OF_ORDERNESS = "2m"
LATENESS = Lateness(parse_duration(OUT_OF_ORDERNESS), Lateness().grace_ms, Lateness().allowed_lateness_ms)
MAX_SKEW_MS = 60_000
SUMMARY: list[str] = []  # one line per scenario, printed at the end of the session (conftest)


# --------------------------------------------------------------------------- the workload


@dataclass
class Workload:
    """A simulated day (``late=0``) ending in one heartbeat per partition, and its replay."""

    messages: list[simulate.SimMessage]
    heartbeats: list[tuple[str, bytes, bytes, int]]  # (topic, key, value, partition)
    events: int  # valid, distinct events (replay's "accepted"), heartbeats included
    kpis: dict[bytes, dict]
    sla: Counter
    signals: Counter
    rejected: Counter  # reason -> messages

    @property
    def message_count(self) -> int:
        return len(self.messages) + len(self.heartbeats)


LATE_DUPLICATES = 0.01
LATE_DUPLICATE_DELAY_MS = (10 * 60_000, 2 * 3_600_000)


def with_late_duplicates(messages: list[simulate.SimMessage], share: float, seed: int) -> list[simulate.SimMessage]:
    """``messages`` and a re-send of ``share`` of the clean ones 10 minutes to 2 hours of
    event time later, in delivery order. The simulator's own duplicates come within 2
    minutes: within the chaos run's out-of-orderness, so they always meet their original
    still buffered (the task's pending set, rebuilt by re-reading input). These meet it
    applied, in the customer's dedupe ids: after a kill, only if the ids were restored."""
    rng = random.Random(seed)
    resent = [
        dataclasses.replace(m, delivered_at_ms=m.delivered_at_ms + rng.randint(*LATE_DUPLICATE_DELAY_MS),
                            flaw="duplicate")
        for m in messages if not m.flaw and rng.random() < share
    ]
    return sorted(messages + resent, key=lambda m: m.delivered_at_ms)  # stable: originals first


def build_workload(seed: int, customers: int) -> Workload:
    config = simulate.SimConfig(seed=seed, customers=customers, duration="1d", late=0.0, tail="6h")
    messages = with_late_duplicates(list(simulate.generate(config)), LATE_DUPLICATES, seed)
    end_ms = max(m.event_time_ms for m in messages)
    heartbeats = [
        (TOPICS.interactions, event.customer_id.encode(), encode_event(event), partition)
        for partition, event in heartbeat_events(PARTITIONS, end_ms + 60_000)
    ]
    lines = [("sim", i, m.value) for i, m in enumerate(messages)]
    lines += [("heartbeat", p, value) for _, _, value, p in heartbeats]
    replay = run_replay(lines, CoreConfig(lateness=LATENESS))
    return Workload(
        messages=messages,
        heartbeats=heartbeats,
        events=replay.accepted,
        kpis=replay_kpis(replay.records),
        sla=Counter(encode_sla(r) for r in replay.sla),
        signals=Counter(encode_signal(s) for s in replay.signals),
        rejected=Counter({str(reason): n for reason, n in replay.rejected.items()}),
    )


# --------------------------------------------------------------------------- producing


class Producer(threading.Thread):
    """``streams.simulate.produce`` of some messages at ``rate`` per second, in a thread
    (the test's own thread kills workers meanwhile)."""

    def __init__(self, bootstrap: str, messages: list[simulate.SimMessage], rate: float | None) -> None:
        super().__init__(name="chaos-producer", daemon=True)
        self.bootstrap = bootstrap
        self.messages = messages
        self.rate = rate
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.sent = asyncio.run(simulate.produce(self.messages, self.bootstrap, rate=self.rate,
                                                     max_skew_ms=MAX_SKEW_MS))
        except BaseException as exc:  # noqa: BLE001 - reported by finish()
            self.error = exc

    def finish(self, timeout: float) -> int:
        self.join(timeout)
        if self.is_alive():
            raise AssertionError(f"producer still sending after {timeout:.0f}s ({self.sent} sent)")
        if self.error is not None:
            raise AssertionError(f"producer failed: {self.error!r}")
        assert self.sent == len(self.messages), (self.sent, len(self.messages))
        return self.sent


def produce_now(bootstrap: str, messages: list[simulate.SimMessage], *, live: bool = True) -> int:
    """As fast as the broker takes them. ``live`` (workers are consuming): simulated
    delivery order kept to ``MAX_SKEW_MS``; otherwise a backlog for workers started
    afterwards, where no order across partitions is needed (a task holds event time back
    for every partition that still has a backlog)."""
    return asyncio.run(simulate.produce(messages, bootstrap, max_skew_ms=MAX_SKEW_MS if live else None))


def produce_heartbeats(bootstrap: str, workload: Workload) -> None:
    asyncio.run(produce(bootstrap, workload.heartbeats))


# --------------------------------------------------------------------------- workers


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ChaosWorker:
    """One ``crm-kpi worker`` process (through :mod:`tests.chaos.worker_launcher`)."""

    def __init__(self, bootstrap: str, app_id: str, log_path: Path, env: dict[str, str]) -> None:
        self.metrics_port = free_port()
        self.log_path = log_path
        environment = {
            **os.environ,
            "CRM_KPI_BOOTSTRAP_SERVERS": bootstrap,
            "CRM_KPI_APP_ID": app_id,
            "CRM_KPI_METRICS_PORT": str(self.metrics_port),
            "CRM_KPI_IDLE_TIMEOUT": "3s",
            "CRM_KPI_OUT_OF_ORDERNESS": OUT_OF_ORDERNESS,
            "CRM_KPI_PROVISIONAL_INTERVAL": "1s",
            "CRM_KPI_LOG_LEVEL": "INFO",
            **env,
        }
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.chaos.worker_launcher"], cwd=REPO, env=environment,
                stdout=log, stderr=subprocess.STDOUT,
            )

    def alive(self) -> bool:
        return self.process.poll() is None

    def joined(self) -> bool:
        """Serving, and a member of both stage groups (its member ids are in its log)."""
        log = self.log_path.read_text(errors="replace")
        groups = {group.rsplit("-", 1)[-1] for group in member_ids(log)}
        return "started:" in log and {"stage1", "stage2"} <= groups

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def terminate(self, timeout: float = 60) -> int | None:
        """SIGTERM; returns the exit code (None if it had to be killed after ``timeout``)."""
        if self.process.poll() is not None:
            return self.process.returncode
        self.process.terminate()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


@dataclass
class Fleet:
    """Worker slots; a slot's worker can be killed and started again (new log each time)."""

    bootstrap: str
    app_id: str
    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    workers: dict[int, ChaosWorker] = field(default_factory=dict)
    starts: int = 0
    kills: int = 0
    kill_points: Counter = field(default_factory=Counter)
    evictions: int = 0
    graceful_stops: int = 0

    def start(self, slot: int) -> ChaosWorker:
        assert slot not in self.workers or not self.workers[slot].alive(), f"slot {slot} is running"
        self.starts += 1
        log = self.log_dir / f"{self.app_id}-worker{slot}-{self.starts:02d}.log"
        worker = ChaosWorker(self.bootstrap, self.app_id, log, self.env)
        self.workers[slot] = worker
        return worker

    def kill(self, slot: int) -> str:
        """SIGKILL the slot's worker: no batch finished, no transaction ended, no group
        left. Then its group memberships are removed on its behalf (LeaveGroup with its
        member ids, from its log), as if its 45 s session had already expired; waiting
        that out twenty times would take a quarter of an hour. Returns what the worker
        was doing (``starting``, ``rebalancing`` or ``processing``)."""
        self.check_alive()
        worker = self.workers.pop(slot)
        moment = kill_point(worker.log_path.read_text(errors="replace"))
        worker.kill()
        self.kills += 1
        self.kill_points[moment] += 1
        for group, member_id in member_ids(worker.log_path.read_text(errors="replace")).items():
            asyncio.run(_evict(self.bootstrap, group, member_id))
            self.evictions += 1
        return moment

    def terminate(self, slot: int) -> None:
        self.check_alive()
        worker = self.workers.pop(slot)
        code = worker.terminate()
        assert code == 0, f"SIGTERM: worker exited with {code}\n{worker.tail()}"
        self.graceful_stops += 1

    def check_alive(self) -> None:
        """No worker may die on its own: that would be a crash of the runtime."""
        for slot, worker in self.workers.items():
            if not worker.alive():
                raise AssertionError(
                    f"worker {slot} died by itself (exit {worker.process.returncode}); "
                    f"log {worker.log_path}:\n{worker.tail()}"
                )

    def ports(self) -> list[int]:
        return [w.metrics_port for w in self.workers.values()]

    def stop_all(self) -> None:
        for worker in self.workers.values():
            if worker.alive():
                worker.terminate(timeout=30)
        self.workers.clear()

    def logs(self) -> list[Path]:
        return sorted(self.log_dir.glob(f"{self.app_id}-worker*.log"))

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs())


RESTORED = re.compile(r"stage[12] task \d+: restored")


def id_chunks_restored(log: str) -> int:
    """Chunks of customers' dedupe ids that stage-1 tasks restored (their log lines, read
    as the bench's restart phase reads them)."""
    return restored_state(log)["id_chunks"]


JOINED = re.compile(r"Joined group '([^']+)' \(generation (\d+)\) with member_id (\S+)")
OWNS = re.compile(r"stage[12] owns partitions")
REJOINING = re.compile(r"\(Re-\)joining group \S+-stage[12]\b")


def member_ids(log: str) -> dict[str, str]:
    """The latest member id of each consumer group a worker joined."""
    return {group: member for group, _, member in JOINED.findall(log)}


def kill_point(log: str) -> str:
    """What a worker was doing, judging by its log: ``starting`` (not yet serving),
    ``rebalancing`` (joining a group or restoring tasks since its last assignment) or
    ``processing`` (both stages assigned, nothing pending)."""
    if "started:" not in log:
        return "starting"
    last_owns = max((m.end() for m in OWNS.finditer(log)), default=-1)
    last_join = max((m.end() for m in REJOINING.finditer(log)), default=-1)
    if last_owns < 0 or last_join > last_owns or len(OWNS.findall(log)) < 2:
        return "rebalancing"
    return "processing"


async def _evict(bootstrap: str, group: str, member_id: str) -> int:
    """LeaveGroup for another (dead) member; returns the error code (25: already gone)."""
    from aiokafka.protocol.group import LeaveGroupRequest

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        node = await admin.find_coordinator(group)
        response = await admin._client.send(node, LeaveGroupRequest(group, member_id))  # noqa: SLF001
        return response.error_code
    finally:
        await admin.close()


def rebalances(fleet: Fleet) -> dict[str, int]:
    """Generations of the stage-1 and stage-2 groups: every rebalance starts a new one."""
    generations: dict[str, int] = {}
    for group, generation, _ in JOINED.findall(fleet.log_text()):
        stage = group.rsplit("-", 1)[-1]
        generations[stage] = max(generations.get(stage, 0), int(generation))
    return generations


# --------------------------------------------------------------------------- waiting until idle


def wait_idle(fleet: Fleet, timeout_s: float) -> float:
    """Until the fleet's pipeline is idle (see :func:`tests.e2e.harness.wait_pipeline_idle`)."""
    return wait_pipeline_idle(fleet.bootstrap, fleet.app_id, fleet.ports(), TOPICS.inputs(),
                              [TOPICS.kpi, TOPICS.sla, TOPICS.signals, TOPICS.dlq], PARTITIONS, timeout_s,
                              check=fleet.check_alive)


# --------------------------------------------------------------------------- comparing with replay


@dataclass
class Comparison:
    compared: int = 0
    lost: int = 0
    duplicated: int = 0
    differing: int = 0
    problems: list[str] = field(default_factory=list)

    def note(self, problem: str) -> None:
        if len(self.problems) < 15:
            self.problems.append(problem)


def compare_with_replay(bootstrap: str, workload: Workload) -> Comparison:
    """Every output topic against replay: the highest revision per KPI key, SLA events and
    churn signals as multisets, dead letters by source coordinates and reason."""
    result = Comparison()
    stream = latest_kpis(asyncio.run(read_topic(bootstrap, TOPICS.kpi, timeout_s=120)))
    reference = workload.kpis
    for key in sorted(reference.keys() - stream.keys()):
        result.lost += 1
        result.note(f"KPI missing in stream: {key.decode()}")
    for key in sorted(stream.keys() - reference.keys()):
        result.duplicated += 1
        result.note(f"KPI only in stream: {key.decode()} = {stream[key]['value']}")
    for key in sorted(stream.keys() & reference.keys()):
        a, b = stream[key], reference[key]
        if not (close(a["value"], b["value"]) and a["n"] == b["n"] and close(a["stats"], b["stats"])):
            result.differing += 1
            result.note(f"KPI differs: {key.decode()}: stream {a['value']} n={a['n']} "
                        f"vs replay {b['value']} n={b['n']}")
    result.compared += len(reference)
    for topic, expected in ((TOPICS.sla, workload.sla), (TOPICS.signals, workload.signals)):
        got = Counter(m.value for m in asyncio.run(read_topic(bootstrap, topic, timeout_s=60)))
        missing, extra = expected - got, got - expected
        result.lost += sum(missing.values())
        result.duplicated += sum(extra.values())
        for value in list(missing)[:3]:
            result.note(f"{topic}: missing {value[:160]!r}")
        for value in list(extra)[:3]:
            result.note(f"{topic}: extra ({extra[value]}x) {value[:160]!r}")
        result.compared += sum(expected.values())
    letters = [decode_dlq(m.value) for m in asyncio.run(read_topic(bootstrap, TOPICS.dlq, timeout_s=60))]
    sources = Counter((d.topic, d.partition, d.offset) for d in letters)
    result.duplicated += sum(n - 1 for n in sources.values())
    reasons = Counter(str(d.reason) for d in {(d.topic, d.partition, d.offset): d for d in letters}.values())
    missing, extra = workload.rejected - reasons, reasons - workload.rejected
    result.lost += sum(missing.values())
    result.duplicated += sum(extra.values())
    if missing or extra:
        result.note(f"dead letters by reason: stream {dict(reasons)} vs replay {dict(workload.rejected)}")
    result.compared += sum(workload.rejected.values())
    return result


# --------------------------------------------------------------------------- figures


@dataclass
class Figures:
    scenario: str
    workload: Workload
    fleet: Fleet
    comparison: Comparison
    seconds: float
    idle_seconds: float
    broker_restarts: int = 0
    extra: dict[str, object] = field(default_factory=dict)

    def line(self) -> str:
        generations = rebalances(self.fleet)
        log = self.fleet.log_text()
        c = self.comparison
        parts = [
            f"chaos[{self.scenario}]",
            f"events={self.workload.events}",
            f"messages={self.workload.message_count}",
            f"kills_survived={self.fleet.kills}",
            *([f"kill_points={'/'.join(f'{k}:{v}' for k, v in sorted(self.fleet.kill_points.items()))}"]
              if self.fleet.kills else []),
            f"worker_starts={self.fleet.starts}",
            f"graceful_stops={self.fleet.graceful_stops}",
            f"broker_restarts={self.broker_restarts}",
            f"rebalances=stage1:{generations.get('stage1', 0)}/stage2:{generations.get('stage2', 0)}",
            f"task_restores={len(RESTORED.findall(log))}",
            f"id_chunks_restored={id_chunks_restored(log)}",
            f"failed_batches_recovered={log.count('restoring it from the changelog')}",
            *(f"{k}={v}" for k, v in self.extra.items()),
            f"records_compared={c.compared}",
            f"lost={c.lost}",
            f"duplicated={c.duplicated}",
            f"differing={c.differing}",
            f"time={self.seconds:.0f}s",
            f"idle_after={self.idle_seconds:.0f}s",
        ]
        return " ".join(parts)


def report(figures: Figures) -> str:
    line = figures.line()
    SUMMARY.append(line)
    print(line)
    return line


def assert_exact(figures: Figures) -> None:
    c = figures.comparison
    assert (c.lost, c.duplicated, c.differing) == (0, 0, 0), (
        f"{figures.scenario}: lost {c.lost}, duplicated {c.duplicated}, differing {c.differing}:\n"
        + "\n".join(c.problems)
        + f"\nworker logs: {', '.join(str(p) for p in figures.fleet.logs())}"
    )


@contextlib.contextmanager
def running(fleet: Fleet):
    try:
        yield fleet
    finally:
        fleet.stop_all()


def kpi_records_so_far(bootstrap: str) -> int:
    ends = asyncio.run(end_offsets(bootstrap, [TOPICS.kpi]))
    return sum(ends.values())


def wait_for(condition, timeout_s: float, what: str, fleet: Fleet | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if fleet is not None:
            fleet.check_alive()
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
