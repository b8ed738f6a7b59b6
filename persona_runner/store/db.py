"""Opening the results store: a SQLite file by default, PostgreSQL by URL."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import event, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import create_engine

from persona_runner.store import DEFAULT_DB, ENV_DB
from persona_runner.store.models import ResultsTable
from persona_runner.store.upgrade import upgrade_schema


class StoreError(Exception):
    """The results store cannot be opened or written; the message says why and what to do."""


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
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


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
    read-only file, a file that is not a database, unreachable server, no
    schema to read).
    """
    url = resolve_url(db)
    if url.startswith("sqlite:///"):
        _check_sqlite_path(Path(url.removeprefix("sqlite:///")), create=create)
    try:
        engine = create_engine(url, pool_pre_ping=True)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise StoreError(f"results store {url!r} is not a usable database URL: {exc}") from None
    if engine.dialect.name not in ("sqlite", "postgresql"):
        raise StoreError(f"results store {describe(url)}: only SQLite paths and postgresql:// URLs are supported")
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        if create:
            event.listen(engine, "connect", _sqlite_wal)
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
        # Unreachable server, refused login, a file SQLite does not recognise ("file is not a database").
        raise StoreError(
            f"results store {describe(url)}: cannot open ({getattr(exc, 'orig', None) or exc}); check --db / {ENV_DB}"
        ) from None
    return engine
