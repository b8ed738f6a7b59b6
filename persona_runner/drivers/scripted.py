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
from persona_runner.util.canonical import canonical_json
from persona_runner.util.stats import percentile
from persona_runner.util.text import one_line

CHAOS = "chaos"
#: How often the chaos persona sends a broken call rather than running an ordinary errand.
CHAOS_PROBE_RATE = 0.75
#: Probe kinds the chaos persona sends, in this order of preference; "unicode" is valid text that is hard to handle.
PROBE_KINDS = (*INVALID_KINDS, "unicode")
#: Destructive tools are tried this much less often than others: people rarely delete.
DESTRUCTIVE_WEIGHT = 0.05
#: The paging argument a check widens, so that "not listed" means "not there".
PAGE = "limit"

# ---- how a day is rated --------------------------------------------------------------------------
# A module starts at BEST_RATING and loses points for what went wrong; the notes cite each reason.

#: The rating scale of the product's feedback: 5 is "no cause for complaint", 1 the floor.
BEST_RATING = 5
WORST_RATING = 1
#: A call slower than this is slow: about a second is where a person stops flowing and starts waiting.
SLOW_MS = 1000.0
#: A module is slow as a rule when its p95 is slow (more than one call in twenty): the latency the report shows.
P95 = 0.95
#: Any failed call costs a point; a failure share at or past each step costs one more (a quarter of calls
#: failing is frequent, half or more is a module that mostly does not work).
ERROR_SHARE_STEPS = (0.25, 0.5)
#: The least a tool that failed every time it was tried costs: for this person the feature is broken,
#: however few the tries, so the module cannot rate above 3.
NEVER_WORKED_POINTS = 2
#: One slow call is an annoyance; slowness as a rule (a slow p95) costs one point more.
SLOW_CALL_POINTS = 1
SLOW_P95_POINTS = 1
#: Accepting input the module's own schema forbids stores bad data, which is worse than any slowness.
ACCEPTED_GARBAGE_POINTS = 2
#: A refusal that does not name the field leaves the person guessing what to fix.
UNHELPFUL_REFUSAL_POINTS = 1
#: Surprises (what was written did not come back, or came back changed) cost a point each, but no more than this:
#: further ones are mostly the same fault seen again, and the notes list every one.
MAX_SURPRISE_POINTS = 2
#: A 5 must be earned: a check that read back what was written, a clean refusal, or at least this many
#: calls; one or two calls that worked are too little to praise.
CALLS_TO_EARN_BEST = 3
#: How much of a product's message a note quotes: its gist, and a note still reads as one line.
EXCERPT = 120
#: How much of a value a surprise quotes; a surprise quotes two (what was written, what came back).
QUOTED_VALUE = 60


@dataclass(frozen=True)
class Recall:
    """How a person checks that what they just wrote is really there."""

    reader: str
    args: Callable[[Mapping[str, Any]], dict[str, Any]]  # from the arguments that were written
    noun: str
    label: str | None  # the written field that names the thing in a surprise
    #: The reader fetches the one thing by the id its creation answered (`*.get`), rather than listing.
    by_id: bool = False


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
#: A tool named like `<thing><sep><verb>` with one of these verbs makes a thing a person can look for afterwards.
_CREATES = re.compile(r"(?P<thing>.+?)(?P<sep>[./_-])(?:create|add|new)")
#: Where a person looks for what they made: a listing first, else the thing itself by its id.
_LISTERS = ("list", "search")


def contract_for(tool: ToolInfo, day: Day) -> Contract:
    """What the persona knows of `tool`: its contract when it has one; else, for a tool that creates something
    (`notes_create`, `thing-add`) beside one that lists or gets such things, a check that it is there after."""
    known = CONTRACTS.get(tool.name)
    if known is not None:
        return known
    made = _CREATES.fullmatch(tool.name)
    if made is None:
        return GENERIC
    thing, sep = made["thing"], made["sep"]
    required = tool.input_schema.get("required", [])
    properties = tool.input_schema.get("properties", {})
    label = next((name for name in required if properties.get(name, {}).get("type") == "string"), None)
    for verb in _LISTERS:
        lister = day.tool(f"{thing}{sep}{verb}")
        if lister is not None and not lister.input_schema.get("required"):
            return Contract(recall=Recall(lister.name, lambda _w: {}, thing, label))
    getter = day.tool(f"{thing}{sep}get")
    if getter is not None and getter.input_schema.get("required") == ["id"]:
        return Contract(recall=Recall(getter.name, lambda _w: {}, thing, label, by_id=True))
    return GENERIC


class _DayOver(Exception):
    """The turn budget is spent: the day ends wherever the persona was."""


def day_rng(day: Day) -> Random:
    """The dice of one persona's day; string seeding is stable across processes."""
    return Random(f"{day.seed}:{day.persona.name}:{day.tick_date.isoformat()}")


def call_key(tool: str, arguments: Mapping[str, Any]) -> str:
    """What tells one call from another: the tool and the canonical JSON of its arguments.

    The arguments are the JSON the call sends (built from the tool's schema or
    read from the product's answers), so the strict canonical form always
    applies; it is the form the call's input hash is taken of.
    """
    return f"{tool} {canonical_json(arguments)}"


def listed(structured: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The items of a listing answer: its first list of objects (`items`, `entries`, ...)."""
    for value in (structured or {}).values():
        if isinstance(value, list) and all(isinstance(item, dict) for item in value):
            return value
    return []


@dataclass
class DayState:
    """One persona's day: made when `play` starts, handed to every step of the day, read by `rate`.

    The dice, the turns taken and what the day showed travel together in it,
    so a rating weighs exactly what the day it rates showed, and nothing of
    one day can leak into another.
    """

    day: Day
    act: Act
    rng: Random
    writer: Writer
    #: Every surprise in the order met: the driver's own list, so the tick keeps them even if the day is cut off.
    surprises: list[str]
    turns: int = 0
    #: The surprises again, by the module they count against.
    findings: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    #: Per module, how often what was written showed up when read back: evidence for a 5.
    checks_passed: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    #: The broken calls sent, by call key: what lets a rating tell an owed refusal from a failure.
    probes_sent: dict[str, Probe] = field(default_factory=dict)

    @classmethod
    def begin(cls, day: Day, act: Act, surprises: list[str]) -> DayState:
        rng = day_rng(day)
        return cls(day, act, rng, Writer(day.persona.archetype, day.persona.style, rng, day.tick_date), surprises)

    def surprise(self, module: str, text: str) -> None:
        self.surprises.append(text)
        self.findings[module].append(text)


class ScriptedDriver:
    """Plays one persona for one day from a seed; see the module docstring."""

    name = "scripted"
    model: str | None = None

    def __init__(self) -> None:
        self.usage = Usage()
        self.surprises: list[str] = []
        self.exchanges: list[dict[str, Any]] = []
        #: The day played; None until `play` starts it.
        self._today: DayState | None = None

    @property
    def probes_sent(self) -> Mapping[str, Probe]:
        """The broken calls of the day played, by call key (none before a day is played)."""
        return self._today.probes_sent if self._today else {}

    # ---- the day ----------------------------------------------------------------------------

    async def play(self, day: Day, act: Act) -> None:
        today = self._today = DayState.begin(day, act, self.surprises)
        offered = {tool.module for tool in day.tools}
        mix = sorted((m, w) for m, w in day.persona.module_mix.items() if m in offered and w > 0)
        if not mix:
            self.surprises.append(f"none of my modules ({', '.join(sorted(day.persona.module_mix))}) are offered")
            return
        modules, weights = zip(*mix, strict=True)
        try:
            while today.turns < day.max_turns:
                module = today.rng.choices(modules, weights)[0]
                await self._errand(today, self._pick_tool(today, module))
        except _DayOver:
            return

    def _pick_tool(self, today: DayState, module: str) -> ToolInfo:
        tools = sorted((t for t in today.day.tools if t.module == module), key=lambda t: t.name)
        weights = [contract_for(t, today.day).weight * (DESTRUCTIVE_WEIGHT if t.destructive else 1.0) for t in tools]
        return today.rng.choices(tools, weights)[0]

    async def _call(self, today: DayState, tool: str, arguments: dict[str, Any], *, probe: bool = False) -> CallOutcome:
        if today.turns >= today.day.max_turns:
            raise _DayOver
        today.turns += 1
        try:
            return await today.act(tool, arguments, probe=probe)
        except TurnLimitReached as exc:
            raise _DayOver from exc

    def _builder(self, today: DayState, tool: ToolInfo, fill: Filler | None = None) -> Builder:
        return Builder(tool.input_schema, today.rng, today.day.tick_date, fill or today.writer.filler(tool.module))

    def _arguments(
        self,
        today: DayState,
        tool: ToolInfo,
        overrides: Mapping[str, Any] | None = None,
        optional: Mapping[str, float] | None = None,
    ) -> dict[str, Any]:
        contract = contract_for(tool, today.day)
        chosen = contract.optional if optional is None else optional
        return self._builder(today, tool).arguments(tool.input_schema, chosen, overrides)

    async def _errand(self, today: DayState, tool: ToolInfo) -> None:
        """One thing a person came to do: maybe find its target first, then do it, then check it."""
        # Destructive tools are gated before validation, so a probe there would only test the gate.
        prober = today.day.persona.archetype == CHAOS and not tool.destructive
        if prober and today.rng.random() < CHAOS_PROBE_RATE:
            await self._probe(today, tool)
            return
        contract = contract_for(tool, today.day)
        overrides = await self._target(today, contract)
        if overrides is None:
            instead = today.day.tool(contract.source.otherwise) if contract.source else None
            if instead is not None:
                await self._errand(today, instead)
            return
        written = self._arguments(today, tool, overrides)
        outcome = await self._call(today, tool.name, written)
        if not outcome.ok:
            return
        self._check_echo(today, tool, written, outcome)
        created = (outcome.structured or {}).get("id")
        if contract.recall:
            await self._recall(today, tool, contract.recall, written, created)
        then = today.day.tool(contract.then) if contract.then else None
        if then and isinstance(created, str):
            await self._call(today, then.name, self._arguments(today, then, {"id": created}))

    async def _read(
        self, today: DayState, reader: ToolInfo, overrides: Mapping[str, Any]
    ) -> tuple[CallOutcome, dict[str, Any]]:
        """A lookup a person makes to act or to check: only what it needs, and the biggest page."""
        page = resolve(reader.input_schema.get("properties", {}).get(PAGE, {}), reader.input_schema).bounds()[1]
        widest = {PAGE: page} if page is not None else {}
        arguments = self._arguments(today, reader, {**widest, **overrides}, optional={})
        return await self._call(today, reader.name, arguments), arguments

    async def _target(self, today: DayState, contract: Contract) -> dict[str, Any] | None:
        """The argument naming the thing a tool acts on, found by listing first; None if nothing is listed.

        A product without the lister gets the schema's guess instead, so every
        errand makes at least one call and a day always ends.
        """
        source = contract.source
        lister = today.day.tool(source.lister) if source else None
        if source is None or lister is None:
            return {}
        outcome, _ = await self._read(today, lister, source.args)
        values = [item[source.key] for item in listed(outcome.structured) if item.get(source.key) is not None]
        if source.key != "id":  # a title is only a handle when no other listed item shares it
            values = [value for value in values if values.count(value) == 1]
        return {source.key: today.rng.choice(values)} if values else None

    async def _recall(
        self, today: DayState, tool: ToolInfo, recall: Recall, written: Mapping[str, Any], created: Any
    ) -> None:
        reader = today.day.tool(recall.reader)
        if reader is None or (recall.by_id and not isinstance(created, str)):
            return
        try:
            overrides = {"id": created} if recall.by_id else recall.args(written)
        except KeyError:  # this product's create takes other fields: nothing to look it up by
            return
        outcome, arguments = await self._read(today, reader, overrides)
        if not outcome.ok:
            return
        items = [outcome.structured or {}] if recall.by_id else listed(outcome.structured)
        label = written.get(recall.label) if recall.label else None
        if isinstance(created, str):
            shown = any(item.get("id") == created for item in items)
        elif isinstance(label, str):
            shown = any(label.strip() in json.dumps(item, ensure_ascii=False) for item in items)
        else:
            return
        if shown:
            today.checks_passed[tool.module] += 1
        elif len(items) < arguments.get(PAGE, math.inf):  # a full page proves nothing
            named = f" {_excerpt(str(label), QUOTED_VALUE)!r}" if label is not None else ""
            today.surprise(tool.module, f"{reader.name} did not show the {recall.noun}{named} just created")

    def _check_echo(self, today: DayState, tool: ToolInfo, written: Mapping[str, Any], outcome: CallOutcome) -> None:
        """What a create answers with should be what was written (plain text fields only)."""
        echoed = outcome.structured or {}
        properties = tool.input_schema.get("properties", {})
        for name, value in written.items():
            if not (isinstance(value, str) and isinstance(echoed.get(name), str)):
                continue
            if resolve(properties.get(name, {}), tool.input_schema).free_text and echoed[name] != value.strip():
                shown, meant = _excerpt(echoed[name], QUOTED_VALUE), _excerpt(value, QUOTED_VALUE)
                today.surprise(tool.module, f"{tool.name} returned {name} {shown!r} for {meant!r}")

    async def _probe(self, today: DayState, tool: ToolInfo) -> None:
        """One broken call, of the kind this day has sent least, so that a day tries each of them."""
        contract = contract_for(tool, today.day)
        target = await self._target(today, contract)
        base = self._arguments(today, tool, target)
        variants = probes(self._builder(today, tool), tool.input_schema, base)
        hostile = self._builder(today, tool, today.writer.hostile_filler(tool.module))
        awkward = hostile.arguments(tool.input_schema, contract.optional, target)
        if any(isinstance(value, str) and not value.isascii() for value in awkward.values()):
            variants.append(Probe("unicode", "", awkward, False))
        if contract.source and not target:  # acting on a made-up id: only refusals are owed
            variants = [variant for variant in variants if variant.expect_rejection]
        sent = Counter(probe.kind for probe in today.probes_sent.values())
        wanted = min({v.kind for v in variants}, key=lambda kind: (sent[kind], PROBE_KINDS.index(kind)))
        probe = today.rng.choice([v for v in variants if v.kind == wanted])
        today.probes_sent[call_key(tool.name, probe.arguments)] = probe
        await self._call(today, tool.name, probe.arguments, probe=probe.expect_rejection)

    async def aclose(self) -> None:
        """Nothing to release: the scripted driver holds no connections."""

    # ---- the verdict --------------------------------------------------------------------------

    async def rate(self, day: Day, modules_used: list[str], history: list[CallOutcome]) -> Verdict:
        """A rating for each module used that has calls in the history; never one for any other.

        What the day played showed beyond the calls (surprises, checks, probes) counts too;
        rated without having played, only the history speaks.
        """
        ratings = []
        for module in modules_used:
            calls = [call for call in history if day.module_of(call.tool) == module]
            if calls:
                ratings.append(self._rate(day, module, calls))
        return Verdict(ratings=ratings)

    def _rate(self, day: Day, module: str, calls: list[CallOutcome]) -> Rating:
        today = self._today
        tally = Tally.of(day, calls, self.probes_sent)
        surprises = today.findings.get(module, []) if today else []
        checked = bool(today and today.checks_passed.get(module))
        score = BEST_RATING - tally.penalty() - min(MAX_SURPRISE_POINTS, len(surprises))
        evidence = tally.evidence() + surprises
        unproven = score == BEST_RATING and not (checked or tally.clean_rejections or len(calls) >= CALLS_TO_EARN_BEST)
        if unproven:
            score = BEST_RATING - 1
        if not evidence:
            confirmed = "; what I wrote showed up when I looked" if checked else ""
            evidence = [f"{len(calls)} call{'s' if len(calls) != 1 else ''}, all fine{confirmed}"]
        if unproven:
            evidence.append(
                f"too little seen to give {BEST_RATING:g}: {CALLS_TO_EARN_BEST} calls or a confirmed write earn it"
            )
        rating = max(WORST_RATING, min(BEST_RATING, score))
        # A lost point is said first, with why, so a product team reads "4/5: ..." and knows what cost it.
        lost = f"{rating}/{BEST_RATING}: " if rating < BEST_RATING else ""
        return Rating(module=module, rating=rating, notes=lost + "; ".join(evidence))


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
        """The module's p95 latency, by the rule the report uses (0 without calls)."""
        return percentile(self.latencies, P95) if self.latencies else 0.0

    def errors(self) -> int:
        return sum(len(messages) for messages in self.failures.values())

    def penalty(self) -> int:
        """The points the module loses for what went wrong (see the rating constants for each value)."""
        share = self.errors() / self.calls if self.calls else 0.0
        points = 0 if share == 0 else 1 + sum(share >= step for step in ERROR_SHARE_STEPS)
        if any(len(messages) == self.attempts[tool] for tool, messages in self.failures.items()):
            points = max(points, NEVER_WORKED_POINTS)
        points += (SLOW_CALL_POINTS if self.slow else 0) + (SLOW_P95_POINTS if self.p95() > SLOW_MS else 0)
        points += ACCEPTED_GARBAGE_POINTS if self.accepted_garbage else 0
        points += UNHELPFUL_REFUSAL_POINTS if self.unhelpful else 0
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
