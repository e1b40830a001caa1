"""Attack vs certificate: per input, the certified radius (a lower bound on the robust radius, from
CERTIFY) next to the empirical radius (an upper bound, from :func:`~art_smoothing.attacks.empirical_radius`),
and a summary — certified and empirical robust accuracy at a list of radii, the ratio
empirical/certified (how tight the certificates are), and the number of *violations* (a flip found
inside a certified radius) against the number the failure probability α allows.

Which class is attacked. Where CERTIFY returns a class c_A (with radius R), the attack moves away from
c_A, so the empirical radius is directly comparable with R whether or not c_A is the true label. Where
CERTIFY abstains (R = 0), the attack moves away from the true label.

Violations and α. A violation is an input with c_A certified at radius R and an empirical radius
< R: a perturbation of norm < R on which PREDICT (fresh draws, the estimator's α) confidently returns
a class other than c_A. It needs a statistical failure (or a bug): either the certificate is wrong
(probability ≤ α) or one of the input's PREDICT decisions is wrong (≤ α each, Cohen et al., Theorem 2).
So the expected number of violations is at most α · Σ_i (1 + PREDICT decisions for input i) over the
certified inputs; the summary reports this bound next to the count. (Draws are shared across inputs,
so violations of different inputs are correlated: the bound holds for the expectation.)

Everything is plain data: :meth:`Evaluation.to_records` (list of dicts), :meth:`Evaluation.to_dict`,
:meth:`Evaluation.to_json` and :meth:`Evaluation.to_csv`. The per-input step (:func:`certify_and_attack`)
and the assembly of records and summary (:func:`assemble`) are public so that a backend (the Ray backend of
:mod:`art_smoothing.distributed`) can run the first on chunks and the second once.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from art_smoothing.attacks.radius import empirical_radius, make_attack
from art_smoothing.certificates.inversion import check_radius
from art_smoothing.certificates.norms import norm_name, parse_norm
from art_smoothing.checks import labels_as_indices
from art_smoothing.engine.backends import resolve_backend
from art_smoothing.engine.result import CertificationResult, accuracy_at_radii
from art_smoothing.estimator import SmoothedClassifier

logger = logging.getLogger(__name__)

__all__ = [
    "Evaluation",
    "EvaluationRecord",
    "EvaluationSummary",
    "assemble",
    "certify_and_attack",
    "check_radii",
    "evaluate",
    "jsonable",
]


@dataclass
class EvaluationRecord:
    """One input. Radii are in the evaluation's norm; ``empirical_radius`` is ``inf`` where the attack
    found no flip up to ``eps_max``; ``n_used`` is the estimation draws of a sequential certification (None
    for fixed-n)."""

    index: int
    label: int
    prediction: int  #: CERTIFY's class, -1 on abstention
    correct: bool
    certified_radius: float
    attacked_class: int
    empirical_radius: float
    violation: bool
    predict_calls: int
    p_a_lower: float
    n_used: int | None = None


@dataclass
class EvaluationSummary:
    norm: str
    n_inputs: int
    n: int
    alpha: float
    noise: str
    attack: str
    radii: list[float]
    certified_accuracy: list[float]
    empirical_accuracy: list[float]  #: correct and no flip found with norm ≤ r
    clean_accuracy: float  #: CERTIFY's prediction equals the label
    abstentions: int
    mean_ratio: float  #: mean empirical/certified over inputs with R > 0 and a flip found
    median_ratio: float
    ratio_count: int  #: inputs entering the ratios
    no_flip_found: int  #: certified inputs (R > 0) without any flip up to eps_max
    violations: int
    violations_expected_max: float  #: α · Σ (1 + PREDICT decisions) over certified inputs
    extra: dict[str, Any] = field(default_factory=dict)


def jsonable(v):
    """``v`` with numpy scalars as Python numbers and infinite floats as the strings "inf"/"-inf" (NaN as
    None), recursively through lists, tuples and dicts: what ``json.dumps`` can write and read back."""
    if isinstance(v, (np.floating, float)):
        v = float(v)
        return v if math.isfinite(v) else ("inf" if v > 0 else "-inf") if not math.isnan(v) else None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, (list, tuple)):
        return [jsonable(u) for u in v]
    if isinstance(v, dict):
        return {k: jsonable(u) for k, u in v.items()}
    return v


@dataclass
class Evaluation:
    """Output of :func:`evaluate`."""

    records: list[EvaluationRecord]
    summary: EvaluationSummary

    def to_records(self) -> list[dict[str, Any]]:
        """One plain dict per input (``inf`` radii stay float ``inf``; JSON output writes "inf"); ``n_used`` only
        when the certification was sequential."""
        records = [asdict(r) for r in self.records]
        if all(r["n_used"] is None for r in records):
            for r in records:
                del r["n_used"]
        return records

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict ``{"summary": ..., "records": [...]}`` (infinite radii as the string "inf")."""
        return {"summary": jsonable(asdict(self.summary)), "records": [jsonable(r) for r in self.to_records()]}

    def to_json(self, path: str | None = None, **kwargs) -> str:
        """The :meth:`to_dict` form as JSON text; also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=kwargs.pop("indent", 2), **kwargs)
        if path is not None:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
        return text

    def to_csv(self, path: str) -> None:
        """Per-input records as CSV (one row per input)."""
        rows = self.to_records()
        names = [f.name for f in EvaluationRecord.__dataclass_fields__.values() if not rows or f.name in rows[0]]
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=names)
            writer.writeheader()
            writer.writerows(rows)

    def accuracies(self, radii) -> tuple[np.ndarray, np.ndarray]:
        """Certified and empirical accuracy at any radii, from the per-input records: the fraction of inputs
        correct with certified radius ≥ r, and correct with no flip found at norm ≤ r (empirical radius > r)."""
        radii = check_radii(radii)
        correct = np.array([r.correct for r in self.records], dtype=bool)
        cert = np.array([r.certified_radius for r in self.records], dtype=np.float64)
        emp = np.array([r.empirical_radius for r in self.records], dtype=np.float64)
        return accuracy_at_radii(correct, cert, radii), accuracy_at_radii(correct, emp, radii, strict=True)

    def table(self) -> str:
        """The summary as a small text table (radius, certified and empirical accuracy)."""
        s = self.summary
        head = (f"{s.norm}: n_inputs={s.n_inputs} clean_acc={s.clean_accuracy:.3f} abstain={s.abstentions} "
                f"median(emp/cert)={s.median_ratio:.3g} mean={s.mean_ratio:.3g} (over {s.ratio_count}) "
                f"violations={s.violations} (expected <= {s.violations_expected_max:.3g})")
        lines = [head, f"{'radius':>10} {'certified':>10} {'empirical':>10}"]
        lines += [f"{r:>10.4g} {c:>10.3f} {e:>10.3f}"
                  for r, c, e in zip(s.radii, s.certified_accuracy, s.empirical_accuracy)]
        return "\n".join(lines)


def evaluate(smoothed, x, y, norm=None, n: int = 1000, attack=None, radii=None, *, n0: int | None = None,
             batch_size: int = 256, eps_max=None, search_steps: int = 8, n_predict: int | None = None,
             certify_kwargs: dict | None = None, backend: Any = "local") -> Evaluation:
    """Certify and attack every input; per-input records and a summary (see the module docstring).

    :param smoothed: an :class:`~art_smoothing.SmoothedClassifier` (gradients are needed).
    :param x: inputs ``(N, *input_shape)``.
    :param y: true labels (indices or one-hot).
    :param norm: 1, 2 or ``"inf"`` (default: the noise's own norm).
    :param n: CERTIFY's estimation draws.
    :param attack: ``None``, a dict of :class:`~art_smoothing.attacks.SmoothedPGD` parameters or an instance.
    :param radii: radii of the accuracy curves (default: six points from 0 to the largest radius seen).
    :param n0: CERTIFY's selection draws (default ``sample_size``).
    :param batch_size: noisy samples per forward pass.
    :param eps_max: upper end of the ε search (default ``attacks.radius.default_eps_max``).
    :param search_steps: attack rounds of the ε search.
    :param n_predict: draws of each PREDICT flip decision (default ``sample_size``).
    :param certify_kwargs: extra arguments of ``certify_detailed`` (``method``, ``form``, ``box``).
    :param backend: ``"local"``, ``"ray"`` or an :class:`art_smoothing.distributed.RayBackend` (inputs
        split over Ray workers, records and summary as here; see :mod:`art_smoothing.distributed`).
    """
    if not isinstance(smoothed, SmoothedClassifier):
        raise ValueError(  # noqa: TRY004 - bad input is a ValueError throughout the package
            "evaluate needs an art_smoothing.SmoothedClassifier wrapping a PyTorchClassifier "
            f"(the attack needs gradients), got {type(smoothed).__name__}.")
    p = smoothed.noise.norm if norm is None else parse_norm(norm)
    atk = make_attack(smoothed, p, attack)
    x = smoothed.check_x(x)
    labels = labels_as_indices(y, smoothed.nb_classes, n=x.shape[0])
    runner = resolve_backend(backend)  # ValueError for unknown backends
    if runner is not None:
        return runner.evaluate(smoothed, x, labels, p, attack, radii, n=n, n0=n0, batch_size=batch_size,
                               eps_max=eps_max, search_steps=search_steps, n_predict=n_predict,
                               certify_kwargs=certify_kwargs)
    cert, details = certify_and_attack(smoothed, x, labels, p, atk, n=n, n0=n0, batch_size=batch_size,
                                       eps_max=eps_max, search_steps=search_steps, n_predict=n_predict,
                                       certify_kwargs=certify_kwargs)
    return assemble(smoothed, p, n, repr(atk), labels, cert, details.radius, details.predict_calls,
                    details.eps_max, radii, search_steps, n_predict)


def certify_and_attack(smoothed, x: np.ndarray, labels: np.ndarray, p: float, atk, *, n: int, n0,
                        batch_size: int, eps_max, search_steps: int, n_predict, certify_kwargs):
    """The per-input work of :func:`evaluate`: CERTIFY, then the ε search away from c_A (or the label).
    Every input's outcome depends on that input alone (the Ray backend runs this on chunks).

    :return: ``(CertificationResult, EmpiricalRadius)``."""
    cert = smoothed.certify_detailed(x, n, batch_size=batch_size, norm=p, n0=n0, **(certify_kwargs or {}))
    attacked = np.where(cert.prediction >= 0, cert.prediction, labels)
    details = empirical_radius(smoothed, x, attacked, p, attack=atk, eps_max=eps_max, radius_hint=cert.radius,
                               search_steps=search_steps, n_predict=n_predict, batch_size=batch_size,
                               return_details=True)
    return cert, details


def check_radii(radii) -> np.ndarray:
    """A list of finite non-negative radii as a float64 array (for accuracy curves)."""
    radii = np.atleast_1d(check_radius(radii, "radii"))
    if radii.ndim != 1 or not np.all(np.isfinite(radii)):
        raise ValueError("radii must be a list of finite non-negative radii.")
    return radii


def assemble(smoothed, p: float, n: int, atk: str, labels: np.ndarray, cert: CertificationResult, emp: np.ndarray,
             predict_calls: np.ndarray, eps_max: np.ndarray, radii, search_steps: int,
             n_predict) -> Evaluation:
    """Records and summary from the per-input results of :func:`certify_and_attack` (``atk`` is the
    attack's repr; ``emp``, ``predict_calls`` and ``eps_max`` the per-input arrays of the ε search)."""
    pred, cert_r = cert.prediction, cert.radius
    attacked = np.where(pred >= 0, pred, labels)
    correct = pred == labels
    certified = (pred >= 0) & (cert_r > 0)
    violation = certified & (emp < cert_r)

    if radii is None:
        finite = np.concatenate([cert_r, emp[np.isfinite(emp)]])
        top = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
        radii = np.linspace(0.0, top, 6)
    radii = check_radii(radii)
    cert_acc = [float(a) for a in accuracy_at_radii(correct, cert_r, radii)]
    emp_acc = [float(a) for a in accuracy_at_radii(correct, emp, radii, strict=True)]
    has_ratio = certified & np.isfinite(emp)
    ratio = emp[has_ratio] / cert_r[has_ratio]
    summary = EvaluationSummary(
        norm=norm_name(p), n_inputs=len(labels), n=int(n), alpha=float(smoothed.alpha), noise=repr(smoothed.noise),
        attack=atk, radii=[float(r) for r in radii], certified_accuracy=cert_acc, empirical_accuracy=emp_acc,
        clean_accuracy=float(np.mean(correct)) if len(labels) else float("nan"),
        abstentions=int(np.sum(pred < 0)),
        mean_ratio=float(ratio.mean()) if ratio.size else float("nan"),
        median_ratio=float(np.median(ratio)) if ratio.size else float("nan"), ratio_count=int(ratio.size),
        no_flip_found=int(np.sum(certified & ~np.isfinite(emp))), violations=int(violation.sum()),
        violations_expected_max=float(smoothed.alpha * np.sum((1 + predict_calls)[certified])),
        extra={"eps_max": float(np.max(eps_max)) if len(labels) else None, "search_steps": int(search_steps),
               "n_predict": int(n_predict or smoothed.sample_size), "certificate": cert.summary()},
    )
    records = [
        EvaluationRecord(
            index=i, label=int(labels[i]), prediction=int(pred[i]), correct=bool(correct[i]),
            certified_radius=float(cert_r[i]), attacked_class=int(attacked[i]), empirical_radius=float(emp[i]),
            violation=bool(violation[i]), predict_calls=int(predict_calls[i]), p_a_lower=float(cert.p_a_lower[i]),
            n_used=None if cert.n_used is None else int(cert.n_used[i]),
        )
        for i in range(len(labels))
    ]
    if summary.violations:
        logger.warning("%d flip(s) found inside certified radii (expected at most %.3g from alpha).",
                       summary.violations, summary.violations_expected_max)
    return Evaluation(records=records, summary=summary)
