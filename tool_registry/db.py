"""The product's database: a SQLite file by default, PostgreSQL by URL (`--data`)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import registry
from sqlmodel import SQLModel, create_engine


class ProductTable(SQLModel, registry=registry()):
    """Base of every product table (identity and modules): its own metadata, so
    the product never shares a schema with the results store in one process."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def data_url(data: str | None) -> str:
    """A bare path means a SQLite file; anything with `://` is a SQLAlchemy URL."""
    value = data or "persona-product.db"
    return value if "://" in value else f"sqlite:///{Path(value).expanduser()}"


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")  # SQLite leaves them off per connection; the schema relies on them
    cursor.close()


def open_product_db(data: str | None) -> Engine:
    """Open (and create if needed) the product database."""
    url = data_url(data)
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    import tool_registry.backend  # noqa: F401  (registers the module tables)
    import tool_registry.identity  # noqa: F401  (registers the identity tables)

    ProductTable.metadata.create_all(engine)
    return engine
