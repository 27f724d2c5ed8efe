"""Inference: demand per service, region and period served by sites within the latency SLO,
on whole GPUs, or counted unserved at its penalty; optional N+1 redundancy per region.

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
    inference_redundancy[v,r,s,t]  (services with redundancy; every demand (v, r, t) and every
                      site s within r's SLO that may serve it): after losing site s, the GPUs
                      v holds at the other sites within r's SLO can carry r's served traffic:
        sum_{(s',g) in reach(v,r), s' != s} tps(v,s',g) * gpus_inf[v,s',g,t] >= sum_{s'',g} serve[v,r,s'',g,t]
        written with the demand row's identity sum serve = demand - unserved, as
        sum_{(s',g) in reach(v,r), s' != s} tps(v,s',g) * gpus_inf[v,s',g,t] + unserved[v,r,t]
            >= demand(v,r,t)
        (reach(v,r) = the (site, type) pairs of v's serve keys for r; a few nonzeros per row).
    inference_redundancy_all[v,s,t]  (services with redundancy and two or more demanded regions
                      in t, every site s that may serve v in t): the surviving sites together
                      can carry all of v's served traffic at once (a surviving site shared by
                      several regions is not counted once per region):
        sum_{(s',g) in reach(v,r) for some demanded r, s' != s} tps(v,s',g) * gpus_inf[v,s',g,t]
            + sum_r unserved[v,r,t] >= sum_r demand(v,r,t)
        (capacity that can serve none of the regions demanded in t is no failover)
    Both are conditions for re-routing v's served traffic over the surviving sites within the
    SLO after any one site is lost (a transportation problem; by Hall's theorem it is feasible
    iff every set of regions fits the surviving capacity within its SLO): the rows are those
    sets of one region and of all regions, which is exact for a service with one or two
    demanded regions per period. With three or more, sets of two or more regions that are
    not all of them are not checked.

A region that only one site can serve (within its SLO), with redundancy on, is served
nothing: all its demand is unserved (N+1 needs a second site within the SLO).
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

    # inference_redundancy (per region) and inference_redundancy_all (all regions at once),
    # with served = demand - unserved
    red = set(index.redundant_services)
    reg_rows: dict[tuple, object] = {}
    all_rows: dict[tuple, object] = {}
    if red and len(sp):
        # capacity terms of v per region it may serve: (v, r, t) -> [(s, coef, gpus_inf var)]
        pairs = serve[serve["v"].isin(red)][["v", "r", "s", "g", "t"]].drop_duplicates()
        reach: dict[tuple, list] = {}
        for v, r, s, g, t in pairs.itertuples(index=False):
            c, x = tps[v, s, g] / KTOK, inf_terms[v, s, g, t][1][0]
            reach.setdefault((v, r, t), []).append((s, c, x))
        for (v, r, t), caps in reach.items():
            for lost in sorted({s for s, _, _ in caps}):
                other = [(c, x) for s, c, x in caps if s != lost]
                reg_rows[v, r, lost, t] = linear(
                    [c for c, _ in other] + [1.0], [x for _, x in other] + [model.unserved[v, r, t]]
                ) >= kdem[v, r, t]
        regions_of: dict[tuple, list] = {}
        for (v, r, t) in reach:
            regions_of.setdefault((v, t), []).append(r)
        for (v, t), regions in regions_of.items():
            if len(regions) < 2:
                continue  # one region: its own rows say it all
            # the pools that may serve one of the regions, each once
            caps = list({id(x): (s, c, x) for r in regions for s, c, x in reach[v, r, t]}.values())
            uns = [model.unserved[v, r, t] for r in regions]
            total = sum(kdem[v, r, t] for r in regions)
            for lost in sorted({s for s, _, _ in caps}):
                other = [(c, x) for s, c, x in caps if s != lost]
                all_rows[v, lost, t] = linear(
                    [c for c, _ in other] + [1.0] * len(uns), [x for _, x in other] + uns) >= total
    model.REDUNDANCY_ROWS = pyo.Set(initialize=sorted(reg_rows), dimen=4, ordered=True)
    model.inference_redundancy = pyo.Constraint(
        model.REDUNDANCY_ROWS, rule=lambda m, v, r, s, t: reg_rows[v, r, s, t])
    model.REDUNDANCY_ALL_ROWS = pyo.Set(initialize=sorted(all_rows), dimen=3, ordered=True)
    model.inference_redundancy_all = pyo.Constraint(
        model.REDUNDANCY_ALL_ROWS, rule=lambda m, v, s, t: all_rows[v, s, t])
