"""Attacks on smoothed classifiers: EOT gradients, PGD, empirical radius."""

from art_smoothing.attacks.eot import draw_noise, log_prob_gradient, smoothed_log_probs

__all__ = ["draw_noise", "log_prob_gradient", "smoothed_log_probs"]
