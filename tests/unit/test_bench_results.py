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
    assert 0 <= busy1 - busy0 <= total1 - total0
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
