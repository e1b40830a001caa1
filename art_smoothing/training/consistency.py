"""Consistency regularization (Jeong & Shin, 2020) for every noise."""

from __future__ import annotations

import math

import torch

from art_smoothing.checks import check_int, check_positive
from art_smoothing.training.augmentation import SmoothingTrainer, per_noise_default

__all__ = ["DEFAULT_LBD", "ConsistencyTrainer"]

#: default λ by noise name (other noises: the entry of their norm), chosen by ``benchmarks/training.py --sweep``
#: (``docs/training.md``): at 15 epochs on digits λ = 10 (the paper's 5–20) cost 7–13 % clean accuracy and
#: λ = 20 collapsed; λ = 10 also fell below 0.9 × augmentation's accuracy on a 3-epoch budget.
DEFAULT_LBD = {"gaussian": 2.0, "laplace": 5.0, "uniform": 2.0, "l2": 2.0, "l1": 2.0, "linf": 2.0}


class ConsistencyTrainer(SmoothingTrainer):
    """Jeong & Shin (2020), "Consistency Regularization for Certified Robustness of Smoothed Classifiers",
    their objective (eq. 9 with the entropy term of eq. 10), under the estimator's own noise.

    With m noisy copies x̃_i = perturb(x, z_i) of each input, F(x̃_i) = softmax of the base classifier and
    F̂ = (1/m) Σ_i F(x̃_i) their mean:

        L = (1/m) Σ_i CE(F(x̃_i), y) + λ · (1/m) Σ_i KL(F̂ ‖ F(x̃_i)) + η · H(F̂),

    averaged over the batch. The first term is noise augmentation with m draws; the KL term pulls every
    copy's prediction towards their mean, so the base classifier is constant over the noise, which makes
    the smoothed classifier's top-class probability — hence every certificate — large; the entropy term
    keeps the mean prediction confident. F̂ is not detached (as in the authors' code), so the KL
    gradient moves both the copies and their mean. CE is the wrapped classifier's loss (its
    ``CrossEntropyLoss`` by default).

    Non-additive noise (splitting): nothing changes — x̃_i is the noise's own noisy input
    ``perturb(x, z_i)`` and all gradients are w.r.t. the model's parameters, never through the noise.

    :param classifier: the :class:`~art_smoothing.SmoothedClassifier`.
    :param m: noisy copies per input and step (the paper uses m = 2); m = 1 makes the KL term 0.
    :param lbd: λ >= 0, weight of the consistency (KL) term (the paper: 5–20 on CIFAR-10; ``None``:
        :data:`DEFAULT_LBD` for the noise).
    :param eta: η >= 0, weight of the entropy term (the paper: 0.5).
    :param verbose: progress bar.
    """

    name = "consistency"
    trainer_params = ("m", "lbd", "eta")

    def __init__(self, classifier, m: int = 2, lbd: float | None = None, eta: float = 0.5,
                 verbose: bool = True) -> None:
        super().__init__(classifier, verbose=verbose)
        self.m = check_int("m", m)
        self.lbd = (per_noise_default(DEFAULT_LBD, self._classifier.noise) if lbd is None
                    else check_positive("lbd", lbd, allow_zero=True))
        self.eta = check_positive("eta", eta, allow_zero=True)

    def __repr__(self) -> str:
        return f"ConsistencyTrainer(m={self.m}, lbd={self.lbd:g}, eta={self.eta:g})"

    def compute_loss(self, x, y, noise_draws: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy of the m copies + λ·consistency + η·entropy of their mean, batch mean."""
        est = self._classifier
        x, y, z = self._as_batch(x, y, noise_draws)
        logits, y_pre = self.noisy_logits(x, y, z)  # (B, m, C)
        b, m, c = logits.shape
        cross_entropy = est.loss(logits.reshape(b * m, c), y_pre)
        log_p = torch.log_softmax(logits, dim=-1)
        log_mean = torch.logsumexp(log_p, dim=1) - math.log(m)  # log F̂, exact in the log domain
        mean = log_mean.exp()
        kl = (mean.unsqueeze(1) * (log_mean.unsqueeze(1) - log_p)).sum(-1).mean()  # mean over copies and batch
        entropy = -(mean * log_mean).sum(-1).mean()
        return cross_entropy + self.lbd * kl + self.eta * entropy
