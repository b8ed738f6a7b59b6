"""The catalog a command reads: the file named on the command line, else the default one."""

from __future__ import annotations

from pathlib import Path

from persona_runner.catalog import Catalog, default_catalog_path, load_catalog


def catalog_path(path: Path | None) -> Path:
    """The catalog a command reads: the one named, else `default_catalog_path()`."""
    return path or default_catalog_path()


def catalog_from(path: Path | None) -> Catalog:
    return load_catalog(catalog_path(path))
