"""``art-smoothing evaluate``: attack vs certificate (:func:`art_smoothing.evaluation.evaluate`), saved per input
as it goes (``--resume`` continues an interrupted run); per-input certified and empirical radii as CSV, the
accuracy table, the summary with the violation count, the accuracy curves and the certified-vs-empirical scatter
plot."""

from __future__ import annotations

import math
from typing import Any

import click
import numpy as np

from art_smoothing import registry
from art_smoothing.cli import build, options, report
from art_smoothing.cli.errors import CLIError

__all__ = ["evaluate_command"]

#: keys of the evaluation summary repeated in the run summary's ``results``
_RESULT_KEYS = ("clean_accuracy", "abstentions", "median_ratio", "mean_ratio", "ratio_count", "no_flip_found",
                "violations", "violations_expected_max")


def _attack_params(params: dict[str, Any]) -> dict[str, Any]:
    """SmoothedPGD parameters: the attack options plus any ``--attack-param KEY=VALUE``."""
    from art_smoothing.attacks.pgd import SmoothedPGD

    attack = {"max_iter": params["attack_steps"], "eot_samples": params["eot_samples"],
              "num_random_init": params["restarts"]}
    raw = build.assignments(params.get("attack_param"), "--attack-param")
    if raw:
        specs = {s.name: s for s in registry.param_specs(SmoothedPGD)
                 if s.name not in ("estimator", "norm", "eps")}
        for key, value in raw.items():
            if key not in specs:
                raise CLIError(f"--attack-param {key}: SmoothedPGD has no such parameter; choose from "
                               f"{', '.join(sorted(specs))}.")
            attack[key] = registry.convert_value(specs[key], value, "SmoothedPGD")
    return attack


@click.command("evaluate")
@options.apply_options(options.data_options(default_limit=50) + options.noise_options(multiple=False)
                       + options.certificate_options(False, 1000) + options.attack_options()
                       + options.model_options() + options.run_options()
                       + options.folder_options(resumable=True))
@click.pass_context
def evaluate_command(ctx, **_):
    """Attack vs certificate: certified and empirical radius per input, summary, violations, plots."""
    from art_smoothing.certificates.norms import norm_name
    from art_smoothing.evaluation import evaluate
    from art_smoothing.plotting import Curve, plot_accuracy_curves, plot_radius_scatter, radius_grid

    req = build.single_noise_request(ctx, "evaluate", norms=(1.0, 2.0, math.inf))  # the attacks' norms
    params, device, run, data, x, y = req.params, req.device, req.run, req.data, req.x, req.y
    noise, norm, method, box, table_radii, cert_kwargs = (req.noise, req.norm, req.method, req.box,
                                                          req.table_radii, req.kwargs)
    cert_kwargs.pop("norm")
    cert_kwargs.pop("n0")
    backend = build.make_backend(params, run)  # chunks of inputs: certify AND attack, here or on Ray workers
    attack = _attack_params(params)
    classifier, info = build.get_classifier(params, data, noise, device, run)
    smoothed = run.track_estimator(build.make_smoothed(classifier, noise, params,
                                                       eot_samples=params["eot_samples"]))
    report.say(params, f"certifying and attacking {len(x)} inputs on {device} (n={params['n']}; PGD "
                       f"{params['attack_steps']} steps x {params['eot_samples']} draws, "
                       f"{params['search_steps']} search rounds)")
    with run.resumable(len(x)):
        with run.timed("evaluate_seconds"):
            evaluation = evaluate(smoothed, x, y, norm=norm, n=params["n"], attack=attack, radii=table_radii,
                                  n0=params["n0"], batch_size=params["batch_size"], eps_max=params.get("eps_max"),
                                  search_steps=params["search_steps"], n_predict=params.get("n_predict"),
                                  certify_kwargs=cert_kwargs, backend=backend or "local")
        records = evaluation.to_records()
        cert_r = np.array([r["certified_radius"] for r in records], dtype=np.float64)
        emp_r = np.array([r["empirical_radius"] for r in records], dtype=np.float64)
        correct = np.array([r["correct"] for r in records], dtype=bool)
        violation = np.array([r["violation"] for r in records], dtype=bool)
        if table_radii is None:
            # evaluate's default radii also span the empirical radii; the table shows round radii up to the
            # largest certified one, known only now
            table_radii = report.nice_radii(float(np.concatenate([cert_r[np.isfinite(cert_r)], [0.0]]).max()))
        cert_acc, emp_acc = evaluation.accuracies(table_radii)
        label = norm_name(norm)
        run.write_csv("evaluate.csv", [rec | {"norm": label} for rec in records])
        grid = radius_grid(cert_r, emp_r)
        title = f"{data.name}: {len(x)} inputs, {report.describe_noise(noise)}, n={params['n']}"
        grid_cert, grid_emp = evaluation.accuracies(grid)
        curves = [Curve("certified", grid, grid_cert), Curve("empirical (PGD+EOT attack)", grid, grid_emp, dashed=True)]
        run.write_plot("certified_accuracy.png", lambda path: plot_accuracy_curves(curves, path, title=title,
                                                                                 xlabel=f"{label} radius"))
        run.write_plot("radius_scatter.png", lambda path: plot_radius_scatter(
            cert_r, emp_r, path, title=title, norm_label=label, violation=violation, correct=correct))
        s = evaluation.to_dict()["summary"]  # JSON-safe: NaN ratios as None, infinite radii as "inf"
        results = {"n_inputs": len(x), "radii": list(table_radii),
                   "certified_accuracy": [float(a) for a in cert_acc],
                   "empirical_accuracy": [float(a) for a in emp_acc]} | {k: s[k] for k in _RESULT_KEYS}
        draws = report.draws_section([r["n_used"] for r in records] if records and "n_used" in records[0] else None,
                                     params["n"])
        if draws is not None:
            results["draws"] = draws
        run.write_summary(
            data=report.data_section(data, x), noise=registry.noise_record(noise),
            model=report.model_section(info),
            certificate=report.certificate_section(params, label, method, box_used=box, form=params["form"]),
            attack={k: v for k, v in attack.items() if k != "verbose"} | {
                "search_steps": params["search_steps"], "eps_max": params.get("eps_max"),
                "n_predict": params.get("n_predict") or params["n0"]},
            evaluation=s, results=results,
        )
    click.echo(f"evaluate: {data.name}, {len(x)} test inputs, {report.describe_noise(noise)}, {label}, "
               f"n={params['n']}, alpha={params['alpha']:g}, attack PGD {params['attack_steps']} steps x "
               f"{params['eot_samples']} EOT draws")
    rows = [[f"{r:g}", float(c), float(e)] for r, c, e in zip(table_radii, cert_acc, emp_acc)]
    click.echo(report.format_table([f"{label} radius", "certified acc", "empirical acc"], rows))
    ratio = s["median_ratio"]
    ratio = f"{ratio:.2f}" if isinstance(ratio, (int, float)) else "-"
    click.echo(f"clean accuracy {s['clean_accuracy']:.3f}, abstained {s['abstentions']}, median "
               f"empirical/certified radius {ratio} (over {s['ratio_count']}), "
               f"no flip found {s['no_flip_found']}, violations {s['violations']} "
               f"(expected <= {s['violations_expected_max']:.2g})")
    if draws is not None:
        click.echo(report.draws_line(draws))
    click.echo(run.footer())
    return run
