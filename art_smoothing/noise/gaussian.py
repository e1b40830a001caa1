"""Isotropic Gaussian noise N(0, σ² I), its tight ℓ2 certificate (Cohen et al., 2019) and the
divergence-based ℓ2 certificates compared by Hayes (2020, Table 1) and Lecuyer et al. (2019)."""

from __future__ import annotations

import math

import torch

from art_smoothing.certificates import divergences
from art_smoothing.certificates.variational import GaussianLogRatio, LogRatioModel
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

    def log_ratio_model(self, dim: int, norm=None) -> LogRatioModel | None:
        """The variational engine's model in ℓ2 and ℓ∞ (:class:`GaussianLogRatio`), to cross-check the
        engine against the exact radius of :meth:`_cohen`; ``None`` in other norms."""
        p = self._parse_norm(norm)
        return GaussianLogRatio(self.sigma, dim, p) if p in (2.0, math.inf) else None

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

    # ------------------------------------------------------------------ divergence certificates
    # All are sound but never larger than ``cohen`` (which is tight); they exist for comparison
    # (Hayes, 2020, Section 2.3 and Proposition 1). Formulas, derivations and the corrections made to
    # Hayes' Table 1 are in :mod:`art_smoothing.certificates.divergences` and ``docs/divergences.md``.
    @certificate("kl", norm=2, dominated_by="cohen")
    def _kl(self, p_a, p_b, ctx):
        """KL divergence (Hayes, Table 1, row 1; Li et al., 2019): R = σ √(−2 log(2√(p_a p_b) + 1 − p_a − p_b)).

        KL(N(δ, σ²I) ‖ N(0, σ²I)) = ‖δ‖²/(2σ²); Table 1 prints ‖δ‖²/σ² (the GN(0, σ, 2) convention,
        std σ/√2), which would give a radius √2 too small here.
        """
        return divergences.gaussian_radius("kl", p_a, p_b, self.sigma)

    @certificate("renyi", norm=2, dominated_by="cohen")
    def _renyi(self, p_a, p_b, ctx):
        """Rényi divergence optimised over the order α > 0 (Li et al., 2019, Theorem 1; Hayes, eq. (12)):
        R = sup_α σ √(−(2/α) log(1 − p_a − p_b + 2((p_a^{1−α} + p_b^{1−α})/2)^{1/(1−α)})).
        Li et al. search α > 1; α ∈ (0, 1) is valid as well (α = ½ is the Bhattacharyya radius)."""
        return divergences.gaussian_radius("renyi", p_a, p_b, self.sigma)

    @certificate("chi2", norm=2, dominated_by="cohen")
    def _chi2(self, p_a, p_b, ctx):
        """χ² divergence (Hayes, Table 1, row 3): R = σ √(log((p_a + p_b)/((p_a + p_b) − (p_a − p_b)²)));
        the Rényi certificate at α = 2."""
        return divergences.gaussian_radius("chi2", p_a, p_b, self.sigma)

    @certificate("hellinger", norm=2, dominated_by="cohen")
    def _hellinger(self, p_a, p_b, ctx):
        """Squared Hellinger distance (Hayes, Table 1, row 2): R = σ √(−4 log(1 − (√p_a − √p_b)²/2))."""
        return divergences.gaussian_radius("hellinger", p_a, p_b, self.sigma)

    @certificate("bhattacharyya", norm=2, dominated_by="cohen")
    def _bhattacharyya(self, p_a, p_b, ctx):
        """Bhattacharyya distance (Hayes, Table 1, row 4): the same radius as Hellinger (both are
        monotone functions of the Bhattacharyya coefficient; Hayes' Proposition 1.4)."""
        return divergences.gaussian_radius("bhattacharyya", p_a, p_b, self.sigma)

    @certificate("tv", norm=2, dominated_by="cohen")
    def _tv(self, p_a, p_b, ctx):
        """Total variation (Hayes, Table 1, row 5, **corrected**): R = 2σ Φ⁻¹(½ + (p_a − p_b)/4).
        Table 1 prints 2σ Φ⁻¹(½ + |p_1 − p_2|/2), which over-claims (≈ 2× Cohen's tight radius near
        p_a = ½): TV(N(δ), N(0)) = 2Φ(‖δ‖/2σ) − 1 must stay below the flip bound (p_a − p_b)/2."""
        return divergences.gaussian_radius("tv", p_a, p_b, self.sigma)

    @certificate("lecuyer_dp", norm=2, dominated_by="cohen")
    def _lecuyer_dp(self, p_a, p_b, ctx):
        """Lecuyer et al. (2019) differential-privacy bound (as quoted by Hayes, §2.3):
        R = sup_{0<ε≤min(1, ½ log(p_a/p_b))} σ ε / √(2 log(1.25 (1 + e^ε)/(p_a − e^{2ε} p_b)))."""
        return divergences.gaussian_radius("lecuyer_dp", p_a, p_b, self.sigma)
