"""The streaming worker: stage 1 and stage 2 consumers, the metrics endpoint, graceful
shutdown. See docs/architecture.md for why the hot path uses batch consumption."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal

from prometheus_client import CollectorRegistry, ProcessCollector

from streams.core import native
from streams.metrics.collector import WorkerCollector
from streams.metrics.server import MetricsServer
from streams.runtime.kafka import ensure_topics
from streams.runtime.stage1 import Stage1
from streams.runtime.stage2 import Stage2
from streams.runtime.stats import RuntimeStats
from streams.runtime.watchdog import LoopWatchdog
from streams.settings import Settings, core_config

log = logging.getLogger("crm_kpi.worker")


# Young-generation collection threshold of the worker (CPython's default is 700); a
# middle-generation collection every 5 young ones, a full one (subject to CPython's own
# 25 % rule) every 2,000 young ones as before. With (50_000, 20, 100) a live worker's
# middle collections were rare (one per ~2 minutes) and long: 0.33-0.43 s with the loop
# held; with 5, 0.10-0.15 s each, the same time in all (docs/performance.md, 2026-12-07).
GC_THRESHOLDS = (50_000, 5, 400)


def tune_gc() -> None:
    """The worker keeps hundreds of thousands of long-lived objects (customer, ticket
    and window state) and allocates short-lived ones per event. With CPython's default
    thresholds the collector runs every 700 allocations and keeps rescanning the state:
    30-40 % of the core's CPU in ``python -m bench core`` (compare ``--gc default``).
    Objects alive at start-up move to the permanent generation and young collections
    run 70x less often; the state holds no reference cycles, so memory is unaffected."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class Worker:
    """One worker process: joins both consumer groups and serves /metrics."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.config = core_config(settings)
        self.stats = RuntimeStats().zero()
        self.stopping = asyncio.Event()
        self.stage1: Stage1 | None = None
        self.stage2: Stage2 | None = None
        self.server: MetricsServer | None = None

    async def run(self) -> None:
        settings = self.settings
        tune_gc()
        tasks_total = await ensure_topics(settings)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(WorkerCollector(self.stats, self._latest_records, settings.app_id))
        ProcessCollector(registry=registry)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
        self.server = MetricsServer.from_settings(registry, settings)
        await self.server.start()  # first: a port in use fails before any Kafka client exists
        self.stage1 = Stage1(settings, self.config, self.stats, tasks_total)
        self.stage2 = Stage2(settings, self.config, self.stats)
        watchdog = LoopWatchdog(self.stats.loop_stalls.observe, observe_gc=self.stats.observe_gc)
        watchdog.start()
        await self.stage1.start()
        await self.stage2.start()
        log.info("worker %s started: %d input partitions, bootstrap %s, core %s",
                 settings.app_id, tasks_total, settings.bootstrap_servers, native.status)
        loops = [
            asyncio.create_task(self.stage1.run(self.stopping), name="stage1"),
            asyncio.create_task(self.stage2.run(self.stopping), name="stage2"),
        ]
        try:
            done, _ = await asyncio.wait(loops, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if task.exception() is not None:
                    raise task.exception()
        finally:
            self.stopping.set()
            for task in loops:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, timeout=30)
            # the stages commit what they did since their last commit, then leave the
            # groups: the partitions move without waiting for a session timeout
            await self.stage1.stop()
            await self.stage2.stop()
            await self.server.stop()
            await watchdog.stop()
            log.info("worker stopped")

    def _latest_records(self):
        return self.stage2.latest_records() if self.stage2 is not None else []

    def request_stop(self) -> None:
        if not self.stopping.is_set():
            log.info("stop requested: finishing the current batch")
            self.stopping.set()


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLevelName(level)))


def run_worker(settings: Settings) -> None:
    """Run a worker until SIGTERM/SIGINT (graceful: finish the batch, commit, leave the group)."""
    configure_logging(settings.log_level)

    async def main() -> None:
        worker = Worker(settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.request_stop)
        await worker.run()

    asyncio.run(main())
