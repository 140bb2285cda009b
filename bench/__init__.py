"""Benchmarks: `python -m bench.<name>` (e.g. `python -m bench.codec_bench`)."""
