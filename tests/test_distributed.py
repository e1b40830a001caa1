"""The Ray backend against the single-process path: bit-identical results for any number of workers
and any chunking, a worker killed mid-task, resuming from per-input results, seed handling, validation.

One local Ray (2 CPUs, no GPU so that every result is comparable with the CPU reference) serves the
whole module and is shut down at its end. Workers run one torch thread each; the local reference runs
with one thread too (the documented condition for bit-identity)."""

import itertools
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import ray
import torch
from torch import nn

from art_smoothing import SmoothedClassifier, evaluate
from art_smoothing.distributed import DifferentRunError, LocalBackend, RayBackend
from art_smoothing.models import DigitsCNN, make_classifier
from art_smoothing.noise import GaussianNoise, UniformNoise

N_INPUTS, N0, N, BATCH = 12, 16, 64, 24
FIELDS = ("prediction", "radius", "p_a_lower", "p_b_upper", "counts", "counts_selection")


class Sabotaged(nn.Module):
    """A digits CNN that can kill the Ray worker process running it (SIGKILL, as the OOM killer would)
    on its ``kill_at``-th forward pass there — once per marker file, across restarts — or refuse to run
    at all (``forbid``). Plain attributes, not weights: the model hash used for resuming ignores them."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.driver_pid = os.getpid()
        self.kill_marker: str | None = None
        self.kill_at = 1
        self.forbid = False
        self.calls, self.calls_pid = 0, os.getpid()

    def forward(self, x):
        if self.forbid:
            raise RuntimeError("forward pass on a resumed run: results were recomputed")
        if self.calls_pid != os.getpid():  # count this process's passes only (not the driver's training)
            self.calls, self.calls_pid = 0, os.getpid()
        self.calls += 1
        if self.kill_marker and os.getpid() != self.driver_pid and self.calls >= self.kill_at:
            try:
                os.close(os.open(self.kill_marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        return self.inner(x)


#: the driver's forward passes of :class:`Interrupting` so far, and the pass that raises (None: never)
INTERRUPT = {"calls": 0, "at": None}


class Interrupting(nn.Module):
    """A digits CNN that raises KeyboardInterrupt (as Ctrl-C does) on the driver's ``INTERRUPT["at"]``-th forward
    pass; never in a Ray worker."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.driver_pid = os.getpid()

    def forward(self, x):
        if os.getpid() == self.driver_pid:
            INTERRUPT["calls"] += 1
            if INTERRUPT["at"] is not None and INTERRUPT["calls"] >= INTERRUPT["at"]:
                raise KeyboardInterrupt
        return self.inner(x)


def interruptible_digits():
    """``--model tests.test_distributed:interruptible_digits`` (weights: the ``setup`` model's state dict)."""
    return Interrupting(DigitsCNN(width=8))


@pytest.fixture(scope="module")
def ray_local():
    if ray.is_initialized():
        ray.shutdown()
    # The model class lives in this test module: ship it by value so workers need not import tests/.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def setup(digits):
    """A briefly trained digits CNN (so predictions and radii vary) and a few test inputs."""
    torch.manual_seed(0)
    model = Sabotaged(DigitsCNN(width=8))
    base = make_classifier(model, (1, 8, 8), 10, preprocessing=(0.1, 0.9))
    base.fit(digits.x_train[:600], digits.y_train[:600], nb_epochs=3, batch_size=64, verbose=False)
    return model, base, digits.x_test[:N_INPUTS], digits.y_test[:N_INPUTS]


def one_thread(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` with one torch thread, as the workers run."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn(*args, **kwargs)
    finally:
        torch.set_num_threads(old)


def assert_same(result, ref):
    for f in FIELDS:
        a, b = getattr(result, f), getattr(ref, f)
        assert a.dtype == b.dtype and a.shape == b.shape, f
        np.testing.assert_array_equal(a, b, err_msg=f)
    assert result.summary() == ref.summary()


CASES = {
    "gaussian-binary": {"noise": GaussianNoise(0.25), "kwargs": {}},
    "uniform-box-l1-multiclass": {"noise": UniformNoise(0.5), "kwargs": {"form": "multiclass", "norm": 1}},
}


@pytest.fixture(scope="module")
def references(setup):
    """Single-process results, whole data set in one call."""
    _, base, x, _ = setup
    out = {}
    for name, case in CASES.items():
        sm = SmoothedClassifier(base, case["noise"], sample_size=N0, seed=7)
        out[name] = one_thread(sm.certify_detailed, x, N, batch_size=BATCH, **case["kwargs"])
    return out


def smoothed_for(setup, case="gaussian-binary", seed=7):
    return SmoothedClassifier(setup[1], CASES[case]["noise"], sample_size=N0, seed=seed)


# ---------------------------------------------------------------------- no Ray needed
def test_import_does_not_import_ray():
    code = "import sys, art_smoothing, art_smoothing.distributed; assert 'ray' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(os.path.dirname(__file__)))


def test_bad_backend_and_options_raise_value_error(setup):
    sm, x = smoothed_for(setup), setup[2]
    with pytest.raises(ValueError, match="backend"):
        sm.certify(x, N, backend="spark")
    with pytest.raises(ValueError, match="backend"):
        sm.certify_detailed(x, N, backend=None)
    for bad in ({"num_workers": 0}, {"chunk_size": -1}, {"cpus_per_worker": 0}, {"max_retries": -2},
                {"inflight": 0}, {"use_gpus": "yes"}, {"num_threads": 1.5}):
        with pytest.raises(ValueError):
            RayBackend(**bad)
    with pytest.raises(ValueError, match="deterministic"):
        sm.certify_detailed(x, N, backend="ray", deterministic=True)
    with pytest.raises(ValueError, match="n must"):  # the estimator's own checks run first
        sm.certify(x, 0, backend="ray")


@pytest.mark.parametrize("case", list(CASES))
def test_local_path_independent_of_input_batching(setup, references, case):
    """The single-process path itself: certifying one input at a time or in uneven slices gives the
    result of one call on the whole set."""
    sm, x = smoothed_for(setup, case), setup[2]
    kw = CASES[case]["kwargs"]
    for sizes in ([1] * N_INPUTS, [5, 2, 5]):
        bounds = np.cumsum([0, *sizes])
        parts = [one_thread(sm.certify_detailed, x[a:b], N, batch_size=BATCH, **kw)
                 for a, b in itertools.pairwise(bounds)]
        for f in FIELDS:
            np.testing.assert_array_equal(np.concatenate([getattr(p, f) for p in parts]),
                                          getattr(references[case], f), err_msg=f)


def test_votes_agree_across_forward_batch_sizes(setup, references):
    """Not guaranteed (kernels may round a row differently at another batch size, flipping a vote only
    at an exact tie), but holds for this model; a failure here means the caveat bites on this machine."""
    sm, x = smoothed_for(setup), setup[2]
    other = one_thread(sm.certify_detailed, x, N, batch_size=64)
    np.testing.assert_array_equal(other.counts, references["gaussian-binary"].counts)


def test_local_backend_resumes_from_whole_chunks_only(setup, tmp_path):
    """LocalBackend: certify equals the single-process path; an evaluation whose store lost the end of a chunk
    (a crash mid-write) recomputes that whole chunk, so the resumed result equals the uninterrupted one; the
    chunk size is the run's (reused when not given, refused when different); a finished run needs no model."""
    from art_smoothing.distributed.chunked import fixed_chunks

    chunks = fixed_chunks([2, 3, 5, 6, 7, 8], 4)  # by index: the chunks of an uninterrupted run, less what is done
    assert [c.tolist() for c in chunks] == [[2, 3], [5, 6, 7], [8]]
    model, base, x, y = setup
    sm = smoothed_for(setup)
    assert_same(one_thread(sm.certify_detailed, x, N, batch_size=BATCH,
                           backend=LocalBackend(output_dir=tmp_path / "c", chunk_size=5, progress=False)),
                one_thread(sm.certify_detailed, x, N, batch_size=BATCH))

    def fresh():
        return SmoothedClassifier(base, GaussianNoise(0.25), sample_size=N0, seed=7, eot_samples=8)

    kw = {"norm": 2, "n": N, "batch_size": BATCH, "search_steps": 3, "attack": {"max_iter": 4}}
    ref = one_thread(evaluate, fresh(), x, y, backend=LocalBackend(chunk_size=5, progress=False), **kw).to_dict()
    out = tmp_path / "e"
    backend = LocalBackend(output_dir=out, chunk_size=5, progress=False)
    assert one_thread(evaluate, fresh(), x, y, backend=backend, **kw).to_dict() == ref
    assert backend.saved() == (N_INPUTS, N_INPUTS)
    jsonl = out / "evaluate.jsonl"
    lines = jsonl.read_text().splitlines()
    jsonl.write_text("".join(line + "\n" for line in lines[:7]) + lines[7][:20])  # chunk 1 (inputs 5-9) cut short
    backend = LocalBackend(output_dir=out, progress=False)  # chunk size: the run's
    assert one_thread(evaluate, fresh(), x, y, backend=backend, **kw).to_dict() == ref
    indices = [json.loads(line)["index"] for line in jsonl.read_text().splitlines()]
    assert indices == [*range(7), *range(5, N_INPUTS)]  # the whole of chunk 1 again, chunk 0 not
    with pytest.raises(DifferentRunError, match="chunk_size"):
        evaluate(fresh(), x, y, backend=LocalBackend(output_dir=out, chunk_size=4, progress=False), **kw)
    model.forbid = True  # any forward pass now raises: a complete run comes from disk alone
    try:
        assert evaluate(fresh(), x, y, backend=backend, **kw).to_dict() == ref
    finally:
        model.forbid = False


# ---------------------------------------------------------------------- on Ray
@pytest.mark.parametrize("workers,cpus,runs", [
    (1, 1.0, [(None, "gaussian-binary")]),
    (2, 1.0, [(1, "gaussian-binary"), (5, "gaussian-binary"), (5, "uniform-box-l1-multiclass")]),
    (3, 0.5, [(2, "gaussian-binary"), (4, "uniform-box-l1-multiclass")]),
])
def test_ray_matches_single_process_bit_for_bit(ray_local, setup, references, workers, cpus, runs):
    """1, 2 and 3 workers, chunks of 1 to 12 inputs, two noises / forms / norms (box certificates need
    each chunk's own inputs): every field equals the single-process result. One kept pool per worker
    count; every worker builds each estimator once, however many chunks it runs."""
    x = setup[2]
    with RayBackend(num_workers=workers, cpus_per_worker=cpus, progress=False) as backend:
        for chunk, case in runs:
            backend.chunk_size = chunk
            sm = smoothed_for(setup, case)
            result = sm.certify_detailed(x, N, batch_size=BATCH, backend=backend, **CASES[case]["kwargs"])
            assert_same(result, references[case])
        pred, radius = sm.certify(x, N, batch_size=BATCH, backend=backend, **CASES[case]["kwargs"])  # ART's API
        stats = backend.worker_stats()
    np.testing.assert_array_equal(pred, references[case].prediction)
    np.testing.assert_array_equal(radius, references[case].radius)
    assert len({s["pid"] for s in stats}) == workers
    estimators = len({case for _, case in runs})
    assert all(s["loads"] == estimators and s["device"] == "cpu" and s["threads"] == 1 for s in stats), stats
    assert backend.worker_stats() == []  # leaving `with` stopped the workers


def test_sequential_certify_on_ray_matches_single_process(ray_local, setup):
    """sequential=True through the Ray backend: same decisions, draws used, bounds and radii as one process
    (looks at 32, 48, 72, 108, 162, 243, 365 and the budget 600; chunks of 5 over 2 workers)."""
    x = setup[2]
    sm = SmoothedClassifier(setup[1], UniformNoise(0.5), sample_size=N0, seed=3)
    kwargs = {"sequential": True, "radius": [0.1, 0.4], "form": "multiclass", "norm": 1, "batch_size": BATCH}
    ref = one_thread(sm.certify_detailed, x, 600, **kwargs)
    assert len(set(ref.n_used.tolist())) > 1  # inputs stopped at different looks: the test tests something
    result = sm.certify_detailed(x, 600, backend=RayBackend(num_workers=2, chunk_size=5, progress=False), **kwargs)
    assert_same(result, ref)
    for f in ("n_used", "decisions", "radii"):
        a, b = getattr(result, f), getattr(ref, f)
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b, err_msg=f)
    assert result.extra == ref.extra


def test_too_many_workers_is_a_value_error(ray_local, setup):
    with pytest.raises(ValueError, match="num_workers"):
        smoothed_for(setup).certify(setup[2], N, backend=RayBackend(num_workers=5, progress=False))


def test_killed_worker_is_retried_and_result_is_complete(ray_local, setup, references, tmp_path):
    model, _, x, _ = setup
    marker = tmp_path / "killed"
    model.kill_marker, model.kill_at = str(marker), 2  # dies inside its first chunk
    try:
        result = smoothed_for(setup).certify_detailed(
            x, N, batch_size=BATCH, backend=RayBackend(num_workers=2, chunk_size=3, max_retries=2, progress=False))
    finally:
        model.kill_marker = None
    assert marker.exists(), "no worker was killed: the test did not test anything"
    assert_same(result, references["gaussian-binary"])


def test_failed_run_resumes_without_recomputing(ray_local, setup, references, tmp_path):
    model, _, x, _ = setup
    out = tmp_path / "run"
    jsonl = out / "certify.jsonl"
    sm = smoothed_for(setup)
    # One worker, chunks of 2 inputs = 8 forward passes each (n0=16: one pass; n=64: three of 24):
    # it dies in its third chunk and, without retries, the run fails after two chunks were written.
    model.kill_marker, model.kill_at = str(tmp_path / "killed"), 2 * 8 + 1
    try:
        with pytest.raises(RuntimeError, match="resume"):
            sm.certify_detailed(x, N, batch_size=BATCH, backend=RayBackend(
                num_workers=1, chunk_size=2, inflight=1, max_retries=0, output_dir=out, progress=False))
    finally:
        model.kill_marker = None
    first = [json.loads(line)["index"] for line in jsonl.read_text().splitlines()]
    assert sorted(first) == [0, 1, 2, 3]

    backend = RayBackend(num_workers=2, chunk_size=3, max_retries=0, output_dir=out, progress=False)
    resumed = sm.certify_detailed(x, N, batch_size=BATCH, backend=backend)
    assert_same(resumed, references["gaussian-binary"])
    indices = [json.loads(line)["index"] for line in jsonl.read_text().splitlines()]
    assert indices[:4] == first and sorted(indices) == list(range(N_INPUTS))  # each input computed once

    model.forbid = True  # any forward pass now raises: a complete run must come from disk alone
    try:
        again = sm.certify_detailed(x, N, batch_size=BATCH, backend=backend)
    finally:
        model.forbid = False
    assert_same(again, references["gaussian-binary"])
    with pytest.raises(ValueError, match="different run"):
        sm.certify(x, N + 1, batch_size=BATCH, backend=backend)
    with pytest.raises(ValueError, match="seed"):
        smoothed_for(setup, seed=8).certify(x, N, batch_size=BATCH, backend=backend)


def test_seed_none_uses_one_base_seed_for_all_workers(ray_local, setup, references, tmp_path):
    """With seed=None the driver draws one base seed and every worker uses it: the Ray result equals
    the local path run with that seed (read back from the run's metadata); a resume reuses it."""
    _, base, x, _ = setup
    sm = SmoothedClassifier(base, GaussianNoise(0.25), sample_size=N0, seed=None)
    with RayBackend(num_workers=2, chunk_size=1, output_dir=tmp_path, progress=False) as backend:
        result = sm.certify_detailed(x, N, batch_size=BATCH, backend=backend)
        seed = json.loads((tmp_path / "certify.meta.json").read_text())["seed"]
        assert seed != 7
        local = one_thread(smoothed_for(setup, seed=seed).certify_detailed, x, N, batch_size=BATCH)
        for f in FIELDS:
            np.testing.assert_array_equal(getattr(result, f), getattr(local, f), err_msg=f)
        assert result.seed is None
        lines = (tmp_path / "certify.jsonl").read_text().splitlines()
        (tmp_path / "certify.jsonl").write_text("".join(line + "\n" for line in lines[:5]) + '{"index": 9, "pr')
        again = sm.certify_detailed(x, N, batch_size=BATCH, backend=backend)  # the torn last line is dropped
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(again, f), getattr(local, f), err_msg=f)


def test_evaluate_on_ray_matches_local_and_resumes(ray_local, setup, tmp_path):
    """evaluate(backend=...) gives the local Evaluation: bit for bit when the attack's forward passes
    hold one input (gradient_batch_size = EOT draws); with the default gradient batching certificates
    are still exact and empirical radii agree to float rounding. A finished run resumes from disk."""
    model, base, x, y = setup

    def fresh():  # a new estimator: its gradient-call counter starts at 0 like the reference's
        return SmoothedClassifier(base, GaussianNoise(0.25), sample_size=N0, seed=7, eot_samples=8)

    kw = {"norm": 2, "n": N, "batch_size": BATCH, "search_steps": 5}
    exact = {"max_iter": 6, "gradient_batch_size": 8}
    ref_est = fresh()
    ref = one_thread(evaluate, ref_est, x, y, attack=exact, **kw)
    assert ref.summary.ratio_count > 0 and ref.summary.abstentions < N_INPUTS  # something to compare
    ref_default = one_thread(evaluate, fresh(), x, y, attack={"max_iter": 6}, **kw)
    with RayBackend(num_workers=2, chunk_size=1, progress=False) as backend:
        est = fresh()
        assert evaluate(est, x, y, attack=exact, backend=backend, **kw).to_dict() == ref.to_dict()
        assert est.gradient_calls == ref_est.gradient_calls  # the counter advances as a local run's

        backend.chunk_size, backend.output_dir = 5, tmp_path
        assert evaluate(fresh(), x, y, attack=exact, backend=backend, **kw).to_dict() == ref.to_dict()
        model.forbid = True
        try:
            assert evaluate(fresh(), x, y, attack=exact, backend=backend, **kw).to_dict() == ref.to_dict()
        finally:
            model.forbid = False

        backend.chunk_size, backend.output_dir = 1, None
        other = evaluate(fresh(), x, y, attack={"max_iter": 6}, backend=backend, **kw)
    for a, b in zip(other.records, ref_default.records):
        assert (a.prediction, a.certified_radius, a.p_a_lower) == (b.prediction, b.certified_radius, b.p_a_lower)
        np.testing.assert_allclose(a.empirical_radius, b.empirical_radius, rtol=1e-5)


def test_cli_backend_ray_matches_local(ray_local, tmp_path):
    """``art-smoothing evaluate --backend ray --workers 2`` writes the per-input CSV of the local run."""
    from click.testing import CliRunner

    from art_smoothing.cli import cli

    args = ["evaluate", "--limit", "6", "--n", "60", "--n0", "20", "--epochs", "1", "--train-limit", "300",
            "--batch-size", "500", "--seed", "3", "--quiet", "--attack-steps", "3", "--eot-samples", "8",
            "--search-steps", "3", "--attack-param", "gradient_batch_size=8"]
    env = {"ART_SMOOTHING_CACHE": str(tmp_path / "cache")}
    runner = CliRunner()
    outs = {}
    for name, extra in (("local", []), ("ray", ["--backend", "ray", "--workers", "2"])):
        outs[name] = tmp_path / name
        result = one_thread(runner.invoke, cli, [*args, *extra, "--out", str(outs[name])], env=env,
                            catch_exceptions=False)
        assert result.exit_code == 0, result.output
    local, distributed = ((outs[k] / "evaluate.csv").read_text() for k in ("local", "ray"))
    assert len(local.splitlines()) == 7 and distributed == local
    summary = json.loads((outs["ray"] / "summary.json").read_text())
    assert summary["certificate"]["backend"] == "ray"


def test_numpy_smoothed_classifier_on_ray(ray_local, digits):
    """A scikit-learn base classifier (NumpySmoothedClassifier) travels to the workers and certifies as
    locally."""
    from art.estimators.classification import SklearnClassifier
    from sklearn.linear_model import LogisticRegression

    x_train = digits.x_train[:400].reshape(400, -1)
    model = LogisticRegression(max_iter=200).fit(x_train, digits.y_train[:400])
    sm = SmoothedClassifier(SklearnClassifier(model, clip_values=(0.0, 1.0)), GaussianNoise(0.25), sample_size=N0,
                            seed=5)
    x = digits.x_test[:6].reshape(6, -1)
    ref = one_thread(sm.certify_detailed, x, N, batch_size=BATCH)
    result = sm.certify_detailed(x, N, batch_size=BATCH, backend=RayBackend(num_workers=1, chunk_size=4,
                                                                            progress=False))
    assert_same(result, ref)
    assert type(sm).__name__ == "NumpySmoothedClassifier"


def test_cli_run_interrupted_locally_resumes_on_ray(ray_local, setup, tmp_path):
    """``certify`` interrupted (Ctrl-C) in this process, then resumed with ``--backend ray --workers 2`` by the
    command it printed: the Ray workers compute only the inputs not saved, and certify.csv equals an
    uninterrupted local run's byte for byte."""
    import shlex

    from click.testing import CliRunner

    from art_smoothing.cli import cli

    torch.save(setup[0].state_dict(), tmp_path / "w.pt")  # Sabotaged and Interrupting both hold it as `inner`
    args = ["certify", "--limit", "6", "--n", "60", "--n0", "20", "--batch-size", "500", "--seed", "3", "--quiet",
            "--chunk-size", "2", "--model", f"{__name__}:interruptible_digits", "--weights", str(tmp_path / "w.pt")]
    runner = CliRunner()

    def invoke(*words):
        return one_thread(runner.invoke, cli, [str(w) for w in words], catch_exceptions=False)

    assert invoke(*args, "--out", tmp_path / "whole").exit_code == 0
    INTERRUPT.update(calls=0, at=8)  # one output check, then 4 passes per chunk of 2 inputs: stops in chunk 2
    try:
        cut = invoke(*args, "--out", tmp_path / "cut")
    finally:
        INTERRUPT["at"] = None
    assert cut.exit_code == 130, cut.output
    line = cut.stderr.strip()
    assert line.startswith("Interrupted: 2 of 6 inputs saved in ") and "\n" not in line
    resumed = invoke(*shlex.split(line.split("resume with: ")[1])[1:], "--backend", "ray", "--workers", "2")
    assert resumed.exit_code == 0, resumed.output
    assert (tmp_path / "cut" / "certify.csv").read_bytes() == (tmp_path / "whole" / "certify.csv").read_bytes()
    jsonl = (tmp_path / "cut" / "progress" / "certify.jsonl").read_text()
    indices = [json.loads(record)["index"] for record in jsonl.splitlines()]
    assert indices[:2] == [0, 1] and sorted(indices) == list(range(6))  # each input computed once
    assert json.loads((tmp_path / "cut" / "summary.json").read_text())["certificate"]["backend"] == "ray"
