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

Gradients through preprocessing defences that are not torch-native (e.g. ART's numpy
``SpatialSmoothing``) go through ART's own backward estimate (``estimate_gradient``, i.e. BPDA), as in
``PyTorchClassifier.loss_gradient``. Postprocessing defences act on output scores and ART gives them
no backward pass, so the differentiable path leaves them out (ART's own gradients do the same).
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["draw_noise", "noisy_copies", "base_logits", "smoothed_log_probs", "log_prob_gradient"]


def _check_m(m) -> int:
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
        raise ValueError(f"m (noise draws per gradient) must be an integer >= 1, got {m!r}.")
    return int(m)


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
    m = _check_m(m)
    shape = tuple(estimator.input_shape)
    lead = m if num_inputs is None else int(num_inputs) * m
    z = estimator.noise.sample(lead, shape, generator=generator, device=estimator._device,
                               dtype=estimator._noise_dtype)
    return z if num_inputs is None else z.reshape(int(num_inputs), m, *shape)


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


class _NumpyPreprocessing(torch.autograd.Function):
    """ART preprocessing that only runs on numpy arrays: forward through ``_apply_preprocessing``,
    backward through ART's ``_apply_preprocessing_gradient`` (each defence's ``estimate_gradient``)."""

    @staticmethod
    def forward(ctx, x, estimator):
        x_np = x.detach().cpu().numpy()
        ctx.estimator, ctx.x_np = estimator, x_np
        out, _ = estimator._apply_preprocessing(x_np, y=None, fit=False)
        return torch.as_tensor(np.asarray(out), device=x.device).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        g = ctx.estimator._apply_preprocessing_gradient(ctx.x_np, grad.detach().cpu().numpy())
        return torch.as_tensor(np.asarray(g), device=grad.device).to(grad.dtype), None


def base_logits(estimator, noisy: torch.Tensor) -> torch.Tensor:
    """Differentiable base-classifier outputs for inputs on the device (the pipeline of
    ``estimator._logits``: preprocessing defences, standardisation, model; no postprocessing)."""
    if estimator.all_framework_preprocessing:
        x_pre, _ = estimator._apply_preprocessing(noisy, y=None, fit=False, no_grad=False)
    else:
        x_pre = _NumpyPreprocessing.apply(noisy, estimator)
    return estimator._model(x_pre)[-1]


def _copies_log_softmax(estimator, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    noisy = noisy_copies(estimator.noise, x, z)
    n, k = noisy.shape[:2]
    logits = base_logits(estimator, noisy.reshape(n * k, *noisy.shape[2:]))
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
    x = x.to(device=estimator._device, dtype=estimator._noise_dtype)
    if noise_draws is None:
        m = _check_m(estimator.eot_samples if m is None else m)
        noise_draws = draw_noise(estimator, m, x.shape[0], generator=generator)
    logp = _copies_log_softmax(estimator, x, noise_draws)
    return torch.logsumexp(logp, dim=1) - math.log(logp.shape[1])


def log_prob_gradient(estimator, x: torch.Tensor, labels: torch.Tensor, noise_draws: torch.Tensor,
                      batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """``(∇_x log ḡ_label(x), log ḡ_label(x))`` with ``ḡ`` estimated over the shared draws
    ``noise_draws`` ``(m, *shape)``, at most ``batch_size`` noisy copies per forward pass.

    Memory is bounded by ``batch_size`` whatever ``m``: inputs are processed in chunks of
    ``c = max(1, batch_size // m)`` and the draws in blocks of ``k = min(m, batch_size)``, and the
    blocks are merged exactly in the log domain: with L_b = log Σ_{j∈b} p_j,
    ∇ log Σ_j p_j = Σ_b exp(L_b − L)·∇L_b, L = logsumexp_b L_b.

    :param x: ``(N, *shape)`` on the device (no grad needed).
    :param labels: ``(N,)`` int64 class indices.
    :return: gradient ``(N, *shape)`` (detached, model dtype) and log-probabilities ``(N,)`` (float64).
    """
    x = x.detach().to(device=estimator._device, dtype=estimator._noise_dtype)
    labels = labels.to(device=estimator._device, dtype=torch.int64)
    m = noise_draws.shape[0]
    block = min(m, batch_size)
    chunk = max(1, batch_size // block)
    grads = torch.empty_like(x)
    log_probs = torch.empty(x.shape[0], dtype=torch.float64, device=x.device)
    for i0 in range(0, x.shape[0], chunk):
        xc, yc = x[i0:i0 + chunk], labels[i0:i0 + chunk]
        total = torch.full((xc.shape[0],), -math.inf, dtype=torch.float64, device=x.device)
        g = torch.zeros_like(xc)
        for j0 in range(0, m, block):
            xg = xc.clone().requires_grad_(True)
            with torch.enable_grad():
                logp = _copies_log_softmax(estimator, xg, noise_draws[j0:j0 + block])
                lb = torch.logsumexp(logp.gather(2, yc[:, None, None].expand(-1, logp.shape[1], 1))[..., 0], dim=1)
                (gb,) = torch.autograd.grad(lb.sum(), xg)
            lb = lb.detach().double()
            new_total = torch.logaddexp(total, lb)
            w_old = torch.exp(total - new_total).to(g.dtype)
            w_new = torch.exp(lb - new_total).to(g.dtype)
            shape = (-1,) + (1,) * (xc.dim() - 1)
            g = g * w_old.reshape(shape) + gb * w_new.reshape(shape)
            total = new_total
        grads[i0:i0 + chunk] = g
        log_probs[i0:i0 + chunk] = total - math.log(m)
    return grads, log_probs
