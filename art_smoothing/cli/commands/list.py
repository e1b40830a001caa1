"""``art-smoothing list``: the noises (parameters, own norm, certificates) and trainers known by name,
straight from :mod:`art_smoothing.registry`."""

from __future__ import annotations

import click

from art_smoothing import registry
from art_smoothing.cli.report import format_table

__all__ = ["list_command"]


@click.command("list")
def list_command():
    """Noises (with parameters and certificates) and trainers known by name."""
    from art_smoothing.certificates.norms import norm_name

    rows = []
    for entry in sorted(registry.noise_registry().values(), key=lambda e: e.name):
        methods = [m + ("*" if m in entry.box_methods() else "") for m in entry.methods()]
        rows.append([entry.name, ", ".join(p.describe() for p in entry.params) or "-", norm_name(entry.norm),
                     ", ".join(methods)])
    click.echo(format_table(["noise", "parameters", "own norm", "certificates (* = box-constrained)"], rows))
    click.echo("\nEvery certificate gives radii in every norm (1, 2, inf, p) by sound conversion: --norm.")
    click.echo("--method best|plain|box|NAME; noise parameters as --NAME VALUE or "
               "--noise noise:NAME=VALUE.\n")
    trows = [[entry.name, entry.cls.__name__, ", ".join(p.describe() for p in entry.params) or "-"]
             for entry in registry.trainer_registry().values()]  # one entry per trainer class
    click.echo(format_table(["trainer", "class", "parameters (--trainer-param KEY=VALUE)"], trows))
