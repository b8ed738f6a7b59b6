"""The scripted driver: a persona played offline, with dice, and no language model.

It is the default because it is free, fast and reproducible: the same run
seed, persona and day always make the same calls with the same arguments, so
a finding can be replayed. It behaves like a person running errands: it picks
a module by the persona's `module_mix`, then a tool, and chains calls the way
people do (list, then complete one of the listed tasks; write a note, then
search for it) and checks what it reads back. Anything that does not match
what it wrote is a surprise, and the day's ratings are computed from the
errors, slow calls and surprises it met, with that evidence in the notes.

What it knows about particular tools is data (`CONTRACTS`); a tool it does not
know is still used, with arguments drawn from its schema alone.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from random import Random
from typing import Any

from persona_runner.domain import Act, CallOutcome, Day, Rating, ToolInfo, TurnLimitReached, Usage, Verdict
from persona_runner.drivers.content import Writer, key_word
from persona_runner.drivers.schema_args import INVALID_KINDS, Builder, Filler, Probe, probes, resolve
from persona_runner.util.text import one_line

SLOW_MS = 1000.0
CHAOS = "chaos"
#: How often the chaos persona sends a broken call rather than running an ordinary errand.
CHAOS_PROBE_RATE = 0.75
#: Probe kinds the chaos persona sends, in this order of preference; "unicode" is valid text that is hard to handle.
PROBE_KINDS = (*INVALID_KINDS, "unicode")
#: Destructive tools are tried this much less often than others: people rarely delete.
DESTRUCTIVE_WEIGHT = 0.05
#: The paging argument a check widens, so that "not listed" means "not there".
PAGE = "limit"
EXCERPT = 120


@dataclass(frozen=True)
class Recall:
    """How a person checks that what they just wrote is really there."""

    reader: str
    args: Callable[[Mapping[str, Any]], dict[str, Any]]  # from the arguments that were written
    noun: str
    label: str  # the written field that names the thing in a surprise


@dataclass(frozen=True)
class Source:
    """Where a person finds the thing a tool acts on: a listing, and which item field to pass on."""

    lister: str
    args: Mapping[str, Any]
    key: str
    #: What a person does instead when the listing is empty (nothing to log yet: start a habit).
    otherwise: str


@dataclass(frozen=True)
class Contract:
    """What the persona knows about a tool beyond its schema."""

    #: Optional fields it fills, and how often; None means every optional field, now and then.
    optional: Mapping[str, float] | None = None
    recall: Recall | None = None
    #: A tool used at once on the thing just created (a new habit is logged straight away).
    then: str | None = None
    source: Source | None = None
    weight: float = 1.0


OPEN_TASKS = {"filter": "open"}
CONTRACTS: dict[str, Contract] = {
    "todo.create": Contract(
        optional={"notes": 0.3, "due": 0.5, "priority": 0.6},
        recall=Recall("todo.list", lambda _w: OPEN_TASKS, "task", "title"),
    ),
    "todo.list": Contract(optional={"filter": 0.7}),
    "todo.complete": Contract(source=Source("todo.list", OPEN_TASKS, "id", "todo.create")),
    "todo.complete_by_title": Contract(source=Source("todo.list", OPEN_TASKS, "title", "todo.create")),
    "todo.stats": Contract(),
    "notes.create": Contract(
        optional={"body": 0.9, "tags": 0.6},
        recall=Recall("notes.search", lambda w: {"query": key_word(w["title"])}, "note", "title"),
    ),
    "notes.list": Contract(optional={"tag": 0.2}),
    "notes.search": Contract(),
    "notes.append": Contract(source=Source("notes.list", {}, "id", "notes.create")),
    "notes.tag": Contract(source=Source("notes.list", {}, "id", "notes.create")),
    "notes.delete": Contract(source=Source("notes.list", {}, "id", "notes.create")),
    "journal.add": Contract(
        optional={"date": 0.3, "mood": 0.6}, recall=Recall("journal.list", lambda _w: {}, "journal entry", "text")
    ),
    "journal.list": Contract(optional={"since": 0.3, "until": 0.2}),
    "habits.create": Contract(optional={"cadence": 0.5, "color": 0.3}, then="habits.log"),
    "habits.list": Contract(optional={"include_archived": 0.2}),
    "habits.log": Contract(
        optional={"date": 0.3, "note": 0.3}, source=Source("habits.list", {}, "id", "habits.create")
    ),
    "habits.recent_logs": Contract(optional={"days": 0.5}),
    "habits.archive": Contract(source=Source("habits.list", {}, "id", "habits.create"), weight=0.2),
    "mood.log": Contract(
        optional={"note": 0.6, "tags": 0.3}, recall=Recall("mood.today", lambda _w: {}, "mood entry", "score")
    ),
    "mood.today": Contract(),
    "mood.insights": Contract(optional={"days": 0.5}),
    "calendar.create_event": Contract(
        optional={"location": 0.4, "color": 0.2},
        recall=Recall("calendar.list_events", lambda w: {"day": str(w["start"])[:10]}, "event", "title"),
    ),
    "calendar.list_events": Contract(optional={"day": 1.0}),
    "contacts.create": Contract(
        optional={"email": 0.6, "phone": 0.4, "notes": 0.3},
        recall=Recall("contacts.search", lambda w: {"query": w["name"]}, "contact", "name"),
    ),
    "contacts.search": Contract(),
    "spaces.list": Contract(),
}
#: What the driver assumes of a tool it has no contract for: schema-only arguments, default weight.
GENERIC = Contract()


class _DayOver(Exception):
    """The turn budget is spent: the day ends wherever the persona was."""


def day_rng(day: Day) -> Random:
    """The dice of one persona's day; string seeding is stable across processes."""
    return Random(f"{day.seed}:{day.persona.name}:{day.tick_date.isoformat()}")


def call_key(tool: str, arguments: Mapping[str, Any]) -> str:
    return f"{tool} {json.dumps(arguments, sort_keys=True, ensure_ascii=False, default=str)}"


def listed(structured: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The items of a listing answer: its first list of objects (`items`, `entries`, ...)."""
    for value in (structured or {}).values():
        if isinstance(value, list) and all(isinstance(item, dict) for item in value):
            return value
    return []


class ScriptedDriver:
    """Plays one persona for one day from a seed; see the module docstring."""

    name = "scripted"
    model: str | None = None

    def __init__(self) -> None:
        self.usage = Usage()
        self.surprises: list[str] = []
        self.exchanges: list[dict[str, Any]] = []
        self._findings: dict[str, list[str]] = defaultdict(list)
        self._checks_passed: dict[str, int] = defaultdict(int)
        #: The broken calls it sent, by call key: what lets its rating tell an owed refusal from a failure.
        self.probes_sent: dict[str, Probe] = {}
        self._turns = 0

    # ---- the day ----------------------------------------------------------------------------

    async def play(self, day: Day, act: Act) -> None:
        self._day, self._act = day, act
        self._rng = day_rng(day)
        self._writer = Writer(day.persona.archetype, day.persona.style, self._rng, day.tick_date)
        offered = {tool.module for tool in day.tools}
        mix = sorted((m, w) for m, w in day.persona.module_mix.items() if m in offered and w > 0)
        if not mix:
            self.surprises.append(f"none of my modules ({', '.join(sorted(day.persona.module_mix))}) are offered")
            return
        modules, weights = zip(*mix, strict=True)
        try:
            while self._turns < day.max_turns:
                module = self._rng.choices(modules, weights)[0]
                await self._errand(self._pick_tool(module))
        except _DayOver:
            return

    def _pick_tool(self, module: str) -> ToolInfo:
        tools = sorted((t for t in self._day.tools if t.module == module), key=lambda t: t.name)
        weights = [
            CONTRACTS.get(t.name, GENERIC).weight * (DESTRUCTIVE_WEIGHT if t.destructive else 1.0) for t in tools
        ]
        return self._rng.choices(tools, weights)[0]

    async def _call(self, tool: str, arguments: dict[str, Any], *, probe: bool = False) -> CallOutcome:
        if self._turns >= self._day.max_turns:
            raise _DayOver
        self._turns += 1
        try:
            return await self._act(tool, arguments, probe=probe)
        except TurnLimitReached as exc:
            raise _DayOver from exc

    def _builder(self, tool: ToolInfo, fill: Filler | None = None) -> Builder:
        return Builder(tool.input_schema, self._rng, self._day.tick_date, fill or self._writer.filler(tool.module))

    def _arguments(
        self, tool: ToolInfo, overrides: Mapping[str, Any] | None = None, optional: Mapping[str, float] | None = None
    ) -> dict[str, Any]:
        contract = CONTRACTS.get(tool.name, GENERIC)
        chosen = contract.optional if optional is None else optional
        return self._builder(tool).arguments(tool.input_schema, chosen, overrides)

    async def _errand(self, tool: ToolInfo) -> None:
        """One thing a person came to do: maybe find its target first, then do it, then check it."""
        # Destructive tools are gated before validation, so a probe there would only test the gate.
        prober = self._day.persona.archetype == CHAOS and not tool.destructive
        if prober and self._rng.random() < CHAOS_PROBE_RATE:
            await self._probe(tool)
            return
        contract = CONTRACTS.get(tool.name, GENERIC)
        overrides = await self._target(contract)
        if overrides is None:
            instead = self._day.tool(contract.source.otherwise) if contract.source else None
            if instead is not None:
                await self._errand(instead)
            return
        written = self._arguments(tool, overrides)
        outcome = await self._call(tool.name, written)
        if not outcome.ok:
            return
        self._check_echo(tool, written, outcome)
        created = (outcome.structured or {}).get("id")
        if contract.recall:
            await self._recall(tool, contract.recall, written, created)
        then = self._day.tool(contract.then) if contract.then else None
        if then and isinstance(created, str):
            await self._call(then.name, self._arguments(then, {"id": created}))

    async def _read(self, reader: ToolInfo, overrides: Mapping[str, Any]) -> tuple[CallOutcome, dict[str, Any]]:
        """A lookup a person makes to act or to check: only what it needs, and the biggest page."""
        page = resolve(reader.input_schema.get("properties", {}).get(PAGE, {}), reader.input_schema).bounds()[1]
        widest = {PAGE: page} if page is not None else {}
        arguments = self._arguments(reader, {**widest, **overrides}, optional={})
        return await self._call(reader.name, arguments), arguments

    async def _target(self, contract: Contract) -> dict[str, Any] | None:
        """The argument naming the thing a tool acts on, found by listing first; None if nothing is listed.

        A product without the lister gets the schema's guess instead, so every
        errand makes at least one call and a day always ends.
        """
        source = contract.source
        lister = self._day.tool(source.lister) if source else None
        if source is None or lister is None:
            return {}
        outcome, _ = await self._read(lister, source.args)
        values = [item[source.key] for item in listed(outcome.structured) if item.get(source.key) is not None]
        if source.key != "id":  # a title is only a handle when no other listed item shares it
            values = [value for value in values if values.count(value) == 1]
        return {source.key: self._rng.choice(values)} if values else None

    async def _recall(self, tool: ToolInfo, recall: Recall, written: Mapping[str, Any], created: Any) -> None:
        reader = self._day.tool(recall.reader)
        if reader is None:
            return
        try:
            overrides = recall.args(written)
        except KeyError:  # this product's create takes other fields: nothing to look it up by
            return
        outcome, arguments = await self._read(reader, overrides)
        if not outcome.ok:
            return
        items = listed(outcome.structured)
        label = written.get(recall.label)
        if isinstance(created, str):
            shown = any(item.get("id") == created for item in items)
        elif isinstance(label, str):
            shown = any(label.strip() in json.dumps(item, ensure_ascii=False) for item in items)
        else:
            return
        if shown:
            self._checks_passed[tool.module] += 1
        elif len(items) < arguments.get(PAGE, math.inf):  # a full page proves nothing
            named = f" {_excerpt(str(label), 60)!r}" if label is not None else ""
            self._surprise(tool.module, f"{reader.name} did not show the {recall.noun}{named} just created")

    def _check_echo(self, tool: ToolInfo, written: Mapping[str, Any], outcome: CallOutcome) -> None:
        """What a create answers with should be what was written (plain text fields only)."""
        echoed = outcome.structured or {}
        properties = tool.input_schema.get("properties", {})
        for name, value in written.items():
            if not (isinstance(value, str) and isinstance(echoed.get(name), str)):
                continue
            if resolve(properties.get(name, {}), tool.input_schema).free_text and echoed[name] != value.strip():
                self._surprise(
                    tool.module,
                    f"{tool.name} returned {name} {_excerpt(echoed[name], 60)!r} for {_excerpt(value, 60)!r}",
                )

    async def _probe(self, tool: ToolInfo) -> None:
        """One broken call, of the kind this day has sent least, so that a day tries each of them."""
        contract = CONTRACTS.get(tool.name, GENERIC)
        target = await self._target(contract)
        base = self._arguments(tool, target)
        variants = probes(self._builder(tool), tool.input_schema, base)
        hostile = self._builder(tool, self._writer.hostile_filler(tool.module))
        awkward = hostile.arguments(tool.input_schema, contract.optional, target)
        if any(isinstance(value, str) and not value.isascii() for value in awkward.values()):
            variants.append(Probe("unicode", "", awkward, False))
        if contract.source and not target:  # acting on a made-up id: only refusals are owed
            variants = [variant for variant in variants if variant.expect_rejection]
        sent = Counter(probe.kind for probe in self.probes_sent.values())
        wanted = min({v.kind for v in variants}, key=lambda kind: (sent[kind], PROBE_KINDS.index(kind)))
        probe = self._rng.choice([v for v in variants if v.kind == wanted])
        self.probes_sent[call_key(tool.name, probe.arguments)] = probe
        await self._call(tool.name, probe.arguments, probe=probe.expect_rejection)

    def _surprise(self, module: str, text: str) -> None:
        self.surprises.append(text)
        self._findings[module].append(text)

    async def aclose(self) -> None:
        """Nothing to release: the scripted driver holds no connections."""

    # ---- the verdict --------------------------------------------------------------------------

    async def rate(self, day: Day, modules_used: list[str], history: list[CallOutcome]) -> Verdict:
        """A rating for each module used that has calls in the history; never one for any other."""
        ratings = []
        for module in modules_used:
            calls = [call for call in history if day.module_of(call.tool) == module]
            if calls:
                ratings.append(self._rate(day, module, calls))
        return Verdict(ratings=ratings)

    def _rate(self, day: Day, module: str, calls: list[CallOutcome]) -> Rating:
        tally = Tally.of(day, calls, self.probes_sent)
        surprises = self._findings.get(module, [])
        score = 5 - tally.penalty() - min(2, len(surprises))
        evidence = tally.evidence() + surprises
        if score == 5 and not (self._checks_passed.get(module) or tally.clean_rejections or len(calls) >= 3):
            score = 4
        if not evidence:
            checked = "; what I wrote showed up when I looked" if self._checks_passed.get(module) else ""
            evidence = [f"{len(calls)} call{'s' if len(calls) != 1 else ''}, all fine{checked}"]
        return Rating(module=module, rating=max(1, min(5, score)), notes="; ".join(evidence))


@dataclass
class Tally:
    """One module's calls sorted into what counts against it and what speaks for it."""

    calls: int = 0
    attempts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    failures: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    slow: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    latencies: list[float] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    accepted_garbage: list[str] = field(default_factory=list)
    unhelpful: list[str] = field(default_factory=list)
    clean_rejections: int = 0
    owed_rejections: int = 0
    hostile_handled: int = 0

    @classmethod
    def of(cls, day: Day, calls: list[CallOutcome], expected: Mapping[str, Probe]) -> Tally:
        tally = cls(calls=len(calls))
        for call in calls:
            tally.latencies.append(call.latency_ms)
            if call.latency_ms > SLOW_MS:
                tally.slow[call.tool].append(call.latency_ms)
            probe = expected.get(call_key(call.tool, call.arguments))
            info = day.tool(call.tool)
            tally.attempts[call.tool] += 1
            if probe is not None:
                tally._judge_probe(call, probe)
            elif not call.ok and info is not None and info.destructive and call.error:
                tally.refusals.append(f"{call.tool} was refused: {_excerpt(call.error)}")
            elif not call.ok:
                tally.failures[call.tool].append(call.error or "")
        return tally

    def _judge_probe(self, call: CallOutcome, probe: Probe) -> None:
        """A refusal is good if the schema rules the input out and the message names the field."""
        self.owed_rejections += probe.expect_rejection
        what = f"{probe.kind} input" + (f" in {probe.field}" if probe.field else "")
        if call.ok:
            if probe.expect_rejection:
                self.accepted_garbage.append(f"{call.tool} accepted {what}")
            else:
                self.hostile_handled += 1
            return
        message = (call.error or "").strip()
        if not message:
            self.unhelpful.append(f"{call.tool} rejected {what} with an empty message")
        elif probe.field and not re.search(rf"\b{re.escape(probe.field)}\b", message, re.IGNORECASE):
            self.unhelpful.append(f"{call.tool} rejected {what} without naming the field: {_excerpt(message)}")
        elif probe.expect_rejection:
            self.clean_rejections += 1
        else:
            self.failures[call.tool].append(message)

    def p95(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)] if ordered else 0.0

    def errors(self) -> int:
        return sum(len(messages) for messages in self.failures.values())

    def penalty(self) -> int:
        ratio = self.errors() / self.calls if self.calls else 0.0
        points = 0 if ratio == 0 else 1 if ratio < 0.25 else 2 if ratio < 0.5 else 3
        if any(len(messages) == self.attempts[tool] for tool, messages in self.failures.items()):
            points = max(points, 2)  # a feature that never worked, however few times it was tried
        points += (1 if self.slow else 0) + (1 if self.p95() > SLOW_MS else 0)
        points += (2 if self.accepted_garbage else 0) + (1 if self.unhelpful else 0)
        return points

    def evidence(self) -> list[str]:
        notes = []
        for tool, messages in sorted(self.failures.items()):
            tries = self.attempts[tool]
            how_often = f" {len(messages)} of {tries} times" if tries > 1 else ""
            notes.append(f"{tool} failed{how_often}: {_excerpt(messages[0]) or '(no message)'}")
        for tool, times in sorted(self.slow.items()):
            if len(times) == 1:
                notes.append(f"{tool} took {times[0]:,.0f} ms once")
            else:
                notes.append(f"{tool} was slow {len(times)} times (up to {max(times):,.0f} ms)")
        if self.p95() > SLOW_MS:
            notes.append(f"p95 latency {self.p95():,.0f} ms")
        notes += self.accepted_garbage + self.unhelpful + self.refusals
        if self.clean_rejections:
            notes.append(
                f"rejected {self.clean_rejections} of {self.owed_rejections} bad inputs cleanly, naming the field"
            )
        if self.hostile_handled:
            plural = "s" if self.hostile_handled > 1 else ""
            notes.append(f"took {self.hostile_handled} awkward but valid input{plural} in its stride")
        return notes


def _excerpt(text: str, limit: int = EXCERPT) -> str:
    return one_line(text, limit)
