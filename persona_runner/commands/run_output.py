"""What `run` prints: a line per failed tick as it happens, then a table of the ticks, a line per
module, and where the results went."""

from __future__ import annotations

import shlex
import shutil
import sys
from datetime import datetime, timedelta
from pathlib import Path
from statistics import mean

from rich.console import Console
from rich.markup import escape
from rich.progress import ProgressColumn, Task
from rich.table import Table
from rich.text import Text

from persona_runner.drivers.cassette import Cassette
from persona_runner.run.recorder import TickRecord
from persona_runner.run.runner import RAN_STATUSES, RunResult
from persona_runner.run.soak import SoakStatus
from persona_runner.run.stopping import Stop
from persona_runner.store.db import describe, resolve_url
from persona_runner.util.text import counted

# Lines are never wrapped, so a reason or the next command stays whole when output goes to a log.
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


#: How the error of a refused login (`LoginFailed`) begins: on a product the run did not seed, the mark of
#: personas it does not know.
LOGIN_REFUSED = "login refused for "


class TickFailures:
    """Says each tick that did not run as it ends. On a product the run did not seed (a --target
    without an admin token), the first refused login is followed by how to seed it: said once,
    since on a product that was never seeded every persona is refused alike."""

    def __init__(self, target: str, seeded: bool) -> None:
        self.unseeded = None if seeded else target

    def __call__(self, record: TickRecord) -> None:
        if record.status in RAN_STATUSES:
            return
        err.print(f"[red]{escape(record.persona.name)}[/]: {record.status}: {escape(record.error or '')}")
        if self.unseeded and (record.error or "").startswith(LOGIN_REFUSED):
            err.print(
                f"[yellow]hint:[/] {escape(self.unseeded)} refused the personas' login; if it was not seeded with "
                f"them, seed it: {escape(invoked_as())} seed --target {escape(self.unseeded)} --admin-token ... "
                "(or pass --admin-token to run)"
            )
            self.unseeded = None


def print_outcome(result: RunResult, cassette: Cassette | None, db: str | None, *, each_tick: bool = True) -> None:
    """Everything said once the run is over, ending with the command to read next; a table of the
    ticks unless `each_tick` is false (a soak's hundreds of ticks are counted instead)."""
    print_run(result, each_tick=each_tick)
    if cassette and cassette.replaying and cassette.drift:
        err.print(
            f"[yellow]replay:[/] {counted(len(cassette.drift), 'tool result')} differed from the recording; "
            f"first: {escape(cassette.drift[0])}"
        )
    store = describe(resolve_url(db))
    report = [invoked_as(), "report", "--run", result.run_id, *(["--db", store] if db else [])]
    out.print(f"results: {store} (run {result.run_id}); next: {escape(shlex.join(report))}")


def no_calls_made(result: RunResult) -> bool:
    """Whether the run's ticks all ran yet made no call at all, which tests nothing: said in one line (the run then
    exits 1). Failed ticks say for themselves why they made none."""
    if not result.ticks or result.failed or any(tick.calls for tick in result.ticks):
        return False
    err.print(
        f"error: no calls were made in run {escape(result.run_id)}: the personas used no tool, so nothing was "
        f"tested; `{escape(invoked_as())} catalog validate --against` shows what the target offers each module"
    )
    return True


def invoked_as() -> str:
    """This program as the user started it, so that a command it suggests runs as printed:
    `persona-runner` when that is what the shell finds, else the path typed (`.venv/bin/persona-runner`)."""
    typed = sys.argv[0]
    found = shutil.which(Path(typed).name)
    return Path(typed).name if found and Path(found).resolve() == Path(typed).resolve() else typed


def print_run(result: RunResult, *, each_tick: bool = True) -> None:
    if each_tick:
        _print_ticks(result)
    else:
        out.print(f"Run {result.run_id}: {counted(len(result.ticks), 'tick')}, {len(result.failed)} failed")
    _print_modules(result)
    _print_stop(result)


def _print_ticks(result: RunResult) -> None:
    table = Table(title=f"Run {result.run_id}", title_justify="left")
    days = len({t.tick_date for t in result.ticks}) > 1  # `run --repeat`: a row per persona and day
    for column, justify in (
        ("persona", "left"),
        *([("day", "left")] if days else []),
        ("status", "left"),
        ("calls", "right"),
        ("errors", "right"),
        ("modules", "left"),
        ("ratings", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for t in result.ticks:
        status = t.status if t.status == "ok" else f"[red]{t.status}[/]"
        ratings_cell = " ".join(f"{r.module} {r.rating}" for r in t.ratings) or (t.error or "-")
        # Module names and errors come from the product: shown as text, never read as markup.
        table.add_row(
            escape(t.persona.name),
            *([t.tick_date] if days else []),
            status,
            str(len(t.calls)),
            str(t.errors),
            escape(", ".join(t.modules_used())),
            escape(ratings_cell),
        )
    if result.ticks:  # a run stopped before any tick finished has no table to show
        out.print(table)


def _print_modules(result: RunResult) -> None:
    modules = sorted({call.module for t in result.ticks for call in t.calls})
    for module in modules:
        calls = [c for t in result.ticks for c in t.calls if c.module == module]
        ratings = [r.rating for t in result.ticks for r in t.ratings if r.module == module]
        error_rate = sum(1 for c in calls if c.product_error) / len(calls)
        rated = f"mean rating {mean(ratings):.1f} ({counted(len(ratings), 'rating')})" if ratings else "no ratings"
        out.print(f"  {escape(module):<10} {rated}, {counted(len(calls), 'call')}, error rate {error_rate:.0%}")


def _print_stop(result: RunResult) -> None:
    if result.stopped_early:
        err.print(f"[yellow]stopped early:[/] {escape(result.stopped_early)}")
    if result.stopped_by:
        aborted = f" ({escape(', '.join(result.aborted))})" if result.aborted else ""
        err.print(
            f"[yellow]stopped by {result.stopped_by}:[/] ticks {len(result.ticks)} finished, "
            f"{len(result.aborted)} aborted{aborted}, {len(result.not_started)} never started"
        )


def print_stopped_before_the_run(stop: Stop) -> None:
    err.print(f"[yellow]stopped by {stop.signal_name}[/] before the run began: no tick started, no run recorded")


class StopNotice(ProgressColumn):
    """Beside the progress bar once a signal came: what the run is waiting for, and how to stop it now."""

    def __init__(self, stop: Stop) -> None:
        super().__init__()
        self.stop = stop

    def render(self, task: Task) -> Text:
        return stop_notice(self.stop)


def stop_notice(stop: Stop) -> Text:
    """Once a signal came: what the ticks in flight are given, and how to stop them now; empty before."""
    if not stop.requested:
        return Text("")
    return Text(
        f"stopping on {stop.signal_name}: ticks in flight have {stop.grace:g} s to finish; "
        f"{stop.signal_name} again stops them at once",
        style="yellow",
    )


def soak_status_line(status: SoakStatus, now: datetime) -> str:
    """How a soak is going, in one line: how long it ran (and will run), ticks done and failed,
    calls per second, ticks in flight and who is due next."""
    elapsed = now - status.started_at
    length = f" of {_clock(status.ends_at - status.started_at)}" if status.ends_at else ""
    rate = status.calls / max(elapsed.total_seconds(), 1.0)
    next_up = f"next {status.next_up[0]} at {status.next_up[1]:%H:%M:%S} UTC" if status.next_up else "all in flight"
    return (
        f"soak {_clock(elapsed)}{length} · ticks {status.done} done, {status.failed} failed · {rate:.1f} calls/s"
        f" · {status.in_flight} in flight · {next_up}"
    )


def _clock(span: timedelta) -> str:
    """A span as H:MM:SS, whole seconds."""
    return str(timedelta(seconds=int(span.total_seconds())))
