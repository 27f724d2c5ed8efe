"""Power: IT power of the GPUs in use times PUE within each site's ceiling, every period.

Sets
    POWER_PERIODS        (s, t) with any possible usage
    POWER_ROWS           the subset where the largest possible power,
                         sum_g power_kw(g) * pue(s) / 1000 * min(max_use(s,g,t), available(s,g)),
                         exceeds the ceiling (elsewhere the row cannot bind; all rows if elastic)
Expressions
    power_mw[s,t] = sum_g gpus_in_use[s,g,t] * power_kw(g) * pue(s) / 1000
Variables
    slack_power_mw[s,t] >= 0 (elastic only)
Constraints
    power_cap[s,t]:  power_mw[s,t] (- slack_power_mw[s,t]) <= power_cap_mw(s,t)
                     (<= power_lease_mw[s] for a site whose ceiling is decided,
                     formulation/leasing.py; its rows are kept where the largest possible
                     power exceeds min_mw)

A gang whose own power exceeds the ceiling in any period of its run has no start variable
(the index drops it), which tightens the relaxation of these rows.
"""

from __future__ import annotations

import pyomo.environ as pyo

from allocator.formulation.common import (
    add_row_slack,
    col_rows,
    ensure_power_mw,
    penalty_weights,
    series_lookup,
)
from allocator.formulation.leasing import power_decision
from allocator.indexing import Index
from allocator.options import SolveOptions
from allocator.schema import Instance


def add_power(model, inst: Instance, index: Index, options: SolveOptions) -> None:
    """The power ceiling of every site and period with possible usage."""
    ensure_power_mw(model, inst, index)
    cap = series_lookup(index, "power_cap_mw")
    mw = {(s, g): c for s, g, c in col_rows(index.pools, ["s", "g", "mw_per_gpu"])}
    avail = {(s, g): a for s, g, a in col_rows(index.pools, ["s", "g", "available"])}
    max_mw: dict[tuple, float] = {}
    for (s, g, t), u in model._max_use.items():
        max_mw[s, t] = max_mw.get((s, t), 0.0) + mw[s, g] * min(u, avail[s, g])
    decided = power_decision(model)
    lowest = {s.id: s.power_options.min_mw for s in inst.sites if s.id in decided}
    keys = [k for k in model.POWER_PERIODS if model.elastic
            or max_mw[k] > (lowest[k[0]] if k[0] in decided else cap[k[0]][k[1]]) + 1e-9]
    model.POWER_ROWS = pyo.Set(initialize=keys, dimen=2, ordered=True)
    if model.elastic:
        add_row_slack(model, "slack_power_mw", model.POWER_ROWS, "power", "MW over the power ceiling",
                      penalty_weights(inst, index)["mw"])

    def rule(m, s, t):
        body = m.power_mw[s, t]
        if m.elastic:
            body = body - m.slack_power_mw[s, t]
        if s in decided:
            return body - decided[s] <= 0
        return body <= float(cap[s][t])

    model.power_cap = pyo.Constraint(model.POWER_ROWS, rule=rule)
