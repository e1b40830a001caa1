"""ℓ2 power-law noise π0(z) ∝ ‖z‖₂^(−k) exp(−‖z‖₂²/2σ²) with its variational ℓ2 certificate
(Zhang et al., 2020, equation (8), Theorem 2), and the shared base of table-certified noises."""

from __future__ import annotations

import math

import numpy as np
import torch

from art_smoothing.certificates.bounds import check_alpha
from art_smoothing.certificates.variational import LogRatioModel, RadiusTable, TableSettings, get_radius_table
from art_smoothing.noise.base import Noise, certificate, check_positive

__all__ = ["PowerLawLogRatio", "PowerLawNoise"]


def _check_count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


class _TabulatedNoise(Noise):
    """Shared part of the noises certified by the variational engine's radius tables.

    :param sigma: scale σ > 0 of the Gaussian factor exp(−‖z‖₂²/2σ²).
    :param k: shape k ≥ 0 of the power factor; k = 0 is N(0, σ²I). Normalisable iff k < d, checked
        against the input dimension (:meth:`validate_dim`).
    :param dim: optional input dimension d, fixed at construction (then :attr:`std` is exact and a
        mismatching input is rejected). Without it the noise adapts to every input's dimension.
    :param cert_alpha: failure probability of the certificate's Monte Carlo table, in (0, 1). It is
        the noise's ``certificate_alpha``: :class:`art_smoothing.SmoothedClassifier` spends
        ``alpha − cert_alpha`` on the vote counts so that each certificate fails with probability ≤ alpha.
    :param mc_samples: Monte Carlo sample size of the table (precision of the certificate).
    :param table_radii: radius grid size of the table (radii are rounded down to the grid).
    :param disk_cache: also keep tables on disk (``$ART_SMOOTHING_CACHE`` or ``~/.cache/art_smoothing``).
    """

    def __init__(self, sigma: float, k: float, *, dim: int | None = None, cert_alpha: float = 1e-4,
                 mc_samples: int = 1 << 18, table_radii: int = 512, disk_cache: bool = False):
        self.sigma = check_positive("sigma", sigma)
        self.k = check_positive("k", k, allow_zero=True)
        self.certificate_alpha = check_alpha(cert_alpha, "cert_alpha")
        self.mc_samples = _check_count("mc_samples", mc_samples, 1024)
        self.table_radii = _check_count("table_radii", table_radii, 2)
        if not isinstance(disk_cache, bool):
            raise ValueError(f"disk_cache must be a bool, got {disk_cache!r}.")  # noqa: TRY004 (project: ValueError)
        self.disk_cache = disk_cache
        self.dim = None if dim is None else _check_count("dim", dim, 1)
        if self.dim is not None:
            self.validate_dim(self.dim)
        self._tables: dict[int, RadiusTable] = {}

    def params(self):
        return {"sigma": self.sigma, "k": self.k, "dim": self.dim, "cert_alpha": self.certificate_alpha,
                "mc_samples": self.mc_samples, "table_radii": self.table_radii, "disk_cache": self.disk_cache}

    def validate_dim(self, dim: int) -> None:
        dim = int(dim)
        if self.dim is not None and dim != self.dim:
            raise ValueError(f"{type(self).__name__} was built for dim={self.dim} but the input has {dim} features.")
        if not self.k < dim:
            raise ValueError(
                f"{type(self).__name__} needs k < d: with k={self.k:g} >= d={dim} the density ∝ ‖z‖^-k … is not "
                "integrable at z = 0. Lower k or use it on larger inputs."
            )

    @property
    def std(self) -> float:
        """Per-coordinate standard deviation √(E‖z‖₂²/d). Exact when ``dim`` was given; otherwise σ,
        the k = 0 value, which bounds it from above (use :meth:`coordinate_std` with the dimension)."""
        return self.sigma if self.dim is None else self.coordinate_std(self.dim)

    def coordinate_std(self, dim: int) -> float:
        raise NotImplementedError

    # ------------------------------------------------------------------ certificate plumbing
    def table_settings(self) -> TableSettings:
        return TableSettings(alpha=self.certificate_alpha, n_samples=self.mc_samples,
                             n_pilot=max(1024, min(1 << 15, self.mc_samples // 8)), n_radii=self.table_radii)

    def log_ratio_model(self, dim: int, norm=None) -> LogRatioModel:
        raise NotImplementedError

    def radius_table(self, dim: int) -> RadiusTable:
        """The (cached) radius table of this noise in its own norm and dimension ``dim``; its
        ``build_seconds`` is the one-off cost."""
        table = self._tables.get(int(dim))
        if table is None:
            self.validate_dim(dim)
            table = get_radius_table(self.log_ratio_model(int(dim), self.norm), self.table_settings(),
                                     disk_cache=self.disk_cache)
            self._tables[int(dim)] = table
        return table

    def _table_radius(self, p_a, p_b, ctx):
        table = self.radius_table(ctx.dim)
        r = table.radius(p_a.detach().cpu().numpy(), None if p_b is None else p_b.detach().cpu().numpy())
        return torch.as_tensor(r, dtype=p_a.dtype, device=p_a.device)


class PowerLawLogRatio(LogRatioModel):
    """Engine model of :class:`PowerLawNoise`: δ* = r e₁ (Theorem 2; rotation invariance plus the
    coordinate-wise monotonicity lemma of :mod:`art_smoothing.certificates.variational`), and

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
        rho2 = 2.0 * self.sigma**2 * torch._standard_gamma(shape, generator=generator)
        if self.dim == 1:
            u1 = torch.where(torch.rand(num, generator=generator, dtype=torch.float64) < 0.5, -1.0, 1.0)
        else:
            g = torch.randn(num, generator=generator, dtype=torch.float64)
            rest = 2.0 * torch._standard_gamma(torch.full((num,), 0.5 * (self.dim - 1), dtype=torch.float64),
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


class PowerLawNoise(_TabulatedNoise):
    """ℓ2 power-law noise: density π0(z) ∝ ‖z‖₂^(−k) exp(−‖z‖₂²/2σ²) on R^d (Zhang et al., eq. (8)).

    Normalisable iff 0 ≤ k < d: in polar coordinates the radial density is ∝ ρ^(d−1−k) e^(−ρ²/2σ²),
    integrable at 0 iff d − 1 − k > −1. k = 0 is N(0, σ²I); growing k moves mass from the Gaussian's
    thin shell ρ ≈ σ√d towards the centre (ρ ≈ σ√(d−k)). Per-coordinate variance σ²(d − k)/d.

    **Exact sampler.** π0 depends on z only through ρ = ‖z‖₂, so z = ρ·u with u uniform on the sphere
    independent of ρ, and ρ has density ∝ ρ^(d−k−1) e^(−ρ²/2σ²): ρ = σ·χ_(d−k), i.e.
    ρ² = 2σ²·Gamma((d−k)/2, 1). Both factors are drawn exactly (u = g/‖g‖ for g ~ N(0, I); torch's
    gamma sampler), so one draw costs one Gaussian vector and one gamma variate, for any d and k.

    **Certificate** ``"variational"`` (ℓ2, needs ``dim``): the Monte Carlo dual bound of
    :mod:`art_smoothing.certificates.variational` at the worst perturbation δ* = r e₁ (Theorem 2),
    binary and multiclass forms, through a radius table built once per (noise, d). Sound with
    probability ≥ 1 − ``cert_alpha`` over the table; ℓ∞ radii come from the base class's conversion
    r/√d, which for this family is exactly what Theorem 3 says the variational bound gives.

    The certificate is a table look-up, not a differentiable function of p_a: training objectives that
    need ``certified_radius_torch`` (MACER) are not available with this noise.

    See :class:`_TabulatedNoise` for the keyword parameters.
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
        rho = self.sigma * torch.sqrt(2.0 * torch._standard_gamma(shape, generator=generator))
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
        likelihood-ratio threshold form and bounded with Clopper–Pearson + Bonferroni (module
        :mod:`art_smoothing.certificates.variational`). Lower bound on the true radius with probability
        ≥ 1 − cert_alpha because every table entry is a simultaneous confidence bound in the sound
        direction and the look-up rounds radii down. Monotone in p_a (and in p_b)."""
        return self._table_radius(p_a, p_b, ctx)
