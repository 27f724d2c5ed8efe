"""Budget: total spend capped.

Constraints (only if the instance sets budget_usd)
    budget_cap:  cost['reserved_lease'] + cost['power_lease'] + cost['ondemand_lease'] + cost['energy'] + cost['egress']
                 + cost['site_extra'] (- slack_budget_usd) <= budget_usd
Variables
    slack_budget_usd >= 0 (elastic only)

Penalties (tardiness, unserved demand, dropped value, carbon price) are not spend and are
not capped.
"""

from __future__ import annotations

import pyomo.environ as pyo

from allocator.formulation.common import add_slack, penalty_weights
from allocator.formulation.objective import ensure_costs
from allocator.indexing import Index
from allocator.options import SolveOptions
from allocator.schema import Instance

BUDGET_TERMS = ("reserved_lease", "power_lease", "ondemand_lease", "energy", "egress", "site_extra")


def add_budget(model, inst: Instance, index: Index, options: SolveOptions) -> None:
    """The budget row, if the instance has a budget."""
    if inst.budget_usd is None:
        return
    ensure_costs(model, inst, index)
    spend = sum(model.cost[k] for k in BUDGET_TERMS)
    if model.elastic:
        model.slack_budget_usd = pyo.Var(domain=pyo.NonNegativeReals)
        add_slack(model, "budget", "$ over the budget", model.slack_budget_usd)
        model._penalties.append(("slack_budget_usd", {None: penalty_weights(inst, index)["budget"]}))
        spend = spend - model.slack_budget_usd
    model.budget_cap = pyo.Constraint(expr=spend <= inst.budget_usd)
