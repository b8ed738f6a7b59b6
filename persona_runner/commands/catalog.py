"""`persona-runner catalog`: check the personas before a run relies on them, and list them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from persona_runner.catalog import Catalog, PersonaSpec
from persona_runner.commands.catalog_file import catalog_from, catalog_path
from persona_runner.util.text import counted

catalog_app = typer.Typer(
    help="Check and list the personas in catalog.json.",
    no_args_is_help=True,
)

PathArgument = Annotated[
    Path | None,
    typer.Argument(
        metavar="PATH",
        help="Catalog file. Default: ./catalog.json if present, else the catalog shipped with persona-runner.",
        show_default=False,
    ),
]

TOP_MODULES = 3


@catalog_app.command()
def validate(path: PathArgument = None) -> None:
    """Check a catalog; list every problem at once (exit 2) or confirm it is usable."""
    catalog = catalog_from(path)
    counts = f"{counted(len(catalog.personas), 'persona')}, {counted(len(catalog.spaces), 'space')}"
    typer.echo(f"{catalog_path(path)}: {counts}, OK")


@catalog_app.command()
def show(path: PathArgument = None) -> None:
    """List the personas and the spaces they share."""
    catalog = catalog_from(path)
    console = Console(markup=False)  # the catalog's text, never markup
    console.print(_personas_table(catalog))
    if catalog.spaces:
        console.print(_spaces_table(catalog))


def _personas_table(catalog: Catalog) -> Table:
    table = Table(title="Personas")
    for column in ("name", "archetype", "cadence", "style", "locale"):
        table.add_column(column, no_wrap=True)
    table.add_column("top modules")
    for persona in catalog.personas:
        table.add_row(
            persona.name,
            persona.archetype,
            persona.tick_cadence,
            persona.style or "-",
            persona.locale or "-",
            _top_modules(persona),
        )
    return table


def _spaces_table(catalog: Catalog) -> Table:
    table = Table(title="Spaces")
    for column in ("name", "type", "members"):
        table.add_column(column)
    for space in catalog.spaces:
        table.add_row(space.name, space.type, ", ".join(space.members))
    return table


def _top_modules(persona: PersonaSpec) -> str:
    """The modules the persona reaches for most, with their share of its attention."""
    total = sum(persona.module_mix.values())
    ranked = sorted(persona.module_mix.items(), key=lambda item: item[1], reverse=True)[:TOP_MODULES]
    return ", ".join(f"{module} {weight / total:.0%}" for module, weight in ranked)
