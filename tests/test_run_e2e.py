"""`persona-runner run` end to end: the command line, the embedded product (or one served by
`persona-runner serve`) over real HTTP, a real SQLite results store."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from persona_runner.catalog import default_catalog_path, load_catalog
from tests.cli_helpers import ADMIN, cli, served_product

CATALOG = load_catalog(default_catalog_path())
#: Several personas at once, members of shared spaces among them: a seed must still repeat call for call.
RUN_ARGS = ("--seed", "3", "--date", "2026-11-20", "--concurrency", "4")


def rows(db: Path, sql: str, *params: object) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def tool_sequence(db: Path) -> list[tuple]:
    """Every call of the run as (persona, seq, tool, input hash), persona by persona."""
    return rows(
        db,
        "SELECT t.persona_name, a.seq, a.tool_name, a.input_hash"
        " FROM persona_actions a JOIN ticks t USING (tick_id) ORDER BY 1, 2",
    )


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One run of every persona, made once for the module: the tests that use it only read it."""
    db = tmp_path_factory.mktemp("run") / "results.db"
    done = cli("run", "--db", str(db), *RUN_ARGS)
    assert done.returncode == 0, done.stderr
    return db, done.stdout


def test_every_persona_ticks_with_actions_and_feedback(first_run: tuple[Path, str]) -> None:
    db, stdout = first_run
    ticks = rows(db, "SELECT persona_name, status, tool_calls FROM ticks")
    assert sorted(name for name, _, _ in ticks) == sorted(p.name for p in CATALOG.personas)
    assert all(status == "ok" and calls > 0 for _, status, calls in ticks)
    per_persona_feedback = dict(
        rows(db, "SELECT t.persona_name, COUNT(*) FROM persona_feedback f JOIN ticks t USING (tick_id) GROUP BY 1")
    )
    assert set(per_persona_feedback) == {p.name for p in CATALOG.personas}
    # Each tick recorded every call it counted, and rated each module it used and nothing else.
    recorded = dict(rows(db, "SELECT tick_id, COUNT(*) FROM persona_actions GROUP BY 1"))
    assert recorded == dict(rows(db, "SELECT tick_id, tool_calls FROM ticks"))
    used = set(rows(db, "SELECT DISTINCT tick_id, module FROM persona_actions"))
    assert set(rows(db, "SELECT tick_id, module FROM persona_feedback")) == used
    personas = rows(db, "SELECT name, last_active_at FROM personas")
    assert len(personas) == len(CATALOG.personas) and all(active for _, active in personas)
    run_id = rows(db, "SELECT run_id FROM runs")[0][0]
    assert f"run {run_id}" in stdout and str(db) in stdout
    for persona in CATALOG.personas:
        assert persona.name in stdout


def test_action_hashes_match_the_transcript_and_latencies_are_positive(first_run: tuple[Path, str]) -> None:
    db, _ = first_run
    transcripts = {tick_id: json.loads(body) for tick_id, body in rows(db, "SELECT tick_id, body FROM transcripts")}
    actions = rows(
        db, "SELECT tick_id, seq, tool_name, input_hash, latency_ms, result, error_message FROM persona_actions"
    )
    assert actions
    for tick_id, seq, tool, digest, latency, result, error in actions:
        call = transcripts[tick_id]["calls"][seq]
        canonical = json.dumps(call["arguments"], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert digest == hashlib.sha256(canonical.encode("utf-8")).hexdigest()
        assert (call["tool"], call["outcome"]) == (tool, result)
        assert latency > 0
        assert (error is None) == (result == "ok")
    for body in transcripts.values():
        assert body["tools_offered"] and "admin.set_tier" not in body["tools_offered"]
    # The tick's row keeps the same list, sorted, for reports to read without the transcripts.
    for tick_id, offered in rows(db, "SELECT tick_id, tools_offered FROM ticks"):
        assert json.loads(offered) == sorted(transcripts[tick_id]["tools_offered"])


def test_chaos_persona_invalid_calls_are_errors_with_the_gateways_message(first_run: tuple[Path, str]) -> None:
    db, _ = first_run
    chaos = next(p.name for p in CATALOG.personas if p.archetype == "chaos")
    errors = rows(
        db,
        "SELECT a.error_message, a.probe FROM persona_actions a JOIN ticks t USING (tick_id)"
        " WHERE t.persona_name = ? AND a.result = 'error'",
        chaos,
    )
    assert len(errors) >= 3
    assert any(message.startswith("invalid arguments for ") for message, _ in errors)
    # Refusing bad input on purpose is the product doing its job: probes are marked and not counted as its errors.
    assert all(probe for message, probe in errors if message.startswith("invalid arguments for "))
    [(tick_errors,)] = rows(db, "SELECT errors FROM ticks WHERE persona_name = ?", chaos)
    assert tick_errors == sum(1 for _, probe in errors if not probe)
    assert rows(
        db,
        "SELECT COUNT(*) FROM persona_actions a JOIN ticks t USING (tick_id) WHERE t.persona_name != ? AND a.probe",
        chaos,
    ) == [(0,)]


def test_same_seed_gives_the_same_tool_sequence_and_hashes(first_run: tuple[Path, str], tmp_path: Path) -> None:
    db, _ = first_run
    again = tmp_path / "again.db"
    assert cli("run", "--db", str(again), *RUN_ARGS).returncode == 0
    sequence = tool_sequence(db)
    assert {name for name, *_ in sequence} == {p.name for p in CATALOG.personas}
    assert tool_sequence(again) == sequence
    other = tmp_path / "other.db"
    assert cli("run", "--db", str(other), "--seed", "4", "--date", "2026-11-20", "--concurrency", "4").returncode == 0
    assert tool_sequence(other) != tool_sequence(db)


def test_served_fault_shows_up_as_errors_and_a_lower_rating_naming_it(
    first_run: tuple[Path, str], tmp_path: Path
) -> None:
    db, _ = first_run
    baseline = dict(
        rows(
            db,
            "SELECT t.persona_name, f.rating FROM persona_feedback f JOIN ticks t USING (tick_id)"
            " WHERE f.module = 'todo'",
        )
    )
    faulted = tmp_path / "faulted.db"
    with served_product(tmp_path, "--fault", "todo.list=1.0", "--id-seed", "3") as (url, _):
        done = cli("run", "--target", url, "--admin-token", ADMIN, "--db", str(faulted), *RUN_ARGS)
    assert done.returncode == 0, done.stderr  # product errors are findings, not failed ticks
    failures = rows(faulted, "SELECT result, error_message FROM persona_actions WHERE tool_name = 'todo.list'")
    assert failures and all(
        result == "error" and "injected fault: todo.list" in message for result, message in failures
    )
    ratings = rows(
        faulted,
        "SELECT t.persona_name, f.rating, f.notes FROM persona_feedback f JOIN ticks t USING (tick_id)"
        " WHERE f.module = 'todo'",
    )
    callers = {
        name
        for (name,) in rows(
            faulted,
            "SELECT DISTINCT t.persona_name FROM persona_actions a JOIN ticks t USING (tick_id)"
            " WHERE a.tool_name = 'todo.list'",
        )
    }
    assert callers & {name for name, _, _ in ratings}, "no persona that met the fault rated todo"
    for name, rating, notes in ratings:
        if name in callers:
            assert "todo.list" in notes
            assert rating < baseline.get(name, 5)


def test_personas_list_and_show(first_run: tuple[Path, str]) -> None:
    db, _ = first_run
    listed = cli("personas", "list", "--db", str(db))
    assert listed.returncode == 0
    for persona in CATALOG.personas:
        assert persona.name in listed.stdout
    shown = cli("personas", "show", CATALOG.personas[0].name, "--db", str(db))
    assert shown.returncode == 0
    assert "Recent actions" in shown.stdout and "Mean rating per module" in shown.stdout
    unknown = cli("personas", "show", "nobody", "--db", str(db))
    assert unknown.returncode == 2 and "no persona named 'nobody'" in unknown.stderr


def test_a_module_the_target_does_not_offer_is_reported_once(tmp_path: Path) -> None:
    raw = json.loads(default_catalog_path().read_text())
    raw["personas"][0]["moduleMix"]["garden"] = 1
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(raw))
    first = CATALOG.personas[0].name
    with served_product(tmp_path) as (url, _):
        done = cli(
            "run",
            "--target",
            url,
            "--admin-token",
            ADMIN,
            "--catalog",
            str(catalog),
            "--persona",
            first,
            "--db",
            str(tmp_path / "r.db"),
        )
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "garden" in line]
    assert len(warnings) == 1 and warnings[0].startswith(
        "warning: personas[0].moduleMix.garden: module not offered by the target"
    )


def test_repeat_lives_consecutive_days_each_a_tick_of_its_own_the_same_every_time(tmp_path: Path) -> None:
    """`--repeat 3` triples the ticks: one per persona and day, with ids that say the day, and the same
    calls again under the same seed and date."""
    sequences = []
    for attempt in ("a", "b"):
        db = tmp_path / f"{attempt}.db"
        done = cli(
            "run", "--persona", "ravi", "--persona", "yuki", "--repeat", "3", "--date", "2026-11-20",
            "--seed", "5", "--max-turns", "4", "--db", str(db),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        with sqlite3.connect(db) as conn:
            [(run_id, config)] = conn.execute("SELECT run_id, config FROM runs").fetchall()
            ticks = conn.execute("SELECT tick_id, tick_date FROM ticks ORDER BY tick_id").fetchall()
            hashes = conn.execute(
                "SELECT t.persona_name, t.tick_date, group_concat(a.input_hash, ',')"
                " FROM ticks t JOIN persona_actions a USING (tick_id) GROUP BY t.tick_id ORDER BY t.tick_id"
            ).fetchall()
        assert json.loads(config)["repeat"] == 3
        days = ["2026-11-20", "2026-11-21", "2026-11-22"]
        assert ticks == [(f"{run_id}:{name}:{day}", day) for name in ("ravi", "yuki") for day in days]
        sequences.append(hashes)
    assert sequences[0] == sequences[1]
    assert len({calls for _, _, calls in sequences[0]}) == 6, "each day is a day of its own"
