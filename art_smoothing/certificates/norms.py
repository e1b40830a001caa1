"""Norm bookkeeping shared by every noise: parsing norm names and sound conversion of radii.

A certificate in norm ``q`` with radius ``r_q`` says: the smoothed prediction is constant on the
ℓ_q ball B_q(x, r_q). To certify an ℓ_p ball we need B_p(x, r_p) ⊂ B_q(x, r_q), i.e.
``sup_{δ≠0} ‖δ‖_q / ‖δ‖_p · r_p ≤ r_q``. In dimension d that supremum is
``d^max(0, 1/q − 1/p)`` (Hölder for q < p, monotonicity of ℓ_p norms for q ≥ p), hence

    r_p = r_q / d^max(0, 1/q − 1/p).

Both steps are exact inequalities, so a converted radius is a lower bound on the true ℓ_p radius
whenever the ℓ_q radius is a lower bound on the true ℓ_q radius.
"""

from __future__ import annotations

import math

from art_smoothing.checks import check_int

__all__ = ["conversion_factor", "dual_norm", "norm_name", "parse_norm"]

_ALIASES = {
    "1": 1.0,
    "l1": 1.0,
    "2": 2.0,
    "l2": 2.0,
    "inf": math.inf,
    "linf": math.inf,
    "np.inf": math.inf,
    "infinity": math.inf,
}


def parse_norm(norm) -> float:
    """Return ``norm`` as a float in [1, inf] (accepts 1, 2, np.inf, "inf", "l1", "linf", 3, ...).

    :raises ValueError: for anything that is not a norm order p ≥ 1.
    """
    if isinstance(norm, str):
        key = norm.strip().lower()
        if key in _ALIASES:
            return _ALIASES[key]
        try:
            value = float(key.removeprefix("l"))
        except ValueError:
            raise ValueError(f"Unknown norm {norm!r}: use 1, 2, 'inf' (or another real p >= 1).") from None
    else:
        try:
            value = float(norm)
        except (TypeError, ValueError):
            raise ValueError(f"Unknown norm {norm!r}: use 1, 2, 'inf' (or another real p >= 1).") from None
    if math.isnan(value) or value < 1.0:
        raise ValueError(f"Unknown norm {norm!r}: a norm order must be a real p >= 1 or inf.")
    return value


def norm_name(norm: float) -> str:
    """Human-readable name: 'l1', 'l2', 'linf', 'l3', 'l2.5'."""
    if math.isinf(norm):
        return "linf"
    return f"l{int(norm)}" if float(norm).is_integer() else f"l{norm:g}"


def dual_norm(norm: float) -> float:
    """Hölder conjugate q with 1/p + 1/q = 1."""
    if norm == 1.0:
        return math.inf
    if math.isinf(norm):
        return 1.0
    return norm / (norm - 1.0)


def conversion_factor(from_norm: float, to_norm: float, dim: int | None) -> float:
    """Factor ``c`` with ``r_to = r_from / c`` (see the module docstring).

    :raises ValueError: when the conversion needs the dimension and ``dim`` is missing.
    """
    inv_from = 0.0 if math.isinf(from_norm) else 1.0 / from_norm
    inv_to = 0.0 if math.isinf(to_norm) else 1.0 / to_norm
    exponent = inv_from - inv_to
    if exponent <= 0.0:
        return 1.0
    if dim is None:
        raise ValueError(
            f"Converting a {norm_name(from_norm)} radius to {norm_name(to_norm)} needs the input dimension: "
            "pass dim=<number of input features> (the estimator passes it for you)."
        )
    return float(check_int("dim", dim, 1)) ** exponent
