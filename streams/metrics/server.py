"""``/metrics`` over HTTP(S) on the worker's event loop (aiohttp), so that collection reads
the stages' state between batches without threads or locks.

Optional hardening, from settings (``CRM_KPI_METRICS_*``):

- TLS: ``metrics_tls_certfile`` / ``metrics_tls_keyfile`` (PEM) serve HTTPS only
  (TLS 1.2 or newer);
- HTTP basic auth: ``metrics_basic_auth_user`` with ``metrics_basic_auth_password`` or
  ``metrics_basic_auth_password_file``. ``/metrics`` answers 401 without the right
  credentials; ``/healthz`` (a liveness probe, no data) stays open.

The password is compared in constant time and never logged.

As with prometheus_client's own handler, ``/metrics?name[]=A&name[]=B`` answers only the
named series (a sample's name, e.g. ``crm_events_processed_total``, or a family's, e.g.
``crm_batch_size`` for all of its buckets), and an answer is compressed when the scraper
accepts it (``Accept-Encoding: gzip``, as Prometheus sends).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import ssl
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from streams.settings import Settings

log = logging.getLogger("crm_kpi.metrics")

REALM = "crm-kpi metrics"


def tls_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    """A server-side TLS context for the exposition (no client certificates)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    return context


class Restricted(Collector):
    """The part of a registry's families that ``names`` asks for: a family named there
    whole, otherwise only its samples named there; families left empty are left out."""

    def __init__(self, registry: CollectorRegistry, names: Iterable[str]) -> None:
        self.registry = registry
        self.names = frozenset(names)

    def collect(self) -> Iterator[Metric]:
        names = self.names
        for family in self.registry.collect():
            if family.name in names:
                yield family
                continue
            samples = [sample for sample in family.samples if sample.name in names]
            if samples:
                part = Metric(family.name, family.documentation, family.type, family.unit)
                part.samples = samples
                yield part


class MetricsServer:
    def __init__(
        self,
        registry: CollectorRegistry,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        basic_auth: tuple[str, str] | None = None,
    ) -> None:
        self.registry = registry
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self._credentials = (
            None if basic_auth is None else (basic_auth[0].encode(), basic_auth[1].encode())
        )
        self._runner: web.AppRunner | None = None
        self.bound_port: int | None = None

    @classmethod
    def from_settings(cls, registry: CollectorRegistry, settings: Settings) -> MetricsServer:
        """The endpoint as configured: bind address, optional TLS and basic auth."""
        context = None
        if settings.metrics_tls_certfile is not None and settings.metrics_tls_keyfile is not None:
            context = tls_context(str(settings.metrics_tls_certfile), str(settings.metrics_tls_keyfile))
        auth = None
        password = settings.metrics_basic_auth_password_value()
        if settings.metrics_basic_auth_user is not None and password is not None:
            auth = (settings.metrics_basic_auth_user, password)
        return cls(registry, settings.metrics_host, settings.metrics_port, ssl_context=context, basic_auth=auth)

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._health)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context)
        await site.start()
        sockets = site._server.sockets if site._server else []  # noqa: SLF001 - aiohttp exposes no getter
        self.bound_port = sockets[0].getsockname()[1] if sockets else self.port
        log.info("metrics on %s://%s:%d/metrics%s", self.scheme, self.host, self.bound_port,
                 " (basic auth)" if self._credentials else "")

    def _authorized(self, request: web.Request) -> bool:
        if self._credentials is None:
            return True
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic" or not token:
            return False
        try:
            user, sep, password = base64.b64decode(token.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        want_user, want_password = self._credentials
        # both comparisons always run: the time taken says nothing about which one failed
        user_ok = hmac.compare_digest(user, want_user)
        password_ok = hmac.compare_digest(password, want_password)
        return bool(sep) and user_ok and password_ok

    async def _metrics(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.Response(status=401, text="401: credentials required\n",
                                headers={"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'})
        names = request.query.getall("name[]", [])
        body = generate_latest(Restricted(self.registry, names) if names else self.registry)
        response = web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
        response.enable_compression()  # only if the request accepts it (Accept-Encoding)
        return response

    async def _health(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
