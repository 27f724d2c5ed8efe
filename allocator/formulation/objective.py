"""Objective: a sum of named cost terms, and the emissions.

Expressions (H = period hours, T = periods)
    cost['reserved_lease'] = sum_{s,g} reserved(s,g) * reserved_price_usd_per_gpu_h(s,g) * H * T   (a constant)
                             + the decided blocks' lease (formulation/leasing.py)
    cost['power_lease']    = sum_{s,t} power_cap_mw(s,t) * power_price_usd_per_mw_h(s) * H   (a constant)
                             + the decided ceilings' lease (formulation/leasing.py)
    cost['ondemand_lease'] = sum_{s,g,t} ondemand[s,g,t] * ondemand_price_usd_per_gpu_h(s,g) * H
                             + sum_{PLACEMENTS on a DIRECT_OD pool} ondemand_price(s,g) * H * gpus(j,o) * d(j,o) * start
                             + sum_{v,s,g,t, (s,g) in DIRECT_OD} ondemand_price(s,g) * H * gpus_inf[v,s,g,t]
                             (DIRECT_OD: pools without a reserved block, formulation/capacity.py)
    cost['energy']         = sum_{s,t} power_mw[s,t] * H * energy_price_usd_per_mwh(s,t)
    cost['egress']         = sum_{PLACEMENTS} egress_usd(j,s) * start
                             + sum_{v,r,s,g,t} serve[v,r,s,g,t] * bytes_per_token(v) * 3600 * H / 1e9
                               * egress_usd_per_gb(route s -> r)
    cost['site_extra']     = sum_{PLACEMENTS} site_cost_usd(j,s) * start
    cost['tardiness']      = sum_{PLACEMENTS} tardiness_h(j,o,t) * tardiness_usd_per_h(j) * start
                             with tardiness_h = max(0, t + d - deadline_period) * H (soft deadlines)
    cost['unserved']       = sum_{v,r,t} unserved[v,r,t] * 3600 * H / 1e6 * unserved_usd_per_mtok(v)
    cost['dropped_value']  = sum_{optional j} value_usd(j) * (1 - sum_{o,s,t} start[j,o,s,t])
    cost['carbon']         = carbon_price_usd_per_t * emissions_t
    cost['migration']      = move, retime and inference scale cost against a previous plan
                             (formulation/replanning.py; 0 without one)
    emissions_t            = sum_{s,t} power_mw[s,t] * H * carbon_g_per_kwh(s,t) / 1000
    total_cost             = sum of cost[k] over COST_TERMS
    slack_penalty          = sum of weight * slack (elastic model only; 0 otherwise)
Objectives
    obj_cost   minimise total_cost + slack_penalty      (modes cost, cost-then-carbon)
    obj_carbon minimise emissions_t + slack_penalty     (modes carbon, carbon-then-cost)
Exactly one is active; solve toggles them for the lexicographic modes.

Energy and emissions are written per variable rather than through ``power_mw``: a start
variable's coefficient is gpus * MW per GPU * H * (sum of the price over its running periods),
which is the same sum with one nonzero per variable.
"""

from __future__ import annotations

import numpy as np
import pyomo.environ as pyo

from allocator.formulation.capacity import per_pool, start_ondemand_usd
from allocator.formulation.common import (
    KTOK,
    all_placements,
    col_rows,
    linear,
    series_lookup,
    start_vars,
    var_list,
    window_sums,
)
from allocator.indexing import Index
from allocator.options import SolveOptions
from allocator.quantities import egress_gb_per_period, unserved_usd_per_token_s
from allocator.results import COST_TERMS
from allocator.schema import Instance

CARBON_MODES = ("carbon", "carbon-then-cost")


def _site_cost_vectors(model, index: Index, column: str) -> tuple[list[float], list]:
    """Coefficients of sum_{s,t} power_mw[s,t] * H * series(s,t) per start / gpus_inf variable."""
    H = index.period_hours
    series = series_lookup(index, column)
    mw = {(s, g): c for s, g, c in col_rows(index.pools, ["s", "g", "mw_per_gpu"])}
    coefs: list[float] = []
    variables: list = []
    if hasattr(model, "start"):
        p = all_placements(model)
        per_gpu = np.array([mw[k] for k in zip(p["s"], p["g"], strict=True)], dtype=float)
        c = per_gpu * p["gpus"].to_numpy(dtype=float) * H * window_sums(p, series)
        coefs.extend(c.tolist())
        variables.extend(start_vars(model))
    if hasattr(model, "gpus_inf"):
        sp = index.service_periods
        c = [mw[(s, g)] * H * series[s][t] for s, g, t in zip(sp["s"], sp["g"], sp["t"], strict=True)]
        coefs.extend(c)
        variables.extend(var_list(model.gpus_inf))
    keep = [i for i, c in enumerate(coefs) if c != 0.0]
    return [coefs[i] for i in keep], [variables[i] for i in keep]


def ensure_costs(model, inst: Instance, index: Index) -> None:
    """Build ``cost[term]``, ``emissions_t`` and ``total_cost`` once (budget and objective use them)."""
    if hasattr(model, "cost"):
        return
    H, T = index.period_hours, index.periods
    terms: dict[str, object] = {}
    pools = index.pools
    lease = getattr(model, "_lease_cost", {})
    rc, rv, _ = lease.get("reserved_lease", ([], [], 0.0))
    terms["reserved_lease"] = linear(rc, rv, float((pools["reserved"] * pools["reserved_price_usd_per_gpu_h"]).sum()) * H * T)
    pc, pv, pconst = lease.get("power_lease", ([], [], 0.0))
    lease_price = {s.id: s.power_price_usd_per_mw_h for s in inst.sites}
    fixed_power = sum(lease_price.get(s, 0.0) * float(c)
                      for s, c in zip(index.site_periods["s"], index.site_periods["power_cap_mw"], strict=True)) * H
    terms["power_lease"] = linear(pc, pv, pconst + fixed_power)

    price = {(s, g): c for s, g, c in col_rows(pools, ["s", "g", "ondemand_price_usd_per_gpu_h"])}
    oc: list[float] = []
    ov: list = []
    if hasattr(model, "ondemand"):
        keys = list(model.ONDEMAND_PERIODS)
        oc += [price[s, g] * H for s, g, _ in keys]
        ov += var_list(model.ondemand)
    direct = getattr(model, "_direct_od", frozenset())
    if direct:
        # a pool without a reserved block: every GPU it runs is on demand, priced on its
        # start and gpus_inf columns (formulation/capacity.py)
        on = {k: price[k] for k in direct}
        if hasattr(model, "start"):
            c = start_ondemand_usd(all_placements(model), on, H)
            nz = np.flatnonzero(c)
            sv = start_vars(model)
            oc.extend(c[nz].tolist())
            ov.extend(sv[i] for i in nz.tolist())
        if hasattr(model, "gpus_inf"):
            c = per_pool(index.service_periods, on) * H
            nz = np.flatnonzero(c)
            gi = var_list(model.gpus_inf)
            oc.extend(c[nz].tolist())
            ov.extend(gi[i] for i in nz.tolist())
    terms["ondemand_lease"] = linear(oc, ov)

    terms["energy"] = linear(*_site_cost_vectors(model, index, "energy_price_usd_per_mwh"))
    ec, ev = _site_cost_vectors(model, index, "carbon_g_per_kwh")
    model.emissions_t = pyo.Expression(expr=linear([c / 1000.0 for c in ec], ev))

    egress_c: list[float] = []
    egress_v: list = []
    site_c: list[float] = []
    site_v: list = []
    tard_c: list[float] = []
    tard_v: list = []
    drop_c: list[float] = []
    drop_v: list = []
    if hasattr(model, "start"):
        p = all_placements(model)
        sv = start_vars(model)
        for col, cs, vs in (("egress_usd", egress_c, egress_v), ("site_extra_usd", site_c, site_v),
                            ("tardiness_usd", tard_c, tard_v)):
            arr = p[col].to_numpy(dtype=float)
            nz = np.flatnonzero(arr)
            cs.extend(arr[nz].tolist())
            vs.extend(sv[i] for i in nz.tolist())
        val = p["j"].map({j: (0.0 if index.mandatory[j] else index.value_usd[j]) for j in index.jobs})
        arr = val.to_numpy(dtype=float)
        nz = np.flatnonzero(arr)
        drop_c.extend((-arr[nz]).tolist())
        drop_v.extend(sv[i] for i in nz.tolist())
    svc = {v.id: v for v in inst.services}
    if hasattr(model, "serve") and len(index.serve):
        f = index.serve.merge(index.flows[["v", "r", "s", "g", "egress_usd_per_gb"]],
                              on=["v", "r", "s", "g"], how="left")
        bpt = f["v"].map({v: svc[v].bytes_per_token for v in svc}).to_numpy(dtype=float)
        c = egress_gb_per_period(KTOK, bpt, H) * f["egress_usd_per_gb"].to_numpy(dtype=float)
        serve_vars = var_list(model.serve)
        nz = np.flatnonzero(c)
        egress_c.extend(c[nz].tolist())
        egress_v.extend(serve_vars[i] for i in nz.tolist())
    terms["egress"] = linear(egress_c, egress_v)
    terms["site_extra"] = linear(site_c, site_v)
    terms["tardiness"] = linear(tard_c, tard_v)

    if hasattr(model, "unserved"):
        d = index.demands
        pen = d["v"].map({v: svc[v].unserved_usd_per_mtok for v in svc}).to_numpy(dtype=float)
        terms["unserved"] = linear((KTOK * unserved_usd_per_token_s(pen, H)).tolist(), var_list(model.unserved))
    else:
        terms["unserved"] = linear([], [])
    dropped_const = sum(index.value_usd[j] for j in index.jobs if not index.mandatory[j])
    terms["dropped_value"] = linear(drop_c, drop_v, dropped_const)
    terms["carbon"] = inst.carbon_price_usd_per_t * model.emissions_t
    terms["migration"] = getattr(model, "_migration", linear([], []))

    model.cost = pyo.Expression(list(COST_TERMS), initialize=terms)
    model.total_cost = pyo.Expression(expr=sum(model.cost[k] for k in COST_TERMS))


def add_objective(model, inst: Instance, index: Index, options: SolveOptions) -> None:
    """Cost terms, emissions and the two objectives (one active per ``options.objective``)."""
    ensure_costs(model, inst, index)
    pen_c: list[float] = []
    pen_v: list = []
    for name, weights in model._penalties:
        var = getattr(model, name)
        for k, w in weights.items():
            pen_c.append(w)
            pen_v.append(var[k])
    model.slack_penalty = pyo.Expression(expr=linear(pen_c, pen_v))
    model.obj_cost = pyo.Objective(expr=model.total_cost + model.slack_penalty, sense=pyo.minimize)
    model.obj_carbon = pyo.Objective(expr=model.emissions_t + model.slack_penalty, sense=pyo.minimize)
    if options.objective in CARBON_MODES:
        model.obj_cost.deactivate()
    else:
        model.obj_carbon.deactivate()
