"""Sparse index sets: the (job, option, site, start) and (service, region, site, GPU type)
combinations that can appear in a feasible schedule, computed from data before any Pyomo
object exists.

Nothing here builds a full product of sets: options are joined with the pools that carry
their GPU type, filtered (pool size, residency, power, dataset route), and only then expanded
over the start periods inside each job's window. Every row carries the coefficients the
formulation needs, so the model builder never looks data up per variable.

Periods count from 0. An option of ``hours`` h lasts ``d = ceil(hours / H - 1e-9)`` periods; a
start in period t runs in t .. t+d-1 and ends at ``end = t + d <= T``.

This module does not import Pyomo.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import pandas as pd

from allocator.eligibility import (
    allowed_text,
    gang_fits,
    job_window,
    power_fits,
    site_allowed,
    window_min,
    within_slo,
)
from allocator.network import Network, Route
from allocator.quantities import (  # EPS, GB_PER_TB, duration_periods: also read from here
    GB_PER_TB,
    duration_periods,
    gbps_of_tokens,
    mw_per_gpu,
    staging_gbps,
)
from allocator.schema import Instance, series_list

PLACEMENT_COLUMNS = [
    "j", "o", "s", "g", "t", "d", "end", "gpus", "need_mw", "site_extra_usd", "tardiness_h",
    "tardiness_usd", "egress_usd", "staging_gbps", "links", "late_h",
]
FLOW_COLUMNS = [
    "v", "r", "s", "g", "tokens_per_s_per_gpu", "latency_ms", "egress_usd_per_gb",
    "gbps_per_token_per_s", "links",
]


@dataclass
class Index:
    """Eligible tuples and their coefficients (pandas frames, one row per tuple).

    placements       PLACEMENTS (j, o, s, t) with g, d, end, gpus, need_mw, site_extra_usd,
                     tardiness_h, tardiness_usd, egress_usd (dataset staging), staging_gbps,
                     links (tuple of link ids of the staging route), late_h (0 here)
    late_placements  hard-deadline overruns (late_h > 0): used only by the elastic model, so
                     made on first use (generated XL: 15.6M rows, 17x the placements)
    unplaced         job -> why it has no placement (mandatory ones make the instance infeasible)
    flows            FLOWS (v, r, s, g) within the latency SLO, with tokens_per_s_per_gpu,
                     latency_ms, egress_usd_per_gb, gbps_per_token_per_s, links
    demands          (v, r, t, demand) with demand > 0 tokens/s
    serve            (v, r, s, g, t): flows x periods with demand
    service_pools    SERVICE_POOLS (v, s, g, tokens_per_s_per_gpu)
    service_periods  (v, s, g, t): the index of gpus_inf
    pools            (s, g, available, reserved, reserved/ondemand price, power_kw, pue, kw_per_gpu)
    site_periods     (s, t, power_cap_mw, energy_price_usd_per_mwh, carbon_g_per_kwh)
    links            (l, label, a, b, bandwidth_gbps, egress_usd_per_gb) per instance link;
                     a link's id ``l`` is its 0-based position in ``Instance.links``
    precedences      (j, p): j may start only after p has ended
    """

    periods: int
    period_hours: float
    jobs: list[str]
    mandatory: dict[str, bool]
    value_usd: dict[str, float]
    placements: pd.DataFrame
    unplaced: dict[str, str]
    flows: pd.DataFrame
    demands: pd.DataFrame
    serve: pd.DataFrame
    service_pools: pd.DataFrame
    service_periods: pd.DataFrame
    pools: pd.DataFrame
    site_periods: pd.DataFrame
    links: pd.DataFrame
    precedences: list[tuple[str, str]]
    redundant_services: list[str] = field(default_factory=list)
    #: what makes late_placements: (inst, net, pools, site_periods, labels), or a frame
    _late: object = field(default=None, repr=False, compare=False)

    @property
    def late_placements(self) -> pd.DataFrame:
        """Hard-deadline overruns (late_h > 0), the elastic model's extra starts: built from
        the instance on first use and kept."""
        if not isinstance(self._late, pd.DataFrame):
            if self._late is None:
                self._late = self.placements.iloc[0:0]
            else:
                self._late = _placements(*self._late, late=True)[1]
        return self._late

    @property
    def unplaceable_mandatory(self) -> list[str]:
        """Mandatory jobs with no eligible placement: the instance is infeasible."""
        return [j for j in self.jobs if j in self.unplaced and self.mandatory.get(j, True)]


# --------------------------------------------------------------------------- helpers


def link_labels(inst: Instance) -> list[str]:
    """One label per instance link, ``a-b``; a repeated pair gets ``#i`` (its position)."""
    seen: dict[str, int] = {}
    for link in inst.links:
        key = f"{link.a}-{link.b}"
        seen[key] = seen.get(key, 0) + 1
    return [
        f"{lk.a}-{lk.b}" if seen[f"{lk.a}-{lk.b}"] == 1 else f"{lk.a}-{lk.b}#{i}"
        for i, lk in enumerate(inst.links)
    ]


def _pools_frame(inst: Instance) -> pd.DataFrame:
    kw = {g.id: g.power_kw for g in inst.gpu_types}
    rows = []
    for s in inst.sites:
        for p in s.pools:
            if p.gpu_type not in kw:
                continue  # reported by validation
            rows.append((s.id, p.gpu_type, p.available, p.reserved, p.reserved_price_usd_per_gpu_h,
                         p.ondemand_price_usd_per_gpu_h, kw[p.gpu_type], s.pue,
                         mw_per_gpu(kw[p.gpu_type], s.pue), s.zone))
    cols = ["s", "g", "available", "reserved", "reserved_price_usd_per_gpu_h",
            "ondemand_price_usd_per_gpu_h", "power_kw", "pue", "mw_per_gpu", "zone"]
    df = _frame(rows, cols, ("s", "g", "zone"))
    # one pool per (site, type): a repeated pool is merged (validation warns about it)
    if df.duplicated(["s", "g"]).any():
        df = df.groupby(["s", "g"], as_index=False, sort=False).agg(
            available=("available", "sum"), reserved=("reserved", "sum"),
            reserved_price_usd_per_gpu_h=("reserved_price_usd_per_gpu_h", "max"),
            ondemand_price_usd_per_gpu_h=("ondemand_price_usd_per_gpu_h", "max"),
            power_kw=("power_kw", "first"), pue=("pue", "first"), mw_per_gpu=("mw_per_gpu", "first"),
            zone=("zone", "first"))
    return df


def _site_periods_frame(inst: Instance) -> pd.DataFrame:
    T = inst.horizon.periods
    frames = []
    for s in inst.sites:
        frames.append(pd.DataFrame({
            "s": _text([s.id] * T),
            "t": np.arange(T),
            "power_cap_mw": _padded(series_list(s.ceiling_mw, T), T),  # max_mw if decided
            "energy_price_usd_per_mwh": _padded(series_list(s.energy_price_usd_per_mwh, T), T),
            "carbon_g_per_kwh": _padded(series_list(s.carbon_g_per_kwh, T), T),
        }))
    if not frames:
        return pd.DataFrame(columns=["s", "t", "power_cap_mw", "energy_price_usd_per_mwh",
                                     "carbon_g_per_kwh"])
    return pd.concat(frames, ignore_index=True)


def _padded(values: list[float], T: int) -> np.ndarray:
    """A series of the wrong length (validation reports it) is cut or padded with its last value."""
    arr = np.asarray(values[:T], dtype=float)
    if len(arr) < T:
        arr = np.concatenate([arr, np.full(T - len(arr), arr[-1] if len(arr) else 0.0)])
    return arr


def _empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})


def _text(values) -> pd.Series:
    """Identifiers as a plain object column. The index frames are internal and small frames
    dominate tiny solves: pandas' Arrow string columns cost several times more per merge,
    lookup and filter than object columns (about half the CPU of a tiny solve)."""
    return pd.Series(list(values), dtype=object)


def _frame(rows: list[tuple], columns: list[str], text: tuple[str, ...]) -> pd.DataFrame:
    """A frame from row tuples whose ``text`` columns (ids, tuples) are object columns."""
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
    return pd.DataFrame({c: (_text(v) if c in text else np.asarray(v))
                         for c, v in zip(columns, cols, strict=True)})


# --------------------------------------------------------------------------- placements


def _placements(inst: Instance, net: Network, pools: pd.DataFrame, site_periods: pd.DataFrame,
                labels: list[str], late: bool = False
                ) -> tuple[pd.DataFrame, pd.DataFrame | None, dict[str, str]]:
    """(placements, late placements or None unless ``late``, unplaced jobs and why)."""
    T, H = inst.horizon.periods, inst.horizon.period_hours
    sites = {s.id: s for s in inst.sites}
    sources = {d.id: d for d in inst.data_sources}
    unplaced: dict[str, str] = {}

    opt_rows = []
    for job in inst.jobs:
        if not job.options:
            unplaced[job.id] = "it has no execution option (its profile gives none for the GPU types here)"
            continue
        _, hard_end = job_window(job, T)
        for o, opt in enumerate(job.options):
            opt_rows.append((job.id, o, opt.gpu_type, opt.gpus, duration_periods(opt.hours, H),
                             job.release_period, hard_end))
    opts = _frame(opt_rows, ["j", "o", "g", "gpus", "d", "release", "hard_end"], ("j", "g"))
    jobs = {j.id: j for j in inst.jobs}

    def drop_stage(before: pd.DataFrame, after: pd.DataFrame, why) -> None:
        lost = set(before["j"]) - set(after["j"]) - set(unplaced)
        if lost:  # rows per job grouped once, not one filter of the frame per lost job
            rows = before.groupby("j", sort=False).indices
            for j in sorted(lost):
                unplaced[j] = why(j, before.iloc[rows[j]])

    # 1. pools of the option's GPU type
    cand = opts.merge(pools[["s", "g", "available", "mw_per_gpu", "zone"]], on="g", how="inner")
    drop_stage(opts, cand, lambda j, b: "no site has a pool of its GPU type(s) "
               + ", ".join(sorted(set(b["g"]))))
    # 2. residency
    if len(cand):
        allowed = np.array([site_allowed(jobs[j], s, z) for j, s, z in
                            zip(cand["j"], cand["s"], cand["zone"], strict=True)], dtype=bool)
        before, cand = cand, cand[allowed]
        drop_stage(before, cand, lambda j, b: "no site offering its GPU types is in its allowed "
                   + allowed_text(jobs[j]))
    # 3. the gang fits the pool
    before, cand = cand, cand[gang_fits(cand["gpus"], cand["available"])]
    drop_stage(before, cand, lambda j, b: "it needs " + " or ".join(
        f"{int(r.gpus)} {r.g}" for r in b.drop_duplicates(["o"]).itertuples())
        + f" but the largest allowed pool offers {int(b['available'].max())}")
    # 4. the gang's power alone fits the site's ceiling at its highest
    cand = cand.assign(need_mw=cand["gpus"] * cand["mw_per_gpu"])
    cap_max = site_periods.groupby("s")["power_cap_mw"].max()
    before, cand = cand, cand[power_fits(cand["need_mw"], cand["s"].map(cap_max).astype(float))]
    drop_stage(before, cand, lambda j, b: f"its smallest gang needs {b['need_mw'].min():.1f} MW "
               f"but no allowed site has more than {float(b['s'].map(cap_max).max()):.1f} MW")
    # 5. dataset route (one route per (data source, site), not per candidate row)
    ds_egress, ds_links, ok = [], [], []
    routes: dict[tuple[str, str], Route | None] = {}
    for j, s in zip(cand["j"], cand["s"], strict=True):
        job = jobs[j]
        if job.dataset_tb > 0 and job.dataset_source:
            key = (job.dataset_source, s)
            if key in routes:
                route = routes[key]
            else:
                src = sources.get(job.dataset_source)
                route = routes[key] = net.route(src.node_id, sites[s].node_id) \
                    if src is not None else None
            if route is None:
                ok.append(False)
                ds_egress.append(0.0)
                ds_links.append(())
                continue
            ok.append(True)
            ds_egress.append(job.dataset_tb * GB_PER_TB * route.egress_usd_per_gb)
            ds_links.append(tuple(route.links))
        else:
            ok.append(True)
            ds_egress.append(0.0)
            ds_links.append(())
    cand = cand.assign(egress_usd=np.asarray(ds_egress, dtype=float),
                       links=pd.Series(ds_links, index=cand.index, dtype=object))
    before, cand = cand, cand[np.array(ok, dtype=bool)]
    drop_stage(before, cand, lambda j, b: f"no allowed site is connected to its data source "
               f"{jobs[j].dataset_source!r}")

    # 6. expand over start periods (normal window, then hard-deadline overruns). A start is a
    # (candidate row, t) pair held in numpy arrays until the end: a large instance has
    # millions of starts, so every filter below is a mask and each frame is built once.
    cand = cand.reset_index(drop=True)
    # job code: position in inst.jobs (a repeated id maps to its last job, as the dicts do)
    jid = {j.id: k for k, j in enumerate(inst.jobs)}
    cj = np.fromiter((jid[j] for j in cand["j"]), dtype=np.int64, count=len(cand))
    release = cand["release"].to_numpy(dtype=np.int64)
    last = cand["hard_end"].to_numpy(dtype=np.int64) - cand["d"].to_numpy(dtype=np.int64)
    n_rows, n_t = _expand(release, last)
    if late:
        l_rows, l_t = _expand(np.maximum(release, last + 1), T - cand["d"].to_numpy(dtype=np.int64))
    else:
        l_rows = l_t = np.zeros(0, dtype=np.int64)
    fits = _power_window(cand, site_periods, (n_rows, n_t), (l_rows, l_t))
    n_rows, n_t = n_rows[fits[0]], n_t[fits[0]]
    l_rows, l_t = l_rows[fits[1]], l_t[fits[1]]
    if len(n_rows) or len(cand):
        placed = np.zeros(len(inst.jobs), dtype=bool)
        placed[cj[n_rows]] = True
        lost = {j for j in set(cand["j"]) if not placed[jid[j]]} - set(unplaced)
        by_job = cand.groupby("j", sort=False).indices if lost else {}
        for j in sorted(lost):
            job = jobs[j]
            b = cand.iloc[by_job[j]]
            last_start = int((b["hard_end"] - b["d"]).max())
            if last_start < job.release_period:
                unplaced[j] = (f"its shortest option lasts {int(b['d'].min())} periods but its window "
                               f"is periods {job.release_period}..{int(b['hard_end'].max())}")
            else:
                unplaced[j] = ("in every start period of its window some period of the run has a "
                               "power ceiling below the gang's power")
    # 7. predecessors: a job cannot start before the earliest end of each predecessor
    d = cand["d"].to_numpy(dtype=np.int64)
    keep = _prune_by_predecessors(inst, jid, cj[n_rows], n_t, n_t + d[n_rows], unplaced)
    n_rows, n_t = n_rows[keep], n_t[keep]
    alive = np.zeros(len(inst.jobs), dtype=bool)
    alive[cj[n_rows]] = True
    alive[[jid[j] for j in unplaced]] = True
    deadline = _per_job(jid, {j.id: min(j.deadline_period or T, T) for j in inst.jobs}, np.int64)
    l_job = cj[l_rows]
    late_h = np.maximum(l_t + d[l_rows] - deadline[l_job], 0) * H
    keep = alive[l_job] & (late_h > 0)
    l_rows, l_t, late_h = l_rows[keep], l_t[keep], late_h[keep]

    cols = _candidate_columns(cand, cj, jid, inst, jobs)
    normal = _finish(cols, n_rows, n_t, np.zeros(len(n_rows)), H)
    return normal, (_finish(cols, l_rows, l_t, late_h, H) if late else None), unplaced


def _expand(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start periods t in lo..hi (inclusive) of each candidate row: (row positions, t)."""
    n = np.maximum(hi - lo + 1, 0).astype(np.int64)
    rows = np.repeat(np.arange(len(n)), n)
    # t = lo + (position within the row's run) = position overall - (run start - lo)
    t = np.arange(n.sum(), dtype=np.int64) - np.repeat(np.cumsum(n) - n - lo.astype(np.int64), n)
    return rows, t


def _power_window(cand: pd.DataFrame, site_periods: pd.DataFrame,
                  *starts: tuple[np.ndarray, np.ndarray]) -> list[np.ndarray]:
    """Per (rows, t) pair of starts: whether the gang power fits the minimum ceiling over the
    run's periods. The window minima of each (site, duration) are laid end to end in one array,
    so a start's minimum is one lookup at its candidate's offset plus t."""
    used = np.zeros(len(cand), dtype=bool)
    for rows, _ in starts:
        used[rows] = True
    if not used.any():
        return [np.ones(len(rows), dtype=bool) for rows, _ in starts]
    caps = {s: g["power_cap_mw"].to_numpy(dtype=float) for s, g in site_periods.groupby("s", sort=False)}
    s_list = cand["s"].tolist()
    d_list = cand["d"].to_numpy(dtype=np.int64).tolist()
    offset = np.zeros(len(cand), dtype=np.int64)
    at: dict[tuple, int] = {}
    windows: list[np.ndarray] = []
    size = 0
    for i in np.flatnonzero(used).tolist():
        key = (s_list[i], d_list[i])
        o = at.get(key)
        if o is None:
            w = window_min(caps[key[0]], key[1])
            o = at[key] = size
            windows.append(w)
            size += len(w)
        offset[i] = o
    wmin = np.concatenate(windows)
    need = cand["need_mw"].to_numpy(dtype=float)
    return [power_fits(need[rows], wmin[offset[rows] + t]) for rows, t in starts]


def _per_job(jid: dict[str, int], values: dict[str, object], dtype) -> np.ndarray:
    """``values`` (job id -> value) as an array indexed by job code (``jid``)."""
    out = np.zeros(max(jid.values(), default=-1) + 1, dtype=dtype)
    for j, v in values.items():
        out[jid[j]] = v
    return out


def _prune_by_predecessors(inst: Instance, jid: dict[str, int], code: np.ndarray, t: np.ndarray,
                           end: np.ndarray, unplaced: dict[str, str]) -> np.ndarray:
    """Starts to keep: none before the earliest possible end of a predecessor (forward
    propagation). ``code`` is each start's job code (``jid``); a job's starts are grouped once."""
    keep = np.ones(len(code), dtype=bool)
    preds = {j.id: [p for p in j.predecessors if p != j.id] for j in inst.jobs}
    if not any(preds.values()) or not len(code):
        return keep
    g = nx.DiGraph()
    g.add_nodes_from(preds)
    g.add_edges_from((p, j) for j, ps in preds.items() for p in ps if p in preds)
    try:
        order = list(nx.topological_sort(g))
    except nx.NetworkXUnfeasible:
        return keep  # a cycle: reported by validation, the model's rows make it infeasible
    n = len(inst.jobs)
    by_job = np.argsort(code, kind="stable")
    count = np.bincount(code, minlength=n)
    first = np.cumsum(count) - count
    has = count > 0  # the job has a start left: its earliest end is known
    earliest_end = np.zeros(n, dtype=np.int64)
    earliest_end[has] = np.minimum.reduceat(end[by_job], first[has])
    for j in order:
        ps = [p for p in preds[j] if p in preds]
        if not ps:
            continue
        k = jid[j]
        rows = by_job[first[k]:first[k] + count[k]]
        rows = rows[keep[rows]]
        if not len(rows):
            continue
        missing = [p for p in ps if not has[jid[p]]]
        if missing:
            keep[rows] = False
            unplaced.setdefault(j, f"its predecessor {missing[0]} cannot be placed")
            has[k] = False
            continue
        need = int(max(earliest_end[jid[p]] for p in ps))
        ok = t[rows] >= need
        keep[rows[~ok]] = False
        if ok.any():
            earliest_end[k] = int(end[rows[ok]].min())
        else:
            has[k] = False
            unplaced.setdefault(j, f"it cannot start and end in its window after its predecessors "
                                   f"(earliest predecessor end: period {need})")
    return keep


def _candidate_columns(cand: pd.DataFrame, cj: np.ndarray, jid: dict[str, int], inst: Instance,
                       jobs: dict) -> dict[str, np.ndarray]:
    """Per candidate row (job, option, site): the values its starts copy, and the soft deadline
    and tardiness rate their tardiness is computed from. Looked up once per candidate, then
    gathered per start by ``_finish``."""
    H, T = inst.horizon.period_hours, inst.horizon.periods
    soft = _per_job(jid, {j.id: (j.deadline_period if j.deadline == "soft" else T + 1)
                          for j in inst.jobs}, np.int64)
    rate = _per_job(jid, {j.id: j.tardiness_usd_per_h if j.deadline == "soft" else 0.0
                          for j in inst.jobs}, float)
    tbs = _per_job(jid, {j.id: j.dataset_tb if j.dataset_source else 0.0 for j in inst.jobs}, float)
    d = cand["d"].to_numpy(dtype=np.int64)
    return {
        "j": cand["j"].to_numpy(dtype=object),
        "o": cand["o"].to_numpy(dtype=np.int64),
        "s": cand["s"].to_numpy(dtype=object),
        "g": cand["g"].to_numpy(dtype=object),
        "d": d,
        "gpus": cand["gpus"].to_numpy(dtype=np.int64),
        "need_mw": cand["need_mw"].to_numpy(dtype=float),
        "site_extra_usd": np.array(
            [float(jobs[j].site_cost_usd.get(s, 0.0))
             for j, s in zip(cand["j"].tolist(), cand["s"].tolist(), strict=True)], dtype=float),
        "egress_usd": cand["egress_usd"].to_numpy(dtype=float),
        "staging_gbps": staging_gbps(tbs[cj], d.astype(float), H),
        "links": cand["links"].to_numpy(dtype=object),
        "soft_deadline": soft[cj],
        "tardiness_usd_per_h": rate[cj],
    }


def _finish(cols: dict[str, np.ndarray], rows: np.ndarray, t: np.ndarray, late_h: np.ndarray,
            H: float) -> pd.DataFrame:
    """The placement frame of starts (candidate ``rows``, start periods ``t``): the candidate's
    columns (``_candidate_columns``) gathered per start, plus end and tardiness. Built in one
    go from numpy arrays; ids and link tuples stay object columns."""
    d = cols["d"][rows]
    end = t + d
    tard_h = np.maximum(end - cols["soft_deadline"][rows], 0).astype(float) * H

    def text(col: str) -> pd.Series:
        return pd.Series(cols[col][rows], dtype=object, copy=False)

    return pd.DataFrame({
        "j": text("j"),
        "o": cols["o"][rows],
        "s": text("s"),
        "g": text("g"),
        "t": t,
        "d": d,
        "end": end,
        "gpus": cols["gpus"][rows],
        "need_mw": cols["need_mw"][rows],
        "site_extra_usd": cols["site_extra_usd"][rows],
        "tardiness_h": tard_h,
        "tardiness_usd": tard_h * cols["tardiness_usd_per_h"][rows],
        "egress_usd": cols["egress_usd"][rows],
        "staging_gbps": cols["staging_gbps"][rows],
        "links": text("links"),
        "late_h": late_h.astype(float, copy=False),
    }, columns=PLACEMENT_COLUMNS, copy=False)


# --------------------------------------------------------------------------- inference


def _flows(inst: Instance, net: Network, pools: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    sites = {s.id: s for s in inst.sites}
    regions = {r.id: r for r in inst.regions}
    pool_types = pools.groupby("s")["g"].agg(set).to_dict()
    rows = []
    for v in inst.services:
        for r_id in v.demand:
            region = regions.get(r_id)
            if region is None:
                continue  # reported by validation
            for s_id, site in sites.items():
                if not site_allowed(v, s_id, site.zone):
                    continue
                route = net.route(site.node_id, region.node_id)
                if route is None or not within_slo(route.latency_ms, v.latency_slo_ms):
                    continue
                for g, tps in v.tokens_per_s_per_gpu.items():
                    if g not in pool_types.get(s_id, ()):
                        continue
                    rows.append((v.id, r_id, s_id, g, float(tps), route.latency_ms,
                                 route.egress_usd_per_gb, gbps_of_tokens(1.0, v.bytes_per_token),
                                 tuple(route.links)))
    if not rows:
        return _empty(FLOW_COLUMNS)
    return _frame(rows, FLOW_COLUMNS, ("v", "r", "s", "g", "links"))


def _demands(inst: Instance) -> pd.DataFrame:
    T = inst.horizon.periods
    frames = []
    for v in inst.services:
        for r, series in v.demand.items():
            vals = _padded(series_list(series, T), T)
            t = np.flatnonzero(vals > 0)
            if len(t):
                frames.append(pd.DataFrame({"v": _text([v.id] * len(t)), "r": _text([r] * len(t)),
                                           "t": t, "demand": vals[t]}))
    if not frames:
        return pd.DataFrame({"v": pd.Series(dtype=object), "r": pd.Series(dtype=object),
                             "t": pd.Series(dtype=np.int64), "demand": pd.Series(dtype=float)})
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------- public API


def build_index(inst: Instance, net: Network | None = None) -> Index:
    """Eligible tuples of ``inst`` (see ``Index``), with their coefficients."""
    net = net or Network(inst)
    labels = link_labels(inst)
    pools = _pools_frame(inst)
    site_periods = _site_periods_frame(inst)
    placements, _, unplaced = _placements(inst, net, pools, site_periods, labels)
    flows = _flows(inst, net, pools, labels)
    demands = _demands(inst)
    if len(flows) and len(demands):
        serve = flows[["v", "r", "s", "g"]].merge(demands[["v", "r", "t"]], on=["v", "r"])
        serve["t"] = serve["t"].astype(np.int64)
    else:
        serve = pd.DataFrame({c: pd.Series(dtype=object) for c in ("v", "r", "s", "g")}
                             | {"t": pd.Series(dtype=np.int64)})
    service_pools = flows[["v", "s", "g", "tokens_per_s_per_gpu"]].drop_duplicates(["v", "s", "g"]) \
        .reset_index(drop=True) if len(flows) else _empty(["v", "s", "g", "tokens_per_s_per_gpu"])
    service_periods = serve[["v", "s", "g", "t"]].drop_duplicates().reset_index(drop=True)
    links = pd.DataFrame({
        "l": np.arange(len(inst.links), dtype=np.int64),
        "label": _text(labels),
        "a": _text(lk.a for lk in inst.links),
        "b": _text(lk.b for lk in inst.links),
        "bandwidth_gbps": [np.nan if lk.bandwidth_gbps is None else lk.bandwidth_gbps for lk in inst.links],
        "egress_usd_per_gb": [lk.egress_usd_per_gb for lk in inst.links],
    })
    job_ids = {j.id for j in inst.jobs}
    precedences = [(j.id, p) for j in inst.jobs for p in dict.fromkeys(j.predecessors)
                   if p in job_ids and p != j.id]
    return Index(
        periods=inst.horizon.periods,
        period_hours=inst.horizon.period_hours,
        jobs=[j.id for j in inst.jobs],
        mandatory={j.id: j.mandatory for j in inst.jobs},
        value_usd={j.id: j.value_usd for j in inst.jobs},
        placements=placements,
        unplaced=unplaced,
        flows=flows.reset_index(drop=True),
        demands=demands,
        serve=serve.reset_index(drop=True),
        service_pools=service_pools,
        service_periods=service_periods,
        pools=pools,
        site_periods=site_periods,
        links=links,
        precedences=precedences,
        redundant_services=[v.id for v in inst.services if v.redundancy],
        _late=(inst, net, pools, site_periods, labels),
    )


#: usage form "auto" writes running totals from this many nonzeros of the expanded usage
#: terms (sum over starts of their duration) up: below it the expanded rows are kept, which
#: the golden LP files and the small instances' HiGHS times were measured on
RUNNING_FROM_TERMS = 100_000


def usage_form(index: Index, usage: str = "auto") -> str:
    """"running" or "expanded": the form of the usage rows (see ``ensure_gpus_in_use``).
    "auto" picks running totals when the expanded usage terms reach RUNNING_FROM_TERMS."""
    if usage not in ("auto", "running", "expanded"):
        raise ValueError(f"unknown usage form {usage!r}; use auto, running or expanded")
    if usage != "auto":
        return usage
    d = index.placements["d"].to_numpy(dtype=np.int64) if len(index.placements) else np.zeros(0)
    return "running" if int(d.sum()) >= RUNNING_FROM_TERMS else "expanded"


BYTES_PER_NONZERO = 200
BYTES_PER_VARIABLE = 600
BYTES_PER_CONSTRAINT = 500


def estimate_size(index: Index, *, compact: bool | None = None) -> dict[str, int]:
    """Cheap size estimate of the model ``build_model`` would make (before building it).

    ``compact`` is the usage form: False the expanded rows, True the running totals, None
    (default) the form ``build_model(usage="auto")`` picks (``usage_form``); the lns strategy
    always builds the running form.
    Expanded: a start variable appears in its assignment row, the objective, and per running
    period in the GPU row, the on-demand row, the power row and each bandwidth row of its
    staging route; a serve variable in its demand row, its capacity row, the redundancy rows
    and its links. Running: a start appears only where it begins and ends, in the GPU total
    (``use_running``) of its pool and the staging total (``staging_running``) of each link,
    and each pool-period has a running total (in its definition rows and the GPU, on-demand
    and power rows).
    """
    if compact is None:
        compact = usage_form(index) == "running"
    p = index.placements
    n_start = len(p)
    d = p["d"].to_numpy(dtype=np.int64) if n_start else np.zeros(0, dtype=np.int64)
    nlinks = p["links"].map(len).to_numpy() if n_start else np.zeros(0)
    start_nz = int((2 + d * (3 + nlinks)).sum()) if not compact else int((4 + 2 * nlinks).sum())
    prec_nz = 0
    if index.precedences and n_start:
        starts_per_job = p.groupby("j").size().to_dict()
        for j, q in index.precedences:
            prec_nz += 2 * (starts_per_job.get(j, 0) + starts_per_job.get(q, 0))
    n_serve = len(index.serve)
    serve_links = index.serve.merge(index.flows[["v", "r", "s", "g", "links"]], on=["v", "r", "s", "g"]) \
        ["links"].map(len).sum() if n_serve else 0
    n_inf = len(index.service_periods)
    sites_per_service = index.service_pools.groupby("v")["s"].nunique().to_dict() if n_inf else {}
    red_nz = 0
    for v in index.redundant_services:
        k = sites_per_service.get(v, 0)
        red_nz += k * (n_serve + n_inf) // max(1, len(sites_per_service))
    pools_t = len(index.pools) * index.periods
    variables = n_start + n_serve + len(index.demands) + n_inf + pools_t
    constraints = (len(index.jobs) + len(index.demands) + n_inf + 2 * pools_t
                   + len(index.site_periods) + len(index.links) * index.periods)
    nonzeros = start_nz + prec_nz + 3 * n_serve + int(serve_links) + 4 * n_inf + red_nz \
        + len(index.demands) + (7 if compact else 2) * pools_t
    nbytes = nonzeros * BYTES_PER_NONZERO + variables * BYTES_PER_VARIABLE \
        + constraints * BYTES_PER_CONSTRAINT
    return {"variables": int(variables), "constraints": int(constraints),
            "nonzeros": int(nonzeros), "bytes": int(nbytes)}
