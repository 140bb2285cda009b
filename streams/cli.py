"""The ``crm-kpi`` command line (typer). Subcommands are thin: they parse flags,
load :class:`~streams.settings.Settings` and call into the package."""

from __future__ import annotations

import contextlib
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
    from streams.runtime.worker import run_worker

    settings = settings_or_exit(
        bootstrap_servers=bootstrap, metrics_port=metrics_port, metrics_host=metrics_host, app_id=app_id
    )
    try:
        run_worker(settings)
    except (OSError, RuntimeError, ValueError) as exc:
        raise fail(f"worker stopped: {exc}", code=1) from None


@app.command()
def demo(
    timeout: Annotated[float, typer.Option(help="give up after this many seconds")] = 60.0,
    partitions: Annotated[int, typer.Option(min=1, max=64, help="partitions per topic")] = 3,
) -> None:
    """Local Kafka + topics, every schema example in, codec validation and DLQ summary out."""
    from streams.demo import run_demo

    settings = settings_or_exit()
    code = run_demo(topics=settings.topics, partitions=partitions, timeout_s=timeout)
    if code:
        raise typer.Exit(code)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
