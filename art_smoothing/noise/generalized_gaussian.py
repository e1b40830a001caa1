"""Generalized Gaussian noise GN(0, σ, p) and its KL certificates in ℓp, ℓ1, ℓ2 and ℓ∞ (Hayes, 2020,
Section 2.4, equations (13)–(21)).

Coordinates are i.i.d. with density p/(2σΓ(1/p)) · exp(−|z/σ|^p), any real p ≥ 1 (p = 1 is Laplace
with scale σ, p = 2 is N(0, σ²/2)). The certificates bound the KL divergence between shifted noises by
polynomial "families" φ_p(t) ≤ Σ_k c_k |t|^k (exact for even p and p = 1; Hayes' equation (14)
corrected for odd p; a Taylor–Hölder bound for every real p > 2; two bounds for 1 ≤ p ≤ 2) and solve
for the radius. The derivations and their soundness arguments are in ``docs/generalized_gaussian.md``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import torch

from art_smoothing.certificates.divergences import kl_flip_bound
from art_smoothing.certificates.norms import parse_norm
from art_smoothing.noise.base import Noise, certificate, check_positive, standard_gamma

__all__ = ["MAX_CERTIFIED_P", "GeneralizedGaussianNoise", "KLBoundFamily", "kl_coordinate_families"]

_BISECTION_STEPS = 56  # the brackets span at most a factor ~e^5 (polynomials): 2^-52 relative precision
#: largest shape p with KL certificates (their bounds have ~p/2 terms); sampling works for every p
MAX_CERTIFIED_P = 128.0


def _check_shape(p) -> float:
    try:
        v = math.nan if isinstance(p, bool) else float(p)
    except (TypeError, ValueError):
        raise ValueError(f"p must be a real number >= 1, got {p!r}.") from None
    if math.isinf(v) and v > 0:
        raise ValueError("p = inf is the uniform distribution on (-sigma, sigma): use UniformNoise(scale=sigma).")
    if not math.isfinite(v) or v < 1.0:
        raise ValueError(
            f"p must be a finite real number >= 1 (1 = Laplace, 2 = Gaussian; p < 1 is not log-concave and has "
            f"no certificate here), got {p!r}."
        )
    return v


def _abs_moment(p: float, k: float) -> float:
    """μ_k = E|W|^k = Γ((k+1)/p)/Γ(1/p) for W ~ GN(0, 1, p), k > −1."""
    return math.exp(math.lgamma((k + 1.0) / p) - math.lgamma(1.0 / p))


class KLBoundFamily(NamedTuple):
    """φ_p(t) ≤ Σ_k c_k |t|^k for all real t (t in units of σ). ``exact`` when equality holds."""

    name: str
    terms: tuple[tuple[float, float], ...]  # (exponent k, coefficient c_k ≥ 0)
    exact: bool = False


def kl_coordinate_families(p: float) -> list[KLBoundFamily]:
    """The polynomial upper bounds on the per-coordinate KL φ_p used for GN(0, σ, p)
    (``docs/generalized_gaussian.md``).

    :raises ValueError: for p > :data:`MAX_CERTIFIED_P` (the bounds would need more than ~64 terms, and
        the ℓp radius is negligible there anyway: see the curse of dimensionality).
    """
    p = _check_shape(p)
    if p > MAX_CERTIFIED_P:
        raise ValueError(
            f"KL certificates of generalized Gaussian noise are implemented for p <= {MAX_CERTIFIED_P:g} (got "
            f"p={p:g}); sampling works for any p. For p this large the noise is nearly uniform: use UniformNoise "
            "for its l1/linf certificates."
        )
    families = []
    is_int = float(p).is_integer()
    if is_int and int(p) % 2 == 0:
        n = int(p)
        terms = tuple((float(k), math.comb(n, k) * _abs_moment(p, n - k)) for k in range(2, n + 1, 2))
        return [KLBoundFamily("binomial", terms, exact=True)]
    if is_int and p >= 3:
        n = int(p)
        terms = tuple((float(k), math.comb(n, k) * _abs_moment(p, n - k)) for k in range(1, n + 1, 2))
        families.append(KLBoundFamily("binomial", terms))
    if p > 2.0:
        q = p - 2.0
        m = 2 * math.floor(q / 2.0)
        big_m = m + 2
        theta = (q - m) / 2.0
        mu_m, mu_big = _abs_moment(p, m), _abs_moment(p, big_m)
        g = mu_m ** (1.0 - theta) * mu_big**theta
        terms = [(2.0, 0.5 * p * (p - 1.0) * g)]
        for i in range(1, big_m // 2 + 1):
            e = theta * math.comb(big_m, 2 * i) * _abs_moment(p, big_m - 2 * i) / mu_big
            if 2 * i <= m:
                e += (1.0 - theta) * math.comb(m, 2 * i) * _abs_moment(p, m - 2 * i) / mu_m
            if e > 0.0:
                terms.append((2.0 * i + 2.0, p * (p - 1.0) * g * e / ((2 * i + 1) * (2 * i + 2))))
        families.append(KLBoundFamily("taylor", tuple(terms)))
    else:  # 1 <= p < 2
        families.append(KLBoundFamily("power", ((p, 1.0),)))
        c2 = 0.5 * p * p * math.exp(math.lgamma(2.0 - 1.0 / p) - math.lgamma(1.0 / p))
        families.append(KLBoundFamily("quadratic", ((2.0, c2),)))
    return families


def _dim_factor(k: float, norm: float, dim: int | None) -> float | None:
    """d^{max(0, 1 − k/q)} (q = ∞: d), or None when it is needed but ``dim`` is unknown."""
    expo = 1.0 if math.isinf(norm) else max(0.0, 1.0 - k / norm)
    if expo == 0.0:
        return 1.0
    if dim is None:
        return None
    return float(dim) ** expo


def _laplace_g(s: torch.Tensor) -> torch.Tensor:
    """s + e^{−s} − 1 ≥ 0, without cancellation for small s."""
    return s + torch.expm1(-s)


class GeneralizedGaussianNoise(Noise):
    """I.i.d. generalized Gaussian coordinates GN(0, σ, p): density ∝ exp(−|z/σ|^p), real p ≥ 1.

    :param sigma: scale σ > 0 (not the standard deviation: ``std`` = σ √(Γ(3/p)/Γ(1/p))).
    :param p: shape p ≥ 1 (1 = Laplace with scale σ, 2 = Gaussian with std σ/√2). The noise's own
        norm is ℓp.

    Certificates (see ``docs/generalized_gaussian.md``; all from the KL divergence, Hayes 2020):
    ``kl`` in ℓp (needs the dimension for p > 2), ``kl_l1`` and ``kl_l2`` (dimension-free), ``kl_linf``.
    Other norms are reached by sound conversion; ``method=None`` takes the best.
    """

    norm = 2.0  # the class default; every instance's own norm is its p
    name = "generalized_gaussian"

    def __init__(self, sigma: float, p: float = 2.0):
        self.sigma = check_positive("sigma", sigma)
        self.p = _check_shape(p)
        self.norm = self.p
        self._kl_families: list[KLBoundFamily] | None = None  # built on first use (not needed to sample)
        # The "kl" certificate's native norm is this instance's p (the decorator can only fix a
        # class-wide norm), and it needs the dimension exactly when p > 2 (d^{1 − k/p} factors).
        specs = self.certificate_specs()  # the class's (a copy)
        specs["kl"] = dataclasses.replace(specs["kl"], norm=self.p, needs_dim=self.p > 2.0)
        self._certificates = specs

    @property
    def _families(self) -> list[KLBoundFamily]:
        if self._kl_families is None:
            self._kl_families = kl_coordinate_families(self.p)
        return self._kl_families

    @classmethod
    def from_std(cls, std: float, p: float) -> GeneralizedGaussianNoise:
        """The GN(0, σ, p) noise with per-coordinate standard deviation ``std`` (equal-variance comparisons)."""
        std = check_positive("std", std)
        p = _check_shape(p)
        return cls(std / math.sqrt(_abs_moment(p, 2.0)), p)

    @property
    def std(self) -> float:
        """σ √(Γ(3/p)/Γ(1/p)): √2σ for p = 1, σ/√2 for p = 2, → σ/√3 as p → ∞."""
        return self.sigma * math.sqrt(_abs_moment(self.p, 2.0))

    def params(self):
        return {"sigma": self.sigma, "p": self.p}

    # ------------------------------------------------------------------ sampling
    def _sample(self, size, *, generator, device, dtype):
        """Exact: |z/σ|^p ~ Gamma(1/p, 1), and Gamma(1/p) = X·U^p with X ~ Gamma(1 + 1/p), U ~ U(0, 1)
        independent (the standard boosting identity), so |z|/σ = U·X^{1/p}. With a random sign,
        z = σ·V·X^{1/p}, V ~ U(−1, 1). This form never underflows (X has shape ≥ 1), unlike
        Gamma(1/p)^{1/p} for large p, and tends to σ·V (uniform) as p → ∞. p = 2 draws N(0, σ²/2)
        directly."""
        work = dtype if dtype in (torch.float32, torch.float64) else torch.float32
        if self.p == 2.0:  # N(0, σ²/2): the same law, ~10× faster than the gamma route
            z = torch.randn(size, generator=generator, device=device, dtype=work).mul_(self.sigma / math.sqrt(2.0))
            return z if z.dtype == dtype else z.to(dtype)
        shape = torch.full(size, 1.0 + 1.0 / self.p, dtype=work, device=device)
        x = standard_gamma(shape, generator=generator)
        v = torch.rand(size, generator=generator, device=device, dtype=work).mul_(2.0).sub_(1.0)
        z = x.pow_(1.0 / self.p).mul_(v).mul_(self.sigma)
        return z if z.dtype == dtype else z.to(dtype)

    # ------------------------------------------------------------------ KL bounds
    def kl_coordinate_bound(self, t) -> torch.Tensor:
        """Upper bound on the per-coordinate KL φ_p(t) = KL(GN(σt, σ, p) ‖ GN(0, σ, p)) (t = shift/σ):
        the smallest of the bounds of ``docs/generalized_gaussian.md`` (exact for even p and p = 1)."""
        t = torch.as_tensor(t, dtype=torch.float64).abs()
        best = None
        for fam in self._families:
            val = sum(c * t**k for k, c in fam.terms)
            best = val if best is None else torch.minimum(best, val)
        if self.p == 1.0:
            best = torch.minimum(best, _laplace_g(t))
        return best

    def kl_ball_bound(self, eps, norm=None, dim: int | None = None) -> torch.Tensor:
        """Upper bound on sup_{‖δ‖_q ≤ eps} KL(GN(δ, σ, p) ‖ GN(0, σ, p)) in dimension ``dim`` (q = ``norm``,
        default p) — the left-hand side of Hayes' equation (21)."""
        q = self.p if norm is None else parse_norm(norm)
        s = torch.as_tensor(eps, dtype=torch.float64) / self.sigma
        best = None
        for fn, _, _ in self._ball_bounds(q, None if dim is None else int(dim)):
            val = torch.where(s > 0, fn(torch.log(s)), torch.zeros_like(s))
            best = val if best is None else torch.minimum(best, val)
        if best is None:
            raise ValueError(f"The KL bound in norm {norm!r} needs the input dimension: pass dim.")
        return best

    def _ball_bounds(self, q: float, dim: int | None):
        """[(log s ↦ K(s), K'(s), bracket(h)) per usable family] for the ℓq ball, s = ε/σ."""
        out = []
        for fam in self._families:
            factors = [_dim_factor(k, q, dim) for k, _ in fam.terms]
            if any(f is None for f in factors):
                continue
            poly = tuple((k, c * f) for (k, c), f in zip(fam.terms, factors) if c > 0)
            out.append(_polynomial_bound(poly))
        if self.p == 1.0 and (q == 1.0 or math.isinf(q)):
            m = 1.0 if q == 1.0 else (None if dim is None else float(dim))
            if m is not None:
                out.append(_laplace_bound(m))
        return out

    def _kl_radius(self, p_a, p_b, ctx, q: float) -> torch.Tensor:
        bounds = self._ball_bounds(q, ctx.dim)
        if not bounds:
            raise ValueError(
                f"The KL certificate of {type(self).__name__} in norm {q:g} needs the input dimension: pass dim."
            )
        h = kl_flip_bound(p_a, p_b)
        best = None
        for fn, dfn, bracket in bounds:
            s = _solve_increasing(fn, dfn, bracket, h)
            best = s if best is None else torch.maximum(best, s)
        return self.sigma * best

    # ------------------------------------------------------------------ certificates
    @certificate("kl", norm=2.0)  # native norm replaced by this instance's p in __init__
    def _kl_own(self, p_a, p_b, ctx):
        """KL certificate in the noise's own ℓp (Hayes, equations (20)–(21), generalised and made sound
        for every real p ≥ 1: ``docs/generalized_gaussian.md``). For p > 2 it depends on the
        dimension."""
        return self._kl_radius(p_a, p_b, ctx, self.p)

    @certificate("kl_l1", norm=1)
    def _kl_l1(self, p_a, p_b, ctx):
        """KL certificate solved directly in ℓ1: Σ_i |t_i|^k ≤ ‖t‖₁^k for every k ≥ 1, dimension-free."""
        return self._kl_radius(p_a, p_b, ctx, 1.0)

    @certificate("kl_l2", norm=2)
    def _kl_l2(self, p_a, p_b, ctx):
        """KL certificate solved directly in ℓ2: terms with k ≥ 2 carry no dimension factor (for p < 2 the
        power bound |t|^p needs d^{1 − p/2} and is used only when the dimension is known)."""
        return self._kl_radius(p_a, p_b, ctx, 2.0)

    @certificate("kl_linf", norm=math.inf, needs_dim=True)
    def _kl_linf(self, p_a, p_b, ctx):
        """KL certificate solved directly in ℓ∞: Σ_i |t_i|^k ≤ d ‖t‖_∞^k."""
        return self._kl_radius(p_a, p_b, ctx, math.inf)


# ====================================================================== solving K(s) <= h
def _polynomial_bound(terms):
    ks = [k for k, _ in terms]
    cs = [c for _, c in terms]
    n = float(len(terms))

    log_cs = [math.log(c) for c in cs]

    def fn(log_s):  # K(e^{log_s}) = Σ c_k e^{k log_s}: exp is much cheaper than pow with a real exponent
        return sum(torch.exp(lc + k * log_s) for k, lc in zip(ks, log_cs))

    def dfn(s):
        return sum(c * k * s ** (k - 1.0) for k, c in zip(ks, cs))

    def bracket(h):
        # At s = lo every term is ≤ h/n, so K(lo) ≤ h; beyond hi some single term exceeds h.
        lo = torch.stack([(h / (n * c)) ** (1.0 / k) for k, c in zip(ks, cs)]).amin(dim=0)
        hi = torch.stack([(h / c) ** (1.0 / k) for k, c in zip(ks, cs)]).amin(dim=0)
        return lo, hi

    return fn, dfn, bracket


def _laplace_bound(m: float):
    def fn(log_s):
        return m * _laplace_g(torch.exp(log_s))

    def dfn(s):
        return -m * torch.expm1(-s)

    def bracket(h):
        # g(s) ≤ min(s, s²/2) and g(s) ≥ s − 1.
        hh = h / m
        return torch.maximum(hh, torch.sqrt(2.0 * hh)), hh + 1.0

    return fn, dfn, bracket


def _solve_increasing(fn, dfn, bracket, h: torch.Tensor) -> torch.Tensor:
    """Largest s ≥ 0 with K(s) ≤ h (K continuous increasing, K(0) = 0; ``fn(log s) = K(s)``,
    ``dfn(s) = K'(s)``), vectorised over h.

    Geometric bisection from a bracket whose lower end is feasible; returns the feasible lower end
    (so the result never exceeds the true root). Differentiable in h by the implicit function
    theorem: the value is the bisection's, the gradient ds/dh = 1/fn'(s).
    """
    hd = h.detach()
    finite = torch.isfinite(hd) & (hd > 0)
    hs = torch.where(finite, hd, torch.ones_like(hd)).clamp(min=1e-300)
    with torch.no_grad():
        lo, hi = bracket(hs)
        lo = torch.minimum(lo, hi)
        llo, lhi = torch.log(lo), torch.log(hi)
        for _ in range(_BISECTION_STEPS):
            mid = 0.5 * (llo + lhi)
            ok = fn(mid) <= hs
            llo = torch.where(ok, mid, llo)
            lhi = torch.where(ok, lhi, mid)
        s = torch.exp(llo)
    if h.requires_grad:
        slope = dfn(s)
        s = s + torch.where(finite, (h - hd) / slope, torch.zeros_like(h))
    s = torch.where(finite, s, torch.where(hd > 0, torch.full_like(s, math.inf), torch.zeros_like(s)))
    return s
