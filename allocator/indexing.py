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

import math
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import pandas as pd

from allocator.network import Network
from allocator.schema import Instance, series_list

EPS = 1e-9
GB_PER_TB = 1000.0
GBIT_PER_TB = 8000.0

PLACEMENT_COLUMNS = [
    "j", "o", "s", "g", "t", "d", "end", "gpus", "need_mw", "site_extra_usd", "tardiness_h",
    "tardiness_usd", "egress_usd", "staging_gbps", "links", "late_h",
]
FLOW_COLUMNS = [
    "v", "r", "s", "g", "tokens_per_s_per_gpu", "latency_ms", "egress_usd_per_gb",
    "gbps_per_token_per_s", "links",
]


def duration_periods(hours: float, period_hours: float) -> int:
    """Periods an option of ``hours`` occupies: ceil(hours / H), tolerant to rounding."""
    return max(1, math.ceil(hours / period_hours - EPS))


@dataclass
class Index:
    """Eligible tuples and their coefficients (pandas frames, one row per tuple).

    placements       PLACEMENTS (j, o, s, t) with g, d, end, gpus, need_mw, site_extra_usd,
                     tardiness_h, tardiness_usd, egress_usd (dataset staging), staging_gbps,
                     links (tuple of link ids of the staging route), late_h (0 here)
    late_placements  hard-deadline overruns (late_h > 0): used only by the elastic model
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
    late_placements: pd.DataFrame
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


def _window_min(values: np.ndarray, d: int) -> np.ndarray:
    """min(values[t:t+d]) for t = 0 .. len-d."""
    if d <= 1:
        return values.copy()
    return np.lib.stride_tricks.sliding_window_view(values, d).min(axis=1)


def _pools_frame(inst: Instance) -> pd.DataFrame:
    kw = {g.id: g.power_kw for g in inst.gpu_types}
    rows = []
    for s in inst.sites:
        for p in s.pools:
            if p.gpu_type not in kw:
                continue  # reported by validation
            rows.append((s.id, p.gpu_type, p.available, p.reserved, p.reserved_price_usd_per_gpu_h,
                         p.ondemand_price_usd_per_gpu_h, kw[p.gpu_type], s.pue,
                         kw[p.gpu_type] * s.pue / 1000.0, s.zone))
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
            "power_cap_mw": _padded(series_list(s.power_cap_mw, T), T),
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
                labels: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    T, H = inst.horizon.periods, inst.horizon.period_hours
    sites = {s.id: s for s in inst.sites}
    sources = {d.id: d for d in inst.data_sources}
    unplaced: dict[str, str] = {}

    opt_rows = []
    for job in inst.jobs:
        if not job.options:
            unplaced[job.id] = "it has no execution option (its profile gives none for the GPU types here)"
            continue
        hard_end = min(job.deadline_period or T, T) if job.deadline == "hard" else T
        for o, opt in enumerate(job.options):
            opt_rows.append((job.id, o, opt.gpu_type, opt.gpus, duration_periods(opt.hours, H),
                             job.release_period, hard_end))
    opts = _frame(opt_rows, ["j", "o", "g", "gpus", "d", "release", "hard_end"], ("j", "g"))
    jobs = {j.id: j for j in inst.jobs}

    def drop_stage(before: pd.DataFrame, after: pd.DataFrame, why) -> None:
        lost = set(before["j"]) - set(after["j"]) - set(unplaced)
        for j in sorted(lost):
            unplaced[j] = why(j, before[before["j"] == j])

    # 1. pools of the option's GPU type
    cand = opts.merge(pools[["s", "g", "available", "mw_per_gpu", "zone"]], on="g", how="inner")
    drop_stage(opts, cand, lambda j, b: "no site has a pool of its GPU type(s) "
               + ", ".join(sorted(set(b["g"]))))
    # 2. residency
    if len(cand):
        allowed = np.array([_site_allowed(jobs[j], s, z) for j, s, z in
                            zip(cand["j"], cand["s"], cand["zone"], strict=True)], dtype=bool)
        before, cand = cand, cand[allowed]
        drop_stage(before, cand, lambda j, b: "no site offering its GPU types is in its allowed "
                   + _allowed_text(jobs[j]))
    # 3. the gang fits the pool
    before, cand = cand, cand[cand["available"] >= cand["gpus"]]
    drop_stage(before, cand, lambda j, b: "it needs " + " or ".join(
        f"{int(r.gpus)} {r.g}" for r in b.drop_duplicates(["o"]).itertuples())
        + f" but the largest allowed pool offers {int(b['available'].max())}")
    # 4. the gang's power alone fits the site's ceiling at its highest
    cand = cand.assign(need_mw=cand["gpus"] * cand["mw_per_gpu"])
    cap_max = site_periods.groupby("s")["power_cap_mw"].max()
    before, cand = cand, cand[cand["need_mw"] <= cand["s"].map(cap_max).astype(float) + EPS]
    drop_stage(before, cand, lambda j, b: f"its smallest gang needs {b['need_mw'].min():.1f} MW "
               f"but no allowed site has more than {float(b['s'].map(cap_max).max()):.1f} MW")
    # 5. dataset route
    ds_egress, ds_links, ok = [], [], []
    for j, s in zip(cand["j"], cand["s"], strict=True):
        job = jobs[j]
        if job.dataset_tb > 0 and job.dataset_source:
            src = sources.get(job.dataset_source)
            route = net.route(src.node_id, sites[s].node_id) if src is not None else None
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

    # 6. expand over start periods (normal window, then hard-deadline overruns)
    normal = _expand(cand, cand["release"].to_numpy(), (cand["hard_end"] - cand["d"]).to_numpy())
    late_lo = np.maximum(cand["release"].to_numpy(), (cand["hard_end"] - cand["d"] + 1).to_numpy())
    late = _expand(cand, late_lo, (T - cand["d"]).to_numpy())
    normal = _power_window(normal, site_periods, T)
    late = _power_window(late, site_periods, T)
    if len(normal) or len(cand):
        lost = set(cand["j"]) - set(normal["j"]) - set(unplaced)
        for j in sorted(lost):
            job = jobs[j]
            b = cand[cand["j"] == j]
            last = int((b["hard_end"] - b["d"]).max())
            if last < job.release_period:
                unplaced[j] = (f"its shortest option lasts {int(b['d'].min())} periods but its window "
                               f"is periods {job.release_period}..{int(b['hard_end'].max())}")
            else:
                unplaced[j] = ("in every start period of its window some period of the run has a "
                               "power ceiling below the gang's power")
    # 7. predecessors: a job cannot start before the earliest end of each predecessor
    normal = _prune_by_predecessors(inst, normal, unplaced)
    late = late[late["j"].isin(set(normal["j"])) | late["j"].isin(set(unplaced))]

    for frame in (normal, late):
        _finish(frame, inst, jobs)
    late["late_h"] = (late["end"] - late["j"].map(
        {j.id: min(j.deadline_period or T, T) for j in inst.jobs}).astype(int)).clip(lower=0) * H
    late = late[late["late_h"] > 0]
    return normal[PLACEMENT_COLUMNS].reset_index(drop=True), \
        late[PLACEMENT_COLUMNS].reset_index(drop=True), unplaced


def _site_allowed(job, s: str, zone: str) -> bool:
    if job.allowed_sites is not None and s not in job.allowed_sites:
        return False
    return not (job.allowed_zones is not None and zone not in job.allowed_zones)


def _allowed_text(job) -> str:
    parts = []
    if job.allowed_sites is not None:
        parts.append("sites " + ", ".join(job.allowed_sites))
    if job.allowed_zones is not None:
        parts.append("zones " + ", ".join(job.allowed_zones))
    return " / ".join(parts) or "sites"


def _expand(cand: pd.DataFrame, lo: np.ndarray, hi: np.ndarray) -> pd.DataFrame:
    """One row per start period t in lo..hi (inclusive) of each candidate row."""
    n = np.maximum(hi - lo + 1, 0).astype(np.int64)
    rows = np.repeat(np.arange(len(cand)), n)
    base = np.repeat(lo, n)
    offsets = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    out = cand.iloc[rows].reset_index(drop=True)
    out["t"] = (base + offsets).astype(np.int64)
    return out


def _power_window(df: pd.DataFrame, site_periods: pd.DataFrame, T: int) -> pd.DataFrame:
    """Keep starts whose gang power fits the minimum ceiling over the run's periods."""
    if df.empty:
        return df
    caps = {s: g["power_cap_mw"].to_numpy(dtype=float) for s, g in site_periods.groupby("s", sort=False)}
    s_arr = df["s"].to_numpy(dtype=object)
    d_arr = df["d"].to_numpy(dtype=np.int64)
    t_arr = df["t"].to_numpy(dtype=np.int64)
    need = df["need_mw"].to_numpy(dtype=float)
    wmin = np.empty(len(df))
    cache: dict[tuple, np.ndarray] = {}
    for i, (s, d, t) in enumerate(zip(s_arr.tolist(), d_arr.tolist(), t_arr.tolist(), strict=True)):
        w = cache.get((s, d))
        if w is None:
            w = cache[s, d] = _window_min(caps[s], d)
        wmin[i] = w[t]
    keep = need <= wmin + EPS
    if keep.all():
        return df.reset_index(drop=True)
    return df[keep].reset_index(drop=True)


def _prune_by_predecessors(inst: Instance, df: pd.DataFrame, unplaced: dict[str, str]) -> pd.DataFrame:
    """Drop starts before the earliest possible end of a predecessor (forward propagation)."""
    preds = {j.id: [p for p in j.predecessors if p != j.id] for j in inst.jobs}
    if not any(preds.values()) or df.empty:
        return df
    g = nx.DiGraph()
    g.add_nodes_from(preds)
    g.add_edges_from((p, j) for j, ps in preds.items() for p in ps if p in preds)
    try:
        order = list(nx.topological_sort(g))
    except nx.NetworkXUnfeasible:
        return df  # a cycle: reported by validation, the model's rows make it infeasible
    end = df["t"] + df["d"]
    earliest_end = end.groupby(df["j"]).min().to_dict()
    keep = np.ones(len(df), dtype=bool)
    for j in order:
        ps = [p for p in preds[j] if p in preds]
        if not ps:
            continue
        rows = np.flatnonzero((df["j"] == j).to_numpy() & keep)
        if not len(rows):
            continue
        if any(p not in earliest_end for p in ps):
            missing = [p for p in ps if p not in earliest_end]
            keep[rows] = False
            unplaced.setdefault(j, f"its predecessor {missing[0]} cannot be placed")
            earliest_end.pop(j, None)
            continue
        need = max(earliest_end[p] for p in ps)
        ok = df["t"].to_numpy()[rows] >= need
        keep[rows[~ok]] = False
        if ok.any():
            earliest_end[j] = int(end.to_numpy()[rows[ok]].min())
        else:
            earliest_end.pop(j, None)
            unplaced.setdefault(j, f"it cannot start and end in its window after its predecessors "
                                   f"(earliest predecessor end: period {need})")
    return df[keep].reset_index(drop=True)


def _finish(df: pd.DataFrame, inst: Instance, jobs: dict) -> None:
    """Per-row coefficients: end, tardiness, site extra, staging bandwidth (plain numpy: the
    frame is often tiny and pandas' per-column overhead dominated small solves)."""
    H, T = inst.horizon.period_hours, inst.horizon.periods
    j_arr = df["j"].tolist()
    t = df["t"].to_numpy(dtype=np.int64)
    d = df["d"].to_numpy(dtype=np.int64)
    end = t + d
    soft = {j.id: (j.deadline_period if j.deadline == "soft" else T + 1) for j in inst.jobs}
    rate = {j.id: j.tardiness_usd_per_h if j.deadline == "soft" else 0.0 for j in inst.jobs}
    tbs = {j.id: j.dataset_tb if j.dataset_source else 0.0 for j in inst.jobs}
    deadline = np.array([soft[j] for j in j_arr], dtype=np.int64)
    tard_h = np.maximum(end - deadline, 0).astype(float) * H
    df["end"] = end
    df["tardiness_h"] = tard_h
    df["tardiness_usd"] = tard_h * np.array([rate[j] for j in j_arr], dtype=float)
    df["site_extra_usd"] = np.array([float(jobs[j].site_cost_usd.get(s, 0.0))
                                     for j, s in zip(j_arr, df["s"].tolist(), strict=True)], dtype=float)
    tb = np.array([tbs[j] for j in j_arr], dtype=float)
    df["staging_gbps"] = tb * GBIT_PER_TB / (d.astype(float) * H * 3600.0)
    df["late_h"] = np.zeros(len(df))
    df["gpus"] = df["gpus"].to_numpy(dtype=np.int64)
    df["o"] = df["o"].to_numpy(dtype=np.int64)
    df["d"] = d


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
                if v.allowed_sites is not None and s_id not in v.allowed_sites:
                    continue
                if v.allowed_zones is not None and site.zone not in v.allowed_zones:
                    continue
                route = net.route(site.node_id, region.node_id)
                if route is None or route.latency_ms > v.latency_slo_ms + EPS:
                    continue
                for g, tps in v.tokens_per_s_per_gpu.items():
                    if g not in pool_types.get(s_id, ()):
                        continue
                    rows.append((v.id, r_id, s_id, g, float(tps), route.latency_ms,
                                 route.egress_usd_per_gb, v.bytes_per_token * 8.0 / 1e9,
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
    placements, late, unplaced = _placements(inst, net, pools, site_periods, labels)
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
        late_placements=late,
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
    )


BYTES_PER_NONZERO = 200
BYTES_PER_VARIABLE = 600
BYTES_PER_CONSTRAINT = 500


def estimate_size(index: Index) -> dict[str, int]:
    """Cheap size estimate of the model ``build_model`` would make (before building it).

    A start variable appears in its assignment row, the objective, and per running period in
    the GPU row, the on-demand row, the power row and each bandwidth row of its staging route;
    a serve variable in its demand row, its capacity row, the redundancy rows and its links.
    """
    p = index.placements
    n_start = len(p)
    d = p["d"].to_numpy(dtype=np.int64) if n_start else np.zeros(0, dtype=np.int64)
    nlinks = p["links"].map(len).to_numpy() if n_start else np.zeros(0)
    start_nz = int((2 + d * (3 + nlinks)).sum())
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
        + len(index.demands) + 2 * pools_t
    nbytes = nonzeros * BYTES_PER_NONZERO + variables * BYTES_PER_VARIABLE \
        + constraints * BYTES_PER_CONSTRAINT
    return {"variables": int(variables), "constraints": int(constraints),
            "nonzeros": int(nonzeros), "bytes": int(nbytes)}
