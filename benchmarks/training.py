"""Robust training for every noise on the digits CNN: which trainer certifies best, over seeds?

For Gaussian (ℓ2), Laplace (ℓ1) and uniform (ℓ1) noise at the same per-coordinate standard deviation, every
trainer of :mod:`art_smoothing.training` — at its defaults — trains the same ``DigitsCNN`` from the same
initial weights (per seed) with the same optimizer (Adam), epoch budget and batch size. For Gaussian noise
ART 1.20's own ``PyTorchMACER``, ``PyTorchSmoothAdv`` and ``PyTorchSmoothMix`` train it too, with our
defaults translated into their parameters (ART's MACER has no warm-up; its SmoothAdv can only use one noise
draw per input and attacks in ℓ∞ with a fixed 0.1 step; its SmoothMix takes the step size as ``alpha``; see
the trainers' docstrings). Every model is then certified the same way: CERTIFY (Cohen et al.) with our
``SmoothedClassifier`` under the noise it was trained with, on the whole digits test set, in the noise's
own norm.

Reported, as mean ± sample standard deviation over the seeds: clean accuracy of the smoothed classifier
(CERTIFY returns the true class; abstentions count as errors), ACR (average certified radius, 0 for wrong or
abstained inputs; Zhai et al., 2020), certified accuracy at three radii, and seconds per training epoch (wall
clock, ``--threads`` intra-op threads; includes waiting for the CPU on a shared machine). Then, per noise,
the best robust trainer against noise augmentation: the ACR gain, the seed spread, and whether the gain
exceeds two standard deviations (the larger of the two trainers' seed standard deviations).

``--sweep`` chooses the defaults: a small grid per trainer and noise (:data:`SWEEP`, 2–3 values of the one
or two parameters that matter, the others at their defaults), each trained with ``--sweep-seed`` on 80 % of
the training set and certified on the other 20 % (a validation split: the test set plays no part in the
choice). The winner is the highest validation ACR among the settings whose validation clean accuracy is at
least 0.9 × noise augmentation's (the no-collapse bar). ``docs/training.md`` records the grid, the winners
and the commit that measured them; the defaults in :mod:`art_smoothing.training` are those winners.

    python benchmarks/training.py              # 3 seeds, default budget: < 20 minutes on 2 idle CPU cores
    python benchmarks/training.py --scale 4    # 4× the epochs (and 4× the certification draws, up to 10⁴)
    python benchmarks/training.py --sweep      # the grid of the defaults (one seed, validation split)
    python benchmarks/training.py --noises gaussian --trainers augment,macer --seeds 1   # a quick look
"""

from __future__ import annotations

import argparse
import json
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

#: certified-accuracy radii per norm (uniform noise at std 0.4, λ = 0.69, cannot certify beyond 2λ(p_A − 1/2) < 0.69
#: without the box)
RADII = {2.0: (0.25, 0.5, 0.75), 1.0: (0.2, 0.4, 0.6)}
ART_TRAINERS = ("ART macer", "ART smoothadv", "ART smoothmix")

#: the sweep's grid: trainer -> {parameter: values}; parameters ending in ``_std`` are in units of the noise's
#: std (``lbd_std``: λ·std; ``epsilon_std`` / ``step_std``: ε / α divided by the std)
SWEEP = {
    "consistency": {"lbd": (2.0, 5.0, 10.0)},
    "macer": {"lbd_std": (0.1, 0.4, 1.2, 3.0), "warmup": (1, 3)},
    "smoothadv": {"epsilon_std": (0.5, 1.0, 2.0)},
    "smoothmix": {"eta": (1.0, 5.0), "step_std": (0.5, 2.0)},
}


def noises(std: float) -> dict[str, object]:
    """Gaussian σ, Laplace λ = σ/√2, uniform λ = √3σ: the same per-coordinate standard deviation."""
    return {"gaussian": GaussianNoise(std), "laplace": LaplaceNoise(std / math.sqrt(2.0)),
            "uniform": UniformNoise(std * math.sqrt(3.0))}


def concrete(setting: dict, noise) -> dict:
    """A sweep setting as trainer keyword arguments (``*_std`` parameters times the noise's std)."""
    out = {}
    for key, value in setting.items():
        if key == "lbd_std":
            out["lbd"] = value / noise.std
        elif key == "epsilon_std":
            out["epsilon"] = value * noise.std
        elif key == "step_std":
            out["step_size"] = value * noise.std
        else:
            out[key] = value
    return out


def fresh_classifier(args, seed: int):
    torch.manual_seed(seed)
    return make_classifier(DigitsCNN(), (1, 8, 8), 10, lr=args.lr)


def certify(args, model, noise, x, y, seed: int):
    clf = make_classifier(model, (1, 8, 8), 10)
    sm = SmoothedClassifier(clf, noise, sample_size=args.n0, alpha=args.alpha, seed=seed + 1)
    res = sm.certify_detailed(x, n=args.n_cert, n0=args.n0, batch_size=args.batch_cert)
    correct = res.prediction == y
    acr = float(np.mean(np.where(correct, res.radius, 0.0)))
    return float(np.mean(correct)), acr, res.certified_accuracy(y, RADII[noise.norm])


def run_ours(args, name, noise, x, y, seed: int, **kwargs):
    clf = fresh_classifier(args, seed)
    sm = SmoothedClassifier(clf, noise, seed=seed)
    trainer = TRAINERS[name](sm, verbose=False, **kwargs)
    t0 = time.perf_counter()
    trainer.fit(x, y, nb_epochs=args.epochs_run, batch_size=args.batch_size)
    return clf.model, (time.perf_counter() - t0) / args.epochs_run


def run_art(args, name, noise, x, y, seed: int):
    """ART's trainer with our defaults for this noise translated into its parameters."""
    from art.estimators.certification.randomized_smoothing import PyTorchMACER, PyTorchSmoothAdv, PyTorchSmoothMix

    clf = fresh_classifier(args, seed)
    ours = TRAINERS[name.split()[1]](SmoothedClassifier(clf, noise), verbose=False)
    common = {"model": clf.model, "loss": torch.nn.CrossEntropyLoss(), "input_shape": (1, 8, 8), "nb_classes": 10,
              "optimizer": clf.optimizer, "clip_values": (0.0, 1.0), "device_type": "cpu", "scale": noise.std}
    batch_size = args.batch_size
    if name == "ART macer":  # ART's γ is on ξ = Φ⁻¹(p_A) − Φ⁻¹(p_B): radius γ ↔ ξ = 2γ/σ; no warm-up in ART
        art = PyTorchMACER(**common, gaussian_samples=ours.m, lmbda=ours.lbd, gamma=2 * ours.gamma / noise.std,
                           beta=ours.beta)
    elif name == "ART smoothadv":  # one draw (ART fails with more), ε as its ℓ∞ radius, its own 0.1 step
        art = PyTorchSmoothAdv(**common, epsilon=ours.epsilon, num_noise_vec=1, num_steps=ours.num_steps,
                               warmup=ours.warmup)
    else:  # ART's alpha is the step size; it cuts each batch into m mini-batches, so give it m × batch_size
        art = PyTorchSmoothMix(**common, alpha=ours.step_size, eta=ours.eta, num_noise_vec=ours.m,
                               num_steps=ours.num_steps, warmup=ours.warmup, mix_step=ours.mix_step)
        batch_size = args.batch_size * ours.m
    torch.manual_seed(seed)  # ART shuffles and draws noise from torch's global generator
    t0 = time.perf_counter()
    art.fit(x, y, nb_epochs=args.epochs_run, batch_size=batch_size)
    return clf.model, (time.perf_counter() - t0) / args.epochs_run


def fmt(values, digits: int = 3) -> str:
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def report(args, rows, noise_list, start, cpu_start) -> None:
    """The table of every noise × trainer (mean ± std over seeds) and the target check per noise."""
    print()
    for norm, radii in RADII.items():
        if not any(n.norm == norm for n in noise_list.values()):
            continue
        head = " | ".join(f"cert@{r:g}" for r in radii)
        print(f"| noise (ℓ{norm:g}) | trainer | clean acc | ACR | {head} | s/epoch |")
        print("|---|---|---|---|" + "---|" * len(radii) + "---|")
        for key, noise in noise_list.items():
            if noise.norm != norm:
                continue
            for name, res in rows[key].items():
                cert = np.array([r[2] for r in res])
                cells = " | ".join(fmt(cert[:, i]) for i in range(len(radii)))
                print(f"| {noise!r} | {name} | {fmt([r[0] for r in res])} | {fmt([r[1] for r in res])} | {cells} | "
                      f"{fmt([r[3] for r in res], 2)} |")
        print()
    print("Best robust trainer per noise (ours), ACR against noise augmentation:")
    for key, noise in noise_list.items():
        ours = {k: v for k, v in rows[key].items() if not k.startswith("ART") and k != "augment"}
        if "augment" not in rows[key] or not ours:
            continue
        aug = np.array([r[1] for r in rows[key]["augment"]])
        best = max(ours, key=lambda k: np.mean([r[1] for r in ours[k]]))
        acr = np.array([r[1] for r in ours[best]])
        gain = acr.mean() - aug.mean()
        spread = max(aug.std(ddof=1), acr.std(ddof=1)) if len(aug) > 1 else float("nan")
        verdict = ("yes" if gain > 2 * spread else "no") if len(aug) > 1 else "n/a (one seed)"
        print(f"  {noise!r}: {best} ACR {acr.mean():.3f} vs augment {aug.mean():.3f}: gain {gain:+.3f} "
              f"({100 * gain / max(aug.mean(), 1e-12):+.1f} %), seed std {spread:.3f}; gain > 2 std: {verdict}")
        for name in ("macer", "smoothmix"):
            if name in ours and name != best:
                other = np.array([r[1] for r in ours[name]])
                print(f"      {name}: ACR {other.mean():.3f} ({other.mean() - aug.mean():+.3f} vs augment)")
    print(f"total wall time {time.perf_counter() - start:.0f} s, CPU time {time.process_time() - cpu_start:.0f} s "
          "(wall clock and s/epoch include waiting for the CPU when the machine is shared)")


def sweep(args, data, noise_list) -> None:
    """Train every setting of :data:`SWEEP` on 80 % of the training set, certify on the other 20 %."""
    rng = np.random.default_rng(12345)
    order = rng.permutation(len(data.x_train))
    cut = int(0.8 * len(order))
    x_tr, y_tr = data.x_train[order[:cut]], data.y_train[order[:cut]]
    x_va, y_va = data.x_train[order[cut:]], data.y_train[order[cut:]]
    seed = args.sweep_seed
    print(f"sweep: train {len(x_tr)} / validation {len(x_va)} (of the training set), seed {seed}", flush=True)
    winners = []
    for key, noise in noise_list.items():
        model, _ = run_ours(args, "augment", noise, x_tr, y_tr, seed)
        aug_clean, aug_acr, _ = certify(args, model, noise, x_va, y_va, seed)
        print(f"{noise!r}: augment clean {aug_clean:.3f} ACR {aug_acr:.3f}", flush=True)
        for name, grid in SWEEP.items():
            if name not in args.trainer_list:
                continue
            keys = list(grid)
            settings = [dict(zip(keys, vals)) for vals in np.array(np.meshgrid(*grid.values(), indexing="ij"),
                                                                    dtype=object).reshape(len(keys), -1).T]
            results = []
            for setting in settings:
                setting = {k: (int(v) if k == "warmup" else float(v)) for k, v in setting.items()}
                model, sec = run_ours(args, name, noise, x_tr, y_tr, seed, **concrete(setting, noise))
                clean, acr, _ = certify(args, model, noise, x_va, y_va, seed)
                ok = clean >= 0.9 * aug_clean
                results.append((setting, clean, acr, ok))
                print(f"  {name:12s} {setting}  clean {clean:.3f}  ACR {acr:.3f}  {'' if ok else 'COLLAPSE '}"
                      f"{sec:.2f} s/epoch", flush=True)
            allowed = [r for r in results if r[3]] or results
            best = max(allowed, key=lambda r: r[2])
            winners.append((key, name, best[0], best[1], best[2], aug_clean, aug_acr))
    print("\n| noise | trainer | winner | val clean | val ACR | augment val clean | augment val ACR |")
    print("|---|---|---|---|---|---|---|")
    for key, name, setting, clean, acr, aclean, aacr in winners:
        cells = ", ".join(f"{k}={v:g}" for k, v in setting.items())
        print(f"| {key} | {name} | {cells} | {clean:.3f} | {acr:.3f} | {aclean:.3f} | {aacr:.3f} |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=15, help="epochs per trainer (before --scale)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply the epochs and certification draws")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..S-1 (initial weights, data order, noise)")
    p.add_argument("--std", type=float, default=0.4, help="per-coordinate noise standard deviation")
    p.add_argument("--n-cert", type=int, default=1000, help="CERTIFY estimation draws (before --scale)")
    p.add_argument("--n0", type=int, default=100)
    p.add_argument("--alpha", type=float, default=0.001)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--batch-cert", type=int, default=1000)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--noises", default="gaussian,laplace,uniform", help="comma-separated subset")
    p.add_argument("--trainers", default=",".join(TRAINERS), help="comma-separated subset of ours")
    p.add_argument("--no-art", action="store_true", help="skip ART's PyTorchMACER / PyTorchSmoothAdv / PyTorchSmoothMix")
    p.add_argument("--sweep", action="store_true", help="run the grid of the defaults instead (see the docstring)")
    p.add_argument("--sweep-seed", type=int, default=100)
    p.add_argument("--sweep-grid", default=None,
                   help='JSON replacing entries of the grid, e.g. \'{"macer": {"lbd_std": [0.1], "warmup": [1, 3]}}\'')
    args = p.parse_args(argv)
    if args.scale <= 0:
        p.error("--scale must be > 0")
    if args.seeds < 1:
        p.error("--seeds must be >= 1")
    all_noises = noises(args.std)
    unknown = set(args.noises.split(",")) - set(all_noises)
    args.trainer_list = args.trainers.split(",")
    if unknown or set(args.trainer_list) - set(TRAINERS):
        p.error(f"--noises takes {sorted(all_noises)}, --trainers takes {sorted(TRAINERS)}")
    noise_list = {k: v for k, v in all_noises.items() if k in args.noises.split(",")}
    args.epochs_run = max(1, round(args.epochs * args.scale))
    args.n_cert = min(10_000, max(1, round(args.n_cert * args.scale)))
    torch.set_num_threads(args.threads)
    data = load_digits_dataset()
    start, cpu_start = time.perf_counter(), time.process_time()
    print(f"digits: {len(data.x_train)} train / {len(data.x_test)} test, DigitsCNN(width=16), Adam lr={args.lr}, "
          f"{args.epochs_run} epochs, batch {args.batch_size}; CERTIFY n0={args.n0}, n={args.n_cert}, "
          f"alpha={args.alpha}; std {args.std}; {args.threads} threads", flush=True)
    if args.sweep:
        if args.sweep_grid:
            SWEEP.update({k: {q: tuple(v) for q, v in g.items()} for k, g in json.loads(args.sweep_grid).items()})
        sweep(args, data, noise_list)
        print(f"total wall time {time.perf_counter() - start:.0f} s")
        return 0
    rows: dict[str, dict[str, list]] = {}
    for key, noise in noise_list.items():
        names = ["augment"] + [n for n in args.trainer_list if n != "augment"]
        if isinstance(noise, GaussianNoise) and not args.no_art:
            names += [n for n in ART_TRAINERS if n.split()[1] in args.trainer_list]
        print(f"{noise!r}: " + ", ".join(repr(TRAINERS[n](SmoothedClassifier(fresh_classifier(args, 0), noise),
                                                          verbose=False)) for n in names if n in TRAINERS
                                         and n != "augment"), flush=True)
        rows[key] = {}
        for name in names:
            rows[key][name] = []
            for seed in range(args.seeds):
                if name.startswith("ART"):
                    model, sec = run_art(args, name, noise, data.x_train, data.y_train, seed)
                else:
                    model, sec = run_ours(args, name, noise, data.x_train, data.y_train, seed)
                clean, acr, cert = certify(args, model, noise, data.x_test, data.y_test, seed)
                rows[key][name].append((clean, acr, cert, sec))
                print(f"  {name:14s} seed {seed}: clean {clean:.3f}  ACR {acr:.3f}  cert {np.round(cert, 3)}  "
                      f"{sec:.2f} s/epoch [{time.perf_counter() - start:.0f} s]", flush=True)
    report(args, rows, noise_list, start, cpu_start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
