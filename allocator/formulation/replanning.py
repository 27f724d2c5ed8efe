"""Re-planning: change a running plan, with frozen jobs, migration cost and a move budget.

Active only when ``SolveOptions.previous`` holds a previous plan (``allocator.previous``).
Notation: prev(j) = (o0, s0, g0, t0) the previous placement of job j, N = ``options.now``,
H = period hours, P_j the start columns (j, o, s, t) of job j.

Sets
    FROZEN_JOBS      jobs of the previous plan (still in the instance) with t0 < N
    REPLAN_JOBS      jobs of the previous plan (still in the instance) with t0 >= N
    MOVE_STARTS(j)   starts of j in REPLAN_JOBS with (o, s, g) != (o0, s0, g0)
    RETIME_STARTS(j) starts of j with (o, s, g) == (o0, s0, g0) and t != t0
    SCALE_KEYS       (v, s, g, t), t >= N, of services with scale_cost_usd_per_gpu > 0
Bounds (column bounds, no rows)
    frozen:   start[j,o0,s0,t0] = 1 and every other start of j = 0       (j in FROZEN_JOBS)
    history:  start[j,o,s,t] = 0 for t < N                                (every other job)
              gpus_inf[v,s,g,t] = previous gpus_inf[v,s,g,t] for t < N  (inference before
              now is the previous plan's; serving within those GPUs is still computed)
Expressions
    replanning_moved[j] = sum_{MOVE_STARTS(j)} start                     (0/1: at most one start)
    move_usd(j, s)  = move_cost_usd(j) if set, else
                      dataset_tb(j) * 1000 * egress_usd_per_gb(route s0 -> s) + move_fixed_usd(j)
    cost['migration'] = sum_j sum_{MOVE_STARTS(j)} move_usd(j, s) * start
                      + sum_j sum_{RETIME_STARTS(j)} |t - t0| * H * retime_cost_usd_per_h(j) * start
                      + sum_{SCALE_KEYS} scale_cost_usd_per_gpu(v) * (scale_up + scale_down)
Variables
    replanning_scale_up[v,s,g,t], replanning_scale_down[v,s,g,t] >= 0
Constraints
    replanning_max_moves:       sum_j replanning_moved[j] <= max_moves            (if max_moves is set)
    replanning_max_moved_gpus:  sum_j sum_{MOVE_STARTS(j)} gpus * start <= max_moved_gpus  (if set)
    replanning_scale[v,s,g,t]:  (gpus_inf[v,s,g,t] - prev[v,s,g,t]) - (gpus_inf[v,s,g,t-1] - prev[v,s,g,t-1])
                            == replanning_scale_up - replanning_scale_down
                            (the difference term at t-1 is 0 for t = N: a GPU added against the
                            previous plan and kept is paid once, when it is added)

A job of the previous plan that the instance no longer has is "removed"; a job the instance
has and the previous plan does not is "added" and placed freely (after N). A frozen job with
no eligible start at its previous placement makes the instance infeasible:
``frozen_problems`` says which job and which limit before any model is built.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyomo.environ as pyo

from allocator.formulation.common import linear
from allocator.indexing import GB_PER_TB, Index
from allocator.network import Network
from allocator.options import SolveOptions
from allocator.previous import PreviousPlan
from allocator.schema import Instance

CHANGES = ("kept", "moved", "retimed", "added", "removed", "dropped")


def move_usd(job, from_site: str, to_site: str, net: Network) -> float:
    """$ paid when ``job`` moves from ``from_site`` to ``to_site`` (the one rule)."""
    if job.move_cost_usd is not None:
        return float(job.move_cost_usd)
    sites = {s.id: s for s in net.inst.sites}
    route = net.route(sites[from_site].node_id, sites[to_site].node_id)
    egress = route.egress_usd_per_gb if route is not None else 0.0
    return float(job.dataset_tb * GB_PER_TB * egress + job.move_fixed_usd)


def retime_usd(job, shift_periods: int, period_hours: float) -> float:
    return float(abs(shift_periods) * period_hours * job.retime_cost_usd_per_h)


def frozen_jobs(inst: Instance, plan: PreviousPlan, now: int) -> dict[str, tuple]:
    """job -> previous (option, site, gpu_type, gpus, start) for jobs started before now."""
    ids = {j.id for j in inst.jobs}
    return {j: pl for j, pl in plan.placement().items() if pl[4] < now and j in ids}


def frozen_problems(inst: Instance, index: Index, plan: PreviousPlan, now: int) -> list[str]:
    """Why frozen jobs cannot run where they run (empty when they all can)."""
    p = index.placements
    have = set(zip(p["j"], p["o"], p["s"], p["t"], p["gpus"], strict=True))
    jobs = {j.id: j for j in inst.jobs}
    pools = {(s.id, q.gpu_type): q for s in inst.sites for q in s.pools}
    lines = []
    for j, (o, s, g, n, t) in frozen_jobs(inst, plan, now).items():
        if (j, o, s, t, n) in have:
            continue
        job = jobs[j]
        where = (f"job {j} started in period {t} at {s} on option {o} ({n} x {g}) in the previous "
                 f"plan and is frozen (now = {now}), but can no longer run there: ")
        if o >= len(job.options) or job.options[o].gpu_type != g or job.options[o].gpus != n:
            why = f"its option {o} is no longer {n} x {g}"
        elif (s, g) not in pools:
            why = f"site {s} has no {g} pool any more"
        elif job.allowed_sites is not None and s not in job.allowed_sites:
            why = f"site {s} is not in its allowed_sites"
        else:
            why = index.unplaced.get(j) or (
                f"the {g} pool, the power cap or the horizon at {s} no longer fits its "
                f"{n} GPUs from period {t}")
        lines.append(where + why)
    return lines


def add_replanning(model, inst: Instance, index: Index, options: SolveOptions) -> None:
    """Frozen and history bounds, move and scale costs, the move budget."""
    plan = options.previous
    if plan is None:
        return
    if not isinstance(plan, PreviousPlan):
        from allocator.previous import load_previous
        plan = load_previous(plan, inst)
    now, H = int(options.now), index.period_hours
    net = Network(inst)
    jobs = {j.id: j for j in inst.jobs}
    prev = plan.placement()
    frozen = frozen_jobs(inst, plan, now)
    mig_c: list[float] = []
    mig_v: list = []
    moved_rows: dict[str, list[int]] = {}
    gpus_c: list[float] = []
    gpus_v: list = []
    if hasattr(model, "start"):
        p = model._placements
        sv = model._start_vars
        jj, oo, ss, gg, tt = (p[c].tolist() for c in ("j", "o", "s", "g", "t"))
        nn = p["gpus"].tolist()
        for i, j in enumerate(jj):
            var = sv[i]
            if j in frozen:
                o0, s0, g0, n0, t0 = frozen[j]
                if (oo[i], ss[i], gg[i], tt[i], nn[i]) == (o0, s0, g0, t0, n0):
                    var.setlb(1)
                else:
                    var.setub(0)
                continue
            if tt[i] < now:
                var.setub(0)
                continue
            if j not in prev:
                continue
            o0, s0, g0, n0, t0 = prev[j]
            if (oo[i], ss[i], gg[i]) != (o0, s0, g0):
                c = move_usd(jobs[j], s0, ss[i], net)
                moved_rows.setdefault(j, []).append(i)
                gpus_c.append(float(nn[i]))
                gpus_v.append(var)
            else:
                c = retime_usd(jobs[j], tt[i] - t0, H)
            if c:
                mig_c.append(c)
                mig_v.append(var)
        model.REPLANNING_MOVABLE = pyo.Set(initialize=sorted(moved_rows), ordered=True)
        model.replanning_moved = pyo.Expression(
            model.REPLANNING_MOVABLE, rule=lambda m, j: linear([1.0] * len(moved_rows[j]),
                                                           [sv[i] for i in moved_rows[j]]))
        if options.max_moves is not None:
            model.replanning_max_moves = pyo.Constraint(
                expr=linear([1.0] * len(gpus_v), gpus_v) <= options.max_moves)
        if options.max_moved_gpus is not None:
            model.replanning_max_moved_gpus = pyo.Constraint(expr=linear(gpus_c, gpus_v) <= options.max_moved_gpus)
    _add_inference(model, inst, index, plan, now, mig_c, mig_v)
    model._migration = linear(mig_c, mig_v)


def _add_inference(model, inst: Instance, index: Index, plan: PreviousPlan, now: int,
                   mig_c: list[float], mig_v: list) -> None:
    if not hasattr(model, "gpus_inf"):
        return
    ig = plan.inference_gpus
    prev = {(v, s, g, int(t)): int(n) for v, s, g, t, n in zip(
        ig["service"], ig["site"], ig["gpu_type"], ig["period"], ig["gpus"], strict=True)}
    for key, var in model.gpus_inf.items():
        if key[3] < now:
            var.setlb(prev.get(key, 0))
            var.setub(prev.get(key, 0))
    cost = {v.id: v.scale_cost_usd_per_gpu for v in inst.services if v.scale_cost_usd_per_gpu > 0}
    if not cost:
        return
    sp = index.service_periods
    keys = [(v, s, g) for v, s, g in sp[["v", "s", "g"]].drop_duplicates().itertuples(index=False)
            if v in cost]
    keys += sorted({(v, s, g) for v, s, g, t in prev if v in cost and t >= now} - set(keys))
    rows = [(v, s, g, t) for v, s, g in keys for t in range(now, index.periods)]
    model.REPLANNING_SCALE = pyo.Set(initialize=rows, dimen=4, ordered=True)
    model.replanning_scale_up = pyo.Var(model.REPLANNING_SCALE, domain=pyo.NonNegativeReals)
    model.replanning_scale_down = pyo.Var(model.REPLANNING_SCALE, domain=pyo.NonNegativeReals)
    have = model.gpus_inf

    def diff(v, s, g, t):
        cs, vs = [], []
        if (v, s, g, t) in have:
            cs.append(1.0)
            vs.append(have[v, s, g, t])
        return cs, vs, -float(prev.get((v, s, g, t), 0))

    def rule(m, v, s, g, t):
        cs, vs, c0 = diff(v, s, g, t)
        if t > now:
            c1, v1, k1 = diff(v, s, g, t - 1)
            cs, vs, c0 = cs + [-c for c in c1], vs + v1, c0 - k1
        return linear(cs + [-1.0, 1.0], vs + [m.replanning_scale_up[v, s, g, t], m.replanning_scale_down[v, s, g, t]],
                      c0) == 0
    model.replanning_scale = pyo.Constraint(model.REPLANNING_SCALE, rule=rule)
    for v, s, g, t in rows:
        mig_c.extend([cost[v], cost[v]])
        mig_v.extend([model.replanning_scale_up[v, s, g, t], model.replanning_scale_down[v, s, g, t]])


# --------------------------------------------------------------------------- derivation


def changes_frame(inst: Instance, plan: PreviousPlan, training: pd.DataFrame, now: int,
                  period_hours: float) -> pd.DataFrame:
    """changes.csv: one row per job of the previous plan or the instance, with its change and
    the $ it paid for it (move or retime), by the rules of the model above."""
    net = Network(inst)
    jobs = {j.id: j for j in inst.jobs}
    prev = plan.placement()
    new = {j: (int(o), s, g, int(n), int(t)) for j, o, s, g, n, t in zip(
        training["job"], training["option"], training["site"], training["gpu_type"],
        training["gpus"], training["start_period"], strict=True)}
    rows = []
    for j in list(prev) + [j for j in jobs if j not in prev]:
        a, b = prev.get(j), new.get(j)
        cost = 0.0
        if j not in jobs:
            change = "removed"
        elif a is None:
            change = "added" if b is not None else "dropped"
        elif b is None:
            change = "dropped"
        elif (a[0], a[1], a[2]) != (b[0], b[1], b[2]):
            change, cost = "moved", move_usd(jobs[j], a[1], b[1], net)
        elif a[4] != b[4]:
            change, cost = "retimed", retime_usd(jobs[j], b[4] - a[4], period_hours)
        else:
            change = "kept"
        rows.append({"job": j, "change": change,
                     "from_site": a[1] if a else "", "to_site": b[1] if b else "",
                     "from_option": a[0] if a else None, "to_option": b[0] if b else None,
                     "from_start": a[4] if a else None, "to_start": b[4] if b else None,
                     "move_cost_usd": cost})
    from allocator.results import TABLES, normalize_frame
    # with no job on either side the table is empty, with its columns all the same
    return normalize_frame("changes", pd.DataFrame(rows, columns=list(TABLES["changes"])))


def scale_usd(inst: Instance, plan: PreviousPlan, inference_gpus: pd.DataFrame, now: int,
              periods: int) -> float:
    """$ of inference scaling against the previous plan (replanning_scale above, evaluated)."""
    cost = {v.id: v.scale_cost_usd_per_gpu for v in inst.services if v.scale_cost_usd_per_gpu > 0}
    if not cost:
        return 0.0

    def table(df):
        d = df[df["service"].isin(list(cost))]
        return d.groupby(["service", "site", "gpu_type", "period"])["gpus"].sum()
    diff = table(inference_gpus).sub(table(plan.inference_gpus), fill_value=0)
    total = 0.0
    for (v, _s, _g), ser in diff.groupby(level=[0, 1, 2]):
        arr = np.zeros(periods)
        for (_, _, _, t), x in ser.items():
            arr[int(t)] = x
        steps = np.diff(np.concatenate([[0.0], arr[now:]]))
        total += cost[v] * float(np.abs(steps).sum())
    return total


def counts(changes: pd.DataFrame) -> dict[str, int]:
    return {c: int((changes["change"] == c).sum()) for c in CHANGES}
