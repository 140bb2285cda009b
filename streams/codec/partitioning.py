"""On which input partition a customer's events belong, to dead-letter misrouted ones.

The catalogue makes ``customer_id`` the Kafka message key of every input topic, and the
topics are co-partitioned: all of a customer's events meet on one stage-1 task, where
its state and its dedupe set live. The partition is the one Kafka's default partitioner
gives the key - ``murmur2(key) & 0x7fffffff % partitions``, as the Java client and
aiokafka compute it (librdkafka: ``partitioner=murmur2_random``). A message that sits
on another partition (sent without a key, with another key, or to an explicit
partition) would split the customer across two tasks and be counted twice; it is
dead-lettered as :attr:`~streams.codec.reasons.Reason.MISROUTED` instead.

The home partition is computed from the event's ``customer_id`` whatever the message's
key, so a keyless message on its customer's partition is accepted.
"""

from __future__ import annotations

from streams.codec.events import Rejected
from streams.codec.reasons import Reason
from streams.core.murmur import murmur2

__all__ = ["HomePartitions", "default_partition", "misrouted", "murmur2"]


def default_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` among ``partitions``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class HomePartitions(dict[str, int]):
    """``homes[customer_id]``: the customer's partition, memoised (a dict lookup per
    message on the hot path instead of encoding the id and hashing it). The memo is
    dropped whole when it reaches ``max_entries``."""

    def __init__(self, partitions: int, max_entries: int = 500_000) -> None:
        super().__init__()
        if partitions < 1:
            raise ValueError(f"partitions must be positive, got {partitions}")
        self.partitions = partitions
        self.max_entries = max_entries

    def __missing__(self, customer_id: str) -> int:
        if len(self) >= self.max_entries:
            self.clear()
        home = self[customer_id] = default_partition(customer_id.encode(), self.partitions)
        return home


def misrouted(partition: int, home: int, partitions: int) -> Rejected:
    """The rejection of a valid event read from ``partition`` whose customer's is ``home``."""
    return Rejected(
        Reason.MISROUTED,
        f"read from partition {partition}, but its customer_id's partition is {home} of {partitions} "
        "(customer_id is the Kafka key; default murmur2 partitioner)",
    )
