"""GPU capacity: reserved and on-demand pools per site, GPU type and period.

Sets
    GPU_PERIODS          (s, g, t) pools and periods with any possible usage
    CAPACITY_ROWS        the subset where the usage bound max_use(s,g,t) exceeds available
                         (elsewhere the row cannot bind and is left out; all rows if elastic)
    ONDEMAND_PERIODS     the subset where min(max_use, available) exceeds reserved, of the
                         pools with a reserved block (or one decided by a lease) and a
                         positive on-demand price
    DIRECT_OD            (model._direct_od) the pools without a reserved block and with a
                         positive on-demand price: all their GPUs are on demand, priced on
                         the start and gpus_inf columns in cost['ondemand_lease'] (objective)
Expressions
    gpus_in_use[s,g,t] = sum_{(j,o,s,t0) in PLACEMENTS, g(o) = g, t0 <= t <= t0+d-1} gpus(j,o) * start[j,o,s,t0]
                         + sum_v gpus_inf[v,s,g,t]
                         (start-window expansion: a start at t0 of duration d is active in t0..t0+d-1)
Parameters
    max_use(s,g,t)       upper bound of gpus_in_use from data: every job that can run there
                         counted once with its largest gang, plus the inference GPU bounds
Variables
    ondemand[s,g,t] in [0, min(max_use, available) - reserved + 0.5]: GPUs leased above the
                         reserved block (the + 0.5 is explained at ``_ondemand_ub``)
    slack_gpus[s,g,t] >= 0 (elastic only)
Constraints
    capacity_gpus[s,g,t]:     gpus_in_use[s,g,t] (- slack_gpus[s,g,t]) <= available(s,g)
    capacity_ondemand[s,g,t]: gpus_in_use[s,g,t] - ondemand[s,g,t] <= reserved(s,g)
                              (- reserved_gpus[s,g] on the left, with reserved(s,g) = 0, for a
                              pool whose block is decided: formulation/leasing.py)

Reserved GPUs are paid whether used or not (a constant in the objective); ``ondemand`` is
paid per GPU-hour. With a non-negative on-demand price the optimum has
ondemand = max(0, gpus_in_use - reserved), the definition the verifier recomputes; for a
DIRECT_OD pool that is gpus_in_use itself, so its price goes on the columns that make up
gpus_in_use (exact, one column and one row fewer per pool-period).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyomo.environ as pyo

from allocator.formulation.common import (
    add_row_slack,
    all_placements,
    col_rows,
    ensure_gpus_in_use,
    linear,
    penalty_weights,
)
from allocator.formulation.leasing import reserved_decision
from allocator.indexing import Index
from allocator.options import SolveOptions
from allocator.schema import Instance


def _ondemand_ub(model, pools, s, g, t) -> float:
    """Largest possible on-demand count, plus 0.5 when it is not elastic.

    The half is never reached (usage is a whole number of GPUs); it only keeps the bound
    fractional, so HiGHS does not treat ``ondemand`` as an implied integer. For implied and
    true integers HiGHS's root reduced-cost fixing records one entry per integer value in
    the column's range at every root LP, which made the demo's root 10x slower."""
    avail, reserved = pools[s, g]
    top = min(model._max_use[s, g, t], avail) - reserved
    if model.elastic:
        top = model._max_use[s, g, t] - reserved
    return max(0.0, top) + 0.5


#: the largest on-demand cost of one start column priced directly ($). A start of 1e7 GPUs
#: for 1e6 hours at 1e4 $/GPU-h costs 1e17 $, a matrix entry HiGHS rejects (above 1e15)
#: in the budget row; such pools keep their ondemand columns, whose coefficient is a price.
DIRECT_OD_MAX_USD = 1e9


def per_pool(frame: pd.DataFrame, values: dict[tuple[str, str], float]) -> np.ndarray:
    """``values[(s, g)]`` for each row of ``frame`` (its ``s`` and ``g`` columns); 0 where absent."""
    if not len(frame) or not values:
        return np.zeros(len(frame))
    table = pd.Series(list(values.values()), index=pd.MultiIndex.from_tuples(list(values)), dtype=float)
    keys = pd.MultiIndex.from_arrays([frame["s"].to_numpy(), frame["g"].to_numpy()])
    return table.reindex(keys).fillna(0.0).to_numpy(dtype=float)


def start_ondemand_usd(p: pd.DataFrame, price: dict[tuple[str, str], float], period_hours: float) -> np.ndarray:
    """The on-demand cost of each start (row of placements ``p``) if all its GPUs are on
    demand: price(s,g) * H * gpus * d."""
    return (per_pool(p, price) * period_hours * p["gpus"].to_numpy(dtype=float)
            * p["d"].to_numpy(dtype=float)) if len(p) else np.zeros(0)


def direct_ondemand_pools(model, pools: dict, price: dict, period_hours: float) -> frozenset[tuple[str, str]]:
    """The pools (s, g) without a reserved block (reserved 0, not decided by a lease) whose
    on-demand GPUs cost something: every GPU they run is on demand, so the objective prices
    the start and inference columns directly (objective.py) and they get no ``ondemand``
    column or ``capacity_ondemand`` row. Measured on the demo and the training-only family:
    the same optima, HiGHS 2-4x faster (docs/performance.md). Not in the elastic model,
    whose usage may exceed what is available, nor where a start's on-demand cost would
    exceed DIRECT_OD_MAX_USD."""
    if model.elastic:
        return frozenset()
    decided = set(reserved_decision(model))
    largest: dict[tuple[str, str], float] = {}
    if hasattr(model, "start") and len(all_placements(model)):
        p = all_placements(model)
        cost = pd.Series(start_ondemand_usd(p, price, period_hours))
        largest = cost.groupby([p["s"].to_numpy(), p["g"].to_numpy()]).max().to_dict()
    return frozenset(k for k, (_avail, reserved) in pools.items()
                     if reserved == 0 and k not in decided and price[k] > 0
                     and largest.get(k, 0.0) <= DIRECT_OD_MAX_USD)


def add_capacity(model, inst: Instance, index: Index, options: SolveOptions) -> None:
    """On-demand variables and the GPU rows of every pool and period in use."""
    ensure_gpus_in_use(model, inst, index)
    pools = {(s, g): (a, r) for s, g, a, r in
             col_rows(index.pools, ["s", "g", "available", "reserved"])}
    max_use = model._max_use
    keys = [k for k in model.GPU_PERIODS if model.elastic or max_use[k] > pools[k[0], k[1]][0]]
    # an on-demand column and row only where usage can exceed the reserved block and the
    # on-demand GPUs cost something: at price 0 the row is a free slack that cannot bind (the
    # exported on-demand counts are recomputed from the decisions anyway)
    price = dict(zip(zip(index.pools["s"].tolist(), index.pools["g"].tolist(), strict=True),
                     index.pools["ondemand_price_usd_per_gpu_h"].tolist(), strict=True))
    model._direct_od = direct_ondemand_pools(model, pools, price, index.period_hours)
    od_keys = [k for k in model.GPU_PERIODS
               if (k[0], k[1]) not in model._direct_od
               and ((min(max_use[k], pools[k[0], k[1]][0]) > pools[k[0], k[1]][1] and price[k[0], k[1]] > 0)
                    or (model.elastic and max_use[k] > pools[k[0], k[1]][1]))]
    model.CAPACITY_ROWS = pyo.Set(initialize=keys, dimen=3, ordered=True)
    model.ONDEMAND_PERIODS = pyo.Set(initialize=od_keys, dimen=3, ordered=True)
    model.ondemand = pyo.Var(model.ONDEMAND_PERIODS, domain=pyo.NonNegativeReals,
                             bounds=lambda m, s, g, t: (0, _ondemand_ub(m, pools, s, g, t)))
    if model.elastic:
        add_row_slack(model, "slack_gpus", model.CAPACITY_ROWS, "capacity", "GPUs over available",
                      penalty_weights(inst, index)["gpu"])

    def gpus_rule(m, s, g, t):
        body = m.gpus_in_use[s, g, t]
        if m.elastic:
            body = body - m.slack_gpus[s, g, t]
        return body <= pools[s, g][0]

    model.capacity_gpus = pyo.Constraint(model.CAPACITY_ROWS, rule=gpus_rule)
    decided = reserved_decision(model)

    def ondemand_rule(m, s, g, t):
        body = m.gpus_in_use[s, g, t] - linear([1.0], [m.ondemand[s, g, t]])
        if (s, g) in decided:
            body = body - decided[s, g]
        return body <= pools[s, g][1]

    model.capacity_ondemand = pyo.Constraint(model.ONDEMAND_PERIODS, rule=ondemand_rule)
