"""Compile the core with mypyc: streams/core/<module>.py -> streams/core/_compiled/<tag>/.

Run by ``make bootstrap`` (``make compile`` alone). Idempotent: nothing to do when the
build for the current sources exists. Older builds are removed. Without a C compiler or
the Python headers it fails with a message and the core runs interpreted (identical
results, slower); see streams/core/native.py for how a build is chosen at import.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ["CRM_KPI_CORE"] = "python"  # this process imports the sources, never a build
sys.path.insert(0, str(ROOT))

from streams.core import native  # noqa: E402  (after the sys.path entry)


def say(message: str) -> None:
    print(f"[compile-core] {message}", flush=True)


def build(force: bool = False) -> Path:
    target = native.build_dir()
    if (target / "BUILT").is_file() and not force:
        say(f"up to date: {target.relative_to(ROOT)}")
        return target
    from mypyc.build import mypycify  # build-time dependency (the dev extra)
    from setuptools import Distribution

    started = time.monotonic()
    sources = [f"streams/core/{name}.py" for name in native.COMPILED]
    say(f"compiling {len(sources)} modules with mypyc (20-60 s) ...")
    with tempfile.TemporaryDirectory(prefix="crm-kpi-mypyc-") as tmp:
        os.chdir(ROOT)  # mypyc names modules after their paths relative to here
        extensions = mypycify(sources, opt_level="3", group_name=native.GROUP,
                              target_dir=os.path.join(tmp, "c"))
        dist = Distribution({"name": "crm-kpi-core", "ext_modules": extensions})
        command = dist.get_command_obj("build_ext")
        command.build_lib = os.path.join(tmp, "lib")
        command.build_temp = os.path.join(tmp, "temp")
        dist.run_command("build_ext")
        built = Path(tmp, "lib", "streams", "core")
        staging = native.COMPILED_ROOT / f".{target.name}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        libraries = sorted(built.glob("*.so"))
        expected = set(native.COMPILED) | {native.GROUP.rsplit(".", 1)[1] + "__mypyc"}
        found = {path.name.split(".", 1)[0] for path in libraries}
        if found != expected:
            raise SystemExit(f"mypyc built {sorted(found)}, expected {sorted(expected)}")
        for path in libraries:
            shutil.copy2(path, staging / path.name)
    (staging / "BUILT").write_text(f"{native.tag()}\n")
    for old in native.COMPILED_ROOT.iterdir():
        if old.name != staging.name:
            shutil.rmtree(old, ignore_errors=True)
    staging.rename(target)
    say(f"built {target.relative_to(ROOT)} in {time.monotonic() - started:.0f} s")
    return target


if __name__ == "__main__":
    build(force="--force" in sys.argv[1:])
