"""faust per-event overhead: a faust agent iterating events vs. aiokafka getmany batches.

Same topic, same messages (simulated CRM events), on the project's local Kafka broker, in
one run: (1) aiokafka ``getmany`` + codec decode, (2) the same through a faust-streaming
agent that only decodes and counts per event. The ratio is why the worker consumes in
batches inside its faust app instead of through agents (docs/architecture.md). Figures
are printed; nothing is asserted.

    python -m bench.faust_overhead_bench [--events 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from streams import localkafka
from streams.codec import decode_event
from streams.simulate import SimConfig, generate

TOPIC = "bench.faust-overhead"
PARTITIONS = 6


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def produce(bootstrap: str, values: list[tuple[bytes, bytes]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=512 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(TOPIC, value, key=key) for key, value in values]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def aiokafka_batches(bootstrap: str, total: int) -> tuple[float, float]:
    """Seconds and CPU seconds to consume and decode ``total`` messages with getmany."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=bootstrap, group_id="bench-batches",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    seen = 0
    began, cpu = time.perf_counter(), cpu_seconds()
    try:
        while seen < total:
            batch = await consumer.getmany(timeout_ms=500, max_records=20_000)
            for messages in batch.values():
                for message in messages:
                    decode_event(message.value)
                seen += sum(len(m) for m in batch.values())
    finally:
        await consumer.stop()
    return time.perf_counter() - began, cpu_seconds() - cpu


FAUST_APP = textwrap.dedent('''
    import os, sys, time, resource
    import faust
    from streams.codec import decode_event
    TOTAL = int(os.environ["BENCH_TOTAL"])
    app = faust.App("bench-faust", broker="kafka://" + os.environ["BENCH_BOOTSTRAP"], web_enabled=False,
                    autodiscover=False, store="memory://", topic_partitions=%d)
    topic = app.topic("%s", value_serializer="raw", key_serializer="raw")
    state = {"n": 0, "start": None}
    def cpu():
        u = resource.getrusage(resource.RUSAGE_SELF)
        return u.ru_utime + u.ru_stime
    @app.agent(topic)
    async def count(stream):
        async for value in stream:
            if state["start"] is None:
                state["start"] = (time.perf_counter(), cpu())
            decode_event(value)
            state["n"] += 1
            if state["n"] >= TOTAL:
                wall, used = time.perf_counter() - state["start"][0], cpu() - state["start"][1]
                print(f"RESULT {wall} {used}", flush=True)
                os.kill(os.getpid(), 15)
''')


def faust_agent(bootstrap: str, total: int, timeout_s: float) -> tuple[float, float] | None:
    """Run a faust worker with one counting agent in a subprocess; returns its figures."""
    with tempfile.TemporaryDirectory() as workdir:
        app_file = Path(workdir) / "bench_faust_app.py"
        app_file.write_text(FAUST_APP % (PARTITIONS, TOPIC))
        env = {**os.environ, "BENCH_TOTAL": str(total), "BENCH_BOOTSTRAP": bootstrap,
               "PYTHONPATH": os.pathsep.join([workdir, str(Path(__file__).resolve().parents[1])])}
        process = subprocess.Popen([sys.executable, "-m", "faust", "-A", "bench_faust_app", "worker", "-l", "warn"],
                                   cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + timeout_s
        result = None
        output: list[str] = []
        try:
            for line in process.stdout:  # type: ignore[union-attr]
                output.append(line)
                if "RESULT " in line:  # faust routes prints through its logger
                    wall, used = line.split("RESULT ", 1)[1].split()[:2]
                    result = (float(wall), float(used))
                    break
                if time.monotonic() > deadline:
                    break
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
        if result is None:
            print("faust worker output (last lines):\n" + "".join(output[-15:]))
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    values: list[tuple[bytes, bytes]] = []
    for message in generate(SimConfig(seed=5, customers=max(500, args.events // 4), duration="1d", malformed=0.0)):
        values.append((message.key, message.value))
        if len(values) >= args.events:
            break
    total = len(values)
    with localkafka.start() as kafka:
        localkafka.create_topics(kafka.bootstrap, [TOPIC], partitions=PARTITIONS)
        asyncio.run(produce(kafka.bootstrap, values))
        batch_wall, batch_cpu = asyncio.run(aiokafka_batches(kafka.bootstrap, total))
        agent = faust_agent(kafka.bootstrap, total, timeout_s=600)
    print(f"messages                                  {total:,}")
    print(f"aiokafka getmany + decode      {total / batch_wall:>12,.0f} ev/s   {total / batch_cpu:>12,.0f} ev/CPU-s")
    if agent is None:
        print("faust agent + decode            did not finish in time")
        return
    agent_wall, agent_cpu = agent
    print(f"faust agent (per event) + decode {total / agent_wall:>10,.0f} ev/s   {total / agent_cpu:>12,.0f} ev/CPU-s")
    overhead_us = (agent_cpu - batch_cpu) / total * 1e6
    print(f"faust per-event framework overhead        {overhead_us:,.1f} µs CPU per event "
          f"(agent ÷ batches throughput: {(total / agent_cpu) / (total / batch_cpu):.2f}×)")


if __name__ == "__main__":
    main()
