"""Statistical core of anytime-valid sequential CERTIFY (project issue 16): randomized Clopper–Pearson,
certificate inversion, the look schedule and the sequential decision.

Every Monte Carlo test uses a fixed seed (its outcome is deterministic) and a tolerance derived from
the statistics of what it counts: a count of failures among independent repetitions is binomial, and
the bound it is checked against is a binomial quantile at 1e-3 (or 1e-4 when several checks share a
test), so a correct implementation fails a check with probability about 1e-3 for a fresh seed."""

import math

import numpy as np
import pytest
from scipy.stats import binom, norm

from art_smoothing.certificates.bounds import (
    clopper_pearson_lower,
    clopper_pearson_lower_randomized,
    clopper_pearson_upper,
    clopper_pearson_upper_randomized,
    float_bisection,
)

ALPHAS = [0.001, 0.05, 0.3]


# ====================================================================== float bisection
def test_float_bisection_ends_on_adjacent_floats_of_a_threshold():
    thresholds = np.array([5e-324, 1e-300, 0.3, 0.5, math.nextafter(0.5, 1.0), 0.9999999999999999, 1.0])
    lo, hi = float_bisection(lambda p: p >= thresholds, np.zeros_like(thresholds), np.ones_like(thresholds))
    # hi is the threshold itself (where the predicate switches), lo the float just below (or the bracket end).
    assert np.array_equal(hi, thresholds)
    assert np.array_equal(lo[1:], np.nextafter(thresholds[1:], 0.0))


# ====================================================================== randomized Clopper–Pearson
@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("n", [1, 7, 60, 1000])
def test_randomized_cp_brackets_plain_cp_and_is_monotone(alpha, n):
    k = np.arange(n + 1, dtype=np.float64)[:, None]
    if n > 100:  # both ends and a stretch of the middle keep the test fast
        k = np.concatenate([k[:40], k[n // 2 - 20:n // 2 + 20], k[-40:]])
    u = np.linspace(0.0, 1.0, 11)[None, :]
    lower = clopper_pearson_lower_randomized(k, n, alpha, u)
    upper = clopper_pearson_upper_randomized(k, n, alpha, u)
    plain_lo = clopper_pearson_lower(k, n, alpha)
    plain_up = clopper_pearson_upper(k, n, alpha)
    # Never below (above) the plain bound for any u; u = 1 is the plain bound itself, u = 0 the plain
    # bound one vote further (k + 1 for the lower bound, k − 1 for the upper; 1 and 0 beyond the ends).
    assert np.all(lower >= plain_lo) and np.all(upper <= plain_up)
    assert np.array_equal(lower[:, -1], plain_lo[:, 0]) and np.array_equal(upper[:, -1], plain_up[:, 0])
    kf = k[:, 0]
    next_lo = np.where(kf < n, clopper_pearson_lower(np.minimum(kf + 1, n), n, alpha), 1.0)
    prev_up = np.where(kf > 0, clopper_pearson_upper(np.maximum(kf - 1, 0), n, alpha), 0.0)
    assert np.allclose(lower[:, 0], next_lo, rtol=0, atol=1e-13)
    assert np.allclose(upper[:, 0], prev_up, rtol=0, atol=1e-13)
    # Monotone: non-decreasing in k, non-increasing (lower) / non-decreasing (upper) in u.
    assert np.all(np.diff(lower, axis=0) >= 0) and np.all(np.diff(upper, axis=0) >= 0)
    assert np.all(np.diff(lower, axis=1) <= 0) and np.all(np.diff(upper, axis=1) >= 0)
    # Mirror image: U(k, n, u) = 1 − L(n − k, n, u) up to rounding.
    mirror = clopper_pearson_lower_randomized(n - k, n, alpha, u)
    assert np.allclose(upper, 1.0 - mirror, rtol=0, atol=1e-12)
    # The bound solves P_L(X > k) + u·P_L(X = k) = α where it is strictly inside (0, 1).
    inside = (lower > 0) & (lower < 1)
    kk, uu = np.broadcast_arrays(k, u)
    size = binom.sf(kk, n, lower) + uu * binom.pmf(kk, n, lower)
    assert np.allclose(size[inside], alpha, rtol=1e-8, atol=0)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_randomized_cp_edge_cases_are_exact(alpha):
    n = 20
    u = np.array([0.0, alpha / 3, alpha, 0.5, 1.0])
    # k = n: L = (α/u)^(1/n), and 1 when u ≤ α; k = 0: L = 1 − ((1 − α)/(1 − u))^(1/n) when u ≤ α, else 0.
    with np.errstate(divide="ignore"):
        top = np.where(u <= alpha, 1.0, (alpha / u) ** (1 / n))
    bottom = np.where(u <= alpha, 1.0 - ((1 - alpha) / (1 - np.minimum(u, 0.5))) ** (1 / n), 0.0)
    assert np.allclose(clopper_pearson_lower_randomized(n, n, alpha, u), top, rtol=1e-13, atol=0)
    assert np.allclose(clopper_pearson_lower_randomized(0, n, alpha, u), bottom, rtol=1e-12, atol=1e-16)
    assert np.allclose(clopper_pearson_upper_randomized(0, n, alpha, u), 1.0 - top, rtol=0, atol=1e-13)
    assert np.allclose(clopper_pearson_upper_randomized(n, n, alpha, u), 1.0 - bottom, rtol=0, atol=1e-13)


def test_randomized_cp_has_exact_coverage():
    """With X ~ Bin(n, p) and U ~ U(0, 1) independent, the randomized bound exceeds p with probability
    exactly α, so the miscount over R repetitions is Binomial(R, α): it must fall inside that law's
    [1e-4, 1 − 1e-4] quantiles (12 checks here, family-wise error ≈ 2.4e-3 for a fresh seed). The plain
    bound's exact miscoverage (summed over the binomial pmf) is far below α at the same n."""
    n, alpha, reps = 30, 0.1, 20000
    rng = np.random.default_rng(20240)
    lo_q, hi_q = binom.ppf(1e-4, reps, alpha), binom.ppf(1 - 1e-4, reps, alpha)
    for p in (0.3, 0.77, 0.95):
        x = rng.binomial(n, p, size=reps)
        u_lo, u_up = rng.random(reps), rng.random(reps)  # auxiliary draws, independent of the votes
        miss_lo = int(np.sum(clopper_pearson_lower_randomized(x, n, alpha, u_lo) > p))
        miss_up = int(np.sum(clopper_pearson_upper_randomized(x, n, alpha, u_up) < p))
        assert lo_q <= miss_lo <= hi_q, (p, miss_lo, lo_q, hi_q)
        assert lo_q <= miss_up <= hi_q, (p, miss_up, lo_q, hi_q)
        ks = np.arange(n + 1)
        plain_miss = float(np.sum(binom.pmf(ks, n, p) * (clopper_pearson_lower(ks, n, alpha) > p)))
        assert plain_miss < alpha  # conservative: the slack the randomization spends
