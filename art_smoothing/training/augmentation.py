"""The shared training loop of every trainer, and noise augmentation (Cohen et al., 2019, Section 3.3)
generalised to every noise.

Every trainer here is an ART :class:`~art.defences.trainer.Trainer` around a
:class:`~art_smoothing.SmoothedClassifier` and trains its base model under the estimator's own noise.
They differ only in :meth:`SmoothingTrainer.compute_loss`, the objective of one batch given its noise
draws; the loop (shuffling, noise draws from the estimator's seeded generator, optimizer step,
scheduler, progress bar) is written once in :meth:`SmoothingTrainer.fit`:

* a step takes ``batch_size`` inputs and ``m`` noise draws per input, drawn in one batched call on the
  estimator's device, so a step holds at most ``batch_size × m`` noisy copies in memory;
* the noisy copy of input x under draw z is ``noise.perturb(x, z)`` — ``x + z`` for additive noise,
  the noise's own map for non-additive noise (splitting) — *before* the base classifier's
  preprocessing defences (``apply_fit``) and standardisation, as in prediction and certification;
* the optimizer is the wrapped classifier's, and the generators are seeded from the estimator's
  ``seed`` (a fresh stream per ``fit`` call), so a run with a seed is reproducible.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from art.defences.trainer.trainer import Trainer
from art.utils import check_and_transform_label_format
from tqdm.auto import trange

logger = logging.getLogger(__name__)

__all__ = ["NoiseAugmentationTrainer", "SmoothingTrainer", "check_draws", "check_nonnegative"]


def check_draws(name: str, value) -> int:
    """Validate a number of noise draws (or steps): an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
    return int(value)


def check_nonnegative(name: str, value, *, positive: bool = False) -> float:
    """Validate a finite real weight/threshold: >= 0 (or > 0 with ``positive``)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}.") from None
    if isinstance(value, bool) or not np.isfinite(v) or v < 0 or (positive and v == 0):
        raise ValueError(f"{name} must be finite and {'> 0' if positive else '>= 0'}, got {value!r}.")
    return v


class SmoothingTrainer(Trainer):
    """Base of the trainers: validated data on the estimator's device, noise draws from the estimator's
    seeded generator, preprocessing applied after the noise, and the epoch loop.

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
        from art_smoothing.estimator import SmoothedClassifier

        if not isinstance(classifier, SmoothedClassifier):
            raise ValueError(  # noqa: TRY004 - bad input is a ValueError throughout the project
                "The trainers need an art_smoothing.SmoothedClassifier wrapping a PyTorchClassifier.")
        super().__init__(classifier)
        self.verbose = bool(verbose)
        self.last_epoch_losses: list[float] = []

    # ------------------------------------------------------------------ plumbing
    def _prepare(self, x, y):
        from art_smoothing.estimator import check_labels

        est = self._classifier
        x = est._check_x(x)
        y = check_and_transform_label_format(check_labels(y, est.nb_classes), nb_classes=est.nb_classes)
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} samples but y has {len(y)} labels.")
        if est._optimizer is None:
            raise ValueError("The wrapped PyTorchClassifier has no optimizer: pass optimizer=... when creating it.")
        return x, np.asarray(est.reduce_labels(y))

    def _generators(self):
        """(shuffle generator on the CPU, noise generator on the device) for this fit call."""
        from art_smoothing.estimator import STAGE_FIT

        est = self._classifier
        seed = est._call_seed()
        est._fit_calls += 1
        shuffle = torch.Generator().manual_seed(int(seed + 7919 * est._fit_calls) & 0x7FFFFFFFFFFFFFFF)
        return shuffle, est._generator(seed, STAGE_FIT, est._fit_calls)

    def _preprocess(self, x_noisy, y_batch):
        est = self._classifier
        if est.all_framework_preprocessing:
            return est._apply_preprocessing(x_noisy, y_batch, fit=True, no_grad=False)
        x_np, y_np = est._apply_preprocessing(x_noisy.detach().cpu().numpy(), y_batch.cpu().numpy(), fit=True)
        return torch.as_tensor(x_np, device=est._device), torch.as_tensor(y_np, device=est._device)

    def _batches(self, n: int, batch_size: int, shuffle: torch.Generator):
        order = torch.randperm(n, generator=shuffle).numpy()
        for b0 in range(0, n, batch_size):
            yield order[b0:b0 + batch_size]

    def draw_noise(self, num_inputs: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``m`` i.i.d. draws of the estimator's noise for each of ``num_inputs`` inputs, shape
        ``(num_inputs, m, *input_shape)``, on the estimator's device in the model's dtype (one batched call)."""
        est = self._classifier
        shape = tuple(est.input_shape)
        z = est.noise.sample(num_inputs * self.m, shape, generator=generator, device=est._device,
                             dtype=est._noise_dtype)
        return z.reshape(num_inputs, self.m, *shape)

    def _as_batch(self, x, y, noise_draws):
        """Tensors on the device for :meth:`compute_loss`: inputs in the model's dtype, int64 labels, draws
        ``(B, m, *input_shape)`` (fresh from torch's global generator when ``None``)."""
        est = self._classifier
        x = torch.as_tensor(x, device=est._device).to(est._noise_dtype)
        y = torch.as_tensor(y, device=est._device)
        if y.dim() == 2:  # one-hot
            y = y.argmax(dim=1)
        y = y.to(torch.int64)
        if noise_draws is None:
            noise_draws = self.draw_noise(x.shape[0])
        noise_draws = torch.as_tensor(noise_draws, device=est._device).to(est._noise_dtype)
        expected = (x.shape[0], self.m, *tuple(est.input_shape))
        if tuple(noise_draws.shape) != expected:
            raise ValueError(f"noise_draws must have shape {expected} (inputs, m draws, input shape); "
                             f"got {tuple(noise_draws.shape)}.")
        return x, y, noise_draws

    def noisy_logits(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Base-classifier outputs on the noisy copies ``perturb(x_i, z_ij)``: ``(B, m, nb_classes)``, and the
        labels repeated per copy after preprocessing (``(B·m,)``), in one forward pass of ``B·m`` copies."""
        est = self._classifier
        b, m = z.shape[:2]
        noisy = est.noise.perturb(x.unsqueeze(1), z)
        x_pre, y_pre = self._preprocess(noisy.reshape(b * m, *noisy.shape[2:]), y.repeat_interleave(m))
        logits = est._model(x_pre)[-1]
        return logits.reshape(b, m, -1), y_pre

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
        """Hook called before every epoch (SmoothAdv's ε warm-up)."""

    # ------------------------------------------------------------------ the loop
    def fit(self, x: np.ndarray, y: np.ndarray, nb_epochs: int = 10, batch_size: int = 128, **kwargs) -> None:
        """Train the base model of the wrapped estimator in place.

        :param x: training inputs ``(N, *input_shape)``.
        :param y: labels (indices or one-hot).
        :param nb_epochs: epochs.
        :param batch_size: inputs per step (each with ``m`` noisy copies).
        :param scheduler: (kwarg) a torch LR scheduler stepped once per epoch.
        """
        from art_smoothing.estimator import _check_int

        est = self._classifier
        nb_epochs = _check_int("nb_epochs", nb_epochs)
        batch_size = _check_int("batch_size", batch_size)
        scheduler = kwargs.pop("scheduler", None)
        if kwargs:
            logger.warning("%s.fit ignores the arguments %s.", type(self).__name__, sorted(kwargs))
        x, y = self._prepare(x, y)
        shuffle, gen = self._generators()
        self.last_epoch_losses = []
        try:
            for epoch in trange(nb_epochs, desc=self.name, disable=not self.verbose):
                self._start_epoch(epoch, nb_epochs)
                total, seen = 0.0, 0
                for idx in self._batches(len(x), batch_size, shuffle):
                    xb = torch.as_tensor(x[idx], device=est._device).to(est._noise_dtype)
                    yb = torch.as_tensor(y[idx], device=est._device)
                    z = self.draw_noise(len(idx), gen)
                    est._model.train(mode=True)
                    loss = self.compute_loss(xb, yb, z)
                    est._optimizer.zero_grad()
                    loss.backward()
                    est._optimizer.step()
                    total += float(loss.detach()) * len(idx)
                    seen += len(idx)
                self.last_epoch_losses.append(total / max(seen, 1))
                if scheduler is not None:
                    scheduler.step()
        finally:
            est._model.train(mode=False)


class NoiseAugmentationTrainer(SmoothingTrainer):
    """Train the base model on noisy inputs ``noise.perturb(x, z)`` with the classifier's loss
    (Cohen et al.'s Gaussian data augmentation for any noise; one fresh draw per example and step).

    For a non-additive noise the base model simply sees the noise's noisy inputs (e.g. the split /
    quantized input of splitting noise), exactly what it will see in certification.

    ``SmoothedClassifier.fit`` delegates here.
    """

    name = "augment"
    m = 1

    def compute_loss(self, x, y, noise_draws: torch.Tensor | None = None) -> torch.Tensor:
        """The classifier's loss on one noisy copy per input."""
        est = self._classifier
        x, y, z = self._as_batch(x, y, noise_draws)
        logits, y_pre = self.noisy_logits(x, y, z)
        return est._loss(logits[:, 0], y_pre)
