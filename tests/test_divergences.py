"""Divergence-based ℓ2 certificates of Gaussian noise (Hayes 2020, Table 1; Li et al.; Lecuyer et al.).

What is checked: (1) no divergence radius ever exceeds Cohen et al.'s tight radius (dense grid of
(p_a, p_b) and σ); (2) every flip bound equals the brute-force minimum of the divergence over flipped
three-outcome distributions (sound: never above it; tight: not far below); (3) the Gaussian divergences
match numerical integration; (4) the optimisers (Rényi order, Lecuyer ε) match scalar optimisation;
(5) Hayes' Proposition 1 orderings where they hold, and the documented places where they do not;
(6) monotonicity, scaling and gradients.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, optimize, stats

from art_smoothing.certificates import divergences as dv
from art_smoothing.noise import GaussianNoise

METHODS = ["kl", "renyi", "chi2", "hellinger", "bhattacharyya", "tv", "lecuyer_dp"]



def _dense_grid():
    """Multiclass (p_a, p_b) pairs with p_a > p_b, p_a + p_b ≤ 1, plus the binary diagonal."""
    pa = np.concatenate([np.linspace(0.02, 0.999, 90), [0.9999, 0.99999, 1 - 1e-7]])
    pb = np.concatenate([[0.0, 1e-9, 1e-6, 1e-4], np.linspace(1e-3, 0.5, 60)])
    a, b = np.meshgrid(pa, pb)
    ok = (a > b) & (a + b <= 1.0)
    return a[ok], b[ok]


def test_methods_listed_and_selectable():
    noise = GaussianNoise(0.5)
    assert set(METHODS) | {"cohen"} == set(noise.certificate_methods(2))
    # Reached in l1 / linf by conversion like any l2 certificate.
    r2 = noise.certified_radius(0.9, method="chi2")
    assert noise.certified_radius(0.9, norm=1, method="chi2") == pytest.approx(r2)
    assert noise.certified_radius(0.9, norm="inf", dim=16, method="chi2") == pytest.approx(r2 / 4.0)
    with pytest.raises(ValueError, match="Unknown certificate method"):
        noise.certified_radius(0.9, method="jensen_shannon")


@pytest.mark.parametrize("sigma", [0.12, 0.5, 1.0, 3.7])
def test_no_divergence_certificate_exceeds_cohen(sigma):
    noise = GaussianNoise(sigma)
    a, b = _dense_grid()
    cohen = noise.certified_radius(a, b, method="cohen")
    cohen_bin = noise.certified_radius(a[a > 0.5], method="cohen")
    for m in METHODS:
        r = noise.certified_radius(a, b, method=m)
        # Cohen's radius is tight, so any excess is an over-claim; allow only float rounding.
        assert np.all(r <= cohen * (1 + 1e-12) + 1e-15), m
        assert np.all(np.isfinite(r) | (b == 0)), m
        rb = noise.certified_radius(a[a > 0.5], method=m)
        assert np.all(rb <= cohen_bin * (1 + 1e-12) + 1e-15), m
        assert np.all(rb > 0), m  # every method certifies something when p_a > 1/2
    # The best over all methods is Cohen's.
    assert np.array_equal(noise.certified_radius(a, b), cohen)


def test_hayes_printed_tv_radius_overclaims_and_the_corrected_one_does_not():
    # Table 1 prints 2σΦ⁻¹(|p1 − p2|/2 + 1/2); near p_a = 1/2 it is ≈ 2× the tight radius.
    sigma, p_a = 1.0, 0.6
    printed = 2 * sigma * stats.norm.ppf(abs(2 * p_a - 1) / 2 + 0.5)
    cohen = sigma * stats.norm.ppf(p_a)
    assert printed > 1.9 * cohen
    corrected = GaussianNoise(sigma).certified_radius(p_a, method="tv")
    assert corrected == pytest.approx(2 * sigma * stats.norm.ppf(0.5 + (2 * p_a - 1) / 4))
    assert corrected < cohen


# ---------------------------------------------------------------------------------- flip bounds
def _divergence(name, q, p, alpha=None):
    """D(Q‖P) along the last axis, numpy (outcomes with q = p = 0 contribute nothing)."""
    both_zero = (q == 0) & (p == 0)
    p = np.where(both_zero, 1.0, p)  # any value: q = 0 there and every divergence term below is then 0
    with np.errstate(divide="ignore", invalid="ignore"):
        if name == "kl":
            return np.sum(np.where(q > 0, q * np.log(q / p), 0.0), axis=-1)
        if name == "chi2":
            return np.sum(np.where(both_zero, 0.0, (q - p) ** 2 / p), axis=-1)
        if name == "hellinger":
            return 0.5 * np.sum(np.where(both_zero, 0.0, (np.sqrt(q) - np.sqrt(p)) ** 2), axis=-1)
        if name == "bhattacharyya":
            return -np.log(np.sum(np.sqrt(q * p), axis=-1))
        if name == "tv":
            return 0.5 * np.sum(np.where(both_zero, 0.0, np.abs(q - p)), axis=-1)
        if name == "renyi":
            return np.log(np.sum(np.where(both_zero, 0.0, q**alpha * p ** (1 - alpha)), axis=-1)) / (alpha - 1)
    raise AssertionError(name)


def _flip_bound(name, a, b, alpha=None):
    t = torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64)
    fn = {"kl": dv.kl_flip_bound, "chi2": dv.chi2_flip_bound, "hellinger": dv.hellinger_flip_bound,
          "bhattacharyya": dv.bhattacharyya_flip_bound, "tv": dv.tv_flip_bound}
    if name == "renyi":
        return float(dv.renyi_flip_bound(*t, alpha)[0])
    return float(fn[name](*t)[0])


@pytest.mark.parametrize("name,alpha", [("kl", None), ("chi2", None), ("hellinger", None), ("bhattacharyya", None),
                                        ("tv", None), ("renyi", 0.5), ("renyi", 1.7), ("renyi", 4.0)])
@pytest.mark.parametrize("a,b", [(0.55, 0.45), (0.7, 0.3), (0.9, 0.1), (0.5, 0.3), (0.35, 0.2), (0.8, 0.02)])
def test_flip_bound_is_the_minimum_over_flipped_distributions(name, alpha, a, b):
    # Brute force over every three-outcome Q = (q_A, q_B, 1 − q_A − q_B) with q_B ≥ q_A on a fine grid,
    # without assuming the minimiser has q_A = q_B. A grid minimum is ≥ the true minimum, so the closed
    # form must not exceed it (soundness); refinement by a local optimiser shows it is also attained.
    p = np.array([a, b, max(0.0, 1 - a - b)])
    n = 800
    i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1))
    ok = (j >= i) & (i + j <= n)
    q = np.stack([i[ok], j[ok], n - i[ok] - j[ok]], axis=-1) / n  # exact zeros where q_C = 0
    vals = _divergence(name, q, p, alpha)
    brute = float(np.nanmin(vals))
    closed = _flip_bound(name, a, b, alpha)
    assert closed <= brute + 1e-12
    best = q[np.nanargmin(vals)]

    binary = p[2] == 0  # then Q must put no mass on the third outcome (else D = inf for some D)

    def objective(x):
        if binary:
            qq = np.array([x[0], 1 - x[0], 0.0]) if x[0] <= 0.5 else np.full(3, -1.0)
        else:
            qq = np.array([x[0], x[0] + x[1] ** 2, 1 - 2 * x[0] - x[1] ** 2])
        if np.any(qq < 0):
            return 1e9
        return float(_divergence(name, qq, p, alpha))

    start = [best[0]] if binary else [best[0], math.sqrt(max(best[1] - best[0], 0.0))]
    res = optimize.minimize(objective, start, method="Nelder-Mead",
                            options={"xatol": 1e-12, "fatol": 1e-14, "maxiter": 4000})
    assert closed <= res.fun + 1e-10
    assert res.fun == pytest.approx(closed, rel=1e-5, abs=1e-10)


def _integrand(name, p0, p1, alpha):
    """The integrand of D(p1‖p0) (Bhattacharyya/Rényi: of the coefficient inside the log)."""
    if name == "kl":
        return lambda z: p1.pdf(z) * (p1.logpdf(z) - p0.logpdf(z))
    if name == "chi2":
        return lambda z: p0.pdf(z) * np.expm1(p1.logpdf(z) - p0.logpdf(z)) ** 2
    if name == "hellinger":
        return lambda z: 0.5 * (np.sqrt(p1.pdf(z)) - np.sqrt(p0.pdf(z))) ** 2
    if name == "bhattacharyya":
        return lambda z: np.sqrt(p1.pdf(z) * p0.pdf(z))
    if name == "tv":
        return lambda z: 0.5 * abs(p1.pdf(z) - p0.pdf(z))
    return lambda z: p1.pdf(z) ** alpha * p0.pdf(z) ** (1 - alpha)


@pytest.mark.parametrize("name,alpha", [("kl", None), ("chi2", None), ("hellinger", None), ("bhattacharyya", None),
                                        ("tv", None), ("renyi", 0.3), ("renyi", 2.5)])
def test_gaussian_divergences_match_numerical_integration(name, alpha):
    sigma = 0.8
    p0 = stats.norm(0.0, sigma)
    for r in (0.1, 0.7, 2.0):
        f = _integrand(name, p0, stats.norm(r, sigma), alpha)
        val = integrate.quad(f, -14 * sigma, 14 * sigma + r, points=[0.0, r / 2, r], limit=200, epsabs=1e-13)[0]
        if name == "bhattacharyya":
            val = -math.log(val)
        elif name == "renyi":
            val = math.log(val) / (alpha - 1)
        assert float(dv.gaussian_divergence(name, r, sigma, alpha)) == pytest.approx(val, rel=1e-7, abs=1e-12)


@pytest.mark.parametrize("name", ["kl", "chi2", "hellinger", "bhattacharyya", "tv"])
def test_radius_solves_divergence_equals_flip_bound(name):
    # At the certified radius the Gaussian divergence equals the flip bound (largest feasible radius).
    a = torch.tensor([0.6, 0.8, 0.97, 0.5], dtype=torch.float64)
    b = torch.tensor([0.3, 0.1, 0.01, 0.2], dtype=torch.float64)
    sigma = 0.7
    r = dv.gaussian_radius(name, a, b, sigma)
    h = {"kl": dv.kl_flip_bound, "chi2": dv.chi2_flip_bound, "hellinger": dv.hellinger_flip_bound,
         "bhattacharyya": dv.bhattacharyya_flip_bound, "tv": dv.tv_flip_bound}[name](a, b)
    assert torch.allclose(dv.gaussian_divergence(name, r, sigma), h, rtol=1e-10)


def test_renyi_optimum_matches_scalar_optimisation():
    rng = np.random.default_rng(3)
    a = rng.uniform(0.3, 0.9999, 15)
    b = rng.uniform(0, 1, 15) * np.minimum(a, 1 - a)
    r = dv.renyi_radius(torch.tensor(a), torch.tensor(b), 1.0).numpy()
    for ai, bi, ri in zip(a, b, r):
        def neg(log_alpha, ai=ai, bi=bi):
            al = math.exp(log_alpha)
            return -float(dv.renyi_radius(torch.tensor([ai]), torch.tensor([bi]), 1.0, orders=[al], refine=0)[0])

        res = optimize.minimize_scalar(neg, bounds=(math.log(0.05), math.log(50.0)), method="bounded",
                                       options={"xatol": 1e-10})
        assert ri >= -res.fun - 1e-9  # at least as good as a scalar optimiser
        # and never more than the best order found by the optimiser from a fine grid (a sanity bound)
        fine = dv.renyi_radius(torch.tensor([ai]), torch.tensor([bi]), 1.0,
                               orders=np.exp(np.linspace(math.log(0.05), math.log(50), 4000)).tolist(), refine=0)
        assert ri <= float(fine[0]) + 1e-7


def test_lecuyer_matches_brute_force():
    a = np.array([0.6, 0.8, 0.9, 0.99, 0.7])
    b = np.array([0.4, 0.2, 0.1, 0.01, 0.05])
    r = dv.lecuyer_dp_radius(torch.tensor(a), torch.tensor(b), 2.0).numpy()
    for ai, bi, ri in zip(a, b, r):
        eps_max = 0.5 * math.log(ai / bi)
        # ε ranges over (0, min(1, ε_max)]: ε = 1 is admissible, ε = ε_max gives radius 0.
        eps = np.linspace(1e-7, 1.0, 400001) if eps_max > 1 else np.linspace(1e-7, eps_max, 400001)[:-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            vals = 2.0 * eps / np.sqrt(2 * np.log(1.25 * (1 + np.exp(eps)) / (ai - np.exp(2 * eps) * bi)))
        brute = np.nanmax(vals)
        assert brute * (1 - 1e-7) <= ri <= brute * (1 + 1e-9)


# ---------------------------------------------------------------------------------- Proposition 1
def _binary_radii(sigma=1.0):
    pa = np.linspace(0.5005, 0.99999, 3000)
    noise = GaussianNoise(sigma)
    return pa, {m: noise.certified_radius(pa, method=m) for m in METHODS}


def test_proposition1_orderings_binary():
    _, r = _binary_radii()
    # 1. Rényi > χ² (χ² is Rényi at α = 2; the optimised order is never exactly 2 here).
    assert np.all(r["renyi"] > r["chi2"])
    # 3. χ² > H².
    assert np.all(r["chi2"] > r["hellinger"])
    # 4. Bhattacharyya = H².
    np.testing.assert_allclose(r["bhattacharyya"], r["hellinger"], rtol=1e-12)
    # 6. KL > Lecuyer et al.
    assert np.all(r["kl"] > r["lecuyer_dp"])


def test_proposition1_items_2_and_5_hold_only_for_table1_kl():
    pa, r = _binary_radii()
    kl_table1 = r["kl"] / math.sqrt(2.0)  # Table 1's KL radius (KL of the Gaussians taken as ‖δ‖²/σ²)
    # With Table 1's KL, items 2 (χ² > KL) and 5 (H² > KL for p1 < 0.998) hold as stated ...
    assert np.all(r["chi2"] > kl_table1)
    below = pa < 0.998
    assert np.all(r["hellinger"][below] > kl_table1[below])
    assert np.any(r["hellinger"][~below] < kl_table1[~below])  # ... and the crossing is at ≈ 0.998
    # ... but with the correct KL of N(0, σ²I), N(δ, σ²I) (‖δ‖²/2σ²): χ² = KL exactly in the binary
    # form (both σ√(−log 4p(1−p))), and KL > H² everywhere: items 2 (strict) and 5 fail.
    np.testing.assert_allclose(r["chi2"], r["kl"], rtol=1e-9)
    np.testing.assert_allclose(r["kl"], np.sqrt(-np.log1p(-((2 * pa - 1) ** 2))), rtol=1e-9)
    assert np.all(r["kl"] > r["hellinger"])


def test_proposition1_multiclass_counterexamples():
    # Proposition 1 is stated for p2 = 1 − p1; with a separate runner-up bound some orderings flip.
    noise = GaussianNoise(1.0)

    def rad(m, a, b):
        return float(noise.certified_radius(a, b, method=m))

    assert rad("kl", 0.9, 0.01) > rad("chi2", 0.9, 0.01)  # item 2 reversed
    assert rad("hellinger", 0.53, 1e-6) > rad("chi2", 0.53, 1e-6)  # item 3 reversed
    assert rad("lecuyer_dp", 0.03, 0.003) > rad("kl", 0.03, 0.003)  # item 6 reversed
    assert rad("renyi", 0.53, 1e-6) >= rad("chi2", 0.53, 1e-6)  # item 1 always holds (α = 2 is a candidate)


# ---------------------------------------------------------------------------------- properties
probs = st.floats(0.0, 1.0, allow_nan=False)


@settings(max_examples=40, deadline=None)
@given(p1=probs, p2=probs, q=probs, sigma=st.floats(0.05, 5.0), c=st.floats(0.1, 10.0),
       method=st.sampled_from(METHODS))
def test_monotone_and_scale_equivariant(p1, p2, q, sigma, c, method):
    noise = GaussianNoise(sigma)
    lo, hi = sorted([p1, p2])
    # non-decreasing in p_a (binary form)
    r_lo, r_hi = noise.certified_radius([lo, hi], method=method)
    assert r_hi >= r_lo * (1 - 1e-9) - 1e-12
    # non-increasing in p_b (multiclass form), at p_a = q
    b_lo, b_hi = sorted([lo * (1 - q), hi * (1 - q)])
    r1, r2 = noise.certified_radius([q, q], [b_lo, b_hi], method=method)
    assert r1 >= r2 * (1 - 1e-9) - 1e-12
    # radius(c·σ) = c·radius(σ)
    r = noise.certified_radius([hi, q], [lo, b_lo], method=method)
    rc = GaussianNoise(c * sigma).certified_radius([hi, q], [lo, b_lo], method=method)
    np.testing.assert_allclose(rc, c * r, rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_differentiable_and_gradients_match_finite_differences(method):
    noise = GaussianNoise(0.5)
    pa = torch.tensor([0.62, 0.8, 0.95], dtype=torch.float64, requires_grad=True)
    pb = torch.tensor([0.3, 0.05, 0.02], dtype=torch.float64, requires_grad=True)
    r = noise.certified_radius_torch(pa, pb, method=method)
    ga, gb = torch.autograd.grad(r.sum(), [pa, pb])
    assert torch.all(ga > 0) and torch.all(gb < 0)
    h = 1e-6
    for i in range(3):
        e = torch.zeros(3, dtype=torch.float64)
        e[i] = h
        with torch.no_grad():
            fd_a = (noise.certified_radius_torch(pa + e, pb, method=method)
                    - noise.certified_radius_torch(pa - e, pb, method=method))[i] / (2 * h)
            fd_b = (noise.certified_radius_torch(pa, pb + e, method=method)
                    - noise.certified_radius_torch(pa, pb - e, method=method))[i] / (2 * h)
        # Rényi/Lecuyer: the envelope gradient at the selected parameter; the parameter is optimised
        # to ~1e-8, so finite differences of the optimised value agree to a looser tolerance.
        tol = 1e-3 if method in ("renyi", "lecuyer_dp") else 1e-5
        assert float(ga[i]) == pytest.approx(float(fd_a), rel=tol)
        assert float(gb[i]) == pytest.approx(float(fd_b), rel=tol)
    # binary form and float32 too
    r32 = noise.certified_radius_torch(torch.tensor([0.9], requires_grad=True), method=method)
    assert r32.dtype == torch.float32 and torch.isfinite(r32).all()


def test_degenerate_inputs():
    noise = GaussianNoise(1.0)
    for m in METHODS:
        r = noise.certified_radius([0.5, 0.3, 1.0, 0.7], method=m)
        assert r[0] == 0 and r[1] == 0 and r[3] > 0, m
        assert not np.isnan(r).any()
        r2 = noise.certified_radius([0.4, 0.6, 1.0], [0.4, 0.0, 0.0], method=m)
        assert r2[0] == 0 and r2[1] > 0 and not np.isnan(r2).any(), m
    # p_b = 0 with p_a < 1: Cohen's radius is infinite but the divergence radii stay finite.
    assert np.isfinite(noise.certified_radius(0.6, 0.0, method="kl"))
    assert noise.certified_radius(1.0, method="kl") == np.inf


@pytest.mark.parametrize("sigma", [0.25, 1.0])
def test_renyi_never_exceeds_cohen_at_tiny_margins(sigma):
    """At p_a − p_b of 1e-14..1e-2 the power mean M_{1−α}(a, b) nearly equals the arithmetic mean, and a
    naive a + b − 2M is all rounding error, which the order search then maximises; the bound must stay
    below Cohen's tight radius there too (binary and multiclass)."""
    noise = GaussianNoise(sigma)
    gaps = np.logspace(-14, -2, 49)
    for center in (0.5, 0.3, 0.05):
        a, b = center + gaps / 2, center - gaps / 2
        binary = a if center == 0.5 else None
        if binary is not None:
            r = noise.certified_radius(binary, method="renyi")
            assert np.all(r <= noise.certified_radius(binary, method="cohen")), center
        r = noise.certified_radius(a, b, method="renyi")
        cohen = noise.certified_radius(a, b, method="cohen")
        assert np.all(r <= cohen), center
        assert np.all(r > 0.5 * cohen), center  # still certifies (Rényi ≈ 0.8 of Cohen near a = b)


def test_renyi_with_an_impossible_runner_up_keeps_its_value():
    """p_b = 0 enters the power mean exactly (log 0 = -inf): no rounding margin may zero the bound."""
    a = torch.tensor([1.0, 0.6], dtype=torch.float64)
    assert dv.renyi_flip_bound(a[:1], None, 2.0).item() == math.inf
    h = dv.renyi_flip_bound(a[1:], torch.tensor([0.0], dtype=torch.float64), 2.0).item()
    # alpha = 2, b = 0: M_{-1}(a, 0) = 0, so h = -log(c) with c = 1 - a
    assert h == pytest.approx(-math.log(0.4), rel=1e-12)
