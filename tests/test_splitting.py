"""Splitting noise (Levine & Feizi; Voráček & Hein §2.3): exact sampler, the coupling behind every
certificate, tight soundness checks with classifiers whose smoothed probabilities are known in
closed form, and deterministic splitting (§2.3.1): exactness of the finite expectation, soundness
for arbitrary (off-grid) adversarial points, validation."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from art_smoothing.certificates.bounds import clopper_pearson_lower
from art_smoothing.noise import DeterministicSplittingNoise, SplittingNoise, UniformNoise

REL = 1e-9


def draw(noise, num, shape, seed, dtype=torch.float64):
    return noise.sample(num, shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ---------------------------------------------------------------- sampler
@pytest.mark.parametrize("lam", [0.5, 0.8, 2.0])
@pytest.mark.parametrize("x", [0.0, 0.3, 1.0])
def test_paper_case_marginal_is_atom_at_one_plus_uniform(lam, x):
    """λ >= 1/2: x̃ = 1 with probability 1 − 1/(2λ), else uniform on [x, 1 + x] (§2.3)."""
    noise = SplittingNoise(lam)
    n = 40000
    xt = noise.perturb(torch.full((n, 1), x, dtype=torch.float64), draw(noise, n, (1,), 7)).numpy().ravel()
    atom = xt == 1.0
    p = 1 - 1 / (2 * lam)
    # binomial count of the atom: 5 standard errors (fixed seed, deterministic outcome)
    assert abs(atom.mean() - p) <= 5 * math.sqrt(max(p * (1 - p), 1e-12) / n) + 1e-12
    rest = xt[~atom]
    assert stats.kstest(rest, stats.uniform(loc=x, scale=1.0).cdf).pvalue > 1e-3


@pytest.mark.parametrize("lam", [0.05, 0.2, 0.45])
def test_small_scale_is_randomly_offset_quantization(lam):
    """λ < 1/2 (our extension): x̃ − x is uniform on [0, 2λ), and x̃ − lo is on the random grid s + 2λℤ."""
    noise = SplittingNoise(lam)
    n = 40000
    x = torch.full((n, 1), 0.37, dtype=torch.float64)
    z = draw(noise, n, (1,), 11)
    xt = noise.perturb(x, z)
    assert stats.kstest((xt - x).numpy().ravel(), stats.uniform(scale=2 * lam).cdf).pvalue > 1e-3
    k = (xt - z) / (2 * lam)
    assert torch.allclose(k, k.round(), atol=1e-9)
    # the two definitions meet at λ = 1/2
    z = draw(SplittingNoise(0.5), 100, (5,), 1)
    x = torch.rand(100, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    half = SplittingNoise(0.5)
    assert torch.allclose(half.perturb(x, z), torch.clamp(z, max=1.0) + (x > z).double())


@pytest.mark.parametrize("lam", [0.2, 0.5, 1.0, 3.0])
def test_coupling_agreement_probability_is_the_cube_overlap(lam):
    """The fact all certificates rest on (Theorem 2.11): with the same draw, x̃ and ỹ agree in
    coordinate i with probability (1 − |δ_i|/(2λ))_+, independently across coordinates. 60k draws:
    5 binomial standard errors."""
    noise = SplittingNoise(lam)
    x = torch.tensor([[0.1, 0.5, 0.9, 0.0]], dtype=torch.float64)
    y = torch.tensor([[0.3, 0.45, 0.2, 1.0]], dtype=torch.float64)
    n = 60000
    z = draw(noise, n, (4,), 3)
    agree = (noise.perturb(x, z) == noise.perturb(y, z)).numpy()
    per = np.clip(1 - np.abs((x - y).numpy()[0]) / (2 * lam), 0, None)
    se = np.sqrt(per * (1 - per) / n) + 1e-12
    assert np.all(np.abs(agree.mean(0) - per) <= 5 * se)
    joint = per.prod()
    assert abs(agree.all(1).mean() - joint) <= 5 * math.sqrt(joint * (1 - joint) / n) + 1e-12


def test_noise_interface():
    noise = SplittingNoise(0.75, clip_values=(0.0, 1.0))
    assert not noise.additive and noise.std == pytest.approx(0.75 / math.sqrt(3))
    z = noise.sample(3, (1, 2, 2), generator=torch.Generator().manual_seed(0))
    assert z.shape == (3, 1, 2, 2) and z.dtype == torch.float32 and bool(((z >= 0) & (z < 1.5)).all())
    assert noise == SplittingNoise(0.75) and noise != SplittingNoise(0.75, clip_values=(0, 2))
    with pytest.raises(ValueError, match="scale"):
        SplittingNoise(0.0)
    with pytest.raises(ValueError, match="clip_values"):
        SplittingNoise(1.0, clip_values=(1.0, 1.0))
    # general box: the representation is the unit-box one mapped affinely
    wide = SplittingNoise(0.75 * 4, clip_values=(-1.0, 3.0))
    x = torch.rand(50, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    z = draw(noise, 50, (3,), 4)
    assert torch.allclose(wide.perturb(-1 + 4 * x, 4 * z), -1 + 4 * noise.perturb(x, z))


# ---------------------------------------------------------------- certificates
def test_certificates_equal_uniform_noise_ones():
    """Theorem 2.11: Proposition 2.1 holds with the same overlap, so every certificate coincides."""
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(50, 10))
    x[:10] = np.round(x[:10])
    p_a, p_b = rng.uniform(0.5, 1.0, 50), rng.uniform(0.0, 0.5, 50)
    for lam in (0.3, 0.5, 1.2, 6.0):
        s, u = SplittingNoise(lam), UniformNoise(lam)
        assert set(s.certificate_methods(1)) == set(u.certificate_methods(1))
        for method in s.certificate_methods(1):
            for pb in (None, p_b):
                kw = {"norm": 1, "method": method, "x": x, "clip_values": (0, 1), "dim": 10}
                np.testing.assert_array_equal(s.certified_radius(p_a, pb, **kw), u.certified_radius(p_a, pb, **kw))


def product_classifier_h(y, lam):
    """f(x̃) = [every x̃_i <= 1] under splitting noise with λ >= 1/2: x̃_i <= 1 iff s_i >= y_i, so for y
    in the box h(y) = Π(1 − y_i/(2λ)) — the cube overlap itself, the worst case of Proposition 2.1."""
    return np.prod(1 - np.asarray(y) / (2 * lam), axis=-1)


@pytest.mark.parametrize("lam", [0.75, 1.0, 1.5, 3.0])
def test_product_classifier_is_certified_tightly_and_soundly(lam):
    noise = SplittingNoise(lam)
    # the closed form of h is right (Monte Carlo, 5 standard errors)
    y = torch.tensor([[0.2, 0.7, 1.0]], dtype=torch.float64)
    n = 50000
    votes = (noise.perturb(y, draw(noise, n, (3,), 9)) <= 1.0).all(1).double().mean().item()
    h = product_classifier_h(y.numpy()[0], lam)
    assert abs(votes - h) <= 5 * math.sqrt(h * (1 - h) / n)
    # d = 2 grid of the box: the true radius from x is the ℓ1 distance to {y in box : h(y) <= 1/2}
    g = np.linspace(0, 1, 1201)
    yy = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    flips = product_classifier_h(yy, lam) <= 0.5
    for x in ([0.0, 0.0], [0.0, 0.3], [0.25, 0.1]):
        x = np.array(x)
        p_a = product_classifier_h(x, lam)
        if p_a <= 0.5:
            continue
        r = float(noise.certified_radius(p_a, norm=1, x=x[None], clip_values=(0, 1)))
        truth = np.abs(yy[flips] - x).sum(1).min() if flips.any() else math.inf
        assert r <= truth * (1 + REL)  # grid truth >= true radius, and a sound radius is <= both
        if not flips.any():
            assert math.isinf(r)
        if np.all(x == 0):  # at the corner h(y) equals the minimal overlap: the box radius is exact
            assert r == pytest.approx(truth, abs=2.0 / 1200) if math.isfinite(truth) else math.isinf(r)
        assert r >= float(noise.certified_radius(p_a, norm=1))


def test_one_dimensional_threshold_is_tight():
    """f(x̃) = [x̃ > 1]: h(y) = y/(2λ) on [0, 1]; at x = 1 (box boundary) the true radius is 1 − λ."""
    for lam in (0.55, 0.7, 0.9):
        r = SplittingNoise(lam).certified_radius(1 / (2 * lam), norm=1, x=[[1.0]], clip_values=(0, 1))
        assert r == pytest.approx(1 - lam, rel=1e-12)


def test_monte_carlo_over_claim_rate_at_most_alpha():
    """Product classifier at x = (0.3, 0), λ = 1.5 (exact p = 0.9); votes ~ Binomial(n, p) with the exact
    p; an over-claim needs the Clopper–Pearson bound above p (probability <= α). 4000 seeded trials:
    allow α + 3 binomial standard errors of the rate."""
    lam, x = 1.5, np.array([0.3, 0.0])
    p = product_classifier_h(x, lam)
    g = np.linspace(0, 1, 801)
    yy = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    truth = np.abs(yy[product_classifier_h(yy, lam) <= 0.5] - x).sum(1).min()
    alpha, n, trials = 0.05, 400, 4000
    counts = np.random.default_rng(5).binomial(n, p, size=trials)
    r = SplittingNoise(lam).certified_radius(clopper_pearson_lower(counts, n, alpha), norm=1,
                                             x=np.repeat(x[None], trials, 0), clip_values=(0, 1))
    assert np.mean(r > truth * (1 + REL)) <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / trials)


# ---------------------------------------------------------------- deterministic splitting
def random_classifier(d, n_classes=3, seed=0):
    """A rough fixed multiclass classifier on noisy inputs (sin features), for exactness checks."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(n_classes, d, generator=gen, dtype=torch.float64)
    c = torch.randn(n_classes, generator=gen, dtype=torch.float64)

    def f(u):
        return (torch.sin(7.0 * u) @ w.T + c).argmax(-1)

    return f


def exact_h(noise, f, y, n_classes=3):
    """h(y) = E_s f(x̃(y, s)) for the driving offset s ~ U[0, 2λ) (coordinate offsets s_i = (s + v_i) mod 2λ),
    exactly for any y (on or off the grid): x̃ is constant between the breakpoints in s, namely the grid
    steps jΔ (v is on the grid) and the cell boundaries s ≡ y_i − lo − v_i (mod 2λ)."""
    lo = noise.clip_values[0]
    two_lam = 2 * noise.scale
    y = np.asarray(y, np.float64)
    v = noise.offset_vector(y.shape)
    cuts = [np.arange(0, two_lam, noise.step), np.mod(y - lo - v, two_lam)]
    cuts = np.unique(np.clip(np.concatenate([np.ravel(c) for c in cuts] + [[0.0, two_lam]]), 0, two_lam))
    mids, lengths = 0.5 * (cuts[1:] + cuts[:-1]), np.diff(cuts)
    keep = lengths > 0
    z = torch.as_tensor(np.mod(mids[keep][:, None] + v[None], two_lam))
    labels = f(noise.perturb(torch.as_tensor(y)[None], z))
    return np.bincount(labels.numpy(), weights=lengths[keep] / two_lam, minlength=n_classes)


def exact_draw_h(noise, f, x, n_classes=3):
    xt = torch.as_tensor(np.asarray(x, np.float64))[None]
    z, w = noise.exact_draws(xt, xt.shape[1:], dtype=torch.float64)
    return np.bincount(f(noise.perturb(xt, z)).numpy(), weights=w.numpy(), minlength=n_classes)


@pytest.mark.parametrize("lam,levels", [(0.75, 17), (0.5, 17), (3.0, 9), (0.125, 17), (0.25, 5)])
def test_exact_draws_equal_the_expectation_over_the_shared_offset(lam, levels):
    noise = DeterministicSplittingNoise(lam, levels=levels)
    d = 6
    z, weights = noise.exact_draws(np.zeros((1, d)), (d,), dtype=torch.float64)
    # Levine & Feizi's count: 2qλ draws with q = 1/Δ = levels - 1 steps per unit
    assert len(z) == round(2 * lam * (levels - 1)) and weights.sum().item() == pytest.approx(1.0, abs=1e-14)
    v = torch.as_tensor(noise.offset_vector((d,)))
    assert bool(((v >= 0) & (v < 2 * lam)).all())
    rng = np.random.default_rng(0)
    f = random_classifier(d)
    for _ in range(10):
        x = rng.integers(0, levels, size=d) / (levels - 1)
        np.testing.assert_allclose(exact_draw_h(noise, f, x), exact_h(noise, f, x), atol=1e-12)
        # the noisy input itself is constant while s stays in one grid step: random s give the same x̃ as
        # the step's representative draw
        s = torch.rand(400, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2 * lam
        z_s = torch.remainder(s[:, None] + v, 2 * lam)
        rep = z[torch.floor(s / noise.step).long()]
        xt = torch.as_tensor(x)[None]
        assert torch.equal(noise.perturb(xt, z_s), noise.perturb(xt, rep))


@pytest.mark.parametrize("lam,levels", [(0.75, 17), (2.0, 17), (0.25, 9)])
def test_deterministic_certificate_is_sound_for_off_grid_adversaries(lam, levels):
    """Exact h at grid x and at random y (off the grid, inside and outside the box): every class
    probability moves by at most ‖δ‖₁/(2λ) (Theorem 2.10), so the certified radius never lets the top
    class lose."""
    noise = DeterministicSplittingNoise(lam, levels=levels)
    rng = np.random.default_rng(1)
    d = 4
    f = random_classifier(d, seed=3)
    for _ in range(15):
        x = rng.integers(0, levels, size=d) / (levels - 1)
        hx = exact_draw_h(noise, f, x)
        top2 = np.sort(hx)[::-1]
        r_plain = float(noise.certified_radius(top2[0], top2[1], norm=1))
        assert r_plain == pytest.approx(lam * (top2[0] - top2[1]))
        for _ in range(30):
            direction = rng.laplace(size=d)
            step = rng.uniform(0, 2.5) * max(r_plain, 0.05)
            y = x + step * direction / np.abs(direction).sum()
            hy = exact_h(noise, f, y)
            dist = np.abs(y - x).sum()
            assert np.all(np.abs(hy - hx) <= dist / (2 * lam) + 1e-12)
            if dist < r_plain:
                assert np.argmax(hy) == np.argmax(hx) and hy.max() > np.sort(hy)[-2]


def test_deterministic_noise_has_only_the_lipschitz_certificate():
    """No independence across coordinates: the box certificates of the independent noise do not hold."""
    noise = DeterministicSplittingNoise(2.0, levels=17)
    assert noise.certificate_methods(1) == ["lipschitz"]
    x = np.zeros((2, 5))
    np.testing.assert_allclose(noise.certified_radius([0.9, 0.7], [0.05, 0.2], norm=1, x=x, clip_values=(0, 1)),
                               [2.0 * 0.85, 2.0 * 0.5])


def test_deterministic_sampler_has_uniform_marginals_driven_by_one_offset():
    noise = DeterministicSplittingNoise(0.75, levels=17)
    z = noise.sample(20000, (1, 3, 3), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    flat = z.reshape(20000, -1)
    v = torch.as_tensor(noise.offset_vector((1, 3, 3))).reshape(-1)
    s = torch.remainder(flat - v, 1.5)  # the driving offset, the same for every coordinate
    assert torch.allclose(s, s[:, :1].expand_as(s), atol=1e-12)
    for i in (0, 4, 8):
        assert stats.kstest(flat[:, i].numpy(), stats.uniform(scale=1.5).cdf).pvalue > 1e-3
    assert len(set(v.tolist())) > 1  # the fixed offsets decorrelate the coordinates


def test_deterministic_validation():
    noise = DeterministicSplittingNoise(192 / 255, levels=256)
    on_grid = np.round(np.random.default_rng(0).uniform(size=(2, 1, 4, 4)) * 255) / 255
    z, w = noise.exact_draws(on_grid.astype(np.float32), (1, 4, 4))
    assert z.shape == (384, 1, 4, 4) and w.dtype == torch.float64
    with pytest.raises(ValueError, match="quantization grid"):
        noise.exact_draws(on_grid + 0.3 / 255, (1, 4, 4))
    with pytest.raises(ValueError, match="outside clip_values"):
        noise.exact_draws(on_grid + 1.0, (1, 4, 4))
    with pytest.raises(ValueError, match="NaN or inf"):
        noise.exact_draws(np.full((1, 3), np.nan), (3,))
    with pytest.raises(ValueError, match="multiple of half the quantization step"):
        DeterministicSplittingNoise(0.75, levels=256)
    with pytest.raises(ValueError, match="levels"):
        DeterministicSplittingNoise(0.75, levels=1)
    with pytest.raises(ValueError, match="offset_seed"):
        DeterministicSplittingNoise(0.75, levels=17, offset_seed=-1)
    assert DeterministicSplittingNoise(2 / 255, levels=256).n_draws == 4


# ---------------------------------------------------------------- estimator integration
class AllBelowOne(torch.nn.Module):
    """Class 1 iff every noisy coordinate is <= 1: under splitting noise (λ >= 1/2) h_1(y) = Π(1 − y_i/(2λ))."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, u):
        inside = (u.reshape(u.shape[0], -1) <= 1.0).all(1).float()
        return torch.stack([1 - inside, inside], 1) + 0 * self.dummy


class RoughClassifier(torch.nn.Module):
    def __init__(self, d, n_classes=3, seed=0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.w = torch.nn.Parameter(torch.randn(n_classes, d, generator=gen))
        self.c = torch.nn.Parameter(torch.randn(n_classes, generator=gen))

    def forward(self, u):
        return torch.sin(7.0 * u.reshape(u.shape[0], -1)) @ self.w.T + self.c


def test_estimator_splitting_noise_end_to_end_over_claim_rate():
    """Non-additive noise through SmoothedClassifier (no special case): with the AllBelowOne model the
    true radius is known; over T seeded certifications the over-claims are Binomial(T, <= α), and we allow
    the 99.9% quantile of Binomial(T, α)."""
    from scipy.stats import binom

    from art_smoothing import SmoothedClassifier
    from art_smoothing.models import make_classifier

    lam, x = 1.5, np.array([[0.3, 0.0]], dtype=np.float32)
    g = np.linspace(0, 1, 801)
    yy = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    truth = np.abs(yy[product_classifier_h(yy, lam) <= 0.5] - x[0]).sum(1).min()
    base = make_classifier(AllBelowOne(), (2,), 2, clip_values=(0.0, 1.0))
    alpha, trials, over, gains = 0.05, 300, 0, 0
    for seed in range(trials):
        sm = SmoothedClassifier(base, noise=SplittingNoise(lam), sample_size=20, alpha=alpha, seed=seed)
        res = sm.certify_detailed(x, n=300, batch_size=400, norm=1)
        assert res.prediction[0] in (1, -1)
        over += int(res.prediction[0] == 1 and res.radius[0] > truth * (1 + REL))
        gains += int(res.radius[0] > res.radius_for(norm=1, method="lipschitz")[0])
    assert over <= binom.ppf(0.999, trials, alpha)
    assert gains > trials // 2


def test_estimator_deterministic_splitting_is_exact_and_seed_free():
    from art_smoothing import SmoothedClassifier
    from art_smoothing.models import make_classifier

    d, levels, lam = 4, 9, 0.75
    model = RoughClassifier(d, seed=2)
    base = make_classifier(model, (d,), 3, clip_values=(0.0, 1.0))
    noise = DeterministicSplittingNoise(lam, levels=levels)
    x = (np.random.default_rng(0).integers(0, levels, size=(6, d)) / (levels - 1)).astype(np.float32)
    a = SmoothedClassifier(base, noise=noise, seed=1).certify_detailed(x, n=1, batch_size=7, deterministic=True)
    b = SmoothedClassifier(base, noise=noise, seed=2).certify_detailed(x, n=1, deterministic=True, box=False)
    with torch.no_grad():
        f = lambda u: model(u.float()).argmax(-1)
        expected = np.stack([exact_draw_h(noise, f, xi.astype(np.float64)) for xi in x])
    np.testing.assert_allclose(a.extra["probabilities"], expected, atol=1e-12)
    np.testing.assert_array_equal(a.extra["probabilities"], b.extra["probabilities"])
    assert a.form == "exact" and a.extra["draws"] == round(2 * lam * (levels - 1))
    top = np.sort(expected, 1)
    ok = top[:, -1] > top[:, -2]
    np.testing.assert_array_equal(a.prediction, np.where(ok, expected.argmax(1), -1))
    np.testing.assert_allclose(b.radius, np.where(ok, lam * (top[:, -1] - top[:, -2]), 0.0), atol=1e-9)
    np.testing.assert_array_equal(a.radius, b.radius)  # no box certificate for the dependent offsets
    sm = SmoothedClassifier(base, noise=noise)
    with pytest.raises(ValueError, match="quantization grid"):
        sm.certify(np.clip(x + 0.01, 0, 1), n=1, deterministic=True)
    with pytest.raises(ValueError, match="finite, exactly weighted set of draws"):
        SmoothedClassifier(base, noise=SplittingNoise(lam)).certify(x, n=1, deterministic=True)


class AtLeastOne(torch.nn.Module):
    """Class 1 iff the (split) input is >= 1: in one dimension h(y) = P(x̃(y) >= 1) = y on [0, 1]."""

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))  # ART's wrapper wants an optimizer

    def forward(self, u):
        s = (u.reshape(u.shape[0], -1)[:, 0] >= 1.0).to(u.dtype) - 0.5
        return torch.stack([torch.zeros_like(s), s], dim=1)


def test_exact_certificate_just_off_the_grid_is_measured_from_the_input():
    """An input 0.0009 steps off the grid is accepted (float32 cannot hold most grid values), and the exact
    probabilities are those of its grid point x_g; the radius must be counted from x, i.e. shrink by
    ‖x − x_g‖. Here h(y) = y, so the true l1 radius at x = 1 − 0.0009·Δ is x − 1/2."""
    from art_smoothing import SmoothedClassifier
    from art_smoothing.models import make_classifier

    noise = DeterministicSplittingNoise(0.5, levels=3)
    base = make_classifier(AtLeastOne(), (1,), 2, clip_values=(0.0, 1.0))
    sm = SmoothedClassifier(base, noise=noise)
    x = np.array([[1.0 - 0.0009 * noise.step]])
    res = sm.certify_detailed(x.astype(np.float32), n=1, deterministic=True, norm=1)
    truth = float(x.astype(np.float32)[0, 0]) - 0.5
    assert res.prediction[0] == 1 and res.extra["probabilities"][0, 1] == 1.0  # h at the grid point 1
    assert res.radius[0] <= truth + 1e-9
    assert res.radius[0] >= truth - 1e-6  # the certificate stays tight here

    # in general: the off-grid radius is the grid point's radius less the distance, in every norm
    d, levels, lam = 4, 9, 0.75
    model = RoughClassifier(d, seed=2)
    base = make_classifier(model, (d,), 3, clip_values=(0.0, 1.0))
    noise = DeterministicSplittingNoise(lam, levels=levels)
    sm = SmoothedClassifier(base, noise=noise)
    rng = np.random.default_rng(5)
    grid = rng.integers(1, levels - 1, size=(8, d)) / (levels - 1)
    off = (grid + rng.uniform(-9e-4, 9e-4, size=grid.shape) * noise.step).astype(np.float32)
    for norm in (1, 2, "inf"):
        on = sm.certify_detailed(grid.astype(np.float32), n=1, deterministic=True, norm=norm)
        near = sm.certify_detailed(off, n=1, deterministic=True, norm=norm)
        np.testing.assert_array_equal(on.extra["probabilities"], near.extra["probabilities"])
        p = {1: 1, 2: 2, "inf": np.inf}[norm]
        slack = np.linalg.norm(off.astype(np.float64) - grid, ord=p, axis=1)
        assert np.all(slack > 0)
        expected = np.where(on.radius > slack, on.radius - slack, 0.0)
        np.testing.assert_allclose(near.radius, expected, atol=1e-9)
        np.testing.assert_array_equal(near.prediction, np.where(on.radius > slack, on.prediction, -1))
