"""Certification throughput: our CERTIFY (eager, channels_last, compiled) vs the cost floor vs ART 1.20.

For each model configuration, measured side by side in one run (noisy samples per second, counting
the n0 selection and n estimation draws of every input), as ratios to the floor:

* floor     — the base model's raw eager forward passes (NCHW) on pre-drawn noisy batches (what CERTIFY
  cannot avoid with today's eager model);
* torch CL / torch compiled — the same raw passes with the model and batches in channels_last, and through
  ``torch.compile(model)``: what plain torch reaches, for reference;
* ours      — ``SmoothedClassifier.certify`` with ``compile=False`` (noise drawing, votes, bounds and radii
  included);
* ours CL   — the same on a copy of the model converted to channels_last (``model.to(memory_format=
  torch.channels_last)``; its batches stay NCHW and the first convolution reorders them);
* compiled  — ``compile=True`` (standardisation and model through ``torch.compile``, fixed padded shapes);
* ART       — ``art.estimators.certification.PyTorchRandomizedSmoothing.certify`` on the same model.

``compile s`` is the first compiled certification's time minus a steady one: dynamo tracing and inductor's
code generation for every shape the run uses (``--cold-compile`` switches inductor's on-disk caches off, as a
first run on a machine finds them; otherwise a rerun finds its kernels there).

Usage: ``python benchmarks/certify_throughput.py [--inputs 20] [--n 2000] [--device cuda]``.
Random weights are fine for timing. Throughputs are medians over ``--repeats`` interleaved rounds; ratios are
medians of per-round ratios. ``faults/pass`` is the median number of minor page faults per forward pass
(floor/ours/ART).

Allocator. Building a ``SmoothedClassifier`` on the CPU tunes glibc's allocator for the whole process
(:mod:`art_smoothing.runtime`), so the columns of one table share the same allocator settings. With
``--allocator both`` (the default on Linux) the script also runs itself in a subprocess with
``ART_SMOOTHING_MALLOC=default`` and prints that table too: the same comparison under glibc's own settings,
where fresh pages for every pass's activations cost the floor, ours and ART system time alike.
"""

from __future__ import annotations

import argparse
import copy
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch
from torch import nn

from art_smoothing import SmoothedClassifier
from art_smoothing.models import DigitsCNN, SmallCNN
from art_smoothing.noise import GaussianNoise
from art_smoothing.runtime import ENV_VAR, allocator_tuned


def art_classifier(model, input_shape, device_type):
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(), input_shape=input_shape, nb_classes=10,
                             clip_values=(0.0, 1.0), device_type=device_type)


def interleaved_times(fns, repeats):
    """Times of each function in ``repeats`` rounds, run in turn within a round so that background load
    affects all of them alike; ratios are then taken within a round (see ``median_ratio``)."""
    times = [[] for _ in fns]
    faults = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            if fn is None:
                times[i].append(float("nan"))
                faults[i].append(float("nan"))
                continue
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t0 = time.perf_counter()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[i].append(time.perf_counter() - t0)
            faults[i].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    return [np.asarray(t) for t in times], [np.asarray(f, dtype=np.float64) for f in faults]


def median_ratio(t_num, t_den):
    """Median over rounds of t_num/t_den (a throughput ratio den/num): robust to load bursts."""
    return float(np.median(t_num / t_den))


def run_config(name, model, input_shape, args, device_type):
    model.eval()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(args.inputs, *input_shape)).astype(np.float32)
    total = args.inputs * (args.n0 + args.n)
    sigma = 0.25
    cl = torch.channels_last if len(input_shape) == 3 else torch.contiguous_format
    model_cl = copy.deepcopy(model).to(memory_format=cl)

    base = art_classifier(model, input_shape, device_type)
    device = base.device

    def smoothed(classifier, compile):
        return SmoothedClassifier(classifier, noise=GaussianNoise(sigma), sample_size=args.n0, alpha=0.001,
                                  seed=0, compile=compile)

    ours, ours_cl = smoothed(base, False), smoothed(art_classifier(model_cl, input_shape, device_type), False)
    compiled = smoothed(base, True)

    noisy = torch.as_tensor(x[:1], device=device) + sigma * torch.randn((args.batch_size, *input_shape),
                                                                        device=device)
    noisy_cl = noisy.contiguous(memory_format=cl)
    torch_compiled = torch.compile(model, dynamic=False)

    def raw(net, batch):
        def passes():
            with torch.no_grad():
                done = 0
                while done < total:
                    b = min(args.batch_size, total - done)
                    net(batch[:b]).argmax(1)
                    done += b
        return passes

    def certify(estimator):
        return lambda: estimator.certify(x, n=args.n, batch_size=args.batch_size)

    from art.estimators.certification.randomized_smoothing import PyTorchRandomizedSmoothing

    art_rs = PyTorchRandomizedSmoothing(model=model, loss=nn.CrossEntropyLoss(), input_shape=input_shape,
                                        nb_classes=10, clip_values=(0.0, 1.0), sample_size=args.n0, scale=sigma,
                                        alpha=0.001, device_type=device_type)

    def run_art():
        art_rs.certify(x, n=args.n, batch_size=args.batch_size)

    certify(ours)()  # warm-up (allocator, threads)
    t0 = time.perf_counter()
    certify(compiled)()  # compiles every shape the run uses
    first = time.perf_counter() - t0
    raw(torch_compiled, noisy)()
    fns = {"floor": raw(model, noisy), "torch CL": raw(model_cl, noisy_cl),
           "torch compiled": raw(torch_compiled, noisy), "ours": certify(ours), "ours CL": certify(ours_cl),
           "compiled": certify(compiled), "ART": None if args.skip_art else run_art}
    times, faults = interleaved_times(list(fns.values()), args.repeats)
    t = dict(zip(fns, times))
    passes = args.inputs * (-(-args.n0 // args.batch_size) + -(-args.n // args.batch_size))
    row = {"config": name, "d": int(np.prod(input_shape)), "floor/s": total / np.median(t["floor"]),
           "compile s": first - float(np.median(t["compiled"])),
           "faults/pass": [float(np.median(faults[list(fns).index(k)])) / passes for k in ("floor", "ours",
                                                                                             "ART")]}
    for k in fns:
        if k != "floor":
            row[k] = median_ratio(t["floor"], t[k])
    return row


COLUMNS = ("torch CL", "torch compiled", "ours", "ours CL", "compiled", "ART")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=10, help="inputs certified per run")
    parser.add_argument("--n", type=int, default=2000, help="estimation draws per input")
    parser.add_argument("--n0", type=int, default=100, help="selection draws per input")
    parser.add_argument("--batch-size", type=int, default=500, help="noisy samples per forward pass (all three)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip-art", action="store_true")
    parser.add_argument("--cold-compile", action="store_true",
                        help="inductor's on-disk caches off: compile times as on a machine's first run")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--allocator", choices=["tuned", "default", "both"], default="both",
                        help="glibc allocator settings: art_smoothing's (tuned), glibc's own (default, via "
                             f"{ENV_VAR}=default), or both tables, the second from a subprocess")
    args = parser.parse_args(argv)
    if args.allocator == "default" and os.environ.get(ENV_VAR) != "default":
        os.environ[ENV_VAR] = "default"  # read when the first SmoothedClassifier is built
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cold_compile:
        import torch._inductor.config as inductor_config

        inductor_config.force_disable_caches = True
    device_type = "gpu" if args.device.startswith("cuda") else "cpu"
    torch.manual_seed(0)
    configs = [
        ("digits CNN (1x8x8)", DigitsCNN(width=16), (1, 8, 8)),
        ("wide digits CNN (1x8x8)", DigitsCNN(width=64), (1, 8, 8)),
        ("CIFAR-shaped CNN (3x32x32)", SmallCNN(width=16), (3, 32, 32)),
    ]
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = [run_config(name, model, shape, args, device_type) for name, model, shape in configs]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"device={args.device} threads={torch.get_num_threads()} inputs={args.inputs} n0={args.n0} n={args.n} "
          f"batch={args.batch_size} allocator={'tuned' if allocator_tuned() else 'glibc default'} "
          f"load={load0:.2f}->{load:.2f} (medians over {args.repeats} interleaved rounds; ratios per round)")
    widths = [max(len(c), 5) + 2 for c in COLUMNS]
    header = f"{'config':<28}{'d':>6}{'floor/s':>9}" + "".join(f"{c:>{w}}" for c, w in zip(COLUMNS, widths)) \
        + f"{'compile s':>11}  faults/pass floor/ours/ART"
    print(header)
    print(f"{'':<43}ratios to the floor (samples/s over the floor's)")
    print("-" * len(header))
    for r in rows:
        fl = "/".join("-" if np.isnan(f) else f"{f:.0f}" for f in r["faults/pass"])
        ratios = "".join(f"{r[c]:>{w}.2f}" for c, w in zip(COLUMNS, widths))
        print(f"{r['config']:<28}{r['d']:>6}{r['floor/s']:>9.0f}{ratios}{r['compile s']:>11.1f}  {fl}")
    sys.stdout.flush()
    if args.allocator == "both" and allocator_tuned():
        print()
        cmd = [sys.executable, os.path.abspath(__file__), *(argv if argv is not None else sys.argv[1:]),
               "--allocator", "default"]
        subprocess.run(cmd, env={**os.environ, ENV_VAR: "default"}, check=True)
    return rows


if __name__ == "__main__":
    main()
