"""Where a certification runs: the ``backend=`` switch of ``certify`` and ``evaluate``, as a protocol at the
engine's floor that higher floors register into.

``backend="local"`` runs in this process. Any other backend is an object with the methods of
:class:`Backend`; a name (such as ``"ray"``) is looked up among the factories registered with
:func:`register_backend` — :mod:`art_smoothing.distributed` registers ``"ray"`` when it is imported, and
``import art_smoothing`` imports it (without importing Ray itself). The engine therefore offers the switch
without importing anything above it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from art_smoothing.engine.plan import CertifyPlan
    from art_smoothing.engine.result import CertificationResult

__all__ = ["Backend", "register_backend", "registered_backends", "resolve_backend"]


@runtime_checkable
class Backend(Protocol):
    """What a backend provides: CERTIFY of a validated plan on its own workers, and the per-input
    attack-vs-certificate evaluation (:func:`art_smoothing.evaluate`)."""

    def certify(self, estimator: Any, x: np.ndarray, plan: CertifyPlan) -> CertificationResult:
        """The result ``estimator.run_certify(x, plan)`` would give in this process."""

    def evaluate(self, smoothed: Any, x: np.ndarray, labels: np.ndarray, norm: float, attack: Any, radii: Any,
                 **kwargs: Any) -> Any:
        """The :class:`~art_smoothing.evaluation.Evaluation` the local path would give."""


_FACTORIES: dict[str, Callable[[], Backend]] = {}


def register_backend(name: str, factory: Callable[[], Backend]) -> None:
    """Make ``backend=name`` build a backend with ``factory()`` (called once per use)."""
    if not isinstance(name, str) or not name or name == "local":
        raise ValueError(f"A backend name must be a non-empty string other than 'local', got {name!r}.")
    _FACTORIES[name] = factory


def registered_backends() -> list[str]:
    """The names ``backend=`` accepts: ``"local"`` and every registered one."""
    return ["local", *sorted(_FACTORIES)]


def resolve_backend(backend: Any) -> Backend | None:
    """``"local"`` → ``None`` (run here); a registered name → a new backend of that kind; a backend object →
    itself; anything else → ``ValueError``."""
    if isinstance(backend, str):
        if backend == "local":
            return None
        if backend in _FACTORIES:
            return _FACTORIES[backend]()
    elif isinstance(backend, Backend):
        return backend
    names = ", ".join(repr(b) for b in registered_backends())
    raise ValueError(f"backend must be one of {names} or a backend object (e.g. art_smoothing.distributed.RayBackend), "
                     f"got {backend!r}.")
