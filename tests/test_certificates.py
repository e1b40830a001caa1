"""Closed-form certificates of the foundation noises: soundness against linear classifiers whose true
robust radius is known, tightness where the certificate is tight, cross-checks and properties."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate
from scipy.stats import norm as normal

from art_smoothing.certificates.norms import conversion_factor, parse_norm
from art_smoothing.noise import GaussianNoise, LaplaceNoise, UniformNoise

FOUNDATION = [GaussianNoise(0.5), LaplaceNoise(0.5), UniformNoise(0.5)]
REL = 1e-9  # float64 slack for "radius <= truth" comparisons


def linear_distances(w, margin):
    """True lp distances from x to the hyperplane w·x + b = 0 with margin = w·x + b: |margin| / ||w||_q."""
    w = np.asarray(w, dtype=np.float64)
    return {1.0: abs(margin) / np.abs(w).max(), 2.0: abs(margin) / np.linalg.norm(w), math.inf: abs(margin) / np.abs(w).sum()}


# ---------------------------------------------------------------- Gaussian
@pytest.mark.parametrize("sigma", [0.1, 0.5, 2.0])
def test_gaussian_linear_classifier_is_tight_and_sound_in_every_norm(sigma):
    rng = np.random.default_rng(0)
    d = 16
    for _ in range(20):
        w = rng.normal(size=d)
        margin = abs(rng.normal()) * np.linalg.norm(w) * sigma
        # Exact p_A of the smoothed linear classifier: P(w·(x+z) + b > 0) = Φ(margin / (σ‖w‖₂)).
        p_a = normal.cdf(margin / (sigma * np.linalg.norm(w)))
        truth = linear_distances(w, margin)
        noise = GaussianNoise(sigma)
        r2 = noise.certified_radius(p_a, norm=2)
        assert r2 == pytest.approx(truth[2.0], rel=1e-7)  # Cohen's radius is tight for linear classifiers
        for p in (1.0, 2.0, math.inf):
            assert noise.certified_radius(p_a, norm=p, dim=d) <= truth[p] * (1 + REL)


def test_gaussian_binary_equals_multiclass_at_complement():
    noise = GaussianNoise(0.7)
    p_a = np.linspace(0.51, 0.999, 50)
    np.testing.assert_allclose(noise.certified_radius(p_a), noise.certified_radius(p_a, 1 - p_a), rtol=1e-12)
    np.testing.assert_allclose(noise.certified_radius(p_a), 0.7 * normal.ppf(p_a), rtol=1e-12)


# ---------------------------------------------------------------- Laplace
def _laplace_pa_two_coords(w1, w2, t, lam):
    """P(w1 z1 + w2 z2 > -t) for i.i.d. Laplace(λ) coordinates, by one-dimensional quadrature of the
    Laplace CDF; the quadrature error estimate is returned so the caller can stay conservative."""

    def cdf(u):
        return 0.5 * math.exp(u / lam) if u < 0 else 1 - 0.5 * math.exp(-u / lam)

    def integrand(z1):
        density = math.exp(-abs(z1) / lam) / (2 * lam)
        c = (-t - w1 * z1) / w2
        tail = 1 - cdf(c) if w2 > 0 else cdf(c)  # P(w2 z2 > -t - w1 z1)
        return density * tail

    kinks = sorted({0.0, -t / w1})
    val, err = integrate.quad(integrand, -60 * lam, 60 * lam, points=kinks, limit=400, epsabs=1e-14)
    assert err < 1e-8
    return val, err


@pytest.mark.parametrize("lam", [0.25, 1.0])
def test_laplace_single_coordinate_classifier_is_tight(lam):
    # f(x) = 1[x_1 + b > 0]: p_A = 1 - exp(-t/λ)/2 with t = x_1 + b; every lp distance is t.
    t = np.linspace(0.01, 3.0, 40) * lam
    p_a = 1 - 0.5 * np.exp(-t / lam)
    r = LaplaceNoise(lam).certified_radius(p_a, norm=1)
    np.testing.assert_allclose(r, t, rtol=1e-9)  # Teng et al.'s binary certificate is tight here
    assert np.all(r <= t * (1 + REL))


@pytest.mark.parametrize("w", [(1.0, 1.0), (1.0, 0.3), (2.0, -1.5)])
def test_laplace_two_coordinate_linear_classifier_sound(w):
    lam = 0.5
    noise = LaplaceNoise(lam)
    for t in (0.05, 0.3, 1.0, 2.5):
        p_a, err = _laplace_pa_two_coords(w[0], w[1], t, lam)
        p_a = p_a - err  # never overstate p_A
        truth = linear_distances(w, t)
        for p in (1.0, 2.0, math.inf):
            for method in noise.certificate_methods(p, box=False):
                assert noise.certified_radius(p_a, norm=p, dim=2, method=method) <= truth[p] * (1 + REL)


def test_laplace_multiclass_forms():
    noise = LaplaceNoise(1.0)
    p_a = np.linspace(0.3, 0.99, 40)
    p_b = np.clip(1 - p_a - 0.05, 0.0, None)
    teng = noise.certified_radius(p_a, p_b, method="teng")
    lec = noise.certified_radius(p_a, p_b, method="lecuyer")
    assert np.all(lec <= teng + 1e-12)
    with np.errstate(divide="ignore"):  # p_b = 0 at the top of the grid: the DP term is +inf there
        expected = np.maximum(0.5 * np.log(p_a / p_b), -np.log(1 - p_a + p_b))
    np.testing.assert_allclose(teng, np.where(p_a > p_b, expected, 0.0), rtol=1e-12)
    # binary form = Theorem 1 at p_B = 1 - p_A = Theorem 2
    q = np.linspace(0.51, 0.999, 30)
    np.testing.assert_allclose(noise.certified_radius(q), noise.certified_radius(q, 1 - q), rtol=1e-12)
    np.testing.assert_allclose(noise.certified_radius(q), -np.log(2 * (1 - q)), rtol=1e-12)


# ---------------------------------------------------------------- Uniform
@pytest.mark.parametrize("lam", [0.2, 1.0, 3.0])
def test_uniform_single_coordinate_classifier_is_tight(lam):
    # f(x) = 1[x_1 + b > 0]: p_A = (λ + t)/(2λ) for 0 < t < λ; the l1 distance is t.
    t = np.linspace(0.01, 0.99, 30) * lam
    p_a = (lam + t) / (2 * lam)
    r = UniformNoise(lam).certified_radius(p_a, norm=1)
    np.testing.assert_allclose(r, t, rtol=1e-9)


@pytest.mark.parametrize("lam", [0.3, 1.0])
def test_uniform_linf_against_two_coordinate_sum(lam):
    # w = (1, 1): z1 + z2 is triangular on [-2λ, 2λ]; P(S > -t) = 1 - (2λ - t)^2 / (8λ^2) for 0 <= t <= 2λ.
    noise = UniformNoise(lam)
    for t in np.linspace(0.01, 1.99, 25) * lam:
        p_a = 1 - (2 * lam - t) ** 2 / (8 * lam**2)
        truth = linear_distances((1.0, 1.0), t)
        for p in (1.0, 2.0, math.inf):
            for method in noise.certificate_methods(p, box=False):
                assert noise.certified_radius(p_a, norm=p, dim=2, method=method) <= truth[p] * (1 + REL)


def test_uniform_cube_closed_form_and_forms():
    noise = UniformNoise(0.5)
    p_a = np.linspace(0.51, 0.99, 20)
    d = 10
    expected = 2 * 0.5 * (1 - (1.5 - p_a) ** (1 / d))
    np.testing.assert_allclose(noise.certified_radius(p_a, norm="inf", dim=d, method="cube"), expected, rtol=1e-10)
    np.testing.assert_allclose(
        noise.certified_radius(p_a, 1 - p_a, norm="inf", dim=d, method="cube"), expected, rtol=1e-10
    )
    np.testing.assert_allclose(noise.certified_radius(p_a, 1 - p_a), 2 * 0.5 * (p_a - 0.5), rtol=1e-12)


# ---------------------------------------------------------------- shared behaviour
@pytest.mark.parametrize("noise", FOUNDATION, ids=lambda n: type(n).__name__)
def test_zero_where_nothing_is_certified_never_negative_or_nan(noise):
    p_a = np.array([0.0, 0.2, 0.5, 0.5000001, 0.7, 1.0])
    r = noise.certified_radius(p_a, norm=1, dim=4)
    assert np.all(r[:3] == 0) and np.all(r >= 0) and not np.any(np.isnan(r))
    r_pair = noise.certified_radius([0.4, 0.3, 0.6], [0.4, 0.35, 0.0], norm=1, dim=4)
    assert r_pair[0] == 0 and r_pair[1] == 0 and r_pair[2] > 0
    assert r.shape == p_a.shape


@pytest.mark.parametrize("noise", FOUNDATION, ids=lambda n: type(n).__name__)
def test_default_method_is_the_best_one(noise):
    p_a = np.linspace(0.3, 0.999, 30)
    for p in (1, 2, "inf"):
        best = noise.certified_radius(p_a, norm=p, dim=9)
        each = [noise.certified_radius(p_a, norm=p, dim=9, method=m) for m in noise.certificate_methods(p, box=False)]
        np.testing.assert_allclose(best, np.max(each, axis=0), rtol=0, atol=0)


probs = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(p1=probs, p2=probs, pb=st.floats(min_value=0.0, max_value=0.5), c=st.floats(min_value=0.1, max_value=10))
def test_properties_monotone_and_scale_equivariant(p1, p2, pb, c):
    lo, hi = min(p1, p2), max(p1, p2)
    for noise_cls, param in ((GaussianNoise, 0.4), (LaplaceNoise, 0.4), (UniformNoise, 0.4)):
        noise = noise_cls(param)
        for p in (1, 2, "inf"):
            # non-decreasing in p_a (binary and pair forms), non-increasing in p_b
            assert noise.certified_radius(lo, norm=p, dim=5) <= noise.certified_radius(hi, norm=p, dim=5) + 1e-12
            assert noise.certified_radius(lo, pb, norm=p, dim=5) <= noise.certified_radius(hi, pb, norm=p, dim=5) + 1e-12
            assert noise.certified_radius(hi, pb, norm=p, dim=5) <= noise.certified_radius(hi, pb / 2, norm=p, dim=5) + 1e-12
            # radius(c·scale) = c·radius(scale)
            scaled = noise_cls(param * c).certified_radius(hi, pb, norm=p, dim=5)
            base = noise.certified_radius(hi, pb, norm=p, dim=5)
            if np.isfinite(base):
                assert scaled == pytest.approx(c * base, rel=1e-9, abs=1e-12)


def test_norm_conversion_factors():
    assert conversion_factor(2, 1, None) == 1.0  # ||δ||_2 <= ||δ||_1
    assert conversion_factor(1, 2, 16) == pytest.approx(4.0)  # ||δ||_1 <= sqrt(d) ||δ||_2
    assert conversion_factor(2, math.inf, 16) == pytest.approx(4.0)
    assert conversion_factor(1, math.inf, 16) == pytest.approx(16.0)
    assert conversion_factor(math.inf, 1, None) == 1.0
    with pytest.raises(ValueError, match="dim"):
        conversion_factor(1, 2, None)
    assert parse_norm("linf") == math.inf and parse_norm("l1") == 1.0 and parse_norm(2) == 2.0


def test_differentiable_radius_equals_exact_certificate():
    import torch

    for noise in FOUNDATION:
        pa = torch.linspace(0.55, 0.99, 20, dtype=torch.float64)
        pb = torch.clamp(1 - pa - 0.1, min=0.0)
        exact = noise.certified_radius(pa.numpy(), pb.numpy())
        diff = noise.certified_radius_torch(pa, pb)
        np.testing.assert_allclose(diff.numpy(), exact, rtol=1e-12)


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize("cls", [GaussianNoise, LaplaceNoise, UniformNoise])
@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), "abc"])
def test_bad_scale_rejected(cls, bad):
    with pytest.raises(ValueError):
        cls(bad)


def test_bad_certificate_arguments():
    noise = LaplaceNoise(1.0)
    with pytest.raises(ValueError, match="p_a"):
        noise.certified_radius([0.5, 1.2])
    with pytest.raises(ValueError, match="p_a"):
        noise.certified_radius([float("nan")])
    with pytest.raises(ValueError, match="p_b"):
        noise.certified_radius([0.9], [-0.1])
    with pytest.raises(ValueError, match="norm"):
        noise.certified_radius([0.9], norm="l0")
    with pytest.raises(ValueError, match="norm"):
        noise.certified_radius([0.9], norm=0.5)
    with pytest.raises(ValueError, match="method"):
        noise.certified_radius([0.9], method="nope")
    with pytest.raises(ValueError, match="dim"):
        noise.certified_radius([0.9], norm=2)
    with pytest.raises(ValueError, match="dim"):
        UniformNoise(1.0).certified_radius([0.9], norm="inf", method="cube")


@pytest.mark.parametrize("noise", [GaussianNoise(0.3), LaplaceNoise(0.3)], ids=lambda n: type(n).__name__)
def test_dominated_certificates_never_exceed_their_dominator(noise):
    """method=None skips a certificate declared dominated_by another; that is only right if it never
    exceeds it. Dense grid over (p_a, p_b), binary and pair forms."""
    p_a, p_b = np.meshgrid(np.linspace(0.01, 0.999, 80), np.linspace(0.0, 0.99, 80))
    p_a, p_b = p_a.ravel(), p_b.ravel()
    for spec in noise._certificates.values():
        if spec.dominated_by is None:
            continue
        for pb in (None, p_b):
            low = noise.certified_radius(p_a, pb, method=spec.name)
            high = noise.certified_radius(p_a, pb, method=spec.dominated_by)
            assert np.all(low <= high * (1 + 1e-9) + 1e-12), spec.name


def test_mismatched_bound_shapes_are_a_value_error():
    with pytest.raises(ValueError, match="same shape"):
        GaussianNoise(0.25).certified_radius([0.8, 0.9], [0.1, 0.1, 0.1])


def test_laplace_tiny_runner_up_bound_gives_a_finite_radius():
    noise = LaplaceNoise(1.0)
    for method in ("teng", "lecuyer"):
        r = noise.certified_radius([0.6, 0.6, 0.6], [5e-324, 1e-310, 2e-308], method=method)
        assert np.all(np.isfinite(r))
        np.testing.assert_allclose(r, 0.5 * (np.log(0.6) - np.log([5e-324, 1e-310, 2e-308])), rtol=1e-12)
    assert noise.certified_radius(0.6, 0.0) == np.inf  # p_b = 0: the runner-up is impossible everywhere
