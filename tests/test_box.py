"""Box-constrained ℓ1 certificates of uniform noise (Voráček & Hein, 2023, §2.2): the paper's
Example 2.9, brute-force minimal overlaps on d = 2, 3, linear classifiers whose true radius inside
the box is an LP, Monte Carlo over-claim rate, properties and input validation."""

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from art_smoothing.certificates import box
from art_smoothing.certificates.bounds import clopper_pearson_lower
from art_smoothing.noise import UniformNoise

REL = 1e-9  # float64 slack for "radius <= truth"
BOX_METHODS = ["box_closed", "box_floor", "box_input"]


def t64(a):
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


# ---------------------------------------------------------------- brute force
def brute_min_overlap(x, r, lam, n):
    """Minimal overlap Π(1 − |δ_i|/(2λ))_+ over {δ : x + δ ∈ [0,1]^d, ‖δ‖₁ ≤ r}, by brute force: a grid
    of n points per axis over the box, every grid direction pushed out along its ray to the boundary of
    the feasible set (the overlap does not increase along rays from 0, so the minimum is on that
    boundary). Every evaluated point is feasible, so the result is >= the true minimum."""
    x = np.asarray(x, dtype=np.float64)
    d = len(x)
    axes = [np.linspace(-xi, 1.0 - xi, n) for xi in x]
    delta = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, d)
    l1 = np.abs(delta).sum(1)
    delta = delta[l1 > 0]
    l1 = l1[l1 > 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        limit = np.where(delta > 0, (1.0 - x) / delta, np.where(delta < 0, -x / delta, np.inf)).min(1)
    scale = np.minimum(r / l1, limit)
    pushed = delta * scale[:, None]
    assert np.all(pushed + x >= -1e-12) and np.all(pushed + x <= 1 + 1e-12)
    assert np.all(np.abs(pushed).sum(1) <= r * (1 + 1e-12))
    return np.clip(1.0 - np.abs(pushed) / (2 * lam), 0.0, None).prod(1).min()


def brute_radius(x, t, lam, n, hi=None):
    """sup{r : brute_min_overlap(r) > t} by bisection (an upper estimate of the true radius)."""
    d = len(x)
    diameter = float(np.maximum(x, 1 - np.asarray(x)).sum())
    if brute_min_overlap(x, diameter, lam, n) > t:
        return math.inf
    lo_r, hi_r = 0.0, diameter if hi is None else hi
    for _ in range(40):
        mid = 0.5 * (lo_r + hi_r)
        if brute_min_overlap(x, mid, lam, n) > t:
            lo_r = mid
        else:
            hi_r = mid
    del d
    return hi_r


POINTS_2D = [(0.4, 0.6), (0.0, 0.0), (1.0, 0.3), (0.5, 0.5), (0.1, 0.75), (0.0, 1.0)]
SCALES = [0.15, 0.3, 0.45, 0.5, 0.8, 1.0, 3.0]


@pytest.mark.parametrize("lam", SCALES)
def test_min_overlap_matches_brute_force_2d(lam):
    n = 201
    for x in POINTS_2D:
        for r in (0.05, 0.3, 0.7, 1.0, 1.3, 1.9):
            exact = float(box.g_input(t64([x]), t64([r]), lam)[0])
            brute = brute_min_overlap(x, r, lam, n)
            # Sound: the formula is never above any feasible overlap.
            assert exact <= brute + 1e-12
            # Tight: grid directions are 1/(n-1) apart, moving the minimiser by at most ~2/(n-1) in ℓ1,
            # and the overlap is 1/(2λ)-Lipschitz in ℓ1 (Proposition 2.2 + Proposition 2.1).
            assert brute - exact <= 2.0 / (n - 1) / (2 * lam) + 1e-12
            # The floor form (Proposition 2.5) lower-bounds every x; the plain form every box.
            assert float(box.g_floor(t64([r]), lam, 2)[0]) <= exact + 1e-12
            assert float(box.g_plain(t64([r]), lam)[0]) <= exact + 1e-12
            if lam >= 0.5:
                assert float(box.g_closed(t64([r]), lam)[0]) <= float(box.g_floor(t64([r]), lam, 2)[0]) + 1e-12


@pytest.mark.parametrize("lam", [0.3, 0.5, 1.0, 2.0])
def test_min_overlap_matches_brute_force_3d(lam):
    n = 41
    rng = np.random.default_rng(3)
    points = [(0.0, 0.5, 1.0), (0.2, 0.5, 0.7)] + [tuple(rng.uniform(size=3)) for _ in range(3)]
    for x in points:
        for r in (0.4, 1.1, 2.0):
            exact = float(box.g_input(t64([x]), t64([r]), lam)[0])
            brute = brute_min_overlap(x, r, lam, n)
            assert exact <= brute + 1e-12
            assert brute - exact <= 3.0 / (n - 1) / (2 * lam) + 1e-12


def test_floor_form_is_the_minimum_over_all_inputs_and_attained_at_a_corner():
    rng = np.random.default_rng(0)
    for lam in (0.3, 0.5, 0.7, 1.5, 10.0):
        r = t64(np.linspace(0.0, 3.0, 31))
        floor = box.g_floor(r, lam, 3)
        corner = box.g_input(t64(np.zeros((31, 3))), r, lam)
        torch.testing.assert_close(floor, corner, rtol=0, atol=1e-13)
        for _ in range(5):
            x = t64(np.repeat(rng.uniform(size=(1, 3)), 31, axis=0))
            assert bool((box.g_input(x, r, lam) >= floor - 1e-13).all())


def test_greedy_minimiser_is_feasible_and_attains_the_formula():
    """Theorem 2.8's minimiser: full room on the coordinates with most room, the remainder on the next."""
    rng = np.random.default_rng(1)
    for _ in range(50):
        d = int(rng.integers(1, 6))
        x = rng.uniform(size=d)
        x[rng.uniform(size=d) < 0.2] = 0.0
        lam = float(rng.uniform(0.2, 3.0))
        r = float(rng.uniform(0, np.maximum(x, 1 - x).sum()))
        order = np.argsort(-np.maximum(x, 1 - x), kind="stable")
        y, budget = x.copy(), r
        for i in order:
            step = min(budget, max(x[i], 1 - x[i]))
            y[i] = x[i] - step if x[i] >= 0.5 else x[i] + step
            budget -= step
        assert np.all((y >= 0) & (y <= 1)) and abs(np.abs(y - x).sum() - r) < 1e-12
        attained = np.clip(1 - np.abs(y - x) / (2 * lam), 0, None).prod()
        assert float(box.g_input(t64([x]), t64([r]), lam)[0]) == pytest.approx(attained, abs=1e-13)


@pytest.mark.parametrize("lam", [0.2, 0.35, 0.5, 1.0, 2.5])
def test_radius_matches_brute_force_radius(lam):
    noise = UniformNoise(lam)
    for x in [(0.4, 0.6), (0.0, 1.0), (0.5, 0.5), (0.3, 0.9)]:
        for p_a in (0.6, 0.8, 0.95):
            r = float(noise.certified_radius(p_a, norm=1, x=[x], clip_values=(0, 1), method="box_input"))
            brute = brute_radius(x, 1.5 - p_a, lam, 101)
            if math.isinf(brute):
                assert math.isinf(r)
                continue
            assert r <= brute * (1 + REL)  # never over-claims against the brute-force truth
            # The brute-force minimum is at most 2/(n-1)/(2λ) above the truth and the overlap falls with
            # slope >= min_k P_k/(2λ) >= t/(2λ) around the radius, so the radii differ by <= 2/(n-1)/t.
            assert brute - r <= 2.0 / 100 / (1.5 - p_a) + 1e-9


# ---------------------------------------------------------------- Example 2.9
def test_example_2_9_through_public_api():
    """x = (0.4, 0.6), λ = 1, h(x) = 0.88. The paper: without the box only 2λ(0.88 − 0.5) = 0.76 < 0.8;
    with the box radius 0.8 is certified (overlap 0.63 at ‖δ‖₁ = 0.8 instead of 0.6). The exact radius
    is larger than the paper's rounded 0.8: R = 0.6 + 2(1 − 0.62/0.7) = 29/35 ≈ 0.828571."""
    noise = UniformNoise(1.0)
    x = np.array([[0.4, 0.6]])
    plain = noise.certified_radius(0.88, norm=1)
    boxed = noise.certified_radius(0.88, norm=1, x=x, clip_values=(0.0, 1.0))
    assert plain == pytest.approx(0.76, abs=1e-12)
    assert boxed == pytest.approx(29 / 35, abs=1e-12)
    assert noise.certified_radius(0.88, 0.12, norm=1, x=x, clip_values=(0, 1)) == pytest.approx(29 / 35, abs=1e-12)
    assert float(box.g_input(t64(x), t64([0.8]), 1.0)[0]) == pytest.approx(0.63, abs=1e-12)
    assert float(box.g_plain(t64([0.8]), 1.0)[0]) == pytest.approx(0.6, abs=1e-12)
    # The input-independent forms give no gain below radius 1 here: floor = plain, closed form weaker.
    assert noise.certified_radius(0.88, norm=1, x=x, clip_values=(0, 1), method="box_floor") == pytest.approx(0.76)
    assert noise.certified_radius(0.88, norm=1, x=x, clip_values=(0, 1), method="box_closed") == pytest.approx(
        math.log(0.62) / math.log(0.5))


# ---------------------------------------------------------------- linear classifiers
def cdf_weighted_uniform_sum(a, s):
    """P(Σ a_i U_i ≤ s), U_i i.i.d. U[0, 1], a_i > 0 (inclusion–exclusion over the cube's vertices)."""
    a = np.asarray(a, dtype=np.float64)
    n = len(a)
    total = 0.0
    for k in range(n + 1):
        for subset in itertools.combinations(range(n), k):
            total += (-1) ** k * max(s - a[list(subset)].sum(), 0.0) ** n
    return min(max(total / (math.factorial(n) * np.prod(a)), 0.0), 1.0)


def linear_p_a(w, margin, lam):
    """Exact P(w·(x + z) + b > 0) for z uniform on [−λ, λ]^d, margin = w·x + b (w without zeros):
    w·z has the law of Σ 2λ|w_i| U_i − λ‖w‖₁."""
    a = 2 * lam * np.abs(w)
    return 1.0 - cdf_weighted_uniform_sum(a, lam * np.abs(w).sum() - margin)


def box_l1_distance(x, w, b, lo=0.0, hi=1.0):
    """min ‖y − x‖₁ over y ∈ [lo, hi]^d with w·y + b ≤ 0 (LP in (y, u) with u ≥ |y − x|); inf if empty."""
    d = len(x)
    c = np.concatenate([np.zeros(d), np.ones(d)])
    eye = np.eye(d)
    a_ub = np.vstack([np.concatenate([w, np.zeros(d)])[None], np.hstack([eye, -eye]), np.hstack([-eye, -eye])])
    b_ub = np.concatenate([[-b], x, -x])
    res = linprog(c, A_ub=a_ub, b_ub=b_ub, bounds=[(lo, hi)] * d + [(0, None)] * d, method="highs")
    if res.status == 2:
        return math.inf
    assert res.status == 0
    return res.fun


@pytest.mark.parametrize("d", [1, 2, 3, 5])
def test_linear_classifiers_box_radius_never_exceeds_the_lp_distance(d):
    """For uniform (symmetric) noise and a linear f, the smoothed H equals f, so the true robust radius
    inside the box is the LP distance to the half-space where f flips."""
    rng = np.random.default_rng(10 + d)
    checked = gains = 0
    for _ in range(60):
        w = rng.normal(size=d)
        x = rng.uniform(size=d)
        x[rng.uniform(size=d) < 0.2] = rng.choice([0.0, 1.0])
        lam = float(rng.choice([0.2, 0.4, 0.5, 1.0, 2.0, 8.0]))
        b = -w @ x + rng.uniform(0.05, 2.5) * np.abs(w).max()
        margin = w @ x + b
        p_a = linear_p_a(w, margin, lam)
        if p_a <= 0.5:
            continue
        truth = box_l1_distance(x, w, b)
        noise = UniformNoise(lam)
        for method in BOX_METHODS + [None]:
            for p_b in (None, 1 - p_a):
                r = float(noise.certified_radius(p_a, p_b, norm=1, x=x[None], clip_values=(0, 1), method=method))
                assert r <= truth * (1 + REL) + 1e-12, (x, w, b, lam, method, r, truth)
        plain = float(noise.certified_radius(p_a, norm=1))
        boxed = float(noise.certified_radius(p_a, norm=1, x=x[None], clip_values=(0, 1)))
        assert boxed >= plain
        gains += boxed > plain * (1 + 1e-6)
        checked += 1
    assert checked >= 30
    if d > 1:
        assert gains > 0  # the box certificate is not just the plain one


def test_one_dimensional_box_certificate_is_tight_for_thresholds():
    """d = 1, f = [u > θ]: h(x) = (x − θ + λ)/(2λ) and the box radius equals the true x − θ."""
    for lam in (0.3, 0.5, 1.0, 4.0):
        for x, theta in ((0.2, 0.1), (0.7, 0.5), (1.0, 0.95), (0.5, 0.0)):
            p_a = min(1.0, (x - theta + lam) / (2 * lam))
            r = UniformNoise(lam).certified_radius(p_a, norm=1, x=[[x]], clip_values=(0, 1))
            truth = box_l1_distance(np.array([x]), np.array([1.0]), -theta)
            if x - theta < lam:
                assert r == pytest.approx(truth, rel=1e-9)
            assert r <= truth * (1 + REL)


def test_general_box_rescales():
    """clip_values (lo, hi): λ in box units is λ/(hi − lo), the ℓ1 radius scales with hi − lo."""
    rng = np.random.default_rng(2)
    x01 = rng.uniform(size=(20, 6))
    x01[0] = 0.0
    p_a = rng.uniform(0.55, 0.999, size=20)
    lo, hi = -3.0, 5.0
    for lam in (0.4, 1.2):
        for method in BOX_METHODS:
            unit = UniformNoise(lam).certified_radius(p_a, norm=1, x=x01, clip_values=(0, 1), method=method)
            wide = UniformNoise(lam * (hi - lo)).certified_radius(
                p_a, norm=1, x=lo + (hi - lo) * x01, clip_values=(lo, hi), method=method)
            np.testing.assert_allclose(wide, (hi - lo) * unit, rtol=1e-10)
    # and against an LP in the general box
    w, x = np.array([1.0, -2.0, 0.5]), np.array([1.0, -1.0, 4.0])
    b = -w @ x + 16.0  # truth 10: coordinates 2 and 1 use all their room (6 and 4 units)
    lam = 20.0
    p_a = linear_p_a(w, w @ x + b, lam)
    r = UniformNoise(lam).certified_radius(p_a, norm=1, x=x[None], clip_values=(lo, hi))
    assert r <= box_l1_distance(x, w, b, lo, hi) * (1 + REL)
    assert r > UniformNoise(lam).certified_radius(p_a, norm=1)


# ---------------------------------------------------------------- every scale
def test_box_gives_nothing_for_scales_up_to_one_half():
    """λ ≤ 1/2 (box units): every coordinate has room >= 1/2, and moving one coordinate by its room
    alone drops the overlap to 1 − room/(2λ) <= 1/2 <= t; so the minimal overlap is 1 − r/(2λ) up to
    the radius and the box radius equals the plain one (the paper does not improve λ < 1/2 either)."""
    rng = np.random.default_rng(4)
    p = rng.uniform(0.5, 1.0, 40)
    q = rng.uniform(0.0, 0.5, 40)
    for lam in (0.05, 0.26, 0.4, 0.5):
        noise = UniformNoise(lam)
        for x in (np.full((40, 4), 0.5), rng.uniform(size=(40, 4)), np.zeros((40, 4))):
            for pb in (None, q):
                np.testing.assert_allclose(noise.certified_radius(p, pb, norm=1, x=x, clip_values=(0, 1)),
                                           noise.certified_radius(p, pb, norm=1), rtol=1e-12)
    # the closed form (Corollary 2.7) needs λ > 1/2 and gives 0 below
    assert UniformNoise(0.4).certified_radius(0.99, norm=1, x=np.zeros((1, 3)), clip_values=(0, 1),
                                              method="box_closed") == 0.0
    # just above 1/2 the box starts to help at the centre
    noise = UniformNoise(0.6)
    x = np.full((1, 4), 0.5)
    assert noise.certified_radius(0.99, norm=1, x=x, clip_values=(0, 1)) > noise.certified_radius(0.99, norm=1)


def test_large_scale_certifies_the_whole_box():
    """λ ≫ box: even the farthest box point keeps overlap > t, so every box point is certified (inf)."""
    noise = UniformNoise(100.0)
    x = np.array([[0.0, 0.3]])
    assert math.isinf(noise.certified_radius(0.99, norm=1, x=x, clip_values=(0, 1)))
    assert math.isinf(noise.certified_radius(0.99, norm=1, x=x, clip_values=(0, 1), method="box_floor"))
    assert brute_min_overlap(x[0], 2.0, 100.0, 51) > 1.5 - 0.99
    assert math.isfinite(noise.certified_radius(0.99, norm=1))  # the plain radius is 98, finite
    # Corollary 2.7's closed form stays finite (its formula ignores the box diameter) and valid.
    assert noise.certified_radius(0.99, norm=1, x=x, clip_values=(0, 1), method="box_closed") > 2.0


def test_boundary_inputs_and_closed_form_regimes():
    noise = UniformNoise(1.0)
    corners = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    p = np.array([0.9, 0.9, 0.9])
    r_in = noise.certified_radius(p, norm=1, x=corners, clip_values=(0, 1), method="box_input")
    r_floor = noise.certified_radius(p, norm=1, x=corners, clip_values=(0, 1), method="box_floor")
    np.testing.assert_allclose(r_in, r_floor, rtol=1e-12)  # a corner is the worst case of Prop. 2.5
    # Corollary 2.7 vs the plain bound: weaker below radius 1, stronger above (λ = 3).
    noise = UniformNoise(3.0)
    small, large = 0.6, 0.9
    closed = lambda q: noise.certified_radius(q, norm=1, x=corners[:1], clip_values=(0, 1), method="box_closed")
    plain = lambda q: noise.certified_radius(q, norm=1, method="lipschitz")
    assert closed(small) < plain(small) < 1
    assert closed(large) > plain(large) > 0
    assert noise.certified_radius(large, norm=1, x=corners[:1], clip_values=(0, 1)) >= closed(large)


# ---------------------------------------------------------------- properties
P = st.floats(0.0, 1.0, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(
    lam=st.floats(0.05, 50.0),
    xs=st.lists(st.sampled_from([0.0, 0.5, 1.0, 0.1, 0.37, 0.93]) | st.floats(0.0, 1.0), min_size=1, max_size=12),
    p_a=st.floats(0.0, 1.0), p_b=st.floats(0.0, 1.0), bump=st.floats(0.0, 0.3),
)
def test_box_is_never_below_plain_and_monotone(lam, xs, p_a, p_b, bump):
    noise = UniformNoise(lam)
    x = np.asarray(xs)[None]
    kw = {"norm": 1, "x": x, "clip_values": (0, 1)}
    for pb in (None, p_b):
        boxed = float(noise.certified_radius(p_a, pb, **kw))
        assert boxed >= float(noise.certified_radius(p_a, pb, norm=1)) * (1 - 1e-12)
        radii = {m: float(noise.certified_radius(p_a, pb, method=m, **kw)) for m in BOX_METHODS}
        assert radii["box_input"] >= radii["box_floor"] * (1 - 1e-12) - 1e-15
        assert radii["box_floor"] >= radii["box_closed"] * (1 - 1e-12) - 1e-15
        assert radii["box_floor"] >= float(noise.certified_radius(p_a, pb, norm=1)) * (1 - 1e-12) - 1e-15
        higher = float(noise.certified_radius(min(1.0, p_a + bump), pb, **kw))
        assert higher >= boxed * (1 - 1e-12) - 1e-15
    lower_b = float(noise.certified_radius(p_a, max(0.0, p_b - bump), **kw))
    assert lower_b >= float(noise.certified_radius(p_a, p_b, **kw)) * (1 - 1e-12) - 1e-15


@settings(max_examples=60, deadline=None)
@given(lam=st.floats(0.1, 5.0), c=st.floats(0.1, 10.0), seed=st.integers(0, 10**6))
def test_radius_scales_with_the_box(lam, c, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(3, 5))
    p = rng.uniform(0.5, 1.0, size=3)
    a = UniformNoise(lam).certified_radius(p, norm=1, x=x, clip_values=(0, 1))
    b = UniformNoise(lam * c).certified_radius(p, norm=1, x=c * x, clip_values=(0, c))
    np.testing.assert_allclose(b, c * a, rtol=1e-9)


def test_vectorized_radius_equals_row_by_row():
    rng = np.random.default_rng(5)
    x = rng.uniform(size=(200, 64))
    x[:50] = np.round(x[:50])
    p_a, p_b = rng.uniform(0.5, 1, 200), rng.uniform(0, 0.5, 200)
    noise = UniformNoise(0.7)
    together = noise.certified_radius(p_a, p_b, norm=1, x=x, clip_values=(0, 1), method="box_input")
    alone = [float(noise.certified_radius(p_a[i], p_b[i], norm=1, x=x[i:i + 1], clip_values=(0, 1),
                                          method="box_input")) for i in range(0, 200, 17)]
    np.testing.assert_allclose(together[::17], alone, rtol=1e-14)
    # other norms by the sound conversion of the base class
    r2 = noise.certified_radius(p_a, p_b, norm=2, x=x, clip_values=(0, 1))
    np.testing.assert_allclose(r2, noise.certified_radius(p_a, p_b, norm=1, x=x, clip_values=(0, 1)) / 8.0)


# ---------------------------------------------------------------- Monte Carlo over-claim rate
def test_monte_carlo_over_claim_rate_at_most_alpha():
    """Votes ~ Binomial(n, p) with the exact p of a classifier whose box radius is tight (d = 1, f = [u > θ],
    x = 0.7, θ = 0.5, λ = 1: p = 0.6, true radius 0.2). An over-claim needs the Clopper–Pearson bound
    above p, which happens with probability <= α. 4000 seeded trials: the binomial standard error of the
    rate is sqrt(α(1 − α)/4000) ≈ 0.0034, so we allow α + 3 standard errors."""
    rng = np.random.default_rng(123)
    alpha, n, trials = 0.05, 500, 4000
    lam, x, theta = 1.0, 0.7, 0.5
    p = (x - theta + lam) / (2 * lam)
    truth = x - theta
    counts = rng.binomial(n, p, size=trials)
    p_lower = clopper_pearson_lower(counts, n, alpha)
    r = UniformNoise(lam).certified_radius(p_lower, norm=1, x=np.full((trials, 1), x), clip_values=(0, 1))
    rate = np.mean(r > truth * (1 + REL))
    assert rate <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / trials)
    assert rate > 0.0  # the test can detect over-claims: with a tight certificate they occur at ~α


# ---------------------------------------------------------------- validation
def test_input_validation_messages():
    noise = UniformNoise(0.5)
    with pytest.raises(ValueError, match="outside clip_values"):
        noise.certified_radius(0.9, norm=1, x=[[0.5, 1.2]], clip_values=(0, 1))
    with pytest.raises(ValueError, match="NaN or inf"):
        noise.certified_radius(0.9, norm=1, x=[[0.5, np.nan]], clip_values=(0, 1))
    with pytest.raises(ValueError, match="one input per bound"):
        noise.certified_radius([0.9, 0.8, 0.7], norm=1, x=np.zeros((2, 3)), clip_values=(0, 1))
    with pytest.raises(ValueError, match="features per input"):
        noise.certified_radius(0.9, norm=1, x=np.zeros((1, 3)), clip_values=(0, 1), dim=4)
    with pytest.raises(ValueError, match="both x and clip_values"):
        noise.certified_radius(0.9, norm=1, x=np.zeros((1, 3)))
    with pytest.raises(ValueError, match="lo < hi"):
        noise.certified_radius(0.9, norm=1, x=np.zeros((1, 3)), clip_values=(1, 0))
    with pytest.raises(ValueError, match="box-constrained"):
        noise.certified_radius(0.9, norm=1, method="box_input")
    # the existing plain certificates are unchanged and stay the default without a box
    assert noise.certified_radius(0.9, norm=1) == pytest.approx(2 * 0.5 * 0.4)
    assert set(noise.certificate_methods(1, box=False)) == {"lipschitz", "cube"}


# ---------------------------------------------------------------- estimator integration
def test_estimator_uses_the_box_automatically_and_box_false_switches_it_off():
    from art_smoothing import SmoothedClassifier
    from tests.conftest import linear_classifier

    w, b = np.array([1.0, 1.0, 0.5]), -0.3
    x = np.array([[1.0, 0.9, 0.0], [0.6, 0.7, 0.9]], dtype=np.float32)
    truth = [box_l1_distance(xi.astype(np.float64), w, b) for xi in x]
    noise = UniformNoise(2.0)
    sm = SmoothedClassifier(linear_classifier(w, b, clip_values=(0.0, 1.0)), noise=noise, sample_size=50, seed=3)
    boxed = sm.certify_detailed(x, n=2000, norm=1)
    plain = sm.certify_detailed(x, n=2000, norm=1, box=False)
    np.testing.assert_array_equal(boxed.counts, plain.counts)  # same seed, same votes
    assert boxed.box and not plain.box and boxed.clip_values == (0.0, 1.0)
    assert np.all(boxed.radius >= plain.radius) and np.any(boxed.radius > plain.radius)
    assert np.all(boxed.radius <= np.array(truth) * (1 + REL))
    np.testing.assert_allclose(boxed.radius, noise.certified_radius(boxed.p_a_lower, norm=1, x=x, clip_values=(0, 1)))
    np.testing.assert_allclose(boxed.radius_for(norm=1, x=x), boxed.radius)
    # a base classifier without clip_values certifies with the plain certificates
    free = SmoothedClassifier(linear_classifier(w, b), noise=noise, sample_size=50, seed=3)
    unboxed = free.certify_detailed(x, n=2000, norm=1)
    assert not unboxed.box
    np.testing.assert_allclose(unboxed.radius, plain.radius)
    # inputs outside the classifier's box are refused by the box certificate with a clear message
    with pytest.raises(ValueError, match="outside clip_values"):
        sm.certify_detailed(x + 0.5, n=100, norm=1)


@pytest.mark.parametrize("lam", [0.2, 0.3, 0.6, 1.0, 3.0, 30.0, 1e4])
def test_topk_walk_equals_full_sort(lam):
    """radius_input only looks at the K + 1 largest rooms (a topk bounded via P_k <= (1 − 1/(4λ))^k);
    it must equal the walk over all sorted coordinates, including inputs with all rooms 1/2 (the bound's
    equality case) and inputs whose whole box is certified."""
    rng = np.random.default_rng(int(lam * 10))
    x = rng.uniform(size=(300, 200))
    x[:50] = 0.5
    x[50:100] = np.round(x[50:100])
    t = t64(rng.uniform(0.5, 1.0, 300))
    x = t64(x)
    fast = box.radius_input(x, t, lam)
    full = box._radius_from_tables(x, t, lam, 200)
    torch.testing.assert_close(fast, full, rtol=1e-13, atol=0)
    assert box.radius_input(x[:0], t[:0], lam).shape == (0,)
