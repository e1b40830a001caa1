"""Robust training for every noise on the digits CNN: which trainer certifies best?

For Gaussian (ℓ2), Laplace (ℓ1) and uniform (ℓ1) noise at the same per-coordinate standard deviation, every
trainer of :mod:`art_smoothing.training` trains the same ``DigitsCNN`` from the same initial weights with the
same optimizer (Adam), epoch budget, batch size and seeds; for Gaussian noise ART 1.20's own
``PyTorchMACER`` and ``PyTorchSmoothAdv`` train it too, with the same hyperparameters (ART's SmoothAdv can
only use one noise draw per input, and its ε is an ℓ∞ radius with a fixed 0.1 step; see
:class:`art_smoothing.training.SmoothAdvTrainer`). Every model is then certified the same way: CERTIFY
(Cohen et al.) with our ``SmoothedClassifier`` under the noise it was trained with, on the whole digits test
set, in the noise's own norm.

Reported: clean accuracy of the smoothed classifier (CERTIFY returns the true class, abstentions count as
errors), ACR (average certified radius, 0 for wrong or abstained inputs; Zhai et al., 2020), certified
accuracy at three radii, and seconds per training epoch (wall clock, ``--threads`` intra-op threads).

    python benchmarks/training.py              # defaults: < 15 minutes on 2 CPU cores
    python benchmarks/training.py --scale 4    # 4× the epochs (and 4× the certification draws, up to 10⁴)
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
import torch

from art_smoothing.data import load_digits_dataset
from art_smoothing.estimator import SmoothedClassifier
from art_smoothing.models import DigitsCNN, make_classifier
from art_smoothing.noise import GaussianNoise, LaplaceNoise, UniformNoise
from art_smoothing.training import TRAINERS

#: certified-accuracy radii per norm (uniform noise at std 0.4, λ = 0.69, cannot certify beyond 2λ(p_A − 1/2) < 0.69)
RADII = {2.0: (0.25, 0.5, 0.75), 1.0: (0.2, 0.4, 0.6)}


def noises(std: float):
    """Gaussian σ, Laplace λ = σ/√2, uniform λ = √3σ: the same per-coordinate standard deviation."""
    return [GaussianNoise(std), LaplaceNoise(std / math.sqrt(2.0)), UniformNoise(std * math.sqrt(3.0))]


def trainer_kwargs(args, noise) -> dict[str, dict]:
    eps = args.eps_l2 if noise.norm == 2.0 else args.eps_l1
    warmup = max(1, args.epochs_run // 4)
    return {
        "augment": {},
        "consistency": {"m": 2, "lbd": args.consistency_lbd, "eta": 0.5},
        "macer": {"m": args.macer_m, "lbd": args.macer_lbd, "beta": 16.0},  # gamma: MACER's γ = 8 equivalent
        "smoothadv": {"epsilon": eps, "m": args.smoothadv_m, "num_steps": args.smoothadv_steps, "warmup": warmup},
    }


def fresh_classifier(args):
    torch.manual_seed(args.seed)
    return make_classifier(DigitsCNN(), (1, 8, 8), 10, lr=args.lr)


def certify(args, model, noise, data):
    clf = make_classifier(model, (1, 8, 8), 10)
    sm = SmoothedClassifier(clf, noise, sample_size=args.n0, alpha=args.alpha, seed=args.seed + 1)
    res = sm.certify_detailed(data.x_test, n=args.n_cert, n0=args.n0, batch_size=args.batch_cert)
    correct = res.prediction == data.y_test
    acr = float(np.mean(np.where(correct, res.radius, 0.0)))
    return float(np.mean(correct)), acr, res.certified_accuracy(data.y_test, RADII[noise.norm])


def run_ours(args, name, noise, data):
    clf = fresh_classifier(args)
    sm = SmoothedClassifier(clf, noise, seed=args.seed)
    trainer = TRAINERS[name](sm, verbose=False, **trainer_kwargs(args, noise)[name])
    t0 = time.perf_counter()
    trainer.fit(data.x_train, data.y_train, nb_epochs=args.epochs_run, batch_size=args.batch_size)
    return clf.model, (time.perf_counter() - t0) / args.epochs_run


def run_art(args, name, noise, data):
    from art.estimators.certification.randomized_smoothing import PyTorchMACER, PyTorchSmoothAdv

    clf = fresh_classifier(args)
    common = {"model": clf.model, "loss": torch.nn.CrossEntropyLoss(), "input_shape": (1, 8, 8), "nb_classes": 10,
              "optimizer": clf.optimizer, "clip_values": (0.0, 1.0), "device_type": "cpu", "scale": noise.std}
    kw = trainer_kwargs(args, noise)
    if name == "ART macer":
        art = PyTorchMACER(**common, gaussian_samples=kw["macer"]["m"], lmbda=kw["macer"]["lbd"], gamma=8.0,
                           beta=16.0)
    else:
        k = kw["smoothadv"]
        art = PyTorchSmoothAdv(**common, epsilon=k["epsilon"], num_noise_vec=1, num_steps=k["num_steps"],
                               warmup=k["warmup"])
    torch.manual_seed(args.seed)  # ART shuffles and draws noise from torch's global generator
    t0 = time.perf_counter()
    art.fit(data.x_train, data.y_train, nb_epochs=args.epochs_run, batch_size=args.batch_size)
    return clf.model, (time.perf_counter() - t0) / args.epochs_run


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=15, help="epochs per trainer (before --scale)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply the epochs and certification draws")
    p.add_argument("--std", type=float, default=0.4, help="per-coordinate noise standard deviation")
    p.add_argument("--n-cert", type=int, default=1000, help="CERTIFY estimation draws (before --scale)")
    p.add_argument("--n0", type=int, default=100)
    p.add_argument("--alpha", type=float, default=0.001)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--batch-cert", type=int, default=1000)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--macer-m", type=int, default=8)
    p.add_argument("--macer-lbd", type=float, default=12.0)
    p.add_argument("--consistency-lbd", type=float, default=10.0)
    p.add_argument("--smoothadv-m", type=int, default=2)
    p.add_argument("--smoothadv-steps", type=int, default=2)
    p.add_argument("--eps-l2", type=float, default=0.25, help="SmoothAdv radius for l2 noises")
    p.add_argument("--eps-l1", type=float, default=0.5, help="SmoothAdv radius for l1 noises")
    p.add_argument("--no-art", action="store_true", help="skip ART's PyTorchMACER / PyTorchSmoothAdv")
    args = p.parse_args(argv)
    if args.scale <= 0:
        p.error("--scale must be > 0")
    args.epochs_run = max(1, round(args.epochs * args.scale))
    args.n_cert = min(10_000, max(1, round(args.n_cert * args.scale)))
    torch.set_num_threads(args.threads)
    data = load_digits_dataset()
    start, cpu_start = time.perf_counter(), time.process_time()
    print(f"digits: {len(data.x_train)} train / {len(data.x_test)} test, DigitsCNN(width=16), Adam lr={args.lr}, "
          f"{args.epochs_run} epochs, batch {args.batch_size}, seed {args.seed}; CERTIFY n0={args.n0}, "
          f"n={args.n_cert}, alpha={args.alpha}; {args.threads} threads", flush=True)
    rows = []
    for noise in noises(args.std):
        names = list(TRAINERS) + ([] if args.no_art or not isinstance(noise, GaussianNoise)
                                  else ["ART macer", "ART smoothadv"])
        print(f"{noise!r}: " + ", ".join(f"{k} {v}" for k, v in trainer_kwargs(args, noise).items() if v),
              flush=True)
        for name in names:
            runner = run_art if name.startswith("ART") else run_ours
            model, sec = runner(args, name, noise, data)
            clean, acr, cert = certify(args, model, noise, data)
            rows.append((noise, name, clean, acr, cert, sec))
            print(f"  {name:14s} clean {clean:.3f}  ACR {acr:.3f}  cert {np.round(cert, 3)}  {sec:.2f} s/epoch "
                  f"[{time.perf_counter() - start:.0f} s]", flush=True)
    print()
    for norm, radii in RADII.items():
        head = " | ".join(f"cert@{r:g}" for r in radii)
        print(f"| noise (ℓ{norm:g}) | trainer | clean acc | ACR | {head} | s/epoch |")
        print("|---|---|---|---|" + "---|" * len(radii) + "---|")
        for noise, name, clean, acr, cert, sec in rows:
            if noise.norm != norm:
                continue
            cells = " | ".join(f"{c:.3f}" for c in cert)
            print(f"| {noise!r} | {name} | {clean:.3f} | {acr:.3f} | {cells} | {sec:.2f} |")
        print()
    print("Best ACR per noise:")
    for noise in noises(args.std):
        sub = [r for r in rows if r[0] == noise]
        best = max(sub, key=lambda r: r[3])
        aug = next(r for r in sub if r[1] == "augment")
        print(f"  {noise!r}: {best[1]} (ACR {best[3]:.3f} vs augment {aug[3]:.3f}, "
              f"{100 * (best[3] / max(aug[3], 1e-12) - 1):+.0f} %)")
    print(f"total wall time {time.perf_counter() - start:.0f} s, CPU time {time.process_time() - cpu_start:.0f} s "
          "(wall clock and s/epoch include waiting for the CPU when the machine is shared)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
