"""The greedy planner: what a capacity planner does by hand, feasible by construction.

Training jobs are placed one at a time, mandatory jobs (and the jobs they wait for) first,
larger jobs before smaller ones, a job only after its predecessors. For each job, every
(option, site) is tried at its earliest start where the gang fits the free GPUs, the free
power and the free staging bandwidth over its whole run; the cheapest of these is taken, ties
going to the earlier start. "Cheapest" is the marginal cost: on-demand GPU-hours above the
reserved block, energy, carbon price, site extra cost, staging egress and tardiness. Reserved
GPUs are already paid, so an idle reserved GPU costs only its energy.

Inference is planned after the mandatory jobs, period by period: each (service, region)
demand goes to the cheapest reachable pools (idle capacity of GPUs the service already holds
first, then whole GPUs added while a GPU costs less than the penalty for the tokens it would
serve), within free GPUs, power and link bandwidth. A service with N+1 redundancy then gets
GPUs at other sites (or serves less) until, for each region, losing its largest site within
the region's SLO leaves enough capacity there, and losing any site leaves enough for all.
Optional jobs come last, each placed only if it costs less than its value.

``greedy_schedule(inst, index=None)`` returns the decision tables of docs/schedule-format.md
(training, inference_gpus, inference); ``greedy_outcome(inst, index, options)`` is the greedy
strategy (``--heuristic greedy``): that plan, kept within the budget, as an Outcome (status
feasible, no bound) for the pipeline to derive and report. The same plan is the fallback of a
mip solve stopped by a limit, and a start of the neighbourhood search.

This module does not import Pyomo.
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from allocator.indexing import Index, build_index
from allocator.network import Network
from allocator.quantities import egress_gb_per_period, unserved_usd_per_token_s
from allocator.schema import Instance

EPS = 1e-9


class GreedyPlan(dict):
    """Decision tables by name (training, inference_gpus, inference), plus ``unplaced``: the
    jobs the planner could not place (mandatory ones make the plan infeasible)."""

    unplaced: list[str]
    seconds: float

    def __init__(self, frames: dict[str, pd.DataFrame], unplaced: list[str], seconds: float):
        super().__init__(frames)
        self.unplaced = unplaced
        self.seconds = seconds


@dataclass
class _State:
    """Free capacity as arrays: pools x periods, sites x periods, links x periods."""

    T: int
    H: float
    pool_of: dict[tuple[str, str], int]
    avail: np.ndarray  # (K,)
    reserved: np.ndarray  # (K,)
    od_price: np.ndarray  # (K,) $/GPU-h
    mw_per_gpu: np.ndarray  # (K,)
    pool_site: np.ndarray  # (K,) site position
    site_of: dict[str, int]
    cap_mw: np.ndarray  # (S, T)
    energy_price: np.ndarray  # (S, T)
    carbon: np.ndarray  # (S, T) g/kWh
    carbon_price: float
    link_of: dict[str, int]
    bw: np.ndarray  # (L,) Gb/s, inf = unlimited
    gpus_used: np.ndarray = field(init=False)  # (K, T)
    power_used: np.ndarray = field(init=False)  # (S, T)
    link_used: np.ndarray = field(init=False)  # (L, T)
    mwh_cost: np.ndarray = field(init=False)  # (S, T) $ per MWh incl. carbon price
    mwh_cost_cum: np.ndarray = field(init=False)  # (S, T+1)

    def __post_init__(self) -> None:
        self.gpus_used = np.zeros((len(self.avail), self.T), dtype=np.int64)
        self.power_used = np.zeros(self.cap_mw.shape)
        self.link_used = np.zeros((len(self.bw), self.T))
        self.mwh_cost = self.energy_price + self.carbon_price * self.carbon / 1000.0
        self.mwh_cost_cum = np.concatenate(
            [np.zeros((self.mwh_cost.shape[0], 1)), np.cumsum(self.mwh_cost, axis=1)], axis=1)

    def gpu_cost(self, k: int, t: int, n: int) -> float:
        """Marginal $ of n more GPUs of pool k in period t (lease above reserved + energy)."""
        used = self.gpus_used[k, t]
        od = max(0, used + n - self.reserved[k]) - max(0, used - self.reserved[k])
        s = self.pool_site[k]
        return float(od * self.od_price[k] * self.H + n * self.mw_per_gpu[k] * self.H * self.mwh_cost[s, t])


def _state(inst: Instance, index: Index, spend_only: bool = False) -> _State:
    pools = index.pools
    sites = [s.id for s in inst.sites]
    site_of = {s: i for i, s in enumerate(sites)}
    T = index.periods
    sp = index.site_periods.sort_values(["s", "t"])

    def grid(col: str) -> np.ndarray:
        out = np.zeros((len(sites), T))
        for s, grp in sp.groupby("s", sort=False):
            out[site_of[s], grp["t"].to_numpy(dtype=np.int64)] = grp[col].to_numpy(dtype=float)
        return out

    bw = index.links["bandwidth_gbps"].to_numpy(dtype=float)
    return _State(
        T=T,
        H=index.period_hours,
        pool_of={(s, g): k for k, (s, g) in enumerate(zip(pools["s"], pools["g"], strict=True))},
        avail=pools["available"].to_numpy(dtype=np.int64),
        reserved=pools["reserved"].to_numpy(dtype=np.int64),
        od_price=pools["ondemand_price_usd_per_gpu_h"].to_numpy(dtype=float),
        mw_per_gpu=pools["mw_per_gpu"].to_numpy(dtype=float),
        pool_site=np.array([site_of[s] for s in pools["s"]], dtype=np.int64),
        site_of=site_of,
        cap_mw=grid("power_cap_mw"),
        energy_price=grid("energy_price_usd_per_mwh"),
        carbon=grid("carbon_g_per_kwh"),
        carbon_price=0.0 if spend_only else float(inst.carbon_price_usd_per_t),
        link_of={lab: i for i, lab in enumerate(index.links["l"])},
        bw=np.where(np.isnan(bw), np.inf, bw),
    )


# --------------------------------------------------------------------------- training


def _predecessors(inst: Instance) -> dict[str, list[str]]:
    """Each job's predecessors: known jobs only, once each, never itself."""
    known = {j.id for j in inst.jobs}
    return {j.id: [p for p in dict.fromkeys(j.predecessors) if p in known and p != j.id] for j in inst.jobs}


def _with_ancestors(jobs, preds: dict[str, list[str]]) -> set[str]:
    """``jobs`` and every job they wait for, directly or not."""
    out: set[str] = set()
    stack = list(jobs)
    while stack:
        j = stack.pop()
        if j not in out:
            out.add(j)
            stack.extend(preds.get(j, []))
    return out


def _job_order(inst: Instance, index: Index, first: frozenset[str] = frozenset()) -> tuple[list[str], set[str]]:
    """Jobs in planning order (predecessors first; required before optional; larger first)
    and the set of required jobs (mandatory ones and every job a mandatory one waits for)."""
    jobs = {j.id: j for j in inst.jobs}
    preds = _predecessors(inst)
    required = _with_ancestors((j.id for j in inst.jobs if j.mandatory), preds)
    size = {j.id: min((o.gpus * o.hours for o in j.options), default=0.0) for j in inst.jobs}
    pos = {j.id: i for i, j in enumerate(inst.jobs)}
    succ: dict[str, list[str]] = {j: [] for j in jobs}
    waiting = {j: len(ps) for j, ps in preds.items()}
    for j, ps in preds.items():
        for p in ps:
            succ[p].append(j)

    def key(j: str) -> tuple:
        return (j not in required, j not in first, -size[j], pos[j])

    heap = [(key(j), j) for j in jobs if waiting[j] == 0]
    heapq.heapify(heap)
    order: list[str] = []
    while heap:
        _, j = heapq.heappop(heap)
        order.append(j)
        for q in succ[j]:
            waiting[q] -= 1
            if waiting[q] == 0:
                heapq.heappush(heap, (key(q), q))
    # jobs on a cycle of predecessors never become ready: validation reports the cycle
    return order, required


@dataclass
class _JobRows:
    """One job's placements as arrays, grouped by (option, site)."""

    rows: np.ndarray  # positions in index.placements
    group: np.ndarray  # group id per row
    t: np.ndarray
    d: np.ndarray
    fixed_usd: np.ndarray  # site extra + staging egress + tardiness, per row
    g_pool: np.ndarray  # per group
    g_site: np.ndarray
    g_gpus: np.ndarray
    g_need: np.ndarray
    g_gbps: np.ndarray
    g_links: list[tuple[int, ...]]


def _job_rows(index: Index, state: _State, spend_only: bool = False) -> dict[str, _JobRows]:
    p = index.placements
    if p.empty:
        return {}
    pool = np.array([state.pool_of[k] for k in zip(p["s"], p["g"], strict=True)], dtype=np.int64)
    site = state.pool_site[pool]
    fixed = p["site_extra_usd"].to_numpy(dtype=float) + p["egress_usd"].to_numpy(dtype=float)
    if not spend_only:
        fixed = fixed + p["tardiness_usd"].to_numpy(dtype=float)
    t = p["t"].to_numpy(dtype=np.int64)
    d = p["d"].to_numpy(dtype=np.int64)
    gpus = p["gpus"].to_numpy(dtype=np.int64)
    need = p["need_mw"].to_numpy(dtype=float)
    gbps = p["staging_gbps"].to_numpy(dtype=float)
    links = p["links"].tolist()
    o = p["o"].to_numpy(dtype=np.int64)
    out: dict[str, _JobRows] = {}
    for j, idx in p.groupby("j", sort=False).indices.items():
        idx = np.asarray(idx)
        key = o[idx] * (len(state.avail) + 1) + pool[idx]
        uniq, first, group = np.unique(key, return_index=True, return_inverse=True)
        f = idx[first]
        out[j] = _JobRows(
            rows=idx, group=group, t=t[idx], d=d[idx], fixed_usd=fixed[idx],
            g_pool=pool[f], g_site=site[f], g_gpus=gpus[f], g_need=need[f], g_gbps=gbps[f],
            g_links=[tuple(state.link_of[lab] for lab in links[i]) for i in f],
        )
    return out


def _best_start(jr: _JobRows, st: _State, not_before: int,
                prefer: tuple[np.ndarray, np.ndarray] | None = None,
                not_after: int | None = None) -> tuple[int, float] | None:
    """(row position within the job, marginal $) of the cheapest (option, site) at its
    earliest feasible start, or None if the job fits nowhere now. Starts that end after
    ``not_after`` (the latest start of a required successor) are taken only if no other fits.

    With ``prefer`` = (LP value, reduced cost) per placement row, the feasible start with the
    largest LP value wins instead, then the one with the lowest reduced cost (LP rounding)."""
    G = len(jr.g_pool)
    free_gpu = st.avail[jr.g_pool][:, None] - st.gpus_used[jr.g_pool]
    ok = free_gpu >= jr.g_gpus[:, None]
    ok &= (st.cap_mw[jr.g_site] - st.power_used[jr.g_site]) >= jr.g_need[:, None] - 1e-9
    for gi in range(G):
        if jr.g_gbps[gi] > 0:
            for li in jr.g_links[gi]:
                ok[gi] &= (st.bw[li] - st.link_used[li]) >= jr.g_gbps[gi] - 1e-9
    bad = np.zeros((G, st.T + 1), dtype=np.int64)
    np.cumsum(~ok, axis=1, out=bad[:, 1:])
    feasible = (bad[jr.group, jr.t + jr.d] - bad[jr.group, jr.t] == 0) & (jr.t >= not_before)
    cand = np.flatnonzero(feasible)
    if not_after is not None:
        early = cand[jr.t[cand] + jr.d[cand] <= not_after]
        cand = early if early.size else cand
    if cand.size == 0:
        return None
    if prefer is not None:
        x, rc = prefer[0][jr.rows[cand]], prefer[1][jr.rows[cand]]
        r = cand[np.lexsort((jr.t[cand], rc, -np.round(x, 6)))[0]]
        return int(r), _marginal(jr, st, r)
    # earliest feasible start of each group (rows are ordered by t within a group)
    order = np.lexsort((jr.t[cand], jr.group[cand]))
    cand = cand[order]
    first = cand[np.r_[True, jr.group[cand][1:] != jr.group[cand][:-1]]]
    best, best_cost = -1, math.inf
    for r in first:
        cost, t = _marginal(jr, st, r), jr.t[r]
        if cost < best_cost - 1e-9 or (abs(cost - best_cost) <= 1e-9 and t < jr.t[best]):
            best, best_cost = r, cost
    return best, best_cost


def _marginal(jr: _JobRows, st: _State, r: int) -> float:
    """Marginal $ of starting the job at its row r: on-demand GPU-hours, energy and carbon
    price, site extra, staging egress and tardiness."""
    gi = jr.group[r]
    k, s, n, t, d = jr.g_pool[gi], jr.g_site[gi], jr.g_gpus[gi], jr.t[r], jr.d[r]
    used = st.gpus_used[k, t:t + d]
    res = st.reserved[k]
    od = np.maximum(0, used + n - res) - np.maximum(0, used - res)
    return (float(od.sum()) * st.od_price[k] * st.H
            + jr.g_need[gi] * st.H * (st.mwh_cost_cum[s, t + d] - st.mwh_cost_cum[s, t])
            + jr.fixed_usd[r])


def _place(jr: _JobRows, r: int, st: _State) -> None:
    gi = jr.group[r]
    t, d = jr.t[r], jr.d[r]
    st.gpus_used[jr.g_pool[gi], t:t + d] += jr.g_gpus[gi]
    st.power_used[jr.g_site[gi], t:t + d] += jr.g_need[gi]
    if jr.g_gbps[gi] > 0:
        for li in jr.g_links[gi]:
            st.link_used[li, t:t + d] += jr.g_gbps[gi]


def _latest_ends(inst: Instance, rows: dict[str, _JobRows], order: list[str],
                 required: set[str]) -> dict[str, int]:
    """Latest end period of each job that keeps every required successor placeable: a
    successor q can start no later than its latest start ending within its own latest end,
    and its predecessors must end by then (a backward pass over the planning order, which
    lists predecessors first). Jobs with no required successor are absent."""
    preds = _predecessors(inst)
    latest_end: dict[str, int] = {}
    for q in reversed(order):
        if q not in required or q not in rows:
            continue
        jr = rows[q]
        ok = jr.t + jr.d <= latest_end.get(q, np.iinfo(np.int64).max)
        if not ok.any():
            continue
        start = int(jr.t[ok].max())
        for p in preds.get(q, []):
            latest_end[p] = min(latest_end.get(p, start), start)
    return latest_end


def _plan_jobs(jobs: list[str], inst: Instance, index: Index, st: _State, rows: dict[str, _JobRows],
               ends: dict[str, int], placed: list[int], unplaced: list[str],
               required: set[str], prefer=None, latest_end: dict[str, int] | None = None,
               deadline: float | None = None) -> None:
    latest_end = latest_end or {}
    preds = _predecessors(inst)
    value = {j.id: j.value_usd for j in inst.jobs}
    for j in jobs:
        _check_deadline(deadline)
        jr = rows.get(j)
        if jr is None or any(p not in ends for p in preds.get(j, [])):
            unplaced.append(j)
            continue
        not_before = max((ends[p] for p in preds.get(j, [])), default=0)
        best = _best_start(jr, st, not_before, prefer, latest_end.get(j))
        if best is None:
            unplaced.append(j)
            continue
        r, cost = best
        if j not in required and cost >= value[j]:
            unplaced.append(j)  # optional and not worth its cost
            continue
        _place(jr, r, st)
        placed.append(int(jr.rows[r]))
        ends[j] = int(jr.t[r] + jr.d[r])


# --------------------------------------------------------------------------- inference


def _plan_inference(inst: Instance, index: Index, st: _State, deadline: float | None = None,
                    spend_only: bool = False):
    """Per period, serve each (service, region) from the cheapest reachable pools, where
    serving costs less than leaving it unserved (``spend_only``: the unserved penalty is not
    spend, so nothing is served)."""
    H = st.H
    flows, demands = index.flows, index.demands
    held: dict[tuple[str, int, int], int] = {}  # (v, k, t) -> GPUs
    used_tok: dict[tuple[str, int, int], float] = {}  # (v, k, t) -> tokens/s served on them
    served: list[tuple[str, str, str, str, int, float]] = []
    if flows.empty or demands.empty:
        return held, served
    services = {v.id: v for v in inst.services}
    pen = {v: 0.0 if spend_only else unserved_usd_per_token_s(s.unserved_usd_per_mtok, H)
           for v, s in services.items()}
    bpt = {v: float(s.bytes_per_token) for v, s in services.items()}
    cands: dict[tuple[str, str], list[tuple]] = {}
    for v, r, s, g, tps, egp, gpt, links in flows[
            ["v", "r", "s", "g", "tokens_per_s_per_gpu", "egress_usd_per_gb",
             "gbps_per_token_per_s", "links"]].itertuples(index=False):
        k = st.pool_of[(s, g)]
        e_tok = egress_gb_per_period(1.0, bpt[v], H) * egp  # $ per tok/s served for a period
        cands.setdefault((v, r), []).append(
            (k, s, g, float(tps), e_tok, float(gpt), tuple(st.link_of[lab] for lab in links)))
    dem_by_t: dict[int, list[tuple[str, str, float]]] = {}
    for v, r, t, x in demands[["v", "r", "t", "demand"]].itertuples(index=False):
        dem_by_t.setdefault(int(t), []).append((v, r, float(x)))
    red = set(index.redundant_services)

    def link_room(c, t: int) -> float:
        k, s, g, tps, e_tok, gpt, links = c
        if gpt <= 0 or not links:
            return math.inf
        return min((st.bw[li] - st.link_used[li, t]) / gpt for li in links)

    def take(v: str, r: str, c, t: int, x: float) -> None:
        k, s, g, tps, e_tok, gpt, links = c
        used_tok[(v, k, t)] = used_tok.get((v, k, t), 0.0) + x
        for li in links:
            st.link_used[li, t] += x * gpt
        served.append((v, r, s, g, t, x))

    def add_gpus(v: str, k: int, t: int, n: int) -> None:
        held[(v, k, t)] = held.get((v, k, t), 0) + n
        st.gpus_used[k, t] += n
        st.power_used[st.pool_site[k], t] += n * st.mw_per_gpu[k]

    def free_gpus(k: int, t: int) -> int:
        s = st.pool_site[k]
        by_power = math.floor((st.cap_mw[s, t] - st.power_used[s, t]) / st.mw_per_gpu[k] + 1e-9)
        return max(0, min(int(st.avail[k] - st.gpus_used[k, t]), by_power))

    for t in range(st.T):
        _check_deadline(deadline)
        todo = sorted(dem_by_t.get(t, []), key=lambda x: (-pen[x[0]], -x[2]))
        for v, r, demand in todo:
            rest = demand
            cs = cands.get((v, r), [])
            # 1. idle capacity of GPUs the service already holds, cheapest egress first
            for c in sorted(cs, key=lambda c: c[4]):
                if rest <= 1e-9:
                    break
                k, tps = c[0], c[3]
                spare = held.get((v, k, t), 0) * tps - used_tok.get((v, k, t), 0.0)
                x = min(rest, spare, link_room(c, t))
                if x > 1e-9 and c[4] < pen[v]:
                    take(v, r, c, t, x)
                    rest -= x
            # 2. whole GPUs added, cheapest $ per token first
            for c in sorted(cs, key=lambda c, t=t: st.gpu_cost(c[0], t, 1) / c[3] + c[4]):
                if rest <= 1e-9:
                    break
                k, tps, e_tok = c[0], c[3], c[4]
                while rest > 1e-9:
                    n_free = free_gpus(k, t)
                    room = link_room(c, t)
                    if n_free <= 0 or room <= 1e-9:
                        break
                    # GPUs within the idle reserved block cost energy only; the rest on-demand
                    idle_res = max(0, int(st.reserved[k] - st.gpus_used[k, t]))
                    batch = min(n_free, idle_res) if idle_res > 0 else n_free
                    want = min(rest, room)
                    n_full = min(batch, int(want // tps))
                    if n_full > 0:
                        if st.gpu_cost(k, t, n_full) + e_tok * tps * n_full >= pen[v] * tps * n_full:
                            break
                        add_gpus(v, k, t, n_full)
                        take(v, r, c, t, n_full * tps)
                        rest -= n_full * tps
                        continue
                    x = want  # less than one GPU's worth
                    if st.gpu_cost(k, t, 1) + e_tok * x >= pen[v] * x:
                        break
                    add_gpus(v, k, t, 1)
                    take(v, r, c, t, x)
                    rest -= x
        for v in red:
            _redundancy(v, t, st, held, used_tok, served, cands, free_gpus, add_gpus)
    return held, served


def _redundancy(v, t, st, held, used_tok, served, cands, free_gpus, add_gpus) -> None:
    """N+1 for service v in period t (the inference_redundancy rows): for each region, losing
    any one site must leave capacity within the region's SLO for what it is served; then
    losing any one site must leave capacity for all v serves. Add GPUs at other sites that may
    serve it while there is room; else serve less."""
    regions = sorted({f[1] for f in served if f[0] == v and f[4] == t and f[5] > 1e-9})
    for r in regions:
        pools = {c[0]: c[3] for c in cands.get((v, r), [])}
        _cover_loss(v, t, pools, lambda f, r=r: f[1] == r, st, held, used_tok, served, cands,
                    free_gpus, add_gpus)
    pools = {c[0]: c[3] for r in regions for c in cands.get((v, r), [])}  # sites that may serve them
    _cover_loss(v, t, pools, lambda f: True, st, held, used_tok, served, cands, free_gpus, add_gpus)


def _cover_loss(v, t, pools, match, st, held, used_tok, served, cands, free_gpus, add_gpus) -> None:
    """Make the capacity of v at ``pools`` (pool -> tokens/s per GPU) after losing its largest
    site cover v's flows in period t that ``match``: add GPUs at the other sites, else cut
    those flows."""
    def site_caps() -> dict[int, float]:
        caps: dict[int, float] = {}
        for k, tps in pools.items():
            n = held.get((v, k, t), 0)
            if n:
                s = int(st.pool_site[k])
                caps[s] = caps.get(s, 0.0) + n * tps
        return caps

    def deficit() -> tuple[float, int | None]:
        caps = site_caps()
        largest = max(caps, key=caps.get) if caps else None
        return total - (sum(caps.values()) - caps.get(largest, 0.0)), largest

    mine = [i for i, f in enumerate(served) if f[0] == v and f[4] == t and match(f)]
    total = sum(served[i][5] for i in mine)
    if total <= 1e-9:
        return
    for _ in range(len(pools) + 1):
        short, largest_site = deficit()
        if short <= 1e-6:
            return
        options = sorted((k for k in pools if st.pool_site[k] != largest_site and free_gpus(k, t) > 0),
                         key=lambda k: st.gpu_cost(k, t, 1) / pools[k])
        if not options:
            break
        k = options[0]
        # adding at k may make k's site the new largest: the loop looks again
        add_gpus(v, k, t, min(free_gpus(k, t), math.ceil(short / pools[k] - 1e-9)))
    short = deficit()[0] + 1e-6
    if short <= 2e-6:
        return
    # serve less: cut the matching flows, largest first, by the deficit
    for i in sorted(mine, key=lambda i: -served[i][5]):
        if short <= 0:
            break
        vv, r, s, g, tt, x = served[i]
        cut = min(x, short)
        served[i] = (vv, r, s, g, tt, x - cut)
        k = st.pool_of[(s, g)]
        used_tok[(v, k, t)] -= cut
        short -= cut
        # the cut traffic no longer uses its links
        for c in cands.get((v, r), []):
            if c[0] == k and c[5] > 0:
                for li in c[6]:
                    st.link_used[li, t] -= cut * c[5]


# --------------------------------------------------------------------------- public API


class GreedyTimeUp(Exception):  # noqa: N818 - a signal, not an error
    """The greedy planner reached its deadline before its plan was complete."""


_STOP = threading.local()  # .event: set by another thread to stop this thread's planner


def stop_when(event: threading.Event | None) -> None:
    """Make the greedy planner of the calling thread stop (GreedyTimeUp) once ``event`` is
    set, as at its deadline: the mip route's fallback plan, made beside HiGHS, is stopped
    when HiGHS needs no fallback."""
    _STOP.event = event


def _check_deadline(deadline: float | None) -> None:
    if deadline is not None and time.perf_counter() >= deadline:
        raise GreedyTimeUp
    event = getattr(_STOP, "event", None)
    if event is not None and event.is_set():
        raise GreedyTimeUp


def greedy_schedule(inst: Instance, index: Index | None = None, *, net: Network | None = None,
                    prefer: tuple[np.ndarray, np.ndarray] | None = None,
                    deadline: float | None = None, spend_only: bool = False) -> GreedyPlan:
    """The greedy plan of ``inst`` as decision tables (see the module docstring).

    Returns a GreedyPlan: a dict with ``training`` (job, option, site, gpu_type, gpus,
    start_period), ``inference_gpus`` (service, site, gpu_type, period, gpus) and ``inference``
    (service, region, site, gpu_type, period, tokens_per_s); ``plan.unplaced`` lists the jobs
    left out (optional ones not worth their cost, or jobs that fit nowhere).

    ``prefer`` = (LP value, reduced cost), one entry per row of ``index.placements``, turns
    the planner into LP rounding: each job takes its feasible start with the largest LP
    value, then the lowest reduced cost (allocator.lns).

    ``deadline`` (a time.perf_counter() instant): past it the planner stops and raises
    GreedyTimeUp, so a time limit bounds it too (it is checked once per job and per period).

    ``spend_only``: marginal costs count only what the budget counts (no tardiness, carbon
    price or unserved penalty), so no demand is served: the least-spend plan the planner can
    make, tried when the plan of true costs overspends ``budget_usd`` (greedy_outcome)."""
    t0 = time.perf_counter()
    if index is None:
        index = build_index(inst, net or Network(inst))
    first: frozenset[str] = frozenset()
    rows = _job_rows(index, _state(inst, index, spend_only), spend_only)
    for _attempt in range(8):
        # a required job left out is moved to the front and the plan made again
        st = _state(inst, index, spend_only)
        order, required = _job_order(inst, index, first)
        latest_end = _latest_ends(inst, rows, order, required)
        ends: dict[str, int] = {}
        placed: list[int] = []
        unplaced: list[str] = []
        _plan_jobs([j for j in order if j in required], inst, index, st, rows, ends, placed, unplaced,
                   required, prefer, latest_end, deadline)
        missing = [j for j in unplaced if j in required and j in rows]
        if not missing or first.issuperset(missing):
            break
        # the missing jobs and the jobs they wait for go first next time
        first = first | frozenset(_with_ancestors(missing, _predecessors(inst)))
    held, served = _plan_inference(inst, index, st, deadline, spend_only)
    _plan_jobs([j for j in order if j not in required], inst, index, st, rows, ends, placed, unplaced,
               required, prefer, deadline=deadline)
    pl = index.placements.iloc[sorted(placed)] if placed else index.placements.iloc[0:0]
    training = pd.DataFrame({
        "job": pl["j"].astype(str).to_numpy(),
        "option": pl["o"].to_numpy(dtype=np.int64),
        "site": pl["s"].astype(str).to_numpy(),
        "gpu_type": pl["g"].astype(str).to_numpy(),
        "gpus": pl["gpus"].to_numpy(dtype=np.int64),
        "start_period": pl["t"].to_numpy(dtype=np.int64),
    })
    pool_s, pool_g = index.pools["s"].tolist(), index.pools["g"].tolist()
    ig = [(v, pool_s[k], pool_g[k], t, n) for (v, k, t), n in held.items() if n > 0]
    inference_gpus = pd.DataFrame(ig, columns=["service", "site", "gpu_type", "period", "gpus"])
    fl = [f for f in served if f[5] > 1e-9]
    inference = pd.DataFrame(fl, columns=["service", "region", "site", "gpu_type", "period", "tokens_per_s"])
    if len(inference):
        inference = inference.groupby(["service", "region", "site", "gpu_type", "period"],
                                      as_index=False, sort=True)["tokens_per_s"].sum()
    inference_gpus = inference_gpus.sort_values(["service", "site", "gpu_type", "period"]).reset_index(drop=True)
    for df in (inference_gpus, inference):
        df["period"] = df["period"].astype(np.int64)
    inference_gpus["gpus"] = inference_gpus["gpus"].astype(np.int64)
    inference["tokens_per_s"] = inference["tokens_per_s"].astype(float)
    frames = {"training": training, "inference_gpus": inference_gpus, "inference": inference}
    return GreedyPlan(frames, unplaced, time.perf_counter() - t0)


def greedy_outcome(inst: Instance, index: Index | None, options=None, *, net: Network | None = None,
                   deadline: float | None = None):
    """The greedy strategy: the greedy plan as an Outcome (feasible with no bound), within the
    instance's budget. Over the budget, optional jobs are dropped, the least valuable first,
    until the plan's spend fits; if even the mandatory plan overspends, the least-spend plan
    (``greedy_schedule(spend_only=True)``: no tardiness, carbon or unserved penalty in the
    marginal costs, so no demand served) is tried the same way; no_solution if a mandatory job
    could not be placed or the spend of what is left is still above the budget."""
    from allocator.derive import derive, spend
    from allocator.outcome import Outcome
    from allocator.results import Status

    t0 = time.perf_counter()
    net = net or Network(inst)
    if index is None:
        index = build_index(inst, net)
    try:
        plan = greedy_schedule(inst, index, net=net, deadline=deadline)
    except GreedyTimeUp:
        why = "the time limit ran out during the greedy planner"
        return Outcome(status=Status.NO_SOLUTION, solver="greedy", solve_s=time.perf_counter() - t0,
                       message=why, explanation=[why])
    decisions = dict(plan)
    mandatory = {j.id for j in inst.jobs if j.mandatory}
    why = [f"the greedy planner could not place mandatory job {j}" for j in plan.unplaced
           if j in mandatory]
    dropped = 0
    spend_note = ""
    if not why and inst.budget_usd is not None:
        decisions, dropped, over = _within_budget(inst, index, decisions, derive, spend, deadline)
        if over is not None and (deadline is None or time.perf_counter() < deadline):
            # the plan of true costs overspends: the least-spend plan (nothing served) instead
            try:
                lean = greedy_schedule(inst, index, net=net, deadline=deadline, spend_only=True)
            except GreedyTimeUp:
                lean = None
            if lean is not None and not [j for j in lean.unplaced if j in mandatory]:
                lean_d, lean_dropped, lean_over = _within_budget(inst, index, dict(lean), derive,
                                                                 spend, deadline)
                if lean_over is None:
                    decisions, dropped, over = lean_d, lean_dropped, None
                    spend_note = "; the plan that spends least (no demand served) keeps within the budget"
        if over is not None:
            why.append(f"the greedy plan spends {over:,.2f} USD, above budget_usd = "
                       f"{inst.budget_usd:,.2f}, after dropping {dropped} optional job(s)")
    seconds = time.perf_counter() - t0
    if why:
        shown = why[:5] + ([f"(+{len(why) - 5} more)"] if len(why) > 5 else [])
        return Outcome(status=Status.NO_SOLUTION, solver="greedy", solve_s=seconds,
                       message="greedy plan is not feasible: " + "; ".join(shown), explanation=shown)
    placed = len(decisions["training"])
    note = (f"; {dropped} optional jobs dropped to keep within the budget" if dropped else "") + spend_note
    return Outcome(status=Status.FEASIBLE, decisions=decisions, solver="greedy", solve_s=seconds,
                   message=f"greedy plan: {placed} jobs placed{note}; no bound")


def _within_budget(inst: Instance, index: Index, decisions: dict, derive, spend,
                   deadline: float | None = None):
    """(decisions, optional jobs dropped, spend still over the budget or None). Each drop
    re-derives the plan's spend, so the deadline is checked before each one."""
    over = spend(derive(inst, index, decisions).costs)
    if over <= inst.budget_usd + 1e-6:
        return decisions, 0, None
    optional = sorted((index.value_usd.get(j, 0.0), j) for j in decisions["training"]["job"]
                      if not index.mandatory.get(j, True))
    tr = decisions["training"]
    dropped = 0
    for _value, j in optional:
        if deadline is not None and time.perf_counter() >= deadline:
            break
        tr = tr[tr["job"] != j].reset_index(drop=True)
        dropped += 1
        over = spend(derive(inst, index, {**decisions, "training": tr}).costs)
        if over <= inst.budget_usd + 1e-6:
            return {**decisions, "training": tr}, dropped, None
    return decisions, dropped, over


def greedy_result(inst: Instance, index: Index | None, options):
    """``--heuristic greedy`` as a Result: greedy_outcome through the one Result builder."""
    from allocator.options import SolveOptions
    from allocator.pipeline import build_result

    options = options or SolveOptions()
    net = Network(inst)
    if index is None:
        index = build_index(inst, net)
    return build_result(inst, index, options, greedy_outcome(inst, index, options, net=net))
