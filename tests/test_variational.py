"""Power-law and mixed-norm noises and the variational certificate engine: exact samplers against
numerically integrated laws, the engine against closed forms (Gaussian, Laplace, uniform) and against
brute-force Neyman–Pearson quadrature, soundness against linear classifiers whose true distance is
known, properties, caching and the estimator.

Tables here are small (2^15–2^16 Monte Carlo samples) to keep the file fast; soundness is asserted
at that size all the same. Statistical tests use fixed seeds, so their outcomes are deterministic;
every tolerance says which standard error it is a multiple of."""

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, special, stats

from art_smoothing import SmoothedClassifier
from art_smoothing.certificates.bounds import clopper_pearson_lower, clopper_pearson_upper
from art_smoothing.certificates.variational import (
    RadiusTable,
    TableSettings,
    clear_memory_cache,
    get_radius_table,
    log_ratio_model,
    variational_radius,
)
from art_smoothing.noise import GaussianNoise, LaplaceNoise, MixedNormNoise, PowerLawNoise, UniformNoise
from tests.conftest import linear_classifier

SMALL = {"mc_samples": 1 << 15, "table_radii": 256}
ENGINE = TableSettings(n_samples=1 << 16, n_pilot=4096, n_radii=256)
REL = 1e-9


# ====================================================================== samplers
def _mixed_linf_density(sigma, k, d):
    """Unnormalised density of M = ‖z‖∞ for the mixed-norm law, m^-k e^{-m²/2σ²} erf(m/σ√2)^{d-1},
    written independently of the implementation (m-space, scipy)."""
    return lambda m: m ** (-k) * math.exp(-m * m / (2 * sigma**2)) * special.erf(m / (sigma * math.sqrt(2))) ** (d - 1)


def _quad(f, lo, hi, breaks=()):
    """Adaptive quadrature, split at the integrand's kinks/jumps ``breaks`` (quad can miss a jump)."""
    edges = [lo, *sorted(b for b in breaks if lo < b < hi), hi]
    return sum(integrate.quad(f, a, b, limit=400, epsabs=1e-13, epsrel=1e-11)[0] for a, b in itertools.pairwise(edges))


@pytest.mark.parametrize("sigma,k,d", [(0.7, 5.0, 8), (0.5, 30.5, 32), (1.0, 0.6, 1)])
def test_power_law_sampler_radius_direction_and_marginal(sigma, k, d):
    noise = PowerLawNoise(sigma, k)
    z = noise.sample(40000, (d,), generator=torch.Generator().manual_seed(3), dtype=torch.float64).numpy()
    rho = np.linalg.norm(z, axis=1)
    # ‖z‖/σ is chi with d − k degrees of freedom (KS against scipy's law; deterministic with the seed).
    assert stats.kstest(rho / sigma, stats.chi(df=d - k).cdf).pvalue > 1e-3
    # E‖z‖² = σ²(d − k), Var‖z‖² = 2σ⁴(d − k): 6 standard errors.
    se = math.sqrt(2 * (d - k)) * sigma**2 / math.sqrt(len(z))
    assert abs((rho**2).mean() - sigma**2 * (d - k)) < 6 * se
    assert noise.coordinate_std(d) == pytest.approx(sigma * math.sqrt((d - k) / d))
    if d > 1:  # first coordinate of the direction: (u+1)/2 ~ Beta((d-1)/2, (d-1)/2)
        u = z[:, 0] / rho
        assert stats.kstest((u + 1) / 2, stats.beta((d - 1) / 2, (d - 1) / 2).cdf).pvalue > 1e-3
    # Marginal of z_1 against its numerically integrated CDF, P(z1 ≤ t) = E_ρ[P(u ≤ t/ρ)], at 9 points;
    # binomial standard error sqrt(F(1 − F)/N), 6 standard errors.
    chi = stats.chi(df=d - k, scale=sigma)
    for t in np.linspace(-1.5, 1.5, 9) * sigma:
        if d > 1:
            beta = stats.beta((d - 1) / 2, (d - 1) / 2)
            f = _quad(lambda r, t=t, beta=beta: chi.pdf(r) * beta.cdf(np.clip((1 + t / r) / 2, 0, 1)), 0, np.inf,
                      breaks=[abs(t)])
        else:
            f = 0.5 + math.copysign(0.5 * chi.cdf(abs(t)), t)
        emp = (z[:, 0] <= t).mean()
        assert abs(emp - f) < 6 * math.sqrt(f * (1 - f) / len(z)) + 1e-12


@pytest.mark.parametrize("sigma,k,d", [(0.5, 8.0, 16), (1.0, 1.5, 2), (0.3, 60.0, 64), (1.0, 0.5, 1)])
def test_mixed_norm_sampler_against_integrated_law(sigma, k, d):
    noise = MixedNormNoise(sigma, k)
    n = 40000
    z = noise.sample(n, (d,), generator=torch.Generator().manual_seed(5), dtype=torch.float64).numpy()
    a = np.abs(z)
    m = a.max(axis=1)
    dens = _mixed_linf_density(sigma, k, d)
    top = 12 * sigma
    norm_const = _quad(dens, 0, top)

    def cdf_m(x):
        return _quad(dens, 0, min(max(x, 0.0), top)) / norm_const

    # ‖z‖∞ against its integrated law: empirical CDF at 12 quantiles, 6 binomial standard errors.
    for q in np.linspace(0.04, 0.96, 12):
        x = float(np.quantile(m, q))
        f = cdf_m(x)
        assert abs(q - f) < 6 * math.sqrt(f * (1 - f) / n) + 2.0 / n
    # E‖z‖₂² = E[M² + (d−1) σ² (1 − R(M/σ))], R(s) = 2sφ(s)/erf(s/√2) (variance of a truncated normal).
    def second(mm):
        s = mm / sigma
        trunc = 1 - 2 * s * stats.norm.pdf(s) / special.erf(s / math.sqrt(2)) if d > 1 else 0.0
        return (mm * mm + (d - 1) * sigma**2 * trunc) * dens(mm)

    e2 = _quad(second, 0, top) / norm_const
    sq = (z**2).sum(axis=1)
    assert abs(sq.mean() - e2) < 6 * sq.std() / math.sqrt(n)
    assert noise.coordinate_std(d) == pytest.approx(math.sqrt(e2 / d), rel=1e-6)
    if d > 1:
        # Exactly one coordinate attains ‖z‖∞, and it is uniform over the d coordinates (χ² test).
        assert np.all((a >= m[:, None]).sum(axis=1) == 1)
        counts = np.bincount(a.argmax(axis=1), minlength=d)
        assert stats.chisquare(counts).pvalue > 1e-3
        # Marginal of z_1: P(z1 ≤ t) = E_M[(1/d) 1(±M ≤ t) + (d−1)/d · P(T_M ≤ t)], T_M ~ N(0,σ²) on (−M, M).
        for t in np.array([-0.9, -0.3, 0.0, 0.2, 0.7]) * sigma:
            def integrand(mm, t=t):
                s = mm / sigma
                w = special.erf(s / math.sqrt(2))
                tn = np.clip((stats.norm.cdf(np.clip(t, -mm, mm) / sigma) - stats.norm.cdf(-s)) / w, 0, 1)
                own = 0.5 * (float(mm <= t) + float(-mm <= t))  # (np.bool_ + np.bool_ would be OR)
                return (own / d + (d - 1) / d * tn) * dens(mm)

            f = _quad(integrand, 0, top, breaks=[abs(t)]) / norm_const
            assert abs((z[:, 0] <= t).mean() - f) < 6 * math.sqrt(f * (1 - f) / n) + 1e-12


@pytest.mark.parametrize("cls", [PowerLawNoise, MixedNormNoise])
def test_k_zero_is_gaussian_and_sampler_hygiene(cls):
    noise = cls(0.8, 0.0)
    z = noise.sample(2000, (25,), generator=torch.Generator().manual_seed(1)).double().numpy().ravel()
    assert stats.kstest(z, stats.norm(scale=0.8).cdf).pvalue > 1e-3
    for k in (0.0, 3.0):
        noise = cls(0.8, k)
        state = torch.get_rng_state()
        a = noise.sample(7, (1, 3, 3), generator=torch.Generator().manual_seed(5))
        b = noise.sample(7, (1, 3, 3), generator=torch.Generator().manual_seed(5))
        c = noise.sample(7, (1, 3, 3), generator=torch.Generator().manual_seed(6))
        assert torch.equal(torch.get_rng_state(), state)  # never the global generator
        assert a.shape == (7, 1, 3, 3) and a.dtype == torch.float32
        assert torch.equal(a, b) and not torch.equal(a, c)
        assert noise.sample(0, (4,), generator=torch.Generator().manual_seed(0)).shape == (0, 4)


@pytest.mark.parametrize("cls", [PowerLawNoise, MixedNormNoise])
@pytest.mark.parametrize("d,k", [(64, 63.9), (3072, 2500.0), (2, 1e-3)])
def test_samplers_do_not_collapse_near_the_limits(cls, d, k):
    """No acceptance collapse with d or k: 2000 draws in high dimension with k close to d are fast
    and finite; the mixed-norm radial sampler keeps its acceptance rate near 1."""
    import time

    noise = cls(1.0, k)
    t0 = time.perf_counter()
    z = noise.sample(2000, (d,), generator=torch.Generator().manual_seed(0))
    assert time.perf_counter() - t0 < 10.0
    assert torch.isfinite(z).all()
    if cls is MixedNormNoise:
        assert noise._radial_sampler(d).acceptance > 0.95


# ====================================================================== validation
@pytest.mark.parametrize("cls", [PowerLawNoise, MixedNormNoise])
def test_bad_parameters_rejected(cls):
    for kwargs, match in [
        ({"sigma": 0.0, "k": 1.0}, "sigma"), ({"sigma": -1.0, "k": 1.0}, "sigma"), ({"sigma": float("nan"), "k": 1.0}, "sigma"),
        ({"sigma": 1.0, "k": -0.5}, "k"), ({"sigma": 1.0, "k": float("inf")}, "k"),
        ({"sigma": 1.0, "k": 1.0, "cert_alpha": 0.0}, "cert_alpha"), ({"sigma": 1.0, "k": 1.0, "cert_alpha": 1.0}, "cert_alpha"),
        ({"sigma": 1.0, "k": 1.0, "mc_samples": 10}, "mc_samples"), ({"sigma": 1.0, "k": 1.0, "table_radii": 1}, "table_radii"),
        ({"sigma": 1.0, "k": 4.0, "dim": 4}, "k < d"), ({"sigma": 1.0, "k": 1.0, "dim": 0}, "dim"),
    ]:
        with pytest.raises(ValueError, match=match):
            cls(**kwargs)
    noise = cls(1.0, 5.0, **SMALL)
    with pytest.raises(ValueError, match="k < d"):
        noise.sample(3, (5,))
    with pytest.raises(ValueError, match="k < d"):
        noise.certified_radius(0.9, dim=4)
    with pytest.raises(ValueError, match="dim"):
        noise.certified_radius(0.9)  # the certificate needs the dimension
    with pytest.raises(ValueError, match="built for dim"):
        cls(1.0, 2.0, dim=8).certified_radius(0.9, dim=9)
    base = linear_classifier(np.ones(4), 0.0)
    with pytest.raises(ValueError, match="k < d"):
        SmoothedClassifier(base, noise=noise)
    with pytest.raises(ValueError, match="alpha"):  # alpha must exceed the table's failure probability
        SmoothedClassifier(base, noise=cls(1.0, 1.0, cert_alpha=0.01), alpha=0.005)


# ====================================================================== engine vs closed forms
def _table(noise, norm, d, cfg=ENGINE) -> RadiusTable:
    return get_radius_table(log_ratio_model(noise, norm, d), cfg)


def _allowed_gap(cfg: TableSettings, sd: float) -> float:
    """Largest p-gap between the table's p*(r) and the true one on the table's good event: the
    empirical-Bernstein width w at the binary thresholds' level δ = α/2/(4·R·3), counted twice (the
    sample mean may itself sit w above the mean), with per-sample standard deviation ≤ sd
    (0.2 for the Gaussian log-ratio at every radius; see the engine's docstring)."""
    delta = cfg.alpha / 2 / (4 * cfg.n_radii * 3)
    log_term = math.log(2 / delta)
    n = cfg.n_samples
    return 2 * (math.sqrt(2 * sd * sd * log_term / n) + 7 * log_term / (3 * (n - 1)))


def _assert_close_below(r, exact_at, table: RadiusTable, cfg: TableSettings, sd: float = 0.2, gap=None):
    """Soundness r ≤ exact(p), and closeness: on the good event every grid radius below the exact
    radius at p − gap has p*(r_i) < p, so the answer is at least the largest such grid radius."""
    assert np.all(r <= exact_at(P_GRID) * (1 + REL))
    floor = exact_at(P_GRID - (_allowed_gap(cfg, sd) if gap is None else gap))
    expected = np.array([table.radii[table.radii <= f].max(initial=0.0) for f in floor])
    assert np.all(r >= expected)


P_GRID = np.array([0.52, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999])


@pytest.mark.parametrize("norm,d", [(2, 64), (math.inf, 16)])
def test_engine_reproduces_cohen_for_gaussian_noise(norm, d):
    """Cohen's radius is exact for Gaussian noise, so the engine must never exceed it and must come
    within its Monte Carlo slack: every grid radius below Cohen's radius at p − gap is certified."""
    sigma = 0.5
    g = GaussianNoise(sigma)
    table = _table(g, norm, d)
    factor = 1.0 if norm == 2 else math.sqrt(d)
    r = variational_radius(g, P_GRID, dim=d, norm=norm, settings=ENGINE)
    _assert_close_below(r, lambda p: sigma * stats.norm.ppf(p) / factor, table, ENGINE)
    # Multiclass form against Cohen's multiclass radius σ/2 (Φ⁻¹(p_a) − Φ⁻¹(p_b)).
    p_b = (1 - P_GRID) / 5
    exact_mc = 0.5 * sigma * (stats.norm.ppf(P_GRID) - stats.norm.ppf(p_b)) / factor
    r_mc = variational_radius(g, P_GRID, p_b, dim=d, norm=norm, settings=ENGINE)
    assert np.all(r_mc <= exact_mc * (1 + REL))
    assert np.all(r_mc >= 0.85 * exact_mc)
    assert np.all(r_mc >= r - 1e-12)  # a smaller runner-up never hurts


@pytest.mark.parametrize("d", [16, 64])
def test_k_zero_reproduces_gaussian_through_the_public_api(d):
    """k = 0: power-law is N(0, σ²I) → Cohen in ℓ2 (and Cohen/√d in ℓ∞ by conversion); mixed-norm is
    N(0, σ²I) too → its native ℓ∞ certificate equals the Gaussian's converted one."""
    sigma = 0.5
    pl = PowerLawNoise(sigma, 0.0, mc_samples=1 << 16, table_radii=256)
    mn = MixedNormNoise(sigma, 0.0, mc_samples=1 << 16, table_radii=256)
    r2 = pl.certified_radius(P_GRID, dim=d)
    rinf = mn.certified_radius(P_GRID, dim=d, norm="inf")
    _assert_close_below(r2, lambda p: sigma * stats.norm.ppf(p), pl.radius_table(d), pl.table_settings())
    _assert_close_below(rinf, lambda p: sigma * stats.norm.ppf(p) / math.sqrt(d), mn.radius_table(d),
                        mn.table_settings())
    assert np.allclose(pl.certified_radius(P_GRID, dim=d, norm="inf"), r2 / math.sqrt(d))


def test_engine_reproduces_laplace_and_uniform_closed_forms():
    """Laplace with δ = r e₁ (Teng et al.'s tight binary ℓ1 radius −λ log(2(1 − p_a))) and uniform
    noise with δ = r·1 (ℓ∞ cube certificate): both log-ratios have atoms, handled by the engine."""
    lam = 0.5
    teng = LaplaceNoise(lam).certified_radius(P_GRID, norm=1)
    r = variational_radius(LaplaceNoise(lam), P_GRID, dim=8, norm=1, settings=ENGINE)
    assert np.all(r <= teng * (1 + REL))
    # closeness where 2^16 samples resolve the events involved (probability ≥ 1e-2)
    assert np.all((r >= 0.9 * teng)[P_GRID <= 0.99])
    # Uniform: S ∈ {0, ∞}, p*(r) = 3/2 − q(r), q = (1 − r/2λ)^d, bounded through the Clopper–Pearson
    # lower bound on q; its two-sided error is at most twice the one-sided width at q = 1/2.
    d = 16
    r = variational_radius(UniformNoise(lam), P_GRID, dim=d, norm="inf", settings=ENGINE)
    n, delta = ENGINE.n_samples, ENGINE.alpha / 2 / (4 * ENGINE.n_radii * 3)
    gap = 2 * (0.5 - float(clopper_pearson_lower(n // 2, n, delta)))
    _assert_close_below(r, lambda p: UniformNoise(lam).certified_radius(p, norm="inf", dim=d, method="cube"),
                        _table(UniformNoise(lam), "inf", d), ENGINE, gap=gap)


def _np_critical_p(logpdf, delta, h=0.0125, half_width=6.0):
    """Brute-force Neyman–Pearson in d = 2 by midpoint quadrature: the smallest p_a certifying the
    shift δ (the π0-mass of the worst set {S ≥ c} whose π_δ-mass is 1/2)."""
    x = np.arange(-half_width + h / 2, half_width, h)
    xx, yy = np.meshgrid(x, x, indexing="ij")
    lp0 = logpdf(xx, yy)
    lp1 = logpdf(xx - delta[0], yy - delta[1])
    order = np.argsort(-(lp0 - lp1).ravel(), kind="stable")
    z = np.exp(lp0).sum()
    c0 = np.cumsum(np.exp(lp0.ravel()[order])) / z
    c1 = np.cumsum(np.exp(lp1.ravel()[order])) / z
    return float(c0[np.searchsorted(c1, 0.5)])


def test_engine_matches_brute_force_neyman_pearson_in_two_dimensions():
    """d = 2, where the exact bound is a 2-D integral: the table's critical p_a is never below the
    quadrature's (soundness) and within 0.01 of it; for the mixed-norm family the worst ℓ∞ shift is
    the vertex (r, r) (Theorem 5), for the ℓ2 family only ‖δ‖₂ matters (Theorem 2)."""
    sigma, k = 1.0, 1.0
    mixed = lambda x, y: -k * np.log(np.maximum(np.abs(x), np.abs(y))) - (x * x + y * y) / (2 * sigma**2)
    power = lambda x, y: -0.5 * k * np.log(x * x + y * y) - (x * x + y * y) / (2 * sigma**2)
    for noise, logpdf, vertex in [(MixedNormNoise(sigma, k), mixed, lambda r: (r, r)),
                                  (PowerLawNoise(sigma, k), power, lambda r: (r, 0.0))]:
        table = _table(noise, noise.norm, 2)
        for i in (30, 120, 200):
            r = float(table.radii[i])
            brute = _np_critical_p(logpdf, vertex(r))
            # Quadrature error of the midpoint rule (integrable singularity at 0): ≤ 2e-3 for these
            # laws at h = 0.0125, measured against h = 0.005; 3e-3 is allowed.
            assert table.p_star[i] >= brute - 3e-3
            assert table.p_star[i] <= brute + 0.01
        r = 0.5
        if noise.norm == math.inf:
            worst = _np_critical_p(logpdf, (r, r))
            assert worst >= _np_critical_p(logpdf, (r, 0.5 * r)) >= _np_critical_p(logpdf, (r, 0.0))
            assert worst == pytest.approx(_np_critical_p(logpdf, (-r, r)), abs=1e-9)
        else:
            c, s = math.cos(0.7), math.sin(0.7)
            assert _np_critical_p(logpdf, (r, 0.0)) == pytest.approx(_np_critical_p(logpdf, (r * c, r * s)), abs=2e-3)


# ====================================================================== soundness: linear classifiers
def _power_law_p_a(sigma, k, d, t):
    """Exact P(z₁ ≥ −t) under the power-law noise (t ≥ 0), by quadrature: z₁ = ρu, ρ ~ σχ_{d−k}."""
    chi = stats.chi(df=d - k, scale=sigma)
    beta = stats.beta((d - 1) / 2, (d - 1) / 2)
    return 1.0 - _quad(lambda r: chi.pdf(r) * beta.cdf(np.clip((1 - t / r) / 2, 0, 1)), 0, np.inf, breaks=[t])


@pytest.mark.parametrize("k", [0.0, 6.0, 14.0])
def test_power_law_never_exceeds_linear_distance(k):
    """f(x) = 1[w·x + b > 0]: the smoothed classifier has the same boundary (the noise is symmetric),
    so its true ℓ2 / ℓ∞ radius is |w·x + b|/‖w‖₂ / ‖w‖₁. p_a is exact by quadrature."""
    d, sigma = 16, 0.5
    noise = PowerLawNoise(sigma, k, **SMALL)
    rng = np.random.default_rng(0)
    for _ in range(6):
        w = rng.normal(size=d)
        margin = abs(rng.normal()) * np.linalg.norm(w) * sigma * 1.5
        t = margin / np.linalg.norm(w)
        p_a = _power_law_p_a(sigma, k, d, t)
        assert noise.certified_radius(p_a, dim=d) <= t * (1 + REL)
        assert noise.certified_radius(p_a, dim=d, norm="inf") <= margin / np.abs(w).sum() * (1 + REL)
        # Two classes: p_b = 1 − p_a exactly, and the multiclass form must agree with the binary one.
        assert noise.certified_radius(p_a, 1 - p_a, dim=d) <= t * (1 + REL)


@pytest.mark.parametrize("k", [4.0, 8.0, 14.0])
def test_mixed_norm_never_exceeds_linear_distance_with_sign_weights(k):
    """w ∈ {±1}^d: the true ℓ∞ distance is |w·x + b|/d. By the coordinate sign symmetry of the noise,
    p_a = P(Σz ≥ −margin); it is estimated from 2^18 draws and replaced by its one-sided 1 − 10⁻⁶
    Clopper–Pearson UPPER bound, which can only enlarge the certificate — a stricter test."""
    d, sigma = 16, 0.5
    noise = MixedNormNoise(sigma, k, **SMALL)
    gen = torch.Generator().manual_seed(11)
    sums = np.concatenate([noise.sample(1 << 16, (d,), generator=gen, dtype=torch.float64).sum(1).numpy()
                           for _ in range(4)])
    signs = np.where(np.random.default_rng(1).random(d) < 0.5, -1.0, 1.0)
    assert np.abs(signs).sum() == d
    for margin in (0.1, 0.4, 0.8, 1.5, 2.5):
        p_up = float(clopper_pearson_upper((sums > -margin).sum(), sums.size, 1e-6))
        assert noise.certified_radius(p_up, dim=d) <= margin / d * (1 + REL)
        assert noise.certified_radius(p_up, dim=d, norm=2) <= margin / math.sqrt(d) * (1 + REL)


@pytest.mark.parametrize("make_noise,norm", [(lambda: MixedNormNoise(0.5, 6.0, **SMALL), "inf"),
                                             (lambda: PowerLawNoise(0.5, 6.0, **SMALL), 2)])
def test_certify_through_smoothed_classifier_is_sound_on_linear_classifiers(make_noise, norm):
    """The new noises certify through SmoothedClassifier like every other noise: with w = ±1 weights,
    every certified radius is at most the true distance |w·x + b|/‖w‖_q."""
    d = 16
    w = np.where(np.arange(d) % 3 == 0, -1.0, 1.0)
    base = linear_classifier(w, 0.0)
    noise = make_noise()
    rng = np.random.default_rng(2)
    x = rng.normal(size=(16, d)).astype(np.float32) * 0.15
    margins = x.astype(np.float64) @ w
    truth = np.abs(margins) / (np.abs(w).sum() if norm == "inf" else np.linalg.norm(w))
    sm = SmoothedClassifier(base, noise=noise, sample_size=64, alpha=1e-3, seed=0)
    assert sm.noise.certificate_alpha == 1e-4
    for form in ("binary", "multiclass"):
        pred, radius = sm.certify(x, n=3000, batch_size=4096, norm=norm, form=form)
        certified = pred >= 0
        assert certified.sum() >= 8
        assert np.all(pred[certified] == (margins[certified] > 0))
        assert np.all(radius <= truth * (1 + REL))


# ====================================================================== properties
@settings(max_examples=60, deadline=None)
@given(st.floats(0.5, 1.0), st.floats(0.5, 1.0), st.floats(0.0, 0.5))
def test_radius_monotone_and_forms_consistent(p1, p2, q):
    noise = PowerLawNoise(0.5, 10.0, **SMALL)
    lo, hi = min(p1, p2), max(p1, p2)
    r_lo, r_hi = noise.certified_radius([lo, hi], dim=32)
    assert 0.0 <= r_lo <= r_hi < math.inf
    # Multiclass: non-decreasing in p_a, non-increasing in p_b; with p_b = 1 − p_a it is the binary form.
    pb_small, pb_big = q * (1 - hi), (1 - hi)
    m = noise.certified_radius([hi, hi, lo], [pb_small, pb_big, 1 - hi], dim=32)
    assert m[0] >= m[1] >= m[2]
    p = np.array([lo, hi])
    assert np.array_equal(noise.certified_radius(p, dim=32), noise.certified_radius(p, 1 - p, dim=32)) or (
        not np.array_equal(1 - (1 - p), p))


def test_radius_scales_with_sigma():
    """S depends on r/σ only and the draws scale with σ, so radius(c·σ) = c·radius(σ) up to float
    rounding (which may move a grid radius by at most one step: 2 % tolerance)."""
    p = np.array([0.6, 0.8, 0.95])
    for cls in (PowerLawNoise, MixedNormNoise):
        a = cls(0.5, 5.0, **SMALL).certified_radius(p, dim=16)
        b = cls(1.5, 5.0, **SMALL).certified_radius(p, dim=16)
        np.testing.assert_allclose(b, 3.0 * a, rtol=0.02)


def test_table_shape_and_monotone_p_star():
    table = PowerLawNoise(0.5, 10.0, **SMALL).radius_table(32)
    assert np.all(np.diff(table.radii) > 0) and np.all(np.diff(table.p_star) >= 0)
    assert table.p_star[0] > 0.5 and table.build_seconds > 0
    assert table.radius(table.p_star[-1] + 1e-12) == table.max_radius
    # Rounds down: a p_a just at p*(r_i) gives r_{i-1}, just above gives r_i.
    i = 100
    assert table.radius(table.p_star[i]) < table.radii[i] <= table.radius(np.nextafter(table.p_star[i], 2))


# ====================================================================== caching
def test_memory_and_disk_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ART_SMOOTHING_CACHE", str(tmp_path))
    clear_memory_cache()
    cfg = TableSettings(n_samples=1 << 14, n_pilot=2048, n_radii=64)
    model = log_ratio_model(MixedNormNoise(0.4, 3.0), None, 8)
    first = get_radius_table(model, cfg, disk_cache=True)
    assert get_radius_table(model, cfg) is first  # memory
    files = list(tmp_path.glob("variational-*.npz"))
    assert len(files) == 1
    clear_memory_cache()
    loaded = get_radius_table(model, cfg, disk_cache=True)  # disk
    assert loaded is not first
    for name in ("radii", "p_star", "thresholds", "upper"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(first, name))
    files[0].write_bytes(b"corrupt")
    clear_memory_cache()
    rebuilt = get_radius_table(model, cfg, disk_cache=True)  # a corrupt file is rebuilt, not trusted
    np.testing.assert_array_equal(rebuilt.p_star, first.p_star)
    other = get_radius_table(model, TableSettings(n_samples=1 << 14, n_pilot=2048, n_radii=64, alpha=1e-3))
    assert other is not rebuilt and np.all(other.p_star <= rebuilt.p_star + 1e-12)  # larger alpha: smaller p*
    # Deterministic tables: the same settings rebuild bit-identically.
    clear_memory_cache()
    again = get_radius_table(model, cfg)
    np.testing.assert_array_equal(again.p_star, first.p_star)
