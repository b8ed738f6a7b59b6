"""What a run ticks against: the target its flags name, or a fresh embedded product; and seeding a product."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from persona_runner.catalog import Catalog
from persona_runner.commands.seed import print_module_warnings, print_seed_report
from persona_runner.run.seeding import seed_catalog
from persona_runner.targets.product import ProductClient
from persona_runner.targets.spec import TargetSpec


@dataclass(frozen=True)
class Target:
    """A target that is up: what it is, the admin token that seeds it (a product's; None: its personas are
    the user's business), and whether the run started it itself."""

    spec: TargetSpec
    admin_token: str | None
    embedded: bool

    @property
    def url(self) -> str:
        return self.spec.address


@contextmanager
def prepared_target(
    spec: TargetSpec | None, admin_token: str | None, faults: list[str], delays: list[str], id_seed: int | None
) -> Iterator[Target]:
    """The target the flags named; without one, a fresh reference product that runs until the block ends,
    handing out ids seeded by `id_seed` (None: random ids)."""
    if spec is not None:
        yield Target(spec, admin_token, embedded=False)
        return
    from persona_runner.commands.product import embedded_product  # the product's code, only when it is started

    with embedded_product(faults, delays, id_seed) as (embedded_url, embedded_token):
        yield Target(TargetSpec.product(embedded_url), embedded_token, embedded=True)


async def seed_target(target: Target, client: ProductClient, catalog: Catalog, secret: str, store: Engine) -> None:
    """Create or refresh the catalog's personas when there is an admin token. The user hears what
    changed in a product they named; of the embedded one, always fresh, only what it lacks."""
    if not target.admin_token:
        return
    report = await seed_catalog(catalog, client, secret, store)
    if target.embedded:
        print_module_warnings(report)
    else:
        print_seed_report(report, target.url)
