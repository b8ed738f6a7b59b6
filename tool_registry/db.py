"""The product's database: a SQLite file by default, PostgreSQL by URL (`--data`).

The base every product table derives from, and the connection and transaction
rules they all share. It knows no table itself: the modules that declare tables
(identity, backend) depend on it, never the other way round, and the schema,
every table at once, is assembled in `tool_registry.schema`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import registry
from sqlmodel import Session, SQLModel, create_engine


class ProductTable(SQLModel, registry=registry()):
    """Base of every product table (identity and modules): its own metadata, so
    the product never shares a schema with the results store in one process."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def data_url(data: str | None) -> str:
    """A bare path means a SQLite file; anything with `://` is a SQLAlchemy URL."""
    value = data or "persona-product.db"
    return value if "://" in value else f"sqlite:///{Path(value).expanduser()}"


def _sqlite_lower(value: str | None) -> str | None:
    return None if value is None else value.lower()


def _sqlite_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    """SQLite's `lower()` folds ASCII only; the case-insensitive lookups (titles,
    search) must find "École" by "école" on SQLite as on PostgreSQL."""
    dbapi_connection.create_function("lower", 1, _sqlite_lower, deterministic=True)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")  # SQLite leaves them off per connection; the schema relies on them
    cursor.close()


def serialize_writes(session: Session, key: str | None = None) -> None:
    """Call first in a transaction that reads what it then writes, so two such transactions never interleave.

    On SQLite the transaction takes the database's write lock at once (the
    driver would begin it only at the first write, after the reads it is based
    on, and two appends to one note would each keep only their own line). On
    PostgreSQL, rows fetched to be changed are locked with `FOR UPDATE`; a
    `key` also serializes transactions about something that has no row yet
    (creating a space by name).
    """
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")
    elif dialect == "postgresql" and key is not None:
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})


def open_engine(data: str | None) -> Engine:
    """Connect to the product database (no tables are created here: see `tool_registry.schema`)."""
    engine = create_engine(data_url(data), pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
    return engine
