"""Chunked backends: CERTIFY and evaluation cut into chunks of inputs with resumable per-input results —
:class:`LocalBackend` in this process, :class:`RayBackend` over many workers and machines (bit-identical to
the single-process result). ``ray`` is imported only when a Ray run starts.

Importing this package registers ``backend="ray"`` with the engine (:mod:`art_smoothing.engine.backends`);
``import art_smoothing`` does that. Design: ``docs/distributed.md``.
"""

from art_smoothing.distributed.backend import RayBackend
from art_smoothing.distributed.chunked import ChunkedBackend
from art_smoothing.distributed.local import (
    DEFAULT_LOCAL_CHUNK_SIZE,
    DEFAULT_LOCAL_EVALUATE_CHUNK_SIZE,
    LocalBackend,
)
from art_smoothing.distributed.store import DifferentRunError
from art_smoothing.engine.backends import register_backend, resolve_backend

register_backend("ray", RayBackend)

__all__ = ["DEFAULT_LOCAL_CHUNK_SIZE", "DEFAULT_LOCAL_EVALUATE_CHUNK_SIZE", "ChunkedBackend", "DifferentRunError",
           "LocalBackend", "RayBackend",
           "resolve_backend"]
