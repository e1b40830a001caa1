"""What every chunked backend shares: a call of CERTIFY or of the attack-vs-certificate evaluation is cut into
chunks of inputs, each run by the per-chunk functions of :mod:`art_smoothing.distributed.worker`, and the
driver assembles the chunks' per-input records into the result of the single-process path.

With ``output_dir`` the records go to a :class:`~art_smoothing.distributed.store.ResultStore` as each chunk
finishes, so an interrupted call continues where it stopped (the fingerprint refuses a different run). Chunk
boundaries are fixed by input index — chunk ``i // chunk_size`` — and a chunk is stored whole (one write), so
a resumed run batches its inputs exactly as an uninterrupted one: that matters for the evaluation, whose
attack batches the inputs of a chunk (CERTIFY's votes do not depend on the chunking at all). The chunk size
is the run's: set by its first call (or the backend's default) and reused when a later call leaves it
``None``; for the evaluation it is part of the fingerprint.

:class:`~art_smoothing.distributed.LocalBackend` runs the chunks in this process,
:class:`~art_smoothing.distributed.RayBackend` on Ray actors. Design notes: ``docs/distributed.md``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from art_smoothing.attacks.pgd import SmoothedPGD
from art_smoothing.attacks.radius import make_attack
from art_smoothing.checks import check_positive_array
from art_smoothing.distributed.store import ResultStore, array_digest, model_digest, stored_chunk_size
from art_smoothing.distributed.worker import CERTIFY_FIELDS, EVALUATE_FIELDS, result_fields
from art_smoothing.engine.plan import CertifyPlan
from art_smoothing.engine.result import CertificationResult
from art_smoothing.evaluation import assemble, check_radii

logger = logging.getLogger(__name__)

__all__ = ["ChunkJob", "ChunkedBackend", "fixed_chunks"]


def fixed_chunks(todo, chunk_size: int) -> list[np.ndarray]:
    """The indices ``todo`` grouped by chunk ``i // chunk_size``, in order (a chunk of a resumed run holds
    exactly the inputs it holds in an uninterrupted one, when the stored chunks are whole)."""
    groups: dict[int, list[int]] = {}
    for i in todo:
        groups.setdefault(int(i) // chunk_size, []).append(int(i))
    return [np.asarray(groups[c], dtype=np.int64) for c in sorted(groups)]


def _whole_chunks(done: dict[int, dict], chunk_size: int, n_inputs: int) -> dict[int, dict]:
    """``done`` without the records of chunks stored in part (a write cut short by a crash)."""
    whole = {}
    for i, rec in done.items():
        first = (i // chunk_size) * chunk_size
        if all(j in done for j in range(first, min(first + chunk_size, n_inputs))):
            whole[i] = rec
    if len(whole) < len(done):
        logger.warning("Dropped %d stored result(s) of chunks saved in part; they are computed again.",
                       len(done) - len(whole))
    return whole


def _plan_fingerprint(estimator, plan: CertifyPlan) -> dict[str, Any]:
    return {**plan.describe(), "estimator": type(estimator).__name__}


def _result_from_rows(estimator, plan: CertifyPlan, done: dict[int, dict], n_inputs: int) -> CertificationResult:
    """The :class:`CertificationResult` of all inputs from their records (index → fields)."""
    dtypes = {"prediction": np.int64, "radius": np.float64, "p_a_lower": np.float64, "p_b_upper": np.float64,
              "counts": np.int64, "counts_selection": np.int64, "n_used": np.int64, "decisions": np.int8}
    shapes = {"counts": (n_inputs, plan.nb_classes), "counts_selection": (n_inputs, plan.nb_classes),
              "decisions": (n_inputs, len(plan.radii or ()))}
    arrays = {f: np.asarray([done[i][f] for i in range(n_inputs)], dtype=dtypes[f]).reshape(shapes.get(f, (n_inputs,)))
              for f in result_fields(CERTIFY_FIELDS, plan)}
    if plan.sequential:
        arrays.update(radii=np.asarray(plan.radii, dtype=np.float64), extra={"looks": list(plan.schedule().looks)})
    return plan.result(**arrays, seed=estimator.seed)


@dataclass
class ChunkJob:
    """One call's work: the task (a name of :data:`~art_smoothing.distributed.worker.CHUNK_TASKS`), the
    driver's estimator with the digest of its weights, the inputs, the base seed and the task's other
    arguments. :meth:`arguments` gives a chunk's arguments of the per-chunk function after the estimator."""

    task: str
    estimator: Any
    model: str
    x: np.ndarray
    seed: int
    plan: CertifyPlan
    labels: np.ndarray | None = None
    eps_max: Any = None
    gradient_calls: int = 0
    args: dict[str, Any] | None = None

    def arguments(self, idx: np.ndarray, put=None) -> tuple:
        """The arguments of chunk ``idx`` (``put`` wraps the inputs, e.g. ``ray.put``). A run of consecutive
        indices is passed as a view of the inputs, as the single-process path sees them: a copy could change
        their strides and with them the memory format, hence the kernels, torch picks."""
        x = self.x[idx[0]:idx[-1] + 1] if len(idx) and idx[-1] - idx[0] + 1 == len(idx) else self.x[idx]
        x = x if put is None else put(x)
        if self.task == "certify":
            return x, self.seed, self.plan
        eps = self.eps_max[idx] if self.eps_max is not None and np.ndim(self.eps_max) == 1 else self.eps_max
        return x, self.labels[idx], eps, self.seed, self.gradient_calls, self.args


class ChunkedBackend:
    """The ``backend=`` protocol (:class:`art_smoothing.engine.backends.Backend`) over chunks of inputs with
    resumable per-input results. A subclass has the attributes ``chunk_size`` (``None``: the run's stored
    size, else :meth:`default_chunk_size`), ``output_dir`` (``None``: nothing stored) and ``progress``, and
    runs the chunks in :meth:`run_chunks`. ``used_chunk_size`` is the size the latest call used."""

    chunk_size: int | None
    output_dir: str | os.PathLike | None
    progress: bool
    used_chunk_size: int | None = None

    # ------------------------------------------------------------------ what a subclass provides
    def default_chunk_size(self, n_inputs: int, task: str = "certify") -> int:
        """Inputs per chunk of a new run of ``n_inputs`` inputs of ``task`` (``"certify"`` or ``"evaluate"``) when
        ``chunk_size`` is None."""
        raise NotImplementedError

    def run_chunks(self, job: ChunkJob, chunks: list[np.ndarray], collect) -> None:
        """Run the per-chunk function of ``job.task`` on every chunk (index arrays) and hand each result, a
        dict of per-input arrays, to ``collect(idx, arrays)`` as soon as it is there."""
        raise NotImplementedError

    # ------------------------------------------------------------------ progress
    def saved(self) -> tuple[int, int]:
        """``(inputs stored, inputs)`` of the latest call, also while it runs or after it failed (``(0, 0)``
        before any call; nothing is stored without ``output_dir``)."""
        return tuple(getattr(self, "_saved", (0, 0)))

    # ------------------------------------------------------------------ CERTIFY
    def certify(self, estimator, x: np.ndarray, plan: CertifyPlan) -> CertificationResult:
        """``estimator.run_certify(x, plan)`` chunk by chunk (the estimator validated ``x`` and built the plan).
        Returns the same :class:`CertificationResult` as the local path (same fields, dtypes and, for a fixed
        seed, values)."""
        if plan.deterministic:
            raise ValueError(f"deterministic=True (exact smoothing) is not supported by {type(self).__name__}; use "
                             "backend='local'.")
        x = np.ascontiguousarray(x, dtype=np.float32)
        model = model_digest(estimator)
        fingerprint = {"task": "certify", "inputs": array_digest(x), "model": model,
                       **_plan_fingerprint(estimator, plan)}
        seed, store, done, size = self._open_store("certify", estimator, fingerprint, len(x))
        job = ChunkJob("certify", estimator, model, x, seed, replace(plan, verbose=False))
        self._run(job, store, done, size, result_fields(CERTIFY_FIELDS, plan))
        return _result_from_rows(estimator, plan, done, len(x))

    # ------------------------------------------------------------------ evaluate
    def evaluate(self, smoothed, x: np.ndarray, labels: np.ndarray, p: float, attack, radii, *, n: int,
                 n0: int | None, batch_size: int, eps_max, search_steps: int, n_predict: int | None,
                 certify_kwargs: dict | None):
        """:func:`art_smoothing.evaluate` chunk by chunk (called by it, arguments validated there): each chunk
        runs CERTIFY and the ε search of its inputs (:func:`art_smoothing.evaluation.certify_and_attack`); the
        driver assembles the records and summary of the local path (:func:`art_smoothing.evaluation.assemble`).

        Per input, the attack's random streams are partition-independent: its EOT draws are shared by all
        inputs and keyed by search round, and every chunk starts from the driver's gradient-call counter. The
        attack's forward/backward passes batch the inputs of a chunk, so empirical radii depend on the chunking
        in the last bits (the kernels of CPU and GPU libraries need not compute each row independently of its
        neighbours), and ``num_random_init > 0`` draws random starts per position in an attack batch: chunks
        fixed by index make a resumed run equal an uninterrupted one with the same chunk size; with
        ``attack={"gradient_batch_size": m}``, ``m`` the EOT draws per gradient (one input per forward pass),
        the evaluation equals the single-process one for any chunking."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        certify_kwargs = dict(certify_kwargs or {})
        unknown = set(certify_kwargs) - {"method", "form", "box", "sequential", "radius", "randomized"}
        if unknown:
            raise ValueError(f"certify_kwargs for {type(self).__name__} may hold method, form, box, sequential, radius "
                             f"and randomized; got {sorted(unknown)}.")
        plan = smoothed.certify_plan(n, batch_size, norm=p, n0=n0, **certify_kwargs)
        atk = make_attack(smoothed, p, attack)
        attack_params = {k: getattr(atk, k) for k in SmoothedPGD.attack_params if hasattr(atk, k)}
        if atk.num_random_init > 0:
            logger.warning("num_random_init=%d: random starts depend on the position of an input in its attack "
                           "batch, so empirical radii depend on how inputs are split.", atk.num_random_init)
        if eps_max is not None:
            eps_max = check_positive_array("eps_max", eps_max, len(x))
        if radii is not None:
            check_radii(radii)
        offset = int(smoothed.gradient_calls)
        args = {"p": p, "n": n, "n0": n0, "batch_size": batch_size, "search_steps": search_steps,
                "n_predict": n_predict, "certify_kwargs": certify_kwargs, "attack": attack_params}
        model = model_digest(smoothed)
        fingerprint = {
            "task": "evaluate", "inputs": array_digest(x), "labels": array_digest(labels), "model": model,
            "attack": repr(sorted((k, repr(v)) for k, v in attack_params.items())),
            "eps_max": None if eps_max is None else array_digest(np.asarray(eps_max, dtype=np.float64)),
            "search_steps": search_steps, "n_predict": n_predict, "gradient_calls": offset,
            **_plan_fingerprint(smoothed, plan),
        }
        seed, store, done, size = self._open_store("evaluate", smoothed, fingerprint, len(x), chunked_results=True)
        job = ChunkJob("evaluate", smoothed, model, x, seed, plan, labels=labels, eps_max=eps_max,
                       gradient_calls=offset, args=args)
        self._run(job, store, done, size, result_fields(EVALUATE_FIELDS, plan))
        cert = _result_from_rows(smoothed, plan, done, len(x))
        per_input = {f: np.asarray([done[i][f] for i in range(len(x))], dtype=np.float64 if f != "predict_calls"
                                   else np.int64) for f in ("empirical_radius", "predict_calls", "eps_max")}
        if len(x):  # as after a local run: one gradient call per search round that attacked something
            smoothed.gradient_calls = offset + int(per_input["predict_calls"].max()) - 1
        return assemble(smoothed, p, n, repr(atk), labels, cert, per_input["empirical_radius"],
                        per_input["predict_calls"], per_input["eps_max"], radii, search_steps, n_predict)

    # ------------------------------------------------------------------ machinery
    def _open_store(self, task: str, smoothed, fingerprint: dict, n_inputs: int, chunked_results: bool = False):
        """``(base seed, store or None, results already stored by index, chunk size)``. ``chunked_results``:
        the task's results depend on the chunking, so the chunk size is fingerprinted and chunks stored in part
        are dropped."""
        seed = smoothed.call_seed()
        size = (self.chunk_size or stored_chunk_size(self.output_dir, task)
                or self.default_chunk_size(n_inputs, task))
        if chunked_results:
            fingerprint = {**fingerprint, "chunk_size": size}
        self.used_chunk_size = size
        self._saved = [0, n_inputs]
        if self.output_dir is None:
            return seed, None, {}, size
        store = ResultStore(os.fspath(self.output_dir), task, fingerprint, seed, user_seed=smoothed.seed,
                            n_inputs=n_inputs, chunk_size=size)
        done = store.load()
        if chunked_results:
            done = _whole_chunks(done, size, n_inputs)
        self._saved = [len(done), n_inputs]
        return store.seed, store, done, size

    def _run(self, job: ChunkJob, store, done: dict[int, dict], size: int, fields: tuple[str, ...]) -> None:
        """Run the chunks of the inputs not in ``done``; as each chunk's arrays arrive, its ``fields`` go into
        ``done`` (index → record) and, in one write, the store."""
        n_inputs = len(job.x)
        todo = [i for i in range(n_inputs) if i not in done]
        logger.info("%s (%s): %d input(s), %d already done, chunks of %d, base seed %d.", job.task,
                    type(self).__name__, n_inputs, n_inputs - len(todo), size, job.seed)
        if not todo:
            return

        def collect(idx: np.ndarray, arrays: dict[str, np.ndarray]) -> None:
            records = [{"index": int(i), **{f: arrays[f][row].tolist() for f in fields}} for row, i in enumerate(idx)]
            if store is not None:
                store.append(records)
                self._saved[0] += len(records)
            for rec in records:
                done[rec["index"]] = rec

        self.run_chunks(job, fixed_chunks(todo, size), collect)
