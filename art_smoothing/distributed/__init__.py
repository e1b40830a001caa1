"""The Ray backend (:class:`RayBackend`): CERTIFY and evaluation over many workers and machines, bit-identical
to the single-process result; resumable with ``output_dir``. ``ray`` is imported only when a run starts.

Importing this package registers ``backend="ray"`` with the engine (:mod:`art_smoothing.engine.backends`);
``import art_smoothing`` does that. Design: ``docs/distributed.md``.
"""

from art_smoothing.distributed.backend import RayBackend
from art_smoothing.engine.backends import register_backend, resolve_backend

register_backend("ray", RayBackend)

__all__ = ["RayBackend", "resolve_backend"]
