"""MACER (Zhai et al., 2020) for every noise: the radius in the hinge is the noise's own certificate."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import norm as _std_normal

from art_smoothing.certificates.norms import norm_name, parse_norm
from art_smoothing.checks import check_int, check_positive
from art_smoothing.training.augmentation import SmoothingTrainer, per_noise_default

__all__ = ["DEFAULT_FORM", "DEFAULT_LBD_STD", "DEFAULT_WARMUP", "MACERTrainer", "RadiusEnvelope", "default_lbd"]

#: MACER's default hinge ξ = Φ⁻¹(p_A) − Φ⁻¹(p_B) ≤ γ = 8, i.e. (p_A, p_B) = (Φ(4), Φ(−4)).
_MACER_P_A, _MACER_P_B = float(_std_normal.cdf(4.0)), float(_std_normal.cdf(-4.0))

#: default λ·std by noise name (λ = DEFAULT_LBD_STD[noise.name] / noise.std); other noises take the entry of
#: their norm (``"l2"``, ``"l1"``, ``"linf"``). MACER's λ = 12 at σ = 0.25 is 3. Chosen by
#: ``benchmarks/training.py --sweep`` over {0.1, 0.4, 1.2, 3} × warm-up {1, 3} (``docs/training.md``).
DEFAULT_LBD_STD = {"gaussian": 0.1, "laplace": 0.1, "uniform": 3.0, "l2": 0.1, "l1": 0.1, "linf": 0.1}
#: default warm-up (epochs over which λ ramps in from 0) by noise name, same fallbacks
DEFAULT_WARMUP = {"gaussian": 1, "laplace": 1, "uniform": 3, "l2": 1, "l1": 1, "linf": 1}
#: default form of the radius in the hinge
DEFAULT_FORM = "multiclass"


def default_lbd(noise) -> float:
    """The default MACER weight λ for ``noise`` (see :data:`DEFAULT_LBD_STD`)."""
    return per_noise_default(DEFAULT_LBD_STD, noise) / float(noise.std)


class RadiusEnvelope:
    """A sound, differentiable surrogate of a certificate that is not a differentiable torch function
    (e.g. the tabulated variational certificates of power-law and mixed-norm noise, which are step functions
    of (p_A, p_B)).

    The exact certificate R(p_A, p_B) (float64, ``noise.certified_radius``, the same function certification
    uses) is evaluated once on a grid g_0 = 0 < g_1 < … < g_K = 1 of both probabilities, T[i, j] = R(g_i, g_j),
    with g_i = Φ(t_i) for t_i evenly spaced in [−t_max, t_max] (dense where Φ⁻¹-type certificates change
    fast). For p_A ∈ [g_i, g_{i+1}] and p_B ∈ [g_j, g_{j+1}] the surrogate is the bilinear interpolation
    over that cell of the corner values shifted by one cell in the *safe* direction — T[i−1, j+1],
    T[i, j+1], T[i−1, j+2], T[i, j+2] (0 outside the table). Every certificate is non-decreasing in p_A and
    non-increasing in p_B, so each of these corners is ≤ T[i, j+1] = R(g_i, g_{j+1}) ≤ R(p_A, p_B): the
    surrogate is a lower bound on the exact radius (it never credits more robustness than certified), it is
    piecewise bilinear with non-zero slope wherever R grows across cells, and it lags the exact radius by
    about one grid cell. Where the exact certificate is itself constant over more than a cell (a tabulated
    certificate between its radius steps when the table is coarser than the grid, or beyond its largest
    radius) the surrogate is flat there too. Built with K = ``size`` grid steps per axis: K² certificate
    evaluations, once (about a second for the 512-radius tables of power-law and mixed-norm noise).
    """

    def __init__(self, radius_np, size: int = 128, t_max: float = 6.0):
        t = np.linspace(-t_max, t_max, size - 1)
        grid = np.concatenate([[0.0], _std_normal.cdf(t), [1.0]])
        a, b = np.meshgrid(grid, grid, indexing="ij")
        table = np.asarray(radius_np(a.ravel(), b.ravel()), dtype=np.float64).reshape(a.shape)
        finite = table[np.isfinite(table)]
        table = np.nan_to_num(table, nan=0.0, posinf=float(finite.max()) if finite.size else 0.0)
        # shifted[i, j] = T[i - 1, j + 1] (0 outside): the value used at grid node (g_i, g_j).
        shifted = np.zeros_like(table)
        shifted[1:, :-1] = table[:-1, 1:]
        self.grid = torch.as_tensor(grid)
        self.shifted = torch.as_tensor(shifted)

    def __call__(self, p_a: torch.Tensor, p_b: torch.Tensor) -> torch.Tensor:
        grid = self.grid.to(device=p_a.device, dtype=p_a.dtype)
        values = self.shifted.to(device=p_a.device, dtype=p_a.dtype)
        k = grid.numel() - 1

        def cell(p):
            i = (torch.searchsorted(grid, p.detach().contiguous(), right=True) - 1).clamp(0, k - 1)
            w = ((p - grid[i]) / (grid[i + 1] - grid[i])).clamp(0.0, 1.0)
            return i, w

        i, wa = cell(p_a)
        j, wb = cell(p_b)
        v00, v10 = values[i, j], values[i + 1, j]
        v01, v11 = values[i, j + 1], values[i + 1, j + 1]
        out = (1 - wa) * ((1 - wb) * v00 + wb * v01) + wa * ((1 - wb) * v10 + wb * v11)
        return torch.where(p_a > p_b, out, torch.zeros_like(out))


class MACERTrainer(SmoothingTrainer):
    """Zhai et al. (2020), "MACER: Attack-free and Scalable Robust Training via Maximizing Certified Radius",
    Algorithm 1, with the noise's own certificate in place of Cohen et al.'s Gaussian radius, and a warm-up
    that ramps the radius term in.

    With m noisy copies x̃_j = perturb(x, z_j) of each input and base-classifier logits u(x̃_j):

    * soft smoothed classifier ĝ(x) = (1/m) Σ_j softmax(u(x̃_j)); classification loss −log(ĝ_y(x) + 1e-10);
    * with inverse temperature β, ĝ^β(x) = (1/m) Σ_j softmax(β·u(x̃_j)); on inputs where its top class is
      y, p_A, p_B are its two largest entries and R(p_A, p_B) the noise's certificate in ``norm``
      (:meth:`Noise.certified_radius_torch`, the same definition certification uses, here in the model's
      dtype and differentiable). Robustness loss: max(γ − R, 0);
    * L = (1/B) Σ_batch [classification + λ_e · 1[correct] · max(γ − R, 0)], with λ_e = λ·min(1, e/``warmup``)
      in epoch e (0-based, per ``fit`` call): epoch 0 is pure classification, then λ grows linearly.

    For Gaussian noise R = σ/2·(Φ⁻¹(p_A) − Φ⁻¹(p_B)) and the robustness loss is MACER's
    (λσ/2)·max(γ_MACER − ξ, 0) with ξ = Φ⁻¹(p_A) − Φ⁻¹(p_B) and γ = σ·γ_MACER/2: here γ is a threshold on
    the radius itself (in ``norm``), which is what makes it meaningful for every noise. As in MACER's and
    ART's code, the hinge is evaluated only where it is active and the radius is finite (R ≤ γ): elsewhere the
    term contributes exactly zero loss and zero gradient (no inf·0 from Φ⁻¹ at p = 0 or 1).

    Why the warm-up and the defaults in units of the noise's std (issue 18; numbers in ``docs/training.md``).
    With MACER's constants (λ = 12, no warm-up) the smoothed clean accuracy collapsed on digits (6 epochs,
    std 0.25: Gaussian 0.77, Laplace 0.68 against 0.91 for noise augmentation). Two causes, measured:

    1. *No warm-up.* An untrained network predicts one class for most inputs (210 of 256 at initialisation),
       so the "correct" inputs the hinge acts on are the ~10 % of that class, and its gradient is 9–15× the
       classification gradient: after the first epoch every input is predicted as that class (256 of 256 for
       Gaussian and Laplace noise) and Laplace stays there for three epochs. Starting the hinge after one
       epoch of classification and ramping λ in removes the collapse (Gaussian 0.77 → 0.85–0.87, Laplace
       0.68 → 0.79–0.82 in the same run); the SmoothMix authors' MACER baselines use the same deferred start.
    2. *The hinge's scale in each noise's radius units.* λ multiplies a radius, so its effect grows with the
       noise's std, and per unit of logit margin the Laplace hinge −λ_L·log(1 − p_A + p_B) is steeper than
       the Gaussian one (its slope w.r.t. the logits tends to β·λ_L, the Gaussian one to β·σ/(2Φ⁻¹(p_A)),
       √2·Φ⁻¹(p_A) ≈ 3–6 times smaller at equal std) and stays active longer (γ is 6.8 std for Laplace,
       4 std for Gaussian, 1.7 std for uniform noise, whose hinge λ_U(p_A − p_B) flattens as p_A → 1 and
       never collapsed). At λ = 12 and std 0.4 the hinge pushes a logit margin 20–35 (Gaussian) and 27–54
       (Laplace) times harder than cross-entropy can. The default λ is therefore ``DEFAULT_LBD_STD[noise] /
       noise.std`` (a weight per std of radius), chosen per noise by the sweep.
       The soft p_A clamp is not a cause: as p_A → 1 the radius' slope w.r.t. p_A blows up (Φ⁻¹ as
       1/((1 − p_A)Φ⁻¹(p_A)), Teng's term as 1/(1 − p_A)) but dp_A/du shrinks as β(1 − p_A), so the slope
       w.r.t. the logits stays bounded for both; where p_A rounds to 1 in float32 the Gaussian radius is
       infinite and that input's term is off (it is robust).

    Noises without a differentiable certificate (certificates evaluated numerically, such as the tabulated
    Monte Carlo variational certificates of power-law and mixed-norm noise, step functions of (p_A, p_B)):
    R is :class:`RadiusEnvelope`, a piecewise-bilinear interpolation of the exact certificate on a fixed
    (p_A, p_B) grid, shifted by one cell so that it is a lower bound on the exact radius — sound (it never
    rewards more radius than is certified) and differentiable with non-zero slope. Where a noise has several
    certificates, ``certified_radius_torch`` takes the largest differentiable one, which is still sound.

    Non-additive noise (splitting): the copies are the noise's own noisy inputs perturb(x, z_j); MACER only
    differentiates w.r.t. the model's parameters, so it needs no gradient through the noise.

    Faithfulness. With :class:`~art_smoothing.noise.GaussianNoise`, identity preprocessing and ``warmup=0``
    (or outside ``fit``) this is the objective of the MACER authors' code and of ART 1.20's
    ``PyTorchMACER.fit`` (tested: same loss and gradient from the same noise draws). Differences from ART:
    ART has no warm-up; ART adds the noise *after* the classifier's preprocessing (standardisation and
    defences run once on the clean data), so its σ is in standardised units and it trains a different
    classifier from the one it certifies; here the noise is added to the raw input. ART's
    ``estimator_params`` lists ``gauss_num`` but the attribute is ``gaussian_samples``.

    :param classifier: the :class:`~art_smoothing.SmoothedClassifier`.
    :param m: noisy copies per input and step (MACER's k; 16 in the paper and ART).
    :param lbd: λ >= 0, weight of the robustness loss (MACER/ART: 12 at σ = 0.25). ``None``:
        ``DEFAULT_LBD_STD[noise.name] / noise.std`` (other noises: the entry of their norm).
    :param gamma: γ > 0, hinge threshold on the certified radius in ``norm``. ``None``: the radius the
        noise's certificate gives at MACER's default ξ = 8, i.e. at (p_A, p_B) = (Φ(4), Φ(−4)) — 4σ for
        Gaussian noise, ART's and MACER's γ = 8.
    :param beta: β > 0, inverse temperature of the robustness term (16).
    :param norm: the norm of the radius (``None``: the noise's own norm); other norms use the sound conversions
        of the certificates.
    :param method: a certificate name of the noise (``None``: the best differentiable one).
    :param warmup: epochs over which λ ramps linearly from 0 (integer >= 0; 0: the full λ from the first
        step, as ART and the paper's Algorithm 1; ``None``: :data:`DEFAULT_WARMUP` for the noise).
    :param form: ``"multiclass"`` (MACER's and ART's): R(p_A, p_B) with p_B the runner-up of ĝ^β;
        ``"binary"``: R(p_A, 1 − p_A), the runner-up at its worst case, as CERTIFY's default binary form
        bounds it — the hinge then cannot be met by spreading the other classes' mass (which raises the
        multiclass radius but not the certified one). Both are the noise's certificate at valid arguments.
    :param verbose: progress bar.
    """

    name = "macer"
    trainer_params = ("m", "lbd", "gamma", "beta", "norm", "method", "warmup", "form")

    def __init__(self, classifier, m: int = 16, lbd: float | None = None, gamma: float | None = None,
                 beta: float = 16.0, norm=None, method: str | None = None, warmup: int | None = None,
                 form: str = DEFAULT_FORM, verbose: bool = True) -> None:
        super().__init__(classifier, verbose=verbose)
        est = self._classifier
        if est.nb_classes < 2:
            raise ValueError("MACER needs at least two classes (it uses the runner-up probability p_B).")
        self.m = check_int("m", m)
        noise = est.noise
        self.lbd = default_lbd(noise) if lbd is None else check_positive("lbd", lbd, allow_zero=True)
        self.beta = check_positive("beta", beta)
        self.warmup = (per_noise_default(DEFAULT_WARMUP, noise) if warmup is None
                       else check_int("warmup", warmup, minimum=0))
        if form not in ("binary", "multiclass"):
            raise ValueError(f"form must be 'binary' or 'multiclass' (the certificate's form), got {form!r}.")
        self.form = form
        #: the weight λ_e in use (changed by the warm-up during ``fit``)
        self.current_lbd = self.lbd
        try:
            self.norm = noise.norm if norm is None else parse_norm(norm)
        except ValueError as err:
            raise ValueError(f"norm: {err}") from None
        self.method = method
        self._dim = est.input_dim
        probe_a, probe_b = np.array([0.9]), np.array([0.05])
        try:  # validates norm / method / dim against the noise's certificates
            noise.certified_radius(probe_a, probe_b, norm=self.norm, dim=self._dim, method=method)
        except ValueError as err:
            raise ValueError(f"norm={norm_name(self.norm)!r}, method={method!r} is not available for "
                             f"{type(noise).__name__}: {err}") from None
        try:
            noise.certified_radius_torch(torch.tensor(probe_a), torch.tensor(probe_b), norm=self.norm,
                                         dim=self._dim, method=method)
            self.differentiable = True
        except ValueError:
            self.differentiable = False
        self._envelope = None
        if gamma is None:
            gamma = float(noise.certified_radius(np.array([_MACER_P_A]), np.array([_MACER_P_B]), norm=self.norm,
                                                 dim=self._dim, method=method)[0])
            if not (math.isfinite(gamma) and gamma > 0):
                raise ValueError(f"gamma: the default threshold (radius at p_A=Φ(4), p_B=Φ(−4)) is {gamma} for "
                                 f"{noise!r}; pass gamma > 0 explicitly.")
        self.gamma = check_positive("gamma", gamma)

    def __repr__(self) -> str:
        return (f"MACERTrainer(m={self.m}, lbd={self.lbd:g}, gamma={self.gamma:g}, beta={self.beta:g}, "
                f"norm={norm_name(self.norm)!r}, warmup={self.warmup})")

    def lbd_at(self, epoch: int) -> float:
        """λ_e of the warm-up: λ·min(1, e/warmup) in epoch ``epoch`` (0-based)."""
        return self.lbd if self.warmup == 0 else self.lbd * min(1.0, max(0, int(epoch)) / self.warmup)

    def _start_epoch(self, epoch: int, nb_epochs: int) -> None:
        self.current_lbd = self.lbd_at(epoch)

    def _end_fit(self) -> None:
        self.current_lbd = self.lbd

    def radius(self, p_a: torch.Tensor, p_b: torch.Tensor) -> torch.Tensor:
        """The noise's certificate R(p_A, p_B) in :attr:`norm`, differentiable (see the class docstring)."""
        noise = self._classifier.noise
        if self.differentiable:
            return noise.certified_radius_torch(p_a, p_b, norm=self.norm, dim=self._dim, method=self.method)
        if self._envelope is None:
            self._envelope = RadiusEnvelope(self.exact_radius)
        return self._envelope(p_a, p_b)

    def exact_radius(self, p_a, p_b) -> np.ndarray:
        """The exact certificate (float64 numpy, as certification computes it) in :attr:`norm`."""
        return self._classifier.noise.certified_radius(p_a, p_b, norm=self.norm, dim=self._dim, method=self.method)

    def objective_terms(self, logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-input MACER terms from the base classifier's logits on the noisy copies.

        :param logits: ``(B, m, nb_classes)``.
        :param y: ``(B,)`` int64 labels.
        :return: ``(classification, robustness)``, each ``(B,)``: −log(ĝ_y + 1e-10) and
            1[correct]·max(γ − R, 0) (exactly 0, with zero gradient, where the hinge is inactive).
        """
        if not bool(torch.isfinite(logits).all()):
            raise FloatingPointError("MACER: the base classifier returned non-finite logits (training diverged); "
                                     "lower the learning rate or lbd.")
        soft = F.softmax(logits, dim=-1).mean(dim=1)
        classification = F.nll_loss(torch.log(soft + 1e-10), y, reduction="none")
        soft_beta = F.softmax(self.beta * logits, dim=-1).mean(dim=1).clamp(0.0, 1.0)
        top = torch.topk(soft_beta, 2, dim=-1)
        correct = top.indices[:, 0] == y
        p_a, p_b = top.values[:, 0], top.values[:, 1]
        if self.form == "binary":  # the runner-up at its worst case, as CERTIFY's default binary form bounds it
            p_b = 1.0 - p_a
        with torch.no_grad():
            r = self.radius(p_a[correct], p_b[correct])
            active = torch.zeros_like(correct)
            active[correct] = torch.isfinite(r) & (r <= self.gamma)
        robustness = torch.zeros_like(classification)
        robustness = robustness.masked_scatter(active, self.gamma - self.radius(p_a[active], p_b[active]))
        return classification, robustness

    def compute_loss(self, x, y, noise_draws: torch.Tensor | None = None) -> torch.Tensor:
        """MACER's objective of one batch: (1/B) Σ [classification + λ_e·robustness] (see the class docstring)."""
        x, y, z = self._as_batch(x, y, noise_draws)
        logits, _ = self.noisy_logits(x, y, z)  # (B, m, C)
        classification, robustness = self.objective_terms(logits, y)
        return (classification.sum() + self.current_lbd * robustness.sum()) / x.shape[0]
