"""`persona-runner replay`: recorded days lived again on fresh embedded products, through the real CLI.

One scripted run is recorded for the module; each test replays its ticks and reads the JSON the
command writes, so what is asserted is what a script reading the replay would see.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from persona_runner.store.db import open_store
from persona_runner.store.recorded import load_day
from tests.cli_helpers import cli, one_line_error
from tests.fake_provider import Call, fake_provider
from tool_registry.server import free_port

DAY = ("--seed", "3", "--date", "2026-11-20")


@dataclass(frozen=True)
class Recorded:
    db: Path
    run_id: str

    def tick(self, persona: str) -> str:
        return f"{self.run_id}:{persona}:2026-11-20"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    """maya creates a habit and logs it (an id to rebind); gremlin searches notes and sends bad input."""
    db = tmp_path_factory.mktemp("recorded") / "results.db"
    ran = cli("run", "--persona", "maya", "--persona", "gremlin", *DAY, "--db", str(db))
    assert ran.returncode == 0, ran.stderr
    with sqlite3.connect(db) as conn:
        (run_id,) = conn.execute("SELECT run_id FROM runs").fetchone()
    yield Recorded(db, run_id)


def replayed(tmp_path: Path, *args: str, expect: int = 0) -> dict[str, Any]:
    """`replay ARGS --format json` and its JSON; the exit code must be `expect`."""
    out = tmp_path / "replay.json"
    result = cli("replay", *args, "--format", "json", "--out", str(out))
    assert result.returncode == expect, result.stderr
    answer: dict[str, Any] = json.loads(out.read_text())
    return answer


def calls_of(report: dict[str, Any]) -> list[dict[str, Any]]:
    (tick,) = report["ticks"]
    calls: list[dict[str, Any]] = tick["calls"]
    return calls


def copy_store(recorded: Recorded, tmp_path: Path) -> Path:
    """The recorded store, for a test that changes it."""
    db = tmp_path / "results.db"
    with sqlite3.connect(recorded.db) as source, sqlite3.connect(db) as target:
        source.backup(target)
    return db


def test_a_day_replays_on_a_fresh_product_with_every_id_rebound(recorded: Recorded, tmp_path: Path) -> None:
    report = replayed(tmp_path, recorded.tick("maya"), "--db", str(recorded.db))
    calls = calls_of(report)
    assert report["changed"] is False
    assert len(calls) == 20
    assert {call["verdict"] for call in calls} <= {"same", "slower", "faster", "shape changed"}
    assert all(call["before"]["outcome"] == call["after"]["outcome"] for call in calls)
    rebound = [(call["seq"], r) for call in calls for r in call["rebound"]]
    assert rebound, "the habit maya created and then logged carries an id the replay's product handed out anew"
    for seq, rebinding in rebound:
        assert rebinding["source_seq"] < seq
        # The fresh product hands out ids of its own: each one sent is the replay's, not the recording's.
        assert rebinding["replayed"] != rebinding["recorded"]
    assert [u for call in calls for u in call["unbound"]] == []
    assert [r["module"] for r in report["ticks"][0]["ratings_after"]]  # the replayed calls are rated too


def test_a_product_whose_search_fails_is_named_by_seq_and_tool(recorded: Recorded) -> None:
    result = cli("replay", recorded.tick("gremlin"), "--db", str(recorded.db), "--fault", "notes.search=1.0")
    assert result.returncode == 1, result.stderr
    day = load_day(open_store(str(recorded.db), create=False), recorded.tick("gremlin"))
    assert day is not None
    searches = [call.seq for call in day.calls if call.tool == "notes.search" and call.outcome == "ok"]
    assert searches
    changed = [line for line in result.stdout.splitlines() if line.startswith("|") and "outcome changed" in line]
    assert [line.split("|")[1].strip() for line in changed] == [str(seq) for seq in searches]
    assert all("`notes.search`" in line and "injected fault" in line for line in changed)


def test_an_id_no_earlier_answer_held_is_reported_and_sent_as_recorded(recorded: Recorded, tmp_path: Path) -> None:
    db = copy_store(recorded, tmp_path)
    tick = recorded.tick("maya")
    unknown = "0123456789abcdef0123456789abcdef"
    with sqlite3.connect(db) as conn:
        (body,) = conn.execute("SELECT body FROM transcripts WHERE tick_id = ?", (tick,)).fetchone()
        transcript = json.loads(body)
        logged = next(call for call in transcript["calls"] if call["tool"] == "habits.log")
        logged["arguments"]["id"] = unknown
        conn.execute("UPDATE transcripts SET body = ? WHERE tick_id = ?", (json.dumps(transcript), tick))
    report = replayed(tmp_path, tick, "--db", str(db), expect=1)
    row = next(call for call in calls_of(report) if call["seq"] == logged["seq"])
    assert row["unbound"] == [{"argument": "id", "value": unknown, "reason": "no earlier answer held it"}]
    assert row["rebound"] == []
    assert row["verdict"] == "outcome changed"  # the product knows no such habit


def test_a_scripted_day_played_again_by_its_driver_makes_the_same_calls(recorded: Recorded, tmp_path: Path) -> None:
    db = copy_store(recorded, tmp_path)
    report = replayed(tmp_path, recorded.tick("gremlin"), "--mode", "driver", "--db", str(db))
    (tick,) = report["ticks"]
    assert tick["changed"] is False
    store = open_store(str(db), create=False)
    before, after = load_day(store, recorded.tick("gremlin")), load_day(store, tick["replay_tick_id"])
    assert before is not None and after is not None
    assert after.run_id != before.run_id  # a tick of its own, in a run of its own
    assert [c.input_hash for c in after.calls] == [c.input_hash for c in before.calls]
    assert [c.outcome for c in after.calls] == [c.outcome for c in before.calls]


def test_an_llm_day_replays_from_its_runs_cassette_without_network(tmp_path: Path) -> None:
    db, cassette = tmp_path / "results.db", tmp_path / "day.jsonl"
    with fake_provider() as fake:
        fake.answer("", Call("todo__create", {"title": "Finish lab report"}), Call("todo__list", {"filter": "open"}))
        fake.answer("That's my day.")
        fake.answer("", Call("submit_ratings", {"ratings": [{"module": "todo", "rating": 4, "notes": "fine"}]}))
        env = {"ANTHROPIC_API_KEY": "test-key-not-real", "ANTHROPIC_BASE_URL": fake.base_url}
        args = ("--driver", "anthropic", "--model", "fake-model", "--persona", "maya", *DAY, "--db", str(db))
        ran = cli("run", *args, "--cassette", "record", str(cassette), env=env)
        assert ran.returncode == 0, ran.stderr
    with sqlite3.connect(db) as conn:
        (tick,) = conn.execute("SELECT tick_id FROM ticks").fetchone()
    # No key, and nothing listens where the provider was: only the cassette the run recorded can answer.
    out = tmp_path / "replay.json"
    offline = {"ANTHROPIC_API_KEY": "", "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{free_port()}"}
    # Latency is not what this replay is about: a busy machine can make one call 50 ms slower or faster than
    # the recorded one, and only the calls themselves must come out the same.
    args = (tick, "--mode", "driver", "--latency-ratio", "1000", "--db", str(db), "--format", "json", "--out", str(out))
    result = cli("replay", *args, env=offline)
    assert result.returncode == 0, result.stderr
    (replay,) = json.loads(out.read_text())["ticks"]
    assert [c["verdict"] for c in replay["calls"]] == ["same", "same"]
    assert replay["ratings_after"] == [{"module": "todo", "rating": 4, "notes": "fine"}]


def test_a_whole_run_replays_with_a_line_per_persona(recorded: Recorded) -> None:
    result = cli("replay", "--run", recorded.run_id, "--db", str(recorded.db))
    assert result.returncode == 0, result.stderr
    assert "# Replay of 2 ticks" in result.stdout
    assert "| gremlin | 1 | 20 |" in result.stdout and "| maya | 1 | 20 |" in result.stdout
    assert "Replayed as recorded:" in result.stdout


def test_what_cannot_be_replayed_is_one_line(recorded: Recorded, tmp_path: Path) -> None:
    db = str(copy_store(recorded, tmp_path))
    unknown = cli("replay", "nobody:2026-11-20", "--db", db)
    assert unknown.returncode == 2
    assert one_line_error(unknown.stderr).startswith("error: no tick 'nobody:2026-11-20' in the results store")

    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM transcripts WHERE tick_id = ?", (recorded.tick("maya"),))
    lost = cli("replay", recorded.tick("maya"), "--db", db)
    assert lost.returncode == 2
    assert "has no transcript" in one_line_error(lost.stderr)

    gone = cli("replay", recorded.tick("gremlin"), "--db", db, "--target", f"http://127.0.0.1:{free_port()}")
    assert gone.returncode == 1
    assert "unreachable" in one_line_error(gone.stderr)

    both = cli("replay", recorded.tick("gremlin"), "--run", recorded.run_id, "--db", db)
    assert both.returncode == 2
