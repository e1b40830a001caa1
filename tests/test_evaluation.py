"""``art_smoothing.evaluate``: per-input certified vs empirical radius, summary, plain-data output."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from art.estimators.classification import PyTorchClassifier
from torch import nn

from art_smoothing import SmoothedClassifier, evaluate
from art_smoothing.models import DigitsCNN
from art_smoothing.noise import GaussianNoise
from art_smoothing.noise.base import certificate

D = 8
RNG = np.random.default_rng(5)
W = RNG.normal(size=D)
X = RNG.normal(size=(20, D)).astype(np.float32)
Y = (X @ W > 0).astype(np.int64)
DIST = np.abs(X @ W) / np.linalg.norm(W)  # the exact ℓ2 robust radius of the (smoothed) half-space



def linear(noise, **kwargs) -> SmoothedClassifier:
    model = nn.Linear(D, 2)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
        model.weight[1] = torch.as_tensor(20 * W, dtype=torch.float32)
    clf = PyTorchClassifier(model, nn.CrossEntropyLoss(), (D,), 2)
    return SmoothedClassifier(clf, noise, **{"sample_size": 500, "seed": 0, "eot_samples": 16, **kwargs})


class OverclaimingGaussian(GaussianNoise):
    """A deliberately wrong certificate (3 × Cohen's radius): the evaluation must catch it."""

    @certificate("cohen", norm=2)
    def _cohen(self, p_a, p_b, ctx):
        return 3.0 * self.sigma * torch.special.ndtri(p_a)


@pytest.fixture(scope="module")
def result():
    est = linear(GaussianNoise(0.25))
    return evaluate(est, X, Y, norm=2, n=1000, attack={"max_iter": 15}, radii=[0.0, 0.25, 0.5, 1.0],
                    eps_max=3 * float(DIST.max()))


def test_records_and_summary_are_consistent(result):
    recs = result.to_records()
    assert len(recs) == len(X)
    cert = np.array([r["certified_radius"] for r in recs])
    emp = np.array([r["empirical_radius"] for r in recs])
    correct = np.array([r["correct"] for r in recs])
    assert set(recs[0]) == {"index", "label", "prediction", "correct", "certified_radius", "attacked_class",
                            "empirical_radius", "violation", "predict_calls", "p_a_lower"}
    # certified ≤ true radius ≤ empirical (the smoothed half-space is the half-space itself)
    assert np.all(cert <= DIST + 1e-9) and np.all(emp >= DIST * (1 - 1e-5))
    s = result.summary
    assert s.norm == "l2" and s.n_inputs == len(X) and s.violations == 0
    assert s.violations == sum(r["violation"] for r in recs)
    for r, ca, ea in zip(s.radii, s.certified_accuracy, s.empirical_accuracy):
        assert ca == pytest.approx(np.mean(correct & (cert >= r)))
        assert ea == pytest.approx(np.mean(correct & (emp > r)))
        assert ea >= ca  # no violations: every certified input is also empirically robust
    assert np.all(np.diff(s.certified_accuracy) <= 0) and np.all(np.diff(s.empirical_accuracy) <= 0)
    ok = (cert > 0) & np.isfinite(emp)
    assert s.ratio_count == ok.sum() and s.median_ratio == pytest.approx(np.median(emp[ok] / cert[ok]))
    assert s.mean_ratio >= 1.0
    calls = np.array([r["predict_calls"] for r in recs])
    assert s.violations_expected_max == pytest.approx(s.alpha * np.sum(1 + calls[cert > 0]))
    assert np.all([r["attacked_class"] == r["prediction"] for r in recs if r["prediction"] >= 0])


def test_plain_data_outputs(result, tmp_path):
    d = json.loads(result.to_json(str(tmp_path / "e.json")))
    assert d == json.loads((tmp_path / "e.json").read_text())
    assert len(d["records"]) == len(X) and d["summary"]["violations"] == 0
    result.to_csv(str(tmp_path / "e.csv"))
    with open(tmp_path / "e.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(X)
    assert float(rows[3]["empirical_radius"]) == pytest.approx(result.records[3].empirical_radius)
    assert "median(emp/cert)" in result.table()


def test_overclaiming_certificate_is_caught():
    """A certificate three times too large puts the true boundary (hence the attack's flips) inside the
    claimed radius: evaluate counts those inputs as violations, far above the α bound."""
    est = linear(OverclaimingGaussian(0.25))
    ev = evaluate(est, X, Y, norm=2, n=1000, attack={"max_iter": 15}, eps_max=3 * float(DIST.max()))
    cert = np.array([r.certified_radius for r in ev.records])
    # every input whose claimed radius exceeds the true one by a clear margin (the PREDICT margin
    # past the boundary is ≤ 0.3σ here, see tests/test_attacks.py) must be flagged
    clearly_wrong = cert > (DIST + 0.3 * 0.25) * 1.1
    assert clearly_wrong.sum() >= 5
    flagged = np.array([r.violation for r in ev.records])
    assert np.all(flagged[clearly_wrong])
    assert ev.summary.violations > 10 * ev.summary.violations_expected_max


def test_wrong_labels_abstentions_and_default_radii():
    torch.manual_seed(0)
    clf = PyTorchClassifier(DigitsCNN(width=4), nn.CrossEntropyLoss(), (1, 8, 8), 10, clip_values=(0.0, 1.0))
    est = SmoothedClassifier(clf, GaussianNoise(0.5), sample_size=50, seed=0, eot_samples=8)
    x = np.random.default_rng(0).uniform(size=(4, 1, 8, 8)).astype(np.float32)
    y = np.array([0, 1, 2, 3])
    ev = evaluate(est, x, y, n=100, attack={"max_iter": 3}, search_steps=2)  # norm: the noise's own (ℓ2)
    assert ev.summary.norm == "l2" and len(ev.summary.radii) == 6 and ev.summary.radii[0] == 0.0
    for r in ev.records:
        assert r.correct == (r.prediction == r.label)
        assert r.attacked_class == (r.prediction if r.prediction >= 0 else r.label)
        assert (r.certified_radius == 0.0) or r.prediction >= 0
        assert r.predict_calls <= 3
    assert math.isfinite(ev.summary.clean_accuracy)


def test_evaluate_validation():
    est = linear(GaussianNoise(0.25))
    with pytest.raises(ValueError, match="y"):
        evaluate(est, X, Y[:3], n=100)
    with pytest.raises(ValueError, match="radii"):
        evaluate(est, X[:2], Y[:2], n=100, radii=[-1.0], search_steps=0)
    with pytest.raises(ValueError, match="SmoothedClassifier"):
        evaluate(est.base_classifier, X, Y, n=100)
    with pytest.raises(ValueError, match="norm"):
        evaluate(est, X, Y, norm="l7x", n=100)
