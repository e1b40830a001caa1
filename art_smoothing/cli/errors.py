"""The error type of user mistakes the command line itself detects (bad option combinations, missing
files). It is a :class:`ValueError`, so the app reports it exactly like the library's own
``ValueError``: one ``Error: ...`` line on stderr and exit code 2."""

from __future__ import annotations

__all__ = ["CLIError"]


class CLIError(ValueError):
    """A user mistake detected by the CLI itself (reported like the library's ValueErrors)."""
