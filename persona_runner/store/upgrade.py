"""Bringing a store an earlier version wrote up to today's tables, in place.

A missing column is added with `ALTER TABLE ... ADD COLUMN`, which SQLite and
PostgreSQL both do without rewriting the table: the rows, the CHECK on
ratings and the indexes stay as they are. A missing index is created. So a
column added to the models must be nullable or carry a server default; any
other kind could not be added to a table that has rows.

A column the models dropped is dropped from the store only when it is listed
in `RETIRED_COLUMNS`, never because the models lack it: a store a newer
version wrote may be opened by an older one, and its new columns are not this
version's to remove. `ALTER TABLE ... DROP COLUMN` needs SQLite 3.35 or later
(PostgreSQL has it): an older SQLite keeps them, unused and harmless, as does a
store that refuses the drop, which says so in one line.
"""

from __future__ import annotations

import logging
import warnings

from sqlalchemy import Column, Index, Table, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SAWarning, SQLAlchemyError
from sqlalchemy.schema import CreateColumn, CreateIndex

from persona_runner.store.models import ResultsTable

logger = logging.getLogger("persona_runner.store.upgrade")

#: Columns earlier versions wrote that nothing reads any more, by table: the personas' lease, which the job
#: queue's locks replaced (a persona ticks once at a time by its lock, not by a lease on its row).
RETIRED_COLUMNS: dict[str, tuple[str, ...]] = {"personas": ("lease_owner", "lease_expires_at")}


def upgrade_schema(engine: Engine) -> None:
    """Add the columns and indexes of the results tables that the store lacks, and drop its retired columns
    (call after `create_all`)."""
    inspector = inspect(engine)
    for table in ResultsTable.metadata.sorted_tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in present:
                _add_column(engine, table, column)
        retired = [name for name in RETIRED_COLUMNS.get(table.name, ()) if name in present]
        if retired and _drops_columns(engine):
            _drop_columns(engine, table, retired)
        with warnings.catch_warnings():  # SQLite's reflection skips an index on an expression, with a warning
            warnings.filterwarnings("ignore", "Skipped unsupported reflection", SAWarning)
            indexed = {index["name"] for index in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexed and _for_this_database(index, engine):
                with engine.begin() as conn:
                    conn.execute(CreateIndex(index, if_not_exists=True))


def _for_this_database(index: Index, engine: Engine) -> bool:
    """Whether to add the index to an existing store: not one that serves only reports (`models._REPORT_ONLY`), nor one
    declared `.ddl_if(dialect=...)` for another database."""
    if index.info.get("report_only"):
        return False
    only = getattr(index, "_ddl_if", None)
    return only is None or only.dialect is None or only.dialect == engine.dialect.name


def _add_column(engine: Engine, table: Table, column: Column[object]) -> None:
    """One ALTER TABLE. Two processes opening the same old store may race to it: the loser finds the column there."""
    definition = CreateColumn(column).compile(dialect=engine.dialect)
    statement = f"ALTER TABLE {engine.dialect.identifier_preparer.format_table(table)} ADD COLUMN {definition}"
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(statement)
    except SQLAlchemyError:
        if column.name not in {c["name"] for c in inspect(engine).get_columns(table.name)}:
            raise


def _drops_columns(engine: Engine) -> bool:
    """Whether the database has `ALTER TABLE ... DROP COLUMN`: PostgreSQL does, SQLite from 3.35 on. Where it has
    not, the retired columns stay without a word at every open: nothing there could drop them."""
    return engine.dialect.name != "sqlite" or (engine.dialect.server_version_info or ()) >= (3, 35)


def _drop_columns(engine: Engine, table: Table, names: list[str]) -> None:
    """One ALTER TABLE per column (SQLite drops one at a time). A process that raced this one to a column leaves
    nothing to drop. A store that refuses (a user who does not own the table, a lock held past the wait) keeps
    what it would not drop, harmless, says so in one line, and is tried again at the next open."""
    preparer = engine.dialect.identifier_preparer
    refused: BaseException | None = None
    for name in names:
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"ALTER TABLE {preparer.format_table(table)} DROP COLUMN {preparer.quote(name)}")
        except SQLAlchemyError as exc:
            refused = getattr(exc, "orig", None) or exc
    if refused is None:
        return
    present = {column["name"] for column in inspect(engine).get_columns(table.name)}
    if kept := [name for name in names if name in present]:
        logger.warning(
            "results store: kept the unused column(s) %s of %s, which it would not drop (%s); they do no harm",
            ", ".join(kept),
            table.name,
            str(refused).strip().partition("\n")[0],
        )
