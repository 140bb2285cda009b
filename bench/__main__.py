"""Run the benchmarks: ``python -m bench [--list] [name ...] [-- benchmark args]``.

A benchmark is a module ``bench/<name>_bench.py`` with a ``main()``; ``name`` may be given
with or without the ``_bench`` suffix (``core`` = ``core_bench``). Without names, all of
them run, in alphabetical order. Each runs in its own Python process, so one benchmark's
memory (peak RSS) and warm caches never leak into the next one's figures. Arguments after
``--`` go to every selected benchmark.

Benchmarks print figures for people to read; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
SUFFIX = "_bench"


def discover() -> dict[str, Path]:
    """Benchmark name (module name without ``_bench``) -> file, sorted by name."""
    return {
        path.stem.removesuffix(SUFFIX): path for path in sorted(BENCH_DIR.glob(f"*{SUFFIX}.py"))
    }


def summary(path: Path) -> str:
    """First line of the module docstring (read without importing the module)."""
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return docstring.strip().splitlines()[0] if docstring.strip() else "(no description)"


def run(name: str, path: Path, extra: list[str]) -> tuple[int, float]:
    """Run one benchmark as ``python -m bench.<module>``; returns (exit code, seconds)."""
    width = 78
    print("=" * width)
    print(f"{name}: {summary(path)}")
    print(f"$ python -m bench.{path.stem} {' '.join(extra)}".rstrip())
    print("-" * width, flush=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    began = time.monotonic()
    code = subprocess.call([sys.executable, "-m", f"bench.{path.stem}", *extra], cwd=REPO_ROOT, env=env)
    return code, time.monotonic() - began


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the chosen benchmarks, print a closing line per run."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1 :]
    available = discover()
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.splitlines()[0],
        epilog="available: " + ", ".join(available),
    )
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)

    if args.list:
        for name, path in available.items():
            print(f"{name:<12} {summary(path)}")
        return 0
    chosen = [name.removesuffix(SUFFIX) for name in args.names] or list(available)
    unknown = [name for name in chosen if name not in available]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(available)}")

    results = [(name, *run(name, available[name], extra)) for name in chosen]
    print("=" * 78)
    for name, code, seconds in results:
        print(f"{name:<12} {'ok' if code == 0 else f'FAILED (exit {code})':<18} {seconds:6.1f} s")
    return 0 if all(code == 0 for _, code, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
