"""A report as one self-contained HTML page.

One file that can be mailed, attached to a CI run or opened from disk years
later: inline CSS, inline SVG charts, no script, nothing fetched. Every piece
of text that came from personas or the product (notes, error messages, tool
and module names) is escaped, because personas quote what the product said and
the product may say anything.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from html import escape

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
from persona_runner.reporting.model import ModuleReport, PersonaReport, RatingStats, Report, error_rate
from persona_runner.reporting.notes import fold_notes, given_by, times
from persona_runner.reporting.svg import bucket_names, latency_chart, trend_chart

CSS = """
:root{--fg:#1d232a;--muted:#5b6570;--line:#d9dee3;--bg:#fff;--bad:#c0392b;--good:#1e8449}
*{box-sizing:border-box}
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg);
margin:0 auto;max-width:1100px;padding:1rem}
h1{font-size:1.5rem;margin:.2rem 0}
h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid var(--line)}
h3{font-size:1.05rem}
.meta{color:var(--muted);margin:0}
.cards{display:flex;flex-wrap:wrap;gap:.6rem;padding:0;list-style:none}
.cards li{border:1px solid var(--line);border-radius:6px;padding:.4rem .8rem;min-width:7rem}
.cards b{display:block;font-size:1.3rem}
.wrap{overflow-x:auto}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{padding:.3rem .5rem;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}td.num{white-space:nowrap}
.changes li{margin:.2rem 0}.bad{color:var(--bad)}.good{color:var(--good)}
article{border:1px solid var(--line);border-radius:6px;padding:.2rem 1rem;margin:1rem 0}
.alert{border:1px solid var(--bad);border-left-width:6px;border-radius:6px;padding:.2rem 1rem;margin:1rem 0}
.alert h2{color:var(--bad);border:0;margin-top:.6rem}
blockquote{margin:.3rem 0;padding-left:.6rem;border-left:3px solid var(--line)}
blockquote,code,td{overflow-wrap:anywhere}
td:first-child{overflow-wrap:normal;min-width:7em}
.meta{overflow-wrap:anywhere}
figure{margin:.6rem 0}figcaption{font-weight:600;margin:.2rem 0}
svg.chart{display:block;width:100%;height:auto;max-width:520px}
.spark{vertical-align:middle}
@media (max-width:640px){body{font-size:14px;padding:.5rem}th,td{padding:.2rem .3rem}article{padding:.2rem .5rem}}
@media print{body{max-width:none}.wrap{overflow:visible}article,table,figure{break-inside:avoid}
a{color:inherit;text-decoration:none}svg.chart{max-width:15cm}}
"""

SPARK_WIDTH, SPARK_HEIGHT = 120, 28
#: Failure groups named in the line that opens the report; its table lists them all.
HEADLINE_FAILURES = 3


def safe_name(text: str) -> str:
    """`text` as an id or a file name: readable for ordinary names, and distinct for distinct texts.

    Every character outside a-z, 0-9, "." and "-" is written as its code
    point between underscores (`a_b` -> `a_5f_b`, `Todo` -> `_54_odo`, `/` ->
    `_2f_`): no upper case for a file system that ignores case to fold, no
    separator to climb out of a folder.
    """
    return re.sub(r"[^a-z0-9.-]", lambda match: f"_{ord(match[0]):x}_", text)


def _anchor(module: str) -> str:
    """The id of a module's section (no other id of the page starts with "module-")."""
    return "module-" + safe_name(module)


def _rating_colour(mean: float | None) -> str:
    """Red at 1, amber at 3, green at 5, so a grid reads at a glance (and the number is always printed too)."""
    if mean is None:
        return "transparent"
    return f"hsl({(mean - 1) / 4 * 120:.0f},65%,85%)"


def _point_names(module: ModuleReport, report: Report) -> list[str]:
    """The module's trend points by name: each day, or each run by its id and label."""
    return bucket_names([point.bucket for point in module.trend], report.trend_by, report.run_labels)


def sparkline(module: ModuleReport, names: Sequence[str]) -> str:
    """Mean rating per day or run (`names`, one per point) as a small line on the 1..5 scale; a day or run without
    ratings leaves a gap."""
    rated = [(name, point) for name, point in zip(names, module.trend, strict=True) if point.rating.mean is not None]
    if not rated:
        return "-"
    step = (SPARK_WIDTH - 8) / max(1, len(module.trend) - 1)
    coords = [
        None if point.rating.mean is None else (4 + i * step, 4 + (5 - point.rating.mean) / 4 * (SPARK_HEIGHT - 8))
        for i, point in enumerate(module.trend)
    ]
    lines = []
    run: list[tuple[float, float]] = []
    for xy in [*coords, None]:
        if xy is not None:
            run.append(xy)
            continue
        if len(run) > 1:  # one point draws no line, and its dot shows it
            points = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
            lines.append(f'<polyline points="{points}" fill="none" stroke="#2f6fb3" stroke-width="1.5"/>')
        run = []
    dots = "".join(f'<circle cx="{xy[0]:.1f}" cy="{xy[1]:.1f}" r="2" fill="#2f6fb3"/>' for xy in coords if xy)
    title = escape(
        f"{module.module} mean rating: " + ", ".join(f"{name} {point.rating.mean:.1f}" for name, point in rated)
    )
    return (
        f'<svg class="spark" role="img" width="{SPARK_WIDTH}" height="{SPARK_HEIGHT}"'
        f' viewBox="0 0 {SPARK_WIDTH} {SPARK_HEIGHT}"><title>{title}</title>{"".join(lines)}{dots}</svg>'
    )


def _trend_figure(module: ModuleReport, report: Report) -> str:
    """The module's trend as a chart from two days or runs on; before that, one line saying what there is."""
    by = report.trend_by
    chart = trend_chart(module.module, module.trend, by, report.run_labels)
    if chart is not None:
        return f"<figure><figcaption>Trend per {by}</figcaption>{chart}</figure>"
    if not module.trend:
        return f"<p>Trend per {by}: nothing recorded.</p>"
    point, (name,) = module.trend[0], _point_names(module, report)
    return (
        f"<p>Trend per {by}: one {by} so far ({escape(name)}: rating {escape(rating_text(point.rating))}, "
        f"error rate {escape(percent(point.error_rate))}); a chart needs two.</p>"
    )


def _latency_figure(module: ModuleReport) -> str:
    chart = latency_chart(module.module, module.tools)
    return f"<figure><figcaption>Latency per tool</figcaption>{chart}</figure>" if chart else ""


def _breakable(name: str) -> str:
    """A tool name, escaped, that may wrap after ".", "_" and "-" (`todo.create_<wbr>event`) but not inside a word."""
    return re.sub(r"([._-])", r"\1<wbr>", escape(name))


def _table(header: list[str], rows: list[str], numeric_from: int = 1) -> str:
    heads = "".join(
        f"<th{' class=num' if i >= numeric_from else ''}>{escape(name)}</th>" for i, name in enumerate(header)
    )
    return f'<div class="wrap"><table><thead><tr>{heads}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def _td(text: str, numeric: bool = True) -> str:
    return f"<td{' class=num' if numeric else ''}>{escape(text)}</td>"


def _summary(report: Report) -> str:
    totals = report.totals
    rate = error_rate(totals.calls, totals.errors)
    cards = [
        ("personas", str(totals.personas)),
        ("ticks", str(totals.ticks)),
        ("calls", str(totals.calls)),
        ("error rate", percent(rate)),
        ("ratings", str(totals.ratings)),
    ]
    cards += [(f"ticks {status}", str(count)) for status, count in totals.tick_statuses.items() if status != "ok"]
    items = "".join(f"<li><b>{escape(value)}</b>{escape(label)}</li>" for label, value in cards)
    return f'<section id="summary"><h2>Summary</h2><ul class="cards">{items}</ul></section>'


def _tick_ref(tick_id: str, pages: Mapping[str, str]) -> str:
    """A tick id as code, linked to its page when one was written beside the report."""
    code = f"<code>{escape(tick_id)}</code>"
    return f'<a href="{escape(pages[tick_id])}">{code}</a>' if tick_id in pages else code


def _failures(report: Report, pages: Mapping[str, str]) -> str:
    """The ticks that did not finish, first on the page: one line naming the commonest reasons, then a table."""
    if not report.failures:
        return ""
    named = "; ".join(
        f"{escape(group.status)}: {escape(group.reason)} ({group.count})"
        for group in report.failures[:HEADLINE_FAILURES]
    )
    more = len(report.failures) - HEADLINE_FAILURES
    rows = [
        f"<tr>{_td(group.status, numeric=False)}{_td(group.reason, numeric=False)}"
        f"<td>{', '.join(_tick_ref(tick, pages) for tick in group.tick_ids)}</td>{_td(str(group.count))}</tr>"
        for group in report.failures
    ]
    return (
        f'<section id="failures" class="alert"><h2>Ticks that did not finish</h2>'
        f"<p><b>{escape(headline(report))}</b>: {named}{f'; and {more} more reasons' if more > 0 else ''}</p>"
        f"{_table(['Status', 'Reason', 'Example ticks', 'Ticks'], rows, numeric_from=3)}</section>"
    )


def _runs_covered(report: Report) -> str:
    """Where the figures come from, and a warning when runs with injected faults are among others."""
    covered = runs_covered(report)
    if covered is None:
        return ""
    mixed = f'<p class="alert"><b>{escape(MIXED_RUNS)}</b></p>' if report.mixes_injected_runs else ""
    return f'<section id="runs"><p>{escape(covered)}</p>{mixed}</section>'


def _changes(report: Report) -> str:
    opening = changes_opening(report)
    items = "".join(
        f'<li class="{"bad" if change.worse else "good"}">{escape(change.summary)}</li>' for change in report.changes
    )
    body = (f"<p>{escape(opening)}</p>" if opening else "") + (f'<ul class="changes">{items}</ul>' if items else "")
    return f'<section id="changes"><h2>What changed</h2>{body}</section>'


def _modules(report: Report) -> str:
    """The modules table, pass^k explained under it; one line instead when no module was used or rated."""
    if not report.modules:
        return f'<section id="modules"><h2>Modules</h2><p>{NO_MODULES}</p></section>'
    rows = [
        "<tr>"
        f'<td><a href="#{_anchor(m.module)}">{escape(m.module)}</a></td>'
        + _td(rating_text(m.rating))
        + _td(str(m.rating.n))
        + f'<td class="num">{sparkline(m, _point_names(m, report))}</td>'
        + _td(str(m.calls))
        + _td(percent(m.error_rate))
        + _td(pass_k_text(m.reliability))
        + _td(f"{len(m.tools_used)}/{len(m.tools_offered)} ({percent(m.coverage)})")
        + _td(f"{percent(m.actual_share)} / {percent(m.intended_share)}")
        + "</tr>"
        for m in report.modules
    ]
    header = [
        "Module",
        "Rating (95% CI)",
        "n",
        f"Trend per {report.trend_by}",
        "Calls",
        "Error rate",
        "pass^k",
        "Tool coverage",
        "Share actual / intended",
    ]
    meaning = f'<p class="meta">{escape(PASS_K_MEANING)}</p>'
    return f'<section id="modules"><h2>Modules</h2>{_table(header, rows)}{meaning}</section>'


def _module_article(module: ModuleReport, report: Report) -> str:
    tools = _table(
        ["Tool", "Calls", "Errors", "Error rate", "p50", "p95", "p99"],
        [
            f"<tr><td>{_breakable(t.tool)}</td>{_td(str(t.calls))}{_td(str(t.errors))}{_td(percent(t.error_rate))}"
            f"{_td(milliseconds(t.p50_ms))}{_td(milliseconds(t.p95_ms))}{_td(milliseconds(t.p99_ms))}</tr>"
            for t in module.tools
        ],
    )
    unused = sorted(set(module.tools_offered) - set(module.tools_used))
    unused_line = f"<p>Offered but not used: {escape(', '.join(unused))}</p>" if unused else ""
    errors = "".join(f"<li>{error.count} × <code>{escape(error.message)}</code></li>" for error in module.top_errors)
    notes = "".join(
        f"<blockquote><b>{note.rating}/5</b> {escape(given_by(note))}: {escape(note.notes)}{times(note)}</blockquote>"
        for note in fold_notes(module.notes)
    )
    return (
        f'<article id="{_anchor(module.module)}"><h3>{escape(module.module)}</h3>'
        f"<p>Rating {escape(rating_text(module.rating))} from {module.rating.n} ratings; {module.calls} calls, "
        f"error rate {escape(percent(module.error_rate))}; "
        f"tools used {len(module.tools_used)} of {len(module.tools_offered)} "
        f"{'offered' if module.coverage_basis == 'offered' else 'ever seen'}.</p>"
        f"{_trend_figure(module, report)}{_latency_figure(module)}{tools}{unused_line}"
        f"<h4>Most frequent errors</h4>{f'<ul>{errors}</ul>' if errors else '<p>None.</p>'}"
        f"<h4>Notes, lowest-rated first</h4>{notes or '<p>None.</p>'}</article>"
    )


def _grid_cell(stats: RatingStats | None) -> str:
    if stats is None or stats.mean is None:
        return '<td class="num">-</td>'
    return f'<td class="num" style="background:{_rating_colour(stats.mean)}" title="n={stats.n}">{stats.mean:.1f}</td>'


def _look_at(report: Report, pages: Mapping[str, str]) -> str:
    """Each tick that did not finish or rated a module 1 or 2: why, and the command (or the page) that shows its day."""
    look_at = report.look_at
    if not look_at.ticks:
        return ""
    items = "".join(
        f"<li>{_tick_ref(tick.tick_id, pages)} {escape(tick.persona)}, {escape(utc_minute(tick.started_at))} UTC: "
        f"{escape(look_at_why(tick))}<br><code>{escape(tick.command)}</code></li>"
        for tick in look_at.ticks
    )
    more = f"<p>…and {look_at.left_out} more.</p>" if look_at.left_out else ""
    return f'<section id="look-at"><h2>Ticks to look at</h2><ul>{items}</ul>{more}</section>'


def _persona_row(persona: PersonaReport) -> str:
    rate = error_rate(persona.calls, persona.errors)
    figures = (str(persona.ticks), str(persona.calls), str(persona.errors), percent(rate))
    return f"<tr><td>{escape(persona.name)}</td>{''.join(_td(figure) for figure in figures)}</tr>"


def _personas(report: Report) -> str:
    rows = [_persona_row(persona) for persona in report.personas]
    table = _table(["Persona", "Ticks", "Calls", "Errors", "Error rate"], rows) if rows else f"<p>{NO_PERSONAS}</p>"
    return f'<section id="personas"><h2>Personas</h2>{table}</section>'


def _grid(report: Report) -> str:
    """Each persona's mean rating of each module; nothing without modules, where it would be a list of names."""
    if not report.modules:
        return ""
    modules = [module.module for module in report.modules]
    rows = [
        f"<tr><td>{escape(p.name)}</td>{''.join(_grid_cell(p.ratings.get(m)) for m in modules)}</tr>"
        for p in report.personas
    ]
    return f'<section id="grid"><h2>Persona × module ratings</h2>{_table(["Persona", *modules], rows)}</section>'


def page(title: str, meta: str, main: str, css: str = "") -> str:
    """One self-contained HTML document in the house style (and `css`): a title, a line of HTML under it, the body."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}{css}</style></head><body>"
        f'<header><h1>{escape(title)}</h1><p class="meta">{meta}</p></header>'
        f"<main>{main}</main></body></html>\n"
    )


def render_html(report: Report, tick_pages: Mapping[str, str] | None = None) -> str:
    """The whole report as one HTML document; `tick_pages` links ticks to their pages (tick id -> relative URL)."""
    articles = "".join(_module_article(module, report) for module in report.modules)
    details = f'<section id="details"><h2>Module details</h2>{articles}</section>' if articles else ""
    pages = tick_pages or {}
    return page(
        f"Persona feedback: {report.scope.label}",
        f"Generated {report.generated_at:%Y-%m-%d %H:%M} UTC from {escape(report.store)}",
        f"{_runs_covered(report)}{_failures(report, pages)}{_changes(report)}{_summary(report)}{_modules(report)}"
        f"{details}{_look_at(report, pages)}{_personas(report)}{_grid(report)}",
    )
