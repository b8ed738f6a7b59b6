"""The results store opens for what a command needs, or says in one line why it cannot: a store
this user may not write still serves the reading commands, and a URL of another database, a
malformed one or a server that does not answer is named without its password. A store an earlier
version wrote is brought up to date when it is opened for recording, and only then."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import warnings
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SAWarning

from persona_runner.store.db import open_store
from persona_runner.store.upgrade import RETIRED_COLUMNS
from tests.cli_helpers import cli, one_line_error
from tests.test_recording import PREVIOUS_SCHEMA
from tests.test_report import NOW, build_known_store

#: Each command that only reads the store, and what its output shows of the store `build_known_store` makes.
READING_COMMANDS = [(("runs", "list"), " r1 "), (("personas", "list"), "Ann"), (("report", "--out", "{out}"), "wrote ")]


@contextmanager
def not_writable(*paths: Path) -> Iterator[None]:
    """`paths` made read-only for this user while the block runs.

    File modes do it, except for root, who writes whatever the modes say; root is held
    back by the immutable attribute instead (`chattr +i`, where the file system has it).
    """
    modes = {path: path.stat().st_mode for path in paths}
    for path in paths:
        path.chmod(0o555 if path.is_dir() else 0o444)
    immutable: list[Path] = []
    try:
        for path in paths:
            if os.access(path, os.W_OK):
                if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
                    pytest.skip("this user writes whatever the file modes say, and chattr +i is not available")
                immutable.append(path)
        yield
    finally:
        for path in immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        for path, mode in modes.items():
            path.chmod(mode)


@pytest.mark.parametrize("read_only", ["directory", "file and directory"])
@pytest.mark.parametrize(("command", "shown"), READING_COMMANDS, ids=[" ".join(c[:2]) for c, _ in READING_COMMANDS])
def test_a_store_this_user_may_not_write_still_serves_the_reading_commands(
    tmp_path: Path, read_only: str, command: tuple[str, ...], shown: str
) -> None:
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    db = shelf / "results.db"
    build_known_store(f"sqlite:///{db}").engine.dispose()  # a WAL store whose last writer has closed
    before = db.read_bytes()
    args = [part.format(out=tmp_path / "report.html") for part in command]
    with not_writable(*([shelf] if read_only == "directory" else [shelf, db])):
        done = cli(*args, "--db", str(db))
    assert done.returncode == 0, done.stderr
    assert shown in done.stdout
    assert sorted(p.name for p in shelf.iterdir()) == ["results.db"] and db.read_bytes() == before


def test_a_read_only_store_that_is_being_written_is_read_with_what_was_just_written(tmp_path: Path) -> None:
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    db = shelf / "results.db"
    build_known_store(f"sqlite:///{db}").engine.dispose()
    with closing(sqlite3.connect(db)) as writer:  # a run still recording: its newest rows are in the WAL
        writer.execute(
            "INSERT INTO runs (run_id, started_at, target, driver, seed, status, config)"
            " VALUES ('r2', ?, 'http://127.0.0.1/mcp', 'scripted', 0, 'running', '{}')",
            (NOW.isoformat(sep=" "),),
        )
        writer.commit()
        with not_writable(shelf):
            done = cli("runs", "list", "--db", str(db))
    assert done.returncode == 0, done.stderr
    assert " r2 " in done.stdout and " r1 " in done.stdout


@pytest.mark.parametrize("url", ["mysql://me:s3cret@127.0.0.1/results", "mongodb://127.0.0.1/results"])
@pytest.mark.parametrize("command", [("runs", "list"), ("run",)])
def test_another_kind_of_database_is_one_line_naming_the_two_supported(
    tmp_path: Path, url: str, command: tuple[str, ...]
) -> None:
    done = cli(*command, "--db", url, cwd=tmp_path)
    assert done.returncode == 2
    line = one_line_error(done.stderr)
    assert "SQLite and PostgreSQL are the databases supported" in line and "postgresql+psycopg://" in line
    assert "s3cret" not in done.stderr and len(done.stderr.splitlines()) == 1
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "url", ["postgresql+psycopg://me:s3cret@127.0.0.1:port/results", "://results", "postgresql+psycopg://me@[::1/db"]
)
def test_a_malformed_url_is_a_usage_error(url: str) -> None:
    done = cli("runs", "list", "--db", url)
    assert done.returncode == 2
    assert "is not a database URL" in one_line_error(done.stderr) and "s3cret" not in done.stderr


@pytest.mark.parametrize("command", [("runs", "list"), ("status",)])
def test_a_postgresql_server_that_does_not_answer_is_store_unreachable(command: tuple[str, ...]) -> None:
    done = cli(*command, "--db", "postgresql+psycopg://me:s3cret@127.0.0.1:1/results")
    assert done.returncode == 1
    line = one_line_error(done.stderr)
    assert line.startswith("error: results store unreachable: postgresql+psycopg://me:***@127.0.0.1:1/results (")
    assert "s3cret" not in done.stderr


@pytest.mark.postgres
def test_a_postgresql_server_that_answers_and_refuses_is_not_unreachable(pg_url: str) -> None:
    missing = make_url(pg_url).set(database="no_such_database").render_as_string(hide_password=False)
    done = cli("runs", "list", "--db", missing)
    assert done.returncode == 2
    line = one_line_error(done.stderr)
    assert "unreachable" not in line and "cannot open" in line and "no_such_database" in line


@pytest.mark.postgres
def test_a_postgresql_store_opens_for_reading(pg_url: str) -> None:
    build_known_store(pg_url).engine.dispose()
    done = cli("runs", "list", "--db", pg_url)
    assert done.returncode == 0, done.stderr
    assert " r1 " in done.stdout


#: The indexes a report's window reads through, which stores written before them lack.
WINDOW_INDEXES = {
    "persona_actions": "ix_actions_created",
    "persona_feedback": "ix_feedback_created",
    "ticks": "ix_ticks_started",
}


def test_a_store_written_before_the_window_indexes_gains_them_when_opened_for_recording(tmp_path: Path) -> None:
    db = tmp_path / "results.db"
    build_known_store(f"sqlite:///{db}").engine.dispose()
    with closing(sqlite3.connect(db)) as conn:
        for index in WINDOW_INDEXES.values():
            conn.execute(f"DROP INDEX {index}")
        conn.commit()

    engine = open_store(str(db))
    try:
        inspector = inspect(engine)
        for table, index in WINDOW_INDEXES.items():
            with warnings.catch_warnings():  # SQLite's reflection skips the report's index on an expression
                warnings.filterwarnings("ignore", "Skipped unsupported reflection", SAWarning)
                assert index in {found["name"] for found in inspector.get_indexes(table)}
    finally:
        engine.dispose()


#: The personas' lease columns, which the version before the job queue wrote and nothing reads any more.
LEASE = set(RETIRED_COLUMNS["personas"])


def write_previous_store(url: str) -> None:
    """A store as the version before the job queue left it: the lease columns there, and a persona leased."""
    old = create_engine(url)
    with old.begin() as conn:
        for statement in PREVIOUS_SCHEMA.split(";"):
            if statement.strip():
                conn.execute(text(statement))
        conn.execute(
            text(
                "INSERT INTO personas VALUES ('u-ann', 'ann@example.test', 'ann', 'planner', 'You plan.', '{}',"
                " 'daily', NULL, NULL, NULL, '2026-01-01 09:00:00', '2026-01-01 09:00:00', 'host:1',"
                " '2026-01-01 10:00:00')"
            )
        )
    old.dispose()


def persona_columns(store: Engine) -> set[str]:
    return {column["name"] for column in inspect(store).get_columns("personas")}


def test_a_store_opened_for_recording_drops_the_unused_lease_columns_and_keeps_the_personas(store_url: str) -> None:
    write_previous_store(store_url)
    reading = open_store(store_url, create=False)
    try:
        assert persona_columns(reading) >= LEASE  # a reading command changes nothing
    finally:
        reading.dispose()

    store = open_store(store_url)
    try:
        assert not LEASE & persona_columns(store)
        with store.connect() as conn:
            kept = conn.execute(text("SELECT user_id, email, name, tick_cadence FROM personas")).all()
        assert [tuple(row) for row in kept] == [("u-ann", "ann@example.test", "ann", "daily")]
    finally:
        store.dispose()
    open_store(store_url).dispose()  # opened again: nothing left to drop


def test_a_lease_column_the_store_will_not_drop_stays_and_is_said_in_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "results.db"
    write_previous_store(f"sqlite:///{db}")
    with closing(sqlite3.connect(db)) as conn:  # something of the user's own reads it: SQLite keeps an indexed column
        conn.execute("CREATE INDEX ix_their_own ON personas (lease_expires_at)")
        conn.commit()

    with caplog.at_level(logging.WARNING, logger="persona_runner.store.upgrade"):
        store = open_store(str(db))
    try:
        assert LEASE & persona_columns(store) == {"lease_expires_at"}
    finally:
        store.dispose()
    [said] = [record.getMessage() for record in caplog.records]
    assert said.startswith("results store: kept the unused column(s) lease_expires_at of personas")
    assert "\n" not in said and "lease_owner" not in said
