"""Micro-benchmark of the quantile sketch: adds/s, merges/s, quantiles/s, wire sizes.

Run: ``.venv/bin/python bench/sketch_bench.py [--values 1000000]``
"""

from __future__ import annotations

import argparse
import random
import time

import msgspec

from streams.core.sketch import QuantileSketch


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s ({seconds / count * 1e6:.2f} µs each)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--values", type=int, default=1_000_000)
    parser.add_argument("--partials", type=int, default=2_000, help="sketches merged in the merge test")
    args = parser.parse_args()

    rng = random.Random(1)
    values = [rng.lognormvariate(5.0, 1.5) for _ in range(args.values)]

    sketch = QuantileSketch()
    start = time.perf_counter()
    for value in values:
        sketch.add(value)
    print(f"add:      {_rate(len(values), time.perf_counter() - start)}; {sketch.bucket_count()} buckets")

    # partials as stage 1 emits them: a few hundred values each
    chunk = max(1, len(values) // args.partials)
    partials = []
    for i in range(args.partials):
        part = QuantileSketch()
        part.extend(values[i * chunk : (i + 1) * chunk])
        partials.append(part)
    merged = QuantileSketch()
    start = time.perf_counter()
    for part in partials:
        merged.merge(part)
    elapsed = time.perf_counter() - start
    print(f"merge:    {_rate(len(partials), elapsed)} (partials of {chunk} values, "
          f"~{sum(p.bucket_count() for p in partials) // len(partials)} buckets each)")

    big = QuantileSketch()
    start = time.perf_counter()
    rounds = 200
    for _ in range(rounds):
        big.merge(sketch)
    print(f"merge:    {_rate(rounds, time.perf_counter() - start)} (full {sketch.bucket_count()}-bucket sketches)")

    start = time.perf_counter()
    for _ in range(rounds):
        sketch.quantiles((0.5, 0.9, 0.99))
    print(f"p50/90/99: {_rate(rounds, time.perf_counter() - start)}")

    wire = msgspec.msgpack.encode(sketch.to_wire())
    start = time.perf_counter()
    for _ in range(rounds):
        QuantileSketch.from_wire(msgspec.msgpack.decode(msgspec.msgpack.encode(sketch.to_wire())))
    print(f"wire:     {len(wire):,} bytes msgpack for the full sketch; "
          f"{len(msgspec.msgpack.encode(partials[0].to_wire())):,} bytes for one partial; "
          f"round trip {_rate(rounds, time.perf_counter() - start)}")


if __name__ == "__main__":
    main()
