"""Opening the results store: a SQLite file by default, PostgreSQL by URL."""

from __future__ import annotations

import os
import re
import sqlite3
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import event, inspect
from sqlalchemy.dialects.sqlite.base import SQLiteCompiler
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlmodel import create_engine

from persona_runner.store import DEFAULT_DB, ENV_DB
from persona_runner.store.models import ResultsTable
from persona_runner.store.upgrade import upgrade_schema


class StoreError(Exception):
    """The results store cannot be opened or written; the message says why and what to do."""


class StoreUnreachable(StoreError):
    """The store's server did not answer: the fault is in the environment, not in what the user typed."""


#: What the store may be, said whenever a URL names something else.
SUPPORTED = (
    "SQLite and PostgreSQL are the databases supported: give a file path or a postgresql+psycopg://USER@HOST/DB URL"
)
#: Seconds a PostgreSQL server has to answer a new connection before the store counts as unreachable.
CONNECT_TIMEOUT = 10


def resolve_url(db: str | None) -> str:
    """`--db` wins, then `PERSONA_RUNNER_DB`, then `./persona-runner.db`. A bare path means SQLite."""
    value = db or os.environ.get(ENV_DB) or DEFAULT_DB
    if "://" in value:
        return value
    return f"sqlite:///{Path(value).expanduser()}"


def describe(url: str) -> str:
    """Where the results are, in words a user can paste: a path for SQLite, the URL without password otherwise."""
    if url.startswith("sqlite:///"):
        return str(Path(url.removeprefix("sqlite:///")).resolve())
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return hide_password(url)


def hide_password(url: str) -> str:
    """`url` as typed with its password masked, even when it does not parse as a URL."""
    return re.sub(r"^([^:/]+://[^:/@]*:)[^/]*@", r"\1***@", url)


def _parsed(url: str) -> URL:
    """The URL of a store this tool can use; anything else is a StoreError naming what is supported."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise StoreError(f"results store {hide_password(url)!r} is not a database URL ({exc}); {SUPPORTED}") from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise StoreError(f"results store {describe(url)}: {SUPPORTED}")
    return parsed


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_wal(dbapi_connection: DBAPIConnection, _record: object) -> None:
    """Readers keep reading while a run writes. The mode is kept in the file, so only writers need to set it."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


class _SQLiteCompiler(SQLiteCompiler):
    """SQLite's compiler, with a table hint (`select().with_hint(table, "INDEXED BY ix", "sqlite")`) written after
    the table's name, where SQLite reads `INDEXED BY`; SQLAlchemy's own drops hints on SQLite."""

    def get_from_hint_text(self, table: Any, text: str | None) -> str | None:
        return text


def _check_sqlite_path(path: Path, *, create: bool) -> None:
    """Refuse, in one line, a SQLite location the command cannot use, before SQLite makes an empty file there."""
    if not create:
        if not path.exists():
            raise StoreError(
                f"results store {path.resolve()} does not exist; run `persona-runner run` first or pass --db"
            )
        return
    if not path.parent.exists():
        raise StoreError(
            f"results store {path}: directory {path.parent} does not exist; create it or pass --db elsewhere"
        )
    if path.exists() and not os.access(path, os.W_OK):
        raise StoreError(f"results store {path}: file is not writable; fix its permissions or pass --db elsewhere")
    if not path.exists() and not os.access(path.parent, os.W_OK):
        raise StoreError(f"results store {path}: directory {path.parent} is not writable; pass --db elsewhere")


def _read_only_uri(path: Path) -> str:
    """A SQLite URI that reads `path` without writing anything, for a file or directory this user may not write.

    `mode=ro` reads a store that another process is writing: its shared-memory file
    (`-shm`) is there to coordinate with. With no writer there is none, and SQLite would
    need to create one in the directory to read a WAL store at all; `immutable=1` reads
    the file as it is instead, which is all of it once the last writer has closed.
    """
    query = "mode=ro" if Path(f"{path}-shm").exists() else "mode=ro&immutable=1"
    return f"file:{quote(str(path.resolve()))}?{query}"


def _sqlite_engine(url: str, *, create: bool) -> Engine:
    """An engine on a SQLite store; read-only, when the command only reads and may not write there."""
    path = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None  # None: in memory
    if path is not None:
        _check_sqlite_path(path, create=create)
    if path is None or create or (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
        engine = create_engine(url, pool_pre_ping=True)
    else:
        connect = partial(sqlite3.connect, _read_only_uri(path), uri=True, check_same_thread=False)
        engine = create_engine(url, creator=connect, pool_pre_ping=True)
    engine.dialect.statement_compiler = _SQLiteCompiler
    event.listen(engine, "connect", _sqlite_pragmas)
    if create:
        event.listen(engine, "connect", _sqlite_wal)
    return engine


def _postgresql_engine(url: str, parsed: URL) -> Engine:
    """An engine on a PostgreSQL store; a server that does not answer is given CONNECT_TIMEOUT seconds."""
    timeout = {} if "connect_timeout" in parsed.query else {"connect_timeout": CONNECT_TIMEOUT}
    try:
        return create_engine(url, pool_pre_ping=True, connect_args=timeout)
    except ImportError as exc:
        raise StoreError(
            f"results store {describe(url)}: its driver is not installed ({exc}); use a postgresql+psycopg:// URL"
        ) from None


def _unreachable(exc: SQLAlchemyError) -> bool:
    """Whether the server never answered. One that answered and refused (a wrong password, no such database)
    says so with a SQLSTATE or, while connecting, as a FATAL error in libpq's message."""
    orig = getattr(exc, "orig", None)
    answered = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None) or "FATAL:" in str(orig)
    return isinstance(exc, OperationalError) and not answered


#: Tables a store an earlier version wrote may lack without being any less readable: they are made by the first
#: command that records on it.
LATER_TABLES = frozenset({"worker_pause"})


def _missing_tables(engine: Engine) -> list[str]:
    present = set(inspect(engine).get_table_names())
    return sorted(name for name in ResultsTable.metadata.tables if name not in present | LATER_TABLES)


def open_store(db: str | None = None, *, create: bool = True) -> Engine:
    """Return an engine on the results store.

    Commands that record pass create=True: they need write access and make
    the schema, or bring the one of a store an earlier version wrote up to
    date. Commands that only read (report, gate, runs, personas) pass
    create=False: a read-only store still opens, and a mistyped path is an
    error instead of a new empty file. Raises StoreError with one actionable
    line when the location cannot be used (missing file or directory,
    read-only file, a file that is not a database, a URL of another kind of
    database, no schema to read); StoreUnreachable, one kind of it, when a
    PostgreSQL server does not answer.
    """
    url = resolve_url(db)
    parsed = _parsed(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    engine = _sqlite_engine(url, create=create) if sqlite else _postgresql_engine(url, parsed)
    try:
        if create:
            ResultsTable.metadata.create_all(engine)
            upgrade_schema(engine)  # a store an earlier version wrote gains today's columns
        elif missing := _missing_tables(engine):
            raise StoreError(
                f"results store {describe(url)} has no tables {', '.join(missing)}; "
                "run `persona-runner run` first or pass --db"
            )
    except SQLAlchemyError as exc:
        reason = getattr(exc, "orig", None) or exc
        if not sqlite and _unreachable(exc):
            raise StoreUnreachable(
                f"results store unreachable: {describe(url)} ({reason}); start the server or fix --db / {ENV_DB}"
            ) from None
        # A refused login, a missing database, a file SQLite does not recognise ("file is not a database").
        raise StoreError(f"results store {describe(url)}: cannot open ({reason}); check --db / {ENV_DB}") from None
    return engine
