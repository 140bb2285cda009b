"""Fixtures of the chaos suite: one simulated day for all scenarios (with its replay) and
a dedicated broker per scenario, so that killing workers or restarting the broker never
disturbs other tests. The scenarios' figure lines are repeated at the end of the run."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from streams import localkafka
from tests.chaos.support import PARTITIONS, SUMMARY, TOPICS, Workload, build_workload

# ~40k events: a simulated day of 10,000 customers (override for a quick look)
CUSTOMERS = int(os.environ.get("CRM_KPI_CHAOS_CUSTOMERS", "10000"))


@pytest.fixture(scope="session")
def chaos_workload() -> Workload:
    return build_workload(seed=20261102, customers=CUSTOMERS)


@pytest.fixture
def chaos_broker() -> Iterator[localkafka.LocalKafka]:
    try:
        broker = localkafka.start(partitions_default=PARTITIONS)
    except localkafka.LocalKafkaError as exc:
        pytest.fail(f"local Kafka broker unavailable: {exc}", pytrace=False)
    try:
        localkafka.create_topics(broker.bootstrap, TOPICS.inputs(), partitions=PARTITIONS)
        yield broker
    finally:
        broker.stop()


def pytest_terminal_summary(terminalreporter) -> None:
    if SUMMARY:
        terminalreporter.section("chaos figures")
        for line in SUMMARY:
            terminalreporter.write_line(line)
