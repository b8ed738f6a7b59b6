"""The product's database schema: the identity tables and the module tables, created together.

Tables are declared next to the code that uses them (`identity`, `backend`),
on the base in `db`; this is the one module that knows all of them, so opening
the database always creates the whole schema while `db` stays free of tables.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

# Imported for their tables: declaring a table registers it on `ProductTable.metadata`.
from tool_registry import backend, identity  # noqa: F401
from tool_registry.db import ProductTable, open_engine


def open_product_db(data: str | None) -> Engine:
    """Open the product database (a path or a URL, see `db.data_url`), creating any table it lacks."""
    engine = open_engine(data)
    ProductTable.metadata.create_all(engine)
    return engine
