"""Failure modes the chaos runs ran into, reproduced deterministically on the real broker.

Both were fixed; the tests stay as regression tests:

1. (fixed) A task whose producer is fenced while its batch is still being sent does not raise
   ``TaskFenced``: aiokafka's sender dies on ``ProducerFenced``, the transaction manager
   goes to FATAL_ERROR, and the next ``producer.send`` raises ``IllegalOperation`` ("Can't
   send messages while not in transaction"), which is neither ``TaskFenced`` nor a
   ``KafkaError`` (it derives from ``Exception``), so it escapes ``Stage1.run`` /
   ``Stage2.run`` and kills the worker. Seen in a chaos run whose zombie worker (kicked
   out of the group during a long restore) was fenced mid-batch.
2. (fixed) When the worker service failed, the process did not exit: ``KpiWorkerService``
   logged ``worker failed: ...`` and stopped the faust App, but faust's Worker kept the
   event loop running, so the process stayed alive with no consumer, no /metrics - and no
   supervisor restarted it. Now the service stops faust's Worker as a signal would, and
   the process exits with code 1 and one ``crm-kpi: worker failed: ...`` line on stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time

import pytest

from streams.runtime.kafka import TaskFenced, send_atomically, transactional_producer
from streams.settings import Settings
from tests.chaos.support import REPO

pytestmark = [pytest.mark.kafka, pytest.mark.chaos]


class BusyLoop:
    """A producer whose sends each give the event loop 50 ms to other work - as in a
    worker, where stage 2, fetches and heartbeats run between a batch's sends."""

    def __init__(self, producer) -> None:
        self.producer = producer

    def __getattr__(self, name: str):
        return getattr(self.producer, name)

    async def send(self, *args, **kwargs):
        await asyncio.sleep(0.05)
        return await self.producer.send(*args, **kwargs)


@pytest.mark.timeout(120)
def test_a_producer_fenced_in_the_middle_of_a_batch_raises_task_fenced(kafka):
    topic = kafka.new_topic("fence", partitions=3)
    settings = Settings(bootstrap_servers=kafka.bootstrap, app_id=f"fence-{os.getpid()}")

    async def scenario() -> BaseException | None:
        # the dead sender's futures carry ProducerFenced too; they are expected here
        asyncio.get_running_loop().set_exception_handler(lambda _loop, _context: None)
        zombie = transactional_producer(settings, f"{settings.app_id}-stage1-0")
        await zombie.start()
        owner = transactional_producer(settings, f"{settings.app_id}-stage1-0")
        await owner.start()  # the task's new owner: InitProducerId fences the zombie
        try:
            await send_atomically(BusyLoop(zombie), [(topic, b"v", b"k", i % 3) for i in range(20)])
        except BaseException as exc:  # noqa: BLE001 - the type is the point
            return exc
        finally:
            await owner.stop()
            with contextlib.suppress(Exception):
                await zombie.stop()
        return None

    raised = asyncio.run(scenario())
    assert isinstance(raised, TaskFenced), f"expected TaskFenced, got {type(raised).__name__}: {raised}"


@pytest.mark.timeout(120)
def test_a_worker_whose_service_fails_exits_with_an_error(kafka, tmp_path):
    """The metrics port is taken: the worker service fails at start; the process must exit
    non-zero (so a supervisor restarts it) instead of idling forever."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        log_path = tmp_path / "worker.log"
        env = {**os.environ, "CRM_KPI_BOOTSTRAP_SERVERS": kafka.bootstrap, "CRM_KPI_APP_ID": f"portclash-{os.getpid()}",
               "CRM_KPI_METRICS_PORT": str(taken.getsockname()[1])}
        for name in ("tickets", "interactions", "purchases", "kpi", "sla", "signals", "dlq", "partials"):
            env[f"CRM_KPI_TOPICS__{name.upper()}"] = f"portclash.{name}"
        with open(log_path, "wb") as log:
            process = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], cwd=REPO, env=env,
                                       stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and "worker failed" not in log_path.read_text(errors="replace"):
                time.sleep(0.5)
            if "address already in use" not in log_path.read_text(errors="replace"):
                pytest.fail(f"no port-clash failure logged:\n{log_path.read_text(errors='replace')[-2000:]}")
            try:
                code = process.wait(20)
            except subprocess.TimeoutExpired:
                code = None
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert code not in (None, 0), "the worker logged 'worker failed' but was still running 20 s later"
    output = log_path.read_text(errors="replace")
    assert "crm-kpi: worker failed: " in output and "address already in use" in output.rsplit("crm-kpi: ", 1)[1], \
        output[-2000:]
    assert "Traceback" not in output, output[-3000:]
