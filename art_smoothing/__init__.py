"""art_smoothing: randomized smoothing beyond Gaussian/ℓ2 for the Adversarial Robustness Toolbox."""

from art_smoothing.estimator import CertificationResult, NumpySmoothedClassifier, SmoothedClassifier

__version__ = "0.1.0"

__all__ = ["SmoothedClassifier", "NumpySmoothedClassifier", "CertificationResult", "__version__"]
