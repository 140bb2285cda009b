"""House rule: streams/core is pure - stdlib, msgspec and mypy_extensions' int types only,
never Kafka, asyncio, Prometheus, faust or the runtime. The streaming runtime calls core; core never calls it."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import streams.core

CORE = Path(streams.core.__file__).parent
ALLOWED_THIRD_PARTY = {"msgspec", "mypy_extensions"}  # (the latter: native int types for mypyc)
FORBIDDEN_STDLIB = {"asyncio", "socket", "threading", "multiprocessing", "subprocess", "http", "urllib"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_core_imports_only_stdlib_msgspec_and_itself():
    offenders = []
    files = sorted(CORE.rglob("*.py"))
    assert len(files) >= 10
    for path in files:
        for module in imported_modules(path):
            top = module.split(".")[0]
            if module.startswith("streams.core") or top in ALLOWED_THIRD_PARTY or top == "__future__":
                continue
            if top == "streams":
                offenders.append(f"{path.name}: {module} (core must not import the rest of the package)")
            elif top in FORBIDDEN_STDLIB:
                offenders.append(f"{path.name}: {module} (I/O or concurrency in core)")
            elif top not in sys.stdlib_module_names:
                offenders.append(f"{path.name}: {module} (third-party)")
    assert offenders == []


def test_the_rule_catches_a_forbidden_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import aiokafka\nfrom prometheus_client import Gauge\nimport asyncio\n")
    assert {"aiokafka", "prometheus_client", "asyncio"} <= imported_modules(bad)
