"""Training the base model under the estimator's noise: the one training loop, shared by
``SmoothedClassifier.fit`` (noise augmentation, Cohen et al., 2019, Section 3.3) and every trainer of
:mod:`art_smoothing.training`, which only supply the objective of one batch.

* a step takes ``batch_size`` inputs and ``m`` noise draws per input, drawn in one batched call on the
  estimator's device, so a step holds at most ``batch_size × m`` noisy copies in memory;
* the noisy copy of input x under draw z is ``noise.perturb(x, z)`` — ``x + z`` for additive noise, the
  noise's own map for non-additive noise (splitting) — *before* the base classifier's preprocessing
  defences (``apply_fit``) and standardisation, as in prediction and certification;
* the optimizer is the wrapped classifier's, and the generators are seeded from the estimator's ``seed``
  (a fresh stream per ``fit`` call, ``Stage.FIT``), so a run with a seed is reproducible.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch
from art.utils import check_and_transform_label_format
from tqdm.auto import trange

from art_smoothing.checks import check_bool, check_int, check_labels
from art_smoothing.engine.streams import Stage

logger = logging.getLogger(__name__)

__all__ = ["augmentation_loss", "fit_under_noise", "noisy_logits", "training_data"]

#: ``loss_fn(x, y, z) -> scalar``: the objective of one batch (inputs, int64 labels, draws ``(B, m, *shape)``)
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def training_data(estimator, x, y) -> tuple[np.ndarray, np.ndarray]:
    """Validated training arrays: finite float32 inputs of the estimator's shape and labels as ART's
    ``reduce_labels`` gives them to the loss (class indices for cross-entropy)."""
    x = estimator.check_x(x)
    y = check_and_transform_label_format(check_labels(y, estimator.nb_classes), nb_classes=estimator.nb_classes)
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)} labels.")
    if estimator.optimizer is None:
        raise ValueError("The wrapped PyTorchClassifier has no optimizer: pass optimizer=... when creating it.")
    return x, np.asarray(estimator.reduce_labels(y))


def noisy_logits(estimator, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Base-classifier outputs on the noisy copies ``perturb(x_i, z_ij)`` in training mode: ``(B, m,
    nb_classes)``, and the labels repeated per copy after preprocessing (``(B·m,)``), in one forward pass of
    ``B·m`` copies (preprocessing defences run with ``fit=True``)."""
    b, m = z.shape[:2]
    noisy = estimator.noise.perturb(x.unsqueeze(1), z)
    x_pre, y_pre = estimator.preprocess(noisy.reshape(b * m, *noisy.shape[2:]), y.repeat_interleave(m), fit=True,
                                        grad=True)
    return estimator.model_logits(x_pre).reshape(b, m, -1), y_pre


def augmentation_loss(estimator, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Noise augmentation's objective: the classifier's loss on the noisy copies (Cohen et al.)."""
    logits, y_pre = noisy_logits(estimator, x, y, z)
    b, m, c = logits.shape
    return estimator.loss(logits.reshape(b * m, c), y_pre)


def fit_under_noise(estimator, x, y, loss_fn: LossFn, *, m: int = 1, nb_epochs: int = 10, batch_size: int = 128,
                    scheduler=None, on_epoch: Callable[[int, int], None] | None = None, training_mode: bool = True,
                    drop_last: bool = False, verbose: bool = False, desc: str = "fit") -> list[float]:
    """Train the base model of ``estimator`` in place with ``loss_fn`` under the estimator's noise.

    :param loss_fn: the objective of one batch (see :data:`LossFn`).
    :param m: noise draws per input and step.
    :param nb_epochs: epochs.
    :param batch_size: inputs per step.
    :param scheduler: a torch LR scheduler stepped once per epoch.
    :param on_epoch: called with ``(epoch, nb_epochs)`` before every epoch (e.g. SmoothAdv's ε warm-up).
    :param training_mode: the model's mode during the steps (ART's meaning; ``False`` keeps batch-norm
        statistics and dropout frozen). The model is back in evaluation mode afterwards.
    :param drop_last: drop the last incomplete batch of every epoch (ART's meaning).
    :param verbose: a progress bar over epochs.
    :return: the mean loss of every epoch.
    """
    nb_epochs = check_int("nb_epochs", nb_epochs)
    batch_size = check_int("batch_size", batch_size)
    m = check_int("m", m)
    training_mode, drop_last = check_bool("training_mode", training_mode), check_bool("drop_last", drop_last)
    x, y = training_data(estimator, x, y)
    seed = estimator.call_seed()
    call = estimator.next_call(Stage.FIT)
    shuffle = torch.Generator().manual_seed(int(seed + 7919 * call) & 0x7FFFFFFFFFFFFFFF)
    gen = estimator.generator(seed, Stage.FIT, call)
    shape = tuple(estimator.input_shape)
    losses: list[float] = []
    try:
        for epoch in trange(nb_epochs, desc=desc, disable=not verbose):
            if on_epoch is not None:
                on_epoch(epoch, nb_epochs)
            total, seen = 0.0, 0
            order = torch.randperm(len(x), generator=shuffle).numpy()
            for b0 in range(0, len(x), batch_size):
                idx = order[b0:b0 + batch_size]
                if drop_last and len(idx) < batch_size:
                    break
                xb = torch.as_tensor(x[idx], device=estimator.device).to(estimator.noise_dtype)
                yb = torch.as_tensor(y[idx], device=estimator.device)
                z = estimator.sample_noise(len(idx) * m, gen).reshape(len(idx), m, *shape)
                estimator.set_training_mode(training_mode)
                loss = loss_fn(xb, yb, z)
                estimator.optimizer.zero_grad()
                loss.backward()
                estimator.optimizer.step()
                total += float(loss.detach()) * len(idx)
                seen += len(idx)
            losses.append(total / max(seen, 1))
            if scheduler is not None:
                scheduler.step()
    finally:
        estimator.set_eval()
    return losses
