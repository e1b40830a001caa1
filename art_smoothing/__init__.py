"""art_smoothing: randomized smoothing beyond Gaussian/ℓ2 for the Adversarial Robustness Toolbox."""

from art_smoothing.estimator import CertificationResult, NumpySmoothedClassifier, SmoothedClassifier
from art_smoothing.evaluation import evaluate

__version__ = "0.1.0"

__all__ = ["SmoothedClassifier", "NumpySmoothedClassifier", "CertificationResult", "evaluate", "__version__"]
