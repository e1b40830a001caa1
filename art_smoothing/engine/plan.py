"""A certify request validated once: :class:`CertifyPlan`.

``certify``/``certify_detailed`` turn their arguments into a plan (norm, certificate method, form, n, n0,
batch size, box and clip values, the α left for the votes) before any sampling; the local engine, the Ray
workers and the CLI all read the same plan, and :meth:`CertifyPlan.conclude` turns the selection and
estimation votes into bounds, radii and abstentions (Cohen et al., Algorithm 1, last lines).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from art_smoothing.certificates.bounds import (
    clopper_pearson_lower,
    clopper_pearson_lower_randomized,
    clopper_pearson_upper,
    clopper_pearson_upper_randomized,
)
from art_smoothing.certificates.inversion import check_radius
from art_smoothing.certificates.norms import norm_name, parse_norm
from art_smoothing.certificates.sequential import LookSchedule
from art_smoothing.checks import check_bool, check_clip_values, check_int
from art_smoothing.engine.result import CertificationResult
from art_smoothing.noise.base import Noise, check_inside_box

__all__ = ["FORMS", "CertifyPlan", "top_counts"]

#: forms of the probability bounds: "binary" (p_B = 1 − p_A) and "multiclass" (p_A, p_B at α/2 each)
FORMS = ("binary", "multiclass")


def top_counts(counts_selection: torch.Tensor, counts: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(c_A, n_A, n_B)`` as numpy int64: the class the selection votes pick, its estimation votes, and the
    largest estimation count among the other classes."""
    c_a = counts_selection.argmax(dim=1)
    n_a = counts.gather(1, c_a[:, None])[:, 0]
    others = counts.scatter(1, c_a[:, None], -1)
    n_b = others.max(dim=1).values.clamp(min=0) if counts.shape[1] > 1 else torch.zeros_like(n_a)
    return c_a.cpu().numpy(), n_a.cpu().numpy(), n_b.cpu().numpy()


@dataclass(frozen=True)
class CertifyPlan:
    """Everything a certification needs besides the inputs and the seed, validated.

    :param noise: the smoothing distribution.
    :param dim: input features (for norm conversions and box certificates).
    :param nb_classes: classes of the base classifier.
    :param n: estimation draws per input.
    :param n0: selection draws per input.
    :param batch_size: noisy samples per forward pass.
    :param norm: the radius norm (a float; the noise's own when the user gave none).
    :param method: certificate name, or ``None`` for the largest sound one.
    :param form: ``"binary"`` or ``"multiclass"``.
    :param alpha: failure probability of each certificate; :attr:`alpha_votes` is what is left for the votes
        after the noise's own certificate engine took its share.
    :param box: box-constrained certificates are in use (the classifier has clip values, the noise has such
        certificates and the user did not turn them off).
    :param clip_values: the box ``(lo, hi)`` when :attr:`box`.
    :param deterministic: exact smoothing from the noise's finite draws (no sampling).
    :param verbose: progress bars.
    :param sequential: anytime-valid sequential CERTIFY (``n`` is the budget; see
        :mod:`art_smoothing.engine.sequential`).
    :param radii: the radii (in :attr:`norm`) a sequential run decides; ``None`` otherwise.
    :param randomized: randomized Clopper–Pearson bounds (fixed-n only; see :meth:`bounds`).
    """

    noise: Noise
    dim: int
    nb_classes: int
    n: int
    n0: int
    batch_size: int
    norm: float
    method: str | None
    form: str
    alpha: float
    box: bool = False
    clip_values: tuple[float, float] | None = None
    deterministic: bool = False
    verbose: bool = False
    sequential: bool = False
    radii: tuple[float, ...] | None = None
    randomized: bool = False

    @classmethod
    def build(cls, estimator, n, batch_size=128, *, norm=None, method=None, form="binary", n0=None, box=True,
              deterministic=False, verbose=None, sequential=False, radius=None, randomized=False) -> CertifyPlan:
        """Validate a certify request against ``estimator`` (its noise, ``sample_size``, ``alpha``,
        ``clip_values``, input shape and classes); a clear ``ValueError`` for anything wrong."""
        noise = estimator.noise
        n = check_int("n", n)
        n0 = estimator.sample_size if n0 is None else check_int("n0", n0)
        batch_size = check_int("batch_size", batch_size)
        if form not in FORMS:
            raise ValueError(f"form must be 'binary' or 'multiclass', got {form!r}.")
        target = noise.norm if norm is None else parse_norm(norm)
        if method is not None:
            available = noise.certificate_methods(target)  # validates the norm for this noise
            if method not in noise.certificate_specs():
                raise ValueError(f"Unknown certificate method {method!r} for {type(noise).__name__}; "
                                 f"choose one of {available}.")
        use_box = check_bool("box", box) and estimator.clip_values is not None and noise.has_box_certificates()
        clip = check_clip_values(estimator.clip_values, per_feature_ok=False) if use_box else None
        deterministic = check_bool("deterministic", deterministic)
        sequential, randomized = check_bool("sequential", sequential), check_bool("randomized", randomized)
        radii = None
        if sequential:
            if radius is None:
                raise ValueError("sequential=True decides given radii: pass radius=R (one radius or a list, in the "
                                 "requested norm); n is then the budget of estimation draws per input.")
            grid = check_radius(radius)
            if grid.ndim > 1:
                raise ValueError(f"radius must be one radius or a 1-D grid (a list), got shape {grid.shape}.")
            radii = tuple(float(r) for r in grid.reshape(-1))
        elif radius is not None:
            raise ValueError("radius= is the radius (or grid) a sequential certification decides: pass "
                             "sequential=True with it, or drop it for fixed-n CERTIFY.")
        if sequential + randomized + deterministic > 1:
            chosen = [k for k, v in (("sequential", sequential), ("randomized", randomized),
                                     ("deterministic", deterministic)) if v]
            why = ("deterministic certification draws no samples, so there is nothing to bound or stop early"
                   if deterministic else "randomized bounds are an option of the fixed-n path")
            raise ValueError(f"{' and '.join(chosen)} cannot be combined: {why}; choose one.")
        return cls(noise=noise, dim=int(estimator.input_dim), nb_classes=int(estimator.nb_classes), n=n, n0=n0,
                   batch_size=batch_size, norm=target, method=method, form=form, alpha=float(estimator.alpha),
                   box=use_box, clip_values=clip, deterministic=deterministic,
                   verbose=bool(estimator.verbose if verbose is None else verbose), sequential=sequential,
                   radii=radii, randomized=randomized)

    @property
    def alpha_votes(self) -> float:
        """The failure probability spent on the vote counts: α minus what the certificate itself spends."""
        return self.alpha - self.noise.certificate_alpha

    def check_inputs(self, x: np.ndarray) -> np.ndarray:
        """The box certificates' own check, before any sampling is spent: inputs inside the box."""
        if self.box and x.size:
            check_inside_box(float(x.min()), float(x.max()), *self.clip_values)
        return x

    def describe(self) -> dict[str, Any]:
        """The plan as JSON-ready values (fingerprints of resumable runs, summaries)."""
        return {"noise": repr(self.noise), "norm": norm_name(self.norm), "method": self.method, "form": self.form,
                "n": self.n, "n0": self.n0, "batch_size": self.batch_size, "alpha": self.alpha, "box": self.box,
                "clip_values": None if self.clip_values is None else list(self.clip_values),
                "deterministic": self.deterministic, "sequential": self.sequential,
                "radii": None if self.radii is None else list(self.radii), "randomized": self.randomized,
                **self._schedule_record()}

    def _schedule_record(self) -> dict[str, Any]:
        """A sequential plan's looks and the α of its final look (a resumed run must use the same schedule)."""
        if not self.sequential:
            return {}
        schedule = self.schedule()
        return {"looks": list(schedule.looks), "final_alpha": schedule.final_alpha}

    def schedule(self) -> LookSchedule:
        """The looks of a sequential run and the α each spends (:meth:`LookSchedule.geometric` with the α left
        for the votes; see :mod:`art_smoothing.certificates.sequential`)."""
        return LookSchedule.geometric(self.n, self.alpha_votes, self.form, nb_classes=self.nb_classes)

    # ------------------------------------------------------------------ votes → certificate
    def bounds(self, n_a: np.ndarray, n_b: np.ndarray, u: tuple[float, float] | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Clopper–Pearson bounds from the top-class and runner-up counts of the ``n`` estimation draws:
        ``(p_a_lower, p_b_upper, certified)``. Binary: p_A at level α, p_B = 1 − p_A, certified when
        p_A > 1/2. Multiclass: p_A and p_B at α/2 each (Bonferroni; c_A is fixed by the independent
        selection draws, so an upper bound on the largest other count bounds the runner-up), certified
        when p_A > p_B.

        With :attr:`randomized`, ``u = (u_a, u_b)`` are auxiliary uniforms and the bounds are the randomized
        Clopper–Pearson bounds (Voráček, 2024): exact size α over the votes and u jointly, never below the
        plain ones (:func:`~art_smoothing.certificates.bounds.clopper_pearson_lower_randomized`)."""
        side = self.alpha_votes if self.form == "binary" else self.alpha_votes / 2.0
        if self.randomized:
            p_a = clopper_pearson_lower_randomized(n_a, self.n, side, u[0])
        else:
            p_a = clopper_pearson_lower(n_a, self.n, side)
        if self.form == "binary":
            return p_a, 1.0 - p_a, p_a > 0.5
        if self.randomized:
            p_b = clopper_pearson_upper_randomized(n_b, self.n, side, u[1])
        else:
            p_b = clopper_pearson_upper(n_b, self.n, side)
        p_b = np.minimum(p_b, 1.0 - p_a)
        return p_a, p_b, p_a > p_b

    def radius(self, p_a: np.ndarray, p_b: np.ndarray | None, x: np.ndarray | None = None) -> np.ndarray:
        """The noise's certificate in the plan's norm and method (box-constrained with ``x`` when in use)."""
        return self.noise.certified_radius(
            p_a, None if self.form == "binary" else p_b, norm=self.norm, dim=self.dim, method=self.method,
            x=x if self.box else None, clip_values=self.clip_values if self.box else None)

    def conclude(self, x: np.ndarray, counts_selection: torch.Tensor, counts: torch.Tensor,
                 seed: int | None = None, u: tuple[float, float] | None = None) -> CertificationResult:
        """CERTIFY's last lines: c_A from the selection votes, bounds from the estimation votes, the
        radius, abstention where nothing is certified."""
        c_a, n_a, n_b = top_counts(counts_selection, counts)
        p_a, p_b, certified = self.bounds(n_a, n_b, u)
        radius = np.where(certified, self.radius(p_a, p_b, x), 0.0)
        return self.result(prediction=np.where(certified, c_a, -1).astype(np.int64), radius=radius, p_a_lower=p_a,
                           p_b_upper=p_b, counts=counts.cpu().numpy(), counts_selection=counts_selection.cpu().numpy(),
                           seed=seed)

    def result(self, **fields) -> CertificationResult:
        """A :class:`CertificationResult` with the plan's scalar fields, updated by ``fields`` (the per-input
        arrays, the user's seed, and any scalar the procedure changes, e.g. ``form="exact"``)."""
        scalars = {"norm": self.norm, "method": self.method, "form": self.form, "n": self.n, "n0": self.n0,
                   "alpha": self.alpha, "noise": self.noise, "dim": self.dim, "box": self.box,
                   "clip_values": self.clip_values}
        return CertificationResult(**{**scalars, **fields})
