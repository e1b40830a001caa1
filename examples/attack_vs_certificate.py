"""Certified vs empirical radius on scikit-learn's digits, per noise and norm.

Trains one small CNN per noise (noise augmentation), then for every (noise, norm) pair certifies the
first test digits and attacks them with PGD + Expectation over Transformation on the smoothed
classifier (``art_smoothing.evaluate``): per input the certified radius (lower bound on the robust
radius) and the empirical radius (upper bound), their median ratio, and the number of flips found
inside a certified radius ("violations") next to the number the failure probability α allows.

    python examples/attack_vs_certificate.py [--inputs 50] [--epochs 15] [--n 1000] [--out DIR] [--threads 1]
"""

import argparse
import logging
import os
import time

import numpy as np
import torch

from art_smoothing import SmoothedClassifier, evaluate
from art_smoothing.data import load_digits_dataset
from art_smoothing.models import DigitsCNN, make_classifier
from art_smoothing.noise import GaussianNoise, LaplaceNoise, UniformNoise


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=50, help="test digits to certify and attack")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--n", type=int, default=1000, help="CERTIFY estimation draws")
    parser.add_argument("--max-iter", type=int, default=20, help="PGD steps per attack")
    parser.add_argument("--eot", type=int, default=32, help="noise draws per gradient")
    parser.add_argument("--out", default=None, help="folder for per-input CSV and JSON files")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (tiny models: 1 is fastest)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    data = load_digits_dataset()
    x, y = data.x_test[: args.inputs], data.y_test[: args.inputs]
    # Equal per-coordinate standard deviation 0.25 for all three noises.
    runs = [(GaussianNoise(0.25), [2]), (LaplaceNoise(0.25 / np.sqrt(2)), [1]),
            (UniformNoise(0.25 * np.sqrt(3)), [1, np.inf])]
    lines = []
    for noise, norms in runs:
        torch.manual_seed(0)
        base = make_classifier(DigitsCNN(), data.input_shape, data.nb_classes)
        smoothed = SmoothedClassifier(base, noise=noise, sample_size=100, alpha=0.001, seed=0,
                                      eot_samples=args.eot)
        smoothed.fit(data.x_train, data.y_train, nb_epochs=args.epochs, batch_size=64)
        for norm in norms:
            t0, c0 = time.perf_counter(), time.process_time()
            ev = evaluate(smoothed, x, y, norm=norm, n=args.n, attack={"max_iter": args.max_iter})
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
            s = ev.summary
            cert = np.array([r.certified_radius for r in ev.records])
            emp = np.array([r.empirical_radius for r in ev.records])
            ok = cert > 0
            lines.append((f"{type(noise).__name__}(std=0.25)", s.norm, s.clean_accuracy,
                          float(np.median(cert[ok])) if ok.any() else 0.0,
                          float(np.median(emp[ok & np.isfinite(emp)])) if ok.any() else float("nan"),
                          s.median_ratio, s.ratio_count, s.no_flip_found, s.violations,
                          s.violations_expected_max, seconds, cpu))
            print(f"\n{lines[-1][0]}, {s.norm}:\n{ev.table()}")
            if args.out:
                os.makedirs(args.out, exist_ok=True)
                stem = os.path.join(args.out, f"{noise.name}_{s.norm}")
                ev.to_csv(stem + ".csv")
                ev.to_json(stem + ".json")
    print(f"\n{len(x)} test digits, n={args.n}, alpha=0.001, PGD {args.max_iter} steps x {args.eot} draws; "
          "medians over inputs with a certificate")
    head = ("noise", "norm", "clean acc", "med cert R", "med emp R", "med emp/cert", "ratios", "no flip",
            "violations", "expected<=", "wall s", "cpu s")
    print("{:<24}{:>6}{:>10}{:>12}{:>11}{:>14}{:>8}{:>9}{:>12}{:>12}{:>8}{:>8}".format(*head))
    for row in lines:
        print("{:<24}{:>6}{:>10.3f}{:>12.4f}{:>11.4f}{:>14.2f}{:>8d}{:>9d}{:>12d}{:>12.2f}{:>8.1f}{:>8.1f}".format(*row))


if __name__ == "__main__":
    main()
