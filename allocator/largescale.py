"""Large instances: the model as arrays, bounds, and fix-and-optimise neighbourhood search.

``build_arrays(inst, index, compact=...)`` builds the same mixed-integer model as
allocator.formulation (same columns, same costs, same rows) directly as numpy/scipy arrays,
without Pyomo. With ``compact=False`` the rows are those of the formulation (a start at t0 of
duration d appears in the GPU, on-demand and power rows of every period it runs); this is the
yardstick that benchmarks/direct_build.py times. With ``compact=True`` (the default) usage is
written as a running total instead: a continuous ``use[k,t]`` per pool and period with

    use[k,t] - use[k,t-1] - sum_{starts at t} gpus * start + sum_{starts ending at t} gpus * start = 0

so a start appears in two rows whatever its duration; staging traffic per link and the
strong precedence rows use the same running totals. This is an exact reformulation (``use``
is determined by the starts), so its LP bound is the formulation's, with 5-15x fewer
nonzeros on hour-indexed horizons.

``solve_lns(inst, index, options)`` is the large-instance strategy measured in
docs/performance.md: the greedy plan as the first incumbent, fix-and-optimise sub-MIPs over
neighbourhoods of it until the time limit, and on the second core the LP relaxation of the
compact model (its duals give the bound; its rounding may give a better start), then, on small
models, HiGHS on the whole MIP, on large ones a second search thread. ``relaxed_bound`` gives a
bound without any LP. The final plan is evaluated by the independent verifier
(allocator.verify.evaluate); its objective is the verified cost, its bound the best valid one.

This module does not import Pyomo.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from allocator.indexing import Index
from allocator.schema import Instance

INF = math.inf


@dataclass
class ArrayModel:
    """A MIP as arrays: minimise c x + offset, row_lower <= A x <= row_upper, bounds,
    integrality. Column blocks are slices in the order start, serve, unserved, gpus_inf,
    ondemand, aux (compact running totals)."""

    A: sp.csc_matrix
    c: np.ndarray
    offset: float
    col_lower: np.ndarray
    col_upper: np.ndarray
    row_lower: np.ndarray
    row_upper: np.ndarray
    integrality: np.ndarray
    blocks: dict[str, slice]
    ondemand_keys: np.ndarray  # (n_od, 2): pool position, period
    families: dict[str, int] = field(default_factory=dict)  # rows per family
    start_pool: np.ndarray | None = None  # pool position of each start column
    inf_pool: np.ndarray | None = None  # pool position of each gpus_inf column
    # compact form: the running GPU totals use[k,t] are the aux columns use_first + i for the
    # (pool, period) pairs use_keys[i]
    use_first: int = -1
    use_keys: np.ndarray | None = None
    family_first: dict[str, int] = field(default_factory=dict)  # first row of each family
    build_s: float = 0.0

    @property
    def shape(self) -> dict[str, int]:
        return {"variables": int(self.A.shape[1]), "constraints": int(self.A.shape[0]),
                "nonzeros": int(self.A.nnz)}


class _Rows:
    """Triplets of the constraint matrix, added a family at a time."""

    def __init__(self) -> None:
        self.r: list[np.ndarray] = []
        self.c: list[np.ndarray] = []
        self.v: list[np.ndarray] = []
        self.lo: list[np.ndarray] = []
        self.hi: list[np.ndarray] = []
        self.m = 0
        self.families: dict[str, int] = {}
        self.first: dict[str, int] = {}  # first row of each family

    def add(self, name: str, nrows: int, rows, cols, vals, lo, hi) -> int:
        base = self.m
        if nrows == 0:
            return base
        self.r.append(np.asarray(rows, dtype=np.int64) + base)
        self.c.append(np.asarray(cols, dtype=np.int64))
        self.v.append(np.asarray(vals, dtype=float))
        self.lo.append(np.broadcast_to(np.asarray(lo, dtype=float), (nrows,)))
        self.hi.append(np.broadcast_to(np.asarray(hi, dtype=float), (nrows,)))
        self.m += nrows
        self.families[name] = self.families.get(name, 0) + nrows
        self.first.setdefault(name, base)
        return base


def _codes(values, uniques) -> np.ndarray:
    pos = {u: i for i, u in enumerate(uniques)}
    return np.fromiter((pos[x] for x in values), dtype=np.int64, count=len(values))


def _running(t0: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row position, period) for every period each start runs in."""
    rows = np.repeat(np.arange(len(t0)), d)
    off = np.arange(int(d.sum())) - np.repeat(np.cumsum(d) - d, d)
    return rows, t0[rows] + off


def build_arrays(inst: Instance, index: Index, *, compact: bool = True) -> ArrayModel:
    """The model of ``inst`` over ``index`` as arrays (see the module docstring)."""
    t_start = time.perf_counter()
    T, H = index.periods, index.period_hours
    p, pools, spd = index.placements, index.pools, index.site_periods
    sites = [s.id for s in inst.sites]
    S, K = len(sites), len(pools)
    pool_of = {(s, g): k for k, (s, g) in enumerate(zip(pools["s"], pools["g"], strict=True))}
    site_pos = {s: i for i, s in enumerate(sites)}
    pool_site = np.array([site_pos[s] for s in pools["s"]], dtype=np.int64)
    avail = pools["available"].to_numpy(dtype=float)
    reserved = pools["reserved"].to_numpy(dtype=float)
    mw = pools["mw_per_gpu"].to_numpy(dtype=float)
    price = np.zeros((S, T))
    carbon = np.zeros((S, T))
    cap = np.full((S, T), INF)
    si = _codes(spd["s"].tolist(), sites)
    ti = spd["t"].to_numpy(dtype=np.int64)
    price[si, ti] = spd["energy_price_usd_per_mwh"].to_numpy(dtype=float)
    carbon[si, ti] = spd["carbon_g_per_kwh"].to_numpy(dtype=float)
    cap[si, ti] = spd["power_cap_mw"].to_numpy(dtype=float)
    cprice = float(inst.carbon_price_usd_per_t)
    mwh_cost = price + cprice * carbon / 1000.0  # $ per MWh
    cum = np.concatenate([np.zeros((S, 1)), np.cumsum(mwh_cost, axis=1)], axis=1)

    # ---- columns
    P = len(p)
    pk = np.array([pool_of[x] for x in zip(p["s"], p["g"], strict=True)], dtype=np.int64) if P else np.zeros(0, np.int64)
    ps = pool_site[pk]
    pt = p["t"].to_numpy(dtype=np.int64)
    pd_ = p["d"].to_numpy(dtype=np.int64)
    pg = p["gpus"].to_numpy(dtype=float)
    job_ids = list(index.jobs)
    pj = _codes(p["j"].tolist(), job_ids) if P else np.zeros(0, np.int64)
    optional = np.array([not index.mandatory[j] for j in job_ids], dtype=bool)
    value = np.array([index.value_usd[j] for j in job_ids], dtype=float)
    c_start = (p["site_extra_usd"].to_numpy(dtype=float) + p["egress_usd"].to_numpy(dtype=float)
               + p["tardiness_usd"].to_numpy(dtype=float)
               + pg * mw[pk] * H * (cum[ps, pt + pd_] - cum[ps, pt]) - value[pj] * optional[pj])

    serve, flows, dem, spr = index.serve, index.flows, index.demands, index.service_periods
    NS, ND, NI = len(serve), len(dem), len(spr)
    svc = {v.id: v for v in inst.services}
    if NS:
        f = serve.merge(flows[["v", "r", "s", "g", "egress_usd_per_gb", "gbps_per_token_per_s", "links"]],
                        on=["v", "r", "s", "g"], how="left")
        bpt = f["v"].map({k: v.bytes_per_token for k, v in svc.items()}).to_numpy(dtype=float)
        c_serve = bpt * 3600.0 * H / 1e9 * f["egress_usd_per_gb"].to_numpy(dtype=float)
    else:
        f = serve
        c_serve = np.zeros(0)
    dem_val = dem["demand"].to_numpy(dtype=float) if ND else np.zeros(0)
    serve_ub = _serve_upper(serve, dem) if NS else np.zeros(0)
    c_uns = (3600.0 * H / 1e6 * dem["v"].map({k: v.unserved_usd_per_mtok for k, v in svc.items()})
             .to_numpy(dtype=float)) if ND else np.zeros(0)
    ik = np.array([pool_of[x] for x in zip(spr["s"], spr["g"], strict=True)], dtype=np.int64) if NI else np.zeros(0, np.int64)
    it = spr["t"].to_numpy(dtype=np.int64) if NI else np.zeros(0, np.int64)
    c_inf = mw[ik] * H * mwh_cost[pool_site[ik], it] if NI else np.zeros(0)

    # pool-periods with any possible usage (GPU_PERIODS)
    run_i, run_t = _running(pt, pd_)
    used = np.zeros((K, T), dtype=bool)
    used[pk[run_i], run_t] = True
    used[ik, it] = True
    gp_k, gp_t = np.nonzero(used)
    # an upper bound of the GPUs in use from data: each job once, with its largest gang
    # running there, plus every inference variable at its bound (as the formulation does);
    # rows that cannot bind are left out, and on-demand exists only where usage can pass
    # the reserved block
    max_use = np.zeros((K, T))
    if len(run_i):
        mj = pd.DataFrame({"k": pk[run_i], "t": run_t, "j": pj[run_i], "g": pg[run_i]})
        mj = mj.groupby(["k", "t", "j"], sort=False)["g"].max().groupby(level=[0, 1]).sum()
        kk = mj.index.get_level_values(0).to_numpy(dtype=np.int64)
        tt = mj.index.get_level_values(1).to_numpy(dtype=np.int64)
        max_use[kk, tt] = mj.to_numpy(dtype=float)
    np.add.at(max_use, (ik, it), avail[ik])
    top = np.minimum(max_use[gp_k, gp_t], avail[gp_k])
    od_mask = top > reserved[gp_k]
    od_keys = np.stack([gp_k[od_mask], gp_t[od_mask]], axis=1)
    NO = len(od_keys)
    od_col = np.full((K, T), -1, dtype=np.int64)
    c_od = pools["ondemand_price_usd_per_gpu_h"].to_numpy(dtype=float)[od_keys[:, 0]] * H if NO else np.zeros(0)

    o_start, o_serve = 0, P
    o_uns = P + NS
    o_inf = o_uns + ND
    o_od = o_inf + NI
    o_aux = o_od + NO
    od_col[od_keys[:, 0], od_keys[:, 1]] = o_od + np.arange(NO)
    aux_lower: list[np.ndarray] = []
    aux_upper: list[np.ndarray] = []
    n_aux = 0

    def new_aux(n: int, lo: float, hi: np.ndarray | float) -> int:
        nonlocal n_aux
        first = o_aux + n_aux
        aux_lower.append(np.full(n, lo))
        aux_upper.append(np.broadcast_to(np.asarray(hi, dtype=float), (n,)).copy())
        n_aux += n
        return first

    rows = _Rows()
    start_cols = o_start + np.arange(P)
    use_first = -1

    # ---- training_assign
    jobs_with = np.unique(pj)
    jrow = np.full(len(job_ids), -1, dtype=np.int64)
    jrow[jobs_with] = np.arange(len(jobs_with))
    lo = np.where(optional[jobs_with], -INF, 1.0)
    rows.add("training_assign", len(jobs_with), jrow[pj], start_cols, np.ones(P), lo, 1.0)

    # ---- training_precedence (strong time-indexed form)
    by_job = {j: np.flatnonzero(pj == j) for j in jobs_with} if index.precedences else {}
    jpos = {j: i for i, j in enumerate(job_ids)}
    for jid, pid in index.precedences:
        a, b = by_job.get(jpos[jid]), by_job.get(jpos[pid])
        if a is None or not len(a):
            continue
        b = b if b is not None else np.zeros(0, np.int64)
        tj = np.unique(pt[a])  # the start periods of j: one row each
        nr = len(tj)
        if compact:
            # running counts at the points tj: C_j[k] = sum_{t' <= tj[k]} x_j, E_p[k] = sum_{end <= tj[k]} x_p
            cj = new_aux(nr, 0.0, 1.0)
            ep = new_aux(nr, 0.0, 1.0)
            ka = np.searchsorted(tj, pt[a], side="left")  # first point at or after the start
            endb = pt[b] + pd_[b]
            kb = np.searchsorted(tj, endb, side="left")
            okb = kb < nr
            k = np.arange(nr)
            # definition rows: C[k] - C[k-1] - (new starts) = 0, same for E
            r_c = np.concatenate([k, k[1:], ka])
            c_c = np.concatenate([cj + k, cj + k[1:] - 1, start_cols[a]])
            v_c = np.concatenate([np.ones(nr), -np.ones(nr - 1), -np.ones(len(a))])
            rows.add("training_precedence_running", nr, r_c, c_c, v_c, 0.0, 0.0)
            r_e = np.concatenate([k, k[1:], kb[okb]])
            c_e = np.concatenate([ep + k, ep + k[1:] - 1, start_cols[b[okb]]])
            v_e = np.concatenate([np.ones(nr), -np.ones(nr - 1), -np.ones(int(okb.sum()))])
            rows.add("training_precedence_running", nr, r_e, c_e, v_e, 0.0, 0.0)
            rows.add("training_precedence", nr, np.concatenate([k, k]),
                     np.concatenate([cj + k, ep + k]), np.concatenate([np.ones(nr), -np.ones(nr)]), -INF, 0.0)
        else:
            # row k: sum_{x_j with t <= tj[k]} - sum_{x_p with end <= tj[k]} <= 0
            ra, ca = _prefix_pairs(pt[a], tj, side="right")
            rb, cb = _prefix_pairs(pt[b] + pd_[b], tj, side="right")
            rows.add("training_precedence", nr, np.concatenate([ra, rb]),
                     np.concatenate([start_cols[a][ca], start_cols[b][cb]]),
                     np.concatenate([np.ones(len(ra)), -np.ones(len(rb))]), -INF, 0.0)

    # ---- inference
    if ND:
        dkey = _codes(list(zip(serve["v"], serve["r"], serve["t"], strict=True)),
                      list(zip(dem["v"], dem["r"], dem["t"], strict=True)))
        rows.add("inference_demand", ND,
                 np.concatenate([dkey, np.arange(ND)]),
                 np.concatenate([o_serve + np.arange(NS), o_uns + np.arange(ND)]),
                 np.ones(NS + ND), dem_val, dem_val)
    if NI:
        ikey = _codes(list(zip(serve["v"], serve["s"], serve["g"], serve["t"], strict=True)),
                      list(zip(spr["v"], spr["s"], spr["g"], spr["t"], strict=True))) if NS else np.zeros(0, np.int64)
        tps_of = {(v, s, g): x for v, s, g, x in index.service_pools[["v", "s", "g", "tokens_per_s_per_gpu"]]
                  .itertuples(index=False)}
        tps = np.array([tps_of[x] for x in zip(spr["v"], spr["s"], spr["g"], strict=True)], dtype=float)
        rows.add("inference_capacity", NI,
                 np.concatenate([ikey, np.arange(NI)]),
                 np.concatenate([o_serve + np.arange(NS), o_inf + np.arange(NI)]),
                 np.concatenate([np.ones(NS), -tps]), -INF, 0.0)
        red = set(index.redundant_services)
        if red:
            _redundancy_rows(rows, dem, spr, serve, tps, red, o_uns, o_inf)

    # ---- capacity and power
    gp_index = np.full((K, T), -1, dtype=np.int64)
    gp_index[gp_k, gp_t] = np.arange(len(gp_k))
    NG = len(gp_k)
    power_keys = np.unique(pool_site[gp_k] * T + gp_t)
    pw_index = np.full(S * T, -1, dtype=np.int64)
    pw_index[power_keys] = np.arange(len(power_keys))
    ps_of_gp = pw_index[pool_site[gp_k] * T + gp_t]
    inf_cols = o_inf + np.arange(NI)
    if compact:
        # running GPU totals of training per pool-period: use[k,t]
        use0 = new_aux(NG, 0.0, avail[gp_k])
        use_first = use0
        prev = np.where(gp_t > 0, gp_index[gp_k, np.maximum(gp_t - 1, 0)], -1)
        has_prev = prev >= 0
        end_t = pt + pd_
        ends_in = end_t < T
        r_def = np.concatenate([np.arange(NG), np.flatnonzero(has_prev),
                                gp_index[pk, pt], gp_index[pk[ends_in], end_t[ends_in]]])
        c_def = np.concatenate([use0 + np.arange(NG), use0 + prev[has_prev],
                                start_cols, start_cols[ends_in]])
        v_def = np.concatenate([np.ones(NG), -np.ones(int(has_prev.sum())), -pg, pg[ends_in]])
        ok = r_def >= 0  # an end period with no usage row has no later usage to correct
        rows.add("capacity_running", NG, r_def[ok], c_def[ok], v_def[ok], 0.0, 0.0)
        u_rows, u_cols, u_vals = np.arange(NG), use0 + np.arange(NG), np.ones(NG)
    else:
        u_rows = gp_index[pk[run_i], run_t]
        u_cols = start_cols[run_i]
        u_vals = pg[run_i]
    # usage terms: training (as above) + inference GPUs
    U_r = np.concatenate([u_rows, gp_index[ik, it]])
    U_c = np.concatenate([u_cols, inf_cols])
    U_v = np.concatenate([u_vals, np.ones(NI)])
    binds = max_use[gp_k, gp_t] > avail[gp_k]
    cg_row = np.full(NG, -1, dtype=np.int64)
    cg_row[binds] = np.arange(int(binds.sum()))
    sel = cg_row[U_r] >= 0
    rows.add("capacity_gpus", int(binds.sum()), cg_row[U_r[sel]], U_c[sel], U_v[sel], -INF,
             avail[gp_k[binds]])
    od_rows = np.flatnonzero(od_mask)
    od_pos = np.full(NG, -1, dtype=np.int64)
    od_pos[od_rows] = np.arange(len(od_rows))
    sel = od_pos[U_r] >= 0
    rows.add("capacity_ondemand", len(od_rows),
             np.concatenate([od_pos[U_r[sel]], np.arange(NO)]),
             np.concatenate([U_c[sel], o_od + np.arange(NO)]),
             np.concatenate([U_v[sel], -np.ones(NO)]), -INF, reserved[gp_k[od_rows]])
    pw_cap = cap.reshape(-1)[power_keys]
    max_mw = np.zeros(len(power_keys))
    np.add.at(max_mw, ps_of_gp, mw[gp_k] * top)
    finite = np.isfinite(pw_cap) & (max_mw > pw_cap + 1e-9)
    pw_row = np.full(len(power_keys), -1, dtype=np.int64)
    pw_row[finite] = np.arange(int(finite.sum()))
    r_pw = pw_row[ps_of_gp[U_r]]
    keep = r_pw >= 0
    gk_of_U = gp_k[U_r]
    rows.add("power_cap", int(finite.sum()), r_pw[keep], U_c[keep], (U_v * mw[gk_of_U])[keep], -INF,
             pw_cap[finite])

    # ---- network bandwidth
    bw = index.links["bandwidth_gbps"].to_numpy(dtype=float)
    labels = index.links["l"].tolist()
    lpos = {lab: i for i, lab in enumerate(labels)}
    L = len(labels)
    # (link * T + t) keyed terms, their column's upper bound, and a group id: the terms of one
    # group (a job's starts, a (service, region)'s serve columns) can be nonzero only one at a
    # time per period, so a row's largest traffic counts each group once, as the formulation does
    tr_r, tr_c, tr_v, tr_u, tr_g = [], [], [], [], []
    gbps = p["staging_gbps"].to_numpy(dtype=float) if P else np.zeros(0)
    has = np.flatnonzero(gbps > 0)
    if len(has):
        links_of = p["links"].to_numpy()
        li_list, x_list = [], []
        for i in has:
            for lab in links_of[i]:
                li = lpos[lab]
                if bw[li] == bw[li]:
                    li_list.append(li)
                    x_list.append(i)
        li_arr = np.asarray(li_list, dtype=np.int64)
        x_arr = np.asarray(x_list, dtype=np.int64)
        if compact and len(x_arr):
            # running staging traffic per (link, period) where some staging may run
            busy = np.zeros((L, T), dtype=bool)
            rr, rt = _running(pt[x_arr], pd_[x_arr])
            busy[li_arr[rr], rt] = True
            bl, bt = np.nonzero(busy)
            NB = len(bl)
            bidx = np.full((L, T), -1, dtype=np.int64)
            bidx[bl, bt] = np.arange(NB)
            # the running staging traffic never exceeds the link's bandwidth (the bandwidth
            # row): a finite bound that keeps every column bounded (safe_bound needs it)
            w0 = new_aux(NB, 0.0, bw[bl])
            prev = np.where(bt > 0, bidx[bl, np.maximum(bt - 1, 0)], -1)
            hp = prev >= 0
            et = pt[x_arr] + pd_[x_arr]
            ein = et < T
            r_def = np.concatenate([np.arange(NB), np.flatnonzero(hp), bidx[li_arr, pt[x_arr]],
                                    bidx[li_arr[ein], et[ein]]])
            c_def = np.concatenate([w0 + np.arange(NB), w0 + prev[hp], start_cols[x_arr],
                                    start_cols[x_arr[ein]]])
            v_def = np.concatenate([np.ones(NB), -np.ones(int(hp.sum())), -gbps[x_arr], gbps[x_arr[ein]]])
            ok = r_def >= 0
            rows.add("network_running", NB, r_def[ok], c_def[ok], v_def[ok], 0.0, 0.0)
            tr_r.append(bl * T + bt)
            tr_c.append(w0 + np.arange(NB))
            tr_v.append(np.ones(NB))
            tr_u.append(bw[bl])
            tr_g.append(-1 - np.arange(NB))
        elif len(x_arr):
            rr, rt = _running(pt[x_arr], pd_[x_arr])
            tr_r.append(li_arr[rr] * T + rt)
            tr_c.append(start_cols[x_arr[rr]])
            tr_v.append(gbps[x_arr[rr]])
            tr_u.append(np.ones(len(rr)))
            tr_g.append(pj[x_arr[rr]])
    if NS:
        links_f = f["links"].to_numpy()
        gpt = f["gbps_per_token_per_s"].to_numpy(dtype=float)
        st_ = serve["t"].to_numpy(dtype=np.int64)
        li_list, x_list = [], []
        for i, labs in enumerate(links_f):
            for lab in labs:
                li = lpos[lab]
                if bw[li] == bw[li]:
                    li_list.append(li)
                    x_list.append(i)
        if li_list:
            li_arr = np.asarray(li_list, dtype=np.int64)
            x_arr = np.asarray(x_list, dtype=np.int64)
            tr_r.append(li_arr * T + st_[x_arr])
            tr_c.append(o_serve + x_arr)
            tr_v.append(gpt[x_arr])
            tr_u.append(serve_ub[x_arr])
            vr = _codes(list(zip(serve["v"], serve["r"], strict=True)),
                        sorted(set(zip(serve["v"], serve["r"], strict=True)), key=str))
            tr_g.append(len(job_ids) + vr[x_arr])
    if tr_r:
        keys = np.concatenate(tr_r)
        uk, inv = np.unique(keys, return_inverse=True)
        vals = np.concatenate(tr_v)
        # a row whose traffic at every column's upper bound stays within the bandwidth
        # cannot bind and is left out, as in the formulation
        top_gbps = (pd.DataFrame({"r": inv, "g": np.concatenate(tr_g), "x": vals * np.concatenate(tr_u)})
                    .groupby(["r", "g"], sort=False)["x"].max().groupby(level=0).sum()
                    .reindex(np.arange(len(uk)), fill_value=0.0).to_numpy())
        binds = top_gbps > bw[uk // T] + 1e-9
        rpos = np.cumsum(binds) - 1
        sel = binds[inv]
        rows.add("network_bandwidth", int(binds.sum()), rpos[inv[sel]], np.concatenate(tr_c)[sel],
                 vals[sel], -INF, bw[uk[binds] // T])

    # ---- budget: lease + energy + egress + site extra <= budget
    offset = float((reserved * pools["reserved_price_usd_per_gpu_h"].to_numpy(dtype=float)).sum()) * H * T
    offset += float((value * optional).sum())
    if inst.budget_usd is not None:
        energy_only = price  # budget counts energy, not the carbon price
        cum_e = np.concatenate([np.zeros((S, 1)), np.cumsum(energy_only, axis=1)], axis=1)
        b_start = (p["site_extra_usd"].to_numpy(dtype=float) + p["egress_usd"].to_numpy(dtype=float)
                   + pg * mw[pk] * H * (cum_e[ps, pt + pd_] - cum_e[ps, pt]))
        b_inf = mw[ik] * H * price[pool_site[ik], it] if NI else np.zeros(0)
        lease = float((reserved * pools["reserved_price_usd_per_gpu_h"].to_numpy(dtype=float)).sum()) * H * T
        cols = np.concatenate([start_cols, o_serve + np.arange(NS), inf_cols, o_od + np.arange(NO)])
        vals = np.concatenate([b_start, c_serve, b_inf, c_od])
        nz = vals != 0
        rows.add("budget_cap", 1, np.zeros(int(nz.sum()), dtype=np.int64), cols[nz], vals[nz], -INF,
                 float(inst.budget_usd) - lease)

    n = o_aux + n_aux
    A = sp.csc_matrix((np.concatenate(rows.v) if rows.v else np.zeros(0),
                       (np.concatenate(rows.r) if rows.r else np.zeros(0, np.int64),
                        np.concatenate(rows.c) if rows.c else np.zeros(0, np.int64))),
                      shape=(rows.m, n))
    A.sum_duplicates()
    A.sort_indices()
    c = np.concatenate([c_start, c_serve, c_uns, c_inf, c_od, np.zeros(n_aux)])
    col_lower = np.zeros(n)
    col_upper = np.concatenate([
        np.ones(P), serve_ub, dem_val,
        avail[ik] if NI else np.zeros(0), top[od_mask] - reserved[od_keys[:, 0]] + 0.5 if NO else np.zeros(0),
        np.concatenate(aux_upper) if aux_upper else np.zeros(0)])
    integ = np.zeros(n, dtype=np.int32)
    integ[:P] = 1
    integ[o_inf:o_inf + NI] = 1
    return ArrayModel(
        A=A, c=c, offset=offset, col_lower=col_lower, col_upper=col_upper,
        row_lower=np.concatenate(rows.lo) if rows.lo else np.zeros(0),
        row_upper=np.concatenate(rows.hi) if rows.hi else np.zeros(0),
        integrality=integ,
        blocks={"start": slice(0, P), "serve": slice(o_serve, o_uns), "unserved": slice(o_uns, o_inf),
                "gpus_inf": slice(o_inf, o_od), "ondemand": slice(o_od, o_aux), "aux": slice(o_aux, n)},
        ondemand_keys=od_keys, families=dict(rows.families), start_pool=pk, inf_pool=ik,
        family_first=dict(rows.first),
        use_first=use_first, use_keys=np.stack([gp_k, gp_t], axis=1) if use_first >= 0 else None,
        build_s=time.perf_counter() - t_start,
    )


def _serve_upper(serve: pd.DataFrame, dem: pd.DataFrame) -> np.ndarray:
    d = dict(zip(zip(dem["v"], dem["r"], dem["t"], strict=True), dem["demand"], strict=True))
    return np.array([d[k] for k in zip(serve["v"], serve["r"], serve["t"], strict=True)], dtype=float)


def _prefix_pairs(values: np.ndarray, points: np.ndarray, side: str) -> tuple[np.ndarray, np.ndarray]:
    """(row k, element i) for every element with value <= points[k] (the strong-form rows)."""
    first = np.searchsorted(points, values, side="left")  # first row whose point >= value
    n = np.maximum(len(points) - first, 0)
    elems = np.repeat(np.arange(len(values)), n)
    rows = np.repeat(first, n) + (np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n))
    return rows, elems


def _redundancy_rows(rows: _Rows, dem, spr, serve, tps, red, o_uns, o_inf) -> None:
    """inference_redundancy[v,r,s,t] and inference_redundancy_all[v,s,t] as the formulation
    writes them (allocator/formulation/inference.py, where the rule is stated): per demand
    (v, r, t) and site s that may serve it, the capacity of v at the other sites within r's
    SLO + unserved[v,r,t] >= demand[v,r,t]; with two or more such regions in t, the capacity
    at the sites other than s + their unserved >= their demand. (An array copy of the rows
    until the lns strategy builds on the compiled formulation.)"""
    spr_pos = {k: i for i, k in enumerate(zip(spr["v"], spr["s"], spr["g"], spr["t"], strict=True))}
    dem_pos = {k: i for i, k in enumerate(zip(dem["v"], dem["r"], dem["t"], strict=True))}
    dem_val = dem["demand"].to_numpy(dtype=float)
    pairs = serve[serve["v"].isin(list(red))][["v", "r", "s", "g", "t"]].drop_duplicates()
    reach: dict[tuple, list[tuple]] = {}
    for v, r, s, g, t in pairs.itertuples(index=False):
        reach.setdefault((v, r, t), []).append((s, spr_pos[v, s, g, t]))
    r_list, c_list, v_list, lo = [], [], [], []

    def add(other: list[int], uns: list[int], need: float) -> None:
        other_a, uns_a = np.asarray(other, dtype=np.int64), np.asarray(uns, dtype=np.int64)
        r_list.append(np.full(len(other_a) + len(uns_a), len(lo)))
        c_list.append(np.concatenate([o_inf + other_a, o_uns + uns_a]))
        v_list.append(np.concatenate([tps[other_a], np.ones(len(uns_a))]))
        lo.append(need)

    regions_of: dict[tuple, list] = {}
    for (v, r, t), caps in reach.items():
        regions_of.setdefault((v, t), []).append(r)
        d = dem_pos[v, r, t]
        for lost in sorted({s for s, _ in caps}):
            add([i for s, i in caps if s != lost], [d], float(dem_val[d]))
    n_reg = len(lo)
    for (v, t), regions in regions_of.items():
        if len(regions) < 2:
            continue
        caps = sorted({c for r in regions for c in reach[v, r, t]}, key=lambda c: c[1])
        uns = [dem_pos[v, r, t] for r in regions]
        need = float(dem_val[uns].sum())
        for lost in sorted({s for s, _ in caps}):
            add([i for s, i in caps if s != lost], uns, need)
    if n_reg:
        rows.add("inference_redundancy", n_reg, np.concatenate(r_list[:n_reg]), np.concatenate(c_list[:n_reg]),
                 np.concatenate(v_list[:n_reg]), np.asarray(lo[:n_reg]), INF)
    if len(lo) > n_reg:
        rows.add("inference_redundancy_all", len(lo) - n_reg,
                 np.concatenate(r_list[n_reg:]) - n_reg, np.concatenate(c_list[n_reg:]),
                 np.concatenate(v_list[n_reg:]), np.asarray(lo[n_reg:]), INF)


# --------------------------------------------------------------------------- HiGHS


def to_highs(am: ArrayModel, *, integer: bool = True, time_limit: float | None = None,
             threads: int | None = None, seed: int = 0, mip_gap: float = 1e-4, verbose: bool = False):
    """A highspy.Highs holding the array model (passModel, no files)."""
    from allocator import interrupt
    from allocator.solve import new_silent_highs

    h = new_silent_highs()
    interrupt.watch(h)  # the first Ctrl-C stops it
    if verbose:
        h.setOptionValue("output_flag", True)
        h.setOptionValue("log_to_console", True)
    if time_limit is not None:
        h.setOptionValue("time_limit", float(max(time_limit, 0.01)))
    if threads:
        try:
            h.setOptionValue("threads", int(threads))
        except Exception:  # noqa: BLE001 - HiGHS fixes threads once per process
            pass
    h.setOptionValue("random_seed", int(seed))
    h.setOptionValue("mip_rel_gap", float(mip_gap))
    n, m = am.A.shape[1], am.A.shape[0]
    integ = am.integrality if integer else np.zeros(n, dtype=np.int32)
    h.passModel(n, m, int(am.A.nnz), 1, 1, float(am.offset), am.c, am.col_lower, am.col_upper,
                am.row_lower, am.row_upper, am.A.indptr[:-1].astype(np.int32),
                am.A.indices.astype(np.int32), am.A.data.astype(float), integ)
    return h


# --------------------------------------------------------------------------- strategy


def start_vector(am: ArrayModel, index: Index, plan) -> tuple[np.ndarray, np.ndarray]:
    """(column positions, values) of the integer columns (starts, inference GPUs) of a plan."""
    p = index.placements
    pos = {k: i for i, k in enumerate(zip(p["j"], p["o"], p["s"], p["t"], strict=True))}
    x = np.zeros(am.blocks["start"].stop - am.blocks["start"].start)
    tr = plan["training"]
    for key in zip(tr["job"], tr["option"], tr["site"], tr["start_period"], strict=True):
        i = pos.get((key[0], int(key[1]), key[2], int(key[3])))
        if i is not None:
            x[i] = 1.0
    spr = index.service_periods
    spos = {k: i for i, k in enumerate(zip(spr["v"], spr["s"], spr["g"], spr["t"], strict=True))}
    gi = np.zeros(len(spr))
    ig = plan["inference_gpus"]
    for v, s, g, t, n in zip(ig["service"], ig["site"], ig["gpu_type"], ig["period"], ig["gpus"], strict=True):
        i = spos.get((v, s, g, int(t)))
        if i is not None:
            gi[i] = float(n)
    b = am.blocks
    cols = np.concatenate([np.arange(b["start"].start, b["start"].stop),
                           np.arange(b["gpus_inf"].start, b["gpus_inf"].stop)])
    return cols.astype(np.int32), np.concatenate([x, gi])


def decisions_from_columns(am: ArrayModel, index: Index, x: np.ndarray) -> dict[str, pd.DataFrame]:
    """The decision tables (training, inference_gpus, inference) of a column solution."""
    b = am.blocks
    p = index.placements
    on = np.flatnonzero(x[b["start"]] > 0.5)
    pl = p.iloc[on]
    training = pd.DataFrame({
        "job": pl["j"].astype(str).to_numpy(), "option": pl["o"].to_numpy(dtype=np.int64),
        "site": pl["s"].astype(str).to_numpy(), "gpu_type": pl["g"].astype(str).to_numpy(),
        "gpus": pl["gpus"].to_numpy(dtype=np.int64), "start_period": pl["t"].to_numpy(dtype=np.int64)})
    spr = index.service_periods
    gi = np.rint(x[b["gpus_inf"]]).astype(np.int64)
    held = np.flatnonzero(gi > 0)
    inference_gpus = pd.DataFrame({
        "service": spr["v"].to_numpy()[held], "site": spr["s"].to_numpy()[held],
        "gpu_type": spr["g"].to_numpy()[held], "period": spr["t"].to_numpy(dtype=np.int64)[held],
        "gpus": gi[held]})
    sv = index.serve
    tok = x[b["serve"]]
    flow = np.flatnonzero(tok > 1e-6)
    inference = pd.DataFrame({
        "service": sv["v"].to_numpy()[flow], "region": sv["r"].to_numpy()[flow],
        "site": sv["s"].to_numpy()[flow], "gpu_type": sv["g"].to_numpy()[flow],
        "period": sv["t"].to_numpy(dtype=np.int64)[flow], "tokens_per_s": tok[flow]})
    return {"training": training, "inference_gpus": inference_gpus, "inference": inference}


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


class _Lns:
    """The compact model with a penalised "unplaced" column per mandatory job, an incumbent
    as a full column vector, and sub-MIPs over neighbourhoods of it."""

    def __init__(self, inst: Instance, index: Index, am: ArrayModel, seed: int):
        self.am, self.index = am, index
        self.rng = np.random.default_rng(seed)
        p = index.placements
        b = am.blocks
        self.P = b["start"].stop
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
        self.job_cols = [order[cuts[j]:cuts[j + 1]] for j in range(J)]
        self.mandatory = np.array([bool(index.mandatory[j]) for j in job_ids])
        # training_assign is the first family: one row per job with starts, in job order
        jobs_with = np.unique(self.pj)
        self.job_row = np.full(J, -1, dtype=np.int64)
        self.job_row[jobs_with] = np.arange(len(jobs_with))
        mand = jobs_with[self.mandatory[jobs_with]]
        n0, m = am.A.shape[1], am.A.shape[0]
        self.n0 = n0
        ns = len(mand)
        self.slack_job = mand
        self.slack_of = np.full(J, -1, dtype=np.int64)
        self.slack_of[mand] = n0 + np.arange(ns)
        S = sp.csc_matrix((np.ones(ns), (self.job_row[mand], np.arange(ns))), shape=(m, ns))
        self.A = sp.hstack([am.A, S], format="csc")
        self.A.sort_indices()
        self.c = np.concatenate([am.c, np.full(ns, UNPLACED_PENALTY)])
        self.lo = np.concatenate([am.col_lower, np.zeros(ns)])
        self.hi = np.concatenate([am.col_upper, np.ones(ns)])
        self.integ = np.concatenate([am.integrality, np.zeros(ns, dtype=np.int32)])
        self.rlo, self.rhi = am.row_lower, am.row_upper
        self.n = n0 + ns
        # always free: continuous columns of the model (aux totals, on-demand, the slack);
        # inference columns are free only inside a neighbourhood's sites and window
        self.base_free = np.zeros(self.n, dtype=bool)
        for name in ("ondemand", "aux"):
            self.base_free[b[name]] = True
        self.base_free[n0:] = True
        # with running totals, use[k,t] and ondemand[k,t] can change only where a freed start
        # or inference column is active: elsewhere they stay at the incumbent (exact, not a
        # restriction), which keeps each sub-MIP small (free_mask)
        self.K = len(index.pools)
        self.local = am.use_keys is not None and am.start_pool is not None
        if self.local:
            nu = len(am.use_keys)
            self.use_cols = am.use_first + np.arange(nu)
            self.base_free[self.use_cols] = False
            self.base_free[b["ondemand"]] = False
            self.od_cols = np.arange(b["ondemand"].start, b["ondemand"].stop)
        spr, serve, dem = index.service_periods, index.serve, index.demands
        self.inf_site = _codes(spr["s"].tolist(), sites) if len(spr) else np.zeros(0, np.int64)
        self.inf_t = spr["t"].to_numpy(dtype=np.int64) if len(spr) else np.zeros(0, np.int64)
        self.srv_site = _codes(serve["s"].tolist(), sites) if len(serve) else np.zeros(0, np.int64)
        self.srv_t = serve["t"].to_numpy(dtype=np.int64) if len(serve) else np.zeros(0, np.int64)
        self.uns_t = dem["t"].to_numpy(dtype=np.int64) if len(dem) else np.zeros(0, np.int64)
        self.T = index.periods
        self.win_lo = np.array([self.pt[c].min() if len(c) else 0 for c in self.job_cols])
        self.win_hi = np.array([(self.pt[c] + self.pd[c]).max() if len(c) else 0 for c in self.job_cols])
        self.cheapest = np.array([am.c[c].min() if len(c) else 0.0 for c in self.job_cols])
        self.od_keys = am.ondemand_keys
        pool_site = _codes(index.pools["s"].tolist(), sites)
        self.od_site = pool_site[self.od_keys[:, 0]] if len(self.od_keys) else np.zeros(0, np.int64)
        self.x: np.ndarray | None = None
        self.obj = math.inf
        self.size = min(50, J)
        self.tabu = np.zeros(J, dtype=np.int64)  # unplaced seed tried: not again before then
        self.clock = 0
        self.last_seed = -1
        self.truncated = False  # the last neighbourhood was cut down to ``size`` jobs

    # ---------------------------------------------------------------- sub-models

    def solve_sub(self, free: np.ndarray, time_limit: float, seed: int, mip_gap: float,
                  integer: bool = True, start: bool = True, x: np.ndarray | None = None):
        """Solve the model with every column outside ``free`` fixed at ``x`` (default: the
        incumbent). Returns (model status name, objective or None, column values of ``free``
        or None, seconds)."""
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
        offset = self.am.offset + float(self.c @ fixed_x)
        from allocator import interrupt
        from allocator.solve import new_silent_highs

        h = new_silent_highs()
        interrupt.watch(h)
        h.setOptionValue("time_limit", float(max(time_limit, 0.05)))
        h.setOptionValue("random_seed", int(seed) % 2_000_000_000)
        h.setOptionValue("mip_rel_gap", float(mip_gap))
        integ = self.integ[cols] if integer else np.zeros(len(cols), dtype=np.int32)
        h.passModel(len(cols), len(keep), int(As.nnz), 1, 1, offset, self.c[cols], self.lo[cols],
                    self.hi[cols], rlo, rhi, As.indptr[:-1].astype(np.int32),
                    As.indices.astype(np.int32), As.data.astype(float), integ)
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
        cost = float(self.c @ x) + self.am.offset
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
        self.obj = float(self.c @ x) + self.am.offset
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
        return x, float(self.c @ x) + self.am.offset

    # ---------------------------------------------------------------- neighbourhoods

    def placed(self) -> np.ndarray:
        """Start column of each job in the incumbent (-1: not placed)."""
        out = np.full(len(self.job_ids), -1, dtype=np.int64)
        on = np.flatnonzero(self.x[:self.P] > 0.5)
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
            cur = np.where(placed >= 0, self.am.c[np.maximum(placed, 0)], self.cheapest) - self.cheapest
            cand = np.flatnonzero(cur > 1e-6)
            if not len(cand):
                return None
            top = cand[np.argsort(-cur[cand])][:max(10, len(cand) // 5)]
            seed = int(rng.choice(top))
        if seed is not None:
            sites = np.unique(self.psite[self.job_cols[seed]])
            ta, tb = int(self.win_lo[seed]), int(self.win_hi[seed])
        elif kind == "ondemand":
            od = self.x[self.am.blocks["ondemand"]]
            busy = np.flatnonzero(od > 0.5)
            if not len(busy):
                return None
            i = int(rng.choice(busy, p=od[busy] / od[busy].sum()))
            t = int(self.od_keys[i, 1])
            sites = np.array([self.od_site[i]])
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
        if len(jobs):
            cols = np.concatenate([self.job_cols[j] for j in jobs])
            cur = (self.x if x is None else x)[:self.P][cols] > 0.5
            cols = cols[np.isin(self.psite[cols], sites) | cur]
            free[cols] = True
        # inference inside the sites and at most 48 periods of the window
        if tb - ta > 48:
            mid = (ta + tb) // 2
            ta, tb = max(0, mid - 24), mid + 24
        b = self.am.blocks
        inwin = (self.inf_t >= ta) & (self.inf_t < tb) & np.isin(self.inf_site, sites)
        free[b["gpus_inf"].start + np.flatnonzero(inwin)] = True
        inwin = (self.srv_t >= ta) & (self.srv_t < tb) & np.isin(self.srv_site, sites)
        free[b["serve"].start + np.flatnonzero(inwin)] = True
        inwin = (self.uns_t >= ta) & (self.uns_t < tb)
        free[b["unserved"].start + np.flatnonzero(inwin)] = True
        if self.local:
            am = self.am
            touched = np.zeros((self.K, self.T + 1), dtype=bool)
            sc = np.flatnonzero(free[:self.P])
            if len(sc):
                ri, rt = _running(self.pt[sc], self.pd[sc])
                touched[am.start_pool[sc[ri]], rt] = True
            ic = np.flatnonzero(free[b["gpus_inf"]])
            if len(ic):
                touched[am.inf_pool[ic], self.inf_t[ic]] = True
            uk = am.use_keys
            free[self.use_cols[touched[uk[:, 0], uk[:, 1]]]] = True
            if len(self.od_keys):
                free[self.od_cols[touched[self.od_keys[:, 0], self.od_keys[:, 1]]]] = True
        return free


class _BoundWorker(threading.Thread):
    """The second core: the LP relaxation (its dual values give a bound that is valid even
    when the LP stops early), then HiGHS's own MIP for the time left."""

    def __init__(self, am: ArrayModel, deadline: float, options, mip_after: bool):
        super().__init__(daemon=True)
        self.am, self.deadline, self.options, self.mip_after = am, deadline, options, mip_after
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
            h = to_highs(self.am, integer=False, time_limit=max(1.0, self.deadline - t0 - 1.0),
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
                lb = safe_bound(self.am, y)
                self.lp_bound = lb if math.isfinite(lb) else None
            if sol.value_valid and sol.dual_valid:
                x = np.asarray(sol.col_value)[self.am.blocks["start"]]
                rc = np.asarray(sol.col_dual)[self.am.blocks["start"]]
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
            h = to_highs(self.am, integer=True, time_limit=remaining, seed=self.options.seed,
                         mip_gap=self.options.mip_gap)
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


def safe_bound(am: ArrayModel, y: np.ndarray) -> float:
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


def _span(am: ArrayModel, name: str) -> slice:
    """The rows of a family added in one piece (training_assign, inference_demand,
    inference_capacity)."""
    first = am.family_first.get(name, 0)
    return slice(first, first + am.families.get(name, 0))


def relaxed_bound(am: ArrayModel) -> float:
    """A lower bound that needs no LP: every job at its cheapest start and every token of
    demand at its cheapest way (served at the energy cost of the GPUs it needs plus egress, or
    unserved), with no capacity, power or bandwidth limits. It is ``safe_bound`` at multipliers
    written down directly: the job's cheapest start cost on its assignment row, minus the
    energy per token/s on each inference capacity row, the cheapest way per token/s on each
    demand row, zero elsewhere. The fallback when the LP relaxation cannot finish in time."""
    m = am.A.shape[0]
    y = np.zeros(m)
    b = am.blocks
    ra, rd, rc = _span(am, "training_assign"), _span(am, "inference_demand"), _span(am, "inference_capacity")
    st = am.A[:, b["start"]].tocoo()
    on = (st.row >= ra.start) & (st.row < ra.stop)
    cheapest = np.full(m, np.inf)
    np.minimum.at(cheapest, st.row[on], am.c[b["start"]][st.col[on]])
    rows = np.arange(ra.start, ra.stop)
    got = np.isfinite(cheapest[rows])
    # mandatory rows (lower bound 1) take the cheapest cost; an optional job's row has only
    # an upper bound, so its multiplier may only be <= 0
    mand = np.isfinite(am.row_lower[rows])
    y[rows[got]] = np.where(mand[got], cheapest[rows[got]], np.minimum(cheapest[rows[got]], 0.0))
    ni = b["gpus_inf"].stop - b["gpus_inf"].start
    if rc.stop > rc.start and ni == rc.stop - rc.start:
        # capacity row i holds gpus_inf column i with coefficient -tokens/s per GPU
        gi = am.A[rc, b["gpus_inf"]].tocsc()
        coef = np.asarray(gi.sum(axis=0)).ravel()
        y[rc] = np.where(coef < 0, am.c[b["gpus_inf"]] / np.where(coef < 0, coef, -1.0), 0.0)
    if rd.stop > rd.start:
        sv = am.A[:, b["serve"]].tocoo()
        in_d = (sv.row >= rd.start) & (sv.row < rd.stop)
        in_c = (sv.row >= rc.start) & (sv.row < rc.stop)
        eff = am.c[b["serve"]].copy()
        np.add.at(eff, sv.col[in_c], -y[sv.row[in_c]])
        way = am.c[b["unserved"]].copy()  # unserved column i sits on demand row i
        np.minimum.at(way, sv.row[in_d] - rd.start, eff[sv.col[in_d]])
        y[rd] = way
    return safe_bound(am, y)


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

    Returns a Result whose plan is evaluated by the independent verifier (objective = the
    verified cost) and whose bound is the best valid one found. Cost objective only."""
    from allocator import interrupt, progress
    from allocator.heuristics import greedy_schedule
    from allocator.network import Network
    from allocator.results import Result, Status
    from allocator.verify import evaluate

    t0 = time.perf_counter()
    limit = options.time_limit_s if options.time_limit_s is not None else 600.0
    deadline = t0 + limit
    net = net or Network(inst)
    report = progress.current()  # taken here: the search threads do not inherit it
    log = LnsLog()
    am = build_arrays(inst, index, compact=True)
    log.build_s, log.size = am.build_s, am.shape
    lns = _Lns(inst, index, am, options.seed)
    log.relaxed_bound = relaxed_bound(am)
    # HiGHS's whole MIP after the LP only where it can get somewhere; on large models the
    # second core runs a second neighbourhood search instead
    worker = _BoundWorker(am, deadline, options, mip_after=am.A.nnz <= LP_WAIT_NONZEROS)
    if am.A.nnz <= LP_MAX_NONZEROS:
        worker.start()
    else:
        # far beyond what the LP finishes on this machine class: the relaxed bound stands
        log.lp_status = f"not run: {am.A.nnz:,} nonzeros > {LP_MAX_NONZEROS:,}"
        worker.lp_done.set()

    def elapsed() -> float:
        return time.perf_counter() - t0

    def try_plan(name: str, plan) -> None:
        cols, vals = start_vector(am, index, plan)
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
    if am.A.nnz <= LP_WAIT_NONZEROS:
        worker.lp_done.wait(timeout=max(0.0, min(0.15 * limit, 20.0)))
    rounded = False
    if worker.lp_done.is_set() and worker.prefer is not None:
        try_plan("rounding", greedy_schedule(inst, index, net=net, prefer=worker.prefer))
        rounded = True
    try_plan("greedy", greedy_schedule(inst, index, net=net))
    if lns.x is None:
        worker.stop()
        if worker.is_alive():
            worker.join()
        return Result(status=Status.NO_SOLUTION, solve_s=elapsed(), solver=f"HiGHS {_version()} (lns)",
                      options=_options_dict(options), message="no start plan for the neighbourhood search",
                      summary={"strategy": "lns", "stages": _log_dict(log)})

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
                    plan = greedy_schedule(inst, index, net=net, prefer=worker.prefer)
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
                if report is not None:
                    report.search(incumbent=lns.obj, bound=best_bound())
                    if kind == "unplaced" and seed_job >= 0:
                        lns.tabu[seed_job] = it + 10
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

    # the plan: the incumbent, or HiGHS's own if it found a cheaper one
    candidates = []
    if not (lns.x[lns.n0:] > 0.5).any():
        candidates.append(("lns", lns.x[:lns.n0]))
    if worker.mip_x is not None:
        candidates.append(("mip", worker.mip_x))
    best = None
    for name, x in candidates:
        dec = decisions_from_columns(am, index, x)
        ev = evaluate(inst, dec, net=net)
        if not ev.violations and (best is None or ev.total_cost_usd < best[0]):
            best = (ev.total_cost_usd, name, ev)
    seconds = elapsed()
    summary = {"strategy": "lns", "stages": _log_dict(log)}
    if best is None:
        missing = [lns.job_ids[j] for j in lns.slack_job[lns.x[lns.n0:] > 0.5]]
        why = [f"mandatory job {j} could not be placed within the limits" for j in missing[:5]]
        return Result(status=Status.NO_SOLUTION, solve_s=seconds, solver=f"HiGHS {_version()} (lns)",
                      options=_options_dict(options), explanation=why, summary=summary,
                      message="no feasible plan within the limits" + (f": {'; '.join(why)}" if why else ""))
    cost, name, ev = best
    bounds = [b for b in (log.lp_bound, log.mip_bound, log.relaxed_bound) if b is not None and math.isfinite(b)]
    bound = min(max(bounds), cost) if bounds else None
    gap = max(0.0, (cost - bound) / max(abs(cost), 1e-9)) if bound is not None else None
    status = Status.OPTIMAL if gap is not None and gap <= options.mip_gap else Status.FEASIBLE
    msg = (f"plan from {'the neighbourhood search' if name == 'lns' else 'HiGHS'} "
           f"({log.iterations} sub-MIPs, {log.improvements} improvements, start: {log.start}); "
           f"bound from the {_bound_source(bound, log)}")
    if interrupt.requested():
        msg = f"{interrupt.MESSAGE}; {msg}"
    return Result(
        status=status, objective=cost, bound=bound, gap=gap, costs=dict(ev.costs),
        emissions_t=ev.emissions_t, build_s=log.build_s, solve_s=seconds,
        solver=f"HiGHS {_version()} (lns)", options=_options_dict(options), message=msg,
        frames=dict(ev.frames), summary=summary,
    )


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


def _hs():
    from allocator.solve import _hs as silent_import

    return silent_import()  # the first Highs object of a process prints a banner


def _version() -> str:
    from allocator.solve import new_silent_highs

    return new_silent_highs().version()


def _options_dict(options) -> dict:
    import dataclasses

    d = dataclasses.asdict(options)
    d["disabled_families"] = list(d.get("disabled_families", ()))
    return d
