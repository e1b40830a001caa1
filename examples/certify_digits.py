"""Certify a small CNN on scikit-learn's bundled digits with Gaussian, Laplace and uniform noise.

Trains one base model per noise (noise augmentation, a few seconds each on a CPU), certifies the test
set and prints certified accuracy at a few radii in l1 and l2, from the same votes.

    python examples/certify_digits.py [--n 1000] [--limit 200]
"""

import argparse
import logging

import numpy as np
import torch

from art_smoothing import SmoothedClassifier
from art_smoothing.data import load_digits_dataset
from art_smoothing.models import DigitsCNN, make_classifier
from art_smoothing.noise import GaussianNoise, LaplaceNoise, UniformNoise


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    data = load_digits_dataset()
    x, y = data.x_test[: args.limit], data.y_test[: args.limit]
    radii = {1: [0.0, 0.25, 0.5, 1.0], 2: [0.0, 0.1, 0.25, 0.5]}
    # Equal per-coordinate standard deviation 0.25 for all three noises.
    noises = [GaussianNoise(0.25), LaplaceNoise(0.25 / np.sqrt(2)), UniformNoise(0.25 * np.sqrt(3))]
    rows = {1: [], 2: []}
    for noise in noises:
        torch.manual_seed(0)
        base = make_classifier(DigitsCNN(), data.input_shape, data.nb_classes)
        smoothed = SmoothedClassifier(base, noise=noise, sample_size=100, alpha=0.001, seed=0)
        smoothed.fit(data.x_train, data.y_train, nb_epochs=args.epochs, batch_size=64)
        result = smoothed.certify_detailed(x, n=args.n, batch_size=1000)
        for norm in (1, 2):  # the same votes give both radii
            pred, radius = result.prediction, result.radius_for(norm)
            rows[norm].append((f"{type(noise).__name__}(std={noise.std:.2f})",
                               [np.mean((pred == y) & (radius >= r)) for r in radii[norm]]))
    for norm in (1, 2):
        print(f"\ncertified accuracy, l{norm} radius ({len(y)} test digits, n={args.n}, alpha=0.001)")
        print(f"{'noise':<28}" + "".join(f"{'r=' + str(r):>9}" for r in radii[norm]))
        for name, acc in rows[norm]:
            print(f"{name:<28}" + "".join(f"{a:>9.3f}" for a in acc))

if __name__ == "__main__":
    main()
