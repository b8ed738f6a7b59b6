"""`persona-runner schedule`: queue every persona that is due now, for the workers of a fleet to tick."""

from __future__ import annotations

from persona_runner.commands.catalog_file import catalog_from
from persona_runner.commands.options import (
    CatalogOption,
    DbOption,
    EveryOption,
    FleetLabelOption,
    PersonaOption,
    interval_from,
    queue_store_from,
)


def schedule(
    db: DbOption = None,
    label: FleetLabelOption = None,
    every: EveryOption = None,
    persona: PersonaOption = None,
    catalog: CatalogOption = None,
) -> None:
    """Queue a tick for every persona due now; the fleet's workers play them.

    Workers already do this every 10 s, so this is for a start without delay or for a
    cron line. Safe to run anywhere, any number of times: a persona is queued once per
    due slot. Give it the --label, --every and catalog the workers have.

    Example: persona-runner schedule --db postgresql+psycopg://runner@db/personas --label nightly
    """
    import anyio

    from persona_runner.commands.run_output import out
    from persona_runner.run.fleet import fleet_run_id
    from persona_runner.run.worker import enqueue_due, queue_app

    personas = catalog_from(catalog).select(persona or [])
    interval = interval_from(every, "--every")
    url, store = queue_store_from(db)
    run_id = fleet_run_id(label)

    async def enqueue() -> None:
        app = queue_app(url, run_id)
        async with app.open_async():
            done = await enqueue_due(app, store, run_id, personas, interval)
        waiting = f"; {len(done.waiting)} were already waiting" if done.waiting else ""
        names = f": {', '.join(done.added)}" if done.added else ""
        out.print(f"queued {len(done.added)} due personas for run {run_id}{names}{waiting}", highlight=False)

    anyio.run(enqueue)
