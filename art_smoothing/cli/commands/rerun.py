"""``art-smoothing rerun SUMMARY.json``: repeat a run from its ``summary.json`` (same command, parameters
and seed) and say whether its per-input CSV files (or, without any, its results) are identical."""

from __future__ import annotations

import json
import os
import sys

import click

from art_smoothing.cli.errors import CLIError
from art_smoothing.cli.runs import SUMMARY_NAME

__all__ = ["rerun_command"]


def _read_summary(summary: str) -> tuple[dict, str, dict]:
    """``(summary document, command, params)`` of a summary.json."""
    if not os.path.isfile(summary):
        raise CLIError(f"{summary!r} not found: pass the summary.json of a run (or its folder).")
    try:
        with open(summary, encoding="utf-8") as fh:
            doc = json.load(fh)
        return doc, doc["command"], dict(doc["params"])
    except (OSError, ValueError, KeyError, TypeError):
        raise CLIError(f"{summary!r} is not an art-smoothing summary.json (needs 'command' and "
                       "'params').") from None


def _same_bytes(a: str, b: str) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


@click.command("rerun")
@click.argument("summary", metavar="SUMMARY.json")
@click.option("--out", default=None, metavar="DIR", help="Output folder (default: a new results/ folder).")
@click.option("--quiet", "-q", is_flag=True, default=None, help="No progress bars.")
@click.pass_context
def rerun_command(ctx, summary, out, quiet):
    """Repeat a run from its summary.json (same parameters and seed) and check the per-input results."""
    if os.path.isdir(summary):
        summary = os.path.join(summary, SUMMARY_NAME)
    doc, command, params = _read_summary(summary)
    target = ctx.find_root().command.get_command(ctx, command)
    if target is None or command == "rerun":
        raise CLIError(f"{summary!r} records an unknown command {command!r}.")
    known = {p.name for p in target.params}
    unknown = sorted(set(params) - known)
    if unknown:
        raise CLIError(f"{summary!r} has option {unknown[0]!r}, which this version's {command} does not "
                       "know.")
    params["out"] = out
    recorded_cwd = doc.get("cwd")
    if isinstance(recorded_cwd, str) and os.path.isdir(recorded_cwd) and recorded_cwd not in sys.path:
        sys.path.append(recorded_cwd)  # a --model module:factory imported from the original folder
    if quiet is not None:
        params["quiet"] = quiet
    for key, value in list(params.items()):
        opt = next(p for p in target.params if p.name == key)
        if getattr(opt, "multiple", False) and isinstance(value, list):
            params[key] = tuple(value)
    new_out = ctx.invoke(target, **params).out
    # check: same per-input files as the original run
    original = os.path.dirname(os.path.abspath(summary))
    compared = [name for name in doc.get("files", [])
                if name.endswith(".csv") and os.path.isfile(os.path.join(original, name))]
    if compared:
        differ = [name for name in compared
                  if not _same_bytes(os.path.join(original, name), os.path.join(new_out, name))]
        if not differ:
            click.echo(f"rerun: per-input results identical to {original} ({', '.join(compared)})")
        else:
            click.echo(f"rerun: {', '.join(sorted(differ))} differ from {original} (other hardware, thread "
                       "count or library version?)")
    elif os.path.isfile(os.path.join(new_out, SUMMARY_NAME)):
        with open(os.path.join(new_out, SUMMARY_NAME), encoding="utf-8") as fh:
            again = json.load(fh)
        verdict = "identical to" if again.get("results") == doc.get("results") else "different from"
        click.echo(f"rerun: results {verdict} those of {original}")
