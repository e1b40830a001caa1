"""Anytime-valid sequential CERTIFY: confidence bounds over a fixed schedule of looks (project issue 16).

Cohen et al.'s CERTIFY (2019, Algorithm 1) spends a fixed budget of n estimation draws on every input.
Sequential CERTIFY looks at the votes after t_1 < t_2 < … < t_K = n draws and stops an input as soon
as every requested radius is decided (certified, refuted or futile). Re-computing a fixed-level
Clopper–Pearson bound at every look and stopping when it certifies ("peeking") over-claims far more
often than α; here every look gets its own share α_j of α, with Σ_j α_j ≤ α (per bounded
probability), so the bounds hold at all looks *simultaneously* — and hence at whatever look an input
stops, whatever the stopping rule.

Construction (:meth:`LookSchedule.geometric`): looks on a geometric grid t_1, ⌈r t_1⌉, … (default
32, 48, 72, … (×1.5); only those with t·√r ≤ n) and the budget n; ``final_share`` (default 0.95) of the
side's α on the final look and the rest split equally over the earlier looks. The final look's bound is
exactly fixed-n Clopper–Pearson at ``final_share``·α, so an input that runs to the budget loses almost
nothing against fixed-n CERTIFY (n = 10 000, α = 0.001: the bound drops by 5e-5 at k/n = 0.9 and by
5e-6 at k/n = 1); early looks gain little from more α, since a bound moves with log(1/α_j) (the measured
choice is in ``docs/sequential.md``). The binary form bounds p_A with all of α (p_B = 1 − p_A); the
multiclass form bounds p_A and p_B with α/2 each, spread the same way.

Validity for any stopping time: each look's Clopper–Pearson bound fails with probability ≤ α_j (the
looks are fixed in advance), so by the union bound over the finitely many looks all of them hold at
once with probability ≥ 1 − Σ_j α_j; then the bound at *any* look — one chosen by looking at the
votes included — holds, and the certificate (monotone in the bounds) never exceeds the radius the true
probabilities support. Decisions are only allowed at the scheduled looks.

Refutation uses optimistic bounds at level β (default 0.01), spread the same way over the looks before
the budget; a wrong refutation only costs certified accuracy. Futility uses the best path (every
remaining draw votes c_A) and costs nothing. The derivation, the multiclass runner-up argument and
measured over-claim rates are in ``docs/sequential.md``; :func:`sequential_decision` is the decision of
one look for a batch of inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from art_smoothing.certificates.bounds import (
    check_alpha,
    check_counts,
    clopper_pearson_lower,
    clopper_pearson_upper,
)
from art_smoothing.certificates.inversion import check_radius
from art_smoothing.checks import check_int, check_positive

__all__ = [
    "FORMS",
    "LookSchedule",
    "SequentialDecision",
    "anytime_lower",
    "anytime_upper",
    "best_case_lower",
    "best_case_upper",
    "refutation_lower",
    "refutation_upper",
    "sequential_decision",
]

FORMS = ("binary", "multiclass")
#: relative slack when checking that the per-look levels sum to at most the budget: equal splits such as
#: (α/2)/7 · 7 + α/2 may round one float64 step above α (an excess below 1e-12·α).
_SLACK = 1e-12


def _check_form(form) -> str:
    if form not in FORMS:
        raise ValueError(f"form must be 'binary' or 'multiclass', got {form!r}.")
    return form


def _check_levels(name: str, levels, k: int) -> tuple[float, ...]:
    try:
        out = tuple(float(a) for a in levels)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a sequence of levels in (0, 1), got {levels!r}.") from None
    if len(out) != k:
        raise ValueError(f"{name} has {len(out)} levels for {k} looks: pass one level per look.")
    for a in out:
        check_alpha(a, name)
    return out


@dataclass(frozen=True)
class LookSchedule:
    """When the votes are looked at, and what failure probability each look's bounds spend.

    :param n: the budget (estimation draws per input); the last look.
    :param alpha: total failure probability of the certificate (all looks, both bounds of the
        multiclass form). With a table-certified noise pass ``alpha − noise.certificate_alpha``, as
        fixed-n CERTIFY does.
    :param form: ``"binary"`` (bound p_A with all of α; p_B = 1 − p_A) or ``"multiclass"`` (p_A and
        p_B with α/2 each).
    :param looks: strictly increasing draw counts t_1 < … < t_K = n, fixed before any vote is seen.
    :param alpha_looks: α_j spent at look j on *each* bounded probability; Σ_j α_j ≤ α (binary) or
        ≤ α/2 (multiclass). Bonferroni over the looks makes the bounds simultaneous (module docstring).
    :param beta: refutation level: an input whose true probabilities certify a radius R is refuted at R
        with probability ≤ β (β/2 per bounded probability in the multiclass form). A wrong refutation
        costs certified accuracy, never soundness.
    :param beta_looks: β_j per look and bounded probability; the looks before the budget sum to at most
        β (binary) or β/2. (The last entry is unused: at the budget an uncertified radius is futile.)
    :param nb_classes: number of classes (multiclass form; ignored by the binary form). The optimistic
        bound on p_B comes from the largest other count k_B, which exceeds the true runner-up's bound
        when *any* other class's count is high, so it is a Bonferroni over the C − 1 other classes:
        level β_j/(C − 1) each. ``None`` uses β_j (as if one class could be the runner-up); a wrong
        refutation then has probability ≤ β/2 + (C − 1)·β/2 instead of ≤ β.

    Build it with :meth:`geometric`; the constructor validates a hand-made schedule.
    """

    n: int
    alpha: float
    form: str
    looks: tuple[int, ...]
    alpha_looks: tuple[float, ...]
    beta: float
    beta_looks: tuple[float, ...]
    nb_classes: int | None = None

    def __post_init__(self):
        set_ = object.__setattr__  # frozen: normalise the fields once, here
        set_(self, "n", check_int("n", self.n, 1))
        set_(self, "alpha", check_alpha(self.alpha))
        set_(self, "form", _check_form(self.form))
        set_(self, "beta", check_alpha(self.beta, "beta"))
        set_(self, "nb_classes", check_int("nb_classes", self.nb_classes, 2, allow_none=True))
        try:
            looks = tuple(check_int("looks", t, 1) for t in self.looks)
        except TypeError:
            raise ValueError(f"looks must be a sequence of draw counts, got {self.looks!r}.") from None
        if not looks or any(b <= a for a, b in zip(looks, looks[1:])) or looks[-1] != self.n:
            raise ValueError(f"looks must be strictly increasing draw counts ending at the budget n={self.n}, "
                             f"got {self.looks!r}.")
        set_(self, "looks", looks)
        set_(self, "alpha_looks", _check_levels("alpha_looks", self.alpha_looks, len(looks)))
        set_(self, "beta_looks", _check_levels("beta_looks", self.beta_looks, len(looks)))
        if math.fsum(self.alpha_looks) > self.side_alpha * (1 + _SLACK):
            raise ValueError(f"alpha_looks sum to {math.fsum(self.alpha_looks):.6g}, more than the "
                             f"{self.side_alpha:.6g} a {self.form} schedule with alpha={self.alpha} may spend on "
                             "each bounded probability.")
        early = self.beta_looks[:-1] if len(looks) > 1 else self.beta_looks
        if math.fsum(early) > self.side_beta * (1 + _SLACK):
            raise ValueError(f"beta_looks before the budget sum to {math.fsum(early):.6g}, more than "
                             f"{self.side_beta:.6g}.")

    @classmethod
    def geometric(cls, n: int, alpha: float, form: str = "binary", *, first_look: int = 32, ratio: float = 1.5,
                  final_share: float = 0.95, beta: float = 0.01, nb_classes: int | None = None) -> LookSchedule:
        """The default schedule: looks t_1 = ``first_look``, then ×``ratio`` (rounded up) while
        t·√ratio ≤ n, then n; ``final_share`` of the side's α on the look at n, the rest split equally
        over the earlier looks; β split equally over the looks before n.

        A single look (n < first_look·√ratio) spends all of α there: that is fixed-n CERTIFY.
        """
        n = check_int("n", n, 1)
        alpha = check_alpha(alpha)
        _check_form(form)
        first_look = check_int("first_look", first_look, 1)
        ratio = check_positive("ratio", ratio)
        if ratio <= 1.0:
            raise ValueError(f"ratio must be > 1 (the growth factor between looks), got {ratio!r}.")
        final_share = check_alpha(final_share, "final_share")
        beta = check_alpha(beta, "beta")
        looks: list[int] = []
        t = first_look
        while t * math.sqrt(ratio) <= n:
            looks.append(t)
            t = max(t + 1, math.ceil(t * ratio))
        looks.append(n)
        k = len(looks)
        side_alpha = alpha if form == "binary" else alpha / 2.0
        side_beta = beta if form == "binary" else beta / 2.0
        if k == 1:
            alpha_looks, beta_looks = (side_alpha,), (side_beta,)
        else:
            early = (1.0 - final_share) * side_alpha / (k - 1)
            alpha_looks = (early,) * (k - 1) + (final_share * side_alpha,)
            beta_looks = (side_beta / (k - 1),) * k
        return cls(n=n, alpha=alpha, form=form, looks=tuple(looks), alpha_looks=alpha_looks, beta=beta,
                   beta_looks=beta_looks, nb_classes=nb_classes)

    @property
    def side_alpha(self) -> float:
        """α available to each bounded probability: α (binary) or α/2 (multiclass, p_A and p_B)."""
        return self.alpha if self.form == "binary" else self.alpha / 2.0

    @property
    def side_beta(self) -> float:
        """β available to each optimistic (refutation) bound: β (binary) or β/2 (multiclass)."""
        return self.beta if self.form == "binary" else self.beta / 2.0

    @property
    def beta_b_looks(self) -> tuple[float, ...]:
        """Levels of the optimistic (lower) p_B bound per look: β_j/(C − 1) (see ``nb_classes``)."""
        split = 1 if self.nb_classes is None else self.nb_classes - 1
        return tuple(b / split for b in self.beta_looks)

    @property
    def final_alpha(self) -> float:
        """α spent at the budget: the final look's bound is fixed-n Clopper–Pearson at this level."""
        return self.alpha_looks[-1]

    @property
    def num_looks(self) -> int:
        return len(self.looks)

    def look_index(self, t) -> np.ndarray:
        """Index j of the look t_j = t, vectorized. The bounds are valid only at the scheduled looks.

        :raises ValueError: when some t is not a look of the schedule.
        """
        t_arr = np.asarray(t)
        looks = np.asarray(self.looks, dtype=np.int64)
        idx = np.searchsorted(looks, t_arr)
        ok = (idx < len(looks)) & (looks[np.minimum(idx, len(looks) - 1)] == t_arr)
        if not np.all(ok):
            bad = np.unique(t_arr[~ok])[:5] if t_arr.ndim else t_arr
            raise ValueError(f"t={bad} is not a look of the schedule {self.looks}: the bounds are valid only at the "
                             "scheduled looks (stop and decide only there).")
        return idx


# ====================================================================== bounds at a look
def _at_look(schedule: LookSchedule, k, t, name: str):
    """(k, t, look index) as broadcast arrays, after checking that t is a look and k a count in 0..t."""
    idx = schedule.look_index(t)
    k_arr, t_arr = check_counts(k, t, k_name=name, n_name="t")
    return k_arr, t_arr, np.broadcast_to(idx, k_arr.shape)


def _level(levels: tuple[float, ...], idx: np.ndarray) -> np.ndarray:
    return np.asarray(levels, dtype=np.float64)[idx]


def _per_level(bound, k, t, a):
    """``bound(k, t, level)`` (a Clopper–Pearson bound, which takes one level) with a level per entry:
    one call per distinct level (at most one per look)."""
    out = np.empty(np.shape(k), dtype=np.float64)
    for level in np.unique(a):
        m = a == level
        out[m] = bound(k[m], t[m], float(level))
    return out


def _need_multiclass(schedule: LookSchedule, what: str) -> None:
    if schedule.form != "multiclass":
        raise ValueError(f"{what} bounds the runner-up p_B, which only the multiclass form does (the binary "
                         "form uses p_B = 1 − p_A and spends all of α on p_A); build the schedule with "
                         "form='multiclass'.")


def anytime_lower(schedule: LookSchedule, k, t) -> np.ndarray:
    """Lower bound on p_A at look t from k votes for c_A: Clopper–Pearson at the look's level α_j.

    Simultaneously valid over all looks: P(some look's bound > p_A) ≤ Σ_j α_j ≤ α (binary) or α/2
    (multiclass), so the bound at any data-dependent stopping look is valid (module docstring).
    """
    k, t, idx = _at_look(schedule, k, t, "k")
    return _per_level(clopper_pearson_lower, k, t, _level(schedule.alpha_looks, idx))


def anytime_upper(schedule: LookSchedule, k_b, t) -> np.ndarray:
    """Upper bound on the runner-up p_B at look t from the largest other count k_B (multiclass form),
    simultaneously valid over all looks at α/2. Valid for the true runner-up c*: its count is ≤ k_B at
    every look and the bound is non-decreasing in the count."""
    _need_multiclass(schedule, "anytime_upper")
    k_b, t, idx = _at_look(schedule, k_b, t, "k_b")
    return _per_level(clopper_pearson_upper, k_b, t, _level(schedule.alpha_looks, idx))


def refutation_upper(schedule: LookSchedule, k, t) -> np.ndarray:
    """Optimistic (upper) bound on p_A at look t, level β_j: if even this bound does not certify a radius,
    the radius is refuted. Wrong for an input whose true p_A certifies R with probability ≤ β (binary)
    or β/2 (multiclass) over all looks together."""
    k, t, idx = _at_look(schedule, k, t, "k")
    return _per_level(clopper_pearson_upper, k, t, _level(schedule.beta_looks, idx))


def refutation_lower(schedule: LookSchedule, k_b, t) -> np.ndarray:
    """Optimistic (lower) bound on the runner-up p_B at look t from the largest other count k_B (multiclass
    form), level β_j/(C − 1): k_B is the largest of C − 1 counts, so its bound exceeds p_B = max p_c only if
    some class's own bound exceeds its p_c — a union over the other classes (``LookSchedule.nb_classes``)."""
    _need_multiclass(schedule, "refutation_lower")
    k_b, t, idx = _at_look(schedule, k_b, t, "k_b")
    return _per_level(clopper_pearson_lower, k_b, t, _level(schedule.beta_b_looks, idx))


def best_case_lower(schedule: LookSchedule, k, t) -> np.ndarray:
    """Largest lower bound on p_A that any later look could reach: every remaining draw votes c_A.

    max over looks t_j > t of CP_lower(k + t_j − t, t_j; α_j); 0 (certifies nothing) at the budget.
    Any continuation has at most k + t_j − t votes at t_j and the bound is non-decreasing in the
    count, so no path does better. The maximum sits at the budget whenever α_K ≥ α_j (the default
    schedules): CP_lower(k + m, t + m) is non-decreasing in m (one more vote and one more draw: the
    tail P_p(Bin(t + 1) ≥ k + 1) ≤ P_p(Bin(t) ≥ k)) and in the level; it is computed over all later
    looks all the same, so hand-made schedules are covered.
    """
    k, t, _ = _at_look(schedule, k, t, "k")
    return _best_later(schedule, k, t, lower=True)


def best_case_upper(schedule: LookSchedule, k_b, t) -> np.ndarray:
    """Smallest upper bound on p_B that any later look could reach (multiclass): every remaining draw votes
    c_A, so k_B stays put. min over looks t_j > t of CP_upper(k_B, t_j; α_j); 1 at the budget. At the
    budget whenever α_K ≥ α_j (the bound is non-increasing in t_j and in the level)."""
    _need_multiclass(schedule, "best_case_upper")
    k_b, t, _ = _at_look(schedule, k_b, t, "k_b")
    return _best_later(schedule, k_b, t, lower=False)


def _best_later(schedule: LookSchedule, k, t, *, lower: bool) -> np.ndarray:
    """Best valid bound over the looks t_j > t on the path where every further draw votes c_A: the largest
    lower bound on p_A (k + t_j − t votes) or the smallest upper bound on p_B (k votes), at level α_j."""
    best = np.full(k.shape, 0.0 if lower else 1.0)
    for t_j, a_j in zip(schedule.looks, schedule.alpha_looks):
        later = t_j > t
        if not later.any():
            continue
        n_j = np.full(k.shape, float(t_j))
        if lower:
            cand = clopper_pearson_lower(np.where(later, k + t_j - t, 0.0), n_j, a_j)
            best = np.where(later, np.maximum(best, cand), best)
        else:
            cand = clopper_pearson_upper(np.where(later, k, 0.0), n_j, a_j)
            best = np.where(later, np.minimum(best, cand), best)
    return best


# ====================================================================== the decision at one look
@dataclass(frozen=True)
class SequentialDecision:
    """What one look decides for N inputs and a grid of G requested radii.

    Probability bounds are (N,); the per-radius masks are (N, G).

    :ivar radii: the requested radii (G,).
    :ivar p_a_lower: valid lower bound on p_A (simultaneous over the looks).
    :ivar p_b_upper: valid upper bound on p_B (1 − p_a_lower in the binary form).
    :ivar radius: the certified radius the valid bounds give now (0 where they abstain); the radius to
        report when the input stops here.
    :ivar certified: the valid bounds certify R (radius ≥ R and not abstaining).
    :ivar refuted: even the optimistic bounds (p_a_upper, p_b_lower) do not certify R.
    :ivar futile: not certified now and not certifiable at any later look, even if every remaining draw
        votes c_A (at the budget: every uncertified radius).
    :ivar abstain: the optimistic bounds abstain (p_A clearly ≤ 1/2, or p_A ≤ p_B): refuted at every R.
    :ivar stop: every requested radius is decided (certified, refuted or futile).
    """

    radii: np.ndarray
    p_a_lower: np.ndarray
    p_b_upper: np.ndarray
    p_a_upper: np.ndarray
    p_b_lower: np.ndarray
    radius: np.ndarray
    certified: np.ndarray
    refuted: np.ndarray
    futile: np.ndarray
    abstain: np.ndarray
    stop: np.ndarray


def _certifies(noise, p_a, p_b, radii, kwargs):
    """(N,) radius and (N, G) mask "(p_a, p_b) certifies R" (p_b None: binary), as the estimator decides:
    not abstaining (p_a > 1/2, or p_a > min(p_b, 1 − p_a)) and radius ≥ R."""
    r = noise.certified_radius(p_a, p_b, **kwargs)
    ok = p_a > 0.5 if p_b is None else p_a > np.minimum(p_b, 1.0 - p_a)
    r = np.where(ok, r, 0.0)
    return r, ok[:, None] & (r[:, None] >= radii[None, :])


def sequential_decision(schedule: LookSchedule, noise, radii, k_a, t, k_b=None, *, norm=None,
                        dim: int | None = None, method: str | None = None, x=None,
                        clip_values=None) -> SequentialDecision:
    """Decide, at look ``t``, which requested radii are certified, refuted or futile for N inputs.

    :param schedule: the :class:`LookSchedule` (its form decides whether ``k_b`` is used).
    :param noise: any object with ``certified_radius(p_a, p_b=None, *, norm, dim, method, x, clip_values)``,
        non-decreasing in p_a and non-increasing in p_b (duck-typed; e.g. an :mod:`art_smoothing.noise`
        noise).
    :param radii: one radius or a 1-D grid (G,) of radii ≥ 0 requested for every input.
    :param k_a: (N,) votes for c_A among the first t estimation draws (c_A fixed by independent
        selection draws, as in CERTIFY).
    :param t: draws so far: a look of the schedule (an int, or one per input).
    :param k_b: (N,) largest vote count among the other classes (multiclass form only).
    :param norm, dim, method, x, clip_values: passed to ``noise.certified_radius`` (``x`` (N, ...) and
        ``clip_values`` for box-constrained certificates).
    :return: a :class:`SequentialDecision`.

    Reporting ``radius`` when ``stop`` is first true (or at the budget) over-claims with probability
    ≤ α whatever the stopping rule: the bounds hold at all looks at once (module docstring).
    """
    radii = check_radius(radii, "radii")
    if radii.ndim > 1:
        raise ValueError(f"radii must be one radius or a 1-D grid shared by all inputs, got shape {radii.shape}.")
    radii = radii.reshape(-1)
    k_a = np.atleast_1d(np.asarray(k_a, dtype=np.float64))
    if k_a.ndim != 1:
        raise ValueError(f"k_a must be one vote count per input (N,), got shape {k_a.shape}.")
    try:
        t = np.broadcast_to(np.asarray(t), k_a.shape)
    except ValueError:
        raise ValueError(f"t must be one look for all inputs or one per input ({k_a.shape[0]},), "
                         f"got {t!r}.") from None
    kwargs = {"norm": norm, "dim": dim, "method": method, "x": x, "clip_values": clip_values}
    multiclass = schedule.form == "multiclass"
    if multiclass:
        if k_b is None:
            raise ValueError("the multiclass form needs k_b, the largest vote count among the other classes.")
        k_b = np.broadcast_to(np.asarray(k_b, dtype=np.float64), k_a.shape)
        if np.any(k_a + k_b > t):
            raise ValueError("k_a + k_b must not exceed t (votes among t draws).")
    elif k_b is not None:
        raise ValueError("k_b is only used by the multiclass form (the binary form bounds p_B by 1 − p_A); "
                         "drop it or build the schedule with form='multiclass'.")

    p_a_lower = anytime_lower(schedule, k_a, t)
    p_a_upper = refutation_upper(schedule, k_a, t)
    p_a_best = best_case_lower(schedule, k_a, t)
    if multiclass:
        p_b_upper = anytime_upper(schedule, k_b, t)
        p_b_lower = refutation_lower(schedule, k_b, t)
        p_b_best = best_case_upper(schedule, k_b, t)
    else:
        p_b_upper = p_b_lower = p_b_best = None

    radius, certified = _certifies(noise, p_a_lower, p_b_upper, radii, kwargs)
    _, optimistic = _certifies(noise, p_a_upper, p_b_lower, radii, kwargs)
    _, possible_later = _certifies(noise, p_a_best, p_b_best, radii, kwargs)
    refuted = ~optimistic
    futile = ~certified & ~possible_later
    abstain = ~(p_a_upper > 0.5) if not multiclass else ~(p_a_upper > np.minimum(p_b_lower, 1.0 - p_a_upper))
    stop = np.all(certified | refuted | futile, axis=1)
    return SequentialDecision(
        radii=radii, p_a_lower=p_a_lower, p_b_upper=1.0 - p_a_lower if p_b_upper is None else p_b_upper,
        p_a_upper=p_a_upper, p_b_lower=1.0 - p_a_upper if p_b_lower is None else p_b_lower, radius=radius,
        certified=certified, refuted=refuted, futile=futile, abstain=abstain, stop=stop,
    )
