"""Attacks on smoothed classifiers: PGD with Expectation over Transformation (``SmoothedPGD``) and the
per-input empirical radius (``empirical_radius``). The EOT gradients they use are the estimator's own
(:mod:`art_smoothing.engine.eot`, re-exported here)."""

from art_smoothing.attacks.pgd import SmoothedPGD
from art_smoothing.attacks.radius import EmpiricalRadius, empirical_radius
from art_smoothing.engine.eot import draw_noise, log_prob_gradient, smoothed_log_probs

__all__ = [
           "EmpiricalRadius",
           "SmoothedPGD",
           "draw_noise",
           "empirical_radius",
           "log_prob_gradient",
           "smoothed_log_probs",
]
