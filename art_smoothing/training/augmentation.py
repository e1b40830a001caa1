"""The trainers' shared base (an ART ``Trainer``) and noise augmentation (Cohen et al., 2019, Section 3.3)
generalised to every noise.

Every trainer here is an ART :class:`~art.defences.trainer.Trainer` around a
:class:`~art_smoothing.SmoothedClassifier` and trains its base model under the estimator's own noise.
They differ only in :meth:`SmoothingTrainer.compute_loss`, the objective of one batch given its noise
draws; the loop (shuffling, seeded noise draws, preprocessing after the noise, optimizer step, scheduler,
progress bar) is the engine's (:func:`art_smoothing.engine.fitting.fit_under_noise`), the same one
``SmoothedClassifier.fit`` runs.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from art.defences.trainer.trainer import Trainer

from art_smoothing.certificates.norms import norm_name
from art_smoothing.engine.fitting import augmentation_loss, fit_under_noise, noisy_logits
from art_smoothing.estimator import SmoothedClassifier

logger = logging.getLogger(__name__)

__all__ = ["NoiseAugmentationTrainer", "SmoothingTrainer", "per_noise_default"]


def per_noise_default(table: dict, noise):
    """A trainer default that depends on the noise: ``table[noise.name]``, else the entry of the noise's norm
    (``"l2"``, ``"l1"``, ``"linf"``), else ``table["l2"]``. The tables (chosen by ``benchmarks/training.py
    --sweep``, recorded in ``docs/training.md``) hold dimensionless values: multiples of the noise's std."""
    if noise.name in table:
        return table[noise.name]
    return table.get(norm_name(noise.norm), table["l2"])


class SmoothingTrainer(Trainer):
    """Base of the trainers: the objective of one batch (:meth:`compute_loss`) under the estimator's noise,
    trained by the engine's loop.

    Subclasses set :attr:`m` (noise draws per input and step) and implement :meth:`compute_loss`.

    :param classifier: the :class:`~art_smoothing.SmoothedClassifier` whose base model is trained.
    :param verbose: show a ``tqdm`` progress bar over epochs.
    """

    #: name in :data:`art_smoothing.training.TRAINERS` and in progress bars
    name = "trainer"
    #: noise draws per input and step
    m: int = 1
    #: constructor keyword arguments that are hyperparameters (what the CLI passes)
    trainer_params: tuple[str, ...] = ()

    def __init__(self, classifier, verbose: bool = True) -> None:
        if not isinstance(classifier, SmoothedClassifier):
            raise ValueError(  # noqa: TRY004 - bad input is a ValueError throughout the project
                "The trainers need an art_smoothing.SmoothedClassifier wrapping a PyTorchClassifier.")
        super().__init__(classifier)
        self.verbose = bool(verbose)
        self.last_epoch_losses: list[float] = []

    def draw_noise(self, num_inputs: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``m`` i.i.d. draws of the estimator's noise for each of ``num_inputs`` inputs, shape
        ``(num_inputs, m, *input_shape)``, on the estimator's device in the model's dtype (one batched call)."""
        est = self._classifier
        return est.sample_noise(num_inputs * self.m, generator).reshape(num_inputs, self.m, *tuple(est.input_shape))

    def _as_batch(self, x, y, noise_draws):
        """Tensors on the device for :meth:`compute_loss`: inputs in the model's dtype, int64 labels, draws
        ``(B, m, *input_shape)`` (fresh from torch's global generator when ``None``)."""
        est = self._classifier
        x = torch.as_tensor(x, device=est.device).to(est.noise_dtype)
        y = torch.as_tensor(y, device=est.device)
        if y.dim() == 2:  # one-hot
            y = y.argmax(dim=1)
        y = y.to(torch.int64)
        if noise_draws is None:
            noise_draws = self.draw_noise(x.shape[0])
        noise_draws = torch.as_tensor(noise_draws, device=est.device).to(est.noise_dtype)
        expected = (x.shape[0], self.m, *tuple(est.input_shape))
        if tuple(noise_draws.shape) != expected:
            raise ValueError(f"noise_draws must have shape {expected} (inputs, m draws, input shape); "
                             f"got {tuple(noise_draws.shape)}.")
        return x, y, noise_draws

    def noisy_logits(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Base-classifier outputs on the noisy copies ``perturb(x_i, z_ij)``: ``(B, m, nb_classes)``, and the
        labels repeated per copy after preprocessing (``(B·m,)``), in one forward pass of ``B·m`` copies."""
        return noisy_logits(self._classifier, x, y, z)

    # ------------------------------------------------------------------ the objective
    def compute_loss(self, x, y, noise_draws: torch.Tensor | None = None) -> torch.Tensor:
        """The training objective of one batch as a scalar tensor (differentiable in the model's parameters).

        :param x: inputs ``(B, *input_shape)`` (array or tensor).
        :param y: labels ``(B,)`` (indices) or one-hot.
        :param noise_draws: ``(B, m, *input_shape)`` draws of the estimator's noise (see :meth:`draw_noise`);
            ``None`` draws fresh ones from torch's global generator. Passing them makes a step reproducible
            and comparable with another implementation fed the same draws.
        """
        raise NotImplementedError

    def _start_epoch(self, epoch: int, nb_epochs: int) -> None:
        """Hook called before every epoch (the warm-ups of MACER, SmoothAdv and SmoothMix)."""

    def _begin_fit(self) -> None:
        """Hook called at the start of :meth:`fit` (SmoothMix's stream of mixing coefficients)."""

    def _end_fit(self) -> None:
        """Hook called when :meth:`fit` ends, also on an error (restores what a warm-up changed)."""

    # ------------------------------------------------------------------ the loop
    def fit(self, x: np.ndarray, y: np.ndarray, nb_epochs: int = 10, batch_size: int = 128, **kwargs) -> None:
        """Train the base model of the wrapped estimator in place.

        :param x: training inputs ``(N, *input_shape)``.
        :param y: labels (indices or one-hot).
        :param nb_epochs: epochs.
        :param batch_size: inputs per step (each with ``m`` noisy copies).
        :param scheduler: (kwarg) a torch LR scheduler stepped once per epoch.
        :param training_mode: (kwarg, default True) the model's mode during the steps.
        :param drop_last: (kwarg, default False) drop the last incomplete batch of every epoch.
        """
        options = {k: kwargs.pop(k) for k in ("scheduler", "training_mode", "drop_last") if k in kwargs}
        if kwargs:
            logger.warning("%s.fit ignores the arguments %s.", type(self).__name__, sorted(kwargs))
        self._begin_fit()
        try:
            self.last_epoch_losses = fit_under_noise(
                self._classifier, x, y, lambda xb, yb, z: self.compute_loss(xb, yb, z), m=self.m,
                nb_epochs=nb_epochs, batch_size=batch_size, on_epoch=self._start_epoch, verbose=self.verbose,
                desc=self.name, **options)
        finally:
            self._end_fit()


class NoiseAugmentationTrainer(SmoothingTrainer):
    """Train the base model on noisy inputs ``noise.perturb(x, z)`` with the classifier's loss
    (Cohen et al.'s Gaussian data augmentation for any noise; one fresh draw per example and step).

    For a non-additive noise the base model simply sees the noise's noisy inputs (e.g. the split /
    quantized input of splitting noise), exactly what it will see in certification.

    ``SmoothedClassifier.fit`` runs the same objective.
    """

    name = "augment"
    m = 1

    def compute_loss(self, x, y, noise_draws: torch.Tensor | None = None) -> torch.Tensor:
        """The classifier's loss on one noisy copy per input."""
        x, y, z = self._as_batch(x, y, noise_draws)
        return augmentation_loss(self._classifier, x, y, z)
