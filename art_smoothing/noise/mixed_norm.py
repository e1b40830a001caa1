"""ℓ∞ mixed-norm noise π0(z) ∝ ‖z‖∞^(−k) exp(−‖z‖₂²/2σ²) with its variational ℓ∞ certificate
(Zhang et al., 2020, equation (9), Theorem 5)."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import special

from art_smoothing.certificates.variational import LogRatioModel
from art_smoothing.noise.base import certificate
from art_smoothing.noise.tabulated import TabulatedNoise

__all__ = ["MixedNormLogRatio", "MixedNormNoise"]

_HALF_LOG_2_OVER_PI = 0.5 * math.log(2.0 / math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _uniform(num: int, generator: torch.Generator) -> np.ndarray:
    """``num`` float64 uniforms on [0, 1) from ``generator`` (on its device), as a CPU numpy array."""
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(num, generator=generator, device=device, dtype=torch.float64).cpu().numpy()


def _log_erf_scaled(t: np.ndarray) -> np.ndarray:
    """log erf(e^t/√2) for every real t (float64), accurate where e^t underflows."""
    t = np.asarray(t, dtype=np.float64)
    out = np.empty_like(t)
    small = t < -8.0
    # erf(x) = (2x/√π)(1 − x²/3 + x⁴/10 − x⁶/42 + …) and log(2x/√π) = t + ½ log(2/π) exactly.
    x2 = np.exp(2.0 * t[small]) / 2.0
    out[small] = t[small] + _HALF_LOG_2_OVER_PI + np.log1p(-x2 / 3.0 + x2 * x2 / 10.0 - x2 * x2 * x2 / 42.0)
    x = np.exp(t[~small]) / math.sqrt(2.0)
    out[~small] = np.where(x > 2.0, np.log1p(-special.erfc(x)), np.log(special.erf(x)))
    return out


def _truncation_ratio(t: np.ndarray) -> np.ndarray:
    """R(s) = 2sφ(s)/erf(s/√2) at s = e^t: d/dt log erf(e^t/√2); 1 − R(s) is the variance of N(0, 1)
    truncated to (−s, s). Decreasing from 1 (s → 0) to 0 (s → ∞)."""
    s = np.exp(np.asarray(t, dtype=np.float64))
    small = s < 1e-4
    ss = np.where(small, 1.0, s)
    exact = ss * _SQRT_2_OVER_PI * np.exp(-0.5 * ss * ss) / special.erf(ss / math.sqrt(2.0))
    return np.where(small, 1.0 - s * s / 3.0, exact)


class _LogConcaveSampler:
    """Exact sampler of a log-concave density e^ℓ(t) on the real line by rejection from a fixed
    tangent envelope (adaptive-rejection sampling with frozen abscissae).

    For concave ℓ every tangent line lies above ℓ, so exp of any choice of tangents on any partition
    is an envelope: the accepted draws follow e^ℓ exactly. The abscissae are spread over the region
    where ℓ is within ``drop`` of its maximum plus a fine grid around the mode, so the acceptance
    rate is close to 1 (estimated in :attr:`acceptance`) whatever the parameters; the tails outside
    are covered exactly by the end tangents (slopes > 0 on the left, < 0 on the right).
    Uniforms come from a ``torch.Generator``; the arithmetic is float64 numpy on the CPU.
    """

    def __init__(self, logpdf, dlogpdf, *, n_points: int = 96, drop: float = 40.0):
        self.logpdf = logpdf
        d = lambda t: float(dlogpdf(np.array([t]))[0])
        lv = lambda t: float(logpdf(np.array([t]))[0])
        lo, hi = -1.0, 1.0
        while d(lo) <= 0.0:
            lo *= 2.0
        while d(hi) > 0.0:
            hi *= 2.0
        for _ in range(200):  # the mode: ℓ' is decreasing
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if d(mid) > 0.0 else (lo, mid)
            if hi - lo <= 1e-13 * max(1.0, abs(lo)):
                break
        mode = 0.5 * (lo + hi)
        top = lv(mode)

        def edge(direction):
            step = 1.0
            while lv(mode + direction * step) > top - drop:
                step *= 2.0
            a, b = 0.0, step
            for _ in range(100):
                m = 0.5 * (a + b)
                a, b = (m, b) if lv(mode + direction * m) > top - drop else (a, m)
            return mode + direction * b

        left, right = edge(-1.0), edge(1.0)
        h = 1e-5 * max(1.0, abs(mode))
        curv = (d(mode + h) - d(mode - h)) / (2 * h)
        tau = 1.0 / math.sqrt(-curv) if curv < 0 else 1.0
        t = np.concatenate([np.linspace(left, right, n_points), mode + tau * np.linspace(-8, 8, n_points)])
        t = np.unique(np.clip(t, left, right))
        val, slope = logpdf(t), dlogpdf(t)
        if not (slope[0] > 0.0 and slope[-1] < 0.0 and np.all(np.isfinite(val))):
            raise RuntimeError("Log-concave envelope construction failed (end slopes must point inwards).")
        # Breakpoints of consecutive tangents, clamped to their cell (any tangent is an upper bound).
        with np.errstate(all="ignore"):
            den = slope[:-1] - slope[1:]
            z = (val[1:] - val[:-1] - t[1:] * slope[1:] + t[:-1] * slope[:-1]) / den
        z = np.where(np.isfinite(z) & (den > 0), z, 0.5 * (t[:-1] + t[1:]))
        z = np.minimum(np.maximum(z, t[:-1]), t[1:])
        self.lo = np.concatenate([[-np.inf], z])
        self.hi = np.concatenate([z, [np.inf]])
        self.t, self.val, self.slope = t, val, slope
        logmass = self._segment_logmass()
        m = float(logmass.max())
        w = np.exp(logmass - m)
        self.cum = np.cumsum(w) / w.sum()
        self.log_env_mass = m + math.log(float(w.sum()))
        # acceptance = ∫e^ℓ / ∫envelope, ∫e^ℓ by the trapezoid rule on a fine grid (diagnostic only).
        grid = np.linspace(left, right, 20001)
        self.log_mass = top + math.log(float(np.trapezoid(np.exp(logpdf(grid) - top), grid)))
        self.acceptance = math.exp(self.log_mass - self.log_env_mass)
        self.mode, self.left, self.right = mode, left, right

    def _segment_logmass(self):
        b, w = self.slope, self.hi - self.lo
        with np.errstate(all="ignore"):
            pos = self.val + b * (self.hi - self.t) + np.log(-np.expm1(-b * w) / b)
            neg = self.val + b * (self.lo - self.t) + np.log(np.expm1(b * w) / b)
            flat = self.val + np.log(w)
        out = np.where(b > 0, pos, np.where(b < 0, neg, flat))
        return np.where(w > 0, out, -np.inf)

    def sample(self, num: int, generator: torch.Generator) -> np.ndarray:
        """``num`` exact draws (float64 numpy)."""
        out, have = [], 0
        while have < num:
            m = int((num - have) / max(self.acceptance, 0.05) * 1.05) + 32
            seg = np.minimum(np.searchsorted(self.cum, _uniform(m, generator), side="right"), self.cum.size - 1)
            v = _uniform(m, generator)  # in [0, 1)
            b, a, c = self.slope[seg], self.lo[seg], self.hi[seg]
            w = c - a
            bw = b * w
            # Inverse CDF of e^{b t} on [a, c], anchored at the end where the line peaks (no overflow).
            with np.errstate(all="ignore"):
                up = c + np.log1p(v * np.expm1(-bw)) / b
                down = a + np.log1p(v * np.expm1(bw)) / b
                x = np.where(np.abs(bw) < 1e-12, a + v * w, np.where(b > 0, up, down))
                envelope = self.val[seg] + b * (x - self.t[seg])
                u = 1.0 - _uniform(m, generator)  # in (0, 1]
                keep = np.isfinite(x) & (np.log(u) <= self.logpdf(x) - envelope)
            acc = x[keep]
            out.append(acc)
            have += acc.size
        return np.concatenate(out)[:num]


class MixedNormLogRatio(LogRatioModel):
    """Engine model of :class:`MixedNormNoise`: δ* = r·1 (Theorem 5; the density is symmetric in
    every coordinate and non-increasing in every |z_i|, see the lemma in ``docs/variational.md``), and

        S = log π0(z) − log π0(z − r1) = k log(‖z − r1‖∞/‖z‖∞) + (d r² − 2 r Σ_i z_i)/(2σ²),

    with ‖z − r1‖∞ = max(max_i z_i − r, r − min_i z_i). Sufficient statistics: ‖z‖∞, max z, min z, Σz,
    from exact draws of the noise (chunked, float64).
    """

    norm = math.inf

    def __init__(self, noise: MixedNormNoise, dim: int):
        self.noise, self.dim = noise, int(dim)
        self.sigma, self.k = noise.sigma, noise.k
        self.radius_scale = self.sigma / math.sqrt(self.dim)

    def description(self):
        return {"model": "mixed_norm", "sigma": self.sigma, "k": self.k, "dim": self.dim, "norm": "inf"}

    def sample_statistics(self, num, generator):
        parts = {"linf": [], "zmax": [], "zmin": [], "sum": []}
        step = max(1, (1 << 21) // self.dim)
        for s in range(0, num, step):
            z = self.noise.draw_numpy(min(step, num - s), self.dim, generator)
            zmax, zmin = z.max(axis=1), z.min(axis=1)
            parts["zmax"].append(zmax)
            parts["zmin"].append(zmin)
            parts["linf"].append(np.maximum(zmax, -zmin))
            parts["sum"].append(z.sum(axis=1))
        return {key: np.concatenate(v) for key, v in parts.items()}

    def log_ratio(self, stats, radius):
        s = (self.dim * radius * radius - 2.0 * radius * stats["sum"]) / (2.0 * self.sigma**2)
        if self.k > 0:
            shifted = np.maximum(stats["zmax"] - radius, radius - stats["zmin"])
            with np.errstate(divide="ignore"):
                s = s + self.k * (np.log(shifted) - np.log(stats["linf"]))
        return s


class MixedNormNoise(TabulatedNoise):
    """ℓ∞ mixed-norm noise: density π0(z) ∝ ‖z‖∞^(−k) exp(−‖z‖₂²/2σ²) on R^d (Zhang et al., eq. (9)).

    Normalisable iff 0 ≤ k < d: the set {‖z‖∞ ≤ t} has volume (2t)^d, so ‖z‖∞^(−k) is integrable at 0
    iff k < d (the Gaussian factor handles infinity). k = 0 is N(0, σ²I). The ‖z‖∞^(−k) factor moves
    mass towards the "pointy" directions that matter for ℓ∞ balls.

    **Exact sampler.** Condition on M = ‖z‖∞, on the coordinate J attaining it and on its sign. By
    symmetry J is uniform on {1..d} and the sign is fair; given M = m, z_J = ±m and the other
    coordinates are i.i.d. N(0, σ²) truncated to (−m, m), because on {‖z‖∞ = m, argmax = J} the
    density is m^(−k) e^(−m²/2σ²) Π_{i≠J} e^(−z_i²/2σ²) 1(|z_i| < m). Integrating them out gives
    M's density ∝ m^(−k) e^(−m²/2σ²) erf(m/σ√2)^(d−1). Truncated normals are drawn by exact inversion
    (|z_i| = −σ Φ⁻¹(½(1 − U erf(m/σ√2))), float64). M is drawn through t = log(M/σ), whose
    log-density ℓ(t) = (1 − k) t − e^(2t)/2 + (d − 1) log erf(e^t/√2) is strictly concave: its
    derivative (1 − k) − s² + (d − 1) R(s), s = e^t, has R(s) = 2sφ(s)/erf(s/√2) non-increasing
    (since (1 − s²)∫₀^s φ ≤ sφ(s)). A log-concave density is sampled exactly by rejection from tangent
    lines (:class:`_LogConcaveSampler`) with acceptance ≈ 1 for every d and k — no rejection in R^d.
    k = 0 is drawn directly as N(0, σ²I) (the same law).

    **Certificate** ``"variational"`` (ℓ∞, needs ``dim``): the Monte Carlo dual bound of
    :mod:`art_smoothing.certificates.variational` (``docs/variational.md``) at the worst perturbation
    δ* = (r, …, r) (Theorem 5), binary and multiclass forms, through a radius table built once per
    (noise, d); sound with probability ≥ 1 − ``cert_alpha``. ℓ2 (and ℓ1) radii follow by the base
    class's sound conversion (an ℓ2 ball of radius r lies inside the ℓ∞ ball of radius r).

    The certificate is a table look-up, not a differentiable function of p_a: training objectives that
    need ``certified_radius_torch`` (MACER) are not available with this noise.

    See :class:`~art_smoothing.noise.tabulated.TabulatedNoise` for the keyword parameters.
    """

    norm = math.inf
    name = "mixed_norm"

    def __init__(self, sigma: float, k: float, **kwargs):
        super().__init__(sigma, k, **kwargs)
        self._radial: dict[int, _LogConcaveSampler] = {}

    # ------------------------------------------------------------------ the law of t = log(‖z‖∞/σ)
    def _log_density_t(self, dim: int):
        k = self.k

        def logpdf(t):
            out = (1.0 - k) * t - 0.5 * np.exp(2.0 * t)
            return out + (dim - 1) * _log_erf_scaled(t) if dim > 1 else out

        def dlogpdf(t):
            out = (1.0 - k) - np.exp(2.0 * t)
            return out + (dim - 1) * _truncation_ratio(t) if dim > 1 else out

        return logpdf, dlogpdf

    def _radial_sampler(self, dim: int) -> _LogConcaveSampler:
        sampler = self._radial.get(dim)
        if sampler is None:
            sampler = _LogConcaveSampler(*self._log_density_t(dim))
            self._radial[dim] = sampler
        return sampler

    def coordinate_std(self, dim: int) -> float:
        """√(E‖z‖₂²/d) with E‖z‖₂² = σ² E[s² + (d − 1)(1 − R(s))], s = ‖z‖∞/σ (one-dimensional
        quadrature over t = log s)."""
        self.validate_dim(dim)
        if self.k == 0.0:
            return self.sigma
        sampler = self._radial_sampler(dim)
        logpdf, _ = self._log_density_t(dim)
        t = np.linspace(sampler.left, sampler.right, 40001)
        w = np.exp(logpdf(t) - logpdf(np.array([sampler.mode])))
        s2 = np.exp(2.0 * t)
        second = s2 + (dim - 1) * (1.0 - _truncation_ratio(t)) if dim > 1 else s2
        mean = float(np.trapezoid(w * second, t) / np.trapezoid(w, t))
        return self.sigma * math.sqrt(mean / dim)

    # ------------------------------------------------------------------ sampling
    def _draw(self, num: int, dim: int, generator, device) -> torch.Tensor:
        """``num`` exact draws in R^dim as a float64 (num, dim) tensor on ``device`` (class docstring):
        ‖z‖∞ on the CPU (one scalar per draw), the truncated normals with torch on the device."""
        f64 = torch.float64
        s = torch.as_tensor(np.exp(self._radial_sampler(dim).sample(num, generator)), device=device)
        m = self.sigma * s
        j = torch.randint(dim, (num,), generator=generator, device=device)
        sign_j = torch.where(torch.rand(num, generator=generator, device=device, dtype=f64) < 0.5, -1.0, 1.0)
        u = torch.rand((num, dim), generator=generator, device=device, dtype=f64)
        flip = torch.rand((num, dim), generator=generator, device=device, dtype=f64) < 0.5
        tail = torch.special.erfc(s / math.sqrt(2.0))[:, None]  # 1 − erf(s/√2) without cancellation
        q = 0.5 * ((1.0 - u) + u * tail)  # uniform on [Φ(−s), ½]
        mag = torch.minimum(-self.sigma * torch.special.ndtri(q), m[:, None])
        z = torch.where(flip, -mag, mag)
        z.scatter_(1, j[:, None], (sign_j * m)[:, None])
        return z

    def draw_numpy(self, num: int, dim: int, generator: torch.Generator) -> np.ndarray:
        """``num`` exact draws in R^dim, float64 ``(num, dim)``, of the same law as :meth:`sample`, with numpy
        arithmetic on the CPU from a CPU ``generator``: what :class:`MixedNormLogRatio` builds certificate
        tables from (float64, single-threaded, predictable speed)."""
        s = np.exp(self._radial_sampler(dim).sample(num, generator))
        m = self.sigma * s
        j = torch.randint(dim, (num,), generator=generator).numpy()
        sign_j = np.where(_uniform(num, generator) < 0.5, -1.0, 1.0)
        u = _uniform(num * dim, generator).reshape(num, dim)
        flip = _uniform(num * dim, generator).reshape(num, dim) < 0.5
        q = 0.5 * ((1.0 - u) + u * special.erfc(s / math.sqrt(2.0))[:, None])
        mag = np.minimum(-self.sigma * special.ndtri(q), m[:, None])
        z = np.where(flip, -mag, mag)
        z[np.arange(num), j] = sign_j * m
        return z

    def _sample(self, size, *, generator, device, dtype):
        num, d = size[0], int(np.prod(size[1:])) if len(size) > 1 else 1
        if self.k == 0.0:  # exactly N(0, σ²I)
            return torch.randn(size, generator=generator, device=device, dtype=dtype) * self.sigma
        if num == 0:
            return torch.empty(size, device=device, dtype=dtype)
        return self._draw(num, d, generator, device).to(dtype).reshape(size)

    # ------------------------------------------------------------------ certificate
    def log_ratio_model(self, dim: int, norm=None) -> LogRatioModel:
        if norm is not None and not math.isinf(float(norm)):
            raise ValueError("MixedNormNoise's variational model is for ℓ∞ (other norms come by conversion).")
        self.validate_dim(dim)
        return MixedNormLogRatio(self, dim)

    @certificate("variational", norm=math.inf, needs_dim=True, differentiable=False)
    def _variational(self, p_a, p_b, ctx):
        """Zhang et al. (2020), Theorem 1 with δ* = (r, …, r) (Theorem 5), evaluated through the
        likelihood-ratio threshold form and bounded with Clopper–Pearson + Bonferroni
        (``docs/variational.md``). Lower bound on the true ℓ∞ radius with
        probability ≥ 1 − cert_alpha; monotone in p_a (and in p_b)."""
        return self._table_radius(p_a, p_b, ctx)
