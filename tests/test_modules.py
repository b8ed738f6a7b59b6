"""The product modules, called the way the gateway calls them: validate the
arguments with the tool's input model, then await its handler with a real
`ToolContext` over a real database (a SQLite file, and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from typing import Any

import anyio
import pytest
from pydantic import BaseModel, ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from tool_registry.backend import Backend, MoodEntry, Note
from tool_registry.db import utcnow
from tool_registry.field_errors import field_problems
from tool_registry.gateway import format_validation_error
from tool_registry.identity import Membership, Space, User
from tool_registry.modules import build_registry
from tool_registry.modules._fields import utc_today
from tool_registry.schema import open_product_db
from tool_registry.spec import DuplicateToolError, Registry, ToolContext, ToolError

REGISTRY = build_registry()
TODAY = utc_today()


def days_from_today(days: int) -> str:
    return (TODAY + dt.timedelta(days=days)).isoformat()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Engine]:
    url = str(tmp_path / "product.db") if request.param == "sqlite" else request.getfixturevalue("pg_url")
    engine = open_product_db(url)
    yield engine
    engine.dispose()


class World:
    """Users, spaces and memberships, written as identity rows, and contexts to act in them."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.backend = Backend(engine)

    def _add(self, row: Any) -> Any:
        with Session(self.engine, expire_on_commit=False) as session:
            session.add(row)
            session.commit()
        return row

    def user(self, email: str) -> User:
        return self._add(User(email=email, name=email.split("@")[0], password_hash="unused"))

    def space(self, owner: User, name: str, type: str = "personal") -> Space:
        space = self._add(Space(name=name, type=type, owner_id=owner.id))
        self.join(owner, space, role="owner")
        return space

    def join(self, user: User, space: Space, role: str = "member") -> None:
        self._add(Membership(space_id=space.id, user_id=user.id, role=role))

    def ctx(self, user: User, space: Space) -> ToolContext:
        return ToolContext(user_id=user.id, space_id=space.id, backend=self.backend)


@pytest.fixture
def world(engine: Engine) -> World:
    return World(engine)


@pytest.fixture
def ada(world: World) -> ToolContext:
    """Ada, acting in her personal space."""
    user = world.user("ada@example.test")
    return world.ctx(user, world.space(user, "Ada"))


async def call(ctx: ToolContext, tool: str, /, **args: Any) -> Any:
    spec = REGISTRY.get(tool)
    assert spec is not None, tool
    result = await spec.handler(spec.input.model_validate(args), ctx)
    assert isinstance(result, spec.output)
    return result


def dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")


# --- registry ---------------------------------------------------------------


def test_registry_holds_the_contract_in_module_order() -> None:
    assert [spec.name for spec in REGISTRY] == [
        "todo.create", "todo.list", "todo.complete", "todo.complete_by_title", "todo.stats",
        "notes.create", "notes.list", "notes.search", "notes.append", "notes.tag", "notes.delete",
        "journal.add", "journal.list",
        "habits.create", "habits.list", "habits.log", "habits.recent_logs", "habits.archive",
        "mood.log", "mood.today", "mood.insights",
        "calendar.create_event", "calendar.list_events",
        "contacts.create", "contacts.search",
        "spaces.list",
        "admin.set_tier",
    ]  # fmt: skip
    delete = REGISTRY.get("notes.delete")
    assert delete is not None and (delete.policy_hint, delete.default_policy) == ("destructive", "propose")
    assert "admin.set_tier" not in {spec.name for spec in REGISTRY.proposable()}
    assert all(spec.default_policy == "auto" for spec in REGISTRY if spec.policy_hint != "destructive")
    for spec in REGISTRY:
        assert spec.input.model_json_schema()["additionalProperties"] is False, spec.name


def test_registering_a_tool_twice_raises() -> None:
    spec = REGISTRY.get("todo.create")
    assert spec is not None
    registry = Registry([spec])
    with pytest.raises(DuplicateToolError, match=r"todo\.create"):
        registry.register(spec)


# --- todo -------------------------------------------------------------------


@pytest.mark.anyio
async def test_todo_create_then_list(ada: ToolContext) -> None:
    task = await call(
        ada, "todo.create", title="  Buy milk ", notes="2 litres", due=days_from_today(1), priority="high"
    )
    assert (task.title, task.notes, task.priority, task.completed) == ("Buy milk", "2 litres", "high", False)
    listed = await call(ada, "todo.list")
    assert listed.count == 1 and dump(listed.items[0]) == dump(task)


@pytest.mark.anyio
async def test_todo_list_filters_and_stats(ada: ToolContext) -> None:
    late = await call(ada, "todo.create", title="late", due=days_from_today(-2))
    await call(ada, "todo.create", title="today", due=days_from_today(0))
    await call(ada, "todo.create", title="later", due=days_from_today(3))
    await call(ada, "todo.create", title="someday")
    await call(ada, "todo.complete", id=late.id)
    done_overdue = await call(ada, "todo.create", title="done before", due=days_from_today(-1))
    await call(ada, "todo.complete", id=done_overdue.id)

    async def titles(which: str, **args: Any) -> list[str]:
        return [task.title for task in (await call(ada, "todo.list", filter=which, **args)).items]

    assert await titles("open") == ["today", "later", "someday"]
    assert await titles("today") == ["today"]
    assert await titles("overdue") == []
    assert sorted(await titles("completed")) == ["done before", "late"]
    assert len(await titles("all")) == 5
    assert await titles("open", limit=1) == ["today"]

    overdue = await call(ada, "todo.create", title="overdue", due=days_from_today(-5))
    assert await titles("overdue") == ["overdue"]
    stats = await call(ada, "todo.stats")
    assert dump(stats) == {"open": 4, "completed": 2, "overdue": 1, "due_today": 1, "total": 6}
    assert overdue.id in {task.id for task in (await call(ada, "todo.list")).items}


@pytest.mark.anyio
async def test_todo_complete_twice_is_an_error(ada: ToolContext) -> None:
    task = await call(ada, "todo.create", title="Call mum")
    done = await call(ada, "todo.complete", id=task.id)
    assert done.completed
    with pytest.raises(ToolError, match="'Call mum' is already completed"):
        await call(ada, "todo.complete", id=task.id)
    with pytest.raises(ToolError, match="no task with id 'nope' in this space"):
        await call(ada, "todo.complete", id="nope")


@pytest.mark.anyio
async def test_todo_complete_by_title(ada: ToolContext) -> None:
    await call(ada, "todo.create", title="Buy milk")
    done = await call(ada, "todo.complete_by_title", title="buy MILK")
    assert done.title == "Buy milk" and done.completed
    with pytest.raises(ToolError, match="no open task titled 'Buy milk' in this space"):
        await call(ada, "todo.complete_by_title", title="Buy milk")
    await call(ada, "todo.create", title="Water plants")
    await call(ada, "todo.create", title="water plants")
    with pytest.raises(ToolError, match="2 open tasks are titled 'Water plants'"):
        await call(ada, "todo.complete_by_title", title="Water plants")
    # Case folding is not ASCII-only: SQLite finds "École" by "école", as PostgreSQL does.
    await call(ada, "todo.create", title="École inscription")
    assert (await call(ada, "todo.complete_by_title", title="école INSCRIPTION")).title == "École inscription"
    assert (await call(ada, "notes.create", title="Ärger mit Öl")).title == "Ärger mit Öl"
    assert [n.title for n in (await call(ada, "notes.search", query="äRGER")).items] == ["Ärger mit Öl"]


# --- notes ------------------------------------------------------------------


@pytest.mark.anyio
async def test_notes_lifecycle(ada: ToolContext) -> None:
    note = await call(ada, "notes.create", title="Trip", body="Pack 100% wool socks", tags=["travel", "travel"])
    assert note.tags == ["travel"]
    await call(ada, "notes.create", title="Recipes", body="x" * 500, tags=["food"])

    food = await call(ada, "notes.list", tag="food")
    assert [item.title for item in food.items] == ["Recipes"]
    assert len(food.items[0].excerpt) <= 200
    assert (await call(ada, "notes.list")).count == 2

    assert [item.id for item in (await call(ada, "notes.search", query="100%")).items] == [note.id]
    assert (await call(ada, "notes.search", query="trip")).count == 1
    assert (await call(ada, "notes.search", query="10_%")).count == 0

    appended = await call(ada, "notes.append", id=note.id, text="and a hat")
    assert appended.body == "Pack 100% wool socks\nand a hat"
    tagged = await call(ada, "notes.tag", id=note.id, tags=["summer", "travel"])
    assert tagged.tags == ["travel", "summer"]

    deleted = await call(ada, "notes.delete", id=note.id)
    assert dump(deleted) == {"id": note.id, "deleted": True}
    assert (await call(ada, "notes.search", query="socks")).count == 0
    with pytest.raises(ToolError, match="no note with id"):
        await call(ada, "notes.append", id=note.id, text="gone")


@pytest.mark.anyio
async def test_a_refused_write_changes_nothing(ada: ToolContext) -> None:
    note = await call(ada, "notes.create", title="Busy", tags=[f"t{i}" for i in range(9)])
    with pytest.raises(ToolError, match="at most 10 tags"):
        await call(ada, "notes.tag", id=note.id, tags=["a", "b"])
    assert (await call(ada, "notes.list")).items[0].tags == note.tags


@pytest.mark.anyio
async def test_appending_past_the_body_limit_is_refused_and_changes_nothing(world: World, ada: ToolContext) -> None:
    note = await call(ada, "notes.create", title="Long", body="x" * 19_990)
    grown = await call(ada, "notes.append", id=note.id, text="y" * 9)
    assert len(grown.body) == 20_000
    with pytest.raises(ToolError, match=r"at most 20,000 characters; appending 1 to 'Long' would make it 20,002"):
        await call(ada, "notes.append", id=note.id, text="z")
    with Session(world.engine) as session:
        stored = session.get(Note, note.id)
        assert stored is not None and stored.body == grown.body


# --- journal ----------------------------------------------------------------


@pytest.mark.anyio
async def test_journal_add_and_list_by_range(ada: ToolContext) -> None:
    today = await call(ada, "journal.add", text="A good day", mood=4)
    assert (today.date, today.mood) == (TODAY, 4)
    await call(ada, "journal.add", text="Last week", date=days_from_today(-7))
    await call(ada, "journal.add", text="Yesterday", date=days_from_today(-1))

    everything = await call(ada, "journal.list")
    assert [entry.text for entry in everything.items] == ["A good day", "Yesterday", "Last week"]
    window = await call(ada, "journal.list", since=days_from_today(-7), until=days_from_today(-1))
    assert [entry.text for entry in window.items] == ["Yesterday", "Last week"]
    assert (await call(ada, "journal.list", limit=1)).count == 1


def test_a_member_written_in_the_same_flush_as_its_user_and_space_is_stored(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(Membership(space_id="s1", user_id="u1", role="owner"))
        session.add(Space(id="s1", name="Solo", type="personal", owner_id="u1"))
        session.add(User(id="u1", email="solo@example.test", name="Solo", password_hash="unused"))
        session.commit()
    with Session(engine) as session:
        assert session.exec(select(Membership.space_id, Membership.user_id)).one() == ("s1", "u1")


# --- habits -----------------------------------------------------------------


@pytest.mark.anyio
async def test_habits_log_streaks_and_archive(ada: ToolContext) -> None:
    read = await call(ada, "habits.create", name="Read", color="#3366FF")
    assert (read.cadence, read.archived) == ("daily", False)
    for days in (-3, -1, -2):
        await call(ada, "habits.log", id=read.id, date=days_from_today(days))
    logged = await call(ada, "habits.log", id=read.id, note="20 pages")
    assert (logged.date, logged.streak, logged.note) == (TODAY, 4, "20 pages")
    again = await call(ada, "habits.log", id=read.id)
    assert (again.streak, again.note) == (4, "20 pages")

    gym = await call(ada, "habits.create", name="Gym", cadence="weekly")
    await call(ada, "habits.log", id=gym.id, date=days_from_today(-7))
    assert (await call(ada, "habits.log", id=gym.id)).streak == 2

    recent = await call(ada, "habits.recent_logs", days=2)
    assert {(item.habit_name, item.date) for item in recent.items} == {
        ("Gym", TODAY),
        ("Read", TODAY),
        ("Read", TODAY - dt.timedelta(days=1)),
    }
    assert (await call(ada, "habits.recent_logs", id=read.id)).count == 4

    archived = await call(ada, "habits.archive", id=read.id)
    assert archived.archived
    assert [habit.name for habit in (await call(ada, "habits.list")).items] == ["Gym"]
    assert (await call(ada, "habits.list", include_archived=True)).count == 2
    with pytest.raises(ToolError, match="habit 'Read' is archived"):
        await call(ada, "habits.log", id=read.id)


@pytest.mark.anyio
async def test_two_members_logging_a_shared_habit_at_once_keep_one_log_a_day(world: World) -> None:
    fay, gus = world.user("fay@example.test"), world.user("gus@example.test")
    home = world.space(fay, "Home", type="family")
    world.join(gus, home)
    habit = await call(world.ctx(fay, home), "habits.create", name="Water the plants")
    days = [days_from_today(-offset) for offset in range(8)]
    results: list[Any] = []

    async def log(member: User, day: str) -> None:
        results.append(await call(world.ctx(member, home), "habits.log", id=habit.id, date=day, note=member.name))

    async with anyio.create_task_group() as group:
        for day in days:
            for member in (fay, gus):
                group.start_soon(log, member, day)
    assert len(results) == 16
    recent = await call(world.ctx(gus, home), "habits.recent_logs", id=habit.id, days=8)
    assert sorted(entry.date.isoformat() for entry in recent.items) == sorted(days)


# --- mood -------------------------------------------------------------------


@pytest.mark.anyio
async def test_mood_log_and_today(ada: ToolContext) -> None:
    assert dump(await call(ada, "mood.today")) == {"entries": [], "average": None}
    first = await call(ada, "mood.log", score=2, note="tired", tags=["sleep"])
    await call(ada, "mood.log", score=5)
    today = await call(ada, "mood.today")
    assert today.average == 3.5
    assert today.entries[0].id == first.id


@pytest.mark.anyio
async def test_mood_insights_over_past_days(world: World, ada: ToolContext) -> None:
    assert (await call(ada, "mood.insights")).trend == "unknown"
    with Session(world.engine) as session:
        for days_ago, score in ((6, 1), (5, 2), (1, 4), (0, 5), (30, 1)):
            logged_at = utcnow() - dt.timedelta(days=days_ago)
            session.add(MoodEntry(space_id=ada.space_id, created_by=ada.user_id, score=score, logged_at=logged_at))
        session.commit()
    insights = await call(ada, "mood.insights", days=7)
    assert (insights.count, insights.average, insights.trend) == (4, 3.0, "up")
    assert (insights.lowest_day, insights.highest_day) == (TODAY - dt.timedelta(days=6), TODAY)


# --- calendar ---------------------------------------------------------------


@pytest.mark.anyio
async def test_calendar_events_by_day_and_range(ada: ToolContext) -> None:
    day = TODAY.isoformat()
    standup = await call(
        ada, "calendar.create_event", title="Standup", start=f"{day}T09:00:00Z", end=f"{day}T09:15:00Z", color="#00aa00"
    )
    assert standup.start == dt.datetime.combine(TODAY, dt.time(9), tzinfo=dt.UTC)
    await call(
        ada,
        "calendar.create_event",
        title="Offsite",
        start=f"{days_from_today(-1)}T22:00:00+00:00",
        end=f"{day}T01:00:00",
        location="Lisbon",
    )
    later = days_from_today(10)
    await call(
        ada, "calendar.create_event", title="Later", start=f"{later}T10:00:00+02:00", end=f"{later}T11:00:00+02:00"
    )

    on_day = await call(ada, "calendar.list_events", day=day)
    assert [event.title for event in on_day.items] == ["Offsite", "Standup"]
    ranged = await call(ada, "calendar.list_events", start=day, end=later)
    assert [event.title for event in ranged.items] == ["Offsite", "Standup", "Later"]
    assert ranged.items[-1].start.hour == 8


@pytest.mark.anyio
async def test_the_first_and_last_accepted_years_work_end_to_end(ada: ToolContext) -> None:
    """At the edges of the accepted years, the date arithmetic behind each tool still has room."""
    early = await call(
        ada, "calendar.create_event", title="Early", start="1900-01-01T00:30:00+01:00", end="1900-01-01T02:00:00+01:00"
    )
    assert early.start == dt.datetime(1899, 12, 31, 23, 30, tzinfo=dt.UTC)
    assert (await call(ada, "calendar.list_events", day="2999-12-31")).count == 0
    assert [event.title for event in (await call(ada, "calendar.list_events", day="1900-01-01")).items] == ["Early"]
    habit = await call(ada, "habits.create", name="Ancient", cadence="weekly")
    assert (await call(ada, "habits.log", id=habit.id, date="1900-01-01")).streak == 1
    assert (await call(ada, "journal.list", since="1900-01-01", until="2999-12-31")).count == 0


# --- contacts ---------------------------------------------------------------


@pytest.mark.anyio
async def test_contacts_create_and_search(ada: ToolContext) -> None:
    grace = await call(
        ada, "contacts.create", name="Grace Hopper", email="grace@navy.example", phone="+1 (555) 010-2030"
    )
    await call(ada, "contacts.create", name="Alan Turing")
    assert [c.id for c in (await call(ada, "contacts.search", query="NAVY")).items] == [grace.id]
    assert [c.name for c in (await call(ada, "contacts.search", query="a")).items] == ["Alan Turing", "Grace Hopper"]


# --- spaces and admin -------------------------------------------------------


@pytest.mark.anyio
async def test_spaces_list_marks_the_current_space(world: World) -> None:
    bob = world.user("bob@example.test")
    home = world.space(bob, "Home", type="family")
    personal = world.space(bob, "Bob")
    carol = world.user("carol@example.test")
    world.space(carol, "Carol")
    world.join(carol, home)

    spaces = await call(world.ctx(carol, home), "spaces.list")
    assert [(s.name, s.type, s.role, s.current) for s in spaces.items] == [
        ("Carol", "personal", "owner", False),
        ("Home", "family", "member", True),
    ]
    assert personal.id not in {s.id for s in spaces.items}


@pytest.mark.anyio
async def test_admin_set_tier(world: World, ada: ToolContext) -> None:
    dave = world.user("dave@example.test")
    changed = await call(ada, "admin.set_tier", email=" Dave@Example.TEST", tier="pro")
    assert dump(changed) == {"id": dave.id, "email": "dave@example.test", "tier": "pro"}
    with pytest.raises(ToolError, match=r"no account with email 'nobody@example\.test'"):
        await call(ada, "admin.set_tier", email="nobody@example.test", tier="team")


# --- isolation --------------------------------------------------------------


@pytest.mark.anyio
async def test_members_share_a_space_and_nothing_crosses_spaces(world: World) -> None:
    erin = world.user("erin@example.test")
    frank = world.user("frank@example.test")
    family = world.space(erin, "Family", type="family")
    world.join(frank, family)
    erin_home, frank_home = world.ctx(erin, world.space(erin, "Erin")), world.ctx(frank, world.space(frank, "Frank"))
    erin_family, frank_family = world.ctx(erin, family), world.ctx(frank, family)

    task = await call(erin_family, "todo.create", title="Groceries")
    note = await call(erin_family, "notes.create", title="Wifi password", body="hunter2")
    habit = await call(erin_family, "habits.create", name="Walk the dog")
    await call(erin_family, "journal.add", text="Family day")
    await call(erin_family, "mood.log", score=4)
    await call(erin_family, "contacts.create", name="Plumber")
    await call(
        erin_family, "calendar.create_event", title="Dinner", start=f"{TODAY}T18:00:00Z", end=f"{TODAY}T19:00:00Z"
    )

    assert [t.id for t in (await call(frank_family, "todo.list")).items] == [task.id]
    assert (await call(frank_family, "notes.search", query="hunter")).count == 1

    reads = {
        "todo.list": {"filter": "all"},
        "todo.stats": {},
        "notes.list": {},
        "notes.search": {"query": "wifi"},
        "journal.list": {},
        "habits.list": {"include_archived": True},
        "habits.recent_logs": {},
        "mood.today": {},
        "mood.insights": {},
        "calendar.list_events": {"day": TODAY.isoformat()},
        "contacts.search": {"query": "plumb"},
    }
    for ctx in (erin_home, frank_home):
        for name, args in reads.items():
            result = dump(await call(ctx, name, **args))
            assert result.get("count", 0) == 0 and not result.get("entries") and result.get("total", 0) == 0, name
        for name, args in (
            ("todo.complete", {"id": task.id}),
            ("notes.append", {"id": note.id, "text": "mine now"}),
            ("notes.delete", {"id": note.id}),
            ("habits.log", {"id": habit.id}),
            ("habits.archive", {"id": habit.id}),
        ):
            with pytest.raises(ToolError, match="in this space"):
                await call(ctx, name, **args)


@pytest.mark.anyio
async def test_a_non_member_is_refused(world: World, ada: ToolContext) -> None:
    mallory = world.user("mallory@example.test")
    intruder = ToolContext(user_id=mallory.id, space_id=ada.space_id, backend=world.backend)
    for name, args in (("todo.list", {}), ("todo.create", {"title": "pwned"}), ("spaces.list", {})):
        with pytest.raises(ToolError, match=f"you are not a member of space {ada.space_id}"):
            await call(intruder, name, **args)
    assert (await call(ada, "todo.stats")).total == 0


@pytest.mark.anyio
async def test_concurrent_calls_all_land(ada: ToolContext) -> None:
    async with anyio.create_task_group() as group:
        for n in range(20):
            group.start_soon(partial(call, ada, "todo.create", title=f"task {n}"))
    assert (await call(ada, "todo.stats")).open == 20


@pytest.mark.anyio
async def test_concurrent_changes_to_one_note_all_land(ada: ToolContext) -> None:
    """Each append and tag reads the note it changes: two at once must not overwrite each other."""
    note = await call(ada, "notes.create", title="Standup log")
    async with anyio.create_task_group() as group:
        for n in range(12):
            group.start_soon(partial(call, ada, "notes.append", id=note.id, text=f"line {n}"))
        for n in range(6):
            group.start_soon(partial(call, ada, "notes.tag", id=note.id, tags=[f"t{n}"]))
    body = (await call(ada, "notes.search", query="Standup")).items[0]
    with Session(ada.backend.engine) as session:
        stored = session.get(Note, note.id)
        assert stored is not None
        assert sorted(stored.body.splitlines()) == sorted(f"line {n}" for n in range(12))
        assert sorted(stored.tags) == [f"t{n}" for n in range(6)]
    assert body.tags == stored.tags


def test_a_tool_logs_with_its_own_logger_naming_caller_and_space(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    user = world.user("lou@example.test")
    ctx = replace(world.ctx(user, world.space(user, "Lou")), invoker="persona", tool="notes.append")
    with caplog.at_level("INFO", logger="tool_registry.tools"):
        ctx.logger.info("appended")
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("tool_registry.tools.notes.append", f"appended (user {user.id}, persona, space {ctx.space_id})")
    ]


# --- validation -------------------------------------------------------------

LONG = "x" * 201


@pytest.mark.parametrize(
    ("tool", "args", "field", "wording"),
    [
        ("todo.create", {"title": ""}, "title", "at least 1 character"),
        ("todo.create", {"title": LONG}, "title", "at most 200 characters"),
        ("todo.create", {"title": "t", "due": "tomorrow"}, "due", "due must be an ISO date like 2026-11-22"),
        ("todo.create", {"title": "t", "priority": "urgent"}, "priority", "'low', 'normal' or 'high'"),
        ("todo.create", {"title": "t", "colour": "red"}, "colour", "unknown field"),
        (
            "todo.create",
            {"title": "t", "due": "1899-12-31"},
            "due",
            "due must be in the years 1900 to 2999, got 1899-12-31",
        ),
        ("todo.list", {"filter": "late"}, "filter", "'open', 'completed', 'overdue', 'today' or 'all'"),
        ("todo.list", {"limit": 101}, "limit", "less than or equal to 100"),
        ("notes.create", {"title": "n", "tags": ["Work"]}, "tags", "tags must be lowercase letters"),
        ("notes.create", {"title": "n", "tags": [f"t{i}" for i in range(11)]}, "tags", "at most 10 items"),
        ("journal.add", {"text": "j", "mood": 6}, "mood", "less than or equal to 5"),
        ("journal.list", {"since": "2026-05-02", "until": "2026-05-01"}, "until", "on or after since"),
        ("habits.create", {"name": "h", "color": "blue"}, "color", "color must be a hex color like #3366FF"),
        ("habits.create", {"name": "h", "cadence": "monthly"}, "cadence", "'daily' or 'weekly'"),
        ("habits.recent_logs", {"days": 91}, "days", "less than or equal to 90"),
        ("habits.log", {"id": "h", "date": "0001-01-01"}, "date", "date must be in the years 1900 to 2999"),
        ("journal.add", {"text": "j", "date": "3000-01-01"}, "date", "date must be in the years 1900 to 2999"),
        ("mood.log", {"score": 0}, "score", "greater than or equal to 1"),
        (
            "calendar.create_event",
            {"title": "e", "start": "2026-05-01 9am", "end": "2026-05-01T10:00:00Z"},
            "start",
            "start must be an ISO datetime",
        ),
        (
            "calendar.create_event",
            {"title": "e", "start": "2026-05-01T10:00:00Z", "end": "2026-05-01T09:00:00Z"},
            "end",
            "end must be after start",
        ),
        (
            "calendar.create_event",
            {"title": "e", "start": "2026-05-01T10:00:00Z", "end": "2026-05-16T10:00:00Z"},
            "end",
            "at most 14 days after start",
        ),
        (
            "calendar.create_event",
            {"title": "e", "start": "0001-01-01T00:00:00+01:00", "end": "0001-01-01T02:00:00+01:00"},
            "start",
            "start must be in the years 1900 to 2999",
        ),
        ("calendar.list_events", {}, "day", "exactly one of: day, or both start and end"),
        ("calendar.list_events", {"day": "9999-12-31"}, "day", "day must be in the years 1900 to 2999"),
        ("calendar.list_events", {"day": "2026-05-01", "start": "2026-05-01"}, "day", "exactly one of"),
        ("calendar.list_events", {"start": "2026-05-01"}, "end", "start and end must be given together"),
        ("calendar.list_events", {"start": "2026-01-01", "end": "2026-04-03"}, "start", "at most 92 days"),
        ("contacts.create", {"name": "c", "email": "not-an-email"}, "email", "email must be an email address"),
        ("contacts.create", {"name": "c", "phone": "call me"}, "phone", "phone must be up to 40 digits"),
        ("admin.set_tier", {"email": "a@b.test", "tier": "gold"}, "tier", "'free', 'pro' or 'team'"),
        ("todo.create", {"title": "a\x00b"}, "title", "must not contain NUL characters"),
        ("notes.search", {"query": "\x00"}, "query", "must not contain NUL characters"),
        ("contacts.create", {"name": "c", "notes": "x\x00"}, "notes", "must not contain NUL characters"),
    ],
)
def test_validation_messages_name_the_field(tool: str, args: dict[str, Any], field: str, wording: str) -> None:
    spec = REGISTRY.get(tool)
    assert spec is not None
    with pytest.raises(ValidationError) as caught:
        spec.input.model_validate(args)
    sent = format_validation_error(tool, caught.value)
    matching = [
        (where, message) for where, message in field_problems(caught.value, whole="(arguments)") if wording in message
    ]
    assert matching, sent
    where, message = matching[0]
    assert f"{where}: {message}" in sent
    # A field's own check is reported at the field; a check across fields names it in its message.
    assert where.split(".")[0] == field or (where == "(arguments)" and re.search(rf"\b{field}\b", message)), sent


def test_a_full_quarter_is_a_valid_range() -> None:
    spec = REGISTRY.get("calendar.list_events")
    assert spec is not None
    spec.input.model_validate({"start": "2026-07-01", "end": "2026-09-30"})


@pytest.mark.parametrize(("tool", "base"), [("notes.create", {"title": "n"}), ("mood.log", {"score": 3})])
def test_a_tag_list_is_limited_as_sent_not_after_repeats_are_removed(tool: str, base: dict[str, Any]) -> None:
    spec = REGISTRY.get(tool)
    assert spec is not None
    with pytest.raises(ValidationError, match="at most 10 items"):
        spec.input.model_validate({**base, "tags": ["a"] * 800_000})
    assert spec.input.model_validate({**base, "tags": ["a"] * 10}).tags == ["a"]  # type: ignore[attr-defined]
