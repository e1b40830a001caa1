"""SmoothedClassifier: ART interfaces, CERTIFY/PREDICT semantics, soundness of the Monte Carlo procedure,
reproducibility, noise placement relative to preprocessing, and input validation."""

import math

import numpy as np
import pytest
import torch
from art.estimators import LossGradientsMixin
from art.estimators.certification.randomized_smoothing.randomized_smoothing import RandomizedSmoothingMixin
from art.estimators.classification import ClassifierMixin, PyTorchClassifier
from scipy.stats import binom

from art_smoothing import CertificationResult, NumpySmoothedClassifier, SmoothedClassifier
from art_smoothing.estimator import STAGE_ESTIMATE, STAGE_SELECT
from art_smoothing.noise import GaussianNoise, LaplaceNoise, UniformNoise
from tests.conftest import linear_classifier


def test_art_interfaces(digits_classifier_factory):
    base = digits_classifier_factory()
    sm = SmoothedClassifier(base, noise=GaussianNoise(0.25), sample_size=10, seed=0)
    assert isinstance(sm, SmoothedClassifier)
    for iface in (ClassifierMixin, LossGradientsMixin, RandomizedSmoothingMixin, PyTorchClassifier):
        assert isinstance(sm, iface)
    assert sm.nb_classes == 10 and sm.input_shape == (1, 8, 8) and sm.clip_values is not None
    assert sm.model is base.model and sm.device == base.device
    assert sm.scale == pytest.approx(0.25)


def test_counts_equal_naive_loop_and_noise_goes_before_preprocessing():
    """Votes from the batched engine equal a per-input loop over the same noise blocks, with the base
    classifier applied as ART applies it: standardisation AFTER adding noise to the raw input."""
    rng = np.random.default_rng(0)
    d = 6
    w = rng.normal(size=d)
    mean, std = 0.3, 0.5
    base = linear_classifier(w, 0.1, clip_values=(0.0, 1.0), preprocessing=(mean, std))
    noise = UniformNoise(0.4)
    sm = SmoothedClassifier(base, noise=noise, sample_size=37, seed=11)
    x = rng.uniform(0, 1, size=(5, d)).astype(np.float32)
    seed = 11
    counts = sm.count_votes(x, 4500, STAGE_ESTIMATE, 64, seed).cpu().numpy()
    block = sm.block_size()
    expected = np.zeros_like(counts)
    model = base.model
    with torch.no_grad():
        for i in range(len(x)):
            for j in range(math.ceil(4500 / block)):
                k = min(block, 4500 - j * block)
                z = noise.sample(k, (d,), generator=sm.generator(seed, STAGE_ESTIMATE, j))
                logits = model((torch.as_tensor(x[i]) + z - mean) / std)
                expected[i] += np.bincount(logits.argmax(1).numpy(), minlength=2)
    np.testing.assert_array_equal(counts, expected)
    assert counts.sum() == 5 * 4500


def test_fit_adds_noise_before_preprocessing(digits, digits_classifier_factory):
    """During training the model must see standardise(x + z): recover z from the model's input and check
    its scale is the noise's, not the noise's scaled by the standardisation."""
    mean, std = 0.5, 0.25
    base = digits_classifier_factory(preprocessing=(mean, std))
    sm = SmoothedClassifier(base, noise=UniformNoise(0.3), seed=3)
    seen = []
    hook = base.model.register_forward_pre_hook(lambda m, inp: seen.append(inp[0].detach().clone()))
    x, y = digits.x_train[:64], digits.y_train[:64]
    sm.fit(x, y, nb_epochs=1, batch_size=64)
    hook.remove()
    raw = seen[0] * std + mean  # undo standardisation: this is x[perm] + z
    # Each recovered z = raw - x_i must lie in [-0.3, 0.3] for SOME ordering of the batch; match rows
    # by nearest clean input.
    flat_raw = raw.reshape(64, -1).numpy()
    flat_x = x.reshape(64, -1)
    dist = np.abs(flat_raw[:, None, :] - flat_x[None]).max(axis=2)
    z_max = dist.min(axis=1)
    assert np.all(z_max <= 0.3 + 1e-5)
    # uniform on [-0.3, 0.3]: the largest |z| over 64 coordinates is close to 0.3, not 0.3 * 0.25
    assert np.median(z_max) > 0.25


@pytest.mark.parametrize(
    "noise,p_a_of_t",
    [
        (GaussianNoise(0.5), lambda t: __import__("scipy.stats").stats.norm.cdf(t / 0.5)),
        (LaplaceNoise(0.5), lambda t: 1 - 0.5 * np.exp(-t / 0.5)),
        (UniformNoise(0.5), lambda t: (0.5 + t) / 1.0),
    ],
    ids=["gaussian", "laplace", "uniform"],
)
@pytest.mark.parametrize("form", ["binary", "multiclass"])
def test_monte_carlo_overclaim_rate_at_most_alpha(noise, p_a_of_t, form):
    """f(x) = 1[x_1 + b > 0] with t = x_1 + b: every certificate here is TIGHT for this classifier
    (radius(exact p_A) = t), so a certificate exceeds the truth exactly when the Clopper–Pearson bound
    exceeds p_A. Over T independent certifications (different seeds) the number of over-claims is
    Binomial(T, ≤ α); we allow the 99.9% quantile of Binomial(T, α). A procedure that used the point
    estimate instead of a lower bound would over-claim about half the time and fail."""
    d, t, alpha, trials = 4, 0.2, 0.05, 300
    w = np.zeros(d)
    w[0] = 1.0
    base = linear_classifier(w, -0.5)
    x = np.array([[0.5 + t, 0.1, 0.2, 0.3]], dtype=np.float32)
    assert 0.5 < p_a_of_t(t) < 1
    over = 0
    for seed in range(trials):
        sm = SmoothedClassifier(base, noise=noise, sample_size=20, alpha=alpha, seed=seed)
        pred, radius = sm.certify(x, n=200, batch_size=256, norm=1, form=form)
        over += int(pred[0] == 1 and radius[0] > t * (1 + 1e-7))
        assert pred[0] in (1, -1)
    assert over <= binom.ppf(0.999, trials, alpha)


def test_certify_result_fields_and_norms(digits, digits_classifier_factory):
    base = digits_classifier_factory()
    sm = SmoothedClassifier(base, noise=LaplaceNoise(0.3), sample_size=30, seed=1)
    sm.fit(digits.x_train[:400], digits.y_train[:400], nb_epochs=3, batch_size=64)
    x = digits.x_test[:20]
    res = sm.certify_detailed(x, n=300, batch_size=200)
    assert isinstance(res, CertificationResult)
    pred, radius = sm.certify(x, n=300, batch_size=200)
    np.testing.assert_array_equal(pred, res.prediction)
    np.testing.assert_array_equal(radius, res.radius)
    # same votes (same seed) in another norm: l2 radius = l1 radius / sqrt(64)
    pred2, r2 = sm.certify(x, n=300, batch_size=50, norm=2)
    np.testing.assert_array_equal(pred2, pred)
    np.testing.assert_allclose(r2, radius / 8.0, rtol=1e-12)
    np.testing.assert_allclose(res.radius_for(2), r2, rtol=1e-12)
    assert np.all(res.counts.sum(axis=1) == 300) and np.all(res.counts_selection.sum(axis=1) == 30)
    assert np.all(radius[pred == -1] == 0) and np.all(radius >= 0)
    assert np.all(res.p_a_lower[pred >= 0] > 0.5)
    # the radius is the noise's certificate of the stored bound
    np.testing.assert_allclose(
        radius, np.where(pred >= 0, LaplaceNoise(0.3).certified_radius(res.p_a_lower), 0.0), rtol=1e-12
    )
    records = res.to_records()
    assert len(records) == 20 and records[0]["norm"] == "l1"
    # multiclass form: Bonferroni, p_b <= 1 - p_a, abstain iff p_a <= p_b
    mc = sm.certify_detailed(x, n=300, form="multiclass")
    assert np.all(mc.p_b_upper <= 1 - mc.p_a_lower + 1e-15)
    assert np.all((mc.prediction >= 0) == (mc.p_a_lower > mc.p_b_upper))
    # each bound at alpha/2 is smaller than the binary bound at alpha for the same counts
    assert np.all(mc.p_a_lower <= res.p_a_lower + 1e-15)


def test_reproducible_and_independent_of_batching(digits, digits_classifier_factory):
    base = digits_classifier_factory()
    sm = SmoothedClassifier(base, noise=GaussianNoise(0.3), sample_size=25, seed=7)
    x = digits.x_test[:30]
    a = sm.certify_detailed(x, n=500, batch_size=128)
    b = sm.certify_detailed(x, n=500, batch_size=97)
    parts = [sm.certify_detailed(x[i:i + 11], n=500, batch_size=300) for i in range(0, 30, 11)]
    np.testing.assert_array_equal(a.counts, b.counts)
    np.testing.assert_array_equal(a.counts, np.concatenate([p.counts for p in parts]))
    np.testing.assert_array_equal(a.radius, np.concatenate([p.radius for p in parts]))
    other = SmoothedClassifier(base, noise=GaussianNoise(0.3), sample_size=25, seed=8).certify_detailed(x, n=500)
    assert not np.array_equal(a.counts, other.counts)
    # predict is reproducible too
    np.testing.assert_array_equal(sm.predict(x, batch_size=40), sm.predict(x, batch_size=1000))


def test_selection_and_estimation_streams_differ():
    base = linear_classifier(np.ones(3), 0.0)
    sm = SmoothedClassifier(base, noise=GaussianNoise(1.0), seed=0)
    g1 = sm.generator(0, STAGE_SELECT, 0)
    g2 = sm.generator(0, STAGE_ESTIMATE, 0)
    assert not torch.equal(torch.randn(10, generator=g1), torch.randn(10, generator=g2))


def test_predict_one_hot_and_abstains_on_the_boundary():
    base = linear_classifier(np.array([1.0, 0.0]), 0.0)
    sm = SmoothedClassifier(base, noise=GaussianNoise(1.0), sample_size=200, alpha=0.01, seed=0)
    x = np.array([[0.0, 0.0], [3.0, 0.0], [-3.0, 0.0]], dtype=np.float32)
    out = sm.predict(x)
    assert out.shape == (3, 2) and out.dtype == np.float32
    assert out[1].tolist() == [0.0, 1.0] and out[2].tolist() == [1.0, 0.0]
    assert out[0].sum() == 0  # p = 1/2 exactly: the binomial test rejects with probability <= alpha
    forced = sm.predict(x, is_abstain=False)
    assert np.all(forced.sum(axis=1) == 1)


def test_numpy_path_with_sklearn_classifier():
    from art.estimators.classification import SklearnClassifier
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    clf = SklearnClassifier(LogisticRegression().fit(x, y))
    sm = SmoothedClassifier(clf, noise=GaussianNoise(0.5), sample_size=20, seed=0)
    assert isinstance(sm, NumpySmoothedClassifier) and isinstance(sm, ClassifierMixin)
    pred, radius = sm.certify(x[:10], n=200, norm=2)
    w, b = clf.model.coef_[0], clf.model.intercept_[0]
    truth = np.abs(x[:10] @ w + b) / np.linalg.norm(w)
    # a single wrong certificate among 10 would have probability <= 10 * alpha = 1%; with the fixed seed
    # the outcome is deterministic.
    assert np.all(radius <= truth + 1e-6)
    assert np.mean(pred[pred >= 0] == (x[:10] @ w + b > 0)[pred >= 0]) == 1.0
    assert sm.predict(x[:5]).shape == (5, 2)
    sm.fit(x, y, nb_epochs=1)


def test_fit_trains(digits, digits_classifier_factory):
    base = digits_classifier_factory(seed=1)
    sm = SmoothedClassifier(base, noise=GaussianNoise(0.25), sample_size=50, seed=0)
    before = (sm.predict(digits.x_test[:100], is_abstain=False).argmax(1) == digits.y_test[:100]).mean()
    sm.fit(digits.x_train, digits.y_train, nb_epochs=4, batch_size=64)
    after = (sm.predict(digits.x_test[:100], is_abstain=False).argmax(1) == digits.y_test[:100]).mean()
    assert before < 0.3 and after > 0.8


# ---------------------------------------------------------------- validation
@pytest.fixture
def small():
    base = linear_classifier(np.ones(4), 0.0, clip_values=(0.0, 1.0))
    return SmoothedClassifier(base, noise=GaussianNoise(0.5), sample_size=10, seed=0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(n=0), "n must"),
        (dict(n=2.5), "n must"),
        (dict(n=10, n0=0), "n0"),
        (dict(n=10, batch_size=0), "batch_size"),
        (dict(n=10, norm="l7x"), "norm"),
        (dict(n=10, method="nope"), "method"),
        (dict(n=10, form="both"), "form"),
    ],
)
def test_certify_bad_arguments(small, kwargs, match):
    x = np.full((2, 4), 0.5, dtype=np.float32)
    with pytest.raises(ValueError, match=match):
        small.certify(x, **kwargs)


@pytest.mark.parametrize(
    "x,match",
    [
        (np.full((2, 4), np.nan, dtype=np.float32), "NaN"),
        (np.full((2, 4), np.inf, dtype=np.float32), "NaN or inf"),
        (np.zeros((2, 5), dtype=np.float32), "shape"),
        (np.zeros(4, dtype=np.float32), "shape"),
    ],
)
def test_bad_inputs(small, x, match):
    with pytest.raises(ValueError, match=match):
        small.certify(x, n=10)
    with pytest.raises(ValueError, match=match):
        small.predict(x)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(noise=GaussianNoise(0.5), alpha=0.0), "alpha"),
        (dict(noise=GaussianNoise(0.5), alpha=1.0), "alpha"),
        (dict(noise=GaussianNoise(0.5), sample_size=0), "sample_size"),
        (dict(noise="gaussian"), "noise"),
        (dict(noise=GaussianNoise(0.5), seed=-1), "seed"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    base = linear_classifier(np.ones(4), 0.0)
    with pytest.raises(ValueError, match=match):
        SmoothedClassifier(base, **kwargs)


def test_box_with_per_feature_clip_values_asks_for_box_false():
    from art_smoothing.noise import UniformNoise as U

    lo, hi = np.zeros(4, np.float32), np.ones(4, np.float32)
    hi[0] = 2.0
    sm = SmoothedClassifier(linear_classifier(np.ones(4), -2.0, clip_values=(lo, hi)), noise=U(1.0), seed=0)
    x = np.full((2, 4), 0.5, dtype=np.float32)
    with pytest.raises(ValueError, match="box=False"):
        sm.certify(x, n=50)
    pred, radius = sm.certify(x, n=50, box=False)
    assert pred.shape == (2,) and np.all(radius >= 0)
    # a per-feature array that is one box in disguise is accepted
    same = SmoothedClassifier(linear_classifier(np.ones(4), -1.0, clip_values=(lo, np.ones(4, np.float32))),
                              noise=U(1.0), seed=0)
    assert same.certify_detailed(x, n=50).clip_values == (0.0, 1.0)


@pytest.mark.parametrize("preprocessing, identity", [
    (None, True), ((0.0, 1.0), True), ((0.0, 2.0), False), ((0.5, 1.0), False),
    ((np.zeros(1), np.ones(1)), True), ((np.array([0.0]), np.array([0.5])), False),
])
def test_identity_standardisation_is_skipped_exactly(digits_classifier_factory, preprocessing, identity):
    """mean 0 / std 1 is skipped (it changes no bit); any other standardisation is applied, so the logits
    equal ART's own predict on the same noisy batch in every case, bit for bit."""
    base = digits_classifier_factory(preprocessing=preprocessing)
    sm = SmoothedClassifier(base, noise=GaussianNoise(0.25), seed=0)
    assert sm.identity_preprocessing() is identity
    rng = np.random.default_rng(1)
    noisy = rng.uniform(-0.5, 1.5, size=(40, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        ours = sm.base_logits(torch.as_tensor(noisy)).numpy()
    np.testing.assert_array_equal(ours, base.predict(noisy, batch_size=40))


# ---------------------------------------------------------------- state changes after construction
def _sklearn_smoothed():
    from art.estimators.classification import SklearnClassifier
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(60, 4)).astype(np.float32)
    clf = SklearnClassifier(LogisticRegression().fit(x, (x[:, 0] > 0.5).astype(int)), clip_values=(0.0, 1.0))
    return SmoothedClassifier(clf, noise=GaussianNoise(0.5), sample_size=10, seed=0)


@pytest.mark.parametrize("which", ["torch", "numpy"])
@pytest.mark.parametrize("kwargs,match", [
    (dict(alpha=2.0), "alpha"), (dict(sample_size=0), "sample_size"), (dict(noise=0.5), "noise"),
    (dict(seed=-3), "seed"),
])
def test_set_params_is_validated_and_all_or_nothing(small, which, kwargs, match):
    sm = small if which == "torch" else _sklearn_smoothed()
    before = {k: getattr(sm, k) for k in ("alpha", "sample_size", "noise", "seed")}
    with pytest.raises(ValueError, match=match):
        sm.set_params(**kwargs)
    assert {k: getattr(sm, k) for k in before} == before
    # a valid change afterwards goes through, and ART's `scale` follows the new noise
    sm.set_params(noise=UniformNoise(0.6), alpha=0.01)
    assert sm.noise == UniformNoise(0.6) and sm.alpha == 0.01
    assert sm.scale == pytest.approx(0.6 / math.sqrt(3))


def test_scale_follows_the_noise_and_sets_the_gaussian_sigma(small):
    """ART's `scale` is the Gaussian sigma: setting it on a Gaussian-smoothed estimator changes the noise
    (issue 17); other noises refuse it (tests/test_art_dropin.py)."""
    assert small.scale == pytest.approx(0.5)
    small.scale = 0.5  # the same value is accepted (ART code may write it back)
    assert small.noise == GaussianNoise(0.5)
    small.scale = 1.0
    assert small.noise == GaussianNoise(1.0) and small.scale == 1.0


def test_attributes_assigned_directly_are_checked_at_call_time(small):
    x = np.full((2, 4), 0.5, dtype=np.float32)
    small.alpha = 2.0
    with pytest.raises(ValueError, match="alpha"):
        small.certify(x, n=10)
    with pytest.raises(ValueError, match="alpha"):
        small.predict(x)
    small.alpha, small.sample_size = 0.001, 0
    with pytest.raises(ValueError, match="sample_size"):
        small.predict(x)


def test_predict_rejects_unknown_keyword_arguments(small):
    x = np.full((2, 4), 0.5, dtype=np.float32)
    with pytest.raises(TypeError, match="is_abstain"):
        small.predict(x, abstain=False)
    assert small.predict(x, training_mode=False).shape == (2, 2)


def test_box_check_comes_before_any_forward_pass():
    base = linear_classifier(np.ones(4), -2.0, clip_values=(0.0, 1.0))
    sm = SmoothedClassifier(base, noise=UniformNoise(0.5), sample_size=10, seed=0)
    calls = []
    hook = base.model.register_forward_hook(lambda *a: calls.append(1))
    x = np.full((3, 4), 0.5, dtype=np.float32)
    x[2, 1] = 1.01
    with pytest.raises(ValueError, match="box=False"):
        sm.certify(x, n=10_000)
    assert calls == []
    pred, radius = sm.certify(x, n=100, box=False)  # the plain certificates need no box
    hook.remove()
    assert pred.shape == (3,) and calls


def test_empty_input_with_box_certificates():
    base = linear_classifier(np.ones(4), -2.0, clip_values=(0.0, 1.0))
    sm = SmoothedClassifier(base, noise=UniformNoise(0.5), sample_size=10, seed=0)
    pred, radius = sm.certify(np.zeros((0, 4), np.float32), n=10)
    assert pred.shape == (0,) and radius.shape == (0,)


def test_result_helpers_accept_one_hot_and_warn_about_box(small):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(12, 4)).astype(np.float32)
    y = (x.sum(axis=1) > 0).astype(int)
    res = small.certify_detailed(x, n=200)
    np.testing.assert_array_equal(res.certified_accuracy(np.eye(2)[y], [0, 0.1, 0.3]),
                                  res.certified_accuracy(y, [0, 0.1, 0.3]))
    with pytest.raises(ValueError, match="labels"):
        res.certified_accuracy(y[:5], [0])
    box = SmoothedClassifier(linear_classifier(np.ones(4), -2.0, clip_values=(0.0, 1.0)), noise=UniformNoise(2.0),
                             seed=0).certify_detailed(x, n=200)
    assert box.box
    with pytest.warns(UserWarning, match="pass x="):
        box.radius_for()
    np.testing.assert_array_equal(box.radius_for(x=x), box.radius)


def test_clone_for_refitting_keeps_the_smoothing(small, digits_classifier_factory):
    base = digits_classifier_factory()
    sm = SmoothedClassifier(base, noise=LaplaceNoise(0.3), sample_size=17, alpha=0.01, seed=4, eot_samples=5)
    clone = sm.clone_for_refitting()
    assert isinstance(clone, SmoothedClassifier)
    assert (clone.noise, clone.sample_size, clone.alpha, clone.seed, clone.eot_samples) == (
        LaplaceNoise(0.3), 17, 0.01, 4, 5)
    assert clone.model is not sm.model and clone.input_shape == sm.input_shape


@pytest.mark.parametrize("y,match", [
    (np.full(8, 10), "0..9"), (np.full(8, -1), "0..9"), (np.full(8, 1.5), "0..9"),
    (np.eye(12)[np.zeros(8, int)], "12 columns"), (np.zeros((8, 2, 5)), "shape"),
])
def test_fit_rejects_bad_labels(digits, digits_classifier_factory, y, match):
    sm = SmoothedClassifier(digits_classifier_factory(), noise=GaussianNoise(0.25), seed=0)
    with pytest.raises(ValueError, match=match):
        sm.fit(digits.x_train[:8], y, nb_epochs=1)


def test_identity_check_sees_in_place_changes_of_the_mean(digits_classifier_factory):
    base = digits_classifier_factory(preprocessing=(np.zeros(1, np.float32), np.ones(1, np.float32)))
    sm = SmoothedClassifier(base, noise=GaussianNoise(0.25), seed=0)
    assert sm.identity_preprocessing()
    sm.preprocessing_operations[-1].mean[...] = 0.5  # mutated in place: no longer the identity
    assert not sm.identity_preprocessing()


def test_clone_for_refitting_keeps_changes_made_on_the_smoothed_estimator(digits_classifier_factory):
    sm = SmoothedClassifier(digits_classifier_factory(), noise=GaussianNoise(0.25), seed=0)
    sm.set_params(preprocessing=(0.1, 0.3))
    clone = sm.clone_for_refitting()
    assert clone.preprocessing_operations[-1].mean == pytest.approx(0.1)
    assert clone.preprocessing_operations[-1].std == pytest.approx(0.3)
    with pytest.raises(NotImplementedError, match="PyTorchClassifier"):
        _sklearn_smoothed().clone_for_refitting()
