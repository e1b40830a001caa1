"""From parsed options to library objects: the run, the data (with its input box), the noises, the
certificate method and ``certify_detailed`` arguments, the backend, the base model and the smoothed
classifier. Every command starts with these steps; each one reports a user mistake as a one-line
:class:`~art_smoothing.cli.errors.CLIError` (or the library's own ``ValueError``).
"""

from __future__ import annotations

import contextlib
import math
import os
from typing import Any

import click
import numpy as np

from art_smoothing import registry
from art_smoothing.cli.errors import CLIError
from art_smoothing.cli.options import (
    DEFAULT_COMPARE,
    DEFAULT_NOISE,
    DEFAULT_NOISE_CONTEXT,
    NOISE_PARAM_PREFIX,
)
from art_smoothing.cli.report import describe_noise, say
from art_smoothing.cli.runs import Run

__all__ = ["assignments", "build_noises", "certify_kwargs", "factory_kwargs", "get_classifier", "load_data",
           "make_smoothed", "method_plan", "norm_of", "parse_radii", "setup"]


def setup(ctx: click.Context, command: str):
    """``(params, device, run)`` of the command invoked in ``ctx``."""
    from art_smoothing import zoo

    params = dict(ctx.params)
    device = zoo.resolve_device(params.get("device"))
    run = Run(command, params)
    run.device = device
    return params, device, run


# ---------------------------------------------------------------------------------------------- values
def _parse_clip(text: str, data) -> tuple[float, float] | None:
    key = str(text).strip().lower()
    if key in ("auto", "data", ""):
        return tuple(float(v) for v in data.clip_values) if data.clip_values is not None else None
    if key in ("none", "off"):
        return None
    parts = [p for p in key.replace(":", ",").replace(" ", ",").strip("()[]").split(",") if p]
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise CLIError(f"--clip-values {text!r}: write LO,HI (e.g. 0,1), auto or none.") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise CLIError(f"--clip-values {text!r}: need finite LO < HI.")
    return lo, hi


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


def assignments(items, what: str) -> dict[str, str]:
    """Repeated ``KEY=VALUE`` options (``--trainer-param``, ...) as one dict of raw strings."""
    out: dict[str, str] = {}
    for item in items or ():
        out.update(registry.parse_assignments(item, what))
    return out


def factory_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """``--factory-arg k=v`` as keyword arguments (numbers where they parse, else strings)."""
    raw = assignments(params.get("factory_arg"), "--factory-arg")
    return {k: registry.convert_value(registry.ParamSpec(k, "any"), v) for k, v in raw.items()}


# ---------------------------------------------------------------------------------------------- data
def load_data(params: dict[str, Any]):
    """``(dataset, x, y)``: the data set with its input box, and the first ``--limit`` test inputs (digits and
    ``.npz`` splits are shuffled already; image folders, sorted by class, give a stratified subset)."""
    from art_smoothing.data import load_dataset

    spec = params["data"]
    if spec != "digits" and not spec.endswith(".npz") and not os.path.isdir(spec):
        if not os.path.exists(spec):
            raise CLIError(f"--data {spec!r} not found: use digits, an existing .npz file (arrays x, y) or a "
                           "folder with CIFAR-10/100 ('cifar-10-batches-py', 'cifar-100-python') or train/ and val/ "
                           "image folders.")
        raise CLIError(f"--data {spec!r} is neither an .npz file nor a folder: use digits, FILE.npz or "
                       "FOLDER.")
    kwargs = {"image_size": params.get("image_size", 32)}
    if os.path.isdir(spec):  # folders are decoded lazily: a stratified subset of each split, never mixed up
        kwargs.update(limit=params.get("limit") or None, train_limit=params.get("train_limit") or None)
    data = load_dataset(spec, **kwargs)
    clip = _parse_clip(params.get("clip_values", "auto"), data)
    data.clip_values = clip
    if clip is not None:
        for name, arr in (("test", data.x_test), ("training", data.x_train)):
            if arr.size and (float(arr.min()) < clip[0] - 1e-6 or float(arr.max()) > clip[1] + 1e-6):
                raise CLIError(f"The {name} inputs of {data.name!r} lie in [{float(arr.min()):g}, "
                               f"{float(arr.max()):g}], outside --clip-values {clip[0]:g},{clip[1]:g}: pass "
                               "--clip-values LO,HI covering them (or none).")
    limit = params.get("limit")
    x, y = data.x_test, data.y_test
    if limit:
        x, y = x[:limit], y[:limit]
    if len(x) == 0:
        raise CLIError(f"The test set of {data.name!r} is empty.")
    return data, x, y


# ---------------------------------------------------------------------------------------------- noises
def _noise_specs(params: dict[str, Any], multiple: bool) -> list[tuple[str, dict[str, str], dict[str, Any]]]:
    """(name, explicit params, context) per requested noise."""
    given = params.get("noise")
    if multiple:
        specs = list(given or ())
        defaults = not specs
        if defaults:
            specs = list(DEFAULT_COMPARE)
    else:
        defaults = given is None
        specs = [given or DEFAULT_NOISE]
    out = []
    for spec in specs:
        name, explicit = registry.parse_noise_spec(spec)
        context = dict(DEFAULT_NOISE_CONTEXT) if (not multiple and defaults) else {}
        out.append((name, explicit, context))
    return out


def build_noises(params: dict[str, Any], data, multiple: bool) -> list:
    """The requested noise(s), built from ``--noise`` and the noise parameter options, checked against
    the data's dimension; an option no chosen noise takes is an error."""
    n = len(NOISE_PARAM_PREFIX)
    shared = {k[n:]: v for k, v in params.items() if k.startswith(NOISE_PARAM_PREFIX) and v is not None}
    noises = []
    used: set[str] = set()
    for name, explicit, context in _noise_specs(params, multiple):
        entry = registry.resolve_noise(name)
        context = dict(context)
        if data.clip_values is not None:
            context.setdefault("clip_values", data.clip_values)
        # The default noise's default parameters give way to the user's options.
        for key in list(context):
            if key in shared or key in explicit:
                context.pop(key)
        noise, _ = registry.build_noise(entry.name, explicit, shared, context)
        used |= set(entry.param_names) & set(shared)
        noise.validate_dim(int(np.prod(data.input_shape)))
        noises.append(noise)
    unused = sorted(set(shared) - used)
    if unused:
        takers = sorted(e.name for e in registry.noise_registry().values() if unused[0] in e.param_names)
        chosen = ", ".join(sorted({registry.noise_record(n)["name"] for n in noises}))
        raise CLIError(f"--{unused[0].replace('_', '-')} is not a parameter of {chosen}; it belongs to "
                       f"{', '.join(takers)} (choose one with --noise).")
    return noises


# ---------------------------------------------------------------------------------------------- certificates
def norm_of(text, noise) -> float:
    """``--norm`` as a number (the noise's own norm when not given)."""
    from art_smoothing.certificates.norms import parse_norm

    return float(noise.norm) if text is None else parse_norm(text)


def method_plan(noise, method: str | None, norm: float, box_opt: bool, clip) -> tuple[str | None, bool]:
    """(method for certify_detailed / radius_for, box on?) with the incompatibilities reported."""
    resolved, box = registry.resolve_methods(noise, method, norm)
    if box is True:
        if not box_opt:
            raise CLIError(f"--method {method} is box-constrained but --no-box was given: drop one of them.")
        if clip is None:
            raise CLIError(f"--method {method} is box-constrained and needs the input box: pass "
                           "--clip-values LO,HI.")
    return resolved, bool(box_opt) if box is None else box


def certify_kwargs(params: dict[str, Any], norm: float, method: str | None, box: bool) -> dict[str, Any]:
    """Keyword arguments of ``SmoothedClassifier.certify_detailed`` (``backend`` only with --backend ray)."""
    kwargs: dict[str, Any] = {"norm": norm, "method": method, "form": params["form"], "n0": params["n0"],
                              "box": box}
    if params.get("deterministic"):
        kwargs["deterministic"] = True
    if params.get("randomized"):
        kwargs["randomized"] = True
    if params.get("sequential"):
        radii = parse_radii(params.get("radii"))
        if radii is None:
            raise CLIError("--sequential decides given radii: pass --radii R1,R2,... (in the norm of --norm); --n is "
                           "then the budget of draws per input.")
        kwargs.update(sequential=True, radius=radii)
    backend = _backend(params)
    if backend is not None:
        kwargs["backend"] = backend
    return kwargs


def _backend(params):
    """None for the local backend, else an ``art_smoothing.distributed.RayBackend``."""
    name = str(params.get("backend") or "local").strip().lower()
    if name == "local":
        if params.get("workers") is not None or params.get("ray_address"):
            raise CLIError("--workers and --ray-address go with --backend ray.")
        return None
    if name != "ray":
        raise CLIError(f"Unknown backend {params.get('backend')!r}: use local or ray.")
    try:
        import ray  # noqa: F401
    except ImportError:
        raise CLIError("--backend ray needs Ray: pip install 'art_smoothing[distributed]' (or use --backend "
                       "local).") from None
    from art_smoothing.distributed import RayBackend

    return RayBackend(address=params.get("ray_address") or None, num_workers=params.get("workers"),
                      progress=not params.get("quiet"))


# ---------------------------------------------------------------------------------------------- models
def get_classifier(params: dict[str, Any], data, noise, device, run: Run | None, label: str = "model"):
    """Base ART classifier and its ModelInfo: bundled (trained/cached), TorchScript or factory."""
    from art_smoothing import zoo

    spec = params.get("model") or "bundled"
    factory_args = factory_kwargs(params)  # both parsed first: a malformed KEY=VALUE is an error either way
    trainer_params = assignments(params.get("trainer_param"), "--trainer-param")
    if spec == "bundled":
        if params.get("weights"):
            raise CLIError("--weights needs --model module:factory (the bundled model trains its own "
                           "weights).")
        with run.timed("train_seconds") if run is not None else contextlib.nullcontext():
            classifier, info = zoo.train_bundled(
                data, noise, epochs=params.get("epochs", 30), seed=params["seed"], device=device,
                clip_values=data.clip_values, trainer=params.get("trainer", "augment"),
                trainer_params=trainer_params,
                batch_size=params.get("train_batch_size", 64), lr=params.get("lr", 1e-3),
                train_limit=params.get("train_limit"), use_cache=not params.get("no_cache"),
                verbose=not params.get("quiet"))
        if info.details.get("cached"):
            say(params, f"{label}: cached {info.spec} trained with {describe_noise(noise)} "
                        f"({info.details.get('path')})")
        else:
            say(params, f"{label}: trained {info.spec} with {describe_noise(noise)} in "
                        f"{info.details['training']['seconds']:.1f} s"
                        + (f", cached as {info.details['path']}" if info.details.get("path") else ""))
    else:
        model, info = zoo.load_model(spec, weights=params.get("weights"), factory_kwargs=factory_args,
                                     device=device)
        classifier = zoo.wrap(model, data.input_shape, data.nb_classes, data.clip_values, device,
                              params.get("lr", 1e-3))
    zoo.check_model_output(classifier, data.input_shape, data.nb_classes,
                           what="The bundled model" if spec == "bundled" else f"The model {spec!r}")
    return classifier, info


def make_smoothed(classifier, noise, params: dict[str, Any], eot_samples: int | None = None):
    """The :class:`~art_smoothing.SmoothedClassifier` of the run (``--n0``, ``--alpha``, ``--seed``)."""
    from art_smoothing import SmoothedClassifier

    kwargs = {"sample_size": params["n0"], "alpha": params["alpha"], "seed": params["seed"],
              "verbose": not params.get("quiet")}
    if eot_samples is not None:
        kwargs["eot_samples"] = eot_samples
    return SmoothedClassifier(classifier, noise=noise, **kwargs)
