"""The faust-streaming application that hosts a worker.

faust provides the process: its ``Worker`` owns the event loop, signal handling
(SIGTERM/SIGINT stop the services gracefully), logging set-up and service supervision.
The KPI pipeline itself runs as a faust/mode ``Service`` that consumes in batches with
aiokafka instead of through faust agents: an agent costs ~10 µs of framework work per
event and faust's exactly-once mode has open duplicate reports (faust-streaming#517,
#177, #323), while batch consumption with one Kafka transaction per batch reaches the
throughput target and is proven by the kill tests. docs/architecture.md has the figures.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path

import faust
from faust.worker import Worker as FaustWorker
from mode import Service
from mode.utils.futures import maybe_cancel

from streams.runtime.worker import Worker
from streams.settings import Settings

log = logging.getLogger("crm_kpi.app")


def _broker_url(settings: Settings) -> str:
    return ";".join(f"kafka://{server.strip()}" for server in settings.bootstrap_servers.split(","))


def _credentials(settings: Settings):
    if settings.security_protocol == "PLAINTEXT":
        return None
    from streams.runtime.kafka import client_options

    options = client_options(settings)
    ssl_context = options.get("ssl_context")
    if settings.security_protocol.startswith("SASL"):
        mechanism = settings.sasl_mechanism or "PLAIN"
        if mechanism.startswith("SCRAM"):
            return faust.SASLCredentials(
                username=settings.sasl_username, password=settings.sasl_password_value(),
                mechanism=mechanism, ssl_context=ssl_context,
            )
        return faust.SASLCredentials(
            username=settings.sasl_username, password=settings.sasl_password_value(), ssl_context=ssl_context
        )
    return faust.SSLCredentials(ssl_context)


def create_app(settings: Settings) -> faust.App:
    """A faust App whose only service is the KPI worker."""
    datadir = Path(tempfile.gettempdir()) / "crm-kpi-faust" / settings.app_id
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        f"{settings.app_id}-host",
        broker=_broker_url(settings),
        broker_credentials=_credentials(settings),
        web_enabled=False,  # /metrics is served by the worker (TLS/auth under our control)
        autodiscover=False,
        store="memory://",
        # faust keeps a data directory per app; ours holds nothing worth keeping, and it
        # must not land in whatever directory the worker was started from
        datadir=str(datadir),
        topic_replication_factor=settings.replication_factor,
        topic_partitions=1,
    )

    class KpiWorkerService(Service):
        """Runs :class:`~streams.runtime.worker.Worker` for the app's lifetime."""

        def on_init(self) -> None:
            self.kpi_worker = Worker(settings)
            self.kpi_task: asyncio.Task | None = None

        async def on_start(self) -> None:
            self.kpi_task = asyncio.ensure_future(self.kpi_worker.run())
            self.kpi_task.add_done_callback(self._finished)

        def _finished(self, task: asyncio.Task) -> None:
            if not task.cancelled() and task.exception() is not None:
                log.error("worker failed: %s", task.exception())
                app.kpi_failure = task.exception()
                host = getattr(app, "kpi_host", None)
                if host is not None:
                    host.stop_after_failure()  # the process exits (non-zero, see run_app)
                else:
                    asyncio.ensure_future(app.stop())

        async def on_stop(self) -> None:
            self.kpi_worker.request_stop()
            if self.kpi_task is not None:
                await asyncio.wait([self.kpi_task], timeout=60)

    app.service(KpiWorkerService)
    return app


class WorkerFailed(Exception):
    """The worker could not start or its service failed; the message is one line for
    stderr (the process then exits non-zero so that a supervisor restarts it)."""


class HostWorker(FaustWorker):
    """faust's Worker, which also stops - and lets the process exit - when the KPI
    service fails. On its own it stops only on a signal or a crash of one of faust's
    own services: a failed service of ours that just stops the App would leave the
    Worker waiting for a signal, with no consumer and no /metrics."""

    def stop_after_failure(self) -> None:
        # what mode's Worker does on SIGTERM (``_schedule_shutdown``), without claiming a
        # signal: stop every service, then let ``execute_from_commandline`` finish - it
        # waits for ``_signal_stop_future`` before it closes the loop
        if not self._signal_stop_time:
            self._signal_stop_time = self.loop.time()
            self._signal_stop_future = asyncio.ensure_future(self._stop_after_failure(), loop=self.loop)

    async def _stop_after_failure(self) -> None:
        await self.stop()
        maybe_cancel(self._starting_fut)


def run_app(settings: Settings) -> int:
    """Run the hosted worker until SIGTERM/SIGINT; returns the process exit code (0).
    Raises :class:`WorkerFailed` when Kafka cannot be used at start-up (e.g. a wrong
    password) or the worker service fails later."""
    from streams.runtime.kafka import KafkaUnavailable, check_connection
    from streams.runtime.quietlogs import quiet_repeated_client_logs
    from streams.runtime.worker import configure_logging

    # before faust starts its clients: they would log and end in a stack trace. A loop of
    # its own that is never made current: faust's Worker takes the thread's event loop
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(check_connection(settings))
    except KafkaUnavailable as exc:
        raise WorkerFailed(str(exc)) from None
    finally:
        loop.close()
    app = create_app(settings)
    app.kpi_failure = None
    configure_logging(settings.log_level)
    # while the broker is down the client logs ~3,000 errors a second: one of a kind per 10 s
    quiet_repeated_client_logs("aiokafka")
    host = HostWorker(app, loglevel=settings.log_level.lower(), quiet=True, redirect_stdouts=False)
    app.kpi_host = host
    try:
        host.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    else:
        code = 0
    if app.kpi_failure is not None:
        raise WorkerFailed(f"worker failed: {app.kpi_failure}")
    return code
