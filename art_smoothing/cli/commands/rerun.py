"""``art-smoothing rerun SUMMARY.json``: repeat a run from its ``summary.json`` (same command, parameters, the
options given and the seed) into a new folder — never the original's — and check its per-input CSV files (or,
without any, its results) against the original's: exit code 0 when identical, 1 when not, naming the first
input and field that differ."""

from __future__ import annotations

import csv
import itertools
import json
import os
import sys

import click

from art_smoothing.cli.build import GIVEN_KEY
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


def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([path, folder]) == folder


def first_csv_difference(original: str, again: str) -> str | None:
    """Where two CSV files first differ — ``"input 3, field radius: 0.5 (original) vs 0.51 (rerun)"`` (with
    the curve and norm of a compare row) — or None when they are identical."""
    with open(original, newline="", encoding="utf-8") as fa, open(again, newline="", encoding="utf-8") as fb:
        rows_a, rows_b = list(csv.reader(fa)), list(csv.reader(fb))
    if rows_a == rows_b:
        return None
    header = rows_a[0] if rows_a else []
    if rows_a[:1] != rows_b[:1]:
        return f"the columns ({', '.join(header)} vs {', '.join(rows_b[0] if rows_b else [])})"
    for k, (a, b) in enumerate(zip(rows_a[1:], rows_b[1:])):
        if a == b:
            continue
        col, va, vb = next((c, va, vb) for c, (va, vb) in enumerate(itertools.zip_longest(a, b, fillvalue=""))
                           if va != vb)
        row = dict(zip(header, a))
        where = f"input {row['index']}" if "index" in row else f"row {k + 1}"
        context = f"curve {row['curve']}, {row.get('norm', '')}" if "curve" in row and "index" in row else ""
        name = header[col] if col < len(header) else f"column {col + 1}"
        return f"{where}{f' ({context})' if context else ''}, field {name}: {va} (original) vs {vb} (rerun)"
    return f"the number of rows ({len(rows_a) - 1} vs {len(rows_b) - 1})"


def _first_value_difference(a, b, where: str) -> str | None:
    """The first path (``results.clean_accuracy``) where two JSON values differ, with both values."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            found = _first_value_difference(a.get(key), b.get(key), f"{where}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return next((d for i, (u, v) in enumerate(zip(a, b)) if (d := _first_value_difference(u, v, f"{where}[{i}]"))),
                    None)
    return None if a == b else f"{where}: {a} (original) vs {b} (rerun)"


@click.command("rerun")
@click.argument("summary", metavar="SUMMARY.json")
@click.option("--out", default=None, metavar="DIR",
              help="Output folder (default: a new results/ folder; never the original run's).")
@click.option("--quiet", "-q", is_flag=True, default=None, help="No progress bars.")
@click.pass_context
def rerun_command(ctx, summary, out, quiet):
    """Repeat a run from its summary.json (same parameters and seed) into a new folder and check the per-input
    results: exit code 1 when they differ (the first differing input is named), 0 when identical."""
    if os.path.isdir(summary):
        summary = os.path.join(summary, SUMMARY_NAME)
    doc, command, params = _read_summary(summary)
    original = os.path.dirname(os.path.abspath(summary))
    if out is not None and _inside(out, original):
        raise CLIError(f"--out {out!r} is the folder of the run being repeated (or inside it): a rerun never "
                       "overwrites its source; choose another folder (or leave --out out).")
    target = ctx.find_root().command.get_command(ctx, command)
    if target is None or command == "rerun":
        raise CLIError(f"{summary!r} records an unknown command {command!r}.")
    known = {p.name for p in target.params}
    unknown = sorted(set(params) - known)
    if unknown:
        raise CLIError(f"{summary!r} has option {unknown[0]!r}, which this version's {command} does not "
                       "know.")
    params["out"] = out
    for fresh in ("resume", "overwrite"):  # a rerun starts afresh, in a folder of its own
        if fresh in known:
            params[fresh] = False
    recorded_cwd = doc.get("cwd")
    if isinstance(recorded_cwd, str) and os.path.isdir(recorded_cwd) and recorded_cwd not in sys.path:
        sys.path.append(recorded_cwd)  # a --model module:factory imported from the original folder
    if quiet is not None:
        params["quiet"] = quiet
    for key, value in list(params.items()):
        opt = next(p for p in target.params if p.name == key)
        if getattr(opt, "multiple", False) and isinstance(value, list):
            params[key] = tuple(value)
    ctx.meta[GIVEN_KEY] = doc.get("given")  # the options the original run was given (None: an older summary)
    new_out = ctx.invoke(target, **params).out
    # check: same per-input files as the original run
    compared = [name for name in doc.get("files", [])
                if name.endswith(".csv") and os.path.isfile(os.path.join(original, name))]
    hint = "other hardware, thread count or library version?"
    for name in compared:
        again = os.path.join(new_out, name)
        where = first_csv_difference(os.path.join(original, name), again) if os.path.isfile(again) else "-"
        if where == "-":
            click.echo(f"rerun: {name} of {original} has no counterpart in {new_out}")
            return 1
        if where:
            click.echo(f"rerun: {name} differs from {original} at {where} ({hint})")
            return 1
    if compared:
        click.echo(f"rerun: per-input results identical to {original} ({', '.join(compared)})")
        return 0
    with open(os.path.join(new_out, SUMMARY_NAME), encoding="utf-8") as fh:
        again = json.load(fh)
    where = _first_value_difference(doc.get("results"), again.get("results"), "results")
    if where:
        click.echo(f"rerun: results differ from those of {original} at {where} ({hint})")
        return 1
    click.echo(f"rerun: results identical to those of {original}")
    return 0
