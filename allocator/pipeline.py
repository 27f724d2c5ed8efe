"""The one way through: strategy -> Outcome (decisions, bound, status) -> derived tables and
costs -> the one Result.

    strategy_outcome(name, ...)  the strategies: "mip" (allocator.solve.solve_model on the
                                 Pyomo model), "greedy" (heuristics.greedy_outcome),
                                 "lns" (allocator.lns.solve_lns)
    check_options(opts)          every option a strategy does not honour is refused here
    build_result(...)            the one Result builder: tables and costs by
                                 allocator.derive, the objective recomputed for the mode,
                                 the gap from the bound

allocator.api.solve and sweep.ReuseSession both end in build_result; no route builds its
tables with the verifier.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from allocator.errors import InputError, Problem
from allocator.options import SolveOptions
from allocator.outcome import Outcome
from allocator.results import Result, Status

#: options a strategy does not honour, refused with exit 2 when set away from their default
#: (strategy -> option -> why). mip honours every option.
NOT_HONOURED: dict[str, dict[str, str]] = {
    "lns": {
        "duals": "the neighbourhood search reports no LP duals; use strategy mip for duals",
        "disabled_families": "the neighbourhood search solves the whole formulation",
        "threads": "the neighbourhood search runs its own two threads",
        "verbose": "the neighbourhood search has no solver log to show",
    },
    "greedy": {
        "duals": "the greedy planner solves no LP, so it has no duals",
        "disabled_families": "the greedy planner always keeps every rule",
        "threads": "the greedy planner runs on one thread",
        "verbose": "the greedy planner has no solver log to show",
    },
}


def strategy_name(opts: SolveOptions) -> str:
    """The strategy that runs: greedy for heuristic="greedy", else opts.strategy (resolved)."""
    return "greedy" if opts.heuristic == "greedy" else opts.strategy


def refused(opts: SolveOptions, strategy: str) -> list[str]:
    """Names of the options set away from their default that ``strategy`` does not honour."""
    default = SolveOptions()
    return [name for name in NOT_HONOURED.get(strategy, {})
            if getattr(opts, name) != getattr(default, name)]


def check_options(opts: SolveOptions) -> None:
    """InputError (exit 2) naming each option the chosen strategy does not honour."""
    strategy = strategy_name(opts)
    bad = refused(opts, strategy)
    if bad:
        raise InputError(
            [Problem("options", name, f"option {name} is not honoured by strategy {strategy}: "
                     f"{NOT_HONOURED[strategy][name]}",
                     "leave it unset, or use strategy mip", rule="bad-option")
             for name in bad],
            source="solve options",
        )


def mode_objective(mode: str, costs: dict[str, float], emissions: float | None) -> float:
    """The reported objective of a mode: total cost for cost and carbon-then-cost, emissions
    for carbon and cost-then-carbon (the second objective of a lexicographic mode)."""
    if mode in ("carbon", "cost-then-carbon"):
        return float(emissions or 0.0)
    return float(sum(costs.values()))


def gap_of(objective: float | None, bound: float | None) -> float | None:
    if objective is None or bound is None:
        return None
    return max(0.0, abs(objective - bound) / max(abs(objective), 1e-9))


def options_dict(opts: SolveOptions) -> dict[str, Any]:
    """The options as recorded in a Result (JSON-ready): a re-plan's previous plan by name."""
    from allocator.previous import describe

    d = dataclasses.asdict(opts.with_(previous=None))
    d["previous"] = describe(opts.previous)
    d["disabled_families"] = list(d["disabled_families"])
    d.pop("warm_start", None)  # the deprecated alias of greedy_fallback
    return d


def build_result(inst, index, opts: SolveOptions, outcome: Outcome, *,
                 frames_extra: dict | None = None) -> Result:
    """The one Result builder: every route's tables and costs are derived from its decisions
    (allocator.derive); the objective is recomputed for ``opts.objective`` and the gap taken
    from the bound (a bound only counts for the mode it bounds: cost and carbon)."""
    from allocator.derive import derive

    frames: dict = {}
    costs: dict[str, float] = {}
    emissions = None
    objective = None
    gap = None
    status = outcome.status
    bound = outcome.bound
    if status.has_schedule and outcome.decisions is not None:
        d = derive(inst, index, outcome.decisions)
        frames, costs, emissions = d.frames, d.costs, d.emissions_t
        objective = mode_objective(opts.objective, costs, emissions)
        if bound is not None and opts.objective in ("cost", "carbon"):
            bound = min(bound, objective)
        gap = gap_of(objective, bound)
    if frames_extra:
        frames.update(frames_extra)
    return Result(status=status, objective=objective, bound=bound, gap=gap, costs=costs,
                  emissions_t=emissions, build_s=outcome.build_s, solve_s=outcome.solve_s,
                  solver=outcome.solver, options=options_dict(opts), message=outcome.message,
                  explanation=list(outcome.explanation), frames=frames)


def lns_outcome(inst, index, opts: SolveOptions, net=None) -> Outcome:
    """The lns strategy (allocator.lns, on the compiled formulation): its Outcome as it is,
    with the default lns time limit when none is set."""
    from allocator.lns import solve_lns
    from allocator.options import DEFAULT_LNS_LIMIT_S
    from allocator.solve import _hs

    if opts.time_limit_s is None:
        opts = opts.with_(time_limit_s=DEFAULT_LNS_LIMIT_S)
    _hs()  # the first Highs of the process, made with stdout silenced: no banner on stdout
    return solve_lns(inst, index, opts, net=net)


def mip_outcome(model, opts: SolveOptions, index, **solve_kw) -> tuple[Outcome, Any]:
    """The mip strategy on a built model: (Outcome, the solver's own outcome)."""
    from allocator.formulation.extract import decisions_from_model
    from allocator.solve import solve_model

    raw = solve_model(model, opts, **solve_kw)
    decisions = decisions_from_model(model, index) if raw.status.has_schedule else None
    return Outcome(status=raw.status, decisions=decisions, bound=raw.bound, objective=raw.objective,
                   solver=raw.solver, message=raw.message or "", solve_s=raw.solve_s,
                   build_s=raw.handoff_s), raw


class Deadline:
    """The one clock of a solve: created at its start from time_limit_s, passed to every
    stage. ``left()`` is the seconds remaining (None = no limit), ``expired()`` whether none
    are, ``options(opts)`` the options of a stage that may use only what remains."""

    def __init__(self, seconds: float | None):
        import time

        self._now = time.perf_counter
        self.seconds = seconds
        self.at = None if seconds is None else self._now() + seconds

    def left(self) -> float | None:
        return None if self.at is None else max(0.0, self.at - self._now())

    def expired(self) -> bool:
        return self.at is not None and self._now() >= self.at

    def options(self, opts: SolveOptions) -> SolveOptions:
        left = self.left()
        return opts if left is None else opts.with_(time_limit_s=left)


def cut_outcome(stage: str, deadline: Deadline, best: Outcome | None = None) -> Outcome:
    """What a solve cut by its time limit in ``stage`` returns: the best plan so far as
    feasible, else no_solution."""
    why = f"the time limit ({deadline.seconds:g} s) ran out during {stage}"
    if best is not None and best.status.has_schedule:
        return dataclasses.replace(best, status=Status.FEASIBLE,
                                   message="; ".join(m for m in (best.message, why) if m))
    return Outcome(status=Status.NO_SOLUTION, message=why)
