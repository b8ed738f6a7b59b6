"""Who plays the personas in a run: the driver options, turned into one fresh driver per persona's day."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import anyio

from persona_runner.catalog import Catalog, PersonaSpec
from persona_runner.domain import Driver, PersonaProfile
from persona_runner.drivers.budget import RunBudget
from persona_runner.drivers.cassette import Cassette
from persona_runner.drivers.factory import check_keys, make_driver
from persona_runner.util.errors import UserError


@dataclass(frozen=True)
class DriverChoice:
    """--driver, --model, --base-url, the cassette and the per-tick token limit, shared by every tick of
    the run, and the run's token budget, which all ticks spend from."""

    name: str
    model: str | None
    base_url: str | None
    cassette: Cassette | None
    max_tokens_per_tick: int | None
    budget: RunBudget | None

    def new_driver(self, _profile: PersonaProfile) -> Driver:
        """A fresh driver for one persona's day; every persona of the run gets the same kind."""
        return make_driver(
            self.name,
            model=self.model,
            base_url=self.base_url,
            cassette=self.cassette,
            max_tokens_per_tick=self.max_tokens_per_tick,
            run_budget=self.budget,
        )

    def budget_spent(self) -> str | None:
        """Why the run starts no more ticks (its token budget is spent), else None."""
        return self.budget.describe() if self.budget and self.budget.exhausted else None


def choose_driver(
    name: str,
    *,
    model: str | None,
    base_url: str | None,
    cassette: tuple[str, Path] | None,
    max_tokens_per_tick: int | None,
    max_tokens_per_run: int | None,
    sample: PersonaProfile,
) -> DriverChoice:
    """The run's drivers, built once for `sample` and closed again, so that a missing API key, a bad
    --driver or a missing --model is one line before the store is touched or any tick starts."""
    if not (cassette and cassette[0] == "replay"):
        check_keys(name)  # before a recording cassette replaces anything on disk
    choice = DriverChoice(
        name=name,
        model=model,
        base_url=base_url,
        cassette=_open_cassette(cassette),
        max_tokens_per_tick=max_tokens_per_tick,
        budget=RunBudget(max_tokens_per_run) if max_tokens_per_run else None,
    )
    anyio.run(choice.new_driver(sample).aclose)
    return choice


def lasting_drivers(
    catalog: Path | None, names: list[str] | None, driver: str, model: str | None, base_url: str | None
) -> tuple[Catalog, list[PersonaSpec], DriverChoice]:
    """The catalog, the personas called `names` (all when none) and their drivers, for work that lasts
    (a soak, a worker): no cassette and no token budget, which belong to a run of known size."""
    from persona_runner.commands.catalog_file import catalog_from

    loaded = catalog_from(catalog)
    personas = loaded.select(names or [])
    drivers = choose_driver(
        driver,
        model=model,
        base_url=base_url,
        cassette=None,
        max_tokens_per_tick=None,
        max_tokens_per_run=None,
        sample=personas[0].to_profile(),
    )
    return loaded, personas, drivers


def _open_cassette(option: tuple[str, Path] | None) -> Cassette | None:
    if option is None:
        return None
    mode, path = option
    if mode == "record":
        return Cassette.record(path)
    if mode == "replay":
        return Cassette.replay(path)
    raise UserError(f"--cassette {mode!r}: the mode is record or replay, e.g. --cassette replay run.jsonl")
