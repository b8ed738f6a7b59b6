"""Seeding: make the product's accounts and the results store match the catalog.

Every persona becomes a `kind=persona` user with its derived password, every
declared shared space exists with its members, and every persona has its row
in the results store. Running it twice changes nothing the second time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from persona_runner.catalog import Catalog, PersonaSpec
from persona_runner.credentials import derive_password
from persona_runner.run.recorder import RecordError, ensure_persona
from persona_runner.targets.base import Visitor
from persona_runner.targets.product import ProductClient


@dataclass
class SeedReport:
    personas: list[tuple[str, str]] = field(
        default_factory=list
    )  # (name, created | updated | unchanged | would create | exists)
    spaces: list[tuple[str, list[str]]] = field(default_factory=list)  # (space name, members added)
    unknown_modules: list[str] = field(default_factory=list)
    user_ids: dict[str, str] = field(default_factory=dict)  # persona name -> product user id

    @property
    def changed(self) -> bool:
        return any(change in ("created", "updated") for _, change in self.personas) or any(
            added for _, added in self.spaces
        )


def upsert_persona_rows(engine: Engine, catalog: Catalog, user_ids: dict[str, str]) -> None:
    """Create or refresh the `personas` rows (`user_ids` holds every persona of the catalog); rows whose
    content is unchanged are left alone."""
    try:
        with Session(engine) as session, session.begin():
            for spec in catalog.personas:
                ensure_persona(session, spec.to_profile(), spec.tick_cadence, user_ids[spec.name])
    except SQLAlchemyError as exc:
        raise RecordError(f"could not record the personas in the results store: {getattr(exc, 'orig', exc)}") from None


async def offered_modules(client: ProductClient, persona: PersonaSpec, secret: str) -> set[str]:
    """The modules the target offers, as one seeded persona sees them in `tools/list`."""
    async with client.visit(Visitor(persona.email, derive_password(persona.email, secret))) as visit:
        return {tool.module for tool in visit.tools}


async def seed_catalog(
    catalog: Catalog, client: ProductClient, secret: str, store: Engine | None, *, dry_run: bool = False
) -> SeedReport:
    """Make the product's accounts and the results store match `catalog`; call `client.check()` first."""
    report = SeedReport()
    if dry_run:
        existing = await client.persona_emails()
        report.personas = [(p.name, "exists" if p.email in existing else "would create") for p in catalog.personas]
        report.spaces = [(s.name, []) for s in catalog.spaces]
        return report
    names_to_email = {p.name: p.email for p in catalog.personas}
    for persona in catalog.personas:
        user_id, change = await client.upsert_persona(
            email=persona.email, name=persona.name, password=derive_password(persona.email, secret)
        )
        report.user_ids[persona.name] = user_id
        report.personas.append((persona.name, change))
    for space in catalog.spaces:
        added = await client.ensure_space(
            name=space.name, type=space.type, members=[names_to_email[m] for m in space.members]
        )
        report.spaces.append((space.name, added))
    if store is not None:
        await anyio.to_thread.run_sync(upsert_persona_rows, store, catalog, report.user_ids)
    report.unknown_modules = catalog.unknown_modules(await offered_modules(client, catalog.personas[0], secret))
    return report
