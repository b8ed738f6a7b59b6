"""Options shared by several commands, declared once so they read and behave the same everywhere,
and the helpers that turn them into what a command uses."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from persona_runner.drivers import DriverName
from persona_runner.store import DEFAULT_DB, ENV_DB
from persona_runner.util.durations import parse_duration
from persona_runner.util.errors import UserError
from persona_runner.util.urls import require_http_url

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

CatalogOption = Annotated[
    Path | None,
    typer.Option(
        "--catalog",
        metavar="PATH",
        help="Persona catalog. Default: ./catalog.json, else the shipped one.",
        show_default=False,
    ),
]
DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="PATH|URL",
        help=f"Results store: a SQLite path or a postgresql:// URL. Default ${ENV_DB}, else ./{DEFAULT_DB}.",
        show_default=False,
    ),
]


#: What `--target` takes to name the embedded product out loud: a script or a unit file can then spell out
#: every choice (`soak --target embedded`), and switching to a staging build changes one value.
EMBEDDED = "embedded"
_EXAMPLE_TARGET = "http://127.0.0.1:8765"


def _checked_target(url: str | None) -> str | None:
    return None if url is None else require_http_url(url, "--target", _EXAMPLE_TARGET)


def _target_or_embedded(value: str | None) -> str | None:
    """A product's URL, checked; None for `embedded`, as when --target is not given."""
    if value is None or value == EMBEDDED:
        return None
    return require_http_url(value, "--target", f"{_EXAMPLE_TARGET}, or give {EMBEDDED} for the embedded product")


OutOption = Annotated[
    Path | None,
    typer.Option("--out", metavar="PATH", help="Write here instead of standard output.", show_default=False),
]
#: For the commands that start the embedded product when no target is named (`run`, `soak`, `replay`).
TargetOption = Annotated[
    str | None,
    typer.Option(
        "--target",
        metavar=f"URL|{EMBEDDED}",
        callback=_target_or_embedded,
        help=f"Base URL of a running product, e.g. {_EXAMPLE_TARGET}; or {EMBEDDED} (the default): "
        "a fresh reference product, seeded, that lives as long as this command.",
        show_default=False,
    ),
]
#: For the commands that need a product already up (`seed`, `cleanup`, `worker`): no embedded one to fall back on.
RunningTargetOption = Annotated[
    str | None,
    typer.Option(
        "--target",
        metavar="URL",
        callback=_checked_target,
        help=f"Base URL of a running product, e.g. {_EXAMPLE_TARGET}.",
        show_default=False,
    ),
]
AdminTokenOption = Annotated[
    str | None,
    typer.Option(
        "--admin-token",
        metavar="TOKEN",
        envvar="PERSONA_ADMIN_TOKEN",
        help="The product's admin token (X-Admin-Token), needed to seed personas.",
        show_default=False,
    ),
]
FaultOption = Annotated[
    list[str] | None,
    typer.Option(
        "--fault", metavar="TOOL=RATE", help="Make a tool fail at a rate, e.g. todo.complete=1.0 (repeatable)."
    ),
]
DelayOption = Annotated[
    list[str] | None,
    typer.Option("--delay", metavar="TOOL=DELAY", help="Slow a tool down, e.g. todo.list=200ms (repeatable)."),
]


def _duration_option(flag: str, help: str) -> Any:
    """An option that takes a length of time (30s, 2m or seconds) and gives it in seconds."""
    return typer.Option(
        flag,
        # typer hands the parser the text typed, or the default as a number: both read as seconds.
        parser=lambda value: parse_duration(str(value), flag),
        metavar="DURATION",
        help=help,
        show_default=False,
    )


GraceOption = Annotated[
    float,
    _duration_option(
        "--grace",
        "After SIGTERM or SIGINT, how long ticks in flight may finish before they are aborted: "
        "30s, 2m or seconds. A second signal aborts them at once. Default: 30s.",
    ),
]
StalledAfterOption = Annotated[
    float,
    _duration_option(
        "--stalled-after",
        "A worker silent in the job queue this long is taken for dead: its tick is marked interrupted "
        "and its persona's slot goes to another worker. Default: 30s.",
    ),
]


# What `run` and `soak` share to play the personas.
PersonaOption = Annotated[
    list[str] | None, typer.Option("--persona", metavar="NAME", help="Only this persona (repeatable). Default: all.")
]
DriverOption = Annotated[DriverName, typer.Option(help="Who plays the personas.")]
ModelOption = Annotated[
    str | None, typer.Option(metavar="MODEL", help="The provider's model name (LLM drivers only).", show_default=False)
]
BaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--base-url", metavar="URL", help="OpenAI-compatible server URL (openai driver); default $OPENAI_BASE_URL."
    ),
]
SeedOption = Annotated[
    int, typer.Option(metavar="N", help="Run seed: the same seed, personas and date give the same scripted day.")
]
MaxTurnsOption = Annotated[
    int, typer.Option(min=1, max=500, metavar="N", help="Most tool calls one persona makes in a tick.")
]
TimeoutOption = Annotated[
    float, typer.Option(min=1.0, metavar="SECONDS", help="Seconds one tick may take before it is cut off.")
]
ConcurrencyOption = Annotated[int, typer.Option(min=1, max=256, metavar="N", help="Personas ticking at once.")]
LabelOption = Annotated[
    str | None, typer.Option(metavar="TEXT", help="A name for this run, e.g. a build or commit.", show_default=False)
]
EveryOption = Annotated[
    str | None,
    typer.Option(metavar="DURATION", help="Tick each persona this often (10m, 2s), instead of its catalog cadence."),
]

# What the workers and the commands that steer them share.
FleetLabelOption = Annotated[
    str | None,
    typer.Option(
        "--label",
        metavar="TEXT",
        help="The fleet: workers and schedulers of one label share one run (fleet-LABEL) and one queue, "
        "e.g. a build. Default: workers.",
        show_default=False,
    ),
]
MetricsPortOption = Annotated[
    int | None,
    typer.Option(
        "--metrics-port",
        metavar="PORT",
        min=0,
        max=65535,
        help="Serve /metrics (Prometheus) and /health on this port.",
        show_default=False,
    ),
]
MetricsHostOption = Annotated[
    str,
    typer.Option(
        "--metrics-host", metavar="HOST", help="Address for --metrics-port; 0.0.0.0 lets a scraper on another host in."
    ),
]


def interval_from(text: str | None, flag: str) -> timedelta | None:
    """A length of time given to `flag` (10m, 2s), above zero; None when not given."""
    if text is None:
        return None
    seconds = parse_duration(text, flag)
    if seconds <= 0:
        raise UserError(f"{flag} {text!r}: give a length above 0s")
    return timedelta(seconds=seconds)


def store_from(db: str | None, *, create: bool = True) -> Engine:
    """The results store for a command; create=False for commands that only read it (see `open_store`).

    A store whose server does not answer is the environment's doing (exit 1); any other
    store that cannot be used was named wrongly (exit 2).
    """
    from persona_runner.store.db import StoreError, StoreUnreachable, open_store

    try:
        return open_store(db, create=create)
    except StoreError as exc:
        raise UserError(str(exc), exit_code=1 if isinstance(exc, StoreUnreachable) else 2) from None


def queue_store_from(db: str | None) -> tuple[str, Engine]:
    """The URL and engine of a results store in PostgreSQL with the workers' job queue installed in it."""
    from sqlalchemy.exc import SQLAlchemyError

    from persona_runner.run.queue import install_queue, require_postgresql
    from persona_runner.store.db import describe, resolve_url

    url = require_postgresql(resolve_url(db))
    store = store_from(url)
    try:
        install_queue(store)
    except SQLAlchemyError as exc:
        reason = getattr(exc, "orig", None) or exc
        raise UserError(f"could not set up the job queue in {describe(url)}: {reason}", exit_code=1) from None
    return url, store


@contextmanager
def user_errors_from(*kinds: type[Exception]) -> Iterator[None]:
    """Turn the listed exception kinds into one-line user errors (exit 1: the environment, not the input)."""
    try:
        yield
    except kinds as exc:
        raise UserError(str(exc), exit_code=1) from None
