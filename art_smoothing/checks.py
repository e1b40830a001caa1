"""Validation helpers shared by every floor: integers, positive reals and arrays, flags, labels and boxes.

Every check raises :class:`ValueError` with a one-line message that names the parameter, what it got and
what to pass instead, and returns the value in the type the callers use. Nothing here knows ART, models
or the CLI.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "check_bool",
    "check_clip_values",
    "check_fraction",
    "check_int",
    "check_labels",
    "check_positive",
    "check_positive_array",
    "labels_as_indices",
]


def check_int(name: str, value, minimum: int = 1, *, allow_none: bool = False) -> int | None:
    """An integer ``>= minimum`` (an integral float such as ``1e4`` is accepted; a bool is not)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be an integer >= {minimum}{' or None' if allow_none else ''}, "
                             f"got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}{' or None' if allow_none else ''}, got {value!r}.")
    return int(value)


def check_positive(name: str, value, *, allow_zero: bool = False) -> float:
    """A finite real ``> 0`` (``>= 0`` with ``allow_zero``); bools are refused."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}.") from None
    if isinstance(value, bool) or not math.isfinite(v) or (v < 0 if allow_zero else v <= 0):
        raise ValueError(f"{name} must be finite and {'>= 0' if allow_zero else '> 0'}, got {value!r}.")
    return v


def check_fraction(name: str, value) -> float:
    """A real number in (0, 1]."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if isinstance(value, bool) or not 0.0 < v <= 1.0:
        raise ValueError(f"{name} must be a fraction in (0, 1], got {value!r}.")
    return v


def check_bool(name: str, value) -> bool:
    """``True`` or ``False`` (numpy bools too); anything else is an error, not a truthiness test."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}.")  # noqa: TRY004 - bad input is a ValueError
    return bool(value)


def check_positive_array(name: str, value, n: int | None = None) -> np.ndarray:
    """A positive finite scalar or one value per input (float64; ``n`` checks the length)."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number or an array of them, got {value!r}.") from None
    if arr.ndim > 1 or not np.all(np.isfinite(arr)) or np.any(arr <= 0) or arr.size == 0:
        raise ValueError(f"{name} must be finite and > 0 (a scalar or one value per input), got {value!r}.")
    if n is not None and arr.ndim == 1 and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} values for {n} inputs.")
    return arr


def _as_numpy(y) -> np.ndarray:
    return np.asarray(y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else y)


def check_labels(y, nb_classes: int) -> np.ndarray:
    """Labels as class indices ``(N,)`` (int64) or one-hot/score rows ``(N, nb_classes)`` (kept as they are).

    Indices must be whole numbers in ``0..nb_classes-1``: 3.5 or -1 is an error, never truncated."""
    y = _as_numpy(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 1:
        if y.size and (not np.issubdtype(y.dtype, np.number) or not np.all(np.isfinite(y))
                       or np.any(y != np.round(y)) or y.min() < 0 or y.max() >= nb_classes):
            lo, hi = (y.min(), y.max()) if y.size and np.issubdtype(y.dtype, np.number) else ("?", "?")
            raise ValueError(f"y must hold class indices in 0..{nb_classes - 1} (or one-hot rows); got values in "
                             f"[{lo}, {hi}].")
        return y.astype(np.int64)
    if y.ndim == 2:
        if y.shape[1] != nb_classes:
            raise ValueError(f"one-hot y has {y.shape[1]} columns but the classifier has nb_classes={nb_classes}.")
        return y
    raise ValueError(f"y must be class indices (N,) or one-hot (N, {nb_classes}); got shape {y.shape}.")


def labels_as_indices(y, nb_classes: int, n: int | None = None) -> np.ndarray:
    """Class indices ``(N,)`` int64 from indices or one-hot rows (see :func:`check_labels`); ``n`` checks
    that there is one label per input."""
    y = check_labels(y, nb_classes)
    if y.ndim == 2:
        y = y.argmax(axis=1).astype(np.int64)
    if n is not None and y.shape[0] != n:
        raise ValueError(f"y has {y.shape[0]} labels for {n} inputs.")
    return y


def check_clip_values(clip_values, *, per_feature_ok: bool = True) -> tuple[float, float] | None:
    """``None`` or one ``(lo, hi)`` box as floats with ``lo < hi`` (finite).

    ART allows per-feature clip values (arrays); with ``per_feature_ok=False`` those are accepted only when
    every feature shares the same bounds (box certificates need one box for all features)."""
    if clip_values is None:
        return None
    try:
        lo_arr, hi_arr = (np.asarray(c, dtype=np.float64) for c in clip_values)
    except (TypeError, ValueError):
        raise ValueError(f"clip_values must be (lo, hi), got {clip_values!r}.") from None
    lo, hi = float(lo_arr.flat[0]) if lo_arr.size else math.nan, float(hi_arr.flat[0]) if hi_arr.size else math.nan
    if not per_feature_ok and (np.any(lo_arr != lo) or np.any(hi_arr != hi)):
        raise ValueError("Box-constrained certificates need one (lo, hi) box for all features, but the classifier "
                         "has per-feature clip_values; pass box=False to certify without the box.")
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"clip_values must be finite (lo, hi) with lo < hi, got {clip_values!r}.")
    return lo, hi
