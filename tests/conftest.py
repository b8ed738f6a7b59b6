"""Shared fixtures: the anyio backend, throwaway PostgreSQL schemas, and a results store on each database."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

PG_ADMIN_DSN = os.environ.get("PERSONA_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A database of this test process's own (one per xdist worker), dropped at the end.

    Creating and dropping a database takes about a second; a schema in it takes milliseconds,
    so each test gets a schema here (see `pg_url`) instead of a database.
    """
    name = f"pr_test_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def pg_url(request: pytest.FixtureRequest, pg_database: str) -> Iterator[str]:
    """A SQLAlchemy URL whose connections see only a brand-new schema (through their search_path),
    dropped afterwards with whatever the test left connected to it."""
    if request.node.get_closest_marker("postgres") is None:
        pytest.fail(f"{request.node.nodeid} uses PostgreSQL: mark it @pytest.mark.postgres")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_url(PG_ADMIN_DSN).set(database=pg_database)
    dsn = admin.render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        url = admin.set(drivername="postgresql+psycopg", query={"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            # Engines a test did not dispose of keep connections open; DROP SCHEMA would wait on their locks.
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A results store URL on SQLite, then on PostgreSQL: the report's SQL differs between them
    (percentiles above all), so what reads the store is tested on both."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'results.db'}"
    return str(request.getfixturevalue("pg_url"))
