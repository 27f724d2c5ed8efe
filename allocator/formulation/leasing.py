"""Leasing: a pool's reserved block and a site's power ceiling as decisions.

Sets
    RESERVE_OFFERS   (s, g, o): offer o (its position in reserve_options) of pool (s, g)
    RESERVE_POOLS    (s, g): pools with reserve_options
    POWER_SITES      s: sites with power_options
Variables
    reserve_take[s,g,o]  in {0, 1}: offer o is taken
    reserve_steps[s,g,o] in {0, ..., n(o)}, n(o) = (max_gpus - min_gpus) / step_gpus
    power_steps[s]       in {0, ..., n(s)}, n(s) = (max_mw - min_mw) / step_mw
Expressions
    reserved_gpus[s,g] = sum_o min_gpus(o) * reserve_take[s,g,o] + step_gpus(o) * reserve_steps[s,g,o]
    power_lease_mw[s]  = min_mw(s) + step_mw(s) * power_steps[s]
Constraints
    leasing_offer[s,g]:    sum_o reserve_take[s,g,o] <= 1                     (at most one offer)
    leasing_steps[s,g,o]: reserve_steps[s,g,o] <= n(o) * reserve_take[s,g,o] (steps only on the offer taken)
Cost (H = period hours, T = periods; in cost['reserved_lease'] and cost['power_lease'])
    reserved: sum_{s,g,o} price(o) * H * T * (min_gpus(o) * reserve_take + step_gpus(o) * reserve_steps)
    power:    sum_s price_usd_per_mw_h(s) * H * T * power_lease_mw[s]

The capacity family bounds on-demand GPUs by reserved_gpus[s,g] instead of the constant
block (``capacity_ondemand``) and the power family the power by power_lease_mw[s]
(``power_cap``). With scenarios these variables are the first stage: every scenario's model
has its own copy and ``formulation.scenarios`` ties them equal (nonanticipativity).
"""

from __future__ import annotations

import pyomo.environ as pyo

from allocator.formulation.common import linear
from allocator.indexing import Index
from allocator.options import SolveOptions
from allocator.schema import Instance


def offers(inst: Instance, index: Index) -> dict[tuple[str, str, int], object]:
    """(site, GPU type, offer position) -> ReserveOffer, for the pools of the index."""
    known = set(zip(index.pools["s"].tolist(), index.pools["g"].tolist(), strict=True))
    return {(s.id, p.gpu_type, k): o for s in inst.sites for p in s.pools
            if p.reserve_options is not None and (s.id, p.gpu_type) in known
            for k, o in enumerate(p.reserve_options)}


def add_leasing(model, inst: Instance, index: Index, options: SolveOptions) -> None:
    """The lease decision variables, their rows, and their cost (model._lease_cost)."""
    H, T = index.period_hours, index.periods
    offer = offers(inst, index)
    pools = sorted({(s, g) for s, g, _ in offer})
    model.RESERVE_OFFERS = pyo.Set(initialize=list(offer), dimen=3, ordered=True)
    model.RESERVE_POOLS = pyo.Set(initialize=pools, dimen=2, ordered=True)
    model.reserve_take = pyo.Var(model.RESERVE_OFFERS, domain=pyo.Binary)
    model.reserve_steps = pyo.Var(model.RESERVE_OFFERS, domain=pyo.NonNegativeIntegers,
                                  bounds=lambda m, s, g, o: (0, offer[s, g, o].steps))
    by_pool: dict[tuple[str, str], list] = {}
    for k in offer:  # the offers of each pool, grouped once
        by_pool.setdefault(k[:2], []).append(k)
    model.reserved_gpus = pyo.Expression(model.RESERVE_POOLS, rule=lambda m, s, g: linear(
        *_pairs([(offer[k].min_gpus, m.reserve_take[k]) for k in by_pool[s, g]]
                + [(offer[k].step_gpus, m.reserve_steps[k]) for k in by_pool[s, g]])))
    model.leasing_offer = pyo.Constraint(model.RESERVE_POOLS, rule=lambda m, s, g: linear(
        [1.0] * len(by_pool[s, g]), [m.reserve_take[k] for k in by_pool[s, g]]) <= 1)
    steps = [k for k in offer if offer[k].steps > 0]
    model.RESERVE_STEPPED = pyo.Set(initialize=steps, dimen=3, ordered=True)
    model.leasing_steps = pyo.Constraint(model.RESERVE_STEPPED, rule=lambda m, s, g, o: linear(
        [1.0, -float(offer[s, g, o].steps)], [m.reserve_steps[s, g, o], m.reserve_take[s, g, o]]) <= 0)

    sites = {s.id: s.power_options for s in inst.sites if s.power_options is not None}
    model.POWER_SITES = pyo.Set(initialize=sorted(sites), ordered=True)
    model.power_steps = pyo.Var(model.POWER_SITES, domain=pyo.NonNegativeIntegers,
                                bounds=lambda m, s: (0, sites[s].steps))
    model.power_lease_mw = pyo.Expression(model.POWER_SITES, rule=lambda m, s: linear(
        [sites[s].step_mw], [m.power_steps[s]], sites[s].min_mw))

    reserved_c, reserved_v = _pairs(
        [(offer[k].price_usd_per_gpu_h * H * T * offer[k].min_gpus, model.reserve_take[k]) for k in offer]
        + [(offer[k].price_usd_per_gpu_h * H * T * offer[k].step_gpus, model.reserve_steps[k]) for k in offer])
    power_c = [sites[s].price_usd_per_mw_h * H * T * sites[s].step_mw for s in sites]
    power_const = sum(sites[s].price_usd_per_mw_h * H * T * sites[s].min_mw for s in sites)
    model._lease_cost = {
        "reserved_lease": (reserved_c, reserved_v, 0.0),
        "power_lease": (power_c, [model.power_steps[s] for s in sites], power_const),
    }


def _pairs(pairs: list[tuple[float, object]]) -> tuple[list[float], list]:
    """(coefficients, variables) of the pairs with a nonzero coefficient."""
    kept = [(float(c), v) for c, v in pairs if c != 0]
    return [c for c, _ in kept], [v for _, v in kept]


def reserved_decision(model) -> dict[tuple[str, str], object]:
    """(site, GPU type) -> the reserved_gpus expression of a decided pool ({} without)."""
    if not hasattr(model, "reserved_gpus"):
        return {}
    return {k: model.reserved_gpus[k] for k in model.RESERVE_POOLS}


def power_decision(model) -> dict[str, object]:
    """site -> the power_lease_mw expression of a decided site ({} without)."""
    if not hasattr(model, "power_lease_mw"):
        return {}
    return {s: model.power_lease_mw[s] for s in model.POWER_SITES}


def first_stage_vars(model) -> list[tuple[str, object]]:
    """(name, variable data) of every lease decision, in a fixed order: what scenarios share."""
    out = []
    for name in ("reserve_take", "reserve_steps", "power_steps"):
        var = getattr(model, name, None)
        if var is not None:
            out.extend((f"{name}[{k}]", v) for k, v in var.items())
    return out


def lease_values(model) -> tuple[dict[tuple[str, str], tuple[int | None, int]], dict[str, float]]:
    """The solved lease decisions: ((site, type) -> (offer taken or None, block GPUs)),
    (site -> ceiling MW)), rounded to the whole steps they are."""
    reserved: dict[tuple[str, str], tuple[int | None, int]] = {}
    if hasattr(model, "reserve_take"):
        inst = model._inst
        pools = {(s.id, p.gpu_type): p for s in inst.sites for p in s.pools}
        for s, g in model.RESERVE_POOLS:
            taken = [o for (s2, g2, o) in model.RESERVE_OFFERS if (s2, g2) == (s, g)
                     and round(pyo.value(model.reserve_take[s, g, o]) or 0) == 1]
            if not taken:
                reserved[s, g] = (None, 0)
                continue
            o = taken[0]
            offer = pools[s, g].reserve_options[o]
            steps = int(round(pyo.value(model.reserve_steps[s, g, o]) or 0))
            reserved[s, g] = (o, offer.min_gpus + offer.step_gpus * steps)
    power: dict[str, float] = {}
    if hasattr(model, "power_steps"):
        for s in model.POWER_SITES:
            opt = model._inst.site(s).power_options
            power[s] = float(opt.min_mw + opt.step_mw * int(round(pyo.value(model.power_steps[s]) or 0)))
    return reserved, power
