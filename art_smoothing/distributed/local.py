"""The local chunked backend: CERTIFY and the attack-vs-certificate evaluation in this process, cut into chunks
fixed by input index and stored as they finish, so that an interrupted run continues where it stopped::

    backend = LocalBackend(output_dir="runs/c10")
    art_smoothing.evaluate(smoothed, x, y, n=10_000, backend=backend)   # Ctrl-C, then the same call again

Each chunk runs exactly what a Ray worker runs (:func:`~art_smoothing.distributed.worker.certify_chunk`,
:func:`~art_smoothing.distributed.worker.evaluate_chunk`) on the caller's estimator, so a run started here may
be resumed on Ray and the other way round. See :mod:`art_smoothing.distributed.chunked`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from art_smoothing.checks import check_int
from art_smoothing.distributed.chunked import ChunkedBackend, ChunkJob
from art_smoothing.distributed.worker import CHUNK_TASKS

__all__ = ["DEFAULT_LOCAL_CHUNK_SIZE", "DEFAULT_LOCAL_EVALUATE_CHUNK_SIZE", "LocalBackend"]

#: inputs per chunk of a new local CERTIFY run when ``chunk_size`` is None
DEFAULT_LOCAL_CHUNK_SIZE = 8
#: inputs per chunk of a new local evaluation: its attack batches a chunk's inputs, and chunks of 8 made a
#: default CLI evaluation of 64 inputs 14 % slower than one chunk; 32 is within 3 % of it. (The CSV was identical
#: for 8, 32 and 64 there; in general the attack's radii may differ in the last bits between chunk sizes, so the
#: size is part of a run's fingerprint.)
DEFAULT_LOCAL_EVALUATE_CHUNK_SIZE = 32


@dataclass
class LocalBackend(ChunkedBackend):
    """Chunks of inputs run in this process, one after the other, with resumable per-input results.

    :param output_dir: directory of the per-input results (``<task>.jsonl`` and ``<task>.meta.json``); the
        same call again skips the inputs already there, a different run is refused. ``None``: nothing stored.
    :param chunk_size: inputs per chunk, chunks fixed by index (default: the run's stored size, else
        :data:`DEFAULT_LOCAL_CHUNK_SIZE`, :data:`DEFAULT_LOCAL_EVALUATE_CHUNK_SIZE` for the evaluation). A chunk is
        stored whole; at most one chunk is lost on an interrupt.
        The evaluation's attack batches a chunk's inputs (larger chunks, fewer and larger forward passes).
    :param progress: a tqdm bar over inputs.
    """

    output_dir: str | os.PathLike | None = None
    chunk_size: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        self.chunk_size = check_int("chunk_size", self.chunk_size, allow_none=True)

    def default_chunk_size(self, n_inputs: int, task: str = "certify") -> int:
        return DEFAULT_LOCAL_EVALUATE_CHUNK_SIZE if task == "evaluate" else DEFAULT_LOCAL_CHUNK_SIZE

    def run_chunks(self, job: ChunkJob, chunks: list[np.ndarray], collect) -> None:
        """The per-chunk function of ``job.task`` on the caller's estimator, chunk after chunk. The estimator's
        ``seed`` and ``verbose`` (per-chunk bars off) are restored afterwards, whatever happens."""
        estimator = job.estimator
        kept = (estimator.seed, estimator.verbose)
        run = CHUNK_TASKS[job.task]
        bar = tqdm(total=sum(len(c) for c in chunks), desc=f"{job.task} (local)", unit="input",
                   disable=not self.progress)
        try:
            estimator.verbose = False
            for idx in chunks:
                collect(idx, run(estimator, *job.arguments(idx)))
                bar.update(len(idx))
        finally:
            estimator.seed, estimator.verbose = kept
            bar.close()
