"""Confidence bounds on binomial proportions (vectorized, float64).

Plain one-sided Clopper–Pearson bounds (Cohen et al., 2019, CERTIFY), their randomized exact-size
variant (Voráček, 2024) and the float64 bisection both the randomized bounds and the certificate
inversion (:mod:`art_smoothing.certificates.inversion`) are computed with.
"""

from __future__ import annotations

import numpy as np
from scipy.special import betainc
from scipy.stats import beta, binom

__all__ = [
    "binomial_test_half",
    "check_alpha",
    "check_counts",
    "clopper_pearson_lower",
    "clopper_pearson_lower_randomized",
    "clopper_pearson_upper",
    "clopper_pearson_upper_randomized",
    "float_bisection",
]


def check_alpha(alpha, name: str = "alpha") -> float:
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in (0, 1), got {alpha!r}.") from None
    if not 0.0 < a < 1.0:
        raise ValueError(f"{name} must be in (0, 1) (a failure probability such as 0.001), got {alpha!r}.")
    return a


def clopper_pearson_lower(k, n, alpha: float) -> np.ndarray:
    """One-sided (1 − α) Clopper–Pearson lower bound on p from k successes in n trials:
    the α-quantile of Beta(k, n − k + 1), and 0 when k = 0. Exact (conservative) coverage."""
    k = np.asarray(k, dtype=np.float64)
    n = np.broadcast_to(np.asarray(n, dtype=np.float64), k.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = beta.ppf(alpha, np.maximum(k, 1.0), n - k + 1.0)
    return np.where(k > 0, out, 0.0)


def clopper_pearson_upper(k, n, alpha: float) -> np.ndarray:
    """One-sided (1 − α) Clopper–Pearson upper bound: the (1 − α)-quantile of Beta(k + 1, n − k), 1 when k = n."""
    k = np.asarray(k, dtype=np.float64)
    n = np.broadcast_to(np.asarray(n, dtype=np.float64), k.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = beta.ppf(1.0 - alpha, k + 1.0, np.maximum(n - k, 1.0))
    return np.where(k < n, out, 1.0)


def binomial_test_half(n_a, n_b) -> np.ndarray:
    """Two-sided p-value of the exact binomial test of n_a successes in n_a + n_b trials against p = 1/2
    (the test of Cohen et al.'s PREDICT). Vectorized; p-value 1 when n_a + n_b = 0."""
    n_a = np.asarray(n_a, dtype=np.int64)
    n_b = np.asarray(n_b, dtype=np.int64)
    total = n_a + n_b
    # The null distribution is symmetric, so the two-sided p-value is 2·P(X ≤ min(n_a, n_b)), capped at 1.
    p = 2.0 * binom.cdf(np.minimum(n_a, n_b), np.maximum(total, 1), 0.5)
    return np.where(total > 0, np.minimum(p, 1.0), 1.0)


def check_counts(k, n, *, k_name: str = "k", n_name: str = "n") -> tuple[np.ndarray, np.ndarray]:
    """Counts ``k`` of successes in ``n`` trials as broadcast float64 arrays (whole numbers, 0 ≤ k ≤ n, n ≥ 1).

    :raises ValueError: naming the parameter and the offending values.
    """
    try:
        k_arr = np.asarray(k, dtype=np.float64)
        n_arr = np.asarray(n, dtype=np.float64)
        k_arr, n_arr = np.broadcast_arrays(k_arr, n_arr)
    except (TypeError, ValueError):
        raise ValueError(f"{k_name} and {n_name} must be (broadcastable) arrays of counts, got {k!r} and "
                         f"{n!r}.") from None
    if not np.all(np.isfinite(n_arr)) or np.any(n_arr < 1) or np.any(n_arr != np.round(n_arr)):
        raise ValueError(f"{n_name} must hold whole numbers >= 1 (trials), got {n!r}.")
    whole = np.all(np.isfinite(k_arr)) and np.all(k_arr == np.round(k_arr))
    if not whole or np.any(k_arr < 0) or np.any(k_arr > n_arr):
        raise ValueError(f"{k_name} must hold whole numbers in 0..{n_name} (counts among {n_name} draws), "
                         f"got {k!r} for {n_name}={n!r}.")
    return k_arr.astype(np.float64), n_arr.astype(np.float64)


def float_bisection(predicate, lo, hi, *, max_iter: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Bisection over the float64 numbers themselves, vectorized: ``(lo', hi')`` adjacent floats.

    ``predicate(values) -> bool array`` must be monotone (False below some point, True from it on) on
    ``[lo, hi]``; ``lo`` and ``hi`` are non-negative float64 arrays (broadcast together). Non-negative
    floats are ordered like their bit patterns, so bisecting the int64 views halves the number of
    floats left in the bracket at every step: after at most 63 steps (64 by default) ``hi' − lo'`` is
    one float apart. Entries where ``hi`` already satisfies and ``lo`` fails keep the invariant
    ``predicate(lo') = False``, ``predicate(hi') = True`` (the caller checks the ends it is unsure of):
    only values the predicate was evaluated at (or the given ends) are ever returned.
    """
    lo_f = np.maximum(np.asarray(lo, dtype=np.float64), 0.0) + 0.0  # + 0.0 turns −0.0 into +0.0
    hi_f = np.maximum(np.asarray(hi, dtype=np.float64), 0.0) + 0.0
    lo_f, hi_f = np.broadcast_arrays(lo_f, hi_f)
    lo_b = np.ascontiguousarray(lo_f).view(np.int64).copy()
    hi_b = np.ascontiguousarray(hi_f).view(np.int64).copy()
    for _ in range(max_iter):
        gap = hi_b - lo_b
        active = gap > 1
        if not active.any():
            break
        mid_b = lo_b + gap // 2
        ok = np.broadcast_to(np.asarray(predicate(mid_b.view(np.float64)), dtype=bool), mid_b.shape)
        hi_b = np.where(active & ok, mid_b, hi_b)
        lo_b = np.where(active & ~ok, mid_b, lo_b)
    return lo_b.view(np.float64), hi_b.view(np.float64)


def _check_u(u) -> np.ndarray:
    try:
        u = np.asarray(u, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"u must be a number in [0, 1] or an array of them, got {u!r}.") from None
    if not np.all(np.isfinite(u)) or np.any(u < 0) or np.any(u > 1):
        raise ValueError("u must hold uniform draws in [0, 1] (e.g. numpy.random.default_rng(seed).random(N)), "
                         f"got values in [{np.nanmin(u) if u.size else '?'}, {np.nanmax(u) if u.size else '?'}].")
    return u


def _broadcast(k, n, u):
    try:
        return np.broadcast_arrays(k, n, u)
    except ValueError:
        raise ValueError(f"k (shape {k.shape}) and u (shape {u.shape}) must broadcast together.") from None


def _tail_above(j, n, p) -> np.ndarray:
    """P_p(X > j) for X ~ Bin(n, p), j ∈ {−1, …, n} (float arrays): the regularized incomplete beta
    I_p(j + 1, n − j), 1 for j = −1 and 0 for j = n."""
    inside = (j >= 0) & (j < n)
    with np.errstate(invalid="ignore"):
        val = betainc(np.maximum(j + 1.0, 1.0), np.maximum(n - j, 1.0), p)
    return np.where(inside, val, np.where(j < 0, 1.0, 0.0))


def _tail_below(j, n, p) -> np.ndarray:
    """P_p(X ≤ j) for X ~ Bin(n, p), j ∈ {−1, …, n}: I_{1−p}(n − j, j + 1) (accurate when it is small),
    0 for j = −1 and 1 for j = n."""
    inside = (j >= 0) & (j < n)
    with np.errstate(invalid="ignore"):
        val = betainc(np.maximum(n - j, 1.0), np.maximum(j + 1.0, 1.0), 1.0 - p)
    return np.where(inside, val, np.where(j < 0, 0.0, 1.0))


def clopper_pearson_lower_randomized(k, n, alpha: float, u) -> np.ndarray:
    """One-sided randomized Clopper–Pearson lower bound (Voráček, 2024), exact size α: the L solving

        P_L(X > k) + u·P_L(X = k) = α,   X ~ Binomial(n, L),

    from k successes in n trials and an auxiliary uniform draw ``u`` ∈ [0, 1] (vectorized; broadcast).

    **Validity (level 1 − α, exactly).** π(k, u; p) = P_p(X > k) + u·P_p(X = k) is the randomized
    p-value of the one-sided binomial test of "≤ p"; with X ~ Bin(n, p) and U ~ U(0, 1) independent,
    π(X, U; p) is exactly uniform on (0, 1). π is non-decreasing in p (it is (1 − u)·P_p(X ≥ k + 1)
    + u·P_p(X ≥ k), a mixture of binomial tails), so L > p exactly when π(X, U; p) < α: the bound
    exceeds the true p with probability exactly α — over the votes *and* u jointly.

    **Never below the plain bound.** u = 1 gives P_L(X ≥ k) = α, the plain
    :func:`clopper_pearson_lower`, and u = 0 the plain bound at k + 1. Proof for every u: π(k, u; p)
    ≤ π(k, 1; p) = P_p(X ≥ k), so π(k, u; L_plain) ≤ α, and π increasing in p puts its root at or
    above L_plain. It is non-increasing in u and non-decreasing in k.

    **What the extra randomness means for a user.** The same votes give a different bound (hence a
    different radius) with another u: the randomization spends the slack that the discreteness of
    the binomial leaves in the plain bound, so on average the bound is larger, but a single input's
    result is no longer a function of its votes alone. Draw u from a seeded stream *independent of
    the votes* (e.g. ``numpy.random.default_rng(seed)``, one u per input, never reused across
    bounds that are combined) and record the seed to reproduce results. The 1 − α coverage statement
    holds over the votes and u jointly; conditionally on an unlucky u it does not. Edge cases, exactly:
    k = n gives L = (α/u)^(1/n), and L = 1 when u ≤ α (an event of probability ≤ α·p^n, part of the
    α); k = 0 gives L = 1 − ((1 − α)/(1 − u))^(1/n) when u ≤ α and 0 otherwise.

    Computed by :func:`float_bisection` between the plain bounds at k and k + 1 (L ≤ 1 at k = n): the
    largest float64 L at which π evaluates ≤ α, so rounding never raises the bound.
    """
    alpha = check_alpha(alpha)
    k, n = check_counts(k, n)
    k, n, u = _broadcast(k, n, _check_u(u))
    plain = clopper_pearson_lower(k, n, alpha)
    nxt = np.where(k < n, clopper_pearson_lower(np.minimum(k + 1.0, n), n, alpha), 1.0)
    nxt = np.maximum(nxt, plain)

    def size(p):  # π(k, u; p) = (1 − u)·P_p(X ≥ k + 1) + u·P_p(X ≥ k)
        return (1.0 - u) * _tail_above(k, n, p) + u * _tail_above(k - 1.0, n, p)

    top = size(nxt) <= alpha
    lo, _ = float_bisection(lambda p: size(p) > alpha, plain, nxt)
    # u = 1 is the plain bound by definition: return it exactly (not a float or two off by rounding).
    return np.where(u == 1.0, plain, np.where(top, nxt, lo))


def clopper_pearson_upper_randomized(k, n, alpha: float, u) -> np.ndarray:
    """One-sided randomized Clopper–Pearson upper bound, exact size α: the U solving
    P_U(X < k) + u·P_U(X = k) = α (the mirror image of :func:`clopper_pearson_lower_randomized`, whose
    docstring gives the validity proof and what the auxiliary uniform ``u`` means for a user).

    u = 1 is the plain :func:`clopper_pearson_upper` and u = 0 the plain bound at k − 1; for every u
    the bound is never above the plain one (π only shrinks when u < 1). Edge cases, exactly: k = 0
    gives U = 1 − (α/u)^(1/n) and U = 0 when u ≤ α; k = n gives U = ((1 − α)/(1 − u))^(1/n) when
    u ≤ α and 1 otherwise. Computed as the smallest float64 at which the size evaluates ≤ α.
    """
    alpha = check_alpha(alpha)
    k, n = check_counts(k, n)
    k, n, u = _broadcast(k, n, _check_u(u))
    plain = clopper_pearson_upper(k, n, alpha)
    prev = np.where(k > 0, clopper_pearson_upper(np.maximum(k - 1.0, 0.0), n, alpha), 0.0)
    prev = np.minimum(prev, plain)

    def size(p):  # (1 − u)·P_p(X ≤ k − 1) + u·P_p(X ≤ k), non-increasing in p
        return (1.0 - u) * _tail_below(k - 1.0, n, p) + u * _tail_below(k, n, p)

    bottom = size(prev) <= alpha
    _, hi = float_bisection(lambda p: size(p) <= alpha, prev, plain)
    return np.where(u == 1.0, plain, np.where(bottom, prev, hi))
