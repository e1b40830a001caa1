"""Sequential CERTIFY vs fixed-n CERTIFY: forward passes, certified accuracy and wall time, side by side.

For each noise — Gaussian σ = 0.25 (ℓ2), Laplace and uniform at the same per-coordinate std (ℓ1) — the bundled
digits CNN trained with that noise (``art_smoothing.zoo.train_bundled``: cached after the first run) certifies
the first ``--inputs`` digits test inputs with α = 0.001 and a budget of n = 10 000 estimation draws:

* fixed-n CERTIFY (Cohen et al.): n0 + n draws per input;
* sequential CERTIFY (``sequential=True``) at (a) one radius — three times: the 10 %, 25 % and 50 % quantiles
  of the radii the fixed-n run certifies (the higher the quantile, the more inputs lie near the radius, and an
  input near it needs about the whole budget whatever the procedure) — and (b) a grid of 4 radii evenly
  spaced up to the largest radius the fixed-n run certifies.

Forward passes are counted exactly (noisy samples through the model, selection draws included). Certified
accuracy is the fraction of inputs correct with radius ≥ R. Every row is measured in this one run.

    python benchmarks/sequential.py                  # 100 inputs per noise, a few minutes on 2 CPU cores
    python benchmarks/sequential.py --inputs 360     # the whole digits test set
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from art_smoothing import SmoothedClassifier
from art_smoothing.data import load_digits_dataset
from art_smoothing.noise import GaussianNoise, LaplaceNoise, UniformNoise
from art_smoothing.zoo import train_bundled


class PassCounter:
    """Counts the noisy samples the model sees (a forward pre-hook)."""

    def __init__(self, model: torch.nn.Module):
        self.samples = 0
        self._hook = model.register_forward_pre_hook(self._count)

    def _count(self, module, inputs):
        self.samples += int(inputs[0].shape[0])

    def take(self) -> int:
        out, self.samples = self.samples, 0
        return out


def certify(sm, counter, x, y, n, radii, **kwargs):
    counter.take()
    start = time.perf_counter()
    res = sm.certify_detailed(x, n, batch_size=500, **kwargs)
    seconds = time.perf_counter() - start
    correct = res.prediction == y
    acc = [float(np.mean(correct & (res.radius >= r))) for r in radii]
    return res, counter.take(), seconds, acc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=100, help="test inputs per noise")
    parser.add_argument("--n", type=int, default=10_000, help="budget: estimation draws per input")
    parser.add_argument("--std", type=float, default=0.25, help="per-coordinate std of every noise")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs of the bundled CNN (cached)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_digits_dataset()
    x, y = data.x_test[:args.inputs], data.y_test[:args.inputs]
    device = torch.device("cpu")
    noises = [(GaussianNoise(args.std), 2), (LaplaceNoise(args.std / math.sqrt(2)), 1),
              (UniformNoise(args.std * math.sqrt(3)), 1)]
    print(f"digits CNN, {len(x)} test inputs, alpha=0.001, n0=100, budget n={args.n}, batch 500, "
          f"{torch.get_num_threads()} threads; load {open('/proc/loadavg').read().split()[0]}")
    header = (f"{'noise':<16} {'norm':<4} {'mode':<26} {'passes':>9} {'fewer':>6} {'seconds':>8}  "
              f"certified accuracy at R")
    print(header)
    print("-" * len(header))
    for noise, norm in noises:
        base, _ = train_bundled(data, noise, epochs=args.epochs, seed=args.seed, device=device,
                                clip_values=(0.0, 1.0))
        # eager: a compiled forward pass pads its batches, and the pass counter would count the padded rows
        sm = SmoothedClassifier(base, noise=noise, sample_size=100, alpha=0.001, seed=args.seed, compile=False)
        counter = PassCounter(base.model)
        fixed, fixed_passes, fixed_s, _ = certify(sm, counter, x, y, args.n, [0.0], norm=norm)
        certified = fixed.radius[(fixed.prediction >= 0) & (fixed.radius > 0)]
        singles = {q: float(np.round(np.quantile(certified, q), 3)) if certified.size else 0.1 for q in (0.1, 0.25, 0.5)}
        top = float(np.floor(certified.max() * 1000) / 1000) if certified.size else 0.4
        grid = [round(top * k / 4, 3) for k in (1, 2, 3, 4)]
        rows = [("fixed-n", fixed_passes, fixed_s, {}, list(singles.values()) + grid)]
        for label, radii in [(f"sequential R={r:g} (q{round(100 * q)})", [r]) for q, r in singles.items()] + [
                ("sequential grid", grid)]:
            res, passes, seconds, _ = certify(sm, counter, x, y, args.n, radii, norm=norm, sequential=True,
                                              radius=radii)
            rows.append((label, passes, seconds, res, radii))
        fixed_acc = {r: float(np.mean((fixed.prediction == y) & (fixed.radius >= r)))
                     for r in list(singles.values()) + grid}
        for label, passes, seconds, res, radii in rows:
            if label == "fixed-n":
                accs = "  ".join(f"{r:g}: {fixed_acc[r]:.3f}" for r in radii)
            else:
                accs = "  ".join(f"{r:g}: {np.mean((res.prediction == y) & (res.radius >= r)):.3f} "
                                 f"({100 * (np.mean((res.prediction == y) & (res.radius >= r)) - fixed_acc[r]):+.1f})"
                                 for r in radii)
            name = f"{type(noise).__name__.removesuffix('Noise').lower()} {noise.std:g}"
            print(f"{name:<16} {'l' + str(norm):<4} {label:<26} {passes:>9} {fixed_passes / passes:>5.1f}x "
                  f"{seconds:>8.2f}  {accs}")
        print()
    print("passes: noisy samples through the model (n0 selection draws included); fewer: fixed-n passes / these; "
          "(+x.x): certified accuracy minus fixed-n's, in points.")


if __name__ == "__main__":
    main()
