"""Errors a user can cause, each carrying the one line that explains it and the exit code."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in input or environment: printed as one line, never as a traceback."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
