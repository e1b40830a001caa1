"""Expectation over Transformation (EOT) for smoothed classifiers: differentiable smoothed log-probabilities.

The smoothed soft classifier is ḡ(x) = E_z[softmax(f(perturb(x, z)))], with f the base classifier
(preprocessing defences, standardisation, model). Its Monte Carlo estimate over m draws z_1..z_m is

    log ḡ_c(x) ≈ log (1/m) Σ_j softmax(f(perturb(x, z_j)))_c
              = logsumexp_j log_softmax(f(perturb(x, z_j)))_c − log m,

and the attack/training loss is its negative log-likelihood −log ḡ_y(x) (Salman et al., 2019,
"SmoothAdv", eq. (S)). Why not the mean cross-entropy (1/m) Σ_j −log softmax(·)_y (Hayes 2020 §3.4,
Cohen et al.'s appendix)? By Jensen, mean cross-entropy upper-bounds −log ḡ_y and its gradient is
dominated by the draws the base classifier already gets wrong (their −log p is large), whereas the
smoothed prediction is decided by the *average probability*: −log ḡ_y weighs draw j by p_j/Σ p, i.e.
it pushes down the draws that still vote for y, which is what flips the smoothed classifier.
Salman et al. report clearly stronger attacks with it.

Non-additive noise. For additive noise perturb(x, z) = x + z and d noisy/dx = I. A non-additive noise
(e.g. splitting noise) may make perturb piecewise constant in x, whose pathwise derivative is zero almost
everywhere, though ḡ itself is smooth in x (the *distribution* of the noisy input moves). We then use a
straight-through estimator, generic in the noise: ``noisy = x + (perturb(x, z) − x).detach()`` — the
forward value is exact, the Jacobian d noisy/dx is taken as the identity. The resulting gradient is
E_z[∇f(perturb(x, z))·...], the base classifier's gradient at the noisy points (BPDA, Athalye et al.,
2018): a biased but informative ascent direction for the smoothed loss, not its exact gradient.

The base classifier's differentiable forward pass is the estimator's ``base_logits(noisy, grad=True)``:
preprocessing defences that are not torch-native (e.g. ART's numpy ``SpatialSmoothing``) go through ART's
own backward estimate (``estimate_gradient``, i.e. BPDA), as in ``PyTorchClassifier.loss_gradient``.
Postprocessing defences act on output scores and ART gives them no backward pass, so the differentiable
path leaves them out (ART's own gradients do the same).

This module is part of the engine (the estimator's floor): ``SmoothedClassifier.loss_gradient``,
``class_gradient`` and ``compute_loss`` are thin calls into it, and the attacks and trainers above use the
same functions.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from art_smoothing.checks import check_int, labels_as_indices
from art_smoothing.engine.streams import Stage

__all__ = [
    "EOTGradient",
    "copies_log_softmax",
    "draw_noise",
    "gradient_noise",
    "log_prob_gradient",
    "noisy_copies",
    "smoothed_class_gradient",
    "smoothed_log_probs",
    "smoothed_loss",
    "smoothed_loss_gradient",
]


def draw_noise(estimator, m: int, num_inputs: int | None = None, *, generator: torch.Generator | None = None
               ) -> torch.Tensor:
    """Draw EOT noise from the estimator's own noise, on its device, in the model's dtype.

    :param estimator: a :class:`~art_smoothing.SmoothedClassifier`.
    :param m: draws per input.
    :param num_inputs: ``None`` for ``m`` draws shared by every input, shape ``(m, *input_shape)``;
        an integer N for independent draws per input, shape ``(N, m, *input_shape)``.
    :param generator: a ``torch.Generator`` on the estimator's device (``None``: torch's global one).
    :return: the draws ``z`` (pass them back as ``noise_draws`` to reuse them across steps).
    """
    m = check_int("m (noise draws per gradient)", m)
    z = estimator.sample_noise(m if num_inputs is None else int(num_inputs) * m, generator)
    return z if num_inputs is None else z.reshape(int(num_inputs), m, *tuple(estimator.input_shape))


def noisy_copies(noise, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Noisy copies ``(N, m, *shape)`` of ``x`` ``(N, *shape)`` under draws ``z`` — ``(m, *shape)``
    shared or ``(N, m, *shape)`` per input — differentiable in ``x``.

    Additive noise: exact (``x + z``). Non-additive noise: straight-through estimator, value
    ``perturb(x, z)``, Jacobian w.r.t. ``x`` taken as the identity (see the module docstring).
    """
    xb = x.unsqueeze(1)
    zb = z.unsqueeze(0) if z.dim() == x.dim() else z
    noisy = noise.perturb(xb, zb)
    if not getattr(noise, "additive", True):
        xe = xb.expand_as(noisy)
        noisy = xe + (noisy - xe).detach()
    return noisy


def copies_log_softmax(estimator, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Log-softmax of the base classifier ``(N, m, nb_classes)`` on the noisy copies of ``x`` under ``z``
    (see :func:`noisy_copies`), differentiable in ``x`` and the model's parameters."""
    noisy = noisy_copies(estimator.noise, x, z)
    n, k = noisy.shape[:2]
    logits = estimator.base_logits(noisy.reshape(n * k, *noisy.shape[2:]), grad=True)
    return torch.log_softmax(logits.reshape(n, k, -1), dim=-1)


def smoothed_log_probs(estimator, x: torch.Tensor, noise_draws: torch.Tensor | None = None, *, m: int | None = None,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Monte Carlo log of the smoothed soft prediction, ``log mean_j softmax(f(perturb(x, z_j)))``.

    Differentiable w.r.t. ``x`` (and the model's parameters): use it for SmoothAdv-style training
    or custom attacks. All ``N·m`` noisy copies go through the model in one pass; for a memory
    bound independent of ``m`` use :func:`log_prob_gradient`.

    :param estimator: a :class:`~art_smoothing.SmoothedClassifier`.
    :param x: clean inputs ``(N, *input_shape)`` (a tensor; moved to the device and model dtype).
    :param noise_draws: draws from :func:`draw_noise` — ``(m, *shape)`` shared or ``(N, m, *shape)``
        per input. ``None``: draw ``m`` fresh independent draws per input from ``generator``.
    :param m: draws per input when ``noise_draws`` is None (default ``estimator.eot_samples``).
    :param generator: generator for fresh draws.
    :return: ``(N, nb_classes)`` log-probabilities of the smoothed soft classifier.
    """
    x = x.to(device=estimator.device, dtype=estimator.noise_dtype)
    if noise_draws is None:
        m = check_int("m (noise draws per gradient)", estimator.eot_samples if m is None else m)
        noise_draws = draw_noise(estimator, m, x.shape[0], generator=generator)
    logp = copies_log_softmax(estimator, x, noise_draws)
    return torch.logsumexp(logp, dim=1) - math.log(logp.shape[1])


class EOTGradient(NamedTuple):
    """Output of :func:`log_prob_gradient` (ḡ = ḡ_label, the Monte Carlo smoothed probability)."""

    grad_logit: torch.Tensor  #: ∇_x log(ḡ / (1 − ḡ)), ``(N, *shape)``, model dtype, detached
    log_prob: torch.Tensor  #: log ḡ, ``(N,)`` float64
    log_comp: torch.Tensor  #: log(1 − ḡ) (computed from the other classes, not by subtraction), float64
    votes: torch.Tensor  #: hard votes of the base classifier over the draws, ``(N, nb_classes)`` int64

    @property
    def grad(self) -> torch.Tensor:
        """∇_x log ḡ = ∇ logit(ḡ) · (1 − ḡ)."""
        shape = (-1,) + (1,) * (self.grad_logit.dim() - 1)
        return self.grad_logit * torch.exp(self.log_comp).to(self.grad_logit.dtype).reshape(shape)


def _label_and_rest(logp: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per draw: log p_label and log(1 − p_label) = logsumexp of the other classes (no cancellation)."""
    idx = labels[:, None, None].expand(-1, logp.shape[1], 1)
    own = logp.gather(2, idx)[..., 0]
    rest = torch.logsumexp(logp.scatter(2, idx, -math.inf), dim=2)
    return own, rest


def log_prob_gradient(estimator, x: torch.Tensor, labels: torch.Tensor, noise_draws: torch.Tensor,
                      batch_size: int = 256) -> EOTGradient:
    """EOT gradient of the Monte Carlo smoothed probability ḡ_label(x) = (1/m) Σ_j p_j over the shared
    draws ``noise_draws`` ``(m, *shape)``, at most ``batch_size`` noisy copies per forward pass.

    Numerics. The gradient is returned for the log-odds F = log ḡ − log(1 − ḡ), with log(1 − ḡ)
    computed from the other classes' probabilities. Every function of ḡ alone has a gradient
    parallel to ∇F, and F's gradient is well scaled at both ends: when the base classifier is
    confident (p_j ≈ 1 on every draw) ∇ log ḡ underflows to zero in float32 — the softmax of the
    other classes is below 1e−45 — and an attack following −∇ log ḡ stalls, while ∇ log(1 − ḡ),
    the part of ∇F that dominates there, stays O(1). ``EOTGradient.grad`` recovers ∇ log ḡ exactly
    as ∇F · (1 − ḡ) (it may legitimately underflow).

    Memory is bounded by ``batch_size`` whatever ``m``: inputs go in chunks of
    ``c = max(1, batch_size // m)``, draws in blocks of ``k = min(m, batch_size)``. Blocks merge exactly:
    with L_b = log Σ_{j∈b} p_j and L = logsumexp_b L_b, ∇ log Σ_j p_j = Σ_b exp(L_b − L)·∇L_b (same for
    1 − p). With several blocks the weights need L first, so a forward-only pass precedes the
    gradient pass.

    :param x: ``(N, *shape)`` (moved to the device; no grad needed).
    :param labels: ``(N,)`` class indices.
    :param noise_draws: ``(m, *shape)`` draws from :func:`draw_noise`.
    :param batch_size: noisy copies per forward pass.
    """
    x = x.detach().to(device=estimator.device, dtype=estimator.noise_dtype)
    labels = torch.as_tensor(labels).to(device=estimator.device, dtype=torch.int64)
    m = noise_draws.shape[0]
    block = min(m, int(batch_size))
    chunk = max(1, int(batch_size) // block)
    blocks = range(0, m, block)
    n = x.shape[0]
    grads = torch.empty_like(x)
    log_own = torch.empty(n, dtype=torch.float64, device=x.device)
    log_rest = torch.empty(n, dtype=torch.float64, device=x.device)
    votes = torch.zeros((n, estimator.nb_classes), dtype=torch.int64, device=x.device)
    for i0 in range(0, n, chunk):
        xc, yc = x[i0:i0 + chunk], labels[i0:i0 + chunk]
        if len(blocks) > 1:  # totals first (forward only), for the merge weights
            with torch.no_grad():
                parts = [_label_and_rest(copies_log_softmax(estimator, xc, noise_draws[j0:j0 + block]), yc)
                         for j0 in blocks]
            tot_own = torch.logsumexp(torch.stack([p[0].double().logsumexp(1) for p in parts]), 0)
            tot_rest = torch.logsumexp(torch.stack([p[1].double().logsumexp(1) for p in parts]), 0)
        g = torch.zeros_like(xc)
        for j0 in blocks:
            xg = xc.clone().requires_grad_(True)
            with torch.enable_grad():
                logp = copies_log_softmax(estimator, xg, noise_draws[j0:j0 + block])
                own, rest = _label_and_rest(logp, yc)
                lo, lr = torch.logsumexp(own, dim=1), torch.logsumexp(rest, dim=1)
                if len(blocks) > 1:
                    w_o = torch.exp(lo.detach().double() - tot_own).to(lo.dtype)
                    w_r = torch.exp(lr.detach().double() - tot_rest).to(lr.dtype)
                    objective = (w_o * lo - w_r * lr).sum()
                else:
                    objective = (lo - lr).sum()
                (gb,) = torch.autograd.grad(objective, xg)
            g += gb
            votes[i0:i0 + chunk] += torch.nn.functional.one_hot(
                logp.detach().argmax(dim=-1), estimator.nb_classes).sum(dim=1)
            if len(blocks) == 1:
                tot_own, tot_rest = lo.detach().double(), lr.detach().double()
        grads[i0:i0 + chunk] = g
        log_own[i0:i0 + chunk] = tot_own - math.log(m)
        log_rest[i0:i0 + chunk] = tot_rest - math.log(m)
    return EOTGradient(grads, log_own, log_rest, votes)


# ---------------------------------------------------------------------- ART estimator interface
def _labels_from(y, n: int, nb_classes: int, device) -> torch.Tensor:
    """Class indices on ``device`` from ART-style labels: indices ``(N,)`` or one-hot/scores ``(N, C)``."""
    return torch.as_tensor(labels_as_indices(y, nb_classes, n=n)).to(device=device, dtype=torch.int64)


def gradient_noise(estimator, m: int | None = None) -> torch.Tensor:
    """Fresh shared draws ``(m, *shape)`` from the estimator's ``Stage.GRADIENT`` stream, keyed by its
    gradient-call counter (``loss_gradient`` and the attacks share it, so the stream advances with every
    call and a seeded estimator gives the same sequence of draws run after run)."""
    m = check_int("eot_samples", estimator.eot_samples if m is None else m)
    gen = estimator.generator(estimator.call_seed(), Stage.GRADIENT, estimator.next_call(Stage.GRADIENT))
    return draw_noise(estimator, m, generator=gen)


def _prepare(estimator, x, training_mode: bool, eot_samples, noise_draws, batch_size):
    is_tensor = isinstance(x, torch.Tensor)
    x_t = x.detach() if is_tensor else torch.as_tensor(estimator.check_x(x))
    if tuple(x_t.shape[1:]) != tuple(estimator.input_shape):
        raise ValueError(f"x must have shape (N, *{tuple(estimator.input_shape)}), got {tuple(x_t.shape)}.")
    batch_size = check_int("batch_size", 256 if batch_size is None else batch_size)
    if noise_draws is None:
        noise_draws = gradient_noise(estimator, eot_samples)
    elif tuple(noise_draws.shape[1:]) != tuple(estimator.input_shape) or noise_draws.dim() != x_t.dim():
        raise ValueError(f"noise_draws must have shape (m, *{tuple(estimator.input_shape)}), "
                         f"got {tuple(noise_draws.shape)}.")
    estimator.set_training_mode(bool(training_mode))
    return is_tensor, x_t, noise_draws.to(estimator.device), batch_size


def _out(grad: torch.Tensor, x, is_tensor: bool):
    if is_tensor:
        return grad.to(device=x.device, dtype=x.dtype)
    return grad.cpu().numpy().astype(np.asarray(x).dtype if np.asarray(x).dtype.kind == "f" else np.float32)


def smoothed_loss_gradient(estimator, x, y, *, training_mode: bool = False, eot_samples: int | None = None,
                           noise_draws: torch.Tensor | None = None, batch_size: int | None = None):
    """``SmoothedClassifier.loss_gradient``: ∇_x of −log ḡ_y(x) per input (no batch averaging), numpy or
    torch in, same type out (on ``x``'s device)."""
    is_tensor, x_t, z, batch_size = _prepare(estimator, x, training_mode, eot_samples, noise_draws, batch_size)
    labels = _labels_from(y, x_t.shape[0], estimator.nb_classes, estimator.device)
    grad = log_prob_gradient(estimator, x_t, labels, z, batch_size).grad
    return _out(-grad, x, is_tensor)


def smoothed_class_gradient(estimator, x, label=None, *, training_mode: bool = False,
                            eot_samples: int | None = None, noise_draws: torch.Tensor | None = None,
                            batch_size: int | None = None):
    """``SmoothedClassifier.class_gradient``: ∇_x log ḡ_c(x) — the smoothed classifier's log-probabilities
    play the role of ART's class outputs — with ART's shapes: ``(N, nb_classes, *shape)`` for
    ``label=None``, ``(N, 1, *shape)`` for an int or one label per input. All classes use the same draws."""
    is_tensor, x_t, z, batch_size = _prepare(estimator, x, training_mode, eot_samples, noise_draws, batch_size)
    n = x_t.shape[0]
    if label is None:
        classes = [torch.full((n,), c, dtype=torch.int64) for c in range(estimator.nb_classes)]
    elif isinstance(label, (int, np.integer)) and not isinstance(label, bool):
        if not 0 <= int(label) < estimator.nb_classes:
            raise ValueError(f"label must be in [0, {estimator.nb_classes}), got {label}.")
        classes = [torch.full((n,), int(label), dtype=torch.int64)]
    else:
        lab = torch.as_tensor(np.asarray(label.cpu() if isinstance(label, torch.Tensor) else label)).reshape(-1)
        if lab.shape[0] != n or bool(((lab < 0) | (lab >= estimator.nb_classes)).any()):
            raise ValueError(f"label must be None, an int or {n} class indices in [0, {estimator.nb_classes}).")
        classes = [lab.to(torch.int64)]
    grads = torch.stack([log_prob_gradient(estimator, x_t, c, z, batch_size).grad for c in classes], dim=1)
    return _out(grads, x, is_tensor)


def smoothed_loss(estimator, x, y, *, reduction: str = "none", eot_samples: int | None = None,
                  noise_draws: torch.Tensor | None = None, batch_size: int | None = None):
    """``SmoothedClassifier.compute_loss``: −log ḡ_y(x) estimated over ``m`` draws."""
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}.")
    is_tensor, x_t, z, batch_size = _prepare(estimator, x, False, eot_samples, noise_draws, batch_size)
    labels = _labels_from(y, x_t.shape[0], estimator.nb_classes, estimator.device)
    chunk = max(1, batch_size // z.shape[0])
    with torch.no_grad():
        parts = [smoothed_log_probs(estimator, x_t[i:i + chunk], z).gather(
            1, labels[i:i + chunk, None].to(estimator.device))[:, 0] for i in range(0, x_t.shape[0], chunk)]
    loss = -torch.cat(parts) if parts else torch.zeros(0, device=estimator.device)
    loss = {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]
    return loss.to(x.device) if is_tensor else loss.cpu().numpy()
