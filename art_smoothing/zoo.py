"""Base models for the command line: the bundled CNNs trained on demand (cached on disk), TorchScript
files, and user architectures given as ``module:factory`` plus weights.

The bundled model is trained with a smoothing noise (by default noise augmentation) and stored under
the cache directory (:func:`art_smoothing.storage.cache_dir`: ``$ART_SMOOTHING_CACHE`` or
``~/.cache/art_smoothing``) in ``models/``, written atomically, keyed by
everything that determines its weights: architecture, data (a hash of the training arrays), noise and
its parameters, trainer and its parameters, epochs, batch size, learning rate, seed and device type.
Training is deterministic given the seed (weights initialised after ``torch.manual_seed(seed)``, noise
draws and shuffling from the smoothed estimator's seeded streams), so a cache hit returns exactly the
weights a retraining would produce on the same machine. A cache folder that cannot be written is not an
error: the model is trained and used without being cached (one warning per folder).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from art_smoothing.models import DigitsCNN, SmallCNN, make_classifier
from art_smoothing.storage import CACHE_ENV_VAR, atomic_write, atomic_write_text, cache_dir

logger = logging.getLogger(__name__)

__all__ = [
    "MLP",
    "ModelInfo",
    "base_accuracy",
    "bundled_architecture",
    "check_model_output",
    "load_model",
    "model_kind",
    "resolve_device",
    "save_torchscript",
    "train_bundled",
    "wrap",
]

#: bump when the training recipe changes, so stale cached weights are not reused
RECIPE_VERSION = 1

#: cache folders found unwritable in this process (warned about once)
_UNWRITABLE_CACHES: set[str] = set()


class MLP(nn.Module):
    """Fallback bundled model for inputs that are not small square images: flatten, 256 ReLU units."""

    def __init__(self, in_features: int, nb_classes: int, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, nb_classes))

    def forward(self, x):
        return self.net(x)


@dataclass
class ModelInfo:
    """Where a base model came from (written to the run's JSON summary)."""

    source: str  # "bundled", "torchscript" or "factory"
    spec: str
    details: dict[str, Any] = field(default_factory=dict)


def resolve_device(device: str | None) -> torch.device:
    """``None``/``"auto"`` → ``cuda`` if available else ``cpu``; checks that a requested CUDA device exists."""
    if device is None or str(device).strip().lower() in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(str(device).strip().lower())
    except RuntimeError:
        raise ValueError(f"Unknown device {device!r}: use cpu, cuda or cuda:<index>.") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"Device {device!r} requested but CUDA is not available here: use --device cpu.")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"Device {device!r} does not exist: this machine has {count} CUDA device(s) "
                             f"(cuda:0 to cuda:{count - 1}).")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    elif dev.type != "cpu":
        raise ValueError(f"Unsupported device {device!r}: use cpu, cuda or cuda:<index>.")
    return dev


def wrap(model: nn.Module, input_shape, nb_classes: int, clip_values, device: torch.device, lr: float = 1e-3):
    """ART ``PyTorchClassifier`` around ``model`` on exactly ``device`` (``cuda:1`` stays on ``cuda:1``)."""
    if device.type == "cuda":
        with torch.cuda.device(device):
            return make_classifier(model, input_shape, nb_classes, clip_values=clip_values, lr=lr, device_type="gpu")
    return make_classifier(model, input_shape, nb_classes, clip_values=clip_values, lr=lr, device_type="cpu")


# ---------------------------------------------------------------------------------------------- bundled
def bundled_architecture(input_shape, nb_classes: int) -> tuple[str, dict[str, Any]]:
    """(class name, constructor kwargs) of the bundled model for this input shape."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3 and shape[1] == shape[2] == 8:
        return "DigitsCNN", {"nb_classes": nb_classes, "width": 16, "in_channels": shape[0]}
    if len(shape) == 3 and shape[1] == shape[2] and shape[1] % 4 == 0 and shape[1] >= 8:
        return "SmallCNN", {"nb_classes": nb_classes, "width": 16, "in_channels": shape[0], "image_size": shape[1]}
    return "MLP", {"in_features": int(np.prod(shape)), "nb_classes": nb_classes}


_ARCHITECTURES = {"DigitsCNN": DigitsCNN, "SmallCNN": SmallCNN, "MLP": MLP}


def _fingerprint(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _cache_writable(folder: str) -> bool:
    """Whether a file can be written in ``folder`` (created if missing); warns once per folder when not."""
    if folder in _UNWRITABLE_CACHES:
        return False
    try:
        os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".tmp-probe-")
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        _cache_unwritable(folder, err)
        return False
    return True


def _cache_unwritable(folder: str, err: OSError) -> None:
    if folder not in _UNWRITABLE_CACHES:
        _UNWRITABLE_CACHES.add(folder)
        logger.warning("The model cache %s cannot be written (%s): the model is trained without being cached; set "
                       "%s to a writable folder to keep it.", folder, err.strerror or err, CACHE_ENV_VAR)


def _sha256(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()[:16]


def train_bundled(data, noise, *, epochs: int, seed: int, device: torch.device, clip_values,
                  trainer: str = "augment", trainer_params: dict[str, Any] | None = None, batch_size: int = 64,
                  lr: float = 1e-3, train_limit: int | None = None, sample_size: int = 100, alpha: float = 0.001,
                  use_cache: bool = True, verbose: bool = False, model: nn.Module | None = None,
                  model_spec: str | None = None):
    """Train (or load from the cache) a base model under ``noise`` and return ``(classifier, ModelInfo)``.

    :param data: an :class:`art_smoothing.data.Dataset`.
    :param noise: the noise used in training (the trainer's smoothing distribution).
    :param trainer: a name of :func:`art_smoothing.registry.trainer_registry`.
    :param model: train this user model instead of the bundled architecture (then nothing is cached).
    """
    from art_smoothing import SmoothedClassifier
    from art_smoothing.registry import build_trainer, noise_record, resolve_trainer

    entry = resolve_trainer(trainer)
    trainer_params = dict(trainer_params or {})
    x_train, y_train = data.x_train, data.y_train
    if train_limit is not None:
        x_train, y_train = x_train[:train_limit], y_train[:train_limit]
    if len(x_train) == 0:
        raise ValueError("The training set is empty: check --data (and --train-limit).")
    if model is None:
        arch, arch_kwargs = bundled_architecture(data.input_shape, data.nb_classes)
    else:
        arch, arch_kwargs = model_spec or type(model).__name__, {}
    key_fields = {
        "recipe": RECIPE_VERSION, "arch": arch, "arch_kwargs": arch_kwargs,
        "data": _fingerprint(x_train, y_train), "clip_values": None if clip_values is None else list(clip_values),
        "noise": noise_record(noise), "trainer": entry.cls.__name__,
        "trainer_params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in sorted(trainer_params.items())},
        "epochs": int(epochs), "batch_size": int(batch_size), "lr": float(lr), "seed": int(seed),
        "device_type": device.type, "torch": torch.__version__.split("+")[0],
    }
    key = hashlib.sha256(json.dumps(key_fields, sort_keys=True, default=str).encode()).hexdigest()[:20]
    weights_path = cache_dir("models", f"{arch}-{key}.pt")
    cacheable = use_cache and model is None
    if cacheable and not os.path.isfile(weights_path):  # checked before training, not after it
        cacheable = _cache_writable(os.path.dirname(weights_path))

    torch.manual_seed(int(seed))
    if model is None:
        model = _ARCHITECTURES[arch](**arch_kwargs)
    details: dict[str, Any] = {"cache_key": key, "key_fields": key_fields}
    if cacheable and os.path.isfile(weights_path):
        try:
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
            logger.info("Loaded the cached model %s.", weights_path)
            details.update(cached=True, path=weights_path)
            meta_path = weights_path[:-3] + ".json"
            if os.path.isfile(meta_path):
                with open(meta_path, encoding="utf-8") as fh:
                    details["training"] = json.load(fh).get("training", {})
            return wrap(model, data.input_shape, data.nb_classes, clip_values, device, lr), ModelInfo(
                "bundled", arch, details)
        except Exception as err:  # noqa: BLE001 - a corrupt or foreign file: retrain and overwrite it
            logger.warning("Ignoring the unreadable cached model %s (%s); retraining.", weights_path, err)
            torch.manual_seed(int(seed))
            model = _ARCHITECTURES[arch](**arch_kwargs)

    classifier = wrap(model, data.input_shape, data.nb_classes, clip_values, device, lr)
    smoothed = SmoothedClassifier(classifier, noise=noise, sample_size=sample_size, alpha=alpha, seed=int(seed))
    fit_trainer, used = build_trainer(entry.name, smoothed, trainer_params, verbose=verbose)
    logger.info("Training %s with %s under %r for %d epochs.", arch, entry.name, noise, epochs)
    start = time.perf_counter()
    fit_trainer.fit(x_train, y_train, nb_epochs=int(epochs), batch_size=int(batch_size))
    seconds = time.perf_counter() - start
    model.eval()
    training = {"seconds": round(seconds, 3), "epochs": int(epochs), "trainer": entry.name,
                "trainer_params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in used.items()},
                "train_examples": len(x_train)}
    losses = getattr(fit_trainer, "last_epoch_losses", None)
    if losses:
        training["epoch_losses"] = [float(v) for v in losses]
    details.update(cached=False, training=training)
    if cacheable:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        meta = {"key_fields": key_fields, "training": training}
        try:  # the metadata first: weights without it are still a cache hit, metadata alone is none
            atomic_write_text(weights_path[:-3] + ".json", json.dumps(meta, indent=2, default=str))
            atomic_write(weights_path, lambda p: torch.save(state, p))
        except OSError as err:  # a full disk or a folder turned read-only: the trained model is still good
            _cache_unwritable(os.path.dirname(weights_path), err)
        else:
            details["path"] = weights_path
            logger.info("Cached the trained model as %s.", weights_path)
    return classifier, ModelInfo("bundled" if model_spec is None else "factory", arch, details)


# ---------------------------------------------------------------------------------------------- user models
def model_kind(spec: str | None) -> str:
    """What a ``--model`` value names: ``"bundled"``, ``"torchscript"`` (an existing file, or a path or file name
    without a colon) or ``"factory"`` (``module:factory``)."""
    if spec in (None, "", "bundled"):
        return "bundled"
    looks_like_file = os.path.sep in spec or spec.endswith((".pt", ".pth", ".ts", ".jit", ".zip"))
    if os.path.isfile(spec) or (looks_like_file and ":" not in spec):
        return "torchscript"
    return "factory"


def _import_factory(spec: str):
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"--model {spec!r}: write module:factory (e.g. mypkg.nets:make_model) or a TorchScript file.")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"--model {spec!r}: cannot import module {module_name!r} ({err}); put it on PYTHONPATH "
                         "or run from its folder.") from None
    factory = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise ValueError(f"--model {spec!r}: module {module_name!r} has no attribute {attr!r}.")
    if not callable(factory):
        msg = f"--model {spec!r}: {attr!r} is not callable; point at a function or class returning an nn.Module."
        raise ValueError(msg)  # noqa: TRY004 - a user input error (exit 2)
    return factory


def _load_state_dict(path: str) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise ValueError(f"Cannot read weights {path!r} as a PyTorch state dict ({type(err).__name__}); save them "
                         "with torch.save(model.state_dict(), path).") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path!r} does not hold a state dict (got {type(state).__name__}).")  # noqa: TRY004 - a user input error (exit 2)
    return state


def load_model(spec: str, *, weights: str | None = None, factory_kwargs: dict[str, Any] | None = None,
               device: torch.device | None = None) -> tuple[nn.Module, ModelInfo]:
    """A user model: a TorchScript file (``torch.jit.save``), or ``module:factory`` (called with
    ``factory_kwargs``) with optional ``weights`` (a state dict file). Returns ``(model, info)``."""
    device = device or torch.device("cpu")
    if model_kind(spec) == "torchscript":
        if not os.path.isfile(spec):
            raise ValueError(f"Model file {spec!r} not found: pass an existing TorchScript file, module:factory, "
                             "or leave --model out for the bundled model.")
        if weights is not None:
            raise ValueError("--weights goes with --model module:factory; a TorchScript file already holds its weights.")
        try:
            model = torch.jit.load(spec, map_location=device)
        except Exception as err:  # noqa: BLE001 - torch raises many kinds for a non-TorchScript file
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(f"Cannot load {spec!r} as TorchScript ({first[:120]}); for a state dict pass "
                             "--model module:factory --weights FILE.") from None
        model.eval()
        return model, ModelInfo("torchscript", os.path.abspath(spec), {"sha256": _sha256(spec)})
    factory = _import_factory(spec)
    try:
        model = factory(**(factory_kwargs or {}))
    except Exception as err:  # noqa: BLE001 - the user's factory can fail in any way
        raise ValueError(f"--model {spec!r}: calling the factory with {factory_kwargs or {}} failed: "
                         f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"--model {spec!r}: the factory returned {type(model).__name__}, not a torch.nn.Module.")  # noqa: TRY004 - a user input error (exit 2)
    details: dict[str, Any] = {"factory_kwargs": dict(factory_kwargs or {})}
    if weights is not None:
        if not os.path.isfile(weights):
            raise ValueError(f"Weights file {weights!r} not found: pass an existing state dict file to --weights.")
        state = _load_state_dict(weights)
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0]
            raise ValueError(f"The weights {weights!r} do not fit the model of {spec!r} ({first[:160]}).") from None
        details["weights"] = os.path.abspath(weights)
        details["sha256"] = _sha256(weights)
    model.eval()
    return model.to(device), ModelInfo("factory", spec, details)


def check_model_output(classifier, input_shape, nb_classes: int, what: str = "The model") -> None:
    """Run one zero input through the classifier and check that it returns ``nb_classes`` scores."""
    x = np.zeros((1, *input_shape), dtype=np.float32)
    try:
        out = classifier.predict(x, batch_size=1)
    except Exception as err:  # noqa: BLE001 - the user's model can fail in any way on a wrong shape
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(f"{what} fails on inputs of shape {tuple(input_shape)} ({first[:160]}); it must take "
                         f"(N, {', '.join(map(str, input_shape))}) tensors.") from None
    out = np.asarray(out)
    if out.ndim != 2 or out.shape[1] != nb_classes:
        got = out.shape[1] if out.ndim == 2 else f"shape {out.shape[1:]}"
        raise ValueError(f"{what} outputs {got} scores per input but the data has {nb_classes} classes; give it "
                         f"{nb_classes} outputs (or use data with {got} classes).")


def save_torchscript(model: nn.Module, path: str, example: torch.Tensor) -> str:
    """Save ``model`` as TorchScript (scripted, or traced on ``example`` if scripting fails); returns how."""
    model = model.eval()
    try:
        scripted = torch.jit.script(model)
        how = "script"
    except Exception:  # noqa: BLE001 - not scriptable: trace instead
        with torch.no_grad():
            scripted = torch.jit.trace(model, example)
        how = "trace"
    atomic_write(path, lambda p: torch.jit.save(scripted, p))
    return how


def base_accuracy(classifier, noise, x: np.ndarray, y: np.ndarray, *, seed: int, device: torch.device,
                  batch_size: int = 512) -> tuple[float, float]:
    """Accuracy of the *base* classifier on ``x``: clean, and under one draw of ``noise`` per input (drawn
    from a generator seeded with ``seed`` on ``device``, so the same seed gives the same number).

    :return: ``(clean accuracy, noisy accuracy)``.
    """
    clean = classifier.predict(x, batch_size=batch_size).argmax(axis=1)
    generator = torch.Generator(device=device).manual_seed(int(seed))
    z = noise.sample(len(x), tuple(x.shape[1:]), generator=generator, device=device)
    noisy = noise.perturb(torch.as_tensor(x, device=device), z).cpu().numpy()
    noisy_pred = classifier.predict(noisy, batch_size=batch_size).argmax(axis=1)
    return float(np.mean(clean == y)), float(np.mean(noisy_pred == y))
