"""`persona-runner pause` and `resume`: hold every worker of the store before its next tick, and let them go on."""

from __future__ import annotations

from typing import Annotated

import typer

from persona_runner.commands.options import DbOption, queue_store_from


def pause(
    db: DbOption = None,
    reason: Annotated[
        str | None, typer.Option(metavar="TEXT", help="Why, for whoever runs `status` meanwhile.")
    ] = None,
) -> None:
    """Hold every worker before its next tick; ticks in flight finish. Undo with `resume`.

    Due personas stay queued meanwhile, and tick once the workers resume. For a deploy of
    the product under test, or a database migration, without stopping the workers.

    Example: persona-runner pause --db postgresql+psycopg://runner@db/personas --reason "deploying 1.4"
    """
    from persona_runner.commands.run_output import out
    from persona_runner.run.fleet import pause as hold

    _, store = queue_store_from(db)
    held = hold(store, reason)
    why = f" ({held.reason})" if held.reason else ""
    out.print(f"workers paused since {held.paused_at:%Y-%m-%d %H:%M:%S} UTC by {held.paused_by}{why}", highlight=False)


def resume(db: DbOption = None) -> None:
    """Let paused workers tick again (see `pause`).

    Example: persona-runner resume --db postgresql+psycopg://runner@db/personas
    """
    from persona_runner.commands.run_output import out
    from persona_runner.run.fleet import resume as go_on

    _, store = queue_store_from(db)
    out.print("workers resumed" if go_on(store) else "workers were not paused", highlight=False)
