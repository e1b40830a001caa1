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


# ====================================================================== certificate inversion
SMALL_TABLE = {"mc_samples": 1 << 15, "table_radii": 256}  # as in test_variational: ~0.5 s per table


def _noise_cases():
    """(id, noise factory, certified_radius keywords, radius grid) for every noise of the package."""
    from art_smoothing.noise import (
        DeterministicSplittingNoise,
        GaussianNoise,
        GeneralizedGaussianNoise,
        LaplaceNoise,
        MixedNormNoise,
        PowerLawNoise,
        SplittingNoise,
        UniformNoise,
    )

    grid = np.array([0.0, 0.01, 0.1, 0.25, 0.5, 1.0, 2.0, 50.0])
    return [
        ("gaussian-l2", lambda: GaussianNoise(0.25), {}, grid),
        ("gaussian-linf", lambda: GaussianNoise(0.25), {"norm": "inf", "dim": 16}, grid / 4),
        ("laplace-l1", lambda: LaplaceNoise(0.5), {}, grid),
        ("uniform-l1", lambda: UniformNoise(0.5), {}, grid),
        ("uniform-linf", lambda: UniformNoise(0.5), {"norm": "inf", "dim": 16}, grid / 20),
        ("splitting-l1", lambda: SplittingNoise(0.75), {}, grid),
        ("splitting-linf", lambda: SplittingNoise(0.75), {"norm": "inf", "dim": 16}, grid / 20),
        ("deterministic-splitting", lambda: DeterministicSplittingNoise(0.5, levels=17), {}, grid),
        ("gen-gaussian-l3", lambda: GeneralizedGaussianNoise(0.5, 3.0), {"dim": 8}, grid),
        ("gen-gaussian-l2", lambda: GeneralizedGaussianNoise(0.5, 3.0), {"norm": 2}, grid),
        ("power-law", lambda: PowerLawNoise(0.5, 2.0, **SMALL_TABLE), {"dim": 8}, grid),
        ("mixed-norm", lambda: MixedNormNoise(0.5, 2.0, **SMALL_TABLE), {"dim": 8}, grid / 2),
    ]


def _reaches(noise, p, radius, p_b=None, **kwargs):
    """The decision the inversion must invert: not abstaining and radius ≥ R."""
    r = noise.certified_radius(p, p_b, **kwargs)
    ok = p > 0.5 if p_b is None else p > np.minimum(p_b, 1.0 - p)
    return ok & (r >= radius)


def _check_inversion(noise, radius, p, p_b=None, **kwargs):
    """required_p_a's contract, entrywise: where finite, p reaches the radius and the float just below
    does not (the answer is the smallest float64 that reaches it); where inf, even p = 1 does not."""
    finite = np.isfinite(p)
    one = np.ones_like(radius)
    assert np.all(_reaches(noise, np.where(finite, p, 1.0), radius, p_b, **kwargs) == finite)
    below = np.nextafter(np.where(finite, p, 1.0), 0.0)
    assert not np.any(_reaches(noise, below, radius, p_b, **kwargs) & finite)
    assert not np.any(_reaches(noise, one, radius, p_b, **kwargs) & ~finite)
    assert np.all(p[finite] <= 1.0) and np.all(p[finite] > 0.0)


@pytest.mark.parametrize("case", _noise_cases(), ids=lambda c: c[0])
def test_required_p_a_inverts_every_noise(case):
    from art_smoothing.certificates.inversion import required_p_a

    _, make, kwargs, grid = case
    noise = make()
    p = required_p_a(noise, grid, **kwargs)
    assert p.shape == grid.shape
    _check_inversion(noise, grid, p, **kwargs)
    # Monotone in the radius; radius 0 means "not abstaining": the smallest float above 1/2.
    assert np.all(p[1:] >= p[:-1])  # (inf ≥ inf holds; np.diff would give NaN)
    assert p[0] == math.nextafter(0.5, 1.0)
    # The largest requested radius (50) is beyond every bounded certificate (uniform, splitting, a table's
    # last radius): impossible is inf. Unbounded ones (Gaussian, Laplace, KL) reach it only at p_A = 1.
    unbounded = np.isinf(noise.certified_radius(1.0, **kwargs))
    assert p[-1] == (1.0 if unbounded else np.inf)
    # Multiclass form: a runner-up bound smaller than 1 − p_A can only help.
    p_b = np.array([0.01, 0.1, 0.3])[:, None]
    pm = required_p_a(noise, grid[None, :5], p_b=p_b, **kwargs)
    assert pm.shape == (3, 5)
    radii, p_bs = (np.broadcast_to(a, pm.shape).copy() for a in (grid[None, :5], p_b))  # writable for torch
    _check_inversion(noise, radii, pm, p_bs, **kwargs)
    assert np.all(pm[:, 1:] >= pm[:, :-1])


def test_required_p_a_matches_closed_forms():
    """Gaussian: Φ(R/σ); uniform (ℓ1): 1/2 + R/(2λ); a tabulated certificate: the float after the table's
    critical p* at the first grid radius ≥ R (the look-up rounds radii down to the grid)."""
    from art_smoothing.certificates.inversion import required_p_a
    from art_smoothing.noise import GaussianNoise, PowerLawNoise, UniformNoise

    radii = np.array([0.05, 0.1, 0.3, 0.6])
    # 1e-15: a few float64 steps of the reference formulas' own rounding.
    assert np.allclose(required_p_a(GaussianNoise(0.3), radii), norm.cdf(radii / 0.3), rtol=0, atol=1e-15)
    assert np.allclose(required_p_a(UniformNoise(0.5), radii / 2), 0.5 + radii / 2, rtol=0, atol=1e-15)
    noise = PowerLawNoise(0.5, 2.0, **SMALL_TABLE)
    table = noise.radius_table(8)
    r = np.array([0.0001, 0.2, 0.7, table.max_radius, table.max_radius * 1.001])
    p = required_p_a(noise, r, dim=8)
    first = np.searchsorted(table.radii, r[:-1], side="left")
    assert np.array_equal(p[:-1], np.nextafter(table.p_star[first], 1.0))
    assert np.isinf(p[-1])


@pytest.mark.parametrize("noise_name", ["uniform", "splitting"])
def test_required_p_a_with_box_certificates(noise_name):
    from art_smoothing.certificates.inversion import required_p_a
    from art_smoothing.noise import SplittingNoise, UniformNoise

    noise = UniformNoise(2.0) if noise_name == "uniform" else SplittingNoise(2.0)
    rng = np.random.default_rng(7)
    x = rng.random((6, 4, 4))
    x[0] = 0.5  # the centre of the box: the adversary has the least room (1/2 per coordinate)
    x[1] = np.round(x[1])  # a corner: the most room (1 per coordinate)
    clip = (0.0, 1.0)
    grid = np.array([0.0, 0.1, 0.5, 1.0, 1.5, 3.0, 17.0])  # 16 = the box's ℓ1 diameter
    answers = {}
    for method in (None, "box_input", "box_floor", "box_closed"):
        p = required_p_a(noise, grid[None, :], method=method, x=x, clip_values=clip)
        assert p.shape == (6, grid.size)
        for g in range(grid.size):
            _check_inversion(noise, np.full(6, grid[g]), p[:, g], method=method, x=x, clip_values=clip)
        assert np.all(p[:, 1:] >= p[:, :-1])
        # Per-input radii and one shared radius give the same answers as the grid's columns.
        assert np.array_equal(required_p_a(noise, np.full(6, 0.5), method=method, x=x, clip_values=clip), p[:, 2])
        assert np.array_equal(required_p_a(noise, 0.5, method=method, x=x, clip_values=clip), p[:, 2])
        answers[method] = p
    # The certificates' documented order (input-dependent ≥ floor ≥ closed form) turns into the
    # reverse order of the p_A they need; the best (None) needs the least.
    assert np.array_equal(answers[None], answers["box_input"])
    assert np.all(answers["box_input"] <= answers["box_floor"])
    assert np.all(answers["box_floor"] <= answers["box_closed"])
    # The input-dependent certificate needs less at the centre than at a corner, strictly at R = 1.
    assert np.all(answers["box_input"][0] <= answers["box_input"][1])
    assert answers["box_input"][0, 3] < answers["box_input"][1, 3]


def test_required_p_a_rejects_bad_input_with_useful_messages():
    from art_smoothing.certificates.inversion import required_p_a
    from art_smoothing.noise import GaussianNoise, UniformNoise

    g = GaussianNoise(0.25)
    with pytest.raises(ValueError, match=">= 0"):
        required_p_a(g, [0.1, -0.2])
    with pytest.raises(ValueError, match="NaN"):
        required_p_a(g, [0.1, float("nan")])
    with pytest.raises(ValueError, match="empty"):
        required_p_a(g, [])
    with pytest.raises(ValueError, match="must be a number"):
        required_p_a(g, "far")
    with pytest.raises(ValueError, match="p_b must hold probabilities"):
        required_p_a(g, 0.1, p_b=1.5)
    with pytest.raises(ValueError, match="pass dim"):
        required_p_a(UniformNoise(0.5), 0.1, norm="inf")
    with pytest.raises(ValueError, match="radius\\[None, :\\]"):
        required_p_a(UniformNoise(0.5), [0.1, 0.2, 0.3], x=np.zeros((2, 4)), clip_values=(0, 1))
