"""The shared base of noises certified through the variational engine's radius tables.

Some noises have no closed-form radius: Zhang et al.'s (2020) power-law and mixed-norm noises,
π0(z) ∝ ‖z‖^(−k) exp(−‖z‖₂²/2σ²), are certified by the Monte Carlo dual bound of
:mod:`art_smoothing.certificates.variational` (derivation in ``docs/variational.md``). A
:class:`TabulatedNoise` holds what those noises share: the parameters (σ, k, optional fixed dimension),
the table's Monte Carlo settings and failure probability (the noise's ``certificate_alpha``), and a
per-dimension cache of its radius tables. A subclass adds its exact sampler, its engine model
(:meth:`TabulatedNoise.log_ratio_model`) and a ``variational`` certificate that looks its radii up in
:meth:`TabulatedNoise.radius_table`.
"""

from __future__ import annotations

import torch

from art_smoothing.certificates.bounds import check_alpha
from art_smoothing.certificates.variational import LogRatioModel, RadiusTable, TableSettings, get_radius_table
from art_smoothing.checks import check_bool, check_int
from art_smoothing.noise.base import CertificateContext, Noise, check_positive

__all__ = ["TabulatedNoise"]


class TabulatedNoise(Noise):
    """Base of the noises π0(z) ∝ ‖z‖^(−k) exp(−‖z‖₂²/2σ²) certified by the variational engine's tables.

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

    Subclasses implement :meth:`coordinate_std`, the sampler and :meth:`log_ratio_model` (the engine's
    model of the noise in its own norm), and declare their ``variational`` certificate.
    """

    def __init__(self, sigma: float, k: float, *, dim: int | None = None, cert_alpha: float = 1e-4,
                 mc_samples: int = 1 << 18, table_radii: int = 512, disk_cache: bool = False):
        self.sigma = check_positive("sigma", sigma)
        self.k = check_positive("k", k, allow_zero=True)
        self.certificate_alpha = check_alpha(cert_alpha, "cert_alpha")
        self.mc_samples = check_int("mc_samples", mc_samples, 1024)
        self.table_radii = check_int("table_radii", table_radii, 2)
        self.disk_cache = check_bool("disk_cache", disk_cache)
        self.dim = check_int("dim", dim, 1, allow_none=True)
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
        """Per-coordinate standard deviation √(E‖z‖₂²/d) in dimension ``dim``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ certificate plumbing
    def table_settings(self) -> TableSettings:
        """Monte Carlo settings of this noise's radius tables (part of their cache key)."""
        return TableSettings(alpha=self.certificate_alpha, n_samples=self.mc_samples,
                             n_pilot=max(1024, min(1 << 15, self.mc_samples // 8)), n_radii=self.table_radii)

    def log_ratio_model(self, dim: int, norm=None) -> LogRatioModel:
        """The engine's model of this noise in its own norm (every subclass has one)."""
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

    def _table_radius(self, p_a: torch.Tensor, p_b: torch.Tensor | None, ctx: CertificateContext
                      ) -> torch.Tensor:
        """Radii of the table of dimension ``ctx.dim`` for the bounds (p_a, p_b) (binary form when ``p_b``
        is None), as a tensor like ``p_a``: the body of the subclasses' ``variational`` certificate."""
        table = self.radius_table(ctx.dim)
        r = table.radius(p_a.detach().cpu().numpy(), None if p_b is None else p_b.detach().cpu().numpy())
        return torch.as_tensor(r, dtype=p_a.dtype, device=p_a.device)
