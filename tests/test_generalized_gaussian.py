"""Generalized Gaussian noise GN(0, σ, p): exact sampler, KL bounds, sound certificates, the curse of
dimensionality, and training through SmoothedClassifier.fit."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from art_smoothing import SmoothedClassifier
from art_smoothing.noise import GaussianNoise, GeneralizedGaussianNoise, LaplaceNoise
from art_smoothing.noise.generalized_gaussian import kl_coordinate_families

SHAPES = [1.0, 1.5, 2.0, 3.0, 4.0, 4.5, 8.0, 60.0]



def _abs_moment_numeric(p, k, sigma=1.0):
    """E|z|^k for z ~ GN(0, σ, p) by numerical integration of the density (not the Gamma formula)."""
    dens = stats.gennorm(p, scale=sigma).pdf
    upper = sigma * 80.0 ** (1.0 / p)  # exp(−80) beyond: negligible
    return 2.0 * integrate.quad(lambda z: z**k * dens(z), 0, upper, points=[sigma], limit=400, epsabs=1e-15)[0]


# ---------------------------------------------------------------------------------------- sampler
@pytest.mark.parametrize("p", SHAPES)
def test_sampler_matches_distribution_and_moments(p):
    sigma = 0.7
    noise = GeneralizedGaussianNoise(sigma, p)
    z = noise.sample(2000, (25,), generator=torch.Generator().manual_seed(11), dtype=torch.float64).numpy().ravel()
    n = z.size  # 50k draws, fixed seed: deterministic outcome
    # Kolmogorov–Smirnov against scipy's gennorm (same density ∝ exp(−|z/σ|^p)).
    assert stats.kstest(z, stats.gennorm(p, scale=sigma).cdf).pvalue > 1e-3
    # E|z/σ|^p = 1/p and Var|z/σ|^p = 1/p (|z/σ|^p ~ Gamma(1/p, 1)); compared with the numerically
    # integrated moment, tolerance 5 standard errors √(1/p)/√n.
    target = _abs_moment_numeric(p, p, sigma) / sigma**p
    assert target == pytest.approx(1.0 / p, rel=1e-6)
    assert np.mean(np.abs(z / sigma) ** p) == pytest.approx(target, abs=5 * math.sqrt(1.0 / p / n))
    # Variance vs the integrated second moment m2; SE of the sample variance ≈ √((m4 − m2²)/n).
    m2, m4 = _abs_moment_numeric(p, 2, sigma), _abs_moment_numeric(p, 4, sigma)
    assert noise.std**2 == pytest.approx(m2, rel=1e-6)
    assert z.var() == pytest.approx(m2, abs=5 * math.sqrt((m4 - m2**2) / n))
    assert abs(z.mean()) < 5 * math.sqrt(m2 / n)


def test_sampler_reproducible_dtype_shape():
    noise = GeneralizedGaussianNoise(0.3, 3.5)
    a = noise.sample(6, (1, 4, 4), generator=torch.Generator().manual_seed(2))
    b = noise.sample(6, (1, 4, 4), generator=torch.Generator().manual_seed(2))
    c = noise.sample(6, (1, 4, 4), generator=torch.Generator().manual_seed(3))
    assert a.shape == (6, 1, 4, 4) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    # the global RNG is neither used nor advanced
    state = torch.get_rng_state()
    noise.sample(10, (3,), generator=torch.Generator().manual_seed(0))
    assert torch.equal(state, torch.get_rng_state())
    for dtype in (torch.float64, torch.float16, torch.bfloat16):
        assert noise.sample(3, (2,), generator=torch.Generator().manual_seed(0), dtype=dtype).dtype == dtype
    assert noise.sample(0, (5,)).shape == (0, 5)


def test_large_p_is_close_to_uniform_without_underflow():
    # Gamma(1/p)^(1/p) would underflow to 0 in float32 for large p; the sampler does not.
    noise = GeneralizedGaussianNoise(1.0, 1000.0)
    z = noise.sample(20000, (1,), generator=torch.Generator().manual_seed(4)).numpy().ravel()
    assert np.all(np.abs(z) <= 1.01) and np.mean(np.abs(z) < 1e-3) < 0.01
    # Uniform(−1, 1) has E|z| = 1/2, SE 1/√(12 n); 5 SE
    assert np.mean(np.abs(z)) == pytest.approx(0.5, abs=5 / math.sqrt(12 * z.size) + 1e-3)


def test_std_and_special_cases():
    assert GeneralizedGaussianNoise(0.8, 2).std == pytest.approx(0.8 / math.sqrt(2))
    assert GeneralizedGaussianNoise(0.8, 1).std == pytest.approx(LaplaceNoise(0.8).std)
    assert GeneralizedGaussianNoise(0.8, 1e6).std == pytest.approx(0.8 / math.sqrt(3), rel=1e-5)
    for p in (1.0, 2.5, 7.0):
        assert GeneralizedGaussianNoise.from_std(0.25, p).std == pytest.approx(0.25)
    n = GeneralizedGaussianNoise(0.5, 3)
    assert n.norm == 3.0 and n.params() == {"sigma": 0.5, "p": 3.0}
    assert n == GeneralizedGaussianNoise(0.5, 3.0) and n != GeneralizedGaussianNoise(0.5, 4.0)
    assert "p=3.0" in repr(n)


@pytest.mark.parametrize("kwargs,match", [
    ({"sigma": 1.0, "p": 0.5}, "p must"), ({"sigma": 1.0, "p": 0.0}, "p must"), ({"sigma": 1.0, "p": -2}, "p must"),
    ({"sigma": 1.0, "p": float("nan")}, "p must"), ({"sigma": 1.0, "p": float("inf")}, "UniformNoise"),
    ({"sigma": 1.0, "p": "abc"}, "p must"), ({"sigma": 1.0, "p": True}, "p must"),
    ({"sigma": 0.0, "p": 2.0}, "sigma"), ({"sigma": -1.0, "p": 2.0}, "sigma"), ({"sigma": float("nan"), "p": 2.0}, "sigma"),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GeneralizedGaussianNoise(**kwargs)


# ---------------------------------------------------------------------------------------- KL bounds
def _kl_numeric(p, t):
    """KL(GN(t, 1, p) ‖ GN(0, 1, p)) = ∫ f(z − t) (log f(z − t) − log f(z)) dz, by quadrature."""
    d = stats.gennorm(p)
    f = lambda z: d.pdf(z - t) * (d.logpdf(z - t) - d.logpdf(z))
    return integrate.quad(f, -40 + t, 40 + t, points=[0.0, t], limit=400, epsabs=1e-14)[0]


@pytest.mark.parametrize("p", [1.0, 1.3, 1.5, 2.0, 2.5, 3.0, 3.7, 4.0, 5.0, 6.0, 7.5])
def test_kl_coordinate_bound_vs_quadrature(p):
    noise = GeneralizedGaussianNoise(1.0, p)
    ts = [0.01, 0.1, 0.5, 1.0, 2.0, 4.0]
    bound = noise.kl_coordinate_bound(ts).numpy()
    exact = np.array([_kl_numeric(p, t) for t in ts])
    # Sound: never below the true KL (quadrature accurate to ~1e-12 here).
    assert np.all(bound >= exact * (1 - 1e-8) - 1e-12)
    if p == 1.0 or (p.is_integer() and int(p) % 2 == 0):
        np.testing.assert_allclose(bound, exact, rtol=1e-7, atol=1e-12)  # exact for even p and p = 1
    else:
        assert np.all(bound <= 2.5 * exact + 1e-9)  # and not vacuous


def test_hayes_eq14_is_an_upper_bound_not_the_kl_for_odd_p():
    (binomial,) = [f for f in kl_coordinate_families(3.0) if f.name == "binomial"]
    for t in (0.3, 1.0, 2.5):
        eq14 = sum(c * t**k for k, c in binomial.terms)  # t³ + 3 t/Γ(1/3) (Hayes, Table 2)
        assert eq14 == pytest.approx(t**3 + 3 * t / math.gamma(1 / 3))
        assert eq14 > _kl_numeric(3.0, t) * (1 + 1e-6)


def test_taylor_bound_is_exact_at_even_p_and_continuous():
    # The real-p bound reduces to the binomial formula at even p (every inequality is an equality) and
    # is continuous in p there from both sides.
    for p in (4.0, 6.0, 8.0):
        (fam,) = kl_coordinate_families(p)
        for side in (-1e-9, 1e-9):
            taylor = next(f for f in kl_coordinate_families(p + side) if f.name == "taylor")
            for t in (0.2, 1.0, 3.0):
                assert sum(c * t**k for k, c in taylor.terms) == pytest.approx(
                    sum(c * t**k for k, c in fam.terms), rel=1e-6)


def test_large_p_samples_but_refuses_certificates():
    noise = GeneralizedGaussianNoise(1.0, 1e6)
    assert noise.sample(5, (3,), generator=torch.Generator().manual_seed(0)).abs().max() <= 1.0
    with pytest.raises(ValueError, match="p <= 128"):
        noise.certified_radius(0.9, norm=2)
    assert GeneralizedGaussianNoise(1.0, 128).certified_radius(0.9, norm=2) > 0


@pytest.mark.parametrize("p", [1.0, 1.5, 2.0, 3.0, 4.0, 5.5])
@pytest.mark.parametrize("norm", ["own", 1, 2, math.inf])
def test_ball_bound_dominates_kl_of_every_perturbation(p, norm):
    noise = GeneralizedGaussianNoise(0.6, p)
    q = p if norm == "own" else norm
    d, eps = 50, 0.8
    rng = np.random.default_rng(0)
    deltas = [np.full(d, 1.0), np.eye(d)[0], rng.standard_normal(d), rng.laplace(size=d), rng.uniform(-1, 1, d)]
    ball = float(noise.kl_ball_bound(eps, norm=q, dim=d))
    worst = 0.0
    for delta in deltas:
        delta = eps * delta / np.linalg.norm(delta, ord=q)
        kl = float(noise.kl_coordinate_bound(delta / noise.sigma).sum())  # ≥ the true KL of this δ
        assert kl <= ball * (1 + 1e-12)
        worst = max(worst, kl)
    if p in (2.0, 4.0) and norm == "own":  # even p: Hayes' eq. (21) is the exact maximum (equal coordinates)
        assert worst == pytest.approx(ball, rel=1e-12)


# ---------------------------------------------------------------------------------------- soundness
def _grid(binary):
    pa = np.linspace(0.3, 0.99999, 120)
    if binary:
        return pa[pa > 0.5], None
    a, b = np.meshgrid(pa, np.concatenate([[1e-6], np.linspace(1e-3, 0.45, 25)]))
    ok = (a > b) & (a + b <= 1)
    return a[ok], b[ok]


@pytest.mark.parametrize("binary", [True, False])
def test_p2_equals_gaussian_kl_and_never_exceeds_cohen(binary):
    a, b = _grid(binary)
    for sigma in (0.2, 1.0, 3.0):
        gg = GeneralizedGaussianNoise(sigma, 2)
        gauss = GaussianNoise(sigma / math.sqrt(2))
        r = gg.certified_radius(a, b, norm=2)
        np.testing.assert_allclose(r, gauss.certified_radius(a, b, method="kl"), rtol=1e-12)
        assert np.all(r <= gauss.certified_radius(a, b, method="cohen") * (1 + 1e-12))


@pytest.mark.parametrize("binary", [True, False])
def test_p1_never_exceeds_laplace_tight_radius(binary):
    a, b = _grid(binary)
    for sigma in (0.2, 1.0, 3.0):
        r = GeneralizedGaussianNoise(sigma, 1).certified_radius(a, b, norm=1, dim=64)
        teng = LaplaceNoise(sigma).certified_radius(a, b, method="teng")
        assert np.all(r <= teng * (1 + 1e-12))
        assert np.all(r[a > 0.5 + 1e-3] > 0)


@pytest.mark.parametrize("p", [1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 9.5])
@pytest.mark.parametrize("dim", [1, 7, 784])
def test_never_exceeds_the_radius_of_a_threshold_classifier(p, dim):
    # f(x) = [x_1 > u] (class A) / [x_1 < l] (class B) / other in between. In 1D along x_1 its smoothed
    # prediction flips exactly when x_1 moves by σ/2 (F⁻¹(p_A) − F⁻¹(p_B)) (binary: σ F⁻¹(p_A)), F the
    # standard GN cdf, and the moving perturbation has the same length in every ℓq norm. No sound
    # certificate, in any norm and any dimension, may exceed it.
    sigma = 0.4
    noise = GeneralizedGaussianNoise(sigma, p)
    F = stats.gennorm(p)
    for binary in (True, False):
        a, b = _grid(binary)
        truth = sigma * F.ppf(a) if binary else 0.5 * sigma * (F.ppf(a) - F.ppf(b))
        for norm in (p, 1, 2, math.inf):
            r = noise.certified_radius(a, b, norm=norm, dim=dim)
            assert np.all(r <= truth * (1 + 1e-9)), (norm, binary)


@pytest.mark.parametrize("p", [1.5, 3.0, 4.0])
def test_never_exceeds_the_radius_of_a_sum_classifier_in_2d(p):
    # f(x) = [x_1 + x_2 > 0] at x = (s, s): the flip δ = (−s, −s) has ‖δ‖_q = s·2^(1/q).
    # p_A = P(z_1 + z_2 > −2s) = ∫ f(z) (1 − F(−2s/σ − z)) dz, by quadrature.
    sigma = 0.5
    F = stats.gennorm(p)
    noise = GeneralizedGaussianNoise(sigma, p)
    for s in (0.05, 0.2, 0.4):
        p_a = integrate.quad(lambda z, s=s: F.pdf(z) * F.sf(-2 * s / sigma - z), -30, 30, limit=200)[0]
        for q in (p, 1, 2, math.inf):
            assert p_a < 1 - 1e-6  # a finite true radius
            true_radius = s * 2 ** (0.0 if math.isinf(q) else 1.0 / q)
            assert float(noise.certified_radius(p_a, norm=q, dim=2)) <= true_radius


def test_linear_classifier_under_gaussian_member_every_norm():
    # GN(0, σ, 2) = N(0, σ²/2): for f(x) = sign(w·x + b), p_A = Φ(|w·x + b| / (‖w‖₂ σ/√2)) exactly and
    # the ℓq distance to the decision boundary is |w·x + b| / ‖w‖_q* (dual norm).
    rng = np.random.default_rng(5)
    sigma, d = 0.6, 5
    noise = GeneralizedGaussianNoise(sigma, 2)
    for _ in range(20):
        w, x, b = rng.standard_normal(d), rng.standard_normal(d), rng.standard_normal()
        margin = abs(w @ x + b)
        p_a = stats.norm.cdf(margin / (np.linalg.norm(w) * sigma / math.sqrt(2)))
        for q, dual in ((2, 2), (1, math.inf), (4, 4 / 3), (math.inf, 1)):
            assert float(noise.certified_radius(p_a, norm=q, dim=d)) <= margin / np.linalg.norm(w, ord=dual) + 1e-12


# ---------------------------------------------------------------------------------------- properties
@settings(max_examples=40, deadline=None)
@given(p=st.floats(1.0, 9.0), x1=st.floats(0.0, 1.0), x2=st.floats(0.0, 1.0), q=st.floats(0.0, 1.0),
       sigma=st.floats(0.05, 4.0), c=st.floats(0.2, 5.0), norm=st.sampled_from(["own", 1, 2, math.inf]),
       dim=st.sampled_from([1, 3, 64, 3072]))
def test_monotone_and_scale_equivariant(p, x1, x2, q, sigma, c, norm, dim):
    noise = GeneralizedGaussianNoise(sigma, p)
    norm = p if norm == "own" else norm
    lo, hi = sorted([x1, x2])
    r_lo, r_hi = noise.certified_radius([lo, hi], norm=norm, dim=dim)
    assert r_hi >= r_lo * (1 - 1e-9)
    b_lo, b_hi = sorted([lo * (1 - q), hi * (1 - q)])
    r1, r2 = noise.certified_radius([q, q], [b_lo, b_hi], norm=norm, dim=dim)
    assert r1 >= r2 * (1 - 1e-9)
    r = noise.certified_radius([hi, q], [lo, b_lo], norm=norm, dim=dim)
    rc = GeneralizedGaussianNoise(c * sigma, p).certified_radius([hi, q], [lo, b_lo], norm=norm, dim=dim)
    np.testing.assert_allclose(rc, c * r, rtol=1e-9, atol=1e-300)


def test_methods_norms_and_dimension_handling():
    n4 = GeneralizedGaussianNoise(0.5, 4)
    assert n4.certificate_methods(4) == ["kl", "kl_l1", "kl_l2", "kl_linf"]
    with pytest.raises(ValueError, match="dim"):
        n4.certified_radius(0.9, method="kl")  # ℓ4 radius depends on d
    with pytest.raises(ValueError, match="dim"):
        n4.certified_radius(0.9, norm=math.inf)
    # ℓ2 and ℓ1 are dimension-free for every p
    for p in (1.0, 1.5, 3.0, 4.0, 7.2):
        assert GeneralizedGaussianNoise(0.5, p).certified_radius(0.9, norm=2) > 0
        assert GeneralizedGaussianNoise(0.5, p).certified_radius(0.9, norm=1) > 0
    # with the dimension: best over methods, each method in its own native norm
    r_own = n4.certified_radius(0.9, dim=100, method="kl")
    assert n4.certified_radius(0.9, dim=100) == pytest.approx(r_own)
    assert n4.certified_radius(0.9, norm=2, dim=100) > r_own  # the ℓ2 certificate is not limited by d
    # degenerate inputs
    r = n4.certified_radius([0.5, 0.2, 1.0, 0.9], [0.5, 0.1, 0.0, 0.1], dim=100)
    assert r[0] == 0 and r[1] > 0 and r[2] == np.inf and r[3] > 0


def test_vectorized_over_many_inputs():
    noise = GeneralizedGaussianNoise(0.5, 4)
    p_a = np.random.default_rng(0).uniform(0.5, 1.0, (100, 200))
    r = noise.certified_radius(p_a, dim=3072)
    assert r.shape == p_a.shape and np.all(np.isfinite(r))
    # sorted inputs give sorted radii (the bisection is per input, no cross-talk)
    flat = np.sort(p_a.ravel())
    assert np.all(np.diff(noise.certified_radius(flat, dim=3072)) >= 0)


@pytest.mark.parametrize("p,norm", [(1.0, 1), (1.5, 2), (3.0, 3), (4.0, 4), (4.0, 2), (6.5, math.inf)])
def test_differentiable_radius(p, norm):
    noise = GeneralizedGaussianNoise(0.5, p)
    pa = torch.tensor([0.6, 0.85, 0.97], dtype=torch.float64, requires_grad=True)
    pb = torch.tensor([0.3, 0.1, 0.01], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: noise.certified_radius_torch(a, b, norm=norm, dim=32), (pa, pb),
                                    eps=1e-7, atol=1e-6, rtol=1e-4)
    r = noise.certified_radius_torch(pa, norm=norm, dim=32)
    (g,) = torch.autograd.grad(r.sum(), pa)
    assert torch.all(g > 0)


# ---------------------------------------------------------------------------------------- curse of dimensionality
def test_curse_of_dimensionality():
    # Equal variance (std 0.5), p_A = 0.99. For p ≤ 2 the ℓp radius does not depend on d; for p > 2 it
    # shrinks like d^(1/p − 1/2) (Hayes §3.3, Kumar et al. 2020), and at large d it is a constant
    # fraction (< 1) of the Gaussian's ℓ2 radius converted to ℓp — no gain over plain Gaussian smoothing.
    dims = np.array([1e2, 1e3, 1e4, 1e5, 1e6])
    for p in (1.0, 1.5, 2.0):
        r = np.array([float(GeneralizedGaussianNoise.from_std(0.5, p).certified_radius(0.99, dim=int(d)))
                      for d in dims])
        np.testing.assert_allclose(r, r[0], rtol=1e-12)
    for p in (3.0, 4.0, 6.0, 8.0):
        noise = GeneralizedGaussianNoise.from_std(0.5, p)
        r = np.array([float(noise.certified_radius(0.99, dim=int(d))) for d in dims])
        slope = np.diff(np.log(r)) / np.diff(np.log(dims))
        assert np.all(np.diff(r) < 0)
        assert slope[-1] == pytest.approx(1.0 / p - 0.5, abs=0.005)
        gauss = np.array([float(GaussianNoise(0.5).certified_radius(0.99, norm=p, dim=int(d))) for d in dims])
        ratio = r / gauss
        assert ratio[-1] < 1.0 and ratio[-1] == pytest.approx(ratio[-2], rel=0.01)


# ---------------------------------------------------------------------------------------- training
def test_trains_through_smoothed_classifier_fit(digits, digits_classifier_factory):
    base = digits_classifier_factory(seed=3)
    noise = GeneralizedGaussianNoise.from_std(0.25, 4.0)
    sm = SmoothedClassifier(base, noise=noise, sample_size=32, seed=0)
    x_te, y_te = digits.x_test[:120], digits.y_test[:120]

    def noisy_loss():
        gen = torch.Generator().manual_seed(9)
        x = torch.as_tensor(digits.x_train[:400])
        z = noise.sample(len(x), x.shape[1:], generator=gen)
        with torch.no_grad():
            logits = sm._model(x + z)[-1]
        return float(torch.nn.functional.cross_entropy(logits, torch.as_tensor(digits.y_train[:400])))

    before_loss = noisy_loss()
    before = (sm.predict(x_te, is_abstain=False).argmax(1) == y_te).mean()
    sm.fit(digits.x_train[:800], digits.y_train[:800], nb_epochs=4, batch_size=32)
    after = (sm.predict(x_te, is_abstain=False).argmax(1) == y_te).mean()
    assert before < 0.3 and after > 0.7  # chance is 0.1
    assert noisy_loss() < 0.5 * before_loss
    _, radius = sm.certify(x_te[:20], n=100, norm=2)
    assert radius.shape == (20,) and np.all(radius >= 0) and np.any(radius > 0)
