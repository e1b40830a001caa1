"""The Ray backend: CERTIFY and the attack-vs-certificate evaluation over many workers and machines, giving
the single-process result bit for bit (``pip install art_smoothing[distributed]``)::

    smoothed.certify(x, n=10_000, backend="ray")
    art_smoothing.evaluate(smoothed, x, y, n=10_000, backend=RayBackend(num_workers=8, output_dir="runs/c10"))

Design (random streams, actors, retries, resume, bit-identity caveats): ``docs/distributed.md``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from art_smoothing.checks import check_int
from art_smoothing.distributed.chunked import ChunkedBackend, ChunkJob
from art_smoothing.distributed.worker import EstimatorPayload, Worker

logger = logging.getLogger(__name__)

__all__ = ["RayBackend"]


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ImportError("backend='ray' needs Ray: pip install 'art_smoothing[distributed]'.") from None
    return ray


@dataclass
class RayBackend(ChunkedBackend):
    """Where and how to run on Ray. Every field has a working default for a local machine. Chunking, the
    resumable results and the assembly are :class:`~art_smoothing.distributed.chunked.ChunkedBackend`'s.

    :param address: ``None`` starts a local Ray (or joins the cluster in ``RAY_ADDRESS``); ``"auto"``
        or ``"ray://host:port"`` joins an existing cluster. An already initialised Ray is reused.
    :param num_workers: actors to start (default: one per GPU if the cluster has GPUs, otherwise
        ``CPUs // cpus_per_worker``). Never more than there are chunks.
    :param cpus_per_worker: CPUs reserved per actor (fractions allowed, e.g. 0.5).
    :param use_gpus: one GPU per actor; ``None`` = whenever ``ray.cluster_resources()`` lists GPUs.
    :param num_threads: torch intra-op threads per actor (default ``max(1, int(cpus_per_worker))``).
        Bit-identity with a local run needs the same thread count there.
    :param chunk_size: inputs per task, chunks fixed by index (default: the run's stored size, else about four
        chunks per worker, at most 64). CERTIFY's results do not depend on it, the evaluation's attack batches
        a chunk's inputs; smaller chunks mean finer progress/resume, larger ones less overhead.
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

    def worker_stats(self) -> list[dict[str, Any]]:
        """Process id, estimator builds, device and torch threads of each worker kept by ``with`` (empty
        otherwise): what a user checks to see that the model travelled once per worker."""
        if self._pool is None:
            return []
        ray = _import_ray()
        return ray.get([actor.stats.remote() for actor in self._pool["actors"]])

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
        self.num_workers = check_int("num_workers", self.num_workers, allow_none=True)
        self.num_threads = check_int("num_threads", self.num_threads, allow_none=True)
        self.chunk_size = check_int("chunk_size", self.chunk_size, allow_none=True)
        self.inflight = check_int("inflight", self.inflight)
        try:
            cpus = float(self.cpus_per_worker)
        except (TypeError, ValueError):
            cpus = float("nan")
        if isinstance(self.cpus_per_worker, bool) or not math.isfinite(cpus) or cpus <= 0:
            raise ValueError(f"cpus_per_worker must be a number > 0, got {self.cpus_per_worker!r}.")
        self.cpus_per_worker = cpus
        if self.use_gpus is not None and not isinstance(self.use_gpus, bool):
            raise ValueError(f"use_gpus must be True, False or None, got {self.use_gpus!r}.")
        self.max_retries = check_int("max_retries", self.max_retries, minimum=-1)
        if not isinstance(self.init_kwargs, dict):
            raise ValueError(f"init_kwargs must be a dict, got {self.init_kwargs!r}.")  # noqa: TRY004

    # ------------------------------------------------------------------ chunks on Ray actors
    def default_chunk_size(self, n_inputs: int, task: str = "certify") -> int:
        """About four chunks per worker, at most 64 inputs (starts or joins Ray to count the workers)."""
        ray = _import_ray()
        self._ensure_ray(ray)
        workers = self._plan(ray, n_chunks=max(n_inputs, 1))["workers"]
        return max(1, min(64, math.ceil(n_inputs / (4 * workers))))

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

    def run_chunks(self, job: ChunkJob, chunks: list[np.ndarray], collect) -> None:
        """Run the chunks on a pool of actors (the actor method named ``job.task``), handing each to whichever
        actor finishes first; ``collect`` gets each chunk's arrays as they arrive.

        The estimator travels as ``payload = [key, ref]``: put in the object store once, with a hash of its
        weights and parameters. Nested in a list, the reference is not resolved per task: an actor fetches
        it only when it holds no estimator with that key (first task, after a restart, or a changed model
        in a kept pool), so the model travels once per worker. The driver holds the reference for the whole
        run, so a restarted actor can always fetch it."""
        ray = _import_ray()
        self._ensure_ray(ray)
        plan = self._plan(ray, n_chunks=len(chunks))
        payload_obj = EstimatorPayload.from_estimator(job.estimator)
        payload = [payload_obj.key(job.model), ray.put(payload_obj)]
        actors = self._actors(ray, plan)
        logger.info("%d Ray worker(s) (%s, %d thread(s) each), %d chunk(s) of <= %d input(s).", len(actors),
                    "one GPU each" if plan["gpu"] else f"{self.cpus_per_worker:g} CPU each", plan["threads"],
                    len(chunks), len(chunks[0]))
        queue = deque(range(len(chunks)))
        pending: dict[Any, tuple[int, int]] = {}

        def feed(a: int) -> None:
            c = queue.popleft()
            method = getattr(actors[a], job.task)
            pending[method.remote(payload, *job.arguments(chunks[c], put=ray.put))] = (a, c)

        bar = tqdm(total=sum(len(c) for c in chunks), desc=f"{job.task} (ray)", unit="input",
                   disable=not self.progress)
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
            worker_cls = ray.remote(Worker)
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


