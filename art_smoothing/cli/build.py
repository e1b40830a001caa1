"""From parsed options to library objects: the run (its folder claimed before any work), the data (with its
input box), the noises, the certificate method and ``certify_detailed`` arguments, the chunked backend that
saves per-input results in the run's folder, the base model and the smoothed classifier. Every command starts
with these steps; each one reports a user mistake as a one-line :class:`~art_smoothing.cli.errors.CLIError`
(or the library's own ``ValueError``), an option that would change nothing included.
"""

from __future__ import annotations

import contextlib
import math
import os
import shlex
from types import SimpleNamespace
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
    parse_radii,
)
from art_smoothing.cli.report import describe_noise, say
from art_smoothing.cli.runs import Run

__all__ = ["GIVEN_KEY", "TRAINING_OPTIONS", "assignments", "build_noises", "certify_kwargs", "check_options",
           "factory_kwargs", "get_classifier", "given_options", "load_data", "make_backend", "make_smoothed",
           "method_plan", "norm_of", "parse_radii", "resume_command", "setup", "single_noise_request"]

#: ``ctx.meta`` key of the option names a rerun repeats as given (the original run's)
GIVEN_KEY = "art_smoothing.given"
#: options of the bundled model's training: they change nothing with --model FILE.pt or module:factory
TRAINING_OPTIONS = ("epochs", "trainer", "trainer_param", "train_batch_size", "lr", "train_limit", "no_cache")


def setup(ctx: click.Context, command: str):
    """``(params, device, run)`` of the command invoked in ``ctx``: options checked against each other, then
    the output folder claimed (created, checked writable, locked, no other run in it) before any work; it is
    released when the command ends."""
    from art_smoothing import zoo

    params = dict(ctx.params)
    given = given_options(ctx)
    check_options(params, given, command)
    device = zoo.resolve_device(params.get("device"))
    flags = {p.name: p.opts[0] for p in ctx.command.params if isinstance(p, click.Option)}
    run = Run(command, params, given=given, flags=flags)
    run.device = device
    run.open()
    ctx.call_on_close(run.close)
    run.resume_command = resume_command(ctx, given, run.out)
    return params, device, run


def given_options(ctx: click.Context) -> set[str]:
    """Names of the options the user gave (on the command line or in the environment, not by default); for a
    run repeated by ``rerun``, those its original run recorded (``ctx.meta[GIVEN_KEY]``), or, from an older
    summary without them, those whose value differs from the default."""
    recorded = ctx.meta.get(GIVEN_KEY)
    if recorded is not None:
        return set(recorded)
    given = set()
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        if source is None:  # passed by ctx.invoke
            default = param.get_default(ctx)
            default = list(default) if isinstance(default, tuple) else default
            value = ctx.params.get(param.name)
            if (list(value) if isinstance(value, tuple) else value) not in (default, None, []):
                given.add(param.name)
        elif source in (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT,
                        click.core.ParameterSource.PROMPT):
            given.add(param.name)
    return given


def check_options(params: dict[str, Any], given: set[str], command: str) -> None:
    """Refuse option combinations where an option would be ignored or contradicts another: ``--factory-arg``
    or ``--weights`` without a factory, the bundled model's training options with a model that is not trained
    here (``--no-cache`` in ``train``), where to certify in ``train``, ``--resume`` without ``--out``, with
    ``--overwrite`` or with ``--deterministic``."""
    from art_smoothing import zoo

    if params.get("resume") and params.get("overwrite"):
        raise CLIError("--resume continues the run in --out and --overwrite replaces it: choose one.")
    if params.get("resume") and params.get("out") is None:
        raise CLIError("--resume needs --out DIR, the folder of the interrupted run.")
    if params.get("deterministic"):
        unused = next((name for name in ("resume", "chunk_size") if name in given), None)
        if unused is not None:
            raise CLIError(f"--{unused.replace('_', '-')}: --deterministic (exact) certification runs in one piece "
                           "and saves nothing per input: drop one of them.")
    if command == "train":
        unused = next((name for name in ("backend", "workers", "ray_address") if name in given), None)
        if unused is not None:
            raise CLIError(f"--{unused.replace('_', '-')} says where certification runs; train certifies nothing "
                           "(it trains in this process): drop it.")
    spec = params.get("model") or "bundled"
    kind = zoo.model_kind(spec)
    what = "the bundled model" if kind == "bundled" else f"--model {spec} (a TorchScript file)"
    if params.get("factory_arg") and kind != "factory":
        raise CLIError(f"--factory-arg is a keyword argument of --model module:factory, and {what} has no "
                       "factory: drop --factory-arg (or pass --model module:factory).")
    if params.get("weights") and kind == "bundled":
        raise CLIError("--weights needs --model module:factory (the bundled model trains its own weights).")
    if params.get("weights") and kind == "torchscript":
        raise CLIError("--weights goes with --model module:factory; a TorchScript file already holds its weights.")
    if kind == "bundled":
        return
    if command == "train":
        if "no_cache" in given:
            raise CLIError(f"--no-cache applies to the bundled model; --model {spec} is never cached: drop "
                           "--no-cache.")
        return
    unused = next((name for name in TRAINING_OPTIONS if name in given), None)
    if unused is not None:
        flag = "--" + unused.replace("_", "-")
        raise CLIError(f"{flag} sets how the bundled model is trained, and --model {spec} is used as it is: drop "
                       f"{flag} (to train a model, run art-smoothing train and pass its model.pt).")


def resume_command(ctx: click.Context, given: set[str], out: str) -> str:
    """The command line that resumes this run: the command, the options the user gave, ``--out`` and
    ``--resume`` (shell-quoted)."""
    words = ["art-smoothing", ctx.command.name]
    for param in ctx.command.params:
        if param.name in given and param.name not in ("out", "resume", "overwrite"):
            words += _option_words(param, ctx.params.get(param.name))
    words += ["--out", out, "--resume"]
    return " ".join(shlex.quote(str(w)) for w in words)


def _option_words(param: click.Parameter, value) -> list:
    if not isinstance(param, click.Option):
        return [] if value is None else [value]
    if param.is_flag:
        if param.secondary_opts:
            return [param.opts[0] if value else param.secondary_opts[0]]
        return [param.opts[0]] if value else []
    if param.multiple:
        return [word for v in value or () for word in (param.opts[0], v)]
    return [] if value is None else [param.opts[0], value]


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
    """Keyword arguments of ``SmoothedClassifier.certify_detailed`` but ``backend`` (:func:`make_backend`)."""
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
    return kwargs


def single_noise_request(ctx: click.Context, command: str, norms=None) -> SimpleNamespace:
    """The start of a one-noise command (certify, evaluate): the run, the data, the noise, the norm (one of
    ``norms`` when given), the certificate method and the ``certify_detailed`` arguments, as a namespace with
    ``params, device, run, data, x, y, noise, norm, method, box, table_radii, kwargs``."""
    params, device, run = setup(ctx, command)
    data, x, y = load_data(params)
    (noise,) = build_noises(params, data, multiple=False)
    norm = norm_of(params.get("norm"), noise)
    if norms is not None and norm not in norms:
        names = ["linf" if p == math.inf else f"l{p:g}" for p in norms]
        names = " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
        raise CLIError(f"{command} works in {names} only; got --norm {params.get('norm')}.")
    method, box = method_plan(noise, params.get("method"), norm, params["box"], data.clip_values)
    return SimpleNamespace(params=params, device=device, run=run, data=data, x=x, y=y, noise=noise, norm=norm,
                           method=method, box=box, table_radii=parse_radii(params.get("radii")),
                           kwargs=certify_kwargs(params, norm, method, box))


def make_backend(params: dict[str, Any], run: Run, part: str | None = None):
    """The chunked backend of a certification, saving per-input results in the run's progress folder (``part``: a
    subfolder): a :class:`~art_smoothing.distributed.LocalBackend`, or a
    :class:`~art_smoothing.distributed.RayBackend` with ``--backend ray``; ``None`` with ``--deterministic``
    (exact certification runs in one piece, in this process). Tracked by the run."""
    name = str(params.get("backend") or "local").strip().lower()
    if name not in ("local", "ray"):
        raise CLIError(f"Unknown backend {params.get('backend')!r}: use local or ray.")
    if name == "local" and (params.get("workers") is not None or params.get("ray_address")):
        raise CLIError("--workers and --ray-address go with --backend ray.")
    if params.get("deterministic"):
        if name == "ray":
            raise CLIError("--deterministic (exact) certification runs in this process: drop --backend ray.")
        return None
    common = {"output_dir": run.progress_dir(part), "chunk_size": params.get("chunk_size"),
              "progress": not params.get("quiet")}
    if name == "local":
        from art_smoothing.distributed import LocalBackend

        return run.track(LocalBackend(**common))
    try:
        import ray  # noqa: F401
    except ImportError:
        raise CLIError("--backend ray needs Ray: pip install 'art_smoothing[distributed]' (or use --backend "
                       "local).") from None
    from art_smoothing.distributed import RayBackend

    return run.track(RayBackend(address=params.get("ray_address") or None, num_workers=params.get("workers"),
                                **common))


# ---------------------------------------------------------------------------------------------- models
def get_classifier(params: dict[str, Any], data, noise, device, run: Run | None, label: str = "model"):
    """Base ART classifier and its ModelInfo: bundled (trained/cached), TorchScript or factory."""
    from art_smoothing import zoo

    spec = params.get("model") or "bundled"
    factory_args = factory_kwargs(params)  # both parsed first: a malformed KEY=VALUE is an error either way
    trainer_params = assignments(params.get("trainer_param"), "--trainer-param")
    if spec == "bundled":
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
    if info.source == "factory":
        info.details["untrained"] = not params.get("weights")
        if info.details["untrained"] and run is not None:
            run.warn(f"--model {spec} without --weights: the model has the initial weights its factory gives it "
                     "(random unless the factory loads trained ones), so these results say nothing about a trained "
                     "model; pass --weights FILE (a state dict).")
    return classifier, info


def make_smoothed(classifier, noise, params: dict[str, Any], eot_samples: int | None = None):
    """The :class:`~art_smoothing.SmoothedClassifier` of the run (``--n0``, ``--alpha``, ``--seed``,
    ``--compile/--no-compile``; neither: ``compile="auto"``)."""
    from art_smoothing import SmoothedClassifier

    kwargs = {"sample_size": params["n0"], "alpha": params["alpha"], "seed": params["seed"],
              "verbose": not params.get("quiet"),
              "compile": "auto" if params.get("compile") is None else params["compile"]}
    if eot_samples is not None:
        kwargs["eot_samples"] = eot_samples
    return SmoothedClassifier(classifier, noise=noise, **kwargs)
