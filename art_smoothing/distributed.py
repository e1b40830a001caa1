"""The Ray backend: CERTIFY and evaluation over many workers and machines, giving the single-process
result bit for bit.

Usage (``pip install art_smoothing[distributed]``)::

    smoothed.certify(x, n=10_000, backend="ray")          # local Ray: one worker per GPU, else per CPU
    smoothed.certify_detailed(x, n=10_000, backend=RayBackend(address="auto", output_dir="runs/c10"))
    art_smoothing.evaluate(smoothed, x, y, n=10_000, backend="ray")
    with RayBackend(num_workers=8) as backend:           # workers (and the model) stay up across calls
        for norm in (1, 2):
            art_smoothing.evaluate(smoothed, x, y, norm=norm, backend=backend)

``ray`` is imported inside the functions that use it, so ``import art_smoothing`` never imports it.

Design.

* **Random streams.** The estimator's noise is cut into blocks seeded from ``(seed, stage, block)``
  and every input sees the same blocks; each forward pass holds one input's draws, cut at fixed
  offsets of the block (see :mod:`art_smoothing.estimator`). Input i's votes are therefore a function
  of ``(x_i, base seed, n0, n, batch_size)`` only — not of its index, its neighbours, the chunk it is
  in or the worker that runs it — and the single-process path is the same code. With ``seed=None``
  the driver draws one base seed (``_call_seed``) and sends it to every worker.
* **Actors, not stateless tasks.** Each worker is a Ray actor holding one copy of the estimator: the
  model travels through the object store once per worker (one ``ray.put`` of the payload, fetched
  once by each actor) and stays on the worker's GPU between chunks. Stateless tasks would either ship
  the model per task or rely on a per-process cache whose number of copies Ray, not the user,
  decides; with GPUs an actor is also what pins one model to one device. The driver hands chunks of
  inputs (each ``ray.put``) to whichever actor finishes first, keeping ``inflight`` chunks queued
  per actor, so slow and fast workers balance and progress streams as chunks finish.
* **Retries.** Actors are created with ``max_restarts`` / ``max_task_retries``: a worker process that
  dies mid-chunk is restarted (rebuilding the estimator from the same payload) and its chunks rerun.
  Chunks are pure functions of their inputs and the base seed, so a rerun returns the same votes.
* **Resume.** With ``output_dir`` every finished input is appended to ``certify.jsonl`` (or
  ``evaluate.jsonl``; one JSON line per input: votes, bounds, radii; floats round-trip exactly)
  beside ``certify.meta.json``
  (the run's fingerprint: input hash, parameters, model-weights hash, and the base seed). Rerunning
  the same call skips the indices already there and computes nothing else; a different run into the
  same directory is refused.
* **Bit-identity caveats.** Identical forward tensors give identical logits only with the same
  kernels: same ``batch_size``, same intra-op thread count (workers call ``torch.set_num_threads``
  with ``num_threads``; run the local reference with the same count), same hardware and library
  versions. On CUDA, workers set ``torch.backends.cudnn.deterministic = True`` and
  ``benchmark = False`` (``deterministic_kernels``); set them in the local process too when
  comparing. Otherwise logits may differ in the last bits and a vote changes only where two logits
  tie to rounding. :meth:`RayBackend.evaluate` adds the attack's caveats (see there): for
  bit-identical empirical radii give the attack a ``gradient_batch_size`` no larger than its EOT
  draws, so that its forward passes, too, never mix inputs.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import pickle
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

__all__ = ["RayBackend", "resolve_backend"]

#: the per-input arrays of a CertificationResult, in the order they are stored.
_CERTIFY_FIELDS = ("prediction", "radius", "p_a_lower", "p_b_upper", "counts", "counts_selection")
#: ... and those :func:`art_smoothing.evaluate` adds.
_EVALUATE_FIELDS = (*_CERTIFY_FIELDS, "empirical_radius", "predict_calls", "eps_max")


def resolve_backend(backend: Any) -> RayBackend | str:
    """``"local"`` → ``"local"``; ``"ray"`` → ``RayBackend()``; a :class:`RayBackend` → itself."""
    if isinstance(backend, RayBackend):
        return backend
    if isinstance(backend, str) and backend in ("local", "ray"):
        return "local" if backend == "local" else RayBackend()
    raise ValueError(f"backend must be 'local', 'ray' or an art_smoothing.distributed.RayBackend, got {backend!r}.")


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ImportError("backend='ray' needs Ray: pip install 'art_smoothing[distributed]'.") from None
    return ray


def _positive_int(name: str, value, allow_none: bool = True) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer{' or None' if allow_none else ''}, got {value!r}.")
    return int(value)


@dataclass
class RayBackend:
    """Where and how to run on Ray. Every field has a working default for a local machine.

    :param address: ``None`` starts a local Ray (or joins the cluster in ``RAY_ADDRESS``); ``"auto"``
        or ``"ray://host:port"`` joins an existing cluster. An already initialised Ray is reused.
    :param num_workers: actors to start (default: one per GPU if the cluster has GPUs, otherwise
        ``CPUs // cpus_per_worker``). Never more than there are chunks.
    :param cpus_per_worker: CPUs reserved per actor (fractions allowed, e.g. 0.5).
    :param use_gpus: one GPU per actor; ``None`` = whenever ``ray.cluster_resources()`` lists GPUs.
    :param num_threads: torch intra-op threads per actor (default ``max(1, int(cpus_per_worker))``).
        Bit-identity with a local run needs the same thread count there.
    :param chunk_size: inputs per task (default: about four chunks per worker, at most 64). Results do
        not depend on it; smaller chunks mean finer progress/resume, larger ones less overhead.
    :param inflight: chunks queued per actor (2 overlaps data transfer with compute).
    :param output_dir: directory for per-input results; a rerun resumes from them.
    :param max_retries: restarts of a dead actor and retries of its chunks (``-1``: unlimited).
    :param progress: a tqdm bar over inputs in the driver.
    :param deterministic_kernels: on CUDA workers, ``cudnn.deterministic=True, benchmark=False``.
    :param init_kwargs: extra ``ray.init`` arguments when this backend starts Ray (e.g. ``num_cpus``).
    """

    address: str | None = None
    num_workers: int | None = None
    cpus_per_worker: float = 1.0
    use_gpus: bool | None = None
    num_threads: int | None = None
    chunk_size: int | None = None
    inflight: int = 2
    output_dir: str | os.PathLike | None = None
    max_retries: int = 3
    progress: bool = True
    deterministic_kernels: bool = True
    init_kwargs: dict[str, Any] = field(default_factory=dict)
    _pool: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)
    _keep: bool = field(default=False, init=False, repr=False, compare=False)

    def __enter__(self) -> RayBackend:  # noqa: PYI034 (Self needs Python 3.11)
        """Inside ``with backend:`` the workers (and the estimator they hold) stay up between calls,
        so a series of calls pays process start-up and model shipping once. Workers rebuild their
        estimator when the weights, the wrapper or the smoothing parameters change; other changes
        to the model object (plain Python attributes) need a new ``with`` block."""
        self._keep = True
        return self

    def __exit__(self, *exc) -> None:
        self._keep = False
        self.close()

    def close(self) -> None:
        """Stop the workers kept by ``with`` (no-op otherwise)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            ray = _import_ray()
            for actor in pool["actors"]:
                ray.kill(actor)

    def __post_init__(self) -> None:
        if self.address is not None and not isinstance(self.address, str):
            raise ValueError(f"address must be a string or None, got {self.address!r}.")
        self.num_workers = _positive_int("num_workers", self.num_workers)
        self.num_threads = _positive_int("num_threads", self.num_threads)
        self.chunk_size = _positive_int("chunk_size", self.chunk_size)
        self.inflight = _positive_int("inflight", self.inflight, allow_none=False)
        try:
            cpus = float(self.cpus_per_worker)
        except (TypeError, ValueError):
            cpus = float("nan")
        if isinstance(self.cpus_per_worker, bool) or not math.isfinite(cpus) or cpus <= 0:
            raise ValueError(f"cpus_per_worker must be a number > 0, got {self.cpus_per_worker!r}.")
        self.cpus_per_worker = cpus
        if self.use_gpus is not None and not isinstance(self.use_gpus, bool):
            raise ValueError(f"use_gpus must be True, False or None, got {self.use_gpus!r}.")
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, (int, np.integer)) \
                or self.max_retries < -1:
            raise ValueError(f"max_retries must be an integer >= -1, got {self.max_retries!r}.")
        if not isinstance(self.init_kwargs, dict):
            raise ValueError(f"init_kwargs must be a dict, got {self.init_kwargs!r}.")  # noqa: TRY004

    # ------------------------------------------------------------------ CERTIFY
    def certify_detailed(self, smoothed, x: np.ndarray, n: int, batch_size: int, *, norm=None,
                         method: str | None = None, form: str = "binary", n0: int | None = None, box: bool = True,
                         deterministic: bool = False, verbose: bool | None = None):
        """``smoothed.certify_detailed(x, n, ...)`` on Ray workers; the arguments are already validated
        by the estimator, which calls this. Returns the same :class:`CertificationResult` as the
        local path (same fields, dtypes and, for a fixed seed, values)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        setup = _certificate_setup(smoothed, n, n0, norm, method, form, box, deterministic)
        kwargs = {"norm": norm, "method": method, "form": form, "n0": setup["n0"], "box": box}
        model_digest = _model_digest(smoothed)
        fingerprint = {"task": "certify", "inputs": _array_digest(x), "batch_size": batch_size,
                       "model": model_digest, **_certificate_fingerprint(smoothed, setup)}
        seed, store, done = self._open_store("certify", smoothed, fingerprint, len(x))

        def submit(ray, actor, idx, payload):
            return actor.certify.remote(payload, ray.put(x[idx]), seed, n, batch_size, kwargs)

        self._run_chunks(smoothed, model_digest, len(x), done, store, submit, _CERTIFY_FIELDS, "certify (ray)", seed)
        return _certificate_from_rows(smoothed, setup, done, len(x))

    # ------------------------------------------------------------------ evaluate
    def evaluate(self, smoothed, x: np.ndarray, labels: np.ndarray, p: float, attack, radii, *, n: int,
                 n0: int | None, batch_size: int, eps_max, search_steps: int, n_predict: int | None,
                 certify_kwargs: dict | None):
        """:func:`art_smoothing.evaluate` on Ray workers (called by it, arguments validated there): each
        chunk runs CERTIFY and the ε search of its inputs; the driver assembles the same records and
        summary as the local path.

        Per input, the attack's random streams are partition-independent too: its EOT draws are
        shared by all inputs and keyed by search round, and every chunk starts from the driver's
        gradient-call counter. Two caveats beyond those of CERTIFY: the attack's forward/backward
        passes batch several inputs (bit-identity then also needs kernels that compute each row
        independently of its neighbours — not promised by CPU or GPU libraries; on this project's
        CPU tests empirical radii then differ in the last bits only), and ``num_random_init > 0``
        draws random starts per position in an attack batch, so those starts, hence empirical
        radii, depend on the partition. With ``attack={"gradient_batch_size": m}``, ``m`` the EOT
        draws per gradient (one input per forward pass), the whole evaluation is bit-identical."""
        from art_smoothing.attacks.pgd import SmoothedPGD, _check_positive_array
        from art_smoothing.attacks.radius import make_attack
        from art_smoothing.evaluation import _assemble

        x = np.ascontiguousarray(x, dtype=np.float32)
        certify_kwargs = dict(certify_kwargs or {})
        unknown = set(certify_kwargs) - {"method", "form", "box"}
        if unknown:
            raise ValueError(f"certify_kwargs for backend='ray' may hold method, form and box; got {sorted(unknown)}.")
        setup = _certificate_setup(smoothed, n, n0, p, certify_kwargs.get("method"), certify_kwargs.get("form", "binary"),
                                   certify_kwargs.get("box", True), False)
        atk = make_attack(smoothed, p, attack)
        attack_params = {k: getattr(atk, k) for k in SmoothedPGD.attack_params if hasattr(atk, k)}
        if atk.num_random_init > 0:
            logger.warning("num_random_init=%d: random starts depend on the position of an input in its attack "
                           "batch, so empirical radii depend on how inputs are split.", atk.num_random_init)
        if eps_max is not None:
            eps_max = _check_positive_array("eps_max", eps_max, len(x))
        if radii is not None:
            check = np.atleast_1d(np.asarray(radii, dtype=np.float64))
            if check.ndim != 1 or np.any(check < 0) or not np.all(np.isfinite(check)):
                raise ValueError("radii must be a list of finite non-negative radii.")
        offset = int(getattr(smoothed, "_gradient_calls", 0))
        args = {"p": p, "n": n, "n0": n0, "batch_size": batch_size, "search_steps": search_steps,
                "n_predict": n_predict, "certify_kwargs": certify_kwargs, "attack": attack_params}
        model_digest = _model_digest(smoothed)
        fingerprint = {
            "task": "evaluate", "inputs": _array_digest(x), "labels": _array_digest(labels), "batch_size": batch_size,
            "model": model_digest, "attack": repr(sorted((k, repr(v)) for k, v in attack_params.items())),
            "eps_max": None if eps_max is None else _array_digest(np.asarray(eps_max, dtype=np.float64)),
            "search_steps": search_steps, "n_predict": n_predict, "gradient_calls": offset,
            **_certificate_fingerprint(smoothed, setup),
        }
        seed, store, done = self._open_store("evaluate", smoothed, fingerprint, len(x))

        def submit(ray, actor, idx, payload):
            eps = eps_max[idx] if eps_max is not None and np.ndim(eps_max) == 1 else eps_max
            return actor.evaluate.remote(payload, ray.put(x[idx]), labels[idx], eps, seed, offset, args)

        self._run_chunks(smoothed, model_digest, len(x), done, store, submit, _EVALUATE_FIELDS, "evaluate (ray)",
                         seed)
        cert = _certificate_from_rows(smoothed, setup, done, len(x))
        per_input = {f: np.asarray([done[i][f] for i in range(len(x))], dtype=np.float64 if f != "predict_calls"
                                   else np.int64) for f in ("empirical_radius", "predict_calls", "eps_max")}
        if len(x):  # as after a local run: one gradient call per search round that attacked something
            smoothed._gradient_calls = offset + int(per_input["predict_calls"].max()) - 1
        return _assemble(smoothed, p, n, repr(atk), labels, cert, per_input["empirical_radius"],
                         per_input["predict_calls"], per_input["eps_max"], radii, search_steps, n_predict)

    # ------------------------------------------------------------------ machinery
    def _open_store(self, task: str, smoothed, fingerprint: dict, n_inputs: int):
        """The base seed, the results store (or None) and the results already in it, by index."""
        seed = smoothed._call_seed()
        if self.output_dir is None:
            return seed, None, {}
        store = _ResultStore(os.fspath(self.output_dir), task, fingerprint, seed,
                             user_seed=smoothed.seed, n_inputs=n_inputs)
        return store.seed, store, store.load()

    def _ensure_ray(self, ray) -> None:
        if ray.is_initialized():
            return
        init = {"address": self.address, "logging_level": logging.WARNING, **self.init_kwargs}
        if init.get("address") is not None or os.environ.get("RAY_ADDRESS"):
            init.pop("num_cpus", None)
            init.pop("num_gpus", None)
        ray.init(**init)

    def _plan(self, ray, n_chunks: int) -> dict[str, Any]:
        """Actor count and per-actor resources from the cluster's resources."""
        resources = ray.cluster_resources()
        gpus, cpus = float(resources.get("GPU", 0.0)), float(resources.get("CPU", 0.0))
        use_gpu = gpus >= 1 if self.use_gpus is None else self.use_gpus
        if use_gpu and gpus < 1:
            raise ValueError("use_gpus=True but the Ray cluster has no GPU.")
        capacity = int(gpus) if use_gpu else int(cpus // self.cpus_per_worker + 1e-9)
        if use_gpu:
            capacity = min(capacity, int(cpus // self.cpus_per_worker + 1e-9))
        if capacity < 1:
            raise ValueError(f"The Ray cluster ({resources}) cannot host one worker with "
                             f"{self.cpus_per_worker} CPU(s){' and a GPU' if use_gpu else ''}.")
        workers = capacity if self.num_workers is None else self.num_workers
        if workers > capacity:
            raise ValueError(f"num_workers={workers} needs more than the cluster has ({resources}); at most "
                             f"{capacity} with cpus_per_worker={self.cpus_per_worker}"
                             f"{' and one GPU each' if use_gpu else ''}.")
        threads = self.num_threads or max(1, int(self.cpus_per_worker))
        return {"workers": max(1, min(workers, n_chunks)), "gpu": use_gpu, "threads": threads}

    def _chunks(self, todo: np.ndarray, workers: int) -> list[np.ndarray]:
        size = self.chunk_size or max(1, min(64, math.ceil(len(todo) / (4 * workers))))
        return [todo[i:i + size] for i in range(0, len(todo), size)]

    def _run_chunks(self, smoothed, model_digest: str, n_inputs: int, done: dict[int, dict], store, submit,
                    fields: tuple[str, ...], desc: str, seed: int) -> None:
        """Run ``submit(ray, actor, idx, payload)`` for every chunk of the inputs not in ``done`` on a
        pool of actors; as each chunk's result (a dict of per-input arrays) arrives, its ``fields``
        go into ``done`` (index → record) and the store.

        ``payload`` is ``[key, ref]``: the estimator put in the object store once, and a hash of its
        weights and parameters. Nested in a list, the reference is not resolved per task: an actor
        fetches it only when it holds no estimator with that key (first task, after a restart, or a
        changed model in a kept pool), so the model travels once per worker. The driver holds the
        reference for the whole run, so a restarted actor can always fetch it."""
        todo = np.array([i for i in range(n_inputs) if i not in done], dtype=np.int64)
        logger.info("%s: %d input(s), %d already done, base seed %d.", desc, n_inputs, n_inputs - len(todo), seed)
        if len(todo) == 0:
            return

        def collect(idx: np.ndarray, arrays: dict[str, np.ndarray]) -> None:
            records = []
            for row, i in enumerate(idx):
                rec = {"index": int(i), **{f: arrays[f][row].tolist() for f in fields}}
                records.append(rec)
                done[int(i)] = rec
            if store is not None:
                store.append(records)

        ray = _import_ray()
        self._ensure_ray(ray)
        plan = self._plan(ray, n_chunks=len(todo))
        chunks = self._chunks(todo, plan["workers"])
        plan["workers"] = min(plan["workers"], len(chunks))
        payload_obj = _EstimatorPayload.from_estimator(smoothed)
        payload = [payload_obj.key(model_digest), ray.put(payload_obj)]
        actors = self._actors(ray, plan)
        logger.info("%d Ray worker(s) (%s, %d thread(s) each), %d chunk(s) of <= %d input(s).", len(actors),
                    "one GPU each" if plan["gpu"] else f"{self.cpus_per_worker:g} CPU each", plan["threads"],
                    len(chunks), len(chunks[0]))
        queue = deque(range(len(chunks)))
        pending: dict[Any, tuple[int, int]] = {}

        def feed(a: int) -> None:
            c = queue.popleft()
            pending[submit(ray, actors[a], chunks[c], payload)] = (a, c)

        bar = tqdm(total=len(todo), desc=desc, unit="input", disable=not self.progress)
        try:
            for _ in range(self.inflight):
                for a in range(len(actors)):
                    if queue:
                        feed(a)
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                a, c = pending.pop(ready[0])
                try:
                    out = ray.get(ready[0])
                except ray.exceptions.RayActorError as err:
                    self._drain(ray, pending, chunks, collect)  # keep whatever else already finished
                    self.close()  # a permanently dead actor must not be reused
                    where = f" Results so far are in {os.fspath(self.output_dir)!r}; rerun to resume." \
                        if self.output_dir is not None else " Set output_dir to make runs resumable."
                    raise RuntimeError(f"A Ray worker died and its chunk failed after max_retries="
                                       f"{self.max_retries} retries: {err}.{where}") from err
                collect(chunks[c], out)
                bar.update(len(chunks[c]))
                if queue:
                    feed(a)
        finally:
            bar.close()
            if not self._keep:
                self.close()

    def _actors(self, ray, plan: dict[str, Any]) -> list:
        """``plan["workers"]`` actors: the kept pool when it fits, else a new pool."""
        key = (self.cpus_per_worker, plan["gpu"], plan["threads"], self.max_retries, self.deterministic_kernels)
        pool = self._pool
        if pool is None or pool["key"] != key or len(pool["actors"]) < plan["workers"]:
            self.close()
            need = {"CPU": plan["workers"] * self.cpus_per_worker, "GPU": plan["workers"] if plan["gpu"] else 0}
            deadline = time.monotonic() + 10.0  # actors just killed (ray.kill is asynchronous) free up soon
            while True:
                available = ray.available_resources()
                if all(available.get(k, 0.0) + 1e-9 >= v for k, v in need.items()) or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            if not all(available.get(k, 0.0) + 1e-9 >= v for k, v in need.items()):
                logger.warning("The Ray cluster has %s free; %d worker(s) will wait for resources (another "
                               "RayBackend kept open with `with`?).", available, plan["workers"])
            options = {"num_cpus": self.cpus_per_worker, "num_gpus": 1 if plan["gpu"] else 0,
                       "max_restarts": self.max_retries, "max_task_retries": self.max_retries}
            worker_cls = ray.remote(_Worker)
            actors = [worker_cls.options(**options).remote(plan["threads"], self.deterministic_kernels)
                      for _ in range(plan["workers"])]
            self._pool = {"key": key, "actors": actors}
        return self._pool["actors"][:plan["workers"]]

    @staticmethod
    def _drain(ray, pending: dict, chunks: list, collect) -> None:
        """Collect the chunks that finished successfully (before a failure is raised)."""
        ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
        for ref in ready:
            _, c = pending.pop(ref)
            try:
                collect(chunks[c], ray.get(ref))
            except ray.exceptions.RayError:
                pass


# ---------------------------------------------------------------------- certificates from rows
def _certificate_setup(smoothed, n: int, n0, norm, method, form: str, box: bool, deterministic: bool) -> dict:
    """The scalar fields of the :class:`CertificationResult` the local path would return."""
    from art_smoothing.certificates.norms import parse_norm

    if deterministic:
        raise ValueError("deterministic=True (exact smoothing) is not supported by the Ray backend; use "
                         "backend='local'.")
    use_box = bool(box) and smoothed.clip_values is not None and any(
        s.box for s in smoothed.noise._certificates.values())
    clip = None
    if use_box:
        clip = tuple(float(v) for v in np.broadcast_to(np.asarray(smoothed.clip_values, dtype=np.float64), (2,)))
    return {"norm": smoothed.noise.norm if norm is None else parse_norm(norm), "method": method, "form": form,
            "n": n, "n0": smoothed.sample_size if n0 is None else n0, "box": use_box, "clip_values": clip}


def _certificate_fingerprint(smoothed, setup: dict) -> dict:
    return {**setup, "alpha": smoothed.alpha, "noise": repr(smoothed.noise), "estimator": type(smoothed).__name__}


def _certificate_from_rows(smoothed, setup: dict, done: dict[int, dict], n_inputs: int):
    """The :class:`CertificationResult` of all inputs from their records (index → fields)."""
    from art_smoothing.estimator import CertificationResult

    if len(done) < n_inputs:  # pragma: no cover - _run_chunks raises before this can happen
        raise RuntimeError(f"{n_inputs - len(done)} input(s) have no result.")
    dtypes = {"prediction": np.int64, "radius": np.float64, "p_a_lower": np.float64, "p_b_upper": np.float64,
              "counts": np.int64, "counts_selection": np.int64}
    arrays = {}
    for f in _CERTIFY_FIELDS:
        shape = (n_inputs, smoothed.nb_classes) if f.startswith("counts") else (n_inputs,)
        arrays[f] = np.asarray([done[i][f] for i in range(n_inputs)], dtype=dtypes[f]).reshape(shape)
    return CertificationResult(**arrays, **setup, alpha=smoothed.alpha, noise=smoothed.noise,
                               dim=smoothed.input_dim, seed=smoothed.seed)


# ---------------------------------------------------------------------- worker side
@dataclass
class _EstimatorPayload:
    """What a worker needs to rebuild the smoothed estimator on its own device.

    ART's ``PyTorchClassifier`` pickles its weights through a file in ``ART_DATA_PATH`` on the
    pickling machine, which a worker on another machine cannot read; so the model module itself
    (weights on the CPU) and the wrapper's constructor arguments travel instead."""

    kind: str
    model: Any
    classifier_kwargs: dict[str, Any]
    smoothing_kwargs: dict[str, Any]

    @classmethod
    def from_estimator(cls, smoothed) -> _EstimatorPayload:
        from art_smoothing.estimator import NumpySmoothedClassifier, SmoothedClassifier

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
                "loss": base._loss, "input_shape": tuple(base.input_shape), "nb_classes": base.nb_classes,
                "channels_first": base.channels_first, "clip_values": base.clip_values,
                "preprocessing_defences": base.preprocessing_defences,
                "postprocessing_defences": base.postprocessing_defences, "preprocessing": preprocessing,
            }
            smoothing["eot_samples"] = smoothed.eot_samples
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
        from art_smoothing.estimator import SmoothedClassifier

        if self.kind == "torch":
            from art.estimators.classification import PyTorchClassifier

            base = PyTorchClassifier(model=self.model, device_type=device_type, **self.classifier_kwargs)
            return SmoothedClassifier(base, **self.smoothing_kwargs)
        return SmoothedClassifier(self.model, **self.smoothing_kwargs)


class _Worker:
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

    def certify(self, payload_ref: list, x: np.ndarray, seed: int, n: int, batch_size: int,
                kwargs: dict) -> dict[str, np.ndarray]:
        estimator = self._get(payload_ref)
        estimator.seed = seed
        x = np.array(x)  # object-store arrays are read-only views
        result = estimator.certify_detailed(x, n, batch_size, verbose=False, **kwargs)
        return {f: getattr(result, f) for f in _CERTIFY_FIELDS}

    def evaluate(self, payload: list, x: np.ndarray, labels: np.ndarray, eps_max, seed: int, gradient_calls: int,
                 args: dict) -> dict[str, np.ndarray]:
        from art_smoothing.attacks.pgd import SmoothedPGD
        from art_smoothing.evaluation import _certify_and_attack

        estimator = self._get(payload)
        estimator.seed = seed
        estimator._gradient_calls = gradient_calls  # every chunk starts where the driver's counter is
        attack = SmoothedPGD(estimator, **args["attack"])
        cert, details = _certify_and_attack(
            estimator, np.array(x), labels, args["p"], attack, n=args["n"], n0=args["n0"],
            batch_size=args["batch_size"], eps_max=eps_max, search_steps=args["search_steps"],
            n_predict=args["n_predict"], certify_kwargs=args["certify_kwargs"])
        out = {f: getattr(cert, f) for f in _CERTIFY_FIELDS}
        out.update(empirical_radius=details.radius, predict_calls=details.predict_calls, eps_max=details.eps_max)
        return out

    def stats(self) -> dict[str, Any]:
        """Process id, estimator builds so far, device and torch threads (for logs and tests)."""
        device = None if self.estimator is None else str(self.estimator.device)
        return {"pid": os.getpid(), "loads": self.loads, "device": device, "threads": torch.get_num_threads()}


# ---------------------------------------------------------------------- resume store
def _array_digest(x: np.ndarray) -> str:
    h = hashlib.sha256(repr((x.shape, str(x.dtype))).encode())
    h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()


def _model_digest(smoothed) -> str:
    """A hash of the base model's weights (or, for non-torch models, of their pickle)."""
    h = hashlib.sha256()
    model = getattr(smoothed, "model", None)
    if isinstance(model, torch.nn.Module):
        for name, t in model.state_dict().items():
            h.update(name.encode())
            h.update(t.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
        return h.hexdigest()
    try:
        h.update(pickle.dumps(smoothed.base_classifier))
    except (pickle.PicklingError, TypeError, AttributeError):  # unpicklable: the type (weaker check)
        h.update(type(smoothed.base_classifier).__qualname__.encode())
    return h.hexdigest()


class _ResultStore:
    """``<task>.jsonl`` (one line per finished input) and ``<task>.meta.json`` (fingerprint, base seed)."""

    def __init__(self, directory: str, task: str, fingerprint: dict, seed: int, *, user_seed: int | None,
                 n_inputs: int):
        if os.path.exists(directory) and not os.path.isdir(directory):
            raise ValueError(f"output_dir {directory!r} exists and is not a directory.")
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, f"{task}.jsonl")
        self.meta_path = os.path.join(directory, f"{task}.meta.json")
        self.n_inputs = n_inputs
        fingerprint = json.loads(json.dumps(fingerprint))  # tuples → lists, as read back
        if os.path.exists(self.meta_path):
            with open(self.meta_path) as fh:
                meta = json.load(fh)
            old = meta.get("fingerprint", {})
            differ = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
            if differ:
                raise ValueError(f"output_dir {directory!r} holds {task} results of a different run (differs in: "
                                 f"{', '.join(differ)}); use another directory or delete it.")
            if user_seed is not None and meta["seed"] != user_seed:
                raise ValueError(f"output_dir {directory!r} was written with seed {meta['seed']}, but the "
                                 f"estimator's seed is {user_seed}; results would not be reproducible.")
            self.seed = int(meta["seed"])
        else:
            self.seed = int(seed)
            tmp = self.meta_path + ".tmp"
            with open(tmp, "w") as fh:
                json.dump({"fingerprint": fingerprint, "seed": self.seed, "n_inputs": n_inputs}, fh, indent=1)
            os.replace(tmp, self.meta_path)

    def load(self) -> dict[int, dict]:
        """Records already written, by index; a torn last line (crash mid-write) is dropped."""
        done: dict[int, dict] = {}
        if not os.path.exists(self.path):
            return done
        with open(self.path, "rb") as fh:
            data = fh.read()
        if data and not data.endswith(b"\n"):  # cut the torn tail so appends start on a fresh line
            keep = data.rfind(b"\n") + 1
            with open(self.path, "r+b") as fh:
                fh.truncate(keep)
            logger.warning("Dropped a partly written line at the end of %s.", self.path)
            data = data[:keep]
        for line in data.decode().splitlines():
            try:
                rec = json.loads(line)
                i = int(rec["index"])
            except (ValueError, KeyError, TypeError):
                logger.warning("Skipping an unreadable line in %s.", self.path)
                continue
            if 0 <= i < self.n_inputs:
                done.setdefault(i, rec)
        return done

    def append(self, records: list[dict]) -> None:
        text = "".join(json.dumps(r) + "\n" for r in records)
        with open(self.path, "a") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
