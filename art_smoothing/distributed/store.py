"""Resumable per-input results of a chunked run, local or on Ray (``<task>.jsonl`` + ``<task>.meta.json``), and
the digests that fingerprint a run: inputs, model weights. See ``docs/distributed.md`` (Resume)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle

import numpy as np
import torch

from art_smoothing.storage import atomic_write_text

logger = logging.getLogger(__name__)

__all__ = ["DifferentRunError", "ResultStore", "array_digest", "model_digest", "stored_chunk_size"]


def array_digest(x: np.ndarray) -> str:
    h = hashlib.sha256(repr((x.shape, str(x.dtype))).encode())
    h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()


def model_digest(smoothed) -> str:
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


class DifferentRunError(ValueError):
    """The results in a directory belong to another run: ``differ`` names the fingerprint keys that differ
    (``["seed"]`` for another seed)."""

    def __init__(self, message: str, differ: list[str]):
        super().__init__(message)
        self.differ = list(differ)


def _meta_path(directory: str | os.PathLike, task: str) -> str:
    return os.path.join(os.fspath(directory), f"{task}.meta.json")


def stored_chunk_size(directory: str | os.PathLike | None, task: str) -> int | None:
    """The chunk size a run recorded in ``directory`` for ``task`` (None: no run there, or none recorded)."""
    if directory is None or not os.path.isfile(_meta_path(directory, task)):
        return None
    with open(_meta_path(directory, task), encoding="utf-8") as fh:
        size = json.load(fh).get("chunk_size")
    return None if size is None else int(size)


class ResultStore:
    """``<task>.jsonl`` (one line per finished input, a chunk's lines in one write) and ``<task>.meta.json``
    (fingerprint, base seed, the chunk size of the run's first call).

    :raises DifferentRunError: the directory holds results of another run of ``task`` (other fingerprint or
        another seed)."""

    def __init__(self, directory: str, task: str, fingerprint: dict, seed: int, *, user_seed: int | None,
                 n_inputs: int, chunk_size: int | None = None):
        if os.path.exists(directory) and not os.path.isdir(directory):
            raise ValueError(f"output_dir {directory!r} exists and is not a directory.")
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, f"{task}.jsonl")
        self.meta_path = _meta_path(directory, task)
        self.n_inputs = n_inputs
        fingerprint = json.loads(json.dumps(fingerprint))  # tuples → lists, as read back
        if os.path.exists(self.meta_path):
            with open(self.meta_path) as fh:
                meta = json.load(fh)
            old = meta.get("fingerprint", {})
            differ = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
            if differ:
                raise DifferentRunError(f"output_dir {directory!r} holds {task} results of a different run (differs "
                                        f"in: {', '.join(differ)}); use another directory or delete it.", differ)
            if user_seed is not None and meta["seed"] != user_seed:
                raise DifferentRunError(f"output_dir {directory!r} was written with seed {meta['seed']}, but the "
                                        f"estimator's seed is {user_seed}; results would not be reproducible.",
                                        ["seed"])
            self.seed = int(meta["seed"])
        else:
            self.seed = int(seed)
            meta = {"fingerprint": fingerprint, "seed": self.seed, "n_inputs": n_inputs, "chunk_size": chunk_size}
            atomic_write_text(self.meta_path, json.dumps(meta, indent=1))

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
