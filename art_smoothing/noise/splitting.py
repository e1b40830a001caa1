"""Splitting noise (Levine & Feizi, 2021) as analysed by Voráček & Hein (2023, §2.3), and its
derandomized variant for quantized inputs (§2.3.1).

Splitting noise is not additive: a draw is a random offset s and the noisy input is a function of
x and s, so both classes override :meth:`Noise.perturb` and everything else in the library (certify,
predict, training, attacks) works unchanged.

Definition used here, for every λ > 0 and any real input, in the units of the input domain
``clip_values`` = (lo, hi), w = hi − lo. The real line is cut into cells of length 2λ by the random
grid lo + s + 2λℤ, s ~ U[0, 2λ); k(x, s) = ⌈(x − lo − s)/(2λ)⌉ numbers the cell holding x, and

    x̃(s) = lo + min(s, w) + min(2λ, w) · k(x, s).

* λ ≥ w/2 (the paper's case, Theorems 2.10–2.11, λ ≥ 1/2 in box units): for x in the box
  k ∈ {0, 1} and, in box units, x̃ = min(s, 1) + [x > s] — uniform on [x, 1 + x] with probability
  1/(2λ), the constant 1 otherwise. This is exactly Theorem 2.10's x̃.
* λ < w/2 (not covered by the paper's statements): x̃ = lo + s + 2λk is the upper end of x's cell, a
  randomly offset quantization of x with step 2λ (x̃ − x ∈ [0, 2λ)). The two definitions agree at
  λ = w/2.

What the certificates need, for every λ: x̃ depends on x only through the cell index, and two points
fall in different cells with probability min(1, |x − y|/(2λ)) (a uniformly offset grid of step 2λ
separates them). With independent s_i (:class:`SplittingNoise`) the copies at x and y agree with
probability Π_i (1 − |δ_i|/(2λ))_+ — the cube overlap of uniform noise — so Proposition 2.1/2.12 and
every uniform ℓ1 certificate apply (Theorem 2.11), the box-constrained ones included. With one
uniform offset driving all coordinates (:class:`DeterministicSplittingNoise`) only the union bound
P(x̃ ≠ ỹ) ≤ ‖δ‖₁/(2λ) is available (Theorem 2.10), hence only the Lipschitz certificate.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from art_smoothing.checks import check_clip_values, check_int
from art_smoothing.noise.base import Noise, certificate, check_positive
from art_smoothing.noise.uniform import BoxL1Certificates, cube_linf_radius

__all__ = ["DeterministicSplittingNoise", "SplittingNoise"]


class _SplittingBase(Noise):
    """Shared parameters, representation and the Lipschitz certificate of both splitting noises."""

    norm = 1.0
    additive = False

    def __init__(self, scale: float, clip_values=(0.0, 1.0)):
        self.scale = check_positive("scale", scale)
        if clip_values is None:
            raise ValueError("clip_values must be the input box (lo, hi) splitting noise quantizes within, got None.")
        self.clip_values = check_clip_values(clip_values, per_feature_ok=False)

    @property
    def std(self) -> float:
        """λ/√3, the standard deviation of the offset s; the convention by which Levine & Feizi and
        Voráček & Hein report splitting noise (σ ↔ λ = √3σ). The noisy input is not x plus a
        zero-mean variable, so this is a label for comparisons, not a variance of x̃ − x."""
        return self.scale / math.sqrt(3.0)

    def _cell_index(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        lo = self.clip_values[0]
        return torch.ceil((x - lo - s) / (2.0 * self.scale))

    def _represent(self, offset: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        lo, hi = self.clip_values
        width = hi - lo
        return lo + torch.clamp(offset, max=width) + min(2.0 * self.scale, width) * k

    @certificate("lipschitz", norm=1)
    def _lipschitz(self, p_a, p_b, ctx):
        """Theorem 2.10 (Levine & Feizi's Theorem 2; no independence needed): P(x̃ ≠ ỹ) ≤ ‖δ‖₁/(2λ)
        by the union bound over coordinates, so every class probability is 1/(2λ)-Lipschitz in ℓ1.
        Binary: R = 2λ(p_a − 1/2) (Corollary 2.4); multiclass: R = λ(p_a − p_b) (Corollary 2.13,
        with Proposition 2.12). Any λ > 0; no box assumption. Lower bound on the true radius because
        it is monotone in the bounds p_a (lower) and p_b (upper).
        """
        if p_b is None:
            return 2.0 * self.scale * (p_a - 0.5)
        return self.scale * (p_a - p_b)


class SplittingNoise(BoxL1Certificates, _SplittingBase):
    """Independent splitting noise: one offset s_i ~ U[0, 2λ) per coordinate, λ = ``scale`` (in
    input units). Certifies ℓ1 balls.

    :param scale: λ > 0. The paper (Theorems 2.10–2.11) covers λ ≥ (hi − lo)/2; smaller λ uses the
        randomly offset quantization described in the module docstring, with the same certificates.
    :param clip_values: the input domain (lo, hi) that fixes the representation of the noisy input
        (the paper's min(s, 1) clip). It does not affect soundness: the certificates hold for any
        value, and the box certificates use the box passed to :meth:`certified_radius`.

    Certificates: ``lipschitz`` (Corollaries 2.4/2.13), ``cube`` (ℓ∞, as for uniform noise), and the
    box-constrained ℓ1 ones ``box_closed``, ``box_floor``, ``box_input`` (Corollaries 2.7/2.14,
    Proposition 2.5, Theorem 2.8 through Theorem 2.11), valid only for adversarial points in the box.
    """

    name = "splitting"

    def params(self):
        return {"scale": self.scale, "clip_values": self.clip_values}

    def _sample(self, size, *, generator, device, dtype):
        # The draw is the vector of offsets s ~ U[0, 2λ)^d, exact and independent across coordinates.
        return torch.rand(size, generator=generator, device=device, dtype=dtype).mul_(2.0 * self.scale)

    def perturb(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """x̃ = lo + min(s, w) + min(2λ, w)·⌈(x − lo − s)/(2λ)⌉ with the offsets s = ``z`` (broadcasting)."""
        return self._represent(z, self._cell_index(x, z))

    @certificate("cube", norm=math.inf, needs_dim=True)
    def _cube(self, p_a, p_b, ctx):
        """Theorem 2.11: Proposition 2.1 holds with the same per-coordinate agreement probability
        (1 − |δ_i|/(2λ))_+ as the cube overlap, so the ℓ∞ certificate of uniform noise applies verbatim
        (:meth:`art_smoothing.noise.uniform.UniformNoise._cube`): binary R = 2λ(1 − (3/2 − p_a)^{1/d}),
        multiclass R = 2λ(1 − (1 − (p_a − p_b)/2)^{1/d}). Lower bound on the true radius: increasing in
        p_a, decreasing in p_b.
        """
        return cube_linf_radius(self.scale, p_a, p_b, ctx.dim)


class DeterministicSplittingNoise(_SplittingBase):
    """Derandomized splitting noise (Levine & Feizi, 2021; Voráček & Hein, §2.3.1) for quantized
    inputs, λ = ``scale`` in input units.

    One uniform offset s ~ U[0, 2λ) drives all coordinates through a fixed vector v of grid multiples
    (drawn once from ``offset_seed``, the same for every input): s_i = (s + v_i) mod 2λ. Each s_i is
    uniform on [0, 2λ), which is all Theorem 2.10 needs, while the coordinates are no longer
    independent. (With v = 0 every draw with s ≥ w would blank the whole image; v spreads those
    coordinates over the draws, as in Levine & Feizi.) The noisy input is x̃_i = lo + min(m(s_i), w) +
    min(2λ, w)·k(x_i, s_i): the cell index k uses s_i itself, the offset shown to the base classifier is
    m(s_i) = (⌊s_i/Δ⌋ + 1/2)Δ, the centre of the grid step holding s_i (Δ = w/(levels − 1)).

    Soundness for every y ∈ ℝ^d: x̃(y, s) depends on y only through the cell indices, so the union bound
    of Theorem 2.10 makes every class probability of h(y) = E_s f(x̃(y, s)) 1/(2λ)-Lipschitz in ℓ1.
    Exactness on the grid: with 2λ a multiple of Δ and v on the grid, every x̃_i is constant while s stays
    inside one grid step, so h(x) is the average of f over the 2λ/Δ step centres — Levine & Feizi's
    2qλ evaluations with q = 1/Δ (:meth:`exact_draws`).

    The smoothed probabilities are then exact and the certificate has no failure probability
    (``SmoothedClassifier.certify(..., deterministic=True)``). Only the ``lipschitz`` certificate holds:
    the box certificates of :class:`SplittingNoise` need independent offsets (§2.3.1).

    :param scale: λ > 0, a multiple of Δ/2 (snapped to the nearest one within 1e-9 relative error).
    :param levels: number q ≥ 2 of quantization levels of the inputs: lo + jΔ, j = 0..q−1
        (256 for 8-bit images; 17 for scikit-learn's digits scaled by 1/16).
    :param clip_values: the input domain (lo, hi).
    :param offset_seed: seed of the fixed offset vector v.
    """

    name = "deterministic_splitting"

    def __init__(self, scale: float, levels: int = 256, clip_values=(0.0, 1.0), offset_seed: int = 0):
        super().__init__(scale, clip_values)
        self.levels = check_int("levels (quantization levels of the inputs)", levels, 2)
        self.offset_seed = check_int("offset_seed", offset_seed, 0)
        lo, hi = self.clip_values
        self.step = (hi - lo) / (self.levels - 1)
        m = 2.0 * self.scale / self.step
        if abs(m - round(m)) > 1e-9 * m or round(m) < 1:
            raise ValueError(
                f"scale={scale} must be a multiple of half the quantization step, {self.step / 2:g} "
                f"(levels={self.levels}, clip_values=({lo}, {hi})), so that the expectation is a finite sum; "
                f"e.g. scale={max(1, round(m)) * self.step / 2:g}."
            )
        self.n_draws = round(m)
        self.scale = self.n_draws * self.step / 2.0

    def params(self):
        return {"scale": self.scale, "levels": self.levels, "clip_values": self.clip_values,
                "offset_seed": self.offset_seed}

    def offset_vector(self, shape) -> np.ndarray:
        """The fixed offsets v (float64, shaped like one input): grid multiples uniform on [0, 2λ)."""
        shape = tuple(int(s) for s in shape)
        rng = np.random.default_rng([self.offset_seed, int(np.prod(shape)) if shape else 1])
        return rng.integers(0, self.n_draws, size=shape).astype(np.float64) * self.step

    def _offsets(self, s: torch.Tensor, shape, device, dtype) -> torch.Tensor:
        """Per-coordinate offsets (s + v) mod 2λ, ``(len(s), *shape)``, computed in float64."""
        v = torch.as_tensor(self.offset_vector(shape), device=device)
        s = s.to(device=device, dtype=torch.float64).reshape((-1,) + (1,) * len(shape))
        return torch.remainder(s + v, 2.0 * self.scale).to(dtype)

    def _sample(self, size, *, generator, device, dtype):
        # One uniform s per draw, shared by all coordinates through the fixed offsets v (uniform marginals).
        s = torch.rand(size[:1], generator=generator, device=device, dtype=torch.float64) * (2.0 * self.scale)
        return self._offsets(s, size[1:], device, dtype)

    def _grid_offset(self, s: torch.Tensor) -> torch.Tensor:
        return (torch.floor(s / self.step) + 0.5) * self.step

    def perturb(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """x̃ = lo + min(m(s_i), w) + min(2λ, w)·⌈(x − lo − s_i)/(2λ)⌉ with the offsets s_i = ``z``."""
        return self._represent(self._grid_offset(z), self._cell_index(x, z))

    # ------------------------------------------------------------------ exact expectation
    def check_on_grid(self, x) -> None:
        """Raise ``ValueError`` unless every entry of ``x`` is (to 1e-3 of a step) a grid value lo + jΔ."""
        arr = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
        if not np.all(np.isfinite(arr)):
            raise ValueError("x contains NaN or inf: deterministic splitting needs finite quantized inputs.")
        lo, hi = self.clip_values
        u = (arr - lo) / self.step
        if arr.size and (u.min() < -1e-3 or u.max() > self.levels - 1 + 1e-3):
            raise ValueError(f"x lies outside clip_values=({lo}, {hi}) of the deterministic splitting noise.")
        off = float(np.max(np.abs(u - np.round(u)))) if arr.size else 0.0
        if off > 1e-3:
            raise ValueError(
                f"Deterministic splitting needs inputs on the quantization grid lo + j*(hi - lo)/(levels - 1) "
                f"with levels={self.levels}, clip_values=({lo}, {hi}); some input is {off:.3g} steps off the grid. "
                "Quantize the inputs, set levels to the data's number of levels, or use SplittingNoise "
                "(Monte Carlo)."
            )

    def exact_input_slack(self, x, norm) -> np.ndarray:
        """Per input, the ``norm`` distance from x to its grid point x_g (float64, shape ``(N,)``).

        :meth:`check_on_grid` accepts inputs up to 1e-3 of a step off the grid (float32 cannot hold
        most grid values exactly), and there :meth:`exact_draws` gives exactly h(x_g): every step
        centre sees the same cell of x as of x_g. A radius R around x_g certifies R − ‖x − x_g‖
        around x, which the estimator subtracts."""
        arr = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
        arr = arr.reshape(arr.shape[0], -1)
        lo = self.clip_values[0]
        snapped = lo + np.round((arr - lo) / self.step) * self.step
        return np.linalg.norm(arr - snapped, ord=float(norm), axis=1) if arr.shape[1] else np.zeros(arr.shape[0])

    def exact_draws(self, x, shape, *, device=None, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """The generic hook for exact smoothing: a finite set of draws ``z`` ``(M, *shape)`` and their
        probabilities ``weights`` ``(M,)`` (float64) such that, for every input of ``x``,
        h(x) = Σ_j weights_j · f(perturb(x, z_j)) exactly. Here M = 2λ/Δ draws of weight Δ/(2λ), at
        the step centres s = (j + 1/2)Δ, so grid inputs are half a step from every cell boundary.

        :param x: the inputs that will be smoothed; checked to lie on the quantization grid (the
            expectation is exact only there).
        :raises ValueError: when an input is off the grid or outside the box.
        """
        self.check_on_grid(x)
        s = (torch.arange(self.n_draws, dtype=torch.float64) + 0.5) * self.step
        z = self._offsets(s, shape, device, dtype)
        return z, torch.full((self.n_draws,), 1.0 / self.n_draws, dtype=torch.float64)
