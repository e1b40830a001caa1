"""Variational (dual) certificates for noises without a closed-form radius (Zhang et al., 2020).

Reference: Zhang et al., *Filling the soap bubbles: efficient black-box adversarial certification
with non-Gaussian smoothing* — Theorem 1 (dual form), Theorems 2, 5 and 6 (worst perturbation),
Algorithms 1–2 (Monte Carlo).

A noise describes the law of its log-density ratio S at the worst perturbation of an ℓp ball (a
:class:`LogRatioModel`, from ``noise.log_ratio_model(dim, norm)``); :func:`build_radius_table` turns a
Monte Carlo sample of S into a :class:`RadiusTable` whose radii hold all at once with probability
≥ 1 − ``alpha``, and :func:`variational_radius` looks radii up. The derivation and its soundness
arguments (Neyman–Pearson dual, worst-perturbation lemma, confidence bounds, α accounting,
conservative look-up; equations (1)–(5) cited in the code) are in ``docs/variational.md``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from art_smoothing.certificates.bounds import check_alpha, clopper_pearson_lower, clopper_pearson_upper
from art_smoothing.certificates.norms import parse_norm
from art_smoothing.checks import check_int
from art_smoothing.storage import atomic_write, cache_dir

logger = logging.getLogger(__name__)

__all__ = [
    "P_LEVELS",
    "GaussianLogRatio",
    "LaplaceLogRatio",
    "LogRatioModel",
    "RadiusTable",
    "TableSettings",
    "UniformLogRatio",
    "build_radius_table",
    "clear_memory_cache",
    "empirical_bernstein_upper",
    "get_radius_table",
    "log_ratio_model",
    "variational_radius",
]

#: levels p_j = G(c) at which the multiclass thresholds are placed.
P_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
#: pilot quantiles q of S whose thresholds c = −quantile_q(S) serve the binary form (optimum: q = ½;
#: the neighbours catch an atom of S sitting at the median, e.g. Laplace's).
BINARY_QUANTILES = (0.45, 0.5, 0.55)
#: version of the table format and algorithm (part of every cache key).
TABLE_VERSION = 1
#: fixed internal seed of the table's Monte Carlo streams (tables are deterministic).
TABLE_SEED = 20200615
_PILOT_STREAM, _MAIN_STREAM = 1, 2
#: added to every Monte Carlo upper bound: covers float64 rounding in sums of up to 2^30 terms.
_ROUNDING = 1e-9
#: computed log-ratios are raised by _LIFT·(1 + |S|), more than their float64 rounding error, so the
#: samples used are ≥ the exact S (every bound below is monotone in S, hence stays conservative).
_LIFT = 1e-9
#: binary thresholds are moved by _WIDEN·(1 + |v|) past the pilot value v, to swallow an atom at v.
_WIDEN = 1e-6


def _lifted(s: np.ndarray) -> np.ndarray:
    return s + _LIFT * (1.0 + np.abs(s))


# ====================================================================== log-ratio models
class LogRatioModel:
    """What the engine needs from a noise in one norm and dimension.

    A model draws, with a ``torch.Generator`` (exact draws of the noise), the sufficient statistics
    of ``num`` independent z ~ π0 as float64 numpy arrays, and turns them into
    S = log π0(z) − log π0(z − δ*(r)) for the worst perturbation δ*(r) of the ℓ_p ball of radius r
    (numpy, vectorised). Requirements, stated by each model: π0 is symmetric (π0(−z) = π0(z)) and
    δ*(r) is the worst case over the ball (``docs/variational.md`` gives a sufficient condition).
    """

    #: the norm of the certified balls
    norm: float = 2.0
    #: radius scale where certificates live (e.g. σ); starts the search for the grid's end
    radius_scale: float = 1.0

    def description(self) -> dict[str, Any]:
        """JSON-able identity of the model (cache key)."""
        raise NotImplementedError

    def sample_statistics(self, num: int, generator: torch.Generator) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def log_ratio(self, stats: dict[str, np.ndarray], radius: float) -> np.ndarray:
        raise NotImplementedError


def _chunks(num: int, dim: int, budget: int = 1 << 21):
    step = max(1, budget // max(1, dim))
    for start in range(0, num, step):
        yield min(step, num - start)


class GaussianLogRatio(LogRatioModel):
    """N(0, σ²I). ℓ2: δ* = r e₁, S = (r² − 2 r z₁)/(2σ²). ℓ∞: δ* = r·1, S = (d r² − 2 r Σz)/(2σ²).
    For the cross-check against Cohen's closed form (the engine must reproduce it)."""

    def __init__(self, sigma: float, dim: int, norm: float = 2.0):
        self.sigma, self.dim, self.norm = float(sigma), int(dim), float(norm)
        if self.norm not in (2.0, math.inf):
            raise ValueError("GaussianLogRatio supports norm 2 and inf.")
        self.radius_scale = self.sigma if self.norm == 2.0 else self.sigma / math.sqrt(self.dim)

    def description(self):
        return {"model": "gaussian", "sigma": self.sigma, "dim": self.dim, "norm": str(self.norm)}

    def sample_statistics(self, num, generator):
        # z₁ (ℓ2) and Σz (ℓ∞) are exactly N(0, σ²) and N(0, dσ²).
        scale = self.sigma * (1.0 if self.norm == 2.0 else math.sqrt(self.dim))
        return {"proj": (torch.randn(num, generator=generator, dtype=torch.float64) * scale).numpy()}

    def log_ratio(self, stats, radius):
        d = 1 if self.norm == 2.0 else self.dim
        return (d * radius * radius - 2.0 * radius * stats["proj"]) / (2.0 * self.sigma**2)


class LaplaceLogRatio(LogRatioModel):
    """I.i.d. Laplace(λ): S = Σ_i (|z_i − δ_i| − |z_i|)/λ.

    ℓ∞: δ* = r·1 is the worst case (coordinate-wise symmetric unimodal). ℓ1: δ = r e₁ is the direction
    at which Teng et al.'s binary certificate is attained; the lemma of ``docs/variational.md`` does not
    prove it worst over the ℓ1 ball, so this model serves the cross-check against that closed form."""

    def __init__(self, scale: float, dim: int, norm: float = 1.0):
        self.scale, self.dim, self.norm = float(scale), int(dim), float(norm)
        if self.norm not in (1.0, math.inf):
            raise ValueError("LaplaceLogRatio supports norm 1 (direction e1) and inf.")
        self.radius_scale = self.scale if self.norm == 1.0 else self.scale / self.dim

    def description(self):
        return {"model": "laplace", "scale": self.scale, "dim": self.dim, "norm": str(self.norm)}

    def sample_statistics(self, num, generator):
        d = 1 if self.norm == 1.0 else self.dim
        parts = []
        for m in _chunks(num, d):
            u = torch.rand((m, d), generator=generator, dtype=torch.float64) * 2.0 - 1.0
            parts.append((-torch.sign(u) * torch.log1p(-u.abs()) * self.scale).numpy())
        return {"z": np.concatenate(parts)}

    def log_ratio(self, stats, radius):
        z = stats["z"]
        out = np.empty(z.shape[0])
        step = max(1, (1 << 21) // z.shape[1])
        for s in range(0, z.shape[0], step):
            zz = z[s:s + step]
            out[s:s + step] = (np.abs(zz - radius) - np.abs(zz)).sum(axis=1) / self.scale
        return out


class UniformLogRatio(LogRatioModel):
    """Uniform on [−λ, λ]^d, ℓ∞, δ* = r·1: S = 0 if z − δ* is in the cube, +∞ otherwise (an atom;
    the bound (2) handles atoms, and the engine reproduces the closed form (1 − r/2λ)^d > 3/2 − p_a)."""

    norm = math.inf

    def __init__(self, scale: float, dim: int):
        self.scale, self.dim = float(scale), int(dim)
        self.radius_scale = self.scale / self.dim

    def description(self):
        return {"model": "uniform", "scale": self.scale, "dim": self.dim, "norm": "inf"}

    def sample_statistics(self, num, generator):
        mins = []
        for m in _chunks(num, self.dim):
            u = torch.rand((m, self.dim), generator=generator, dtype=torch.float64) * (2 * self.scale) - self.scale
            mins.append(u.min(dim=1).values.numpy())
        return {"zmin": np.concatenate(mins)}

    def log_ratio(self, stats, radius):
        return np.where(stats["zmin"] - radius >= -self.scale, 0.0, math.inf)


def log_ratio_model(noise, norm, dim: int) -> LogRatioModel:
    """The engine's model of ``noise`` in ``norm`` (``None``: the noise's own) and dimension ``dim``.

    The noise is asked (``noise.log_ratio_model(dim, norm)``, see
    :meth:`art_smoothing.noise.Noise.log_ratio_model`), so this module never imports a noise.
    Power-law (ℓ2) and mixed-norm (ℓ∞) noise have a model, and for cross-checks Gaussian (ℓ2, ℓ∞),
    Laplace (ℓ1 direction e₁, ℓ∞) and uniform (ℓ∞) noise.

    :raises ValueError: when the noise has no model in that norm.
    """
    p = parse_norm(noise.norm if norm is None else norm)
    ask = getattr(noise, "log_ratio_model", None)
    model = None if ask is None else ask(dim, p)
    if model is None:
        raise ValueError(f"The variational engine has no log-density-ratio model for {noise!r} in norm {norm!r}.")
    return model


# ====================================================================== the table
@dataclass(frozen=True)
class TableSettings:
    """Monte Carlo settings of a radius table.

    :param alpha: failure probability of the whole table (all its confidence bounds at once).
    :param n_samples: main Monte Carlo sample size (draws of the noise's sufficient statistics).
    :param n_pilot: pilot sample size (threshold placement and the grid's end; spends no alpha).
    :param n_radii: radius grid size.
    :param seed: internal seed (fixed: tables are deterministic).
    """

    alpha: float = 1e-4
    n_samples: int = 1 << 18
    n_pilot: int = 1 << 15
    n_radii: int = 512
    seed: int = TABLE_SEED

    def __post_init__(self):
        check_alpha(self.alpha, "cert_alpha")
        for name, low in (("n_samples", 16), ("n_pilot", 16), ("n_radii", 2)):
            # stored as a Python int (the cache key is JSON)
            object.__setattr__(self, name, check_int(name, getattr(self, name), low))


@dataclass
class RadiusTable:
    """Certified radii of one (noise, norm, d) for every probability bound (``docs/variational.md``).

    ``p_star[i]``: the critical binary p_a of ``radii[i]`` (sound, non-decreasing). ``thresholds``
    and ``upper`` (R, J): the thresholds c and the upper bounds U(r, c) on E[X_c] of equation (5);
    V⁻(p) = max(0, max_j e^{−c_j}(p − U_j)) is the lower bound of equation (4) (multiclass form) and
    p*(r) = min_j (e^{c_j}/2 + U_j) that of equation (3).
    """

    radii: np.ndarray
    p_star: np.ndarray
    thresholds: np.ndarray
    upper: np.ndarray
    alpha: float
    n_samples: int
    build_seconds: float
    description: dict[str, Any] = field(default_factory=dict)
    _lines: tuple | None = field(default=None, repr=False, compare=False)

    def radius(self, p_a, p_b=None) -> np.ndarray:
        """Certified radius (float64, shaped like ``p_a``) from a lower bound p_a (binary form when
        ``p_b is None``) and an upper bound p_b on the runner-up (multiclass form)."""
        p_a = np.asarray(p_a, dtype=np.float64)
        if p_b is None:
            # Largest i with p_star[i] < p_a (p_star is non-decreasing): rounds down to the grid.
            count = np.searchsorted(self.p_star, p_a.ravel(), side="left")
            out = np.where(count > 0, self.radii[np.maximum(count - 1, 0)], 0.0)
            return out.reshape(p_a.shape)
        p_a, p_b = np.broadcast_arrays(p_a, np.asarray(p_b, dtype=np.float64))
        flat_a, flat_b = p_a.ravel(), np.minimum(p_b.ravel(), 1.0 - p_a.ravel())
        out = np.zeros(flat_a.shape, dtype=np.float64)
        step = max(1, (1 << 19) // self.thresholds.size)
        for s in range(0, flat_a.size, step):
            ok = self.lower_value(flat_a[s:s + step]) + self.lower_value(1.0 - flat_b[s:s + step]) > 1.0
            # Certified at r_i certifies every smaller ball: take the largest certified grid radius.
            last = np.where(ok.any(axis=1), self.radii.size - 1 - np.argmax(ok[:, ::-1], axis=1), -1)
            out[s:s + step] = np.where(last >= 0, self.radii[np.maximum(last, 0)], 0.0)
        return out.reshape(p_a.shape)

    def lower_value(self, p) -> np.ndarray:
        """V⁻(p, r_i) of equation (4), shape (N, R): a lower bound on min E_{π_δ*}[f] over the f with
        E_{π0}[f] ≥ p, at every grid radius: max(0, max_j e^{−c_j}(p − U_j))."""
        if self._lines is None:
            finite = np.isfinite(self.thresholds)
            slope = np.where(finite, np.exp(-np.clip(np.where(finite, self.thresholds, 0.0), -700.0, 700.0)), 0.0)
            self._lines = (slope, slope * self.upper)
        slope, offset = self._lines
        p = np.asarray(p, dtype=np.float64).reshape(-1, 1, 1)
        with np.errstate(over="ignore", invalid="ignore"):
            b = (p * slope[None] - offset[None]).max(axis=2)
        return np.clip(np.nan_to_num(b, nan=0.0), 0.0, 1.0)

    @property
    def max_radius(self) -> float:
        """Largest radius the table can certify (for p_a above ``p_star[-1]``)."""
        return float(self.radii[-1])

    def to_arrays(self) -> dict[str, np.ndarray]:
        meta = {"alpha": self.alpha, "n_samples": self.n_samples, "build_seconds": self.build_seconds,
                "description": self.description}
        return {"radii": self.radii, "p_star": self.p_star, "thresholds": self.thresholds, "upper": self.upper,
                "meta": np.array(json.dumps(meta))}

    @classmethod
    def from_arrays(cls, arrays) -> RadiusTable:
        meta = json.loads(str(arrays["meta"]))
        return cls(radii=np.asarray(arrays["radii"]), p_star=np.asarray(arrays["p_star"]),
                   thresholds=np.asarray(arrays["thresholds"]), upper=np.asarray(arrays["upper"]),
                   alpha=float(meta["alpha"]), n_samples=int(meta["n_samples"]),
                   build_seconds=float(meta["build_seconds"]), description=meta["description"])


def _generator(seed: int, stream: int) -> torch.Generator:
    state = np.random.SeedSequence([int(seed), int(stream)]).generate_state(2)
    return torch.Generator().manual_seed(int((int(state[0]) << 31) ^ int(state[1])) & 0x7FFFFFFFFFFFFFFF)


def _pilot_critical(model: LogRatioModel, stats, radius: float) -> float:
    """Pilot estimate of equation (3) at c = −median(S): the p_a the binary certificate needs at r."""
    s = np.sort(_lifted(model.log_ratio(stats, radius)))
    c = -float(s[(s.size - 1) // 2])
    if not math.isfinite(c):
        return 1.0 if c < 0 else 0.0
    g = 1.0 - np.searchsorted(s, c, side="left") / s.size
    f = np.searchsorted(s, -c, side="right") / s.size
    return g + math.exp(min(c, 700.0)) * (0.5 - f)


def _radius_grid(model: LogRatioModel, pilot, n_pilot: int, n_radii: int) -> np.ndarray:
    """Radius grid from 0 to 1.25× the pilot's saturation radius (where p*(r) ≥ 1 − 1/n_pilot).

    r_i = r_end (e^{a u_i} − 1)/(e^a − 1), u_i = i/R, a = 3: relative spacing ≈ 1 % (R ≈ 400) where
    certificates live, finer near 0 where radii are small."""
    target = 1.0 - 1.0 / n_pilot
    lo, hi = 0.0, max(model.radius_scale, 1e-12)
    for _ in range(200):
        if _pilot_critical(model, pilot, hi) >= target:
            break
        lo, hi = hi, 2.0 * hi
    else:
        raise RuntimeError("Could not find the end of the radius grid (the pilot never saturates).")
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        if _pilot_critical(model, pilot, mid) >= target:
            hi = mid
        else:
            lo = mid
    a = 3.0
    u = np.arange(1, n_radii + 1, dtype=np.float64) / n_radii
    return 1.25 * hi * np.expm1(a * u) / math.expm1(a)


def empirical_bernstein_upper(mean, var, n: int, delta: float) -> np.ndarray:
    """Maurer & Pontil (2009), Theorem 4: for i.i.d. X_i in [0, 1], with probability ≥ 1 − δ,
    E X ≤ X̄ + √(2 V ln(2/δ)/n) + 7 ln(2/δ)/(3(n − 1)), V the unbiased sample variance."""
    log_term = math.log(2.0 / delta)
    return mean + np.sqrt(2.0 * np.maximum(var, 0.0) * log_term / n) + 7.0 * log_term / (3.0 * (n - 1))


def _moments(s: np.ndarray, c: np.ndarray):
    """Per threshold c_j: #(S ≥ c_j), #(S ≤ −c_j), and Σ X, Σ X² for X = 1[S ≥ c_j](1 − e^{c_j − S}).

    S is sorted once; counts are exact ``searchsorted`` positions (atoms included) and the sums are
    segment sums of e^{−S}, e^{−2S} between consecutive thresholds: O(n log n) per radius."""
    s = np.sort(s)
    if s.size and np.isnan(s[-1]):
        raise RuntimeError("The log-density ratio produced NaN.")
    n = s.size
    usable = np.isfinite(c) & (np.abs(c) <= 300.0)
    first = np.searchsorted(s, c, side="left")  # S[first:] ≥ c
    n_ge = n - first
    n_le = np.searchsorted(s, -c, side="right")
    tail1 = np.zeros(c.size)
    tail2 = np.zeros(c.size)
    if usable.any():
        # e^{−S} on S ≥ min usable c only (no overflow there); e^{−∞} = 0.
        start = int(first[usable].min())
        w1 = np.exp(-s[start:])
        cuts = np.unique(np.minimum(first[usable], n)) - start
        cuts = cuts[cuts < w1.size]
        if cuts.size:
            seg1 = np.add.reduceat(w1, cuts)
            seg2 = np.add.reduceat(w1 * w1, cuts)
            after1 = np.concatenate([np.cumsum(seg1[::-1])[::-1], [0.0]])  # Σ_{S ≥ cut_m}
            after2 = np.concatenate([np.cumsum(seg2[::-1])[::-1], [0.0]])
            pos = np.searchsorted(cuts, first - start, side="left")
            tail1 = np.where(usable, after1[pos], 0.0)
            tail2 = np.where(usable, after2[pos], 0.0)
    e = np.exp(np.clip(c, -300.0, 300.0))
    sum_x = n_ge - e * tail1
    sum_x2 = n_ge - 2.0 * e * tail1 + e * e * tail2
    return n_ge, n_le, sum_x, sum_x2, usable


def build_radius_table(model: LogRatioModel, settings: TableSettings | None = None) -> RadiusTable:
    """Build the radius table of ``model`` (``docs/variational.md`` gives the method and its soundness)."""
    settings = settings or TableSettings()
    t0 = time.perf_counter()
    levels = np.asarray(P_LEVELS, dtype=np.float64)
    n_bin = len(BINARY_QUANTILES)
    pilot = model.sample_statistics(settings.n_pilot, _generator(settings.seed, _PILOT_STREAM))
    radii = _radius_grid(model, pilot, settings.n_pilot, settings.n_radii)
    n_rad, n_thr = radii.size, n_bin + levels.size
    thresholds = np.empty((n_rad, n_thr), dtype=np.float64)
    q = np.concatenate([BINARY_QUANTILES, 1.0 - levels])
    for i, r in enumerate(radii):
        s = np.sort(_lifted(model.log_ratio(pilot, float(r))))
        vals = s[np.clip(np.round(q * (s.size - 1)).astype(np.int64), 0, s.size - 1)]
        # Binary optimum c = −median(S) (widened past the pilot value); multiclass levels
        # G(c) = p_j ⇔ c = quantile_{1−p_j}(S).
        thresholds[i, :n_bin] = -(vals[:n_bin] + _WIDEN * (1.0 + np.abs(vals[:n_bin])))
        thresholds[i, n_bin:] = vals[n_bin:]
    del pilot
    main = model.sample_statistics(settings.n_samples, _generator(settings.seed, _MAIN_STREAM))
    n = settings.n_samples
    both = np.concatenate([thresholds, -thresholds], axis=1)  # moments at c and at −c
    n_ge = np.empty((n_rad, 2 * n_thr))
    n_le = np.empty((n_rad, 2 * n_thr))
    sum_x = np.empty((n_rad, 2 * n_thr))
    sum_x2 = np.empty((n_rad, 2 * n_thr))
    is_ok = np.empty((n_rad, 2 * n_thr), dtype=bool)
    for i, r in enumerate(radii):
        s = _lifted(model.log_ratio(main, float(r)))
        n_ge[i], n_le[i], sum_x[i], sum_x2[i], is_ok[i] = _moments(s, both[i])
    del main
    # Bonferroni over the 4 bounds per (radius, threshold) below: half of alpha on the binary
    # thresholds (first n_bin columns), half on the multiclass ones.
    e_c = np.exp(np.clip(thresholds, -700.0, 700.0))
    upper = np.empty((n_rad, n_thr))
    with np.errstate(over="ignore", invalid="ignore"):
        mean = sum_x / n
        var = (sum_x2 - n * mean * mean) / (n - 1)
        for col, dlt in ((slice(0, n_bin), settings.alpha / 2.0 / (4 * n_rad * n_bin)),
                         (slice(n_bin, n_thr), settings.alpha / 2.0 / (4 * n_rad * (n_thr - n_bin)))):
            neg = slice(col.start + n_thr, col.stop + n_thr)
            # (a) direct: E X_c = G(c) − e^c F(−c) ≤ G⁺(c) − e^c F⁻(−c)   (2 Clopper–Pearson bounds)
            direct = (clopper_pearson_upper(n_ge[:, col], n, dlt)
                      - e_c[:, col] * clopper_pearson_lower(n_le[:, col], n, dlt))
            # (b) E X_c ≤ empirical-Bernstein bound of X_c ∈ [0, 1]
            eb_c = np.where(is_ok[:, col], empirical_bernstein_upper(mean[:, col], var[:, col], n, dlt), np.inf)
            # (c) E X_c = 1 − e^c + e^c E X_{−c}, with the empirical-Bernstein bound of X_{−c} ∈ [0, 1]
            eb_neg = empirical_bernstein_upper(mean[:, neg], var[:, neg], n, dlt)
            mirror = np.where(is_ok[:, neg], 1.0 - e_c[:, col] + e_c[:, col] * np.minimum(eb_neg, 1.0), np.inf)
            best = np.minimum(np.nan_to_num(direct, nan=np.inf), np.nan_to_num(eb_c, nan=np.inf))
            upper[:, col] = np.minimum(best, np.nan_to_num(mirror, nan=np.inf))
        # + _ROUNDING covers float64 rounding in the sums; E X_c ∈ [0, 1] always.
        upper = np.clip(upper + _ROUNDING, 0.0, 1.0)
        cand = e_c / 2.0 + upper  # equation (3)
    cand = np.where(np.isfinite(thresholds) & np.isfinite(cand), cand, np.inf)
    p_star = np.minimum.accumulate(cand.min(axis=1)[::-1])[::-1]  # certifying r_j certifies r_i < r_j
    table = RadiusTable(radii=radii, p_star=p_star, thresholds=thresholds, upper=upper, alpha=settings.alpha,
                        n_samples=n, build_seconds=time.perf_counter() - t0, description=model.description())
    logger.info("Variational radius table for %s built in %.2f s (n=%d, R=%d).", model.description(),
                table.build_seconds, n, n_rad)
    return table


# ====================================================================== caching
_MEMORY: dict[str, RadiusTable] = {}
_LOCK = threading.Lock()


def _save_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as fh:  # a file object: np.savez would append ".npz" to a name without it
        np.savez(fh, **arrays)


def clear_memory_cache() -> None:
    """Forget the tables kept in memory (files of the disk cache stay)."""
    with _LOCK:
        _MEMORY.clear()


def _cache_key(model: LogRatioModel, settings: TableSettings) -> str:
    ident = {"version": TABLE_VERSION, "model": model.description(), "levels": P_LEVELS,
             "binary": BINARY_QUANTILES, "lift": _LIFT, "widen": _WIDEN,
             "settings": {"alpha": settings.alpha, "n_samples": settings.n_samples, "n_pilot": settings.n_pilot,
                          "n_radii": settings.n_radii, "seed": settings.seed}}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:32]


def get_radius_table(model: LogRatioModel, settings: TableSettings | None = None, *,
                     disk_cache: bool = False) -> RadiusTable:
    """The table of ``model``, built once and reused (memory; optionally ``disk_cache`` on disk)."""
    settings = settings or TableSettings()
    key = _cache_key(model, settings)
    with _LOCK:
        table = _MEMORY.get(key)
        if table is not None:
            return table
        path = cache_dir(f"variational-{key}.npz")
        if disk_cache and os.path.isfile(path):
            try:
                with np.load(path, allow_pickle=False) as data:
                    table = RadiusTable.from_arrays(data)
            except (OSError, ValueError, KeyError) as err:  # a corrupt file is rebuilt
                logger.warning("Ignoring unreadable cached table %s (%s).", path, err)
                table = None
        if table is None:
            table = build_radius_table(model, settings)
            if disk_cache:
                atomic_write(path, lambda tmp: _save_npz(tmp, table.to_arrays()))
        _MEMORY[key] = table
        return table


def variational_radius(noise, p_a, p_b=None, *, dim: int, norm=None, settings: TableSettings | None = None,
                       disk_cache: bool = False) -> np.ndarray:
    """Variational certified radius of ``noise`` in ``norm`` (its own by default), dimension ``dim``.

    Works for every noise with a :func:`log_ratio_model` (including Gaussian/Laplace/uniform for
    cross-checks). The radius holds with probability ≥ 1 − ``settings.alpha`` over the table's Monte
    Carlo (on top of the confidence of p_a, p_b). Binary form when ``p_b is None``.
    """
    table = get_radius_table(log_ratio_model(noise, norm, int(dim)), settings, disk_cache=disk_cache)
    p_a = np.asarray(p_a, dtype=np.float64)
    if p_b is None:
        return np.where(p_a > 0.5, table.radius(p_a), 0.0)
    p_a, p_b = np.broadcast_arrays(p_a, np.asarray(p_b, dtype=np.float64))
    return np.where(p_a > np.minimum(p_b, 1 - p_a), table.radius(p_a, p_b), 0.0)
