"""Large instances: the model as arrays, LP relaxation, LP-guided rounding, warm-started MIP.

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
docs/performance.md: LP relaxation of the compact model (the bound), the greedy planner guided
by the LP (each job tries its LP starts first, then its lowest reduced costs), then HiGHS on
the compact MIP warm-started from that plan for the remaining time. The final plan is
evaluated by the independent verifier (allocator.verify.evaluate); its objective is the
verified cost, its bound the best of the LP and the MIP dual bound.

This module does not import Pyomo.
"""

from __future__ import annotations

import math
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
            _redundancy_rows(rows, serve, spr, tps, red, o_serve, o_inf)

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
    tr_r, tr_c, tr_v = [], [], []  # (link * T + t) keyed terms
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
            w0 = new_aux(NB, 0.0, INF)
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
        elif len(x_arr):
            rr, rt = _running(pt[x_arr], pd_[x_arr])
            tr_r.append(li_arr[rr] * T + rt)
            tr_c.append(start_cols[x_arr[rr]])
            tr_v.append(gbps[x_arr[rr]])
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
    if tr_r:
        keys = np.concatenate(tr_r)
        uk, inv = np.unique(keys, return_inverse=True)
        rows.add("network_bandwidth", len(uk), inv, np.concatenate(tr_c), np.concatenate(tr_v), -INF,
                 bw[uk // T])

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
        np.ones(P), _serve_upper(serve, dem) if NS else np.zeros(0), dem_val,
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
        ondemand_keys=od_keys, families=dict(rows.families),
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


def _redundancy_rows(rows: _Rows, serve, spr, tps, red, o_serve, o_inf) -> None:
    """inference_redundancy[v,s,t]: capacity of v at sites other than s >= all v serves at t."""
    sv = spr["v"].to_numpy()
    mask = np.isin(sv, list(red))
    r_list, c_list, v_list = [], [], []
    nrow = 0
    spr_idx = np.flatnonzero(mask)
    grp: dict[tuple, list[int]] = {}
    for i in spr_idx:
        grp.setdefault((sv[i], int(spr["t"].iat[i])), []).append(i)
    served: dict[tuple, list[int]] = {}
    if len(serve):
        for i, (v, t) in enumerate(zip(serve["v"], serve["t"], strict=True)):
            if v in red:
                served.setdefault((v, int(t)), []).append(i)
    ssite = spr["s"].to_numpy()
    for key in sorted(grp, key=lambda k: (str(k[0]), k[1])):
        members = np.asarray(grp[key])
        srv = np.asarray(served.get(key, []), dtype=np.int64)
        for lost in sorted(set(ssite[members])):
            other = members[ssite[members] != lost]
            r_list.append(np.full(len(other) + len(srv), nrow))
            c_list.append(np.concatenate([o_inf + other, o_serve + srv]))
            v_list.append(np.concatenate([tps[other], -np.ones(len(srv))]))
            nrow += 1
    if nrow:
        rows.add("inference_redundancy", nrow, np.concatenate(r_list), np.concatenate(c_list),
                 np.concatenate(v_list), 0.0, INF)


# --------------------------------------------------------------------------- HiGHS


def to_highs(am: ArrayModel, *, integer: bool = True, time_limit: float | None = None,
             threads: int | None = None, seed: int = 0, mip_gap: float = 1e-4, verbose: bool = False):
    """A highspy.Highs holding the array model (passModel, no files)."""
    import highspy

    h = highspy.Highs()
    h.setOptionValue("output_flag", bool(verbose))
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
    """What each stage of ``solve_lns`` found (kept in the result's summary)."""

    build_s: float = 0.0
    lp_s: float = 0.0
    lp_bound: float | None = None
    rounding_s: float = 0.0
    rounding_cost: float | None = None
    greedy_cost: float | None = None
    mip_s: float = 0.0
    mip_objective: float | None = None
    mip_bound: float | None = None
    size: dict[str, int] = field(default_factory=dict)


def solve_lns(inst: Instance, index: Index, options, *, net=None):
    """The large-instance strategy: LP bound, LP-guided rounding, warm-started MIP.

    Returns an allocator Result whose schedule is evaluated by the independent verifier
    (objective = verified cost) and whose bound is the best of the LP relaxation and the
    MIP's dual bound (both of the same model as allocator.formulation). Cost objective only."""
    from allocator.heuristics import greedy_schedule
    from allocator.network import Network
    from allocator.results import Result, Status
    from allocator.verify import evaluate

    t0 = time.perf_counter()
    limit = options.time_limit_s if options.time_limit_s is not None else 600.0
    deadline = t0 + limit
    net = net or Network(inst)
    log = LnsLog()
    am = build_arrays(inst, index, compact=True)
    log.build_s, log.size = am.build_s, am.shape

    # 1. the LP relaxation: the bound, and the values that guide the rounding
    h = to_highs(am, integer=False, time_limit=max(1.0, deadline - time.perf_counter()),
                 threads=options.threads, seed=options.seed, verbose=options.verbose)
    t1 = time.perf_counter()
    h.run()
    log.lp_s = time.perf_counter() - t1
    lp_ok = h.getModelStatus() == _hs().HighsModelStatus.kOptimal
    prefer = None
    if lp_ok:
        log.lp_bound = float(h.getInfo().objective_function_value)
        sol = h.getSolution()
        x = np.asarray(sol.col_value)[am.blocks["start"]]
        rc = np.asarray(sol.col_dual)[am.blocks["start"]]
        prefer = (x, rc)
    del h

    # 2. rounding (and the plain greedy plan, kept if it is cheaper)
    t1 = time.perf_counter()
    candidates = []
    for name, pref in (("rounding", prefer), ("greedy", None)):
        if name == "rounding" and pref is None:
            continue
        plan = greedy_schedule(inst, index, net=net, prefer=pref)
        ev = evaluate(inst, plan, net=net)
        ok = not ev.violations
        if name == "rounding":
            log.rounding_cost = ev.total_cost_usd if ok else None
        else:
            log.greedy_cost = ev.total_cost_usd if ok else None
        if ok:
            candidates.append((ev.total_cost_usd, name, plan, ev))
    log.rounding_s = time.perf_counter() - t1

    # 3. the MIP, warm-started from the best plan, for the time left
    mip_bound = None
    remaining = deadline - time.perf_counter()
    if remaining > 1.0:
        h = to_highs(am, integer=True, time_limit=remaining, threads=options.threads,
                     seed=options.seed, mip_gap=options.mip_gap, verbose=options.verbose)
        if candidates:
            best_plan = min(candidates, key=lambda c: c[0])[2]
            cols, vals = start_vector(am, index, best_plan)
            h.setSolution(len(cols), cols, vals)
        t1 = time.perf_counter()
        h.run()
        log.mip_s = time.perf_counter() - t1
        info = h.getInfo()
        b = float(info.mip_dual_bound)
        mip_bound = b if math.isfinite(b) else None
        log.mip_bound = mip_bound
        if int(info.primal_solution_status) == 2:
            log.mip_objective = float(info.objective_function_value)
            dec = decisions_from_columns(am, index, np.asarray(h.getSolution().col_value))
            ev = evaluate(inst, dec, net=net)
            if not ev.violations:
                candidates.append((ev.total_cost_usd, "mip", dec, ev))
        del h

    seconds = time.perf_counter() - t0
    opts = _options_dict(options)
    summary = {"strategy": "lns", "stages": log.__dict__.copy()}
    if not candidates:
        return Result(status=Status.NO_SOLUTION, solve_s=seconds, solver=f"HiGHS {_version()} (lns)",
                      options=opts, message="no feasible plan within the limits", summary=summary)
    cost, name, plan, ev = min(candidates, key=lambda c: c[0])
    bounds = [b for b in (log.lp_bound, mip_bound) if b is not None]
    bound = min(max(bounds), cost) if bounds else None
    gap = (cost - bound) / max(abs(cost), 1e-9) if bound is not None else None
    status = Status.OPTIMAL if gap is not None and gap <= options.mip_gap else Status.FEASIBLE
    return Result(
        status=status, objective=cost, bound=bound, gap=gap, costs=dict(ev.costs),
        emissions_t=ev.emissions_t, build_s=log.build_s, solve_s=seconds, solver=f"HiGHS {_version()} (lns)",
        options=opts, message=f"plan from {name}; LP bound {log.lp_bound}", frames=dict(ev.frames),
        summary=summary,
    )


def _hs():
    import highspy

    return highspy


def _version() -> str:
    h = _hs().Highs()
    return h.version()


def _options_dict(options) -> dict:
    import dataclasses

    d = dataclasses.asdict(options)
    d["disabled_families"] = list(d.get("disabled_families", ()))
    return d
