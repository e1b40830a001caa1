"""ℓ2 power-law noise π0(z) ∝ ‖z‖₂^(−k) exp(−‖z‖₂²/2σ²) with its variational ℓ2 certificate
(Zhang et al., 2020, equation (8), Theorem 2)."""

from __future__ import annotations

import math

import numpy as np
import torch

from art_smoothing.certificates.variational import LogRatioModel
from art_smoothing.noise.base import certificate, standard_gamma
from art_smoothing.noise.tabulated import TabulatedNoise

__all__ = ["PowerLawLogRatio", "PowerLawNoise"]


class PowerLawLogRatio(LogRatioModel):
    """Engine model of :class:`PowerLawNoise`: δ* = r e₁ (Theorem 2; rotation invariance plus the
    coordinate-wise monotonicity lemma of ``docs/variational.md``), and

        S = log π0(z) − log π0(z − r e₁) = (k/2) log(‖z − r e₁‖²/‖z‖²) + (‖z − r e₁‖² − ‖z‖²)/(2σ²)
          = (k/2) log1p(a/ρ²) + a/(2σ²),   a = r² − 2 r z₁,  ρ = ‖z‖₂.

    The sufficient statistics (ρ, z₁) are drawn exactly in O(1) per sample whatever d:
    ρ = σ √(2 Gamma((d−k)/2)) and z₁ = ρ u₁ with u₁ = g/√(g² + 2 Gamma((d−1)/2)), g ~ N(0,1), the first
    coordinate of a uniform direction (a ratio of a Gaussian to the norm of a d-vector).
    """

    norm = 2.0

    def __init__(self, sigma: float, k: float, dim: int):
        self.sigma, self.k, self.dim = float(sigma), float(k), int(dim)
        self.radius_scale = self.sigma

    def description(self):
        return {"model": "power_law", "sigma": self.sigma, "k": self.k, "dim": self.dim, "norm": "2"}

    def sample_statistics(self, num, generator):
        shape = torch.full((num,), 0.5 * (self.dim - self.k), dtype=torch.float64)
        rho2 = 2.0 * self.sigma**2 * standard_gamma(shape, generator=generator)
        if self.dim == 1:
            u1 = torch.where(torch.rand(num, generator=generator, dtype=torch.float64) < 0.5, -1.0, 1.0)
        else:
            g = torch.randn(num, generator=generator, dtype=torch.float64)
            rest = 2.0 * standard_gamma(torch.full((num,), 0.5 * (self.dim - 1), dtype=torch.float64),
                                        generator=generator)
            u1 = g / torch.sqrt(g * g + rest)
        return {"rho2": rho2.numpy(), "z1": (torch.sqrt(rho2) * u1).numpy()}

    def log_ratio(self, stats, radius):
        a = radius * radius - 2.0 * radius * stats["z1"]
        s = a / (2.0 * self.sigma**2)
        if self.k > 0:
            # ‖z − r e₁‖² = ρ² + a ≥ 0, so a/ρ² ≥ −1 (clamped against rounding); ρ = 0 gives S = +∞.
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(stats["rho2"] > 0, a / stats["rho2"], np.inf)
                s = s + 0.5 * self.k * np.log1p(np.maximum(ratio, -1.0))
        return s


class PowerLawNoise(TabulatedNoise):
    """ℓ2 power-law noise: density π0(z) ∝ ‖z‖₂^(−k) exp(−‖z‖₂²/2σ²) on R^d (Zhang et al., eq. (8)).

    Normalisable iff 0 ≤ k < d: in polar coordinates the radial density is ∝ ρ^(d−1−k) e^(−ρ²/2σ²),
    integrable at 0 iff d − 1 − k > −1. k = 0 is N(0, σ²I); growing k moves mass from the Gaussian's
    thin shell ρ ≈ σ√d towards the centre (ρ ≈ σ√(d−k)). Per-coordinate variance σ²(d − k)/d.

    **Exact sampler.** π0 depends on z only through ρ = ‖z‖₂, so z = ρ·u with u uniform on the sphere
    independent of ρ, and ρ has density ∝ ρ^(d−k−1) e^(−ρ²/2σ²): ρ = σ·χ_(d−k), i.e.
    ρ² = 2σ²·Gamma((d−k)/2, 1). Both factors are drawn exactly (u = g/‖g‖ for g ~ N(0, I); torch's
    gamma sampler), so one draw costs one Gaussian vector and one gamma variate, for any d and k.

    **Certificate** ``"variational"`` (ℓ2, needs ``dim``): the Monte Carlo dual bound of
    :mod:`art_smoothing.certificates.variational` (``docs/variational.md``) at the worst perturbation
    δ* = r e₁ (Theorem 2), binary and multiclass forms, through a radius table built once per
    (noise, d). Sound with probability ≥ 1 − ``cert_alpha`` over the table; ℓ∞ radii come from the
    base class's conversion r/√d, which for this family is exactly what Theorem 3 says the variational
    bound gives.

    The certificate is a table look-up, not a differentiable function of p_a: training objectives that
    need ``certified_radius_torch`` (MACER) are not available with this noise.

    See :class:`~art_smoothing.noise.tabulated.TabulatedNoise` for the keyword parameters.
    """

    norm = 2.0
    name = "power_law"

    def coordinate_std(self, dim: int) -> float:
        self.validate_dim(dim)
        return self.sigma * math.sqrt((dim - self.k) / dim)

    def _sample(self, size, *, generator, device, dtype):
        num, d = size[0], int(np.prod(size[1:])) if len(size) > 1 else 1
        if self.k == 0.0:  # exactly N(0, σ²I)
            return torch.randn(size, generator=generator, device=device, dtype=dtype) * self.sigma
        g = torch.randn((num, d), generator=generator, device=device, dtype=dtype)
        shape = torch.full((num,), 0.5 * (d - self.k), dtype=torch.float64, device=device)
        rho = self.sigma * torch.sqrt(2.0 * standard_gamma(shape, generator=generator))
        g_norm = torch.linalg.vector_norm(g.double(), dim=1).clamp_min(torch.finfo(torch.float64).tiny)
        return (g * (rho / g_norm).to(dtype)[:, None]).reshape(size)

    def log_ratio_model(self, dim: int, norm=None) -> LogRatioModel:
        if norm is not None and float(norm) != 2.0:
            raise ValueError("PowerLawNoise's variational model is for ℓ2 (ℓ∞ radii come by conversion).")
        self.validate_dim(dim)
        return PowerLawLogRatio(self.sigma, self.k, dim)

    @certificate("variational", norm=2, needs_dim=True, differentiable=False)
    def _variational(self, p_a, p_b, ctx):
        """Zhang et al. (2020), Theorem 1 with δ* = r e₁ (Theorem 2), evaluated exactly through the
        likelihood-ratio threshold form and bounded with Clopper–Pearson + Bonferroni
        (``docs/variational.md``). Lower bound on the true radius with probability
        ≥ 1 − cert_alpha because every table entry is a simultaneous confidence bound in the sound
        direction and the look-up rounds radii down. Monotone in p_a (and in p_b)."""
        return self._table_radius(p_a, p_b, ctx)
