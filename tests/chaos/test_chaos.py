"""Chaos on the real broker: while a simulated day streams in, workers are SIGKILLed 20
times, scaled 1 -> 3 -> 1, and the broker is stopped and started again. After each
scenario the pipeline runs until idle and every output equals ``replay`` of the same
input: the highest revision per KPI key, the SLA events, the churn signals and the
dead letters - nothing lost, nothing counted twice (docs/reliability.md).

Each scenario has its own broker and prints one line of figures (also repeated at the
end of the run). ``CRM_KPI_CHAOS_CUSTOMERS`` sizes the day (default 10,000 customers,
~40k events)."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from streams.localkafka import committed_offsets, end_offsets
from tests.chaos.support import (
    TOPICS,
    Figures,
    Fleet,
    Producer,
    assert_exact,
    compare_with_replay,
    id_chunks_restored,
    kpi_records_so_far,
    produce_heartbeats,
    produce_now,
    report,
    running,
    wait_for,
    wait_idle,
)
from tests.e2e.harness import metric_sum, scrape

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.chaos]

KILLS = 20
SEED = 20261102
# small batches: more transactions per second, so more kills land inside one
WORKER_ENV = {"CRM_KPI_BATCH_MAX_EVENTS": "5000"}


def unprocessed_input(fleet: Fleet) -> int:
    """Input messages past the stage-1 group's committed offsets (its resume points):
    what is not yet reflected in committed state. Read from the broker, not from the
    workers' lag gauges, which a rebalance can have just reset."""
    ends = asyncio.run(end_offsets(fleet.bootstrap, TOPICS.inputs()))
    committed = asyncio.run(committed_offsets(fleet.bootstrap, f"{fleet.app_id}-stage1"))
    return sum(max(0, end - committed.get(tp, 0)) for tp, end in ends.items())


def _first_output(fleet: Fleet) -> None:
    wait_for(lambda: kpi_records_so_far(fleet.bootstrap) > 0, 120, "the first KPI records", fleet)


@pytest.mark.timeout(540)
def test_twenty_sigkills_mid_stream_lose_and_duplicate_nothing(chaos_broker, chaos_workload, tmp_path):
    """Two workers; 20 times one of them (seeded choice) gets SIGKILL at a random moment
    after it has joined its groups - restoring, rebalancing or processing - and is started
    again after a random pause, while the producer streams the day."""
    rng = random.Random(SEED)
    began = time.monotonic()
    # and customers' dedupe ids in chunks beyond two ids (most customers: the workload's
    # duplicates after a kill must meet the ids of the chunks restored)
    fleet = Fleet(chaos_broker.bootstrap, "chaos-kill", tmp_path, {**WORKER_ENV, "CRM_KPI_DEDUPE_INLINE_IDS": "2"})
    with running(fleet):
        fleet.start(0)
        fleet.start(1)
        # the day arrives over about as long as the kills take (20 x ~8 s)
        producer = Producer(fleet.bootstrap, chaos_workload.messages, rate=len(chaos_workload.messages) / 150)
        producer.start()
        _first_output(fleet)
        for _ in range(KILLS):
            slot = rng.choice(sorted(fleet.workers))
            victim = fleet.workers[slot]
            # a kill before the victim joined a group would leave a member id we cannot
            # see in its log: the group would wait out its session (45-60 s)
            wait_for(victim.joined, 120, f"worker {slot} to join its groups", fleet)
            time.sleep(rng.uniform(0.0, 5.0))
            fleet.kill(slot)  # the other worker keeps running
            time.sleep(rng.uniform(0.0, 2.0))
            fleet.start(slot)
        producer.finish(timeout=300)
        produce_heartbeats(fleet.bootstrap, chaos_workload)
        idle = wait_idle(fleet, timeout_s=300)
        comparison = compare_with_replay(fleet.bootstrap, chaos_workload)
        figures = Figures("kill-9", chaos_workload, fleet, comparison, time.monotonic() - began, idle)
        report(figures)
    assert fleet.kills == KILLS
    assert id_chunks_restored(fleet.log_text()) > 0
    assert_exact(figures)


@pytest.mark.timeout(420)
def test_scaling_one_three_one_loses_and_duplicates_nothing(chaos_broker, chaos_workload, tmp_path):
    """One worker; two more join mid-stream (each of the three then owns partitions of
    both stages); later both leave with SIGTERM (graceful) and one worker finishes."""
    began = time.monotonic()
    fleet = Fleet(chaos_broker.bootstrap, "chaos-scale", tmp_path, dict(WORKER_ENV))
    with running(fleet):
        fleet.start(0)
        producer = Producer(fleet.bootstrap, chaos_workload.messages, rate=len(chaos_workload.messages) / 60)
        producer.start()
        _first_output(fleet)
        fleet.start(1)
        fleet.start(2)

        def three_share_the_work() -> bool:
            scrapes = [scrape(port) for port in fleet.ports()]
            return all(s is not None and metric_sum([s], "crm_owned_partitions", stage="stage1") > 0
                       and metric_sum([s], "crm_owned_partitions", stage="stage2") > 0 for s in scrapes)

        wait_for(three_share_the_work, 120, "three workers owning partitions of both stages", fleet)
        time.sleep(8)  # processing with three
        fleet.terminate(1)
        time.sleep(3)
        fleet.terminate(2)
        producer.finish(timeout=300)
        produce_heartbeats(fleet.bootstrap, chaos_workload)
        idle = wait_idle(fleet, timeout_s=300)
        comparison = compare_with_replay(fleet.bootstrap, chaos_workload)
        figures = Figures("scale-1-3-1", chaos_workload, fleet, comparison, time.monotonic() - began, idle,
                          extra={"max_workers": 3})
        report(figures)
    assert fleet.graceful_stops == 2
    assert_exact(figures)


@pytest.mark.timeout(420)
def test_broker_stop_and_restart_loses_and_duplicates_nothing(chaos_broker, chaos_workload, tmp_path):
    """Two workers with a backlog; the broker is stopped (SIGTERM, controlled shutdown)
    and started again on the same ports and data while they process it. The workers must
    ride it out (no crash, no restart), then the rest of the day arrives."""
    began = time.monotonic()
    # The input pauses while the broker is down, and the workers may have caught up
    # before it stops (controlled shutdown takes seconds). Pausing longer than
    # idle_timeout with the broker up is real idleness - the rest of the day would then
    # be late and order-dependent figures could differ from replay - so idle_timeout here
    # exceeds those broker-up pauses; only the outage could make a worker idle, and must not.
    fleet = Fleet(chaos_broker.bootstrap, "chaos-broker", tmp_path, {**WORKER_ENV, "CRM_KPI_IDLE_TIMEOUT": "8s"})
    messages = chaos_workload.messages
    cut = 2 * len(messages) // 3
    with running(fleet):
        # two thirds of the day as a backlog, so that the broker stops while it is processed
        produce_now(fleet.bootstrap, messages[:cut], live=False)
        fleet.start(0)
        fleet.start(1)

        def processing_the_backlog() -> bool:
            scrapes = [s for s in (scrape(port) for port in fleet.ports()) if s is not None]
            return metric_sum(scrapes, "crm_events_processed_total") >= cut // 10

        wait_for(processing_the_backlog, 120, "the workers to process a tenth of the backlog", fleet)
        lag_at_stop = unprocessed_input(fleet)
        stopped = time.monotonic()
        chaos_broker.restart()  # blocks until the broker serves metadata again
        outage = time.monotonic() - stopped
        fleet.check_alive()
        produce_now(fleet.bootstrap, messages[cut:])
        produce_heartbeats(fleet.bootstrap, chaos_workload)
        idle = wait_idle(fleet, timeout_s=300)
        comparison = compare_with_replay(fleet.bootstrap, chaos_workload)
        figures = Figures("broker-restart", chaos_workload, fleet, comparison, time.monotonic() - began, idle,
                          broker_restarts=1,
                          extra={"lag_at_broker_stop": lag_at_stop, "broker_outage": f"{outage:.1f}s"})
        report(figures)
    assert lag_at_stop > 0, "the broker must stop while the workers still have a backlog"
    assert fleet.starts == 2, "a worker had to be restarted"
    assert_exact(figures)
