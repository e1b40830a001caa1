"""The smoothing engine: noise streams, vote counting, PREDICT and CERTIFY (Cohen et al., 2019, Algorithm 1),
shared by the PyTorch and the numpy estimator and used by attacks, trainers, evaluation and the Ray backend.

Its public methods are the contract between the estimator and the floors above it (see
``docs/architecture.md``): random streams by stage and key (:meth:`SmoothingEngine.generator`,
:meth:`~SmoothingEngine.call_seed`, :meth:`~SmoothingEngine.next_call`), noise draws
(:meth:`~SmoothingEngine.sample_noise`), votes (:meth:`~SmoothingEngine.count_votes`,
:meth:`~SmoothingEngine.count_block`, :meth:`~SmoothingEngine.predict_from_counts`) and the certify plan
(:meth:`~SmoothingEngine.certify_plan`, :meth:`~SmoothingEngine.run_certify`).

How the noise is drawn (speed without losing soundness) is explained in :mod:`art_smoothing.engine.streams`:
one input's draws are i.i.d., the blocks are shared by all inputs, and a forward pass holds one input's
draws only, cut at fixed offsets of a block, so an input's votes do not depend on batching or on the
partition across workers. Bit-identical votes then need only the same ``batch_size``, intra-op thread
count and kernels; otherwise a vote can change only where two logits tie to rounding. The certification
errors of different inputs are correlated; the expected number of wrong certificates stays ≤ α·N.

An estimator whose forward pass is compiled for fixed shapes (:attr:`SmoothingEngine.static_shapes`) gets
every pass padded to one of a few sizes (:func:`pass_size`); the padded rows' votes are dropped, so the
draws that count and the cuts are the same as without padding.
"""

from __future__ import annotations

import itertools
import logging
import math
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from art_smoothing.certificates.bounds import binomial_test_half
from art_smoothing.checks import check_int
from art_smoothing.engine.backends import resolve_backend
from art_smoothing.engine.plan import CertifyPlan
from art_smoothing.engine.result import CertificationResult
from art_smoothing.engine.sequential import run_sequential
from art_smoothing.engine.streams import NoiseBlocks, Stage, block_size, generator, group_size

logger = logging.getLogger(__name__)

__all__ = ["PAD_LEVELS", "SmoothingEngine", "pad_rows", "pass_size"]

#: with fixed shapes, a pass of ``rows`` noisy copies is padded to ``full`` (the largest pass) or to one of the
#: PAD_LEVELS − 1 powers of two in [full/2^(PAD_LEVELS−1), full): at most PAD_LEVELS shapes per input shape.
PAD_LEVELS = 5


def pass_size(rows: int, full: int) -> int:
    """The size a forward pass of ``rows`` ≤ ``full`` noisy copies is padded to when shapes are fixed: ``full``
    when ``rows`` > full/2, else the smallest power of two ≥ ``rows`` and ≥ full/2^(PAD_LEVELS−1). A function of
    (rows, full) only, so padding never depends on batching or partitioning; less than 2× the rows above the
    smallest size. Measured against padding every pass to ``full`` (2 CPU threads, compiled CNNs, batch 500):
    fixed-n CERTIFY (n0 = 100 pads to 128 instead of 500) 1.4–3.0× eager instead of 1.2–2.6×; sequential CERTIFY
    (looks of 64, 128, … draws, the first schedule) 1.17× eager instead of 0.6–0.75×, for up to four more
    compilations."""
    if 2 * rows > full:
        return full
    floor = -(-full // (1 << (PAD_LEVELS - 1)))
    return min(full, 1 << (max(rows, floor) - 1).bit_length())


def pad_rows(t: torch.Tensor, rows: int) -> torch.Tensor:
    """``t`` with zero rows appended up to ``rows`` rows (``t`` itself when it has that many)."""
    if t.shape[0] >= rows:
        return t
    return torch.cat([t, t.new_zeros((rows - t.shape[0], *t.shape[1:]))])


class SmoothingEngine:
    """Noise draws, vote counting, PREDICT and CERTIFY for a smoothed classifier.

    A concrete estimator provides the attributes ``noise``, ``seed``, ``sample_size``, ``alpha``,
    ``verbose``, ``input_shape``, ``nb_classes``, ``device`` (a ``torch.device``) and ``noise_dtype``, and
    the methods :meth:`base_labels` (the base classifier's hard decisions on noisy inputs already on the
    device), :meth:`set_eval` and :meth:`check_smoothing_params`; it may override :attr:`static_shapes` (a
    compiled forward pass).
    """

    # ------------------------------------------------------------------ what the estimator provides
    def base_labels(self, noisy: torch.Tensor) -> torch.Tensor:
        """The base classifier's classes (int64, on the device) for a batch of noisy inputs."""
        raise NotImplementedError

    def set_eval(self) -> None:
        """Put the base model in evaluation mode (no-op for models without one)."""

    def check_smoothing_params(self) -> None:
        """Validate the smoothing parameters before a call (they may have been assigned directly)."""

    @property
    def static_shapes(self) -> bool:
        """True while :meth:`base_labels` runs a forward pass compiled for fixed shapes: :meth:`count_block`
        then pads every pass to a size from a small fixed set (:func:`pass_size`) and drops the padded rows'
        votes. False by default (passes hold exactly their draws)."""
        return False

    # ------------------------------------------------------------------ inputs and streams
    @property
    def input_dim(self) -> int:
        """Number of input features (the dimension certificates and norm conversions use)."""
        return int(np.prod(self.input_shape))

    def check_x(self, x) -> np.ndarray:
        """Inputs as a finite float32 numpy array of shape ``(N, *input_shape)``; a clear ValueError otherwise."""
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

    def call_seed(self) -> int:
        """The base seed of one call: the user's ``seed``, or fresh OS entropy when there is none."""
        if self.seed is not None:
            return self.seed
        return int(np.random.SeedSequence().entropy) & 0x7FFFFFFFFFFFFFFF

    def generator(self, seed: int, *keys: int) -> torch.Generator:
        """The generator of stream ``(seed, *keys)`` on the estimator's device (keys start with a
        :class:`~art_smoothing.engine.streams.Stage`)."""
        return generator(self.device, seed, *keys)

    def next_call(self, stage: Stage) -> int:
        """Advance and return the call counter of ``stage`` (``Stage.FIT`` or ``Stage.GRADIENT``): streams
        keyed by call give a seeded estimator the same sequence of draws run after run."""
        name = {Stage.FIT: "fit_calls", Stage.GRADIENT: "gradient_calls"}[Stage(stage)]
        calls = int(getattr(self, name, 0)) + 1
        setattr(self, name, calls)
        return calls

    def sample_noise(self, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``num`` i.i.d. draws of the estimator's noise, ``(num, *input_shape)``, on its device in the
        model's dtype (``generator=None``: torch's global generator)."""
        return self.noise.sample(num, tuple(self.input_shape), generator=generator, device=self.device,
                                 dtype=self.noise_dtype)

    def block_size(self) -> int:
        """Draws per block of a stream (depends on the input dimension only)."""
        return block_size(self.input_dim)

    # ------------------------------------------------------------------ votes
    def count_votes(self, x: np.ndarray, num: int, stage: Stage, batch_size: int, seed: int, *,
                    desc: str = "votes", verbose: bool | None = None) -> torch.Tensor:
        """Votes ``(N, nb_classes)`` (int64, on the device) of the base classifier over ``num`` noisy
        copies of every input. Input i's copies are ``perturb(x_i, z_j)``, j < num, with the shared
        stream z of ``(seed, stage)`` — i.i.d. for every input."""
        n_inputs, n_classes = x.shape[0], self.nb_classes
        counts = torch.zeros((n_inputs, n_classes), dtype=torch.int64, device=self.device)
        if n_inputs == 0:
            return counts
        group = group_size(n_inputs, self.input_dim)
        show = self.verbose if verbose is None else verbose
        bar = tqdm(total=math.ceil(n_inputs / group) * math.ceil(num / self.block_size()), desc=desc,
                   disable=not show, leave=False)
        with torch.no_grad():
            for g0 in range(0, n_inputs, group):
                xg = torch.as_tensor(x[g0:g0 + group], device=self.device).to(self.noise_dtype)
                self.add_votes(xg, counts[g0:g0 + group], 0, num, NoiseBlocks(self, stage, seed, num), batch_size,
                               on_block=lambda: bar.update(1))
        bar.close()
        return counts

    def add_votes(self, xg: torch.Tensor, counts: torch.Tensor, start: int, stop: int, blocks: NoiseBlocks,
                  batch_size: int, on_block=None) -> None:
        """Add to ``counts`` the votes of draws ``start ≤ j < stop`` of the stream ``blocks`` for every input of
        ``xg`` (on the device). Forward passes are cut at multiples of ``batch_size`` within a block and at
        ``start``/``stop``: a function of the stream, the range and the batch size only."""
        size = self.block_size()
        for j in range(start // size, math.ceil(stop / size)):
            z = blocks.block(j)
            self.count_block(xg, z, counts, batch_size, start=max(start - j * size, 0), stop=min(stop - j * size,
                                                                                                   z.shape[0]))
            if on_block is not None:
                on_block()

    def count_block(self, xg: torch.Tensor, z: torch.Tensor, counts: torch.Tensor, batch_size: int,
                    weights: torch.Tensor | None = None, *, start: int = 0, stop: int | None = None) -> None:
        """Add the votes of every (input in xg) × (draw in ``z[start:stop]``) pair to ``counts`` (each draw
        counting ``weights[j]`` instead of 1 when weights are given, as for exact finite expectations).

        A forward pass never mixes inputs: input i's passes are ``perturb(x_i, z[a:b])`` for the cuts
        a < b at ``start``, ``stop`` and the multiples of ``batch_size`` between them — tensors fixed by
        (x_i, seed, stage, block, start, stop, batch size) alone. Kernels can round a row differently
        depending on the batch it sits in (CPU GEMM paths change with the batch size, cuDNN picks algorithms
        by shape), so packing several inputs into one pass would make a near-tie's vote depend on which
        inputs happen to share the call — i.e. on partitioning.

        With :attr:`static_shapes` a pass of b − a draws is padded with zero rows to
        ``pass_size(b − a, full)`` (``full`` = the largest pass, min(batch_size, block)) and only its first
        b − a labels count: the same draws and cuts, a few fixed shapes."""
        stop = z.shape[0] if stop is None else stop
        if stop <= start:
            return
        cuts = [start, *range((start // batch_size + 1) * batch_size, stop, batch_size), stop]
        w = None if weights is None else weights[start:stop]
        n_classes = counts.shape[1]
        full = min(batch_size, max(z.shape[0], self.block_size())) if self.static_shapes else 0
        for i in range(xg.shape[0]):
            labels = []
            for a, b in itertools.pairwise(cuts):
                noisy = self.noise.perturb(xg[i:i + 1], z[a:b])
                if full:
                    noisy = pad_rows(noisy, pass_size(b - a, full))
                labels.append(self.base_labels(noisy)[:b - a])
            # one bincount per input: weighted sums then do not depend on how the draws were batched
            votes = torch.bincount(torch.cat(labels), weights=w, minlength=n_classes)[:n_classes]
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
        self.check_smoothing_params()  # attributes may have been assigned directly since construction
        x = self.check_x(x)
        batch_size = check_int("batch_size", batch_size)
        self.set_eval()
        counts = self.count_votes(x, self.sample_size, Stage.PREDICT, batch_size, self.call_seed(), desc="predict",
                                  verbose=self.verbose or verbose)
        return self.predict_from_counts(counts, is_abstain)

    def predict_from_counts(self, counts: torch.Tensor, is_abstain: bool = True) -> np.ndarray:
        """PREDICT's decision from votes: the top class where the two-sided binomial test of the top two
        counts rejects p = 1/2 at level α (else an all-zero row), as one-hot float32 ``(N, nb_classes)``."""
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
        ``n0``, ``box``, ``deterministic``, ``verbose``, ``backend``, ``sequential``, ``radius``,
        ``randomized``)."""
        result = self.certify_detailed(x, n, batch_size=batch_size, **kwargs)
        return result.prediction, result.radius

    def certify_plan(self, n: int, batch_size: int = 128, **kwargs) -> CertifyPlan:
        """The validated plan of a certify request (keywords of :meth:`certify_detailed` but ``backend``)."""
        self.check_smoothing_params()  # attributes may have been assigned directly since construction
        return CertifyPlan.build(self, n, batch_size, **kwargs)

    def certify_detailed(self, x: np.ndarray, n: int, batch_size: int = 128, *, norm=None, method: str | None = None,
                         form: str = "binary", n0: int | None = None, box: bool = True,
                         deterministic: bool = False, verbose: bool | None = None,
                         backend: Any = "local", sequential: bool = False, radius=None,
                         randomized: bool = False) -> CertificationResult:
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
        :param verbose: progress bars (default: the estimator's ``verbose``).
        :param backend: ``"local"`` (this process), ``"ray"`` or an
            :class:`art_smoothing.distributed.RayBackend` (inputs split over Ray workers; with a fixed
            seed the result is the local one, bit for bit — see :mod:`art_smoothing.distributed`).
        :param sequential: anytime-valid sequential CERTIFY (:mod:`art_smoothing.engine.sequential`): ``n``
            is the budget (at most n estimation draws per input; n0 selection draws as usual) and every input
            stops as soon as each radius in ``radius`` is certified, refuted or not certifiable within the
            budget. The guarantee is fixed-n CERTIFY's — a reported radius exceeds what the true
            probabilities support with probability ≤ α — whatever the stopping time. The radius reported is
            the one the bounds at the stopping look give: the input is certified at R exactly when it does not
            abstain and its radius is ≥ R. The result adds ``n_used``, ``radii`` and ``decisions``.
        :param radius: with ``sequential=True``: one radius or a list (a grid), in ``norm``.
        :param randomized: randomized Clopper–Pearson bounds (Voráček, 2024; fixed-n only): a valid (1 − α)
            bound that is never below the plain one, with exact rather than conservative coverage. The extra
            randomness is one auxiliary uniform per bound, drawn from the estimator's seeded stream and
            shared by all inputs (independent of every input's votes): the same votes can give a slightly
            different radius under another seed, and the 1 − α statement holds over the votes and that
            uniform jointly.
        """
        runner = resolve_backend(backend)  # ValueError for unknown backends; never imports ray
        plan = self.certify_plan(n, batch_size, norm=norm, method=method, form=form, n0=n0, box=box,
                                 deterministic=deterministic, verbose=verbose, sequential=sequential, radius=radius,
                                 randomized=randomized)
        x = plan.check_inputs(self.check_x(x))
        if runner is not None:
            return runner.certify(self, x, plan)
        return self.run_certify(x, plan)

    def run_certify(self, x: np.ndarray, plan: CertifyPlan, seed: int | None = None) -> CertificationResult:
        """CERTIFY of validated inputs under a validated plan, in this process: n0 selection votes pick
        c_A, n independent estimation votes bound p_A (and p_B), the noise turns the bounds into a radius,
        and the smoothed classifier abstains where nothing is certified.

        :param seed: the base seed of the streams (default :meth:`call_seed`; the Ray backend passes the
            driver's so that every worker draws the same blocks)."""
        self.set_eval()
        if plan.deterministic:
            return self.certify_exact(x, plan)
        seed = self.call_seed() if seed is None else seed
        if plan.sequential:
            return run_sequential(self, x, plan, seed)
        counts0 = self.count_votes(x, plan.n0, Stage.SELECT, plan.batch_size, seed, desc="selection",
                                   verbose=plan.verbose)
        counts = self.count_votes(x, plan.n, Stage.ESTIMATE, plan.batch_size, seed, desc="estimation",
                                  verbose=plan.verbose)
        u = None
        if plan.randomized:  # one pair of uniforms shared by all inputs, independent of every input's votes
            u = tuple(float(v) for v in torch.rand(2, generator=self.generator(seed, Stage.RANDOMIZE),
                                                   device=self.device, dtype=torch.float64).cpu())
        return plan.conclude(x, counts0, counts, seed=self.seed, u=u)

    def certify_exact(self, x: np.ndarray, plan: CertifyPlan) -> CertificationResult:
        """CERTIFY without sampling: h(x) = Σ_j w_j · onehot(f(perturb(x, z_j))) over the noise's exact
        draws, then the noise's certificate on the exact top-two probabilities."""
        exact_draws = getattr(self.noise, "exact_draws", None)
        if exact_draws is None:
            raise ValueError(
                f"deterministic=True needs a noise with a finite, exactly weighted set of draws (a method "
                f"exact_draws(x, shape)), e.g. DeterministicSplittingNoise; {type(self.noise).__name__} has none.")
        z, weights = exact_draws(x, tuple(self.input_shape), device=self.device, dtype=self.noise_dtype)
        probs = self.exact_probabilities(x, z, weights.to(self.device), plan.batch_size)
        top = np.sort(probs, axis=1)
        # Float64 sums of the weights are exact to ~1e-13; widen by 1e-12 so p_a / p_b stay bounds.
        p_a = np.clip(top[:, -1] - 1e-12, 0.0, 1.0)
        p_b = np.clip((top[:, -2] if probs.shape[1] > 1 else np.zeros(len(probs))) + 1e-12, 0.0, 1.0)
        certified = p_a > p_b
        radius = self.noise.certified_radius(p_a, p_b, norm=plan.norm, dim=plan.dim, method=plan.method,
                                             x=x if plan.box else None, clip_values=plan.clip_values)
        # The exact probabilities may be those of a point next to x (e.g. the grid point of an input
        # a rounding error off the quantization grid): the ball around x is smaller by that distance.
        slack_fn = getattr(self.noise, "exact_input_slack", None)
        if slack_fn is not None and len(x):
            slack = slack_fn(x, plan.norm)
            certified &= (slack == 0) | (radius > slack)
            radius = np.maximum(radius - slack, 0.0)
        zeros = np.zeros(probs.shape, np.int64)
        return plan.result(
            prediction=np.where(certified, probs.argmax(axis=1), -1).astype(np.int64),
            radius=np.where(certified, radius, 0.0), form="exact", p_a_lower=p_a, p_b_upper=p_b, counts=zeros,
            counts_selection=zeros.copy(), n=0, n0=0, alpha=0.0, seed=self.seed,
            extra={"probabilities": probs, "draws": int(z.shape[0])},
        )

    def exact_probabilities(self, x: np.ndarray, z: torch.Tensor, weights: torch.Tensor,
                            batch_size: int) -> np.ndarray:
        """(N, nb_classes) float64: Σ_j weights_j [f(perturb(x_i, z_j)) = c], one input per forward pass."""
        n_inputs, n_classes = x.shape[0], self.nb_classes
        probs = torch.zeros((n_inputs, n_classes), dtype=torch.float64, device=self.device)
        group = group_size(n_inputs, self.input_dim)
        with torch.no_grad():
            for g0 in range(0, n_inputs, group):
                xg = torch.as_tensor(x[g0:g0 + group], device=self.device).to(z.dtype)
                self.count_block(xg, z, probs[g0:g0 + group], batch_size, weights=weights.to(torch.float64))
        return probs.cpu().numpy()
