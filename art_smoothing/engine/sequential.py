"""Anytime-valid sequential CERTIFY: decide requested radii with as few estimation draws as each input needs.

Cohen et al.'s CERTIFY spends the same n draws on every input, though a confidently classified input is
certified at a modest radius after a few hundred and a hopeless one is clear after a few dozen. Here the
selection stage is unchanged (n0 draws pick c_A); the estimation votes are then looked at after
t_1 < t_2 < … < t_K = n draws (the budget), and an input stops at the first look where every requested
radius is certified, refuted or futile (:func:`art_smoothing.certificates.sequential.sequential_decision`).
The bounds hold at all looks simultaneously (a union bound over the fixed looks, with 95 % of α kept for
the look at the budget), so the reported radius over-claims with probability ≤ α whatever the stopping
time — the statistics, measured over-claim rates and the cost at the budget are in ``docs/sequential.md``.

Cost. The draws are those of fixed-n CERTIFY with n = the budget (the same block stream,
:class:`~art_smoothing.engine.core.NoiseBlocks`), each block drawn once per group of inputs however many
looks read it; inputs still running are evaluated look by look, one input's draws per forward pass, cut
at fixed positions, so an input's votes — hence its decisions — do not depend on batching or on the
partition across Ray workers.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from art_smoothing.certificates.sequential import sequential_decision
from art_smoothing.engine.plan import CertifyPlan, top_counts
from art_smoothing.engine.result import CertificationResult
from art_smoothing.engine.streams import NoiseBlocks, Stage, group_size

__all__ = ["run_sequential"]


def run_sequential(engine, x: np.ndarray, plan: CertifyPlan, seed: int) -> CertificationResult:
    """Sequential CERTIFY of validated inputs under a validated plan (``plan.sequential``) with the engine
    ``engine`` (a :class:`~art_smoothing.engine.core.SmoothingEngine`) and the stream base seed ``seed``."""
    schedule = plan.schedule()
    radii = np.asarray(plan.radii, dtype=np.float64)
    n_inputs, n_classes = x.shape[0], plan.nb_classes
    multiclass = plan.form == "multiclass"
    counts0 = engine.count_votes(x, plan.n0, Stage.SELECT, plan.batch_size, seed, desc="selection",
                                 verbose=plan.verbose)
    counts = torch.zeros((n_inputs, n_classes), dtype=torch.int64, device=engine.device)
    out = {"prediction": np.full(n_inputs, -1, dtype=np.int64), "radius": np.zeros(n_inputs),
           "p_a_lower": np.zeros(n_inputs), "p_b_upper": np.ones(n_inputs),
           "n_used": np.full(n_inputs, plan.n, dtype=np.int64),
           "decisions": np.zeros((n_inputs, len(radii)), dtype=np.int8)}
    bar = tqdm(total=n_inputs, desc="sequential certify (inputs decided)", unit="input", disable=not plan.verbose,
               leave=False)
    group = group_size(n_inputs, plan.dim)
    with torch.no_grad():
        for g0 in range(0, n_inputs, group):
            xg = torch.as_tensor(x[g0:g0 + group], device=engine.device).to(engine.noise_dtype)
            blocks = NoiseBlocks(engine, Stage.ESTIMATE, seed, plan.n)
            live = np.arange(xg.shape[0])  # positions in the group still running
            done = 0
            for t in schedule.looks:
                new = torch.zeros((len(live), n_classes), dtype=torch.int64, device=engine.device)
                engine.add_votes(xg[torch.as_tensor(live, device=engine.device)], new, done, t, blocks,
                                 plan.batch_size)
                rows = g0 + live
                counts[rows] += new
                c_a, n_a, n_b = top_counts(counts0[rows], counts[rows])
                decision = sequential_decision(
                    schedule, plan.noise, radii, n_a, t, n_b if multiclass else None, norm=plan.norm, dim=plan.dim,
                    method=plan.method, x=x[rows] if plan.box else None,
                    clip_values=plan.clip_values if plan.box else None)
                stop = decision.stop | (t == plan.n)
                _record(out, rows[stop], c_a[stop], decision, stop, t, multiclass)
                live = live[~stop]
                bar.update(int(stop.sum()))
                done = t
                if len(live) == 0:
                    break
    bar.close()
    return plan.result(counts=counts.cpu().numpy(), counts_selection=counts0.cpu().numpy(), seed=engine.seed,
                       radii=radii, extra={"looks": list(schedule.looks)}, **out)


def _record(out: dict, rows: np.ndarray, c_a: np.ndarray, decision, stop: np.ndarray, t: int,
            multiclass: bool) -> None:
    """Write the results of the inputs that stop at look ``t``."""
    p_a = decision.p_a_lower[stop]
    p_b = np.minimum(decision.p_b_upper[stop], 1.0 - p_a)  # as fixed-n CERTIFY reports it
    certified = p_a > p_b if multiclass else p_a > 0.5
    out["prediction"][rows] = np.where(certified, c_a, -1)
    out["radius"][rows] = np.where(certified, decision.radius[stop], 0.0)
    out["p_a_lower"][rows], out["p_b_upper"][rows] = p_a, p_b
    out["n_used"][rows] = t
    out["decisions"][rows] = np.where(decision.certified[stop], 1, np.where(decision.refuted[stop], 0, -1))
