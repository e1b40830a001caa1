"""Generalized Gaussian smoothing on scikit-learn's digits (Hayes, 2020), next to Laplace, Gaussian and
uniform noise of the same per-coordinate standard deviation; and the ℓ2 divergence certificates of
Gaussian noise side by side.

1. One small CNN per noise, trained with noise augmentation (``SmoothedClassifier.fit``), certified on
   the test digits (CERTIFY with n draws, Clopper–Pearson at ``alpha``). From the same votes: certified
   accuracy vs radius in ℓ1, ℓ2, ℓ3 and ℓ4 (each noise's best sound certificate, other norms by sound
   conversion with d = 64).
2. The Gaussian model's votes certified by every ℓ2 method of ``GaussianNoise`` (Cohen's tight radius,
   KL, Rényi, χ², Hellinger, Bhattacharyya, TV, Lecuyer et al.): a table and a plot.
3. The curse of dimensionality: the ℓ4 radius of GN(·, ·, 4) at p_A = 0.99 as d grows (equal std).

    python examples/generalized_gaussian_digits.py [--n 1000] [--limit 200] [--epochs 15] [--plot out.png]
"""

import argparse
import logging

import numpy as np
import torch

from art_smoothing import SmoothedClassifier
from art_smoothing.data import load_digits_dataset
from art_smoothing.models import DigitsCNN, make_classifier
from art_smoothing.noise import GaussianNoise, GeneralizedGaussianNoise, LaplaceNoise, UniformNoise
from art_smoothing.plotting import pyplot

STD = 0.25
RADII = {1: [0.0, 0.2, 0.4, 0.6, 0.8], 2: [0.0, 0.1, 0.2, 0.3, 0.4, 0.5],
         3: [0.0, 0.04, 0.08, 0.12, 0.16, 0.2], 4: [0.0, 0.03, 0.06, 0.09, 0.12, 0.15]}
DIVERGENCE_METHODS = ["cohen", "renyi", "kl", "chi2", "hellinger", "bhattacharyya", "tv", "lecuyer_dp"]


def noises():
    """Equal per-coordinate standard deviation STD for every noise."""
    return [
        ("GN p=1", GeneralizedGaussianNoise.from_std(STD, 1.0)),
        ("GN p=2", GeneralizedGaussianNoise.from_std(STD, 2.0)),
        ("GN p=3", GeneralizedGaussianNoise.from_std(STD, 3.0)),
        ("GN p=4", GeneralizedGaussianNoise.from_std(STD, 4.0)),
        ("Laplace", LaplaceNoise(STD / np.sqrt(2.0))),
        ("Gaussian", GaussianNoise(STD)),
        ("uniform", UniformNoise(STD * np.sqrt(3.0))),
    ]


def table(title, header, rows, fmt="{:>8.3f}"):
    print(f"\n{title}")
    print(f"{'':<14}" + "".join(f"{h:>8}" for h in header))
    for name, values in rows:
        print(f"{name:<14}" + "".join(fmt.format(v) for v in values))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--plot", default="generalized_gaussian_digits.png", help="'' to skip the plot")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    data = load_digits_dataset()
    x, y = data.x_test[: args.limit], data.y_test[: args.limit]

    def accuracy(correct, radius, grid):
        return [float(np.mean(correct & (radius >= r))) for r in grid]

    # 1. certified accuracy per norm, equal variance
    curves = {norm: [] for norm in RADII}  # (name, correct, radius) per noise
    gaussian_result = None
    for name, noise in noises():
        torch.manual_seed(0)
        base = make_classifier(DigitsCNN(), data.input_shape, data.nb_classes)
        smoothed = SmoothedClassifier(base, noise=noise, sample_size=100, alpha=0.001, seed=0)
        smoothed.fit(data.x_train, data.y_train, nb_epochs=args.epochs, batch_size=64)
        result = smoothed.certify_detailed(x, n=args.n, batch_size=1000)
        if name == "Gaussian":
            gaussian_result = result
        for norm in RADII:
            curves[norm].append((name, result.prediction == y, result.radius_for(norm)))
    for norm, rows in curves.items():
        table(f"certified accuracy, l{norm} radius (std {STD}, {len(y)} test digits, n={args.n}, alpha=0.001)",
              [f"r={r:g}" for r in RADII[norm]], [(name, accuracy(c, r, RADII[norm])) for name, c, r in rows])

    # 2. the l2 divergence certificates from the Gaussian model's votes
    correct = gaussian_result.prediction == y
    divergence = [(m, gaussian_result.radius_for(2, method=m)) for m in DIVERGENCE_METHODS]
    grid = np.linspace(0.0, 0.6, 7)
    table("Gaussian noise, l2 certified accuracy by certificate (same votes)", [f"r={r:.1f}" for r in grid],
          [(m, accuracy(correct, r, grid)) for m, r in divergence])
    table("mean certified l2 radius (0 where wrong/abstained)", ["mean"],
          [(m, [float(np.mean(np.where(correct, r, 0.0)))]) for m, r in divergence], fmt="{:>8.4f}")

    # 3. the curse of dimensionality for p = 4 (equal std), p_A = 0.99
    dims = [64, 3 * 32 * 32, 3 * 224 * 224, 10**7]
    gn4 = GeneralizedGaussianNoise.from_std(STD, 4.0)
    table("l4 radius at p_A = 0.99 vs dimension d (std 0.25): GN p=4 (KL) vs Gaussian (Cohen, l2 -> l4)",
          [f"d={d:.0e}" for d in dims],
          [("GN p=4", [float(gn4.certified_radius(0.99, norm=4, dim=d)) for d in dims]),
           ("Gaussian", [float(GaussianNoise(STD).certified_radius(0.99, norm=4, dim=d)) for d in dims])],
          fmt="{:>8.4f}")

    if args.plot:
        plt = pyplot()  # None (with a warning) when matplotlib is not installed
        if plt is None:
            return
        fig, axes = plt.subplots(1, 5, figsize=(22, 4))
        for ax, norm in zip(axes, RADII):
            fine = np.linspace(0.0, 1.25 * RADII[norm][-1], 200)
            for name, c, r in curves[norm]:
                ax.plot(fine, accuracy(c, r, fine), label=name)
            ax.set(title=f"l{norm} (d = 64)", xlabel="radius", ylabel="certified accuracy", ylim=(0, 1))
        axes[0].legend(fontsize=7)
        fine = np.linspace(0.0, 0.75, 200)
        for method, r in divergence:
            axes[4].plot(fine, accuracy(correct, r, fine), label=method)
        axes[4].set(title="Gaussian, l2 certificates", xlabel="radius", ylim=(0, 1))
        axes[4].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"\nplot written to {args.plot}")


if __name__ == "__main__":
    main()
