"""The live demo end to end: ``crm-kpi demo --headless --duration …`` as a subprocess from
the repository, as a user runs it.

While it runs, through the addresses it prints (``PROMETHEUS_URL=…``, ``BOOTSTRAP=…``):
Prometheus holds a KPI gauge series for every KPI of the registry (its family per
docs/metrics.md; a suppressed NPS/CSAT/CES counts by its ``_responses`` series), and the
KPI topic holds records of every KPI. The KPI list is ``streams.core.registry.KPIS`` at run
time, so KPIs added later are covered without touching this test. After the bounded run
the demo exits 0 by itself, says it stopped everything, and no process it started (workers,
Prometheus, the Kafka JVM) is left running.

Workload: 2 simulated days of 2,000 customers at ×2500 (a day in ~35 s). Every KPI must show
up in a daily window that closes within the run; the rarest is ``sales_cycle_seconds`` (a
lead created *and* converted inside the stream), so the test first picks the first seed
whose simulated stream has such a conversion (:func:`seed_with_sales_cycle`, about a second)
and sizes the live phase to close that day's windows with ~35 s to spare (``--duration``,
about 70 s when it falls on day 1; ``CRM_KPI_DEMO_TEST_DURATION`` overrides it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import orjson
import pytest

from streams.core.registry import KPIS, Kpi
from streams.simulate import SimConfig, generate
from tests.e2e.harness import REPO

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SPEEDUP = 2500
CUSTOMERS = 2000
DAYS = 2
DAY_MS = 86_400_000
CLOSE_AFTER_MS = 90_000
"""A daily window closes when event time passes its end + out-of-orderness (30 s) + grace (60 s)."""
MARGIN_S = 35.0
"""Live seconds beyond the close of the needed window: scrapes, a busy machine."""
MAX_DURATION_S = 150
START_TIMEOUT_S = 150.0
STOP_TIMEOUT_S = 120.0


def gauge_names(kpi: Kpi) -> set[str]:
    """Series names that show ``kpi`` in Prometheus (docs/metrics.md): distributions as
    quantiles or mean, scores as value or (suppressed) responses, ratios with ``_ratio``,
    everything else as ``crm_<kpi>``."""
    base = f"crm_{kpi.name}"
    if kpi.kind == "distribution":
        return {base, f"{base}_mean"}
    if kpi.kind == "score":
        return {base + ("_ratio" if kpi.unit == "ratio" else ""), f"{base}_responses"}
    if kpi.unit == "ratio":
        return {f"{base}_ratio"}
    return {base}


def missing_in_prometheus(names: set[str]) -> list[str]:
    """Registry KPIs without any series of their family among ``names``."""
    return [kpi.name for kpi in KPIS if not gauge_names(kpi) & names]


class DemoProcess:
    """``crm-kpi demo`` as a subprocess; its stdout collected line by line in a thread."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "demo", *args], cwd=REPO, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: list[str] = []
        self.facts: dict[str, str] = {}
        self.reader = threading.Thread(target=self._read, name="demo-stdout", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            key, sep, value = line.partition("=")
            if sep and key.isupper() and key.replace("_", "").isalpha() and " " not in key:
                self.facts[key] = value

    def wait_for(self, keys: list[str], timeout: float) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(key in self.facts for key in keys):
                return self.facts
            if self.process.poll() is not None:
                self.reader.join(5)
                pytest.fail(f"demo exited with {self.process.returncode} before printing {keys}:\n{self.output()}")
            time.sleep(0.2)
        pytest.fail(f"demo did not print {keys} within {timeout:.0f} s:\n{self.output()}")

    def output(self, last: int = 80) -> str:
        return "\n".join(self.lines[-last:])

    def stop(self) -> None:
        """Only for a failing test: SIGTERM (the demo stops what it started), then kill."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.reader.join(5)


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of a live process, or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == "Z":  # exited, not reaped: gone
        return None
    return int(fields[1]), fields[19]


def descendants(root: int) -> dict[int, tuple[str, str]]:
    """Live descendants of ``root``: pid -> (start time, command line)."""
    parents: dict[int, int] = {}
    starts: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            parents[int(entry.name)], starts[int(entry.name)] = stat
    found: dict[int, tuple[str, str]] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    cmdline = "?"
                found[pid] = (starts[pid], cmdline.strip())
                frontier.append(pid)
    return found


def still_running(seen: dict[int, tuple[str, str]]) -> list[str]:
    """The processes of ``seen`` that still run (same pid and start time)."""
    return [f"{pid}: {cmdline[:160]}" for pid, (start, cmdline) in sorted(seen.items())
            if (stat := _stat(pid)) is not None and stat[1] == start]


def prometheus_names(url: str) -> set[str]:
    """Names of the KPI gauge series (those with a ``window`` label) Prometheus holds now."""
    query = 'count by (__name__) ({__name__=~"crm_.+",job="crm-kpi-worker",window!=""})'
    with urllib.request.urlopen(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": query}),
                                timeout=10) as response:
        body = json.load(response)
    return {item["metric"]["__name__"] for item in body["data"]["result"]}


class TopicWatcher(threading.Thread):
    """Follows the KPI topic from the beginning while the demo runs (read_committed) and
    collects the KPI names of its records; reading as they come keeps up with the volume
    (provisional records every 2 s) where one read at the end would race the demo's stop."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(name="kpi-topic-watcher", daemon=True)
        self.bootstrap, self.topic = bootstrap, topic
        self.kpis: set[str] = set()
        self.records = 0
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            asyncio.run(self._follow())
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    async def _follow(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                    isolation_level="read_committed", auto_offset_reset="earliest",
                                    max_partition_fetch_bytes=8 * 1024 * 1024)
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(self.topic)
            if not partitions:
                await consumer._client.force_metadata_update()  # noqa: SLF001
                partitions = consumer.partitions_for_topic(self.topic) or set()
            assert partitions, f"{self.topic} does not exist"
            tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            while not self.done.is_set():
                batches = await consumer.getmany(timeout_ms=500, max_records=20_000)
                for messages in batches.values():
                    for message in messages:
                        self.records += 1
                        self.kpis.add(orjson.loads(message.value)["kpi"])
        finally:
            await consumer.stop()

    def finish(self) -> set[str]:
        self.done.set()
        self.join(30)
        return set(self.kpis)


def seed_with_sales_cycle(customers: int, days: int, tries: int = 40) -> tuple[int, int]:
    """The first seed whose simulated stream converts, by the end of ``days``, a lead
    that was created inside the stream (so ``sales_cycle_seconds`` has a sample), and the
    live seconds at ``SPEEDUP`` until the daily window of that conversion has closed."""
    for seed in range(1, tries + 1):
        config = SimConfig(seed=seed, customers=customers, duration=f"{days}d")
        limit = config.start_ms + days * DAY_MS
        created: set[str] = set()
        for message in generate(config):
            if message.delivered_at_ms > limit + 15 * 60_000:
                break
            if message.flaw == "malformed" or not message.event_type.startswith("lead."):
                continue
            lead = orjson.loads(message.value)["data"]["lead_id"]
            if message.event_type == "lead.created":
                created.add(lead)
            elif message.event_type == "lead.converted" and lead in created and message.event_time_ms < limit:
                closed_ms = message.event_time_ms - message.event_time_ms % DAY_MS + DAY_MS + CLOSE_AFTER_MS
                first_ms = config.start_ms - 5 * 60_000  # the opening book is announced 5 min before start
                return seed, math.ceil((closed_ms - first_ms) / 1000 / SPEEDUP)
    pytest.fail(f"no seed in 1..{tries} converts a new lead within {days} days ({customers} customers)")


@pytest.mark.timeout(MAX_DURATION_S + START_TIMEOUT_S + STOP_TIMEOUT_S + 60)
def test_live_demo_shows_every_kpi_and_stops_what_it_started():
    began = time.monotonic()
    seed, needed_s = seed_with_sales_cycle(CUSTOMERS, DAYS)
    duration_s = int(os.environ.get("CRM_KPI_DEMO_TEST_DURATION", "0")) or int(min(MAX_DURATION_S,
                                                                                   needed_s + MARGIN_S))
    demo = DemoProcess("--headless", "--duration", str(duration_s), "--speedup", str(SPEEDUP),
                       "--customers", str(CUSTOMERS), "--days", str(DAYS), "--seed", str(seed))
    seen: dict[int, tuple[str, str]] = {}
    watcher: TopicWatcher | None = None
    try:
        facts = demo.wait_for(["BOOTSTRAP", "PROMETHEUS_URL", "KPI_TOPIC", "DEMO_STATUS_FILE"], START_TIMEOUT_S)
        running_since = time.monotonic()
        watcher = TopicWatcher(facts["BOOTSTRAP"], facts["KPI_TOPIC"])
        watcher.start()
        status = json.loads(Path(facts["DEMO_STATUS_FILE"]).read_text())
        assert status["state"] == "running" and status["pid"] == demo.process.pid
        assert status["prometheus_url"] == facts["PROMETHEUS_URL"] and status["bootstrap"] == facts["BOOTSTRAP"]
        assert len(status["metrics_urls"]) == 2 and {"worker 1", "worker 2", "prometheus", "kafka"} <= set(
            status["children"])

        # while the demo runs: a Prometheus series of every KPI family, records of every KPI
        stop_checking = running_since + duration_s - 10
        names: set[str] = set()
        missing_prom = missing_topic = [kpi.name for kpi in KPIS]
        while time.monotonic() < stop_checking and demo.process.poll() is None:
            seen.update(descendants(demo.process.pid))
            with contextlib.suppress(OSError, ValueError, KeyError):
                names = prometheus_names(facts["PROMETHEUS_URL"])
            missing_prom = missing_in_prometheus(names)
            missing_topic = [kpi.name for kpi in KPIS if kpi.name not in watcher.kpis]
            if not missing_prom and not missing_topic:
                break
            time.sleep(5)
        complete_after = time.monotonic() - running_since
        missing_topic = [kpi.name for kpi in KPIS if kpi.name not in watcher.finish()]
        assert watcher.error is None, f"reading {facts['KPI_TOPIC']}: {watcher.error!r}"
        seen.update(descendants(demo.process.pid))

        assert demo.process.poll() is None, f"demo ended early:\n{demo.output()}"
        commands = " ".join(cmdline for _, cmdline in seen.values())
        assert "streams.cli worker" in commands and "prometheus" in commands and "kafka.Kafka" in commands, seen

        # the bounded run ends by itself and stops everything it started
        code = demo.process.wait(duration_s + STOP_TIMEOUT_S)
        demo.reader.join(10)
    finally:
        if watcher is not None:
            watcher.finish()
        demo.stop()
    output = demo.output(200)
    print(f"\ndemo test: seed {seed}, --duration {duration_s}; every KPI in Prometheus and on the topic after {complete_after:.0f} s of "
          f"live run ({watcher.records:,} KPI records read); whole test {time.monotonic() - began:.0f} s")
    assert not missing_prom, f"no Prometheus series for {missing_prom} (have {sorted(names)})"
    assert not missing_topic, f"no records on {facts['KPI_TOPIC']} for {missing_topic}"
    assert code == 0, output
    assert "--duration" in output and "Everything the demo started is stopped." in output, output
    assert any(line.startswith("[") and "produced" in line for line in demo.lines), "no headless progress lines"
    left = still_running(seen)
    assert not left, f"still running after the demo ended: {left}"
    final = json.loads(Path(facts["DEMO_STATUS_FILE"]).read_text())
    assert final["state"] == "stopped"
    assert not still_running({pid: seen[pid] for pid in final["children"].values() if pid in seen})
