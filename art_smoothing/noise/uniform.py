"""Uniform noise on the cube [−λ, λ]^d and its ℓ1 / ℓ∞ certificates (Voráček & Hein, 2023)."""

from __future__ import annotations

import math

import torch

from art_smoothing.noise.base import Noise, certificate, check_positive

__all__ = ["UniformNoise"]


class UniformNoise(Noise):
    """Uniform on the ℓ∞ ball [−λ, λ]^d, λ = ``scale``; certifies ℓ1 (and ℓ∞) balls.

    Per-coordinate standard deviation is λ/√3.

    Both certificates below rest on Voráček & Hein's Proposition 2.1: for f with values in [0, 1],
    |h(y) − h(x)| ≤ 1 − Vol(B∞(x,λ) ∩ B∞(y,λ))/Vol(B∞(x,λ)) (total variation between the two
    shifted uniforms), and on the overlap of two cubes shifted by δ: Π_i (1 − |δ_i|/(2λ))_+.
    """

    norm = 1.0
    name = "uniform"

    def __init__(self, scale: float):
        self.scale = check_positive("scale", scale)

    @property
    def std(self) -> float:
        return self.scale / math.sqrt(3.0)

    def params(self):
        return {"scale": self.scale}

    def _sample(self, size, *, generator, device, dtype):
        return torch.rand(size, generator=generator, device=device, dtype=dtype).mul_(2.0 * self.scale).sub_(self.scale)

    @certificate("lipschitz", norm=1)
    def _lipschitz(self, p_a, p_b, ctx):
        """Voráček & Hein (2023): binary Corollary 2.4, R = 2λ(p_a − 1/2); multiclass Corollary 2.13,
        R = λ(p_a − p_b). From Proposition 2.2 (overlap ≥ 1 − ‖δ‖₁/(2λ)) the smoothed classifier is
        1/(2λ)-Lipschitz in ℓ1 (Theorem 2.3; Lee et al., 2019), and the top class keeps its lead
        while the lead, shrinking by at most 2·‖δ‖₁/(2λ), stays positive.
        """
        if p_b is None:
            return 2.0 * self.scale * (p_a - 0.5)
        return self.scale * (p_a - p_b)

    @certificate("cube", norm=math.inf, needs_dim=True)
    def _cube(self, p_a, p_b, ctx):
        """ℓ∞ certificate from the same Proposition 2.1 with the exact worst case over the ℓ∞ ball:
        the overlap Π(1 − |δ_i|/(2λ)) is smallest at |δ_i| = r for all i, giving (1 − r/(2λ))^d.
        Binary: need (1 − r/(2λ))^d > 3/2 − p_a, so R = 2λ(1 − (3/2 − p_a)^{1/d}).
        Multiclass (as in Proposition 2.12): need (1 − r/(2λ))^d > 1 − (p_a − p_b)/2,
        so R = 2λ(1 − (1 − (p_a − p_b)/2)^{1/d}). Computed as −2λ·expm1(log(·)/d) for accuracy.
        """
        gap = (p_a - 0.5) if p_b is None else 0.5 * (p_a - p_b)
        return -2.0 * self.scale * torch.expm1(torch.log1p(-gap) / ctx.dim)
