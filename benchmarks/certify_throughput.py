"""Certification throughput: this project's CERTIFY vs the cost floor vs ART 1.20's randomized smoothing.

For each model configuration, measured side by side in one run (noisy samples per second, counting
the n0 selection and n estimation draws of every input):

* floor   — the base model's raw forward passes on pre-drawn noisy batches (what CERTIFY cannot avoid);
* ours    — ``SmoothedClassifier.certify`` (noise drawing, votes, bounds and radii included);
* ART     — ``art.estimators.certification.PyTorchRandomizedSmoothing.certify`` on the same model.

Usage: ``python benchmarks/certify_throughput.py [--inputs 20] [--n 2000] [--device cuda]``.
Random weights are fine for timing. Throughputs are medians over ``--repeats`` interleaved rounds; ratios are
medians of per-round ratios. ``faults/pass`` is the median number of minor page faults per forward pass.

Allocator. Building a ``SmoothedClassifier`` on the CPU tunes glibc's allocator for the whole process
(:mod:`art_smoothing.runtime`), so the three columns of one table share the same allocator settings. With
``--allocator both`` (the default on Linux) the script also runs itself in a subprocess with
``ART_SMOOTHING_MALLOC=default`` and prints that table too: the same comparison under glibc's own settings,
where fresh pages for every pass's activations cost the floor, ours and ART system time alike.
"""

from __future__ import annotations

import argparse
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

    base = art_classifier(model, input_shape, device_type)
    device = base.device
    ours = SmoothedClassifier(base, noise=GaussianNoise(sigma), sample_size=args.n0, alpha=0.001, seed=0)

    noisy = torch.as_tensor(x[:1], device=device) + sigma * torch.randn((args.batch_size, *input_shape), device=device)

    def floor():
        with torch.no_grad():
            done = 0
            while done < total:
                b = min(args.batch_size, total - done)
                model(noisy[:b]).argmax(1)
                done += b

    def run_ours():
        ours.certify(x, n=args.n, batch_size=args.batch_size)

    from art.estimators.certification.randomized_smoothing import PyTorchRandomizedSmoothing

    art_rs = PyTorchRandomizedSmoothing(model=model, loss=nn.CrossEntropyLoss(), input_shape=input_shape,
                                        nb_classes=10, clip_values=(0.0, 1.0), sample_size=args.n0, scale=sigma,
                                        alpha=0.001, device_type=device_type)

    def run_art():
        art_rs.certify(x, n=args.n, batch_size=args.batch_size)

    run_ours()  # warm-up (allocator, threads)
    (t_floor, t_ours, t_art), faults = interleaved_times([floor, run_ours, None if args.skip_art else run_art],
                                                         args.repeats)
    passes = args.inputs * (-(-args.n0 // args.batch_size) + -(-args.n // args.batch_size))
    return {
        "config": name,
        "d": int(np.prod(input_shape)),
        "floor/s": total / np.median(t_floor),
        "ours/s": total / np.median(t_ours),
        "ART/s": total / np.median(t_art),
        "ours/floor": median_ratio(t_floor, t_ours),
        "ART/floor": median_ratio(t_floor, t_art),
        "ours/ART": median_ratio(t_art, t_ours),
        "faults/pass": [float(np.median(f)) / passes for f in faults],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=10, help="inputs certified per run")
    parser.add_argument("--n", type=int, default=2000, help="estimation draws per input")
    parser.add_argument("--n0", type=int, default=100, help="selection draws per input")
    parser.add_argument("--batch-size", type=int, default=500, help="noisy samples per forward pass (all three)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip-art", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--allocator", choices=["tuned", "default", "both"], default="both",
                        help="glibc allocator settings: art_smoothing's (tuned), glibc's own (default, via "
                             f"{ENV_VAR}=default), or both tables, the second from a subprocess")
    args = parser.parse_args(argv)
    if args.allocator == "default" and os.environ.get(ENV_VAR) != "default":
        os.environ[ENV_VAR] = "default"  # read when the first SmoothedClassifier is built
    if args.threads:
        torch.set_num_threads(args.threads)
    device_type = "gpu" if args.device.startswith("cuda") else "cpu"
    torch.manual_seed(0)
    configs = [
        ("digits CNN (1x8x8)", DigitsCNN(width=16), (1, 8, 8)),
        ("wide digits CNN (1x8x8)", DigitsCNN(width=64), (1, 8, 8)),
        ("CIFAR-shaped CNN (3x32x32)", SmallCNN(width=16), (3, 32, 32)),
    ]
    rows = [run_config(name, model, shape, args, device_type) for name, model, shape in configs]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"device={args.device} threads={torch.get_num_threads()} inputs={args.inputs} n0={args.n0} n={args.n} "
          f"batch={args.batch_size} allocator={'tuned' if allocator_tuned() else 'glibc default'} load={load:.2f} "
          f"(medians over {args.repeats} interleaved rounds; ratios per round)")
    header = f"{'config':<28}{'d':>6}{'floor/s':>11}{'ours/s':>11}{'ART/s':>11}{'ours/floor':>12}{'ART/floor':>11}" \
             f"{'ours/ART':>10}  faults/pass floor/ours/ART"
    print(header)
    print("-" * len(header))
    for r in rows:
        fl = "/".join("-" if np.isnan(f) else f"{f:.0f}" for f in r["faults/pass"])
        print(f"{r['config']:<28}{r['d']:>6}{r['floor/s']:>11.0f}{r['ours/s']:>11.0f}{r['ART/s']:>11.0f}"
              f"{r['ours/floor']:>12.2f}{r['ART/floor']:>11.2f}{r['ours/ART']:>10.2f}  {fl}")
    sys.stdout.flush()
    if args.allocator == "both" and allocator_tuned():
        print()
        cmd = [sys.executable, os.path.abspath(__file__), *(argv if argv is not None else sys.argv[1:]),
               "--allocator", "default"]
        subprocess.run(cmd, env={**os.environ, ENV_VAR: "default"}, check=True)
    return rows


if __name__ == "__main__":
    main()
