"""The ``crm-kpi`` command line (typer). Subcommands are thin: they parse flags,
load :class:`~streams.settings.Settings` and call into the package."""

from __future__ import annotations

import typer

from streams import __version__

app = typer.Typer(
    name="crm-kpi",
    help="Streaming, event-time KPIs for CRM data (tickets, interactions, purchases).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Streaming, event-time KPIs for CRM data (tickets, interactions, purchases)."""


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
