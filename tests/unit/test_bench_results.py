"""Where `python -m bench.peers_bench` writes its results: never over an earlier run."""

from __future__ import annotations

from bench.peers_bench import result_path


def test_the_first_run_of_a_day_gets_the_date_and_a_later_one_its_start_time(tmp_path):
    first = result_path(tmp_path, "2026-11-23", "20261123-215540")
    assert first == tmp_path / "2026-11-23.json"
    first.write_text("{}")
    assert result_path(tmp_path, "2026-11-23", "20261123-223000") == tmp_path / "2026-11-23-223000.json"


def test_machine_cpu_counts_busy_time_of_all_cores():
    """The latency phase reports how many cores the machine kept busy (worker, broker,
    harness): a spin of this process shows up as busy time, never more than the total."""
    import os
    import time

    from bench.peers_bench import machine_cpu

    busy0, total0 = machine_cpu()
    spun = time.process_time() + 0.3
    while time.process_time() < spun:
        pass
    busy1, total1 = machine_cpu()
    # (ticks / CLK_TCK: equal deltas on a machine busy throughout differ in the last bits)
    assert 0 <= busy1 - busy0 <= total1 - total0 + 1e-6
    assert busy1 - busy0 >= 0.2  # at least most of the spin (clock ticks are 10 ms)
    assert total1 - total0 <= (os.cpu_count() or 1) * 60  # the test's wall time, all cores (sanity)


def test_own_cpu_counts_every_thread_of_the_harness():
    """The latency phase's producer and scraper share the machine with the worker; their
    CPU (this process, all its threads) is reported as ``harness_cpu_seconds``."""
    import threading
    import time

    from bench.peers_bench import own_cpu

    def spin() -> None:
        until = time.thread_time() + 0.3
        while time.thread_time() < until:
            pass

    before = own_cpu()
    worker = threading.Thread(target=spin)
    worker.start()
    worker.join()
    assert own_cpu() - before >= 0.25


def test_the_worker_scrape_reads_what_it_did_per_stage():
    """Two runs of the same code that differ in CPU are compared by what the worker did:
    batches and commits per stage, KPI records final and provisional."""
    from bench.peers_bench import parse_metrics

    text = b"""# HELP crm_batch_size events (stage1) or partial messages (stage2) per batch
crm_batch_size_bucket{stage="stage1",le="+Inf"} 120.0
crm_batch_size_count{stage="stage1"} 120.0
crm_batch_size_sum{stage="stage1"} 500000.0
crm_batch_size_count{stage="stage2"} 40.0
crm_batch_processing_seconds_count{stage="stage1"} 30.0
crm_batch_processing_seconds_sum{stage="stage1"} 2.5
crm_kpi_records_published_total{final="true"} 900.0
crm_kpi_records_published_total{final="false"} 70.0
crm_events_processed_total{topic="crm.tickets.v1",partition="3"} 42.0
crm_consumer_lag{topic="crm.tickets.v1",partition="3"} 5.0
"""
    sample = parse_metrics(text)
    assert sample["activity"] == {"stage1_batches": 120.0, "stage1_batched": 500000.0, "stage2_batches": 40.0,
                                  "stage1_commits": 30.0, "stage1_commit_seconds": 2.5,
                                  "kpi_records_final": 900.0, "kpi_records_provisional": 70.0}
    assert sample["processed"] == {("crm.tickets.v1", 3): 42.0}
    assert sample["lag"] == 5.0


def test_the_worker_scrape_asks_a_real_metrics_server_for_its_series_only():
    """The bench asks for the series it reads (``name[]``, URL-encoded) and gets every one
    of them the worker has, and nothing else (no KPI gauge to format 4-20 times a second)."""
    import urllib.request

    from prometheus_client import CollectorRegistry

    from bench.peers_bench import SCRAPED, metrics_url, scrape
    from streams.core.records import KpiRecord
    from streams.metrics.collector import WorkerCollector
    from streams.runtime.stats import RuntimeStats
    from tests.unit.test_metrics_server import serve

    stats = RuntimeStats()
    stats.processed[("crm.tickets.v1", 2)] += 11
    stats.duplicates = 4
    stats.observe_batch("stage1", 300)
    stats.owned[("stage1", "crm.tickets.v1")] = 3
    record = KpiRecord(kpi="tickets_created", size="1h", start_ms=0, end_ms=3_600_000, dims=(), value=7.0, n=7,
                       stats={}, revision=0, final=True)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkerCollector(stats, lambda: [record], "app"))

    def check(port: int) -> tuple[dict | None, bytes, bytes]:
        def fetch(url: str) -> bytes:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read()
        return scrape(port), fetch(metrics_url(port)), fetch(f"http://127.0.0.1:{port}/metrics")

    sample, answer, everything = serve(registry, check)
    assert sample is not None
    assert sample["processed"] == {("crm.tickets.v1", 2): 11.0}
    assert sample["duplicate"] == 4.0 and sample["activity"]["stage1_batches"] == 1.0
    names = {line.split(b"{")[0].split(b" ")[0].decode() for line in answer.splitlines() if not line.startswith(b"#")}
    assert names and names <= set(SCRAPED)
    assert b"crm_tickets_created" in everything and b"crm_tickets_created" not in answer


def test_the_restart_phase_sums_what_the_tasks_restored_from_their_log_lines():
    """The restart phase reads the runtime's own restore lines (their format strings, so
    a change of wording cannot silently zero the figures)."""
    from bench.peers_bench import restored_state
    from streams.runtime import stage1, stage2

    log = "\n".join([
        "[2026-12-07 06:01:09,080] [5910] [INFO] worker started",
        "[...] [INFO] " + stage1.RESTORED_MESSAGE % (0, 41023, 2, 9, 4050, {0: 19068}, {0: 19068}),
        "[...] [INFO] " + stage2.RESTORED_MESSAGE % (0, 40948, 55549, 175),
        "[...] [INFO] " + stage1.RESTORED_MESSAGE % (1, 41094, 0, 0, 3973, {0: 18877}, {0: 18877}),
        "[...] [INFO] " + stage2.RESTORED_MESSAGE % (1, 19555, 18520, 174),
    ])
    assert restored_state(log) == {"customers": 82117, "customers_with_id_chunks": 2, "id_chunks": 9,
                                   "tickets": 8023, "buckets": 60503, "published_records": 74069}


def test_the_changelog_bench_runs_its_layouts_and_restores_what_is_still_needed():
    """A small run of ``bench.changelog_bench`` (it asserts its own restore): a customer
    with more ids than spill_at writes fewer bytes per event in chunks than in its record."""
    from bench.changelog_bench import DAY_MS, INLINE_MAX, START_MS, busy_customer, run

    events = busy_customer(per_day=2_000, days=2)  # (a sweep a minute: some ids older than the cutoff)
    measure_from = START_MS + DAY_MS
    inline = run(events, INLINE_MAX, 1, measure_from)
    chunked = run(events, 16, 1, measure_from)
    assert inline["events"] == chunked["events"] == 2_000
    assert inline["ids_remembered"] == chunked["ids_remembered"] > 16
    assert chunked["bytes_per_event"] < inline["bytes_per_event"] / 5


def test_the_floor_sends_each_record_once_in_even_shares_in_the_order_written():
    from bench.peers_contenders import transaction_share

    for counts in ({"a": 0, "b": 1, "c": 7}, {"a": 1_000, "b": 3}, {"a": 5}):
        for transactions in (1, 2, 3, 7, 250):
            shares = [transaction_share(counts, transactions, index) for index in range(transactions)]
            for topic, n in counts.items():
                sent = [i for share in shares for i in share[topic]]
                assert sent == list(range(n)), (counts, transactions)
                sizes = [len(share[topic]) for share in shares]
                assert max(sizes) - min(sizes) <= 1


def test_the_floor_names_its_topics_after_the_workers_without_app_id_or_prefix():
    from bench.peers_contenders import floor_topic

    assert floor_topic("crm.kpi.v1", "bench-worker-1") == "floor.crm.kpi.v1"
    assert floor_topic("bench-worker-1.stage1-changelog", "bench-worker-1") == "floor.stage1-changelog"
    assert floor_topic("t1.crm.kpi-partials", "bench-worker-1", "t1.") == "floor.crm.kpi-partials"


def test_the_results_table_and_ratios_carry_the_floor():
    from bench.peers_bench import ratios, table

    results = {"ceiling": {"events": 10, "cpu_seconds": 1.0, "events_per_core_second": 400_000,
                           "wall_events_per_second": 1},
               "worker": {"events": 10, "cpu_seconds": 1.0, "events_per_core_second": 20_000,
                          "wall_events_per_second": 1},
               "floor": {"events": 10, "cpu_seconds": 1.0, "events_per_core_second": 100_000,
                         "wall_events_per_second": 1}}
    assert ratios(results)["floor/ceiling"] == 0.25 and ratios(results)["worker/floor"] == 0.2
    row = next(line for line in table(results).splitlines() if line.startswith("| floor "))
    assert "| 0.250× | 0.20× |" in row
