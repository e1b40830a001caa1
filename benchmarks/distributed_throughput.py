"""CERTIFY throughput: the single-process path against 1 and 2 local Ray workers, same inputs, same seed.

Measured (noisy samples per second, counting the n0 selection and n estimation draws of every input):

* local/T  — ``smoothed.certify_detailed(x, n)`` in this process with T torch threads;
* ray xW   — ``backend=RayBackend(num_workers=W)`` with one torch thread per worker, workers kept
  up between calls (warm: actor start-up and model shipping excluded; the first, cold call is
  reported separately, as is ``ray.init``).

The modes are measured round-robin (local/1, local/2, ray x1, ray x2, again ...) and each figure is
the best of ``--repeats`` rounds, so that load from other processes on a shared machine does not
favour one column.

Every Ray result is checked bit for bit against the one-thread local result (same seed, same
``batch_size``, same thread count per process: the documented condition for bit-identity).

Usage: ``python benchmarks/distributed_throughput.py [--inputs 32] [--n 2000] [--repeats 3]``.
Random weights are fine for timing. On a shared machine read the load average printed with the
table: other processes competing for the two cores lower every column.

Scaling on a multi-GPU node (not measured here: no GPU on the benchmark machine). ``RayBackend()``
starts one actor per GPU (``num_gpus=1`` each); the inputs are cut into about four chunks per
worker (at most 64 inputs each), handed to whichever actor is free, two in flight per actor.
Memory per worker: one copy of the model's weights on its GPU (shipped once through the object
store), plus the activations of one forward pass of ``batch_size`` noisy copies, plus one block
of noise (``min(4096, 2^24 / d)`` draws of dimension d: at most 64 MiB in float32); host memory
holds each chunk in flight once in the object store. Chunks are independent, so throughput grows
with the number of GPUs until the driver's per-chunk overhead (a few ms: scheduling, JSON lines
when ``output_dir`` is set) matters, i.e. it stays linear whenever one chunk costs far more than
that — e.g. 64 ImageNet inputs × 100 000 draws are minutes of GPU time per chunk.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from art_smoothing import SmoothedClassifier
from art_smoothing.distributed import RayBackend
from art_smoothing.models import DigitsCNN, SmallCNN, make_classifier
from art_smoothing.noise import GaussianNoise

FIELDS = ("prediction", "radius", "p_a_lower", "p_b_upper", "counts", "counts_selection")


def with_threads(threads: int, fn):
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return fn()
    finally:
        torch.set_num_threads(old)


def same(a, b) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in FIELDS)


def run_config(name, model, shape, args) -> dict:
    model.eval()
    x = np.random.default_rng(0).uniform(0, 1, size=(args.inputs, *shape)).astype(np.float32)
    smoothed = SmoothedClassifier(make_classifier(model, shape, 10), GaussianNoise(0.25), sample_size=args.n0,
                                  seed=0)
    total = args.inputs * (args.n0 + args.n)

    def certify(backend="local"):
        return smoothed.certify_detailed(x, args.n, batch_size=args.batch_size, backend=backend)

    row = {"config": name, "d": int(np.prod(shape)), "samples": total}
    threads = sorted({1, os.cpu_count() or 1})
    # Both pools stay up (0.5 logical CPU each worker, one torch thread each) so that the modes can be
    # measured round-robin: on a shared machine, load that comes and goes then hits every column alike.
    pools = {w: RayBackend(num_workers=w, cpus_per_worker=0.5, progress=False) for w in (1, 2)}
    times = {k: [] for k in [f"local/{t}" for t in threads] + ["ray x1", "ray x2"]}
    results = {}
    try:
        for w, backend in pools.items():
            backend.__enter__()
            t0 = time.perf_counter()
            results[f"cold x{w}"] = certify(backend)
            row[f"cold x{w} s"] = time.perf_counter() - t0
        for _ in range(args.repeats):
            for key, spent in times.items():
                t0 = time.perf_counter()
                if key.startswith("local"):
                    results[key] = with_threads(int(key.split("/")[1]), certify)
                else:
                    results[key] = certify(pools[int(key[-1])])
                spent.append(time.perf_counter() - t0)
    finally:
        for backend in pools.values():
            backend.__exit__(None, None, None)
    ref = results["local/1"]
    for key, ts in times.items():
        row[key] = total / min(ts)
    for w in (1, 2):
        row[f"identical x{w}"] = same(results[f"ray x{w}"], ref) and same(results[f"cold x{w}"], ref)
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=32, help="inputs certified per run")
    parser.add_argument("--n", type=int, default=2000, help="estimation draws per input")
    parser.add_argument("--n0", type=int, default=100, help="selection draws per input")
    parser.add_argument("--batch-size", type=int, default=500, help="noisy samples per forward pass")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    args = parser.parse_args(argv)
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=args.cpus, num_gpus=0, include_dashboard=False, logging_level="WARNING")
    init_seconds = time.perf_counter() - t0
    torch.manual_seed(0)
    configs = [
        ("digits CNN (1x8x8)", DigitsCNN(width=16), (1, 8, 8)),
        ("CIFAR-shaped CNN (3x32x32)", SmallCNN(width=16), (3, 32, 32)),
    ]
    try:
        rows = [run_config(name, model, shape, args) for name, model, shape in configs]
    finally:
        ray.shutdown()
    threads = sorted({1, os.cpu_count() or 1})
    print(f"cores={os.cpu_count()} inputs={args.inputs} n0={args.n0} n={args.n} batch={args.batch_size} "
          f"(best of {args.repeats}); ray.init {init_seconds:.1f} s; load average {os.getloadavg()[0]:.1f}")
    cols = [f"local/{t}" for t in threads] + ["ray x1", "ray x2"]
    header = f"{'config':<28}" + "".join(f"{c:>11}" for c in cols) + f"{'x1/local1':>11}{'x2/local1':>11}" \
        f"{'x2/local' + str(threads[-1]):>12}{'x2/x1':>7}{'cold x2':>9}{'identical':>11}"
    print("samples/s")
    print(header)
    print("-" * len(header))
    for r in rows:
        base1, baseT = r["local/1"], r[f"local/{threads[-1]}"]
        print(f"{r['config']:<28}" + "".join(f"{r[c]:>11.0f}" for c in cols)
              + f"{r['ray x1'] / base1:>11.2f}{r['ray x2'] / base1:>11.2f}{r['ray x2'] / baseT:>12.2f}"
              + f"{r['ray x2'] / r['ray x1']:>7.2f}{r['cold x2 s']:>8.1f}s"
              + f"{r['identical x1'] and r['identical x2']!s:>11}")
    return rows


if __name__ == "__main__":
    main()
