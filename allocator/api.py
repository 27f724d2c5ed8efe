"""The Python API: ``allocator.solve(instance, options) -> Result``, with no disk involved.

Stages, each timed and each a public function of its own module:

    load (allocator.io)  ->  validate (allocator.validate.check)  ->  Network  ->  build_index
    ->  estimate_size  ->  strategy, returning an Outcome (allocator.pipeline: mip =
    build_model + solve_model + extract.decisions_from_model; greedy =
    heuristics.greedy_outcome; lns = lns.solve_lns)  ->  derive (allocator.derive:
    tables, costs, emissions from the decisions)  ->  pipeline.build_result  ->  Result

One Deadline (allocator.pipeline) is made from time_limit_s at the start and bounds every
stage: a stage cut by it yields the best plan so far (feasible) or no_solution.

An infeasible model is re-built with penalised slack (``elastic=True``) and re-solved so the
result says, in words, what cannot be met, where, when and by how much. Mandatory jobs that
have no eligible placement at all make the result infeasible without calling the solver.
When a limit stops HiGHS with no schedule or a worse one than the greedy planner's, the greedy
plan is returned with HiGHS's bound (options.greedy_fallback).

Pyomo and HiGHS are imported only when a solve runs, so importing allocator stays light.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from allocator import interrupt
from allocator import progress as progress_mod
from allocator.errors import InputError, ModelTooLargeError, Problem
from allocator.io import instance_from_dict, load_instance
from allocator.options import OBJECTIVES, SolveOptions
from allocator.outcome import Outcome
from allocator.pipeline import (
    Deadline,
    build_result,
    check_options,
    cut_outcome,
    gap_of,
    lns_outcome,
    mip_outcome,
    mode_objective,
    options_dict,
    refused,
)
from allocator.progress import Progress
from allocator.results import Result, Status
from allocator.schema import Instance

log = logging.getLogger(__name__)

GIB = 1024**3


def solve(
    instance: Instance | str | Path | dict[str, Any],
    options: SolveOptions | None = None,
    *,
    progress: Callable[[Progress], None] | None = None,
    on_interrupt: Literal["raise", "return"] = "raise",
    **option_overrides: Any,
) -> Result:
    """Solve an instance and return its schedule as DataFrames in a Result.

    instance: an Instance, a path to an instance YAML (or its folder), or a dict of instance
    fields. options: a SolveOptions; keyword overrides replace single fields
    (``solve(inst, time_limit_s=30, objective="carbon")``).
    progress: called with allocator.progress.Progress(stage, elapsed_s, incumbent, bound,
    gap) at each stage and as the search's figures move.
    on_interrupt: Ctrl-C during the search stops it; "raise" (default) raises
    allocator.interrupt.SolveInterrupted (a KeyboardInterrupt) whose ``result`` is the
    interrupted Result, "return" returns that Result. A second Ctrl-C, or one outside the
    search, raises a plain KeyboardInterrupt.

    Raises InputError (bad instance or options) and ModelTooLargeError (estimated size above
    options.max_nonzeros). Every other outcome is a Result: optimal, feasible (stopped by a
    limit, with its gap), infeasible (with ``explanation``), unbounded, no_solution, error.
    """
    if on_interrupt not in ("raise", "return"):
        raise ValueError(f"on_interrupt must be 'raise' or 'return', not {on_interrupt!r}")
    with interrupt.session(), progress_mod.reporting(progress):
        result = _solve(instance, options, option_overrides)
        progress_mod.stage("done")
    if interrupt.requested():
        result = _interrupted(result)
        if on_interrupt == "raise":
            raise interrupt.SolveInterrupted(result)
    return result


def _interrupted(result: Result) -> Result:
    """The Result of a search stopped by Ctrl-C: feasible with its schedule, bound and gap
    (never "optimal" unless proven), no_solution without one; "interrupted" in its message."""
    status = result.status
    if status is Status.OPTIMAL and not (result.gap is not None and result.gap <= 1e-9):
        status = Status.FEASIBLE
    elif not status.has_schedule and status is not Status.INFEASIBLE:
        status = Status.NO_SOLUTION
    message = result.message
    if interrupt.MESSAGE not in message:
        message = "; ".join(m for m in (interrupt.MESSAGE, message) if m)
    summary = dict(result.summary, status=status.value, message=message)
    return dataclasses.replace(result, status=status, message=message, summary=summary)


def _solve(instance, options, option_overrides) -> Result:
    opts = _options(options, option_overrides)
    deadline = Deadline(opts.time_limit_s)
    timings: dict[str, float] = {}
    clock = _Clock(timings)

    with clock("load_s"):
        inst, source = _instance(instance)
    with clock("validate_s"):
        warnings = _validate(inst, source)
    _check_now(opts, inst)

    from allocator import leasing

    if leasing.is_sizing(inst):
        return _solve_sizing(inst, opts, deadline, warnings, timings, clock)

    from allocator.indexing import build_index, estimate_size
    from allocator.network import Network

    plan = None
    if opts.previous is not None:
        from allocator.previous import load_previous

        with clock("load_s"):
            plan = load_previous(opts.previous, inst)
        opts = _replan_strategy(opts.with_(previous=plan))
    with clock("index_s"):
        net = Network(inst)
        index = build_index(inst, net)
        compact = estimate_size(index, compact=True) if opts.strategy in ("auto", "lns") else None
        opts = _resolve_strategy(opts, compact)
        size = compact if opts.strategy == "lns" else estimate_size(index)
    check_options(opts)
    _check_size(size, opts, inst)

    base = _base_summary(inst, opts, warnings, size)
    unplaceable = list(index.unplaceable_mandatory)
    if unplaceable:
        lines = [f"job {j} (mandatory) cannot be placed: {index.unplaced.get(j, 'no eligible start')}"
                 for j in unplaceable]
        return _finish(
            Result(status=Status.INFEASIBLE, options=options_dict(opts),
                   message=f"{len(unplaceable)} mandatory job(s) have no eligible placement",
                   explanation=lines),
            base, timings, index=index,
        )
    if deadline.expired():
        return _finish(build_result(inst, index, opts, cut_outcome("indexing", deadline)),
                       base, timings, index=index)

    if plan is not None:
        from allocator.formulation.replanning import frozen_problems

        lines = frozen_problems(inst, index, plan, opts.now)
        if lines:
            return _finish(
                Result(status=Status.INFEASIBLE, options=options_dict(opts),
                       message=f"{len(lines)} frozen job(s) of the previous plan cannot run any more",
                       explanation=lines),
                base, timings, index=index,
            )

    if opts.heuristic == "greedy":
        from allocator.heuristics import greedy_outcome

        with clock("solve_s"):
            outcome = greedy_outcome(inst, index, opts, net=net, deadline=deadline.at)
        return _finish(build_result(inst, index, opts, outcome), base, timings, index=index)

    if opts.strategy == "lns":
        with clock("solve_s"):
            outcome = lns_outcome(inst, index, deadline.options(opts), net=net)
        timings["build_s"] = outcome.build_s
        base["lns"] = outcome.stages
        if outcome.status.has_schedule or deadline.expired():
            return _finish(build_result(inst, index, opts, outcome), base, timings, index=index)
        # no start plan for the search (e.g. a budget the greedy start overspends): the whole
        # MIP gets what is left of the limit, so lns never says no_solution where mip solves
        base["lns_fallback"] = outcome.message
        opts = opts.with_(strategy="mip")
    return _solve_mip(inst, index, opts, net, deadline, base, timings, clock)


def _solve_mip(inst, index, opts: SolveOptions, net, deadline: Deadline, base: dict,
               timings: dict[str, float], clock) -> Result:
    """The mip strategy with its extras: the greedy fallback after a limit, duals, and the
    explanation of an infeasible instance."""
    from allocator.formulation import BuildTimeUp, build_model

    try:
        with clock("build_s"):
            model = build_model(inst, index, opts, deadline=deadline.at)
    except BuildTimeUp:
        return _finish(build_result(inst, index, opts, cut_outcome("the model build", deadline)),
                       base, timings, index=index)
    if deadline.expired():
        return _finish(build_result(inst, index, opts, cut_outcome("the model build", deadline)),
                       base, timings, index=index)
    progress_mod.stage("solve")
    plan = opts.previous  # the loaded previous plan of a re-plan, else None
    pending: list[Future] = []
    on_run = None
    if opts.greedy_fallback and plan is None and deadline.at is not None:
        def on_run() -> None:
            pending.append(_start_greedy(inst, index, opts, net, deadline))
    outcome, raw = mip_outcome(model, deadline.options(opts), index, on_run=on_run)
    timings["handoff_s"] = raw.handoff_s
    timings["solve_s"] = raw.solve_s
    base["model"] = dict(raw.size)
    base["raw_status"] = raw.raw_status
    if raw.stages:
        base["stages"] = [dataclasses.asdict(s) for s in raw.stages]

    if pending and (outcome.status not in (Status.FEASIBLE, Status.NO_SOLUTION) or interrupt.requested()):
        pending[0].stop.set()  # no fallback wanted: the plan's thread stops (before any explaining)
    if outcome.status is Status.INFEASIBLE and opts.explain:
        with clock("explain_s"):
            outcome.explanation = explain_infeasible(inst, index, deadline.options(opts))
        caps = [f"{k} = {getattr(opts, k)}" for k in ("max_moves", "max_moved_gpus") if getattr(opts, k) is not None]
        if plan is not None and caps:
            outcome.explanation.append(
                f"the re-plan keeps its move budget ({', '.join(caps)}) and its frozen jobs (now = {opts.now}) "
                "fixed while explaining; a larger --max-moves / --max-moved-gpus may make it feasible")
    if (opts.greedy_fallback and plan is None and outcome.status in (Status.FEASIBLE, Status.NO_SOLUTION)
            and not interrupt.requested()):  # Ctrl-C: the user wants the incumbent now
        # stopped by a limit: the greedy plan replaces HiGHS's incumbent if it is better
        with clock("greedy_s"):
            outcome = _greedy_fallback(inst, index, opts, outcome, net, deadline,
                                       pending[0] if pending else None)
    for future in pending:  # the plan is used or not needed: its thread stops
        future.stop.set()
    result = build_result(inst, index, opts, outcome)
    if plan is not None and result.status.has_schedule:
        result = _with_changes(result, inst, index, plan, opts, base)
    if opts.duals and result.status.has_schedule and not interrupt.requested():
        with clock("duals_s"):
            if outcome.solver.endswith("+ greedy plan"):
                _load_plan(model, outcome.decisions)
            result.frames["duals"] = _duals(model, opts, inst, index)
    return _finish(result, base, timings, index=index)


def _solve_sizing(inst: Instance, opts: SolveOptions, deadline: Deadline, warnings: list[Problem],
                  timings: dict[str, float], clock) -> Result:
    """An instance with lease decisions or scenarios (allocator.sizing): one MIP over every
    scenario, the leases shared; then each scenario's schedule on its leases."""
    from allocator import sizing
    from allocator.formulation import BuildTimeUp
    from allocator.indexing import estimate_size
    from allocator.solve import solve_model

    opts = sizing.check_options(opts)
    check_options(opts)
    cases = sizing.prepare(inst, opts, clock)
    several = len(cases) > 1
    size = {}
    for c in cases:
        for k, v in estimate_size(c.index).items():
            size[k] = size.get(k, 0) + v
    _check_size(size, opts, inst)
    base = _base_summary(inst, opts, warnings, size)
    lines = sizing.unplaceable(cases, several)
    if lines:
        return _finish(Result(status=Status.INFEASIBLE, options=options_dict(opts),
                              message=f"{len(lines)} mandatory job(s) have no eligible placement",
                              explanation=lines), base, timings, index=cases[0].index)
    try:
        with clock("build_s"):
            model = sizing.build(cases, opts, deadline.at)
    except BuildTimeUp:
        return _finish(build_result(inst, cases[0].index, opts, cut_outcome("the model build", deadline)),
                       base, timings)
    if deadline.expired():
        return _finish(build_result(inst, cases[0].index, opts, cut_outcome("the model build", deadline)),
                       base, timings)
    progress_mod.stage("solve")
    raw = solve_model(model, deadline.options(opts))
    timings["handoff_s"] = raw.handoff_s
    timings["solve_s"] = raw.solve_s
    base["model"] = dict(raw.size)
    base["raw_status"] = raw.raw_status
    if not raw.status.has_schedule:
        result = sizing.no_schedule(inst, cases, opts, raw)
        if raw.status is Status.INFEASIBLE and opts.explain:
            with clock("explain_s"):
                result = dataclasses.replace(result, explanation=sizing.explain(cases, deadline.options(opts)))
        return _finish(result, base, timings)

    def finish(result: Result, index, case) -> Result:
        sub = dict(base, scenario={"id": case.id, "probability": case.probability}) if several else base
        return _finish(result, sub, timings, index=index)

    result = sizing.results(inst, cases, opts, raw, finish)
    if not several:
        return result
    base["scenarios"] = [{"id": c.id, "probability": c.probability, "status": result.scenarios[c.id].status.value,
                          "total_cost_usd": result.scenarios[c.id].total_cost,
                          "objective": result.scenarios[c.id].objective} for c in cases]
    base["expected_cost_usd"] = result.total_cost
    result = _finish(result, base, timings)
    # the figures of a schedule, as expectations: the top folder holds no schedule tables
    unserved = sum(c.probability * (result.scenarios[c.id].summary.get("unserved_mtok") or 0.0) for c in cases)
    summary = dict(result.summary, unserved_mtok=unserved, dropped_jobs=None)
    return dataclasses.replace(result, summary=summary)


def explain_infeasible(inst: Instance, index, options: SolveOptions) -> list[str]:
    """Re-solve with penalised slack on capacity, power, bandwidth, budget, mandatory jobs and
    hard deadlines, and say in words which slack the cheapest repair needed."""
    from allocator.formulation import build_model, explain_slacks
    from allocator.solve import solve_model

    model = build_model(inst, index, options.with_(objective="cost"), elastic=True)
    outcome = solve_model(model, options.with_(objective="cost"))
    if not outcome.has_values:
        return [
            "the instance is infeasible, and the relaxed model that would say why did not "
            f"solve either ({outcome.status.value}: {outcome.message or outcome.raw_status}); "
            "re-run with a longer --time-limit"
        ]
    lines = list(explain_slacks(model, inst))
    if not lines:
        lines = [
            "the instance is infeasible, but the relaxed model needs no slack: a row outside "
            "the relaxed families (e.g. inference redundancy or precedence) cannot be met; "
            "check services with redundancy and chains of predecessors"
        ]
    return lines


# --------------------------------------------------------------------------- stages


class _Clock:
    """``with clock("name"):`` adds the elapsed seconds to timings[name]."""

    def __init__(self, timings: dict[str, float]):
        self.timings = timings

    def __call__(self, name: str):
        clock = self

        class _Ctx:
            def __enter__(self):
                progress_mod.stage(name.removesuffix("_s"))
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                clock.timings[name] = clock.timings.get(name, 0.0) + time.perf_counter() - self.t0
                return False

        return _Ctx()


def _options(options: SolveOptions | None, overrides: dict[str, Any]) -> SolveOptions:
    if options is not None and not isinstance(options, SolveOptions):
        raise TypeError(f"options must be a SolveOptions, not {type(options).__name__}")
    opts = options or SolveOptions()
    known = {f.name for f in dataclasses.fields(SolveOptions)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise InputError(
            [Problem("options", k, f"unknown solve option {k!r}",
                     f"known options: {', '.join(sorted(known))}", rule="unknown-option")
             for k in unknown],
            source="solve options",
        )
    if overrides:
        opts = opts.with_(**overrides)
    problems = []

    def bad(name: str, msg: str, fix: str) -> None:
        problems.append(Problem("options", name, msg, fix, rule="bad-option"))

    if opts.objective not in OBJECTIVES:
        bad("objective", f"objective {opts.objective!r} is not a mode", f"use one of {', '.join(OBJECTIVES)}")
    if opts.time_limit_s is not None and not (opts.time_limit_s >= 0 and math.isfinite(opts.time_limit_s)):
        bad("time_limit_s", f"time_limit_s = {opts.time_limit_s} is not a number of seconds >= 0",
            "give seconds, e.g. 60, or leave it unset for no limit")
    if not (0 <= opts.mip_gap < 1):
        bad("mip_gap", f"mip_gap = {opts.mip_gap} is outside [0, 1)", "use e.g. 0.01 for 1%")
    if opts.threads is not None and opts.threads < 1:
        bad("threads", f"threads = {opts.threads} is below 1", "use 1 or more, or leave it unset")
    if not (opts.lex_tolerance >= 0):
        bad("lex_tolerance", f"lex_tolerance = {opts.lex_tolerance} is negative", "use e.g. 1e-6")
    if opts.heuristic not in (None, "greedy"):
        bad("heuristic", f"heuristic {opts.heuristic!r} is unknown", "use greedy or leave it unset")
    if opts.strategy not in ("auto", "mip", "lns"):
        bad("strategy", f"strategy {opts.strategy!r} is unknown", "use auto, mip or lns")
    elif opts.strategy == "lns" and opts.objective != "cost":
        bad("strategy", f"strategy lns optimises cost only, not objective {opts.objective!r}",
            "use objective cost with strategy lns, or strategy mip")
    if not (isinstance(opts.now, int) and opts.now >= 0):
        bad("now", f"now = {opts.now} is not a period >= 0", "give the first period that is re-planned, e.g. 24")
    for name in ("max_moves", "max_moved_gpus"):
        value = getattr(opts, name)
        if value is not None and not (isinstance(value, int) and value >= 0):
            bad(name, f"{name} = {value} is not a whole number >= 0", "use 0 or more, or leave it unset for no cap")
        elif value is not None and opts.previous is None:
            bad(name, f"{name} = {value} needs a previous plan", "pass previous (--previous PREV_DIR)")
    if opts.max_nonzeros <= 0:
        bad("max_nonzeros", f"max_nonzeros = {opts.max_nonzeros} is not positive", "use e.g. 60000000")
    if problems:
        raise InputError(problems, source="solve options")
    return opts


def _check_now(opts: SolveOptions, inst: Instance) -> None:
    """``now`` is a period of the horizon or its end: now = periods makes every period history
    (the previous plan re-costed on the new instance, nothing re-decided); beyond it, exit 2."""
    periods = inst.horizon.periods
    if isinstance(opts.now, int) and opts.now > periods:
        raise InputError([Problem(
            "options", "now", f"now = {opts.now} (--now) is beyond the horizon ({periods} periods, "
            f"0 to {periods - 1})",
            f"give a period from 0 to {periods} (now = {periods}: every period is history)",
            rule="bad-option")], source="solve options")


def _instance(instance) -> tuple[Instance, str]:
    if isinstance(instance, Instance):
        return instance, instance.name
    if isinstance(instance, (str, Path)):
        return load_instance(instance), str(instance)
    if isinstance(instance, dict):
        return instance_from_dict(instance), "<dict>"
    raise TypeError(
        f"instance must be an Instance, a path or a dict, not {type(instance).__name__}"
    )


def _validate(inst: Instance, source: str) -> list[Problem]:
    """allocator.validate.check when present: raises InputError on errors, returns warnings."""
    try:
        validate = importlib.import_module("allocator.validate")
    except ModuleNotFoundError:
        return []
    return list(validate.check(inst, source=source))


def _resolve_strategy(opts: SolveOptions, compact_size: dict[str, int] | None) -> SolveOptions:
    """Strategy "auto" made concrete: lns for the cost objective (MIP, not the greedy
    planner alone) once the compact model (``estimate_size(index, compact=True)``) reaches
    AUTO_LNS_NONZEROS, unless an option lns does not honour is set (pipeline.NOT_HONOURED),
    else mip."""
    if opts.strategy != "auto":
        return opts
    from allocator.options import AUTO_LNS_NONZEROS

    large = compact_size is not None and compact_size["nonzeros"] >= AUTO_LNS_NONZEROS
    use_lns = (large and opts.objective == "cost" and opts.heuristic is None
               and not refused(opts, "lns"))
    return opts.with_(strategy="lns" if use_lns else "mip")


def _check_size(size: dict[str, int], opts: SolveOptions, inst: Instance) -> None:
    nnz = int(size.get("nonzeros", 0))
    if nnz <= opts.max_nonzeros:
        return
    raise ModelTooLargeError(
        f"instance {inst.name}: the model would have about {nnz:,} nonzeros "
        f"({size.get('variables', 0):,} variables, {size.get('constraints', 0):,} rows, "
        f"about {size.get('bytes', 0) / GIB:.1f} GiB to build), above max_nonzeros = "
        f"{opts.max_nonzeros:,}; reduce it with longer periods (horizon.period_hours), a shorter "
        "horizon, narrower release/deadline windows or allowed_sites for the jobs, fewer GPU "
        "types per service, or raise max_nonzeros if the machine has the memory"
    )


def _fallback_deadline(deadline: Deadline) -> float | None:
    """When the greedy fallback must stop: HiGHS has used the whole limit by the time it
    runs, so it gets a grace of a tenth of the limit (at least 5 s) past it; without that
    it could never stand in for a HiGHS run that found nothing."""
    if deadline.at is None:
        return None
    return max(deadline.at, time.perf_counter()) + max(5.0, 0.1 * deadline.seconds)


def _start_greedy(inst: Instance, index, opts: SolveOptions, net, deadline: Deadline) -> Future:
    """The greedy plan, made on a second thread while HiGHS runs (HiGHS does not hold
    Python's lock while it solves), so that a large instance whose HiGHS run ends at its
    limit with nothing still has the greedy plan to return; made after HiGHS, it could take
    longer than the grace _fallback_deadline allows (generated L with three times the
    services: 18 s). The thread is a daemon and stops at that deadline at the latest, or
    once ``future.stop`` is set (_solve_mip sets it when HiGHS needs no fallback)."""
    from allocator.heuristics import greedy_outcome, stop_when

    future: Future = Future()
    future.stop = threading.Event()
    at = _fallback_deadline(deadline)

    def run() -> None:
        stop_when(future.stop)
        try:
            future.set_result(greedy_outcome(inst, index, opts, net=net, deadline=at))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            future.set_exception(exc)
        finally:
            stop_when(None)

    threading.Thread(target=run, name="allocator-greedy-fallback", daemon=True).start()
    return future


def _greedy_fallback(inst: Instance, index, opts: SolveOptions, outcome: Outcome, net,
                     deadline: Deadline | None = None, pending: Future | None = None) -> Outcome:
    """The greedy plan in place of what HiGHS returned after a limit, when HiGHS has no
    schedule, or (single objectives only) a worse one; else ``outcome`` unchanged.
    ``pending``: the plan being made beside HiGHS (_start_greedy), waited for until the
    fallback's deadline; without it the plan is made now.

    Handing the plan to HiGHS as a MIP start was measured to hurt (HiGHS stopped improving
    once given it; docs/performance.md), so the plan is only a fallback."""
    from allocator.derive import derive
    from allocator.heuristics import greedy_outcome

    if pending is not None:
        wait = None if deadline is None else max(0.0, _fallback_deadline(deadline) - time.perf_counter())
        try:
            g = pending.result(timeout=wait)
        except FutureTimeout:
            return outcome
    else:
        g = greedy_outcome(inst, index, opts, net=net,
                           deadline=None if deadline is None else _fallback_deadline(deadline))
    if not g.status.has_schedule:
        return outcome
    d = derive(inst, index, g.decisions)
    value = mode_objective(opts.objective, d.costs, d.emissions_t)
    current = None
    if outcome.status.has_schedule:
        if opts.objective not in ("cost", "carbon"):
            return outcome
        c = derive(inst, index, outcome.decisions)
        current = mode_objective(opts.objective, c.costs, c.emissions_t)
        if value >= current - 1e-9 * max(1.0, abs(current)):
            return outcome
    bound = outcome.bound if opts.objective in ("cost", "carbon") else None
    notes = ["HiGHS found no schedule within the limits; the greedy plan is returned"
             if current is None else
             f"the greedy plan ({value:,.2f}) beats HiGHS's incumbent ({current:,.2f}) and is returned"]
    if bound is not None:
        notes.append("its gap is measured against HiGHS's bound")
    return dataclasses.replace(
        outcome, status=Status.FEASIBLE, decisions=g.decisions, bound=bound,
        solver=f"{outcome.solver} + greedy plan",
        message="; ".join(m for m in [outcome.message, *notes] if m))


def _load_plan(model, plan) -> None:
    """Put a plan's decisions into the model's variables (for duals of that plan)."""
    extract = importlib.import_module("allocator.formulation.extract")
    training, inference_gpus, inference = _decision_frames(plan)
    extract.start_values_from_schedule(model, training, inference_gpus, inference)


def _decision_frames(decisions) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    def get(name: str) -> pd.DataFrame:
        if isinstance(decisions, dict):
            df = decisions.get(name)
        else:
            df = getattr(decisions, name, None)
            if df is None and hasattr(decisions, "frames"):
                df = decisions.frames.get(name)
        return df if df is not None else pd.DataFrame()

    return get("training"), get("inference_gpus"), get("inference")


def _duals(model, opts, inst, index) -> pd.DataFrame:
    from allocator.solve import lp_duals

    duals = lp_duals(model, opts, period_hours=inst.horizon.period_hours)
    # the model's rows name links by label; the schedule names them by their 0-based position
    # in the instance's links list (docs/schedule-format.md)
    position = {label: i for i, label in enumerate(index.links["l"])}
    duals["link"] = pd.array(
        [None if pd.isna(x) else position.get(x, x if isinstance(x, int) else None)
         for x in duals["link"].astype(object)],
        dtype="Int64",
    )
    return duals


def _replan_strategy(opts: SolveOptions) -> SolveOptions:
    """A re-plan runs on the mip route: lns and the greedy planner do not honour frozen jobs
    and the move budget yet, so they are refused rather than ignoring ``previous``."""
    for name, value, unsupported in (("strategy", opts.strategy, "lns"), ("heuristic", opts.heuristic, "greedy")):
        if value == unsupported:
            raise InputError([Problem("options", "previous",
                                      f"option previous (re-planning) is not supported by {name} {unsupported}",
                                      "re-plan with strategy mip (or auto, which picks mip when previous is given)",
                                      rule="bad-option")], source="solve options")
    return opts.with_(strategy="mip")


def _with_changes(result: Result, inst: Instance, index, plan, opts: SolveOptions, base: dict) -> Result:
    """A re-plan's Result: its changes table, the migration term in its costs (the model's
    objective has it, so the objective and gap are recomputed with it) and the counts."""
    frames = dict(result.frames)
    frames["changes"], migration, base["changes"] = _changes(inst, index, plan, opts, frames)
    costs = {**result.costs, "migration": migration}
    objective = mode_objective(opts.objective, costs, result.emissions_t)
    bound = result.bound
    if bound is not None and opts.objective in ("cost", "carbon"):
        bound = min(bound, objective)
    return dataclasses.replace(result, frames=frames, costs=costs, objective=objective, bound=bound,
                               gap=gap_of(objective, bound))


def _changes(inst: Instance, index, plan, opts: SolveOptions, frames) -> tuple[pd.DataFrame, float, dict]:
    """changes.csv, the migration $ and the change counts of a re-plan's schedule."""
    from allocator.formulation import replanning

    changes = replanning.changes_frame(inst, plan, frames["training"], opts.now, index.period_hours)
    scale = replanning.scale_usd(inst, plan, frames["inference_gpus"], opts.now, index.periods)
    counts = replanning.counts(changes)
    counts["moved_gpus"] = int(frames["training"].set_index("job").reindex(
        changes.loc[changes["change"] == "moved", "job"])["gpus"].sum())
    counts["scale_usd"] = scale
    return changes, float(changes["move_cost_usd"].sum()) + scale, counts


def _base_summary(inst: Instance, opts: SolveOptions, warnings: list[Problem], size) -> dict:
    h = inst.horizon
    return {
        "instance": {
            "name": inst.name,
            "horizon": {"start": h.start.isoformat(), "periods": h.periods,
                        "period_hours": h.period_hours},
        },
        "warnings": [str(p) for p in warnings],
        "estimated_size": dict(size),
    }


def _finish(result: Result, base: dict, timings: dict[str, float], *, index=None) -> Result:
    """Fill build_s / solve_s and the summary (the keys of summary.json)."""
    build_s = sum(timings.get(k, 0.0) for k in ("index_s", "build_s", "handoff_s"))
    solve_s = timings.get("solve_s", result.solve_s)
    costs = dict(result.costs)
    if costs:  # migration is 0 unless a previous plan was given (every route reports every term)
        costs.setdefault("migration", 0.0)
    result = dataclasses.replace(result, build_s=build_s, solve_s=solve_s, costs=costs)
    summary = dict(base)
    summary["timings"] = {k: round(v, 6) for k, v in timings.items()}
    summary["dropped_jobs"] = _dropped_jobs(result, index)
    summary["unserved_mtok"] = _unserved_mtok(result, base)
    summary["explanation"] = list(result.explanation)
    summary_dict = getattr(importlib.import_module("allocator.results"), "summary_dict", None)
    result = dataclasses.replace(result, summary=summary)
    if summary_dict is not None:
        summary = summary_dict(result)
    else:
        summary.update(
            status=result.status.value, objective=result.objective, bound=result.bound,
            gap=result.gap, costs=dict(result.costs), total_cost_usd=result.total_cost,
            emissions_t=result.emissions_t, build_s=result.build_s, solve_s=result.solve_s,
            solver=result.solver, options=dict(result.options), message=result.message,
        )
    return dataclasses.replace(result, summary=summary)


def _dropped_jobs(result: Result, index) -> list[str]:
    if index is None or not result.status.has_schedule:
        return []
    placed = set()
    training = result.frames.get("training")
    if training is not None and len(training):
        placed = set(training["job"].astype(str))
    return [j for j in index.jobs if not index.mandatory.get(j, True) and j not in placed]


def _unserved_mtok(result: Result, base: dict) -> float | None:
    if not result.status.has_schedule:
        return None
    df = result.frames.get("unserved")
    if df is None or df.empty:
        return 0.0
    hours = float(base["instance"]["horizon"]["period_hours"])
    return float(pd.to_numeric(df["unserved_tokens_per_s"]).sum()) * 3600.0 * hours / 1e6
