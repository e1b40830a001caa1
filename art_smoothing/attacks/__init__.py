"""Attacks on smoothed classifiers: EOT gradients (``eot``), PGD with EOT (``SmoothedPGD``) and the
per-input empirical radius (``empirical_radius``)."""

from art_smoothing.attacks.eot import draw_noise, log_prob_gradient, smoothed_log_probs
from art_smoothing.attacks.pgd import SmoothedPGD
from art_smoothing.attacks.radius import EmpiricalRadius, empirical_radius

__all__ = [
           "EmpiricalRadius",
           "SmoothedPGD",
           "draw_noise",
           "empirical_radius",
           "log_prob_gradient",
           "smoothed_log_probs",
]
