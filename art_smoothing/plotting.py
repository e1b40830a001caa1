"""PNG plots of certification results (matplotlib, optional ``[plot]`` extra, imported lazily).

* certified (or empirical) accuracy as a function of the radius
  (:func:`art_smoothing.engine.accuracy_at_radii`), the curve of
  the randomized-smoothing papers;
* :func:`plot_accuracy_curves` — several such curves on one figure (one figure per norm);
* :func:`plot_radius_scatter` — certified vs empirical radius per input with the line y = x (points
  below it would be flips inside a certified radius).

Without matplotlib every ``plot_*`` function logs one warning and returns ``None``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["Curve", "have_matplotlib", "plot_accuracy_curves", "plot_radius_scatter",
           "radius_grid"]

_warned = False


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend, or None (warned once) without matplotlib."""
    global _warned
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        if not _warned:
            logger.warning("matplotlib is not installed: no plots (pip install 'art_smoothing[plot]').")
            _warned = True
        return None
    return plt


@dataclass
class Curve:
    """One accuracy-vs-radius curve: ``accuracy[i]`` at ``radii[i]``."""

    label: str
    radii: np.ndarray
    accuracy: np.ndarray
    dashed: bool = False


def radius_grid(*radius_arrays, points: int = 201, top: float | None = None) -> np.ndarray:
    """Evenly spaced radii from 0 to a little beyond the largest finite radius of the arrays."""
    if top is None:
        finite = [np.asarray(a, dtype=np.float64)[np.isfinite(a)] for a in radius_arrays]
        finite = np.concatenate(finite) if finite else np.zeros(0)
        top = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
        top *= 1.05
    return np.linspace(0.0, top, points)


def plot_accuracy_curves(curves: Sequence[Curve], path: str, *, title: str, xlabel: str) -> str | None:
    """Draw the curves on one figure and save it as PNG at ``path``; returns the path (None without matplotlib)."""
    plt = pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(5.2, 3.6), dpi=100)
    for curve in curves:
        ax.plot(curve.radii, curve.accuracy, linestyle="--" if curve.dashed else "-", linewidth=1.6,
                label=curve.label, drawstyle="steps-post")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(left=0.0)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    if curves:
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_radius_scatter(certified, empirical, path: str, *, title: str, norm_label: str,
                        violation=None, correct=None) -> str | None:
    """Certified (x) vs empirical (y) radius per input with the line y = x; inputs where the attack
    found no flip are drawn at the top edge as open triangles, violations in red."""
    plt = pyplot()
    if plt is None:
        return None
    cert = np.asarray(certified, dtype=np.float64)
    emp = np.asarray(empirical, dtype=np.float64)
    violation = np.zeros(len(cert), bool) if violation is None else np.asarray(violation, bool)
    correct = np.ones(len(cert), bool) if correct is None else np.asarray(correct, bool)
    finite_vals = np.concatenate([cert[np.isfinite(cert)], emp[np.isfinite(emp)]])
    top = float(finite_vals.max()) if finite_vals.size and finite_vals.max() > 0 else 1.0
    top = top * 1.08
    fig, ax = plt.subplots(figsize=(4.4, 4.0), dpi=100)
    ax.plot([0, top], [0, top], color="black", linewidth=1.0, label="y = x")
    found = np.isfinite(emp)
    cert_plot = np.where(np.isfinite(cert), cert, top)
    groups = [
        (found & correct & ~violation, "o", "tab:blue", "correct"),
        (found & ~correct & ~violation, "x", "tab:orange", "misclassified"),
        (violation, "s", "tab:red", "violation (emp < cert)"),
    ]
    for mask, marker, color, label in groups:
        if mask.any():
            ax.scatter(cert_plot[mask], emp[mask], s=14, marker=marker, color=color, label=label, alpha=0.8)
    if (~found).any():
        ax.scatter(cert_plot[~found], np.full(int((~found).sum()), top), s=18, marker="^", facecolors="none",
                   edgecolors="tab:green", label="no flip found")
    ax.set_xlim(0, top * 1.02)
    ax.set_ylim(0, top * 1.04)
    ax.set_xlabel(f"certified radius ({norm_label})")
    ax.set_ylabel(f"empirical radius ({norm_label})")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def format_radius(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.4g}"
