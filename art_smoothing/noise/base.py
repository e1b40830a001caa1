"""The shared base of every smoothing distribution.

A noise object knows three things and nothing about ART, models or the CLI:

1. its parameters (validated at construction) and its per-coordinate ``std``;
2. how to draw i.i.d. noise variables exactly, batched, with torch on a given device and dtype from
   a ``torch.Generator`` (:meth:`Noise.sample`), and how a draw turns a clean input into a noisy
   one (:meth:`Noise.perturb`: ``x + z`` for additive noise, anything else for non-additive noise
   such as splitting noise);
3. its certificates: functions of the probability bounds (p_a lower, p_b upper) that return a
   certified radius in some norm. Each certificate is a method decorated with :func:`certificate`;
   the base class collects them, converts between norms soundly and takes the best one.

Certificates are written once, with torch operations, so the same definition serves exact
certification (float64, :meth:`Noise.certified_radius`, numpy out) and differentiable training
objectives such as MACER (:meth:`Noise.certified_radius_torch`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from art_smoothing.certificates.norms import conversion_factor, norm_name, parse_norm
from art_smoothing.checks import check_int, check_positive  # check_positive re-exported for the noises

if TYPE_CHECKING:
    from art_smoothing.certificates.variational import LogRatioModel

__all__ = ["CertificateContext", "CertificateSpec", "Noise", "certificate", "check_inside_box", "check_positive",
           "standard_gamma"]


def check_inside_box(x_min: float, x_max: float, lo: float, hi: float) -> None:
    """Raise ``ValueError`` unless the inputs (their smallest and largest entry) lie in [lo, hi]."""
    if x_min < lo or x_max > hi:
        raise ValueError(
            f"x lies outside clip_values=({lo}, {hi}) (x in [{x_min}, {x_max}]): box-constrained certificates only "
            "hold for inputs in the box; clip the inputs, pass the classifier's true clip_values, or certify with "
            "box=False for the plain certificates."
        )


@dataclass(frozen=True)
class CertificateSpec:
    """Description of one certificate a noise implements.

    :param name: name users select it by (``method=...``).
    :param norm: the norm in which ``fn`` returns its radius (its native norm).
    :param fn: ``fn(noise, p_a, p_b, ctx) -> radius`` with torch tensors; ``p_b is None`` means the
        binary form (p_b = 1 - p_a). It may return garbage where nothing is certifiable: the base
        class masks those entries to 0.
    :param box: the certificate needs the input ``x`` and the box ``clip_values``.
    :param needs_dim: the native radius itself depends on the dimension (not just conversions).
    :param differentiable: ``fn`` is a differentiable torch function of (p_a, p_b).
    :param dominated_by: name of a certificate of the same noise that is never smaller (proved, and
        tested over dense grids); ``method=None`` then skips this one, since the maximum is unchanged.
    """

    name: str
    norm: float
    fn: Callable[..., torch.Tensor]
    box: bool = False
    needs_dim: bool = False
    differentiable: bool = True
    dominated_by: str | None = None


@dataclass
class CertificateContext:
    """What a certificate may need besides the probability bounds."""

    dim: int | None = None
    x: torch.Tensor | None = None  # (N, d) flattened inputs, float64, for box certificates
    clip_values: tuple[float, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def certificate(name: str, norm, *, box: bool = False, needs_dim: bool = False, differentiable: bool = True,
                dominated_by: str | None = None):
    """Mark a noise method as a certificate ``fn(self, p_a, p_b, ctx) -> radius`` in ``norm``.

    The decorator sets ``fn.certificate_spec``, a :class:`CertificateSpec` built from its arguments (see
    there); every :class:`Noise` subclass collects the specs of its methods and of its bases' methods.
    """

    def deco(fn):
        fn.certificate_spec = CertificateSpec(
            name=name, norm=parse_norm(norm), fn=fn, box=box, needs_dim=needs_dim, differentiable=differentiable,
            dominated_by=dominated_by,
        )
        return fn

    return deco


def standard_gamma(concentration: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Exact Gamma(concentration, 1) draws, one per entry of ``concentration`` (same dtype and device), from
    ``generator``.

    torch's public gamma sampler (:class:`torch.distributions.Gamma`) takes no generator, so the operator
    behind it, ``torch._standard_gamma``, is called here and nowhere else.
    """
    return torch._standard_gamma(concentration, generator=generator)


def _as_prob_tensor(name: str, value, dtype, device=None) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        t = value.to(dtype=dtype, device=device) if device is not None else value.to(dtype=dtype)
        bad = ~torch.isfinite(t) | (t < 0) | (t > 1)
        if bool(bad.any()):
            raise ValueError(f"{name} must hold probabilities in [0, 1] (finite); got values outside.")
        return t
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr > 1):
        raise ValueError(f"{name} must hold probabilities in [0, 1] (finite); got {value!r}.")
    return torch.as_tensor(arr, dtype=dtype, device=device)


class Noise:
    """Base class of smoothing distributions. Subclasses set :attr:`norm` and implement
    :meth:`_sample`, :attr:`std` and their certificates."""

    #: the norm the noise is designed for (its "own" norm, used when ``norm=None``)
    norm: float = 2.0
    #: whether :meth:`perturb` is ``x + z``; non-additive noises override :meth:`perturb`
    additive: bool = True
    #: name used by the CLI and in results
    name: str = "noise"

    #: failure probability spent by the certificates themselves (e.g. a Monte Carlo certificate
    #: engine). Closed-form certificates spend none. The estimator spends ``alpha - certificate_alpha``
    #: on the vote counts, so the total failure probability of a certificate stays ``alpha``.
    certificate_alpha: float = 0.0

    _certificates: dict[str, CertificateSpec] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        specs: dict[str, CertificateSpec] = {}
        for klass in reversed(cls.__mro__):
            for attr in vars(klass).values():
                spec = getattr(attr, "certificate_spec", None)
                if isinstance(spec, CertificateSpec):
                    specs[spec.name] = spec
        cls._certificates = specs

    @classmethod
    def certificate_specs(cls) -> dict[str, CertificateSpec]:
        """Every certificate of this noise by name (a copy: changing it changes nothing)."""
        return dict(cls._certificates)

    @classmethod
    def has_box_certificates(cls) -> bool:
        """Whether any certificate of this noise is box-constrained (needs ``x`` and ``clip_values``)."""
        return any(s.box for s in cls._certificates.values())

    # ------------------------------------------------------------------ parameters
    @property
    def std(self) -> float:
        """Per-coordinate standard deviation of the noise (for equal-variance comparisons)."""
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """The constructor parameters (enough to rebuild the noise)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.params() == other.params()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.params().items()))))

    def validate_dim(self, dim: int) -> None:
        """Raise ``ValueError`` when the noise is not defined in dimension ``dim`` (default: any)."""

    # ------------------------------------------------------------------ sampling
    def sample(
        self,
        num: int,
        shape: tuple[int, ...],
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Draw ``num`` i.i.d. noise variables of shape ``shape``: a tensor ``(num, *shape)``.

        Exact draws from torch's generator on ``device`` (the generator must live on the same
        device), no rejection loops.
        """
        num = int(num)
        if num < 0:
            raise ValueError(f"num must be >= 0, got {num}.")
        shape = tuple(int(s) for s in shape)
        self.validate_dim(int(np.prod(shape)) if shape else 1)
        if generator is not None and device is None:
            device = generator.device
        return self._sample((num, *shape), generator=generator, device=torch.device(device or "cpu"), dtype=dtype)

    def _sample(self, size, *, generator, device, dtype) -> torch.Tensor:
        raise NotImplementedError

    def perturb(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Noisy input from clean ``x`` and a draw ``z`` (broadcasting). Additive noise: ``x + z``.

        Non-additive noises override this; everything that adds noise (certify, predict, fit,
        gradients, trainers) goes through this method, so no caller special-cases a noise.
        """
        return x + z

    # ------------------------------------------------------------------ variational engine
    def log_ratio_model(self, dim: int, norm=None) -> LogRatioModel | None:
        """This noise's model for the variational engine (:mod:`art_smoothing.certificates.variational`):
        the law of the log-density ratio at the worst perturbation of the ℓ_``norm`` ball (``None``: the
        noise's own norm) in dimension ``dim``; ``None`` when the engine has no model for it (the default).

        Noises certified by the engine implement it, and closed-form noises may, so that the engine can
        be cross-checked against their exact radii.
        """
        return None

    # ------------------------------------------------------------------ certificates
    def _native_specs(self, *, box: bool) -> list[CertificateSpec]:
        return [s for s in self._certificates.values() if box or not s.box]

    def certificate_methods(self, norm=None, *, box: bool = True) -> list[str]:
        """Names of the certificates that give a radius in ``norm`` (native or by sound conversion).

        :param box: include the box-constrained ones (they need ``x`` and ``clip_values``).
        """
        self._parse_norm(norm)
        return sorted(s.name for s in self._native_specs(box=box))

    def _parse_norm(self, norm) -> float:
        return self.norm if norm is None else parse_norm(norm)

    def _select(self, method, *, box: bool) -> list[CertificateSpec]:
        specs = self._native_specs(box=box)
        if method is None:
            names = {s.name for s in specs}
            return [s for s in specs if s.dominated_by not in names]
        names = [method] if isinstance(method, str) else list(method)
        chosen = []
        for name in names:
            spec = self._certificates.get(name)
            if spec is None:
                raise ValueError(
                    f"Unknown certificate method {name!r} for {type(self).__name__}; "
                    f"choose one of {sorted(self._certificates)} (or None for the best)."
                )
            if spec.box and not box:
                raise ValueError(
                    f"Certificate {name!r} is box-constrained: pass x=<inputs> and clip_values=(lo, hi)."
                )
            chosen.append(spec)
        return chosen

    def _radius(self, p_a, p_b, *, norm, dim, method, x, clip_values, dtype, differentiable) -> torch.Tensor:
        target = self._parse_norm(norm)
        box = x is not None and clip_values is not None
        if (x is None) != (clip_values is None):
            raise ValueError("Box-constrained certificates need both x and clip_values (or neither).")
        specs = self._select(method, box=box)
        if differentiable:
            specs = [s for s in specs if s.differentiable]
            if not specs:
                raise ValueError(f"{type(self).__name__} has no differentiable certificate for method={method!r}.")
        device = p_a.device if isinstance(p_a, torch.Tensor) else None
        pa = _as_prob_tensor("p_a", p_a, dtype, device)
        binary = p_b is None
        if binary:
            pb = None
            certifiable = pa > 0.5
        else:
            pb = _as_prob_tensor("p_b", p_b, dtype, pa.device)
            try:
                pa, pb = torch.broadcast_tensors(pa, pb)
            except RuntimeError:
                raise ValueError(f"p_a (shape {tuple(pa.shape)}) and p_b (shape {tuple(pb.shape)}) must have the same "
                                 "shape (one runner-up bound per top-class bound) or broadcast.") from None
            # Any valid upper bound on the runner-up may be replaced by 1 - p_a (also valid, since the
            # probabilities sum to at most 1); the smaller of the two is the better bound.
            pb = torch.minimum(pb, 1.0 - pa)
            certifiable = pa > pb
        ctx = CertificateContext(dim=check_int("dim", dim, 1, allow_none=True))
        if box:
            ctx.x, ctx.clip_values = self._box_inputs(x, clip_values, pa.shape, ctx.dim, dtype)
            ctx.dim = check_int("dim (features per input of x)", ctx.x.shape[-1], 1)
        if ctx.dim is not None:
            self.validate_dim(ctx.dim)
        # Feed certificates only certifiable entries (safe values elsewhere) so that no NaN or
        # infinite gradient leaks from masked entries.
        pa_safe = torch.where(certifiable, pa, torch.ones_like(pa) * 0.75)
        pb_safe = None if binary else torch.where(certifiable, pb, torch.ones_like(pb) * 0.25)
        best = None
        missing_dim = None
        for spec in specs:
            try:
                if spec.needs_dim and ctx.dim is None:
                    raise ValueError(
                        f"The {spec.name!r} certificate of {type(self).__name__} needs the input dimension: "
                        "pass dim=<number of input features>."
                    )
                factor = conversion_factor(spec.norm, target, ctx.dim)
            except ValueError as err:
                # With method=None a certificate that cannot be evaluated without dim is skipped;
                # if none is left, the caller is told to pass dim.
                missing_dim = missing_dim or err
                continue
            r = spec.fn(self, pa_safe, pb_safe, ctx)
            r = torch.as_tensor(r, dtype=dtype, device=pa.device)
            if factor != 1.0:
                r = r / factor
            best = r if best is None else torch.maximum(best, r)
        if best is None:
            raise missing_dim
        if method is not None and missing_dim is not None:
            raise missing_dim
        best = torch.where(certifiable, best, torch.zeros_like(best))
        best = torch.nan_to_num(best, nan=0.0, posinf=math.inf)
        return torch.clamp(best, min=0.0)

    def _box_inputs(self, x, clip_values, batch_shape, dim, dtype):
        lo, hi = (float(v) for v in np.broadcast_to(np.asarray(clip_values, dtype=np.float64), (2,)))
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"clip_values must be finite (lo, hi) with lo < hi, got {clip_values!r}.")
        xt = torch.as_tensor(np.asarray(x, dtype=np.float64) if not isinstance(x, torch.Tensor) else x)
        xt = xt.to(dtype=dtype)
        n = int(np.prod(batch_shape)) if len(batch_shape) else 1
        if xt.ndim == 1:
            xt = xt.reshape(1, -1)
        xt = xt.reshape(xt.shape[0], int(np.prod(xt.shape[1:])))  # also for zero inputs
        if xt.shape[0] != n:
            raise ValueError(f"x has {xt.shape[0]} inputs but p_a has {n} entries: pass one input per bound.")
        if dim is not None and xt.shape[1] != int(dim):
            raise ValueError(f"x has {xt.shape[1]} features per input but dim={dim}.")
        if not bool(torch.isfinite(xt).all()):
            raise ValueError("x contains NaN or inf: box certificates need finite inputs.")
        if xt.numel():
            check_inside_box(float(xt.min()), float(xt.max()), lo, hi)
        return xt, (lo, hi)

    def certified_radius(
        self,
        p_a,
        p_b=None,
        *,
        norm=None,
        dim: int | None = None,
        method: str | None = None,
        x=None,
        clip_values=None,
    ) -> np.ndarray:
        """Certified radius from probability bounds, as a numpy float64 array shaped like ``p_a``.

        :param p_a: lower bound on the top-class probability.
        :param p_b: upper bound on the runner-up probability; ``None`` is the binary form
            (p_b = 1 - p_a), valid for any number of classes.
        :param norm: 1, 2, inf, ... (``None`` = the noise's own norm). Other norms than a
            certificate's native one are reached by the sound conversion of
            :mod:`art_smoothing.certificates.norms`, which may need ``dim``.
        :param dim: number of input features.
        :param method: a name from :meth:`certificate_methods` or ``None`` for the largest.
        :param x: inputs (one per bound, any shape with leading batch axis); with ``clip_values``
            switches on box-constrained certificates where the noise has them.
        :param clip_values: ``(lo, hi)`` box the inputs (and the adversary) live in.
        :return: radius >= 0 (0 where nothing is certified, ``inf`` only when p_a = 1 or p_b = 0
            make the certificate unbounded), never NaN.
        """
        with torch.no_grad():
            r = self._radius(
                p_a, p_b, norm=norm, dim=dim, method=method, x=x, clip_values=clip_values,
                dtype=torch.float64, differentiable=False,
            )
        out = r.cpu().numpy().astype(np.float64)
        return out.reshape(np.shape(p_a)) if not isinstance(p_a, torch.Tensor) else out

    def certified_radius_torch(self, p_a: torch.Tensor, p_b: torch.Tensor | None = None, *, norm=None,
                               dim: int | None = None, method: str | None = None) -> torch.Tensor:
        """The same certificates as :meth:`certified_radius`, as a differentiable torch function of
        ``(p_a, p_b)`` in their dtype (used by training objectives such as MACER)."""
        dtype = p_a.dtype if p_a.is_floating_point() else torch.float64
        return self._radius(p_a, p_b, norm=norm, dim=dim, method=method, x=None, clip_values=None,
                            dtype=dtype, differentiable=True)

    def describe_certificates(self) -> list[dict[str, Any]]:
        """One row per certificate: name, native norm, whether box-constrained (for tables/CLI)."""
        return [
            {"noise": type(self).__name__, "method": s.name, "norm": norm_name(s.norm), "box": s.box}
            for s in self._certificates.values()
        ]
