"""The compiled core (streams.core.native): which build a process uses, and that the
compiled and the interpreted core produce the same results on the same input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from streams.core import native

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fresh_native(monkeypatch, tmp_path):
    """native with its build root in tmp_path (and its status restored afterwards)."""
    monkeypatch.setattr(native, "status", native.status)
    monkeypatch.setattr(native, "COMPILED_ROOT", tmp_path / "_compiled")
    monkeypatch.delenv("CRM_KPI_CORE", raising=False)
    return tmp_path / "_compiled"


def test_without_a_build_the_core_runs_interpreted(fresh_native):
    path = ["/src/streams/core"]
    assert native.activate(path).startswith("interpreted (no compiled core")
    assert path == ["/src/streams/core"]


def test_a_build_for_the_current_sources_goes_first_on_the_package_path(fresh_native):
    build = fresh_native / native.tag()
    build.mkdir(parents=True)
    (build / "BUILT").write_text(native.tag())
    path = ["/src/streams/core"]
    assert native.activate(path) == f"compiled (mypyc, build {native.tag()})"
    assert path == [str(build), "/src/streams/core"]


def test_a_half_written_build_is_not_used(fresh_native):
    (fresh_native / native.tag()).mkdir(parents=True)  # no BUILT marker: the build did not finish
    path: list[str] = []
    assert native.activate(path).startswith("interpreted")
    assert path == []


def test_a_build_of_other_sources_is_stale_and_not_used(fresh_native):
    old = fresh_native / "0123456789abcdef"
    old.mkdir(parents=True)
    (old / "BUILT").write_text("0123456789abcdef")
    path: list[str] = []
    assert "other sources" in native.activate(path)
    assert path == []


def test_crm_kpi_core_python_ignores_a_build(fresh_native, monkeypatch):
    build = fresh_native / native.tag()
    build.mkdir(parents=True)
    (build / "BUILT").write_text(native.tag())
    monkeypatch.setenv("CRM_KPI_CORE", "python")
    path: list[str] = []
    assert native.activate(path) == "interpreted (CRM_KPI_CORE=python)"
    assert path == []


def test_crm_kpi_core_compiled_refuses_to_run_without_a_build(fresh_native, monkeypatch):
    monkeypatch.setenv("CRM_KPI_CORE", "compiled")
    with pytest.raises(RuntimeError, match="make compile"):
        native.activate([])


def test_an_unknown_crm_kpi_core_is_an_error(fresh_native, monkeypatch):
    monkeypatch.setenv("CRM_KPI_CORE", "fast")
    with pytest.raises(RuntimeError, match="auto, python, compiled"):
        native.activate([])


def test_the_tag_follows_the_sources(monkeypatch, tmp_path):
    for name in native.COMPILED:
        shutil.copy(native.HERE / f"{name}.py", tmp_path / f"{name}.py")
    monkeypatch.setattr(native, "HERE", tmp_path)
    before = native.tag()
    with open(tmp_path / "merge.py", "a") as handle:
        handle.write("\n# an edit\n")
    assert native.tag() != before


def _run(args: list[str], mode: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CRM_KPI_CORE": mode, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _current_build() -> Path | None:
    build = native.build_dir()
    return build if (build / "BUILT").is_file() else None


@pytest.fixture
def compiled_build() -> Path:
    build = _current_build()
    if build is None:
        if os.environ.get("CI"):
            pytest.fail("no compiled core for these sources: the bootstrap's `make compile` step should have built it")
        pytest.skip("no compiled core for these sources (run `make compile`)")
    return build


def test_the_compiled_build_is_what_a_process_loads(compiled_build, tmp_path):
    probe = ("from streams.core import native; import streams.replay, streams.core.chunks; "
             "print(native.status); print(','.join(native.loaded_compiled()))")
    status, loaded = _run(["-c", probe], "compiled", tmp_path).stdout.splitlines()
    assert status == f"compiled (mypyc, build {compiled_build.name})"
    assert loaded.split(",") == sorted(native.COMPILED)
    status, loaded = _run(["-c", probe], "python", tmp_path).stdout.splitlines()
    assert status.startswith("interpreted") and loaded == ""


def test_compiled_and_interpreted_core_give_identical_results(compiled_build, tmp_path):
    """Three simulated days with duplicates, late and malformed events through
    ``crm-kpi replay`` in both builds: every output line is the same."""
    _run(["-m", "streams.cli", "simulate", "--out", "events.jsonl", "--customers", "1500",
          "--seed", "11", "--duration", "3d"], "python", tmp_path)
    outputs = ("kpis", "sla", "signals", "health", "dlq")
    for mode in ("python", "compiled"):
        _run(["-m", "streams.cli", "replay", "events.jsonl", "-q",
              "--out", f"kpis-{mode}.jsonl", "--sla-out", f"sla-{mode}.jsonl",
              "--signals-out", f"signals-{mode}.jsonl", "--health-out", f"health-{mode}.jsonl",
              "--dlq", f"dlq-{mode}.jsonl"], mode, tmp_path)

    def lines(name: str, mode: str) -> list[dict]:
        rows = [json.loads(line) for line in (tmp_path / f"{name}-{mode}.jsonl").read_text().splitlines()]
        for row in rows:
            row.pop("rejected_at_ms", None)  # the DLQ's wall-clock stamp
        return rows

    for name in outputs:
        interpreted, compiled = lines(name, "python"), lines(name, "compiled")
        assert interpreted == compiled, name
    # the comparison is not vacuous
    assert len(lines("kpis", "python")) > 10_000
    assert len(lines("sla", "python")) > 100 and len(lines("health", "python")) > 1_000
    assert lines("signals", "python") and lines("dlq", "python")
