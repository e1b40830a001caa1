"""The compiled forward pass of a smoothed classifier (``SmoothedClassifier(..., compile=True|False|"auto")``).

CERTIFY feeds the base model 10⁴–10⁵ fixed-shape batches per input, the ideal workload for a compiled graph.
With ``compile`` on, the base classifier's standardisation and model run through ``torch.compile`` (static
shapes: the vote engine pads every pass to one of a few sizes, :func:`art_smoothing.engine.core.pass_size`)
in PREDICT and CERTIFY, with image batches in the device's fastest memory format; the model's parameters are
never touched and later weight updates are seen. Gradients, EOT passes and training stay eager. ``"auto"``
compiles a request of at least :data:`AUTO_COMPILE_SAMPLES` noisy samples. Where compilation fails, one
warning line and the eager pass. Compiled kernels round differently: a vote can change only where two logits
tie to within float rounding, and the certificate is a statement about the model as it runs.
"""

from __future__ import annotations

import contextlib
import types
import warnings
from typing import ClassVar

import numpy as np
import torch

from art_smoothing.engine.core import SmoothingEngine
from art_smoothing.engine.result import CertificationResult

__all__ = ["AUTO_COMPILE_SAMPLES", "CompileMixin", "CompiledForward", "check_compile", "memory_format",
           "request_samples"]

#: ``compile="auto"`` compiles a PREDICT or CERTIFY call that evaluates at least this many noisy samples in
#: total (N·(n0 + n) for CERTIFY — n is the budget of a sequential one — and N·sample_size for PREDICT). Measured
#: on 2 CPU threads (``benchmarks/certify_throughput.py``): the cheapest benchmark model (digits CNN, 6–11·10⁴
#: samples/s eager) spends 9–15 s eagerly on 10⁶ samples and compiling saves half of it for 1–11 s of
#: compilation (inductor's disk cache warm or cold): about even; a model 5× as costly (wide digits, CIFAR-shaped
#: CNN: 1.1–1.5·10⁴ samples/s) saves 20–60 s for 1–5 s. Below it compiling rarely pays.
AUTO_COMPILE_SAMPLES = 1_000_000


def check_compile(value) -> bool | str:
    """``compile`` as ``True``, ``False`` or ``"auto"``; a clear ValueError for anything else."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str) and value == "auto":
        return value
    raise ValueError(f"compile must be True, False or 'auto', got {value!r}.")


def request_samples(x, *draws) -> int:
    """Noisy samples of a request: inputs × draws per input (0 when the arguments are malformed: the request's
    own validation reports them)."""
    try:
        return len(x) * sum(int(d) for d in draws)
    except (TypeError, ValueError):
        return 0


def _forward(model, x, mean, std, memory_format):
    """What ``compile`` compiles: the batch in the device's fastest layout, ART's standardisation (x − mean,
    then / std, as ``StandardisationMeanStdPyTorch`` computes it) and the model."""
    if memory_format is not None:
        x = x.contiguous(memory_format=memory_format)
    if mean is not None:
        x = (x - mean) / std
    return model(x)


def memory_format(device: torch.device, ndim: int):
    """channels_last for image batches (N, C, H, W) on the CPU (oneDNN's native layout for convolutions) and on
    CUDA (cuDNN's tensor-core layout); batches of any other rank, and other devices, keep their layout."""
    return torch.channels_last if ndim == 4 and device.type in ("cpu", "cuda") else None


class CompiledForward:
    """An estimator's compiled forward pass, built on first use in each process. Copies and pickles start
    empty: compiled code does not travel, every process (each Ray worker) compiles its own."""

    #: failures already reported in this process (one warning line per kind of failure)
    warned: ClassVar[set[str]] = set()

    def __init__(self):
        self.fn = None
        self.failed = False
        #: why compiling failed (one line), None while it works
        self.reason: str | None = None
        #: channels_last failed for this model (e.g. a ``.view`` of a convolution's output): keep its layout
        self.plain_layout = False

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self.__init__()

    def __deepcopy__(self, memo):
        return CompiledForward()

    def build(self):
        """``torch.compile`` of :func:`_forward` with static shapes, on a copy of its code: dynamo keeps its
        cache and its recompile limit per code object, so every estimator gets its own."""
        if self.fn is None:
            code = _forward.__code__.replace()
            own = types.FunctionType(code, _forward.__globals__, _forward.__name__)
            self.fn = torch.compile(own, dynamic=False)
        return self.fn

    def fail(self, exc: BaseException) -> None:
        """Stop compiling for this estimator and say why, once per process and kind of failure, in one line."""
        self.failed = True
        text = str(exc).strip()
        reason = type(exc).__name__ + (f": {text.splitlines()[0][:160]}" if text else "")
        self.reason = reason
        if type(exc).__name__ not in self.warned:
            self.warned.add(type(exc).__name__)
            warnings.warn(f"compile: torch.compile of the base classifier failed ({reason}); running it eagerly.",
                          RuntimeWarning, stacklevel=4)


class CompileMixin:
    """What a PyTorch estimator gains from a compiled forward pass: the per-request decision, the static-shape
    switch the vote engine reads, and the compiled logits. The estimator provides ``compile``, ``_compiled`` (a
    :class:`CompiledForward`), ``model``, ``preprocess``, ``identity_preprocessing``, ``model_logits`` and
    ``check_output_width``; PREDICT and CERTIFY decide ``compile`` once per call, on all its inputs (in the
    driver with a Ray backend)."""

    def compile_for(self, samples: int) -> bool:
        """Whether a PREDICT/CERTIFY call evaluating ``samples`` noisy samples in total runs compiled:
        ``compile`` itself when it is True or False; with ``"auto"``, ``samples >= AUTO_COMPILE_SAMPLES``."""
        self.compile = check_compile(self.compile)  # it may have been assigned directly
        return self.compile if isinstance(self.compile, bool) else int(samples) >= AUTO_COMPILE_SAMPLES

    @contextlib.contextmanager
    def compile_call(self, samples: int):
        """Within this context the forward passes follow :meth:`compile_for` ``(samples)``; an enclosing
        call's decision stands (a request is decided once, on all its inputs)."""
        if self.__dict__.get("_compile_now") is not None:
            yield
            return
        self.__dict__["_compile_now"] = self.compile_for(samples)
        try:
            yield
        finally:
            self.__dict__["_compile_now"] = None

    @property
    def compile_in_effect(self) -> bool | str:
        """True/False as decided for the PREDICT or CERTIFY call in progress; outside one, ``compile`` (what
        a Ray worker is given: the driver's decision for the whole request)."""
        now = self.__dict__.get("_compile_now")
        return check_compile(self.compile) if now is None else now

    @property
    def compiling(self) -> bool:
        """Whether the forward passes now go through the compiled model (decided and not failed)."""
        return self.compile_in_effect is True and not self._compiled.failed

    @property
    def compile_failure(self) -> str | None:
        """Why ``torch.compile`` of this estimator's forward pass failed (one line; the passes then ran eagerly),
        or None."""
        return self._compiled.reason

    @property
    def static_shapes(self) -> bool:
        """The engine pads passes to fixed sizes while the forward pass is compiled."""
        return self.compiling

    def _compiled_inputs(self, x: torch.Tensor):
        """``(x, mean, std)`` for :func:`_forward`: ART's torch standardisation (alone, applied at predict time)
        moves into the compiled graph; any other preprocessing runs here first, as ART applies it."""
        if self.identity_preprocessing():
            return x, None, None
        ops = self.preprocessing_operations
        from art.preprocessing.standardisation_mean_std.pytorch import StandardisationMeanStdPyTorch

        if len(ops) == 1 and isinstance(ops[0], StandardisationMeanStdPyTorch) and ops[0].apply_predict:
            key = (id(ops[0]), tuple(x.shape[1:]), np.asarray(ops[0].mean).tobytes(), np.asarray(ops[0].std).tobytes())
            cached = self.__dict__.get("_compiled_standardisation")
            if cached is None or cached[0] != key:
                from art.preprocessing.standardisation_mean_std.utils import broadcastable_mean_std

                mean, std = broadcastable_mean_std(x, np.asarray(ops[0].mean), np.asarray(ops[0].std))
                cached = (key, *(torch.tensor(v, device=self._device, dtype=torch.float32) for v in (mean, std)),
                          ops[0])
                self.__dict__["_compiled_standardisation"] = cached  # keeps the op (and its id) alive
            return x, cached[1], cached[2]
        x_pre, _ = self.preprocess(x)
        return x_pre, None, None

    def _compiled_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the compiled forward pass (no gradient); the eager pass where compiling fails."""
        x_in, mean, std = self._compiled_inputs(x)
        # canonical strides (size-1 dims included: dynamo guards on them), without a copy for contiguous batches
        x_in = x_in.contiguous().view(-1).view(x_in.shape)
        layout = None if self._compiled.plain_layout else memory_format(self._device, x_in.ndim)
        try:
            with torch.no_grad():
                out = self._compiled.build()(self.model, x_in, mean, std, layout)
        except Exception as exc:  # noqa: BLE001 - any failure of torch.compile falls back to the eager pass
            if layout is not None:  # a model that cannot take channels_last batches: compile it in its own layout
                self._compiled.plain_layout = True
                return self._compiled_logits(x)
            self._compiled.fail(exc)
            return self.model_logits(self.preprocess(x)[0])
        self.check_output_width(out.shape)
        return out

    # PREDICT and CERTIFY decide ``compile`` once per call, on all its inputs (in the driver with a Ray backend)
    def predict(self, x, batch_size: int = 128, verbose: bool = False, **kwargs) -> np.ndarray:
        with self.compile_call(request_samples(x, self.sample_size)):
            return super().predict(x, batch_size=batch_size, verbose=verbose, **kwargs)

    predict.__doc__ = SmoothingEngine.predict.__doc__

    def certify_detailed(self, x, n, batch_size: int = 128, **kwargs) -> CertificationResult:
        n0 = kwargs.get("n0")
        with self.compile_call(request_samples(x, self.sample_size if n0 is None else n0, n)):
            return super().certify_detailed(x, n, batch_size=batch_size, **kwargs)

    certify_detailed.__doc__ = SmoothingEngine.certify_detailed.__doc__

    def run_certify(self, x, plan, seed: int | None = None) -> CertificationResult:
        with self.compile_call(request_samples(x, plan.n0, plan.n)):
            return super().run_certify(x, plan, seed=seed)

    run_certify.__doc__ = SmoothingEngine.run_certify.__doc__

