"""Isotropic Gaussian noise N(0, σ² I) and its ℓ2 certificate (Cohen et al., 2019)."""

from __future__ import annotations

import torch

from art_smoothing.noise.base import Noise, certificate, check_positive

__all__ = ["GaussianNoise"]


class GaussianNoise(Noise):
    """N(0, σ² I): the baseline of randomized smoothing, certifying ℓ2 balls.

    :param sigma: standard deviation σ > 0 of every coordinate.
    """

    norm = 2.0
    name = "gaussian"

    def __init__(self, sigma: float):
        self.sigma = check_positive("sigma", sigma)

    @property
    def std(self) -> float:
        return self.sigma

    def params(self):
        return {"sigma": self.sigma}

    def _sample(self, size, *, generator, device, dtype):
        return torch.randn(size, generator=generator, device=device, dtype=dtype) * self.sigma

    @certificate("cohen", norm=2)
    def _cohen(self, p_a, p_b, ctx):
        """Cohen, Rosenfeld & Kolter (2019), Theorem 1 (proof in their Appendix A, Neyman–Pearson).

        R = σ/2 (Φ⁻¹(p_a) − Φ⁻¹(p_b)); the binary form (p_b = 1 − p_a) is R = σ Φ⁻¹(p_a).
        Tight for Gaussian noise: for every larger radius there is a (linear) base classifier with
        these probabilities whose smoothed prediction changes (their Theorem 2). Sound as a lower
        bound because it is monotone in the bounds: increasing in p_a, decreasing in p_b.
        """
        if p_b is None:
            return self.sigma * torch.special.ndtri(p_a)
        return 0.5 * self.sigma * (torch.special.ndtri(p_a) - torch.special.ndtri(p_b))
