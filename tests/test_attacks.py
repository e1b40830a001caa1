"""EOT gradients of the smoothed loss, SmoothedPGD, ART's attacks/defences/trainer on a SmoothedClassifier,
and the empirical radius against classifiers whose true robust radius is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent
from art.defences.preprocessor import FeatureSqueezing, SpatialSmoothing
from art.defences.trainer import AdversarialTrainer
from art.estimators.classification import PyTorchClassifier
from scipy.stats import binom
from torch import nn

from art_smoothing import SmoothedClassifier
from art_smoothing.attacks import SmoothedPGD, draw_noise, empirical_radius, smoothed_log_probs
from art_smoothing.attacks.pgd import project_l1_ball
from art_smoothing.models import DigitsCNN
from art_smoothing.noise import GaussianNoise, LaplaceNoise, UniformNoise
from art_smoothing.noise.base import Noise

D = 10
RNG = np.random.default_rng(0)
W = RNG.normal(size=D)
X_LIN = RNG.normal(size=(24, D)).astype(np.float32)
MARGIN = X_LIN @ W
Y_LIN = (MARGIN > 0).astype(np.int64)



def linear_classifier(scale: float = 20.0, dtype=torch.float32, clip_values=None, **kwargs) -> PyTorchClassifier:
    """Two classes, logits (0, scale·w·x): the base decision is sign(w·x). With noise symmetric about 0
    the smoothed classifier is the same half-space, so its robust radius at x is |w·x| / ‖w‖_q (q dual)."""
    model = nn.Linear(D, 2).to(dtype)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
        model.weight[1] = torch.as_tensor(W * scale, dtype=dtype)
    return PyTorchClassifier(model, nn.CrossEntropyLoss(), (D,), 2, clip_values=clip_values, **kwargs)


def smooth_mlp(dtype=torch.float64) -> PyTorchClassifier:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(D, 16), nn.Tanh(), nn.Linear(16, 3)).to(dtype)
    return PyTorchClassifier(model, nn.CrossEntropyLoss(), (D,), 3)


def tiny_cnn(**kwargs) -> PyTorchClassifier:
    torch.manual_seed(0)
    model = DigitsCNN(width=4)
    return PyTorchClassifier(model, nn.CrossEntropyLoss(), (1, 8, 8), 10, clip_values=(0.0, 1.0),
                             optimizer=torch.optim.Adam(model.parameters(), lr=1e-3), **kwargs)


def digits_inputs(n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.uniform(0, 1, size=(n, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, size=n)


class QuantizedNoise(Noise):
    """A non-additive noise for the tests: perturb(x, z) = s·floor(x/s + z), z ~ U[0, 1) — randomized
    rounding to the grid sZ, piecewise constant in x (like splitting noise)."""

    additive = False
    name = "quantized"

    def __init__(self, step: float):
        self.step = float(step)

    @property
    def std(self) -> float:
        return self.step / math.sqrt(12.0)

    def params(self):
        return {"step": self.step}

    def _sample(self, size, *, generator, device, dtype):
        return torch.rand(size, generator=generator, device=device, dtype=dtype)

    def perturb(self, x, z):
        return self.step * torch.floor(x / self.step + z)


# ---------------------------------------------------------------------- gradients
def mc_loss(est, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """−log of the mean softmax over the fixed draws z (common random numbers)."""
    with torch.no_grad():
        return -smoothed_log_probs(est, x, z).gather(1, y[:, None])[:, 0]


@pytest.mark.parametrize("noise", [GaussianNoise(0.3), LaplaceNoise(0.3), UniformNoise(0.5)])
def test_loss_gradient_matches_finite_differences(noise):
    est = SmoothedClassifier(smooth_mlp(), noise, seed=3, eot_samples=40)
    x = torch.as_tensor(RNG.normal(size=(4, D)))
    y = torch.tensor([0, 1, 2, 1])
    z = draw_noise(est, 40, generator=est.generator(3, 99))
    grad = est.loss_gradient(x, y, noise_draws=z)
    assert isinstance(grad, torch.Tensor) and grad.dtype == torch.float64 and grad.shape == x.shape
    h = 1e-5
    for _ in range(3):
        v = torch.as_tensor(RNG.normal(size=(4, D)))
        fd = (mc_loss(est, x + h * v, y, z) - mc_loss(est, x - h * v, y, z)) / (2 * h)
        # float64 central differences: truncation O(h²·|L'''|) ~ 1e-10 and rounding ~1e-16/h ~ 1e-11.
        np.testing.assert_allclose((grad * v).sum(dim=1).numpy(), fd.numpy(), rtol=1e-6, atol=1e-8)


def test_non_additive_noise_uses_straight_through_gradient():
    """With perturb piecewise constant in x, the returned gradient is that of the surrogate
    x' ↦ −log mean_j softmax f(x' + c_j) with the offsets c_j = perturb(x, z_j) − x frozen."""
    est = SmoothedClassifier(smooth_mlp(), QuantizedNoise(0.5), seed=0, eot_samples=30)
    x = torch.as_tensor(RNG.normal(size=(3, D)))
    y = torch.tensor([2, 0, 1])
    z = draw_noise(est, 30, generator=est.generator(0, 7))
    grad = est.loss_gradient(x, y, noise_draws=z)
    offsets = est.noise.perturb(x[:, None], z[None]) - x[:, None]

    def surrogate(xp):
        logits = est._model(xp[:, None] + offsets)[-1]
        return -(torch.logsumexp(torch.log_softmax(logits, -1), 1) - math.log(30)).gather(1, y[:, None])[:, 0]

    h, v = 1e-5, torch.as_tensor(RNG.normal(size=(3, D)))
    with torch.no_grad():
        fd = (surrogate(x + h * v) - surrogate(x - h * v)) / (2 * h)
    np.testing.assert_allclose((grad * v).sum(dim=1).numpy(), fd.numpy(), rtol=1e-6, atol=1e-8)
    assert torch.linalg.norm(grad) > 0  # the pathwise gradient would be exactly 0


def test_gradient_independent_of_chunking_and_numpy_torch_paths():
    est = SmoothedClassifier(tiny_cnn(), GaussianNoise(0.25), seed=0, eot_samples=24)
    x, y = digits_inputs(5)
    z = draw_noise(est, 24, generator=est.generator(0, 5))
    ref = est.loss_gradient(x, y, noise_draws=z, batch_size=10_000)  # one pass
    for bs in (1, 7, 24, 50):  # several draw blocks per input, one input per chunk, several inputs per chunk
        np.testing.assert_allclose(est.loss_gradient(x, y, noise_draws=z, batch_size=bs), ref, rtol=2e-4, atol=1e-7)
    t = est.loss_gradient(torch.as_tensor(x), torch.as_tensor(np.eye(10)[y]), noise_draws=z)
    assert isinstance(t, torch.Tensor) and t.device == torch.as_tensor(x).device
    np.testing.assert_allclose(t.numpy(), ref, rtol=1e-5, atol=1e-8)
    assert isinstance(ref, np.ndarray) and ref.dtype == np.float32 and ref.shape == x.shape
    # class_gradient: ∇ log ḡ_c; the loss gradient is minus the label's row
    cg = est.class_gradient(x, noise_draws=z)
    assert cg.shape == (5, 10, 1, 8, 8)
    np.testing.assert_allclose(-cg[np.arange(5), y], ref, rtol=1e-4, atol=1e-7)
    assert est.class_gradient(x, label=3, noise_draws=z).shape == (5, 1, 1, 8, 8)
    # ∇ Σ_c ḡ_c = 0: Σ_c ḡ_c ∇ log ḡ_c = 0
    with torch.no_grad():
        g = smoothed_log_probs(est, torch.as_tensor(x), z).exp().numpy()
    np.testing.assert_allclose((g[:, :, None, None, None] * cg).sum(axis=1), 0.0, atol=1e-6)


def test_gradient_stream_fresh_per_call_and_reproducible():
    x, y = digits_inputs(3)
    a = SmoothedClassifier(tiny_cnn(), GaussianNoise(0.25), seed=11, eot_samples=8)
    b = SmoothedClassifier(tiny_cnn(), GaussianNoise(0.25), seed=11, eot_samples=8)
    g1, g2 = a.loss_gradient(x, y), a.loss_gradient(x, y)
    assert not np.allclose(g1, g2)  # fresh draws per call
    np.testing.assert_array_equal(b.loss_gradient(x, y), g1)  # same seed, same sequence
    loss = a.compute_loss(x, y, reduction="none")
    assert loss.shape == (3,) and np.all(loss > 0)


def test_saturated_model_attack_does_not_stall():
    """With a confident base model every softmax of the other class underflows in float32 and
    ∇ log ḡ_y is exactly 0; SmoothedPGD follows the log-odds gradient, which stays O(1)."""
    est = SmoothedClassifier(linear_classifier(scale=200.0), GaussianNoise(0.05), seed=0, eot_samples=16)
    i = np.argsort(np.abs(MARGIN))[-4:]  # far from the boundary: all votes agree
    dist = np.abs(MARGIN[i]) / np.linalg.norm(W)
    x_adv = SmoothedPGD(est, norm=2, eps=dist * 1.2, max_iter=20).generate(X_LIN[i], Y_LIN[i])
    assert np.all(((x_adv @ W) > 0) != Y_LIN[i].astype(bool))


# ---------------------------------------------------------------------- ART's attacks, defences, trainer
@pytest.mark.parametrize("norm", [1, 2, np.inf])
def test_art_pgd_and_fgsm_attack_the_smoothed_classifier(norm):
    """ART's PGD (PyTorch path: framework preprocessing; numpy path: a numpy defence) runs unchanged,
    stays within ε, and raises the smoothed loss."""
    x, y = digits_inputs(6)
    eps = {1: 2.0, 2: 1.0, np.inf: 0.2}[norm]
    for defences in (None, [FeatureSqueezing(clip_values=(0.0, 1.0), bit_depth=5)]):
        est = SmoothedClassifier(tiny_cnn(preprocessing_defences=defences), GaussianNoise(0.25), seed=0,
                                 eot_samples=16)
        pgd = ProjectedGradientDescent(est, norm=norm, eps=eps, eps_step=eps / 4, max_iter=6, verbose=False)
        assert type(pgd._attack).__name__.endswith("PyTorch" if defences is None else "Numpy")
        x_adv = pgd.generate(x, y)
        delta = (x_adv - x).reshape(6, -1)
        assert np.all(np.linalg.norm(delta, ord=norm, axis=1) <= eps * (1 + 1e-4))
        assert x_adv.min() >= 0 and x_adv.max() <= 1
        z = draw_noise(est, 256, generator=est.generator(5, 5))
        before = est.compute_loss(x, y, noise_draws=z).mean()
        after = est.compute_loss(x_adv, y, noise_draws=z).mean()
        assert after > before
    fgm = FastGradientMethod(est, norm=norm, eps=eps)
    assert np.all(np.linalg.norm((fgm.generate(x, y) - x).reshape(6, -1), ord=norm, axis=1) <= eps * (1 + 1e-4))


def test_numpy_preprocessing_defence_in_pipeline_and_gradient():
    """ART's numpy SpatialSmoothing stays in the pipeline: votes change, and the gradient is the BPDA
    one ART uses (the defence's estimate_gradient, identity), computed at the defended noisy points."""
    defence = SpatialSmoothing(window_size=3, channels_first=True, clip_values=(0.0, 1.0))
    x, y = digits_inputs(4)
    plain = SmoothedClassifier(tiny_cnn(), GaussianNoise(0.25), seed=0, eot_samples=12, sample_size=200)
    est = SmoothedClassifier(tiny_cnn(preprocessing_defences=[defence]), GaussianNoise(0.25), seed=0,
                             eot_samples=12, sample_size=200)
    assert not est.all_framework_preprocessing
    z = draw_noise(est, 12, generator=est.generator(0, 1))
    # same draws, different pipeline: the smoothed soft predictions differ; PREDICT/CERTIFY run through it
    assert not np.allclose(plain.compute_loss(x, y, noise_draws=z), est.compute_loss(x, y, noise_draws=z))
    assert est.certify_detailed(x, 200).counts.sum(axis=1).tolist() == [200] * 4
    assert est.predict(x).shape == (4, 10)
    grad = est.loss_gradient(x, y, noise_draws=z)
    noisy = (torch.as_tensor(x)[:, None] + z[None]).reshape(-1, 1, 8, 8)
    u = torch.as_tensor(defence(noisy.numpy())[0]).requires_grad_(True)
    logp = torch.log_softmax(est._model(u)[-1], -1).reshape(4, 12, 10)
    loss = -(torch.logsumexp(logp, 1) - math.log(12)).gather(1, torch.as_tensor(y)[:, None]).sum()
    (gu,) = torch.autograd.grad(loss, u)
    np.testing.assert_allclose(grad, gu.reshape(4, 12, 1, 8, 8).sum(1).numpy(), rtol=1e-4, atol=1e-7)


def test_adversarial_trainer_with_smoothed_pgd():
    x, y = digits_inputs(32)
    est = SmoothedClassifier(tiny_cnn(), GaussianNoise(0.25), seed=0, eot_samples=4)
    before = [p.detach().clone() for p in est.model.parameters()]
    attack = SmoothedPGD(est, norm=2, eps=0.5, max_iter=2)
    AdversarialTrainer(est, attack, ratio=0.5).fit(x, np.eye(10)[y], nb_epochs=1, batch_size=16)
    assert any(not torch.equal(a, b) for a, b in zip(before, est.model.parameters()))


# ---------------------------------------------------------------------- SmoothedPGD
def test_l1_projection_is_exact():
    v = torch.as_tensor(RNG.normal(size=(50, 7)))
    eps = torch.as_tensor(RNG.uniform(0.1, 5, size=50))
    p = project_l1_ball(v, eps)
    assert torch.all(p.abs().sum(1) <= eps + 1e-9)
    # optimality of the Euclidean projection: for every w in the ball, <v − p, w − p> ≤ 0
    for _ in range(20):
        w = project_l1_ball(torch.as_tensor(RNG.normal(size=(50, 7))) * 3, eps)
        assert torch.all(((v - p) * (w - p)).sum(1) <= 1e-9)


@pytest.mark.parametrize("norm,noise", [(2, GaussianNoise(0.25)), (1, LaplaceNoise(0.25)),
                                        (np.inf, UniformNoise(0.5))])
def test_smoothed_pgd_respects_ball_and_box_and_flips_beyond_boundary(norm, noise):
    q = {2: 2, 1: np.inf, np.inf: 1}[norm]
    dist = np.abs(MARGIN) / np.linalg.norm(W, ord=q)
    est = SmoothedClassifier(linear_classifier(clip_values=(-5.0, 5.0)), noise, seed=0, eot_samples=32)
    for reuse, restarts in ((False, 0), (True, 2)):
        atk = SmoothedPGD(est, norm=norm, eps=dist * 1.3, max_iter=25, reuse_noise=reuse, num_random_init=restarts)
        x_adv = atk.generate(X_LIN, Y_LIN)
        size = np.linalg.norm((x_adv - X_LIN).astype(np.float64), ord=norm, axis=1)
        assert np.all(size <= dist * 1.3 * (1 + 1e-5)) and x_adv.min() >= -5 and x_adv.max() <= 5
        # ε = 1.3 × distance: the half-space is crossed (inputs pressed against the box excepted)
        crossed = ((x_adv @ W) > 0) != Y_LIN.astype(bool)
        assert crossed.mean() >= 0.9
        # within ε = 0.9 × distance no flip of the base (= smoothed) decision is possible
        x_in = SmoothedPGD(est, norm=norm, eps=dist * 0.9, max_iter=5, reuse_noise=reuse).generate(X_LIN, Y_LIN)
        assert np.all(((x_in @ W) > 0) == Y_LIN.astype(bool))


def test_l1_step_is_sparse_and_concentrates_on_the_best_coordinate():
    est = SmoothedClassifier(linear_classifier(), LaplaceNoise(0.1), seed=0, eot_samples=16)
    atk = SmoothedPGD(est, norm=1, eps=1.0, max_iter=1, l1_sparsity=0.3, early_stop=False)
    one = atk.generate(X_LIN[:5], Y_LIN[:5]) - X_LIN[:5]
    assert np.all((np.abs(one) > 0).sum(axis=1) <= math.ceil(0.3 * D))  # k = 3 coordinates per step
    assert np.all((np.abs(one) > 0).sum(axis=1) >= 2)  # not ART's single coordinate
    # With gradient-weighted top-k steps the ℓ1 projection keeps removing the coordinates of smaller
    # |w_i| (each step moves coordinate i by η(|w_i| − mean over the support)), so with enough travel
    # (here 100 steps of 0.1 = 10ε) the perturbation is as efficient as the optimal vertex:
    # w·δ ≈ max|w|·‖δ‖₁. A sign (SLIDE) step would stay spread over the top 3: efficiency 0.90 here.
    many = SmoothedPGD(est, norm=1, eps=1.0, eps_step=0.1, max_iter=100, l1_sparsity=0.3,
                       early_stop=False).generate(X_LIN[:5], Y_LIN[:5]) - X_LIN[:5]
    efficiency = np.abs(many @ W) / (np.abs(many).sum(axis=1) * np.abs(W).max())
    assert np.all(efficiency > 0.98), efficiency
    top3 = np.argsort(np.abs(W))[-3:]
    assert np.abs(W[top3]).mean() / np.abs(W).max() < 0.91


def test_early_stop_keeps_the_flipping_iterate():
    est = SmoothedClassifier(linear_classifier(), GaussianNoise(0.1), seed=0, eot_samples=64)
    dist = np.abs(MARGIN) / np.linalg.norm(W)
    far = SmoothedPGD(est, norm=2, eps=dist * 3, max_iter=30, early_stop=False).generate(X_LIN, Y_LIN)
    early = SmoothedPGD(est, norm=2, eps=dist * 3, max_iter=30, early_stop=True).generate(X_LIN, Y_LIN)
    n_far = np.linalg.norm(far - X_LIN, axis=1)
    n_early = np.linalg.norm(early - X_LIN, axis=1)
    assert np.median(n_early / n_far) < 0.9  # stopped before using the whole budget ...
    assert np.all(((early @ W) > 0) != Y_LIN.astype(bool))  # ... once flipped


@pytest.mark.parametrize("kwargs", [
    {"norm": 3}, {"eps": -1.0}, {"eps": [0.1, np.nan]}, {"eps_step": 0.0}, {"max_iter": 0}, {"eot_samples": 0},
    {"num_random_init": -1}, {"l1_sparsity": 0.0}, {"l1_sparsity": 1.5}, {"reuse_noise": "yes"},
    {"early_stop": 1}, {"batch_size": 0}, {"gradient_batch_size": 2.5},
])
def test_smoothed_pgd_validation(kwargs):
    est = SmoothedClassifier(linear_classifier(), GaussianNoise(0.25))
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        SmoothedPGD(est, **kwargs)


def test_attack_and_gradient_input_validation():
    est = SmoothedClassifier(linear_classifier(), GaussianNoise(0.25), seed=0)
    atk = SmoothedPGD(est, norm=2, eps=0.5)
    with pytest.raises(ValueError, match="eps"):
        atk.generate(X_LIN[:3], Y_LIN[:3], eps=[0.1, 0.2])
    with pytest.raises(ValueError, match="y"):
        atk.generate(X_LIN[:3], Y_LIN[:2])
    with pytest.raises(ValueError, match="y"):
        atk.generate(X_LIN[:3], np.array([0, 1, 5]))
    with pytest.raises(ValueError, match="targeted"):
        SmoothedPGD(est, targeted=True).generate(X_LIN[:3])
    with pytest.raises(ValueError, match="y"):
        est.loss_gradient(X_LIN[:3], Y_LIN[:2])
    with pytest.raises(ValueError, match="noise_draws"):
        est.loss_gradient(X_LIN[:3], Y_LIN[:3], noise_draws=torch.zeros(4, D + 1))
    with pytest.raises(ValueError, match="label"):
        est.class_gradient(X_LIN[:3], label=7)
    with pytest.raises(ValueError, match="reduction"):
        est.compute_loss(X_LIN[:3], Y_LIN[:3], reduction="avg")
    with pytest.raises(ValueError, match="estimator"):
        SmoothedPGD(linear_classifier())
    with pytest.raises(ValueError, match="rtol"):
        empirical_radius(est, X_LIN[:3], Y_LIN[:3], 2, rtol=0)
    with pytest.raises(ValueError, match="search_steps"):
        empirical_radius(est, X_LIN[:3], Y_LIN[:3], 2, search_steps=-1)
    with pytest.raises(ValueError, match="eps_max"):
        empirical_radius(est, X_LIN[:3], Y_LIN[:3], 2, eps_max=-1.0)
    with pytest.raises(ValueError, match="norm"):
        empirical_radius(est, X_LIN[:3], Y_LIN[:3], 2, attack=SmoothedPGD(est, norm=1))
    with pytest.raises(ValueError, match="norm"):
        empirical_radius(est, X_LIN[:3], Y_LIN[:3], 7)


# ---------------------------------------------------------------------- empirical radius
def predict_margin(noise_proj: np.ndarray, n: int, alpha: float) -> float:
    """Distance t past the boundary at which PREDICT (n draws, level α) says "flipped" with
    probability ≥ 0.999, given samples of the noise's projection on the attack direction:
    the smallest p with P(Binomial(n, p) ≥ k*) ≥ 0.999, k* the smallest count the two-sided test
    rejects, then t = p-quantile of the projection."""
    k = np.arange(n // 2, n + 1)
    k_star = k[2 * binom.sf(k - 1, n, 0.5) <= alpha][0]
    ps = np.linspace(0.5, 1, 2001)
    p = ps[np.argmax(binom.sf(k_star - 1, n, ps) >= 0.999)]
    return float(np.quantile(noise_proj, p))


@pytest.mark.parametrize("norm,noise", [(2, GaussianNoise(0.25)), (1, LaplaceNoise(0.25)),
                                        (np.inf, UniformNoise(0.5))])
def test_empirical_radius_brackets_the_true_distance(norm, noise):
    """Linear classifier, symmetric noise: the smoothed classifier is the half-space itself and its
    robust radius is d = |w·x| / ‖w‖_q exactly. Then:
    * empirical ≥ d unless a PREDICT decision errs (≤ α each; with fixed seeds there is none);
    * empirical ≤ (d + t)(1 + rtol)·(1 + 2%): t the distance past the boundary PREDICT needs
      (computed from the binomial test), rtol the bisection tolerance, 2% for the attack's
      finite steps — i.e. the attack is strong: it reaches the true boundary;
    * certified ≤ d ≤ empirical, and no violations (expected at most α·Σ(1+calls) ≈ 0.24 here)."""
    q = {2: 2, 1: np.inf, np.inf: 1}[norm]
    dual = np.linalg.norm(W, ord=q)
    dist = np.abs(MARGIN) / dual
    n_pred, alpha, rtol = 1000, 0.001, 0.05
    est = SmoothedClassifier(linear_classifier(), noise, sample_size=n_pred, alpha=alpha, seed=0, eot_samples=32)
    # the best attack direction is the dual vector u with ‖u‖_p = 1 and w·u = ‖w‖_q; the vote margin
    # moves by ‖w‖_q per unit of ℓp distance, against the noise's projection w·z / ‖w‖_q
    zs = noise.sample(200_000, (D,), generator=torch.Generator().manual_seed(0)).double().numpy()
    t = predict_margin(zs @ W / dual, n_pred, alpha)
    cp, cr = est.certify(X_LIN, 1000, norm=norm)
    det = empirical_radius(est, X_LIN, Y_LIN, norm, attack={"max_iter": 25}, eps_max=3 * dist.max() + 1,
                           radius_hint=cr, rtol=rtol, search_steps=10, return_details=True)
    emp = det.radius
    assert np.all(np.isfinite(emp))
    assert np.all(emp >= dist * (1 - 1e-5))
    assert np.all(emp <= (dist + t) * (1 + rtol) * 1.02), (emp - dist).max()
    assert np.all(cr <= dist + 1e-9)
    assert np.sum(emp < cr) == 0
    assert alpha * np.sum(1 + det.predict_calls) < 0.5
    np.testing.assert_array_equal(cp, Y_LIN)  # far enough from 0 to be certified correctly here


def test_empirical_radius_batched_equals_per_input_shapes_and_inf():
    est = SmoothedClassifier(linear_classifier(), GaussianNoise(0.25), sample_size=200, seed=0, eot_samples=16)
    dist = np.abs(MARGIN) / np.linalg.norm(W)
    # ε range too small for the far inputs: inf there; already misclassified inputs: 0
    y = Y_LIN.copy()
    i0 = int(np.argmax(dist))  # confidently classified: PREDICT at x already says "not y[i0]"
    y[i0] = 1 - y[i0]
    emp = empirical_radius(est, X_LIN, y, 2, eps_max=np.median(dist), search_steps=4)
    assert emp.shape == (len(X_LIN),) and emp.dtype == np.float64
    assert emp[i0] == 0.0
    far = dist > np.median(dist) * 1.1
    far[i0] = False
    assert np.all(np.isinf(emp[far]))
