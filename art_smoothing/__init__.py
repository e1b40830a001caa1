"""art_smoothing: randomized smoothing beyond Gaussian/ℓ2 for the Adversarial Robustness Toolbox.

The package's floors, imports pointing down (``docs/architecture.md``): ``noise``, ``certificates`` →
``engine``, ``estimator`` → ``attacks``, ``training`` → ``evaluation`` → ``distributed`` → ``cli``.
"""

from art_smoothing.distributed import RayBackend  # registers backend="ray" (Ray itself is imported lazily)
from art_smoothing.estimator import CertificationResult, NumpySmoothedClassifier, SmoothedClassifier
from art_smoothing.evaluation import evaluate

__version__ = "0.2.0"

__all__ = ["SmoothedClassifier", "NumpySmoothedClassifier", "CertificationResult", "RayBackend", "evaluate",
           "__version__"]
