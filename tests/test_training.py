"""Trainers: every trainer × every noise trains and does not collapse, MACER's radius term and warm-up, the
certificate as a differentiable function, equivalence with ART's PyTorchMACER / PyTorchSmoothAdv /
PyTorchSmoothMix, reproducibility, validation."""

import copy
import dataclasses
import inspect
import math

import numpy as np
import pytest
import torch
from art.defences.trainer import Trainer
from art.estimators.certification.randomized_smoothing import PyTorchMACER, PyTorchSmoothAdv, PyTorchSmoothMix
from scipy.stats import norm as std_normal
from torch.utils.data import DataLoader, TensorDataset

import art_smoothing.noise as noise_module
from art_smoothing.estimator import SmoothedClassifier
from art_smoothing.models import DigitsCNN, make_classifier
from art_smoothing.noise import GaussianNoise, LaplaceNoise, Noise, UniformNoise
from art_smoothing.training import (
    TRAINERS,
    ConsistencyTrainer,
    MACERTrainer,
    NoiseAugmentationTrainer,
    SmoothAdvTrainer,
    SmoothMixTrainer,
)
from art_smoothing.geometry import project_l1_ball
from art_smoothing.training.smoothadv import project_perturbation


# ---------------------------------------------------------------------------------------------- noises
class TabulatedGaussian(GaussianNoise):
    """Gaussian noise with only Cohen's certificate, declared non-differentiable: exercises MACER's sound
    surrogate (:class:`RadiusEnvelope`) against a radius we know in closed form."""

    name = "tabulated_gaussian"


TabulatedGaussian._certificates = {"cohen": dataclasses.replace(GaussianNoise._certificates["cohen"],
                                                                differentiable=False)}


# Small parameters (std around 0.3-0.5 on [0, 1] digits; cheap Monte Carlo tables for tabulated noises).
_RECIPES = {
    "GaussianNoise": lambda c: c(0.4),
    "LaplaceNoise": lambda c: c(0.3),
    "UniformNoise": lambda c: c(0.7),
    "SplittingNoise": lambda c: c(0.7),
    "DeterministicSplittingNoise": lambda c: c(0.5, levels=17),
    "GeneralizedGaussianNoise": lambda c: c(0.4, p=1.5),
    "PowerLawNoise": lambda c: c(0.4, 2.0, mc_samples=1 << 15),
    "MixedNormNoise": lambda c: c(0.4, 2.0, mc_samples=1 << 15),
}
_GENERIC_VALUES = {"sigma": 0.4, "scale": 0.4, "std": 0.4, "k": 2.0, "p": 1.5, "levels": 17,
                   "mc_samples": 1 << 14, "n_samples": 1 << 14, "table_radii": 48}


def _make_noise(cls):
    """A small instance of ``cls``: a known recipe, else required arguments filled by name (new noises
    landing while this suite exists get tested without editing it)."""
    if cls.__name__ in _RECIPES:
        return _RECIPES[cls.__name__](cls)
    params = inspect.signature(cls.__init__).parameters
    kwargs = {}
    for name, p in params.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if name in _GENERIC_VALUES:
            kwargs[name] = _GENERIC_VALUES[name]
        elif p.default is p.empty:
            return None
    try:
        return cls(**kwargs)
    except (TypeError, ValueError):
        return None


NOISE_CLASSES = [getattr(noise_module, n) for n in noise_module.__all__
                 if inspect.isclass(getattr(noise_module, n)) and issubclass(getattr(noise_module, n), Noise)
                 and getattr(noise_module, n) is not Noise]


def noise_of(cls):
    noise = _make_noise(cls)
    if noise is None:
        pytest.fail(f"no small-parameter recipe for {cls.__name__}: add one to _RECIPES so every noise is trained")
    return noise


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are tiny: one intra-op thread is faster than two and immune to oversubscription on a busy
    machine. Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


noise_classes = pytest.mark.parametrize("noise_cls", NOISE_CLASSES, ids=lambda c: c.__name__)

# Attack radii per norm for the tests (of the size of the certified radii at these noise levels).
_EPS = {1.0: 0.5, 2.0: 0.25, math.inf: 0.05}


def small_kwargs(name, noise):
    return {
        "augment": {},
        "consistency": {"m": 2, "lbd": 5.0},
        "macer": {"m": 4},
        "smoothadv": {"m": 2, "num_steps": 2, "epsilon": _EPS.get(noise.norm, 0.25)},
        "smoothmix": {"m": 2, "num_steps": 2, "step_size": _EPS.get(noise.norm, 0.25)},
    }[name]


def smoothed(noise, seed=0, model_seed=0, lr=1e-2, **kwargs):
    torch.manual_seed(model_seed)
    clf = make_classifier(DigitsCNN(width=8), (1, 8, 8), 10, lr=lr, **kwargs)
    return SmoothedClassifier(clf, noise, seed=seed)


# ---------------------------------------------------------------------------------------------- training
@noise_classes
@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_every_trainer_lowers_its_loss_for_every_noise(digits, noise_cls, name):
    """Three short epochs on 512 examples lower the trainer's own objective on a fixed training batch with fixed
    noise draws (the same loss function before and after, so only the weights changed). Observed drops are
    5-60 % (MACER's is the smallest: inputs that become correct switch its hinge on, adding loss)."""
    noise = noise_of(noise_cls)
    sm = smoothed(noise, lr=3e-3)
    trainer = TRAINERS[name](sm, verbose=False, **small_kwargs(name, noise))
    assert isinstance(trainer, Trainer) and trainer.get_classifier() is sm
    x, y = digits.x_train[:512], digits.y_train[:512]
    z = trainer.draw_noise(64, generator=torch.Generator(device=sm.device).manual_seed(11))
    assert z.shape == (64, trainer.m, 1, 8, 8) and z.device == sm.device

    def objective():
        sm.model.train()
        try:
            return float(trainer.compute_loss(x[:64], y[:64], z).detach())
        finally:
            sm.model.eval()

    before = objective()
    trainer.fit(x, y, nb_epochs=3, batch_size=32)
    after = objective()
    assert np.isfinite(before) and after < before, (before, after)
    assert len(trainer.last_epoch_losses) == 3


@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_memory_bound_and_noise_before_preprocessing(digits, name):
    """A forward pass never holds more than batch_size × m copies, and the model sees
    standardise(perturb(x, z)) with the injected z (noise on the raw input, the classifier's preprocessing
    kept)."""
    mean, std = 0.5, 0.25
    sm = smoothed(GaussianNoise(0.4), preprocessing=(mean, std))
    kwargs = small_kwargs(name, sm.noise)
    if name == "smoothadv":
        kwargs["epsilon"] = 0.0  # the training forward then sees x + z exactly
    trainer = TRAINERS[name](sm, verbose=False, **kwargs)
    seen = []
    hook = sm.model.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0].detach().clone()))
    try:
        x, y = digits.x_train[:8], digits.y_train[:8]
        z = trainer.draw_noise(8, generator=torch.Generator().manual_seed(0))
        trainer.compute_loss(x, y, z)
        expected = (torch.as_tensor(x).unsqueeze(1) + z).reshape(-1, 1, 8, 8)
        # SmoothMix also runs its search and the mixed copies; its clean copies are the last-but-one forward
        raw = seen[-2 if name == "smoothmix" else -1] * std + mean
        torch.testing.assert_close(raw, expected, rtol=0, atol=1e-6)
        seen.clear()
        trainer.fit(digits.x_train[:100], digits.y_train[:100], nb_epochs=1, batch_size=16)
        trainer_m = trainer.m
        assert max(s.shape[0] for s in seen) <= 16 * trainer_m
    finally:
        hook.remove()


@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_reproducible_with_a_seed(digits, name):
    """Same seed and initial weights → bit-identical weights (whatever torch's global RNG does in between);
    another seed → different weights."""
    noise = noise_module.SplittingNoise(0.7) if name == "smoothadv" else GaussianNoise(0.4)

    def run(seed, global_seed):
        sm = smoothed(noise, seed=seed)
        torch.manual_seed(global_seed)
        TRAINERS[name](sm, verbose=False, **small_kwargs(name, noise)).fit(
            digits.x_train[:96], digits.y_train[:96], nb_epochs=1, batch_size=32)
        return [p.detach().clone() for p in sm.model.parameters()]

    a, b, c = run(7, 1), run(7, 2), run(8, 1)
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not all(torch.equal(p, q) for p, q in zip(a, c))


def test_smoothed_classifier_fit_is_noise_augmentation(digits):
    sm1, sm2 = smoothed(GaussianNoise(0.4), seed=3), smoothed(GaussianNoise(0.4), seed=3)
    sm1.fit(digits.x_train[:96], digits.y_train[:96], nb_epochs=2, batch_size=32)
    NoiseAugmentationTrainer(sm2, verbose=False).fit(digits.x_train[:96], digits.y_train[:96], nb_epochs=2,
                                                     batch_size=32)
    assert all(torch.equal(p, q) for p, q in zip(sm1.model.parameters(), sm2.model.parameters()))


def test_trainers_mapping_and_parameters_are_constructor_kwargs():
    assert set(TRAINERS) == {"augment", "consistency", "macer", "smoothadv", "smoothmix"}
    for cls in TRAINERS.values():
        assert issubclass(cls, Trainer)
        sig = inspect.signature(cls.__init__).parameters
        assert set(cls.trainer_params) <= set(sig), cls


# ---------------------------------------------------------------------------------------------- no collapse
@pytest.fixture(scope="module")
def augment_accuracy(digits):
    """Smoothed clean accuracy of noise augmentation per noise class, on the no-collapse budget (cached)."""
    return {}


def _smoothed_accuracy(sm, digits):
    """PREDICT (64 draws, abstentions count as errors) on the 360 test digits."""
    one_hot = sm.predict(digits.x_test, batch_size=1024)  # all-zero rows are abstentions
    return float(np.mean((one_hot.sum(1) > 0) & (one_hot.argmax(1) == digits.y_test)))


def _train_at_defaults(name, noise, digits):
    torch.manual_seed(0)
    clf = make_classifier(DigitsCNN(width=8), (1, 8, 8), 10, lr=3e-3)
    sm = SmoothedClassifier(clf, noise, sample_size=64, seed=0)
    TRAINERS[name](sm, verbose=False).fit(digits.x_train, digits.y_train, nb_epochs=3, batch_size=64)
    return _smoothed_accuracy(sm, digits)


@noise_classes
@pytest.mark.parametrize("name", sorted(set(TRAINERS) - {"augment"}))
def test_no_collapse_at_defaults_on_a_short_budget(digits, augment_accuracy, noise_cls, name):
    """Issue 18's bar: at its defaults, every robust trainer reaches a smoothed clean accuracy of at least
    0.9 × noise augmentation's with the same budget — here a short one (3 epochs of the 1437 training digits,
    the half-width CNN), where the collapse showed: without a warm-up (λ = 1.2/std, warmup = 0) MACER's ratio
    here was 0.32 for Gaussian, 0.37 for generalized Gaussian and 0.61 for power-law noise, and consistency
    regularization at its former λ = 10 reached 0.85 (Gaussian) and 0.88 (Laplace). Accuracy is PREDICT (64
    draws) on the 360 test digits, augmentation's is 0.62–0.80 here: a standard error √(p(1 − p)/360) ≤ 0.026
    each, so the bar sits 2.4–3 standard errors below augmentation's accuracy — it separates a collapse from
    estimation noise. Seeds are fixed, so the test is deterministic."""
    noise = noise_of(noise_cls)
    if noise_cls.__name__ not in augment_accuracy:
        augment_accuracy[noise_cls.__name__] = _train_at_defaults("augment", noise, digits)
    reference = augment_accuracy[noise_cls.__name__]
    assert reference > 0.5, reference  # the budget is enough for augmentation to learn
    accuracy = _train_at_defaults(name, noise, digits)
    assert accuracy >= 0.9 * reference, (name, accuracy, reference)


# ---------------------------------------------------------------------------------------------- MACER radius
def _pairs():
    """A grid of (p_A, p_B) with certifiable and non-certifiable pairs, p_A + p_B ≤ 1."""
    a = np.linspace(0.02, 0.998, 41)
    frac = np.linspace(0.0, 1.0, 21)
    pa, f = np.meshgrid(a, frac, indexing="ij")
    pb = np.clip(f * (1.0 - pa), 1e-4, None)
    return pa.ravel(), pb.ravel()


@noise_classes
def test_differentiable_radius_is_the_exact_certificate(noise_cls):
    """MACER's radius is the certificate certification uses: for a noise with a differentiable certificate it
    equals ``noise.certified_radius`` (float64) on a grid of (p_A, p_B) to rounding; for a noise without one,
    the surrogate lies between the exact radius and the exact radius one grid cell worse in each argument."""
    noise = noise_of(noise_cls)
    trainer = MACERTrainer(smoothed(noise), verbose=False)
    pa, pb = _pairs()
    exact = trainer.exact_radius(pa, pb)
    ta = torch.tensor(pa, requires_grad=True)
    tb = torch.tensor(pb, requires_grad=True)
    r = trainer.radius(ta, tb)
    assert r.dtype == torch.float64
    finite = np.isfinite(exact)
    if trainer.differentiable:
        np.testing.assert_allclose(r.detach().numpy()[finite], exact[finite], rtol=1e-12, atol=1e-15)
    else:
        _check_envelope(trainer._envelope, trainer.exact_radius, pa, pb, r.detach().numpy())
    (r[torch.as_tensor(finite)]).sum().backward()
    assert torch.isfinite(ta.grad).all() and torch.isfinite(tb.grad).all()


def _check_envelope(env, exact_fn, pa, pb, s):
    grid = env.grid.numpy()
    k = grid.size - 1
    i = np.clip(np.searchsorted(grid, pa, side="right") - 1, 0, k - 1)
    j = np.clip(np.searchsorted(grid, pb, side="right") - 1, 0, k - 1)
    exact = exact_fn(pa, pb)
    worse = np.where(i >= 1, exact_fn(grid[np.maximum(i - 1, 0)], grid[np.minimum(j + 2, k)]), 0.0)
    worse = np.where(j + 2 <= k, worse, 0.0)
    assert np.all(s <= exact + 1e-12)  # sound: never more radius than certified
    assert np.all(s >= worse - 1e-12)  # and at most one grid cell behind


def test_envelope_surrogate_on_a_known_certificate():
    """TabulatedGaussian has Cohen's radius R = σ/2 (Φ⁻¹(p_A) − Φ⁻¹(p_B)) but no differentiable certificate,
    so MACER uses the envelope. Grid nodes are Φ(t) with t spaced Δt = 12/(K − 2); the envelope's corners are
    at most two cells behind in each argument, so exact − surrogate ≤ σ/2 · (2Δt + 2Δt) = 2σΔt inside
    |Φ⁻¹| ≤ 5.5. It is also ≤ exact, and its gradient has the certificate's signs."""
    sigma = 0.4
    sm = smoothed(TabulatedGaussian(sigma))
    trainer = MACERTrainer(sm, verbose=False)
    assert not trainer.differentiable
    rng = np.random.default_rng(0)
    pa = std_normal.cdf(rng.uniform(-1.0, 5.5, 4000))
    pb = np.minimum(std_normal.cdf(rng.uniform(-5.5, 1.0, 4000)), 1 - pa)
    ta, tb = torch.tensor(pa, requires_grad=True), torch.tensor(pb, requires_grad=True)
    s = trainer.radius(ta, tb)
    s.sum().backward()
    exact = GaussianNoise(sigma).certified_radius(pa, pb, method="cohen")
    s = s.detach().numpy()
    dt = 12.0 / (trainer._envelope.grid.numel() - 3)
    assert np.all(s <= exact + 1e-12)
    assert np.max(exact - s) <= 2 * sigma * dt + 1e-9
    pos = exact > 4 * sigma * dt
    assert np.all(ta.grad.numpy()[pos] >= 0) and np.all(tb.grad.numpy()[pos] <= 0)
    assert np.mean(ta.grad.numpy()[pos] > 0) > 0.95


def _hinge_logits(nb_classes=10, m=3):
    """Rows (float64 logits, m copies each): correct class with margins from tiny to huge, then wrong-class rows.
    Small deterministic offsets break ties among the other classes and between copies."""
    margins = [0.02, 0.05, 0.1, 0.2, 0.4, 0.7, 1.0, 1.5, 2.5, 5.0]
    rows, labels = [], []
    offsets = 0.01 * torch.arange(nb_classes, dtype=torch.float64)
    copies = 0.005 * torch.arange(m, dtype=torch.float64)[:, None]
    for r, margin in enumerate(margins):
        y = r % nb_classes
        base = offsets.clone()
        base[y] = base.max() + margin
        rows.append(base + copies)
        labels.append(y)
    for r in range(3):  # wrong top class
        y = r
        base = offsets.clone()
        base[(y + 1) % nb_classes] = base.max() + 0.3 * (r + 1)
        rows.append(base + copies)
        labels.append(y)
    return torch.stack(rows), torch.tensor(labels)


@pytest.mark.parametrize("noise_cls", NOISE_CLASSES + [TabulatedGaussian], ids=lambda c: c.__name__)
def test_macer_radius_term_gradient(noise_cls):
    """The robustness term of an input has a finite, non-zero gradient (w.r.t. its logits) exactly where the
    hinge is active (correct top class and R ≤ γ), and is 0 with zero gradient elsewhere (wrong class, or
    R > γ, or R infinite). The batch is checked to contain both cases."""
    noise = TabulatedGaussian(0.4) if noise_cls is TabulatedGaussian else noise_of(noise_cls)
    trainer = MACERTrainer(smoothed(noise), m=3, verbose=False)
    logits, y = _hinge_logits()
    logits.requires_grad_(True)
    _, robustness = trainer.objective_terms(logits, y)
    with torch.no_grad():
        soft = torch.softmax(trainer.beta * logits, -1).mean(1)
        top = torch.topk(soft, 2, -1)
        correct = top.indices[:, 0] == y
        r = trainer.radius(top.values[:, 0], top.values[:, 1])
        active = correct & torch.isfinite(r) & (r <= trainer.gamma)
    assert active.any() and (correct & ~active).any() and (~correct).any()
    for i in range(len(y)):
        (g,) = torch.autograd.grad(robustness[i], logits, retain_graph=True)
        others = torch.cat([g[:i], g[i + 1:]])
        assert torch.all(others == 0)
        if active[i]:
            assert torch.isfinite(g).all() and g[i].abs().max() > 0, i
            assert float(robustness[i].detach()) == pytest.approx(trainer.gamma - float(r[i]), rel=1e-9, abs=1e-12)
        else:
            assert torch.all(g == 0) and float(robustness[i].detach()) == 0.0, i


def test_macer_default_gamma_is_macers():
    """γ = None: the radius at (Φ(4), Φ(−4)); for Gaussian noise σ/2·8 = 4σ, MACER's γ = 8 in its units."""
    assert MACERTrainer(smoothed(GaussianNoise(0.3)), verbose=False).gamma == pytest.approx(1.2, rel=1e-9)


# ---------------------------------------------------------------------------------------------- ART equivalence
def _art_step_capture(optimizer, store):
    """Read ART's loss and gradients at its optimizer step: the gradients from the parameters, the loss from the
    local variable ``loss`` of ART's ``fit`` frame (ART returns neither)."""

    def hook(opt, args, kwargs):
        frame = inspect.currentframe()
        while frame is not None and not (frame.f_code.co_name == "fit" and "loss" in frame.f_locals):
            frame = frame.f_back
        store["loss"] = float(frame.f_locals["loss"].detach())
        store["grads"] = [p.grad.detach().clone() for p in opt.param_groups[0]["params"]]

    return optimizer.register_step_pre_hook(hook)


def _arts_draws(seed, n, m, shape, sigma):
    """The batch order and Gaussian draws of ART's first training step with ``batch_size = n``: ART's loop
    makes a shuffled DataLoader (torch's global RNG) and then calls ``torch.randn_like``; replaying the same
    calls after the same ``torch.manual_seed`` gives the same numbers (checked against ART's model input)."""
    torch.manual_seed(seed)
    idx = next(iter(DataLoader(TensorDataset(torch.arange(n)), batch_size=n, shuffle=True)))[0]
    return idx, torch.randn((n * m, *shape)) * sigma


@pytest.fixture(scope="module")
def pretrained_state(digits):
    """Weights after two epochs of noise augmentation, so that many inputs are classified correctly and
    MACER's hinge / SmoothAdv's attack are doing something."""
    sm = smoothed(GaussianNoise(0.25), seed=0, lr=3e-3)
    sm.fit(digits.x_train, digits.y_train, nb_epochs=2, batch_size=64)
    return copy.deepcopy(sm.model.state_dict())


def test_macer_matches_arts_pytorch_macer(digits, pretrained_state):
    """One step of ART's PyTorchMACER and of MACERTrainer from the same weights, data, draws and hyperparameters:
    same loss and same gradient. Not bit-exact only because ART computes Φ⁻¹ as √2·erfinv(2p − 1) and we use
    ndtri, both in float32: relative differences ~1e-6, we allow rtol 1e-4."""
    n, m, sigma, seed = 32, 4, 0.25, 123
    x, y = digits.x_train[:n], digits.y_train[:n]
    art_model = DigitsCNN(width=8)
    art_model.load_state_dict(pretrained_state)
    opt = torch.optim.SGD(art_model.parameters(), lr=0.1)
    art = PyTorchMACER(art_model, torch.nn.CrossEntropyLoss(), (1, 8, 8), 10, optimizer=opt, clip_values=(0.0, 1.0),
                       device_type="cpu", scale=sigma, gaussian_samples=m, lmbda=12.0, gamma=8.0, beta=16.0)
    store, seen = {}, []
    _art_step_capture(opt, store)
    art_model.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0].detach().clone()))
    torch.manual_seed(seed)
    art.fit(x, y, batch_size=n, nb_epochs=1)

    idx, z = _arts_draws(seed, n, m, (1, 8, 8), sigma)
    xt, yt = torch.as_tensor(x)[idx], torch.as_tensor(y)[idx]
    assert torch.equal(seen[0], xt.repeat((1, m, 1, 1)).view(n * m, 1, 8, 8) + z)

    sm = smoothed(GaussianNoise(sigma))
    sm.model.load_state_dict(pretrained_state)
    trainer = MACERTrainer(sm, m=m, lbd=12.0, beta=16.0, verbose=False)  # gamma=None: 4σ, ART's γ = 8
    sm.model.train()
    loss = trainer.compute_loss(xt, yt, z.reshape(n, m, 1, 8, 8))
    loss.backward()
    hinge_free = MACERTrainer(sm, m=m, lbd=0.0, verbose=False).compute_loss(xt, yt, z.reshape(n, m, 1, 8, 8))
    assert float(loss.detach()) > float(hinge_free.detach()) + 0.1  # the robustness term is active in this step
    assert float(loss.detach()) == pytest.approx(store["loss"], rel=1e-4)
    for g_art, p in zip(store["grads"], sm.model.parameters()):
        torch.testing.assert_close(p.grad, g_art, rtol=1e-4, atol=1e-5)


def test_smoothadv_matches_arts_pytorch_smoothadv_where_art_follows_the_paper(digits, pretrained_state):
    """ART's PyTorchSmoothAdv departs from Salman et al. (see SmoothAdvTrainer's docstring); it coincides with
    the paper for m = 1 draw, one ℓ∞ PGD step with ε = ART's eps_step = 0.1, no clip values, and labels equal to
    the base classifier's predictions at the noisy points (ART attacks the predicted label). There, one step of
    each from the same weights, data and draws gives the same loss and gradient (float32 rounding of ART's
    numpy round trips: rtol 1e-4). The attack matters: the loss is far above the ε = 0 loss."""
    n, sigma, seed = 32, 0.25, 321
    x = digits.x_train[:n]
    idx, z = _arts_draws(seed, n, 1, (1, 8, 8), sigma)
    xt = torch.as_tensor(x)[idx]
    base = DigitsCNN(width=8)
    base.load_state_dict(pretrained_state)
    base.eval()
    with torch.no_grad():
        pred = base(xt + z).argmax(1)
    y = np.zeros(n, dtype=np.int64)
    y[idx.numpy()] = pred.numpy()

    art_model = DigitsCNN(width=8)
    art_model.load_state_dict(pretrained_state)
    opt = torch.optim.SGD(art_model.parameters(), lr=0.1)
    art = PyTorchSmoothAdv(art_model, torch.nn.CrossEntropyLoss(), (1, 8, 8), 10, optimizer=opt, clip_values=None,
                           device_type="cpu", scale=sigma, epsilon=0.1, num_noise_vec=1, num_steps=1, warmup=1)
    store = {}
    _art_step_capture(opt, store)
    torch.manual_seed(seed)
    art.fit(x, y, batch_size=n, nb_epochs=1)

    sm = smoothed(GaussianNoise(sigma), clip_values=None)
    sm.model.load_state_dict(pretrained_state)
    trainer = SmoothAdvTrainer(sm, epsilon=0.1, m=1, num_steps=1, norm="inf", verbose=False)
    yt = torch.as_tensor(y)[idx]
    sm.model.train()
    loss = trainer.compute_loss(xt, yt, z.reshape(n, 1, 1, 8, 8))
    loss.backward()
    clean = SmoothAdvTrainer(sm, epsilon=0.0, m=1, verbose=False).compute_loss(xt, yt, z.reshape(n, 1, 1, 8, 8))
    assert float(loss.detach()) > 2 * float(clean.detach())
    assert float(loss.detach()) == pytest.approx(store["loss"], rel=1e-4)
    for g_art, p in zip(store["grads"], sm.model.parameters()):
        torch.testing.assert_close(p.grad, g_art, rtol=1e-4, atol=1e-6)


def test_arts_smoothadv_fails_with_several_noise_draws(digits):
    """Documented deviation (ii): ART's training step does not repeat its inputs per noise vector, so
    num_noise_vec > 1 breaks; SmoothAdvTrainer handles any m."""
    model = DigitsCNN(width=8)
    art = PyTorchSmoothAdv(model, torch.nn.CrossEntropyLoss(), (1, 8, 8), 10,
                           optimizer=torch.optim.SGD(model.parameters(), lr=0.1), device_type="cpu", scale=0.25,
                           epsilon=0.1, num_noise_vec=2, num_steps=1)
    with pytest.raises(ValueError):
        art.fit(digits.x_train[:32], digits.y_train[:32], batch_size=32, nb_epochs=1)


@pytest.mark.parametrize("mix_step", [0, 1])
def test_smoothmix_matches_arts_pytorch_smoothmix(digits, pretrained_state, mix_step):
    """One step of ART's PyTorchSmoothMix and of SmoothMixTrainer from the same weights, inputs, Gaussian draws
    and mixing coefficients: same loss and gradient. ART cuts its batch of n·m inputs into m mini-batches of n
    and steps after each; we compare its first step. Its draws and λ are replayed from torch's global generator
    (shuffle, m × randn, then rand for λ after the search, which draws nothing). ART's ``alpha`` is the step
    size (see SmoothMixTrainer). Both compute the same float32 operations in a different order (ART
    concatenates the copies draw-major): relative differences ~1e-6, we allow rtol 1e-4. The mixup term
    matters: the loss is well above the η = 0 loss."""
    n, m, sigma, seed, steps, step, eta = 16, 4, 0.25, 5, 3, 0.5, 5.0
    x, y = digits.x_train[:n * m], digits.y_train[:n * m]
    art_model = DigitsCNN(width=8)
    art_model.load_state_dict(pretrained_state)
    opt = torch.optim.SGD(art_model.parameters(), lr=0.1)
    art = PyTorchSmoothMix(art_model, torch.nn.CrossEntropyLoss(), (1, 8, 8), 10, optimizer=opt,
                           clip_values=(0.0, 1.0), device_type="cpu", scale=sigma, alpha=step, eta=eta,
                           num_noise_vec=m, num_steps=steps, warmup=1, mix_step=mix_step)
    store = {}
    first = _art_step_capture(opt, store)
    opt.register_step_post_hook(lambda *args: first.remove())  # keep the first step only
    torch.manual_seed(seed)
    art.fit(x, y, batch_size=n * m, nb_epochs=1)

    torch.manual_seed(seed)
    idx = next(iter(DataLoader(TensorDataset(torch.arange(n * m)), batch_size=n * m, shuffle=True)))[0][:n]
    z = torch.stack([torch.randn(n, 1, 8, 8) * sigma for _ in range(m)], dim=1)
    lam = torch.rand(n) / 2

    sm = smoothed(GaussianNoise(sigma))
    sm.model.load_state_dict(pretrained_state)
    trainer = SmoothMixTrainer(sm, eta=eta, m=m, num_steps=steps, step_size=step, mix_step=mix_step, verbose=False)
    xt, yt = torch.as_tensor(x)[idx], torch.as_tensor(y)[idx]
    sm.model.train()
    loss = trainer.compute_loss(xt, yt, z, mix_weights=lam)
    loss.backward()
    no_mix = SmoothMixTrainer(sm, eta=0.0, m=m, num_steps=steps, step_size=step, mix_step=mix_step, verbose=False)
    assert float(loss.detach()) > float(no_mix.compute_loss(xt, yt, z, mix_weights=lam).detach()) + 0.05
    assert float(loss.detach()) == pytest.approx(store["loss"], rel=1e-4)
    for g_art, p in zip(store["grads"], sm.model.parameters()):
        torch.testing.assert_close(p.grad, g_art, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("noise", [GaussianNoise(0.25), LaplaceNoise(0.2), UniformNoise(0.4)], ids=repr)
def test_smoothmix_search_raises_the_smoothed_loss_and_the_clean_side(digits, pretrained_state, noise):
    """The search climbs −log F̂_y (its point is worse for the smoothed classifier than x); with ``maxnorm``
    it stays in the ball of the noise's norm and in the box; with mix_step = 1 the clean side is one step of
    size α from x (the one-step adversary), within α·w of x."""
    from art_smoothing.engine.eot import smoothed_log_probs

    sm = smoothed(noise)
    sm.model.load_state_dict(pretrained_state)
    trainer = SmoothMixTrainer(sm, m=8, num_steps=4, step_size=0.5, mix_step=1, maxnorm=1.0, verbose=False)
    x, y = torch.as_tensor(digits.x_train[:64]), torch.as_tensor(digits.y_train[:64])
    z = trainer.draw_noise(64, generator=torch.Generator().manual_seed(2))
    clean, adv = trainer.attack(x, y, z)
    p = noise.norm
    assert torch.all(torch.linalg.vector_norm((adv - x).reshape(64, -1), ord=p, dim=1) <= 1.0 + 1e-5)
    assert torch.all(torch.linalg.vector_norm((clean - x).reshape(64, -1), ord=p, dim=1) <= 0.5 + 1e-5)
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    sm.model.eval()
    with torch.no_grad():
        before = -smoothed_log_probs(sm, x, z).gather(1, y[:, None]).mean()
        after = -smoothed_log_probs(sm, adv, z).gather(1, y[:, None]).mean()
    assert after > before + 0.05, (float(before), float(after))


# ---------------------------------------------------------------------------------------------- SmoothAdv attack
@pytest.mark.parametrize("norm", [1, 2, "inf"])
def test_smoothadv_attack_stays_in_ball_and_box_and_raises_the_smoothed_loss(digits, pretrained_state, norm):
    from art_smoothing.engine.eot import smoothed_log_probs

    sm = smoothed(GaussianNoise(0.25))
    sm.model.load_state_dict(pretrained_state)
    eps = {1: 1.0, 2: 0.5, "inf": 0.1}[norm]
    trainer = SmoothAdvTrainer(sm, epsilon=eps, m=8, num_steps=5, norm=norm, verbose=False)
    x, y = torch.as_tensor(digits.x_train[:64]), torch.as_tensor(digits.y_train[:64])
    z = trainer.draw_noise(64, generator=torch.Generator().manual_seed(1))
    x_adv = trainer.attack(x, y, z)
    delta = (x_adv - x).reshape(64, -1)
    p = {1: 1, 2: 2, "inf": math.inf}[norm]
    assert torch.all(torch.linalg.vector_norm(delta, ord=p, dim=1) <= eps * (1 + 1e-5))
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    sm.model.eval()
    with torch.no_grad():
        clean = -smoothed_log_probs(sm, x, z).gather(1, y[:, None]).mean()
        adv = -smoothed_log_probs(sm, x_adv, z).gather(1, y[:, None]).mean()
    assert adv > clean + 0.05, (float(clean), float(adv))


def test_l1_projection_is_the_euclidean_projection():
    """Compare with the projection computed by bisection on the soft threshold θ (‖soft(v, θ)‖₁ = ε)."""
    g = torch.Generator().manual_seed(0)
    v = torch.randn(50, 30, generator=g, dtype=torch.float64) * torch.rand(50, 1, generator=g, dtype=torch.float64)
    eps = 1.5
    w = project_l1_ball(v, eps)
    lo, hi = torch.zeros(50, 1, dtype=torch.float64), v.abs().amax(1, keepdim=True)
    for _ in range(200):
        mid = (lo + hi) / 2
        too_big = (v.abs() - mid).clamp_min(0).sum(1, keepdim=True) > eps
        lo, hi = torch.where(too_big, mid, lo), torch.where(too_big, hi, mid)
    ref = torch.sign(v) * (v.abs() - hi).clamp_min(0)
    ref = torch.where(v.abs().sum(1, keepdim=True) <= eps, v, ref)
    torch.testing.assert_close(w, ref, rtol=0, atol=1e-10)
    x = torch.full((50, 30), 0.5, dtype=torch.float64)
    out = project_perturbation(x, v, eps, 1.0, clip_values=(0.0, 1.0))
    assert torch.all(out.abs().sum(1) <= eps + 1e-12) and torch.all((x + out >= 0) & (x + out <= 1))


def test_smoothadv_warmup_schedule(digits):
    class Recording(SmoothAdvTrainer):
        def compute_loss(self, x, y, noise_draws=None):
            self.seen.append(self.current_epsilon)
            return super().compute_loss(x, y, noise_draws)

    trainer = Recording(smoothed(GaussianNoise(0.4)), epsilon=1.0, warmup=4, m=1, num_steps=1, verbose=False)
    trainer.seen = []
    trainer.fit(digits.x_train[:16], digits.y_train[:16], nb_epochs=5, batch_size=16)
    assert trainer.seen == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])
    assert trainer.current_epsilon == 1.0



def test_macer_warmup_schedule(digits):
    """λ ramps in linearly from 0 over ``warmup`` epochs (λ_e = λ·min(1, e/warmup)); warmup = 0 is the paper's
    and ART's constant λ; the full λ is restored after fit (what compute_loss uses outside fit)."""

    def seen(warmup, epochs):
        class Recording(MACERTrainer):
            def compute_loss(self, x, y, noise_draws=None):
                self.seen.append(self.current_lbd)
                return super().compute_loss(x, y, noise_draws)

        trainer = Recording(smoothed(GaussianNoise(0.4)), m=2, lbd=6.0, warmup=warmup, verbose=False)
        trainer.seen = []
        trainer.fit(digits.x_train[:16], digits.y_train[:16], nb_epochs=epochs, batch_size=16)
        assert trainer.current_lbd == 6.0
        return trainer.seen

    assert seen(2, 4) == pytest.approx([0.0, 3.0, 6.0, 6.0])
    assert seen(3, 4) == pytest.approx([0.0, 2.0, 4.0, 6.0])
    assert seen(0, 2) == pytest.approx([6.0, 6.0])


def test_smoothmix_warmup_schedule(digits):
    """η and the clean side's ball grow as w = min(1, (e + 1)/warmup) (the authors' schedule); w = 1 after fit."""

    class Recording(SmoothMixTrainer):
        def compute_loss(self, x, y, noise_draws=None, mix_weights=None):
            self.seen.append(self.warmup_factor)
            return super().compute_loss(x, y, noise_draws, mix_weights)

    trainer = Recording(smoothed(GaussianNoise(0.4)), m=1, num_steps=1, warmup=4, verbose=False)
    trainer.seen = []
    trainer.fit(digits.x_train[:16], digits.y_train[:16], nb_epochs=5, batch_size=16)
    assert trainer.seen == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])
    assert trainer.warmup_factor == 1.0


def test_defaults_are_in_units_of_the_noise_std():
    """Doubling the noise's std halves MACER's λ and doubles SmoothAdv's ε and SmoothMix's step (the defaults
    are a weight per std of radius and distances in stds), for every noise family with its own table entry."""
    for make in (GaussianNoise, LaplaceNoise, UniformNoise):
        small, large = smoothed(make(0.2)), smoothed(make(0.4))
        assert MACERTrainer(large, verbose=False).lbd == pytest.approx(MACERTrainer(small, verbose=False).lbd / 2)
        assert SmoothAdvTrainer(large, verbose=False).epsilon == pytest.approx(
            2 * SmoothAdvTrainer(small, verbose=False).epsilon)
        assert SmoothMixTrainer(large, verbose=False).step_size == pytest.approx(
            2 * SmoothMixTrainer(small, verbose=False).step_size)


# ---------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "cls,kwargs,match",
    [
        (ConsistencyTrainer, {"m": 0}, "m must"),
        (ConsistencyTrainer, {"m": 1.5}, "m must"),
        (ConsistencyTrainer, {"m": True}, "m must"),
        (ConsistencyTrainer, {"lbd": -1.0}, "lbd"),
        (ConsistencyTrainer, {"eta": -0.1}, "eta"),
        (ConsistencyTrainer, {"lbd": float("nan")}, "lbd"),
        (MACERTrainer, {"m": 0}, "m must"),
        (MACERTrainer, {"lbd": -12.0}, "lbd"),
        (MACERTrainer, {"gamma": 0.0}, "gamma"),
        (MACERTrainer, {"gamma": -1.0}, "gamma"),
        (MACERTrainer, {"beta": 0.0}, "beta"),
        (MACERTrainer, {"norm": "l0"}, "norm"),
        (MACERTrainer, {"norm": "euclid"}, "norm"),
        (MACERTrainer, {"method": "no_such_certificate"}, "method"),
        (MACERTrainer, {"warmup": -1}, "warmup"),
        (MACERTrainer, {"warmup": 1.5}, "warmup"),
        (SmoothMixTrainer, {"eta": -1.0}, "eta"),
        (SmoothMixTrainer, {"m": 0}, "m must"),
        (SmoothMixTrainer, {"num_steps": 0}, "num_steps"),
        (SmoothMixTrainer, {"step_size": 0.0}, "step_size"),
        (SmoothMixTrainer, {"step_size": float("inf")}, "step_size"),
        (SmoothMixTrainer, {"warmup": 0}, "warmup"),
        (SmoothMixTrainer, {"mix_step": -1}, "mix_step"),
        (SmoothMixTrainer, {"mix_step": 4, "num_steps": 4}, "mix_step"),
        (SmoothMixTrainer, {"maxnorm": 0.0}, "maxnorm"),
        (SmoothMixTrainer, {"maxnorm_s": -0.5}, "maxnorm_s"),
        (SmoothMixTrainer, {"norm": "foo"}, "norm"),
        (SmoothMixTrainer, {"l1_top_fraction": 0.0}, "l1_top_fraction"),
        (SmoothAdvTrainer, {"epsilon": -0.1}, "epsilon"),
        (SmoothAdvTrainer, {"m": 0}, "m must"),
        (SmoothAdvTrainer, {"num_steps": 0}, "num_steps"),
        (SmoothAdvTrainer, {"warmup": 0}, "warmup"),
        (SmoothAdvTrainer, {"norm": 0.5}, "norm"),
        (SmoothAdvTrainer, {"norm": "foo"}, "norm"),
        (SmoothAdvTrainer, {"step_size": 0.0}, "step_size"),
        (SmoothAdvTrainer, {"l1_top_fraction": 0.0}, "l1_top_fraction"),
        (SmoothAdvTrainer, {"l1_top_fraction": 1.5}, "l1_top_fraction"),
    ],
)
def test_bad_parameters_raise(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(smoothed(GaussianNoise(0.4)), verbose=False, **kwargs)


@pytest.mark.parametrize("cls", list(TRAINERS.values()))
def test_bad_fit_arguments_raise(digits, cls):
    trainer = cls(smoothed(GaussianNoise(0.4)), verbose=False)
    x, y = digits.x_train[:8], digits.y_train[:8]
    with pytest.raises(ValueError, match="nb_epochs"):
        trainer.fit(x, y, nb_epochs=0)
    with pytest.raises(ValueError, match="batch_size"):
        trainer.fit(x, y, batch_size=0)
    with pytest.raises(ValueError, match="labels"):
        trainer.fit(x, y[:5])
    with pytest.raises(ValueError, match="noise_draws"):
        trainer.compute_loss(x, y, torch.zeros(8, trainer.m + 1, 1, 8, 8))
    with pytest.raises(ValueError, match="SmoothedClassifier"):
        cls(make_classifier(DigitsCNN(width=8), (1, 8, 8), 10))


def test_smoothmix_bad_mix_weights_raise(digits):
    trainer = SmoothMixTrainer(smoothed(GaussianNoise(0.4)), m=1, num_steps=1, verbose=False)
    x, y = digits.x_train[:4], digits.y_train[:4]
    z = trainer.draw_noise(4, generator=torch.Generator().manual_seed(0))
    for bad in (torch.full((4,), 0.6), torch.full((4,), -0.1), torch.zeros(3)):
        with pytest.raises(ValueError, match="mix_weights"):
            trainer.compute_loss(x, y, z, mix_weights=bad)
