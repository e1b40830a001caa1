"""The smoothing engine: what a smoothed classifier is made of, as public API for the floors above it.

* :mod:`~art_smoothing.engine.streams` — random streams by stage and key, the shared noise blocks;
* :mod:`~art_smoothing.engine.core` — :class:`SmoothingEngine`: noise draws, vote counting, PREDICT and
  CERTIFY (Cohen et al., 2019), run from a validated :class:`CertifyPlan` (:mod:`~art_smoothing.engine.plan`)
  into a :class:`CertificationResult` (:mod:`~art_smoothing.engine.result`);
* :mod:`~art_smoothing.engine.eot` — EOT gradients of the smoothed classifier (what ``loss_gradient``,
  the attacks and SmoothAdv use);
* :mod:`~art_smoothing.engine.fitting` — the one training loop under the noise (``fit`` and every trainer);
* :mod:`~art_smoothing.engine.backends` — the ``backend=`` switch as a protocol higher floors register into.

The ART estimators (:mod:`art_smoothing.estimator`) are thin adapters over it; ``docs/architecture.md``
shows the floors.
"""

from art_smoothing.engine.backends import Backend, register_backend, resolve_backend
from art_smoothing.engine.core import SmoothingEngine
from art_smoothing.engine.plan import CertifyPlan
from art_smoothing.engine.result import CertificationResult, accuracy_at_radii
from art_smoothing.engine.streams import Stage, stream_seed

__all__ = [
    "Backend",
    "CertificationResult",
    "CertifyPlan",
    "SmoothingEngine",
    "Stage",
    "accuracy_at_radii",
    "register_backend",
    "resolve_backend",
    "stream_seed",
]
