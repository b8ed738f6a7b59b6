"""The `persona-runner` command line: one typer app, one module per command group."""

from __future__ import annotations

import sys

import typer

from persona_runner.catalog import CatalogError
from persona_runner.commands.catalog import catalog_app
from persona_runner.commands.gate import gate
from persona_runner.commands.personas import personas_app
from persona_runner.commands.report import report
from persona_runner.commands.run import run
from persona_runner.commands.runs import runs_app
from persona_runner.commands.seed import seed
from persona_runner.commands.serve import serve
from persona_runner.util.errors import UserError

#: The exit code typer gives a command stopped by Ctrl-C (128 + SIGINT).
INTERRUPTED = 130

app = typer.Typer(
    name="persona-runner",
    help="Simulated users exercise a product through its MCP gateway and rate every module they touch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(run)
app.command()(seed)
app.command()(serve)
app.command()(report)
app.command()(gate)
app.add_typer(catalog_app, name="catalog")
app.add_typer(personas_app, name="personas")
app.add_typer(runs_app, name="runs")


def _usage_line(exc: typer.TyperException) -> str:
    """typer's own message (unknown flag, value out of range), with the help command to read next."""
    context = getattr(exc, "ctx", None)
    hint = f" (see `{context.command_path} --help`)" if context is not None else ""
    return f"error: {exc.format_message()}{hint}"


def main() -> None:
    """Console entry point: user mistakes end in one line on stderr and a non-zero exit."""
    try:
        # Outside standalone mode typer returns a command's exit code instead of exiting,
        # and hands its parsing errors to us instead of printing them with a usage block.
        code = app(standalone_mode=False)
    except UserError as exc:
        # A catalog's problems are printed one per line, each naming where it is; any other
        # message is one line, whatever a database or server put into it.
        many = isinstance(exc, CatalogError) and len(exc.problems) > 1
        typer.echo("\n".join(exc.problems) if many else f"error: {' '.join(str(exc).split())}", err=True)
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:
        # A command group called bare has already printed its help and carries no message.
        if exc.format_message():
            typer.echo(_usage_line(exc), err=True)
        sys.exit(exc.exit_code)
    if code == INTERRUPTED:
        typer.echo("interrupted", err=True)
    sys.exit(code or 0)
