"""Empirical robustness radius of a smoothed classifier: the smallest perturbation an attack finds that
flips the *smoothed* prediction — an upper bound on the true robust radius, to set against the
certified radius (a lower bound).

What "flipped" means. A perturbed input x' flips the prediction away from label y when Cohen et al.'s
PREDICT with abstention (``sample_size``/``n_predict`` draws, the estimator's α) returns a class other
than y. An abstention is *not* a flip: it only says the votes are too close to call, not that the
smoothed classifier g prefers another class. This is the stricter choice, and the one that makes a
flip inside a certified radius a contradiction: if the certificate holds, g(x') = c_A for every
‖x' − x‖ < R, and PREDICT returns a class other than g(x') with probability at most α (Cohen et al.,
Theorem 2). So each input's chance of a "violation" is at most α (its certificate) + α per PREDICT
decision made for it. Every decision uses fresh PREDICT draws (its own stream per search round), so
the point being judged never depends on the draws that judge it.

Search over ε (why not a minimal-norm attack). A minimal-norm attack (DDN, FMN) decides at every step
whether the current point is adversarial, which for a smoothed classifier means a Monte Carlo test per
step — either expensive (PREDICT per step) or statistically unsound (one noisy estimate). A search over
ε keeps the attack a plain fixed-budget PGD and confines the statistical decisions to one PREDICT per
round. The search is batched over inputs — every input carries its own bracket [lo, hi] and all
unfinished inputs are attacked together each round, each at its own ε:

1. round 0: PREDICT at the clean input (already flipped → radius 0);
2. expansion: ε starts at ``eps_start`` (by default the radius hint — e.g. the certified radius, so
   the first attack tests the certificate directly — or ``eps_max / 16``) and doubles after every
   failure, up to ``eps_max``;
3. bisection: once a flip is found, hi is the ℓp norm of the flipping perturbation actually found (≤ ε)
   and ε = (lo + hi) / 2, until hi − lo ≤ ``rtol``·hi or the rounds are spent.

The result is hi (``inf`` where no flip was found up to ``eps_max``): a perturbation of that norm that
flips the smoothed prediction was found and checked.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from art_smoothing.attacks.pgd import SmoothedPGD
from art_smoothing.certificates.norms import parse_norm
from art_smoothing.checks import check_int, check_positive_array, labels_as_indices
from art_smoothing.engine.streams import Stage, stream_seed
from art_smoothing.estimator import SmoothedClassifier
from art_smoothing.geometry import lp_norm

logger = logging.getLogger(__name__)

__all__ = ["EmpiricalRadius", "default_eps_max", "empirical_radius", "make_attack"]


@dataclass
class EmpiricalRadius:
    """Per-input result of :func:`empirical_radius` with ``return_details=True``."""

    radius: np.ndarray  #: smallest flipping perturbation norm found (inf: none up to eps_max)
    x_adv: np.ndarray  #: the flipping input (x itself where none was found)
    lower: np.ndarray  #: largest ε at which the attack failed (not a bound on the true radius)
    predict_calls: np.ndarray  #: PREDICT decisions made per input (for the α accounting)
    eps_max: np.ndarray
    norm: float


def default_eps_max(smoothed: SmoothedClassifier, norm) -> float:
    """Upper end of the search: half the diameter of the box ``clip_values`` in ``norm``
    (every point of the box is within it of the box centre), or, without a box, ten times the
    typical norm of a noise draw, std·d^(1/p)."""
    p = parse_norm(norm)
    d = smoothed.input_dim
    root = 1.0 if math.isinf(p) else d ** (1.0 / p)
    if smoothed.clip_values is not None:
        lo, hi = (np.asarray(c, dtype=np.float64) for c in smoothed.clip_values)
        return float(0.5 * np.max(hi - lo) * root)
    return float(10.0 * smoothed.noise.std * root)


def make_attack(smoothed: SmoothedClassifier, norm, attack=None) -> SmoothedPGD:
    """A :class:`SmoothedPGD` from ``attack``: ``None`` (defaults), a dict of its parameters, or an
    instance (its norm must be ``norm``)."""
    p = parse_norm(norm)
    if attack is None:
        return SmoothedPGD(smoothed, norm=p)
    if isinstance(attack, dict):
        params = dict(attack)
        if "norm" in params and parse_norm(params["norm"]) != p:
            raise ValueError(f"attack norm {params['norm']!r} differs from norm={norm!r}.")
        params["norm"] = p
        return SmoothedPGD(smoothed, **params)
    if isinstance(attack, SmoothedPGD):
        if attack.estimator is not smoothed:
            raise ValueError("attack must target the same SmoothedClassifier as the one evaluated.")
        if parse_norm(attack.norm) != p:
            raise ValueError(f"attack norm {attack.norm!r} differs from norm={norm!r}.")
        return attack
    raise ValueError(f"attack must be None, a dict of SmoothedPGD parameters or a SmoothedPGD, got {attack!r}.")


def predict_flipped(smoothed: SmoothedClassifier, x: np.ndarray, labels: np.ndarray, n: int, seed: int,
                    batch_size: int = 256) -> np.ndarray:
    """PREDICT with abstention (Cohen et al.) on ``n`` draws of the stream ``seed``: True where it returns
    a class other than ``labels`` (an abstention is not a flip)."""
    if len(x) == 0:
        return np.zeros(0, dtype=bool)
    counts = smoothed.count_votes(x, n, Stage.PREDICT, batch_size, seed, desc="flip check")
    pred = smoothed.predict_from_counts(counts, is_abstain=True)
    return (pred.sum(axis=1) > 0) & (pred.argmax(axis=1) != labels)


def empirical_radius(smoothed: SmoothedClassifier, x, y, norm=2, *, attack=None, eps_max=None, eps_start=None,
                     radius_hint=None, search_steps: int = 8, rtol: float = 0.05, n_predict: int | None = None,
                     batch_size: int = 256, return_details: bool = False):
    """Per-input empirical radius of the smoothed classifier (see the module docstring).

    :param smoothed: the :class:`~art_smoothing.SmoothedClassifier`.
    :param x: inputs ``(N, *input_shape)``.
    :param y: labels to move away from (indices or one-hot), e.g. the true labels or the certified classes.
    :param norm: 1, 2 or ``"inf"``.
    :param attack: ``None``, a dict of :class:`SmoothedPGD` parameters, or a ``SmoothedPGD`` instance.
    :param eps_max: upper end of the search, scalar or per input (default :func:`default_eps_max`).
    :param eps_start: first ε tried, scalar or per input (default: ``radius_hint`` where positive, else
        ``eps_max / 16``).
    :param radius_hint: e.g. certified radii: where positive, the first ε.
    :param search_steps: attack rounds after the clean check (expansion + bisection).
    :param rtol: stop bisecting an input when hi − lo ≤ rtol·hi.
    :param n_predict: draws of each PREDICT decision (default the estimator's ``sample_size``).
    :param batch_size: noisy samples per forward pass of PREDICT.
    :param return_details: return an :class:`EmpiricalRadius` instead of the radii.
    :return: ``(N,)`` float64 radii, ``inf`` where no flip was found up to ``eps_max``.
    """
    if not isinstance(smoothed, SmoothedClassifier):
        raise ValueError(  # noqa: TRY004 - bad input is a ValueError throughout the package
            f"smoothed must be an art_smoothing.SmoothedClassifier, got {type(smoothed).__name__}.")
    p = parse_norm(norm)
    atk = make_attack(smoothed, p, attack)
    x = smoothed.check_x(x)
    n = x.shape[0]
    labels = labels_as_indices(y, smoothed.nb_classes, n=n)
    search_steps = check_int("search_steps", search_steps, minimum=0)
    n_predict = smoothed.sample_size if n_predict is None else check_int("n_predict", n_predict)
    batch_size = check_int("batch_size", batch_size)
    try:
        rtol = float(rtol)
    except (TypeError, ValueError):
        rtol = float("nan")
    if not 0.0 < rtol < 1.0:
        raise ValueError(f"rtol must be in (0, 1), got {rtol!r}.")
    e_max = np.broadcast_to(check_positive_array(
        "eps_max", default_eps_max(smoothed, p) if eps_max is None else eps_max, n), (n,)).astype(np.float64)
    if eps_start is None:
        start = e_max / 16.0
        if radius_hint is not None:
            hint = np.broadcast_to(np.asarray(radius_hint, dtype=np.float64), (n,))
            if not np.all(hint >= 0) or np.any(np.isnan(hint)):
                raise ValueError("radius_hint must hold non-negative radii.")
            start = np.where((hint > 0) & np.isfinite(hint), hint, start)
    else:
        start = np.broadcast_to(check_positive_array("eps_start", eps_start, n), (n,)).astype(np.float64)
    start = np.minimum(start, e_max)

    base_seed = smoothed.call_seed()
    radius = np.full(n, np.inf)
    lower = np.zeros(n)
    x_adv = x.copy()
    calls = np.zeros(n, dtype=np.int64)
    # round 0: the clean input
    flip0 = predict_flipped(smoothed, x, labels, n_predict, stream_seed(base_seed, Stage.PREDICT, 1), batch_size)
    calls += 1
    radius[flip0] = 0.0
    finished = flip0.copy()
    for r in range(search_steps):
        found = np.isfinite(radius)
        eps = np.where(found, 0.5 * (lower + radius), np.where(lower > 0, 2.0 * lower, start))
        eps = np.minimum(eps, e_max)
        finished |= (~found & (lower >= e_max)) | (found & (radius - lower <= rtol * radius))
        idx = np.nonzero(~finished)[0]
        if idx.size == 0:
            break
        cand = atk.generate(x[idx], labels[idx], eps=eps[idx])
        flipped = predict_flipped(smoothed, cand, labels[idx], n_predict,
                                  stream_seed(base_seed, Stage.PREDICT, r + 2), batch_size)
        calls[idx] += 1
        size = lp_norm(cand - x[idx], p)
        better = flipped & (size < radius[idx])
        radius[idx[better]] = size[better]
        x_adv[idx[better]] = cand[better]
        fail = idx[~flipped]
        lower[fail] = np.maximum(lower[fail], eps[fail])
        lower = np.where(lower > radius, 0.0, lower)  # a flip below an earlier failure (stochastic attack): reopen
        logger.info("empirical radius round %d: %d inputs attacked, %d flipped", r + 1, idx.size, int(flipped.sum()))
    if return_details:
        return EmpiricalRadius(radius=radius, x_adv=x_adv, lower=lower, predict_calls=calls, eps_max=e_max, norm=p)
    return radius
