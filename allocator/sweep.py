"""Sensitivity sweeps: run the scenarios of a spec in parallel, resumably, failure-isolated.

    df = allocator.sweep(instance, "data/demo/sweep.yaml", out="runs/demo-sweep")

Each scenario is the instance with some numbers changed (see allocator.sweep_spec). Its id is
a short hash of its overrides and solve options, so the same command run again finds the same
ids. With ``out``, a scenario writes its schedule to OUT/scenarios/<id>/ and then, last and
atomically, OUT/scenarios/<id>/row.json: a scenario is finished if and only if its row.json
exists, and a re-run skips finished scenarios. A scenario that raises or has no schedule is
recorded (status, error) like any other; it never stops the others. The rows are gathered into
OUT/results.parquet and OUT/results.csv, one row per scenario of the spec.

Scenarios run in local processes by default (``workers``), in the calling process with
``executor="inline"``, on any concurrent.futures executor, or on a Dask cluster
(``executor=`` a dask.distributed Client, or ``scheduler=`` its address).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pandas as pd

from allocator import interrupt
from allocator.errors import InputError, Problem, format_problems
from allocator.options import SolveOptions
from allocator.results import COST_TERMS, Result, Status
from allocator.schema import Instance
from allocator.sweep_spec import (
    Scenario,
    SpecError,
    SweepSpec,
    check_spec,
    instance_fingerprint,
    load_spec,
    resolve,
    scenario_instance,
    scenario_options,
    spec_from_dict,
)

SolveFn = Callable[..., Result]  # solve(instance, options) -> Result
ROW_FILE = "row.json"


class SchedulerError(InputError):
    """A Dask scheduler that cannot be reached (CLI exit code 2)."""

    subject = "with the --scheduler address"


class SweepFolderError(InputError):
    """A sweep folder that cannot be used (CLI exit code 2)."""

    def __str__(self) -> str:
        head = f"{self.source}: " if self.source else ""
        return "\n".join([f"{head}cannot use this sweep folder", *format_problems(self.problems)])


MANIFEST = "sweep.json"
LOCK_FILE = ".sweep.lock"
CONNECT_TIMEOUT_S = 5.0  # a scheduler that does not answer in this time is not there
MAX_POOL_RESTARTS = 3  # a scenario whose worker process dies this often is recorded as failed

# --------------------------------------------------------------------------- public API


def sweep(
    instance: Instance | str | Path,
    spec: SweepSpec | dict | str | Path,
    *,
    out: str | Path | None = None,
    executor: Executor | Any | str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    solve: SolveFn | None = None,
    options: SolveOptions | None = None,
    progress: bool | None = None,
    retry_failed: bool = False,
    reuse: bool = True,
    on_row: Callable[[dict], None] | None = None,
    force: bool = False,
    connect_timeout: float = CONNECT_TIMEOUT_S,
) -> pd.DataFrame:
    """Run every scenario of ``spec`` on ``instance``; one row per scenario.

    instance   an Instance or the path of an instance file
    spec       a SweepSpec, a mapping shaped like the YAML, or the path of a spec file
    out        folder for schedules, row files and results; None keeps everything in memory
               (and nothing is resumable)
    executor   None: local processes; "inline": this process, one by one; a
               concurrent.futures.Executor; or a dask.distributed.Client
    workers    local processes (default: the number of CPUs)
    scheduler  address of a Dask scheduler to connect a Client to (closed afterwards)
    solve      solve(instance, options) -> Result; default allocator.solve
    options    base solve options, updated by the spec's ``solve:`` mapping
    progress   show a progress bar (default: when stderr is a terminal)
    retry_failed  re-run finished scenarios whose status is "error"
    reuse      let each worker reuse what it built for an earlier scenario (see docs)
    force      use an ``out`` that holds results or a sweep.json not written by a sweep of
               this spec (they are replaced; finished scenario folders are kept)
    connect_timeout  seconds to wait for the ``scheduler`` before giving up

    Raises InputError (naming the spec file, parameter and value) for a bad spec, an ``out``
    that cannot be written or holds foreign results, another sweep running in ``out``, or a
    scheduler that cannot be reached, before anything runs. Ctrl-C stops the sweep; finished
    scenarios stay finished.
    """
    from allocator.io import load_instance
    from allocator.results import check_writable

    if out is not None:
        check_writable(out, folder=True)
    inst = load_instance(instance) if isinstance(instance, (str, Path)) else instance
    source = str(spec) if isinstance(spec, (str, Path)) else "<spec>"
    if isinstance(spec, (str, Path)):
        spec = load_spec(spec)
    elif isinstance(spec, dict):
        spec = spec_from_dict(spec)
    scenarios = check_spec(inst, spec, source=source)
    opts = spec.solve_options(options)
    _check_scenario_options(scenarios, opts, source)
    if isinstance(opts.previous, (str, Path)):  # a missing or foreign previous plan: say it once
        from allocator.previous import load_previous

        load_previous(opts.previous, inst)
    out_dir = Path(out) if out is not None else None

    with contextlib.ExitStack() as held:  # the folder's lock, the scheduler's client
        if out_dir is not None:
            held.enter_context(_FolderLock(out_dir))
        client, own_client = _dask_client(executor, scheduler, connect_timeout)
        if own_client:
            held.callback(client.close)
        return _run_sweep(inst, spec, scenarios, opts, out_dir, client, executor=executor,
                          workers=workers, solve=solve, reuse=reuse, progress=progress,
                          retry_failed=retry_failed, on_row=on_row, force=force)


def _check_scenario_options(scenarios: list[Scenario], opts: SolveOptions, source: str) -> None:
    """Every scenario's solve options as allocator.solve checks them (a move budget needs a
    previous plan, a gap in [0, 1), ...), before anything runs: SpecError naming the spec."""
    from allocator.api import _options

    seen: set[tuple] = set()
    for sc in scenarios:
        key = tuple((p, repr(v)) for p, _op, v in sc.overrides if p.startswith("solve."))
        if key in seen:
            continue
        seen.add(key)
        try:
            _options(scenario_options(opts, sc), {})
        except InputError as exc:
            swept = ", ".join(f"{p} = {v!r}" for p, v in key)
            name = Path(source).name if source != "<spec>" else source
            raise SpecError([Problem("sweep", f"{name} solve" + (f" ({swept})" if swept else ""),
                                     f"solve.{pr.id}: {pr.message}", pr.fix, rule="spec-solve")
                             for pr in exc.problems], source=source) from None


def _run_sweep(inst, spec, scenarios, opts, out_dir, client, *, executor, workers, solve,
               reuse, progress, retry_failed, on_row, force) -> pd.DataFrame:
    rows: dict[str, dict] = {}
    todo = list(scenarios)
    if out_dir is not None:
        trusted = _prepare_out(out_dir, inst, spec, scenarios, force)
        done = _finished_rows(out_dir, scenarios) if trusted else {}
        if retry_failed:
            done = {k: v for k, v in done.items() if v.get("status") != Status.ERROR.value}
        rows.update(done)
        todo = [sc for sc in scenarios if sc.id not in done]

    task = ScenarioTask(spec=spec, options=opts, out=str(out_dir) if out_dir else None,
                        solve=solve, reuse=reuse, sites=[s.id for s in inst.sites])
    bar = _Progress(len(scenarios), already=len(rows),
                    failed=sum(1 for r in rows.values() if _failed(r)), enabled=progress)

    def record(row: dict) -> None:
        rows[row["scenario"]] = row
        if out_dir is not None:
            path = out_dir / "scenarios" / row["scenario"] / ROW_FILE
            if not path.exists():  # a remote worker without our disk: write it here
                write_json_atomic(path, row)
        bar.advance(_failed(row))
        if on_row is not None:
            on_row(row)

    try:
        # one session: a Ctrl-C in a scenario's search is not taken as that scenario's end
        with interrupt.session(), bar:
            if not todo:
                pass
            elif client is not None:
                _run_dask(client, inst, todo, task, record)
            elif executor == "inline" or (executor is None and (workers or 0) == 1):
                _run_inline(inst, todo, task, record)
            elif isinstance(executor, Executor):
                _run_executor(executor, inst, todo, task, record)
            elif executor is None:
                _run_processes(inst, todo, task, record, workers or os.cpu_count() or 1)
            else:
                raise TypeError(f"executor must be None, 'inline', an Executor or a dask Client, "
                                f"not {type(executor).__name__}")
    finally:
        if out_dir is not None:
            # rows workers finished while a Ctrl-C stopped the sweep are on disk only
            rows.update({k: v for k, v in _finished_rows(out_dir, scenarios).items() if k not in rows})
            write_results(out_dir, results_frame(scenarios, rows, spec, task.sites))
    return results_frame(scenarios, rows, spec, task.sites)


def read_results(out: str | Path) -> pd.DataFrame:
    """The results table of a sweep folder (parquet if present, else CSV)."""
    out = Path(out)
    if (out / "results.parquet").exists():
        return pd.read_parquet(out / "results.parquet")
    if (out / "results.csv").exists():
        return pd.read_csv(out / "results.csv")
    raise SweepFolderError([Problem("file", str(out), "holds no results.parquet or results.csv",
                              "pass the --out folder of a sweep", rule="sweep-folder")],
                     source=str(out))


def read_manifest(out: str | Path) -> dict:
    """OUT/sweep.json: the spec's parameters, solve options, instance and scenario ids."""
    path = Path(out) / MANIFEST
    if not path.exists():
        raise SweepFolderError([Problem("file", str(out), f"holds no {MANIFEST}",
                                  "pass the --out folder of a sweep", rule="sweep-folder")],
                         source=str(out))
    return json.loads(path.read_text())


# --------------------------------------------------------------------------- one scenario


class ScenarioTask:
    """Everything a worker needs besides the instance; picklable.

    Calling it with (instance, scenario) solves the scenario, exports its schedule, writes
    its row.json last and returns the row. Exceptions become rows with status "error";
    only BaseExceptions that are not Exceptions (Ctrl-C, a worker shut down) escape.
    """

    def __init__(self, *, spec: SweepSpec, options: SolveOptions, out: str | None,
                 solve: SolveFn | None, reuse: bool, sites: list[str]):
        self.spec = spec
        self.options = options
        self.out = out
        self.solve = solve
        self.reuse = reuse
        self.sites = sites
        self.key = uuid.uuid4().hex  # one sweep run; workers keep their Solver per key

    def __call__(self, inst: Instance, sc: Scenario) -> dict:
        t0 = time.perf_counter()
        row = base_row(sc, self.sites)
        if self.out is not None:  # a retried failure: its old row goes first
            Path(self.out, "scenarios", sc.id, ROW_FILE).unlink(missing_ok=True)
        try:
            result = _worker_solver(self, inst).solve(sc)
            if interrupt.requested() and interrupt.MESSAGE in (result.message or ""):
                raise KeyboardInterrupt  # Ctrl-C stopped this scenario's search: unfinished
            row.update(result_row(result, inst, self.sites))
            if self.out is not None and result.status.has_schedule:
                export_schedule(result, Path(self.out) / "scenarios" / sc.id)
        except Exception as exc:  # a failing scenario must not stop the sweep
            row["status"] = Status.ERROR.value
            row["error"] = f"{type(exc).__name__}: {exc}"
            row["traceback"] = traceback.format_exc(limit=8)
        row["seconds"] = round(time.perf_counter() - t0, 4)
        if self.out is not None:
            write_json_atomic(Path(self.out) / "scenarios" / sc.id / ROW_FILE, row)
        return row


class Solver:
    """Solves scenarios of one base instance in one worker.

    With an injected ``solve`` function, or ``reuse=False``, each scenario's instance is
    built and handed to ``solve(instance, options)``. Otherwise a ReuseSession keeps the
    model built for the previous scenario and updates only what the changed numbers touch.
    """

    def __init__(self, task: ScenarioTask, inst: Instance):
        self.task = task
        self.inst = inst
        self.resolved = {p.path: resolve(inst, p.path) for p in task.spec.parameters
                         if p.solve_option is None}
        self.fn = task.solve or _default_solve()
        self.session = ReuseSession(task.options) if task.reuse and _is_engine(self.fn) else None
        self.key: tuple | None = None

    def solve(self, sc: Scenario) -> Result:
        sinst = scenario_instance(self.inst, sc, self.resolved)
        opts = scenario_options(self.task.options, sc)  # the spec's, with its swept solve options
        if self.session is not None:
            return self.session.solve(sinst, opts)
        return self.fn(sinst, opts)


def _is_engine(fn: SolveFn) -> bool:
    """True for allocator's own solve, whose stages the reuse path re-implements."""
    from allocator import api

    return fn is api.solve


_local = threading.local()  # one Solver per worker thread, sweep and base instance


def _worker_solver(task: ScenarioTask, inst: Instance) -> Solver:
    key = (task.key, id(inst))
    solver = getattr(_local, "solver", None)
    if solver is None or solver.key != key:
        solver = _local.solver = Solver(task, inst)  # keeps inst alive, so id() stays valid
        solver.key = key
    return solver


def _default_solve() -> SolveFn:
    # allocator.api.solve is what allocator.solve names; read from the package so a caller
    # (or a test) that replaces allocator.solve is honoured
    import allocator

    fn = getattr(allocator, "solve", None)
    if not callable(fn):
        from allocator.api import solve as fn
    return fn


# --------------------------------------------------------------------------- model reuse

# Instance fields whose change alters only the numbers of one constraint family and the
# families built after it (registry order: training, inference, capacity, power, network,
# budget, objective). Cost terms are built by the budget family when there is a budget,
# otherwise by the objective family: prices therefore rebuild from "budget" on.
REBUILD_FROM: dict[str, str] = {
    "power_cap_mw": "power",
    "bandwidth_gbps": "network",
    "budget_usd": "budget",
    "ondemand_price_usd_per_gpu_h": "budget",
    "reserved_price_usd_per_gpu_h": "budget",
    "energy_price_usd_per_mwh": "budget",
    "carbon_g_per_kwh": "budget",
    "carbon_price_usd_per_t": "budget",
    "unserved_usd_per_mtok": "budget",
}
_KEY_COLUMNS = ("j", "o", "s", "t", "v", "r", "g", "l")


class ReuseSession:
    """Solve a series of scenarios of one instance, re-using the built model between them.

    The first scenario (and any scenario whose change is not listed in REBUILD_FROM, or
    whose eligible tuples differ) is built in full. For the next one, the families that
    the changed numbers touch (and the families after them, which may refer to them) are
    deleted and added again from the new instance; the big families (training starts,
    inference flows, GPU capacity) are kept. The previous solution stays in the variables
    and is passed to HiGHS as a MIP start. Scenarios without a schedule, and options this
    path does not cover (duals, greedy heuristic), go through allocator.solve so their
    explanation and extras are exactly those of a plain solve.

    A cache of index and model inside the pipeline of allocator.api: a scenario whose
    strategy (after "auto") is not mip, or whose model is too large, goes the plain way;
    results come from pipeline.build_result like every other route's.
    """

    def __init__(self, options: SolveOptions):
        self.options = options
        self.model = None
        self.inst: Instance | None = None
        self.index = None
        self.structure: tuple | None = None
        self.created: dict[str, list[str]] = {}  # family -> component names it added
        self.model_key: SolveOptions | None = None  # _model_options of the options it was built with
        self.stats = {"built": 0, "reused": 0, "fallback": 0}

    def solve(self, inst: Instance, options: SolveOptions | None = None) -> Result:
        """One scenario through the pipeline of allocator.api: its strategy choice, size
        check and fallbacks; only the mip strategy re-uses the model, and its Result comes
        from the same builder (objective recomputed from the derived costs).

        ``options`` are the scenario's (a sweep may vary solve options; default: the
        session's). A model is re-used only for options that build the same model: they may
        differ in the solver's own settings (SOLVER_ONLY_OPTIONS), nothing else."""
        from allocator import api
        from allocator.indexing import build_index, estimate_size
        from allocator.leasing import is_sizing
        from allocator.network import Network
        from allocator.pipeline import build_result, mip_outcome

        opts = self.options if options is None else options
        if is_sizing(inst):  # leases or scenarios: the sizing route of api.solve builds its own models
            return self._fallback(inst, opts)
        if opts.duals or opts.heuristic is not None or opts.previous is not None:
            # duals, the greedy planner and re-plans (the previous plan is loaded, checked and
            # compared by api.solve, with the scenario's now and move budget) take the plain way
            return self._fallback(inst, opts)
        t0 = time.perf_counter()
        index = build_index(inst, Network(inst))
        if index.unplaceable_mandatory:
            return self._fallback(inst, opts)
        compact = estimate_size(index, compact=True) if opts.strategy in ("auto", "lns") else None
        if api._resolve_strategy(opts, compact).strategy != "mip":
            return self._fallback(inst, opts)
        structure = _index_structure(index)
        model_key = _model_options(opts)
        first = self._rebuild_from(inst, structure) if model_key == self.model_key else None
        if first is None:
            _validate(inst)  # as a plain solve does; numbers-only updates keep its verdict
            api._check_size(estimate_size(index), opts.with_(strategy="mip"), inst)
            self._build(inst, index, opts)
            reused = False
        else:
            self._update(first, inst, index, opts)
            reused = True
        self.inst, self.index, self.structure, self.model_key = inst, index, structure, model_key
        build_s = time.perf_counter() - t0

        outcome, _raw = mip_outcome(self.model, opts, index, start=reused)
        if not outcome.status.has_schedule:
            self.model = None  # its values are no start for anyone
            return self._fallback(inst, opts)
        outcome.build_s = build_s
        result = build_result(inst, index, opts.with_(strategy="mip"), outcome)
        self.stats["reused" if reused else "built"] += 1
        placed = set(result.frames["training"]["job"])
        return dataclasses.replace(result, summary={
            "instance": {"name": inst.name, "horizon": inst.horizon.model_dump(mode="json")},
            "dropped_jobs": [j.id for j in inst.jobs if not j.mandatory and j.id not in placed],
            "model_reused": reused,
        })

    def _fallback(self, inst: Instance, opts: SolveOptions | None = None) -> Result:
        self.stats["fallback"] += 1
        return _default_solve()(inst, self.options if opts is None else opts)

    def _rebuild_from(self, inst: Instance, structure: tuple) -> str | None:
        """The first family to rebuild, or None when the model must be built anew."""
        if self.model is None or self.inst is None or structure != self.structure:
            return None
        changed = _changed_fields(self.inst, inst)
        if not changed:
            return "objective"
        if any(f not in REBUILD_FROM for f in changed):
            return None
        from allocator.formulation import FAMILY_NAMES

        order = {name: i for i, name in enumerate(FAMILY_NAMES)}
        return min((REBUILD_FROM[f] for f in changed), key=lambda n: order.get(n, -1))

    def _build(self, inst: Instance, index, options: SolveOptions) -> None:
        from allocator.formulation import FAMILIES, FAMILY_NAMES, build_model

        late = [n for n in FAMILY_NAMES if n in set(REBUILD_FROM.values()) | {"objective"}]
        late = FAMILY_NAMES[min(FAMILY_NAMES.index(n) for n in late):]
        user_off = set(options.disabled_families)
        opts = options.with_(disabled_families=tuple(sorted(user_off | set(late))))
        self.model = build_model(inst, index, opts)
        self.created = {}
        for name, add in FAMILIES:
            if name in late and name not in user_off:
                self.created[name] = _add_family(self.model, add, inst, index, options)

    def _update(self, first: str, inst: Instance, index, options: SolveOptions) -> None:
        from allocator.formulation import FAMILIES

        names = [n for n, _ in FAMILIES]
        redo = [(n, add) for n, add in FAMILIES if names.index(n) >= names.index(first) and n in self.created]
        for name, _ in reversed(redo):
            for comp in reversed(self.created[name]):
                if self.model.find_component(comp) is not None:
                    self.model.del_component(comp)
        self.model._inst, self.model._index = inst, index  # what extraction defaults to
        for name, add in redo:
            self.created[name] = _add_family(self.model, add, inst, index, options)


#: Options that only tell HiGHS how to search (or how much to print): a model built under one
#: value serves another. Every other option may change what is built, so a change rebuilds.
SOLVER_ONLY_OPTIONS = ("time_limit_s", "mip_gap", "seed", "threads", "verbose")


def _model_options(opts: SolveOptions) -> SolveOptions:
    """``opts`` with the solver-only options reset: equal for options that build one model."""
    return dataclasses.replace(opts, time_limit_s=None, mip_gap=0.0, seed=0, threads=None,
                               verbose=False)


def _validate(inst: Instance) -> None:
    try:
        from allocator.validate import check
    except ImportError:
        return
    check(inst)


def _add_family(model, add, inst, index, options) -> list[str]:
    before = set(model.component_map().keys())
    add(model, inst, index, options)
    return [k for k in model.component_map().keys() if k not in before]


def _index_structure(index) -> tuple:
    """The eligible tuples of an index, hashed per frame, and which of its coefficients are
    zero: families may leave out a column or row whose coefficient is zero (an on-demand
    column at price 0), so a number that becomes or stops being zero forces a rebuild."""
    parts: list[Any] = [tuple(index.jobs), tuple(sorted(index.unplaced)), tuple(index.precedences),
                        tuple(getattr(index, "redundant_services", ()))]
    for name, value in vars(index).items():
        if isinstance(value, pd.DataFrame):
            keys = [c for c in _KEY_COLUMNS if c in value.columns]
            h = int(pd.util.hash_pandas_object(value[keys], index=False).sum()) if keys and len(value) else 0
            nums = [c for c in value.columns if c not in keys and pd.api.types.is_numeric_dtype(value[c])
                    and not pd.api.types.is_bool_dtype(value[c])]
            z = (int(pd.util.hash_pandas_object((value[nums].fillna(0) != 0), index=False).sum())
                 if nums and len(value) else 0)
            parts.append((name, len(value), tuple(keys), h, z))
    return tuple(parts)


def _changed_fields(a: Any, b: Any) -> set[str]:
    """Names of the fields that differ between two instances (walking nested entities)."""
    from pydantic import BaseModel

    out: set[str] = set()
    for name in type(a).model_fields:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, BaseModel) and isinstance(y, BaseModel):
            out |= _changed_fields(x, y)
        elif (isinstance(x, list) and isinstance(y, list) and len(x) == len(y)
              and all(isinstance(i, BaseModel) for i in x + y)):
            for i, j in zip(x, y, strict=True):
                out |= _changed_fields(i, j)
        elif x != y:
            out.add(name)
    return out


def dataclass_dict(obj: Any) -> dict:
    import dataclasses

    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(obj).items()}


def base_row(sc: Scenario, sites: list[str]) -> dict:
    row: dict[str, Any] = {"scenario": sc.id, **{f"param:{k}": v for k, v in sc.values.items()}}
    row.update({"status": None, "objective": None, "bound": None, "gap": None})
    row.update({f"{t}_usd": None for t in COST_TERMS})
    row.update({"total_cost_usd": None, "emissions_t": None, "unserved_mtok": None,
                "dropped_jobs": None})
    for s in sites:
        row[f"util_{s}"] = None
        row[f"power_mw_{s}"] = None
    row.update({"error": "", "seconds": None})
    return row


def result_row(result: Result, inst: Instance, sites: list[str]) -> dict:
    """The figures of one solve as a flat mapping (None where there is no schedule)."""
    row: dict[str, Any] = {
        "status": Status(result.status).value,
        "objective": _num(result.objective),
        "bound": _num(result.bound),
        "gap": _num(result.gap),
    }
    if result.status.has_schedule:
        for t in COST_TERMS:
            row[f"{t}_usd"] = _num(result.costs.get(t, 0.0))
        row["total_cost_usd"] = _num(result.total_cost)
        row["emissions_t"] = _num(result.emissions_t)
        row["unserved_mtok"] = _num(result.summary.get("unserved_mtok", _unserved_mtok(result, inst)))
        dropped = result.summary.get("dropped_jobs")
        row["dropped_jobs"] = len(dropped) if isinstance(dropped, (list, tuple)) else _num(dropped)
        row.update(_site_peaks(result, sites))
        row.update(_power_values(result, inst))
        leases = result.frames.get("leases")  # a sizing instance: what each scenario leases
        if leases is not None:
            for r in leases.itertuples(index=False):
                row[f"lease_{r.site}_{r.resource}"] = _num(r.size)
        changes = result.summary.get("changes")
        if isinstance(changes, dict):  # a re-plan: what changed against the previous plan
            row.update({k: _num(changes.get(k)) for k in REPLAN_COUNTS})
    else:
        text = "; ".join(result.explanation) or result.message or f"no schedule ({row['status']})"
        row["error"] = text
    return row


def _num(x: Any) -> float | None:
    if x is None:
        return None
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _unserved_mtok(result: Result, inst: Instance) -> float | None:
    df = result.frames.get("unserved")
    if df is None:
        return None
    if df.empty:
        return 0.0
    return float(df["unserved_tokens_per_s"].sum()) * 3600 * inst.horizon.period_hours / 1e6


def _site_peaks(result: Result, sites: list[str]) -> dict:
    """Peak GPU utilisation (GPUs in use / available, all types) and peak power per site."""
    out: dict[str, Any] = {}
    gpus = result.frames.get("site_gpus")
    if gpus is not None and not gpus.empty:
        per = gpus.groupby(["site", "period"])[["gpus_in_use", "gpus_available"]].sum()
        util = (per["gpus_in_use"] / per["gpus_available"].where(per["gpus_available"] > 0)).groupby(level=0).max()
        for s in sites:
            out[f"util_{s}"] = _num(util.get(s))
    power = result.frames.get("sites")
    if power is not None and not power.empty:
        peak = power.groupby("site")["power_mw"].max()
        for s in sites:
            out[f"power_mw_{s}"] = _num(peak.get(s))
    return out


def _power_values(result: Result, inst: Instance) -> dict:
    """With duals (``solve: {duals: true}``): per site, $ saved over the horizon by one more
    MW of ceiling in every period, at the fixed plan (see the solve docs on duals)."""
    duals = result.frames.get("duals")
    if duals is None or duals.empty:
        return {}
    power = duals[duals["kind"] == "power"]
    total = (power["marginal_usd_per_unit_h"].astype(float) * inst.horizon.period_hours).groupby(power["site"]).sum()
    return {f"power_value_usd_per_mw_{s.id}": _num(total.get(s.id, 0.0)) for s in inst.sites}


def _failed(row: dict) -> bool:
    return row.get("status") not in (Status.OPTIMAL.value, Status.FEASIBLE.value)


# --------------------------------------------------------------------------- files


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(data, indent=1, allow_nan=False, default=str))
    os.replace(tmp, path)


def export_schedule(result: Result, folder: Path) -> None:
    """The scenario's schedule in the folder (replacing a half-written one of a killed run)."""
    export = getattr(result, "export", None)
    if export is None:
        from allocator import results as results_mod

        export_fn = getattr(results_mod, "export_result", None)
        if export_fn is None:
            raise RuntimeError("this allocator has no schedule export (Result.export)")
        export_fn(result, folder, "csv", True)
    else:
        export(folder, "csv", True)


def _spec_identity(spec_json: dict) -> dict:
    """What makes two sweep.json files the same study: name, parameters and solve options
    (the values may grow or shrink: rows are shared by scenario id)."""
    return {"name": spec_json.get("name"), "parameters": spec_json.get("parameters"),
            "solve": json.dumps(spec_json.get("solve"), sort_keys=True, default=str)}


def _prepare_out(out: Path, inst: Instance, spec: SweepSpec, scenarios: list[Scenario],
                 force: bool = False) -> bool:
    """Check ``out`` and write its sweep.json. Returns whether rows already in ``out`` are
    this sweep's (its instance): False for a folder of foreign results taken with force."""
    fp = instance_fingerprint(inst)
    path = out / MANIFEST
    manifest = {
        "name": spec.name,
        "description": spec.description,
        "mode": spec.mode,
        "instance": {"name": inst.name, "fingerprint": fp},
        "parameters": [{"column": p.column, "path": p.path, "op": p.op} for p in spec.parameters],
        "solve": spec.solve,
        "scenarios": [sc.as_dict() for sc in scenarios],
    }
    manifest = json.loads(json.dumps(manifest, allow_nan=False, default=str))
    trusted = True
    foreign = None
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = None
        if not isinstance(old, dict) or not isinstance(old.get("instance"), dict) \
                or "scenarios" not in old or "parameters" not in old:
            foreign, trusted = f"a {MANIFEST} not written by allocator's sweep", False
        else:
            old_fp = old["instance"].get("fingerprint")
            if old_fp and old_fp != fp:
                raise SweepFolderError([Problem(
                    "sweep", str(out),
                    f"holds a sweep of another instance ({old['instance'].get('name')!r}, "
                    f"fingerprint {old_fp}, this one {fp}); its results would be mixed with this one's",
                    "choose a new --out folder, or delete the old one", rule="sweep-other-instance")],
                    source=str(out))
            if _spec_identity(old) != _spec_identity(manifest):
                foreign = f"the results of another sweep spec ({old.get('name')!r})"
    else:
        present = [n for n in ("results.csv", "results.parquet", "scenarios") if (out / n).exists()]
        if present:
            foreign, trusted = f"{', '.join(present)} but no {MANIFEST}: not a folder of allocator's sweep", False
    if foreign is not None and not force:
        raise SweepFolderError([Problem(
            "sweep", str(out), f"holds {foreign}; its results files would be replaced",
            "choose a new --out folder, or pass --force (force=True) to replace them",
            rule="sweep-foreign-results")], source=str(out))
    (out / "scenarios").mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, manifest)
    return trusted


class _FolderLock:
    """One sweep at a time in a folder: an exclusive lock on OUT/.sweep.lock, held while the
    sweep runs. The system releases it when its process ends, however it ends, so the lock
    of a killed sweep is simply taken by the next one."""

    def __init__(self, out: Path):
        self.out = out
        self.fh = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # no advisory locks on this system: run unlocked
            return self
        self.out.mkdir(parents=True, exist_ok=True)
        fh = open(self.out / LOCK_FILE, "a+", encoding="utf-8")  # held open: the lock lives with it
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise SweepFolderError([Problem(
                "sweep", str(self.out), f"another sweep ({holder}) is running in this folder",
                "wait for it to finish (re-run then to resume), or choose another --out folder",
                rule="sweep-busy")], source=str(self.out)) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"process {os.getpid()}\n")
        fh.flush()
        self.fh = fh
        return self

    def __exit__(self, *exc):
        if self.fh is not None:
            self.fh.close()  # closing releases the lock
            self.fh = None
        return False


def _finished_rows(out: Path, scenarios: list[Scenario]) -> dict[str, dict]:
    rows = {}
    for sc in scenarios:
        path = out / "scenarios" / sc.id / ROW_FILE
        if path.exists():
            try:
                rows[sc.id] = json.loads(path.read_text())
            except ValueError:  # unreadable: treat as not finished (it will be redone)
                continue
    return rows


#: a re-plan's change counts (summary.json "changes"), columns of its sweep's results
REPLAN_COUNTS = ("kept", "moved", "retimed", "added", "removed", "moved_gpus")  # dropped: dropped_jobs
NUMERIC = ("objective", "bound", "gap", "total_cost_usd", "emissions_t", "unserved_mtok",
           "dropped_jobs", "seconds", *(f"{t}_usd" for t in COST_TERMS), *REPLAN_COUNTS)


def results_frame(scenarios: list[Scenario], rows: dict[str, dict], spec: SweepSpec,
                  sites: list[str]) -> pd.DataFrame:
    """One row per scenario of the spec, in spec order; unfinished ones have no status."""
    records = []
    for sc in scenarios:
        row = dict(rows.get(sc.id) or base_row(sc, sites))
        rec: dict[str, Any] = {"scenario": sc.id}
        for p in spec.parameters:
            v = sc.values[p.column]
            rec[p.column] = json.dumps(v) if isinstance(v, list) else v
        rec.update({k: v for k, v in row.items()
                    if k not in ("scenario", "traceback") and not k.startswith("param:")})
        records.append(rec)
    df = pd.DataFrame.from_records(records)
    if df.empty:
        return df
    for col in df.columns:
        if col in NUMERIC or col.startswith(("util_", "power_mw_", "power_value_usd_per_mw_", "lease_")):
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
        elif col in ("scenario", "status", "error"):
            df[col] = df[col].astype("string")
    for p in spec.parameters:
        # numbers, or null for a solve option's "no cap" (an empty cell, NaN)
        if df[p.column].map(lambda v: v is None or isinstance(v, (int, float))).all():
            df[p.column] = pd.to_numeric(df[p.column], errors="coerce").astype("float64")
        else:
            df[p.column] = df[p.column].astype("string")
    df["error"] = df["error"].fillna("")
    return df


def write_results(out: Path, df: pd.DataFrame) -> None:
    """OUT/results.parquet and OUT/results.csv, each written to a temp file then renamed."""
    out.mkdir(parents=True, exist_ok=True)
    for name, writer in (("results.parquet", lambda p: df.to_parquet(p, index=False)),
                         ("results.csv", lambda p: df.to_csv(p, index=False))):
        tmp = out / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
        writer(tmp)
        os.replace(tmp, out / name)


# --------------------------------------------------------------------------- executors


def _run_inline(inst, todo, task, record) -> None:
    for sc in todo:
        record(task(inst, sc))


_WORKER: dict[str, Any] = {}


def _init_worker(inst: Instance, task: ScenarioTask, stop=None) -> None:
    """Ctrl-C reaches the whole process group; a worker ignores it and waits for the parent's
    ``stop`` event instead, which ends its search like a first Ctrl-C (the scenario is left
    unfinished) while a scenario already solved still writes its row."""
    interrupt.ignore_in_worker()
    _WORKER["inst"], _WORKER["task"], _WORKER["stop"] = inst, task, stop
    if stop is not None:
        def relay() -> None:
            stop.wait()
            interrupt.request_stop()

        threading.Thread(target=relay, daemon=True).start()


def _run_in_worker(sc: Scenario) -> dict:
    stop = _WORKER.get("stop")
    if stop is not None and stop.is_set():  # queued before the parent cancelled the rest
        raise KeyboardInterrupt
    return _WORKER["task"](_WORKER["inst"], sc)


def _run_processes(inst, todo, task, record, workers: int) -> None:
    """Local processes; the instance is sent once per process. A worker that dies (killed,
    out of memory) breaks the pool: it is restarted and unfinished scenarios resubmitted."""
    if workers > 1 and task.options.threads is None:
        task.options = task.options.with_(threads=1)  # the processes share the cores
    import multiprocessing

    context = multiprocessing.get_context()
    stop = context.Event()
    attempts: dict[str, int] = {}
    pending = list(todo)
    while pending:
        pool = ProcessPoolExecutor(max_workers=min(workers, len(pending)),
                                   mp_context=context, initializer=_init_worker,
                                   initargs=(inst, task, stop))
        futures = {pool.submit(_run_in_worker, sc): sc for sc in pending}
        broken = False
        try:
            for fut in as_completed(futures):
                try:
                    record(fut.result())
                except BrokenProcessPool:
                    broken = True
        except BaseException:
            # Ctrl-C (workers ignore it): cancel what has not started, stop the searches
            # running and wait for the workers, so no process outlives the sweep and writes
            # into its folder later; an interrupted scenario has no row.json and is solved
            # again on resume
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        if not broken:
            return
        pending = []
        for fut, sc in futures.items():
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                continue
            attempts[sc.id] = attempts.get(sc.id, 0) + 1
            if attempts[sc.id] >= MAX_POOL_RESTARTS:
                row = base_row(sc, task.sites)
                row.update(status=Status.ERROR.value,
                           error=f"the worker process died {attempts[sc.id]} times while it was pending")
                if task.out is not None:
                    write_json_atomic(Path(task.out) / "scenarios" / sc.id / ROW_FILE, row)
                record(row)
            else:
                pending.append(sc)


def _run_executor(executor: Executor, inst, todo, task, record) -> None:
    futures: list[Future] = [executor.submit(task, inst, sc) for sc in todo]
    try:
        for fut in as_completed(futures):
            record(fut.result())
    except BaseException:
        for f in futures:
            f.cancel()
        raise


def _dask_client(executor, scheduler: str | None, timeout: float = CONNECT_TIMEOUT_S):
    if scheduler is not None:
        from distributed import Client

        try:
            return Client(scheduler, timeout=timeout), True
        except (OSError, ValueError, TypeError) as exc:  # unreachable, refused, bad address
            raise SchedulerError([Problem(
                "option", "--scheduler", f"cannot connect to the Dask scheduler {scheduler!r} "
                f"within {timeout:g} s: {exc}",
                "check the address (e.g. tcp://host:8786) and that the scheduler runs, or "
                "raise --connect-timeout", rule="scheduler-unreachable")],
                source=scheduler) from None
    if executor is not None and type(executor).__module__.startswith("distributed"):
        return executor, False
    return None, False


def _run_dask(client, inst, todo, task, record) -> None:
    from distributed import as_completed as dask_completed

    inst_f = client.scatter(inst, broadcast=True, hash=False)
    futures = {client.submit(task, inst_f, sc, key=f"scenario-{sc.id}-{uuid.uuid4().hex[:6]}",
                             pure=False, retries=1): sc for sc in todo}
    try:
        for fut in dask_completed(list(futures)):
            sc = futures[fut]
            if fut.status == "error":  # the task itself never raises: its worker died
                row = base_row(sc, task.sites)
                row.update(status=Status.ERROR.value, error=f"worker lost: {fut.exception()}")
                record(row)
            else:
                record(fut.result())
    except BaseException:
        client.cancel(list(futures))
        raise


# --------------------------------------------------------------------------- progress


class _Progress:
    """A rich progress bar with done / failed / remaining; silent when not a terminal."""

    def __init__(self, total: int, *, already: int, failed: int, enabled: bool | None):
        from rich.console import Console

        self.console = Console(stderr=True)
        self.enabled = self.console.is_terminal if enabled is None else enabled
        self.total, self.done, self.failed = total, already, failed
        self._bar = None

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("sweep"), BarColumn(), TextColumn("{task.description}"),
                                 TimeElapsedColumn(), console=self.console, transient=False)
            self._bar.__enter__()
            self._task = self._bar.add_task(self._text(), total=self.total, completed=self.done)
        return self

    def _text(self) -> str:
        return (f"{self.done - self.failed} done, {self.failed} failed, "
                f"{self.total - self.done} remaining")

    def advance(self, failed: bool) -> None:
        self.done += 1
        self.failed += int(failed)
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, description=self._text())

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)
        return False


def summarize(df: pd.DataFrame) -> dict[str, int]:
    """Counts of statuses in a results frame (unfinished scenarios under 'pending')."""
    counts: dict[str, int] = {}
    for s in df["status"].fillna("pending"):
        counts[str(s)] = counts.get(str(s), 0) + 1
    return counts


def iter_parameters(out: str | Path) -> Iterable[dict]:
    return read_manifest(out).get("parameters", [])


# --------------------------------------------------------------------------- plots

PLOT_FIGURES = (
    ("objective", "objective"),
    ("total_cost_usd", "total cost ($)"),
    ("emissions_t", "emissions (tCO2)"),
    ("unserved_mtok", "unserved demand (M tokens)"),
    ("gap", "relative gap"),
)
MAX_LINES = 8  # other parameters' combinations drawn as separate lines, else as points


def plot_sweep(out: str | Path) -> list[Path]:
    """PNG figures of the key figures against each swept parameter, into OUT/plots/.

    One file per parameter (plots/<parameter>.png) with one panel per key figure. When other
    parameters vary too, each of their combinations is a line (up to 8), else a scatter.
    Scenarios without a schedule are left out. Returns the files written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    df = read_results(out)
    ops = {p["column"]: p.get("op") for p in read_manifest(out).get("parameters", [])}
    params = [p for p in ops if p in df.columns]
    ok = df[df["status"].isin([Status.OPTIMAL.value, Status.FEASIBLE.value])]
    figures = [(c, label) for c, label in PLOT_FIGURES if c in ok.columns]
    (out / "plots").mkdir(parents=True, exist_ok=True)
    from allocator.figures import unique_slugs

    stems = unique_slugs(params, _slug)  # "a b" and "a_b" must not share a file
    written = []
    for param in params:
        x = pd.to_numeric(ok[param], errors="coerce")
        others = [p for p in params if p != param and ok[p].nunique() > 1]
        groups = list(ok.groupby(others, dropna=False)) if others else [((), ok)]
        lines = len(groups) <= MAX_LINES
        fig, axes = plt.subplots(2, 3, figsize=(11, 6.2))
        flat = list(axes.flat)
        for ax, (col, label) in zip(flat, figures, strict=False):
            if lines:
                for key, sub in groups:
                    sub = sub.assign(_x=x.loc[sub.index]).sort_values("_x")
                    name = ", ".join(f"{_short_label(o, 28)} = {k:g}" if isinstance(k, float)
                                     else f"{_short_label(o, 28)} = {k}"
                                     for o, k in zip(others, _tuple(key), strict=True))
                    ax.plot(sub["_x"], sub[col], marker="o", ms=3, label=name or None)
            else:
                ax.scatter(x, ok[col], s=8, alpha=0.6)
            ax.set_xlabel(_short_label(param, 40) + (" (factor)" if ops[param] == "scale" else ""),
                          fontsize=8)
            ax.set_ylabel(label, fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        key_ax = flat[-1]
        key_ax.axis("off")
        if others and lines:
            handles, labels = flat[0].get_legend_handles_labels()
            key_ax.legend(handles, labels, loc="center", fontsize=7, frameon=False)
        elif others:
            key_ax.text(0.5, 0.5, f"{len(groups)} combinations of\n" + "\n".join(
                _short_label(o, 40) for o in others), ha="center", va="center", fontsize=8)
        failed = int(len(df) - len(ok))
        fig.suptitle(f"{_short_label(param, 60)}: {len(ok)} scenarios"
                     + (f" ({failed} without a schedule left out)" if failed else ""), fontsize=10)
        fig.subplots_adjust(left=0.08, right=0.98, bottom=0.09, top=0.92, wspace=0.35, hspace=0.32)
        path = out / "plots" / f"{stems[param]}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def _tuple(key) -> tuple:
    return key if isinstance(key, tuple) else (key,)


def _short_label(param: str, width: int = 48) -> str:
    return param if len(param) <= width else "..." + param[-(width - 3):]


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "parameter"
