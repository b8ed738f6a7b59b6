"""The scripted driver against the real product: real tool specs, real handlers, a real SQLite file.

`act` here does what the gateway does for a call (validate with the tool's
pydantic model, run the handler, report errors as text), minus the network;
a few tests bend what it reports (latency, a list that forgets) to see the
driver notice.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlmodel import Session

from persona_runner.domain import CallOutcome, Day, PersonaProfile, ToolInfo, TurnLimitReached
from persona_runner.drivers.content import LEXICONS, SENTENCES, WHEN
from persona_runner.drivers.schema_args import INVALID_KINDS
from persona_runner.drivers.scripted import ScriptedDriver, call_key
from tool_registry.backend import Backend
from tool_registry.gateway import format_validation_error
from tool_registry.identity import Membership, Space, User
from tool_registry.modules import build_registry
from tool_registry.policy import PolicyGate
from tool_registry.schema import open_product_db
from tool_registry.spec import Registry, ToolContext, ToolError

pytestmark = pytest.mark.anyio

TODAY = dt.date(2026, 11, 22)
REGISTRY = build_registry()
TOOLS = [
    ToolInfo(
        name=spec.name,
        description=spec.description,
        module=spec.module,
        input_schema=spec.input.model_json_schema(),
        policy_hint=spec.policy_hint,
        read_only=spec.policy_hint == "read",
        destructive=spec.policy_hint == "destructive",
    )
    for spec in REGISTRY.proposable()
]
#: The product's gate as the gateway runs it (destructive tools refused), without its rate limit.
POLICY = PolicyGate(rate_limit=1_000_000)
#: Rewrites what the product answered before the persona sees it: a fault in the product.
Bend = Callable[[CallOutcome], CallOutcome]


@dataclass
class ProductAct:
    """The product, called the way the gateway calls it, recording every outcome in order."""

    registry: Registry
    ctx: ToolContext
    limit: int = 1000
    bend: Bend = lambda outcome: outcome
    history: list[CallOutcome] = field(default_factory=list)

    async def __call__(self, tool: str, arguments: dict[str, Any], *, probe: bool = False) -> CallOutcome:
        if len(self.history) >= self.limit:
            raise TurnLimitReached(tool)
        outcome = self.bend(replace(await self._run(tool, arguments), probe=probe))
        self.history.append(outcome)
        return outcome

    async def _run(self, tool: str, arguments: dict[str, Any]) -> CallOutcome:
        spec = self.registry.get(tool)
        assert spec is not None, tool
        decision = POLICY.check(self.ctx.user_id, spec, arguments)
        if not decision.allowed:
            return CallOutcome(tool, arguments, "error", 5.0, error=decision.message)
        try:
            result = await spec.handler(spec.input.model_validate(arguments), self.ctx)
        except ValidationError as exc:
            return CallOutcome(tool, arguments, "error", 5.0, error=format_validation_error(tool, exc))
        except ToolError as exc:
            return CallOutcome(tool, arguments, "error", 5.0, error=str(exc))
        return CallOutcome(tool, arguments, "ok", 5.0, structured=result.model_dump(mode="json"))


def persona_context(path: Path) -> ToolContext:
    """A fresh product database holding one persona user in its personal space."""
    engine = open_product_db(str(path))
    with Session(engine) as session:
        session.add(User(id="u1", email="p@example.test", name="P", kind="persona", password_hash="x"))
        session.add(Space(id="s1", name="personal", type="personal", owner_id="u1"))
        session.add(Membership(space_id="s1", user_id="u1", role="owner"))
        session.commit()
    return ToolContext(user_id="u1", space_id="s1", backend=Backend(engine))


@pytest.fixture
def product(tmp_path: Path) -> Callable[..., ProductAct]:
    """Each call a new act on the same fresh product."""
    ctx = persona_context(tmp_path / "product.db")
    return lambda **kwargs: ProductAct(REGISTRY, ctx, **kwargs)


def persona(
    archetype: str = "solo-dev", mix: dict[str, float] | None = None, style: str | None = None
) -> PersonaProfile:
    return PersonaProfile(
        name=f"p-{archetype}",
        email=f"{archetype}@example.test",
        archetype=archetype,
        system_prompt="",
        module_mix=mix or {"todo": 3, "notes": 2, "journal": 1, "habits": 1, "mood": 1, "calendar": 1, "contacts": 1},
        style=style,
    )


def a_day(profile: PersonaProfile | None = None, seed: int = 7, max_turns: int = 30, date: dt.date = TODAY) -> Day:
    return Day(persona=profile or persona(), tick_date=date, seed=seed, spaces=[], tools=TOOLS, max_turns=max_turns)


async def play(day: Day, act: ProductAct) -> ScriptedDriver:
    driver = ScriptedDriver()
    await driver.play(day, act)
    return driver


def modules(history: list[CallOutcome]) -> list[str]:
    return sorted({call.tool.split(".")[0] for call in history})


# ---- determinism -----------------------------------------------------------------------------


def transcript(history: list[CallOutcome]) -> list[str]:
    """The calls as the persona chose them: product-made ids become the order they were first seen in."""
    seen: dict[str, str] = {}
    lines = []
    for call in history:
        arguments = {k: seen.get(v, v) if k == "id" and isinstance(v, str) else v for k, v in call.arguments.items()}
        lines.append(call_key(call.tool, arguments))
        answer = call.structured or {}
        for item in [answer, *answer.get("items", [])]:
            if isinstance(item.get("id"), str):
                seen.setdefault(item["id"], f"#{len(seen)}")
    return lines


@pytest.mark.parametrize("archetype", ["solo-dev", "chaos"])
async def test_same_seed_same_calls_and_other_seed_other_calls(tmp_path: Path, archetype: str) -> None:
    runs = []
    for n, seed in enumerate((7, 7, 8)):
        act = ProductAct(REGISTRY, persona_context(tmp_path / f"{n}.db"))
        await play(a_day(persona(archetype), seed=seed, max_turns=40), act)
        runs.append(transcript(act.history))
    first, again, other = runs
    assert first == again and len(first) == 40
    assert first != other


# ---- what it picks ---------------------------------------------------------------------------


async def test_module_mix_weights_are_respected(product: Callable[..., ProductAct]) -> None:
    profile = persona(mix={"todo": 6, "mood": 1, "contacts": 0})
    act = product()
    for offset in range(20):
        await play(a_day(profile, date=TODAY + dt.timedelta(days=offset), max_turns=15), act)
    counts = Counter(call.tool.split(".")[0] for call in act.history)
    assert set(counts) <= {"todo", "mood"}
    assert counts["todo"] > 3 * counts["mood"] > 0


async def test_only_offered_modules_and_nothing_when_none_offered(product: Callable[..., ProductAct]) -> None:
    act = product()
    driver = ScriptedDriver()
    await driver.play(a_day(persona(mix={"payroll": 3})), act)
    assert act.history == []
    assert driver.surprises == ["none of my modules (payroll) are offered"]


async def test_max_turns_is_respected_and_a_turn_limit_ends_the_day(product: Callable[..., ProductAct]) -> None:
    act = product()
    await play(a_day(max_turns=9), act)
    assert len(act.history) == 9
    early = product(limit=4)
    await play(a_day(max_turns=50), early)  # act refuses the fifth call: the day just ends
    assert len(early.history) == 4


# ---- chains and checks -------------------------------------------------------------------------


async def test_list_then_complete_uses_a_listed_id(product: Callable[..., ProductAct]) -> None:
    act = product()
    for offset in range(6):
        await play(a_day(persona(mix={"todo": 1}), date=TODAY + dt.timedelta(days=offset)), act)
    completions = [i for i, call in enumerate(act.history) if call.tool == "todo.complete"]
    assert completions
    for i in completions:
        listing = act.history[i - 1]
        assert listing.tool == "todo.list"
        assert act.history[i].arguments["id"] in {item["id"] for item in (listing.structured or {})["items"]}
        assert act.history[i].ok


async def test_writes_are_read_back_and_pass_on_a_healthy_product(product: Callable[..., ProductAct]) -> None:
    act = product()
    profile = persona(mix={"todo": 1, "notes": 1, "habits": 1, "mood": 1, "calendar": 1})
    driver = await play(a_day(profile, max_turns=80), act)
    pairs = {(a.tool, b.tool) for a, b in zip(act.history, act.history[1:], strict=False) if a.ok}
    assert {
        ("todo.create", "todo.list"),
        ("notes.create", "notes.search"),
        ("habits.create", "habits.log"),
        ("calendar.create_event", "calendar.list_events"),
        ("mood.log", "mood.today"),
    } <= pairs
    assert driver.surprises == []
    assert all(call.ok for call in act.history), [call.error for call in act.history if not call.ok]


def forgetful(tool: str) -> Bend:
    """A product bug: `tool` answers with an empty listing."""

    def bend(outcome: CallOutcome) -> CallOutcome:
        if outcome.tool != tool or not outcome.ok:
            return outcome
        return replace(outcome, structured={**(outcome.structured or {}), "items": [], "count": 0})

    return bend


async def test_a_list_that_forgets_what_was_created_is_a_surprise(product: Callable[..., ProductAct]) -> None:
    act = product(bend=forgetful("todo.list"))
    day = a_day(persona(mix={"todo": 1}), max_turns=40)
    driver = await play(day, act)
    created = [call.arguments["title"] for call in act.history if call.tool == "todo.create"]
    assert created
    assert f"todo.list did not show the task {created[0]!r} just created" in driver.surprises
    verdict = await driver.rate(day, ["todo"], act.history)
    (rating,) = verdict.ratings
    assert rating.rating <= 3
    assert "todo.list did not show the task" in rating.notes


async def test_search_that_misses_a_note_is_a_surprise(product: Callable[..., ProductAct]) -> None:
    act = product(bend=forgetful("notes.search"))
    driver = await play(a_day(persona(mix={"notes": 1}), max_turns=30), act)
    assert any(s.startswith("notes.search did not show the note") for s in driver.surprises)


def renaming(outcome: CallOutcome) -> CallOutcome:
    """A product bug: todo.create stores the title in capitals."""
    if outcome.tool != "todo.create" or not outcome.ok:
        return outcome
    answer = outcome.structured or {}
    return replace(outcome, structured={**answer, "title": answer["title"].upper()})


async def test_a_create_that_changes_what_was_written_is_a_surprise(product: Callable[..., ProductAct]) -> None:
    act = product(bend=renaming)
    driver = await play(a_day(persona(mix={"todo": 1}), max_turns=10), act)
    title = next(call.arguments["title"] for call in act.history if call.tool == "todo.create")
    assert f"todo.create returned title {title.upper()!r} for {title!r}" in driver.surprises


# ---- chaos ------------------------------------------------------------------------------------


async def test_chaos_sends_every_kind_and_rates_clean_rejections_well(product: Callable[..., ProductAct]) -> None:
    act = product()
    day = a_day(persona("chaos", mix={"todo": 1, "notes": 1, "calendar": 1, "habits": 1}), max_turns=60)
    driver = await play(day, act)
    kinds = {probe.kind for probe in driver.probes_sent.values()}
    assert set(INVALID_KINDS) <= kinds and "unicode" in kinds
    owed = {key for key, probe in driver.probes_sent.items() if probe.expect_rejection}
    invalid = [call for call in act.history if call_key(call.tool, call.arguments) in owed]
    assert invalid and all(not call.ok for call in invalid)
    assert any(call.ok for call in act.history)  # and a few ordinary calls
    # Exactly the calls owed a refusal are flagged as probes, so they never count as product errors.
    assert [call.probe for call in act.history] == [call_key(call.tool, call.arguments) in owed for call in act.history]
    verdict = await driver.rate(day, modules(act.history), act.history)
    assert all(r.rating >= 4 for r in verdict.ratings), verdict.ratings
    assert any("bad inputs cleanly, naming the field" in r.notes for r in verdict.ratings)


def lenient_and_vague(outcome: CallOutcome) -> CallOutcome:
    """A product that says only "invalid" when it refuses."""
    return replace(outcome, error="invalid") if not outcome.ok else outcome


async def test_chaos_rates_vague_rejections_badly(product: Callable[..., ProductAct]) -> None:
    act = product(bend=lenient_and_vague)
    day = a_day(persona("chaos", mix={"todo": 1}), max_turns=30)
    driver = await play(day, act)
    (rating,) = (await driver.rate(day, ["todo"], act.history)).ratings
    assert rating.rating <= 4
    assert "without naming the field: invalid" in rating.notes


def accepts_anything(outcome: CallOutcome) -> CallOutcome:
    """A product that validates nothing: every call "works"."""
    return replace(outcome, outcome="ok", error=None, structured=outcome.structured or {})


async def test_chaos_rates_a_product_that_accepts_garbage_badly(product: Callable[..., ProductAct]) -> None:
    act = product(bend=accepts_anything)
    day = a_day(persona("chaos", mix={"todo": 1}), max_turns=30)
    driver = await play(day, act)
    (rating,) = (await driver.rate(day, ["todo"], act.history)).ratings
    assert rating.rating <= 3
    assert "todo." in rating.notes and " accepted " in rating.notes


# ---- ratings ----------------------------------------------------------------------------------


def outcome(tool: str, ok: bool = True, ms: float = 20.0, error: str | None = None) -> CallOutcome:
    return CallOutcome(tool, {"n": ms}, "ok" if ok else "error", ms, error=error, structured={} if ok else None)


async def test_ratings_cite_errors_and_slow_calls() -> None:
    day = a_day()
    history = [
        outcome("todo.complete", ok=False, error="task 'x' is already completed"),
        outcome("todo.complete", ok=False, error="no open task titled 'y'"),
        outcome("todo.complete"),
        outcome("todo.list", ms=1240.0),
        outcome("notes.list"),
        outcome("notes.search"),
        outcome("notes.list", ms=30.0),
        outcome("mood.today"),
        outcome("mood.log", ok=False, error=""),
        outcome("mood.today", ms=25.0),
        outcome("mood.insights"),
    ]
    ratings = {r.module: r for r in (await ScriptedDriver().rate(day, ["todo", "notes", "mood"], history)).ratings}
    assert ratings["mood"].notes == "3/5: mood.log failed: (no message)"  # the lost points first, and why
    assert ratings["mood"].rating == 3  # one failure in four calls, but that feature never worked
    assert "todo.complete failed 2 of 3 times: task 'x' is already completed" in ratings["todo"].notes
    assert "todo.list took 1,240 ms once" in ratings["todo"].notes
    assert ratings["todo"].rating <= 2
    assert ratings["notes"].rating == 5 and ratings["notes"].notes == "3 calls, all fine"


async def test_slow_calls_and_refusals_are_told_apart_from_failures() -> None:
    day = a_day()
    history = [
        outcome("habits.list", ms=1500.0),
        outcome("habits.list", ms=2500.0),
        outcome("habits.log", ms=900.0),
        outcome("notes.delete", ok=False, error="policy denied notes.delete: destructive tools need opt-in"),
        outcome("notes.list"),
        outcome("notes.search"),
    ]
    ratings = {r.module: r for r in (await ScriptedDriver().rate(day, ["habits", "notes"], history)).ratings}
    assert "habits.list was slow 2 times (up to 2,500 ms)" in ratings["habits"].notes
    # The p95 the report would show for these calls: 1,500 + 0.9 * (2,500 - 1,500), interpolated.
    assert "p95 latency 2,400 ms" in ratings["habits"].notes
    assert ratings["habits"].rating == 3
    assert ratings["notes"].rating == 5
    assert "notes.delete was refused: policy denied notes.delete" in ratings["notes"].notes


async def test_one_slow_call_is_not_a_slow_p95() -> None:
    history = [outcome("todo.list"), outcome("todo.list"), outcome("todo.list", ms=1100.0)]
    (rating,) = (await ScriptedDriver().rate(a_day(), ["todo"], history)).ratings
    # p95 = 20 + 0.9 * (1,100 - 20) = 992 ms, under a second: one point off for the slow call alone.
    assert (rating.rating, rating.notes) == (4, "4/5: todo.list took 1,100 ms once")


async def test_a_point_withheld_for_too_little_seen_says_so() -> None:
    (rating,) = (await ScriptedDriver().rate(a_day(), ["todo"], [outcome("todo.list")])).ratings
    assert (rating.rating, rating.notes) == (
        4,
        "4/5: 1 call, all fine; too little seen to give 5: 3 calls or a confirmed write earn it",
    )


async def test_never_rates_a_module_it_did_not_use() -> None:
    verdict = await ScriptedDriver().rate(a_day(), ["todo", "mood"], [outcome("todo.stats")])
    assert [r.module for r in verdict.ratings] == ["todo"]
    assert verdict.ratings[0].rating == 4  # fine, but one call is too little to praise


async def test_a_healthy_day_rates_every_used_module_well(product: Callable[..., ProductAct]) -> None:
    act = product()
    day = a_day(max_turns=40)
    driver = await play(day, act)
    used = modules(act.history)
    verdict = await driver.rate(day, used, act.history)
    assert [r.module for r in verdict.ratings] == used
    assert all(r.rating >= 4 and r.notes for r in verdict.ratings)


# ---- content ----------------------------------------------------------------------------------


async def test_unknown_tools_get_schema_calls() -> None:
    plant = ToolInfo(
        name="garden.plant",
        description="",
        module="garden",
        input_schema={
            "type": "object",
            "properties": {
                "plant": {"type": "string", "maxLength": 20},
                "rows": {"type": "integer", "minimum": 1, "maximum": 4},
            },
            "required": ["plant", "rows"],
        },
    )
    calls: list[tuple[str, dict[str, Any]]] = []

    async def act(tool: str, arguments: dict[str, Any], *, probe: bool = False) -> CallOutcome:
        calls.append((tool, arguments))
        return CallOutcome(tool, arguments, "ok", 1.0, structured={})

    day = replace(a_day(persona(mix={"garden": 1}), max_turns=5), tools=[plant])
    await ScriptedDriver().play(day, act)
    assert "garden.plant" not in {spec.name for spec in REGISTRY.proposable()}
    assert len(calls) == 5
    assert all(len(a["plant"]) <= 20 and 1 <= a["rows"] <= 4 for _, a in calls)


async def test_archetype_and_style_shape_what_is_written(product: Callable[..., ProductAct]) -> None:
    written: dict[str, list[str]] = {}
    for archetype, style in (("researcher", None), ("ceo-busy", "terse"), ("overwhelmed-newbie", "typos")):
        act = product()
        await play(a_day(persona(archetype, mix={"notes": 1}, style=style), max_turns=40), act)
        written[archetype] = [call.arguments["body"] for call in act.history if "body" in call.arguments]
    mean = {archetype: sum(map(len, bodies)) / len(bodies) for archetype, bodies in written.items()}
    assert mean["researcher"] > 3 * mean["ceo-busy"]
    assert not any(" the " in body for body in written["ceo-busy"])  # terse: no articles
    # typos: words found in none of the texts the newbie's sentences are made from
    newbie = LEXICONS["overwhelmed-newbie"]
    sources = (*SENTENCES, *WHEN, *newbie.verbs, *newbie.things, *newbie.people, *newbie.places)
    known = {bare(word) for text in sources for word in text.split()}
    assert {word for body in written["overwhelmed-newbie"] for word in body.split() if bare(word) not in known}


def bare(word: str) -> str:
    """A written word as the sentence sources spell it: no capital, no trailing punctuation."""
    return word.rstrip(".,:").lower()


@dataclass
class MemoServer:
    """A foreign server's two tools, named its way (`memo_create`, `memo_list`), with no contract of ours."""

    forgets: bool = False
    memos: list[dict[str, Any]] = field(default_factory=list)
    history: list[CallOutcome] = field(default_factory=list)

    TOOLS = (
        ToolInfo(
            name="memo_create",
            description="Write a memo.",
            module="memo",
            input_schema={"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
        ),
        ToolInfo(name="memo_list", description="Every memo.", module="memo", input_schema={"type": "object"}),
    )

    async def __call__(self, tool: str, arguments: dict[str, Any], *, probe: bool = False) -> CallOutcome:
        if tool == "memo_create":
            memo = {"id": f"m{len(self.memos)}", "text": arguments["text"]}
            self.memos.append(memo)
            answer: dict[str, Any] = memo
        else:
            answer = {"items": [] if self.forgets else list(self.memos)}
        outcome = CallOutcome(tool=tool, arguments=arguments, outcome="ok", latency_ms=5.0, structured=answer)
        self.history.append(outcome)
        return outcome


@pytest.mark.parametrize("forgets", [False, True], ids=["remembers", "forgets"])
async def test_a_foreign_servers_create_is_read_back_from_its_list(forgets: bool) -> None:
    server = MemoServer(forgets=forgets)
    profile = persona(mix={"memo": 1.0})
    day = Day(persona=profile, tick_date=TODAY, seed=3, spaces=[], tools=list(MemoServer.TOOLS), max_turns=6)
    driver = ScriptedDriver()
    await driver.play(day, server)
    tools = [call.tool for call in server.history]
    created = tools.index("memo_create")
    assert tools[created + 1] == "memo_list"  # what was written is looked for at once
    missed = [s for s in driver.surprises if "memo_list did not show the memo" in s]
    assert bool(missed) is forgets
