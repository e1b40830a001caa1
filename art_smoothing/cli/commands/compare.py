"""``art-smoothing compare``: several noises and certificate methods on the same test inputs. One
certification per noise gives every norm and method (``CertificationResult.radius_for`` re-derives the
radii from the same votes), each saved per input as it goes (``--resume`` continues an interrupted run); per-input
radii and the curves as CSV, a table and a plot per norm."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import click
import numpy as np

from art_smoothing import registry
from art_smoothing.cli import build, options, report
from art_smoothing.cli.errors import CLIError

__all__ = ["compare_command"]


class _View(NamedTuple):
    """One curve: a noise's certification in one norm by one method (``result.radius`` is that radius)."""

    curve: str
    noise: str
    method: str | None
    norm: float
    result: Any  # CertificationResult


def _plan(noises, methods: list[str | None], norm: float, params, clip) -> list[tuple[int, str | None]]:
    """The (noise index, method) pairs that exist; a method that none of the noises has is an error."""
    plan: list[tuple[int, str | None]] = []
    for m in methods:
        hits = 0
        for i, noise in enumerate(noises):
            try:
                build.method_plan(noise, m, norm, params["box"], clip)
            except CLIError:
                raise
            except ValueError:
                continue
            plan.append((i, m))
            hits += 1
        if not hits:
            names = ", ".join(registry.noise_record(n)["name"] for n in noises)
            raise CLIError(f"--method {m}: none of the noises ({names}) has this certificate; "
                           "see art-smoothing list.")
    return plan


def _views(result, noise, wanted, norms, methods, params, x, clip) -> list[_View]:
    """The radii of ``result`` in every norm by every wanted method, from the same votes."""
    views = []
    for m in wanted:
        for p in norms:
            resolved, use_box = build.method_plan(noise, m, p, params["box"], clip)
            box = bool(use_box and result.clip_values is not None)
            radius = result.radius_for(norm=p, method=resolved, x=x if box else None)
            suffix = "" if m is None and len(methods) == 1 else f" [{m or 'best'}]"
            curve = report.describe_noise(noise) + suffix
            views.append(_View(curve, registry.noise_record(noise)["name"], m, p,
                               dataclasses.replace(result, radius=radius, norm=p, method=resolved, box=box)))
    return views


@click.command("compare")
@options.apply_options(options.data_options(default_limit=100) + options.noise_options(multiple=True)
                       + options.certificate_options(True, 1000) + options.model_options()
                       + options.run_options() + options.folder_options(resumable=True))
@click.pass_context
def compare_command(ctx, **_):
    """Several noises / certificate methods on the same data: certified accuracy curves, one plot per norm.

    Each noise gets its own bundled model trained with it (or shares --model); the votes of one
    certification give every norm and method.
    """
    from art_smoothing.certificates.norms import norm_name, parse_norm
    from art_smoothing.plotting import Curve, plot_accuracy_curves, radius_grid

    params, device, run = build.setup(ctx, "compare")
    data, x, y = build.load_data(params)
    noises = build.build_noises(params, data, multiple=True)
    norms = [parse_norm(v) for v in params.get("norm") or ()] or sorted({float(n.norm) for n in noises})
    norms = list(dict.fromkeys(norms))
    if params.get("sequential") and len(norms) > 1:
        # an input stops once the grid is decided in the norm it was asked in; its radius in another norm would
        # come from those few draws and look far worse than fixed-n's
        raise CLIError(f"--sequential decides the --radii grid in one norm, and this compare has "
                       f"{', '.join(norm_name(p) for p in norms)}: pass one --norm (one compare per norm).")
    methods = list(params.get("method") or ()) or [None]
    table_radii = build.parse_radii(params.get("radii"))
    plan = _plan(noises, methods, norms[0], params, data.clip_values)
    # one chunked backend (and progress folder) per noise, made before any model is trained
    backends = {i: build.make_backend(params, run, part=f"noise-{i}") for i, _ in enumerate(noises)
                if any(j == i for j, _ in plan)}
    with run.resumable(len(x) * len(backends)):
        views: list[_View] = []
        sections: list[dict[str, Any]] = []
        shared_model = (params.get("model") or "bundled") != "bundled"
        shared_classifier = None
        for i, noise in enumerate(noises):
            wanted = [m for j, m in plan if j == i]
            if not wanted:
                continue
            backend = backends[i]
            if shared_model:
                if shared_classifier is None:
                    shared_classifier = build.get_classifier(params, data, noise, device, run)
                classifier, info = shared_classifier
            else:
                classifier, info = build.get_classifier(params, data, noise, device, run,
                                                        label=report.describe_noise(noise))
            smoothed = run.track_estimator(build.make_smoothed(classifier, noise, params))
            any_box = any(build.method_plan(noise, m, norms[0], params["box"], data.clip_values)[1]
                          for m in wanted)
            kwargs = build.certify_kwargs(params, norms[0], None, any_box)
            report.say(params, f"certifying {len(x)} inputs with {report.describe_noise(noise)}")
            with run.timed("certify_seconds"):
                result = smoothed.certify_detailed(x, params["n"], batch_size=params["batch_size"],
                                                   backend=backend or "local", **kwargs)
            sections.append({"noise": registry.noise_record(noise), "model": report.model_section(info),
                             "methods": [m or "best" for m in wanted],
                             "abstentions": int(np.sum(result.abstained)),
                             "clean_accuracy": float(np.mean(result.prediction == y))})
            draws = report.draws_section(result.n_used, params["n"])
            if draws is not None:
                sections[-1]["draws"] = draws
            views += _views(result, noise, wanted, norms, methods, params, x, data.clip_values)
        run.write_csv("compare.csv", [
            {"curve": v.curve, "noise": v.noise, "method": v.method or "best", "norm": norm_name(v.norm),
             "index": k, "label": int(y[k]), "prediction": int(v.result.prediction[k]),
             "correct": bool(v.result.prediction[k] == y[k]), "radius": float(v.result.radius[k]),
             **({} if v.result.n_used is None else {"n_used": int(v.result.n_used[k])})}
            for v in views for k in range(len(x))])
        grids = {p: radius_grid(*[v.result.radius for v in views if v.norm == p]) for p in norms}
        curves = [(v, v.result.certified_accuracy(y, grids[v.norm])) for v in views]
        run.write_csv("curves.csv", [
            {"curve": v.curve, "norm": norm_name(v.norm), "radius": float(r), "certified_accuracy": float(a)}
            for v, acc in curves for r, a in zip(grids[v.norm], acc)])
        radii_by_norm: dict[float, list[float]] = {}
        table: dict[float, list[list[Any]]] = {}
        for p in norms:
            finite = [v.result.radius[np.isfinite(v.result.radius)] for v in views if v.norm == p]
            largest = float(np.concatenate(finite + [np.zeros(1)]).max())
            radii_by_norm[p] = table_radii or report.nice_radii(largest)
            table[p] = [[v.curve] + [float(a) for a in v.result.certified_accuracy(y, radii_by_norm[p])]
                        for v in views if v.norm == p]
            run.write_plot(f"certified_accuracy_{norm_name(p)}.png", lambda path, p=p: plot_accuracy_curves(
                [Curve(v.curve, grids[p], acc) for v, acc in curves if v.norm == p], path,
                title=f"{data.name}: {len(x)} inputs, n={params['n']}, alpha={params['alpha']:g}",
                xlabel=f"{norm_name(p)} radius"))
        run.write_summary(
            data=report.data_section(data, x), noises=sections,
            certificate={"norms": [norm_name(p) for p in norms], "methods": [m or "best" for m in methods],
                         "box": params["box"], "form": params["form"], "n": params["n"], "n0": params["n0"],
                         "alpha": params["alpha"], "deterministic": bool(params.get("deterministic")),
                         "backend": params.get("backend", "local")},
            results={norm_name(p): {"radii": radii_by_norm[p],
                                    "certified_accuracy": {row[0]: row[1:] for row in table[p]}} for p in norms},
        )
    click.echo(f"compare: {data.name}, {len(x)} test inputs, n={params['n']}, alpha={params['alpha']:g}")
    for p in norms:
        click.echo("")
        headers = [f"certified accuracy at {norm_name(p)} radius"] + [f"{r:g}" for r in radii_by_norm[p]]
        click.echo(report.format_table(headers, table[p]))
    for section in sections:
        if "draws" in section:
            click.echo(f"{section['noise']['name']}: {report.draws_line(section['draws'])}")
    click.echo(run.footer())
    return run
