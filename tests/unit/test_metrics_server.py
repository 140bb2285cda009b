"""``/metrics`` as a scraper sees it: the worker's collector behind the real aiohttp
server on a loopback port, read with a real HTTP client."""

from __future__ import annotations

import asyncio
import gzip
import urllib.request
from collections.abc import Callable
from typing import TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from streams.metrics.collector import WorkerCollector
from streams.metrics.server import MetricsServer
from streams.runtime.stats import RuntimeStats

T = TypeVar("T")


def _stats() -> RuntimeStats:
    stats = RuntimeStats()
    stats.processed[("crm.tickets.v1", 0)] += 7
    stats.processed[("crm.tickets.v1", 1)] += 3
    stats.rejected["malformed_json"] += 2
    stats.duplicates = 5
    stats.observe_batch("stage1", 400)
    stats.observe_batch("stage2", 3)
    return stats


def _get(port: int, query: str = "", headers: dict[str, str] | None = None) -> tuple[dict[str, str], bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics{query}", headers=headers or {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return dict(response.headers), response.read()


def _samples(body: bytes) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def serve(registry: CollectorRegistry, check: Callable[[int], T]) -> T:
    """Serve ``registry`` on a free loopback port, run ``check(port)`` in a thread (urllib
    blocks), stop the server; returns what ``check`` returned."""

    async def main() -> T:
        server = MetricsServer(registry, "127.0.0.1", 0)
        await server.start()
        try:
            assert server.bound_port
            return await asyncio.to_thread(check, server.bound_port)
        finally:
            await server.stop()

    return asyncio.run(main())


def _serve(check: Callable[[int], None]) -> None:
    """:func:`serve` of a worker's collector with a few counters and batches."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkerCollector(_stats(), list, "app"))
    serve(registry, check)


def test_the_whole_exposition_without_a_filter() -> None:
    def check(port: int) -> None:
        headers, body = _get(port)
        assert "Content-Encoding" not in headers  # urllib does not ask for gzip
        found = _samples(body)
        assert sorted(found["crm_events_processed_total"], key=lambda s: s[0]["partition"]) == [
            ({"topic": "crm.tickets.v1", "partition": "0"}, 7.0),
            ({"topic": "crm.tickets.v1", "partition": "1"}, 3.0),
        ]
        assert found["crm_events_duplicate_total"] == [({}, 5.0)]
        assert "crm_batch_size_bucket" in found

    _serve(check)


def test_name_filter_keeps_the_named_samples_and_whole_named_families() -> None:
    def check(port: int) -> None:
        _, body = _get(port, "?name[]=crm_events_duplicate_total&name[]=crm_batch_size")
        found = _samples(body)
        assert found["crm_events_duplicate_total"] == [({}, 5.0)]
        # a family's name brings all of its samples: buckets, count and sum, both stages
        assert {"crm_batch_size_bucket", "crm_batch_size_count", "crm_batch_size_sum"} <= set(found)
        assert {labels["stage"] for labels, _ in found["crm_batch_size_count"]} == {"stage1", "stage2"}
        assert not {name for name in found if not name.startswith(("crm_events_duplicate", "crm_batch_size"))}

        # a histogram's single sample name gives only those samples
        _, body = _get(port, "?name[]=crm_batch_size_count")
        assert set(_samples(body)) == {"crm_batch_size_count"}

        # a name no family has: an empty answer, not an error
        _, body = _get(port, "?name[]=no_such_metric")
        assert _samples(body) == {}

    _serve(check)


def test_answers_gzip_when_the_scraper_accepts_it() -> None:
    def check(port: int) -> None:
        _, plain = _get(port)
        headers, body = _get(port, headers={"Accept-Encoding": "gzip"})
        assert headers.get("Content-Encoding") == "gzip"
        assert gzip.decompress(body) == plain

    _serve(check)
