"""Figures and times as people read them, the same in the reports, the gate's messages and the command tables."""

from __future__ import annotations

from datetime import UTC, datetime

from persona_runner.reporting.model import FAILED_TICK_STATUSES, RatingStats, Reliability, Report, TickToLookAt


def percent(rate: float | None) -> str:
    """A rate as people read it: whole percents, "n/a" where there was nothing to count."""
    return "n/a" if rate is None else f"{rate:.0%}"


def rating_text(stats: RatingStats) -> str:
    """ "3.4 [2.9-3.9]", the mean alone while one rating gives no interval, "-" without ratings."""
    if stats.mean is None:
        return "-"
    if stats.ci_low is None or stats.ci_high is None:
        return f"{stats.mean:.1f}"
    return f"{stats.mean:.1f} [{stats.ci_low:.1f}-{stats.ci_high:.1f}]"


def milliseconds(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


def utc_minute(moment: datetime) -> str:
    """An aware moment to the minute in UTC, e.g. "2026-11-20 23:30", whatever zone it carries.

    The store's columns hand every timestamp back aware, on SQLite as on PostgreSQL.
    """
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M}"


#: What a report says where its modules table would be empty: no tick made a call or gave a rating.
NO_MODULES = "No module was used or rated in this scope."
#: What a report says where its personas table would be empty.
NO_PERSONAS = "No persona was active in this scope."
#: What the pass^k column of a modules table counts, said once under it.
PASS_K_MEANING = "pass^k: the share of personas whose every tick with the module met no product error, k ticks each."


def pass_k_text(reliability: Reliability) -> str:
    """ "83% (5/6, k=3)": the share of personas whose every tick with a module went clean, and over how many days."""
    if reliability.pass_k is None or reliability.ticks_per_persona is None:
        return "-"
    k = reliability.ticks_per_persona
    days = f"{k:.0f}" if k == round(k) else f"{k:.1f}"
    return f"{percent(reliability.pass_k)} ({reliability.clean_personas}/{reliability.personas}, k={days})"


#: Runs named one by one in the sentence that says what a report covers; more are counted.
RUNS_NAMED = 5
MIXED_RUNS = (
    "Mixes runs with injected faults and runs without: their errors and latency blur each other;"
    " report on one kind with --label, --target or --run."
)


def run_name(run_id: str, label: str | None) -> str:
    """ "20261201-020000-aa11bb (nightly)": a run by its id, which commands take, and its label, which people know."""
    return f"{run_id} ({label})" if label else run_id


def runs_covered(report: Report) -> str | None:
    """ "Covers 2 runs: a (nightly), b (drill) with --fault todo.create=1.0.": where the figures come from."""
    if not report.runs:
        return None
    named = []
    for run in report.runs[:RUNS_NAMED]:
        injected = f" with {', '.join(run.injected)}" if run.injected else ""
        named.append(f"{run_name(run.run_id, run.label)}{injected}")
    more = f" and {len(report.runs) - RUNS_NAMED} more" if len(report.runs) > RUNS_NAMED else ""
    return f"Covers {len(report.runs)} run{'s' if len(report.runs) != 1 else ''}: {', '.join(named)}{more}."


def look_at_why(tick: TickToLookAt) -> str:
    """ "failed", "rated notes 2/5, todo 1/5": why a report sends its reader to a tick, in a few words.

    The reason and the notes themselves are the report's already (its failures and its notes) and the tick's page.
    """
    reasons = [tick.status] if tick.status in FAILED_TICK_STATUSES else []
    if tick.low_ratings:
        reasons.append("rated " + ", ".join(f"{low.module} {low.rating}/5" for low in tick.low_ratings))
    return "; ".join(reasons)
