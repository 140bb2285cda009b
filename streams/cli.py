"""The ``crm-kpi`` command line (typer). Subcommands are thin: they parse flags,
load :class:`~streams.settings.Settings` and call into the package."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from pathlib import Path
from typing import Annotated

import typer

from streams import __version__
from streams.settings import ConfigError, Settings, load_settings

app = typer.Typer(
    name="crm-kpi",
    help="Streaming, event-time KPIs for CRM data (tickets, interactions, purchases).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error to stderr and return the Exit to raise."""
    typer.secho(f"crm-kpi: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def settings_or_exit(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        raise fail(str(exc)) from None


@app.callback()
def _root() -> None:
    """Streaming, event-time KPIs for CRM data (tickets, interactions, purchases)."""


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


@app.command()
def replay(
    files: Annotated[list[Path], typer.Argument(help="JSON-lines event files (.jsonl or .jsonl.gz), any order")],
    out: Annotated[Path | None, typer.Option(help="write KPI records here (default: stdout)")] = None,
    dlq: Annotated[Path | None, typer.Option(help="write rejected lines with reasons here")] = None,
    sla_out: Annotated[Path | None, typer.Option("--sla-out", help="write SLA events here")] = None,
    signals_out: Annotated[Path | None, typer.Option("--signals-out", help="write churn signals here")] = None,
    health_out: Annotated[Path | None, typer.Option("--health-out", help="write health-score changes here")] = None,
    windows: Annotated[str | None, typer.Option(help="window sizes, e.g. 5m,1h,1d,30d")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar or summary")] = False,
) -> None:
    """Compute KPI records from event files with the same core as the streaming worker."""
    from streams.codec.records import encode_health, encode_kpi, encode_signal, encode_sla
    from streams.replay import read_lines, run_replay, write_jsonl
    from streams.settings import core_config

    for path in files:
        if not path.is_file():
            raise fail(f"no such file: {path}")
    settings = settings_or_exit(windows=windows)
    try:
        config = core_config(settings)
        if health_out:
            config = dataclasses.replace(config, record_health_changes=True)
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from None

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True, quiet=quiet)
    total_bytes = sum(path.stat().st_size for path in files)
    with contextlib.ExitStack() as stack:
        dlq_handle = stack.enter_context(open(dlq, "wb")) if dlq else None
        with Progress(
            TextColumn("[bold]replay[/bold]"), BarColumn(), TextColumn("{task.completed:,} lines"),
            TimeElapsedColumn(), console=console, transient=True, disable=quiet,
        ) as progress:
            task = progress.add_task("read", total=None)

            def on_reject(line: bytes) -> None:
                dlq_handle.write(line + b"\n")

            result = run_replay(
                read_lines(files), config,
                on_reject=on_reject if dlq_handle else None,
                progress=lambda n: progress.update(task, completed=n),
            )

    if out is None:
        sink = sys.stdout.buffer
        for record in result.records:
            sink.write(encode_kpi(record) + b"\n")
        sink.flush()
        written = len(result.records)
    else:
        written = write_jsonl(out, result.records, encode_kpi)
    if sla_out:
        write_jsonl(sla_out, result.sla, encode_sla)
    if signals_out:
        write_jsonl(signals_out, result.signals, encode_signal)
    if health_out:
        write_jsonl(health_out, result.health, encode_health)

    if not quiet:
        from rich.table import Table

        table = Table(title=f"replay of {len(files)} file(s), {total_bytes / 1e6:.1f} MB", show_header=False)
        table.add_row("lines read", f"{result.lines:,}")
        table.add_row("events accepted", f"{result.accepted:,}")
        table.add_row("duplicates dropped", f"{result.duplicates:,}")
        rejected = sum(result.rejected.values())
        detail = ", ".join(f"{reason} {count}" for reason, count in sorted(result.rejected.items()))
        table.add_row("rejected", f"{rejected:,}" + (f" ({detail})" if detail else ""))
        table.add_row("KPI records written", f"{written:,}" + (f" -> {out}" if out else " -> stdout"))
        table.add_row("SLA events", f"{len(result.sla):,}" + (f" -> {sla_out}" if sla_out else ""))
        table.add_row("churn signals", f"{len(result.signals):,}" + (f" -> {signals_out}" if signals_out else ""))
        console.print(table)


@app.command()
def worker(
    bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap servers (CRM_KPI_BOOTSTRAP_SERVERS)")] = None,
    metrics_port: Annotated[int | None, typer.Option(help="port of /metrics (CRM_KPI_METRICS_PORT)")] = None,
    metrics_host: Annotated[str | None, typer.Option(help="bind address of /metrics (CRM_KPI_METRICS_HOST)")] = None,
    app_id: Annotated[str | None, typer.Option(help="application id / consumer group prefix (CRM_KPI_APP_ID)")] = None,
) -> None:
    """Run a streaming worker until SIGTERM/SIGINT. Start more of them to scale out."""
    from streams.runtime.app import WorkerFailed, run_app

    settings = settings_or_exit(
        bootstrap_servers=bootstrap, metrics_port=metrics_port, metrics_host=metrics_host, app_id=app_id
    )
    try:
        code = run_app(settings)
    except WorkerFailed as exc:  # wrong password, no broker, a failed worker service
        raise fail(str(exc), code=1) from None
    if code:
        raise typer.Exit(code)


@app.command()
def demo(
    duration: Annotated[float | None, typer.Option(
        min=1, help="stop by itself after this many seconds of live run (default: run until Ctrl-C)")] = None,
    speedup: Annotated[float, typer.Option(
        min=1, help="event time runs N times faster than the wall clock (300: a day in 4.8 min)")] = 300.0,
    customers: Annotated[int, typer.Option(min=1, max=1_000_000, help="customers in the simulated book")] = 5000,
    days: Annotated[int, typer.Option(min=1, max=365, help="simulated business days, then idle until stopped")] = 7,
    seed: Annotated[int, typer.Option(help="simulator seed")] = 1,
    workers: Annotated[int, typer.Option(min=1, max=8, help="crm-kpi worker processes")] = 2,
    headless: Annotated[bool, typer.Option("--headless", help="plain progress lines instead of a live table")] = False,
    examples_only: Annotated[bool, typer.Option(
        "--examples-only", help="only the schema examples through Kafka and the codec, then stop")] = False,
    timeout: Annotated[float, typer.Option(help="--examples-only: give up after this many seconds")] = 60.0,
    partitions: Annotated[int | None, typer.Option(
        min=1, max=64, help="partitions per topic (default: 6; 3 with --examples-only)")] = None,
) -> None:
    """Live demo: local Kafka, 2 workers, Prometheus and simulated business days, until Ctrl-C.

    Prints the /metrics URLs, Prometheus graph links and the `crm-kpi tail` command, then
    `KEY=value` lines (BOOTSTRAP, PROMETHEUS_URL, ...; also in .cache/demo/status.json).
    Ctrl-C or SIGTERM stops everything it started. --examples-only runs the first demo:
    every schema example through Kafka and the codec, with a DLQ summary.
    """
    from streams.demo import LiveOptions, run_demo, run_live_demo

    settings = settings_or_exit()
    if examples_only:
        code = run_demo(topics=settings.topics, partitions=partitions or 3, timeout_s=timeout)
    else:
        options = LiveOptions(speedup=speedup, customers=customers, days=days, seed=seed, duration_s=duration,
                              headless=headless, workers=workers, partitions=partitions or 6)
        code = run_live_demo(options, topics=settings.topics)
    if code:
        raise typer.Exit(code)


@app.command()
def tail(
    bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap servers (CRM_KPI_BOOTSTRAP_SERVERS)")] = None,
    kpi: Annotated[str | None, typer.Option(help="only this KPI; globs work, e.g. 'sla_*'")] = None,
    dims: Annotated[list[str] | None, typer.Option(
        "--dims", help="only records with NAME=VALUE (repeat, or comma-separate; NAME= means without it)")] = None,
    window: Annotated[str | None, typer.Option(help="only this window size, e.g. 1h")] = None,
    from_beginning: Annotated[bool, typer.Option(
        "--from-beginning", help="read the whole topic first (default: the last --backlog records per partition)")] = False,
    backlog: Annotated[int, typer.Option(min=0, help="records per partition read before following")] = 1000,
    once: Annotated[bool, typer.Option("--once", help="read to the end, print the table once and exit")] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="show at most N series (default: as many as fit the terminal)")] = None,
    timeout: Annotated[float, typer.Option(min=1, help="--once: give up after this many seconds")] = 60.0,
) -> None:
    """Live table of the newest KPI records on the KPI topic (highest revision per key).

    One line per KPI, window size and dimensions: the newest window, its value formatted
    by unit (durations, %, money), n, final or provisional, and the revision.
    """
    import asyncio
    import fnmatch
    import os

    from rich.console import Console
    from rich.live import Live

    from streams.core.durations import parse_duration
    from streams.core.registry import KPI_BY_NAME
    from streams.runtime.kafka import client_options
    from streams.tail import KpiBoard, TailFilter, follow, parse_dims, render

    settings = settings_or_exit(bootstrap_servers=bootstrap)
    try:
        wanted = parse_dims(dims or [])
        if window is not None:
            parse_duration(window)
    except (ValueError, TypeError) as exc:
        raise fail(str(exc)) from None
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 160  # piped: rich's 80 columns would fold every KPI name
    if kpi is not None and not any(fnmatch.fnmatchcase(name, kpi) for name in KPI_BY_NAME):
        typer.secho(f"crm-kpi: note: no registry KPI matches {kpi!r}; showing what the topic has",
                    err=True, fg=typer.colors.YELLOW)
    board = KpiBoard(filter=TailFilter(kpi=kpi, dims=wanted, window=window))
    topic = settings.topics.kpi
    options = {k: v for k, v in client_options(settings).items() if k != "bootstrap_servers"}
    title = f"{topic} on {settings.bootstrap_servers}"

    try:
        if once:
            asyncio.run(follow(settings.bootstrap_servers, topic, board, from_beginning=from_beginning,
                               backlog=backlog, once=True, timeout_s=timeout, client_options=options))
            console.print(render(board, title=title, limit=limit))
            return

        def rows() -> int:
            return limit or max(5, console.size.height - 8)

        async def live() -> None:
            with Live(render(board, title=title, limit=rows()), console=console, auto_refresh=False,
                      vertical_overflow="crop") as screen:
                def changed(current: KpiBoard) -> None:
                    screen.update(render(current, title=title, limit=rows()), refresh=True)

                await follow(settings.bootstrap_servers, topic, board, from_beginning=from_beginning,
                             backlog=backlog, on_change=changed, stop=asyncio.Event(), client_options=options)

        asyncio.run(live())
    except KeyboardInterrupt:
        return
    except (LookupError, TimeoutError) as exc:
        raise fail(str(exc), code=1) from None
    except Exception as exc:  # aiokafka's connection errors: one line, not a traceback
        if type(exc).__module__.startswith("aiokafka"):
            raise fail(f"kafka {settings.bootstrap_servers}: {exc}", code=1) from None
        raise


@app.command()
def simulate(
    seed: Annotated[int, typer.Option(help="random seed; same seed and options -> byte-identical output")] = 1,
    duration: Annotated[str, typer.Option(help="period in which new activity arrives, e.g. 6h, 1d, 7d")] = "1d",
    customers: Annotated[int, typer.Option(min=1, help="customers in the opening book")] = 5000,
    out: Annotated[Path | None, typer.Option(help="write JSON lines here (.gz compresses)")] = None,
    bootstrap: Annotated[str | None, typer.Option(help="send to this Kafka instead (HOST:PORT)")] = None,
    rate: Annotated[float | None, typer.Option(min=0.001, help="with --bootstrap: at most N events/s")] = None,
    speedup: Annotated[float | None, typer.Option(
        min=0.001, help="with --bootstrap: play event time N times faster than the wall clock")] = None,
    duplicates: Annotated[float | None, typer.Option(help="share of events re-sent [default: 0.005]")] = None,
    late: Annotated[float | None, typer.Option(help="share of events delivered 1-10 min late [default: 0.002]")] = None,
    malformed: Annotated[float | None, typer.Option(help="share of extra malformed messages [default: 0.001]")] = None,
    start: Annotated[str | None, typer.Option(help="RFC 3339 start [default: 2026-11-02T00:00:00Z, a Monday]")] = None,
    tickets_per_customer: Annotated[float | None, typer.Option(
        help="tickets per active customer per day [default: 0.08]")] = None,
    agents: Annotated[int | None, typer.Option(min=1, help="support agents [default: sized for the load]")] = None,
    tail: Annotated[str | None, typer.Option(help="follow-ups run on this long after the period [default: 1d]")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar or summary")] = False,
) -> None:
    """Generate realistic CRM events (customers, tickets, purchases) into a file or Kafka."""
    import asyncio
    import dataclasses
    import logging
    import time

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from streams.codec import format_ts
    from streams.simulate import (
        OPENING_BOOK_MS,
        SimConfig,
        SimMessage,
        Tally,
        generate,
        observe,
        produce,
        summary_rows,
        write_jsonl,
    )

    if (out is None) == (bootstrap is None):
        raise fail("simulate needs exactly one target: --out FILE.jsonl[.gz] or --bootstrap HOST:PORT")
    if bootstrap is None and (rate is not None or speedup is not None):
        raise fail("--rate and --speedup only apply with --bootstrap")
    knobs = {"start": start, "tickets_per_customer_per_day": tickets_per_customer, "agents": agents,
             "tail": tail, "duplicates": duplicates, "late": late, "malformed": malformed}
    try:
        config = SimConfig(seed=seed, duration=duration, customers=customers,
                           **{name: value for name, value in knobs.items() if value is not None})
    except ValueError as exc:
        raise fail(f"invalid simulation option: {exc}") from None

    # aiokafka logs connection trouble on its own; the failure is reported below in one line
    logging.getLogger("aiokafka").addHandler(logging.NullHandler())
    console = Console(stderr=True, quiet=quiet)
    tally = Tally()
    first_ms = config.start_ms - (OPENING_BOOK_MS if config.opening_book else 0)
    began = time.perf_counter()
    with Progress(
        TextColumn("[bold]simulate[/bold]"), BarColumn(), TextColumn("{task.fields[sent]:>10,} events"),
        TextColumn("{task.fields[rate]:>8,.0f}/s"), TextColumn("event time {task.fields[clock]}"),
        TimeElapsedColumn(), console=console, transient=True, disable=quiet,
    ) as progress:
        task = progress.add_task("simulate", total=config.horizon_ms - first_ms, sent=0, rate=0.0, clock="-")

        def show(seen: Tally, message: SimMessage) -> None:
            elapsed = max(time.perf_counter() - began, 1e-9)
            progress.update(task, completed=max(0, message.delivered_at_ms - first_ms), sent=seen.messages,
                            rate=seen.messages / elapsed, clock=format_ts(message.delivered_at_ms)[:19])

        messages = observe(generate(config), tally, show, every=200 if bootstrap else 2000)
        try:
            if out is not None:
                written = write_jsonl(messages, out)
                target = f"{written:,} lines -> {out}"
            else:
                settings = settings_or_exit(bootstrap_servers=bootstrap)
                topics = {"crm.tickets.v1": settings.topics.tickets,
                          "crm.interactions.v1": settings.topics.interactions,
                          "crm.purchases.v1": settings.topics.purchases}
                renamed = (m if topics[m.topic] == m.topic else dataclasses.replace(m, topic=topics[m.topic])
                           for m in messages)
                sent = asyncio.run(produce(renamed, bootstrap, rate=rate, speedup=speedup))
                target = f"{sent:,} messages -> Kafka {bootstrap}"
        except OSError as exc:
            raise fail(f"cannot write {out}: {exc}" if out else f"kafka {bootstrap}: {exc}", code=1) from None
        except Exception as exc:  # aiokafka's errors (KafkaError) carry no common base with OSError
            if type(exc).__module__.startswith("aiokafka"):
                raise fail(f"kafka {bootstrap}: {exc}", code=1) from None
            raise
    seconds = time.perf_counter() - began

    if not quiet:
        table = Table(title=f"simulation (seed {config.seed}, {config.duration} from {config.start})",
                      show_header=False)
        for label, value in summary_rows(tally):
            table.add_row(label, value)
        table.add_row("written", target)
        table.add_row("wall time", f"{seconds:.1f} s ({tally.messages / max(seconds, 1e-9):,.0f} messages/s)")
        console.print(table)


@app.command()
def kpis(
    as_json: Annotated[bool, typer.Option("--json", help="print the registry as a machine-readable JSON list")] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="print docs/kpis.md (generated from the registry)")] = False,
    family: Annotated[str | None, typer.Option(help="only KPIs of this family (support, sla, commercial, ...)")] = None,
) -> None:
    """List every KPI of the registry: name, unit, formula and dimensions."""
    import json

    from streams.core.registry import FAMILIES, KPIS, dims_text, render_markdown, windows_text

    if as_json and markdown:
        raise fail("--json and --markdown are exclusive")
    if family is not None and family not in FAMILIES:
        raise fail(f"unknown family {family!r}; one of: {', '.join(FAMILIES)}")
    selected = tuple(kpi for kpi in KPIS if family is None or kpi.family == family)
    if markdown:
        typer.echo(render_markdown(selected), nl=False)
        return
    if as_json:
        typer.echo(json.dumps([kpi.as_dict() for kpi in selected], indent=2, ensure_ascii=False))
        return

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(selected)} KPIs (streams/core/registry.py; docs/kpis.md)", show_lines=False)
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("unit", no_wrap=True)
    table.add_column("formula")
    table.add_column("dims", no_wrap=True)
    table.add_column("windows", no_wrap=True)
    for kpi in selected:
        dims = "\n".join(dims_text((dim_set,)) for dim_set in kpi.dims)
        table.add_row(kpi.name, kpi.unit, kpi.formula, dims, windows_text(kpi.windows))
    Console().print(table)


@app.command()
def report(
    source: Annotated[str, typer.Option(
        "--from", help="KPI records: a JSON-lines file from `replay` (.jsonl or .jsonl.gz) or a KPI topic name")],
    out: Annotated[Path, typer.Option(help="write the HTML report here")],
    bootstrap: Annotated[str | None, typer.Option(
        help="with a topic: Kafka bootstrap servers (CRM_KPI_BOOTSTRAP_SERVERS)")] = None,
    window: Annotated[str, typer.Option(help="window size to chart: 5m, 1h, 1d or 30d")] = "1h",
    timeout: Annotated[float, typer.Option(min=1, help="with a topic: give up reading after this many seconds")] = 60.0,
) -> None:
    """Static, self-contained HTML report (inline SVG charts, no scripts) of KPI records.

    Charts response and resolution time percentiles (overall and per priority), SLA hit rates, NPS with its margin of error, CSAT/CES, revenue per currency and churn/retention over the windows of one size. From a topic, the highest revision per key is kept (upsert).
    """
    from streams.report import ReportError, build_report, load_source, require_window

    try:
        loaded = load_source(source, lambda: settings_or_exit(bootstrap_servers=bootstrap), timeout_s=timeout)
        size = require_window(loaded, window)
        out.write_text(build_report(loaded, size), encoding="utf-8")
    except ReportError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"cannot write {out}: {exc}", code=1) from None
    typer.echo(f"report: {len(loaded.records):,} KPI records, {size} windows charted -> {out}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
