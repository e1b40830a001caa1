"""Issue 17, "nothing silent, nothing lost": the run folder belongs to one run (lock, no mixing, --overwrite
removes only what the tool wrote), it is checked writable before any work, files are written atomically,
an interrupted or crashed run says what is saved and the exact command that resumes it, and the resumed run
is byte-identical to an uninterrupted one; rerun never overwrites its source and fails when results differ;
options that would change nothing are refused, an untrained factory model is warned about."""

import csv
import errno
import json
import os
import re
import shlex
import sys
import textwrap

import pytest
import torch
from art_smoothing.cli.lock import FolderLock
from tests.test_cli import FACTORY, TINY, TINY_RUN, cache, ok, read_csv, read_json, run  # noqa: F401 (fixtures)

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.*:DeprecationWarning")

#: a linear digits model whose forward pass counts itself and can raise (Ctrl-C or a crash) at a given pass
STOPPER = textwrap.dedent("""
    import torch
    from torch import nn

    calls = 0
    stop_at = None
    error = KeyboardInterrupt

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(64, 10)

        def forward(self, x):
            global calls
            calls += 1
            if stop_at is not None and calls >= stop_at:
                raise error("stopped by the test")
            return self.linear(x.reshape(x.shape[0], -1))

    def make():
        return Net()
    """)


@pytest.fixture(scope="module")
def stopper(tmp_path_factory, digits):
    """The STOPPER module (importable as ``art_stop_nets``) and a state dict fitted to the digits."""
    folder = tmp_path_factory.mktemp("stopper")
    (folder / "art_stop_nets.py").write_text(STOPPER)
    sys.path.insert(0, str(folder))
    import art_stop_nets

    torch.manual_seed(0)
    net = art_stop_nets.make()
    x = torch.as_tensor(digits.x_train[:300])
    y = torch.as_tensor(digits.y_train[:300])
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    torch.save(net.state_dict(), folder / "w.pt")
    yield art_stop_nets, str(folder / "w.pt")
    sys.path.remove(str(folder))


def stopped_line(result):
    """The one line of an interrupted/crashed run and the inputs it says are saved."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0], int(re.search(r"(\d+) of \d+ inputs saved", lines[0]).group(1))


def resume_args(line):
    """The command a stopped run printed, as arguments of the click group."""
    words = shlex.split(line.split("resume with: ", 1)[1])
    assert words[0] == "art-smoothing"
    return words[1:]


def progress_indices(folder, command):
    """(progress file, input index) of every per-input record saved in ``folder``."""
    task = "certify" if command == "compare" else command
    files = sorted((folder / "progress").glob(f"**/{task}.jsonl"))
    return [(str(path.relative_to(folder)), json.loads(line)["index"])
            for path in files for line in path.read_text().splitlines()]


# ---------------------------------------------------------------------------------------------- resume
#: the attack finds flips for some of the 6 inputs (empirical radii < inf are compared too)
EVAL_TINY = ["--search-steps", "3", "--attack-steps", "5", "--eot-samples", "4"]


#: each command with what it needs besides the tiny options; compare saves one progress folder per noise
RESUMABLE = {"certify": [], "evaluate": EVAL_TINY,
             "compare": ["--noise", "gaussian:sigma=0.25", "--noise", "laplace:scale=0.2"]}


@pytest.mark.parametrize("command", list(RESUMABLE))
def test_interrupted_run_resumes_byte_identical(run, stopper, tmp_path, command):
    """Ctrl-C mid-run ends with one line (inputs saved, the exact command to resume, exit 130); that command
    computes only the inputs not saved and writes the CSV of an uninterrupted run, byte for byte. Chunks of 2
    inputs are saved whole: the saved count is a multiple of 2."""
    module, weights = stopper
    args = [command, *TINY_RUN, "--model", "art_stop_nets:make", "--weights", weights, "--chunk-size", "2",
            *RESUMABLE[command]]
    total = 12 if command == "compare" else 6
    module.calls, module.stop_at = 0, None
    ok(run(*args, "--out", tmp_path / "whole"))
    total_passes = module.calls

    module.calls, module.stop_at = 0, total_passes * 2 // 3
    stopped = run(*args, "--out", tmp_path / "cut")
    module.stop_at = None
    assert stopped.exit_code == 130, stopped.output
    line, saved = stopped_line(stopped)
    assert line.startswith("Interrupted: ") and f"of {total} inputs saved in {tmp_path / 'cut' / 'progress'}" in line
    assert 0 < saved < total and saved % 2 == 0
    assert sorted(os.listdir(tmp_path / "cut")) == ["progress"]  # no outputs of an unfinished run, no lock
    assert len(progress_indices(tmp_path / "cut", command)) == saved

    module.calls = 0
    resumed = ok(run(*resume_args(line)))
    assert module.calls < total_passes  # the saved inputs were not computed again ...
    assert sorted(progress_indices(tmp_path / "cut", command)) == sorted(progress_indices(tmp_path / "whole", command))
    name = f"{command}.csv"
    assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    if command == "evaluate":  # the attack found flips: finite empirical radii are compared too
        assert any(row["empirical_radius"] != "inf" for row in read_csv(tmp_path / "cut" / name))
    assert str(tmp_path / "cut") in resumed.stdout.splitlines()[-1]


def test_resume_without_chunk_size_keeps_the_runs_own(run, stopper, tmp_path):
    """An evaluation saved in chunks of 2 (not the default 32), interrupted, and resumed by a command without
    --chunk-size (as a run started with another default prints it) continues in chunks of 2: the same CSV as
    an uninterrupted run, and the summary records the size used."""
    module, weights = stopper
    args = ["evaluate", *TINY_RUN, "--model", "art_stop_nets:make", "--weights", weights]
    module.calls, module.stop_at = 0, None
    ok(run(*args, "--chunk-size", "2", "--out", tmp_path / "whole"))
    total_passes = module.calls
    module.calls, module.stop_at = 0, total_passes * 2 // 3
    stopped = run(*args, "--chunk-size", "2", "--out", tmp_path / "cut")
    module.stop_at = None
    assert stopped.exit_code == 130, stopped.output
    words = resume_args(stopped_line(stopped)[0])
    at = words.index("--chunk-size")
    ok(run(*(words[:at] + words[at + 2:])))
    assert (tmp_path / "cut" / "evaluate.csv").read_bytes() == (tmp_path / "whole" / "evaluate.csv").read_bytes()
    assert read_json(tmp_path / "cut" / "summary.json")["chunk_size_used"] == [2]
    # a new evaluation without --chunk-size uses the evaluation's default, recorded beside the options
    ok(run(*args, "--out", tmp_path / "fresh"))
    summary = read_json(tmp_path / "fresh" / "summary.json")
    assert summary["params"]["chunk_size"] is None and summary["chunk_size_used"] == [32]


def test_resume_accepts_the_same_radii_written_differently(run, stopper, tmp_path):
    module, weights = stopper
    args = ["certify", *TINY_RUN, "--model", "art_stop_nets:make", "--weights", weights, "--chunk-size", "2",
            "--sequential", "--n", "200"]
    module.calls, module.stop_at = 0, None
    ok(run(*args, "--radii", "0.1,0.3", "--out", tmp_path / "whole"))
    module.calls, module.stop_at = 0, module.calls * 2 // 3
    stopped = run(*args, "--radii", "0.1,0.3", "--out", tmp_path / "cut")
    module.stop_at = None
    assert stopped.exit_code == 130, stopped.output
    words = resume_args(stopped_line(stopped)[0])
    words[words.index("--radii") + 1] = "0.30,0.1"
    other = run(*args, "--radii", "0.1,0.4", "--out", tmp_path / "cut", "--resume")
    assert other.exit_code == 2 and "--radii" in other.stderr  # a different grid is refused, named
    ok(run(*words))
    assert (tmp_path / "cut" / "certify.csv").read_bytes() == (tmp_path / "whole" / "certify.csv").read_bytes()


def test_overwrite_stopped_before_saving_keeps_the_old_run(run, stopper, tmp_path):
    """--overwrite replaces a finished run only once the new one has saved something: stopped before any
    input is saved, the old run is back as it was; stopped later, the new run's saved inputs own the folder."""
    module, weights = stopper
    args = ["certify", *TINY_RUN, "--model", "art_stop_nets:make", "--weights", weights, "--chunk-size", "2"]
    out = tmp_path / "out"
    module.calls, module.stop_at = 0, None
    ok(run(*args, "--out", out))
    total_passes = module.calls
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert "summary.json" in before and "certify.csv" in before
    module.calls, module.stop_at = 0, 2  # the first certification pass (after the output check): nothing saved
    stopped = run(*args, "--out", out, "--overwrite")
    assert stopped.exit_code == 130 and "before any input was saved" in stopped.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert not (out / ".replaced").exists()
    module.calls, module.stop_at = 0, total_passes * 2 // 3  # some chunks saved: the new run owns the folder
    stopped = run(*args, "--out", out, "--overwrite")
    module.stop_at = None
    assert stopped.exit_code == 130 and stopped_line(stopped)[1] > 0
    assert sorted(p.name for p in out.iterdir()) == ["progress"]
    ok(run(*resume_args(stopped_line(stopped)[0])))
    assert (out / "certify.csv").read_bytes() == before["certify.csv"]


def test_crashed_run_resumes_with_its_own_options_only(run, stopper, tmp_path):
    """A crash mid-run (the model raises) ends like Ctrl-C but with exit code 1 and the error named; --resume
    with other options, into a folder without an interrupted run, or of another command is refused."""
    module, weights = stopper
    args = ["certify", *TINY_RUN, "--model", "art_stop_nets:make", "--weights", weights, "--chunk-size", "2"]
    module.calls, module.stop_at, module.error = 0, 9, RuntimeError  # 13 passes: an output check, 4 per chunk
    try:
        stopped = run(*args, "--out", tmp_path / "cut")
    finally:
        module.stop_at, module.error = None, KeyboardInterrupt
    assert stopped.exit_code == 1
    line, saved = stopped_line(stopped)
    assert line.startswith("Error: the run stopped (RuntimeError: stopped by the test): 2 of 6 inputs saved in ")
    other = run(*[a if a != "60" else "61" for a in args], "--out", tmp_path / "cut", "--resume")
    assert other.exit_code == 2
    assert "has --n 60, this command 61" in other.stderr and other.stderr.count("\n") == 1
    evaluate = run("evaluate", *args[1:], "--out", tmp_path / "cut", "--resume")
    assert evaluate.exit_code == 2 and "holds a certify run" in evaluate.stderr
    fresh = run(*args, "--out", tmp_path / "cut")
    assert fresh.exit_code == 2 and "interrupted run (--resume continues it)" in fresh.stderr
    (tmp_path / "empty").mkdir()
    nothing = run(*args, "--out", tmp_path / "empty", "--resume")
    assert nothing.exit_code == 2 and "holds no interrupted run" in nothing.stderr
    ok(run(*args, "--out", tmp_path / "cut", "--resume"))  # the same options still resume


def test_failure_when_writing_results_loses_nothing(run, stopper, tmp_path, monkeypatch):
    """A full disk when the results are written, after all the computing: exit 1, one line with the saved
    inputs and the command to resume; no half-written files; resuming computes nothing and writes them."""
    from art_smoothing.cli import runs

    module, weights = stopper
    args = ["certify", *TINY_RUN, "--model", "art_stop_nets:make", "--weights", weights]
    real = runs.atomic_write

    def full_disk(path, write):
        if path.endswith(".png"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, write)

    monkeypatch.setattr(runs, "atomic_write", full_disk)
    failed = run(*args, "--out", tmp_path / "full")
    monkeypatch.setattr(runs, "atomic_write", real)
    assert failed.exit_code == 1
    line, saved = stopped_line(failed)
    assert line.startswith("Error: the run stopped (OSError: [Errno 28] No space left on device): 6 of 6 inputs")
    assert sorted(os.listdir(tmp_path / "full")) == ["progress"]  # certify.csv, written before, is removed
    module.calls = 0
    ok(run(*resume_args(line)))
    assert module.calls == 1  # the model's output check only: no input computed again
    assert sorted(i for _, i in progress_indices(tmp_path / "full", "certify")) == list(range(6))
    assert {"certify.csv", "summary.json", "certified_accuracy.png"} <= set(os.listdir(tmp_path / "full"))


# ---------------------------------------------------------------------------------------------- one run per folder
def test_a_folder_holds_one_run(run, tmp_path):
    out = tmp_path / "run"
    ok(run("certify", *TINY, "--out", out))
    again = run("certify", *TINY, "--out", out)
    assert again.exit_code == 2 and "is not empty" in again.stderr and "--overwrite" in again.stderr
    # a failed --overwrite (a typo) keeps the old run
    before = {name: (out / name).read_bytes() for name in ("certify.csv", "summary.json")}
    typo = run("evaluate", *TINY, "--noise", "nope", "--out", out, "--overwrite")
    assert typo.exit_code == 2 and {n: (out / n).read_bytes() for n in before} == before
    # another command replaces it entirely: no stale file of the first run
    ok(run("evaluate", *TINY, "--limit", "2", *EVAL_TINY, "--out", out, "--overwrite"))
    summary = read_json(out / "summary.json")
    assert sorted(os.listdir(out)) == sorted([*summary["files"], "progress"])
    assert "certify.csv" not in summary["files"] and summary["command"] == "evaluate"
    assert sorted(os.listdir(out / "progress")) == ["evaluate.jsonl", "evaluate.meta.json", "run.json"]
    # files art-smoothing did not write are never removed
    (out / "notes.txt").write_text("mine")
    foreign = run("evaluate", *TINY, "--out", out, "--overwrite")
    assert foreign.exit_code == 2 and "notes.txt" in foreign.stderr
    assert (out / "notes.txt").read_text() == "mine" and (out / "evaluate.csv").exists()


def test_a_second_run_into_a_busy_folder_fails_at_once(run, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    lock = FolderLock(str(out))
    assert lock.acquire()  # as a running art-smoothing process holds it
    try:
        busy = run("certify", *TINY, "--out", out)
    finally:
        lock.release()
    assert busy.exit_code == 2 and "in use by another art-smoothing run" in busy.stderr
    assert busy.stderr.count("\n") == 1 and os.listdir(out) == []
    (out / ".art-smoothing.lock").write_text("12345\n")  # left by a killed run: no process holds it
    ok(run("certify", *TINY, "--out", out))
    assert not (out / ".art-smoothing.lock").exists()


def read_only_folder(tmp_path):
    """A folder this process cannot write in: a chmod 555 folder, or for root, whom permission bits do not stop,
    /sys (sysfs refuses new files to everyone)."""
    if os.geteuid() == 0:
        return "/sys"
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    return str(folder)


def test_unwritable_out_fails_before_any_work(run, tmp_path):
    cache = tmp_path / "fresh-cache"
    result = run("certify", *TINY, "--out", read_only_folder(tmp_path), env={"ART_SMOOTHING_CACHE": str(cache)})
    assert result.exit_code == 2, result.output
    assert "is not writable" in result.stderr and result.stderr.count("\n") == 1
    assert not cache.exists()  # nothing was trained


def test_unwritable_cache_warns_once_and_runs(run, tmp_path):
    cache = os.path.join(read_only_folder(tmp_path), "art-smoothing-cache")
    out = tmp_path / "run"
    result = ok(run("certify", *TINY, "--out", out, env={"ART_SMOOTHING_CACHE": cache}))
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING:")]
    assert len(warnings) == 1 and "cannot be written" in warnings[0] and "ART_SMOOTHING_CACHE" in warnings[0]
    model = read_json(out / "summary.json")["model"]
    assert model["cached"] is False and "path" not in model
    assert len(read_csv(out / "certify.csv")) == 6


# ---------------------------------------------------------------------------------------------- rerun
def test_rerun_never_overwrites_its_source_and_fails_on_differences(run, tmp_path, monkeypatch):
    out = tmp_path / "orig"
    ok(run("certify", *TINY, "--out", out))
    for target in (out, out / "inside"):
        refused = run("rerun", out, "--out", target)
        assert refused.exit_code == 2 and "never overwrites its source" in refused.stderr
    monkeypatch.chdir(tmp_path)
    same = ok(run("rerun", out))  # default: a new folder under results/
    (new,) = os.listdir(tmp_path / "results")
    assert "identical" in same.stdout and str(out) not in new
    rows = read_csv(out / "certify.csv")
    value = rows[2]["p_a_lower"]
    rows[2]["p_a_lower"] = value + "1"
    with open(out / "certify.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    tampered = (out / "certify.csv").read_text()
    differs = run("rerun", out)
    assert differs.exit_code == 1
    assert f"certify.csv differs from {out} at input 2, field p_a_lower: {value}1 (original) vs {value} (rerun)" \
        in differs.stdout
    assert (out / "certify.csv").read_text() == tampered  # the source is never written


# ---------------------------------------------------------------------------------------------- options
def test_factory_without_weights_warns_and_is_recorded_untrained(run, tmp_path, monkeypatch):
    (tmp_path / "user_nets.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    result = ok(run("certify", *TINY_RUN, "--model", "user_nets:make", "--out", tmp_path / "f"))
    warning = [line for line in result.stderr.splitlines() if "without --weights" in line]
    assert len(warning) == 1 and warning[0].startswith("WARNING:") and "--weights FILE" in warning[0]
    assert any("without --weights" in line for line in result.stdout.splitlines()[-3:])  # again at the end
    model = read_json(tmp_path / "f" / "summary.json")["model"]
    assert model["source"] == "factory" and model["untrained"] is True


def test_given_options_are_recorded_and_repeated_by_rerun(run, tmp_path):
    """A rerun repeats the options the user gave, so an option refused with a user model stays refused only
    where the user gave it (the summary records every option, defaults included)."""
    ok(run("train", "--epochs", "1", "--train-limit", "100", "--limit", "10", "--quiet", "--out", tmp_path / "m"))
    out = tmp_path / "ts"
    ok(run("certify", *TINY_RUN, "--model", tmp_path / "m" / "model.pt", "--out", out))
    summary = read_json(out / "summary.json")
    assert "epochs" not in summary["given"] and summary["params"]["epochs"] == 30
    assert {"limit", "n", "model", "out"} <= set(summary["given"])
    assert "identical" in ok(run("rerun", out, "--out", tmp_path / "again")).stdout


def test_chunk_size_does_not_change_certify(run, tmp_path):
    """CERTIFY's per-input results do not depend on the chunking (only the evaluation's attack does)."""
    ok(run("certify", *TINY, "--chunk-size", "1", "--out", tmp_path / "c1"))
    ok(run("certify", *TINY, "--chunk-size", "5", "--out", tmp_path / "c5"))
    assert (tmp_path / "c1" / "certify.csv").read_bytes() == (tmp_path / "c5" / "certify.csv").read_bytes()
