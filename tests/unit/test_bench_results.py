"""Where `python -m bench.peers_bench` writes its results: never over an earlier run."""

from __future__ import annotations

from bench.peers_bench import result_path


def test_the_first_run_of_a_day_gets_the_date_and_a_later_one_its_start_time(tmp_path):
    first = result_path(tmp_path, "2026-11-23", "20261123-215540")
    assert first == tmp_path / "2026-11-23.json"
    first.write_text("{}")
    assert result_path(tmp_path, "2026-11-23", "20261123-223000") == tmp_path / "2026-11-23-223000.json"
