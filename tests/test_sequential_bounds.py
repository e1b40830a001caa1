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


# ====================================================================== look schedule
def test_geometric_schedule_spends_alpha_as_documented():
    from art_smoothing.certificates.sequential import LookSchedule

    s = LookSchedule.geometric(10_000, 0.001)
    # ×1.5 rounded up from 32; 9368·√1.5 > 10 000: no look at 9368
    assert s.looks == (32, 48, 72, 108, 162, 243, 365, 548, 822, 1233, 1850, 2775, 4163, 6245, 10_000)
    assert math.isclose(math.fsum(s.alpha_looks), 0.001, rel_tol=1e-12)
    assert math.isclose(s.final_alpha, 0.00095, rel_tol=1e-12) and len(set(s.alpha_looks[:-1])) == 1
    assert math.isclose(math.fsum(s.beta_looks[:-1]), s.beta, rel_tol=1e-12)
    m = LookSchedule.geometric(10_000, 0.001, "multiclass")
    assert m.looks == s.looks and np.allclose(m.alpha_looks, np.array(s.alpha_looks) / 2, rtol=1e-15, atol=0)
    assert m.side_alpha == 0.0005 and m.side_beta == m.beta / 2
    # A budget below the first look (times √ratio) is a single look: fixed-n CERTIFY at the full α.
    one = LookSchedule.geometric(39, 0.01)  # 32·√1.5 > 39
    assert one.looks == (39,) and one.alpha_looks == (0.01,)
    assert LookSchedule.geometric(1000, 0.01, first_look=100, ratio=3).looks == (100, 300, 1000)


def test_final_look_bound_is_fixed_n_clopper_pearson_at_the_final_share():
    from art_smoothing.certificates.sequential import LookSchedule, anytime_lower, anytime_upper

    n, alpha = 10_000, 0.001
    k = np.array([0, 1, 5000, 9000, 9900, 9990, 9999, 10_000])
    s = LookSchedule.geometric(n, alpha)
    assert np.array_equal(anytime_lower(s, k, n), clopper_pearson_lower(k, n, 0.95 * alpha))
    assert np.all(anytime_lower(s, k, n) >= clopper_pearson_lower(k, n, s.final_alpha))
    m = LookSchedule.geometric(n, alpha, "multiclass")
    assert np.array_equal(anytime_lower(m, k, n), clopper_pearson_lower(k, n, 0.95 * (alpha / 2)))
    assert np.array_equal(anytime_upper(m, k, n), clopper_pearson_upper(k, n, 0.95 * (alpha / 2)))
    # ... and an earlier look's bound is Clopper–Pearson at that look's share.
    assert np.array_equal(anytime_lower(s, [10, 48], 48), clopper_pearson_lower([10, 48], 48, s.alpha_looks[1]))


def test_best_case_bounds_sit_at_the_budget_for_default_schedules_and_are_maxima_otherwise():
    from art_smoothing.certificates.sequential import LookSchedule, best_case_lower, best_case_upper

    s = LookSchedule.geometric(2000, 0.01, "multiclass")
    for t in s.looks[:-1]:
        k = np.arange(0, t + 1, max(1, t // 17))
        assert np.array_equal(best_case_lower(s, k, t), clopper_pearson_lower(k + s.n - t, s.n, s.final_alpha))
        assert np.array_equal(best_case_upper(s, k, t), clopper_pearson_upper(k, s.n, s.final_alpha))
    assert np.all(best_case_lower(s, [0, 2000], 2000) == 0) and np.all(best_case_upper(s, [0, 5], 2000) == 1)
    # A hand-made schedule that spends most at the first look: the best case is a maximum over the looks.
    h = LookSchedule(n=400, alpha=0.1, form="multiclass", looks=(50, 100, 400), alpha_looks=(0.04, 0.005, 0.005),
                     beta=0.01, beta_looks=(0.0025, 0.0025, 0.0025))
    k = np.arange(0, 51)
    brute_lo = np.maximum(clopper_pearson_lower(k + 50, 100, 0.005), clopper_pearson_lower(k + 350, 400, 0.005))
    brute_up = np.minimum(clopper_pearson_upper(k, 100, 0.005), clopper_pearson_upper(k, 400, 0.005))
    assert np.array_equal(best_case_lower(h, k, 50), brute_lo)
    assert np.array_equal(best_case_upper(h, k, 50), brute_up)


# ====================================================================== the sequential decision loop
def _run(schedule, noise, radii, probs, reps, rng, *, stop=True):
    """The sequential decision loop on a multinomial stub: class 0 is c_A (fixed, as if by the selection
    draws), votes arrive in order and only the counts at the looks matter, so each look adds a
    multinomial batch of t_j − t_{j−1} draws. With ``stop`` an input stops at its first look where
    every radius is decided and reports that look's radius; without, every input runs to the budget and
    the per-look decisions are returned as well."""
    from art_smoothing.certificates.sequential import sequential_decision

    multiclass = schedule.form == "multiclass"
    counts = np.zeros((reps, len(probs)), dtype=np.int64)
    active = np.ones(reps, dtype=bool)
    reported = np.zeros(reps)
    stopped = np.zeros(reps, dtype=np.int64)
    history, prev = [], 0
    for t in schedule.looks:
        counts += rng.multinomial(t - prev, probs, size=reps)
        prev = t
        idx = np.flatnonzero(active) if stop else np.arange(reps)
        k_a = counts[idx, 0]
        k_b = counts[idx, 1:].max(axis=1) if multiclass else None
        d = sequential_decision(schedule, noise, radii, k_a, t, k_b)
        history.append((t, counts[:, 0].copy(), d))
        done = idx[d.stop & active[idx]]
        reported[done] = d.radius[d.stop & active[idx]]
        stopped[done] = t
        active[done] = False
    assert not active.any()  # at the budget every radius is certified or futile
    return reported, stopped, history


def _naive(schedule):
    """Peeking: plain Clopper–Pearson at the full level at every look — the union-bound schedule of a K
    times larger α, so the same code runs it."""
    from art_smoothing.certificates.sequential import LookSchedule

    k = schedule.num_looks
    return LookSchedule(n=schedule.n, alpha=k * schedule.alpha, form=schedule.form, looks=schedule.looks,
                        alpha_looks=(schedule.side_alpha,) * k, beta=schedule.beta, beta_looks=schedule.beta_looks)


@pytest.mark.parametrize("form,probs", [("binary", (0.8, 0.2)), ("multiclass", (0.8, 0.15, 0.05))])
def test_sequential_loop_overclaims_at_most_alpha_where_peeking_does_not(form, probs):
    """The hardest place: one requested radius a float above what the true probabilities support, so
    certifying it — or reporting any radius above the true one — needs a bound failure. Over R = 4000
    repetitions the over-claims are Binomial(R, q) with q ≤ α = 0.05 for a valid procedure: the count must
    stay under that law's (1 − 1e-3)-quantile (244). Peeking with plain bounds at the default schedule's 15
    looks has q ≈ 0.26 (binary) / 0.12 (multiclass, where both bounds must err together; 20 000 repetitions,
    docs/sequential.md) and must exceed it."""
    from art_smoothing.certificates.sequential import LookSchedule
    from art_smoothing.noise import GaussianNoise

    noise = GaussianNoise(0.25)
    alpha, reps = 0.05, 4000
    schedule = LookSchedule.geometric(8000, alpha, form)  # the default schedule: 32, 48, …, 6245, 8000
    assert schedule.num_looks == 15
    true_radius = float(noise.certified_radius(probs[0], None if form == "binary" else probs[1]))
    requested = [math.nextafter(true_radius, math.inf)]
    quantile = binom.ppf(1 - 1e-3, reps, alpha)
    ours, _, _ = _run(schedule, noise, requested, probs, reps, np.random.default_rng(16))
    naive, _, _ = _run(_naive(schedule), noise, requested, probs, reps, np.random.default_rng(16))
    n_ours, n_naive = int(np.sum(ours > true_radius)), int(np.sum(naive > true_radius))
    assert n_ours <= quantile, (n_ours, quantile)
    assert n_naive > quantile, (n_naive, quantile)


@pytest.mark.parametrize("form,nb_classes,p_b", [("binary", None, None), ("multiclass", 3, 0.1),
                                                 ("multiclass", 10, 0.05)])
def test_refutation_errs_at_most_beta_on_a_supported_radius(form, nb_classes, p_b):
    """True probabilities that support R (a float below the true radius): refuting R at any look before
    the budget needs an optimistic-bound failure, so over 4000 repetitions (every input run through every
    look, which can only add refutations) the count is dominated by Binomial(4000, β = 0.1) and must stay
    under its (1 − 1e-3)-quantile. The 10-class case ties nine runner-ups at p_B = 0.05: the largest
    other count is inflated, which the Bonferroni over the C − 1 other classes (nb_classes) pays for."""
    from art_smoothing.certificates.sequential import LookSchedule
    from art_smoothing.noise import GaussianNoise

    noise = GaussianNoise(0.25)
    reps, beta = 4000, 0.1
    if form == "binary":
        class_probs = (0.85, 0.15)
    else:
        p_a = 1.0 - (nb_classes - 1) * p_b if nb_classes > 3 else 0.85
        class_probs = (p_a,) + (p_b,) * (nb_classes - 2) + (1.0 - p_a - (nb_classes - 2) * p_b,)
        assert max(class_probs[1:]) <= p_b + 1e-12  # p_b is the true runner-up probability
    true_radius = float(noise.certified_radius(class_probs[0], p_b))
    radius = math.nextafter(true_radius, 0.0)
    schedule = LookSchedule.geometric(2000, 0.01, form, beta=beta, nb_classes=nb_classes)
    _, _, history = _run(schedule, noise, [radius], class_probs, reps, np.random.default_rng(3), stop=False)
    refuted = np.zeros(reps, dtype=bool)
    for _, _, d in history[:-1]:
        refuted |= d.refuted[:, 0]
    assert refuted.sum() <= binom.ppf(1 - 1e-3, reps, beta)
    assert refuted.sum() > 0  # the optimistic bounds are not vacuous


@pytest.mark.parametrize("form", ["binary", "multiclass"])
def test_futility_never_stops_an_input_that_could_still_be_certified(form):
    """Every input runs to the budget; wherever a look calls (input, R) futile, no later look certifies R
    on the input's actual path — nor on the best path, where every remaining draw votes c_A."""
    from art_smoothing.certificates.sequential import LookSchedule, sequential_decision
    from art_smoothing.noise import GaussianNoise

    noise = GaussianNoise(0.25)
    radii = [0.25, 0.5, 0.75]  # p_A needed: 0.841, 0.977, 0.9987
    schedule = LookSchedule.geometric(2000, 0.001, form)
    rng = np.random.default_rng(11)
    reps = 600
    p_a = np.repeat([0.9, 0.97, 0.985, 0.995, 0.999], reps // 5)
    # Per-input class probabilities: draw each input's votes with its own p_A (runner-up gets 2/3 of the rest).
    probs = np.stack([p_a, (1 - p_a) * 2 / 3, (1 - p_a) / 3], axis=1)
    counts = np.zeros((reps, 3), dtype=np.int64)
    decisions, prev = [], 0
    for t in schedule.looks:
        counts += np.stack([rng.multinomial(t - prev, pr) for pr in probs])  # (setup only; 600 small draws)
        prev = t
        k_b = counts[:, 1:].max(axis=1) if form == "multiclass" else None
        decisions.append((t, counts.copy(), sequential_decision(schedule, noise, radii, counts[:, 0], t, k_b)))
    n_futile = 0
    for j, (t, c, d) in enumerate(decisions[:-1]):
        futile = d.futile
        n_futile += int(futile.sum())
        later_certified = np.zeros_like(futile)
        for _, _, later in decisions[j + 1:]:
            later_certified |= later.certified
        assert not np.any(futile & later_certified)
        # The best continuation: all remaining draws vote c_A (k_B unchanged).
        for t_next in schedule.looks[j + 1:]:
            k_b = c[:, 1:].max(axis=1) if form == "multiclass" else None
            best = sequential_decision(schedule, noise, radii, c[:, 0] + t_next - t, t_next, k_b)
            assert not np.any(futile & best.certified)
    assert n_futile > 100  # the check is not vacuous (R = 0.75 is futile from the first look: 0.00095^(1/2000) < 0.9987)


def test_all_agreeing_votes_certify_early():
    """Gaussian σ = 0.25, α = 0.001, budget 10 000: with every vote for c_A the bound at look t is
    α_j^(1/t), α_j = 0.00005/14, which passes Φ(1) = 0.841 (R = 0.25) at t ≥ 72.6 and Φ(2) = 0.977 (R = 0.5)
    at t ≥ 545.0: certified at the looks 108 and 548, against the fixed 10 000 draws of CERTIFY."""
    from art_smoothing.certificates.sequential import LookSchedule
    from art_smoothing.noise import GaussianNoise

    schedule = LookSchedule.geometric(10_000, 0.001)
    _, stopped, _ = _run(schedule, GaussianNoise(0.25), [0.25], (1.0, 0.0), 3, np.random.default_rng(0))
    assert np.all(stopped == 108)
    _, stopped, _ = _run(schedule, GaussianNoise(0.25), [0.5], (1.0, 0.0), 3, np.random.default_rng(0))
    assert np.all(stopped == 548)


def test_decision_agrees_with_the_inverted_certificate_and_abstains_early():
    from art_smoothing.certificates.inversion import required_p_a
    from art_smoothing.certificates.sequential import LookSchedule, sequential_decision
    from art_smoothing.noise import LaplaceNoise

    noise = LaplaceNoise(0.5)
    schedule = LookSchedule.geometric(4000, 0.001)
    radii = np.array([0.0, 0.1, 0.3, 0.6, 1.0])
    t = 243  # a look of the default schedule
    k = np.arange(0, t + 1)
    d = sequential_decision(schedule, noise, radii, k, t)
    need = required_p_a(noise, radii)
    # Binary form: certified at R exactly when the valid lower bound reaches the inverted certificate.
    assert np.array_equal(d.certified, d.p_a_lower[:, None] >= need[None, :])
    assert np.array_equal(d.refuted, ~(d.p_a_upper[:, None] >= need[None, :]))
    # p_A clearly ≤ 1/2: abstain, refuted at every radius (0 included), stop, report radius 0.
    low = k < 90
    assert np.all(d.abstain[low]) and np.all(d.refuted[low]) and np.all(d.stop[low]) and np.all(d.radius[low] == 0)
    assert not np.any(d.abstain[k > 150])
    # Certified radii never refuted; the reported radius is the noise's radius at the valid bound.
    assert not np.any(d.certified & d.refuted)
    assert np.array_equal(d.radius, np.where(d.p_a_lower > 0.5, noise.certified_radius(d.p_a_lower), 0.0))


def test_decision_with_box_certificates_per_input():
    from art_smoothing.certificates.inversion import required_p_a
    from art_smoothing.certificates.sequential import LookSchedule, sequential_decision
    from art_smoothing.noise import UniformNoise

    noise = UniformNoise(2.0)
    x = np.full((3, 16), 0.5)
    x[1] = np.round(np.random.default_rng(1).random(16))
    schedule = LookSchedule.geometric(1000, 0.01)
    k = np.array([100, 100, 70])
    d = sequential_decision(schedule, noise, [0.5, 1.0], k, 108, x=x, clip_values=(0.0, 1.0))
    need = required_p_a(noise, np.array([[0.5, 1.0]]), x=x, clip_values=(0.0, 1.0))
    assert np.array_equal(d.certified, d.p_a_lower[:, None] >= need)
    assert d.certified.shape == (3, 2) and d.radius.shape == (3,)


def test_sequential_rejects_bad_input_with_useful_messages():
    from art_smoothing.certificates.sequential import LookSchedule, anytime_lower, anytime_upper, sequential_decision
    from art_smoothing.noise import GaussianNoise

    g = GaussianNoise(0.25)
    s = LookSchedule.geometric(1000, 0.01)
    m = LookSchedule.geometric(1000, 0.01, "multiclass")
    with pytest.raises(ValueError, match="not a look"):
        anytime_lower(s, 10, 100)
    with pytest.raises(ValueError, match="k must hold whole numbers in 0..t"):
        anytime_lower(s, 49, 48)
    with pytest.raises(ValueError, match="multiclass"):
        anytime_upper(s, 1, 48)
    with pytest.raises(ValueError, match="needs k_b"):
        sequential_decision(m, g, 0.1, [40], 48)
    with pytest.raises(ValueError, match="only used by the multiclass"):
        sequential_decision(s, g, 0.1, [40], 48, [2])
    with pytest.raises(ValueError, match="must not exceed t"):
        sequential_decision(m, g, 0.1, [40], 48, [9])
    with pytest.raises(ValueError, match="1-D grid"):
        sequential_decision(s, g, [[0.1, 0.2]], [40], 48)
    with pytest.raises(ValueError, match=">= 0"):
        sequential_decision(s, g, [-0.1], [40], 48)
    with pytest.raises(ValueError, match="empty"):
        sequential_decision(s, g, [], [40], 48)
    with pytest.raises(ValueError, match="pass dim"):
        sequential_decision(s, g, 0.1, [40], 48, norm="inf")
    with pytest.raises(ValueError, match="form must be"):
        LookSchedule.geometric(1000, 0.01, "ternary")
    with pytest.raises(ValueError, match="ratio must be > 1"):
        LookSchedule.geometric(1000, 0.01, ratio=1.0)
    with pytest.raises(ValueError, match="final_share"):
        LookSchedule.geometric(1000, 0.01, final_share=1.0)
    with pytest.raises(ValueError, match="ending at the budget"):
        LookSchedule(n=100, alpha=0.01, form="binary", looks=(10, 50), alpha_looks=(0.005, 0.005), beta=0.01,
                     beta_looks=(0.01, 0.01))
    with pytest.raises(ValueError, match="more than"):
        LookSchedule(n=100, alpha=0.01, form="multiclass", looks=(10, 100), alpha_looks=(0.005, 0.005), beta=0.01,
                     beta_looks=(0.005, 0.005))
    with pytest.raises(ValueError, match="one level per look"):
        LookSchedule(n=100, alpha=0.01, form="binary", looks=(10, 100), alpha_looks=(0.01,), beta=0.01,
                     beta_looks=(0.01, 0.01))
    with pytest.raises(ValueError, match="u must hold uniform draws"):
        clopper_pearson_lower_randomized(3, 10, 0.05, 1.5)
    with pytest.raises(ValueError, match="0..n"):
        clopper_pearson_upper_randomized(11, 10, 0.05, 0.5)
