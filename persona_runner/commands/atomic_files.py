"""Files a command writes (reports, gate verdicts, exports): all of them or none, never half of one."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from persona_runner.util.errors import UserError


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
