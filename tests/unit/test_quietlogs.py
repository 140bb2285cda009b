"""The Kafka client's repeated warnings and errors are rate-limited: one line of a kind
per interval, the next one saying how many were suppressed; INFO passes untouched."""

from __future__ import annotations

import logging

from streams.runtime.quietlogs import RepeatFilter, quiet_repeated_client_logs


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def record(msg: str, *args: object, level: int = logging.ERROR, name: str = "aiokafka") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_one_line_of_a_kind_per_interval_then_the_count_of_the_suppressed_ones() -> None:
    clock = Clock()
    quiet = RepeatFilter(interval_s=10, clock=clock)
    template = "Unable connect to node with id %s: %s"
    assert quiet.filter(record(template, 1, "refused"))
    passed = 0
    for i in range(3_000):  # one second of an outage
        clock.now += 1 / 3_000
        passed += quiet.filter(record(template, 1, f"refused {i}"))
    assert passed == 0
    # another kind (other template or logger) is not held back by the first one
    assert quiet.filter(record("Unable to update metadata from %s", [1]))
    assert quiet.filter(record(template, 1, "refused", name="aiokafka.conn"))
    clock.now += 10
    last = record(template, 1, "refused again")
    assert quiet.filter(last)
    assert last.getMessage().startswith("Unable connect to node with id 1: refused again [3000 more like this")
    assert "suppressed in the last 11 s]" in last.getMessage()
    clock.now += 10
    plain = record(template, 1, "once more")
    assert quiet.filter(plain) and plain.getMessage() == "Unable connect to node with id 1: once more"


def test_info_and_debug_always_pass() -> None:
    quiet = RepeatFilter(interval_s=10, clock=Clock())
    joined = "Joined group '%s' (generation %s) with member_id %s"
    assert all(quiet.filter(record(joined, "g", n, "m", level=logging.INFO)) for n in range(100))


def test_installed_on_every_client_logger_once() -> None:
    import aiokafka.consumer.fetcher  # noqa: F401 - creates its logger

    first = quiet_repeated_client_logs("aiokafka")
    second = quiet_repeated_client_logs("aiokafka")
    for name in ("aiokafka", "aiokafka.conn", "aiokafka.consumer.fetcher"):
        filters = [f for f in logging.getLogger(name).filters if isinstance(f, RepeatFilter)]
        assert filters == [first], name
    assert second is not first
    for name in ("aiokafka", "aiokafka.conn", "aiokafka.consumer.fetcher"):  # leave no trace
        logging.getLogger(name).removeFilter(first)
