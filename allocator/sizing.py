"""The sizing route: an instance with lease decisions or scenarios, solved as one MIP.

    scenarios (leasing.scenario_cases)  ->  per scenario: Network, build_index, build_model
    ->  one model (the scenario's own, or formulation.scenarios.build_extensive over all)
    ->  mip (solve.solve_model)  ->  the lease decisions (formulation.leasing.lease_values)
    ->  per scenario: the instance with those leases fixed (leasing.fix), its index, its
        decisions (extract.decisions_from_model)  ->  pipeline.build_result
    ->  one Result: with one scenario, that scenario's Result with its leases table; with
        several, the expected costs, the leases, a scenarios table and each scenario's own
        Result in ``Result.scenarios``

The scenario Results are built by the same build_result every route uses, on an ordinary
instance (its leases fixed), so each is a schedule the verifier checks on its own.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from allocator import leasing
from allocator.errors import InputError, Problem
from allocator.options import SolveOptions
from allocator.outcome import Outcome
from allocator.pipeline import build_result, gap_of, mode_objective, options_dict
from allocator.results import COST_TERMS, Result

#: options the sizing route does not honour (refused with exit 2 when set)
NOT_HONOURED = {
    "previous": "re-planning a sized plan is not supported: fix the leases (the leases table) "
                "in the instance and re-plan that",
    "duals": "the sizing model has integer lease decisions; duals are given for fixed leases: "
             "fix them in the instance and solve with duals",
}


def check_options(opts: SolveOptions) -> SolveOptions:
    """The options of a sizing solve: the mip strategy (lns and the greedy planner do not
    decide leases yet); InputError (exit 2) for options it cannot honour."""
    problems = []
    if opts.strategy == "lns" or opts.heuristic == "greedy":
        which = "strategy lns" if opts.strategy == "lns" else "heuristic greedy"
        problems.append(Problem("options", "strategy", f"{which} does not decide leases (reserve_options, "
                                "power_options) or scenarios", "use strategy mip or auto (which picks mip here)",
                                rule="bad-option"))
    if opts.previous is not None:
        problems.append(Problem("options", "previous", NOT_HONOURED["previous"], "leave previous unset",
                                rule="bad-option"))
    if opts.duals:
        problems.append(Problem("options", "duals", NOT_HONOURED["duals"], "leave duals unset",
                                rule="bad-option"))
    if problems:
        raise InputError(problems, source="solve options")
    return opts.with_(strategy="mip")


@dataclasses.dataclass
class Case:
    """One scenario on its way through the route."""

    id: str
    probability: float
    inst: object
    net: object = None
    index: object = None
    model: object = None


def prepare(inst, opts: SolveOptions, clock) -> list[Case]:
    """Scenario instances, their networks and indexes."""
    from allocator.indexing import build_index
    from allocator.network import Network

    cases = [Case(c.id, c.probability, c.instance) for c in leasing.scenario_cases(inst)]
    with clock("index_s"):
        for c in cases:
            c.net = Network(c.inst)
            c.index = build_index(c.inst, c.net)
    return cases


def unplaceable(cases: list[Case], several: bool) -> list[str]:
    lines = []
    for c in cases:
        for j in c.index.unplaceable_mandatory:
            why = c.index.unplaced.get(j, "no eligible start")
            lines.append((f"scenario {c.id}: " if several else "")
                         + f"job {j} (mandatory) cannot be placed: {why}")
    return lines


def build(cases: list[Case], opts: SolveOptions, deadline_at: float | None):
    """Each scenario's model, and the one model to solve."""
    from allocator.formulation import build_model
    from allocator.formulation.scenarios import build_extensive

    for c in cases:
        c.model = build_model(c.inst, c.index, opts, deadline=deadline_at)
    if len(cases) == 1:
        return cases[0].model
    return build_extensive([c.model for c in cases], [c.probability for c in cases], opts)


def explain(cases: list[Case], opts: SolveOptions) -> list[str]:
    """Why a sizing instance is infeasible: each scenario explained on its own, its leases
    free within their options (more lease never hurts feasibility; a budget may)."""
    from allocator.api import explain_infeasible

    lines = []
    for c in cases:
        for line in explain_infeasible(c.inst, c.index, opts):
            lines.append((f"scenario {c.id}: " if len(cases) > 1 else "") + line)
    lines.append("leases are explained at their largest options (max_gpus, max_mw): raise those, "
                 "or make more GPUs available, for the mandatory work to fit")
    return lines


def results(inst, cases: list[Case], opts: SolveOptions, raw, finish) -> Result:
    """The Result of a solved sizing model (``raw``: solve.SolverOutcome with values);
    ``finish(result, index)`` completes a scenario's Result (its summary)."""
    from allocator.formulation.extract import decisions_from_model
    from allocator.formulation.leasing import lease_values
    from allocator.indexing import build_index

    reserved, power = lease_values(cases[0].model)
    leases = leasing.leases_frame(inst, reserved, power)
    several = len(cases) > 1
    subs: dict[str, Result] = {}
    for c in cases:
        decisions = decisions_from_model(c.model, c.index)
        fixed = leasing.fix(c.inst, leases)
        fixed_index = build_index(fixed, None)
        outcome = Outcome(status=raw.status, decisions=decisions,
                          bound=None if several else raw.bound, objective=None,
                          solver=raw.solver, message=raw.message or "", solve_s=raw.solve_s)
        r = build_result(fixed, fixed_index, opts, outcome, frames_extra={"leases": leases})
        if several:
            r = dataclasses.replace(r, instance=c.inst)
        subs[c.id] = finish(r, fixed_index, c)
    if not several:
        return subs[cases[0].id]
    costs = {t: sum(c.probability * subs[c.id].costs.get(t, 0.0) for c in cases) for t in COST_TERMS}
    emissions = sum(c.probability * (subs[c.id].emissions_t or 0.0) for c in cases)
    objective = mode_objective(opts.objective, costs, emissions)
    bound = raw.bound
    if bound is not None and opts.objective in ("cost", "carbon"):
        bound = min(bound, objective)
    table = pd.DataFrame({
        "scenario": [c.id for c in cases],
        "probability": [c.probability for c in cases],
        "status": [subs[c.id].status.value for c in cases],
        "total_cost_usd": [subs[c.id].total_cost for c in cases],
        "objective": [subs[c.id].objective for c in cases],
    })
    return Result(status=raw.status, objective=objective, bound=bound, gap=gap_of(objective, bound),
                  costs=costs, emissions_t=emissions, solve_s=raw.solve_s, solver=raw.solver,
                  options=options_dict(opts), message=raw.message or "",
                  frames={"leases": leases, "scenarios": table}, scenarios=subs)


def no_schedule(inst, cases: list[Case], opts: SolveOptions, raw) -> Result:
    return Result(status=raw.status, bound=raw.bound, solve_s=raw.solve_s, solver=raw.solver,
                  options=options_dict(opts), message=raw.message or "")
