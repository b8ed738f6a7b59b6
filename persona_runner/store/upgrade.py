"""Bringing a store an earlier version wrote up to today's tables, in place.

A missing column is added with `ALTER TABLE ... ADD COLUMN`, which SQLite and
PostgreSQL both do without rewriting the table: the rows, the CHECK on
ratings and the indexes stay as they are. A missing index is created. So a
column added to the models must be nullable or carry a server default; any
other kind could not be added to a table that has rows.
"""

from __future__ import annotations

import warnings

from sqlalchemy import Column, Index, Table, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SAWarning, SQLAlchemyError
from sqlalchemy.schema import CreateColumn, CreateIndex

from persona_runner.store.models import ResultsTable


def upgrade_schema(engine: Engine) -> None:
    """Add the columns and indexes of the results tables that the store lacks (call after `create_all`)."""
    inspector = inspect(engine)
    for table in ResultsTable.metadata.sorted_tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in present:
                _add_column(engine, table, column)
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
