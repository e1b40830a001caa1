"""The ``art-smoothing`` command line, driven for real (click's runner in-process, and subprocesses for
the console entry points) on tiny settings: the files it writes must parse and agree with each other,
bad input must end in one line and exit code 2, and a rerun from the JSON must give the same results."""

import csv
import itertools
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from art_smoothing import registry
from art_smoothing.cli import cli

# TorchScript (the model format of `train`) is deprecated in recent torch but still the portable one.
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.*:DeprecationWarning")

#: tiny but real: 6 test inputs, 60 + 20 draws ...
TINY_RUN = ["--limit", "6", "--n", "60", "--n0", "20", "--batch-size", "500", "--seed", "3", "--quiet"]
#: ... with a DigitsCNN trained one epoch on 300 digits (training options are refused with a user model)
TINY = [*TINY_RUN, "--epochs", "1", "--train-limit", "300"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def run(cache):
    """Invoke the CLI in-process with the temporary model cache (``env=``: more variables); returns click's
    Result."""
    runner = CliRunner()

    def invoke(*args, env=None):
        return runner.invoke(cli, [str(a) for a in args], env={"ART_SMOOTHING_CACHE": cache, **(env or {})},
                             catch_exceptions=False)

    return invoke


def ok(result):
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def read_json(path):
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def check_png(path, min_bytes=8_000):
    assert os.path.isfile(path), path
    with open(path, "rb") as fh:
        head = fh.read(8)
    assert head == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(path) > min_bytes  # a real figure with axes, lines and text, not an empty canvas
    import matplotlib.image

    img = matplotlib.image.imread(path)
    assert img.shape[0] >= 300 and img.shape[1] >= 400
    assert img[..., :3].std() > 0.05  # not blank


def as_float(v):
    return math.inf if v == "inf" else float(v)


@pytest.fixture(scope="module")
def certified(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("certify") / "run"
    result = ok(run("certify", *TINY, "--noise", "laplace", "--scale", "0.3", "--out", out))
    return out, result


# ---------------------------------------------------------------------------------------------- certify
def test_certify_files_parse_and_agree(certified, cache):
    out, result = certified
    rows = read_csv(out / "certify.csv")
    summary = read_json(out / "summary.json")
    assert len(rows) == 6
    pred = np.array([int(r["prediction"]) for r in rows])
    label = np.array([int(r["label"]) for r in rows])
    radius = np.array([as_float(r["radius"]) for r in rows])
    assert all(r["norm"] == "l1" for r in rows)  # Laplace's own norm
    assert np.all(radius >= 0) and np.all(radius[pred < 0] == 0)
    assert [r["correct"] == "true" for r in rows] == list(pred == label)
    for r in rows:
        pa, pb = float(r["p_a_lower"]), float(r["p_b_upper"])
        assert 0 <= pa <= 1 and 0 <= pb <= 1
        assert int(r["count_top"]) + int(r["count_runner_up"]) <= 60
        if int(r["prediction"]) >= 0:  # binary form: radius = -scale log(2(1 - p_a)) (Teng et al.)
            assert float(r["radius"]) == pytest.approx(-0.3 * math.log(2 * (1 - pa)), rel=1e-9)
    # the labels are the digits test split, in order
    from art_smoothing.data import load_digits_dataset

    assert list(label) == list(load_digits_dataset().y_test[:6])
    # summary: every parameter, seed, versions, consistent results
    assert summary["command"] == "certify"
    assert summary["seed"] == 3 and summary["params"]["seed"] == 3
    assert summary["params"]["n"] == 60 and summary["params"]["noise"] == "laplace"
    assert summary["noise"] == {"name": "laplace", "class": "LaplaceNoise", "params": {"scale": 0.3}}
    for key in ("torch", "adversarial-robustness-toolbox", "numpy", "python", "art_smoothing"):
        assert summary["versions"][key]
    res = summary["results"]
    assert res["clean_accuracy"] == pytest.approx(np.mean(pred == label))
    assert res["abstentions"] == int(np.sum(pred < 0))
    for r, acc in zip(res["radii"], res["certified_accuracy"]):
        assert acc == pytest.approx(np.mean((pred == label) & (radius >= r)))
    assert summary["model"]["source"] == "bundled" and summary["model"]["cached"] is False
    assert os.path.isfile(summary["model"]["path"]) and summary["model"]["path"].startswith(cache)
    assert set(summary["files"]) == {"certify.csv", "summary.json", "certified_accuracy.png"}
    check_png(out / "certified_accuracy.png")
    # the printed table ends with the results folder and shows the accuracies of the summary
    assert f"{res['certified_accuracy'][0]:.3f}" in result.stdout
    assert str(out) in result.stdout.splitlines()[-1]


def test_second_run_loads_cached_model_and_matches(certified, run, tmp_path):
    out, _ = certified
    ok(run("certify", *TINY, "--noise", "laplace", "--scale", "0.3", "--out", tmp_path / "again"))
    summary = read_json(tmp_path / "again" / "summary.json")
    assert summary["model"]["cached"] is True
    assert summary["model"]["path"] == read_json(out / "summary.json")["model"]["path"]
    assert "train_seconds" not in summary["timings"] or summary["timings"]["train_seconds"] < 5
    assert (tmp_path / "again" / "certify.csv").read_bytes() == (out / "certify.csv").read_bytes()


def test_rerun_from_json_is_identical(certified, run, tmp_path):
    out, _ = certified
    result = ok(run("rerun", out / "summary.json", "--out", tmp_path / "rerun"))
    assert (tmp_path / "rerun" / "certify.csv").read_bytes() == (out / "certify.csv").read_bytes()
    first, second = read_json(out / "summary.json"), read_json(tmp_path / "rerun" / "summary.json")
    assert first["results"] == second["results"]
    assert {k: v for k, v in first["params"].items() if k != "out"} == \
        {k: v for k, v in second["params"].items() if k != "out"}
    assert "identical" in result.stdout


def test_other_seed_gives_other_votes(certified, run, tmp_path):
    out, _ = certified
    args = [a if a != "3" else "4" for a in TINY]
    ok(run("certify", *args, "--noise", "laplace", "--scale", "0.3", "--out", tmp_path / "seed4"))
    a = read_csv(out / "certify.csv")
    b = read_csv(tmp_path / "seed4" / "certify.csv")
    assert [r["p_a_lower"] for r in a] != [r["p_a_lower"] for r in b]


def test_norm_method_and_box_options(run, tmp_path):
    """Uniform noise, l1: the box-constrained certificate is never below the plain one (same votes)."""
    args = [*TINY, "--noise", "uniform:scale=0.6"]
    ok(run("certify", *args, "--method", "plain", "--out", tmp_path / "plain"))
    ok(run("certify", *args, "--method", "box", "--out", tmp_path / "box"))
    ok(run("certify", *args, "--method", "lipschitz", "--norm", "inf", "--out", tmp_path / "linf"))
    plain = read_csv(tmp_path / "plain" / "certify.csv")
    box = read_csv(tmp_path / "box" / "certify.csv")
    linf = read_csv(tmp_path / "linf" / "certify.csv")
    assert [r["p_a_lower"] for r in plain] == [r["p_a_lower"] for r in box]
    assert all(as_float(b["radius"]) >= as_float(p["radius"]) for p, b in zip(plain, box))
    assert all(r["norm"] == "linf" for r in linf)
    # lipschitz is an l1 certificate; in linf it is divided by d = 64 (sound conversion)
    lip_l1 = [2 * 0.6 * (float(r["p_a_lower"]) - 0.5) if int(r["prediction"]) >= 0 else 0.0 for r in linf]
    assert [as_float(r["radius"]) for r in linf] == pytest.approx([v / 64 for v in lip_l1], rel=1e-9)
    assert read_json(tmp_path / "box" / "summary.json")["certificate"]["box_used"] is True
    assert read_json(tmp_path / "plain" / "summary.json")["certificate"]["box_used"] is False


# ---------------------------------------------------------------------------------------------- evaluate
def test_evaluate_records_summary_and_plots(run, tmp_path):
    out = tmp_path / "eval"
    result = ok(run("evaluate", *TINY, "--limit", "4", "--search-steps", "2", "--attack-steps", "3",
                    "--eot-samples", "4", "--out", out))
    rows = read_csv(out / "evaluate.csv")
    summary = read_json(out / "summary.json")
    assert len(rows) == 4
    cert = np.array([as_float(r["certified_radius"]) for r in rows])
    emp = np.array([as_float(r["empirical_radius"]) for r in rows])
    pred = np.array([int(r["prediction"]) for r in rows])
    label = np.array([int(r["label"]) for r in rows])
    correct = pred == label
    assert [r["correct"] == "true" for r in rows] == list(correct)
    assert np.all(cert >= 0) and np.all(emp >= 0)
    violation = (pred >= 0) & (cert > 0) & (emp < cert)
    assert [r["violation"] == "true" for r in rows] == list(violation)
    assert summary["noise"]["name"] == "gaussian" and summary["noise"]["params"]["sigma"] == 0.25
    res = summary["results"]
    assert res["violations"] == int(violation.sum())
    for r, c, e in zip(res["radii"], res["certified_accuracy"], res["empirical_accuracy"]):
        assert c == pytest.approx(np.mean(correct & (cert >= r)))
        assert e == pytest.approx(np.mean(correct & (emp > r)))
    assert summary["attack"]["max_iter"] == 3 and summary["attack"]["eot_samples"] == 4
    check_png(out / "certified_accuracy.png")
    check_png(out / "radius_scatter.png")
    assert "violations" in result.stdout and "empirical acc" in result.stdout


# ---------------------------------------------------------------------------------------------- compare
def test_compare_curves_per_norm(run, tmp_path):
    out = tmp_path / "cmp"
    ok(run("compare", *TINY, "--noise", "gaussian:sigma=0.25", "--noise", "laplace:scale=0.18",
           "--norm", "1", "--norm", "2", "--out", out))
    rows = read_csv(out / "compare.csv")
    curves = read_csv(out / "curves.csv")
    summary = read_json(out / "summary.json")
    assert {r["norm"] for r in rows} == {"l1", "l2"}
    assert len(rows) == 2 * 2 * 6  # noises x norms x inputs
    # sound conversions from the same votes: Gaussian l2 radius r is also its l1 radius (||d||_2 <= ||d||_1);
    # Laplace's l1 radius r gives r / sqrt(64) in l2
    by = {(r["noise"], r["norm"], r["index"]): as_float(r["radius"]) for r in rows}
    for i in range(6):
        assert by[("gaussian", "l1", str(i))] == pytest.approx(by[("gaussian", "l2", str(i))], rel=1e-12)
        assert by[("laplace", "l2", str(i))] == pytest.approx(by[("laplace", "l1", str(i))] / 8, rel=1e-12)
    for name in {r["curve"] for r in curves}:
        for norm in ("l1", "l2"):
            acc = [float(r["certified_accuracy"]) for r in curves if r["curve"] == name and r["norm"] == norm]
            assert acc and all(a >= b - 1e-12 for a, b in itertools.pairwise(acc))  # non-increasing in the radius
    assert len(summary["noises"]) == 2 and all(s["model"]["source"] == "bundled" for s in summary["noises"])
    check_png(out / "certified_accuracy_l1.png")
    check_png(out / "certified_accuracy_l2.png")


# ---------------------------------------------------------------------------------------------- train + models
def test_train_is_deterministic_and_its_model_certifies(run, tmp_path):
    args = ["train", "--noise", "uniform", "--scale", "0.5", "--epochs", "1", "--train-limit", "200", "--seed", "7",
            "--quiet", "--no-cache"]
    ok(run(*args, "--out", tmp_path / "a"))
    ok(run(*args, "--out", tmp_path / "b"))
    a = torch.jit.load(str(tmp_path / "a" / "model.pt")).state_dict()
    b = torch.jit.load(str(tmp_path / "b" / "model.pt")).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rerun = ok(run("rerun", tmp_path / "a", "--out", tmp_path / "c"))  # a folder works as well as its JSON
    assert "results identical" in rerun.stdout
    c = torch.jit.load(str(tmp_path / "c" / "model.pt")).state_dict()
    assert all(torch.equal(a[k], c[k]) for k in a)
    summary = read_json(tmp_path / "a" / "summary.json")
    assert 0.0 <= summary["results"]["clean_accuracy"] <= 1.0
    assert len(summary["model"]["training"]["epoch_losses"]) == 1
    out = tmp_path / "ts"
    ok(run("certify", *TINY_RUN, "--noise", "uniform", "--scale", "0.5", "--model", tmp_path / "a" / "model.pt",
           "--out", out))
    summary = read_json(out / "summary.json")
    assert summary["model"]["source"] == "torchscript"
    assert len(read_csv(out / "certify.csv")) == 6


FACTORY = textwrap.dedent("""
    import torch
    from torch import nn

    def make(classes=10):
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(64, int(classes)))
    """)


@pytest.mark.skipif("consistency" not in registry.trainer_registry(), reason="art_smoothing.training.TRAINERS absent")
def test_trainer_by_name_with_parameters(run, tmp_path):
    out = tmp_path / "cons"
    ok(run("train", "--trainer", "consistency", "--trainer-param", "m=2", "--trainer-param", "lbd=5", "--epochs", "1",
           "--train-limit", "100", "--limit", "20", "--quiet", "--out", out))
    training = read_json(out / "summary.json")["model"]["training"]
    assert training["trainer"] == "consistency" and training["trainer_params"] == {"m": 2, "lbd": 5.0}
    bad = run("train", "--trainer", "consistency", "--trainer-param", "nope=1", "--out", tmp_path / "bad")
    assert bad.exit_code == 2 and "has no parameter 'nope'" in bad.stderr and "lbd" in bad.stderr


def test_factory_model_with_weights(run, tmp_path, monkeypatch):
    (tmp_path / "user_nets.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.manual_seed(1)
    from torch import nn

    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    torch.save(model.state_dict(), tmp_path / "w.pt")
    out = tmp_path / "f"
    ok(run("certify", *TINY_RUN, "--model", "user_nets:make", "--weights", tmp_path / "w.pt", "--out", out))
    summary = read_json(out / "summary.json")
    assert summary["model"]["source"] == "factory" and summary["model"]["spec"] == "user_nets:make"
    # wrong number of outputs: one line, exit 2
    bad = run("certify", *TINY_RUN, "--model", "user_nets:make", "--factory-arg", "classes=5", "--out", tmp_path / "g")
    assert bad.exit_code == 2
    assert bad.stderr.strip().count("\n") == 0
    assert "outputs 5 scores per input but the data has 10 classes" in bad.stderr
    assert not (tmp_path / "g").exists()


def test_npz_data_and_its_box(run, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((60, 1, 8, 8), dtype=np.float32)
    y = (x.reshape(60, -1).mean(axis=1) > 0.5).astype(np.int64) + 2 * (x[:, 0, 0, 0] > 0.5)
    np.savez(tmp_path / "toy.npz", x=x, y=y)
    out = tmp_path / "npz"
    ok(run("certify", *TINY, "--data", tmp_path / "toy.npz", "--out", out))
    summary = read_json(out / "summary.json")
    assert summary["data"]["nb_classes"] == 4 and summary["data"]["name"] == "toy.npz"
    np.savez(tmp_path / "wide.npz", x=x * 255, y=y)
    bad = run("certify", *TINY, "--data", tmp_path / "wide.npz", "--out", tmp_path / "bad")
    assert bad.exit_code == 2 and "--clip-values" in bad.stderr
    ok(run("certify", *TINY, "--data", tmp_path / "wide.npz", "--clip-values", "0,255", "--out", tmp_path / "w255"))


# ---------------------------------------------------------------------------------------------- bad input
BAD = [
    (["certify", "--noise", "nope"], "Unknown noise 'nope'"),
    (["certify", "--noise", "laplace"], "needs its parameter scale"),
    (["certify", "--noise", "laplace:scale=-1"], "scale must be"),
    (["certify", "--noise", "laplace:sigma=1"], "has no parameter 'sigma'"),
    (["certify", "--noise", "gaussian:sigma=0.25", "--sigma", "0.5"], "Conflicting values for sigma"),
    (["certify", "--scale", "0.5"], "--scale is not a parameter of gaussian"),
    (["certify", "--norm", "0.5"], "norm"),
    (["certify", "--norm", "banana"], "Unknown norm"),
    (["certify", "--method", "teng"], "Unknown certificate method 'teng'"),
    (["certify", "--method", "box"], "has no box-constrained certificate"),
    (["certify", "--noise", "uniform:scale=0.5", "--method", "box", "--clip-values", "none"], "--clip-values"),
    (["certify", "--noise", "uniform:scale=0.5", "--method", "box_input", "--no-box"], "--no-box"),
    (["certify", "--data", "missing.npz"], "missing.npz"),
    (["certify", "--data", "no/such/folder"], "not found"),
    (["certify", "--model", "missing_model.pt"], "not found"),
    (["certify", "--model", "no_such_module_xyz:make"], "cannot import module"),
    (["certify", "--model", "user_nets:make", "--weights", "missing_w.pt"], "not found"),
    (["certify", "--device", "tpu"], "Unknown device"),
    (["certify", "--trainer", "nope"], "Unknown trainer"),
    (["certify", "--backend", "spark"], "Unknown backend"),
    (["certify", "--workers", "2"], "--backend ray"),
    (["certify", "--clip-values", "1,0"], "LO < HI"),
    (["certify", "--limit", "-1"], "-1"),
    (["certify", "--frobnicate"], "No such option"),
    (["evaluate", "--norm", "3"], "l1, l2 or linf"),
    (["compare", "--method", "teng", "--noise", "gaussian:sigma=0.25"], "none of the noises"),
    (["rerun", "no_such_summary.json"], "not found"),
    # issue 17: an option that would change nothing, or contradicts another, is refused
    (["certify", "--factory-arg", "classes=5"], "--factory-arg is a keyword argument of --model module:factory"),
    (["certify", "--model", "some_model.pt", "--epochs", "3"], "--epochs sets how the bundled model is trained"),
    (["certify", "--model", "user_nets:make", "--trainer", "macer"], "drop --trainer"),
    (["evaluate", "--model", "user_nets:make", "--lr", "0.1"], "drop --lr"),
    (["compare", "--model", "user_nets:make", "--no-cache"], "drop --no-cache"),
    (["certify", "--model", "some_model.pt", "--weights", "w.pt"], "a TorchScript file already holds its weights"),
    (["train", "--model", "user_nets:make", "--no-cache"], "is never cached"),
    (["train", "--backend", "ray"], "train certifies nothing"),
    (["certify", "--resume"], "--resume needs --out DIR"),
    (["certify", "--resume", "--overwrite"], "choose one"),
    (["certify", "--resume", "--deterministic"], "--deterministic (exact) certification runs in one piece"),
    (["certify", "--deterministic", "--backend", "ray"], "drop --backend ray"),
    (["frobnicate"], "No such command"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_exit_2(run, tmp_path, monkeypatch, args, message):
    (tmp_path / "user_nets.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    if args[0] == "frobnicate" or args[-1] == "--resume":  # the bad command, a resume without --out
        result = run(*args)
    else:
        result = run(*args, "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("Error: ") and "\n" not in err, err
    assert message in err
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_image_folder_needs_vision_extra_or_the_right_layout(run, tmp_path):
    (tmp_path / "imgs" / "train").mkdir(parents=True)
    (tmp_path / "imgs" / "val").mkdir()
    (tmp_path / "flat").mkdir()
    # CIFAR folders need no torchvision (tests/test_data.py), so a folder of neither layout is told so either way
    cases = [(tmp_path / "flat", "holds neither 'cifar-10-batches-py' nor train/ and val/")]
    try:
        import torchvision  # noqa: F401
    except ImportError:
        cases.append((tmp_path / "imgs", "pip install 'art_smoothing[vision]'"))
    for folder, message in cases:
        result = run("certify", "--data", folder, "--out", tmp_path / "out")
        assert result.exit_code == 2 and message in result.stderr and result.stderr.count("\n") == 1


def test_console_entry_points(tmp_path, cache):
    env = {**os.environ, "ART_SMOOTHING_CACHE": cache}
    bad = subprocess.run([sys.executable, "-m", "art_smoothing", "certify", "--noise", "laplace:scale=0.5",
                          "--method", "cohen"], check=False, capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=120)
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: Unknown certificate method 'cohen' for LaplaceNoise")
    assert "teng" in lines[0]  # says what to choose instead
    helped = subprocess.run([sys.executable, "-m", "art_smoothing", "--help"], check=False, capture_output=True,
                            text=True, env=env, timeout=120)
    assert helped.returncode == 0
    for command in ("train", "certify", "evaluate", "compare", "rerun", "list"):
        assert command in helped.stdout


def test_without_matplotlib_runs_and_warns(tmp_path, cache):
    """matplotlib is optional: blocked, the run still writes CSV and JSON and says why there is no plot."""
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from art_smoothing.cli import main\n"
            f"main({['certify', *TINY, '--noise', 'laplace', '--scale', '0.3', '--out', str(tmp_path / 'np')]!r})\n")
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ART_SMOOTHING_CACHE": cache})
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(tmp_path / "np")) == ["certify.csv", "progress", "summary.json"]
    warnings = [line for line in proc.stderr.splitlines() if "matplotlib" in line]
    assert len(warnings) == 1 and warnings[0].startswith("WARNING:")


# ---------------------------------------------------------------------------------------------- registry
def test_every_noise_is_reachable_by_name_with_its_parameters():
    """Every exported noise builds from the command-line strings of its parameters, and each of its
    parameters is a CLI option (or filled from the data, or settable inline)."""
    from art_smoothing.cli.options import CONTEXT_PARAMS, NOISE_PARAM_PREFIX, noise_param_options

    options = {dest.removeprefix(NOISE_PARAM_PREFIX) for _, dest, _, _ in noise_param_options()}
    entries = registry.noise_registry()
    assert {"gaussian", "laplace", "uniform"} <= set(entries)
    import art_smoothing.noise as noise_pkg

    exported = {getattr(noise_pkg, n) for n in noise_pkg.__all__}
    for entry in entries.values():
        assert entry.cls in exported
        raw = {}
        for spec in entry.params:
            assert spec.name in options or spec.name in CONTEXT_PARAMS or not spec.required
            if spec.required:
                raw[spec.name] = "2" if spec.kind == "int" else "0.5"
        noise, _ = registry.build_noise(entry.name, raw)
        assert type(noise) is entry.cls
        assert registry.noise_from_record(json.loads(json.dumps(registry.noise_record(noise)))) == noise
        assert registry.resolve_noise(entry.cls.__name__) is not None
        for method in entry.methods():
            assert registry.resolve_methods(noise, method, noise.norm)[0] == method


def test_noise_spec_parsing():
    assert registry.parse_noise_spec("splitting:scale=0.5,clip_values=0,1") == (
        "splitting", {"scale": "0.5", "clip_values": "0,1"})
    assert registry.parse_noise_spec("laplace(scale=0.5)") == ("laplace", {"scale": "0.5"})
    assert registry.resolve_noise("Laplace-Noise").name == "laplace"
    with pytest.raises(ValueError, match="name=value"):
        registry.parse_noise_spec("laplace:0.5")


def test_limit_on_a_cifar_folder_never_cuts_the_training_set(run, tmp_path):
    """Issue 17: --limit takes a stratified subset of the *test* split of an image folder and leaves the
    training set alone; --train-limit cuts the training set (stratified too)."""
    import json

    from tests.test_data import write_cifar10

    write_cifar10(tmp_path / "data")  # 5 training batches of 20 images, 20 test images, 10 classes
    out = tmp_path / "out"
    result = run("train", "--data", tmp_path / "data", "--limit", "6", "--epochs", "1", "--out", out, "--quiet",
                 "--no-cache")
    assert result.exit_code == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"]["training"]["train_examples"] == 100
    result = run("train", "--data", tmp_path / "data", "--train-limit", "30", "--epochs", "1", "--out",
                 tmp_path / "out2", "--quiet", "--no-cache")
    assert result.exit_code == 0, result.stderr
    summary = json.loads((tmp_path / "out2" / "summary.json").read_text())
    assert summary["model"]["training"]["train_examples"] == 30


def test_certify_and_evaluate_sequential(run, tmp_path):
    """--sequential decides the --radii grid with --n as the budget: the CSV has n_used and a decision per
    radius, the summary and the last lines show the draws used against fixed-n's."""
    import csv
    import json

    out = tmp_path / "seq"
    result = run("certify", *TINY, "--n", "600", "--sequential", "--radii", "0.1,0.3", "--out", out)
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(open(out / "certify.csv")))
    assert {"n_used", "decision@0.1", "decision@0.3"} <= set(rows[0])
    assert all(int(r["n_used"]) <= 600 for r in rows)
    draws = json.loads((out / "summary.json").read_text())["results"]["draws"]
    assert draws["fixed_n_total"] == 600 * len(rows) and draws["n_used_total"] == sum(int(r["n_used"]) for r in rows)
    assert "sequential:" in result.stdout and "fixed-n" in result.stdout
    close = run("certify", *TINY, "--n", "600", "--sequential", "--radii", "0.1,0.1000001", "--out", tmp_path / "close")
    assert close.exit_code == 0, close.stderr  # radii equal to 6 digits still get a column each
    assert {"decision@0.1", "decision@0.1000001"} <= set(next(csv.DictReader(open(tmp_path / "close" / "certify.csv"))))
    no_radii = run("certify", *TINY, "--sequential", "--out", tmp_path / "none")
    assert no_radii.exit_code == 2 and "--radii" in no_radii.stderr
    result = run("evaluate", *TINY, "--limit", "3", "--search-steps", "1", "--attack-steps", "2", "--eot-samples",
                 "4", "--n", "600", "--sequential", "--radii", "0.2", "--out", tmp_path / "ev")
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(open(tmp_path / "ev" / "evaluate.csv")))
    assert len(rows) == 3 and all(1 <= int(r["n_used"]) <= 600 for r in rows)
    assert "sequential:" in result.stdout


def test_compare_sequential_decides_in_one_norm(run, tmp_path):
    """compare --sequential stops an input once the grid is decided in the norm it is asked in, so other norms
    would come from those few draws: two norms (given, or the noises' own l1 and l2) are refused; one norm
    writes n_used per input and prints the draws of each noise."""
    import csv

    noises = ["--noise", "gaussian:sigma=0.25", "--noise", "laplace:scale=0.2"]
    for norms in (["--norm", "2", "--norm", "1"], []):
        refused = run("compare", *TINY, *noises, *norms, "--sequential", "--radii", "0.1", "--out",
                      tmp_path / "two")
        assert refused.exit_code == 2 and "one --norm" in refused.stderr, refused.stderr
    result = run("compare", *TINY, *noises, "--norm", "1", "--n", "600", "--sequential", "--radii", "0.1,0.3",
                 "--out", tmp_path / "one")
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(open(tmp_path / "one" / "compare.csv")))
    assert len(rows) == 12 and all(1 <= int(r["n_used"]) <= 600 for r in rows)
    assert sum("sequential:" in line for line in result.stdout.splitlines()) == 2
