"""Inversion of a certificate: the smallest probability bound p_A that certifies a given radius.

For a noise (any object with ``certified_radius(p_a, p_b=None, *, norm, dim, method, x, clip_values)``,
duck-typed: this module never imports :mod:`art_smoothing.noise`) the binary certificate R(p_A) is
non-decreasing in p_A, so "is R certified?" is the threshold test p_A ≥ p*(R) with

    p*(R) = min { p ∈ (1/2, 1] : R(p) ≥ R }   (binary form),
    p*(R; p_B) = min { p ∈ [0, 1] : p > min(p_B, 1 − p) and R(p, p_B) ≥ R }   (multiclass form).

Sequential CERTIFY (:mod:`art_smoothing.certificates.sequential`) and sample-size planning compare
lower confidence bounds with p*(R) instead of evaluating the certificate again and again.

The minimum is found by bisection over the float64 numbers themselves
(:func:`art_smoothing.certificates.bounds.float_bisection`): at most 53 certificate evaluations (63 in
the multiclass form, whose bracket may start at 0) on whole arrays, ending on two adjacent floats. The
returned p is always one at which the certificate was evaluated and reached the radius, so it is
rounded in the safe direction (R(p*) ≥ R exactly as computed; the float just below does not reach it
when the certificate is monotone). ``inf`` marks radii that no p ≤ 1 certifies.
"""

from __future__ import annotations

import numpy as np

from art_smoothing.certificates.bounds import float_bisection

__all__ = ["check_radius", "required_p_a"]


def check_radius(radius, name: str = "radius") -> np.ndarray:
    """Radii as a float64 array: non-empty, no NaN, every entry ≥ 0 (``inf`` allowed).

    :raises ValueError: for an empty grid, NaN, negative or non-numeric radii (strings and booleans included).
    """
    raw = np.asarray(radius)
    if raw.dtype.kind not in "iuf":  # "0.5" or True would convert silently
        raise ValueError(f"{name} must be a number >= 0 or an array of them, got {radius!r}.")
    arr = raw.astype(np.float64)
    if arr.size == 0:
        raise ValueError(f"{name} is empty: pass at least one radius (a number >= 0 or a non-empty grid).")
    if np.any(np.isnan(arr)):
        raise ValueError(f"{name} contains NaN: radii must be numbers >= 0.")
    if np.any(arr < 0):
        raise ValueError(f"{name} must be >= 0 (0 means 'not abstaining'), got a smallest value {arr.min()!r}.")
    return arr


def _check_p_b(p_b) -> np.ndarray | None:
    if p_b is None:
        return None
    try:
        arr = np.asarray(p_b, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"p_b must be a probability or an array of them, got {p_b!r}.") from None
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr > 1):
        raise ValueError(f"p_b must hold probabilities in [0, 1], got {p_b!r}.")
    return arr


def _shapes_with_x(radius: np.ndarray, p_b: np.ndarray | None, n_inputs: int) -> tuple[int, ...]:
    """Output shape when ``x`` gives one input per row: (N,) or (N, G)."""
    shapes = [radius.shape] + ([] if p_b is None else [p_b.shape])
    out = (n_inputs,)
    for s in shapes:
        if len(s) == 0:
            continue
        if len(s) == 1 and s[0] in (1, n_inputs):
            continue
        if len(s) == 2 and s[0] in (1, n_inputs):
            out = (n_inputs, max(out[1] if len(out) == 2 else 1, s[1]))
            continue
        raise ValueError(
            f"with x ({n_inputs} inputs) radius and p_b must be a scalar, one value per input ({n_inputs},) or a "
            f"grid per input ({n_inputs} or 1, G); got shape {s}. For one grid shared by all inputs pass "
            "radius[None, :]."
        )
    return out


def required_p_a(noise, radius, *, p_b=None, norm=None, dim: int | None = None, method: str | None = None,
                 x=None, clip_values=None) -> np.ndarray:
    """Smallest lower bound p_A whose certificate reaches ``radius`` (binary form, or multiclass with ``p_b``).

    :param noise: any noise object with ``certified_radius`` (non-decreasing in p_a, non-increasing
        in p_b), e.g. one from :mod:`art_smoothing.noise`.
    :param radius: radius or radii ≥ 0 (any shape without ``x``). 0 means "not abstaining": the
        answer is then the smallest float above 1/2 (binary) or above min(p_b, 1 − p) (multiclass).
    :param p_b: ``None`` for the binary form (p_B = 1 − p_A), else an upper bound on the runner-up
        probability (broadcast with ``radius``); the certificate uses min(p_b, 1 − p_a), as the noise does.
    :param norm: norm of the radius (``None`` = the noise's own); conversions may need ``dim``.
    :param dim: number of input features.
    :param method: certificate name or ``None`` for the best one (as in ``certified_radius``).
    :param x: inputs ``(N, ...)`` for box-constrained certificates (with ``clip_values``): the answer
        then depends on the input. ``radius`` (and ``p_b``) must be a scalar, ``(N,)`` or ``(N or 1, G)``;
        the result is ``(N,)`` or ``(N, G)``.
    :param clip_values: ``(lo, hi)`` box of the inputs, for box-constrained certificates.
    :return: float64 array p with ``certified_radius(p) ≥ radius`` as computed (never a smaller p than
        needed, up to one float64 step), ``inf`` where no p ≤ 1 reaches the radius (beyond a tabulated
        certificate's largest radius, or a box radius that even p = 1 does not certify). A box
        certificate that certifies the whole box returns an infinite radius, so a radius beyond the box
        needs exactly the p that certifies the whole box (finite) — every point of the box is then safe.
    :raises ValueError: radius < 0, NaN or an empty grid; p_b outside [0, 1]; shapes that do not match
        ``x``; a norm that needs ``dim`` when it is missing (the noise's message says to pass ``dim``).
    """
    radius = check_radius(radius)
    p_b = _check_p_b(p_b)
    kwargs = {"norm": norm, "dim": dim, "method": method}
    if x is not None:
        x_arr = x if hasattr(x, "shape") else np.asarray(x, dtype=np.float64)
        n_inputs = 1 if len(x_arr.shape) == 1 else int(x_arr.shape[0])
        shape = _shapes_with_x(radius, p_b, n_inputs)
        radii = np.broadcast_to(radius if radius.ndim != 1 or len(shape) == 1 else radius[:, None], shape)
        pbs = None if p_b is None else np.broadcast_to(p_b if p_b.ndim != 1 or len(shape) == 1 else p_b[:, None],
                                                       shape)
        if len(shape) == 1:
            return _invert(noise, radii.copy(), None if pbs is None else pbs.copy(), kwargs, x, clip_values)
        # One bisection per grid column (a loop over radii, not over inputs): the box certificate needs
        # exactly one x row per bound.
        cols = [_invert(noise, radii[:, g].copy(), None if pbs is None else pbs[:, g].copy(), kwargs, x, clip_values)
                for g in range(shape[1])]
        return np.stack(cols, axis=1)
    if p_b is not None:
        try:
            radius, p_b = (a.copy() for a in np.broadcast_arrays(radius, p_b))
        except ValueError:
            raise ValueError(f"radius (shape {radius.shape}) and p_b (shape {p_b.shape}) must broadcast.") from None
    shape = radius.shape
    out = _invert(noise, radius.ravel(), None if p_b is None else p_b.ravel(), kwargs, None, clip_values)
    return out.reshape(shape)


def _invert(noise, radius: np.ndarray, p_b: np.ndarray | None, kwargs: dict, x, clip_values) -> np.ndarray:
    """Flat core of :func:`required_p_a`: ``radius`` and ``p_b`` 1-D (one entry per x row with ``x``)."""

    def reaches(p):
        r = noise.certified_radius(p, p_b, x=x, clip_values=clip_values, **kwargs)
        certifiable = p > 0.5 if p_b is None else p > np.minimum(p_b, 1.0 - p)
        return certifiable & (r >= radius)

    hi = np.ones_like(radius)
    try:
        possible = reaches(hi)
    except ValueError as err:
        raise ValueError(f"required_p_a: the certificate of {type(noise).__name__} cannot be evaluated "
                         f"(norm={_norm_repr(kwargs['norm'])}, dim={kwargs['dim']}, method={kwargs['method']!r}): "
                         f"{err}") from err
    # Below lo nothing is certifiable: p ≤ 1/2 (binary), p ≤ min(p_b, 1/2) ≤ min(p_b, 1 − p) (multiclass).
    lo = np.full_like(radius, 0.5) if p_b is None else np.minimum(p_b, 0.5)
    _, p = float_bisection(reaches, lo, hi)
    return np.where(possible, p, np.inf)


def _norm_repr(norm) -> str:
    return "None (the noise's own)" if norm is None else repr(norm)
