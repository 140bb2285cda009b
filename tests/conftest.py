"""Shared fixtures. ``kafka``: one real Apache Kafka broker (KRaft, 127.0.0.1) per session,
started by streams.localkafka and stopped at the end. A missing broker is a failure,
never a skip: a suite that skipped its integration tests has proven nothing."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import pytest

from streams import localkafka


@dataclass
class KafkaBroker:
    """What tests get from the ``kafka`` fixture."""

    bootstrap: str
    broker: localkafka.LocalKafka
    partitions: int

    def new_topic(
        self,
        prefix: str,
        partitions: int | None = None,
        compacted: bool = False,
        config: Mapping[str, str] | None = None,
    ) -> str:
        """Create a topic named ``<prefix>-<random>`` (leaders elected) and return its name."""
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        localkafka.create_topics(
            self.bootstrap,
            [name],
            partitions=partitions or self.partitions,
            compacted=[name] if compacted else (),
            config=config,
        )
        return name


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaBroker]:
    raw = os.environ.get("CRM_KPI_TEST_PARTITIONS", "6")
    if not raw.isdigit() or int(raw) < 1:
        pytest.fail(
            f"CRM_KPI_TEST_PARTITIONS must be a positive integer, got {raw!r}", pytrace=False
        )
    partitions = int(raw)
    try:
        # start() resolves the jars first when the cache is cold.
        broker = localkafka.start(partitions_default=partitions)
    except localkafka.LocalKafkaError as exc:
        # One line for a missing java/mvn; for a failed start it names the broker log
        # (kept on disk) and quotes its tail.
        pytest.fail(f"local Kafka broker unavailable: {exc}", pytrace=False)
    try:
        names, compacted = localkafka.catalogue_topics()
        localkafka.create_topics(
            broker.bootstrap, names, partitions=partitions, compacted=compacted
        )
        yield KafkaBroker(bootstrap=broker.bootstrap, broker=broker, partitions=partitions)
    finally:
        broker.stop()
