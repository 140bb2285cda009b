"""Every benchmark runs, at a size that takes seconds: a benchmark nobody runs for a while
must not rot unnoticed (changelog_bench's own restore check once did). Figures are not
looked at; several benchmarks assert their own results."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench.__main__ import REPO_ROOT, discover

# arguments for a small run of each benchmark; peers needs a Kafka broker and takes
# minutes (its parts are tested in test_bench_results.py)
SMALL = {
    "changelog": ["--per-day", "2000", "--days", "2"],
    "codec": ["--events", "300", "--repeat", "1"],
    "core": ["--events", "3000", "--repeat", "1"],
    "faust_overhead": ["--events", "300"],
    "sketch": ["--values", "2000", "--partials", "20"],
    "timers": ["--tickets", "300", "--hours", "2", "--activity", "300", "--no-tracemalloc"],
}
NOT_HERE = {"peers"}


def test_every_benchmark_has_a_small_run():
    assert set(discover()) == set(SMALL) | NOT_HERE


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.kafka) if name == "faust_overhead" else name
                                  for name in sorted(SMALL)])  # (faust_overhead: on the local broker)
def test_a_small_run_of_the_benchmark_succeeds(name):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    run = subprocess.run([sys.executable, "-m", f"bench.{discover()[name].stem}", *SMALL[name]],
                         cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip(), "it printed no figures"
