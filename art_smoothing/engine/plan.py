"""A certify request validated once: :class:`CertifyPlan`.

``certify``/``certify_detailed`` turn their arguments into a plan (norm, certificate method, form, n, n0,
batch size, box and clip values, the α left for the votes) before any sampling; the local engine, the Ray
workers and the CLI all read the same plan, and :meth:`CertifyPlan.conclude` turns the selection and
estimation votes into bounds, radii and abstentions (Cohen et al., Algorithm 1, last lines).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from art_smoothing.certificates.bounds import clopper_pearson_lower, clopper_pearson_upper
from art_smoothing.certificates.norms import norm_name, parse_norm
from art_smoothing.checks import check_bool, check_clip_values, check_int
from art_smoothing.engine.result import CertificationResult
from art_smoothing.noise.base import Noise, check_inside_box

__all__ = ["FORMS", "CertifyPlan"]

#: forms of the probability bounds: "binary" (p_B = 1 − p_A) and "multiclass" (p_A, p_B at α/2 each)
FORMS = ("binary", "multiclass")


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
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def build(cls, estimator, n, batch_size=128, *, norm=None, method=None, form="binary", n0=None, box=True,
              deterministic=False, verbose=None) -> CertifyPlan:
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
        return cls(noise=noise, dim=int(estimator.input_dim), nb_classes=int(estimator.nb_classes), n=n, n0=n0,
                   batch_size=batch_size, norm=target, method=method, form=form, alpha=float(estimator.alpha),
                   box=use_box, clip_values=clip, deterministic=check_bool("deterministic", deterministic),
                   verbose=bool(estimator.verbose if verbose is None else verbose))

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
                "deterministic": self.deterministic}

    # ------------------------------------------------------------------ votes → certificate
    def bounds(self, n_a: np.ndarray, n_b: np.ndarray, n: int | np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Clopper–Pearson bounds from the top-class and runner-up counts of ``n`` estimation draws:
        ``(p_a_lower, p_b_upper, certified)``. Binary: p_A at level α, p_B = 1 − p_A, certified when
        p_A > 1/2. Multiclass: p_A and p_B at α/2 each (Bonferroni; c_A is fixed by the independent
        selection draws, so an upper bound on the largest other count bounds the runner-up), certified
        when p_A > p_B."""
        n = self.n if n is None else n
        if self.form == "binary":
            p_a = clopper_pearson_lower(n_a, n, self.alpha_votes)
            return p_a, 1.0 - p_a, p_a > 0.5
        p_a = clopper_pearson_lower(n_a, n, self.alpha_votes / 2.0)
        p_b = np.minimum(clopper_pearson_upper(n_b, n, self.alpha_votes / 2.0), 1.0 - p_a)
        return p_a, p_b, p_a > p_b

    def radius(self, p_a: np.ndarray, p_b: np.ndarray | None, x: np.ndarray | None = None) -> np.ndarray:
        """The noise's certificate in the plan's norm and method (box-constrained with ``x`` when in use)."""
        return self.noise.certified_radius(
            p_a, None if self.form == "binary" else p_b, norm=self.norm, dim=self.dim, method=self.method,
            x=x if self.box else None, clip_values=self.clip_values if self.box else None)

    def conclude(self, x: np.ndarray, counts_selection: torch.Tensor, counts: torch.Tensor,
                 seed: int | None = None) -> CertificationResult:
        """CERTIFY's last lines: c_A from the selection votes, bounds from the estimation votes, the
        radius, abstention where nothing is certified."""
        c_a = counts_selection.argmax(dim=1)
        n_a = counts.gather(1, c_a[:, None])[:, 0]
        others = counts.scatter(1, c_a[:, None], -1)
        n_b = others.max(dim=1).values.clamp(min=0) if counts.shape[1] > 1 else torch.zeros_like(n_a)
        c_a, n_a, n_b = c_a.cpu().numpy(), n_a.cpu().numpy(), n_b.cpu().numpy()
        p_a, p_b, certified = self.bounds(n_a, n_b)
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
