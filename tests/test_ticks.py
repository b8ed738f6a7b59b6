"""`persona-runner ticks list` and `ticks show` on days recorded by real runs: the embedded product over real HTTP,
a real SQLite store, the scripted driver and the real LLM SDKs against the fake provider."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sqlmodel import Session

from persona_runner.store.db import open_store
from persona_runner.store.models import Tick, Transcript
from persona_runner.store.recorded import RecordedDay, load_day
from tests.cli_helpers import cli, one_line_error, rows
from tests.fake_provider import PROVIDERS, Call, fake_provider
from tests.test_report import NOW, StoreBuilder, parse_html

RUN = ("--persona", "maya", "--seed", "3", "--date", "2026-11-20")
BASE_URL_VARIABLES = {"anthropic": "ANTHROPIC_BASE_URL", "openai": "OPENAI_BASE_URL"}


def only_tick(db: Path) -> str:
    [(tick_id,)] = rows(db, "SELECT tick_id FROM ticks")
    return str(tick_id)


def recorded_calls(db: Path, tick_id: str) -> list[tuple[int, str, str]]:
    """(seq, tool, outcome) of every call of the tick, from the store's action rows."""
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT seq, tool_name, result FROM persona_actions WHERE tick_id = ? ORDER BY seq", (tick_id,)
        ).fetchall()


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One scripted day of maya on the embedded product, recorded once for the module: the tests only read it."""
    db = tmp_path_factory.mktemp("scripted") / "results.db"
    done = cli("run", *RUN, "--db", str(db))
    assert done.returncode == 0, done.stderr
    return db, only_tick(db)


@pytest.fixture(scope="module", params=["anthropic", "openai"])
def llm(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One day of maya played by a model (the real SDK, the fake provider): it says something, asks for two
    todos (the product refuses one) and a tool that is not offered, lists, stops, and rates todo 2."""
    provider = request.param
    db = tmp_path_factory.mktemp(provider) / "results.db"
    with fake_provider() as fake:
        fake.answer(
            "Let me add my tasks.",
            Call("todo__create", {"title": "Finish lab report"}),
            Call("todo__create", {"title": "x" * 300}),
            Call("nope__x", {}),
        )
        fake.answer("", Call("todo__list", {"filter": "open"}))
        fake.answer("That's my day.")
        fake.answer("", Call("submit_ratings", {"ratings": [{"module": "todo", "rating": 2, "notes": "refused one"}]}))
        suffix, keys = PROVIDERS[provider]
        env = {**keys, BASE_URL_VARIABLES[provider]: fake.base_url + suffix}
        done = cli("run", "--driver", provider, "--model", "fake-model", *RUN, "--db", str(db), env=env)
    assert done.returncode == 0, done.stderr
    return db, only_tick(db)


class Page(HTMLParser):
    """The calls of a tick page, in document order: (seq, tool) of each persona turn that is a call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, str]] = []
        self._in_call: int | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        ident = dict(attrs).get("id") or ""
        if ident.startswith("call-"):
            self._in_call = int(ident.removeprefix("call-"))
        self._code = tag == "code" and self._in_call is not None

    def handle_data(self, data: str) -> None:
        if getattr(self, "_code", False) and self._in_call is not None:
            self.calls.append((self._in_call, data))
            self._in_call, self._code = None, False


def calls_in_page(page: str) -> list[tuple[int, str]]:
    parser = Page()
    parser.feed(page)
    return parser.calls


def calls_in_text(text: str) -> list[tuple[int, str, str]]:
    return [
        (int(seq), tool, "ok" if shown == "ok" else "error")
        for seq, tool, shown in re.findall(r"^  #(\d+) (\S+)  (ok|ERROR|REFUSED PROBE)  ", text, re.M)
    ]


def test_show_text_has_every_call_in_order_with_its_arguments_and_answer(scripted: tuple[Path, str]) -> None:
    db, tick_id = scripted
    done = cli("ticks", "show", tick_id, "--db", str(db))
    assert done.returncode == 0, done.stderr
    calls = recorded_calls(db, tick_id)
    assert len(calls) > 5 and calls_in_text(done.stdout) == calls
    day = load_day(open_store(str(db), create=False), tick_id)
    assert day is not None
    for call in day.calls:
        assert json.dumps(call.arguments, ensure_ascii=False) in done.stdout
        assert call.result_excerpt.splitlines()[0] in done.stdout
    assert done.stdout.startswith(
        f"Tick {tick_id}\nmaya on Friday 2026-11-20, run {day.run_id}\ndriver scripted, seed 3"
    )
    assert "space: maya (personal) (personal, owner)" in done.stdout and "ended: ok" in done.stdout
    assert f"tools offered ({len(day.tools_offered)}): todo.create, " in done.stdout
    for rating in day.ratings:
        assert f"{rating.module}" in done.stdout and f"{rating.rating}/5  {rating.notes}" in done.stdout


def test_show_html_is_one_page_read_as_a_conversation_with_every_call_in_order(
    scripted: tuple[Path, str], tmp_path: Path
) -> None:
    db, tick_id = scripted
    out = tmp_path / "day" / "maya.html"
    done = cli("ticks", "show", tick_id, "--db", str(db), "--format", "html", "--out", str(out))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", f"wrote {out}\n")
    page = out.read_text()
    parsed = parse_html(page)  # balanced, no id twice
    assert not {"script", "link", "img", "iframe"} & parsed.tags and "url(" not in page and "http" not in page.lower()
    assert [(seq, tool) for seq, tool, _ in recorded_calls(db, tick_id)] == calls_in_page(page)
    assert {"setting", "day", "ratings", "end"} <= set(parsed.ids)
    # The same page on standard output.
    assert cli("ticks", "show", tick_id, "--db", str(db), "--format", "html").stdout == page


def test_show_json_round_trips_to_the_recorded_day(scripted: tuple[Path, str]) -> None:
    db, tick_id = scripted
    done = cli("ticks", "show", tick_id, "--db", str(db), "--format", "json")
    assert done.returncode == 0, done.stderr
    assert RecordedDay.model_validate_json(done.stdout) == load_day(open_store(str(db), create=False), tick_id)


def test_an_unknown_tick_is_one_line_naming_it(scripted: tuple[Path, str], tmp_path: Path) -> None:
    db, _ = scripted
    done = cli("ticks", "show", "nope:maya", "--db", str(db), "--format", "html", "--out", str(tmp_path / "x.html"))
    assert (done.returncode, done.stdout) == (2, "")
    assert one_line_error(done.stderr) == (
        f"error: no tick 'nope:maya' in {db}; `persona-runner ticks list` shows the recorded ticks"
    )
    assert done.stderr.count("\n") == 1 and not (tmp_path / "x.html").exists()


def test_a_tick_whose_end_was_never_written_shows_its_calls_without_arguments(
    scripted: tuple[Path, str], tmp_path: Path
) -> None:
    db, tick_id = scripted
    crashed = tmp_path / "crashed.db"
    with sqlite3.connect(db) as source, sqlite3.connect(crashed) as copy:
        source.backup(copy)
        copy.execute("DELETE FROM transcripts")
    calls = recorded_calls(crashed, tick_id)
    text = cli("ticks", "show", tick_id, "--db", str(crashed)).stdout
    assert calls_in_text(text) == calls
    assert "note: The tick's process ended before the end of its day was written" in text
    assert "arguments" not in text.split("The day", 1)[1] and "result " not in text
    page = cli("ticks", "show", tick_id, "--db", str(crashed), "--format", "html").stdout
    assert calls_in_page(page) == [(seq, tool) for seq, tool, _ in calls]
    assert "without their arguments, results or the model&#x27;s messages" in page


def test_an_llm_tick_shows_what_the_model_said_and_asked_between_its_calls(llm: tuple[Path, str]) -> None:
    db, tick_id = llm
    text = cli("ticks", "show", tick_id, "--db", str(db)).stdout
    assert (
        calls_in_text(text)
        == recorded_calls(db, tick_id)
        == [
            (0, "todo.create", "ok"),
            (1, "todo.create", "error"),
            (2, "todo.list", "ok"),
        ]
    )
    # In order: told, said, two calls, the refused request and what went back, then the rest of the day.
    expected = [
        "told (day): It is Friday. Go about your day.",
        "maya (day): Let me add my tasks.",
        "#0 todo.create  ok",
        '{"title": "Finish lab report"}',
        "#1 todo.create  ERROR",
        "error      invalid arguments for todo.create: title: String should have at most 200 characters",
        "asked for nope__x, no call made",
        "no tool named nope__x is offered today",
        "#2 todo.list  ok",
        "maya (day): That's my day.",
        "told (rating): Your day is over.",
        "asked for submit_ratings, no call made",
        "todo  2/5  refused one",
    ]
    positions = [text.find(line) for line in expected]
    assert -1 not in positions and positions == sorted(positions), text
    page = cli("ticks", "show", tick_id, "--db", str(db), "--format", "html").stdout
    parse_html(page)
    for said in ("Let me add my tasks.", "That&#x27;s my day.", "no tool named nope__x is offered today"):
        assert said in page
    assert calls_in_page(page) == [(0, "todo.create"), (1, "todo.create"), (2, "todo.list")]
    assert '<li class="product failed"><span class="who">✗ product' in page  # the refused todo, marked
    assert "What the model was told it is" in page and "You are Maya Okafor" in page


def test_list_shows_ticks_with_their_ratings_and_filters_them(scripted: tuple[Path, str]) -> None:
    db, tick_id = scripted
    listed = cli("ticks", "list", "--db", str(db))
    assert listed.returncode == 0, listed.stderr
    [line] = [line for line in listed.stdout.splitlines() if tick_id in line]
    ratings = " ".join(
        f"{module} {rating}"
        for module, rating in rows(db, "SELECT module, rating FROM persona_feedback ORDER BY module")
    )
    assert " maya " in line and " ok " in line and ratings in line
    [(run_id,)] = rows(db, "SELECT run_id FROM runs")
    assert (
        tick_id in cli("ticks", "list", "--db", str(db), "--run", run_id, "--persona", "maya", "--status", "ok").stdout
    )
    none = cli("ticks", "list", "--db", str(db), "--status", "failed", "--status", "timeout")
    assert (none.returncode, none.stdout) == (
        0,
        "no ticks match: `persona-runner ticks list` without filters shows the latest\n",
    )
    for flag, value, message in (
        ("--run", "nope", "error: unknown run nope; `persona-runner runs list` shows the recorded runs"),
        (
            "--persona",
            "nobody",
            "error: no persona named 'nobody' in the results store; `persona-runner personas list` shows them",
        ),
    ):
        done = cli("ticks", "list", "--db", str(db), flag, value)
        assert (done.returncode, done.stdout, done.stderr) == (2, "", message + "\n")


def test_list_names_why_a_tick_did_not_end_well_and_keeps_to_its_filters(tmp_path: Path) -> None:
    store = StoreBuilder(f"sqlite:///{tmp_path / 'results.db'}")
    store.persona("ann", "ann", {"todo": 1})
    store.run("r0", NOW - timedelta(hours=2))
    store.run("r1", NOW - timedelta(hours=1))
    fine = store.tick("r0", "ann", NOW - timedelta(hours=2), [("todo.create", 10)], {"todo": 5, "notes": 2})
    failed = store.tick("r1", "ann", NOW - timedelta(hours=1), [], {}, status="failed")
    with Session(store.engine) as session:
        tick = session.get(Tick, failed)
        assert tick is not None
        tick.error = "login refused for ann@personas.test (HTTP 401)"
        session.commit()
    listed = cli("ticks", "list", "--db", str(tmp_path / "results.db")).stdout
    assert listed.index(failed) < listed.index(fine)  # newest first
    assert "failed: login refused for ann@personas.test (HTTP 401)" in listed and "notes 2 todo 5" in listed
    only_failed = cli("ticks", "list", "--db", str(tmp_path / "results.db"), "--status", "failed").stdout
    assert failed in only_failed and fine not in only_failed
    only_r0 = cli("ticks", "list", "--db", str(tmp_path / "results.db"), "--run", "r0", "--limit", "1").stdout
    assert fine in only_r0 and failed not in only_r0


def test_what_the_product_and_the_model_said_is_shown_as_text(tmp_path: Path) -> None:
    """An answer holding markup or a terminal escape is shown, never obeyed, in text and in HTML."""
    store = StoreBuilder(f"sqlite:///{tmp_path / 'results.db'}")
    store.run("r0", NOW)
    tick_id = store.tick("r0", "ann", NOW, [("todo.create", 10, "bad\x1b[2J<script>alert(1)</script>")], {})
    hostile = "<img src=x onerror=alert(1)>\x1b]0;owned\x07 \u202etxt.exe"
    with Session(store.engine) as session:
        transcript = session.get(Transcript, tick_id)
        assert transcript is not None
        transcript.body = {
            "tools_offered": ["todo.create"],
            "calls": [
                {
                    "seq": 0,
                    "tool": "todo.create",
                    "module": "todo",
                    "arguments": {"title": hostile},
                    "input_hash": "0" * 64,
                    "outcome": "error",
                    "latency_ms": 10,
                    "error": "bad\x1b[2J<script>alert(1)</script>",
                }
            ],
        }
        session.commit()
    text = cli("ticks", "show", tick_id, "--db", str(tmp_path / "results.db")).stdout
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "bad\\x1b[2J<script>alert(1)</script>" in text and "\\u202etxt.exe" in text
    page = cli("ticks", "show", tick_id, "--db", str(tmp_path / "results.db"), "--format", "html").stdout
    parsed = parse_html(page)
    assert not {"script", "img"} & parsed.tags and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
