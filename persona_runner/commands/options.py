"""Options and helpers shared by several commands, declared once so they read and behave the same everywhere."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.engine import Engine

from persona_runner.catalog import Catalog, default_catalog_path, load_catalog
from persona_runner.store.db import ENV_DB, StoreError, open_store
from persona_runner.util.errors import UserError
from persona_runner.util.urls import require_http_url

CatalogOption = Annotated[
    Path | None,
    typer.Option(
        "--catalog", help="Persona catalog. Default: ./catalog.json, else the shipped one.", show_default=False
    ),
]
DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help=f"Results store: a SQLite path or a postgresql:// URL. Default ${ENV_DB}, else ./persona-runner.db.",
        show_default=False,
    ),
]


def _checked_target(url: str | None) -> str | None:
    return None if url is None else require_http_url(url, "--target", "http://127.0.0.1:8765")


TargetOption = Annotated[
    str | None,
    typer.Option(
        "--target",
        callback=_checked_target,
        help="Base URL of a running product, e.g. http://127.0.0.1:8765.",
        show_default=False,
    ),
]
AdminTokenOption = Annotated[
    str | None,
    typer.Option(
        "--admin-token",
        envvar="PERSONA_ADMIN_TOKEN",
        help="The product's admin token (X-Admin-Token), needed to seed personas.",
        show_default=False,
    ),
]


def catalog_path(path: Path | None) -> Path:
    """The catalog a command reads: the one named, else `default_catalog_path()`."""
    return path or default_catalog_path()


def catalog_from(path: Path | None) -> Catalog:
    return load_catalog(catalog_path(path))


def store_from(db: str | None, *, create: bool = True) -> Engine:
    """The results store for a command; create=False for commands that only read it (see `open_store`)."""
    try:
        return open_store(db, create=create)
    except StoreError as exc:
        raise UserError(str(exc)) from None


def write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file in the same directory and rename, so readers never see half a file."""
    write_all_atomic([(path, text)])


def write_all_atomic(files: Sequence[tuple[Path, str]]) -> None:
    """Write every file, or none: each goes to a temporary file beside it, and only once all are
    written are they renamed into place, so a path that cannot be written leaves no file of the set."""
    written: list[tuple[str, Path]] = []
    try:
        for path, text in files:
            written.append((_write_temporary(path, text), path))
        for temporary, path in written:
            try:
                os.replace(temporary, path)
            except OSError as exc:
                raise _cannot_write(path, exc) from None
    finally:
        for temporary, _path in written:
            Path(temporary).unlink(missing_ok=True)


def _write_temporary(path: Path, text: str) -> str:
    if path.is_dir():  # found now, not when renaming onto it after other files of the set are in place
        raise _cannot_write(path, IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR)))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _cannot_write(path, exc) from None
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temporary, 0o644)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise _cannot_write(path, exc) from None
    return temporary


def _cannot_write(path: Path, exc: OSError) -> UserError:
    return UserError(f"cannot write {path}: {exc.strerror or exc}; pick another output path")


@contextmanager
def user_errors_from(*kinds: type[Exception]):  # type: ignore[no-untyped-def]
    """Turn the listed exception kinds into one-line user errors (exit 1: the environment, not the input)."""
    try:
        yield
    except kinds as exc:
        raise UserError(str(exc), exit_code=1) from None
