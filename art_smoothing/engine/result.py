"""What CERTIFY returns: :class:`CertificationResult`, per input, with everything needed to recompute
or audit a radius; and :func:`accuracy_at_radii`, the one definition of accuracy at a radius."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from art_smoothing.certificates.norms import norm_name
from art_smoothing.checks import labels_as_indices
from art_smoothing.noise.base import Noise

__all__ = ["DECISIONS", "CertificationResult", "accuracy_at_radii"]

#: codes of :attr:`CertificationResult.decisions`: what a sequential run decided about a requested radius
DECISIONS = {1: "certified", 0: "refuted", -1: "futile"}


def accuracy_at_radii(correct, radius, radii, *, strict: bool = False) -> np.ndarray:
    """For each r in ``radii``: the fraction of inputs that are correct with ``radius >= r`` (a certified
    radius: the ball of radius r is certified) or, with ``strict``, ``radius > r`` (an empirical radius:
    no flip was found at norm ≤ r). float64, one value per radius; NaN for no inputs."""
    correct = np.asarray(correct, dtype=bool)
    radius = np.asarray(radius, dtype=np.float64)
    radii = np.atleast_1d(np.asarray(radii, dtype=np.float64))
    if radii.ndim != 1 or np.any(np.isnan(radii)):
        raise ValueError(f"radii must be a list of radii, got {radii!r}.")
    if correct.size == 0:
        return np.full(radii.shape, np.nan)
    above = radius[None, :] > radii[:, None] if strict else radius[None, :] >= radii[:, None]
    return np.mean(correct[None, :] & above, axis=1)


def _radius_name(r) -> str:
    """A radius as a column name: short (0.25) but never the same for two different radii (0.2500001)."""
    short = f"{float(r):g}"
    return short if float(short) == float(r) else repr(float(r))


@dataclass
class CertificationResult:
    """Per-input outcome of CERTIFY, with everything needed to recompute or audit a radius.

    ``prediction`` is -1 where the smoothed classifier abstains (radius 0 there).

    Sequential runs (``certify_detailed(..., sequential=True, radius=R)``) also fill ``n_used`` (estimation
    draws each input used, at most the budget ``n``), ``radii`` (the requested grid, shape (G,)) and
    ``decisions`` ((N, G): 1 certified, 0 refuted — the optimistic bounds cannot reach it, -1 futile — not
    certifiable within the budget; see :data:`DECISIONS`). An input is certified at R exactly when its
    prediction is not -1 and its radius is ≥ R.
    """

    prediction: np.ndarray
    radius: np.ndarray
    norm: float
    method: str | None
    form: str
    p_a_lower: np.ndarray
    p_b_upper: np.ndarray
    counts: np.ndarray  # (N, nb_classes) estimation votes
    counts_selection: np.ndarray  # (N, nb_classes) selection votes
    n: int
    n0: int
    alpha: float
    noise: Noise
    dim: int
    box: bool = False
    clip_values: tuple[float, float] | None = None
    seed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    n_used: np.ndarray | None = None
    radii: np.ndarray | None = None
    decisions: np.ndarray | None = None

    @property
    def abstained(self) -> np.ndarray:
        return self.prediction < 0

    def radius_for(self, norm=None, method: str | None = None, x=None) -> np.ndarray:
        """The radius in another norm / by another method from the *same* votes and bounds.

        Box-constrained certificates need the inputs ``x`` again (they are not stored); without ``x``
        the plain certificates are used (with ``method=None`` a warning says so when the result was certified
        with the box)."""
        box = x is not None and self.clip_values is not None
        if self.box and x is None and method is None:
            warnings.warn("radius_for() without x uses the plain certificates, but this result was certified with "
                          "box-constrained ones: pass x=<the certified inputs> for the box radii.", stacklevel=2)
        r = self.noise.certified_radius(
            self.p_a_lower,
            None if self.form == "binary" else self.p_b_upper,
            norm=norm, dim=self.dim, method=method,
            x=x if box else None, clip_values=self.clip_values if box else None,
        )
        return np.where(self.abstained, 0.0, r)

    def certified_accuracy(self, y, radii) -> np.ndarray:
        """Fraction of inputs that are correctly classified with radius >= r, for each r in ``radii``."""
        labels = labels_as_indices(y, self.counts.shape[1], n=self.prediction.shape[0])
        return accuracy_at_radii(self.prediction == labels, self.radius, radii)

    def to_records(self) -> list[dict[str, Any]]:
        """One plain dict per input (for CSV/JSON); sequential runs add ``n_used`` and one
        ``decision@<radius>`` column per requested radius."""
        top2 = np.sort(self.counts, axis=1)[:, ::-1]
        records = [
            {
                "index": i,
                "prediction": int(self.prediction[i]),
                "radius": float(self.radius[i]),
                "norm": norm_name(self.norm),
                "p_a_lower": float(self.p_a_lower[i]),
                "p_b_upper": float(self.p_b_upper[i]),
                "count_top": int(top2[i, 0]),
                "count_runner_up": int(top2[i, 1]) if top2.shape[1] > 1 else 0,
            }
            for i in range(len(self.prediction))
        ]
        if self.n_used is not None:
            for i, rec in enumerate(records):
                rec["n_used"] = int(self.n_used[i])
                for g, r in enumerate(self.radii):
                    rec[f"decision@{_radius_name(r)}"] = DECISIONS[int(self.decisions[i, g])]
        return records

    def summary(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items()
             if not isinstance(v, np.ndarray) and k not in ("noise", "n_used", "radii", "decisions")}
        d["noise"] = repr(self.noise)
        d["norm"] = norm_name(self.norm)
        if self.n_used is not None:
            d["sequential"] = {"radii": [float(r) for r in self.radii], "n_used_total": int(self.n_used.sum()),
                               "n_fixed_total": int(self.n) * len(self.n_used)}
        return d
