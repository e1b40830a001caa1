"""One run's folder and records: where its files go, its timings, and the ``summary.json`` that holds
every parameter, the seed, the device and the library versions (``art-smoothing rerun SUMMARY.json``
repeats the run from it).

The folder (``--out``, default ``results/<command>-<time>``) is created when the first file is written,
so a run that fails on bad input leaves nothing behind. Per-input tables are written as CSV with
infinite radii as ``inf`` and booleans as ``true``/``false``; the summary is strict JSON (infinite
radii as the string ``"inf"``, as the evaluation's own JSON writes them).
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import importlib.metadata
import json
import math
import os
import platform
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from art_smoothing.cli.errors import CLIError

__all__ = ["SUMMARY_NAME", "Run", "versions"]

SUMMARY_NAME = "summary.json"


class Run:
    """One invocation: parameters, output folder, timings and the JSON summary."""

    def __init__(self, command: str, params: dict[str, Any]):
        self.command = command
        self.params = dict(params)
        self.started = time.perf_counter()
        self.started_at = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        self.quiet = bool(params.get("quiet"))
        self.timings: dict[str, float] = {}
        self.files: list[str] = []
        self.out = _output_folder(command, params.get("out"))
        self.summary: dict[str, Any] = {}
        self.device = None

    def path(self, name: str) -> str:
        """Path of the file ``name`` in the run's folder (created on first use)."""
        try:
            os.makedirs(self.out, exist_ok=True)
        except OSError as err:
            raise CLIError(f"Cannot create the output folder {self.out!r}: {err.strerror or err}.") from None
        return os.path.join(self.out, name)

    def add_file(self, path: str | None) -> None:
        """List a written file in the summary (``None``: a plot skipped without matplotlib)."""
        if path:
            self.files.append(os.path.basename(path))

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
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            for row in rows:
                writer.writerow({k: _csv_value(row.get(k)) for k in fields})
        self.add_file(path)
        return path

    def write_summary(self, **sections) -> str:
        """Write ``summary.json``: the run's parameters, seed, device, versions, ``sections`` (data, noise,
        model, results, ...), timings and files."""
        self.timings["total_seconds"] = round(time.perf_counter() - self.started, 3)
        params = {}
        for key, value in self.params.items():
            if key in ("data", "model", "weights") and isinstance(value, str) and os.path.exists(value):
                value = os.path.abspath(value)  # so that a rerun from elsewhere finds the same files
            params[key] = list(value) if isinstance(value, tuple) else value
        doc = {
            "command": self.command,
            "argv": _command_line(),
            "rerun": f"art-smoothing rerun {os.path.join(self.out, SUMMARY_NAME)}",
            "params": params,
            "seed": self.params.get("seed"),
            "device": None if self.device is None else str(self.device),
            "started_at": self.started_at,
            "cwd": os.getcwd(),
            "versions": versions(),
            **sections,
            "timings": self.timings,
            "files": sorted(set(self.files + [SUMMARY_NAME])),
        }
        self.summary = _jsonable(doc)
        path = self.path(SUMMARY_NAME)
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.summary, fh, indent=2, allow_nan=False)
        return path

    def footer(self) -> str:
        """The last line a command prints: the folder, its files and the total time."""
        return (f"results: {self.out}  ({', '.join(sorted(set(self.files + [SUMMARY_NAME])))}) in "
                f"{self.timings.get('total_seconds', 0):.1f} s")


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
