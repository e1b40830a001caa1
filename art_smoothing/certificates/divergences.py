"""Divergence-based certificates (Li et al., 2019; Hayes, 2020, Table 1 and Section 2.3), re-derived.

If D satisfies data processing, D(Q‖P) ≤ D(noise at x + δ ‖ noise at x) for the class distributions
P, Q at x and x + δ; so δ is certified when that divergence stays below the smallest D(Q‖P) of a Q with
another top class. This module gives, as torch functions, those **flip bounds** h(p_a, p_b) (KL, Rényi,
χ², Hellinger, Bhattacharyya, TV) and the resulting **Gaussian ℓ2 radii** for N(0, σ²I), with
Lecuyer et al.'s (2019) differential-privacy radius for comparison. The derivations, the table of
closed forms, the corrections to Hayes' Table 1 (TV over-claims as printed; the KL row is loose by √2)
and the numerics are in ``docs/divergences.md``.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "DIVERGENCES",
    "bhattacharyya_flip_bound",
    "chi2_flip_bound",
    "gaussian_divergence",
    "gaussian_radius",
    "hellinger_flip_bound",
    "kl_flip_bound",
    "lecuyer_dp_radius",
    "renyi_flip_bound",
    "renyi_radius",
    "split_probabilities",
    "tv_flip_bound",
]

#: names of the divergence certificates (as used by :class:`~art_smoothing.noise.GaussianNoise`)
DIVERGENCES = ("kl", "renyi", "chi2", "hellinger", "bhattacharyya", "tv", "lecuyer_dp")

#: default Rényi orders searched before refinement: log-spaced over [0.1, 20] (the optimum is in
#: [1, 1.5] for binary bounds, near 1 for small p_b; α = 1 itself is the KL radius, added separately)
_RENYI_GRID = tuple(float(a) for a in torch.logspace(math.log10(0.1), math.log10(20.0), 48, dtype=torch.float64))
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def _golden_section_max(f, lo: torch.Tensor, hi: torch.Tensor, steps: int):
    """Vectorised golden-section search for the maximum of a unimodal ``f`` on [lo, hi] (elementwise);
    returns the two final probes as ((x1, f(x1)), (x2, f(x2)))."""
    x1 = hi - _GOLDEN * (hi - lo)
    x2 = lo + _GOLDEN * (hi - lo)
    f1, f2 = f(x1), f(x2)
    for _ in range(steps):
        left = f1 >= f2  # maximum in [lo, x2]
        hi = torch.where(left, x2, hi)
        lo = torch.where(left, lo, x1)
        x2n = torch.where(left, x1, lo + _GOLDEN * (hi - lo))
        x1n = torch.where(left, hi - _GOLDEN * (hi - lo), x2)
        f2n = torch.where(left, f1, f(x2n))
        f1n = torch.where(left, f(x1n), f2)
        x1, x2, f1, f2 = x1n, x2n, f1n, f2n
    return (x1, f1), (x2, f2)


# ====================================================================== probabilities
def split_probabilities(p_a: torch.Tensor, p_b: torch.Tensor | None):
    """(a, b, c): top-class lower bound, runner-up upper bound (binary: 1 − p_a), rest c = 1 − a − b ≥ 0."""
    if p_b is None:
        return p_a, 1.0 - p_a, torch.zeros_like(p_a)
    return p_a, p_b, torch.clamp(1.0 - p_a - p_b, min=0.0)


def _sqrt_gap_sq(a, b):
    """s = (√a − √b)², computed as ((a − b)/(√a + √b))² (no cancellation for a ≈ b)."""
    return ((a - b) / (torch.sqrt(a) + torch.sqrt(b))) ** 2


# ====================================================================== flip bounds
def kl_flip_bound(p_a: torch.Tensor, p_b: torch.Tensor | None = None) -> torch.Tensor:
    """min KL(Q‖P) over P consistent with the bounds and Q with a different top class:
    −log(2√(p_a p_b) + 1 − p_a − p_b) = −log(1 − (√p_a − √p_b)²) (Hayes, equation (15); Li et al.).

    Monotone: increasing in √a − √b, hence in a, decreasing in b.
    """
    a, b, c = split_probabilities(p_a, p_b)
    s = _sqrt_gap_sq(a, b)
    z = 2.0 * torch.sqrt(a * b) + c
    return torch.where(s < 0.5, -torch.log1p(-s), -torch.log(z))


def renyi_flip_bound(p_a: torch.Tensor, p_b: torch.Tensor | None, alpha) -> torch.Tensor:
    """min D_α(Q‖P) over flipped Q: −log(c + 2 M_{1−α}(a, b)) for α > 0, α ≠ 1 (Li et al., 2019,
    Hayes equation (10)); ``alpha`` broadcasts against the probabilities.

    Derivation: on q_A = q_B = m, Σ q^α p^(1−α) = (2m)^α p′^(1−α) + (1 − 2m)^α c^(1−α) with
    p′ = 2 M_{1−α}(a, b); by Hölder its minimum (α > 1) / maximum (α < 1) over m is (p′ + c)^(1−α), so
    D_α ≥ −log(p′ + c). Monotone: ∂p′/∂a = (a/M)^(−α) ≤ 1 ≤ (b/M)^(−α) = ∂p′/∂b (b ≤ M ≤ a), so
    p′ + c = 1 − a − b + p′ is non-increasing in a and non-decreasing in b.
    """
    a, b, c = split_probabilities(p_a, p_b)
    alpha = torch.as_tensor(alpha, dtype=a.dtype, device=a.device)
    q = 1.0 - alpha
    eps = torch.finfo(a.dtype).eps
    # ρ = M_q(a, b)/AM(a, b) ≤ 1 and x = (a + b)(1 − ρ) = a + b − 2M = 1 − (c + 2M), the quantity to bound.
    # (1) Near a = b, via t = (a − b)/(a + b): ρ^q = ((1 + t)^q + (1 − t)^q)/2 = 1 + Σ_k C(q, 2k) t^{2k}.
    #     Every term has the sign of q(q − 1) (q < 1), so a truncated sum lies between 0 and the full
    #     one, which can only make ρ closer to 1, x smaller and the bound lower: truncation is sound.
    #     No cancellation: the error is a few ulps relative to x, however small x is.
    t = (a - b) / (a + b)
    t2 = t * t
    coef = q * (q - 1.0) / 2.0
    power = t2
    series = torch.zeros_like(t2 * q)
    for k in range(1, 9):
        series = series + coef * power
        coef = coef * (q - 2.0 * k) * (q - 2.0 * k - 1.0) / ((2.0 * k + 1.0) * (2.0 * k + 2.0))
        power = power * t2
    x_series = (a + b) * (-torch.expm1(torch.log1p(series) / q)) * (1.0 - 64.0 * eps)
    # (2) Elsewhere: log M_q = (logaddexp(q log a, q log b) − log 2)/q, whose rounding error (about
    #     eps·(|log a| + |log b| + 1/|q|) in log M) is subtracted so that rounding never raises the bound.
    la, lb = torch.log(a), torch.log(b)
    log_m = (torch.logaddexp(q * la, q * lb) - math.log(2.0)) / q
    log_am = torch.log(0.5 * (a + b))
    finite = lambda v: torch.where(torch.isfinite(v), v.abs(), torch.zeros_like(v))  # log 0 enters exactly
    err = 16.0 * eps * (finite(la) + finite(lb) + 1.0 / q.abs() + 2.0)
    x_direct = (a + b) * (-torch.expm1(log_m - log_am)) - (a + b) * err
    x = torch.where(t.abs() < 0.1, x_series, x_direct)
    direct = c + 2.0 * torch.exp(log_m + err)  # = 1 − x, rounded up
    h = torch.where(x < 0.5, -torch.log1p(-x.clamp(min=0.0)), -torch.log(direct) * (1.0 - 4.0 * eps))
    return h.clamp(min=0.0)


def chi2_flip_bound(p_a: torch.Tensor, p_b: torch.Tensor | None = None) -> torch.Tensor:
    """min χ²(Q‖P) = Σ (q − p)²/p over flipped Q: (a − b)²/((a + b) − (a − b)²) (Hayes, Table 1).

    Derivation: on q_A = q_B = m, Σ q²/p = (2m)²/p′ + (1 − 2m)²/c with p′ = 4ab/(a + b), minimised
    at 2m = p′/(p′ + c) with value 1/(p′ + c). Monotone: ∂h/∂a ∝ u(2v − u) > 0 and
    ∂h/∂b ∝ −u(2v + u) < 0 (u = a − b, v = a + b).
    """
    a, b, _ = split_probabilities(p_a, p_b)
    u = a - b
    denom = a * (1.0 - a) + b * (1.0 - b) + 2.0 * a * b  # = (a + b) − (a − b)² ≥ 0
    return u * u / denom


def hellinger_flip_bound(p_a: torch.Tensor, p_b: torch.Tensor | None = None) -> torch.Tensor:
    """min H²(Q, P) = ½ Σ(√q − √p)² over flipped Q: 1 − √(1 − (√a − √b)²/2) (Hayes, Table 1).

    Derivation: H² = 1 − BC with BC = Σ √(q p); on q_A = q_B, Cauchy–Schwarz gives
    max BC = √((√a + √b)²/2 + c) = √(1 − s/2). Monotone in √a − √b.
    """
    a, b, _ = split_probabilities(p_a, p_b)
    return -torch.expm1(0.5 * torch.log1p(-0.5 * _sqrt_gap_sq(a, b)))


def bhattacharyya_flip_bound(p_a: torch.Tensor, p_b: torch.Tensor | None = None) -> torch.Tensor:
    """min D_B(Q, P) = −log Σ √(q p) over flipped Q: −½ log(1 − (√a − √b)²/2) (Hayes' Table 1 entry,
    simplified; see ``docs/divergences.md``)."""
    a, b, _ = split_probabilities(p_a, p_b)
    return -0.5 * torch.log1p(-0.5 * _sqrt_gap_sq(a, b))


def tv_flip_bound(p_a: torch.Tensor, p_b: torch.Tensor | None = None) -> torch.Tensor:
    """min TV(Q, P) over flipped Q: (a − b)/2 (Hayes, Table 1, second column)."""
    a, b, _ = split_probabilities(p_a, p_b)
    return 0.5 * (a - b)


# ====================================================================== Gaussian divergences
def gaussian_divergence(name: str, r, sigma: float, alpha: float | None = None) -> torch.Tensor:
    """D(N(δ, σ²I) ‖ N(0, σ²I)) as a function of r = ‖δ‖₂ (symmetric in the two arguments).

    ``name``: "kl" (r²/2σ²), "renyi" (α r²/2σ², needs ``alpha``), "chi2" (e^{r²/σ²} − 1),
    "hellinger" (1 − e^{−r²/8σ²}), "bhattacharyya" (r²/8σ²), "tv" (2Φ(r/2σ) − 1).
    """
    r = torch.as_tensor(r, dtype=torch.float64)
    t2 = (r / sigma) ** 2
    if name == "kl":
        return t2 / 2.0
    if name == "renyi":
        if alpha is None or not alpha > 0:
            raise ValueError(f"The Rényi divergence needs an order alpha > 0, got {alpha!r}.")
        return alpha * t2 / 2.0
    if name == "chi2":
        return torch.expm1(t2)
    if name == "hellinger":
        return -torch.expm1(-t2 / 8.0)
    if name == "bhattacharyya":
        return t2 / 8.0
    if name == "tv":
        return 2.0 * torch.special.ndtr(r / (2.0 * sigma)) - 1.0
    raise ValueError(f"Unknown divergence {name!r}; choose one of kl, renyi, chi2, hellinger, bhattacharyya, tv.")


# ====================================================================== Gaussian radii
def _renyi_radius_at(p_a, p_b, alpha, sigma):
    return sigma * torch.sqrt(2.0 * renyi_flip_bound(p_a, p_b, alpha) / alpha)


def renyi_radius(p_a: torch.Tensor, p_b: torch.Tensor | None, sigma: float, *, orders=None,
                 refine: int = 32) -> torch.Tensor:
    """ℓ2 radius of N(0, σ²I) from the Rényi divergences, optimised over the order α > 0 (Li et al.,
    2019, Theorem 1; Hayes, equation (12)): sup_α σ √(2 h_α / α), with h_α = :func:`renyi_flip_bound`.

    Every single α gives a sound radius, so the value returned — the best over a log-spaced grid
    (``orders``), the KL limit α → 1, and ``refine`` golden-section steps around the best grid order
    (per input, vectorised) — is a lower bound on the supremum and itself sound. Orders within 1e-4 of
    1 are moved to 1 ± 1e-4 (still valid orders) to avoid the 0/0 of the power mean at α = 1.

    Differentiable in (p_a, p_b): the order is chosen without gradient, and the radius is then
    evaluated at that (fixed) order — the envelope theorem makes this the gradient of the supremum.
    """
    grid = torch.tensor(_RENYI_GRID if orders is None else orders, dtype=p_a.dtype, device=p_a.device)
    if bool((grid <= 0).any()):
        raise ValueError("Rényi orders must be > 0.")

    def safe(alpha):
        near = (alpha - 1.0).abs() < 1e-4
        return torch.where(near, torch.where(alpha >= 1.0, 1.0 + 1e-4, 1.0 - 1e-4), alpha)

    with torch.no_grad():
        pa = p_a.detach()
        pb = None if p_b is None else p_b.detach()
        vals = _renyi_radius_at(pa[..., None], None if pb is None else pb[..., None], safe(grid), 1.0)
        vals = torch.nan_to_num(vals, nan=-1.0)
        best_idx = vals.argmax(dim=-1)
        n = grid.numel()
        lo_a = grid[(best_idx - 1).clamp(min=0)]
        hi_a = grid[(best_idx + 1).clamp(max=n - 1)]
        best_alpha = grid[best_idx]
        best_val = vals.gather(-1, best_idx[..., None])[..., 0]

        def f(log_alpha):
            v = _renyi_radius_at(pa, pb, safe(torch.exp(log_alpha)), 1.0)
            return torch.nan_to_num(v, nan=-1.0)

        for x, fx in _golden_section_max(f, torch.log(lo_a), torch.log(hi_a), int(refine)):
            better = fx > best_val
            best_alpha = torch.where(better, safe(torch.exp(x)), best_alpha)
            best_val = torch.where(better, fx, best_val)
    radius = _renyi_radius_at(p_a, p_b, best_alpha, sigma)
    # The KL radius is the α → 1 limit: include it (it can win when the optimum is at α ≈ 1).
    return torch.maximum(torch.nan_to_num(radius, nan=0.0), gaussian_radius("kl", p_a, p_b, sigma))


def gaussian_radius(name: str, p_a: torch.Tensor, p_b: torch.Tensor | None, sigma: float) -> torch.Tensor:
    """ℓ2 radius of N(0, σ²I) from divergence ``name`` (closed forms of the table in
    ``docs/divergences.md``): the largest r with D_Gauss(r) ≤ min over flipped Q. Differentiable in
    (p_a, p_b).

    ``name`` is one of :data:`DIVERGENCES`; "renyi" and "lecuyer_dp" optimise a parameter (see
    :func:`renyi_radius`, :func:`lecuyer_dp_radius`).
    """
    if name == "kl":
        return sigma * torch.sqrt(2.0 * kl_flip_bound(p_a, p_b))
    if name == "chi2":
        return sigma * torch.sqrt(torch.log1p(chi2_flip_bound(p_a, p_b)))
    if name in ("hellinger", "bhattacharyya"):
        # 1 − e^{−r²/8σ²} ≤ 1 − √(1 − s/2)  ⇔  r²/8σ² ≤ −½ log(1 − s/2)  ⇔  the Bhattacharyya condition.
        h = bhattacharyya_flip_bound(p_a, p_b) if name == "bhattacharyya" else -torch.log1p(
            -hellinger_flip_bound(p_a, p_b))
        return sigma * torch.sqrt(8.0 * h)
    if name == "tv":
        return 2.0 * sigma * torch.special.ndtri(0.5 + 0.5 * tv_flip_bound(p_a, p_b))
    if name == "renyi":
        return renyi_radius(p_a, p_b, sigma)
    if name == "lecuyer_dp":
        return lecuyer_dp_radius(p_a, p_b, sigma)
    raise ValueError(f"Unknown divergence certificate {name!r}; choose one of {DIVERGENCES}.")


def _lecuyer_at(a, b, eps, sigma):
    # σ ε / √(2 log(1.25 (1 + e^ε) / (a − e^{2ε} b)))
    slack = a - torch.exp(2.0 * eps) * b
    ratio = 1.25 * (1.0 + torch.exp(eps)) / slack
    return sigma * eps / torch.sqrt(2.0 * torch.log(ratio))


def lecuyer_dp_radius(p_a: torch.Tensor, p_b: torch.Tensor | None, sigma: float, *, grid: int = 64,
                      refine: int = 32) -> torch.Tensor:
    """Lecuyer et al. (2019) differential-privacy ℓ2 radius for Gaussian noise (as quoted by Hayes,
    §2.3, and by Cohen et al., Appendix):

        sup_{0 < ε ≤ min(1, ½ log(p_a/p_b))}  σ ε / √(2 log(1.25 (1 + e^ε) / (p_a − e^{2ε} p_b))).

    Derivation: the Gaussian mechanism with noise σ ≥ √(2 log(1.25/δ_DP)) L / ε is (ε, δ_DP)-DP for
    ℓ2 sensitivity L and ε ≤ 1 (Dwork & Roth, Theorem A.1); Lecuyer et al.'s Proposition 1 then keeps
    the prediction when p_a > e^{2ε} p_b + (1 + e^ε) δ_DP. Taking δ_DP as large as this allows and
    solving for L gives the expression; any admissible ε gives a sound radius, so the best of a grid
    (``grid`` points ε = t·ε_max) refined by golden section (``refine`` steps) is sound.
    Differentiable in (p_a, p_b) at the selected ε (envelope theorem, as in :func:`renyi_radius`).
    """
    a, b, _ = split_probabilities(p_a, p_b)
    with torch.no_grad():
        ad, bd = a.detach(), b.detach()
        eps_max = torch.clamp(0.5 * (torch.log(ad) - torch.log(bd)), max=1.0)
        t = torch.linspace(1.0 / grid, 1.0, grid, dtype=ad.dtype, device=ad.device)
        eps_grid = eps_max[..., None] * t
        vals = torch.nan_to_num(_lecuyer_at(ad[..., None], bd[..., None], eps_grid, 1.0), nan=-1.0)
        idx = vals.argmax(dim=-1)
        best_t = t[idx]
        best_val = vals.gather(-1, idx[..., None])[..., 0]
        lo, hi = t[(idx - 1).clamp(min=0)], t[(idx + 1).clamp(max=grid - 1)]

        def f(tt):
            return torch.nan_to_num(_lecuyer_at(ad, bd, eps_max * tt, 1.0), nan=-1.0)

        for x, fx in _golden_section_max(f, lo, hi, int(refine)):
            better = fx > best_val
            best_t = torch.where(better, x, best_t)
            best_val = torch.where(better, fx, best_val)
        eps = eps_max * best_t
    return torch.nan_to_num(torch.clamp(_lecuyer_at(a, b, eps, sigma), min=0.0), nan=0.0)
