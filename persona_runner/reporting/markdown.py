"""A report as Markdown sized for a pull-request comment.

A PR comment holds 65,536 characters, so the long tails (notes, error
messages, personas) are cut to the few that matter most and say how many
were left out. GitHub renders HTML and Markdown found in a comment, and notes
quote whatever the product said, so every piece of such text goes through
`cell` or `code`: a note holding `<!--` must not hide the rest of the
comment, nor `<img src=...>` or `![](...)` fetch a URL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from persona_runner.reporting.failures import changes_opening, headline
from persona_runner.reporting.formatting import (
    MIXED_RUNS,
    NO_MODULES,
    NO_PERSONAS,
    PASS_K_MEANING,
    look_at_why,
    milliseconds,
    pass_k_text,
    percent,
    rating_text,
    runs_covered,
    utc_minute,
)
from persona_runner.reporting.model import ModuleReport, Report, error_rate
from persona_runner.reporting.notes import fold_notes, given_by, times
from persona_runner.util.text import one_line

ERRORS_PER_MODULE = 3
NOTES_PER_MODULE = 3
MAX_PERSONAS = 40
MAX_CELL = 160
#: Failure groups named in the line that opens the report, and listed in its table.
HEADLINE_FAILURES = 3
MAX_FAILURES = 10
HEADLINE_REASON = 80
#: Ticks listed under "Ticks to look at"; the report model holds more, the HTML page lists them all.
MAX_LOOK_AT = 20


#: What would start an HTML tag, comment or entity, a link or an image, a code span (inside which an
#: escaped "<" would show as "&lt;"), or end a table cell. A ">" can only quote at the start of a line,
#: where no text of ours ever stands, so "->" stays readable.
_MARKUP = str.maketrans({"&": "&amp;", "<": "&lt;", "|": "\\|", "[": "\\[", "]": "\\]", "`": "\\`"})


def cell(text: str, limit: int = MAX_CELL) -> str:
    """Text shown as text, whatever it holds: one line, cut to `limit`, with neither HTML nor links nor cell ends."""
    return one_line(text, limit).translate(_MARKUP)


def prose(text: str) -> str:
    """A sentence of ours quoting labels or names: shown as text like a cell, but never cut."""
    return " ".join(text.split()).translate(_MARKUP)


def code(text: str, *, in_table: bool = True, whole: bool = False) -> str:
    """Text as an inline code span, for names, cut to a cell's length unless `whole` (a command must work as shown).

    HTML and Markdown inside a code span are shown, not rendered, so only a
    backtick could end the span early: the fence is one backtick longer than
    the longest run of them inside. A pipe still ends a table cell unless
    escaped, even there; outside a table the escape would show.
    """
    flat = " ".join(text.split()) if whole else one_line(text, MAX_CELL)
    flat = flat.replace("|", "\\|") if in_table else flat
    fence = "`" * (1 + max(map(len, re.findall("`+", flat)), default=0))
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _share(module: ModuleReport) -> str:
    return f"{percent(module.actual_share)} / {percent(module.intended_share)}"


def _worst_p95(module: ModuleReport) -> str:
    worst = max(module.tools, key=lambda tool: tool.p95_ms or 0.0, default=None)
    return f"{milliseconds(worst.p95_ms)} {code(worst.tool)}" if worst else "-"


def _failures(report: Report) -> list[str]:
    """The ticks that did not finish, as the opening section: one line naming the commonest reasons, then a table."""
    if not report.failures:
        return []
    named = "; ".join(
        f"{cell(group.status)}: {cell(group.reason, HEADLINE_REASON)} ({group.count})"
        for group in report.failures[:HEADLINE_FAILURES]
    )
    more = len(report.failures) - HEADLINE_FAILURES
    rows = (
        [cell(group.status), cell(group.reason), str(group.count), ", ".join(code(tick) for tick in group.tick_ids)]
        for group in report.failures[:MAX_FAILURES]
    )
    left_out = len(report.failures) - MAX_FAILURES
    return [
        "### Ticks that did not finish",
        f"**{headline(report)}**: {named}{f'; and {more} more reasons' if more > 0 else ''}",
        "",
        *table(["Status", "Reason", "Ticks", "Example ticks"], rows),
        *(["", f"_…and {left_out} more reasons in the full report._"] if left_out > 0 else []),
        "",
    ]


def _runs_covered(report: Report) -> list[str]:
    """Which runs the figures come from, and a warning when runs with injected faults are among others."""
    covered = runs_covered(report)
    if covered is None:
        return []
    mixed = [f"**{prose(MIXED_RUNS)}**", ""] if report.mixes_injected_runs else []
    return [prose(covered), "", *mixed]


def _changes(report: Report) -> list[str]:
    """The opening sentence, then each change whole: a summary ends in the run or window it compares with, which
    is no use cut short."""
    opening = [prose(text)] if (text := changes_opening(report)) else []
    changes = [f"- {prose(change.summary)}" for change in report.changes]
    return [*opening, "", *changes] if opening and changes else [*opening, *changes]


def _modules(report: Report) -> list[str]:
    """The modules table, pass^k explained under it; one line instead when no module was used or rated."""
    if not report.modules:
        return [NO_MODULES]
    header = [
        "Module",
        "Rating (95% CI)",
        "n",
        "Calls",
        "Error rate",
        "pass^k",
        "Worst p95",
        "Coverage",
        "Share actual / intended",
    ]
    rows = (
        [
            cell(m.module),
            rating_text(m.rating),
            str(m.rating.n),
            str(m.calls),
            percent(m.error_rate),
            pass_k_text(m.reliability),
            _worst_p95(m),
            percent(m.coverage),
            _share(m),
        ]
        for m in report.modules
    )
    return [*table(header, rows), "", f"_{prose(PASS_K_MEANING)}_"]


def _module_details(report: Report) -> list[str]:
    lines: list[str] = []
    for module in report.modules:
        if not (module.top_errors or module.notes):
            continue
        lines.append(f"**{cell(module.module)}**")
        lines += [f"- error ×{error.count}: {cell(error.message)}" for error in module.top_errors[:ERRORS_PER_MODULE]]
        lines += [
            f"- rated {note.rating} by {cell(given_by(note))}: {cell(note.notes)}{times(note)}"
            for note in fold_notes(module.notes)[:NOTES_PER_MODULE]
        ]
        lines.append("")
    return lines


def _look_at(report: Report) -> list[str]:
    """Each tick that did not finish or rated a module 1 or 2: why, and the command that shows its day."""
    ticks = report.look_at.ticks
    if not ticks:
        return []
    lines = [
        f"- {cell(tick.persona)}, {utc_minute(tick.started_at)} UTC: {cell(look_at_why(tick))}"
        f" {code(tick.command, in_table=False, whole=True)}"
        for tick in ticks[:MAX_LOOK_AT]
    ]
    left_out = len(ticks) - MAX_LOOK_AT + report.look_at.left_out
    more = [f"- _…and {left_out} more._"] if left_out > 0 else []
    return ["### Ticks to look at", *lines, *more, ""]


def _personas(report: Report) -> list[str]:
    if not report.personas:
        return [NO_PERSONAS]
    modules = [module.module for module in report.modules]
    rows = (
        [cell(persona.name), str(persona.ticks), str(persona.calls), str(persona.errors)]
        + [
            f"{persona.ratings[m].mean:.1f}" if m in persona.ratings and persona.ratings[m].mean is not None else "-"
            for m in modules
        ]
        for persona in report.personas[:MAX_PERSONAS]
    )
    lines = table(["Persona", "Ticks", "Calls", "Errors", *map(cell, modules)], rows)
    left_out = len(report.personas) - MAX_PERSONAS
    return lines + (["", f"_…and {left_out} more personas in the full report._"] if left_out > 0 else [])


def render_markdown(report: Report) -> str:
    """The report as a PR comment: what changed, a module table, the worst errors and notes, the persona grid."""
    totals = report.totals
    lines = [
        f"## Persona feedback: {cell(report.scope.label)}",
        "",
        f"{totals.personas} personas, {totals.ticks} ticks, {totals.calls} calls, "
        f"{totals.errors} errors ({percent(error_rate(totals.calls, totals.errors))}), {totals.ratings} ratings.",
        "",
        *_runs_covered(report),
        *_failures(report),
        "### What changed",
        *_changes(report),
        "",
        "### Modules",
        *_modules(report),
        "",
        "### Errors and lowest-rated notes",
        *(_module_details(report) or ["None recorded.", ""]),
        *_look_at(report),
        "### Personas",
        *_personas(report),
        "",
    ]
    return "\n".join(lines)
