"""SmoothMix (Jeong et al., 2021) for every noise: mixup between an input and its adversarial point against
the smoothed soft classifier, under the estimator's own noise and in the norm of its certificate."""

from __future__ import annotations

import numpy as np
import torch

from art_smoothing.certificates.norms import norm_name, parse_norm
from art_smoothing.checks import check_fraction, check_int, check_positive
from art_smoothing.engine.eot import smoothed_log_probs
from art_smoothing.engine.streams import Stage
from art_smoothing.geometry import clip_to_box, project_lp_ball, steepest_ascent_direction
from art_smoothing.training.augmentation import SmoothingTrainer, per_noise_default

__all__ = ["DEFAULT_ETA", "DEFAULT_STEP_STD", "SmoothMixTrainer", "default_step_size"]

#: default search step α in units of the noise's per-coordinate standard deviation and default η, by noise
#: name (``step_size = DEFAULT_STEP_STD[noise.name] · noise.std`` in the noise's own norm); other noises take
#: the entry of their norm (``"l2"`` / ``"l1"`` / ``"linf"``). Chosen by ``benchmarks/training.py --sweep`` over
#: η ∈ {1, 5} × α/std ∈ {0.5, 2} (``docs/training.md``); with T = 4 steps, α = 2 std is the authors' CIFAR-10
#: setting (α = 2σ). The ℓ∞ entries (mixed-norm noise) are not swept (no ℓ∞ noise in the benchmark): a sign
#: step moves every coordinate, so they are small, as SmoothAdv's.
DEFAULT_STEP_STD = {"gaussian": 2.0, "laplace": 2.0, "uniform": 2.0, "l2": 2.0, "l1": 2.0,
                    "linf": 0.1}
DEFAULT_ETA = {"gaussian": 5.0, "laplace": 5.0, "uniform": 1.0, "l2": 5.0, "l1": 5.0, "linf": 1.0}


def default_step_size(noise) -> float:
    """The default SmoothMix step α for ``noise`` (see :data:`DEFAULT_STEP_STD`)."""
    return per_noise_default(DEFAULT_STEP_STD, noise) * float(noise.std)


class SmoothMixTrainer(SmoothingTrainer):
    """Jeong et al. (2021), "SmoothMix: Training Confidence-calibrated Smoothed Classifiers for Certified
    Robustness" (NeurIPS), under the estimator's own noise and in the norm of its certificate.

    For every input (x, y) and its m noise draws z_1..z_m (fresh every step, the same draws in every part of
    the step), with F the base classifier's softmax and F̂(x) = (1/m) Σ_j F(perturb(x, z_j)) the Monte Carlo
    smoothed soft classifier:

    1. **adversarial search along the smoothed classifier** (no norm constraint): x⁽⁰⁾ = x and, for
       t < T = ``num_steps``, x⁽ᵗ⁺¹⁾ = x⁽ᵗ⁾ + α·d⁽ᵗ⁾, with d⁽ᵗ⁾ the unit steepest-ascent direction, in
       ``norm``, of −log F̂_y at x⁽ᵗ⁾ (ℓ2: ∇/‖∇‖₂, the paper's step; ℓ1: the sparse top-coordinates step;
       ℓ∞: sign), each step followed by the projection on the ball ‖x⁽ᵗ⁺¹⁾ − x‖ ≤ ``maxnorm`` (if given)
       and on the box ``clip_values``. The model is in evaluation mode. x̂ = x⁽ᵀ⁾.
    2. **the clean side** x̃ = x⁽ˢ⁾ with s = ``mix_step`` (s = 0: x itself; s = 1: the paper's "one-step
       adversary"), projected on the ball of radius ``maxnorm_s`` · w (default α·s·w, w the warm-up factor).
    3. **self-mixup**: λ ~ U[0, 1/2] per input, x_mix = (1 − λ)·x̃ + λ·x̂, and the soft target
       y_mix = (1 − λ)·F̂(x̃) + λ·u with u the uniform distribution over the classes: the further along the
       adversarial direction, the less confident the smoothed classifier should be.
    4. **loss**: L = (1/m) Σ_j CE(F(perturb(x̃, z_j)), y)
       + η·w·1[argmax F̂(x̃) = y]·(1/m) Σ_j KL(y_mix ‖ F(perturb(x_mix, z_j))), averaged over the batch.

    Warm-up (the authors' schedule): in epoch e (0-based, per ``fit`` call) w = min(1, (e + 1)/``warmup``).
    Mixing coefficients are drawn from a seeded stream of the estimator (``Stage.FIT``) during ``fit``, so a
    seeded run is reproducible; ``compute_loss`` also accepts them (``mix_weights``) to replay a step.

    Non-additive noise (splitting): the adversary moves the clean input and the copies are the noise's own
    noisy inputs perturb(·, z_j); the search uses the straight-through gradient of
    :mod:`art_smoothing.engine.eot` (as :class:`SmoothAdvTrainer`). Other norms than ℓ2 are a generalisation
    of the paper (which is ℓ2-only, for Gaussian noise): the search moves in the norm the noise certifies.

    Faithfulness. With :class:`~art_smoothing.noise.GaussianNoise`, identity preprocessing and clip values
    (0, 1), one step is the step of the authors' code and of ART 1.20's ``PyTorchSmoothMix`` from the same
    weights, draws and mixing coefficients (tested: same loss and gradient). As in both, F̂(x̃) in the target
    y_mix is not detached (the KL term's gradient also reaches the clean copies) and the search uses the
    smoothed soft classifier's log-likelihood with the same draws as the training step. Where ART deviates:
    (i) its ``alpha`` is at once the certification failure probability of ``RandomizedSmoothingMixin`` and the
    search's step size, so its default 0.001 leaves the search at x (almost no adversary), and a useful step
    (the authors use α = 0.5–2) makes its ``certify`` run at failure probability α; here the step is
    ``step_size``; (ii) it adds the noise after the classifier's preprocessing (its σ is in standardised
    units) and clamps the search to [0, 1] whatever ``clip_values``; here the noise goes on the raw input
    and the box is ``clip_values``; (iii) like the authors' code, every batch is cut into ``num_noise_vec``
    mini-batches of ``len(batch) // num_noise_vec`` inputs (the remainder is dropped, a batch smaller than
    ``num_noise_vec`` trains on nothing); here a step is ``batch_size`` inputs × m copies.

    :param classifier: the :class:`~art_smoothing.SmoothedClassifier`.
    :param eta: η >= 0, weight of the mixup loss (the paper: 1–5 on MNIST, 5 on CIFAR-10; ``None``:
        :data:`DEFAULT_ETA` for the noise).
    :param m: noise draws per input and step (the paper: 4 on MNIST, 2 on CIFAR-10).
    :param num_steps: T >= 1, steps of the adversarial search.
    :param step_size: α > 0 in ``norm`` (``None``: :func:`default_step_size`, a multiple of the noise's std).
    :param warmup: epochs over which η and ``maxnorm_s`` grow linearly (>= 1; 1 = no warm-up).
    :param mix_step: s in [0, T): which point of the search is the clean side (0: x; 1: one-step adversary).
    :param maxnorm: radius of the ball the search stays in (``None``: unconstrained, the paper's default).
    :param maxnorm_s: radius of the ball of the clean side (``None``: α·s).
    :param norm: the search's norm, any p >= 1 or inf (``None``: the noise's own norm).
    :param l1_top_fraction: for ℓ1, the fraction of coordinates moved per step, in (0, 1].
    :param verbose: progress bar.
    """

    name = "smoothmix"
    trainer_params = ("eta", "m", "num_steps", "step_size", "warmup", "mix_step", "maxnorm", "maxnorm_s", "norm",
                      "l1_top_fraction")

    def __init__(self, classifier, eta: float | None = None, m: int = 4, num_steps: int = 4, step_size: float | None = None,
                 warmup: int = 1, mix_step: int = 0, maxnorm: float | None = None, maxnorm_s: float | None = None,
                 norm=None, l1_top_fraction: float = 0.1, verbose: bool = True) -> None:
        super().__init__(classifier, verbose=verbose)
        est = self._classifier
        if est.nb_classes < 2:
            raise ValueError("SmoothMix needs at least two classes (its target mixes in the uniform distribution).")
        self.eta = (per_noise_default(DEFAULT_ETA, est.noise) if eta is None
                    else check_positive("eta", eta, allow_zero=True))
        self.m = check_int("m", m)
        self.num_steps = check_int("num_steps", num_steps)
        self.warmup = check_int("warmup", warmup)
        self.mix_step = check_int("mix_step", mix_step, minimum=0)
        if self.mix_step >= self.num_steps:
            raise ValueError(f"mix_step must be in [0, num_steps) = [0, {self.num_steps}) (the clean side is a point "
                             f"of the search before its end), got {mix_step!r}.")
        try:
            self.norm = est.noise.norm if norm is None else parse_norm(norm)
        except ValueError as err:
            raise ValueError(f"norm: {err}") from None
        self.step_size = default_step_size(est.noise) if step_size is None else check_positive("step_size", step_size)
        self.maxnorm = None if maxnorm is None else check_positive("maxnorm", maxnorm)
        self.maxnorm_s = None if maxnorm_s is None else check_positive("maxnorm_s", maxnorm_s, allow_zero=True)
        self.l1_top_fraction = check_fraction("l1_top_fraction", l1_top_fraction)
        #: the warm-up factor w in use (set per epoch by ``fit``)
        self.warmup_factor = 1.0
        self._mix_generator: torch.Generator | None = None
        self._fits = 0

    def __repr__(self) -> str:
        return (f"SmoothMixTrainer(eta={self.eta}, m={self.m}, num_steps={self.num_steps}, "
                f"step_size={self.step_size:g}, warmup={self.warmup}, mix_step={self.mix_step}, "
                f"norm={norm_name(self.norm)!r})")

    # ------------------------------------------------------------------ schedule and streams
    def _start_epoch(self, epoch: int, nb_epochs: int) -> None:
        self.warmup_factor = min(1.0, (epoch + 1) / self.warmup)

    def _begin_fit(self) -> None:
        est = self._classifier
        self._fits += 1
        # Mixing coefficients: their own stream, keyed (FIT, 0, fit number) — disjoint from the loop's (FIT, call).
        self._mix_generator = est.generator(est.call_seed(), Stage.FIT, 0, self._fits)

    def _end_fit(self) -> None:
        self._mix_generator = None
        self.warmup_factor = 1.0

    def draw_mix_weights(self, num_inputs: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """λ ~ U[0, 1/2] for each of ``num_inputs`` inputs (float32, on the estimator's device); ``generator``
        ``None``: the trainer's stream during ``fit``, torch's global generator otherwise."""
        est = self._classifier
        gen = generator if generator is not None else self._mix_generator
        return torch.rand(num_inputs, generator=gen, device=est.device) / 2

    # ------------------------------------------------------------------ the search
    def _to_ball_and_box(self, x: torch.Tensor, point: torch.Tensor, radius: float | None) -> torch.Tensor:
        if radius is not None:
            point = x + project_lp_ball(point - x, radius, self.norm)
        clip = self._classifier.clip_values
        if clip is not None:
            lo, hi = (float(v) for v in np.broadcast_to(np.asarray(clip, dtype=np.float64), (2,)))
            point = clip_to_box(point, lo, hi)
        return point.detach()

    def attack(self, x, y, noise_draws: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The clean side x̃ and the adversarial point x̂ of steps 1–2 of the class docstring (detached).

        :param x: clean inputs ``(B, *input_shape)``.
        :param y: labels.
        :param noise_draws: ``(B, m, *input_shape)`` draws (``None``: fresh from torch's global generator).
        """
        est = self._classifier
        x, y, z = self._as_batch(x, y, noise_draws)
        was_training = est.model.training
        est.set_eval()
        adv, clean = x.detach(), x.detach()
        try:
            for t in range(self.num_steps):
                if t == self.mix_step:
                    clean = adv
                adv = adv.clone().requires_grad_(True)
                with torch.enable_grad():
                    loss = -smoothed_log_probs(est, adv, noise_draws=z).gather(1, y[:, None]).sum()
                    (grad,) = torch.autograd.grad(loss, adv)
                adv = adv.detach() + self.step_size * steepest_ascent_direction(grad, self.norm, self.l1_top_fraction)
                adv = self._to_ball_and_box(x, adv, self.maxnorm)
        finally:
            est.set_training_mode(was_training)
        radius_s = (self.step_size * self.mix_step if self.maxnorm_s is None else self.maxnorm_s) * self.warmup_factor
        return self._to_ball_and_box(x, clean, radius_s), adv

    # ------------------------------------------------------------------ the objective
    def compute_loss(self, x, y, noise_draws: torch.Tensor | None = None,
                     mix_weights: torch.Tensor | None = None) -> torch.Tensor:
        """SmoothMix's objective of one batch (step 4 of the class docstring).

        :param mix_weights: λ per input ``(B,)`` in [0, 1/2] (``None``: :meth:`draw_mix_weights`).
        """
        est = self._classifier
        x, y, z = self._as_batch(x, y, noise_draws)
        clean, adv = self.attack(x, y, z)
        lam = self.draw_mix_weights(x.shape[0]) if mix_weights is None else torch.as_tensor(mix_weights)
        lam = lam.to(device=x.device, dtype=x.dtype).reshape(-1)
        if lam.shape[0] != x.shape[0] or bool(((lam < 0) | (lam > 0.5)).any()):
            raise ValueError(f"mix_weights must be {x.shape[0]} values in [0, 1/2], one per input.")
        logits, y_pre = self.noisy_logits(clean, y, z)  # (B, m, C)
        b, m, c = logits.shape
        cross_entropy = est.loss(logits.reshape(b * m, c), y_pre)
        smoothed = torch.softmax(logits, dim=-1).mean(dim=1)  # F̂(x̃), not detached (as the authors and ART)
        correct = (smoothed.argmax(dim=-1) == y).to(logits.dtype)
        shape = (-1,) + (1,) * (x.dim() - 1)
        x_mix = (1 - lam).reshape(shape) * clean + lam.reshape(shape) * adv
        target = (1 - lam)[:, None] * smoothed + lam[:, None] / c  # (B, C)
        logits_mix, _ = self.noisy_logits(x_mix, y, z)
        log_q = torch.log_softmax(logits_mix, dim=-1)  # (B, m, C)
        kl = (torch.xlogy(target, target).unsqueeze(1) - target.unsqueeze(1) * log_q).sum(-1)  # (B, m)
        mixup = (correct[:, None] * kl).mean()
        return cross_entropy + self.eta * self.warmup_factor * mixup

