"""The error types of the command line. :class:`CLIError` is a user mistake the command line itself detects
(bad option combinations, missing files): a :class:`ValueError`, so the app reports it exactly like the
library's own ``ValueError`` — one ``Error: ...`` line on stderr and exit code 2. :class:`RunStopped` ends a
run that was interrupted (Ctrl-C) or failed after it started saving results: its one line says what is saved
and the command that resumes."""

from __future__ import annotations

import click

__all__ = ["CLIError", "RunStopped"]


class CLIError(ValueError):
    """A user mistake detected by the CLI itself (reported like the library's ValueErrors)."""


class RunStopped(click.ClickException):
    """A run stopped by Ctrl-C (exit code 130) or by a failure (exit code 1); the message is the whole line."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code
