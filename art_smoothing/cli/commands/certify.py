"""``art-smoothing certify``: CERTIFY (``SmoothedClassifier.certify_detailed``) on test inputs, saved per input
as it goes (``--resume`` continues an interrupted run); per-input prediction, radius and bounds as CSV, the
certified accuracy table and its curve."""

from __future__ import annotations

import click
import numpy as np

from art_smoothing import registry
from art_smoothing.cli import build, options, report

__all__ = ["certify_command"]

#: certify.csv columns after index, label, prediction, correct: from ``CertificationResult.to_records``
_RECORD_COLUMNS = ("radius", "norm", "p_a_lower", "p_b_upper", "count_top", "count_runner_up")


@click.command("certify")
@options.apply_options(options.data_options(default_limit=100) + options.noise_options(multiple=False)
                       + options.certificate_options(False, 1000) + options.model_options()
                       + options.run_options() + options.folder_options(resumable=True))
@click.pass_context
def certify_command(ctx, **_):
    """Certify test inputs: per-input prediction and radius, certified accuracy table and plot."""
    from art_smoothing.certificates.norms import norm_name
    from art_smoothing.plotting import Curve, plot_accuracy_curves, radius_grid

    req = build.single_noise_request(ctx, "certify")
    params, device, run, data, x, y = req.params, req.device, req.run, req.data, req.x, req.y
    noise, norm, method, table_radii, kwargs = req.noise, req.norm, req.method, req.table_radii, req.kwargs
    backend = build.make_backend(params, run)
    classifier, info = build.get_classifier(params, data, noise, device, run)
    smoothed = run.track_estimator(build.make_smoothed(classifier, noise, params))
    report.say(params, f"certifying {len(x)} inputs on {device} (n0={params['n0']}, n={params['n']} draws "
                       "each)")
    with run.resumable(len(x)):
        with run.timed("certify_seconds"):
            result = smoothed.certify_detailed(x, params["n"], batch_size=params["batch_size"],
                                               backend=backend or "local", **kwargs)
        correct = result.prediction == y
        run.write_csv("certify.csv", [
            {"index": rec["index"], "label": int(label), "prediction": rec["prediction"],
             "correct": bool(rec["prediction"] == label), **{k: rec[k] for k in _RECORD_COLUMNS},
             **{k: v for k, v in rec.items() if k == "n_used" or k.startswith("decision@")}}
            for rec, label in zip(result.to_records(), y)])
        finite = result.radius[np.isfinite(result.radius)]
        radii = table_radii or report.nice_radii(float(np.max(finite, initial=0.0)))
        draws = report.draws_section(result.n_used, params["n"])
        acc = result.certified_accuracy(y, radii)
        label = norm_name(norm)
        grid = radius_grid(result.radius)
        curve = Curve(f"certified ({report.describe_noise(noise)})", grid, result.certified_accuracy(y, grid))
        title = f"{data.name}: {len(x)} inputs, n={params['n']}, alpha={params['alpha']:g}"
        run.write_plot("certified_accuracy.png", lambda path: plot_accuracy_curves([curve], path, title=title,
                                                                                 xlabel=f"{label} radius"))
        finite_correct = result.radius[correct & np.isfinite(result.radius)]
        results = {
            "n_inputs": len(x), "clean_accuracy": float(np.mean(correct)),
            "abstentions": int(np.sum(result.abstained)),
            "radii": radii, "certified_accuracy": [float(a) for a in acc],
            "mean_radius_correct": float(finite_correct.mean()) if finite_correct.size else 0.0,
            "infinite_radii": int(np.sum(np.isinf(result.radius))),
        }
        if draws is not None:
            results["draws"] = draws
        run.write_summary(
            data=report.data_section(data, x), noise=registry.noise_record(noise),
            model=report.model_section(info),
            certificate=report.certificate_section(params, label, method, box_used=bool(result.box),
                                                   form=result.form),
            results=results,
        )
    click.echo(f"certify: {data.name}, {len(x)} test inputs, {report.describe_noise(noise)}, {label}, "
               f"method {params.get('method') or 'best'}, n={params['n']}, alpha={params['alpha']:g}")
    click.echo(report.format_table([f"{label} radius", "certified accuracy"],
                                   [[f"{r:g}", float(a)] for r, a in zip(radii, acc)]))
    click.echo(f"clean accuracy {results['clean_accuracy']:.3f}, abstained {results['abstentions']}, "
               f"mean radius of correct inputs {results['mean_radius_correct']:.3f}")
    if draws is not None:
        click.echo(report.draws_line(draws))
    click.echo(run.footer())
    return run
