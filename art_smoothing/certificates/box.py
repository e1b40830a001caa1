"""Geometry of box-constrained ℓ1 certificates (Voráček & Hein, 2023, §2.2 and Appendix A).

Everything here lives in the unit box [0, 1]^d with the noise half-width ``lam`` in box units (callers
rescale). The prediction at x + δ is kept while the cube overlap O(δ) = Π_i (1 − |δ_i|/(2λ))_+ exceeds
t = 1 − (p_A − p_B)/2 (Proposition 2.1/2.12), so a certified ℓ1 radius is sup{r : g(r) > t} for a lower
bound g on the minimal overlap over the threat set {‖δ‖₁ ≤ r, x + δ in the box}: ``g_closed``
(Corollary 2.7), ``g_floor`` (Proposition 2.5) and ``g_input`` (Theorem 2.8), from weakest to exact;
they hold only inside the box. Derivation and the case λ < 1/2 in ``docs/box.md``.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "g_closed",
    "g_floor",
    "g_input",
    "g_plain",
    "overlap_fraction",
    "radius_closed",
    "radius_floor",
    "radius_input",
    "required_overlap",
    "room",
]


def overlap_fraction(delta: torch.Tensor, lam: float) -> torch.Tensor:
    """O(δ) = Π_i (1 − |δ_i|/(2λ))_+ over the last axis (equation (3) of the paper's appendix)."""
    return torch.clamp(1.0 - delta.abs() / (2.0 * lam), min=0.0).prod(dim=-1)


def required_overlap(p_a: torch.Tensor, p_b: torch.Tensor | None) -> torch.Tensor:
    """The overlap t that must be exceeded: 1 − (p_a − p_b)/2 (Proposition 2.12), 3/2 − p_a when binary."""
    if p_b is None:
        return 1.5 - p_a
    return 1.0 - 0.5 * (p_a - p_b)


def room(x: torch.Tensor) -> torch.Tensor:
    """How far each coordinate of x ∈ [0, 1]^d can move inside the box: max(x_i, 1 − x_i) ∈ [1/2, 1]."""
    return torch.maximum(x, 1.0 - x)


# ---------------------------------------------------------------- lower bounds on the minimal overlap
def g_plain(r: torch.Tensor, lam: float) -> torch.Tensor:
    """Proposition 2.2 (no box): min overlap over ‖δ‖₁ ≤ r is (1 − r/(2λ))_+."""
    return torch.clamp(1.0 - r / (2.0 * lam), min=0.0)


def g_closed(r: torch.Tensor, lam: float) -> torch.Tensor:
    """Theorem 2.6: (1 − 1/(2λ))^r, a lower bound on the box-constrained minimum for λ ≥ 1/2
    (by convexity of a^r it is below the floor form); NaN-free 0 for λ < 1/2, where it is not valid."""
    if lam <= 0.5:
        return torch.zeros_like(r)
    return torch.exp(r * math.log1p(-0.5 / lam))


def g_floor(r: torch.Tensor, lam: float, dim: int | None = None) -> torch.Tensor:
    """Proposition 2.5: (1 − 1/(2λ))_+^⌊r⌋ · (1 − (r − ⌊r⌋)/(2λ))_+, the exact minimal overlap over all
    x, y ∈ [0, 1]^d with ‖x − y‖₁ ≤ r (attained at a corner); constant for r ≥ d (no box point is
    farther than d)."""
    if dim is not None:
        r = torch.clamp(r, max=float(dim))
    k = torch.floor(r)
    a = max(0.0, 1.0 - 0.5 / lam)
    head = torch.where(k > 0, torch.as_tensor(a, dtype=r.dtype) ** k, torch.ones_like(r))
    return head * torch.clamp(1.0 - (r - k) / (2.0 * lam), min=0.0)


def _greedy_tables(x: torch.Tensor, lam: float, k: int | None = None):
    """Sorted rooms (descending), their cumulative sums S_j and cumulative products P_j, j = 0..k
    (S_0 = 0, P_0 = 1): the breakpoints of the piecewise-linear minimal overlap of Theorem 2.8.
    ``k`` < d keeps only the k largest rooms (``torch.topk``, O(d) instead of a sort)."""
    r = room(x)
    if k is None or k >= r.shape[-1]:
        m = torch.sort(r, dim=-1, descending=True).values
    else:
        m = torch.topk(r, k, dim=-1, largest=True, sorted=True).values
    factors = torch.clamp(1.0 - m / (2.0 * lam), min=0.0)
    pad = torch.zeros(m.shape[:-1] + (1,), dtype=m.dtype, device=m.device)
    s = torch.cat([pad, torch.cumsum(m, dim=-1)], dim=-1)
    p = torch.cat([pad + 1.0, torch.cumprod(factors, dim=-1)], dim=-1)
    return m, s, p


def g_input(x: torch.Tensor, r: torch.Tensor, lam: float) -> torch.Tensor:
    """Theorem 2.8: the exact minimal overlap over {y ∈ [0, 1]^d : ‖y − x‖₁ ≤ r}, for x ``(N, d)``
    and radii ``r`` ``(N,)`` (or ``(N, k)`` for k radii per input).

    On [S_k, S_{k+1}] it is P_k · (1 − (r − S_k)/(2λ))_+ (greedy: fill the coordinates with the most
    room first, their room being max(x_i, 1 − x_i)); beyond S_d, the ℓ1 diameter seen from x, it
    stays P_d."""
    _, s, p = _greedy_tables(x, lam)
    squeeze = r.dim() == 1
    rr = r[:, None] if squeeze else r
    rr = torch.minimum(rr, s[:, -1:])
    # k = number of breakpoints S_1..S_d that are <= r (the piece r lies on), at most d - 1 so that
    # r = S_d evaluates on the last piece.
    k = torch.searchsorted(s[:, 1:].contiguous(), rr.contiguous(), right=True).clamp(max=x.shape[-1] - 1)
    s_k = s.gather(1, k)
    p_k = p.gather(1, k)
    out = p_k * torch.clamp(1.0 - (rr - s_k) / (2.0 * lam), min=0.0)
    return out[:, 0] if squeeze else out


# ---------------------------------------------------------------- radii: R = sup{r : g(r) > t}
def radius_closed(t: torch.Tensor, lam: float) -> torch.Tensor:
    """Corollary 2.7 / 2.14: R = ln t / ln(1 − 1/(2λ)) for λ > 1/2 (0 for λ ≤ 1/2, where the closed
    form does not hold). Weaker than :func:`radius_floor` everywhere and weaker than the plain
    Corollary 2.4 / 2.13 for radii below 1 (a^r ≤ 1 − r/(2λ) on [0, 1])."""
    if lam <= 0.5:
        return torch.zeros_like(t)
    return torch.log(t) / math.log1p(-0.5 / lam)


def radius_floor(t: torch.Tensor, lam: float, dim: int | None = None) -> torch.Tensor:
    """Exact inverse of :func:`g_floor` (Proposition 2.5): with a = 1 − 1/(2λ), the piece k with
    a^k ≥ t > a^{k+1}, then R = k + 2λ(1 − t/a^k). ``inf`` when ``dim`` is given and even the
    farthest box point keeps overlap a^d > t (the whole box is certified).

    For λ ≤ 1/2 (a ≤ 0) every unit step kills the overlap and R = 2λ(1 − t), the plain radius.
    """
    if lam <= 0.5:
        return 2.0 * lam * (1.0 - t)
    log_a = math.log1p(-0.5 / lam)
    k = torch.floor(torch.log(t) / log_a)
    # Repair the floor against rounding so that a^k >= t > a^(k+1) holds in floating point.
    k = torch.where(torch.exp(k * log_a) < t, k - 1.0, k)
    k = torch.where(torch.exp((k + 1.0) * log_a) >= t, k + 1.0, k)
    k = torch.clamp(k, min=0.0)
    a_k = torch.exp(k * log_a)
    u = torch.clamp(2.0 * lam * (1.0 - t / a_k), min=0.0, max=1.0)
    r = k + u
    if dim is not None:
        whole_box = math.exp(dim * log_a) > t
        r = torch.where(whole_box, torch.full_like(r, math.inf), r)
    return r


def radius_input(x: torch.Tensor, t: torch.Tensor, lam: float) -> torch.Tensor:
    """Exact inverse of :func:`g_input` (Theorem 2.8), vectorized over inputs x ``(N, d)`` in
    [0, 1]^d and thresholds t ``(N,)``, by walking the pieces with tensor ops (top rooms + cumulative
    sums/products, no root finder): K = #{k ≥ 1 : P_k > t}; if K = d the whole box keeps overlap
    > t and R = inf, else R = S_K + 2λ(1 − t/P_K) ∈ [S_K, S_{K+1}].

    Only the K + 1 largest rooms matter, and every room is ≥ 1/2, so P_k ≤ (1 − 1/(4λ))^k and
    K < ln t / ln(1 − 1/(4λ)): a ``topk`` of that many rooms replaces a full sort (O(N d) instead of
    O(N d log d)); a full sort is the fallback should the bound ever be reached.
    """
    d = x.shape[-1]
    k_top = d
    a_half = 1.0 - 0.25 / lam
    if a_half <= 0.0:
        k_top = 1
    elif t.numel():
        bound = math.log(float(t.min())) / math.log(a_half)
        if math.isfinite(bound):
            k_top = min(d, math.floor(bound) + 2)
    r = _radius_from_tables(x, t, lam, k_top)
    if r is None:
        r = _radius_from_tables(x, t, lam, d)
    return r


def _radius_from_tables(x: torch.Tensor, t: torch.Tensor, lam: float, k_top: int) -> torch.Tensor | None:
    d = x.shape[-1]
    _, s, p = _greedy_tables(x, lam, k_top)
    big_k = (p[:, 1:] > t[:, None]).sum(dim=1, keepdim=True)  # P is non-increasing in k
    if k_top < d and bool((big_k >= k_top).any()):
        return None  # the top-k tables do not reach the piece of some input: use all coordinates
    k_cap = big_k.clamp(max=k_top - 1)
    s_k = s.gather(1, k_cap)[:, 0]
    p_k = p.gather(1, k_cap)[:, 0]
    s_next = s.gather(1, k_cap + 1)[:, 0]
    r = s_k + 2.0 * lam * (1.0 - t / p_k)
    r = torch.minimum(r, s_next)  # exact arithmetic never exceeds the piece; guard rounding
    return torch.where(big_k[:, 0] >= d, torch.full_like(r, math.inf), r)
