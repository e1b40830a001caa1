"""Uniform noise on the cube [−λ, λ]^d and its ℓ1 / ℓ∞ certificates (Voráček & Hein, 2023), with and
without the box constraint of the input domain."""

from __future__ import annotations

import math

import torch

from art_smoothing.certificates import box as _box
from art_smoothing.certificates.variational import LogRatioModel, UniformLogRatio
from art_smoothing.noise.base import Noise, certificate, check_positive

__all__ = ["BoxL1Certificates", "UniformNoise", "cube_linf_radius"]


def cube_linf_radius(scale: float, p_a: torch.Tensor, p_b: torch.Tensor | None, dim: int) -> torch.Tensor:
    """ℓ∞ radius of a smoothing whose copies at x and x + δ agree with probability Π_i (1 − |δ_i|/(2λ))_+,
    λ = ``scale``, in dimension ``dim`` (binary form when ``p_b`` is None): the certificate ``cube`` of
    uniform and splitting noise, derived in :meth:`UniformNoise._cube`.
    R = −2λ·expm1(log1p(−gap)/d), gap = p_a − ½ (binary) or (p_a − p_b)/2."""
    gap = (p_a - 0.5) if p_b is None else 0.5 * (p_a - p_b)
    return -2.0 * scale * torch.expm1(torch.log1p(-gap) / dim)


class BoxL1Certificates:
    """Box-constrained ℓ1 certificates of Voráček & Hein (2023), §2.2 and §2.4, as a mixin.

    For any smoothing whose two smoothed copies at x and y = x + δ can be coupled so that they agree
    with probability at least O(δ) = Π_i (1 − |δ_i|/(2λ))_+, λ = ``self.scale``: the uniform noise on
    [−λ, λ]^d (overlap of the two cubes, Proposition 2.1) and the independent splitting noise
    (Theorem 2.11). By Proposition 2.12, class A keeps winning at y while O(δ) > t with
    t = 1 − (p_a − p_b)/2 (binary: t = 3/2 − p_a); the radius is the largest r such that every
    y = x + δ **inside the box** with ‖δ‖₁ < r has O(δ) > t. See :mod:`art_smoothing.certificates.box`.

    These certificates only hold when both the input x and the adversarial point lie in the box
    ``clip_values`` = (lo, hi); they are switched on by passing ``x`` and ``clip_values``. A general
    box is handled by rescaling to [0, 1]^d: λ is taken in units of the box, λ/(hi − lo), and the
    ℓ1 radius is multiplied by (hi − lo). A radius of ``inf`` means every point of the box is certified.
    Lower bounds on the true radius because t only grows when p_a is replaced by a lower bound or
    p_b by an upper bound, and every g below is a lower bound on (or equal to) the minimal overlap.
    """

    scale: float

    def _unit_box(self, ctx):
        lo, hi = ctx.clip_values
        width = hi - lo
        x = torch.clamp((ctx.x - lo) / width, 0.0, 1.0)
        return x, self.scale / width, width

    @certificate("box_closed", norm=1, box=True)
    def _box_closed(self, p_a, p_b, ctx):
        """Corollary 2.7 (binary, R = ln(3/2 − p_a) / ln(1 − 1/(2λ))) and Corollary 2.14 (multiclass,
        R = ln(1 − (p_a − p_b)/2) / ln(1 − 1/(2λ))), from Theorem 2.6: overlap ≥ (1 − 1/(2λ))^‖δ‖₁ for
        x, y in the box. Valid for λ ≥ 1/2 (box units) only; 0 below. Never better than ``box_floor``
        and worse than the plain ``lipschitz`` radius whenever the radius is below 1 (box units).
        """
        _, lam, width = self._unit_box(ctx)
        return width * _box.radius_closed(_box.required_overlap(p_a, p_b), lam)

    @certificate("box_floor", norm=1, box=True, differentiable=False)
    def _box_floor(self, p_a, p_b, ctx):
        """Proposition 2.5 (floor form), inverted exactly: the minimal overlap over all pairs x, y in
        [0, 1]^d with ‖x − y‖₁ ≤ r is a_+^⌊r⌋ (1 − (r − ⌊r⌋)/(2λ))_+, a = 1 − 1/(2λ) (attained with x
        at a corner), so with a^k ≥ t > a^{k+1}: R = k + 2λ(1 − t/a^k). Input-independent (only the
        box matters); valid for every λ: for λ ≤ 1/2 it equals the plain Corollary 2.4/2.13 radius,
        for λ > 1/2 it dominates both the plain one and Corollary 2.7. ``inf`` if even the farthest
        box point keeps overlap a^d > t.
        """
        _, lam, width = self._unit_box(ctx)
        r = width * _box.radius_floor(_box.required_overlap(p_a, p_b), lam, ctx.dim)
        # The plain radius is valid in the box too; taking the max keeps "box >= plain" exact in floating
        # point (mathematically the floor form already dominates it).
        return torch.maximum(r, self._lipschitz(p_a, p_b, ctx))

    @certificate("box_input", norm=1, box=True, differentiable=False)
    def _box_input(self, p_a, p_b, ctx):
        """Theorem 2.8 (input-dependent, exact minimal overlap for the given x): coordinates sorted by
        their room max(x_i, 1 − x_i), descending, with S_k their cumulative sums and
        P_k = Π_{i≤k}(1 − room_i/(2λ))_+; the minimal overlap is P_k(1 − (r − S_k)/(2λ)) on
        [S_k, S_{k+1}], so with K = #{k ≥ 1 : P_k > t}: R = S_K + 2λ(1 − t/P_K) (``inf`` if K = d).
        Valid for every λ (see ``docs/box.md`` for λ < 1/2); never below ``box_floor`` or the plain
        radius, since it minimises over a subset of their threat sets.
        """
        x, lam, width = self._unit_box(ctx)
        t = _box.required_overlap(p_a, p_b)
        r = _box.radius_input(x, t.reshape(-1), lam)
        # box_floor is valid for this x as well (it minimises over a superset); the max only removes
        # floating-point rounding below it.
        return torch.maximum(width * r.reshape(t.shape), self._box_floor(p_a, p_b, ctx))


class UniformNoise(BoxL1Certificates, Noise):
    """Uniform on the ℓ∞ ball [−λ, λ]^d, λ = ``scale``; certifies ℓ1 (and ℓ∞) balls.

    Per-coordinate standard deviation is λ/√3.

    Both certificates below rest on Voráček & Hein's Proposition 2.1: for f with values in [0, 1],
    |h(y) − h(x)| ≤ 1 − Vol(B∞(x,λ) ∩ B∞(y,λ))/Vol(B∞(x,λ)) (total variation between the two
    shifted uniforms), and on the overlap of two cubes shifted by δ: Π_i (1 − |δ_i|/(2λ))_+.

    With ``x`` and ``clip_values`` passed to :meth:`certified_radius` the box-constrained ℓ1
    certificates of :class:`BoxL1Certificates` (``box_closed``, ``box_floor``, ``box_input``) join
    in; they only hold for adversarial points inside the box.
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

    def log_ratio_model(self, dim: int, norm=None) -> LogRatioModel | None:
        """The variational engine's model in ℓ∞ (:class:`UniformLogRatio`), to cross-check the engine
        against :meth:`_cube`; ``None`` in other norms."""
        return UniformLogRatio(self.scale, dim) if self._parse_norm(norm) == math.inf else None

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
        Lower bound on the true radius: R is increasing in p_a and decreasing in p_b.
        """
        return cube_linf_radius(self.scale, p_a, p_b, ctx.dim)
