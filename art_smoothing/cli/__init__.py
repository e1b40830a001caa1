"""The ``art-smoothing`` command line: train, certify, evaluate (attack vs certificate), compare, rerun.

Every run writes a folder (``--out``, default ``results/<command>-<time>``) with per-input CSV, a JSON
summary holding every parameter, the versions and the seed (``art-smoothing rerun SUMMARY.json``
repeats the run), and PNG plots; it prints a short table at the end.

Layout: :mod:`~art_smoothing.cli.app` (the click group, error reporting, logging),
:mod:`~art_smoothing.cli.options` (shared options), :mod:`~art_smoothing.cli.build` (options → data,
noises, models, smoothed classifier), :mod:`~art_smoothing.cli.runs` (run folder and summary),
:mod:`~art_smoothing.cli.report` (tables and summary sections) and one module per command in
:mod:`art_smoothing.cli.commands`. Noises, certificate methods and trainers are looked up by name in
:mod:`art_smoothing.registry`, so every noise's constructor parameters are options here
(``--noise laplace --scale 0.5``) without the CLI naming them.
"""

from art_smoothing.cli.app import cli, main

__all__ = ["cli", "main"]
