"""Solving: the only module that talks to HiGHS.

Route (see docs/api.md): the active part of a Pyomo model is compiled to arrays with Pyomo's
``LinearStandardFormCompiler`` (mixed form, declaration order of columns kept), the arrays are
handed to ``highspy.Highs.passModel`` in memory (no LP file), HiGHS runs, and the solution is
written back to the Pyomo variables through the compiled column list. The compiled row list is
kept so LP duals map back to named constraints.

Public functions:

    solve_model(model, options, *, objective=None, start=False) -> SolverOutcome
    lp_duals(model, options=None) -> DataFrame      (marginal values of capacity rows)
    dual_totals(duals) -> DataFrame                  (the same summed over periods)
    solver_version() -> str

A solve stopped by a limit with an incumbent is a FEASIBLE outcome with its gap, not an error.
Everything the compiler turns into a maximisation is handled as a minimisation internally and
reported in the sense of the model's objective.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from allocator import interrupt, progress
from allocator.options import SolveOptions
from allocator.results import Status

if TYPE_CHECKING:  # Pyomo is imported when a solve runs, so ``import allocator`` stays light
    import pyomo.environ as pyo
    from pyomo.core.base.objective import ObjectiveData

    from allocator.compiled import CompiledModel

log = logging.getLogger(__name__)

LEXICOGRAPHIC: dict[str, tuple[str, str]] = {
    "carbon-then-cost": ("obj_carbon", "obj_cost"),
    "cost-then-carbon": ("obj_cost", "obj_carbon"),
}
SINGLE: dict[str, str] = {"cost": "obj_cost", "carbon": "obj_carbon"}
OBJECTIVE_LABELS = {"obj_cost": "cost", "obj_carbon": "carbon"}

# Capacity rows whose duals are reported: constraint name -> (kind, index field names).
DUAL_ROWS: dict[str, tuple[str, tuple[str, ...]]] = {
    "power_cap": ("power", ("site", "period")),
    "capacity_gpus": ("gpus", ("site", "gpu_type", "period")),
    "network_bandwidth": ("bandwidth", ("link", "period")),
}
DUAL_COLUMNS = ("kind", "site", "gpu_type", "link", "period", "marginal_usd_per_unit_h")

_INF = math.inf


class SolveError(Exception):
    """The model cannot be handed to HiGHS (e.g. no objective, a nonlinear term)."""


@dataclass(frozen=True)
class StageOutcome:
    """One HiGHS run of a lexicographic solve."""

    objective_name: str
    status: Status
    objective: float | None
    bound: float | None
    gap: float | None
    solve_s: float
    raw_status: str


@dataclass(frozen=True)
class SolverOutcome:
    """What one call of :func:`solve_model` found.

    objective/bound are in the units and sense of the (last) objective solved, including its
    constant terms; gap = |objective - bound| / max(|objective|, 1e-9) (None without both).
    has_values says whether the Pyomo variables now hold a solution.
    """

    status: Status
    objective: float | None
    bound: float | None
    gap: float | None
    solve_s: float
    handoff_s: float
    solver: str
    raw_status: str
    has_values: bool
    message: str = ""
    objective_name: str = ""
    stages: tuple[StageOutcome, ...] = ()
    nodes: int = 0
    size: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- HiGHS plumbing

_highspy = None
_scheduler_threads: dict[str, Any] = {}  # "threads": value the HiGHS scheduler started with


def _hs():
    """Import highspy lazily, and create the first Highs object with stdout silenced: HiGHS
    prints its banner on the first construction of a process, before any option can be set,
    which would otherwise land in the middle of the CLI's output or a pipeline's stdout."""
    global _highspy
    if _highspy is None:
        import highspy

        with _silenced_stdout():
            highspy.Highs()
        _highspy = highspy
    return _highspy


@contextlib.contextmanager
def _silenced_stdout():
    try:
        sys.stdout.flush()
        fd = sys.__stdout__.fileno() if sys.__stdout__ is not None else 1
        saved = os.dup(fd)
    except (OSError, ValueError, AttributeError):
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def new_silent_highs():
    """A Highs object that prints nothing: the process's first one is made with stdout
    silenced (the banner), and output is off before any call that could log. Every HiGHS
    object of allocator is made here."""
    h = _hs().Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("log_to_console", False)
    return h


def solver_version() -> str:
    hs = _hs()
    return f"HiGHS {hs.Highs().version()}"


def _new_highs(options: SolveOptions, time_limit: float | None = None, *, watch: bool = True):
    """A Highs object configured from options, silent unless ``options.verbose``, stopped by a
    first Ctrl-C when ``watch`` (see allocator.interrupt). ``threads`` is applied only on the
    first solve of the process: HiGHS starts its thread scheduler once and rejects a different
    count later."""
    h = new_silent_highs()
    if options.verbose:
        h.setOptionValue("output_flag", True)
        h.setOptionValue("log_to_console", True)
    if watch:
        interrupt.watch(h)
    h.setOptionValue("mip_rel_gap", float(options.mip_gap))
    h.setOptionValue("random_seed", int(options.seed))
    limit = options.time_limit_s if time_limit is None else time_limit
    if limit is not None:
        h.setOptionValue("time_limit", max(0.0, float(limit)))
    if not _scheduler_threads:
        if options.threads is not None:
            h.setOptionValue("threads", int(options.threads))
        _scheduler_threads["threads"] = options.threads
    elif options.threads is not None and options.threads != _scheduler_threads["threads"]:
        log.warning(
            "HiGHS threads already fixed at %s for this process; ignoring threads=%s",
            _scheduler_threads["threads"] or "default",
            options.threads,
        )
    return h


WATCHDOG_GRACE_S = 2.0  # seconds past the time limit before allocator interrupts HiGHS


class _Watchdog:
    """A backstop for the time limit. HiGHS checks its own limit only between some steps, and
    on a loaded machine a 120 s limit was once overrun by minutes. HiGHS's interrupt callbacks
    (simplex, IPM, MIP: a few hundred calls per solve, negligible cost) stop the run once the
    deadline plus 2 s and 5% of the limit has passed; HiGHS then reports "interrupted", which
    maps to FEASIBLE with the incumbent or NO_SOLUTION like any limit."""

    def __init__(self, h, deadline: float, limit_s: float):
        self.deadline = deadline + WATCHDOG_GRACE_S + 0.05 * limit_s
        self.fired = False
        for event in ("cbSimplexInterrupt", "cbIpmInterrupt", "cbMipInterrupt"):
            getattr(h, event).subscribe(self._check)

    def _check(self, e) -> None:
        if time.perf_counter() > self.deadline:
            self.fired = True
            e.interrupt()


class _Listener:
    """Sends HiGHS's MIP figures (incumbent, bound, gap, in the objective's sense) to the
    progress reporter, and HiGHS's log to its log file, through HiGHS's callbacks."""

    def __init__(self, h, report: progress.Reporter, sense: int):
        self.report, self.sense = report, sense
        h.cbMipInterrupt.subscribe(self._figures)
        h.cbMipImprovingSolution.subscribe(self._figures)
        if report.wants_solver_log:
            h.setOptionValue("output_flag", True)  # log_to_console stays as options set it
            h.cbLogging.subscribe(lambda e: report.solver_log(e.message))

    def _figures(self, e) -> None:
        d = e.data_out
        inc, bnd = float(d.mip_primal_bound), float(d.mip_dual_bound)
        self.report.search(
            incumbent=self.sense * inc if math.isfinite(inc) else None,
            bound=self.sense * bnd if math.isfinite(bnd) else None,
            gap=float(d.mip_gap) if math.isfinite(inc) and math.isfinite(bnd) else None,
        )


def _compile(model: pyo.ConcreteModel, objectives: list[ObjectiveData]) -> CompiledModel:
    """Compile the active constraints with the given objectives (in that order) active: the
    one compile of allocator.compiled."""
    from allocator.compiled import compile_model

    return compile_model(model, objectives)


def _pass(h, comp: CompiledModel, k: int, *, integer: bool = True) -> None:
    """Hand the compiled arrays to HiGHS with objective row k (minimisation form)."""
    n, m = len(comp.columns), comp.m
    A = comp.A
    integ = comp.integrality if integer else np.zeros(n, dtype=np.int32)
    status = h.passModel(
        n,
        m,
        int(A.nnz),
        1,  # column-wise matrix
        1,  # minimise
        float(comp.offset[k]) if comp.offset.size else 0.0,
        np.ascontiguousarray(comp.c[k] if comp.c.shape[0] else np.zeros(n)),
        comp.col_lower,
        comp.col_upper,
        comp.row_lower,
        comp.row_upper,
        np.ascontiguousarray(A.indptr[:-1], dtype=np.int32),
        np.ascontiguousarray(A.indices, dtype=np.int32),
        np.ascontiguousarray(A.data, dtype=float),
        integ,
    )
    if status != _hs().HighsStatus.kOk and status != _hs().HighsStatus.kWarning:
        raise SolveError(f"HiGHS rejected the model: {status}")


def highs_from_arrays(A, c, offset: float, col_lower, col_upper, row_lower, row_upper,
                      integrality, *, time_limit: float | None = None, seed: int = 0,
                      mip_gap: float = 1e-4, threads: int | None = None, verbose: bool = False):
    """A silent ``highspy.Highs`` holding the minimisation of ``c x + offset`` over the given
    arrays (A scipy csc); for strategies that solve pieces of a CompiledModel (the
    neighbourhood search's sub-MIPs, its LP). Threads are fixed once per process, as for
    every HiGHS object of this module."""
    h = _new_highs(SolveOptions(mip_gap=float(mip_gap), seed=int(seed) % 2_000_000_000,
                                threads=threads, verbose=verbose, time_limit_s=None))
    if time_limit is not None:
        h.setOptionValue("time_limit", float(max(time_limit, 0.01)))
    n, m = A.shape[1], A.shape[0]
    status = h.passModel(n, m, int(A.nnz), 1, 1, float(offset), np.ascontiguousarray(c, dtype=float),
                         np.ascontiguousarray(col_lower, dtype=float),
                         np.ascontiguousarray(col_upper, dtype=float),
                         np.ascontiguousarray(row_lower, dtype=float),
                         np.ascontiguousarray(row_upper, dtype=float),
                         np.ascontiguousarray(A.indptr[:-1], dtype=np.int32),
                         np.ascontiguousarray(A.indices, dtype=np.int32),
                         np.ascontiguousarray(A.data, dtype=float),
                         np.ascontiguousarray(integrality, dtype=np.int32))
    if status != _hs().HighsStatus.kOk and status != _hs().HighsStatus.kWarning:
        raise SolveError(f"HiGHS rejected the model: {status}")
    return h


def _start_solution(h, comp: CompiledModel) -> int:
    """Pass the current variable values (those that are set) as a MIP start; return how many."""
    idx, vals = [], []
    for i, v in enumerate(comp.columns):
        if v.value is not None:
            idx.append(i)
            vals.append(float(v.value))
    if idx:
        h.setSolution(len(idx), np.asarray(idx, dtype=np.int32), np.asarray(vals, dtype=float))
    return len(idx)


def _gap(objective: float | None, bound: float | None) -> float | None:
    if objective is None or bound is None or not math.isfinite(bound):
        return None
    return max(0.0, abs(objective - bound) / max(abs(objective), 1e-9))


_LIMITS = {
    "kTimeLimit",
    "kIterationLimit",
    "kSolutionLimit",
    "kObjectiveBound",
    "kObjectiveTarget",
    "kInterrupt",
    "kHighsInterrupt",
    "kMemoryLimit",
    "kUnknown",
}


@dataclass
class _Run:
    status: Status
    objective: float | None  # minimisation form, with offset
    bound: float | None
    seconds: float
    raw: str
    has_values: bool
    nodes: int
    message: str = ""


def _run(h, comp: CompiledModel, k: int, options: SolveOptions, deadline: float | None,
         *, mip: bool = True) -> _Run:
    """Run HiGHS and classify the outcome (values and bounds in minimisation form)."""
    hs = _hs()
    t0 = time.perf_counter()
    with interrupt.searching():
        h.run()
    interrupt.check_abort()  # a second Ctrl-C: no result at all
    seconds = time.perf_counter() - t0
    ms = h.getModelStatus()
    raw = h.modelStatusToString(ms)
    info = h.getInfo()
    has_values = int(info.primal_solution_status) == 2  # kSolutionStatusFeasible
    is_mip = comp.is_mip and mip
    obj = float(info.objective_function_value) if has_values else None
    if is_mip:
        b = float(info.mip_dual_bound)
        bound = b if math.isfinite(b) else None
        nodes = int(info.mip_node_count)
    else:
        bound = obj if ms == hs.HighsModelStatus.kOptimal else None
        nodes = 0
    name = ms.name
    message = ""
    if ms == hs.HighsModelStatus.kOptimal:
        status = Status.OPTIMAL
        if bound is None:
            bound = obj
    elif ms == hs.HighsModelStatus.kModelEmpty:
        status, has_values = Status.OPTIMAL, True
        obj = bound = float(comp.offset[k]) if comp.offset.size else 0.0
    elif ms == hs.HighsModelStatus.kInfeasible:
        status = Status.INFEASIBLE
        has_values = False
    elif ms == hs.HighsModelStatus.kUnbounded:
        status = Status.UNBOUNDED
        message = "the objective is unbounded: some cost can decrease without limit"
    elif ms == hs.HighsModelStatus.kUnboundedOrInfeasible:
        status, message = _disambiguate(comp, k, options, deadline)
        has_values = False
    elif name in _LIMITS:
        status = Status.FEASIBLE if has_values else Status.NO_SOLUTION
        message = f"stopped by HiGHS: {raw}"
    else:
        status = Status.ERROR
        has_values = False
        message = f"HiGHS failed: {raw}"
    return _Run(status, obj, bound, seconds, raw, has_values, nodes, message)


def _disambiguate(comp: CompiledModel, k: int, options: SolveOptions, deadline: float | None):
    """HiGHS said "infeasible or unbounded": solve the feasibility problem (zero objective) to
    tell which. Feasible then means unbounded."""
    remaining = None if deadline is None else max(0.0, deadline - time.perf_counter())
    h = _new_highs(options, time_limit=remaining)
    zero = dataclasses.replace(comp, c=np.zeros((1, comp.n)), offset=np.zeros(1))
    _pass(h, zero, 0)
    with interrupt.searching():
        h.run()
    interrupt.check_abort()
    ms = h.getModelStatus()
    hs = _hs()
    if ms == hs.HighsModelStatus.kInfeasible:
        return Status.INFEASIBLE, "infeasible (a feasibility re-solve proved it)"
    if ms == hs.HighsModelStatus.kOptimal:
        return Status.UNBOUNDED, "the objective is unbounded: some cost can decrease without limit"
    return Status.UNBOUNDED, "HiGHS reports unbounded or infeasible and could not tell which"


def _write_back(model: pyo.ConcreteModel, comp: CompiledModel, col_value) -> None:
    """Set every compiled variable from HiGHS's column values; integers rounded. Variables the
    compiler dropped (in no active row or objective) and still unset get the value in their
    bounds closest to 0, so extraction never meets None."""
    import pyomo.environ as pyo

    comp.load(col_value)
    for v in model.component_data_objects(pyo.Var, descend_into=True):
        if v.value is None and not v.fixed:
            lb, ub = v.bounds
            x = 0.0
            if lb is not None and x < lb:
                x = lb
            if ub is not None and x > ub:
                x = ub
            v.set_value(x, skip_validation=True)


# --------------------------------------------------------------------------- public: solve


def _objective_components(model, options: SolveOptions, objective) -> list[ObjectiveData]:
    """The objectives to solve, in order (two for a lexicographic mode)."""
    import pyomo.environ as pyo

    if objective is not None and not isinstance(objective, str):
        return [objective]
    mode = objective or options.objective
    if hasattr(model, "obj_cost") and hasattr(model, "obj_carbon"):
        if mode in SINGLE:
            return [getattr(model, SINGLE[mode])]
        if mode in LEXICOGRAPHIC:
            return [getattr(model, name) for name in LEXICOGRAPHIC[mode]]
        raise SolveError(f"unknown objective mode {mode!r}; use cost, carbon, "
                         "carbon-then-cost or cost-then-carbon")
    if mode in SINGLE and hasattr(model, SINGLE[mode]):
        return [getattr(model, SINGLE[mode])]
    active = list(model.component_data_objects(pyo.Objective, active=True))
    if len(active) != 1:
        raise SolveError(f"model has {len(active)} active objectives; expected exactly one")
    return active


def solve_model(
    model: pyo.ConcreteModel,
    options: SolveOptions | None = None,
    *,
    objective: str | ObjectiveData | None = None,
    start: bool = False,
    on_run: Callable[[], None] | None = None,
) -> SolverOutcome:
    """Solve ``model`` with HiGHS and load the solution into its variables.

    objective: None (mode of options.objective; a model without ``obj_cost``/``obj_carbon``
    uses its single active objective), a mode name, or an Objective component.
    start: pass the variables' current values (those set) to HiGHS as a MIP start.
    on_run: called once the model is in HiGHS, just before HiGHS starts (the mip route starts
    the greedy fallback there, beside HiGHS rather than beside the Python compile).
    Lexicographic modes solve the first objective, then bound it by
    value + lex_tolerance*|value| + eps and solve the second one from the first solution;
    the outcome reports the second objective. The second objective is left active.
    """
    import pyomo.environ as pyo
    from pyomo.common.errors import InfeasibleConstraintException

    options = options or SolveOptions()
    objs = _objective_components(model, options, objective)
    t0 = time.perf_counter()
    try:
        comp = _compile(model, objs)
    except InfeasibleConstraintException as e:
        # a row without variables whose constant breaks its bound: infeasible before HiGHS
        return SolverOutcome(
            status=Status.INFEASIBLE, objective=None, bound=None, gap=None, solve_s=0.0,
            handoff_s=time.perf_counter() - t0, solver=solver_version(),
            raw_status="trivially infeasible row", has_values=False, message=str(e),
            objective_name=_label(objs[-1]),
        )
    h = _new_highs(options)
    _pass(h, comp, 0)
    handoff_s = time.perf_counter() - t0
    size = {"columns": len(comp.columns), "rows": comp.m, "nonzeros": int(comp.A.nnz),
            "integer_columns": int(comp.integrality.sum())}
    if start and comp.is_mip:
        n_start = _start_solution(h, comp)
        log.debug("MIP start with %d of %d values", n_start, len(comp.columns))
    deadline = None if options.time_limit_s is None else time.perf_counter() + options.time_limit_s
    watchdog = None
    if deadline is not None:
        watchdog = _Watchdog(h, deadline, float(options.time_limit_s))
    report = progress.current()
    listener = None
    if report is not None and comp.is_mip:
        listener = _Listener(h, report, comp.senses[0] if comp.senses else 1)
    if on_run is not None:
        on_run()
    first = _run(h, comp, 0, options, deadline)
    nodes = first.nodes
    version = f"HiGHS {h.version()}"
    stages: list[StageOutcome] = [_stage(comp, 0, first)]
    final, k = first, 0
    x = np.asarray(h.getSolution().col_value) if first.has_values else None

    if len(objs) == 2 and first.has_values and not interrupt.requested():
        # Bound the first objective (minimisation form) and optimise the second from x.
        v1 = first.objective
        rhs = v1 + options.lex_tolerance * abs(v1) + 1e-9 * max(1.0, abs(v1)) + 1e-7
        rhs -= float(comp.offset[0])
        nz = np.flatnonzero(comp.c[0])
        h.addRow(-_INF, rhs, len(nz), nz.astype(np.int32), comp.c[0][nz])
        h.changeColsCost(len(comp.columns), np.arange(len(comp.columns), dtype=np.int32),
                         np.ascontiguousarray(comp.c[1]))
        h.changeObjectiveOffset(float(comp.offset[1]))
        if deadline is not None:
            h.setOptionValue("time_limit", max(0.0, deadline - time.perf_counter()))
        if listener is not None:
            listener.sense = comp.senses[1]
        if comp.is_mip:
            h.setSolution(len(comp.columns), np.arange(len(comp.columns), dtype=np.int32), x)
        second = _run(h, comp, 1, options, deadline)
        nodes += second.nodes
        k = 1
        if second.has_values:
            x = np.asarray(h.getSolution().col_value)
            final = second
        else:  # keep the first-stage plan: still feasible for the bounded second stage
            obj2 = float(comp.c[1] @ x + comp.offset[1])
            final = _Run(Status.FEASIBLE, obj2, None, second.seconds, second.raw, True,
                         second.nodes, "second objective not improved within the limits; "
                         "the plan of the first objective is kept")
        if first.status is not Status.OPTIMAL and final.status is Status.OPTIMAL:
            # the second stage is optimal only within a first stage that was not proven
            final = _Run(Status.FEASIBLE, final.objective, final.bound, final.seconds,
                         final.raw, True, final.nodes,
                         f"first objective ({_label(objs[0])}) stopped by a limit "
                         f"with gap {_pct(_gap(first.objective, first.bound))}")
        stages.append(_stage(comp, 1, final))
        objs[0].deactivate()
        objs[1].activate()
    elif len(objs) == 2:
        objs[0].activate()
        objs[1].deactivate()
    elif objective is None or isinstance(objective, str):
        # the solved objective is the active one, the other deactivated
        for o in model.component_data_objects(pyo.Objective):
            o.deactivate()
        objs[0].activate()

    sense = comp.senses[k] if comp.senses else 1
    obj = None if final.objective is None else sense * final.objective
    bound = None if final.bound is None else sense * final.bound
    if final.has_values and x is not None:
        _write_back(model, comp, x)
        # Report the objective of the values as loaded (integers rounded), so it agrees with
        # the cost terms read from the model to the cent; HiGHS's own figure may differ by
        # its tolerances times large coefficients.
        obj = float(pyo.value(objs[k].expr))
    message = final.message
    if watchdog is not None and watchdog.fired:
        message = (f"HiGHS overran its time limit of {options.time_limit_s:g} s and was "
                   "interrupted")
    if len(objs) == 2 and not first.has_values:
        message = f"first objective ({_label(objs[0])}): {first.message or first.raw}"
    if interrupt.requested():
        message = interrupt.MESSAGE + (f" ({message})" if message else "")
        if len(objs) == 2 and first.has_values and len(stages) == 1:
            message += f"; the second objective ({_label(objs[1])}) was not solved"
    return SolverOutcome(
        status=final.status,
        objective=obj,
        bound=bound,
        gap=_gap(obj, bound) if final.status.has_schedule else None,
        solve_s=sum(s.solve_s for s in stages),
        handoff_s=handoff_s,
        solver=version,
        raw_status=final.raw,
        has_values=bool(final.has_values),
        message=message,
        objective_name=_label(objs[k]),
        stages=tuple(stages) if len(objs) == 2 else (),
        nodes=nodes,
        size=size,
    )


def _pct(gap: float | None) -> str:
    return "unknown" if gap is None else f"{gap:.2%}"


def _label(obj: ObjectiveData) -> str:
    name = obj.name
    return OBJECTIVE_LABELS.get(name, name)


def _stage(comp: CompiledModel, k: int, run: _Run) -> StageOutcome:
    sense = comp.senses[k] if comp.senses else 1
    obj = None if run.objective is None else sense * run.objective
    bound = None if run.bound is None else sense * run.bound
    return StageOutcome(
        objective_name=_label(comp.objectives[k]) if comp.objectives else "",
        status=run.status,
        objective=obj,
        bound=bound,
        gap=_gap(obj, bound) if run.status.has_schedule else None,
        solve_s=run.seconds,
        raw_status=run.raw,
    )


# --------------------------------------------------------------------------- public: duals


def lp_duals(
    model: pyo.ConcreteModel,
    options: SolveOptions | None = None,
    *,
    period_hours: float | None = None,
    fix: str = "binaries",
) -> pd.DataFrame:
    """Marginal values of the capacity rows for the plan currently held in ``model``.

    The binary decisions (which job starts where and when) are fixed at their solved values,
    general integers (GPUs held by inference services) are relaxed to continuous
    (``fix="integers"`` fixes them too), the remaining LP is solved with the cost objective
    (``obj_cost``, else the active objective), and the dual of each ``power_cap[s,t]``,
    ``capacity_gpus[s,g,t]`` and ``network_bandwidth[l,t]`` row becomes the dollars saved by one
    more unit of capacity for one hour: ``-dual / H`` for a ``<=`` row of a minimisation
    (positive where the ceiling binds, 0 where it does not). A row that the fixed decisions
    turn into a constant has nothing left to re-allocate and gets 0.

    Why not fix every integer: power and GPU rows hold only integer terms (gang GPUs and
    inference GPU counts), so with all of them fixed no capacity row has a free variable and
    every marginal would be 0. Relaxing the inference GPU counts keeps the question the duals
    answer ("what would one more MW at this site save, keeping the training plan?") meaningful.

    H is ``period_hours`` (else ``model.period_hours``, else 1). The rows must state the
    capacity in its unit as the constant side (``power_mw[s,t] <= power_cap_mw``).
    Units: $/MWh for power, $/GPU-hour for GPUs, $/Gbps-hour for bandwidth. These are local
    values of the fixed plan: they do not price re-planning the jobs, and hold only for small
    changes. Variable values and fixings are left as they were.
    """
    import pyomo.environ as pyo

    if fix not in ("binaries", "integers"):
        raise ValueError(f"fix must be 'binaries' or 'integers', not {fix!r}")
    options = options or SolveOptions()
    H = float(period_hours) if period_hours is not None else _period_hours(model)
    fixed = []
    try:
        for v in model.component_data_objects(pyo.Var, descend_into=True):
            if v.fixed or not v.is_integer():
                continue
            if fix == "binaries" and not v.is_binary():
                continue
            if v.value is None:
                raise SolveError(f"{v.name} has no value: solve the model before asking duals")
            v.fix(round(v.value))
            fixed.append(v)
        obj = getattr(model, "obj_cost", None)
        if obj is None:
            obj = _objective_components(model, options, None)[0]
        comp = _compile(model, [obj])
        h = _new_highs(options, time_limit=None, watch=False)
        _pass(h, comp, 0, integer=False)
        h.run()
        hs = _hs()
        status = h.getModelStatus()
        if status == hs.HighsModelStatus.kModelEmpty:
            # nothing left to move once the plan is fixed (no continuous column: e.g. every
            # pool without a reserved block, priced on its start columns): every marginal is 0
            row_dual = np.zeros(comp.m)
        elif status != hs.HighsModelStatus.kOptimal:
            raise SolveError(
                "the LP with the plan fixed did not solve to optimality "
                f"({h.modelStatusToString(status)}); no duals"
            )
        else:
            row_dual = np.asarray(h.getSolution().row_dual)
    finally:
        for v in fixed:
            v.unfix()
    # Per constraint: its upper-bound (or equality) row; a ">=" row only when it has no upper
    # bound (a ceiling written as cap - use >= 0).
    saved: dict[int, float] = {}
    for i, row in enumerate(comp.row_entries):
        con = row.constraint
        if con.parent_component().local_name not in DUAL_ROWS:
            continue
        mult = 1 if row.bound_type >= 0 else -1
        if id(con) in saved and mult == -1:
            continue
        saved[id(con)] = -mult * float(row_dual[i])
    records = []
    for name, (kind, fields) in DUAL_ROWS.items():
        comp_ = getattr(model, name, None)
        if comp_ is None or not isinstance(comp_, pyo.Constraint):
            continue
        for idx, con in comp_.items():
            if not con.active:
                continue
            key = idx if isinstance(idx, tuple) else (idx,)
            rec = {"kind": kind, "site": None, "gpu_type": None, "link": None, "period": None}
            rec.update(dict(zip(fields, key, strict=False)))
            value = saved.get(id(con), 0.0)
            rec["marginal_usd_per_unit_h"] = 0.0 if abs(value) < 1e-9 else value / H
            records.append(rec)
    return _typed_duals(pd.DataFrame.from_records(records, columns=list(DUAL_COLUMNS)))


def _typed_duals(df: pd.DataFrame) -> pd.DataFrame:
    """The duals table in its schedule types: a link is its 0-based position in the
    instance's links (the model's bandwidth rows are indexed by it), an integer."""
    out = df.copy()
    for col in ("kind", "site", "gpu_type"):
        out[col] = pd.array([None if _missing(x) else str(x) for x in out[col]], dtype="string")
    for col in ("link", "period"):
        out[col] = pd.array([None if _missing(x) else int(x) for x in out[col]], dtype="Int64")
    out["marginal_usd_per_unit_h"] = out["marginal_usd_per_unit_h"].astype(float)
    return out.reset_index(drop=True)


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA


def dual_totals(duals: pd.DataFrame, period_hours: float = 1.0) -> pd.DataFrame:
    """Duals summed over periods per (kind, site, gpu_type, link): ``total_usd_per_unit`` is the
    $ saved over the horizon by one more unit of capacity in every period; ``binding_periods``
    counts the periods with a positive value."""
    keys = ["kind", "site", "gpu_type", "link"]
    if duals.empty:
        return pd.DataFrame(columns=[*keys, "total_usd_per_unit", "binding_periods"])
    d = duals.assign(
        total_usd_per_unit=duals["marginal_usd_per_unit_h"] * period_hours,
        binding_periods=(duals["marginal_usd_per_unit_h"] > 1e-9).astype(int),
    )
    out = d.groupby(keys, dropna=False, sort=True)[["total_usd_per_unit", "binding_periods"]].sum()
    return out.reset_index()


def _period_hours(model) -> float:
    """Period length H in hours: ``model.period_hours`` (a number or Param) if the model has
    one, else the instance attached as ``model.instance``, else 1."""
    import pyomo.environ as pyo

    ph = getattr(model, "period_hours", None)
    if ph is not None:
        return float(pyo.value(ph))
    inst = getattr(model, "instance", None) or getattr(model, "inst", None)
    if inst is not None and hasattr(inst, "horizon"):
        return float(inst.horizon.period_hours)
    return 1.0
