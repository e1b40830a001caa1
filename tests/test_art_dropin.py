"""SmoothedClassifier as a drop-in for ART's PyTorchRandomizedSmoothing (Gaussian noise): the calls that work
on ART's class work here and mean the same, or raise a clear error naming the difference; and the checks that
keep a run from giving a silent wrong answer (model output width, labels, inputs outside the box)."""

import logging

import numpy as np
import pytest
import torch
from art.attacks.evasion import FastGradientMethod
from art.defences.trainer import AdversarialTrainer
from art.estimators.certification.randomized_smoothing import PyTorchRandomizedSmoothing
from torch import nn

from art_smoothing import SmoothedClassifier
from art_smoothing.attacks import SmoothedPGD
from art_smoothing.models import DigitsCNN, make_classifier
from art_smoothing.noise import GaussianNoise, LaplaceNoise


def _art_and_ours(seed=0, sigma=0.25, **kwargs):
    torch.manual_seed(seed)
    model = DigitsCNN(width=8)
    base = make_classifier(model, (1, 8, 8), 10)
    art = PyTorchRandomizedSmoothing(model=model, loss=nn.CrossEntropyLoss(), input_shape=(1, 8, 8), nb_classes=10,
                                     optimizer=base.optimizer, clip_values=(0.0, 1.0), scale=sigma, **kwargs)
    ours = SmoothedClassifier(base, noise=GaussianNoise(sigma), seed=0, **kwargs)
    return model, art, ours


def test_loss_gradient_sampling_false_is_the_base_gradient_as_in_art(digits):
    _, art, ours = _art_and_ours()
    x, y = digits.x_test[:16], digits.y_test[:16]
    one_hot = np.eye(10, dtype=np.float32)[y]  # ART's loss_gradient needs one-hot labels; ours takes both
    # ART's default (no sampling) and sampling=False: the base classifier's gradient, bit for bit the same
    np.testing.assert_array_equal(ours.loss_gradient(x, one_hot, sampling=False), art.loss_gradient(x, one_hot))
    np.testing.assert_array_equal(ours.loss_gradient(x, y, sampling=False),
                                  art.loss_gradient(x, one_hot, sampling=False))
    base_class = ours.class_gradient(x, label=3, sampling=False)
    assert base_class.shape == (16, 1, 1, 8, 8)
    np.testing.assert_array_equal(base_class, ours.base_classifier.class_gradient(x, label=3))
    with pytest.raises(ValueError, match="sampling"):
        ours.loss_gradient(x, one_hot, sampling="yes")


def test_loss_gradient_sampling_true_estimates_arts_smoothed_gradient(digits):
    """ART's sampling=True is ∇ of the batch-mean −log ḡ_y (mean softmax over `sample_size` draws); ours is
    per input (not divided by N). With 4000 draws each, both Monte Carlo estimates are close to the same
    vector: per input, cosine similarity between ours and N·ART's must be high. (The estimates' relative
    error is O(1/sqrt(4000)) ≈ 2% per coordinate on the dominant directions; 0.9 leaves room for the
    coordinates where the gradient is small.)"""
    torch.manual_seed(0)
    _, art, ours = _art_and_ours(sample_size=4000)
    ours.eot_samples = 4000
    x, y = digits.x_test[:6], digits.y_test[:6]
    # a briefly trained model so that the smoothed gradient is informative
    ours.fit(digits.x_train[:600], digits.y_train[:600], nb_epochs=2, batch_size=64)
    g_art = art.loss_gradient(x, np.eye(10, dtype=np.float32)[y], sampling=True) * len(x)
    g_ours = ours.loss_gradient(x, y, sampling=True)
    g_default = ours.loss_gradient(x, y)  # the default here is the smoothed gradient
    for g in (g_ours, g_default):
        a, b = g.reshape(len(x), -1), g_art.reshape(len(x), -1)
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        assert np.all(cos > 0.9), cos


def test_scale_is_the_gaussian_sigma_as_in_art():
    _, art, ours = _art_and_ours()
    art.set_params(scale=0.5)
    ours.set_params(scale=0.5)
    assert ours.noise == GaussianNoise(0.5) and ours.scale == art.scale == 0.5
    ours.scale = 0.75
    assert ours.noise == GaussianNoise(0.75)
    with pytest.raises(ValueError, match="scale"):
        ours.scale = -1.0
    assert ours.noise == GaussianNoise(0.75)  # a rejected value changes nothing
    # a round trip of ART's get_params/set_params works
    ours.set_params(**{k: v for k, v in ours.get_params().items() if k in ("noise", "scale", "alpha")})
    assert ours.noise == GaussianNoise(0.75)


def test_scale_of_other_noises_names_the_difference(digits_classifier_factory):
    sm = SmoothedClassifier(digits_classifier_factory(), noise=LaplaceNoise(0.5), seed=0)
    assert sm.scale == pytest.approx(LaplaceNoise(0.5).std)
    with pytest.raises(ValueError, match="LaplaceNoise.*pass a new noise"):
        sm.set_params(scale=0.25)
    with pytest.raises(ValueError, match="pass a new noise"):
        sm.scale = 0.25
    assert sm.noise == LaplaceNoise(0.5)
    sm.scale = sm.scale  # writing the current value back is accepted (ART code does that)
    # with a new noise in the same call, scale is the new noise's whatever the keyword order
    g = SmoothedClassifier(digits_classifier_factory(), noise=GaussianNoise(0.25), seed=0)
    for kwargs in ({"scale": 0.5, "noise": LaplaceNoise(0.3)}, {"noise": LaplaceNoise(0.3), "scale": 0.5}):
        with pytest.raises(ValueError, match="pass a new noise"):
            g.set_params(**kwargs)
        assert g.noise == GaussianNoise(0.25)  # all or nothing
    g.set_params(scale=0.5, noise=GaussianNoise(0.1))
    assert g.noise == GaussianNoise(0.5)


def test_fit_honours_arts_keywords(digits, caplog):
    model, _, ours = _art_and_ours()
    modes, sizes = [], []
    def record(module, inputs):
        modes.append(module.training)
        sizes.append(inputs[0].shape[0])

    hook = model.register_forward_pre_hook(record)
    opt = ours.optimizer
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    lr0 = opt.param_groups[0]["lr"]
    x, y = digits.x_train[:100], digits.y_train[:100]
    with caplog.at_level(logging.WARNING):
        ours.fit(x, y, batch_size=32, nb_epochs=2, training_mode=False, drop_last=True, scheduler=scheduler,
                 verbose=False)
    hook.remove()
    assert "ignores" not in caplog.text
    assert modes and not any(modes)  # training_mode=False: evaluation mode during the steps
    assert sizes == [32] * 6  # 100 // 32 = 3 full batches per epoch, the last one (4) dropped
    assert opt.param_groups[0]["lr"] == pytest.approx(lr0 * 0.25)  # stepped once per epoch
    modes.clear()
    hook = model.register_forward_pre_hook(lambda m, inp: modes.append(m.training))
    ours.fit(x, y, batch_size=50, nb_epochs=1)
    hook.remove()
    assert modes == [True, True] and not model.training  # default: training mode, evaluation mode afterwards


def test_arts_adversarial_trainer_runs_without_warnings(digits, caplog):
    _, _, ours = _art_and_ours()
    ours.eot_samples = 4
    trainer = AdversarialTrainer(ours, FastGradientMethod(ours, eps=0.1), ratio=0.5)
    with caplog.at_level(logging.WARNING):
        trainer.fit(digits.x_train[:64], digits.y_train[:64], nb_epochs=1, batch_size=32)
    assert "ignores" not in caplog.text


class _Width(nn.Module):
    def __init__(self, outputs):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, outputs))

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("outputs,match", [(1, "single score.*torch.cat"), (12, r"outputs of shape \(12,\)")])
def test_model_output_width_must_match_nb_classes(digits, outputs, match):
    """Every path that runs the model checks the width: votes, gradients, training."""
    base = make_classifier(_Width(outputs), (1, 8, 8), 10)
    sm = SmoothedClassifier(base, noise=GaussianNoise(0.25), seed=0, eot_samples=4)
    x, y = digits.x_test[:2], digits.y_test[:2]
    for call in (lambda: sm.predict(x), lambda: sm.certify(x, n=10), lambda: sm.loss_gradient(x, y),
                 lambda: sm.fit(x, y, nb_epochs=1)):
        with pytest.raises(ValueError, match=match):
            call()


def test_numpy_base_classifier_output_width_is_checked():
    from art.estimators.classification import SklearnClassifier
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(60, 4)).astype(np.float32)
    clf = SklearnClassifier(LogisticRegression().fit(x, (x[:, 0] > 0.5).astype(int)), clip_values=(0.0, 1.0))
    clf.nb_classes = 3  # a mismatched wrapper: votes for class 2 could never be counted right
    sm = SmoothedClassifier(clf, noise=GaussianNoise(0.5), seed=0)
    with pytest.raises(ValueError, match="nb_classes=3"):
        sm.certify(x[:2], n=10)


def test_gradients_refuse_bad_labels(digits):
    _, _, ours = _art_and_ours()
    x = digits.x_test[:4]
    for bad in (np.array([0, -1, 2, 3]), np.array([0, 1, 2, 10]), np.array([0.5, 1, 2, 3])):
        with pytest.raises(ValueError, match="class indices"):
            ours.loss_gradient(x, bad)


def test_smoothed_pgd_refuses_inputs_outside_the_box(digits):
    _, _, ours = _art_and_ours()
    x = digits.x_test[:3].copy()
    x[1, 0, 0, 0] = 1.2
    attack = SmoothedPGD(ours, norm=2, eps=0.1, max_iter=2, eot_samples=4)
    with pytest.raises(ValueError, match="outside the classifier's clip_values.*index 1"):
        attack.generate(x, digits.y_test[:3])
    x_adv = attack.generate(np.clip(x, 0, 1), digits.y_test[:3])  # clipped inputs are attacked within eps
    assert np.all(np.linalg.norm((x_adv - np.clip(x, 0, 1)).reshape(3, -1), axis=1) <= 0.1 + 1e-6)
