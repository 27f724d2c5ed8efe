"""The large-instance strategy: fix-and-optimise neighbourhood search on the compiled model.

``solve_lns(inst, index, options)`` builds the formulation (allocator.formulation) in its
neighbourhood-search form (GPU usage as running totals, ``usage="running"``, and a penalised
``training_unplaced`` column for every mandatory job, ``unplaced_penalty``), compiles it once
(allocator.compiled.CompiledModel) and works only on those arrays: the greedy plan as the
first incumbent, sub-MIPs over neighbourhoods of it (the compiled arrays with every other
column fixed) until the time limit, and on the second core the LP relaxation of the same
arrays (its duals give the bound; its rounding may give a better start), then, on small
models, HiGHS on the whole MIP, on large ones a second search thread. ``relaxed_bound``
gives a bound without any LP. Neighbourhoods address columns through the compiled model's
maps (the start columns of job j, the use columns of a pool-period), never by position.

It returns an allocator.outcome.Outcome (decisions, bound, status, message, stages); the
pipeline derives the tables and costs from the decisions.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from allocator.compiled import CompiledModel, compile_model
from allocator.indexing import Index
from allocator.schema import Instance

INF = math.inf


def _codes(values, uniques) -> np.ndarray:
    pos = {u: i for i, u in enumerate(uniques)}
    return np.fromiter((pos[x] for x in values), dtype=np.int64, count=len(values))


def _running(t0: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row position, period) for every period each start runs in."""
    rows = np.repeat(np.arange(len(t0)), d)
    off = np.arange(int(d.sum())) - np.repeat(np.cumsum(d) - d, d)
    return rows, t0[rows] + off


@dataclass
class Arrays:
    """One objective of a CompiledModel: minimise c x + offset, row_lower <= A x <= row_upper,
    col_lower <= x <= col_upper, integrality."""

    A: object
    c: np.ndarray
    offset: float
    col_lower: np.ndarray
    col_upper: np.ndarray
    row_lower: np.ndarray
    row_upper: np.ndarray
    integrality: np.ndarray

    @classmethod
    def of(cls, cm: CompiledModel, k: int = 0) -> Arrays:
        return cls(cm.A, cm.c[k], float(cm.offset[k]) if cm.offset.size else 0.0, cm.col_lower,
                   cm.col_upper, cm.row_lower, cm.row_upper, cm.integrality)

    def highs(self, *, integer: bool = True, zero: np.ndarray | None = None, **kw):
        """A HiGHS object holding these arrays (allocator.solve.highs_from_arrays); the
        columns ``zero`` fixed at 0."""
        from allocator.solve import highs_from_arrays

        integ = self.integrality if integer else np.zeros(len(self.c), dtype=np.int32)
        lower, upper = self.col_lower, self.col_upper
        if zero is not None and len(zero):
            lower, upper = lower.copy(), upper.copy()
            lower[zero] = upper[zero] = 0.0
        return highs_from_arrays(self.A, self.c, self.offset, lower, upper,
                                 self.row_lower, self.row_upper, integ, **kw)


def build_compiled(inst: Instance, index: Index, options=None, *,
                   deadline: float | None = None) -> CompiledModel:
    """The formulation in the neighbourhood search's form, compiled with the cost objective
    (formulation.BuildTimeUp once ``deadline`` has passed between families)."""
    from allocator.formulation import build_model
    from allocator.options import SolveOptions

    options = options or SolveOptions()
    model = build_model(inst, index, options, usage="running", unplaced_penalty=UNPLACED_PENALTY,
                        deadline=deadline)
    return compile_model(model, [model.obj_cost])


@dataclass
class LnsLog:
    """What each stage of ``solve_lns`` found (kept in the result's summary as ``stages``)."""

    build_s: float = 0.0
    lp_s: float | None = None
    lp_status: str = ""
    lp_bound: float | None = None
    rounding_cost: float | None = None
    greedy_cost: float | None = None
    start: str = ""
    start_cost: float | None = None
    lns_s: float = 0.0
    iterations: int = 0
    improvements: int = 0
    kinds: dict[str, list[int]] = field(default_factory=dict)  # kind -> [tries, improvements]
    final_free_jobs: int = 0
    mip_bound: float | None = None
    mip_objective: float | None = None
    relaxed_bound: float | None = None
    second_search_from: float | None = None  # seconds: when the second search thread began
    history: list[tuple[float, float]] = field(default_factory=list)  # (seconds, incumbent)
    size: dict[str, int] = field(default_factory=dict)


# above this many nonzeros the LP relaxation is not started: generated L (0.88M) takes about 60 s
# by interior point on one core of the 2-core machine class, and XL (14.8M) would not finish
# within its 10-minute budget while holding several GB; relaxed_bound stands in
LP_MAX_NONZEROS = 5_000_000
# up to this many nonzeros the search waits (at most 15% of the limit) for the LP and its
# rounding before it starts: generated M (about 120k) solves its LP in a few seconds
LP_WAIT_NONZEROS = 250_000

# most jobs a neighbourhood frees
MAX_FREE_JOBS = 200

# penalty per mandatory job left unplaced in the neighbourhood search's incumbent: far above
# any job's cost, so a sub-MIP places such a job whenever it can
UNPLACED_PENALTY = 1e8

# seconds per estimated nonzero to build and compile the search's model through Pyomo: a
# 100,000-period instance (12.9M estimated nonzeros) took 58 s on the 2-core machine class.
# When the estimate says the build cannot finish in the time left, the greedy plan is
# returned (no bound) instead of building a model that the limit would cut
BUILD_S_PER_NONZERO = 4.5e-6


class _Lns:
    """The compiled model (with its penalised "unplaced" column per mandatory job), an
    incumbent as a full column vector, and sub-MIPs over neighbourhoods of it."""

    def __init__(self, inst: Instance, index: Index, cm: CompiledModel, seed: int):
        self.cm, self.index = cm, index
        self.rng = np.random.default_rng(seed)
        ar = Arrays.of(cm)
        self.ar = ar
        p = cm.model._placements
        self.sc = cm.cols("start")  # the column of each placement (row of p)
        if (self.sc < 0).any():
            raise ValueError("every start variable must be a column of the compiled model")
        self.P = len(self.sc)
        job_ids = list(index.jobs)
        self.job_ids = job_ids
        self.pj = _codes(p["j"].tolist(), job_ids) if self.P else np.zeros(0, np.int64)
        self.pt = p["t"].to_numpy(dtype=np.int64)
        self.pd = p["d"].to_numpy(dtype=np.int64)
        sites = [s.id for s in inst.sites]
        self.sites = sites
        self.psite = _codes(p["s"].tolist(), sites) if self.P else np.zeros(0, np.int64)
        J = len(job_ids)
        order = np.argsort(self.pj, kind="stable")
        cuts = np.searchsorted(self.pj[order], np.arange(J + 1))
        self.job_cols = [order[cuts[j]:cuts[j + 1]] for j in range(J)]  # placements of job j
        self.mandatory = np.array([bool(index.mandatory[j]) for j in job_ids])
        # the penalised "unplaced" column of each mandatory job (formulation option)
        self.slack_cols = cm.cols("training_unplaced")
        self.slack_job = _codes([str(j) for j in cm.keys("training_unplaced")], job_ids)
        self.A, self.c, self.offset = ar.A, ar.c, ar.offset
        self.lo, self.hi, self.integ = ar.col_lower, ar.col_upper, ar.integrality
        self.rlo, self.rhi = ar.row_lower, ar.row_upper
        self.n = cm.n
        self.gi_cols = cm.cols("gpus_inf")
        self.sv_cols = cm.cols("serve")
        self.un_cols = cm.cols("unserved")
        # always free: the continuous columns other than serve/unserved (running totals,
        # on-demand, the unplaced slack); inference columns are free only inside a
        # neighbourhood's sites and window
        self.base_free = (self.integ == 0) & ~cm.col_mask("serve", "unserved")
        # use[s,g,t] and ondemand[s,g,t] can change only where a freed start or inference
        # column is active: elsewhere they stay at the incumbent (exact, not a restriction),
        # which keeps each sub-MIP small (free_mask)
        pools = index.pools
        pool_of = {k: i for i, k in enumerate(zip(pools["s"], pools["g"], strict=True))}
        self.K = len(pools)
        self.start_pool = np.array([pool_of[k] for k in zip(p["s"], p["g"], strict=True)],
                                   dtype=np.int64) if self.P else np.zeros(0, np.int64)
        spr = index.service_periods
        self.inf_pool = np.array([pool_of[k] for k in zip(spr["s"], spr["g"], strict=True)],
                                 dtype=np.int64) if len(spr) else np.zeros(0, np.int64)

        def pool_keys(name: str) -> tuple[np.ndarray, np.ndarray]:
            cols = cm.cols(name)
            keys = cm.keys(name)
            kk = np.array([[pool_of[(s, g)], t] for s, g, t in keys], dtype=np.int64).reshape(-1, 2)
            ok = cols >= 0
            return cols[ok], kk[ok]

        self.use_cols, self.use_keys = pool_keys("use")
        self.od_cols, self.od_keys = pool_keys("ondemand")
        self.local = len(self.use_cols) > 0
        if self.local:
            self.base_free[self.use_cols] = False
            self.base_free[self.od_cols] = False
        serve, dem = index.serve, index.demands
        self.inf_site = _codes(spr["s"].tolist(), sites) if len(spr) else np.zeros(0, np.int64)
        self.inf_t = spr["t"].to_numpy(dtype=np.int64) if len(spr) else np.zeros(0, np.int64)
        self.srv_site = _codes(serve["s"].tolist(), sites) if len(serve) else np.zeros(0, np.int64)
        self.srv_t = serve["t"].to_numpy(dtype=np.int64) if len(serve) else np.zeros(0, np.int64)
        self.uns_t = dem["t"].to_numpy(dtype=np.int64) if len(dem) else np.zeros(0, np.int64)
        self.T = index.periods
        self.win_lo = np.array([self.pt[c].min() if len(c) else 0 for c in self.job_cols])
        self.win_hi = np.array([(self.pt[c] + self.pd[c]).max() if len(c) else 0 for c in self.job_cols])
        self.start_cost = self.c[self.sc]
        self.cheapest = np.array([self.start_cost[c].min() if len(c) else 0.0 for c in self.job_cols])
        pool_site = _codes(pools["s"].tolist(), sites)
        # where on-demand GPUs are bought: the ondemand columns, and the training usage of the
        # pools without a reserved block, which have none (all their GPUs are on demand:
        # formulation.capacity.direct_ondemand_pools)
        direct = getattr(cm.model, "_direct_od", frozenset())
        pool_direct = np.array([k in direct for k in zip(pools["s"], pools["g"], strict=True)], dtype=bool)
        on_direct = pool_direct[self.use_keys[:, 0]] if len(self.use_keys) else np.zeros(0, dtype=bool)
        self.buy_cols = np.concatenate([self.od_cols, self.use_cols[on_direct]])
        buy_keys = np.concatenate([self.od_keys, self.use_keys[on_direct]])
        self.buy_t = buy_keys[:, 1] if len(buy_keys) else np.zeros(0, np.int64)
        self.buy_site = pool_site[buy_keys[:, 0]] if len(buy_keys) else np.zeros(0, np.int64)
        self.x: np.ndarray | None = None
        self.obj = math.inf
        self.size = min(50, J)
        self.tabu = np.zeros(J, dtype=np.int64)  # unplaced seed tried: not again before then
        self.clock = 0
        self.last_seed = -1
        self.truncated = False  # the last neighbourhood was cut down to ``size`` jobs

    def unplaced_jobs(self, x: np.ndarray) -> list[str]:
        """Mandatory jobs held by their penalised "unplaced" column in ``x``."""
        on = x[self.slack_cols] > 0.5 if len(self.slack_cols) else np.zeros(0, dtype=bool)
        return [self.job_ids[j] for j in self.slack_job[on]]

    # ---------------------------------------------------------------- sub-models

    def solve_sub(self, free: np.ndarray, time_limit: float, seed: int, mip_gap: float,
                  integer: bool = True, start: bool = True, x: np.ndarray | None = None):
        """Solve the model with every column outside ``free`` fixed at ``x`` (default: the
        incumbent). Returns (model status name, objective or None, column values of ``free``
        or None, seconds)."""
        from allocator.solve import _hs, highs_from_arrays

        hs = _hs()
        t0 = time.perf_counter()
        cols = np.flatnonzero(free)
        x = self.x if x is None else x
        fixed_x = np.where(free, 0.0, x)
        shift = self.A @ fixed_x
        As = self.A[:, cols]
        used = np.bincount(As.indices, minlength=As.shape[0]) > 0
        keep = np.flatnonzero(used)
        As = As.tocsr()[keep].tocsc()
        As.sort_indices()
        rlo = self.rlo[keep] - shift[keep]
        rhi = self.rhi[keep] - shift[keep]
        offset = self.offset + float(self.c @ fixed_x)
        integ = self.integ[cols] if integer else np.zeros(len(cols), dtype=np.int32)
        h = highs_from_arrays(As, self.c[cols], offset, self.lo[cols], self.hi[cols], rlo, rhi,
                              integ, time_limit=max(time_limit, 0.05), seed=seed, mip_gap=mip_gap)
        if start and integer and integ.any():
            h.setSolution(len(cols), np.arange(len(cols), dtype=np.int32), x[cols])
        h.run()
        status = h.getModelStatus()
        info = h.getInfo()
        vals, obj = None, None
        if (integer and int(info.primal_solution_status) == 2) or (
                not integer and status == hs.HighsModelStatus.kOptimal):
            vals = np.asarray(h.getSolution().col_value, dtype=float)
            obj = float(info.objective_function_value)
        return h.modelStatusToString(status), obj, vals, time.perf_counter() - t0

    def adopt_from(self, base: np.ndarray, cols_mask: np.ndarray, vals: np.ndarray, obj: float) -> bool:
        """Take a sub-MIP's answer computed from the incumbent ``base`` if it improves the
        current incumbent. When another search thread replaced the incumbent meanwhile, the
        answer is laid over the new one and kept only if every row and bound still holds and
        the cost is lower (the incumbent is only ever replaced, never changed in place)."""
        if base is self.x:
            if obj < self.obj - max(1e-6 * abs(self.obj), 1e-3):
                self.adopt(cols_mask, vals)
                return True
            return False
        x = self.x.copy()
        x[cols_mask] = vals
        ints = self.integ > 0
        x[ints] = np.rint(x[ints])
        act = self.A @ x
        tol = 1e-6
        ok = (np.all(act >= self.rlo - tol * (1 + np.abs(self.rlo)))
              and np.all(act <= self.rhi + tol * (1 + np.abs(self.rhi)))
              and np.all(x >= self.lo - tol) and np.all(x <= self.hi + tol))
        cost = float(self.c @ x) + self.offset
        if ok and cost < self.obj - max(1e-6 * abs(self.obj), 1e-3):
            self.x, self.obj = x, cost
            return True
        return False

    def adopt(self, cols_mask: np.ndarray, vals: np.ndarray) -> float:
        x = self.x.copy()
        x[cols_mask] = vals
        ints = self.integ > 0
        x[ints] = np.rint(x[ints])
        self.x = x
        self.obj = float(self.c @ x) + self.offset
        return self.obj

    def complete(self, int_cols: np.ndarray, int_vals: np.ndarray):
        """Full column vector and objective of a plan given by its integer columns: the
        continuous columns by the LP with the integers fixed (None if that LP is infeasible)."""
        x = np.zeros(self.n)
        x[int_cols] = int_vals
        saved, self.x = self.x, x
        free = self.integ == 0
        try:
            status, obj, vals, _ = self.solve_sub(free, 60.0, 0, 1e-9, integer=False)
        finally:
            self.x = saved
        if vals is None:
            return None
        x[free] = vals
        return x, float(self.c @ x) + self.offset

    # ---------------------------------------------------------------- neighbourhoods

    def placed(self) -> np.ndarray:
        """Start column of each job in the incumbent (-1: not placed)."""
        out = np.full(len(self.job_ids), -1, dtype=np.int64)
        on = np.flatnonzero(self.x[self.sc] > 0.5)
        out[self.pj[on]] = on
        return out

    def neighbourhood(self, kind: str, rng=None) -> tuple[np.ndarray, np.ndarray, int, int] | None:
        """(jobs freed, sites, first period, end period) of a neighbourhood of ``kind``; also
        sets ``last_seed`` and ``truncated`` (use ``pick`` from several threads)."""
        rng = self.rng if rng is None else rng
        placed = self.placed()
        run_lo = np.where(placed >= 0, self.pt[np.maximum(placed, 0)], -1)
        run_hi = np.where(placed >= 0, run_lo + self.pd[np.maximum(placed, 0)], -1)
        site = np.where(placed >= 0, self.psite[np.maximum(placed, 0)], -1)
        has_cols = np.array([len(c) > 0 for c in self.job_cols])
        seed = None
        if kind == "unplaced":
            miss = np.flatnonzero((placed < 0) & has_cols & self.mandatory)
            if not len(miss):
                # optional jobs left out: those not tried lately (one not worth its cost
                # stays out, and freeing it again would waste a sub-MIP)
                miss = np.flatnonzero((placed < 0) & has_cols & (self.tabu <= self.clock))
            if not len(miss):
                return None
            seed = int(rng.choice(miss))
        elif kind == "costly":
            cur = np.where(placed >= 0, self.start_cost[np.maximum(placed, 0)], self.cheapest) - self.cheapest
            cand = np.flatnonzero(cur > 1e-6)
            if not len(cand):
                return None
            top = cand[np.argsort(-cur[cand])][:max(10, len(cand) // 5)]
            seed = int(rng.choice(top))
        if seed is not None:
            sites = np.unique(self.psite[self.job_cols[seed]])
            ta, tb = int(self.win_lo[seed]), int(self.win_hi[seed])
        elif kind == "ondemand":
            od = self.x[self.buy_cols]
            busy = np.flatnonzero(od > 0.5)
            if not len(busy):
                return None
            i = int(rng.choice(busy, p=od[busy] / od[busy].sum()))
            t = int(self.buy_t[i])
            sites = np.array([self.buy_site[i]])
            half = int(rng.integers(6, 19))
            ta, tb = max(0, t - half), min(self.T, t + half)
        else:  # block: 2-4 sites over a 12-36 period window
            ns = min(len(self.sites), int(rng.integers(2, 5)))
            sites = np.sort(rng.choice(len(self.sites), size=ns, replace=False))
            w = min(self.T, int(rng.integers(12, 37)))
            ta = int(rng.integers(0, self.T - w + 1))
            tb = ta + w
        overlap = (run_lo < tb) & (run_hi > ta) & np.isin(site, sites)
        eligible_unplaced = (placed < 0) & has_cols & (self.win_lo < tb) & (self.win_hi > ta)
        pool = np.flatnonzero(overlap | eligible_unplaced)
        pool = pool[pool != seed] if seed is not None else pool
        k = self.size - (1 if seed is not None else 0)
        self.truncated = len(pool) > k
        if len(pool) > k:
            # unplaced mandatory jobs always, the rest at random
            must = pool[(placed[pool] < 0) & self.mandatory[pool]][:k]
            rest = np.setdiff1d(pool, must)
            pool = np.concatenate([must, rng.choice(rest, size=k - len(must), replace=False)])
        self.last_seed = -1 if seed is None else seed
        jobs = np.concatenate([[seed], pool]).astype(np.int64) if seed is not None else pool
        if not len(jobs):
            return None
        return jobs, sites, ta, tb

    def free_mask(self, jobs: np.ndarray, sites: np.ndarray, ta: int, tb: int,
                  x: np.ndarray | None = None) -> np.ndarray:
        """Columns free in the sub-MIP: each freed job's starts at the neighbourhood's sites
        (and its current start), the inference columns of those sites in the window, and the
        running totals and on-demand columns of the pool-periods these can change."""
        free = self.base_free.copy()
        freed = np.zeros(self.P, dtype=bool)  # placements whose start column is free
        if len(jobs):
            pl = np.concatenate([self.job_cols[j] for j in jobs])
            cur = (self.x if x is None else x)[self.sc[pl]] > 0.5
            pl = pl[np.isin(self.psite[pl], sites) | cur]
            freed[pl] = True
            free[self.sc[pl]] = True
        # inference inside the sites and at most 48 periods of the window
        if tb - ta > 48:
            mid = (ta + tb) // 2
            ta, tb = max(0, mid - 24), mid + 24
        inf_free = (self.inf_t >= ta) & (self.inf_t < tb) & np.isin(self.inf_site, sites)
        free[self.gi_cols[inf_free & (self.gi_cols >= 0)]] = True
        inwin = (self.srv_t >= ta) & (self.srv_t < tb) & np.isin(self.srv_site, sites)
        free[self.sv_cols[inwin & (self.sv_cols >= 0)]] = True
        inwin = (self.uns_t >= ta) & (self.uns_t < tb)
        free[self.un_cols[inwin & (self.un_cols >= 0)]] = True
        if self.local:
            touched = np.zeros((self.K, self.T + 1), dtype=bool)
            sc = np.flatnonzero(freed)
            if len(sc):
                ri, rt = _running(self.pt[sc], self.pd[sc])
                touched[self.start_pool[sc[ri]], rt] = True
            ic = np.flatnonzero(inf_free)
            if len(ic):
                touched[self.inf_pool[ic], self.inf_t[ic]] = True
            uk = self.use_keys
            free[self.use_cols[touched[uk[:, 0], uk[:, 1]]]] = True
            if len(self.od_keys):
                free[self.od_cols[touched[self.od_keys[:, 0], self.od_keys[:, 1]]]] = True
        return free


class _BoundWorker(threading.Thread):
    """The second core: the LP relaxation (its dual values give a bound that is valid even
    when the LP stops early), then HiGHS's own MIP for the time left."""

    def __init__(self, cm: CompiledModel, deadline: float, options, mip_after: bool):
        super().__init__(daemon=True)
        self.cm, self.deadline, self.options, self.mip_after = cm, deadline, options, mip_after
        self.ar = Arrays.of(cm)
        self.lp_bound: float | None = None
        self.lp_status = ""
        self.lp_s: float | None = None
        self.prefer = None
        self.lp_done = threading.Event()
        self.mip_bound: float | None = None
        self.mip_x: np.ndarray | None = None
        self.mip_obj: float | None = None
        self._h = None
        self._halt = False

    def run(self) -> None:
        try:
            t0 = time.perf_counter()
            h = self.ar.highs(integer=False, time_limit=max(1.0, self.deadline - t0 - 1.0),
                              seed=self.options.seed)
            h.setOptionValue("solver", "ipm")
            h.setOptionValue("run_crossover", "off")
            self._h = h
            h.run()
            self.lp_s = time.perf_counter() - t0
            self.lp_status = h.modelStatusToString(h.getModelStatus())
            sol = h.getSolution()
            if sol.dual_valid:
                y = np.asarray(sol.row_dual, dtype=float)
                lb = safe_bound(self.ar, y)
                self.lp_bound = lb if math.isfinite(lb) else None
            if sol.value_valid and sol.dual_valid:
                sc = self.cm.cols("start")
                x = np.asarray(sol.col_value)[sc]
                rc = np.asarray(sol.col_dual)[sc]
                self.prefer = (x, rc)
        except Exception:  # noqa: BLE001 - the bound is optional; the plan does not need it
            pass
        finally:
            self._h = None
            self.lp_done.set()
        if not self.mip_after or self._halt:
            return
        remaining = self.deadline - time.perf_counter() - 1.0
        if remaining < 5.0 or self._halt:
            return
        try:
            # no MIP start: handed a heuristic plan, HiGHS was measured to stop improving on
            # it (docs/performance.md); its own search is the better complement here
            # the formulation as the mip route solves it: every mandatory job placed. The
            # penalised columns that let the search hold a job out are for the search; left
            # open, HiGHS's incumbents kept mandatory jobs out at $1e8 each (generated M:
            # 3.3M and 302M against the mip route's 1.9M in the same 120 s)
            h = self.ar.highs(integer=True, zero=self.cm.cols("training_unplaced"), time_limit=remaining,
                              seed=self.options.seed, mip_gap=self.options.mip_gap)
            self._h = h
            h.run()
            info = h.getInfo()
            b = float(info.mip_dual_bound)
            self.mip_bound = b if math.isfinite(b) else None
            if int(info.primal_solution_status) == 2:
                self.mip_obj = float(info.objective_function_value)
                self.mip_x = np.asarray(h.getSolution().col_value, dtype=float)
        except Exception:  # noqa: BLE001
            pass
        finally:
            self._h = None

    def stop(self) -> None:
        self._halt = True
        h = self._h
        if h is not None:
            try:
                h.cancelSolve()
            except Exception:  # noqa: BLE001
                pass


def safe_bound(am: Arrays, y: np.ndarray) -> float:
    """A lower bound on the model's optimum from any row multipliers ``y`` (HiGHS's sign
    convention: reduced cost = c - A^T y): the Lagrangian value with each multiplier on the
    side of its row's finite bound and each column at the bound its reduced cost prefers.
    Valid whatever the quality of ``y`` (an unfinished or imprecise LP)."""
    y = np.where((y > 0) & ~np.isfinite(am.row_lower), 0.0, y)
    y = np.where((y < 0) & ~np.isfinite(am.row_upper), 0.0, y)
    rc = am.c - am.A.T @ y
    rows = np.where(y > 0, y * np.where(np.isfinite(am.row_lower), am.row_lower, 0.0),
                    y * np.where(np.isfinite(am.row_upper), am.row_upper, 0.0))
    lo, hi = am.col_lower, am.col_upper
    with np.errstate(invalid="ignore"):
        cols = np.where(rc >= 0, rc * lo, rc * hi)
    cols = np.where(rc == 0, 0.0, cols)
    if not np.all(np.isfinite(cols)):
        return -math.inf
    return float(am.offset + rows.sum() + cols.sum())


def relaxed_bound(cm: CompiledModel) -> float:
    """A lower bound that needs no LP: every job at its cheapest start and every token of
    demand at its cheapest way (served at the energy cost of the GPUs it needs plus egress, or
    unserved), with no capacity, power or bandwidth limits. It is ``safe_bound`` at multipliers
    written down directly: the job's cheapest start cost on its assignment row, minus the
    energy per unit of service on each inference capacity row, the cheapest way per unit on
    each demand row, zero elsewhere. The fallback when the LP relaxation cannot finish in time."""
    ar = Arrays.of(cm)
    A = ar.A.tocsr()
    y = np.zeros(cm.m)
    ra = cm.rows("training_assign")
    ra = ra[ra >= 0]
    sc = cm.cols("start")
    if len(ra) and len(sc):
        st = A[ra][:, sc].tocoo()
        cheapest = np.full(len(ra), np.inf)
        np.minimum.at(cheapest, st.row, ar.c[sc][st.col])
        got = np.isfinite(cheapest)
        # mandatory rows (lower bound 1) take the cheapest cost; an optional job's row has
        # only an upper bound, so its multiplier may only be <= 0
        mand = np.isfinite(ar.row_lower[ra])
        y[ra[got]] = np.where(mand[got], cheapest[got], np.minimum(cheapest[got], 0.0))
    rc, gi = cm.rows("inference_capacity"), cm.cols("gpus_inf")
    if len(rc) and (rc >= 0).all() and (gi >= 0).all():
        # capacity row i holds gpus_inf column i with coefficient -tokens/s per GPU
        coef = np.asarray(A[rc][:, gi].diagonal()).ravel()
        y[rc] = np.where(coef < 0, ar.c[gi] / np.where(coef < 0, coef, -1.0), 0.0)
    rd, sv, un = cm.rows("inference_demand"), cm.cols("serve"), cm.cols("unserved")
    if len(rd) and (rd >= 0).all() and (un >= 0).all() and (sv >= 0).all():
        eff = ar.c[sv].copy()
        if len(rc):
            eff -= A[rc][:, sv].T @ y[rc]
        way = ar.c[un].copy()  # unserved column i sits on demand row i (coefficient 1)
        dm = A[rd][:, sv].tocoo()  # serve columns on the demand rows (coefficient 1)
        np.minimum.at(way, dm.row, eff[dm.col])
        y[rd] = way
    return safe_bound(ar, y)


KINDS = ("unplaced", "costly", "ondemand", "block")


def solve_lns(inst: Instance, index: Index, options, *, net=None):
    """The large-instance strategy: fix-and-optimise on the compact model.

    1. Build the compact arrays; on a second thread, the LP relaxation (interior point, no
       crossover; not started above LP_MAX_NONZEROS): its row duals give a valid bound even
       if it stops early. relaxed_bound, which needs no LP, is always computed.
    2. The greedy plan is the first incumbent (a mandatory job it could not place is held by
       a penalised "unplaced" column); once the LP is in, the LP-guided rounding replaces it
       if cheaper.
    3. Until the time limit: choose a neighbourhood (an unplaced job, a job far above its
       cheapest start, a pool-period on on-demand GPUs, or 2-4 sites over a 12-36 period
       window) of about 50 jobs plus the inference columns of its sites and window, fix every
       other integer column at the incumbent, solve that sub-MIP warm-started from the
       incumbent with a few seconds' limit, keep it if cheaper. The size adapts: larger after
       quick proofs of neighbourhoods the size cut, smaller after timeouts.
    4. When the LP ends early enough, the second thread runs HiGHS on the whole MIP (no
       start) for its dual bound and its plan if cheaper, on models up to LP_WAIT_NONZEROS;
       on larger ones it runs a second neighbourhood search on the shared incumbent.

    Returns an allocator.outcome.Outcome: the decisions of the best plan (the incumbent, or
    HiGHS's own if cheaper), its objective in the compiled model, the best valid bound, the
    status (OPTIMAL within mip_gap of the bound) and the stages' log. Cost objective only."""
    from allocator import interrupt, progress
    from allocator.formulation import BuildTimeUp
    from allocator.heuristics import GreedyTimeUp, greedy_schedule
    from allocator.network import Network
    from allocator.outcome import Outcome
    from allocator.results import Status

    t0 = time.perf_counter()
    limit = options.time_limit_s if options.time_limit_s is not None else 600.0
    deadline = t0 + limit
    net = net or Network(inst)
    report = progress.current()  # taken here: the search threads do not inherit it
    log = LnsLog()
    from allocator.indexing import estimate_size

    nnz_est = estimate_size(index, compact=True)["nonzeros"]
    if nnz_est * BUILD_S_PER_NONZERO > max(0.0, deadline - time.perf_counter()):
        return _greedy_instead(inst, index, options, net, deadline, nnz_est)
    try:
        cm = build_compiled(inst, index, options, deadline=deadline)
    except BuildTimeUp:
        return Outcome(status=Status.NO_SOLUTION, solver=_solver(), build_s=time.perf_counter() - t0,
                       solve_s=time.perf_counter() - t0,
                       message=f"the time limit ({limit:g} s) ran out during the model build")
    log.build_s, log.size = time.perf_counter() - t0, cm.shape
    nnz = int(cm.A.nnz)
    lns = _Lns(inst, index, cm, options.seed)
    log.relaxed_bound = relaxed_bound(cm)
    # HiGHS's whole MIP after the LP only where it can get somewhere; on large models the
    # second core runs a second neighbourhood search instead
    worker = _BoundWorker(cm, deadline, options, mip_after=nnz <= LP_WAIT_NONZEROS)
    if nnz <= LP_MAX_NONZEROS:
        worker.start()
    else:
        # far beyond what the LP finishes on this machine class: the relaxed bound stands
        log.lp_status = f"not run: {nnz:,} nonzeros > {LP_MAX_NONZEROS:,}"
        worker.lp_done.set()

    def elapsed() -> float:
        return time.perf_counter() - t0

    def greedy(prefer=None):
        """The greedy plan (LP rounding with ``prefer``), or None once the deadline passed."""
        try:
            return greedy_schedule(inst, index, net=net, prefer=prefer, deadline=deadline)
        except GreedyTimeUp:
            return None

    def try_plan(name: str, plan) -> None:
        if plan is None:
            return
        cols, vals = cm.start_vector(plan)
        got = lns.complete(cols, vals)
        if got is None:
            return
        x, obj = got
        if name == "greedy":
            log.greedy_cost = obj
        else:
            log.rounding_cost = obj
        if obj < lns.obj - 1e-6:
            lns.x, lns.obj = x, obj
            log.start, log.start_cost = name, obj
            log.history.append((round(elapsed(), 2), obj))

    # the LP first while it is quick (small instances: its rounding is the better start);
    # otherwise it runs beside the search, which starts at once from the greedy plan (on L,
    # 884k nonzeros, the LP takes about 60 s: waiting for it idled the search for 18 s)
    if nnz <= LP_WAIT_NONZEROS:
        worker.lp_done.wait(timeout=max(0.0, min(0.15 * limit, 20.0)))
    rounded = False
    if worker.lp_done.is_set() and worker.prefer is not None:
        try_plan("rounding", greedy(worker.prefer))
        rounded = True
    try_plan("greedy", greedy())
    if lns.x is None:
        worker.stop()
        if worker.is_alive():
            worker.join()
        return Outcome(status=Status.NO_SOLUTION, solver=_solver(), build_s=log.build_s,
                       solve_s=elapsed(), message="no start plan for the neighbourhood search"
                       + (" within the time limit" if time.perf_counter() >= deadline else ""),
                       stages=_log_dict(log))

    # the neighbourhood search: this thread, and on large models a second one once the LP
    # has freed the other core (there HiGHS's whole MIP cannot finish its root; on L its
    # bound stayed below the LP's)
    t_lns = time.perf_counter()
    sub_limit = 3.0
    lock = threading.Lock()
    counter = {"it": 0}

    def proven() -> bool:
        """The incumbent (or HiGHS's plan) is within mip_gap of the best bound so far: stop
        (GAP e05200: HiGHS proved the optimum in seconds, the search ran on to the limit)."""
        bounds = [b for b in (worker.lp_bound, worker.mip_bound, log.relaxed_bound)
                  if b is not None and math.isfinite(b)]
        objs = [o for o in (lns.obj, worker.mip_obj) if o is not None and math.isfinite(o)]
        if not bounds or not objs:
            return False
        best = min(objs)
        return (best - max(bounds)) <= options.mip_gap * max(abs(best), 1e-9)

    def best_bound() -> float | None:
        bounds = [b for b in (worker.lp_bound, worker.mip_bound, log.relaxed_bound)
                  if b is not None and math.isfinite(b)]
        return max(bounds) if bounds else None

    def search(rng, main: bool) -> None:
        fails = {k: 0 for k in KINDS}
        nonlocal rounded
        while deadline - time.perf_counter() > 0.5 and not interrupt.requested():
            if proven():
                break
            if main and not rounded and worker.lp_done.is_set():
                rounded = True
                if worker.prefer is not None:
                    plan = greedy(worker.prefer)
                    with lock:
                        try_plan("rounding", plan)
            weights = np.array([4.0 if k == "unplaced" else 1.0 for k in KINDS]) / (1.0 + np.array(
                [fails[k] for k in KINDS]))
            kind = KINDS[int(rng.choice(len(KINDS), p=weights / weights.sum()))]
            with lock:
                nb = lns.neighbourhood(kind, rng)
                seed_job, truncated = lns.last_seed, lns.truncated
                if nb is not None:
                    x0 = lns.x
                    free = lns.free_mask(*nb, x=x0)
                counter["it"] += 1
                it = counter["it"]
            if nb is None:
                fails[kind] += 1
                continue
            # repairing a mandatory job left out is worth a longer sub-MIP: its penalty
            # dwarfs every other improvement
            repair = kind == "unplaced" and seed_job >= 0 and lns.mandatory[seed_job]
            tl = min(sub_limit * (3 if repair else 1), deadline - time.perf_counter() - 0.3)
            if tl < 0.2:
                break
            status, obj, vals, secs = lns.solve_sub(free, tl, options.seed + it, options.mip_gap, x=x0)
            with lock:
                tries = log.kinds.setdefault(kind, [0, 0])
                tries[0] += 1
                if vals is not None and lns.adopt_from(x0, free, vals, obj):
                    tries[1] += 1
                    log.improvements += 1
                    fails[kind] = 0
                    log.history.append((round(elapsed(), 2), lns.obj))
                else:
                    fails[kind] = min(fails[kind] + 1, 8)
                    if kind == "unplaced" and seed_job >= 0:
                        lns.tabu[seed_job] = it + 10
                if report is not None:
                    report.search(incumbent=lns.obj, bound=best_bound())
                lns.clock = max(lns.clock, it)
                # adapt the neighbourhood's size to what HiGHS proves within the limit; it
                # grows only when the size was what cut the neighbourhood (on XL a small
                # "ondemand" neighbourhood proved quickly again and again, and the size ran
                # up to 2,317 jobs)
                if status == "Optimal" and secs < 0.5 * sub_limit and truncated:
                    lns.size = min(len(lns.job_ids), MAX_FREE_JOBS, max(lns.size + 1, int(lns.size * 1.2)))
                elif status != "Optimal":
                    lns.size = max(8, int(lns.size * 0.85))

    second: threading.Thread | None = None

    def second_search() -> None:
        worker.lp_done.wait(timeout=max(0.0, deadline - time.perf_counter()))
        if deadline - time.perf_counter() > 10.0 and not worker.mip_after:
            log.second_search_from = round(elapsed(), 2)
            search(np.random.default_rng(options.seed + 1), main=False)

    if not worker.mip_after:
        second = threading.Thread(target=second_search, daemon=True)
        second.start()
    with interrupt.searching():  # the first Ctrl-C ends the search with its incumbent
        search(lns.rng, main=True)
    interrupt.check_abort()
    if second is not None:
        second.join(timeout=max(1.0, deadline - time.perf_counter() + 15.0))
    log.iterations, log.lns_s, log.final_free_jobs = counter["it"], time.perf_counter() - t_lns, lns.size

    worker.stop()
    if worker.is_alive():
        worker.join(timeout=5.0)
    log.lp_s, log.lp_bound = worker.lp_s, worker.lp_bound
    log.lp_status = worker.lp_status or log.lp_status
    log.mip_bound, log.mip_objective = worker.mip_bound, worker.mip_obj

    # the plan: the incumbent (if it places every mandatory job), or HiGHS's own if cheaper
    candidates = []
    if not lns.unplaced_jobs(lns.x):
        candidates.append(("lns", lns.x, lns.obj))
    if worker.mip_x is not None and not lns.unplaced_jobs(worker.mip_x):
        candidates.append(("mip", worker.mip_x, float(lns.c @ worker.mip_x) + lns.offset))
    seconds = elapsed()
    if not candidates:
        missing = lns.unplaced_jobs(lns.x)
        why = [f"mandatory job {j} could not be placed within the limits" for j in missing[:5]]
        return Outcome(status=Status.NO_SOLUTION, solver=_solver(), build_s=log.build_s,
                       solve_s=seconds, explanation=why, stages=_log_dict(log),
                       message="no feasible plan within the limits"
                       + (f": {'; '.join(why)}" if why else ""))
    name, x, cost = min(candidates, key=lambda c: c[2])
    bounds = [b for b in (log.lp_bound, log.mip_bound, log.relaxed_bound) if b is not None and math.isfinite(b)]
    bound = min(max(bounds), cost) if bounds else None
    gap = max(0.0, (cost - bound) / max(abs(cost), 1e-9)) if bound is not None else None
    status = Status.OPTIMAL if gap is not None and gap <= options.mip_gap else Status.FEASIBLE
    msg = (f"plan from {'the neighbourhood search' if name == 'lns' else 'HiGHS'} "
           f"({log.iterations} sub-MIPs, {log.improvements} improvements, start: {log.start}); "
           f"bound from the {_bound_source(bound, log)}")
    if interrupt.requested():
        msg = f"{interrupt.MESSAGE}; {msg}"
    return Outcome(status=status, decisions=cm.decisions(x), bound=bound, objective=cost,
                   solver=_solver(), message=msg, build_s=log.build_s, solve_s=seconds,
                   stages=_log_dict(log))


def _greedy_instead(inst, index, options, net, deadline: float, nnz_est: int):
    """The greedy plan (no bound) when the search's model cannot be built in the time left."""
    import dataclasses

    from allocator.heuristics import greedy_outcome

    got = greedy_outcome(inst, index, options, net=net, deadline=deadline)
    why = (f"the search's model (about {nnz_est:,} nonzeros, some "
           f"{nnz_est * BUILD_S_PER_NONZERO:,.0f} s to build) does not fit the time limit; "
           + ("the greedy plan is returned without a bound" if got.status.has_schedule
              else "the greedy planner was tried instead"))
    return dataclasses.replace(got, message="; ".join(m for m in (why, got.message) if m),
                               stages={"skipped": why})


def _bound_source(bound: float | None, log: LnsLog) -> str:
    if bound is None:
        return "nothing"
    if bound == log.mip_bound:
        return "MIP"
    if bound == log.lp_bound:
        return "LP relaxation"
    return "relaxation without capacity limits (the LP did not finish)"


def _log_dict(log: LnsLog) -> dict:
    d = dict(log.__dict__)
    d["kinds"] = {k: list(v) for k, v in log.kinds.items()}
    d["history"] = [list(h) for h in log.history]
    return d


def _solver() -> str:
    from allocator.solve import solver_version

    return f"{solver_version()} (lns)"
