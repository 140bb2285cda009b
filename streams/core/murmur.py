"""Kafka's murmur2: the hash of its default partitioner, compiled with the core.

``org.apache.kafka.common.utils.Utils.murmur2`` (seed ``0x9747b28c``), as the Java
client and aiokafka compute it. It runs for every new key the worker sends (KPI records
and SLA events have a new key per window) and for every new customer it routes: in pure
Python 2.5-4 µs per key, 0.1 µs compiled with the 64-bit integers below (mypyc keeps
them unboxed; interpreted, ``i64`` is ``int`` and every product is masked to 32 bits, so
the result is the same).
"""

from __future__ import annotations

from mypy_extensions import i64


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of ``data`` as an unsigned 32-bit integer."""
    length: i64 = len(data)
    m: i64 = 0x5BD1E995
    mask: i64 = 0xFFFFFFFF
    h: i64 = (0x9747B28C ^ length) & mask
    full: i64 = length - length % 4
    i: i64 = 0
    k: i64
    while i < full:  # little-endian 32-bit words; every product stays below 2**63
        k = i64(data[i]) | (i64(data[i + 1]) << 8) | (i64(data[i + 2]) << 16) | (i64(data[i + 3]) << 24)
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
        i += 4
    rest: i64 = length - full
    if rest:
        if rest >= 3:
            h ^= i64(data[full + 2]) << 16
        if rest >= 2:
            h ^= i64(data[full + 1]) << 8
        h ^= i64(data[full])
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return int(h)
