"""What a worker runs and holds: the per-chunk CERTIFY / evaluation calls (:func:`certify_chunk`,
:func:`evaluate_chunk`; the same code as the local path, run by :class:`~art_smoothing.distributed.LocalBackend`
in this process and by the Ray actor on its own estimator), and for Ray the estimator rebuilt from a
device-neutral payload."""

from __future__ import annotations

import copy
import hashlib
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from art.estimators.classification import PyTorchClassifier

from art_smoothing.attacks.pgd import SmoothedPGD
from art_smoothing.engine.plan import CertifyPlan
from art_smoothing.estimator import NumpySmoothedClassifier, SmoothedClassifier
from art_smoothing.evaluation import certify_and_attack

__all__ = ["CERTIFY_FIELDS", "CHUNK_TASKS", "EVALUATE_FIELDS", "SEQUENTIAL_FIELDS", "EstimatorPayload", "Worker",
           "certify_chunk", "evaluate_chunk", "result_fields"]

#: the per-input arrays of a CertificationResult, in the order they are stored.
CERTIFY_FIELDS = ("prediction", "radius", "p_a_lower", "p_b_upper", "counts", "counts_selection")
#: ... and those :func:`art_smoothing.evaluate` adds.
EVALUATE_FIELDS = (*CERTIFY_FIELDS, "empirical_radius", "predict_calls", "eps_max")
#: ... and those a sequential certification adds.
SEQUENTIAL_FIELDS = ("n_used", "decisions")


def result_fields(fields: tuple[str, ...], plan: CertifyPlan) -> tuple[str, ...]:
    """The per-input fields a chunk returns under ``plan``."""
    return (*fields, *SEQUENTIAL_FIELDS) if plan.sequential else fields


def _writable(x: np.ndarray) -> np.ndarray:
    """``x``, copied only when read-only (a Ray object-store view): a copy may change its strides."""
    return x if x.flags.writeable else np.array(x)


def certify_chunk(estimator, x: np.ndarray, seed: int, plan: CertifyPlan) -> dict[str, np.ndarray]:
    """CERTIFY of one chunk: ``estimator.run_certify`` with the run's base seed; the per-input arrays."""
    result = estimator.run_certify(_writable(x), plan, seed=seed)
    return {f: getattr(result, f) for f in result_fields(CERTIFY_FIELDS, plan)}


def evaluate_chunk(estimator, x: np.ndarray, labels: np.ndarray, eps_max, seed: int, gradient_calls: int,
                   args: dict) -> dict[str, np.ndarray]:
    """CERTIFY and the ε search of one chunk (:func:`art_smoothing.evaluation.certify_and_attack`), starting
    from the run's base seed and gradient-call counter (so a chunk's results do not depend on the chunks run
    before it); the per-input arrays. Sets ``estimator.seed`` and ``estimator.gradient_calls``."""
    estimator.seed = seed
    estimator.gradient_calls = gradient_calls  # every chunk starts where the driver's counter is
    attack = SmoothedPGD(estimator, **args["attack"])
    cert, details = certify_and_attack(
        estimator, _writable(x), labels, args["p"], attack, n=args["n"], n0=args["n0"],
        batch_size=args["batch_size"], eps_max=eps_max, search_steps=args["search_steps"],
        n_predict=args["n_predict"], certify_kwargs=args["certify_kwargs"])
    out = {f: getattr(cert, f) for f in CERTIFY_FIELDS}
    if cert.n_used is not None:
        out.update({f: getattr(cert, f) for f in SEQUENTIAL_FIELDS})
    out.update(empirical_radius=details.radius, predict_calls=details.predict_calls, eps_max=details.eps_max)
    return out


#: the per-chunk function of each task, by name (a Ray actor has a method of the same name)
CHUNK_TASKS = {"certify": certify_chunk, "evaluate": evaluate_chunk}


@dataclass
class EstimatorPayload:
    """What a worker needs to rebuild the smoothed estimator on its own device.

    ART's ``PyTorchClassifier`` pickles its weights through a file in ``ART_DATA_PATH`` on the
    pickling machine, which a worker on another machine cannot read; so the model module itself
    (weights on the CPU) and the wrapper's constructor arguments travel instead."""

    kind: str
    model: Any
    classifier_kwargs: dict[str, Any]
    smoothing_kwargs: dict[str, Any]

    @classmethod
    def from_estimator(cls, smoothed) -> EstimatorPayload:
        smoothing = {"noise": smoothed.noise, "sample_size": smoothed.sample_size, "alpha": smoothed.alpha}
        if isinstance(smoothed, SmoothedClassifier):
            base = smoothed.base_classifier
            model = smoothed.model
            tensors = list(model.parameters()) + list(model.buffers())
            if any(t.device.type != "cpu" for t in tensors):
                model = copy.deepcopy(model).to("cpu")  # device-neutral for shipping; workers place it
            preprocessing = base.preprocessing
            from art.preprocessing.standardisation_mean_std.pytorch import StandardisationMeanStdPyTorch

            if isinstance(preprocessing, StandardisationMeanStdPyTorch):  # rebuilt on the worker's device
                preprocessing = (np.asarray(preprocessing.mean), np.asarray(preprocessing.std))
            kwargs = {
                "loss": base.loss, "input_shape": tuple(base.input_shape), "nb_classes": base.nb_classes,
                "channels_first": base.channels_first, "clip_values": base.clip_values,
                "preprocessing_defences": base.preprocessing_defences,
                "postprocessing_defences": base.postprocessing_defences, "preprocessing": preprocessing,
            }
            smoothing["eot_samples"] = smoothed.eot_samples
            smoothing["compile"] = smoothed.compile_in_effect  # the driver's decision; each worker compiles its own
            return cls("torch", model, kwargs, smoothing)
        if isinstance(smoothed, NumpySmoothedClassifier):
            return cls("numpy", smoothed.base_classifier, {}, smoothing)
        raise ValueError(f"The Ray backend needs a SmoothedClassifier, got {type(smoothed).__name__}.")

    def key(self, model_digest: str) -> str:
        """Identifies the estimator a worker holds: weights, wrapper and smoothing parameters."""
        described = repr((self.kind, sorted((k, repr(v)) for k, v in self.classifier_kwargs.items()),
                          sorted((k, repr(v)) for k, v in self.smoothing_kwargs.items())))
        return hashlib.sha256((model_digest + described).encode()).hexdigest()

    def build(self, device_type: str):
        if self.kind == "torch":
            base = PyTorchClassifier(model=self.model, device_type=device_type, **self.classifier_kwargs)
            return SmoothedClassifier(base, **self.smoothing_kwargs)
        return SmoothedClassifier(self.model, **self.smoothing_kwargs)


class Worker:
    """A Ray actor holding one estimator, built on its first task; ``ray.remote`` is applied in the driver."""

    def __init__(self, num_threads: int, deterministic_kernels: bool):
        import ray

        torch.set_num_threads(num_threads)
        self.on_gpu = bool(ray.get_gpu_ids()) and torch.cuda.is_available()
        if self.on_gpu and deterministic_kernels:
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
        self.estimator = None
        self.key: str | None = None
        self.loads = 0

    def _get(self, payload: list):
        """The estimator for ``payload = [key, ref]``, fetched and built only when the key changes."""
        key, ref = payload
        if self.estimator is None or self.key != key:
            import ray

            self.estimator = ray.get(ref).build("gpu" if self.on_gpu else "cpu")
            self.key = key
            self.loads += 1
        return self.estimator

    def certify(self, payload: list, *args) -> dict[str, np.ndarray]:
        """:func:`certify_chunk` on this worker's estimator."""
        return certify_chunk(self._get(payload), *args)

    def evaluate(self, payload: list, *args) -> dict[str, np.ndarray]:
        """:func:`evaluate_chunk` on this worker's estimator."""
        return evaluate_chunk(self._get(payload), *args)

    def stats(self) -> dict[str, Any]:
        """Process id, estimator builds so far, device and torch threads (for logs and tests)."""
        device = None if self.estimator is None else str(self.estimator.device)
        return {"pid": os.getpid(), "loads": self.loads, "device": device, "threads": torch.get_num_threads()}


