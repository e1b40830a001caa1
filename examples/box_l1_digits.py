"""Box-constrained ℓ1 certificates (Voráček & Hein, 2023) on scikit-learn's digits: certified accuracy
of plain vs box-constrained ℓ1 radii for uniform and splitting noise, and deterministic splitting.

Digits live in [0, 1]^64 on a grid of 17 levels (pixel values k/16), so the classifier's
``clip_values=(0, 1)`` switch the box certificates on automatically; ``box=False`` gives the plain ones
from the same votes. Deterministic splitting evaluates the smoothed classifier exactly with 2qλ forward
passes (q = 16 steps per unit here) and has no failure probability; it has only the plain certificate.

    python examples/box_l1_digits.py [--scales 2 4] [--n 2000] [--epochs 30] [--limit 360]
"""

import argparse
import logging
import time

import numpy as np
import torch

from art_smoothing import SmoothedClassifier
from art_smoothing.data import load_digits_dataset
from art_smoothing.models import DigitsCNN, make_classifier
from art_smoothing.noise import DeterministicSplittingNoise, SplittingNoise, UniformNoise

RADII = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]


def train(noise, data, epochs):
    torch.manual_seed(0)
    base = make_classifier(DigitsCNN(), data.input_shape, data.nb_classes, clip_values=data.clip_values)
    smoothed = SmoothedClassifier(base, noise=noise, sample_size=100, alpha=0.001, seed=0)
    smoothed.fit(data.x_train, data.y_train, nb_epochs=epochs, batch_size=64)
    return smoothed


def accuracy_curve(pred, radius, y):
    return [float(np.mean((pred == y) & (radius >= r))) for r in RADII]


def forward_seconds_per_input(smoothed, x, repeats=20):
    """Seconds per input of the base model's forward pass, in batches of 1000 (the certify setting)."""
    xb = torch.as_tensor(np.repeat(x, 1000 // len(x) + 1, axis=0)[:1000])
    model = smoothed.base_classifier.model.eval()
    with torch.no_grad():
        model(xb)
        t0 = time.perf_counter()
        for _ in range(repeats):
            model(xb)
    return (time.perf_counter() - t0) / (repeats * len(xb))


def radius_table(lam):
    """Radius vs p_A (binary form) at an input with a saturated pixel, plain vs box (cf. the paper's Fig. 2):
    the box only helps once the radius exceeds the room of the first coordinate (1 here)."""
    noise = UniformNoise(lam)
    x = np.zeros((1, 64))
    print(f"\nl1 radius vs p_A at lambda={lam} (binary form, input with saturated pixels)")
    print(f"{'p_A':>8}{'plain':>9}{'box':>9}")
    for p in (0.6, 0.7, 0.8, 0.9, 0.99):
        plain = float(noise.certified_radius(p, norm=1))
        boxed = float(noise.certified_radius(p, norm=1, x=x, clip_values=(0, 1)))
        print(f"{p:>8}{plain:>9.3f}{boxed:>9.3f}")


def run(lam, data, x, y, args):
    rows, timing = [], {}
    for noise in (UniformNoise(lam), SplittingNoise(lam)):
        smoothed = train(noise, data, args.epochs)
        boxed = smoothed.certify_detailed(x, n=args.n, n0=100, batch_size=2000, norm=1, form="multiclass")
        plain = boxed.radius_for(norm=1, method="lipschitz")  # same votes, no box
        name = type(noise).__name__
        rows.append((f"{name} plain (Cor 2.13)", accuracy_curve(boxed.prediction, plain, y)))
        rows.append((f"{name} box (Prop 2.5 / Thm 2.8)", accuracy_curve(boxed.prediction, boxed.radius, y)))
        # cost of the input-dependent box certificate alone vs the model's forward pass, per input
        # (best of 5 rounds each, to be robust to other load on the machine)
        box_times, fwd_times = [], []
        for _ in range(5):
            t0 = time.perf_counter()
            noise.certified_radius(boxed.p_a_lower, boxed.p_b_upper, norm=1, x=x, clip_values=(0, 1),
                                   method="box_input")
            box_times.append((time.perf_counter() - t0) / len(x))
            fwd_times.append(forward_seconds_per_input(smoothed, x, repeats=5))
        timing[name] = (min(box_times), min(fwd_times))

    det_noise = DeterministicSplittingNoise(lam, levels=17)
    det = train(det_noise, data, args.epochs)
    exact = det.certify_detailed(x, n=1, batch_size=2000, norm=1, deterministic=True)
    rows.append((f"DeterministicSplitting exact ({exact.extra['draws']} passes)",
                 accuracy_curve(exact.prediction, exact.radius, y)))

    print(f"\ncertified accuracy at l1 radius r ({len(y)} test digits, lambda={lam}, n={args.n}, "
          "alpha=0.001, multiclass form; deterministic: exact)")
    print(f"{'method':<46}" + "".join(f"{'r=' + str(r):>8}" for r in RADII))
    for name, acc in rows:
        print(f"{name:<46}" + "".join(f"{a:>8.3f}" for a in acc))
    for name, (box_s, fwd_s) in timing.items():
        print(f"{name}: box_input certificate {box_s * 1e6:.2f} us per input = {box_s / fwd_s:.3f} forward passes "
              f"(forward {fwd_s * 1e6:.2f} us per input, batches of 1000) = {box_s / (fwd_s * (args.n + 100)):.1e} "
              f"of the {args.n + 100} forward passes of certify")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--scales", type=float, nargs="+", default=[2.0, 4.0], help="λ in box units (std λ/√3)")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--limit", type=int, default=360)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_digits_dataset()
    x, y = data.x_test[: args.limit], data.y_test[: args.limit]
    for lam in args.scales:
        radius_table(lam)
        run(lam, data, x, y, args)


if __name__ == "__main__":
    main()
