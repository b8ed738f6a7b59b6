"""`persona-runner seed`: create or refresh the catalog's personas and spaces in a product."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import anyio
import typer

from persona_runner.commands.catalog_file import catalog_from
from persona_runner.commands.options import (
    AdminTokenOption,
    CatalogOption,
    DbOption,
    RunningTargetOption,
    store_from,
    user_errors_from,
)
from persona_runner.commands.target_options import TargetChoice, TargetNameOption
from persona_runner.credentials import seed_secret
from persona_runner.util.errors import UserError
from persona_runner.util.text import counted

if TYPE_CHECKING:
    from persona_runner.run.seeding import SeedReport

DEFAULT_TARGET = "http://127.0.0.1:8765"


def seed(
    target: RunningTargetOption = None,
    target_name: TargetNameOption = None,
    admin_token: AdminTokenOption = None,
    catalog: CatalogOption = None,
    db: DbOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", metavar="", help="Show what would change; write nothing.")
    ] = False,
) -> None:
    """Create or update every persona (kind=persona, derived password) and shared space; idempotent.

    Without --target it seeds the product `persona-runner serve` starts by default, at http://127.0.0.1:8765.

    Example: persona-runner seed --target http://127.0.0.1:8765 --admin-token dev-admin
    """
    from persona_runner.run.recorder import RecordError
    from persona_runner.run.seeding import seed_catalog
    from persona_runner.targets.errors import ProductError
    from persona_runner.targets.product import ProductClient

    loaded = catalog_from(catalog)
    secret = seed_secret()
    if not admin_token:
        raise UserError("seeding needs the product's admin token: pass --admin-token or set PERSONA_ADMIN_TOKEN")
    named = TargetChoice(target=target, target_name=target_name).spec(loaded)
    if named is not None and named.kind != "product":
        raise UserError(f"--target-name {target_name}: an {named.kind} target has no accounts to seed")
    url = named.address if named else DEFAULT_TARGET

    async def go() -> SeedReport:
        async with ProductClient(url, admin_token=admin_token) as client:
            await client.check()
            store = None if dry_run else store_from(db)
            return await seed_catalog(loaded, client, secret, store, dry_run=dry_run)

    with user_errors_from(ProductError, RecordError):
        report = anyio.run(go)
    print_seed_report(report, url, dry_run=dry_run)


def print_seed_report(report: SeedReport, target: str, *, dry_run: bool = False) -> None:
    for name, change in report.personas:
        typer.echo(f"persona {name}: {change}")
    for name, added in report.spaces:
        typer.echo(
            f"space {name}: " + (f"added {', '.join(added)}" if added else ("would ensure" if dry_run else "unchanged"))
        )
    print_module_warnings(report)
    verdict = "dry run, nothing written" if dry_run else ("changes applied" if report.changed else "already up to date")
    counts = f"{counted(len(report.personas), 'persona')} and {counted(len(report.spaces), 'space')}"
    typer.echo(f"{'would seed' if dry_run else 'seeded'} {counts} on {target}: {verdict}")


def print_module_warnings(report: SeedReport) -> None:
    """Modules the personas want that the target does not offer: their ratings will be missing, not bad."""
    for line in report.unknown_modules:
        typer.echo(f"warning: {line}", err=True)
