"""`persona-runner cleanup`: delete the catalog's personas from a product, the counterpart of `seed`."""

from __future__ import annotations

from typing import Annotated

import anyio
import typer

from persona_runner.commands.catalog_file import catalog_from
from persona_runner.commands.options import AdminTokenOption, CatalogOption, RunningTargetOption, user_errors_from
from persona_runner.util.errors import UserError
from persona_runner.util.text import counted


def cleanup(
    target: RunningTargetOption = None,
    admin_token: AdminTokenOption = None,
    catalog: CatalogOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", metavar="", help="Show who would be deleted; delete nothing.")
    ] = False,
) -> None:
    """Delete every persona of the catalog from a product, with everything of theirs; the counterpart of `seed`.

    Only persona accounts are deleted: the product refuses any other account, and an email of
    the catalog that belongs to no persona account is left alone and said. The results store
    keeps the personas' history.

    Example: persona-runner cleanup --target http://127.0.0.1:8765 --admin-token dev-admin --dry-run
    """
    from persona_runner.targets.errors import ProductError
    from persona_runner.targets.product import ProductClient

    loaded = catalog_from(catalog)
    if not target:
        raise UserError("cleanup needs --target: the product to delete the catalog's personas from")
    if not admin_token:
        raise UserError("cleanup needs the product's admin token: pass --admin-token or set PERSONA_ADMIN_TOKEN")

    async def go() -> tuple[list[str], list[str]]:
        async with ProductClient(target, admin_token=admin_token) as client:
            await client.check()
            accounts = await client.persona_accounts()
            present = [p for p in loaded.personas if p.email in accounts]
            for persona in present if not dry_run else []:
                await client.delete_persona(accounts[persona.email])
            return [p.name for p in present], [p.name for p in loaded.personas if p.email not in accounts]

    with user_errors_from(ProductError):
        deleted, absent = anyio.run(go)
    for name in deleted:
        typer.echo(f"persona {name}: {'would delete' if dry_run else 'deleted'}")
    for name in absent:
        typer.echo(f"persona {name}: no persona account in the product")
    verb = "would delete" if dry_run else "deleted"
    typer.echo(
        f"{verb} {counted(len(deleted), 'persona')} from {target}" + (": dry run, nothing deleted" if dry_run else "")
    )
