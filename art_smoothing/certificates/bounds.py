"""Confidence bounds on binomial proportions (vectorized, float64)."""

from __future__ import annotations

import numpy as np
from scipy.stats import beta, binom

__all__ = ["binomial_test_half", "check_alpha", "clopper_pearson_lower", "clopper_pearson_upper"]


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
