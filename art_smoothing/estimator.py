"""The ART estimators: :class:`SmoothedClassifier` smooths an ART ``PyTorchClassifier`` with any noise;
:class:`NumpySmoothedClassifier` smooths any other ART classifier through its numpy ``predict``.

They are thin adapters: ART's interface (constructor, ``estimator_params``, ``set_params``, the ``scale``
attribute, ``predict``/``certify``/``fit``/gradients) on top of the smoothing engine
(:mod:`art_smoothing.engine`), which holds the procedures (Cohen et al., 2019: PREDICT and CERTIFY), the
noise streams, the EOT gradients and the training loop. This module adds the base classifier's forward
pass: noise goes on the raw input, *before* the base classifier's preprocessing defences and its
standardisation, in ``fit``, ``predict``, ``certify`` and the gradients alike — the base classifier
(defences + normalisation + model) is the function that is smoothed. ART 1.20's
``PyTorchRandomizedSmoothing`` adds noise before preprocessing in ``certify`` but after it in ``fit``, so it
trains a different classifier from the one it certifies.

``SmoothedClassifier(..., compile=True)`` runs that forward pass (standardisation and model) through
``torch.compile`` in PREDICT and CERTIFY, with the batch shapes kept fixed by the engine; the certificate is
then a statement about the model as it runs compiled (see :class:`SmoothedClassifier`).
"""

from __future__ import annotations

import inspect
import logging
import math

import numpy as np
import torch
from art.estimators.certification.randomized_smoothing.randomized_smoothing import RandomizedSmoothingMixin
from art.estimators.classification import PyTorchClassifier
from art.estimators.classification.classifier import ClassifierMixin
from art.estimators.estimator import BaseEstimator
from art.utils import check_and_transform_label_format

from art_smoothing.certificates.bounds import check_alpha
from art_smoothing.checks import check_bool, check_int, check_labels, check_positive
from art_smoothing.engine import eot
from art_smoothing.engine.compiled import AUTO_COMPILE_SAMPLES, CompiledForward, CompileMixin, check_compile
from art_smoothing.engine.core import SmoothingEngine
from art_smoothing.engine.fitting import augmentation_loss, fit_under_noise
from art_smoothing.engine.result import CertificationResult
from art_smoothing.engine.streams import (
    STAGE_ESTIMATE,
    STAGE_FIT,
    STAGE_GRADIENT,
    STAGE_PREDICT,
    STAGE_SELECT,
    Stage,
    stream_seed,
)
from art_smoothing.noise.base import Noise
from art_smoothing.noise.gaussian import GaussianNoise
from art_smoothing.runtime import tune_cpu_allocator

logger = logging.getLogger(__name__)

__all__ = [
    "AUTO_COMPILE_SAMPLES",
    "STAGE_ESTIMATE",
    "STAGE_FIT",
    "STAGE_GRADIENT",
    "STAGE_PREDICT",
    "STAGE_SELECT",
    "CertificationResult",
    "NumpySmoothedClassifier",
    "SmoothedClassifier",
    "check_compile",
    "check_labels",
    "stream_seed",
]

class _SmoothingParams(SmoothingEngine):
    """ART's parameter handling shared by both estimators: the smoothing parameters, validated at
    construction, by ``set_params`` (all or nothing) and again at call time; ART's ``scale`` attribute."""

    noise: Noise

    def init_smoothing(self, noise, seed, verbose) -> None:
        self.noise = noise
        self.seed = seed
        self.verbose = verbose
        self.fit_calls = 0
        self.gradient_calls = 0
        self.check_smoothing_params()
        if self.device.type == "cpu":
            tune_cpu_allocator()  # forward passes reuse heap buffers instead of page-faulting (art_smoothing.runtime)

    def check_output_width(self, shape) -> None:
        """Raise a clear ValueError unless the base classifier's outputs ``shape`` hold ``nb_classes`` scores per
        input. Every forward pass is checked (a shape comparison): a model with another width would make every
        vote count silently wrong (votes beyond nb_classes dropped, or one class everywhere for a single-logit
        model)."""
        shape = tuple(shape)
        if len(shape) == 2 and shape[1] == self.nb_classes:
            return
        if len(shape) == 2 and shape[1] == 1:
            raise ValueError(
                f"The base model returns a single score per input but nb_classes={self.nb_classes}: smoothing needs "
                "one score per class (the vote is their argmax). For a binary model with one logit z, return "
                "torch.cat([-z, z], dim=1) (or [0, z]) and use nb_classes=2.")
        raise ValueError(f"The base model returns outputs of shape {shape[1:]} per input but nb_classes="
                         f"{self.nb_classes}: give the model nb_classes outputs (or wrap it with the right nb_classes).")

    def check_smoothing_params(self) -> None:
        """Validate the smoothing parameters (they may have been assigned directly since construction)."""
        if not isinstance(self.noise, Noise):
            raise ValueError(f"noise must be an art_smoothing.noise.Noise (e.g. GaussianNoise(0.25)), got {self.noise!r}.")
        self.sample_size = check_int("sample_size", self.sample_size)
        self.alpha = check_alpha(self.alpha)
        if self.noise.certificate_alpha >= self.alpha:
            raise ValueError(
                f"alpha={self.alpha} must exceed the failure probability the noise's certificate spends "
                f"({self.noise.certificate_alpha}); raise alpha or lower the noise's certificate alpha."
            )
        if self.seed is not None:
            self.seed = check_int("seed", self.seed, minimum=0)
        self.noise.validate_dim(self.input_dim)

    @property
    def scale(self) -> float:
        """ART's attribute: the per-coordinate standard deviation of the noise (``noise.std``).

        Settable (``rs.scale = 0.5`` or ``set_params(scale=0.5)``) where it means what it means in ART's
        ``PyTorchRandomizedSmoothing``, the σ of Gaussian noise: the noise becomes ``GaussianNoise(0.5)``. For
        any other noise a value other than its current std is refused (its parameters are not a std: set a new
        noise instead, e.g. ``set_params(noise=LaplaceNoise(scale=...))``)."""
        noise = self.__dict__.get("noise")
        return noise.std if isinstance(noise, Noise) else self.__dict__.get("_scale_before_noise", 0.1)

    @scale.setter
    def scale(self, value) -> None:
        noise = self.__dict__.get("noise")
        if not isinstance(noise, Noise):
            self.__dict__["_scale_before_noise"] = value  # ART's constructor sets it before the noise exists
            return
        if isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) \
                and math.isclose(float(value), noise.std, rel_tol=1e-9):
            return
        if type(noise) is GaussianNoise:  # ART's meaning of scale: the Gaussian sigma
            self.noise = GaussianNoise(check_positive("scale", value))
            return
        raise ValueError(
            f"scale is ART's Gaussian sigma; {type(noise).__name__}'s parameters are not a standard deviation "
            f"(its std is {noise.std}), so scale cannot be set on its own: pass a new noise instead, e.g. "
            f"set_params(noise={type(noise).__name__}(...)).")

    def set_params(self, **kwargs) -> None:
        """ART's ``set_params``, all or nothing: when a value is rejected the estimator keeps its old ones."""
        saved = dict(self.__dict__)
        ops = list(getattr(self, "preprocessing_operations", []))
        if "noise" in kwargs:  # the noise first: ``scale`` then means the new noise's (or is refused by it)
            kwargs = {"noise": kwargs.pop("noise"), **kwargs}
        try:
            super().set_params(**kwargs)
        except Exception:
            self.__dict__.clear()
            self.__dict__.update(saved)
            if "preprocessing_operations" in saved:
                self.preprocessing_operations[:] = ops  # ART rebuilds this list in place
            raise


class _NumpyPreprocessing(torch.autograd.Function):
    """ART preprocessing that only runs on numpy arrays: forward through ``_apply_preprocessing``,
    backward through ART's ``_apply_preprocessing_gradient`` (each defence's ``estimate_gradient``)."""

    @staticmethod
    def forward(ctx, x, apply, gradient):
        x_np = x.detach().cpu().numpy()
        ctx.gradient, ctx.x_np = gradient, x_np
        out, _ = apply(x_np, y=None, fit=False)
        return torch.as_tensor(np.asarray(out), device=x.device).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        with torch.enable_grad():  # some of ART's backward estimates run autograd themselves
            g = ctx.gradient(ctx.x_np, grad.detach().cpu().numpy())
        return torch.as_tensor(np.asarray(g), device=grad.device).to(grad.dtype), None, None


class SmoothedClassifier(CompileMixin, _SmoothingParams, RandomizedSmoothingMixin, PyTorchClassifier):
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
    :param compile: run the base classifier's forward pass in PREDICT and CERTIFY (fixed-n, sequential and
        exact, and the attacks' vote counts) through ``torch.compile``: ``True``, ``False`` (eager, as before),
        or ``"auto"`` (the default): compile a call that evaluates at least :data:`AUTO_COMPILE_SAMPLES` noisy
        samples, N·(n0 + n) for CERTIFY and N·sample_size for PREDICT, never a small one. A CERTIFY call with a
        Ray backend is decided in the driver on all its inputs and the workers follow (each compiles its own
        copy); ``art_smoothing.evaluate`` with a chunked backend (local chunks or Ray) decides per chunk of
        inputs, so pass True or False there when votes must not depend on the chunking even at rounding ties. The compiled pass holds ART's
        standardisation and the model, with image batches in channels_last (the fastest layout of CPU and
        CUDA convolutions; the model's parameters are not touched); preprocessing defences run before it as
        ART applies them, postprocessing defences after it. The engine keeps batch shapes fixed (at most five
        padded sizes per input shape, :func:`~art_smoothing.engine.core.pass_size`), so a certification
        compiles once per shape; later weight updates are seen. Gradients, EOT passes and training stay eager:
        their shapes vary from call to call and they need the backward graph (a second, longer compilation)
        for a small share of the passes. Compiled kernels round differently from eager ones, so a vote can
        differ from the eager pass where the top two logits tie to within float rounding: the certificate is
        a statement about the model *as it runs* (here compiled), the classifier that answers. Where
        compilation fails (no C compiler, an unsupported operation, an old torch) a one-line RuntimeWarning
        is given and the pass runs eagerly.
    """

    estimator_params = PyTorchClassifier.estimator_params + ["noise", "scale", "sample_size", "alpha", "seed",
                                                             "eot_samples", "compile"]

    def __new__(cls, classifier=None, *args, **kwargs):
        if cls is SmoothedClassifier and classifier is not None and not isinstance(classifier, PyTorchClassifier):
            return NumpySmoothedClassifier(classifier, *args, **kwargs)
        return super().__new__(cls)

    def __init__(self, classifier: PyTorchClassifier, noise: Noise, sample_size: int = 100, alpha: float = 0.001,
                 seed: int | None = None, eot_samples: int = 32, verbose: bool = False, compile: bool | str = "auto"):
        if not isinstance(classifier, PyTorchClassifier):
            raise ValueError("classifier must be an ART classifier (PyTorchClassifier for the full interface).")
        device_type = "gpu" if classifier.device.type == "cuda" else "cpu"
        super().__init__(
            sample_size,
            model=classifier.model,
            loss=classifier.loss,
            input_shape=classifier.input_shape,
            nb_classes=classifier.nb_classes,
            optimizer=classifier.optimizer,
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
        # Run on the wrapped classifier's device exactly (a model on cuda:1 stays there): ART's constructor
        # moves the model to the *current* CUDA device, so put it back where it was.
        self._device = classifier.device
        self._model.to(self._device)
        self._base_classifier = classifier
        self._compiled = CompiledForward()
        self.eot_samples = eot_samples
        self.compile = check_compile(compile)
        self.init_smoothing(noise, seed, verbose)
        self.eot_samples = check_int("eot_samples", self.eot_samples)

    def _check_params(self) -> None:
        super()._check_params()
        if hasattr(self, "noise"):
            self.check_smoothing_params()
            self.eot_samples = check_int("eot_samples", self.eot_samples)
            self.compile = check_compile(self.compile)

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
                                  eot_samples=self.eot_samples, verbose=self.verbose, compile=self.compile)

    @property
    def noise_dtype(self) -> torch.dtype:
        """The dtype noise is drawn in: the model's floating-point dtype (float32 when it has none)."""
        for p in self._model.parameters():
            if p.is_floating_point():
                return p.dtype
        return torch.float32

    def set_training_mode(self, mode: bool) -> None:
        """Put the base model in training (``True``) or evaluation mode."""
        self._model.train(mode=bool(mode))

    def set_eval(self) -> None:
        self._model.train(mode=False)

    def identity_preprocessing(self) -> bool:
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

    # ------------------------------------------------------------------ the base classifier's forward pass
    def preprocess(self, x: torch.Tensor, y: torch.Tensor | None = None, *, fit: bool = False, grad: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The base classifier's preprocessing defences and standardisation, as ART's own ``predict``
        (``fit=False``) or ``fit`` (``fit=True``) apply them, on (already noisy) inputs on the device.

        With ``grad=True`` the result is differentiable in ``x``: torch-native steps directly, numpy-only
        defences through ART's backward estimate (BPDA; for ``fit=True`` the numpy path is not differentiable
        in ``x``, which training does not need). ART's identity standardisation is skipped exactly.

        :return: ``(x_pre, y_pre)`` (``y_pre`` is ``y`` as the defences left it, or None)."""
        if self.identity_preprocessing():
            return x, y
        if self.all_framework_preprocessing:
            return self._apply_preprocessing(x, y, fit=fit, no_grad=not grad)
        if grad and not fit:
            return _NumpyPreprocessing.apply(x, self._apply_preprocessing, self._apply_preprocessing_gradient), y
        # numpy defences: ART can only run them on numpy arrays (some return float64)
        x_np, y_np = self._apply_preprocessing(x.detach().cpu().numpy(), None if y is None else y.cpu().numpy(),
                                               fit=fit)
        y_pre = None if y_np is None else torch.as_tensor(y_np, device=self._device)
        return torch.as_tensor(x_np, device=self._device).to(x.dtype), y_pre

    def model_logits(self, x_pre: torch.Tensor) -> torch.Tensor:
        """The model's outputs on preprocessed inputs (no postprocessing), checked to hold ``nb_classes`` scores.

        Batches keep the strides of the inputs they come from, as ART's ``predict`` does (bit-equal logits). Images
        stored as (N, H, W, 1) and moved to (N, 1, H, W) — scikit-learn's digits among them — look channels_last to
        a convolution, which then runs in that layout (faster on the CPU) and returns channels_last activations; a
        model that cannot take those (``.view`` of a convolution's output) raises, and then gets C-order batches
        from that pass on."""
        if self.__dict__.get("_c_order"):
            x_pre = x_pre.reshape(-1).view(x_pre.shape)
        try:
            out = self._model(x_pre)[-1]
        except RuntimeError:
            c_order = x_pre.reshape(-1).view(x_pre.shape)
            if self.__dict__.get("_c_order") or c_order.stride() == x_pre.stride():
                raise
            self.__dict__["_c_order"] = True
            out = self._model(c_order)[-1]
        self.check_output_width(out.shape)
        return out

    def base_logits(self, x: torch.Tensor, *, grad: bool = False) -> torch.Tensor:
        """Base classifier outputs for (already noisy) inputs on the device: preprocessing defences,
        standardisation and model, as ART's own ``predict`` applies them. Without ``grad`` the
        postprocessing defences run too; with ``grad`` the outputs are differentiable in ``x`` and the
        model's parameters, and postprocessing (which ART gives no backward pass) is left out.

        Without ``grad``, while :attr:`compiling`, standardisation and model run compiled (``compile``)."""
        if not grad and self.compiling:
            out = self._compiled_logits(x)
        else:
            x_pre, _ = self.preprocess(x, grad=grad)
            out = self.model_logits(x_pre)
        if not grad and self.postprocessing_defences:
            post = self._apply_postprocessing(preds=out.detach().cpu().numpy(), fit=False)
            out = torch.as_tensor(post, device=self._device)
        return out

    def base_labels(self, noisy: torch.Tensor) -> torch.Tensor:
        return self.base_logits(noisy).argmax(dim=-1)

    # ------------------------------------------------------------------ gradients (EOT)
    def loss_gradient(self, x, y, training_mode: bool = False, **kwargs):
        """EOT gradient of the *smoothed* classifier's loss, ∇_x −log ḡ_y(x), where ḡ(x) is the mean
        softmax of the base classifier over ``eot_samples`` noisy copies (SmoothAdv's objective; see
        :mod:`art_smoothing.engine.eot` for why not the mean cross-entropy, and for the
        straight-through gradient used with non-additive noise). ART 1.20's randomized-smoothing
        estimators return the clean base model's gradient instead, so ART's attacks against them
        attack the wrong classifier; with this method ART's PGD/FGSM attack the smoothed one.

        Per-input gradients (not divided by the batch size). Numpy in → numpy out; a torch tensor in
        (ART's PyTorch attacks) → a tensor on the same device. Draws come from the estimator's
        gradient stream, fresh for every call.

        :param x: inputs ``(N, *input_shape)``.
        :param y: labels, indices ``(N,)`` or one-hot ``(N, nb_classes)``.
        :param sampling: (kwarg) ART's switch. ``True`` (and the default here) is the smoothed, noise-sampled
            gradient above; ``False`` is the base classifier's own gradient at ``x`` (ART's
            ``PyTorchClassifier.loss_gradient``: its loss, batch-averaged as that loss reduces). ART's
            ``PyTorchRandomizedSmoothing`` defaults to ``False``; here the default attacks the smoothed
            classifier, which is what an attack on it should do.
        :param eot_samples: (kwarg) draws m (default: the constructor's ``eot_samples``).
        :param noise_draws: (kwarg) draws ``(m, *input_shape)`` to reuse (see ``attacks.draw_noise``).
        :param batch_size: (kwarg, default 256) noisy copies per forward pass; memory is bounded by it.
        """
        if not self._sampling(kwargs):
            y = check_and_transform_label_format(check_labels(y, self.nb_classes), nb_classes=self.nb_classes)
            return PyTorchClassifier.loss_gradient(self, x, y, training_mode=training_mode, **kwargs)
        return eot.smoothed_loss_gradient(self, x, y, training_mode=training_mode, **kwargs)

    @staticmethod
    def _sampling(kwargs: dict) -> bool:
        """Pop ART's ``sampling`` keyword (None or missing: the smoothed gradient)."""
        sampling = kwargs.pop("sampling", None)
        return True if sampling is None else check_bool("sampling", sampling)

    def class_gradient(self, x, label=None, training_mode: bool = False, **kwargs):
        """EOT gradients of the smoothed log-probabilities log ḡ_c(x) (the smoothed classifier's class
        outputs), shape ``(N, nb_classes, *input_shape)`` or ``(N, 1, *input_shape)``; keyword
        arguments as in :meth:`loss_gradient` (``sampling=False``: the base classifier's class gradients;
        ART's ``PyTorchRandomizedSmoothing`` has none)."""
        if not self._sampling(kwargs):
            return PyTorchClassifier.class_gradient(self, x, label=label, training_mode=training_mode, **kwargs)
        return eot.smoothed_class_gradient(self, x, label, training_mode=training_mode, **kwargs)

    def compute_loss(self, x, y, reduction: str = "none", **kwargs):
        """Monte Carlo smoothed loss −log ḡ_y(x) over ``eot_samples`` draws (``reduction``: none/mean/sum)."""
        return eot.smoothed_loss(self, x, y, reduction=reduction, **kwargs)

    def fit(self, x: np.ndarray, y: np.ndarray, batch_size: int = 128, nb_epochs: int = 10, training_mode: bool = True,
            drop_last: bool = False, scheduler=None, verbose: bool | None = None, **kwargs) -> None:
        """Train the base model with noise augmentation under this estimator's noise (Cohen et al.; the
        same objective as :class:`art_smoothing.training.NoiseAugmentationTrainer`).

        The keywords mean what they mean in ART's ``PyTorchRandomizedSmoothing.fit``; the difference is where
        the noise goes: here on the raw input, before preprocessing, as in certification.

        :param training_mode: the model's mode during the steps (it is in evaluation mode afterwards).
        :param drop_last: drop the last incomplete batch of every epoch.
        :param scheduler: a torch LR scheduler stepped once per epoch.
        :param verbose: a progress bar over epochs (default: the estimator's ``verbose``).
        """
        if kwargs:
            logger.warning("SmoothedClassifier.fit ignores the arguments %s.", sorted(kwargs))
        fit_under_noise(self, x, y, lambda xb, yb, z: augmentation_loss(self, xb, yb, z), m=1, nb_epochs=nb_epochs,
                        batch_size=batch_size, scheduler=scheduler, training_mode=training_mode, drop_last=drop_last,
                        verbose=self.verbose if verbose is None else bool(verbose), desc="augment")


class NumpySmoothedClassifier(_SmoothingParams, RandomizedSmoothingMixin, ClassifierMixin, BaseEstimator):
    """Smoothing of any ART classifier through its numpy ``predict`` (e.g. scikit-learn models).

    Noise is drawn with torch on the CPU and handed to the base classifier as numpy arrays.
    Supported: ``predict``, ``certify``/``certify_detailed``, ``fit`` (noise augmentation through the
    base classifier's ``fit``, one call per epoch). Not supported: gradients (use a
    ``PyTorchClassifier`` base for attacks and robust training).
    """

    estimator_params = ClassifierMixin.estimator_params + BaseEstimator.estimator_params + [
        "noise", "scale", "sample_size", "alpha", "seed"]

    def __init__(self, classifier, noise: Noise, sample_size: int = 100, alpha: float = 0.001,
                 seed: int | None = None, verbose: bool = False, eot_samples: int = 32, compile: bool | str = "auto"):
        # eot_samples and compile are SmoothedClassifier's: accepted (and checked) so that code written for a
        # PyTorch base runs unchanged, without effect here (no gradients, no torch model to compile)
        check_int("eot_samples", eot_samples, 1)
        check_compile(compile)
        if not isinstance(classifier, ClassifierMixin):
            raise ValueError(f"classifier must be an ART classifier (ClassifierMixin), got {type(classifier).__name__}.")
        if classifier.input_shape is None:
            raise ValueError("The base classifier has no input_shape; set it before smoothing.")
        self._base_classifier = classifier
        super().__init__(
            sample_size, model=classifier.model, clip_values=classifier.clip_values,
            scale=getattr(noise, "std", 0.1) if isinstance(noise, Noise) else 0.1, alpha=alpha,
        )
        self.nb_classes = classifier.nb_classes
        self.init_smoothing(noise, seed, verbose)

    def _check_params(self) -> None:
        super()._check_params()
        if "noise" in self.__dict__:  # BaseEstimator's constructor checks before the noise is set
            self.check_smoothing_params()

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self._base_classifier.input_shape)

    @property
    def base_classifier(self):
        return self._base_classifier

    #: noise is drawn with torch on the CPU and handed to the base classifier as numpy arrays
    device = torch.device("cpu")
    noise_dtype = torch.float32

    def base_labels(self, noisy: torch.Tensor) -> torch.Tensor:
        out = np.asarray(self._base_classifier.predict(noisy.cpu().numpy()))
        self.check_output_width(out.shape)
        return torch.as_tensor(out.argmax(axis=-1), dtype=torch.int64)

    def fit(self, x: np.ndarray, y: np.ndarray, batch_size: int = 128, nb_epochs: int = 10, **kwargs) -> None:
        """Noise augmentation: every epoch the base classifier is fit once on freshly noised inputs.

        A base model that refits from scratch on every ``fit`` call (most scikit-learn estimators, e.g.
        ``LogisticRegression``) keeps only the last epoch's draw; with those, enlarge the data instead
        (e.g. ``np.repeat`` the inputs) or use one that learns incrementally (``warm_start=True``)."""
        x = self.check_x(x)
        y = check_and_transform_label_format(check_labels(y, self.nb_classes), nb_classes=self.nb_classes)
        if len(y) != len(x):
            raise ValueError(f"x has {len(x)} samples but y has {len(y)} labels.")
        nb_epochs = check_int("nb_epochs", nb_epochs)
        seed = self.call_seed()
        call = self.next_call(Stage.FIT)
        accepted = inspect.signature(self._base_classifier.fit).parameters
        fit_kwargs = dict(kwargs)
        if "batch_size" in accepted:
            fit_kwargs["batch_size"] = batch_size
        if "nb_epochs" in accepted:
            fit_kwargs["nb_epochs"] = 1
        for epoch in range(nb_epochs):
            z = self.sample_noise(len(x), self.generator(seed, Stage.FIT, call, epoch))
            x_noisy = self.noise.perturb(torch.as_tensor(x), z).numpy()
            self._base_classifier.fit(x_noisy, y, **fit_kwargs)

    def get_activations(self, *args, **kwargs):
        raise NotImplementedError("Activations are not available through a smoothed numpy classifier.")

    def clone_for_refitting(self):
        raise NotImplementedError("clone_for_refitting needs a PyTorchClassifier base classifier; clone the base "
                                  "classifier yourself and wrap it in a new SmoothedClassifier.")

    def compute_loss(self, *args, **kwargs):
        raise NotImplementedError("Losses/gradients need a PyTorchClassifier base classifier.")
