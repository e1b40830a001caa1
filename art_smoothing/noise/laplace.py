"""I.i.d. Laplace noise and its ℓ1 certificates (Teng, Lee & Yuan, 2020; Lecuyer et al., 2019)."""

from __future__ import annotations

import math

import torch

from art_smoothing.certificates.variational import LaplaceLogRatio, LogRatioModel
from art_smoothing.noise.base import Noise, certificate, check_positive

__all__ = ["LaplaceNoise"]


class LaplaceNoise(Noise):
    """I.i.d. Laplace coordinates, density ∝ exp(−‖z‖₁/λ), λ = ``scale``; certifies ℓ1 balls.

    Per-coordinate standard deviation is √2·λ.
    """

    norm = 1.0
    name = "laplace"

    def __init__(self, scale: float):
        self.scale = check_positive("scale", scale)

    @property
    def std(self) -> float:
        return math.sqrt(2.0) * self.scale

    def params(self):
        return {"scale": self.scale}

    def _sample(self, size, *, generator, device, dtype):
        # Exact inversion: with U uniform on (-1, 1), -sign(U) log(1 - |U|) is standard Laplace
        # (|U| is uniform on [0, 1), so -log(1 - |U|) is Exp(1); the sign is an independent fair coin).
        # torch.rand is on [0, 1); |U| = 1 has probability 2^-24 in float32 and is clamped away.
        u = torch.rand(size, generator=generator, device=device, dtype=dtype).mul_(2.0).sub_(1.0)
        mag = torch.log1p(-u.abs().clamp_(max=1.0 - torch.finfo(dtype).eps))
        return mag.mul_(-self.scale).mul_(torch.sign(u))

    def log_ratio_model(self, dim: int, norm=None) -> LogRatioModel | None:
        """The variational engine's model in ℓ1 (direction e₁) and ℓ∞ (:class:`LaplaceLogRatio`), to
        cross-check the engine against :meth:`_teng`; ``None`` in other norms."""
        p = self._parse_norm(norm)
        return LaplaceLogRatio(self.scale, dim, p) if p in (1.0, math.inf) else None

    @certificate("teng", norm=1)
    def _teng(self, p_a, p_b, ctx):
        """Teng, Lee & Yuan (2020). Multiclass: Theorem 1,
        R = max{ λ/2 · log(p_a/p_b), −λ · log(1 − p_a + p_b) };
        binary (p_b = 1 − p_a): Theorem 2, R = −λ · log(2(1 − p_a)), tight by their Theorem 3.

        Proof idea (their Appendix B): for ‖δ‖₁ ≤ R the density ratio of ε and ε + δ lies in
        [e^{−R/λ}, e^{R/λ}], so P(f(x+δ+ε)=A) ≥ e^{−R/λ} p_a (or, via the complement,
        ≥ 1 − e^{R/λ}(1 − p_a)) and P(f(x+δ+ε)=B) ≤ e^{R/λ} p_b; solving "A still wins" gives the
        two terms. Both are monotone in the bounds, so lower/upper confidence bounds stay sound.
        """
        if p_b is None:
            return -self.scale * torch.log(2.0 * (1.0 - p_a))
        first = 0.5 * self.scale * (torch.log(p_a) - torch.log(p_b))  # p_a / p_b could overflow to inf
        second = -self.scale * torch.log1p(-(p_a - p_b))
        return torch.maximum(first, second)

    @certificate("lecuyer", norm=1, dominated_by="teng")
    def _lecuyer(self, p_a, p_b, ctx):
        """Lecuyer et al. (2019) differential-privacy baseline: the Laplace mechanism with scale λ is
        (‖δ‖₁/λ, 0)-DP, and their robustness condition p_a > e^{2ε} p_b gives R = λ/2 · log(p_a/p_b)
        (binary: p_b = 1 − p_a). Kept for comparison; never larger than ``teng``.
        """
        log_b = torch.log1p(-p_a) if p_b is None else torch.log(p_b)
        return 0.5 * self.scale * (torch.log(p_a) - log_b)  # p_a / p_b could overflow to inf
