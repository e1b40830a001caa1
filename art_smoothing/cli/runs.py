"""One run's folder and records: where its files go, its timings, and the ``summary.json`` that holds
every parameter, the seed, the device and the library versions (``art-smoothing rerun SUMMARY.json``
repeats the run from it).

A folder belongs to one run. :meth:`Run.open` claims it before any work starts: it creates it, checks that
a file can be written there, takes a lock (a second run into the same folder fails at once; the operating
system drops the lock when the process dies, so a crash never leaves a stale one) and refuses a folder that
holds anything but with ``--overwrite`` (which removes only the files this tool writes, once the new run
starts writing) or ``--resume`` (which continues the interrupted run there, with the same options).
Every file is written atomically (a temporary file, then a rename), the summary last: a folder without
``summary.json`` holds no finished run. Per-input results go to ``progress/`` as they are computed (a
chunked backend's store), so Ctrl-C or a crash ends with one line saying how many inputs are saved and the
command that resumes; a run that fails before saving anything leaves nothing behind.

Per-input tables are written as CSV with infinite radii as ``inf`` and booleans as ``true``/``false``; the
summary is strict JSON (infinite radii as the string ``"inf"``, as the evaluation's own JSON writes them).
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import fnmatch
import importlib.metadata
import json
import logging
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import click
import numpy as np

from art_smoothing.cli.errors import CLIError, RunStopped
from art_smoothing.cli.lock import LOCK_NAME, FolderLock
from art_smoothing.cli.options import parse_radii
from art_smoothing.distributed import DifferentRunError
from art_smoothing.storage import atomic_write, atomic_write_text

logger = logging.getLogger(__name__)

__all__ = ["OUTPUT_NAMES", "PROGRESS_DIR", "SUMMARY_NAME", "Run", "versions"]

SUMMARY_NAME = "summary.json"
#: the per-input results of a run as it goes (a chunked backend's store) and ``run.json``, its options
PROGRESS_DIR = "progress"
#: the options of the run that wrote ``progress/`` (``--resume`` must repeat them)
RUN_RECORD = "run.json"
#: every name a run writes in its folder (``--overwrite`` removes these and nothing else)
OUTPUT_NAMES = ("summary.json", PROGRESS_DIR, "certify.csv", "evaluate.csv", "compare.csv", "curves.csv", "model.pt",
                "certified_accuracy.png", "certified_accuracy_*.png", "radius_scatter.png")
#: options that may change when a run is resumed (where and how it runs, not what it computes)
RESUME_FREE = frozenset({"out", "quiet", "resume", "overwrite", "backend", "workers", "ray_address", "device"})


#: where ``--overwrite`` keeps the replaced run until the new one has saved something (or finished)
REPLACED_DIR = ".replaced"


def _same_radii(a, b) -> bool:
    """Whether two ``--radii`` texts name the same grid (False when either is missing or does not parse)."""
    try:
        return a is not None and b is not None and parse_radii(a) == parse_radii(b)
    except CLIError:
        return False


def _is_output(name: str) -> bool:
    return (name.startswith(".tmp-") or name == REPLACED_DIR
            or any(fnmatch.fnmatchcase(name, pattern) for pattern in OUTPUT_NAMES))


class Run:
    """One invocation: parameters, output folder (claimed by :meth:`open`, released by :meth:`close`),
    timings, the chunked backends saving its per-input results, and the JSON summary.

    :param given: names of the options the user gave (recorded in the summary; ``rerun`` repeats them).
    :param flags: option name of each parameter (``noise_scale`` → ``--scale``), for messages.
    """

    def __init__(self, command: str, params: dict[str, Any], *, given=(), flags: dict[str, str] | None = None):
        self.command = command
        self.params = dict(params)
        self.given = sorted(given)
        self.flags = dict(flags or {})
        self.started = time.perf_counter()
        self.started_at = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        self.quiet = bool(params.get("quiet"))
        self.timings: dict[str, float] = {}
        self.files: list[str] = []
        self.out = _output_folder(command, params.get("out"))
        self.summary: dict[str, Any] = {}
        self.device = None
        self.resume_command: str | None = None
        self.backends: list = []
        self.estimators: list = []
        self.warnings: list[str] = []
        self.completed = False
        self._written: list[str] = []
        self._lock: FolderLock | None = None
        self._created = False
        self._to_clear: list[str] = []
        self._wrote_progress = False

    # ------------------------------------------------------------------ the folder
    def open(self) -> None:
        """Claim the output folder before any work: create it, check that it is writable, lock it, and check
        that it holds no other run (see the module docstring)."""
        existed = os.path.isdir(self.out)
        if self.params.get("resume") and not existed:
            raise CLIError(f"--resume: {self.out!r} does not exist; pass --out with the folder of the interrupted "
                           "run.")
        try:
            if self.params.get("out") is None:  # a new results/<command>-<time>[-k], even for runs started together
                os.makedirs(os.path.dirname(self.out), exist_ok=True)
                while True:
                    try:
                        os.mkdir(self.out)
                        break
                    except FileExistsError:
                        self.out = _output_folder(self.command, None)
            os.makedirs(self.out, exist_ok=True)
        except OSError as err:
            raise CLIError(f"Cannot create the output folder {self.out!r} ({err.strerror or err}): choose another "
                           "--out.") from None
        self._created = not existed
        probe = os.path.join(self.out, f".tmp-probe-{os.getpid()}")
        try:
            with open(probe, "w", encoding="utf-8") as fh:
                fh.write("art-smoothing write test\n")
            os.remove(probe)
        except OSError as err:
            self._remove_created()
            raise CLIError(f"--out {self.out!r} is not writable ({err.strerror or err}): choose a folder you can "
                           "write to.") from None
        lock = FolderLock(self.out)
        if not lock.acquire():
            raise CLIError(f"--out {self.out!r} is in use by another art-smoothing run (process {lock.holder()}): "
                           "wait for it to finish or choose another folder.")
        self._lock = lock
        try:
            self._check_contents()
        except BaseException:
            self.close()
            raise

    def _check_contents(self) -> None:
        entries = sorted(e for e in os.listdir(self.out) if e != LOCK_NAME)
        if self.params.get("resume"):
            self._check_resumable()
            return
        if not entries:
            return
        interrupted = PROGRESS_DIR in entries and SUMMARY_NAME not in entries
        if not self.params.get("overwrite"):
            what = "an interrupted run (--resume continues it)" if interrupted else ", ".join(entries[:4]) + (
                ", ..." if len(entries) > 4 else "")
            raise CLIError(f"--out {self.out!r} is not empty (it holds {what}): pass --overwrite to replace it, "
                           "or choose another folder.")
        foreign = [e for e in entries if not _is_output(e)]
        if foreign:
            raise CLIError(f"--overwrite removes only the files art-smoothing writes, but {self.out!r} also holds "
                           f"{', '.join(foreign[:3])}: choose another folder.")
        self._to_clear = entries  # removed when this run starts writing: a failed start keeps the old run

    def _check_resumable(self) -> None:
        record_path = os.path.join(self.out, PROGRESS_DIR, RUN_RECORD)
        if not os.path.isfile(record_path):
            raise CLIError(f"--resume: {self.out!r} holds no interrupted run (no {PROGRESS_DIR}/{RUN_RECORD}); run "
                           "without --resume.")
        with open(record_path, encoding="utf-8") as fh:
            record = json.load(fh)
        if record.get("command") != self.command:
            raise CLIError(f"--resume: {self.out!r} holds a {record.get('command')} run, not {self.command}: resume "
                           f"it with art-smoothing {record.get('command')} ... --resume.")
        old, new = record.get("params", {}), self._params_record()
        for key in sorted((set(old) | set(new)) - RESUME_FREE):
            if key == "chunk_size" and None in (old.get(key), new.get(key)):
                continue  # a default: the stored results keep their own size (the store refuses a different one)
            if key == "radii" and _same_radii(old.get(key), new.get(key)):
                continue  # 0.25,0.5 and 0.5,0.250 are the same grid
            if old.get(key) != new.get(key):
                flag = self.flags.get(key, "--" + key.replace("_", "-"))
                raise CLIError(f"--resume: the run in {self.out!r} has {flag} {_shown(old.get(key))}, this command "
                               f"{_shown(new.get(key))}: resume with the run's own options, or start afresh with "
                               "--overwrite.")
        device = None if self.device is None else str(self.device)
        if record.get("device") not in (None, device):
            raise CLIError(f"--resume: the run in {self.out!r} ran on {record['device']}, this command on {device}: "
                           f"pass --device {record['device']} (results would differ in the last bits).")

    def close(self) -> None:
        """Release the folder. A run that did not finish leaves no outputs (its own are removed) and keeps only
        the per-input results it saved (or resumed); with nothing saved, a folder it created is removed."""
        if self._lock is None:
            return
        try:
            saved = sum(b.saved()[0] for b in self.backends)
            if not self.completed:
                for path in self._written:
                    with contextlib.suppress(OSError):
                        os.remove(path)
                if self._wrote_progress and not self.params.get("resume") and not saved:
                    shutil.rmtree(self.progress_dir(), ignore_errors=True)
            self._settle_replaced(restore=not self.completed and not saved)
        finally:
            self._lock.release()
            self._lock = None
            if not self.completed:
                self._remove_created()

    def _remove_created(self) -> None:
        if self._created:
            with contextlib.suppress(OSError):
                os.rmdir(self.out)  # only when empty

    def _start_writing(self) -> None:
        """Set aside what ``--overwrite`` replaces (once, when the run first writes) in :data:`REPLACED_DIR`:
        removed when the run finishes or has saved per-input results, put back when it stops with nothing."""
        held = os.path.join(self.out, REPLACED_DIR)
        for name in self._to_clear:
            if name == REPLACED_DIR:  # left by a run that could not clean up: what it held is older still
                shutil.rmtree(held)
                continue
            os.makedirs(held, exist_ok=True)
            os.replace(os.path.join(self.out, name), os.path.join(held, name))
        self._to_clear = []

    def _settle_replaced(self, restore: bool) -> None:
        held = os.path.join(self.out, REPLACED_DIR)
        if not os.path.isdir(held):
            return
        if restore:
            for name in os.listdir(held):
                with contextlib.suppress(OSError):
                    os.replace(os.path.join(held, name), os.path.join(self.out, name))
        shutil.rmtree(held, ignore_errors=True)

    def path(self, name: str) -> str:
        """Path of the output ``name`` in the run's folder (one of :data:`OUTPUT_NAMES`)."""
        if not _is_output(name):
            raise RuntimeError(f"{name!r} is not in OUTPUT_NAMES: --overwrite would not know it.")
        self._start_writing()
        return os.path.join(self.out, name)

    def progress_dir(self, part: str | None = None) -> str:
        """The folder of the per-input results (``part``: a subfolder, one per certification of compare)."""
        folder = os.path.join(self.out, PROGRESS_DIR)
        return folder if part is None else os.path.join(folder, part)

    def track(self, backend):
        """Count the per-input results ``backend`` saves (for the line of an interrupted run); returns it."""
        self.backends.append(backend)
        return backend

    def track_estimator(self, estimator):
        """Remember a smoothed classifier of the run: a compiled forward pass that fell back to eager is reported
        in the summary (``compile_fallback``) and warned about above the footer; returns it."""
        self.estimators.append(estimator)
        return estimator

    def warn(self, message: str) -> None:
        """A warning on stderr now, repeated above the footer (what the user sees last)."""
        logger.warning(message)
        self.warnings.append(message)

    # ------------------------------------------------------------------ resumable work
    @contextlib.contextmanager
    def resumable(self, total: int) -> Iterator[None]:
        """Computing and writing results of ``total`` inputs through the tracked chunked backends: their options
        are recorded in ``progress/run.json`` first; Ctrl-C or a failure inside ends the run with one line
        (:class:`RunStopped`) saying how many inputs are saved and the command that resumes. User mistakes
        (``ValueError``) stay what they are."""
        if not self.backends:  # nothing saved per input (exact certification runs in one piece)
            yield
            return
        self._start_writing()
        if self.params.get("resume"):  # the folder holds an unfinished run until the new summary is written
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(self.out, SUMMARY_NAME))
        record = {"command": self.command, "params": self._params_record(), "given": self.given,
                  "device": None if self.device is None else str(self.device), "resume": self.resume_command}
        record_path = os.path.join(self.progress_dir(), RUN_RECORD)
        if not os.path.isfile(record_path):
            atomic_write_text(record_path, json.dumps(record, indent=2))
            self._wrote_progress = True
        try:
            yield
        except DifferentRunError as err:  # the options are the same (checked by open): the files are not
            raise CLIError(f"--resume: the results saved in {self.progress_dir()!r} come from other data or another "
                           f"model (they differ in: {', '.join(err.differ)}); the files changed since the run "
                           "started: start afresh with --overwrite.") from None
        except KeyboardInterrupt:
            raise RunStopped(self._stopped("Interrupted", total), 130) from None
        except (ValueError, click.ClickException):
            raise
        except Exception as err:  # noqa: BLE001 - any failure: say what is saved and how to go on
            first = (str(err).strip().splitlines() or [""])[0]
            raise RunStopped(self._stopped(f"Error: the run stopped ({type(err).__name__}: {first})", total),
                             1) from err

    def _stopped(self, head: str, total: int) -> str:
        saved = sum(b.saved()[0] for b in self.backends)
        if not saved:
            return f"{head} before any input was saved: nothing to resume."
        where = os.path.join(self.out, PROGRESS_DIR)
        return f"{head}: {saved} of {total} inputs saved in {where}; resume with: {self.resume_command}"

    # ------------------------------------------------------------------ files
    def add_file(self, path: str | None) -> None:
        """List a written file in the summary (``None``: a plot skipped without matplotlib)."""
        if path:
            self.files.append(os.path.basename(path))
            self._written.append(path)

    @contextlib.contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """Add the wall time of the ``with`` block to ``timings[name]`` (seconds)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - start, 3)

    def write_csv(self, name: str, rows: list[dict[str, Any]]) -> str:
        """Write ``rows`` (columns in the order of the first row's keys) as ``name`` and list the file."""
        path = self.path(name)
        fields = list(rows[0]) if rows else ["index"]

        def write(tmp: str) -> None:
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=fields)
                writer.writeheader()
                for row in rows:
                    writer.writerow({k: _csv_value(row.get(k)) for k in fields})

        atomic_write(path, write)
        self.add_file(path)
        return path

    def write_plot(self, name: str, draw: Callable[[str], str | None]) -> str | None:
        """Draw a figure through ``draw(path)`` (a ``plotting.plot_*`` call returning the path, or None without
        matplotlib) into a temporary file renamed to ``name``; list the file."""
        path = self.path(name)
        drawn: list[str | None] = []

        def write(tmp: str) -> None:
            drawn.append(draw(tmp))
            if drawn[-1] is None:
                raise _NoPlot

        try:
            atomic_write(path, write)
        except _NoPlot:
            return None
        self.add_file(path)
        return path

    def write_summary(self, **sections) -> str:
        """Write ``summary.json`` (last: its presence marks a finished run): the run's parameters, seed, device,
        versions, ``sections`` (data, noise, model, results, ...), timings and files."""
        self.timings["total_seconds"] = round(time.perf_counter() - self.started, 3)
        fallback = sorted({e.compile_failure for e in self.estimators if getattr(e, "compile_failure", None)})
        for reason in fallback:
            self.warn(f"--compile: torch.compile of the model failed ({reason}); the model ran eagerly.")
        doc = {
            "command": self.command,
            "argv": _command_line(),
            "rerun": f"art-smoothing rerun {os.path.join(self.out, SUMMARY_NAME)}",
            "params": self._params_record(),
            "given": self.given,
            "seed": self.params.get("seed"),
            "device": None if self.device is None else str(self.device),
            "started_at": self.started_at,
            "cwd": os.getcwd(),
            "versions": versions(),
            **sections,
            "timings": self.timings,
            "files": sorted(set(self.files + [SUMMARY_NAME])),
            "chunk_size_used": sorted({b.used_chunk_size for b in self.backends if b.used_chunk_size}),
            "compile_fallback": fallback or None,
        }
        self.summary = _jsonable(doc)
        path = self.path(SUMMARY_NAME)
        atomic_write_text(path, json.dumps(self.summary, indent=2, allow_nan=False))
        self._written.append(path)
        self.completed = True
        return path

    def _params_record(self) -> dict[str, Any]:
        """The parameters as recorded (paths of existing data, model and weights files made absolute, so that
        a rerun from elsewhere finds the same files)."""
        params = {}
        for key, value in self.params.items():
            if key in ("data", "model", "weights") and isinstance(value, str) and os.path.exists(value):
                value = os.path.abspath(value)
            params[key] = list(value) if isinstance(value, tuple) else value
        return _jsonable(params)

    def footer(self) -> str:
        """The last lines a command prints: the run's warnings again, then the folder, its files and the total
        time."""
        lines = [f"WARNING: {w}" for w in self.warnings]
        lines.append(f"results: {self.out}  ({', '.join(sorted(set(self.files + [SUMMARY_NAME])))}) in "
                     f"{self.timings.get('total_seconds', 0):.1f} s")
        return "\n".join(lines)


class _NoPlot(Exception):
    """A plot function returned None (no matplotlib): nothing to rename into place."""


def _shown(value) -> str:
    if value is None:
        return "(not given)"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "(none)"
    return str(value)


def _output_folder(command: str, out: str | None) -> str:
    """``out``, or a new ``results/<command>-<time>[-k]``; not created yet."""
    if out is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        base = os.path.join("results", f"{command}-{stamp}")
        out, k = base, 1
        while os.path.exists(out):
            k += 1
            out = f"{base}-{k}"
    if os.path.exists(out) and not os.path.isdir(out):
        raise CLIError(f"--out {out!r} is a file; give a folder.")
    return out


def versions() -> dict[str, str]:
    """Versions of Python, the platform and every library that can change a result."""
    import art
    import scipy
    import sklearn
    import torch

    import art_smoothing

    out = {"art_smoothing": art_smoothing.__version__, "python": platform.python_version(),
           "platform": platform.platform(), "torch": torch.__version__,
           "adversarial-robustness-toolbox": art.__version__,
           "numpy": np.__version__, "scipy": scipy.__version__, "scikit-learn": sklearn.__version__,
           "click": importlib.metadata.version("click")}
    try:
        import matplotlib

        out["matplotlib"] = matplotlib.__version__
    except ImportError:
        pass
    out["torch_threads"] = str(torch.get_num_threads())
    return out


def _command_line() -> list[str] | None:
    """The arguments of ``art-smoothing ...`` / ``python -m art_smoothing ...`` (None in-process)."""
    launcher = os.path.basename(sys.argv[0]) if sys.argv else ""
    if launcher.startswith("art-smoothing") or os.path.normpath(sys.argv[0]).endswith(
            os.path.join("art_smoothing", "__main__.py")):
        return sys.argv[1:]
    return None


def _jsonable(value):
    """JSON-safe copy: numpy scalars and arrays to Python, infinite radii as "inf" (as the evaluation's
    own JSON writes them), NaN as null, keys as strings."""
    from art_smoothing.evaluation import jsonable

    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return jsonable(value)


def _csv_value(v):
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v)).lower()
    return v
