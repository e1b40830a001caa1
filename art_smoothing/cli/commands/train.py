"""``art-smoothing train``: train a base model under a noise (any registered trainer), save it as
TorchScript and report its clean and noisy test accuracy."""

from __future__ import annotations

import click

from art_smoothing import registry
from art_smoothing.cli import build, options, report

__all__ = ["train_command"]


@click.command("train")
@options.apply_options(options.data_options(default_limit=0) + options.noise_options(multiple=False)
                       + options.model_options() + options.run_options() + options.folder_options(resumable=False))
@click.pass_context
def train_command(ctx, **_):
    """Train a base model with a noise (noise augmentation or another trainer) and save it.

    Writes model.pt (TorchScript, usable as --model), summary.json and the printed table. The bundled
    model also lands in the cache, so certify/evaluate with the same options reuse it.
    """
    import torch

    from art_smoothing import zoo

    params, device, run = build.setup(ctx, "train")
    data, x, y = build.load_data(params)
    (noise,) = build.build_noises(params, data, multiple=False)
    spec = params.get("model") or "bundled"
    if spec == "bundled":
        classifier, info = build.get_classifier(params, data, noise, device, run)
    else:
        torch.manual_seed(int(params["seed"]))  # the factory's initial weights unless --weights replaces them
        model, loaded = zoo.load_model(spec, weights=params.get("weights"),
                                       factory_kwargs=build.factory_kwargs(params), device=device)
        with run.timed("train_seconds"):
            classifier, info = zoo.train_bundled(
                data, noise, epochs=params["epochs"], seed=params["seed"], device=device,
                clip_values=data.clip_values, trainer=params["trainer"],
                trainer_params=build.assignments(params.get("trainer_param"), "--trainer-param"),
                batch_size=params["train_batch_size"], lr=params["lr"], train_limit=params.get("train_limit"),
                use_cache=False, verbose=not params["quiet"], model=model, model_spec=spec)
        info.details["loaded_from"] = loaded.spec
        zoo.check_model_output(classifier, data.input_shape, data.nb_classes, what=f"The model {spec!r}")
    how = zoo.save_torchscript(classifier.model, run.path("model.pt"), torch.as_tensor(x[:1], device=device))
    run.add_file(run.path("model.pt"))
    with run.timed("test_seconds"):
        clean_acc, noisy_acc = zoo.base_accuracy(classifier, noise, x, y, seed=params["seed"], device=device,
                                                 batch_size=params.get("train_batch_size", 64) * 8)
    training = info.details.get("training", {})
    run.write_summary(
        data=report.data_section(data, x), noise=registry.noise_record(noise),
        model=report.model_section(info),
        saved_model={"path": "model.pt", "format": f"torchscript ({how})"},
        results={"clean_accuracy": clean_acc, "noisy_accuracy": noisy_acc,
                 "final_loss": (training.get("epoch_losses") or [None])[-1]},
    )
    losses = training.get("epoch_losses")
    seconds = "cached (0 s)" if info.details.get("cached") else f"{run.timings.get('train_seconds', 0):.1f} s"
    rows = [["noise", report.describe_noise(noise)], ["trainer", training.get("trainer", params["trainer"])],
            ["epochs", str(params["epochs"])],
            ["final training loss", "-" if not losses else f"{losses[-1]:.4f}"],
            ["test accuracy, clean", f"{clean_acc:.3f}"],
            ["test accuracy, one noise draw", f"{noisy_acc:.3f}"],
            ["training time", seconds]]
    click.echo(report.format_table(["train", f"{data.name}, {len(x)} test inputs"], rows))
    click.echo(run.footer())
    return run
