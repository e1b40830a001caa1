"""The ``art-smoothing`` click group: its commands, its error reporting and its logging.

User mistakes end with a one-line ``Error: ...`` on stderr and exit code 2 (no usage block, no
traceback; ``ART_SMOOTHING_DEBUG=1`` shows the traceback instead). A run interrupted (Ctrl-C, exit code
130) or failing (exit code 1) after it started saving per-input results ends with one line saying what is
saved and the command that resumes it (:class:`~art_smoothing.cli.errors.RunStopped`). Library log
records of level WARNING and up are printed as ``WARNING: message`` lines on stderr (``-v``/``-vv`` for
INFO/DEBUG); the logging set-up is restored when the command returns, so in-process callers keep theirs.
"""

from __future__ import annotations

import logging
import os
import sys

import click

from art_smoothing.cli.commands import COMMANDS
from art_smoothing.cli.errors import RunStopped

__all__ = ["cli", "main"]


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class _Group(click.Group):
    """Click group whose errors are one line on stderr with exit code 2 (no usage block, no traceback)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        root = logging.getLogger()
        saved = (root.level, list(root.handlers), logging.getLogger("py.warnings").level)
        try:
            self._main(args, prog_name, complete_var, **extra)
        finally:  # leave the logging set-up as it was (in-process callers: tests, notebooks)
            root.setLevel(saved[0])
            root.handlers[:] = saved[1]
            logging.getLogger("py.warnings").setLevel(saved[2])
            logging.captureWarnings(False)

    def _main(self, args, prog_name, complete_var, **extra):
        debug = bool(os.environ.get("ART_SMOOTHING_DEBUG"))
        try:
            rv = super().main(args=args, prog_name=prog_name or "art-smoothing", complete_var=complete_var,
                              standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as err:
            click.echo(err.ctx.get_help() if err.ctx else "art-smoothing --help")
            sys.exit(0)
        except click.exceptions.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(130)
        except RunStopped as err:
            if debug and err.exit_code != 130:
                raise
            click.echo(_one_line(err.format_message()), err=True)
            sys.exit(err.exit_code)
        except click.ClickException as err:
            if debug:
                raise
            hint = ""
            if isinstance(err, click.UsageError) and err.ctx is not None:
                hint = f" (see '{err.ctx.command_path} --help')"
            click.echo(f"Error: {_one_line(err.format_message())}{hint}", err=True)
            sys.exit(2 if isinstance(err, click.UsageError) else err.exit_code)
        except (ValueError, FileNotFoundError, ImportError, NotADirectoryError, PermissionError) as err:
            if debug:
                raise
            message = str(err) or type(err).__name__
            if isinstance(err, ImportError) and "pip install" not in message:
                message = f"{message} (a dependency is missing: see the README's install commands)"
            click.echo(f"Error: {_one_line(message)}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("Aborted.", err=True)
            sys.exit(130)
        if isinstance(rv, int) and rv:
            sys.exit(rv)
        sys.exit(0)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (test runners swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def _configure_logging(verbose: int) -> None:
    """Library log records of level WARNING and up as ``WARNING: message`` lines on stderr
    (``-v``/``-vv`` or ``ART_SMOOTHING_VERBOSITY=1``/``2`` for INFO/DEBUG); Python warnings are silenced."""
    level = logging.WARNING
    verbosity = verbose or int(os.environ.get("ART_SMOOTHING_VERBOSITY", "0") or 0)
    if verbosity:
        level = logging.INFO if verbosity == 1 else logging.DEBUG
    root = logging.getLogger()
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.ERROR)


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


@click.group(cls=_Group, context_settings=CONTEXT)
@click.version_option(package_name="art_smoothing", prog_name="art-smoothing")
@click.option("-v", "--verbose", count=True, help="Library log messages: -v for INFO, -vv for DEBUG.")
def cli(verbose):
    """Randomized smoothing with many noises for ART: train, certify, evaluate (attack vs certificate),
    compare. Every run writes CSV, a JSON summary (rerunnable) and PNG plots to a folder.

    Start with:  art-smoothing evaluate   (digits, Gaussian sigma=0.25, l2; a few minutes on a CPU)
    """
    _configure_logging(verbose)


for _command in COMMANDS:
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``art-smoothing``)."""
    cli.main(args=argv, prog_name="art-smoothing")
