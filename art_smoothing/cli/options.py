"""The options the commands share, as lists of click decorators (data, noise, certificate, model, run,
attack), and the defaults they fall back to.

The noise options are generated from :mod:`art_smoothing.registry`: every constructor parameter of
every registered noise becomes an option (``--scale``, ``--sigma``, ...), stored under
``NOISE_PARAM_PREFIX + name`` so that it never collides with the CLI's own options.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import click

from art_smoothing import registry
from art_smoothing.cli.errors import CLIError
from art_smoothing.distributed import DEFAULT_LOCAL_CHUNK_SIZE, DEFAULT_LOCAL_EVALUATE_CHUNK_SIZE

__all__ = [
    "parse_radii",
    "CONTEXT_PARAMS",
    "DEFAULT_COMPARE",
    "DEFAULT_NOISE",
    "DEFAULT_NOISE_CONTEXT",
    "NOISE_PARAM_PREFIX",
    "RESERVED",
    "apply_options",
    "attack_options",
    "certificate_options",
    "data_options",
    "folder_options",
    "model_options",
    "noise_options",
    "noise_param_options",
    "run_options",
]

DEFAULT_NOISE = "gaussian"
#: parameters of the default noise when the user picks none (the README's run)
DEFAULT_NOISE_CONTEXT = {"sigma": 0.25}
#: ``compare`` without --noise: the three classic noises at equal per-coordinate std 0.25
DEFAULT_COMPARE = ("gaussian:sigma=0.25", "laplace:scale=0.1768", "uniform:scale=0.4330")
#: click parameter names of the noise parameter options (``--scale`` is stored as ``noise_scale``)
NOISE_PARAM_PREFIX = "noise_"
#: noise parameters the CLI fills from other options when the user does not set them
CONTEXT_PARAMS = {"clip_values"}
#: option names used by the CLI itself (a noise parameter with such a name is set as --noise NAME:param=v)
RESERVED = {"data", "limit", "noise", "norm", "method", "box", "form", "n", "n0", "alpha", "batch_size", "device",
            "seed", "out", "quiet", "model", "weights", "epochs", "lr", "trainer", "backend", "workers", "radii",
            "sequential", "randomized",
            "deterministic", "help", "version", "verbose", "debug", "no_cache", "factory_arg", "trainer_param",
            "train_limit", "train_batch_size", "attack_param", "search_steps", "eps_max", "n_predict",
            "attack_steps", "eot_samples", "restarts", "rerun", "ray_address", "image_size", "clip_values",
            "overwrite", "resume", "chunk_size", "compile"}


def apply_options(options: list[Callable]) -> Callable:
    """One decorator applying ``options`` in order (the first one is listed first in ``--help``)."""

    def deco(fn):
        for opt in reversed(options):
            fn = opt(fn)
        return fn

    return deco


def noise_param_options() -> list[tuple[str, str, str, str]]:
    """(option name, dest, help, metavar) for every constructor parameter of every registered noise."""
    owners: dict[str, list[str]] = {}
    kinds: dict[str, str] = {}
    for entry in registry.noise_registry().values():
        for spec in entry.params:
            owners.setdefault(spec.name, []).append(entry.name)
            kinds.setdefault(spec.name, spec.kind)
    out = []
    for name in sorted(owners):
        if name in CONTEXT_PARAMS or name in RESERVED:
            continue  # filled from the data (clip_values) or reachable as --noise NAME:param=value
        metavar = {"float": "FLOAT", "int": "INT", "bool": "BOOL", "pair": "LO,HI"}.get(kinds[name], "VALUE")
        out.append((f"--{name.replace('_', '-')}", f"{NOISE_PARAM_PREFIX}{name}",
                    f"Noise parameter {name} (of {', '.join(sorted(owners[name]))}).", metavar))
    return out


def data_options(default_limit: int | None) -> list[Callable]:
    return [
        click.option("--data", default="digits", show_default=True, metavar="digits|FILE.npz|FOLDER",
                     help="Data set: scikit-learn's bundled digits (fixed split), an .npz with x/y arrays, or a "
                          "CIFAR-10 / ImageNet-style folder on disk (needs the [vision] extra; never downloads)."),
        click.option("--limit", type=click.IntRange(min=0), default=default_limit, show_default=True,
                     help="Use the first N test inputs (0 = all)."),
        click.option("--clip-values", default="auto", show_default=True, metavar="auto|LO,HI|none",
                     help="Input box (the data's by default); box certificates and splitting noise use it."),
        click.option("--image-size", type=click.IntRange(min=4), default=32, show_default=True,
                     help="Side of the images read from a folder."),
    ]


def noise_options(multiple: bool) -> list[Callable]:
    default = (" Repeat to compare several (default: Gaussian, Laplace and uniform at equal std 0.25)."
               if multiple else " Default: gaussian with sigma 0.25.")
    opts = [click.option(
        "--noise", "noise", multiple=multiple, default=None, metavar="NAME[:param=value,...]",
        help=("Smoothing noise by name (art-smoothing list shows all); parameters as options (--scale 0.5) or "
              "inline (laplace:scale=0.5)." + default))]
    for flag, dest, help_text, metavar in noise_param_options():
        opts.append(click.option(flag, dest, default=None, metavar=metavar, help=help_text))
    return opts


def certificate_options(multiple: bool, default_n: int) -> list[Callable]:
    return [
        click.option("--norm", "norm", multiple=multiple, default=None, metavar="1|2|inf|p",
                     help="Norm of the radius (default: the noise's own)" + (", repeat for one plot per norm."
                                                                           if multiple else ".")),
        click.option("--method", "method", multiple=multiple, default=None, metavar="best|plain|box|NAME",
                     help="Certificate: best (default, the largest sound one), plain (best without the box), box "
                          "(box-constrained on, required) or a name of the noise's certificates"
                          + (" (repeat to compare)." if multiple else ".")),
        click.option("--box/--no-box", default=True, show_default=True,
                     help="Use box-constrained certificates where the noise has them and clip values exist."),
        click.option("--form", type=click.Choice(["binary", "multiclass"]), default="binary", show_default=True,
                     help="Clopper-Pearson bound on p_A only (binary) or on p_A and p_B (multiclass)."),
        click.option("--deterministic", is_flag=True, default=False,
                     help="Exact smoothed probabilities from the noise's finite draws (e.g. deterministic_splitting)."),
        click.option("--sequential", is_flag=True, default=False,
                     help="Anytime-valid sequential CERTIFY: decide the --radii grid per input, stopping as soon as "
                          "each radius is certified or out of reach; --n is then the budget (same guarantee, most "
                          "inputs need far fewer draws)" + ("; one --norm only (the grid's), all methods from the "
                                                            "same bounds." if multiple else ".")),
        click.option("--randomized", is_flag=True, default=False,
                     help="Randomized Clopper-Pearson bounds (fixed-n only): never below the plain ones; the radius "
                          "then also depends on a seeded auxiliary uniform."),
        click.option("--n", "n", type=click.IntRange(min=1), default=default_n, show_default=True,
                     help="Estimation draws per input (the budget with --sequential)."),
        click.option("--n0", "n0", type=click.IntRange(min=1), default=100, show_default=True,
                     help="Selection draws per input (and draws of each PREDICT)."),
        click.option("--alpha", type=click.FloatRange(min=0, max=1, min_open=True, max_open=True), default=0.001,
                     show_default=True, help="Failure probability of each certificate."),
        click.option("--batch-size", type=click.IntRange(min=1), default=1000, show_default=True,
                     help="Noisy samples per forward pass."),
        click.option("--radii", default=None, metavar="R1,R2,...",
                     help="Radii of the printed table (default: six round values up to the largest radius); with "
                          "--sequential, the radii decided."),
        click.option("--compile/--no-compile", "compile", default=None,
                     help="Run the base model through torch.compile in PREDICT and CERTIFY (default: when a call "
                          "evaluates at least a million noisy samples; falls back to eager with a warning)."),
    ]


def model_options() -> list[Callable]:
    return [
        click.option("--model", default="bundled", show_default=True, metavar="bundled|FILE.pt|module:factory",
                     help="Base model: the bundled CNN trained with the noise (cached), a TorchScript file, or a "
                          "factory returning an nn.Module (with --weights)."),
        click.option("--weights", default=None, metavar="FILE", help="State dict for --model module:factory."),
        click.option("--factory-arg", "factory_arg", multiple=True, metavar="KEY=VALUE",
                     help="Keyword argument of the model factory (repeatable)."),
        click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True,
                     help="Training epochs of the bundled model."),
        click.option("--trainer", default="augment", show_default=True, metavar="NAME",
                     help="Training procedure (art-smoothing list shows all)."),
        click.option("--trainer-param", "trainer_param", multiple=True, metavar="KEY=VALUE",
                     help="Trainer hyperparameter (repeatable), e.g. lbd=10."),
        click.option("--train-batch-size", type=click.IntRange(min=1), default=64, show_default=True,
                     help="Training batch size."),
        click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True,
                     help="Adam learning rate."),
        click.option("--train-limit", type=click.IntRange(min=1), default=None,
                     help="Train on the first N training examples only."),
        click.option("--no-cache", is_flag=True, default=False, help="Retrain even when a cached model exists."),
    ]


def run_options() -> list[Callable]:
    return [
        click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda|cuda:N",
                     help="Torch device (auto: cuda if available, else cpu)."),
        click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
                     help="Seed of training, noise draws and attacks (same seed, same results)."),
        click.option("--backend", default="local", show_default=True, metavar="local|ray",
                     help="Where certification runs: this process or Ray workers ([distributed] extra)."),
        click.option("--workers", type=click.IntRange(min=1), default=None,
                     help="Ray workers (with --backend ray; default: one per CPU or GPU)."),
        click.option("--ray-address", default=None, metavar="ADDRESS",
                     help="Join this Ray cluster (auto, ray://host:port) instead of starting a local one."),
        click.option("--out", default=None, metavar="DIR",
                     help="Output folder (default results/<command>-<time>)."),
        click.option("--quiet", "-q", is_flag=True, default=False, help="No progress bars."),
    ]


def folder_options(resumable: bool) -> list[Callable]:
    """``--overwrite``; for the commands that save per-input results as they go, ``--resume`` and
    ``--chunk-size`` too (default: the backend's, which on ``--resume`` is the run's own)."""
    opts = [click.option("--overwrite", is_flag=True, default=False,
                         help="Replace the run in a non-empty --out (only files art-smoothing writes are removed).")]
    if resumable:
        opts += [
            click.option("--resume", is_flag=True, default=False,
                         help="Continue the interrupted run in --out DIR, with its options: saved inputs are not "
                              "computed again and the results equal an uninterrupted run's."),
            click.option("--chunk-size", "chunk_size", type=click.IntRange(min=1), default=None,
                         help="Inputs saved together as the run goes (Ctrl-C loses at most one chunk); evaluate's "
                              f"attack batches the inputs of a chunk. Default: {DEFAULT_LOCAL_CHUNK_SIZE} (evaluate: "
                              f"{DEFAULT_LOCAL_EVALUATE_CHUNK_SIZE}; Ray: about four chunks per worker); --resume "
                              "keeps the run's own."),
        ]
    return opts


def attack_options() -> list[Callable]:
    return [
        click.option("--attack-steps", type=click.IntRange(min=1), default=20, show_default=True,
                     help="PGD steps per attack."),
        click.option("--eot-samples", type=click.IntRange(min=1), default=32, show_default=True,
                     help="Noise draws per attack gradient (expectation over transformation)."),
        click.option("--restarts", type=click.IntRange(min=0), default=0, show_default=True,
                     help="Random restarts of PGD."),
        click.option("--search-steps", type=click.IntRange(min=0), default=8, show_default=True,
                     help="Attack rounds of the search for the smallest flipping perturbation."),
        click.option("--eps-max", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Largest perturbation tried (default: half the box diameter)."),
        click.option("--n-predict", type=click.IntRange(min=1), default=None,
                     help="Draws of each PREDICT flip decision (default --n0)."),
        click.option("--attack-param", "attack_param", multiple=True, metavar="KEY=VALUE",
                     help="Any other SmoothedPGD parameter (repeatable), e.g. reuse_noise=true."),
    ]


def parse_radii(text: str | None) -> list[float] | None:
    """``--radii 0,0.25,0.5`` as sorted distinct finite radii >= 0 (None when not given)."""
    if text is None:
        return None
    try:
        radii = sorted({float(v) for v in str(text).replace(" ", ",").split(",") if v})
    except ValueError:
        raise CLIError(f"--radii {text!r}: write comma-separated numbers, e.g. 0,0.25,0.5.") from None
    if not radii or any(r < 0 or not math.isfinite(r) for r in radii):
        raise CLIError(f"--radii {text!r}: radii must be finite and >= 0.")
    return radii
