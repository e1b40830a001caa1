"""``SmoothedClassifier``: an ART estimator that smooths an existing ART classifier with any noise.

The procedures follow Cohen, Rosenfeld & Kolter (2019), Algorithm 1 / Section 3.2:

* PREDICT: draw ``sample_size`` noisy copies, count the top two classes, return the top class if
  a two-sided binomial test against p = 1/2 rejects at level ``alpha``, else abstain.
* CERTIFY: ``n0`` selection draws pick the class c_A; ``n`` independent estimation draws give a
  one-sided Clopper–Pearson lower bound p_A on P(f(x+ε) = c_A); the noise turns p_A (and, in the
  multiclass form, an upper bound p_B on the runner-up) into a radius; abstain when nothing is
  certified.

Where the noise goes. The certificate is a statement about the input the user passes, so noise is
added to the raw input, *before* the base classifier's preprocessing defences and its
standardisation, in ``fit``, ``predict``, ``certify`` and the gradients alike: the base classifier
(defences + normalisation + model) is the function ``f`` that is smoothed. ART 1.20's
``PyTorchRandomizedSmoothing`` adds noise before preprocessing in ``certify`` but after it in
``fit``, so it trains a different classifier from the one it certifies.

How the noise is drawn (speed without losing soundness). The guarantee of CERTIFY is per input:
one input's draws must be i.i.d. and the selection draws independent of the estimation draws.
Nothing requires independence across inputs, so draws are shared: the noise stream is cut into
blocks whose generators are seeded from ``(seed, stage, block index)``; every input sees the same
blocks. A block is drawn once per group of inputs and reused for all of them, so drawing noise
costs a vanishing fraction of the forward passes. It also makes every input's draws — hence its
prediction and radius — independent of how the data set is batched or split across workers
(``backend="ray"``, :mod:`art_smoothing.distributed`): a forward pass holds one input's draws only,
cut at fixed offsets of the block, so the tensors the model sees do not depend on the partition
either. Bit-identical votes then need only the same ``batch_size``, the same intra-op thread count
and the same hardware/kernels (on CUDA: ``torch.backends.cudnn.deterministic = True``); otherwise
logits may differ in the last bits and a vote can change only where two logits tie to rounding.
Consequence to know: the certification errors of different inputs are correlated (the expected
number of wrong certificates is still at most α·N).
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from art.estimators.certification.randomized_smoothing.randomized_smoothing import RandomizedSmoothingMixin
from art.estimators.classification import PyTorchClassifier
from art.estimators.classification.classifier import ClassifierMixin
from art.estimators.estimator import BaseEstimator
from tqdm.auto import tqdm

from art_smoothing.certificates.bounds import (
    binomial_test_half,
    check_alpha,
    clopper_pearson_lower,
    clopper_pearson_upper,
)
from art_smoothing.certificates.norms import norm_name, parse_norm
from art_smoothing.noise.base import Noise, check_inside_box
from art_smoothing.runtime import tune_cpu_allocator

logger = logging.getLogger(__name__)

__all__ = ["SmoothedClassifier", "CertificationResult"]

# Random stream identifiers: different stages use independent generators.
STAGE_SELECT, STAGE_ESTIMATE, STAGE_PREDICT, STAGE_FIT, STAGE_GRADIENT = 0, 1, 2, 3, 4

#: at most this many noise elements per drawn block (64 MiB in float32); depends on the input
#: dimension only, so the stream layout never depends on batch size or partitioning.
_BLOCK_ELEMENTS = 1 << 24
_MAX_BLOCK = 4096
#: at most this many input elements are moved to the device at once.
_GROUP_ELEMENTS = 1 << 24


def stream_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed for the generator of stream ``keys`` derived from the user's ``seed``."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, *[int(k) for k in keys]]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1])) & 0x7FFFFFFFFFFFFFFF


def check_labels(y, nb_classes: int) -> np.ndarray:
    """Labels as class indices ``(N,)`` or one-hot ``(N, nb_classes)``; a clear ValueError otherwise."""
    y = np.asarray(y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 1:
        if y.size and (not np.all(np.isfinite(y)) or np.any(y != np.round(y)) or y.min() < 0 or y.max() >= nb_classes):
            raise ValueError(f"y must hold class indices in 0..{nb_classes - 1} (or one-hot rows); got values in "
                             f"[{y.min()}, {y.max()}].")
        return y.astype(np.int64)
    if y.ndim == 2:
        if y.shape[1] != nb_classes:
            raise ValueError(f"one-hot y has {y.shape[1]} columns but the classifier has nb_classes={nb_classes}.")
        return y
    raise ValueError(f"y must be class indices (N,) or one-hot (N, {nb_classes}); got shape {y.shape}.")


def _check_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


@dataclass
class CertificationResult:
    """Per-input outcome of CERTIFY, with everything needed to recompute or audit a radius.

    ``prediction`` is -1 where the smoothed classifier abstains (radius 0 there).
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
        y = check_labels(y, self.counts.shape[1])
        if y.ndim == 2:  # one-hot (ART's label format)
            y = y.argmax(axis=1)
        if y.shape[0] != self.prediction.shape[0]:
            raise ValueError(f"y has {y.shape[0]} labels for {self.prediction.shape[0]} certified inputs.")
        correct = self.prediction == y
        return np.array([np.mean(correct & (self.radius >= r)) for r in np.atleast_1d(radii)], dtype=np.float64)

    def to_records(self) -> list[dict[str, Any]]:
        """One plain dict per input (for CSV/JSON)."""
        top2 = np.sort(self.counts, axis=1)[:, ::-1]
        return [
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

    def summary(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if not isinstance(v, np.ndarray) and k != "noise"}
        d["noise"] = repr(self.noise)
        d["norm"] = norm_name(self.norm)
        return d


class _SmoothingCore:
    """Noise draws, vote counting, PREDICT and CERTIFY, shared by the PyTorch and numpy estimators.

    Subclasses provide ``_labels(noisy) -> int64 tensor`` (base classifier's hard decisions),
    ``_device``, ``_noise_dtype`` and ``input_shape`` / ``nb_classes``.
    """

    noise: Noise

    # ------------------------------------------------------------------ parameters
    def _init_smoothing(self, noise, seed, verbose) -> None:
        self.noise = noise
        self.seed = seed
        self.verbose = verbose
        self._fit_calls = 0
        self._check_smoothing_params()
        if self._device.type == "cpu":
            tune_cpu_allocator()  # forward passes reuse heap buffers instead of page-faulting (art_smoothing.runtime)

    def _check_smoothing_params(self) -> None:
        if not isinstance(self.noise, Noise):
            raise ValueError(f"noise must be an art_smoothing.noise.Noise (e.g. GaussianNoise(0.25)), got {self.noise!r}.")
        self.sample_size = _check_int("sample_size", self.sample_size)
        self.alpha = check_alpha(self.alpha)
        if self.noise.certificate_alpha >= self.alpha:
            raise ValueError(
                f"alpha={self.alpha} must exceed the failure probability the noise's certificate spends "
                f"({self.noise.certificate_alpha}); raise alpha or lower the noise's certificate alpha."
            )
        if self.seed is not None:
            self.seed = _check_int("seed", self.seed, minimum=0)
        self.noise.validate_dim(self.input_dim)

    @property
    def scale(self) -> float:
        """ART's attribute: the per-coordinate standard deviation of the noise (``noise.std``).

        Read-only in effect: it follows the noise. To change the noise level, pass a new noise (e.g.
        ``set_params(noise=GaussianNoise(0.5))``)."""
        noise = self.__dict__.get("noise")
        return noise.std if isinstance(noise, Noise) else self.__dict__.get("_scale_before_noise", 0.1)

    @scale.setter
    def scale(self, value) -> None:
        noise = self.__dict__.get("noise")
        if isinstance(noise, Noise):
            if not (isinstance(value, (int, float, np.floating)) and math.isclose(float(value), noise.std,
                                                                                 rel_tol=1e-9)):
                raise ValueError(
                    f"scale follows the noise's per-coordinate std ({noise.std}) and cannot be set on its own; pass "
                    f"a new noise instead, e.g. set_params(noise={type(noise).__name__}(...)).")
            return
        self.__dict__["_scale_before_noise"] = value  # ART's constructor sets it before the noise exists

    def set_params(self, **kwargs) -> None:
        """ART's ``set_params``, all or nothing: when a value is rejected the estimator keeps its old ones."""
        saved = dict(self.__dict__)
        ops = list(getattr(self, "preprocessing_operations", []))
        try:
            super().set_params(**kwargs)
        except Exception:
            self.__dict__.clear()
            self.__dict__.update(saved)
            if "preprocessing_operations" in saved:
                self.preprocessing_operations[:] = ops  # ART rebuilds this list in place
            raise

    @property
    def input_dim(self) -> int:
        return int(np.prod(self.input_shape))

    def _call_seed(self) -> int:
        """The base seed of one call: the user's seed, or fresh OS entropy when there is none."""
        if self.seed is not None:
            return self.seed
        return int(np.random.SeedSequence().entropy) & 0x7FFFFFFFFFFFFFFF

    def _generator(self, seed: int, *keys: int) -> torch.Generator:
        gen = torch.Generator(device=self._device)
        gen.manual_seed(stream_seed(seed, *keys))
        return gen

    def _check_x(self, x) -> np.ndarray:
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        x = np.asarray(x)
        if x.dtype == object or not np.issubdtype(x.dtype, np.number):
            raise ValueError(f"x must be a numeric array, got dtype {x.dtype}.")
        expected = tuple(self.input_shape)
        if x.ndim != len(expected) + 1 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"x must have shape (N, {', '.join(map(str, expected))}) to match the classifier's input_shape; "
                f"got {x.shape}."
            )
        if not np.all(np.isfinite(x)):
            raise ValueError("x contains NaN or inf: smoothing needs finite inputs.")
        return x.astype(np.float32, copy=False)

    def _block_size(self) -> int:
        return max(1, min(_MAX_BLOCK, _BLOCK_ELEMENTS // max(1, self.input_dim)))

    # ------------------------------------------------------------------ votes
    def _count_votes(self, x: np.ndarray, num: int, stage: int, batch_size: int, seed: int,
                     desc: str = "votes") -> torch.Tensor:
        """Votes ``(N, nb_classes)`` (int64, on the device) of the base classifier over ``num`` noisy
        copies of every input. Input i's copies are ``perturb(x_i, z_j)``, j < num, with the shared
        stream z of ``(seed, stage)`` — i.i.d. for every input."""
        n_inputs, n_classes = x.shape[0], self.nb_classes
        counts = torch.zeros((n_inputs, n_classes), dtype=torch.int64, device=self._device)
        if n_inputs == 0:
            return counts
        block = self._block_size()
        group = max(1, min(n_inputs, _GROUP_ELEMENTS // max(1, self.input_dim)))
        n_blocks = math.ceil(num / block)
        shape = tuple(self.input_shape)
        dtype = self._noise_dtype
        bar = tqdm(total=math.ceil(n_inputs / group) * n_blocks, desc=desc, disable=not self.verbose, leave=False)
        with torch.no_grad():
            for g0 in range(0, n_inputs, group):
                xg = torch.as_tensor(x[g0:g0 + group], device=self._device).to(dtype)
                cg = counts[g0:g0 + group]
                for j in range(n_blocks):
                    k = min(block, num - j * block)
                    z = self.noise.sample(k, shape, generator=self._generator(seed, stage, j),
                                          device=self._device, dtype=dtype)
                    self._count_block(xg, z, cg, batch_size)
                    bar.update(1)
        bar.close()
        return counts

    def _count_block(self, xg: torch.Tensor, z: torch.Tensor, counts: torch.Tensor, batch_size: int,
                     weights: torch.Tensor | None = None) -> None:
        """Add the votes of every (input in xg) × (draw in z) pair to ``counts`` (each draw counting
        ``weights[j]`` instead of 1 when weights are given, as for exact finite expectations).

        A forward pass never mixes inputs: input i's pass c is ``perturb(x_i, z[c·b:(c+1)·b])`` with
        ``b = batch_size``, a tensor fixed by (x_i, seed, stage, block, c, b) alone. Kernels can round
        a row differently depending on the batch it sits in (CPU GEMM paths change with the batch
        size, cuDNN picks algorithms by shape), so packing several inputs into one pass would make a
        near-tie's vote depend on which inputs happen to share the call — i.e. on partitioning."""
        n_classes = counts.shape[1]
        for i in range(xg.shape[0]):
            labels = [self._labels(self.noise.perturb(xg[i:i + 1], z[p0:p0 + batch_size]))
                      for p0 in range(0, z.shape[0], batch_size)]
            # one bincount per input: weighted sums then do not depend on how the draws were batched
            votes = torch.bincount(torch.cat(labels), weights=weights, minlength=n_classes)[:n_classes]
            counts[i] += votes.to(counts.dtype)

    # ------------------------------------------------------------------ PREDICT
    def predict(self, x: np.ndarray, batch_size: int = 128, verbose: bool = False, **kwargs) -> np.ndarray:
        """Cohen et al.'s PREDICT with abstention, vectorized over inputs.

        :param x: inputs ``(N, *input_shape)``.
        :param batch_size: noisy samples per forward pass.
        :param is_abstain: (kwarg, default True) if False, return the top class even when the test
            does not reject (ART's option).
        :return: one-hot float32 array ``(N, nb_classes)``; all-zero rows are abstentions.
        """
        unknown = sorted(set(kwargs) - {"is_abstain", "training_mode"})
        if unknown:
            raise TypeError(f"predict() got unexpected keyword argument(s) {unknown}; it takes is_abstain and "
                            "training_mode (ignored: PREDICT always runs the model in evaluation mode).")
        is_abstain = kwargs.get("is_abstain", True)
        if not isinstance(is_abstain, bool):
            raise ValueError("is_abstain must be a bool.")
        self._check_smoothing_params()  # attributes may have been assigned directly since construction
        x = self._check_x(x)
        batch_size = _check_int("batch_size", batch_size)
        self._set_eval()
        old_verbose, self.verbose = self.verbose, self.verbose or verbose
        try:
            counts = self._count_votes(x, self.sample_size, STAGE_PREDICT, batch_size, self._call_seed(), "predict")
        finally:
            self.verbose = old_verbose
        return self._predict_from_counts(counts, is_abstain)

    def _predict_from_counts(self, counts: torch.Tensor, is_abstain: bool = True) -> np.ndarray:
        top = torch.topk(counts, k=min(2, counts.shape[1]), dim=1)
        top_vals = top.values.cpu().numpy()
        top_idx = top.indices[:, 0].cpu().numpy()
        n_b = top_vals[:, 1] if top_vals.shape[1] > 1 else np.zeros(len(top_vals), dtype=np.int64)
        keep = binomial_test_half(top_vals[:, 0], n_b) <= self.alpha if is_abstain else np.ones(len(top_idx), bool)
        out = np.zeros((counts.shape[0], counts.shape[1]), dtype=np.float32)
        rows = np.nonzero(keep)[0]
        out[rows, top_idx[rows]] = 1.0
        if len(rows) < len(keep):
            logger.info("%d of %d prediction(s) abstained.", len(keep) - len(rows), len(keep))
        return out

    # ------------------------------------------------------------------ CERTIFY
    def certify(self, x: np.ndarray, n: int, batch_size: int = 128, **kwargs) -> tuple[np.ndarray, np.ndarray]:
        """ART's ``certify``: ``(prediction, radius)`` with prediction -1 and radius 0 on abstention.

        Keyword arguments are those of :meth:`certify_detailed` (``norm``, ``method``, ``form``,
        ``n0``, ``box``, ``deterministic``, ``verbose``, ``backend``)."""
        result = self.certify_detailed(x, n, batch_size=batch_size, **kwargs)
        return result.prediction, result.radius

    def certify_detailed(self, x: np.ndarray, n: int, batch_size: int = 128, *, norm=None, method: str | None = None,
                         form: str = "binary", n0: int | None = None, box: bool = True,
                         deterministic: bool = False, verbose: bool | None = None,
                         backend: Any = "local") -> CertificationResult:
        """CERTIFY (Cohen et al., Algorithm 1) with any noise, returning a :class:`CertificationResult`.

        :param x: inputs ``(N, *input_shape)``.
        :param n: estimation draws per input.
        :param batch_size: noisy samples per forward pass (memory is bounded by it, not by ``n``).
        :param norm: radius norm (``None`` = the noise's own). All norms come from the same votes.
        :param method: certificate name (see ``noise.certificate_methods``) or ``None`` for the best.
        :param form: ``"binary"`` — p_A from a one-sided Clopper–Pearson bound at level α, the
            runner-up bounded by 1 − p_A; ``"multiclass"`` — p_A and p_B each at level α/2
            (Bonferroni), p_B from the largest other count, which is sound because c_A is fixed by
            the independent selection draws (an upper bound on the largest other count bounds the
            true runner-up's probability).
        :param n0: selection draws (default ``sample_size``).
        :param box: use box-constrained certificates when the classifier has ``clip_values`` and the
            noise has such certificates (set False to compare with the plain ones).
        :param deterministic: compute the smoothed class probabilities exactly from the noise's
            finite, exactly weighted draws (``noise.exact_draws``, e.g. ``DeterministicSplittingNoise``
            on quantized inputs) instead of sampling: the certificate has no failure probability and
            ``n``, ``n0``, ``form`` and ``alpha`` play no role (the exact p_A and runner-up p_B are used).
        :param backend: ``"local"`` (this process), ``"ray"`` or an
            :class:`art_smoothing.distributed.RayBackend` (inputs split over Ray workers; with a fixed
            seed the result is the local one, bit for bit — see :mod:`art_smoothing.distributed`).
        """
        if not (isinstance(backend, str) and backend == "local"):
            from art_smoothing.distributed import resolve_backend

            backend = resolve_backend(backend)  # ValueError for unknown backends; never imports ray
        self._check_smoothing_params()  # attributes may have been assigned directly since construction
        n = _check_int("n", n)
        n0 = self.sample_size if n0 is None else _check_int("n0", n0)
        batch_size = _check_int("batch_size", batch_size)
        if form not in ("binary", "multiclass"):
            raise ValueError(f"form must be 'binary' or 'multiclass', got {form!r}.")
        target_norm = self.noise.norm if norm is None else parse_norm(norm)
        if method is not None:
            self.noise.certificate_methods(target_norm)  # validates the norm
            if method not in self.noise._certificates:
                raise ValueError(f"Unknown certificate method {method!r} for {type(self.noise).__name__}; "
                                 f"choose one of {self.noise.certificate_methods(target_norm)}.")
        x = self._check_x(x)
        use_box = bool(box) and self.clip_values is not None and any(s.box for s in self.noise._certificates.values())
        clip = None
        if use_box:
            cv = np.asarray(self.clip_values, dtype=np.float64)
            if cv.size != 2 and not (np.all(cv[0] == cv[0].flat[0]) and np.all(cv[1] == cv[1].flat[0])):
                raise ValueError(
                    "Box-constrained certificates need one (lo, hi) box for all features, but the classifier has "
                    "per-feature clip_values; pass box=False to certify without the box."
                )
            clip = (float(cv[0].flat[0]), float(cv[1].flat[0])) if cv.size != 2 else (float(cv.flat[0]), float(cv.flat[1]))
            if x.size:  # the box certificate's own check, before any sampling is spent
                check_inside_box(float(x.min()), float(x.max()), *clip)
        if backend != "local":
            return backend.certify_detailed(self, x, n, batch_size, norm=norm, method=method, form=form, n0=n0,
                                            box=box, deterministic=deterministic, verbose=verbose)
        self._set_eval()
        if deterministic:
            return self._certify_exact(x, batch_size, target_norm, method, clip)
        seed = self._call_seed()
        old_verbose = self.verbose
        if verbose is not None:
            self.verbose = verbose
        try:
            counts0 = self._count_votes(x, n0, STAGE_SELECT, batch_size, seed, "selection")
            counts = self._count_votes(x, n, STAGE_ESTIMATE, batch_size, seed, "estimation")
        finally:
            self.verbose = old_verbose
        c_a = counts0.argmax(dim=1)
        n_a = counts.gather(1, c_a[:, None])[:, 0]
        others = counts.scatter(1, c_a[:, None], -1)
        n_b = others.max(dim=1).values.clamp(min=0) if counts.shape[1] > 1 else torch.zeros_like(n_a)
        c_a, n_a, n_b = c_a.cpu().numpy(), n_a.cpu().numpy(), n_b.cpu().numpy()

        alpha_votes = self.alpha - self.noise.certificate_alpha
        if form == "binary":
            p_a = clopper_pearson_lower(n_a, n, alpha_votes)
            p_b = 1.0 - p_a
            certified = p_a > 0.5
        else:
            p_a = clopper_pearson_lower(n_a, n, alpha_votes / 2.0)
            p_b = np.minimum(clopper_pearson_upper(n_b, n, alpha_votes / 2.0), 1.0 - p_a)
            certified = p_a > p_b
        radius = self.noise.certified_radius(
            p_a, None if form == "binary" else p_b, norm=target_norm, dim=self.input_dim, method=method,
            x=x if use_box else None, clip_values=clip,
        )
        radius = np.where(certified, radius, 0.0)
        prediction = np.where(certified, c_a, -1).astype(np.int64)
        return CertificationResult(
            prediction=prediction, radius=radius, norm=target_norm, method=method, form=form,
            p_a_lower=p_a, p_b_upper=p_b, counts=counts.cpu().numpy(), counts_selection=counts0.cpu().numpy(),
            n=n, n0=n0, alpha=self.alpha, noise=self.noise, dim=self.input_dim, box=use_box, clip_values=clip,
            seed=self.seed,
        )

    def _certify_exact(self, x: np.ndarray, batch_size: int, norm: float, method: str | None,
                       clip: tuple[float, float] | None) -> CertificationResult:
        """CERTIFY without sampling: h(x) = Σ_j w_j · onehot(f(perturb(x, z_j))) over the noise's exact
        draws, then the noise's certificate on the exact top-two probabilities."""
        exact_draws = getattr(self.noise, "exact_draws", None)
        if exact_draws is None:
            raise ValueError(
                f"deterministic=True needs a noise with a finite, exactly weighted set of draws (a method "
                f"exact_draws(x, shape)), e.g. DeterministicSplittingNoise; {type(self.noise).__name__} has none.")
        z, weights = exact_draws(x, tuple(self.input_shape), device=self._device, dtype=self._noise_dtype)
        probs = self._exact_probabilities(x, z, weights.to(self._device), batch_size)
        top = np.sort(probs, axis=1)
        # Float64 sums of the weights are exact to ~1e-13; widen by 1e-12 so p_a / p_b stay bounds.
        p_a = np.clip(top[:, -1] - 1e-12, 0.0, 1.0)
        p_b = np.clip((top[:, -2] if probs.shape[1] > 1 else np.zeros(len(probs))) + 1e-12, 0.0, 1.0)
        certified = p_a > p_b
        radius = self.noise.certified_radius(p_a, p_b, norm=norm, dim=self.input_dim, method=method,
                                             x=x if clip is not None else None, clip_values=clip)
        # The exact probabilities may be those of a point next to x (e.g. the grid point of an input
        # a rounding error off the quantization grid): the ball around x is smaller by that distance.
        slack_fn = getattr(self.noise, "exact_input_slack", None)
        if slack_fn is not None and len(x):
            slack = slack_fn(x, norm)
            certified &= (slack == 0) | (radius > slack)
            radius = np.maximum(radius - slack, 0.0)
        return CertificationResult(
            prediction=np.where(certified, probs.argmax(axis=1), -1).astype(np.int64),
            radius=np.where(certified, radius, 0.0), norm=norm, method=method, form="exact",
            p_a_lower=p_a, p_b_upper=p_b, counts=np.zeros(probs.shape, np.int64),
            counts_selection=np.zeros(probs.shape, np.int64), n=0, n0=0, alpha=0.0, noise=self.noise,
            dim=self.input_dim, box=clip is not None, clip_values=clip, seed=self.seed,
            extra={"probabilities": probs, "draws": int(z.shape[0])},
        )

    def _exact_probabilities(self, x: np.ndarray, z: torch.Tensor, weights: torch.Tensor,
                             batch_size: int) -> np.ndarray:
        """(N, nb_classes) float64: Σ_j weights_j [f(perturb(x_i, z_j)) = c], one input per forward pass."""
        n_inputs, n_classes = x.shape[0], self.nb_classes
        probs = torch.zeros((n_inputs, n_classes), dtype=torch.float64, device=self._device)
        group = max(1, min(max(n_inputs, 1), _GROUP_ELEMENTS // max(1, self.input_dim)))
        with torch.no_grad():
            for g0 in range(0, n_inputs, group):
                xg = torch.as_tensor(x[g0:g0 + group], device=self._device).to(z.dtype)
                self._count_block(xg, z, probs[g0:g0 + group], batch_size, weights=weights.to(torch.float64))
        return probs.cpu().numpy()

    def _set_eval(self) -> None:
        pass


class SmoothedClassifier(_SmoothingCore, RandomizedSmoothingMixin, PyTorchClassifier):
    """Randomized smoothing of an existing ART ``PyTorchClassifier`` with any :mod:`art_smoothing.noise`.

    It keeps the wrapped classifier's model (shared, not copied), loss, optimizer, input shape,
    classes, clip values, preprocessing and preprocessing/postprocessing defences, and runs on the
    wrapped classifier's device. It is an ART ``PyTorchClassifier`` (hence ``ClassifierMixin`` and
    ``LossGradientsMixin``) and a ``RandomizedSmoothingMixin``, so ART code that checks those
    interfaces accepts it.

    Passing any other ART classifier (e.g. a scikit-learn model wrapped by ART) returns a
    :class:`NumpySmoothedClassifier`, which supports ``predict``, ``certify`` and ``fit`` (noise
    augmentation through the base classifier's own ``fit``) but no gradients.

    :param classifier: the base ART classifier.
    :param noise: the smoothing distribution.
    :param sample_size: draws for PREDICT and the selection draws n0 of CERTIFY.
    :param alpha: failure probability of PREDICT and of each certificate.
    :param seed: base seed of every random stream (``None``: fresh entropy per call).
    :param eot_samples: noise draws per gradient (Expectation over Transformation).
    :param verbose: progress bars.
    """

    estimator_params = PyTorchClassifier.estimator_params + ["noise", "sample_size", "alpha", "seed", "eot_samples"]

    def __new__(cls, classifier=None, *args, **kwargs):
        if cls is SmoothedClassifier and classifier is not None and not isinstance(classifier, PyTorchClassifier):
            return NumpySmoothedClassifier(classifier, *args, **kwargs)
        return super().__new__(cls)

    def __init__(self, classifier: PyTorchClassifier, noise: Noise, sample_size: int = 100, alpha: float = 0.001,
                 seed: int | None = None, eot_samples: int = 32, verbose: bool = False):
        if not isinstance(classifier, PyTorchClassifier):
            raise ValueError("classifier must be an ART classifier (PyTorchClassifier for the full interface).")
        device_type = "gpu" if classifier._device.type == "cuda" else "cpu"
        super().__init__(
            sample_size,
            model=classifier.model,
            loss=classifier._loss,
            input_shape=classifier.input_shape,
            nb_classes=classifier.nb_classes,
            optimizer=classifier._optimizer,
            use_amp=False,
            channels_first=classifier.channels_first,
            clip_values=classifier.clip_values,
            preprocessing_defences=classifier.preprocessing_defences,
            postprocessing_defences=classifier.postprocessing_defences,
            preprocessing=classifier.preprocessing,
            device_type=device_type,
            scale=getattr(noise, "std", 0.1) if isinstance(noise, Noise) else 0.1,
            alpha=alpha,
        )
        # Share the wrapped classifier's model wrapper and device exactly (a model on cuda:1 stays there).
        self._model = classifier._model
        self._device = classifier._device
        # ART's constructor moves the model to the *current* CUDA device; put it back where it was.
        self._model.to(self._device)
        self._base_classifier = classifier
        self.eot_samples = eot_samples
        self._init_smoothing(noise, seed, verbose)
        self.eot_samples = _check_int("eot_samples", self.eot_samples)

    def _check_params(self) -> None:
        super()._check_params()
        if hasattr(self, "noise"):
            self._check_smoothing_params()
            self.eot_samples = _check_int("eot_samples", self.eot_samples)

    @property
    def base_classifier(self) -> PyTorchClassifier:
        """The wrapped ART classifier (it shares its model with this estimator)."""
        return self._base_classifier

    def clone_for_refitting(self) -> SmoothedClassifier:
        """ART's ``clone_for_refitting``: the same smoothing around a fresh copy of the base classifier
        (same architecture and optimizer type, weights re-initialised by ART)."""
        base = self._base_classifier.clone_for_refitting()
        # what may have been changed on this estimator since it wrapped the base classifier
        base.set_params(clip_values=self.clip_values, preprocessing=self.preprocessing,
                        preprocessing_defences=self.preprocessing_defences,
                        postprocessing_defences=self.postprocessing_defences)
        return SmoothedClassifier(base, noise=self.noise,
                                  sample_size=self.sample_size, alpha=self.alpha, seed=self.seed,
                                  eot_samples=self.eot_samples, verbose=self.verbose)

    @property
    def _noise_dtype(self) -> torch.dtype:
        for p in self._model.parameters():
            if p.is_floating_point():
                return p.dtype
        return torch.float32

    def _set_eval(self) -> None:
        self._model.train(mode=False)

    def _identity_preprocessing(self) -> bool:
        """True when every preprocessing step is ART's standardisation with mean 0 and std 1 (the
        default ``preprocessing=(0, 1)``): x - 0 and x / 1 are exact, so skipping them changes no bit
        and saves two passes over every noisy batch."""
        ops = self.preprocessing_operations
        # Asked once per forward pass: cached on the identity of the steps and the values of their mean/std
        # (ART rebuilds the steps whenever preprocessing changes through set_params).
        key = tuple((id(op), np.asarray(getattr(op, "mean", 0.0)).tobytes(), np.asarray(getattr(op, "std", 1.0)).tobytes())
                    for op in ops)
        cached = self.__dict__.get("_identity_preprocessing_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        from art.preprocessing.standardisation_mean_std.numpy import StandardisationMeanStd
        from art.preprocessing.standardisation_mean_std.pytorch import StandardisationMeanStdPyTorch

        identity = all(
            isinstance(op, (StandardisationMeanStd, StandardisationMeanStdPyTorch))
            and bool(np.all(np.asarray(op.mean) == 0)) and bool(np.all(np.asarray(op.std) == 1))
            for op in ops
        )
        self.__dict__["_identity_preprocessing_cache"] = (key, identity, list(ops))  # keeps the ids alive
        return identity

    def _logits(self, x: torch.Tensor, *, no_grad: bool = True) -> torch.Tensor:
        """Base classifier outputs for (already noisy) inputs on the device: preprocessing defences,
        standardisation and model, as ART's own ``predict`` applies them."""
        if self._identity_preprocessing():
            x_pre = x
        elif self.all_framework_preprocessing:
            x_pre, _ = self._apply_preprocessing(x, y=None, fit=False, no_grad=no_grad)
        else:  # numpy defences: ART can only run them on numpy arrays
            x_np, _ = self._apply_preprocessing(x.detach().cpu().numpy(), y=None, fit=False)
            x_pre = torch.as_tensor(x_np, device=self._device).to(x.dtype)  # some ART defences return float64
        out = self._model(x_pre)[-1]
        if self.postprocessing_defences:
            post = self._apply_postprocessing(preds=out.detach().cpu().numpy(), fit=False)
            out = torch.as_tensor(post, device=self._device)
        return out

    def _labels(self, noisy: torch.Tensor) -> torch.Tensor:
        return self._logits(noisy).argmax(dim=-1)

    # ------------------------------------------------------------------ gradients (EOT)
    def loss_gradient(self, x, y, training_mode: bool = False, **kwargs):
        """EOT gradient of the *smoothed* classifier's loss, ∇_x −log ḡ_y(x), where ḡ(x) is the mean
        softmax of the base classifier over ``eot_samples`` noisy copies (SmoothAdv's objective; see
        :mod:`art_smoothing.attacks.eot` for why not the mean cross-entropy, and for the
        straight-through gradient used with non-additive noise). ART 1.20's randomized-smoothing
        estimators return the clean base model's gradient instead, so ART's attacks against them
        attack the wrong classifier; with this method ART's PGD/FGSM attack the smoothed one.

        Per-input gradients (not divided by the batch size). Numpy in → numpy out; a torch tensor in
        (ART's PyTorch attacks) → a tensor on the same device. Draws come from the estimator's
        gradient stream, fresh for every call.

        :param x: inputs ``(N, *input_shape)``.
        :param y: labels, indices ``(N,)`` or one-hot ``(N, nb_classes)``.
        :param eot_samples: (kwarg) draws m (default: the constructor's ``eot_samples``).
        :param noise_draws: (kwarg) draws ``(m, *input_shape)`` to reuse (see ``attacks.draw_noise``).
        :param batch_size: (kwarg, default 256) noisy copies per forward pass; memory is bounded by it.
        """
        from art_smoothing.attacks.eot import smoothed_loss_gradient

        return smoothed_loss_gradient(self, x, y, training_mode=training_mode, **kwargs)

    def class_gradient(self, x, label=None, training_mode: bool = False, **kwargs):
        """EOT gradients of the smoothed log-probabilities log ḡ_c(x) (the smoothed classifier's class
        outputs), shape ``(N, nb_classes, *input_shape)`` or ``(N, 1, *input_shape)``; keyword
        arguments as in :meth:`loss_gradient`."""
        from art_smoothing.attacks.eot import smoothed_class_gradient

        return smoothed_class_gradient(self, x, label, training_mode=training_mode, **kwargs)

    def compute_loss(self, x, y, reduction: str = "none", **kwargs):
        """Monte Carlo smoothed loss −log ḡ_y(x) over ``eot_samples`` draws (``reduction``: none/mean/sum)."""
        from art_smoothing.attacks.eot import smoothed_loss

        return smoothed_loss(self, x, y, reduction=reduction, **kwargs)

    def fit(self, x: np.ndarray, y: np.ndarray, batch_size: int = 128, nb_epochs: int = 10, **kwargs) -> None:
        """Train the base model with noise augmentation under this estimator's noise (Cohen et al.),
        delegating to :class:`art_smoothing.training.NoiseAugmentationTrainer`."""
        from art_smoothing.training.augmentation import NoiseAugmentationTrainer

        NoiseAugmentationTrainer(self, verbose=self.verbose).fit(x, y, nb_epochs=nb_epochs, batch_size=batch_size, **kwargs)


class NumpySmoothedClassifier(_SmoothingCore, RandomizedSmoothingMixin, ClassifierMixin, BaseEstimator):
    """Smoothing of any ART classifier through its numpy ``predict`` (e.g. scikit-learn models).

    Noise is drawn with torch on the CPU and handed to the base classifier as numpy arrays.
    Supported: ``predict``, ``certify``/``certify_detailed``, ``fit`` (noise augmentation through the
    base classifier's ``fit``, one call per epoch). Not supported: gradients (use a
    ``PyTorchClassifier`` base for attacks and robust training).
    """

    estimator_params = ClassifierMixin.estimator_params + BaseEstimator.estimator_params + [
        "noise", "sample_size", "alpha", "seed"]

    def __init__(self, classifier, noise: Noise, sample_size: int = 100, alpha: float = 0.001,
                 seed: int | None = None, verbose: bool = False, **kwargs):
        if not isinstance(classifier, ClassifierMixin):
            raise ValueError(f"classifier must be an ART classifier (ClassifierMixin), got {type(classifier).__name__}.")
        if classifier.input_shape is None:
            raise ValueError("The base classifier has no input_shape; set it before smoothing.")
        self._base_classifier = classifier
        self._device = torch.device("cpu")
        super().__init__(
            sample_size, model=classifier.model, clip_values=classifier.clip_values,
            scale=getattr(noise, "std", 0.1) if isinstance(noise, Noise) else 0.1, alpha=alpha,
        )
        self.nb_classes = classifier.nb_classes
        self._init_smoothing(noise, seed, verbose)

    def _check_params(self) -> None:
        super()._check_params()
        if "noise" in self.__dict__:  # BaseEstimator's constructor checks before the noise is set
            self._check_smoothing_params()

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self._base_classifier.input_shape)

    @property
    def base_classifier(self):
        return self._base_classifier

    _noise_dtype = torch.float32

    def _labels(self, noisy: torch.Tensor) -> torch.Tensor:
        out = self._base_classifier.predict(noisy.cpu().numpy())
        return torch.as_tensor(np.asarray(out).argmax(axis=-1), dtype=torch.int64)

    def fit(self, x: np.ndarray, y: np.ndarray, batch_size: int = 128, nb_epochs: int = 10, **kwargs) -> None:
        """Noise augmentation: every epoch the base classifier is fit once on freshly noised inputs.

        A base model that refits from scratch on every ``fit`` call (most scikit-learn estimators, e.g.
        ``LogisticRegression``) keeps only the last epoch's draw; with those, enlarge the data instead
        (e.g. ``np.repeat`` the inputs) or use one that learns incrementally (``warm_start=True``)."""
        from art.utils import check_and_transform_label_format

        x = self._check_x(x)
        y = check_and_transform_label_format(check_labels(y, self.nb_classes), nb_classes=self.nb_classes)
        if len(y) != len(x):
            raise ValueError(f"x has {len(x)} samples but y has {len(y)} labels.")
        nb_epochs = _check_int("nb_epochs", nb_epochs)
        seed = self._call_seed()
        self._fit_calls += 1
        import inspect

        accepted = inspect.signature(self._base_classifier.fit).parameters
        fit_kwargs = dict(kwargs)
        if "batch_size" in accepted:
            fit_kwargs["batch_size"] = batch_size
        if "nb_epochs" in accepted:
            fit_kwargs["nb_epochs"] = 1
        for epoch in range(nb_epochs):
            z = self.noise.sample(len(x), self.input_shape, generator=self._generator(seed, STAGE_FIT,
                                                                                      self._fit_calls, epoch))
            x_noisy = self.noise.perturb(torch.as_tensor(x), z).numpy()
            self._base_classifier.fit(x_noisy, y, **fit_kwargs)

    def get_activations(self, *args, **kwargs):
        raise NotImplementedError("Activations are not available through a smoothed numpy classifier.")

    def clone_for_refitting(self):
        raise NotImplementedError("clone_for_refitting needs a PyTorchClassifier base classifier; clone the base "
                                  "classifier yourself and wrap it in a new SmoothedClassifier.")

    def compute_loss(self, *args, **kwargs):
        raise NotImplementedError("Losses/gradients need a PyTorchClassifier base classifier.")
