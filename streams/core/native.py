"""The compiled core: most of :mod:`streams.core` compiled to C with mypyc, used when built.

``scripts/compile_core.py`` (run by ``make bootstrap``; ``make compile`` runs it alone)
compiles the modules in :data:`COMPILED` into ``streams/core/_compiled/<tag>/``, where
``<tag>`` is a hash of those modules' sources and the interpreter. On import,
:mod:`streams.core` calls :func:`activate`: if the directory for the *current* sources
exists, it is put first on the package's ``__path__``, so ``streams.core.merge`` and the
rest load from the compiled extension modules; the msgspec structs (events, records,
customer and ticket state), this module and ``__init__`` stay Python. The compiled code
is the same source with the same semantics (mypyc checks the annotations at run time);
``tests/unit/test_native.py`` runs the same input through both builds and compares
every output.

Editing a compiled module changes the tag, so a stale build is never used: the core
runs interpreted (slower, identical results) until it is compiled again. ``CRM_KPI_CORE``
chooses: ``auto`` (default: compiled when built for these sources), ``python`` (always
interpreted), ``compiled`` (refuse to start without a current build: benchmarks).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
COMPILED_ROOT = HERE / "_compiled"

COMPILED: tuple[str, ...] = (
    "aggregates", "calendar", "chunks", "customers", "durations", "kpis", "labels", "merge",
    "murmur", "partials", "pipeline", "registry", "sketch", "sla", "tickets", "windows",
)
"""Modules compiled by mypyc. Not in it: the msgspec struct modules (``events``,
``records``, ``customer_state``, ``ticket_state``: compiled, a struct's
``msgspec.field(default_factory=...)`` fails its attribute's type check at import, and
mypyc drops class keywords such as ``frozen=True``, python/mypy#21938) and the import
machinery (``__init__``, ``native``)."""

GROUP = "streams.core._native"
"""mypyc's shared library for the compiled modules: ``streams/core/_native__mypyc*.so``
inside the build directory (found through the package ``__path__``, no ``sys.path`` entry)."""

MODES = ("auto", "python", "compiled")

status = "interpreted (not activated)"
"""How the core runs in this process; the worker logs it and benchmarks record it."""


def tag() -> str:
    """Hash of the compiled modules' sources and of the interpreter ABI."""
    digest = hashlib.sha1(sys.implementation.cache_tag.encode())
    digest.update(sys.platform.encode())
    for name in COMPILED:
        digest.update(name.encode())
        digest.update((HERE / f"{name}.py").read_bytes())
    return digest.hexdigest()[:16]


def build_dir() -> Path:
    return COMPILED_ROOT / tag()


def activate(package_path: list[str]) -> str:
    """Put the current build first on ``package_path`` (``streams.core.__path__``) if there
    is one and ``CRM_KPI_CORE`` allows; returns and records the status."""
    global status
    mode = os.environ.get("CRM_KPI_CORE", "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise RuntimeError(f"CRM_KPI_CORE={mode!r}: expected one of {', '.join(MODES)}")
    if mode == "python":
        status = "interpreted (CRM_KPI_CORE=python)"
        return status
    where = build_dir()
    if not (where / "BUILT").is_file():
        if mode == "compiled":
            raise RuntimeError(
                f"CRM_KPI_CORE=compiled but there is no compiled core for these sources ({where}); "
                "run `make compile` (needs a C compiler and the Python headers)"
            )
        stale = COMPILED_ROOT.is_dir() and any(COMPILED_ROOT.iterdir())
        status = ("interpreted (the compiled core is for other sources: run `make compile`)" if stale
                  else "interpreted (no compiled core: `make compile` builds it)")
        return status
    if str(where) not in package_path:
        package_path.insert(0, str(where))
    status = f"compiled (mypyc, build {where.name})"
    return status


def loaded_compiled() -> list[str]:
    """The core modules imported so far that came from the compiled build."""
    return sorted(
        name for name in COMPILED
        if (module := sys.modules.get(f"streams.core.{name}")) is not None
        and str(getattr(module, "__file__", "")).endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    )
