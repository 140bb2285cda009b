"""Rate limit for the Kafka client's repeated warnings and errors.

While the broker is unreachable, aiokafka logs every failed connection attempt, metadata
refresh and coordinator lookup - about 3,000 lines a second per worker, which buries
everything else and fills disks. :class:`RepeatFilter` lets the first line of each kind
(logger and message template, whatever its arguments) through, drops the repeats for
``interval_s``, and appends to the next line of that kind how many were dropped. INFO and
below pass unchanged (the chaos suite reads aiokafka's group-join lines).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

INTERVAL_S = 10.0


class RepeatFilter(logging.Filter):
    """At most one WARNING-or-above record per (logger, message template) every
    ``interval_s``; the next one that passes says how many were suppressed."""

    def __init__(self, interval_s: float = INTERVAL_S, clock: Callable[[], float] = time.monotonic,
                 max_kinds: int = 1_000) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.clock = clock
        self.max_kinds = max_kinds
        self.kinds: dict[tuple[str, str], list] = {}  # -> [time last passed, suppressed since]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, str(record.msg))
        now = self.clock()
        entry = self.kinds.get(key)
        if entry is not None and now - entry[0] < self.interval_s:
            entry[1] += 1
            return False
        if entry is not None and entry[1] and isinstance(record.msg, str):
            # no '%' of its own: the suffix must not disturb the record's formatting
            record.msg += f" [{entry[1]} more like this suppressed in the last {now - entry[0]:.0f} s]"
        if entry is None and len(self.kinds) >= self.max_kinds:
            self.kinds.clear()
        self.kinds[key] = [now, 0]
        return True


def quiet_repeated_client_logs(prefix: str = "aiokafka", interval_s: float = INTERVAL_S) -> RepeatFilter:
    """Install one :class:`RepeatFilter` on every logger under ``prefix`` (a logger's
    filters see only the records logged to it, not to its children, so each gets it).
    Import the client first: its modules create their loggers on import."""
    shared = RepeatFilter(interval_s)
    manager = logging.Logger.manager
    names = [name for name, logger in list(manager.loggerDict.items())
             if isinstance(logger, logging.Logger) and (name == prefix or name.startswith(prefix + "."))]
    for name in [prefix, *names]:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatFilter) for f in logger.filters):
            logger.addFilter(shared)
    return shared
