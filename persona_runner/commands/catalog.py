"""`persona-runner catalog`: check the personas before a run relies on them, and list them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from persona_runner.catalog import Catalog, PersonaSpec
from persona_runner.commands.catalog_file import catalog_from, catalog_path
from persona_runner.commands.options import user_errors_from
from persona_runner.commands.target_options import (
    BearerEnvOption,
    EnvOption,
    HeaderOption,
    McpStdioOption,
    TargetChoice,
    chosen_target,
)
from persona_runner.util.errors import UserError
from persona_runner.util.text import counted

if TYPE_CHECKING:
    from persona_runner.run.survey import Survey
    from persona_runner.targets.spec import TargetSpec

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
def validate(
    path: PathArgument = None,
    against: Annotated[
        str | None,
        typer.Option(
            "--against",
            metavar="TARGET",
            help="Also hold the catalog against a target: a name from its `targets` section, or an MCP endpoint "
            "URL. Lists the tools, the module each counts under, the modules no tool belongs to and the tools no "
            "persona will use.",
            show_default=False,
        ),
    ] = None,
    mcp_stdio: McpStdioOption = None,
    header: HeaderOption = None,
    bearer_env: BearerEnvOption = None,
    env: EnvOption = None,
) -> None:
    """Check a catalog; list every problem at once (exit 2) or confirm it is usable.

    With --against (or --mcp-stdio) it also asks the target for its tools: exit 1 when a persona
    would find no tool of its modules there.

    Example: persona-runner catalog validate --against http://127.0.0.1:3001/mcp
    """
    catalog = catalog_from(path)
    sizes = f"{counted(len(catalog.personas), 'persona')}, {counted(len(catalog.spaces), 'space')}"
    typer.echo(f"{catalog_path(path)}: {sizes}, OK")
    if against is None and mcp_stdio is None:
        if header or bearer_env or env:
            raise UserError("--header, --bearer-env and --env describe the target of --against or --mcp-stdio")
        return
    named = against if against in catalog.targets else None
    url = against if against is not None and named is None else None
    choice = TargetChoice(
        mcp_url=url, header=header, bearer_env=bearer_env, mcp_stdio=mcp_stdio, env=env, target_name=named
    )
    spec = chosen_target(choice, catalog)
    assert spec is not None, "--against or --mcp-stdio names a target"
    from persona_runner.run.survey import idle_warning

    found = _surveyed(catalog, spec)
    typer.echo(f"against {spec.address}: {counted(len(found.tools), 'tool')}")
    for tool in found.tools:
        typer.echo(f"  {tool.name} -> {tool.module}")
    if found.modules_without_tools:
        typer.echo(f"modules no tool belongs to: {', '.join(found.modules_without_tools)}")
    if found.tools_unused:
        typer.echo(f"tools no persona will use: {', '.join(tool.name for tool in found.tools_unused)}")
    warning = idle_warning(found)
    if warning:
        typer.echo(warning, err=True)
        raise typer.Exit(1)


def _surveyed(catalog: Catalog, spec: TargetSpec) -> Survey:
    """What the target offers the catalog's first persona, held against every persona."""
    import anyio

    from persona_runner.credentials import derive_password, seed_secret
    from persona_runner.run.survey import survey
    from persona_runner.run.tick import persona_headers
    from persona_runner.targets.base import Visitor
    from persona_runner.targets.errors import ProductError
    from persona_runner.targets.open import build_target

    first = catalog.personas[0]
    visitor = Visitor(first.email, derive_password(first.email, seed_secret()), persona_headers(first))

    async def ask() -> Survey:
        async with build_target(spec, modules=catalog.modules) as target:
            await target.check()
            return await survey(target, catalog, catalog.personas, visitor)

    with user_errors_from(ProductError):
        return anyio.run(ask)


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
