"""Inference: demand per service, region and period served by sites within the latency SLO,
on whole GPUs, or counted unserved at its penalty; optional N+1 redundancy.

Sets
    SERVE_KEYS        (v, r, s, g, t): FLOWS (site s within the SLO of region r, GPU type g
                      offered at s and rated for v) x periods where (v, r) has demand
    DEMANDS           (v, r, t) with demand(v, r, t) > 0
    SERVICE_PERIODS   (v, s, g, t): SERVICE_POOLS x periods with possible traffic
Variables
    serve[v,r,s,g,t]  >= 0 tokens/s of v's demand from region r served at site s on type g
    unserved[v,r,t]   >= 0 tokens/s not served (paid at unserved_usd_per_mtok)
    gpus_inf[v,s,g,t] integer in [0, ub]: GPUs of type g held by v at site s, ub =
                      min(available, ceil(demand it may serve / tokens_per_s_per_gpu))
Constraints
    inference_demand[v,r,t]:     sum_{s,g} serve[v,r,s,g,t] + unserved[v,r,t] == demand(v,r,t)
    inference_capacity[v,s,g,t]: sum_r serve[v,r,s,g,t] <= tokens_per_s_per_gpu(v,g) * gpus_inf[v,s,g,t]
    inference_redundancy[v,s,t]  (services with redundancy, every site s that may serve v at t):
        sum_{s' != s, g} tokens_per_s_per_gpu(v,g) * gpus_inf[v,s',g,t]
            >= sum_{r,s'',g} serve[v,r,s'',g,t]
        written with the demand rows' identity sum serve = sum_r (demand - unserved), as
        sum_{s' != s, g} tokens_per_s_per_gpu(v,g) * gpus_inf[v,s',g,t] + sum_r unserved[v,r,t]
            >= sum_r demand(v,r,t)
        (a few nonzeros per row instead of every serve variable of v in t);
        i.e. if site s is lost, the GPUs v holds elsewhere could carry all of v's served
        traffic. The check is aggregate over regions, not per region: the surviving sites
        need not be within the SLO of every region the lost site served.

A service that only one site can serve, with redundancy on, can serve nothing: all its
demand is unserved (N+1 needs a second site).
"""

from __future__ import annotations

import numpy as np
import pyomo.environ as pyo

from allocator.formulation.common import KTOK, Terms, col_rows, linear, var_list
from allocator.indexing import Index
from allocator.options import SolveOptions
from allocator.schema import Instance


def _keys(df, cols) -> list[tuple]:
    return list(zip(*(df[c].tolist() for c in cols), strict=True))


def _gpus_upper_bounds(index: Index, avail: dict, tps: dict) -> dict[tuple, int]:
    """ub of gpus_inf[v,s,g,t] = min(available(s,g), ceil(demand it may serve / tokens_per_s_per_gpu)),
    where that demand is the sum over the regions (s, g) can serve, or, for a redundant
    service, its total demand in t (after losing another site, s may carry all of it).
    Tight bounds matter: HiGHS's root reduced-cost fixing does work quadratic in the range
    of every integer column at every root LP (measured: most of the demo's solve time).
    Writing a count as base*hi + lo does not help: HiGHS's presolve merges such parallel
    columns back into one."""
    serve, demands = index.serve, index.demands
    if not len(serve):
        return {}
    d = serve.merge(demands, on=["v", "r", "t"], how="left")
    reach = d.groupby(["v", "s", "g", "t"], sort=False)["demand"].sum()
    total = demands.groupby(["v", "t"])["demand"].sum().to_dict()
    red = set(index.redundant_services)
    out = {}
    for (v, s, g, t), dem in reach.items():
        need = total[v, t] if v in red else dem
        out[v, s, g, t] = int(min(avail[s, g], np.ceil(need / tps[v, s, g] - 1e-9)))
    return out


def add_inference(model, inst: Instance, index: Index, options: SolveOptions) -> None:
    """Serve/unserved/GPU variables, demand, capacity and redundancy rows."""
    serve, demands, sp = index.serve, index.demands, index.service_periods
    dem = dict(zip(_keys(demands, ["v", "r", "t"]), demands["demand"].tolist(), strict=True))
    kdem = {k: x / KTOK for k, x in dem.items()}  # thousands of tokens/s
    avail = {(s, g): a for s, g, a in col_rows(index.pools, ["s", "g", "available"])}
    tps = {(v, s, g): x for v, s, g, x in
           col_rows(index.service_pools, ["v", "s", "g", "tokens_per_s_per_gpu"])}

    model.SERVE_KEYS = pyo.Set(initialize=_keys(serve, ["v", "r", "s", "g", "t"]), dimen=5, ordered=True)
    model.DEMANDS = pyo.Set(initialize=list(dem), dimen=3, ordered=True)
    model.SERVICE_PERIODS = pyo.Set(initialize=_keys(sp, ["v", "s", "g", "t"]), dimen=4, ordered=True)
    model.serve = pyo.Var(model.SERVE_KEYS, domain=pyo.NonNegativeReals,
                          bounds=lambda m, v, r, s, g, t: (0, kdem[v, r, t]))
    model.unserved = pyo.Var(model.DEMANDS, domain=pyo.NonNegativeReals,
                             bounds=lambda m, v, r, t: (0, kdem[v, r, t]))
    gpu_ub = _gpus_upper_bounds(index, avail, tps)
    model.gpus_inf = pyo.Var(model.SERVICE_PERIODS, domain=pyo.NonNegativeIntegers,
                             bounds=lambda m, *k: (0, gpu_ub[k]))
    inf_terms = {k: ([1.0], [x]) for k, x in model.gpus_inf.items()}
    serve_vars = var_list(model.serve)
    n = len(serve)

    # inference_demand
    terms = Terms(["v", "r", "t"])
    terms.add(serve, np.arange(n), np.ones(n), serve_vars)
    rows = {k: (c, vs) for k, c, vs in terms.groups()}
    model.inference_demand = pyo.Constraint(model.DEMANDS, rule=lambda m, v, r, t: linear(
        rows.get((v, r, t), ([], []))[0] + [1.0],
        rows.get((v, r, t), ([], []))[1] + [m.unserved[v, r, t]]) == kdem[v, r, t])

    # inference_capacity
    terms = Terms(["v", "s", "g", "t"])
    terms.add(serve, np.arange(n), np.ones(n), serve_vars)
    cap_rows = {k: (c, vs) for k, c, vs in terms.groups()}
    model.inference_capacity = pyo.Constraint(model.SERVICE_PERIODS, rule=lambda m, v, s, g, t: linear(
        cap_rows[v, s, g, t][0] + [-tps[v, s, g] / KTOK * c for c in inf_terms[v, s, g, t][0]],
        cap_rows[v, s, g, t][1] + inf_terms[v, s, g, t][1]) <= 0)

    # inference_redundancy, with total served = total demand - total unserved
    red = set(index.redundant_services)
    red_rows: dict[tuple, object] = {}
    if red and len(sp):
        unserved_by_vt: dict[tuple, list] = {}
        dem_by_vt: dict[tuple, float] = {}
        for (v, r, t), x in model.unserved.items():
            if v in red:
                unserved_by_vt.setdefault((v, t), []).append(x)
                dem_by_vt[v, t] = dem_by_vt.get((v, t), 0.0) + kdem[v, r, t]
        cap_by_vt: dict[tuple, list] = {}
        for (v, s, g, t), (cs, xs) in inf_terms.items():
            if v in red:
                for c, x in zip(cs, xs, strict=True):
                    cap_by_vt.setdefault((v, t), []).append((s, tps[v, s, g] / KTOK * c, x))
        for (v, t), caps in cap_by_vt.items():
            uns = unserved_by_vt.get((v, t), [])
            for lost in sorted({s for s, _, _ in caps}):
                other = [(c, x) for s, c, x in caps if s != lost]
                red_rows[(v, lost, t)] = linear(
                    [c for c, _ in other] + [1.0] * len(uns),
                    [x for _, x in other] + uns) >= dem_by_vt.get((v, t), 0.0)
    model.REDUNDANCY_ROWS = pyo.Set(initialize=sorted(red_rows), dimen=3, ordered=True)
    model.inference_redundancy = pyo.Constraint(model.REDUNDANCY_ROWS, rule=lambda m, v, s, t: red_rows[v, s, t])
