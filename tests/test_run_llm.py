"""`persona-runner run --driver anthropic|openai` end to end: the console script, the embedded
product, the real SDK against the fake provider; then the same run replayed from its cassette
with the provider gone."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.cli_helpers import cli
from tests.fake_provider import Call, fake_provider
from tool_registry.server import free_port

KEYS = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}
BASES = {"anthropic": ("ANTHROPIC_BASE_URL", ""), "openai": ("OPENAI_BASE_URL", "/v1")}
ARGS = ("--persona", "maya", "--seed", "2", "--date", "2026-11-20", "--model", "fake-model")


def recorded(db: Path) -> tuple[list[tuple], list[tuple], list[tuple]]:
    with sqlite3.connect(db) as conn:
        actions = conn.execute("SELECT seq, tool_name, input_hash, result FROM persona_actions ORDER BY seq").fetchall()
        feedback = conn.execute("SELECT module, rating, notes FROM persona_feedback ORDER BY module").fetchall()
        ticks = conn.execute("SELECT status, driver, model, tokens_in, tokens_out FROM ticks").fetchall()
    return actions, feedback, ticks


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_llm_run_records_what_the_model_did_and_replays_offline(provider: str, tmp_path: Path) -> None:
    cassette = tmp_path / "day.jsonl"
    with fake_provider() as fake:
        fake.answer(
            "Let me add my tasks.",
            Call("todo__create", {"title": "Finish lab report"}),
            Call("todo__create", {"title": "x" * 300}),
        )
        fake.answer("", Call("todo__list", {"filter": "open"}))
        fake.answer("That's my day.")
        fake.answer(
            "",
            Call(
                "submit_ratings",
                {"ratings": [{"module": "todo", "rating": 3, "notes": "one task was refused as too long"}]},
            ),
        )
        variable, suffix = BASES[provider]
        env = {KEYS[provider]: "test-key-not-real", variable: fake.base_url + suffix}
        first = cli(
            "run",
            "--driver",
            provider,
            *ARGS,
            "--db",
            str(tmp_path / "record.db"),
            "--cassette",
            "record",
            str(cassette),
            env=env,
        )
        assert first.returncode == 0, first.stderr
        assert len(fake.received) == 4
    actions, feedback, ticks = recorded(tmp_path / "record.db")
    assert [(tool, result) for _, tool, _, result in actions] == [
        ("todo.create", "ok"),
        ("todo.create", "error"),
        ("todo.list", "ok"),
    ]
    assert feedback == [("todo", 3, "one task was refused as too long")]
    assert ticks == [("ok", provider, "fake-model", 40, 20)]
    assert len(cassette.read_text().splitlines()) == 4

    # The provider is gone and there is no key: the cassette answers everything.
    replay = cli(
        "run",
        "--driver",
        provider,
        *ARGS,
        "--db",
        str(tmp_path / "replay.db"),
        "--cassette",
        "replay",
        str(cassette),
        env={KEYS[provider]: "", variable: "http://127.0.0.1:9" + suffix},
    )
    assert replay.returncode == 0, replay.stderr
    assert recorded(tmp_path / "replay.db") == (actions, feedback, ticks)


def test_a_replay_that_diverges_names_the_tick(tmp_path: Path) -> None:
    cassette = tmp_path / "day.jsonl"
    with fake_provider() as fake:
        fake.answer("", Call("todo__stats", {}))
        fake.answer("Done.")
        fake.answer("", Call("submit_ratings", {"ratings": [{"module": "todo", "rating": 5, "notes": "fine"}]}))
        env = {"ANTHROPIC_API_KEY": "test-key-not-real", "ANTHROPIC_BASE_URL": fake.base_url}
        assert (
            cli(
                "run",
                "--driver",
                "anthropic",
                *ARGS,
                "--db",
                str(tmp_path / "a.db"),
                "--cassette",
                "record",
                str(cassette),
                env=env,
            ).returncode
            == 0
        )
    catalog = json.loads(Path("catalog.json").read_text())
    maya = next(p for p in catalog["personas"] if p["name"] == "maya")
    maya["systemPrompt"] += " Today you are unusually calm."
    changed = tmp_path / "catalog.json"
    changed.write_text(json.dumps(catalog))
    replay = cli(
        "run",
        "--driver",
        "anthropic",
        *ARGS,
        "--catalog",
        str(changed),
        "--db",
        str(tmp_path / "b.db"),
        "--cassette",
        "replay",
        str(cassette),
        env={"ANTHROPIC_API_KEY": ""},
    )
    assert replay.returncode == 1
    assert "maya" in replay.stderr and "not in cassette" in replay.stderr and "$.body.system" in replay.stderr
    with sqlite3.connect(tmp_path / "b.db") as conn:
        [(status, error)] = conn.execute("SELECT status, error FROM ticks").fetchall()
    assert status == "failed" and "first differs" in error


def test_missing_key_is_one_line_before_any_tick(tmp_path: Path) -> None:
    done = cli(
        "run", "--driver", "anthropic", "--model", "m", "--db", str(tmp_path / "r.db"), env={"ANTHROPIC_API_KEY": ""}
    )
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: ANTHROPIC_API_KEY is not set")
    assert not (tmp_path / "r.db").exists()


def test_run_token_budget_stops_new_ticks_and_says_so(tmp_path: Path) -> None:
    with fake_provider() as fake:
        # The first persona's day is one answer (it used no module, so it rates nothing) and spends the budget.
        fake.answer("Nothing to do today.", tokens_in=600, tokens_out=100)
        env = {"ANTHROPIC_API_KEY": "test-key-not-real", "ANTHROPIC_BASE_URL": fake.base_url}
        done = cli(
            "run",
            "--driver",
            "anthropic",
            "--model",
            "m",
            "--persona",
            "maya",
            "--persona",
            "ravi",
            "--persona",
            "yuki",
            "--concurrency",
            "1",
            "--max-tokens-per-run",
            "500",
            "--db",
            str(tmp_path / "r.db"),
            env=env,
        )
        assert len(fake.received) == 1
    assert "stopped early: token budget for the run spent: 700 of 500 tokens; no new ticks started" in done.stderr
    # The one tick that ran called no tool: a run that tested nothing fails, saying so.
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: no calls were made in run ")
    with sqlite3.connect(tmp_path / "r.db") as conn:
        ticks = conn.execute("SELECT status, tokens_in, tokens_out FROM ticks").fetchall()
    assert ticks == [("ok", 600, 100)]


def test_a_run_that_stops_before_asking_the_model_keeps_the_old_cassette(tmp_path: Path) -> None:
    cassette = tmp_path / "keep.jsonl"
    cassette.write_text("an earlier recording\n")
    env = {"ANTHROPIC_API_KEY": "test-key-not-real", "ANTHROPIC_BASE_URL": "http://127.0.0.1:9"}
    done = cli(
        "run",
        "--driver",
        "anthropic",
        "--model",
        "m",
        "--cassette",
        "record",
        str(cassette),
        "--target",
        f"http://127.0.0.1:{free_port()}",
        "--db",
        str(tmp_path / "r.db"),
        env=env,
    )
    assert done.returncode == 1, done.stderr  # an unreachable target is the environment's doing: exit 1
    assert "unreachable" in done.stderr and "Traceback" not in done.stderr
    assert cassette.read_text() == "an earlier recording\n"


def test_a_base_url_without_a_scheme_is_one_line_before_anything_is_written(tmp_path: Path) -> None:
    done = cli(
        "run",
        "--driver",
        "openai",
        "--model",
        "m",
        "--base-url",
        "localhost:11434/v1",
        "--db",
        str(tmp_path / "r.db"),
        env={"OPENAI_API_KEY": "test-key-not-real"},
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == "error: --base-url 'localhost:11434/v1' is not an http(s) URL with a host: write it like http://127.0.0.1:11434/v1"
    )
    assert not (tmp_path / "r.db").exists()
