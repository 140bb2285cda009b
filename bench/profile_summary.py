"""Where the time goes in a py-spy profile (collapsed stacks, ``--format raw``), as the
share of samples per function: inclusive (on the stack) and self (on top).

    python -m bench.profile_summary .cache/bench/runs/<time>/worker-profile.folded
    python -m bench.profile_summary FILE --match streams/ --top 40

``bench peers --profile`` writes such a file for the worker. A frame is
``function (file:line)``; lines are dropped, so a function counts once per stack.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    """``step (/repo/streams/runtime/stage1.py:180)`` -> ``step (streams/runtime/stage1.py)``."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match["file"]
    for marker in ("/streams/", "/bench/", "/site-packages/", "/lib/python"):
        at = path.find(marker)
        if at >= 0:
            path = path[at + 1 :]
            break
    return f"{match['function']} ({path})"


def summarise(lines: list[str]) -> tuple[int, Counter, Counter]:
    """Total samples, inclusive and self samples per function."""
    total = 0
    inclusive: Counter = Counter()
    own: Counter = Counter()
    for line in lines:
        line = line.rstrip("\n")
        if not line:
            continue
        stack, _, count_text = line.rpartition(" ")
        try:
            count = int(count_text)
        except ValueError:
            continue
        frames = [frame_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        for name in set(frames):
            inclusive[name] += count
        own[frames[-1]] += count
    return total, inclusive, own


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_summary", description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path, help="collapsed stacks from py-spy record --format raw")
    parser.add_argument("--top", type=int, default=30, help="rows per table")
    parser.add_argument("--match", default="", help="only functions whose name or file contains this")
    args = parser.parse_args(argv)
    if not args.profile.is_file():
        print(f"profile_summary: no such file: {args.profile}", file=sys.stderr)
        return 2
    total, inclusive, own = summarise(args.profile.read_text().splitlines())
    if total == 0:
        print(f"profile_summary: no samples in {args.profile}", file=sys.stderr)
        return 1
    print(f"{total:,} samples in {args.profile}")
    for title, counts in (("inclusive (on the stack)", inclusive), ("self (on top of the stack)", own)):
        print(f"\n{title}:")
        rows = [(name, n) for name, n in counts.most_common() if args.match in name][: args.top]
        for name, n in rows:
            print(f"  {100 * n / total:5.1f} %  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
