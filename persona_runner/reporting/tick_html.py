"""A recorded day as one self-contained HTML page, read as a conversation.

The persona's turns (what its model said, each call it made and the arguments)
sit on one side, the product's answers on the other, what the harness told the
model between them, then the ratings and how the day ended. A failed call is
marked where it happened, so the answer a rating complains about is found by
eye. Like the report (`reporting/html.py`, whose page and style it shares) it
is one file with nothing fetched, and every piece of text is escaped: the
product and the model may say anything.
"""

from __future__ import annotations

from html import escape

from persona_runner.reporting.html import page
from persona_runner.reporting.tick_story import (
    NO_TRANSCRIPT,
    Asked,
    Said,
    Told,
    arguments_text,
    chosen_space,
    driver_line,
    ending,
    others,
    outcome,
    space_text,
    story,
    timing_line,
    weekday,
)
from persona_runner.store.recorded import DayCall, RecordedDay

CHAT_CSS = """
.chat{list-style:none;padding:0;margin:0;display:flex;flex-direction:column}
.chat li{margin:.35rem 0;padding:.45rem .8rem;border:1px solid var(--line);border-radius:10px;max-width:85%}
.chat .persona{align-self:flex-end;background:#eef4fb}
.chat .product{align-self:flex-start;background:#f5f6f7}
.chat .told{align-self:center;border-style:dashed;color:var(--muted);max-width:100%}
.chat .failed{border-color:var(--bad);border-left-width:6px;background:#fdf0ee}
.who{display:block;font-size:.8rem;color:var(--muted);font-weight:600}
.failed .who{color:var(--bad)}
pre{white-space:pre-wrap;overflow-wrap:anywhere;margin:.2rem 0;font-size:.85rem}
"""


def _bubble(kind: str, who: str, body: str, *, failed: bool = False, anchor: str = "") -> str:
    """One turn: `kind` is persona, product or told; `who` is text, `body` HTML."""
    classes = f"{kind} failed" if failed else kind
    ident = f' id="{anchor}"' if anchor else ""
    return f'<li class="{classes}"{ident}><span class="who">{escape(who)}</span>{body}</li>'


def _pre(text: str) -> str:
    return f"<pre>{escape(text)}</pre>"


def _call(persona: str, call: DayCall, kept: bool) -> str:
    """The persona's call and the product's answer to it: two turns."""
    arguments = _pre(arguments_text(call.arguments)) if call.arguments is not None else ""
    body = f"<code>{escape(call.tool)}</code>{arguments}"
    asked = _bubble("persona", f"{persona} · call #{call.seq}", body, anchor=f"call-{call.seq}")
    who = f"product · {call.latency_ms:.1f} ms · {outcome(call)}"
    if call.outcome != "ok":
        return asked + _bubble("product", f"✗ {who}", _pre(call.error or "(no message)"), failed=True)
    answer = _pre(call.result_excerpt or "(empty)") if kept else "<p>(result not kept)</p>"
    return asked + _bubble("product", who, answer)


def _step(persona: str, step: Told | Said | Asked | DayCall, kept: bool) -> str:
    if isinstance(step, DayCall):
        return _call(persona, step, kept)
    if isinstance(step, Told):
        return _bubble("told", f"told the model ({step.phase})", _pre(step.text))
    if isinstance(step, Said):
        attempts = "".join(_bubble("told", "provider failed", _pre(failure), failed=True) for failure in step.failures)
        if not step.answered:
            return attempts + _bubble("persona", f"{persona} ({step.phase})", "<p>(no answer)</p>", failed=True)
        if not step.text:
            return attempts
        return attempts + _bubble("persona", f"{persona} ({step.phase})", f"<p>{escape(step.text)}</p>")
    asked = _bubble(
        "persona",
        f"{persona} · asked, no call made",
        f"<code>{escape(step.tool)}</code>{_pre(arguments_text(step.arguments))}",
    )
    if step.answer is None:
        return asked
    return asked + _bubble("told", "answered by the harness", _pre(step.answer), failed=step.is_error)


def _setting(day: RecordedDay, system: str | None) -> str:
    space = chosen_space(day)
    lines = [f"<p>Space: {escape(space_text(space))}, id <code>{escape(space.id)}</code></p>"] if space else []
    if elsewhere := others(day):
        lines.append(f"<p>Also a member of: {escape(', '.join(space_text(space) for space in elsewhere))}</p>")
    if day.tools_offered:
        tools = ", ".join(f"<code>{escape(tool)}</code>" for tool in day.tools_offered)
        lines.append(f"<details><summary>Tools offered ({len(day.tools_offered)})</summary><p>{tools}</p></details>")
    if system:
        lines.append(f"<details><summary>What the model was told it is</summary>{_pre(system)}</details>")
    if not day.has_transcript:
        lines.append(f'<p class="alert"><b>{escape(NO_TRANSCRIPT)}</b></p>')
    return f'<section id="setting"><h2>Setting</h2>{"".join(lines)}</section>'


def _ratings(day: RecordedDay) -> str:
    ratings = "".join(
        f"<blockquote{' class=bad' if rating.rating <= 2 else ''}><b>{rating.rating}/5</b> "
        f"{escape(rating.module)}: {escape(rating.notes)}</blockquote>"
        for rating in day.ratings
    )
    return f'<section id="ratings"><h2>Ratings</h2>{ratings or "<p>None.</p>"}</section>'


def _end(day: RecordedDay) -> str:
    lines = [f"<p>Status: <b>{escape(ending(day))}</b></p>"]
    flags = (day.verdict or {}).get("flags") or []
    lines += [f"<p>Rating flag: {escape(str(flag))}</p>" for flag in flags]
    raw = (day.verdict or {}).get("raw_answer")
    if raw:
        lines.append(f"<details><summary>The rating answer that could not be read</summary>{_pre(str(raw))}</details>")
    if day.surprises:
        lines.append("<ul>" + "".join(f"<li>{escape(surprise)}</li>" for surprise in day.surprises) + "</ul>")
    alert = ' class="alert"' if day.status != "ok" else ""
    return f'<section id="end"{alert}><h2>How the day ended</h2>{"".join(lines)}</section>'


def render_tick_html(day: RecordedDay) -> str:
    """The whole day as one HTML document."""
    told = story(day)
    steps = "".join(_step(day.persona, step, day.has_transcript) for step in told.steps)
    meta = " · ".join(
        escape(part)
        for part in (f"tick {day.tick_id}", f"run {day.run_id}", driver_line(day), timing_line(day), ending(day))
    )
    return page(
        f"{day.persona} on {weekday(day)}",
        meta,
        _setting(day, told.system)
        + f'<section id="day"><h2>The day ({len(day.calls)} calls)</h2>'
        + (f'<ol class="chat">{steps}</ol>' if steps else "<p>No calls.</p>")
        + f"</section>{_ratings(day)}{_end(day)}",
        CHAT_CSS,
    )
