"""Peers: our worker end to end vs. the aiokafka ceiling, a naive faust agent and Quix Streams.

One run, one machine, one dedicated local broker (``streams.localkafka``), the same
workload: ``--events`` simulated CRM events (``streams.simulate``, seed ``--seed``, a
clean stream: no duplicates, late or malformed messages) pre-loaded on the three input
topics (6 partitions each). Each contender runs in its own process, one after the other,
reading from the beginning with its own consumer group:

1. **ceiling**: aiokafka ``getmany`` + ``orjson.loads``, nothing else;
2. **worker**: the real ``crm-kpi worker`` (``python -m streams.cli worker``) until it is
   *current*: every event counted in ``crm_events_processed_total``, no
   ``crm_consumer_lag``, the stage-1 group's committed offsets (its resume points, which
   only reach the log end once every buffered event was applied) at the end of every
   input partition, and the KPI topic's end offsets unchanged for two polls;
3. **floor**: the worker's transport with a core that costs nothing (needs the worker
   phase): the ceiling's consumption, the worker's typed decode, and every record the
   worker wrote in this run (captured from its topics right after it) sent again through
   its own transactional send in as many transactions, the partials read back too. No
   worker can beat it with aiokafka and this output: ``floor ÷ ceiling`` bounds
   ``worker ÷ ceiling``;
4. **faust**: a naive faust-streaming agent updating a faust ``Table`` per event;
5. **quix**: a Quix Streams app with event-time tumbling windows, until its consumer
   group (inputs and its repartition topic) is committed at the log end.

CPU seconds are the contender process's own (``utime + stime`` of all its threads, and
of waited-for children), from its first input message to the end, so start-up (imports,
group join) is left out; events/s per core = events ÷ those CPU seconds. Then the
latency of the worker at 50 % of its measured rate on fresh topics, the same events
through ``crm-kpi replay`` (the worker's core without Kafka), and the memory of a
stage-1 ``Processor`` with 1M customers and 100k open tickets. Results are written to
``bench/results/<date>.json`` (``<date>-<HHMMSS>.json`` for a later run of the day);
docs/performance.md explains every figure. Nothing is asserted.

    python -m bench.peers_bench [--events 1000000] [--peer-events N] [--only worker,quix]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import datetime as dt
import gc
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams import localkafka
from streams.core import native

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE = REPO_ROOT / ".cache" / "bench"
RESULTS = REPO_ROOT / "bench" / "results"
INPUTS = ("crm.tickets.v1", "crm.interactions.v1", "crm.purchases.v1")
PEER_PREFIX = "peers."  # topics holding the first --peer-events messages, when capped
PARTITIONS = 6
CLK_TCK = os.sysconf("SC_CLK_TCK")
CONTENDERS = ("ceiling", "worker", "floor", "faust", "quix")

TARGETS = {
    "worker_events_per_core_s": 100_000,
    "worker_vs_ceiling": 0.5,
    "worker_vs_faust": 5.0,
    "worker_vs_quix": 3.0,
    "latency_p99_s": 1.0,
    "memory_rss_bytes": 1 << 30,
}


def say(message: str) -> None:
    print(f"[peers {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------- machine


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    ram = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as handle:
        ram = next(int(line.split()[1]) * 1024 for line in handle if line.startswith("MemTotal:"))
    versions = {}
    for package in ("aiokafka", "faust-streaming", "quixstreams", "confluent-kafka", "orjson"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[package] = version(package)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "streams"], cwd=REPO_ROOT,
                           capture_output=True, text=True).stdout.strip()
    # the worker runs the working tree: name uncommitted changes to streams/ by their hash
    diff = subprocess.run(["git", "diff", "HEAD", "--", "streams"], cwd=REPO_ROOT,
                          capture_output=True).stdout
    return {
        "cpu_model": cpu, "cores": os.cpu_count(), "ram_bytes": ram,
        "kernel": platform.release(), "python": platform.python_version(),
        "kafka": localkafka.kafka_version(), "packages": versions,
        "git_commit": commit, "streams_dirty": bool(dirty),
        "streams_diff_sha1": hashlib.sha1(diff).hexdigest()[:12] if diff else None,
        "streams_dirty_files": dirty.splitlines(),
        "core": native.status,  # compiled (mypyc) or interpreted; the worker inherits the mode
        "load_average_at_start": os.getloadavg(),
    }


def tree_state() -> dict[str, Any]:
    """HEAD and a hash of uncommitted changes to streams/ right now: the worker, replay and
    the memory phase import the working tree when they start, and it may change under a
    long run when others work in the same tree."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                            capture_output=True, text=True).stdout.strip()
    diff = subprocess.run(["git", "diff", "HEAD", "--", "streams"], cwd=REPO_ROOT, capture_output=True).stdout
    return {"commit": commit, "streams_diff_sha1": hashlib.sha1(diff).hexdigest()[:12] if diff else None,
            "at": time.strftime("%H:%M:%S")}


# --------------------------------------------------------------------------- workload


def workload(seed: int, count: int) -> list[tuple[str, bytes, bytes]]:
    """(topic, key, value) of the first ``count`` simulated messages; cached as lines
    ``topic<TAB>key<TAB>value`` in .cache/bench/ (JSON values hold no raw tab/newline)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"sim-seed{seed}-n{count}.tsv"
    if path.is_file():
        messages = []
        with open(path, "rb") as handle:
            for line in handle:
                topic, key, value = line.rstrip(b"\n").split(b"\t", 2)
                messages.append((topic.decode(), key, value))
        if len(messages) == count:
            say(f"workload: {count:,} messages from {path.relative_to(REPO_ROOT)}")
            return messages
    from streams.simulate import SimConfig, generate

    say(f"workload: generating {count:,} simulated messages (seed {seed}; cached for later runs)")
    began = time.monotonic()
    config = SimConfig(seed=seed, customers=max(1000, count // 4), duration="1d",
                       duplicates=0.0, late=0.0, malformed=0.0)
    messages = []
    for message in generate(config):
        messages.append((message.topic, message.key, message.value))
        if len(messages) >= count:
            break
    staging = path.with_suffix(".tmp")
    with open(staging, "wb") as handle:
        handle.writelines(b"%s\t%s\t%s\n" % (t.encode(), k, v) for t, k, v in messages)
    staging.replace(path)
    say(f"workload: {len(messages):,} messages in {time.monotonic() - began:.0f} s")
    return messages


async def produce(bootstrap: str, messages, prefix: str = "") -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=512 * 1024,
                                acks=1)
    await producer.start()
    try:
        pending = []
        for topic, key, value in messages:
            pending.append(await producer.send(prefix + topic, value, key=key))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


# --------------------------------------------------------------------------- processes


def proc_cpu(pid: int) -> float | None:
    """utime + stime + cutime + cstime of ``pid`` in seconds (all threads)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return sum(int(value) for value in fields[11:15]) / CLK_TCK


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores (/proc/stat)."""
    with open("/proc/stat") as handle:
        fields = [int(value) for value in handle.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already in user
    return (total - idle) / CLK_TCK, total / CLK_TCK


def own_cpu() -> float:
    """CPU seconds (user + system) of this process so far, all its threads: the harness
    itself (the latency phase's producer and scraper run here)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def proc_hwm(pid: int) -> int | None:
    """Peak resident set size (VmHWM) of ``pid`` in bytes."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            return next(int(line.split()[1]) * 1024 for line in handle if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return None


@dataclass
class Run:
    """A contender process and what was measured of it."""

    name: str
    process: subprocess.Popen
    log_path: Path
    began: float = field(default_factory=time.monotonic)
    first: dict | None = None  # {"cpu", "wall"} at the first input message
    done: dict | None = None
    progress: dict | None = None
    _offset: int = 0

    def messages(self) -> list[dict]:
        """New BENCH lines of the process's output."""
        found = []
        with open(self.log_path, "rb") as handle:
            handle.seek(self._offset)
            data = handle.read()
        end = data.rfind(b"\n") + 1
        self._offset += end
        for line in data[:end].decode(errors="replace").splitlines():
            if "BENCH {" in line:
                found.append(json.loads(line.split("BENCH ", 1)[1]))
        return found

    def poll_lines(self) -> None:
        for message in self.messages():
            self.first = message.get("first", self.first)
            self.done = message.get("done", self.done)
            self.progress = message.get("progress", self.progress)

    def cpu(self) -> float | None:
        return proc_cpu(self.process.pid)

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def spawn(name: str, command: list[str], logdir: Path, env: dict[str, str] | None = None) -> Run:
    log_path = logdir / f"{name}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - the child holds it; closed with the process
    environment = {**os.environ, **(env or {})}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), environment.get("PYTHONPATH")]))
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return Run(name, process, log_path)


def figures(name: str, events: int, cpu: float, wall: float, hwm: int | None, **extra: Any) -> dict:
    return {
        "contender": name, "events": events, "cpu_seconds": round(cpu, 3), "wall_seconds": round(wall, 3),
        "events_per_core_second": round(events / cpu) if cpu > 0 else None,
        "wall_events_per_second": round(events / wall) if wall > 0 else None,
        "cpu_utilisation": round(cpu / wall, 3) if wall > 0 else None,
        "peak_rss_bytes": hwm, **extra,
    }


def run_peer(role: str, bootstrap: str, topics: list[str], total: int, logdir: Path,
             timeout: float, stamp: str, options: list[str] | None = None, profile: bool = False) -> dict:
    """A contender that reports its own first/done lines (ceiling, floor, faust, quix);
    ``profile``: sampled with py-spy like the worker."""
    group = f"bench-{role}-{stamp}"
    command = [sys.executable, "-m", "bench.peers_contenders", role, "--bootstrap", bootstrap,
               "--topics", ",".join(topics), "--total", str(total), "--group", group,
               "--partitions", str(PARTITIONS), *(options or [])]
    say(f"{role}: starting ({total:,} events, group {group})")
    run = spawn(role, command, logdir)
    profiler = attach_profiler(run.process.pid, logdir, role) if profile else None
    deadline = time.monotonic() + timeout
    next_note = time.monotonic() + 15
    end_cpu = end_wall = hwm = None
    drained_once = False
    try:
        while time.monotonic() < deadline:
            time.sleep(0.25)
            hwm = proc_hwm(run.process.pid) or hwm
            run.poll_lines()
            if run.process.poll() is not None and run.done is None:
                say(f"{role}: exited with {run.process.returncode} before finishing:\n{run.tail()}")
                break
            if time.monotonic() >= next_note:
                next_note += 15
                cpu = run.cpu() or 0.0
                note = f"{role}: {time.monotonic() - run.began:4.0f} s, CPU {cpu:6.1f} s"
                if run.progress:
                    note += f", {run.progress['n']:,} events"
                say(note + (", all input taken, draining" if run.done else ""))
            if run.done is None:
                continue
            if role != "quix":
                end_cpu, end_wall = run.done["cpu"], run.done["wall"]
                break
            # Quix: the repartition topic and the windows must be drained too
            if quix_drained(bootstrap, group):
                if drained_once:
                    end_cpu, end_wall = run.cpu(), time.time()
                    break
                drained_once = True
            else:
                drained_once = False
        hwm = proc_hwm(run.process.pid) or hwm
    finally:
        run.stop()
        finish_profiler(profiler, role)
    if run.done and run.done.get("maxrss"):  # a process that exited by itself has no VmHWM left
        hwm = max(hwm or 0, run.done["maxrss"])  # its own VmHWM when it finished
    finals = [m["final"] for m in run.messages() if "final" in m]  # Quix: said after stopping
    if run.first is None or end_cpu is None:
        partial = run.progress
        result = {"contender": role, "events": total, "finished": False,
                  "log": str(run.log_path.relative_to(REPO_ROOT))}
        if run.first is not None and partial and partial["n"] > 0:
            cpu, wall = partial["cpu"] - run.first["cpu"], partial["wall"] - run.first["wall"]
            result.update(figures(role, partial["n"], cpu, wall, hwm, finished=False,
                                  note=f"timed out after {timeout:.0f} s; rates from the first "
                                       f"{partial['n']:,} events"))
        say(f"{role}: did not finish: {result}")
        return result
    result = figures(role, total, end_cpu - run.first["cpu"], end_wall - run.first["wall"], hwm,
                     finished=True, startup_cpu_seconds=round(run.first["cpu"], 3),
                     **({"late_skipped": finals[0].get("late")} if finals else {}),
                     **(run.done.get("details") or {}))
    say(f"{role}: {result['events_per_core_second']:,} events per CPU-s, "
        f"{result['wall_events_per_second']:,} events/s wall, peak RSS {(hwm or 0) / 2**20:,.0f} MiB")
    return result


def quix_drained(bootstrap: str, group: str) -> bool:
    """Every partition the Quix group consumes (inputs and repartition) committed at its end."""
    try:
        offsets = asyncio.run(localkafka.committed_offsets(bootstrap, group))
        ends = asyncio.run(localkafka.end_offsets(bootstrap, {tp.topic for tp in offsets}))
    except Exception:  # noqa: BLE001 - busy broker: try again at the next poll
        return False
    return bool(offsets) and any(tp.topic.startswith("repartition") for tp in offsets) and all(
        offsets[tp] >= ends[tp] for tp in offsets)


# --------------------------------------------------------------------------- the worker

# the series the bench reads; it asks the worker for these only (/metrics?name[]=...): a
# full answer with a day of KPI gauges cost the worker ~8 % of its CPU in the restart
# phase (scraped 4 times a second; Prometheus scrapes every 5-15 s)
SCRAPED = ("crm_events_processed_total", "crm_events_rejected_total", "crm_consumer_lag", "crm_owned_partitions",
           "crm_events_late_total", "crm_events_dropped_late_total", "crm_events_duplicate_total",
           "crm_gc_pause_seconds_total", "crm_kpi_records_published_total", "crm_batch_size_count",
           "crm_batch_size_sum", "crm_batch_processing_seconds_count", "crm_batch_processing_seconds_sum")
_QUERY = urllib.parse.urlencode([("name[]", name) for name in SCRAPED])
_SAMPLE = re.compile(rb'^(' + "|".join(SCRAPED).encode() + rb')(\{[^}]*\})? ([0-9.eE+-]+|NaN)$', re.M)
_FINAL = re.compile(rb'final="([^"]*)"')
# what the worker did, per stage (batches = rounds of its tasks; commits = transactions):
# two runs of the same code that differ in CPU differ in these if they worked differently
_ACTIVITY = {b"crm_batch_size_count": "batches", b"crm_batch_size_sum": "batched",
             b"crm_batch_processing_seconds_count": "commits",
             b"crm_batch_processing_seconds_sum": "commit_seconds"}
_TOPIC = re.compile(rb'topic="([^"]*)"')
_PARTITION = re.compile(rb'partition="([^"]*)"')
_STAGE = re.compile(rb'stage="([^"]*)"')


def metrics_url(port: int) -> str:
    """/metrics of the worker on ``port``, asking for the series :func:`scrape` reads."""
    return f"http://127.0.0.1:{port}/metrics?{_QUERY}"


def scrape(port: int) -> dict | None:
    """The few pipeline series the bench needs, parsed from /metrics with one regex."""
    try:
        with urllib.request.urlopen(metrics_url(port), timeout=2) as response:
            text = response.read()
    except OSError:
        return None
    return parse_metrics(text)


def parse_metrics(text: bytes) -> dict:
    """The series :func:`scrape` wants from a /metrics answer."""
    out: dict[str, Any] = {"processed": {}, "rejected": 0.0, "lag": 0.0, "owned": {}, "gc": 0.0, "activity": {}}
    for name, labels, value in _SAMPLE.findall(text):
        number = float(value)
        if name == b"crm_events_processed_total":  # per (topic, partition)
            topic, partition = _TOPIC.search(labels or b""), _PARTITION.search(labels or b"")
            key = (topic.group(1).decode() if topic else "", int(partition.group(1)) if partition else -1)
            out["processed"][key] = number
        elif name == b"crm_events_rejected_total":
            out["rejected"] += number
        elif name == b"crm_consumer_lag":
            out["lag"] += number
        elif name == b"crm_gc_pause_seconds_total":
            out["gc"] += number  # all generations
        elif name in _ACTIVITY:
            stage = _STAGE.search(labels or b"")
            out["activity"][f"{stage.group(1).decode() if stage else ''}_{_ACTIVITY[name]}"] = number
        elif name == b"crm_kpi_records_published_total":
            final = _FINAL.search(labels or b"")
            kind = "final" if final and final.group(1) == b"true" else "provisional"
            out["activity"][f"kpi_records_{kind}"] = number
        elif name != b"crm_owned_partitions":
            key = name.decode().removeprefix("crm_events_").removesuffix("_total")
            out[key] = out.get(key, 0.0) + number
        else:
            stage = _STAGE.search(labels or b"")
            out["owned"][stage.group(1).decode() if stage else ""] = number
    return out


def worker_env(app_id: str, port: int, bootstrap: str, prefix: str = "") -> dict[str, str]:
    from streams.settings import Topics

    env = {"CRM_KPI_BOOTSTRAP_SERVERS": bootstrap, "CRM_KPI_APP_ID": app_id,
           "CRM_KPI_METRICS_PORT": str(port), "CRM_KPI_IDLE_TIMEOUT": "1s",
           "CRM_KPI_LOG_LEVEL": "WARNING"}
    if prefix:
        env.update({f"CRM_KPI_TOPICS__{name.upper()}": f"{prefix}{default.default}"
                    for name, default in Topics.model_fields.items()})
    return env


def start_worker(name: str, bootstrap: str, logdir: Path, prefix: str = "", app_id: str | None = None,
                 log_level: str = "WARNING") -> tuple[Run, int, str]:
    app_id = app_id or f"bench-{name}-{int(time.time())}"
    port = localkafka.free_port()
    command = [sys.executable, "-m", "streams.cli", "worker", "--bootstrap", bootstrap,
               "--metrics-port", str(port), "--app-id", app_id]
    env = {**worker_env(app_id, port, bootstrap, prefix), "CRM_KPI_LOG_LEVEL": log_level}
    return spawn(name, command, logdir, env), port, app_id


def attach_profiler(pid: int, logdir: Path, name: str = "worker") -> tuple[subprocess.Popen, Path] | None:
    """py-spy sampling a contender (collapsed stacks, 100 Hz, idle frames left out) until
    it exits; None (and a note) when py-spy is not installed."""
    py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if py_spy is None:
        say(f"{name}: --profile needs py-spy (pip install py-spy); running without it")
        return None
    out = logdir / f"{name}-profile.folded"
    process = subprocess.Popen([py_spy, "record", "--pid", str(pid), "--rate", "100", "--format", "raw",
                                "--output", str(out), "--nonblocking"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    return process, out


def finish_profiler(profiler: tuple[subprocess.Popen, Path] | None, phase: str) -> None:
    """Wait for py-spy to write its file (it does when the worker has exited)."""
    if profiler is None:
        return
    try:
        profiler[0].wait(60)
        say(f"{phase}: profile in {profiler[1].relative_to(REPO_ROOT)} (collapsed stacks; "
            "the sampling costs the worker a few per cent)")
    except subprocess.TimeoutExpired:
        profiler[0].kill()


def run_worker(bootstrap: str, total: int, logdir: Path, timeout: float, profile: bool = False) -> dict:
    """Our worker from the beginning of the pre-loaded topics until its output is current."""
    run, port, app_id = start_worker("worker", bootstrap, logdir)
    say(f"worker: starting (app id {app_id}, /metrics on {port})")
    profiler = attach_profiler(run.process.pid, logdir) if profile else None
    deadline = time.monotonic() + timeout
    next_note = time.monotonic() + 15
    first = ingested = current = None
    # (CPU s, wall time, seconds in garbage collection) of the worker at a scrape
    last_zero: tuple[float, float, float] | None = None
    last_ends = hwm = None
    counters: dict[str, float] = {}
    activity: dict[str, float] = {}
    try:
        while time.monotonic() < deadline:
            time.sleep(0.1 if first is None else 0.25)
            if run.process.poll() is not None:
                say(f"worker: exited with {run.process.returncode}:\n{run.tail()}")
                break
            cpu, wall = run.cpu(), time.time()
            hwm = proc_hwm(run.process.pid) or hwm
            sample = scrape(port)
            if sample is None or cpu is None:
                continue
            seen = sum(sample["processed"].values()) + sample["rejected"]
            if first is None:
                if seen == 0:
                    last_zero = (cpu, wall, sample["gc"])
                    continue
                first = last_zero or (cpu, wall, sample["gc"])  # the last sample before any input counted
                startup_wall = time.monotonic() - run.began
                say(f"worker: first events after {startup_wall:.1f} s "
                    f"(start-up CPU {first[0]:.1f} s)")
            if time.monotonic() >= next_note:
                next_note += 15
                say(f"worker: {time.monotonic() - run.began:4.0f} s, CPU {cpu:6.1f} s, {seen:,.0f} events, "
                    f"lag {sample['lag']:,.0f}")
            if ingested is None and seen >= total:
                ingested = (cpu, wall)
                say(f"worker: all {total:,} events counted; waiting until its output is current")
            if ingested is None or sample["lag"] > 0:
                continue
            try:
                marks = asyncio.run(localkafka.committed_offsets(bootstrap, f"{app_id}-stage1"))
                ends = asyncio.run(localkafka.end_offsets(bootstrap, INPUTS))
                kpi_ends = asyncio.run(localkafka.end_offsets(bootstrap, ["crm.kpi.v1", "crm.kpi-partials"]))
            except Exception:  # noqa: BLE001 - busy broker: poll again
                continue
            if any(marks.get(tp, -1) < end for tp, end in ends.items()):
                last_ends = None
                continue
            if kpi_ends == last_ends:
                current = current or (cpu, wall, sample["gc"])
                counters = {key: sample.get(key, 0.0) for key in ("late", "dropped_late", "duplicate")}
                activity = {key: round(value, 3) for key, value in sorted(sample["activity"].items())}
                break
            last_ends, current = kpi_ends, (cpu, wall, sample["gc"])
        hwm = proc_hwm(run.process.pid) or hwm
    finally:
        run.stop()
        finish_profiler(profiler, "worker")
    if first is None or current is None:
        say(f"worker: did not finish in {timeout:.0f} s:\n{run.tail()}")
        result = {"contender": "worker", "events": total, "finished": False,
                  "log": str(run.log_path.relative_to(REPO_ROOT))}
        if first is not None and ingested is not None:
            result.update(figures("worker", total, ingested[0] - first[0], ingested[1] - first[1], hwm,
                                  finished=False, note="output never became current; figures to ingest"))
        return result
    result = figures("worker", total, current[0] - first[0], current[1] - first[1], hwm, finished=True,
                     app_id=app_id, startup_cpu_seconds=round(first[0], 3),
                     startup_wall_seconds=round(startup_wall, 3),
                     ingest_cpu_seconds=round(ingested[0] - first[0], 3),
                     ingest_wall_seconds=round(ingested[1] - first[1], 3),
                     ingest_wall_events_per_second=round(total / (ingested[1] - first[1])),
                     late_applied=counters.get("late"), dropped_late=counters.get("dropped_late"),
                     duplicates=counters.get("duplicate"),
                     gc_seconds=round(current[2] - first[2], 3),
                     gc_share_of_cpu=round((current[2] - first[2]) / (current[0] - first[0]), 4),
                     activity=activity)
    say(f"worker: {result['events_per_core_second']:,} events per CPU-s, "
        f"{result['wall_events_per_second']:,} events/s wall to current "
        f"({result['ingest_wall_events_per_second']:,}/s to ingest), peak RSS {(hwm or 0) / 2**20:,.0f} MiB, "
        f"{result['gc_share_of_cpu']:.1%} of its CPU in garbage collection")
    if activity:
        say("worker: " + "; ".join(
            f"{stage} {activity.get(stage + '_batches', 0):,.0f} batches, {activity.get(stage + '_commits', 0):,.0f} commits"
            for stage in ("stage1", "stage2"))
            + f"; KPI records {activity.get('kpi_records_final', 0):,.0f} final, "
              f"{activity.get('kpi_records_provisional', 0):,.0f} provisional")
    return result


async def capture_outputs(bootstrap: str, app_id: str, path: Path, prefix: str = "",
                          idle_s: float = 10.0) -> dict[str, Any]:
    """Every committed record the worker ``app_id`` wrote - outputs, partials, changelogs
    (``prefix``: that of its topics, see :func:`worker_env`) - to ``path``, as msgpack
    ``[(floor topic, partition, key, value), ...]`` in the order written per partition:
    what the floor sends again. Returns the topics' partition counts and what was read
    against the offsets the worker used (a compacted changelog or transaction markers
    make the second larger: the floor then sends less than the worker did, which only
    flatters it)."""
    import msgspec
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from bench.peers_contenders import floor_topic
    from streams.settings import Topics

    topics = Topics()
    names = [*(prefix + name for name in (*topics.outputs(), topics.partials)),
             f"{app_id}.stage1-changelog", f"{app_id}.stage2-changelog"]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                isolation_level="read_committed", fetch_max_bytes=64 * 1024 * 1024,
                                max_partition_fetch_bytes=16 * 1024 * 1024)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # noqa: SLF001 - topics created by the worker
        tps = [TopicPartition(name, p) for name in names for p in sorted(consumer.partitions_for_topic(name) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        starts = {tp: await consumer.position(tp) for tp in tps}
        ends = await consumer.end_offsets(tps)
        rows: list[tuple[str, int, bytes | None, bytes | None]] = []
        last = time.monotonic()
        complete = False
        while not complete and time.monotonic() - last < idle_s:
            fetched = await consumer.getmany(timeout_ms=500, max_records=50_000)
            for tp, messages in fetched.items():
                rows.extend((floor_topic(tp.topic, app_id, prefix), tp.partition, m.key, m.value) for m in messages)
            if fetched:
                last = time.monotonic()
            else:
                complete = all([await consumer.position(tp) >= ends[tp] for tp in tps])
    finally:
        await consumer.stop()
    path.write_bytes(msgspec.msgpack.encode(rows))
    partitions: dict[str, int] = {}
    for tp in tps:
        topic = floor_topic(tp.topic, app_id, prefix)
        partitions[topic] = max(partitions.get(topic, 0), tp.partition + 1)
    if not complete:
        say(f"floor: the worker's topics were not read to their end within {idle_s:.0f} s of silence; "
            f"the floor sends the {len(rows):,} records read")
    return {"partitions": partitions, "records": len(rows), "bytes": path.stat().st_size,
            "offsets": sum(ends[tp] - starts[tp] for tp in tps), "complete": complete}


def prepare_floor(bootstrap: str, worker: dict, logdir: Path, prefix: str = "") -> dict:
    """Capture what the worker wrote (right after it, before a restart writes more) and
    create the floor's topics like the worker's; returns what :func:`run_floor` needs."""
    from streams.runtime.kafka import MAX_MESSAGE_BYTES

    path = logdir / "worker-outputs.msgpack"
    say("floor: capturing what the worker wrote")
    captured = asyncio.run(capture_outputs(bootstrap, worker["app_id"], path, prefix))
    by_count: dict[int, list[str]] = {}
    for topic, count in captured.pop("partitions").items():
        by_count.setdefault(count, []).append(topic)
    for count, topics in by_count.items():
        localkafka.create_topics(bootstrap, topics, partitions=count,
                                 config={"max.message.bytes": str(MAX_MESSAGE_BYTES)})
    activity = worker.get("activity") or {}
    transactions = int(activity.get("stage1_commits", 0) + activity.get("stage2_commits", 0)) or 1
    return {"path": path, "transactions": transactions, **captured}


def run_floor(bootstrap: str, prepared: dict, inputs: list[str], total: int, logdir: Path, timeout: float,
              stamp: str, profile: bool = False) -> dict:
    """The floor contender, reading ``inputs``, on the worker's captured records (see
    :func:`prepare_floor`)."""
    path = prepared["path"]
    say(f"floor: {prepared['records']:,} records ({prepared['bytes'] / 2**20:,.0f} MiB; the worker's offsets: "
        f"{prepared['offsets']:,}) to send in {prepared['transactions']:,} transactions")
    try:
        result = run_peer("floor", bootstrap, inputs, total, logdir, timeout, stamp,
                          ["--outputs", str(path), "--transactions", str(prepared["transactions"])], profile)
    finally:
        path.unlink(missing_ok=True)
    result["captured"] = {key: prepared[key] for key in ("records", "bytes", "offsets", "complete")}
    return result


_RESTORED_STAGE1 = re.compile(r"stage1 task \d+: restored (\d+) customers \((\d+) with their dedupe ids in "
                              r"(\d+) chunks\), (\d+) tickets")
_RESTORED_STAGE2 = re.compile(r"stage2 task \d+: restored (\d+) buckets, (\d+) published records")


def restored_state(log: str) -> dict[str, int]:
    """What the tasks of a worker restored, summed over its log's restore lines."""
    out = dict.fromkeys(("customers", "customers_with_id_chunks", "id_chunks", "tickets", "buckets",
                         "published_records"), 0)
    for customers, spilled, chunks, tickets in _RESTORED_STAGE1.findall(log):
        out["customers"] += int(customers)
        out["customers_with_id_chunks"] += int(spilled)
        out["id_chunks"] += int(chunks)
        out["tickets"] += int(tickets)
    for buckets, published in _RESTORED_STAGE2.findall(log):
        out["buckets"] += int(buckets)
        out["published_records"] += int(published)
    return out


def run_restart(bootstrap: str, app_id: str, fresh_startup_s: float | None, logdir: Path, timeout: float,
                profile: bool = False) -> dict:
    """A worker started again with the worker phase's app id, after that one stopped with
    its output current: how long until it has restored every task of both stages from
    their changelogs (as after a deploy or a crash) and is current again, against a fresh
    worker's start-up (to its first event) in the same run."""
    changelogs = [f"{app_id}.stage1-changelog", f"{app_id}.stage2-changelog"]
    # the changelogs' end offsets: records written (and transaction markers), before any
    # compaction - an upper bound of what the restore reads
    try:
        ends = asyncio.run(localkafka.end_offsets(bootstrap, changelogs))
        in_log = {name: sum(end for tp, end in ends.items() if tp[0] == name) for name in changelogs}
    except Exception as exc:  # noqa: BLE001 - a figure less, not a failed phase
        say(f"restart: could not read the changelogs' offsets ({exc})")
        in_log = {}
    run, port, _ = start_worker("restart", bootstrap, logdir, app_id=app_id, log_level="INFO")
    profiler = attach_profiler(run.process.pid, logdir, "restart") if profile else None
    say(f"restart: the worker again (app id {app_id}); changelog end offsets: "
        + ", ".join(f"{name.rsplit('.', 1)[1]} {count:,}" for name, count in in_log.items()))
    deadline = time.monotonic() + timeout
    serving = owned = None
    cpu = hwm = None
    try:
        while time.monotonic() < deadline:
            time.sleep(0.1)
            if run.process.poll() is not None:
                say(f"restart: exited with {run.process.returncode}:\n{run.tail()}")
                break
            cpu, hwm = run.cpu(), proc_hwm(run.process.pid) or hwm
            sample = scrape(port)
            if sample is None:
                continue
            serving = serving or time.monotonic() - run.began
            tasks = sample["owned"]
            if tasks.get("stage1", 0) >= PARTITIONS and tasks.get("stage2", 0) >= PARTITIONS and sample["lag"] == 0:
                owned = time.monotonic() - run.began
                break
    finally:
        run.stop()
        finish_profiler(profiler, "restart")
    log = run.log_path.read_text(errors="replace")
    state = restored_state(log)
    if owned is None:
        say(f"restart: not current again within {timeout:.0f} s:\n{run.tail()}")
        return {"finished": False, "app_id": app_id, "restored": state,
                "log": str(run.log_path.relative_to(REPO_ROOT))}
    result = {
        "finished": True, "app_id": app_id, "changelog_end_offsets": in_log, "restored": state,
        "serving_after_s": round(serving or 0.0, 3), "current_after_s": round(owned, 3),
        "cpu_seconds": round(cpu or 0.0, 3), "peak_rss_bytes": hwm,
        "fresh_startup_s": fresh_startup_s,
        "vs_fresh_startup": round(owned / fresh_startup_s, 2) if fresh_startup_s else None,
    }
    say(f"restart: every task restored and current after {owned:.1f} s (CPU {cpu or 0:.1f} s; a fresh worker's "
        f"first event came after {fresh_startup_s or 0:.1f} s): {state['customers']:,} customers, "
        f"{state['tickets']:,} tickets, {state['buckets']:,} buckets, peak RSS {(hwm or 0) / 2**20:,.0f} MiB")
    return result


# --------------------------------------------------------------------------- latency

_OCCURRED = re.compile(rb'"occurred_at":"[^"]*"')


def iso_ms(ms: int) -> bytes:
    stamp = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.").encode() + b"%03dZ" % (ms % 1000)


class HarnessPauses:
    """Garbage-collector pauses of the harness itself while it times events: a pause holds
    the scraper thread too, so the events waiting to be seen look later than they are.
    Reported with the latency so that a tail can be told apart from the harness's own."""

    def __init__(self) -> None:
        self.pauses: list[tuple[float, float]] = []  # (wall ms at the end, seconds)
        self._began = 0.0

    def __enter__(self) -> HarnessPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.pauses.append((time.time() * 1000, time.perf_counter() - self._began))

    def summary(self) -> dict:
        longest = max((seconds for _, seconds in self.pauses), default=0.0)
        return {"collections": len(self.pauses), "max_s": round(longest, 4),
                "total_s": round(sum(seconds for _, seconds in self.pauses), 3)}


class Scraper(threading.Thread):
    """/metrics every ``interval`` s: (monotonic-ish wall ms when the answer arrived,
    processed count per topic partition)."""

    def __init__(self, port: int, interval: float) -> None:
        super().__init__(name="scraper", daemon=True)
        self.port, self.interval = port, interval
        self.samples: list[tuple[float, dict[tuple[str, int], float]]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            began = time.monotonic()
            sample = scrape(self.port)
            if sample is not None:
                self.samples.append((time.time() * 1000, dict(sample["processed"])))
            self.stopping.wait(max(0.0, self.interval - (time.monotonic() - began)))


async def paced_produce(bootstrap: str, messages, prefix: str, rate: float, seconds: float,
                        sent: dict[tuple[str, int], list[float]]) -> int:
    """Send at ``rate`` per second for ``seconds``, each with ``occurred_at`` = the wall
    clock when it is handed to the producer; records that time per topic partition, in
    order. Every 5 ms the records due are handed over as one record batch per topic
    partition (``send_batch``), in the partition Kafka's default partitioner gives the key
    (checked against aiokafka's own for every key), with the stamp of that moment: a
    ``send()`` per record, as before, cost this harness ~0.45 of a core at 12,755/s, on
    the machine the worker is timed on."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.partitioner import DefaultPartitioner

    from streams.codec.partitioning import default_partition

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1)
    await producer.start()
    count = 0
    wanted = int(rate * seconds)
    all_partitions = list(range(PARTITIONS))
    partition_of: dict[bytes, int] = {}
    try:
        began = time.monotonic()
        pending: list[asyncio.Future] = []
        while count < wanted:
            due = min(wanted, int((time.monotonic() - began) * rate) + 1)
            if count < due:
                now_ms = int(time.time() * 1000)
                stamp = b'"occurred_at":"' + iso_ms(now_ms) + b'"'
                batches: dict[tuple[str, int], Any] = {}
                while count < due:
                    topic, key, value = messages[count % len(messages)]
                    value = _OCCURRED.sub(stamp, value, count=1)
                    value = value.replace(b'"event_id":"', b'"event_id":"lat%d-' % count, 1)
                    partition = partition_of.get(key)
                    if partition is None:
                        partition = partition_of[key] = default_partition(key, PARTITIONS)
                        if DefaultPartitioner()(key, all_partitions, all_partitions) != partition:
                            raise RuntimeError(f"the bench would put key {key!r} in partition {partition}, "
                                               "Kafka's default partitioner elsewhere")
                    target = (prefix + topic, partition)
                    batch = batches.get(target)
                    if batch is None:
                        batch = batches[target] = producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=None) is None:  # full
                        pending.append(await producer.send_batch(batch, target[0], partition=partition))
                        batch = batches[target] = producer.create_batch()
                        if batch.append(key=key, value=value, timestamp=None) is None:
                            raise RuntimeError(f"a {len(value):,}-byte event does not fit an empty record batch")
                    sent.setdefault(target, []).append(now_ms)
                    count += 1
                for (topic_name, partition), batch in batches.items():
                    pending.append(await producer.send_batch(batch, topic_name, partition=partition))
            if len(pending) > 500:
                await asyncio.gather(*pending)
                pending.clear()
            await asyncio.sleep(0.005)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return count


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


# The latency phase produces this long before it starts timing events: the worker applies
# an event only once the watermark (30 s behind the newest event) passes it, so for the
# first 30 s it merely buffers, and stage 2 gets partials later still. Timed from the start,
# a 60 s phase spent half its time below the load it claims (p99 0.3-0.5 s; timed at
# steady state, 1.3-1.9 s at the same rate: docs/performance.md).
LATENCY_WARMUP_S = 45.0


def run_latency(bootstrap: str, messages, rate: float, seconds: float, logdir: Path, timeout: float,
                profile: bool = False, warmup: float = LATENCY_WARMUP_S, broker_pid: int | None = None) -> dict:
    """The worker on fresh topics; events produced at ``rate`` with occurred_at = now for
    ``warmup`` + ``seconds``; the events of the last ``seconds`` are timed."""
    prefix = f"lat{int(time.time())}."
    localkafka.create_topics(bootstrap, [prefix + t for t in INPUTS], partitions=PARTITIONS)
    run, port, app_id = start_worker("worker-latency", bootstrap, logdir, prefix)
    profiler = None
    say(f"latency: worker {app_id} on topics {prefix}*; waiting for its partitions")
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            sample = scrape(port)
            if sample and sample["owned"].get("stage1") == PARTITIONS and sample["owned"].get("stage2") == PARTITIONS:
                break
            if run.process.poll() is not None:
                raise RuntimeError(f"latency worker exited:\n{run.tail()}")
            time.sleep(0.2)
        else:
            raise RuntimeError("latency worker did not own its partitions in 120 s")
        profiler = attach_profiler(run.process.pid, logdir, "worker-latency") if profile else None
        scraper = Scraper(port, 0.05)
        scraper.start()
        sent: dict[tuple[str, int], list[float]] = {}
        say(f"latency: producing {rate:,.0f} events/s for {warmup:.0f} + {seconds:.0f} s (occurred_at = now), "
            f"timing the last {seconds:.0f} s, scraping /metrics every 50 ms")
        cpu0 = run.cpu() or 0.0
        broker0 = proc_cpu(broker_pid) if broker_pid else None
        machine0 = machine_cpu()
        harness0 = own_cpu()
        produce_began_ms = time.time() * 1000
        timed_from_ms = produce_began_ms + warmup * 1000
        with HarnessPauses() as harness:
            produced = asyncio.run(paced_produce(bootstrap, messages, prefix, rate, warmup + seconds, sent))
        wait_until = time.monotonic() + timeout
        while time.monotonic() < wait_until:
            last = scraper.samples[-1][1] if scraper.samples else {}
            if all(last.get(key, 0) >= len(times) for key, times in sent.items()):
                break
            time.sleep(0.2)
        scraper.stopping.set()
        scraper.join()
        cpu = (run.cpu() or 0.0) - cpu0
        broker_cpu = (proc_cpu(broker_pid) or 0.0) - broker0 if broker_pid and broker0 is not None else None
        machine1 = machine_cpu()
        harness_cpu = own_cpu() - harness0
        hwm = proc_hwm(run.process.pid)
    finally:
        run.stop()
        finish_profiler(profiler, "latency")
    latencies: list[float] = []
    worst_by_second: dict[int, float] = {}  # second of the run (by occurred_at) -> worst latency
    missing = 0
    # per topic partition: a partition's events are taken in offset order, so the moment
    # its count reaches an event's index is when that event was taken (a count per topic
    # would let other partitions' events stand in for a partition that lags behind)
    by_partition: dict[str, dict[str, float]] = {}
    for key, times in sent.items():
        samples = [(at, counts.get(key, 0.0)) for at, counts in scraper.samples]
        counts = [count for _, count in samples]
        first = len(latencies)
        for index, occurred in enumerate(times, start=1):
            if occurred < timed_from_ms:
                continue  # warm-up: counted (the indexes include it), not timed
            at = bisect.bisect_left(counts, index)  # counts only grow
            if at == len(samples):
                missing += 1
            else:
                latency = (samples[at][0] - occurred) / 1000
                latencies.append(latency)
                second = int((occurred - timed_from_ms) // 1000)
                worst_by_second[second] = max(worst_by_second.get(second, 0.0), latency)
        mine = latencies[first:]
        if mine:
            by_partition[f"{key[0].removeprefix(prefix)}/{key[1]}"] = {
                "events": len(mine), "p50_s": round(percentile(mine, 50), 3), "p99_s": round(percentile(mine, 99), 3),
                "max_s": round(max(mine), 3)}
    if not latencies:
        return {"finished": False, "produced": produced, "missing": missing}
    result = {
        "finished": missing == 0, "produced": produced, "rate_events_per_second": round(rate),
        "seconds": seconds, "warmup_seconds": warmup, "timed_events": len(latencies),
        "scrapes": len(scraper.samples), "scrape_interval_s": 0.05,
        "p50_s": round(percentile(latencies, 50), 4), "p99_s": round(percentile(latencies, 99), 4),
        "max_s": round(max(latencies), 4), "not_seen": missing,
        "worker_cpu_seconds": round(cpu, 2), "worker_cpu_share_of_one_core": round(cpu / (warmup + seconds), 3),
        # the worker shares the machine with the broker and this harness (producer, scraper):
        # how busy the machine was from the first event produced to the last one seen, in
        # cores (its core count: machine.cores)
        "broker_cpu_seconds": None if broker_cpu is None else round(broker_cpu, 2),
        "harness_cpu_seconds": round(harness_cpu, 2),
        "machine_busy_cores": round((machine1[0] - machine0[0]) / max(1e-9, machine1[1] - machine0[1])
                                    * (os.cpu_count() or 1), 2),
        "peak_rss_bytes": hwm,
        "harness_gc": harness.summary(),
        # where the tail is: the seconds of the run (by event time) whose worst event took
        # longest, worst first: a stall shows as a run of neighbouring seconds
        "worst_seconds": [{"second": second, "max_s": round(worst, 3)} for second, worst in
                          sorted(worst_by_second.items(), key=lambda item: -item[1])[:10]],
        # the worst latency of every second, in order: a tail that grows through the run
        # (load still rising) looks different from isolated stalls
        "max_by_second_s": [round(worst_by_second.get(second, 0.0), 3) for second in range(int(seconds))],
        # per input topic partition: one partition behind the others (a consumer fetch
        # pattern, a task) looks different from the whole worker behind
        "by_partition": dict(sorted(by_partition.items())),
    }
    say(f"latency: p50 {result['p50_s'] * 1000:,.0f} ms, p99 {result['p99_s'] * 1000:,.0f} ms "
        f"(max {result['max_s'] * 1000:,.0f} ms) over {len(latencies):,} timed events ({produced:,} produced) at {rate:,.0f}/s; {missing} not seen; "
        "worst seconds " + ", ".join(f"{w['second']}s: {w['max_s'] * 1000:,.0f} ms" for w in result["worst_seconds"][:5]))
    return result


# --------------------------------------------------------------------------- memory


def run_memory(customers: int, tickets: int, logdir: Path, timeout: float) -> dict:
    say(f"memory: a stage-1 Processor with {customers:,} customers and {tickets:,} open tickets")
    run = spawn("memory", [sys.executable, "-m", "bench.peers_contenders", "memory",
                           "--customers", str(customers), "--tickets", str(tickets)], logdir)
    try:
        run.process.wait(timeout)
    except subprocess.TimeoutExpired:
        say("memory: timed out")
        run.stop()
        return {"finished": False}
    found = [m["memory"] for m in run.messages() if "memory" in m]
    if not found:
        say(f"memory: failed:\n{run.tail()}")
        return {"finished": False}
    result = {"finished": True, **found[0]}
    say(f"memory: RSS {result['rss_bytes'] / 2**20:,.0f} MiB (peak {result['vmhwm_bytes'] / 2**20:,.0f} MiB) "
        f"for {result['customers']:,} customers and {result['open_tickets']:,} open tickets")
    return result


# --------------------------------------------------------------------------- core only


def run_core(messages, seed: int, logdir: Path, timeout: float) -> dict:
    """The same events through ``crm-kpi replay`` (one Processor and one Merger, the
    worker's core, without Kafka, transactions or changelogs): CPU of the whole process
    (start-up included, ~1 s), from ``wait4``."""
    path = CACHE / f"sim-seed{seed}-n{len(messages)}.jsonl"
    if not path.is_file():
        staging = path.with_suffix(".tmp")
        with open(staging, "wb") as handle:
            handle.writelines(value + b"\n" for _, _, value in messages)
        staging.replace(path)
    say(f"core: crm-kpi replay of the same {len(messages):,} events (no Kafka)")
    run = spawn("core", [sys.executable, "-m", "streams.cli", "replay", str(path), "-q", "--out", os.devnull],
                logdir)
    deadline = time.monotonic() + timeout
    hwm = None
    began = time.monotonic()
    while time.monotonic() < deadline:
        hwm = proc_hwm(run.process.pid) or hwm
        pid, status, usage = os.wait4(run.process.pid, os.WNOHANG)
        if pid:
            run.process.returncode = os.waitstatus_to_exitcode(status)
            break
        time.sleep(0.1)
    else:
        run.stop()
        return {"contender": "core", "finished": False}
    wall = time.monotonic() - began
    if run.process.returncode != 0:
        say(f"core: replay failed:\n{run.tail()}")
        return {"contender": "core", "finished": False}
    cpu = usage.ru_utime + usage.ru_stime
    result = figures("core", len(messages), cpu, wall, hwm, finished=True,
                     note="crm-kpi replay: decode + Processor + Merger, start-up included")
    say(f"core: {result['events_per_core_second']:,} events per CPU-s (replay, no Kafka)")
    return result


# --------------------------------------------------------------------------- report


def result_path(folder: Path, date: str, stamp: str) -> Path:
    """``<date>.json``, or ``<date>-<HHMMSS>.json`` (the run's start, from ``stamp`` =
    ``YYYYmmdd-HHMMSS``) when a run of that day is there already: a second run must not
    overwrite the figures the docs quote."""
    first = folder / f"{date}.json"
    return first if not first.exists() else folder / f"{date}-{stamp.rsplit('-', 1)[-1]}.json"


def ratios(results: dict[str, dict]) -> dict[str, float]:
    out = {}
    rates = {name: r.get("events_per_core_second") for name, r in results.items()}
    for a in CONTENDERS:
        for b in CONTENDERS:
            if a != b and rates.get(a) and rates.get(b):
                out[f"{a}/{b}"] = round(rates[a] / rates[b], 3)
    return out


def table(results: dict[str, dict]) -> str:
    """Markdown table of the contenders (docs/performance.md has the same columns)."""
    rows = ["| contender | events | CPU s | events per core-s | wall events/s | ÷ ceiling | worker ÷ it | peak RSS MiB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    ceiling = results.get("ceiling", {}).get("events_per_core_second")
    ours = results.get("worker", {}).get("events_per_core_second")
    for name in CONTENDERS:
        r = results.get(name)
        if not r:
            continue
        rate = r.get("events_per_core_second")
        if not rate:
            rows.append(f"| {name} | did not finish | | | | | | |")
            continue
        versus = f"{rate / ceiling:.3f}×" if ceiling else "–"
        worker = f"{ours / rate:.2f}×" if ours else "–"
        mark = "" if r.get("finished", True) else " (partial)"
        rows.append(f"| {name}{mark} | {r['events']:,} | {r['cpu_seconds']:,.1f} | {rate:,} | "
                    f"{r['wall_events_per_second']:,} | {versus} | {worker} | "
                    f"{(r.get('peak_rss_bytes') or 0) / 2**20:,.0f} |")
    return "\n".join(rows)


PHASE_MODULES = {"faust": "faust", "quix": "quixstreams"}


def missing_modules(phases: set[str]) -> list[str]:
    """Python packages that selected phases need and this environment lacks."""
    import importlib.util

    needed = sorted({PHASE_MODULES[p] for p in phases if p in PHASE_MODULES})
    return [name for name in needed if importlib.util.find_spec(name) is None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="simulated events on the input topics")
    parser.add_argument("--peer-events", type=int, default=None,
                        help="cap the naive peers (faust, quix) at the first N events (per-core rates are per event)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only", default=",".join(CONTENDERS + ("restart", "latency", "core", "memory")),
                        help="comma-separated subset of ceiling,worker,floor,faust,quix,restart,latency,core,memory "
                             "(restart and floor need worker)")
    parser.add_argument("--timeout", type=float, default=1500, help="seconds per contender at most")
    parser.add_argument("--latency-seconds", type=float, default=60, help="how long to time events at 50 %% load")
    parser.add_argument("--latency-warmup", type=float, default=LATENCY_WARMUP_S,
                        help="seconds produced at that rate before timing starts")
    parser.add_argument("--latency-rate", type=float, default=None,
                        help="events/s of the latency phase (default: 50 %% of the worker's measured wall rate)")
    parser.add_argument("--memory-customers", type=int, default=1_000_000)
    parser.add_argument("--memory-tickets", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=None, help="result file (default bench/results/<date>.json, "
                        "<date>-<HHMMSS>.json if that exists)")
    parser.add_argument("--profile", action="store_true",
                        help="sample the worker (and the floor) with py-spy (collapsed stacks in the run's "
                             "log directory)")
    args = parser.parse_args()
    only = set(args.only.split(","))
    unknown = only - {*CONTENDERS, "restart", "latency", "core", "memory"}
    if unknown:
        parser.error(f"--only: unknown phase(s) {', '.join(sorted(unknown))}")
    missing = missing_modules(only)
    if missing:
        # before minutes of loading: a phase that cannot start would only fail at its turn
        parser.error(f"{', '.join(missing)} not installed: pip install -e '.[dev,bench]' "
                     "(make bench does it), or leave the phase out with --only")
    peer_events = min(args.peer_events or args.events, args.events)

    began = time.monotonic()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    logdir = CACHE / "runs" / stamp
    logdir.mkdir(parents=True, exist_ok=True)
    info = machine()
    say(f"machine: {info['cpu_model']}, {info['cores']} cores, {info['ram_bytes'] / 2**30:.1f} GiB, "
        f"python {info['python']}, Kafka {info['kafka']}; logs in {logdir.relative_to(REPO_ROOT)}")
    messages = workload(args.seed, args.events)
    # the workload is a million tuples that live as long as the harness: out of the garbage
    # collector's sight, or every full collection of this process walks them, holding the
    # GIL for tenths of a second - and the latency phase's scraper thread with it, which
    # then times events late (the harness measures itself: see HarnessPauses)
    gc.collect()
    gc.freeze()
    results: dict[str, dict] = {}
    extra: dict[str, Any] = {}
    floor: dict | None = None  # the worker's captured output, for the floor phase
    if only & {*CONTENDERS, "latency"}:  # the broker phases
        with localkafka.start(cache_dir=REPO_ROOT / ".cache", heap="1g") as kafka:
            bootstrap = kafka.bootstrap
            say(f"broker {bootstrap} up in {kafka.startup_seconds:.1f} s; loading {len(messages):,} events")
            localkafka.create_topics(bootstrap, list(INPUTS), partitions=PARTITIONS)
            t0 = time.monotonic()
            asyncio.run(produce(bootstrap, messages))
            say(f"loaded in {time.monotonic() - t0:.0f} s")
            peer_topics = list(INPUTS)
            if peer_events < args.events and only & {"faust", "quix"}:
                peer_topics = [PEER_PREFIX + t for t in INPUTS]
                localkafka.create_topics(bootstrap, peer_topics, partitions=PARTITIONS)
                asyncio.run(produce(bootstrap, messages[:peer_events], PEER_PREFIX))
                say(f"peers read {peer_events:,} events from {PEER_PREFIX}* (--peer-events)")
            for name in CONTENDERS:
                if name not in only:
                    continue
                broker_cpu = proc_cpu(kafka.pid) if kafka.pid else None
                tree = tree_state()
                if name == "worker":
                    results[name] = run_worker(bootstrap, args.events, logdir, args.timeout, args.profile)
                    if "floor" in only and results[name].get("finished"):
                        floor = prepare_floor(bootstrap, results[name], logdir)
                    if "restart" in only and results[name].get("finished"):
                        tree = tree_state()
                        extra["restart"] = {**run_restart(bootstrap, results[name]["app_id"],
                                                          results[name].get("startup_wall_seconds"), logdir,
                                                          args.timeout, args.profile), "tree": tree}
                elif name == "ceiling":
                    results[name] = run_peer(name, bootstrap, list(INPUTS), args.events, logdir, args.timeout, stamp)
                elif name == "floor":
                    if floor is None:
                        say("floor: skipped (it sends what the worker wrote: needs a finished worker phase)")
                        continue
                    results[name] = run_floor(bootstrap, floor, list(INPUTS), args.events, logdir, args.timeout, stamp,
                                              args.profile)
                else:
                    results[name] = run_peer(name, bootstrap, peer_topics, peer_events, logdir, args.timeout, stamp)
                if broker_cpu is not None and kafka.pid:
                    # the broker's CPU while this contender ran (not in its events per core-s)
                    results[name]["broker_cpu_seconds"] = round((proc_cpu(kafka.pid) or 0.0) - broker_cpu, 2)
                results[name]["tree"] = tree
            if "latency" in only:
                measured = results.get("worker", {}).get("ingest_wall_events_per_second")
                rate = args.latency_rate or (measured / 2 if measured else None)
                if rate:
                    tree = tree_state()
                    extra["latency"] = run_latency(bootstrap, messages, rate, args.latency_seconds, logdir, 300,
                                                   args.profile, args.latency_warmup, kafka.pid)
                    extra["latency"]["rate_basis"] = ("--latency-rate" if args.latency_rate else
                                                      "50 % of the worker's ingest wall rate above")
                    extra["latency"]["tree"] = tree
                else:
                    say("latency: skipped (no worker rate measured and no --latency-rate)")
    if "core" in only:
        tree = tree_state()
        extra["core"] = {**run_core(messages, args.seed, logdir, args.timeout), "tree": tree}
    if "memory" in only:
        tree = tree_state()
        extra["memory"] = {**run_memory(args.memory_customers, args.memory_tickets, logdir, args.timeout),
                           "tree": tree}

    document = {
        "date": time.strftime("%Y-%m-%d"), "started": stamp, "machine": info,
        "workload": {"events": args.events, "peer_events": peer_events, "seed": args.seed,
                     "topics": list(INPUTS), "partitions": PARTITIONS,
                     "simulator": "streams.simulate, 1 day, customers = events/4, no duplicates/late/malformed"},
        "contenders": results, "ratios": ratios(results), **extra, "targets": TARGETS,
        "load_average_at_end": os.getloadavg(), "seconds": round(time.monotonic() - began),
    }
    out = args.out or result_path(RESULTS, document["date"], stamp)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2) + "\n")
    print()
    print(table(results))
    for key, value in document["ratios"].items():
        if key.startswith("worker/"):
            print(f"{key:<16} {value:8.3f}×")
    if extra.get("restart", {}).get("finished"):
        restart = extra["restart"]
        print(f"restart: restored and current after {restart['current_after_s']:.1f} s "
              f"({restart['restored']['customers']:,} customers; a fresh worker's first event after "
              f"{restart['fresh_startup_s'] or 0:.1f} s)")
    if "latency" in extra and extra["latency"].get("p99_s") is not None:
        lat = extra["latency"]
        print(f"latency (ingest → crm_events_processed_total) at {lat['rate_events_per_second']:,}/s: "
              f"p50 {lat['p50_s'] * 1000:,.0f} ms, p99 {lat['p99_s'] * 1000:,.0f} ms")
    if extra.get("core", {}).get("finished"):
        print(f"core only (crm-kpi replay, no Kafka): {extra['core']['events_per_core_second']:,} events per CPU-s")
    if extra.get("memory", {}).get("finished"):
        mem = extra["memory"]
        print(f"memory: {mem['customers']:,} customers + {mem['open_tickets']:,} open tickets: "
              f"RSS {mem['rss_bytes'] / 2**20:,.0f} MiB (target ≤ 1024 MiB)")
    say(f"results in {out.relative_to(REPO_ROOT) if out.is_relative_to(REPO_ROOT) else out} "
        f"({time.monotonic() - began:.0f} s)")


if __name__ == "__main__":
    main()
