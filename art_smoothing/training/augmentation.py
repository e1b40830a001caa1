"""Noise augmentation (Cohen et al., 2019, Section 3.3), generalised to every noise."""

from __future__ import annotations

import logging

import numpy as np
import torch
from art.defences.trainer.trainer import Trainer
from art.utils import check_and_transform_label_format
from tqdm.auto import trange

logger = logging.getLogger(__name__)

__all__ = ["NoiseAugmentationTrainer", "SmoothingTrainer"]


class SmoothingTrainer(Trainer):
    """Shared plumbing of the trainers: data batches on the estimator's device, noise draws from the
    estimator's own seeded generator, preprocessing (defences with ``apply_fit`` and standardisation)
    applied after the noise, exactly as in prediction and certification."""

    def __init__(self, classifier, verbose: bool = True) -> None:
        from art_smoothing.estimator import SmoothedClassifier

        if not isinstance(classifier, SmoothedClassifier):
            raise ValueError("The trainers need an art_smoothing.SmoothedClassifier wrapping a PyTorchClassifier.")
        super().__init__(classifier)
        self.verbose = bool(verbose)

    def _prepare(self, x, y):
        est = self._classifier
        x = est._check_x(x)
        y = check_and_transform_label_format(y, nb_classes=est.nb_classes)
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


class NoiseAugmentationTrainer(SmoothingTrainer):
    """Train the base model on noisy inputs ``noise.perturb(x, z)`` with the classifier's loss
    (Cohen et al.'s Gaussian data augmentation for any noise; one fresh draw per example and step).

    ``SmoothedClassifier.fit`` delegates here.
    """

    def fit(self, x: np.ndarray, y: np.ndarray, nb_epochs: int = 10, batch_size: int = 128, **kwargs) -> None:
        """:param x: training inputs. :param y: labels (indices or one-hot).
        :param nb_epochs: epochs. :param batch_size: examples per step.
        :param scheduler: (kwarg) a torch LR scheduler stepped once per epoch."""
        from art_smoothing.estimator import _check_int

        est = self._classifier
        nb_epochs = _check_int("nb_epochs", nb_epochs)
        batch_size = _check_int("batch_size", batch_size)
        x, y = self._prepare(x, y)
        shuffle, gen = self._generators()
        scheduler = kwargs.get("scheduler")
        dtype = est._noise_dtype
        est._model.train(mode=True)
        self.last_epoch_losses = []
        for _ in trange(nb_epochs, desc="noise augmentation", disable=not self.verbose):
            total, seen = 0.0, 0
            for idx in self._batches(len(x), batch_size, shuffle):
                xb = torch.as_tensor(x[idx], device=est._device).to(dtype)
                yb = torch.as_tensor(y[idx], device=est._device)
                z = est.noise.sample(len(idx), est.input_shape, generator=gen, device=est._device, dtype=dtype)
                x_pre, y_pre = self._preprocess(est.noise.perturb(xb, z), yb)
                est._optimizer.zero_grad()
                loss = est._loss(est._model(x_pre)[-1], y_pre)
                loss.backward()
                est._optimizer.step()
                total += float(loss.detach()) * len(idx)
                seen += len(idx)
            self.last_epoch_losses.append(total / max(seen, 1))
            if scheduler is not None:
                scheduler.step()
        est._model.train(mode=False)
