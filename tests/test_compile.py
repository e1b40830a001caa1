"""``compile``: the base classifier's forward pass through ``torch.compile`` in PREDICT and CERTIFY.

One tiny digits CNN is compiled once for the whole module (``run``): its certification uses two padded pass
shapes, and every later call with these shapes — another partition of the inputs, PREDICT, sequential
CERTIFY, weight updates — must not compile again. Votes are compared with the eager path's under the tie
rule: a vote may differ only where the top two eager logits tie to within float rounding.
"""

import ast
import json
import os
import re
import subprocess
import sys
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch._dynamo.utils import counters

from art_smoothing import SmoothedClassifier
from art_smoothing.cli import cli
from art_smoothing.cli.build import make_smoothed
from art_smoothing.distributed.worker import EstimatorPayload
from art_smoothing.engine.core import PAD_LEVELS, pass_size
from art_smoothing.engine.streams import NoiseBlocks, Stage
from art_smoothing.estimator import AUTO_COMPILE_SAMPLES, NumpySmoothedClassifier
from art_smoothing.models import DigitsCNN, make_classifier
from art_smoothing.noise import GaussianNoise

SEED, N, N0, BATCH = 5, 100, 12, 64
#: the module's certification: selection passes of 12 rows and estimation passes of 64 + 36 rows
PASSES = (N0, BATCH, N - BATCH)
#: sequential budget: looks at 32, 48, 72, 108, 162 and 208 draws
SEQ_N = 208


def graphs() -> int:
    """Graphs dynamo has compiled in this process so far."""
    return counters["stats"]["unique_graphs"]


def near_ties(logits: torch.Tensor) -> torch.Tensor:
    """Rows whose top two logits are equal to within float rounding (relative 1e-5)."""
    top = logits.topk(2, dim=1).values
    return (top[:, 0] - top[:, 1]) <= 1e-5 * (1.0 + logits.abs().max(dim=1).values)


def tie_counts(estimator, x: np.ndarray, stage: Stage, num: int) -> np.ndarray:
    """Per input, the near ties among the eager logits of its ``num`` draws of stream ``(SEED, stage)``."""
    z = NoiseBlocks(estimator, stage, SEED, num).block(0)
    assert z.shape[0] == num  # one block holds them all
    with torch.no_grad():
        return np.array([int(near_ties(estimator.base_logits(estimator.noise.perturb(torch.as_tensor(xi[None]), z)))
                                   .sum()) for xi in x])


def assert_votes_match(compiled: np.ndarray, eager: np.ndarray, ties: np.ndarray) -> None:
    """Each near tie can move one vote from one class to another (changing two counts by one)."""
    assert np.array_equal(compiled.sum(axis=1), eager.sum(axis=1))
    assert np.all(np.abs(compiled - eager).sum(axis=1) <= 2 * ties), (compiled, eager, ties)


@pytest.fixture(scope="module")
def run(digits):
    """A compiled certification (standardisation inside the compiled graph) and an eager twin sharing the model."""
    torch.manual_seed(0)
    model = DigitsCNN(width=4)
    clf = make_classifier(model, (1, 8, 8), 10, preprocessing=(0.4, 0.3))
    kwargs = {"noise": GaussianNoise(0.5), "sample_size": N0, "seed": SEED}
    est = SmoothedClassifier(clf, compile=True, **kwargs)
    eager = SmoothedClassifier(clf, compile=False, **kwargs)
    x = digits.x_test[:4]
    before = graphs()
    result = est.certify_detailed(x, N, batch_size=BATCH)
    return SimpleNamespace(est=est, eager=eager, clf=clf, x=x, y=digits.y_test[:4], result=result,
                           compiled=graphs() - before)


def test_votes_equal_eager_except_near_ties(run):
    eager = run.eager.certify_detailed(run.x, N, batch_size=BATCH)
    assert_votes_match(run.result.counts_selection, eager.counts_selection, tie_counts(run.eager, run.x, Stage.SELECT, N0))
    assert_votes_match(run.result.counts, eager.counts, tie_counts(run.eager, run.x, Stage.ESTIMATE, N))
    # sample by sample on 1024 noisy digits, in passes of a compiled shape
    gen = torch.Generator().manual_seed(1)
    noisy = torch.as_tensor(run.x).repeat(256, 1, 1, 1)[:1024] + 0.5 * torch.randn((1024, 1, 8, 8), generator=gen)
    with torch.no_grad(), run.est.compile_call(0):
        assert run.est.compiling
        compiled = torch.cat([run.est.base_logits(b) for b in noisy.split(BATCH)])
    with torch.no_grad():
        eager_logits = run.eager.base_logits(noisy)
    assert float((compiled - eager_logits).abs().max()) < 1e-4
    differ = compiled.argmax(1) != eager_logits.argmax(1)
    assert not bool((differ & ~near_ties(eager_logits)).any())


def test_one_compilation_per_shape(run):
    full = min(BATCH, run.est.block_size())
    shapes = {pass_size(rows, full) for rows in PASSES}
    assert shapes == {16, 64}  # without padding: 12, 36 and 64 rows
    assert run.compiled == len(shapes)
    before = graphs()
    # another partition of the inputs gives the same votes, bit for bit, and compiles nothing
    parts = [run.est.certify_detailed(run.x[a:b], N, batch_size=BATCH) for a, b in ((0, 1), (1, 4))]
    for field in ("counts", "counts_selection", "radius"):
        assert np.array_equal(np.concatenate([getattr(p, field) for p in parts]), getattr(run.result, field))
    run.est.predict(run.x, batch_size=BATCH)  # passes of 12 draws: the 16-row shape
    assert graphs() == before
    # a sequential run's passes (looks at 32, 48, 72, … draws), as the eager twin makes them
    rows = []
    hook = run.eager.model.register_forward_pre_hook(lambda _module, args: rows.append(args[0].shape[0]))
    try:
        eager_seq = run.eager.certify_detailed(run.x, SEQ_N, batch_size=BATCH, sequential=True, radius=0.1)
    finally:
        hook.remove()
    new = {pass_size(r, full) for r in rows} - shapes
    assert new and len(shapes | new) <= PAD_LEVELS  # the looks use padded sizes the fixed-n run did not ...
    seq = run.est.certify_detailed(run.x, SEQ_N, batch_size=BATCH, sequential=True, radius=0.1)
    assert graphs() - before == len(new)  # ... each compiled once
    before = graphs()
    parts = [run.est.certify_detailed(run.x[a:b], SEQ_N, batch_size=BATCH, sequential=True, radius=0.1)
             for a, b in ((0, 3), (3, 4))]
    assert graphs() == before  # another partition: nothing new to compile, the same draws and decisions
    for field in ("counts", "n_used", "radius"):
        assert np.array_equal(np.concatenate([getattr(p, field) for p in parts]), getattr(seq, field))
    assert np.array_equal(seq.n_used, eager_seq.n_used)
    # an input's counts hold its first n_used draws: ties among all the budget's draws bound the differences
    assert_votes_match(seq.counts, eager_seq.counts, tie_counts(run.eager, run.x, Stage.ESTIMATE, SEQ_N))


def test_compile_values_set_params_and_bad_values(run, digits):
    assert SmoothedClassifier(run.clf, GaussianNoise(0.5)).compile == "auto"  # the default
    est = SmoothedClassifier(run.clf, GaussianNoise(0.5), compile=False)
    assert est.get_params()["compile"] is False
    for value, stored in ((True, True), ("auto", "auto"), (np.bool_(False), False)):
        est.set_params(compile=value)
        assert est.compile is stored
    for bad in ("yes", "AUTO", 1, None, 2.0):
        with pytest.raises(ValueError, match=r"compile must be True, False or 'auto'"):
            est.set_params(compile=bad, alpha=0.01)
        assert est.compile is False and est.alpha == 0.001  # all or nothing
        with pytest.raises(ValueError, match=r"compile must be True, False or 'auto'"):
            SmoothedClassifier(run.clf, GaussianNoise(0.5), compile=bad)
    est.compile = "on"  # assigned directly: refused when used
    with pytest.raises(ValueError, match=r"compile must be"):
        est.certify(run.x, n=10)
    clone = SmoothedClassifier(run.clf, GaussianNoise(0.5), compile=True).clone_for_refitting()
    assert clone.compile is True


def test_auto_rule_is_decided_once_per_request(run, digits):
    est = SmoothedClassifier(run.clf, GaussianNoise(0.5), sample_size=N0, seed=SEED)
    assert est.compile_for(AUTO_COMPILE_SAMPLES - 1) is False and est.compile_for(AUTO_COMPILE_SAMPLES) is True
    before = graphs()
    small = est.certify_detailed(run.x, N, batch_size=BATCH)  # 448 samples: eager, no padding
    assert graphs() == before and not est.compiling
    assert np.array_equal(small.counts, run.eager.certify_detailed(run.x, N, batch_size=BATCH).counts)

    seen = []

    class Recorder:  # a backend: what a Ray driver would ship to its workers
        def certify(self, estimator, x, plan):
            seen.append(EstimatorPayload.from_estimator(estimator).smoothing_kwargs["compile"])
            return small

        def evaluate(self, *args, **kwargs):
            raise NotImplementedError

    n_big = AUTO_COMPILE_SAMPLES // len(run.x)  # the whole request reaches the threshold, no input alone does
    est.certify_detailed(run.x, n_big, batch_size=BATCH, backend=Recorder())
    est.certify_detailed(run.x[:1], n_big, batch_size=BATCH, backend=Recorder())
    assert seen == [True, False]
    assert EstimatorPayload.from_estimator(est).smoothing_kwargs["compile"] == "auto"  # outside a call
    with est.compile_call(AUTO_COMPILE_SAMPLES):
        with est.compile_call(0):  # an enclosing call's decision stands
            assert est.compile_in_effect is True
        payload = EstimatorPayload.from_estimator(est)
    assert payload.build("cpu").compile is True
    assert est.compile_in_effect == "auto"


def test_fallback_when_compilation_fails(run, monkeypatch):
    class Unsupported(RuntimeError):
        pass

    def broken_compile(fn, **kwargs):
        def call(*args, **kw):  # torch.compile fails lazily, at the first call
            raise Unsupported("this backend cannot compile the model\nsecond line of the error")
        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    est = SmoothedClassifier(run.clf, GaussianNoise(0.5), sample_size=N0, seed=SEED, compile=True)
    with pytest.warns(RuntimeWarning) as record:
        result = est.certify_detailed(run.x, N, batch_size=BATCH)
    messages = [str(w.message) for w in record if "compile" in str(w.message)]
    assert messages == [("compile: torch.compile of the base classifier failed (Unsupported: this backend cannot "
                         "compile the model); running it eagerly.")]
    assert not est.compiling and est.compile is True
    assert est.compile_failure == "Unsupported: this backend cannot compile the model"
    eager = run.eager.certify_detailed(run.x, N, batch_size=BATCH)
    assert_votes_match(result.counts, eager.counts, tie_counts(run.eager, run.x, Stage.ESTIMATE, N))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once: the estimator stays eager
        again = est.certify_detailed(run.x, N, batch_size=BATCH)
    assert np.array_equal(again.counts, eager.counts)


class ViewNet(torch.nn.Module):
    """The common pattern ``conv → .view(N, -1)``: a channels_last activation cannot be viewed flat."""

    def __init__(self, channels: int = 3):
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, 4, 3, padding=1)
        self.linear = torch.nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        return self.linear(h.view(h.size(0), -1))


def test_a_model_that_cannot_take_channels_last_compiles_in_its_own_layout():
    torch.manual_seed(0)
    clf = make_classifier(ViewNet(), (3, 8, 8), 10)
    x = np.random.default_rng(0).uniform(0, 1, (3, 3, 8, 8)).astype(np.float32)
    with pytest.raises(RuntimeError, match="view"):  # the eager model itself refuses channels_last batches
        clf.model(torch.as_tensor(x).contiguous(memory_format=torch.channels_last))
    est = SmoothedClassifier(clf, GaussianNoise(0.5), sample_size=N0, seed=SEED, compile=True)
    before = graphs()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback warning: it compiles
        result = est.certify_detailed(x, N, batch_size=BATCH)
    assert graphs() > before and est.compile_failure is None
    eager = SmoothedClassifier(clf, GaussianNoise(0.5), sample_size=N0, seed=SEED, compile=False)
    assert_votes_match(result.counts, eager.certify_detailed(x, N, batch_size=BATCH).counts,
                       tie_counts(eager, x, Stage.ESTIMATE, N))


def test_inputs_with_channels_last_like_strides_reach_the_model_in_c_order():
    """(N, 8, 8, 1) images moved to (N, 1, 8, 8), as scikit-learn's digits: NumPy calls them C-contiguous, torch's
    convolution sees channels_last strides and the model's ``.view`` fails (under ART's own predict too); the
    estimator then hands the model C-order batches."""
    torch.manual_seed(0)
    clf = make_classifier(ViewNet(channels=1), (1, 8, 8), 10)
    x = np.random.default_rng(0).uniform(0, 1, (3, 8, 8, 1)).astype(np.float32).transpose(0, 3, 1, 2)
    assert x.flags["C_CONTIGUOUS"] and x.strides[1] == 4  # the size-1 axis carries the element stride
    with pytest.raises(RuntimeError, match="view"):
        clf.model(torch.as_tensor(x))
    est = SmoothedClassifier(clf, GaussianNoise(0.5), sample_size=N0, seed=SEED, compile=False)
    result = est.certify_detailed(x, N, batch_size=BATCH)
    assert result.counts.sum() == 3 * N
    canonical = np.array(x.tolist(), dtype=np.float32)  # built anew: C-order strides on every axis
    assert canonical.strides[1] == 256
    assert np.array_equal(est.predict(x, batch_size=BATCH), est.predict(canonical, batch_size=BATCH))


def test_cli_reports_a_compile_fallback(monkeypatch, tmp_path):
    """The CLI silences Python warnings: a fallback to eager is a WARNING line above the footer and
    ``compile_fallback`` in the summary."""
    def broken_compile(fn, **kwargs):
        def call(*args, **kw):
            raise RuntimeError("no compiler here")
        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    tiny = ["--limit", "2", "--n", "40", "--n0", "10", "--epochs", "1", "--train-limit", "100", "--seed", "2",
            "--quiet", "--compile"]
    result = CliRunner().invoke(cli, ["certify", *tiny, "--out", str(tmp_path / "out")],
                                env={"ART_SMOOTHING_CACHE": str(tmp_path / "cache")}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "WARNING: --compile: torch.compile of the model failed (RuntimeError: no compiler here)" in result.stdout
    with open(tmp_path / "out" / "summary.json", encoding="utf-8") as fh:
        summary = json.load(fh)
    assert summary["compile_fallback"] == ["RuntimeError: no compiler here"] and summary["params"]["compile"] is True


#: run in a fresh process: no C++ compiler (CXX), an empty kernel cache, compile=True PREDICT vs eager PREDICT
NO_COMPILER = """
import warnings
import numpy as np
import torch
from art_smoothing import SmoothedClassifier
from art_smoothing.models import DigitsCNN, make_classifier
from art_smoothing.noise import GaussianNoise

torch.manual_seed(0)
clf = make_classifier(DigitsCNN(width=4), (1, 8, 8), 10)
x = np.random.default_rng(0).uniform(0, 1, (3, 1, 8, 8)).astype(np.float32)
est = SmoothedClassifier(clf, GaussianNoise(0.5), sample_size=12, seed=1, compile=True)
with warnings.catch_warnings(record=True) as record:
    warnings.simplefilter("always")
    compiled = est.predict(x, batch_size=64)
    again = est.predict(x, batch_size=64)
eager = SmoothedClassifier(clf, GaussianNoise(0.5), sample_size=12, seed=1, compile=False).predict(x, batch_size=64)
assert np.array_equal(compiled, eager) and np.array_equal(again, eager) and not est.compiling
print("WARNINGS", [str(w.message) for w in record if w.category is RuntimeWarning])
"""


@pytest.mark.slow
def test_fallback_without_a_c_compiler(tmp_path):
    """The real failure, in a fresh process: inductor finds no C++ compiler (and no cached kernel to reuse)."""
    env = {**os.environ, "CXX": str(tmp_path / "no-such-c++"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}
    proc = subprocess.run([sys.executable, "-c", NO_COMPILER], env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("WARNINGS"))
    warned = ast.literal_eval(line[len("WARNINGS "):])
    assert len(warned) == 1, warned  # once, however many passes fell back
    assert re.fullmatch(r"compile: torch\.compile of the base classifier failed \(.*C\+\+ compiler.*\); running it "
                        r"eagerly\.", warned[0]), warned[0]


def test_numpy_classifiers_are_unaffected(digits):
    from art.estimators.classification import SklearnClassifier
    from sklearn.linear_model import LogisticRegression

    x, y = digits.x_train[:200].reshape(200, -1), digits.y_train[:200]
    clf = SklearnClassifier(LogisticRegression(max_iter=200).fit(x, y), clip_values=(0.0, 1.0))
    before = graphs()
    sm = SmoothedClassifier(clf, GaussianNoise(0.25), sample_size=20, seed=0, compile=True)
    assert isinstance(sm, NumpySmoothedClassifier)
    pred, _ = sm.certify(x[:3], n=100, batch_size=50)
    assert pred.shape == (3,) and graphs() == before
    # the PyTorch estimator's keywords are checked here too, and a misspelt one is not swallowed
    with pytest.raises(ValueError, match="compile must be"):
        SmoothedClassifier(clf, GaussianNoise(0.25), compile="bogus")
    with pytest.raises(ValueError, match="eot_samples"):
        SmoothedClassifier(clf, GaussianNoise(0.25), eot_samples=-5)
    with pytest.raises(TypeError, match="sampel_size"):
        SmoothedClassifier(clf, GaussianNoise(0.25), sampel_size=5)


def test_cli_option_reaches_the_classifier(run):
    params = {"n0": N0, "alpha": 0.001, "seed": 0, "quiet": True}
    assert make_smoothed(run.clf, GaussianNoise(0.5), params).compile == "auto"  # option not given
    for value in (True, False):
        assert make_smoothed(run.clf, GaussianNoise(0.5), {**params, "compile": value}).compile is value
    for command in ("certify", "compare", "evaluate"):
        out = CliRunner().invoke(cli, [command, "--help"]).output
        assert "--compile / --no-compile" in out, command


@pytest.mark.slow
def test_cli_certify_with_compile_matches_no_compile(tmp_path):
    """A real run: the bundled model (trained briefly) certified compiled and eagerly gives the same files."""
    tiny = ["--limit", "4", "--n", "60", "--n0", "20", "--epochs", "1", "--train-limit", "200", "--batch-size", "64",
            "--seed", "2", "--quiet"]
    env = {"ART_SMOOTHING_CACHE": str(tmp_path / "cache")}
    outs = {}
    for flag in ("--no-compile", "--compile"):  # the model is trained (and cached) by the first run
        out = tmp_path / flag.strip("-")
        before = graphs()
        result = CliRunner().invoke(cli, ["certify", *tiny, flag, "--out", str(out)], env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert (graphs() > before) is (flag == "--compile")
        with open(out / "summary.json", encoding="utf-8") as fh:
            assert json.load(fh)["params"]["compile"] is (flag == "--compile")
        with open(out / "certify.csv", encoding="utf-8") as fh:
            outs[flag] = fh.read()
    assert outs["--compile"] == outs["--no-compile"]


@pytest.mark.slow
def test_ray_workers_compile_their_own_copy(run):
    """compile=True with two Ray workers gives the local compiled result bit for bit."""
    ray = pytest.importorskip("ray")
    from art_smoothing.distributed import RayBackend

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, logging_level="WARNING")
    try:
        with RayBackend(num_workers=2, chunk_size=2, progress=False) as backend:
            remote = run.est.certify_detailed(run.x, N, batch_size=BATCH, backend=backend)
            stats = backend.worker_stats()
    finally:
        ray.shutdown()
    assert len({s["pid"] for s in stats}) == 2
    for field in ("counts", "counts_selection", "radius", "prediction"):
        assert np.array_equal(getattr(remote, field), getattr(run.result, field))


def test_weight_updates_after_compiling_are_seen(run, digits):
    """Runs last: trains the shared model (eagerly) after the compiled certification."""
    x = torch.as_tensor(run.x[:1]).repeat(BATCH, 1, 1, 1) + 0.3 * torch.randn((BATCH, 1, 8, 8))  # a compiled shape
    before_graphs = graphs()
    with torch.no_grad(), run.est.compile_call(0):
        before = run.est.base_logits(x)
    run.est.fit(digits.x_train[:128], digits.y_train[:128], nb_epochs=2, batch_size=32)
    with torch.no_grad(), run.est.compile_call(0):
        after = run.est.base_logits(x)
        eager_after = run.eager.base_logits(x)
    assert not torch.allclose(before, after)
    assert torch.allclose(after, eager_after, atol=1e-5)
    assert graphs() == before_graphs  # parameters are inputs of the compiled graph: no recompilation
    # ART's own methods keep working on the shared model
    assert run.clf.predict(run.x).shape == (len(run.x), 10)
    grad = run.est.loss_gradient(run.x[:2], run.y[:2], eot_samples=8)
    assert grad.shape == run.x[:2].shape and np.all(np.isfinite(grad))
