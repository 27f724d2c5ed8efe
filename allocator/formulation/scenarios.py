"""The extensive form of a sizing instance with scenarios: one model, one block per scenario.

Each scenario's model is the ordinary formulation of its own instance (``build_model``),
attached as block ``scenario_<k>``. Then

Constraints
    nonanticipativity[k, i]:  x_i(scenario_k) - x_i(scenario_0) = 0
        for every scenario k > 0 and every lease decision variable x_i
        (``leasing.first_stage_vars``: reserve_take, reserve_steps, power_steps)
Objectives
    obj_cost   = sum_k probability(k) * (scenario_k.total_cost + scenario_k.slack_penalty)
    obj_carbon = sum_k probability(k) * (scenario_k.emissions_t + scenario_k.slack_penalty)
    (the scenario blocks' own objectives are deactivated; exactly one of these is active)

Every scenario's total_cost holds the lease cost once; the probabilities sum to 1, so the
objective is the lease cost plus the expected operating cost. The rows tie the copies
rather than sharing one variable, so each block stays a complete model of its scenario
(extraction, costs and explanations read it as they read any model); HiGHS's presolve
removes the tied copies.
"""

from __future__ import annotations

import pyomo.environ as pyo

from allocator.formulation.common import linear
from allocator.formulation.leasing import first_stage_vars
from allocator.formulation.objective import CARBON_MODES
from allocator.options import SolveOptions


def block_name(k: int) -> str:
    return f"scenario_{k}"


def build_extensive(models: list, probabilities: list[float],
                    options: SolveOptions | None = None) -> pyo.ConcreteModel:
    """One model holding every scenario's model as a block, their lease decisions tied."""
    options = options or SolveOptions()
    if len(models) != len(probabilities) or not models:
        raise ValueError("one probability per scenario model, and at least one model")
    ef = pyo.ConcreteModel(name="extensive form")
    ef.elastic = bool(models[0].elastic)
    for k, m in enumerate(models):
        for obj in m.component_objects(pyo.Objective):
            obj.deactivate()
        ef.add_component(block_name(k), m)
    first = first_stage_vars(models[0])
    names = [n for n, _ in first]
    pairs = {}
    for k, m in enumerate(models[1:], start=1):
        mine = dict(first_stage_vars(m))
        if sorted(mine) != sorted(names):
            raise ValueError(f"scenario {k} has other lease decisions than scenario 0")
        for i, (name, v0) in enumerate(first):
            pairs[k, i] = (mine[name], v0)
    ef.NONANTICIPATIVITY = pyo.Set(initialize=list(pairs), dimen=2, ordered=True)
    ef.nonanticipativity = pyo.Constraint(ef.NONANTICIPATIVITY, rule=lambda e, k, i: linear(
        [1.0, -1.0], list(pairs[k, i])) == 0)
    ef.obj_cost = pyo.Objective(expr=sum(
        p * (m.total_cost + m.slack_penalty) for p, m in zip(probabilities, models, strict=True)))
    ef.obj_carbon = pyo.Objective(expr=sum(
        p * (m.emissions_t + m.slack_penalty) for p, m in zip(probabilities, models, strict=True)))
    if options.objective in CARBON_MODES:
        ef.obj_cost.deactivate()
    else:
        ef.obj_carbon.deactivate()
    ef._scenario_models = list(models)
    return ef
