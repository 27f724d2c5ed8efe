"""Independent verification of a schedule: every rule and every cost term, recomputed.

The verifier reads only the instance and the exported files (or, through ``evaluate``, the
decision tables of any planner). It never looks at the optimisation model: it imports
neither Pyomo nor allocator.formulation nor allocator.indexing, so a bug there cannot hide
itself here. The definitions it applies are those of docs/schedule-format.md.

Decisions (what a planner chose):
    training        job, option, site, gpu_type, gpus, start_period
    inference_gpus  service, site, gpu_type, period, gpus
    inference       service, region, site, gpu_type, period, tokens_per_s   (the flows)
Everything else (end periods, GPUs in use, on-demand GPUs, power, energy, emissions, link
traffic, unserved demand and every cost term) is derived from them and the instance.

``evaluate(inst, decisions)`` derives the tables and costs and lists broken rules;
``verify_schedule(inst, folder)`` additionally compares every exported derived table and
every figure of summary.json with the recomputation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from allocator.network import Network
from allocator.results import COST_TERMS, TABLES, Schedule, normalize_frame, read_schedule
from allocator.schema import Instance, series_list

TRAINING_DECISIONS = ("job", "option", "site", "gpu_type", "gpus", "start_period")
INFERENCE_GPU_DECISIONS = ("service", "site", "gpu_type", "period", "gpus")
FLOW_DECISIONS = ("service", "region", "site", "gpu_type", "period", "tokens_per_s")

# Tolerances: a value passes a limit if value <= limit * (1 + RTOL) + atol; two figures agree
# if |a - b| <= RTOL * max(|a|, |b|) + atol. GPU counts are whole numbers: compared exactly.
RTOL = 1e-6
ATOL_USD = 0.01
ATOL_TOKENS = 1e-3  # tokens/s
ATOL_MW = 1e-6
ATOL_GBPS = 1e-6
ATOL_DEFAULT = 1e-6


@dataclass(frozen=True)
class Violation:
    """One broken rule: ``rule`` (e.g. capacity-gpus), where (entity and period) and a
    message with the numbers."""

    rule: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.rule} | {self.where} | {self.message}"


@dataclass
class Evaluation:
    """Tables, costs and broken rules derived from decisions alone."""

    frames: dict[str, pd.DataFrame]
    costs: dict[str, float]
    emissions_t: float
    unserved_mtok: float
    dropped_jobs: list[str]
    violations: list[Violation] = field(default_factory=list)

    @property
    def total_cost_usd(self) -> float:
        return float(sum(self.costs.values()))

    @property
    def feasible(self) -> bool:
        return not self.violations

    def summary(self) -> dict[str, Any]:
        """The figures of summary.json this evaluation determines."""
        return {
            "costs": dict(self.costs),
            "total_cost_usd": self.total_cost_usd,
            "emissions_t": self.emissions_t,
            "unserved_mtok": self.unserved_mtok,
            "dropped_jobs": list(self.dropped_jobs),
        }


@dataclass
class Verification:
    """Outcome of ``verify``: the violations, the recomputation and the schedule read."""

    violations: list[Violation]
    evaluation: Evaluation
    schedule: Schedule

    @property
    def ok(self) -> bool:
        return not self.violations


def _close(a: float, b: float, atol: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= RTOL * max(abs(a), abs(b)) + atol


def _over(value: np.ndarray, limit: np.ndarray, atol: float) -> np.ndarray:
    return value > limit * (1 + RTOL) + atol


def _fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "none"
    if float(x).is_integer() and abs(x) < 1e15:
        return f"{int(x):,}"
    return f"{x:,.6g}" if abs(x) < 1e6 else f"{x:,.2f}"


# --------------------------------------------------------------------------- context


class _Ctx:
    """Instance data as arrays, built once per evaluation."""

    def __init__(self, inst: Instance, net: Network | None):
        self.inst = inst
        self.net = net or Network(inst)
        self.T = inst.horizon.periods
        self.H = float(inst.horizon.period_hours)
        self.jobs = {j.id: j for j in inst.jobs}
        self.services = {v.id: v for v in inst.services}
        self.regions = {r.id: r for r in inst.regions}
        self.sites = {s.id: s for s in inst.sites}
        self.site_idx = {s.id: i for i, s in enumerate(inst.sites)}
        self.gpu_kw = {g.id: float(g.power_kw) for g in inst.gpu_types}
        pools = [(s, p) for s in inst.sites for p in s.pools]
        self.pools = pools
        self.pool_idx = {(s.id, p.gpu_type): k for k, (s, p) in enumerate(pools)}
        self.pool_frame = pd.DataFrame(
            {"site": pd.Series([s.id for s, _ in pools], dtype="str"),
             "gpu_type": pd.Series([p.gpu_type for _, p in pools], dtype="str"),
             "pool": np.arange(len(pools), dtype="int64")}
        )
        self.available = np.array([p.available for _, p in pools], dtype="int64")
        self.reserved = np.array([p.reserved for _, p in pools], dtype="int64")
        self.reserved_price = np.array([p.reserved_price_usd_per_gpu_h for _, p in pools], dtype=float)
        self.ondemand_price = np.array([p.ondemand_price_usd_per_gpu_h for _, p in pools], dtype=float)
        self.pool_site = np.array([self.site_idx[s.id] for s, _ in pools], dtype="int64")
        self.pool_mw_per_gpu = np.array(
            [self.gpu_kw.get(p.gpu_type, 0.0) * s.pue / 1000.0 for s, p in pools], dtype=float
        )
        T = self.T
        self.cap_mw = np.array([series_list(s.power_cap_mw, T) for s in inst.sites], dtype=float).reshape(-1, T)
        self.energy_price = np.array(
            [series_list(s.energy_price_usd_per_mwh, T) for s in inst.sites], dtype=float).reshape(-1, T)
        self.carbon = np.array([series_list(s.carbon_g_per_kwh, T) for s in inst.sites], dtype=float).reshape(-1, T)
        self.data_nodes = {d.id: d.node_id for d in inst.data_sources}
        self._routes: dict[tuple[str, str], Any] = {}

    def route(self, a: str, b: str):
        key = (a, b)
        if key not in self._routes:
            self._routes[key] = self.net.route(a, b)
        return self._routes[key]

    def time_at(self, period: int) -> str:
        ts = self.inst.horizon.start + timedelta(hours=period * self.H)
        return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


class _Sink:
    def __init__(self) -> None:
        self.items: list[Violation] = []

    def __call__(self, rule: str, where: str, message: str) -> None:
        self.items.append(Violation(rule, where, message))


def _decision_frame(decisions: Mapping[str, pd.DataFrame], name: str, cols: tuple[str, ...],
                    out: _Sink) -> pd.DataFrame:
    """The decision columns of one table, typed; a table absent is empty."""
    df = decisions.get(name)
    kinds = TABLES[name]
    if df is None:
        df = pd.DataFrame({c: [] for c in cols})
    missing = [c for c in cols if c not in df.columns]
    if missing:
        out("table-columns", name, f"missing decision column(s) {', '.join(missing)}; table ignored")
        df = pd.DataFrame({c: [] for c in cols})
    df = df[list(cols)].reset_index(drop=True)
    typed = {}
    for c in cols:
        kind = kinds[c]
        s = df[c]
        if kind == "str":
            typed[c] = s.astype("object").where(s.notna(), "").map(str).astype("str")
        else:
            num = pd.to_numeric(s.astype("object").where(s.notna(), np.nan), errors="coerce").astype("float64")
            bad = num.isna() | ~np.isfinite(num)
            if kind == "int":
                bad |= num != np.rint(num)
            if bad.any():
                for i in np.flatnonzero(bad.to_numpy())[:5]:
                    out("table-value", f"{name} row {i + 1}", f"{c} is {s.iloc[i]!r}, not a "
                        f"{'whole' if kind == 'int' else 'finite'} number; row ignored")
                if bad.sum() > 5:
                    out("table-value", name, f"(+{int(bad.sum()) - 5} more rows with a bad {c})")
            typed[c] = num
    frame = pd.DataFrame(typed)
    ok = np.ones(len(frame), dtype=bool)
    for c in cols:
        if kinds[c] != "str":
            v = frame[c].to_numpy()
            ok &= np.isfinite(v)
            if kinds[c] == "int":
                ok &= v == np.rint(np.nan_to_num(v))
    frame = frame[ok].reset_index(drop=True)
    for c in cols:
        if kinds[c] == "int":
            frame[c] = frame[c].astype("int64")
    return frame


# --------------------------------------------------------------------------- evaluate


def evaluate(inst: Instance, decisions: Mapping[str, pd.DataFrame], *,
             net: Network | None = None) -> Evaluation:
    """Derive every table and cost term from the decisions, and list the rules they break.

    ``decisions`` maps table names to DataFrames holding at least the decision columns
    (extra columns are ignored). Works for any planner's output: the tables returned have
    exactly the columns of docs/schedule-format.md."""
    ctx = _Ctx(inst, net)
    out = _Sink()
    T, P = ctx.T, len(ctx.pools)
    use_train = np.zeros((P, T + 1), dtype="int64")  # difference array over periods
    use_inf = np.zeros((P, T), dtype="int64")
    L = len(inst.links)
    traffic = np.zeros((L, T), dtype=float)
    egress_gb = np.zeros((L, T), dtype=float)

    training = _decision_frame(decisions, "training", TRAINING_DECISIONS, out)
    ig = _decision_frame(decisions, "inference_gpus", INFERENCE_GPU_DECISIONS, out)
    flows = _decision_frame(decisions, "inference", FLOW_DECISIONS, out)

    train_rows, train_costs, placed = _evaluate_training(ctx, training, use_train, traffic, egress_gb, out)
    ig_ok = _evaluate_inference_gpus(ctx, ig, use_inf, out)
    inf_frames, inf_costs = _evaluate_flows(ctx, flows, ig_ok, traffic, egress_gb, out)

    gpus_training = np.cumsum(use_train, axis=1)[:, :T]
    in_use = gpus_training + use_inf
    site_gpus, sites, pool_costs, emissions = _evaluate_sites(ctx, gpus_training, use_inf, in_use, out)
    links = _evaluate_links(ctx, traffic, egress_gb, out)

    dropped = [j.id for j in inst.jobs if not j.mandatory and j.id not in placed]
    costs = {t: 0.0 for t in COST_TERMS}
    costs["reserved_lease"] = pool_costs["reserved_lease"]
    costs["ondemand_lease"] = pool_costs["ondemand_lease"]
    costs["energy"] = pool_costs["energy"]
    costs["egress"] = train_costs["egress"] + inf_costs["egress"]
    costs["site_extra"] = train_costs["site_extra"]
    costs["tardiness"] = train_costs["tardiness"]
    costs["unserved"] = inf_costs["unserved"]
    costs["dropped_value"] = float(sum(ctx.jobs[j].value_usd for j in dropped))
    costs["carbon"] = float(inst.carbon_price_usd_per_t) * emissions
    if inst.budget_usd is not None:
        spend = sum(costs[t] for t in ("reserved_lease", "ondemand_lease", "energy", "egress", "site_extra"))
        if _over(np.array(spend), np.array(float(inst.budget_usd)), ATOL_USD):
            out("budget-cap", "instance", f"lease + energy + egress + site extra = ${_fmt(spend)} "
                f"exceeds budget_usd ${_fmt(inst.budget_usd)} by ${_fmt(spend - inst.budget_usd)}")
    frames = {
        "training": normalize_frame("training", pd.DataFrame(train_rows, columns=list(TABLES["training"]))),
        "inference": inf_frames["inference"],
        "inference_gpus": inf_frames["inference_gpus"],
        "unserved": inf_frames["unserved"],
        "site_gpus": site_gpus,
        "sites": sites,
        "links": links,
    }
    return Evaluation(frames=frames, costs=costs, emissions_t=emissions,
                      unserved_mtok=inf_costs["unserved_mtok"], dropped_jobs=dropped,
                      violations=out.items)


def _evaluate_training(ctx: _Ctx, df: pd.DataFrame, use: np.ndarray, traffic: np.ndarray,
                       egress_gb: np.ndarray, out: _Sink):
    T, H = ctx.T, ctx.H
    rows: list[list[Any]] = []
    costs = {"egress": 0.0, "site_extra": 0.0, "tardiness": 0.0}
    placed: dict[str, list[tuple[int, int]]] = {}  # job -> [(start, end)]
    for i, (jid, opt_i, sid, gid, gpus, t) in enumerate(df.itertuples(index=False, name=None)):
        opt_i, gpus, t = int(opt_i), int(gpus), int(t)
        where = f"job {jid}"
        job = ctx.jobs.get(jid)
        if job is None:
            out("training-unknown", f"training row {i + 1}", f"job {jid!r} is not in the instance")
            continue
        if not 0 <= opt_i < len(job.options):
            out("training-option", where, f"option {opt_i} does not exist (the job has "
                f"{len(job.options)} option(s), numbered from 0)")
            continue
        opt = job.options[opt_i]
        if gid != opt.gpu_type or gpus != opt.gpus:
            out("training-option", where, f"option {opt_i} is {opt.gpus} x {opt.gpu_type} but the "
                f"schedule has {gpus} x {gid}")
        site = ctx.sites.get(sid)
        if site is None:
            out("training-unknown", where, f"site {sid!r} is not in the instance")
            continue
        d = math.ceil(opt.hours / H - 1e-9)
        end = t + d
        placed.setdefault(jid, []).append((t, end))
        if t < 0 or end > T:
            out("training-horizon", where, f"runs in periods {t}..{end - 1} but the horizon has "
                f"periods 0..{T - 1} ({opt.hours:g} h = {d} period(s))")
        if t < job.release_period:
            out("training-release", where, f"starts in period {t}, before its release period "
                f"{job.release_period}")
        if job.deadline == "hard":
            due = job.deadline_period if job.deadline_period is not None else T
            if end > due:
                out("training-deadline", where, f"ends at period {end} (exclusive), after its hard "
                    f"deadline period {due}")
        if job.allowed_sites is not None and sid not in job.allowed_sites:
            out("training-allowed", where, f"site {sid} is not in allowed_sites "
                f"({', '.join(job.allowed_sites)})")
        if job.allowed_zones is not None and site.zone not in job.allowed_zones:
            out("training-allowed", where, f"site {sid} is in zone {site.zone or '(none)'}, not in "
                f"allowed_zones ({', '.join(job.allowed_zones)})")
        pool = ctx.pool_idx.get((sid, gid))
        if pool is None:
            out("capacity-pool", where, f"site {sid} has no {gid} GPUs")
        else:
            lo, hi = max(t, 0), min(end, T)
            if lo < hi:
                use[pool, lo] += gpus
                use[pool, hi] -= gpus
        tard_h = 0.0
        if job.deadline == "soft" and job.deadline_period is not None:
            tard_h = max(0, end - job.deadline_period) * H
        tard_usd = tard_h * job.tardiness_usd_per_h
        extra = float(job.site_cost_usd.get(sid, 0.0))
        egress_usd = 0.0
        if job.dataset_source and job.dataset_tb > 0:
            src = ctx.data_nodes.get(job.dataset_source, job.dataset_source)
            route = ctx.route(src, site.node_id)
            if route is None:
                out("training-dataset-route", where, f"no network route from data source "
                    f"{job.dataset_source} to site {sid}")
            else:
                gb = job.dataset_tb * 1000.0
                egress_usd = gb * route.egress_usd_per_gb
                lo, hi = max(t, 0), min(end, T)
                rate = job.dataset_tb * 8000.0 / (d * H * 3600.0)
                for link in route.links:
                    traffic[link, lo:hi] += rate
                    egress_gb[link, lo:hi] += gb / d
        costs["egress"] += egress_usd
        costs["site_extra"] += extra
        costs["tardiness"] += tard_usd
        rows.append([jid, opt_i, sid, site.provider, gid, gpus, t, end, ctx.time_at(t),
                     ctx.time_at(end), float(opt.hours), tard_h, extra, tard_usd, egress_usd])
    for jid, runs in placed.items():
        if len(runs) > 1:
            out("training-once", f"job {jid}", f"placed {len(runs)} times; a job starts once")
    for job in ctx.inst.jobs:
        if job.mandatory and job.id not in placed:
            out("training-mandatory", f"job {job.id}", "mandatory job is not in the schedule")
        for pred in job.predecessors if job.id in placed else ():
            if pred not in placed:
                out("training-precedence", f"job {job.id}", f"predecessor {pred} does not run")
                continue
            pred_end = max(e for _, e in placed[pred])
            start = min(s for s, _ in placed[job.id])
            if pred_end > start:
                out("training-precedence", f"job {job.id}", f"starts in period {start} but its "
                    f"predecessor {pred} ends at period {pred_end}")
    return rows, costs, placed


def _evaluate_inference_gpus(ctx: _Ctx, ig: pd.DataFrame, use: np.ndarray, out: _Sink) -> pd.DataFrame:
    """Check the GPUs held by services; add them to the pool usage; return the valid rows
    aggregated by (service, site, gpu_type, period) with their pool index."""
    T = ctx.T
    ok = np.ones(len(ig), dtype=bool)
    svc_known = ig["service"].isin(list(ctx.services)).to_numpy()
    for i in np.flatnonzero(~svc_known):
        out("inference-unknown", f"inference_gpus row {i + 1}", f"service {ig['service'].iat[i]!r} is not in the instance")
    ok &= svc_known
    m = ig.merge(ctx.pool_frame, on=["site", "gpu_type"], how="left")
    no_pool = m["pool"].isna().to_numpy()
    for i in np.flatnonzero(no_pool & ok):
        out("capacity-pool", f"service {ig['service'].iat[i]}, site {ig['site'].iat[i]}",
            f"GPUs held on {ig['gpu_type'].iat[i]} but the site has no such pool")
    ok &= ~no_pool
    per = ig["period"].to_numpy()
    bad_t = (per < 0) | (per >= T)
    for i in np.flatnonzero(bad_t & ok):
        out("inference-period", f"service {ig['service'].iat[i]}, site {ig['site'].iat[i]}",
            f"period {per[i]} outside 0..{T - 1}")
    ok &= ~bad_t
    neg = ig["gpus"].to_numpy() < 0
    for i in np.flatnonzero(neg & ok):
        out("inference-negative", f"service {ig['service'].iat[i]}, site {ig['site'].iat[i]}, period {per[i]}",
            f"gpus is {ig['gpus'].iat[i]}")
    ok &= ~neg
    good = m[ok].copy()
    good["pool"] = good["pool"].astype("int64")
    keys = ["service", "site", "gpu_type", "period"]
    dup = good.duplicated(keys, keep=False)
    if dup.any():
        for key, grp in good[dup].groupby(keys, sort=True):
            out("inference-gpus-once", f"service {key[0]}, site {key[1]}, {key[2]}, period {key[3]}",
                f"{len(grp)} rows for the same GPUs; expected one")
    agg = good.groupby(keys, as_index=False, sort=True).agg(gpus=("gpus", "sum"), pool=("pool", "first"))
    if len(agg):
        np.add.at(use, (agg["pool"].to_numpy(), agg["period"].to_numpy()), agg["gpus"].to_numpy())
    # the service must be able to use what it holds, where it is allowed
    for (vid, sid, gid), _grp in agg[agg["gpus"] > 0].groupby(["service", "site", "gpu_type"], sort=True):
        svc = ctx.services[vid]
        site = ctx.sites[sid]
        if gid not in svc.tokens_per_s_per_gpu:
            out("inference-gpu-type", f"service {vid}, site {sid}", f"holds {gid} GPUs but the service "
                f"has no throughput on {gid}")
        if svc.allowed_sites is not None and sid not in svc.allowed_sites:
            out("inference-allowed", f"service {vid}", f"holds GPUs at {sid}, not in allowed_sites")
        if svc.allowed_zones is not None and site.zone not in svc.allowed_zones:
            out("inference-allowed", f"service {vid}", f"holds GPUs at {sid} (zone {site.zone or '(none)'}), "
                f"not in allowed_zones ({', '.join(svc.allowed_zones)})")
    return agg


def _evaluate_flows(ctx: _Ctx, fl: pd.DataFrame, ig: pd.DataFrame, traffic: np.ndarray,
                    egress_gb: np.ndarray, out: _Sink):
    T, H = ctx.T, ctx.H
    ok = np.ones(len(fl), dtype=bool)
    for col, known, what in (("service", ctx.services, "service"), ("region", ctx.regions, "region"),
                             ("site", ctx.sites, "site"), ("gpu_type", ctx.gpu_kw, "GPU type")):
        isk = fl[col].isin(list(known)).to_numpy()
        for i in np.flatnonzero(~isk & ok):
            out("inference-unknown", f"inference row {i + 1}", f"{what} {fl[col].iat[i]!r} is not in the instance")
        ok &= isk
    per = fl["period"].to_numpy()
    bad_t = (per < 0) | (per >= T)
    for i in np.flatnonzero(bad_t & ok):
        out("inference-period", f"inference row {i + 1}", f"period {per[i]} outside 0..{T - 1}")
    ok &= ~bad_t
    neg = fl["tokens_per_s"].to_numpy() < 0
    for i in np.flatnonzero(neg & ok):
        out("inference-negative", f"inference row {i + 1}", f"tokens_per_s is {fl['tokens_per_s'].iat[i]}")
    ok &= ~neg
    fl = fl[ok].reset_index(drop=True)
    keys4 = ["service", "site", "gpu_type", "period"]
    dup = fl.duplicated(["service", "region", "site", "gpu_type", "period"], keep=False)
    for key, grp in fl[dup].groupby(["service", "region", "site", "gpu_type", "period"], sort=True):
        out("inference-once", f"service {key[0]}, region {key[1]}, site {key[2]}, {key[3]}, period {key[4]}",
            f"{len(grp)} rows for the same flow; expected one")

    # SLO, routes and residency per (service, region, site)
    route_of: dict[tuple[str, str], Any] = {}
    for (vid, rid, sid), grp in fl.groupby(["service", "region", "site"], sort=True):
        svc, site, region = ctx.services[vid], ctx.sites[sid], ctx.regions[rid]
        route = ctx.route(site.node_id, region.node_id)
        route_of[(sid, rid)] = route
        served = grp["tokens_per_s"].to_numpy()
        if not (served > 0).any():
            continue
        peak = float(served.max())
        if route is None:
            out("network-route", f"service {vid}, site {sid} -> region {rid}",
                f"no network route, yet it serves up to {_fmt(peak)} tokens/s")
        elif route.latency_ms > svc.latency_slo_ms + 1e-9:
            out("inference-slo", f"service {vid}, site {sid} -> region {rid}",
                f"latency {route.latency_ms:g} ms exceeds the SLO of {svc.latency_slo_ms:g} ms "
                f"(serves up to {_fmt(peak)} tokens/s in {int((served > 0).sum())} period(s))")
        if svc.allowed_sites is not None and sid not in svc.allowed_sites:
            out("inference-allowed", f"service {vid}", f"serves from {sid}, not in allowed_sites")
        if svc.allowed_zones is not None and site.zone not in svc.allowed_zones:
            out("inference-allowed", f"service {vid}", f"serves from {sid} (zone {site.zone or '(none)'}), "
                f"not in allowed_zones ({', '.join(svc.allowed_zones)})")

    # capacity: served per (service, site, gpu_type, period) <= tokens_per_s_per_gpu x gpus
    tpg = {(v.id, g): float(x) for v in ctx.inst.services for g, x in v.tokens_per_s_per_gpu.items()}
    held = ig[keys4 + ["gpus"]] if len(ig) else pd.DataFrame(
        {"service": pd.Series([], dtype="str"), "site": pd.Series([], dtype="str"),
         "gpu_type": pd.Series([], dtype="str"), "period": pd.Series([], dtype="int64"),
         "gpus": pd.Series([], dtype="int64")})
    served4 = fl.groupby(keys4, as_index=False, sort=True)["tokens_per_s"].sum()
    cap = served4.merge(held, on=keys4, how="left")
    cap["gpus"] = cap["gpus"].fillna(0).astype("int64")
    rate = np.array([tpg.get((v, g), 0.0) for v, g in zip(cap["service"], cap["gpu_type"], strict=True)])
    limit = rate * cap["gpus"].to_numpy()
    bad = _over(cap["tokens_per_s"].to_numpy(), limit, ATOL_TOKENS)
    for i in np.flatnonzero(bad):
        r = cap.iloc[i]
        out("inference-capacity", f"service {r['service']}, site {r['site']}, {r['gpu_type']}, period {r['period']}",
            f"serves {_fmt(r['tokens_per_s'])} tokens/s but {int(r['gpus'])} GPU(s) x {_fmt(rate[i])} tokens/s "
            f"per GPU give {_fmt(limit[i])}")

    # inference table with the GPUs held at each flow's (service, site, gpu_type, period)
    inf = fl.merge(held, on=keys4, how="left")
    inf["gpus"] = inf["gpus"].fillna(0).astype("int64")
    inf = inf.sort_values(["service", "region", "site", "gpu_type", "period"], kind="stable")
    inference = normalize_frame("inference", inf[list(TABLES["inference"])])
    inference_gpus = normalize_frame(
        "inference_gpus", held[held["gpus"] > 0].sort_values(keys4, kind="stable")[list(TABLES["inference_gpus"])])

    # demand: served + unserved = demand, served <= demand
    dem_rows = []
    for v in ctx.inst.services:
        for rid, series in v.demand.items():
            vals = np.asarray(series_list(series, T), dtype=float)
            dem_rows.append(pd.DataFrame({"service": v.id, "region": rid,
                                          "period": np.arange(T, dtype="int64"), "demand": vals}))
    demand = pd.concat(dem_rows, ignore_index=True) if dem_rows else pd.DataFrame(
        {"service": pd.Series([], dtype="str"), "region": pd.Series([], dtype="str"),
         "period": pd.Series([], dtype="int64"), "demand": pd.Series([], dtype=float)})
    demand["service"] = demand["service"].astype("str")
    demand["region"] = demand["region"].astype("str")
    served3 = fl.groupby(["service", "region", "period"], as_index=False, sort=True)["tokens_per_s"].sum()
    un = demand.merge(served3, on=["service", "region", "period"], how="outer")
    un["demand"] = un["demand"].fillna(0.0)
    un["tokens_per_s"] = un["tokens_per_s"].fillna(0.0)
    over = _over(un["tokens_per_s"].to_numpy(), un["demand"].to_numpy(), ATOL_TOKENS)
    for i in np.flatnonzero(over):
        r = un.iloc[i]
        out("inference-demand", f"service {r['service']}, region {r['region']}, period {r['period']}",
            f"serves {_fmt(r['tokens_per_s'])} tokens/s but the demand is {_fmt(r['demand'])}")
    un["unserved"] = np.maximum(0.0, un["demand"].to_numpy() - un["tokens_per_s"].to_numpy())
    keep = (un["demand"] > 0) | (un["tokens_per_s"] > 0)
    un = un[keep].sort_values(["service", "region", "period"], kind="stable")
    unserved = normalize_frame("unserved", pd.DataFrame({
        "service": un["service"], "region": un["region"], "period": un["period"],
        "demand_tokens_per_s": un["demand"], "served_tokens_per_s": un["tokens_per_s"],
        "unserved_tokens_per_s": un["unserved"]}))
    penalty = {v.id: float(v.unserved_usd_per_mtok) for v in ctx.inst.services}
    mtok = unserved["unserved_tokens_per_s"].to_numpy() * 3600.0 * H / 1e6
    pen = unserved["service"].map(penalty).fillna(0.0).to_numpy(dtype=float)
    costs = {"unserved": float((mtok * pen).sum()), "unserved_mtok": float(mtok.sum()), "egress": 0.0}

    # N+1 redundancy: for every site s, capacity of the service at the other sites >= served
    red = [v.id for v in ctx.inst.services if v.redundancy]
    if red and len(held):
        h = held[held["service"].isin(red)].copy()
        h["cap"] = [tpg.get((v, g), 0.0) * n for v, g, n in zip(h["service"], h["gpu_type"], h["gpus"], strict=True)]
        per_site = h.groupby(["service", "period", "site"], as_index=False)["cap"].sum()
        tot = per_site.groupby(["service", "period"]).agg(total=("cap", "sum"), largest=("cap", "max"))
        srv = fl[fl["service"].isin(red)].groupby(["service", "period"])["tokens_per_s"].sum().rename("served")
        chk = srv.to_frame().join(tot, how="left").fillna(0.0)
        for (vid, t), r in chk.iterrows():
            if r["served"] <= ATOL_TOKENS:
                continue
            rest = r["total"] - r["largest"]
            if _over(np.array(r["served"]), np.array(rest), ATOL_TOKENS):
                out("inference-redundancy", f"service {vid}, period {t}",
                    f"serves {_fmt(r['served'])} tokens/s but losing its largest site leaves capacity "
                    f"for {_fmt(rest)} (N+1)")
    elif red:
        for vid in red:
            s = fl[fl["service"] == vid]["tokens_per_s"]
            if (s > ATOL_TOKENS).any():
                out("inference-redundancy", f"service {vid}", "serves demand but holds no GPUs (N+1)")

    # traffic and egress over each flow's site -> region route
    bpt = {v.id: float(v.bytes_per_token) for v in ctx.inst.services}
    if len(fl):
        b = fl["service"].map(bpt).to_numpy(dtype=float)
        f2 = pd.DataFrame({"site": fl["site"], "region": fl["region"], "period": fl["period"],
                           "gbps": fl["tokens_per_s"].to_numpy() * b * 8.0 / 1e9,
                           "gb": fl["tokens_per_s"].to_numpy() * b * 3600.0 * H / 1e9})
        for (sid, rid), grp in f2.groupby(["site", "region"], sort=True):
            route = route_of.get((sid, rid))
            if route is None:
                continue
            t = grp["period"].to_numpy()
            for link in route.links:
                np.add.at(traffic[link], t, grp["gbps"].to_numpy())
                np.add.at(egress_gb[link], t, grp["gb"].to_numpy())
            costs["egress"] += float(grp["gb"].sum()) * route.egress_usd_per_gb
    return {"inference": inference, "inference_gpus": inference_gpus, "unserved": unserved}, costs


def _evaluate_sites(ctx: _Ctx, gpus_training: np.ndarray, gpus_inf: np.ndarray, in_use: np.ndarray,
                    out: _Sink):
    T, H = ctx.T, ctx.H
    S = len(ctx.inst.sites)
    over = in_use > ctx.available[:, None]
    for k, t in zip(*np.nonzero(over), strict=True):
        s, p = ctx.pools[k]
        out("capacity-gpus", f"site {s.id}, {p.gpu_type}, period {t}",
            f"{in_use[k, t]:,} GPUs in use (training {gpus_training[k, t]:,}, inference "
            f"{gpus_inf[k, t]:,}) but {p.available:,} available")
    neg = in_use < 0
    for k, t in zip(*np.nonzero(neg), strict=True):
        s, p = ctx.pools[k]
        out("capacity-gpus", f"site {s.id}, {p.gpu_type}, period {t}", f"{in_use[k, t]} GPUs in use")
    ondemand = np.maximum(0, in_use - ctx.reserved[:, None])
    power = np.zeros((S, T))
    if len(ctx.pools):
        np.add.at(power, ctx.pool_site, in_use * ctx.pool_mw_per_gpu[:, None])
    bad = _over(power, ctx.cap_mw, ATOL_MW)
    for si, t in zip(*np.nonzero(bad), strict=True):
        out("power-cap", f"site {ctx.inst.sites[si].id}, period {t}",
            f"{power[si, t]:,.6g} MW (GPUs in use x kW x PUE) exceeds the ceiling of "
            f"{ctx.cap_mw[si, t]:,.6g} MW")
    energy_mwh = power * H
    energy_usd = energy_mwh * ctx.energy_price
    emissions = energy_mwh * ctx.carbon / 1000.0
    res_pool = ctx.reserved * ctx.reserved_price * H  # $ per period
    od_pool = ondemand * ctx.ondemand_price[:, None] * H
    res_site = np.zeros(S)
    od_site = np.zeros((S, T))
    if len(ctx.pools):
        np.add.at(res_site, ctx.pool_site, res_pool)
        np.add.at(od_site, ctx.pool_site, od_pool)
    P = len(ctx.pools)
    site_gpus = normalize_frame("site_gpus", pd.DataFrame({
        "site": np.repeat([s.id for s, _ in ctx.pools], T).astype(object),
        "gpu_type": np.repeat([p.gpu_type for _, p in ctx.pools], T).astype(object),
        "period": np.tile(np.arange(T), P),
        "gpus_training": gpus_training.reshape(-1), "gpus_inference": gpus_inf.reshape(-1),
        "gpus_in_use": in_use.reshape(-1), "gpus_available": np.repeat(ctx.available, T),
        "gpus_reserved": np.repeat(ctx.reserved, T), "gpus_ondemand": ondemand.reshape(-1),
    }))
    res_st = np.repeat(res_site[:, None], T, axis=1)
    sites = normalize_frame("sites", pd.DataFrame({
        "site": np.repeat([s.id for s in ctx.inst.sites], T).astype(object),
        "provider": np.repeat([s.provider for s in ctx.inst.sites], T).astype(object),
        "period": np.tile(np.arange(T), S),
        "power_mw": power.reshape(-1), "power_cap_mw": ctx.cap_mw.reshape(-1),
        "energy_mwh": energy_mwh.reshape(-1), "emissions_t": emissions.reshape(-1),
        "energy_usd": energy_usd.reshape(-1), "reserved_lease_usd": res_st.reshape(-1),
        "ondemand_lease_usd": od_site.reshape(-1),
        "cost_usd": (energy_usd + res_st + od_site).reshape(-1),
    }))
    costs = {"reserved_lease": float(res_pool.sum() * T), "ondemand_lease": float(od_pool.sum()),
             "energy": float(energy_usd.sum())}
    return site_gpus, sites, costs, float(emissions.sum())


def _evaluate_links(ctx: _Ctx, traffic: np.ndarray, egress_gb: np.ndarray, out: _Sink) -> pd.DataFrame:
    T = ctx.T
    parts = []
    for li, link in enumerate(ctx.inst.links):
        bw = link.bandwidth_gbps
        if bw is not None:
            keep = np.ones(T, dtype=bool)
            for t in np.flatnonzero(_over(traffic[li], np.full(T, float(bw)), ATOL_GBPS)):
                out("network-bandwidth", f"link {li} ({link.a}-{link.b}), period {t}",
                    f"{traffic[li, t]:,.6g} Gb/s exceeds the bandwidth of {bw:,.6g} Gb/s")
        else:
            keep = (traffic[li] > 0) | (egress_gb[li] > 0)
        if not keep.any():
            continue
        t = np.flatnonzero(keep)
        parts.append(pd.DataFrame({
            "link": li, "a": link.a, "b": link.b, "period": t, "traffic_gbps": traffic[li, t],
            "bandwidth_gbps": np.nan if bw is None else float(bw), "egress_gb": egress_gb[li, t],
            "egress_usd": egress_gb[li, t] * link.egress_usd_per_gb}))
    return normalize_frame("links", pd.concat(parts, ignore_index=True) if parts else None)


# --------------------------------------------------------------------------- verify


def verify(inst: Instance, schedule: str | Path | Schedule, *, net: Network | None = None) -> Verification:
    """Read a schedule folder (or take a Schedule read already) and check it completely:
    every rule, every exported derived table and every figure of summary.json."""
    sched = schedule if isinstance(schedule, Schedule) else read_schedule(schedule)
    out = _Sink()
    status = sched.summary.get("status")
    ev = evaluate(inst, sched.frames, net=net)
    if status not in ("optimal", "feasible"):
        out("schedule-status", "summary.json", f"status is {status!r}: the folder holds no schedule "
            "to verify (only optimal or feasible results carry one)")
        return Verification(out.items, ev, sched)
    _check_instance(inst, sched.summary, out)
    out.items.extend(ev.violations)
    _compare_training(sched.frames.get("training"), ev.frames["training"], out)
    _compare_inference(sched.frames.get("inference"), ev.frames["inference"], out)
    _compare_table("unserved", sched.frames.get("unserved"), ev.frames["unserved"],
                   ["service", "region", "period"], complete=False, out=out)
    _compare_table("site_gpus", sched.frames.get("site_gpus"), ev.frames["site_gpus"],
                   ["site", "gpu_type", "period"], complete=True, out=out)
    _compare_table("sites", sched.frames.get("sites"), ev.frames["sites"], ["site", "period"],
                   complete=True, out=out)
    _compare_table("links", sched.frames.get("links"), ev.frames["links"], ["link", "period"],
                   complete=False, out=out)
    _compare_summary(sched.summary, ev, out)
    return Verification(out.items, ev, sched)


def verify_schedule(inst: Instance, schedule_dir: str | Path) -> list[Violation]:
    """Every violation found in the schedule folder; an empty list means it is sound."""
    return verify(inst, schedule_dir).violations


def _check_instance(inst: Instance, summary: Mapping[str, Any], out: _Sink) -> None:
    h = (summary.get("instance") or {}).get("horizon") if isinstance(summary.get("instance"), dict) else None
    if not isinstance(h, dict):
        return
    mine = inst.horizon
    try:
        same = (int(h.get("periods", mine.periods)) == mine.periods
                and float(h.get("period_hours", mine.period_hours)) == float(mine.period_hours)
                and ("start" not in h or pd.Timestamp(h["start"]) == pd.Timestamp(mine.start)))
    except (TypeError, ValueError):
        same = False
    if not same:
        out("instance-mismatch", "summary.json instance.horizon",
            f"the schedule was made for horizon {h} but the instance has start {mine.start.isoformat()}, "
            f"{mine.periods} periods of {mine.period_hours:g} h: is this the right instance?")


def _atol(col: str) -> float:
    if col.endswith("_usd"):
        return ATOL_USD
    if "tokens" in col:
        return ATOL_TOKENS
    if col.endswith("_mw"):
        return ATOL_MW
    if col.endswith("_gbps"):
        return ATOL_GBPS
    return ATOL_DEFAULT


def _mismatch(a: pd.Series, b: pd.Series, col: str) -> np.ndarray:
    """Rows where the exported value a differs from the recomputed b."""
    if pd.api.types.is_numeric_dtype(a.dtype) and pd.api.types.is_numeric_dtype(b.dtype):
        x = a.to_numpy(dtype=float, na_value=np.nan)
        y = b.to_numpy(dtype=float, na_value=np.nan)
        both_nan = np.isnan(x) & np.isnan(y)
        with np.errstate(invalid="ignore"):
            ok = np.abs(x - y) <= RTOL * np.maximum(np.abs(x), np.abs(y)) + _atol(col)
        return ~(ok | both_nan)
    if col.endswith("_time"):
        xa = pd.to_datetime(a.astype("object").where(a.astype("object") != "", None), utc=True, errors="coerce")
        xb = pd.to_datetime(b.astype("object").where(b.astype("object") != "", None), utc=True, errors="coerce")
        return ~((xa == xb) | (xa.isna() & xb.isna())).to_numpy()
    return (a.astype("str").fillna("") != b.astype("str").fillna("")).to_numpy()


def _describe(key_cols: list[str], row: pd.Series) -> str:
    return ", ".join(f"{k} {row[k]}" for k in key_cols)


def _compare_table(name: str, exported: pd.DataFrame | None, expected: pd.DataFrame,
                   keys: list[str], *, complete: bool, out: _Sink) -> None:
    """Compare an exported derived table with its recomputation, row by row.

    Every recomputed row must be exported. An exported row with no recomputed counterpart is
    wrong if the table is ``complete`` (site_gpus, sites: one row per pool or site and
    period) or if it carries a nonzero quantity (unserved, links may list zero rows)."""
    rule = f"export-{name}"
    if exported is None:
        out(rule, name, "table is missing")
        return
    missing = [c for c in TABLES[name] if c not in exported.columns]
    if missing:
        out(rule, name, f"missing column(s) {', '.join(missing)}")
        return
    cols = [c for c in TABLES[name] if c not in keys]
    exp = normalize_frame(name, exported[list(TABLES[name])])
    dup = exp.duplicated(keys, keep="first")
    for _, r in exp[dup].iterrows():
        out(rule, f"{name}: {_describe(keys, r)}", "row appears more than once")
    exp = exp[~dup]
    m = exp.merge(expected, on=keys, how="outer", suffixes=("", "__re"), indicator=True)
    quantities = [c for c in cols if TABLES[name][c] in ("int", "float") and c not in _LIMIT_COLUMNS]
    for i in np.flatnonzero((m["_merge"] == "left_only").to_numpy()):
        r = m.iloc[i]
        nonzero = [c for c in quantities if pd.notna(r[c]) and abs(float(r[c])) > _atol(c)]
        if complete or nonzero:
            out(rule, f"{name}: {_describe(keys, r)}", "row does not follow from the decisions "
                "(no such pool, site, link or demand"
                + (f"; it shows {', '.join(f'{c} {_show(r[c])}' for c in nonzero)})" if nonzero else ")"))
    for i in np.flatnonzero((m["_merge"] == "right_only").to_numpy()):
        r = m.iloc[i]
        shown = ", ".join(f"{c} {_show(r[f'{c}__re'])}" for c in quantities
                          if pd.notna(r[f"{c}__re"]) and r[f"{c}__re"] != 0)
        out(rule, f"{name}: {_describe(keys, r)}", f"row is missing (recomputed: {shown or 'zeros'})")
    both = m[m["_merge"] == "both"].reset_index(drop=True)
    if both.empty or not cols:
        return
    bad = {c: _mismatch(both[c], both[f"{c}__re"], c) for c in cols}
    for i in np.flatnonzero(np.logical_or.reduce(list(bad.values()))):
        r = both.iloc[i]
        diffs = [f"{c} is {_show(r[c])}, recomputed {_show(r[f'{c}__re'])}" for c in cols if bad[c][i]]
        out(rule, f"{name}: {_describe(keys, r)}", "; ".join(diffs))


_LIMIT_COLUMNS = ("bandwidth_gbps", "gpus_available", "gpus_reserved", "power_cap_mw")


def _show(v: Any) -> str:
    if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
        return _fmt(float(v))
    return repr(v) if v is not None and v is not pd.NA else "none"


def _compare_training(exported: pd.DataFrame | None, expected: pd.DataFrame, out: _Sink) -> None:
    if exported is None or expected.empty:
        return
    cols = [c for c in TABLES["training"] if c not in TRAINING_DECISIONS]
    have = [c for c in cols if c in exported.columns]
    if len(have) < len(cols):
        out("export-training", "training", f"missing column(s) {', '.join(c for c in cols if c not in have)}")
    exp = exported.drop_duplicates(["job"], keep="first")
    re_ = expected.drop_duplicates(["job"], keep="first")
    m = exp[["job", *have]].merge(re_[["job", *have]], on="job", suffixes=("", "__re"))
    bad = {c: _mismatch(m[c], m[f"{c}__re"], c) for c in have}
    for i in np.flatnonzero(np.logical_or.reduce(list(bad.values()))) if bad else []:
        r = m.iloc[i]
        diffs = [f"{c} is {_show(r[c])}, recomputed {_show(r[f'{c}__re'])}" for c in have if bad[c][i]]
        out("export-training", f"training: job {r['job']}", "; ".join(diffs))


def _compare_inference(exported: pd.DataFrame | None, expected: pd.DataFrame, out: _Sink) -> None:
    if exported is None or expected.empty or "gpus" not in exported.columns:
        return
    keys = ["service", "region", "site", "gpu_type", "period"]
    exp = exported.drop_duplicates(keys, keep="first")
    m = exp[[*keys, "gpus"]].merge(expected.drop_duplicates(keys)[[*keys, "gpus"]], on=keys,
                                   suffixes=("", "__re"))
    bad = _mismatch(m["gpus"], m["gpus__re"], "gpus")
    for i in np.flatnonzero(bad):
        r = m.iloc[i]
        out("export-inference", f"inference: {_describe(keys, r)}",
            f"gpus is {_show(r['gpus'])} but inference_gpus holds {_show(r['gpus__re'])}")


def _num(x: Any) -> float | None:
    try:
        return None if x is None else float(x)
    except (TypeError, ValueError):
        return None


def _compare_summary(summary: Mapping[str, Any], ev: Evaluation, out: _Sink) -> None:
    costs = summary.get("costs") if isinstance(summary.get("costs"), dict) else {}
    for term in COST_TERMS:
        want = ev.costs[term]
        got = _num(costs.get(term))
        if got is None:
            if abs(want) > ATOL_USD:
                out("cost-mismatch", f"summary.json costs.{term}", f"missing; recomputed ${_fmt(want)}")
            continue
        if not _close(got, want, ATOL_USD):
            out("cost-mismatch", f"summary.json costs.{term}", f"${_fmt(got)} but recomputed "
                f"${_fmt(want)} (difference ${_fmt(got - want)})")
    total = _num(summary.get("total_cost_usd"))
    if total is None or not _close(total, ev.total_cost_usd, ATOL_USD * len(COST_TERMS)):
        out("cost-mismatch", "summary.json total_cost_usd",
            f"${_fmt(total)} but recomputed ${_fmt(ev.total_cost_usd)}")
    for key, want, atol, unit in (("emissions_t", ev.emissions_t, 1e-6, "t"),
                                  ("unserved_mtok", ev.unserved_mtok, 1e-6, "Mtok")):
        got = _num(summary.get(key))
        if got is None or not _close(got, want, atol):
            out(f"{key.split('_')[0]}-mismatch", f"summary.json {key}",
                f"{_fmt(got)} {unit} but recomputed {_fmt(want)} {unit}")
    dropped = summary.get("dropped_jobs")
    if isinstance(dropped, list) and sorted(map(str, dropped)) != sorted(ev.dropped_jobs):
        out("dropped-mismatch", "summary.json dropped_jobs",
            f"lists {sorted(map(str, dropped))} but the optional jobs not in the schedule are "
            f"{sorted(ev.dropped_jobs)}")
    mode = (summary.get("options") or {}).get("objective", "cost") if isinstance(summary.get("options"), dict) else "cost"
    obj = _num(summary.get("objective"))
    if obj is not None:
        target, label, atol = ((ev.emissions_t, "emissions_t", 1e-6) if mode in ("carbon", "cost-then-carbon")
                               else (ev.total_cost_usd, "total cost", ATOL_USD * len(COST_TERMS)))
        if not _close(obj, target, atol):
            out("objective-mismatch", "summary.json objective",
                f"{_fmt(obj)} but the recomputed {label} for objective mode {mode!r} is {_fmt(target)}")
        bound = _num(summary.get("bound"))
        if bound is not None and bound > obj + RTOL * abs(obj) + atol:
            out("objective-mismatch", "summary.json bound",
                f"bound {_fmt(bound)} is above the objective {_fmt(obj)} of a minimisation")


def describe_ok(ver: Verification) -> str:
    """The one-line verdict for a sound schedule."""
    ev = ver.evaluation
    n_jobs = len(ev.frames["training"])
    n_flows = int((ev.frames["inference"]["tokens_per_s"] > 0).sum())
    return (f"schedule OK: {n_jobs} jobs, {n_flows} flows, costs match "
            f"(total ${ev.total_cost_usd:,.2f})")


def group_by_rule(violations: Iterable[Violation]) -> dict[str, list[Violation]]:
    groups: dict[str, list[Violation]] = {}
    for v in violations:
        groups.setdefault(v.rule, []).append(v)
    return groups
