"""What the commands tell the user and record: the aligned text tables on stdout, progress lines on
stderr, a noise's short description, the round radii of the tables, and the data / model /
certificate sections of ``summary.json``."""

from __future__ import annotations

import math
from typing import Any

import click
import numpy as np

from art_smoothing import registry

__all__ = ["certificate_section", "data_section", "describe_noise", "draws_line", "draws_section", "format_table",
           "model_section", "nice_radii", "say"]


def format_table(headers: list[str], rows: list[list[Any]]) -> str:
    """Plain aligned text table: numbers right-aligned (floats with 3 decimals), text left-aligned."""
    cells = [[str(h) for h in headers]] + [[c if isinstance(c, str) else f"{c:.3f}" if isinstance(c, float)
                                            else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [all(_is_number(r[i]) for r in cells[1:]) and len(cells) > 1 for i in range(len(headers))]
    lines = []
    for k, row in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if numeric[i] else c.ljust(w)
                               for i, (c, w) in enumerate(zip(row, widths))).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def nice_radii(largest: float, count: int = 6) -> list[float]:
    """``count`` round radii 0, s, 2s, ... covering ``largest`` (s from 1, 2, 2.5, 5 × 10^k)."""
    if not math.isfinite(largest) or largest <= 0:
        return [0.0]
    raw = largest / (count - 1)
    base = 10.0 ** math.floor(math.log10(raw))
    step = next(m * base for m in (1, 2, 2.5, 5, 10) if m * base >= raw * 0.999)
    return [round(i * step, 10) for i in range(count)]


def describe_noise(noise) -> str:
    """``laplace(scale=0.5)``: the noise's name and the parameters that differ from their defaults."""
    record = registry.noise_record(noise)
    defaults = {p.name: p.default for p in registry.resolve_noise(record["name"]).params if not p.required}
    shown = []
    for key, value in noise.params().items():
        if key in defaults and (value == defaults[key] or (isinstance(value, tuple) and list(value) == list(
                defaults[key] or ()))):
            continue
        if key == "clip_values" or value is None:
            continue
        shown.append(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}")
    return f"{record['name']}({', '.join(shown)})"


def say(params: dict[str, Any], message: str) -> None:
    """A progress line on stderr (not with --quiet)."""
    if not params.get("quiet"):
        click.echo(f"- {message}", err=True)


def data_section(data, x) -> dict[str, Any]:
    return {"name": data.name, "input_shape": list(data.input_shape), "nb_classes": data.nb_classes,
            "train_size": len(data.x_train), "test_size": len(data.x_test), "used_test_inputs": len(x),
            "clip_values": None if data.clip_values is None else list(data.clip_values)}


def model_section(info) -> dict[str, Any]:
    return {"source": info.source, "spec": info.spec, **info.details}


def certificate_section(params, norm_label: str, method, *, box_used: bool, form: str) -> dict[str, Any]:
    return {"norm": norm_label, "method": params.get("method") or "best", "resolved_method": method,
            "box_used": box_used, "form": form, "n": params["n"], "n0": params["n0"],
            "alpha": params["alpha"], "deterministic": bool(params.get("deterministic")),
            "sequential": bool(params.get("sequential")), "randomized": bool(params.get("randomized")),
            "backend": params.get("backend", "local")}


def draws_section(n_used, n: int) -> dict[str, Any] | None:
    """Estimation draws a sequential certification used (``n_used``, one per input) against the ``n`` per input
    of fixed-n CERTIFY (None when the certification was fixed-n)."""
    if n_used is None:
        return None
    n_used = np.asarray(n_used, dtype=np.int64)
    used, fixed = int(n_used.sum()), int(n) * len(n_used)
    return {"n_used_total": used, "fixed_n_total": fixed, "fewer": fixed / max(used, 1),
            "n_used_mean": float(n_used.mean()) if len(n_used) else 0.0}


def draws_line(draws: dict[str, Any]) -> str:
    return (f"sequential: {draws['n_used_total']} estimation draws used of {draws['fixed_n_total']} for fixed-n "
            f"({draws['fewer']:.1f}x fewer, {draws['n_used_mean']:.0f} per input)")
