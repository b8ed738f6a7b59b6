"""The `persona-runner` command line: one typer app, one module per command, each imported only when it runs.

The one-line help of every command is kept here, so `persona-runner --help` lists them all
without importing any (see `persona_runner.commands.lazy`); a test keeps each line equal to
the first paragraph of its command's own help.
"""

from __future__ import annotations

import sys

import typer

from persona_runner.commands.lazy import LazyCommand, LazyGroup
from persona_runner.util.errors import UserError

#: The exit code typer gives a command stopped by Ctrl-C (128 + SIGINT).
INTERRUPTED = 130

COMMANDS = (
    LazyCommand(
        "run",
        "persona_runner.commands.run:run",
        "Tick every persona once against a product and print what they did and thought.",
    ),
    LazyCommand(
        "soak",
        "persona_runner.commands.soak:soak",
        "Tick each persona whenever it is due, for hours, as one run; progress on stderr.",
    ),
    LazyCommand(
        "worker",
        "persona_runner.commands.worker:worker",
        "Tick personas from the job queue in PostgreSQL, --concurrency at a time, until SIGTERM or SIGINT.",
    ),
    LazyCommand(
        "schedule",
        "persona_runner.commands.schedule:schedule",
        "Queue a tick for every persona due now; the fleet's workers play them.",
    ),
    LazyCommand(
        "status",
        "persona_runner.commands.status:status",
        "Show a fleet's workers, ticks in flight, queued and due personas, and whether it is paused.",
    ),
    LazyCommand(
        "pause",
        "persona_runner.commands.pause:pause",
        "Hold every worker before its next tick; ticks in flight finish. Undo with `resume`.",
    ),
    LazyCommand(
        "resume",
        "persona_runner.commands.pause:resume",
        "Let paused workers tick again (see `pause`).",
    ),
    LazyCommand(
        "seed",
        "persona_runner.commands.seed:seed",
        "Create or update every persona (kind=persona, derived password) and shared space; idempotent.",
    ),
    LazyCommand(
        "cleanup",
        "persona_runner.commands.cleanup:cleanup",
        "Delete every persona of the catalog from a product, with everything of theirs; the counterpart of `seed`.",
    ),
    LazyCommand(
        "serve",
        "persona_runner.commands.serve:serve",
        "Serve the reference product: auth API, admin API, MCP gateway at /mcp, /health and /metrics.",
    ),
    LazyCommand(
        "report",
        "persona_runner.commands.report:report",
        "Turn recorded actions and ratings into a report, module by module, with what changed at the top.",
    ),
    LazyCommand(
        "gate",
        "persona_runner.commands.gate:gate",
        "Compare a candidate run with a baseline: its ticks, then per module and per tool. "
        "Exit 0 pass, 1 fail, 2 usage error.",
    ),
    LazyCommand(
        "replay",
        "persona_runner.commands.replay:replay",
        "Live a recorded day again on a product (default: a fresh embedded one) and compare, call by call.",
    ),
    LazyCommand(
        "catalog",
        "persona_runner.commands.catalog:catalog_app",
        "Check and list the personas in catalog.json.",
    ),
    LazyCommand(
        "personas",
        "persona_runner.commands.personas:personas_app",
        "List personas and inspect one: activity, ratings, recent actions.",
    ),
    LazyCommand(
        "runs",
        "persona_runner.commands.runs:runs_app",
        "Recorded runs: list them to pick ids, export one as a gate baseline.",
    ),
    LazyCommand(
        "ticks",
        "persona_runner.commands.ticks:ticks_app",
        "Recorded ticks: list them to pick one, show one as the persona lived it (text, HTML or JSON).",
    ),
)


class PersonaRunnerGroup(LazyGroup):
    """The top-level group: every command of `COMMANDS` listed, none imported until it runs."""

    lazy_commands = COMMANDS


app = typer.Typer(
    name="persona-runner",
    cls=PersonaRunnerGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


# typer makes a group of an app only when it has a callback or registered commands; the
# commands here are added by the group itself, so the app has this callback, whose docstring is its help.
@app.callback()
def root() -> None:
    """Simulated users exercise a product through its MCP gateway and rate every module they touch."""


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
        # A catalog's problems (`CatalogError.problems`, read by name so that starting the
        # CLI does not import the catalog's models) are printed one per line, each naming
        # where it is; any other message is one line, whatever a database or server put into it.
        problems: list[str] = getattr(exc, "problems", [])
        many = len(problems) > 1
        typer.echo("\n".join(problems) if many else f"error: {' '.join(str(exc).split())}", err=True)
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:
        # A command group called bare has already printed its help and carries no message.
        if exc.format_message():
            typer.echo(_usage_line(exc), err=True)
        sys.exit(exc.exit_code)
    if code == INTERRUPTED:
        typer.echo("interrupted", err=True)
    sys.exit(code or 0)
