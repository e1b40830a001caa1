"""ℓp geometry of perturbations, batched in torch: ascent directions, projections on ℓp balls and boxes,
uniform points of a ball, norms. Shared by :class:`~art_smoothing.attacks.SmoothedPGD` and
:class:`~art_smoothing.training.SmoothAdvTrainer`; every function works on a batch (one row per input)
and with one radius per row.

ℓ1 steps. The exact steepest ℓ1 ascent direction moves a single coordinate, which makes PGD slow; the
sparse steps move the k coordinates of largest |g| instead (Tramèr & Boneh, 2019) — weighted by sign
(SLIDE) or by magnitude (see :func:`l1_topk_direction`) — and coordinates pinned at a box face that g
pushes against can be excluded (Croce & Hein, 2021). Projection on the ℓ1 ball is Duchi et al.'s (2008)
sort-based soft-thresholding.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "clip_to_box",
    "l1_topk_direction",
    "lp_norm",
    "project_l1_ball",
    "project_lp_ball",
    "random_in_ball",
    "steepest_ascent_direction",
]

_TINY = 1e-30


def _radii(eps, v: torch.Tensor) -> torch.Tensor:
    """``eps`` (scalar or one per row) as a column ``(N, 1)`` in ``v``'s dtype and device."""
    e = torch.as_tensor(eps, dtype=v.dtype, device=v.device)
    return e.reshape(-1, 1) if e.dim() else e.reshape(1, 1).expand(v.shape[0], 1)


def project_l1_ball(v: torch.Tensor, eps) -> torch.Tensor:
    """Euclidean projection of the rows of ``v`` ``(N, d)`` on the ℓ1 balls of radii ``eps`` (scalar or
    ``(N,)``, > 0): soft-thresholding at the θ that makes the ℓ1 norm equal to eps (Duchi et al., 2008)."""
    e = _radii(eps, v)
    a = v.abs()
    inside = a.sum(dim=1, keepdim=True) <= e
    u = torch.sort(a, dim=1, descending=True).values
    css = u.cumsum(dim=1)
    j = torch.arange(1, v.shape[1] + 1, device=v.device, dtype=v.dtype)
    cond = u - (css - e) / j > 0
    rho = cond.to(torch.int64).cumsum(dim=1).argmax(dim=1, keepdim=True)  # last index where cond holds
    theta = (css.gather(1, rho) - e) / (rho + 1).to(v.dtype)
    return torch.where(inside, v, v.sign() * (a - theta).clamp(min=0))


def project_lp_ball(delta: torch.Tensor, eps, norm: float) -> torch.Tensor:
    """Map every row of ``delta`` ``(N, ...)`` into the ℓp ball of radius ``eps`` (scalar or ``(N,)``):
    the exact Euclidean projection for p ∈ {1, 2, ∞}, radial rescaling for other p (a point of the ball,
    not the nearest one)."""
    flat = delta.reshape(delta.shape[0], -1)
    e = _radii(eps, flat)
    if math.isinf(norm):
        flat = torch.maximum(torch.minimum(flat, e), -e)
    elif norm == 1.0:
        flat = project_l1_ball(flat, e)
    else:
        size = torch.linalg.vector_norm(flat, ord=norm, dim=1, keepdim=True)
        flat = flat * torch.clamp(e / size.clamp_min(_TINY), max=1.0)
    return flat.reshape(delta.shape)


def clip_to_box(x: torch.Tensor, lo, hi) -> torch.Tensor:
    """``x`` clipped into the box ``[lo, hi]`` (scalars or tensors broadcasting against one input)."""
    lo = torch.as_tensor(lo, dtype=x.dtype, device=x.device)
    hi = torch.as_tensor(hi, dtype=x.dtype, device=x.device)
    return torch.maximum(torch.minimum(x, hi), lo)


def l1_topk_direction(grad: torch.Tensor, k: int, *, weights: str = "sign",
                      frozen: torch.Tensor | None = None) -> torch.Tensor:
    """A sparse unit-ℓ1 ascent direction per row of ``grad``: only the ``k`` coordinates of largest |g| move.

    * ``weights="sign"`` (SLIDE, Tramèr & Boneh, 2019): sign(g) on every coordinate with |g| at least the
      k-th largest (ties may add a few), normalised to ℓ1 norm 1 (zero rows stay zero);
    * ``weights="magnitude"``: g restricted to exactly k coordinates (``torch.topk``), normalised by their ℓ1
      norm. With magnitude weights the soft-thresholding of the ℓ1 projection keeps removing the coordinates
      of lower gradient, so on a linear model the iterates converge to the optimal single-coordinate
      (vertex) perturbation while still exploring k coordinates per step early on; with sign weights they
      settle on a perturbation spread evenly over the top k.

    :param frozen: a boolean mask like ``grad``'s rows: coordinates that cannot move (e.g. pinned at a box
        face that g pushes against) are never chosen.
    """
    g = grad.reshape(grad.shape[0], -1)
    a = g.abs()
    if frozen is not None:
        a = torch.where(frozen.reshape(g.shape), torch.zeros_like(a), a)
    if weights == "sign":
        threshold = torch.topk(a, k, dim=1).values[:, -1:]
        d = torch.sign(g) * ((a >= threshold) & (a > 0))
        d = d / d.abs().sum(dim=1, keepdim=True).clamp_min(1.0)
    elif weights == "magnitude":
        vals, pos = torch.topk(a, k, dim=1)
        w = torch.zeros_like(g).scatter_(1, pos, vals)
        d = g.sign() * w / w.sum(dim=1, keepdim=True).clamp_min(_TINY)
    else:
        raise ValueError(f"weights must be 'sign' or 'magnitude', got {weights!r}.")
    return d.reshape(grad.shape)


def steepest_ascent_direction(grad: torch.Tensor, norm: float, l1_top_fraction: float = 0.1) -> torch.Tensor:
    """A unit-ℓp ascent direction per row of ``grad`` ``(B, ...)`` (zero where the gradient is zero).

    * ℓ2: g/‖g‖₂; ℓ∞: sign(g) (both exact steepest ascent);
    * ℓ1: the sparse SLIDE step of :func:`l1_topk_direction` over the ``l1_top_fraction`` of coordinates;
    * other p: the dual-norm maximiser sign(g)|g|^(q−1)/‖·‖_p, q = p/(p − 1).
    """
    g = grad.reshape(grad.shape[0], -1)
    if norm == 2.0:
        d = g / g.norm(dim=1, keepdim=True).clamp_min(_TINY)
    elif math.isinf(norm):
        d = torch.sign(g)
    elif norm == 1.0:
        d = l1_topk_direction(g, max(1, math.ceil(l1_top_fraction * g.shape[1])), weights="sign")
    else:
        q = norm / (norm - 1.0)
        d = torch.sign(g) * g.abs().pow(q - 1.0)
        d = d / torch.linalg.vector_norm(d, ord=norm, dim=1, keepdim=True).clamp_min(_TINY)
    return d.reshape(grad.shape)


def random_in_ball(shape: tuple[int, ...], eps: torch.Tensor, norm: float, generator: torch.Generator,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One uniform point of the ℓp ball of radius ``eps[i]`` per row, p ∈ {1, 2, ∞}, shape ``shape``
    (``(N, ...)``), on ``generator``'s device. ℓ1: exponential magnitudes with random signs, normalised, are
    uniform on the ℓ1 sphere; ℓ2: normalised Gaussians; the radius is scaled by U^(1/d)."""
    n, d = shape[0], int(np.prod(shape[1:]))
    dev = generator.device
    eps = eps.reshape(-1, 1).to(dtype)
    if math.isinf(norm):
        u = torch.rand((n, d), generator=generator, device=dev, dtype=dtype) * 2 - 1
        return (u * eps).reshape(shape)
    if norm == 2.0:
        g = torch.randn((n, d), generator=generator, device=dev, dtype=dtype)
        g = g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)
    elif norm == 1.0:
        e = -torch.log(torch.rand((n, d), generator=generator, device=dev, dtype=dtype).clamp_min(1e-12))
        s = torch.randint(0, 2, (n, d), generator=generator, device=dev).to(dtype) * 2 - 1
        g = s * e / e.sum(dim=1, keepdim=True)
    else:
        raise ValueError(f"random points are drawn in l1, l2 or linf balls, got norm {norm}.")
    rad = torch.rand((n, 1), generator=generator, device=dev, dtype=dtype) ** (1.0 / d)
    return (g * rad * eps).reshape(shape)


def lp_norm(delta: np.ndarray, p: float) -> np.ndarray:
    """ℓp norms (float64) of the rows of ``delta`` ``(N, ...)`` (numpy)."""
    flat = delta.reshape(delta.shape[0], -1).astype(np.float64)
    if math.isinf(p):
        return np.abs(flat).max(axis=1) if flat.shape[1] else np.zeros(len(flat))
    return np.linalg.norm(flat, ord=p, axis=1)
