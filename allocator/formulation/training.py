"""Training placement: each job starts once, at one site, on one option, as a gang.

Sets
    PLACEMENTS          (j, o, s, t) from ``Index.placements``: option o of job j can start at
                        site s in period t (pool large enough, power fits, residency, window)
    LATE_PLACEMENTS     elastic model only: starts that end after a hard deadline
Variables
    start[j,o,s,t]      binary: job j starts with option o at site s in period t
    training_unplaced[j]  mandatory jobs with no placement: fixed at 0 (the row below is then
                        infeasible); elastic model: every mandatory job, in [0, 1];
                        with the ``unplaced_penalty`` option (the neighbourhood search's
                        model): every mandatory job, in [0, 1], at that cost each in the
                        objective (a plan that leaves a mandatory job out is feasible but
                        far costlier than any that places it)
    slack_deadline_h[j] elastic model only: hours past a hard deadline
Constraints
    training_assign[j]:       sum_{o,s,t} start[j,o,s,t] (+ training_unplaced[j]) == 1   (mandatory)
                              sum_{o,s,t} start[j,o,s,t] <= 1                            (optional)
    training_precedence[j,p,t]  for each predecessor p of j and each start period t of j:
                              sum_{o,s,t' <= t} start[j,o,s,t']
                                  <= sum_{o,s,t'': t'' + d(p,o) <= t} start[p,o,s,t'']
                              (j may have started by t only if p has ended by t; the
                              time-indexed "strong" form, one row per start period of j)
    training_deadline_slack[j]  elastic only:
                              sum_{late starts} late_h * start - slack_deadline_h[j] <= 0

Release, hard deadlines, the horizon end, residency, pool size and the gang's own power are
enforced by the index (only eligible starts have a variable). Soft-deadline tardiness, site
extra cost and staging egress are per-start coefficients used by the objective.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyomo.environ as pyo

from allocator.formulation.common import add_slack, linear, penalty_weights
from allocator.indexing import Index
from allocator.options import SolveOptions
from allocator.schema import Instance


def add_training(model, inst: Instance, index: Index, options: SolveOptions) -> None:
    """Start variables, assignment, precedence (and elastic deadline slack)."""
    p = index.placements
    if model.elastic and len(index.late_placements):
        p = pd.concat([p, index.late_placements], ignore_index=True)
    model._placements = p
    keys = list(zip(p["j"].tolist(), p["o"].tolist(), p["s"].tolist(), p["t"].tolist(), strict=True))
    model.PLACEMENTS = pyo.Set(initialize=keys, dimen=4, ordered=True)
    model.start = pyo.Var(model.PLACEMENTS, domain=pyo.Binary)
    svars = list(model.start.values())
    model._start_vars = svars

    rows_of: dict[str, np.ndarray] = {
        j: np.asarray(ix, dtype=np.int64) for j, ix in p.groupby("j", sort=False).indices.items()}

    # training_assign
    mand = [j for j in index.jobs if index.mandatory[j]]
    penalised = model._unplaced_penalty is not None and not model.elastic
    slack_jobs = mand if model.elastic or penalised else [j for j in mand if j not in rows_of]
    model.UNPLACED_JOBS = pyo.Set(initialize=slack_jobs, ordered=True)
    model.training_unplaced = pyo.Var(model.UNPLACED_JOBS,
                                      bounds=(0, 1 if model.elastic or penalised else 0))
    if penalised:
        model._penalties.append(("training_unplaced",
                                 dict.fromkeys(slack_jobs, float(model._unplaced_penalty))))
    if model.elastic:
        add_slack(model, "training", "mandatory job not placed", model.training_unplaced)
    assign_jobs = [j for j in index.jobs if j in rows_of or j in model.UNPLACED_JOBS]
    model.training_assign = pyo.Constraint(assign_jobs)
    for j in assign_jobs:
        ix = rows_of.get(j, np.zeros(0, dtype=np.int64))
        vs = [svars[i] for i in ix.tolist()]
        cs = [1.0] * len(vs)
        if j in model.UNPLACED_JOBS:
            vs.append(model.training_unplaced[j])
            cs.append(1.0)
        body = linear(cs, vs)
        model.training_assign[j] = (body == 1) if index.mandatory[j] else (body <= 1)

    # training_precedence
    prec: dict[tuple, object] = {}
    t_arr = p["t"].to_numpy(dtype=np.int64)
    end_arr = t_arr + p["d"].to_numpy(dtype=np.int64)
    for j, q in index.precedences:
        jx = rows_of.get(j)
        if jx is None:
            continue
        qx = rows_of.get(q, np.zeros(0, dtype=np.int64))
        jx = jx[np.argsort(t_arr[jx], kind="stable")]
        qx = qx[np.argsort(end_arr[qx], kind="stable")]
        jt = t_arr[jx]
        qe = end_arr[qx]
        for t in np.unique(jt).tolist():
            n_j = int(np.searchsorted(jt, t, side="right"))
            n_q = int(np.searchsorted(qe, t, side="right"))
            vs = [svars[i] for i in jx[:n_j].tolist()] + [svars[i] for i in qx[:n_q].tolist()]
            prec[(j, q, t)] = linear([1.0] * n_j + [-1.0] * n_q, vs) <= 0
    model.PRECEDENCE_ROWS = pyo.Set(initialize=list(prec), dimen=3, ordered=True)
    model.training_precedence = pyo.Constraint(model.PRECEDENCE_ROWS, rule=lambda m, j, q, t: prec[(j, q, t)])

    # elastic: hours past hard deadlines
    if model.elastic:
        late = p.index[p["late_h"] > 0]
        late_jobs = sorted(set(p.loc[late, "j"]))
        model.LATE_JOBS = pyo.Set(initialize=late_jobs, ordered=True)
        model.slack_deadline_h = pyo.Var(model.LATE_JOBS, domain=pyo.NonNegativeReals)
        add_slack(model, "training", "hours past a hard deadline", model.slack_deadline_h)
        rows = {}
        for j, grp in p.loc[late].groupby("j", sort=False):
            ix = grp.index.tolist()
            rows[j] = linear(grp["late_h"].tolist() + [-1.0],
                             [svars[i] for i in ix] + [model.slack_deadline_h[j]]) <= 0
        model.training_deadline_slack = pyo.Constraint(model.LATE_JOBS, rule=lambda m, j: rows[j])
        w = penalty_weights(inst, index)
        gang = p.groupby("j")["gpus"].max().to_dict()
        gd = (p["gpus"] * p["d"]).groupby(p["j"]).max().to_dict()
        model._penalties.append(("slack_deadline_h",
                                 {j: w["late_h"] * gang[j] for j in late_jobs}))
        model._penalties.append(("training_unplaced",
                                 {j: w["unplaced"] * max(1.0, float(gd.get(j, _max_gd(inst, index, j))))
                                  for j in slack_jobs}))


def _max_gd(inst: Instance, index: Index, j: str) -> float:
    """Largest gpus x periods over a job's options (for a job with no placement at all)."""
    job = next(x for x in inst.jobs if x.id == j)
    from allocator.indexing import duration_periods
    return max((o.gpus * duration_periods(o.hours, index.period_hours) for o in job.options), default=1)
