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
``verify(inst, folder)`` additionally compares every exported derived table and every figure
of summary.json with the recomputation. Quantities are held in dense numpy arrays indexed
by entity codes (service, region, site, pool, link) and period, so a check costs the same
few array operations for four rows or four million.
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

from allocator import display
from allocator.network import Network
from allocator.results import (
    COST_TERMS,
    SCENARIO_DIR,
    SCENARIO_FOLDERS,
    TABLES,
    Schedule,
    normalize_frame,
    read_schedule,
)
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
    """Tables, costs and broken rules derived from decisions alone.

    ``frames`` has every table of docs/schedule-format.md (the decision tables as given,
    with their derived columns filled in); ``violations`` lists every rule the decisions
    break. A planner can build its Result from ``frames``, ``costs`` and ``summary()``."""

    frames: dict[str, pd.DataFrame]
    costs: dict[str, float]
    emissions_t: float
    unserved_mtok: float
    dropped_jobs: list[str]
    violations: list[Violation] = field(default_factory=list)
    arrays: dict[str, Any] = field(default_factory=dict, repr=False)  # dense tables, for verify

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
    """Outcome of ``verify``: the violations, the recomputation and the schedule read
    (with scenarios: each scenario's own Verification, and the expected costs)."""

    violations: list[Violation]
    evaluation: Evaluation
    schedule: Schedule
    scenarios: dict[str, Verification] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations


def _close(a: float | None, b: float | None, atol: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= RTOL * max(abs(a), abs(b)) + atol


def _over(value, limit, atol: float):
    return value > limit * (1 + RTOL) + atol


def _fmt(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "none"
    x = float(x)
    if x.is_integer() and abs(x) < 1e15:
        return f"{int(x):,}"
    return f"{x:,.6g}" if abs(x) < 1e6 else f"{x:,.2f}"


def _codes(values: Iterable[Any], mapping: Mapping[str, int]) -> np.ndarray:
    """Entity codes of ``values`` (-1 for an id the instance does not have)."""
    if len(values) < 2000:  # type: ignore[arg-type]  # a dict is quicker for a few rows
        return np.fromiter((mapping.get(x, -1) for x in values), dtype=np.int64, count=len(values))
    if not mapping:
        return np.full(len(values), -1, dtype=np.int64)  # type: ignore[arg-type]
    keys = pd.Index(list(mapping.keys()), dtype=object)
    codes = np.fromiter(mapping.values(), dtype=np.int64, count=len(mapping))
    pos = keys.get_indexer(pd.Index(np.asarray(values, dtype=object)))
    return np.where(pos >= 0, codes[pos], -1).astype(np.int64)


# --------------------------------------------------------------------------- context


class _Ctx:
    """Instance data as arrays, built once per evaluation."""

    def __init__(self, inst: Instance, net: Network | None):
        self.inst = inst
        self.net = net or Network(inst)
        T = self.T = inst.horizon.periods
        self.H = float(inst.horizon.period_hours)
        self.jobs = {j.id: j for j in inst.jobs}
        self.services = list(inst.services)
        self.regions = list(inst.regions)
        self.sites = {s.id: s for s in inst.sites}
        self.site_list = list(inst.sites)
        self.svc_code = {v.id: i for i, v in enumerate(self.services)}
        self.region_code = {r.id: i for i, r in enumerate(self.regions)}
        self.site_code = {s.id: i for i, s in enumerate(self.site_list)}
        self.gpu_code = {g.id: i for i, g in enumerate(inst.gpu_types)}
        self.gpu_ids = [g.id for g in inst.gpu_types]
        gpu_kw = {g.id: float(g.power_kw) for g in inst.gpu_types}
        pools = [(s, p) for s in inst.sites for p in s.pools]
        self.pools = pools
        self.pool_idx = {(s.id, p.gpu_type): k for k, (s, p) in enumerate(pools)}
        S, G = len(self.site_list), len(self.gpu_ids)
        self.pool_of = np.full((max(S, 1), max(G, 1)), -1, dtype=np.int64)  # (site, gpu) -> pool
        for (sid, gid), k in self.pool_idx.items():
            if gid in self.gpu_code:
                self.pool_of[self.site_code[sid], self.gpu_code[gid]] = k
        self.pool_gpu = np.array([self.gpu_code.get(p.gpu_type, 0) for _, p in pools], dtype=np.int64)
        self.available = np.array([p.available for _, p in pools], dtype=np.int64)
        self.reserved = np.array([p.reserved for _, p in pools], dtype=np.int64)
        self.reserved_price = np.array([p.reserved_price_usd_per_gpu_h for _, p in pools], dtype=float)
        self.ondemand_price = np.array([p.ondemand_price_usd_per_gpu_h for _, p in pools], dtype=float)
        self.pool_site = np.array([self.site_code[s.id] for s, _ in pools], dtype=np.int64)
        self.pool_mw_per_gpu = np.array(
            [gpu_kw.get(p.gpu_type, 0.0) * s.pue / 1000.0 for s, p in pools], dtype=float)
        # a site whose ceiling is still a decision (no leases given) is checked against its
        # largest option; verify() fixes the decisions from leases.csv before this
        self.cap_mw = np.array([series_list(s.power_cap_mw if s.power_cap_mw is not None
                                            else s.power_options.max_mw, T) for s in self.site_list],
                               dtype=float).reshape(-1, T)
        self.power_price = np.array([float(s.power_price_usd_per_mw_h) for s in self.site_list], dtype=float)
        self.energy_price = np.array([series_list(s.energy_price_usd_per_mwh, T) for s in self.site_list],
                                     dtype=float).reshape(-1, T)
        self.carbon = np.array([series_list(s.carbon_g_per_kwh, T) for s in self.site_list],
                               dtype=float).reshape(-1, T)
        V, R = len(self.services), len(self.regions)
        self.tpg = np.zeros((V, max(G, 1)))  # tokens/s per GPU, 0 where the service has none
        for i, v in enumerate(self.services):
            for gid, x in v.tokens_per_s_per_gpu.items():
                if gid in self.gpu_code:
                    self.tpg[i, self.gpu_code[gid]] = float(x)
        self.bpt = np.array([float(v.bytes_per_token) for v in self.services])
        self.penalty = np.array([float(v.unserved_usd_per_mtok) for v in self.services])
        self.demand = np.zeros((V, R, T))
        for i, v in enumerate(self.services):
            for rid, series in v.demand.items():
                if rid in self.region_code:
                    self.demand[i, self.region_code[rid]] = series_list(series, T)
        self.data_nodes = {d.id: d.node_id for d in inst.data_sources}
        self._routes: dict[tuple[str, str], Any] = {}

    def pool_codes(self, sites: Iterable[str], gpu_types: Iterable[str]) -> np.ndarray:
        """Pool codes of (site, gpu_type) pairs; -1 where the site has no such pool."""
        s = _codes(sites, self.site_code)
        g = _codes(gpu_types, self.gpu_code)
        ok = (s >= 0) & (g >= 0)
        return np.where(ok, self.pool_of[np.maximum(s, 0), np.maximum(g, 0)], -1)

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
    """The decision columns of one table, typed; a table absent is empty. Rows whose numbers
    cannot be read are reported and left out."""
    df = decisions.get(name)
    kinds = TABLES[name]
    if df is None:
        df = pd.DataFrame({c: [] for c in cols})
    missing = [c for c in cols if c not in df.columns]
    if missing:
        out("table-columns", name, f"missing decision column(s) {', '.join(missing)}; table ignored")
        df = pd.DataFrame({c: [] for c in cols})
    df = df[list(cols)].reset_index(drop=True)
    if all(_has_kind(df[c], kinds[c]) for c in cols):
        return df
    typed = {}
    ok = np.ones(len(df), dtype=bool)
    for c in cols:
        s = df[c]
        if kinds[c] == "str":
            typed[c] = s.astype("object").where(s.notna(), "").map(str).astype("str")
            continue
        num = pd.to_numeric(s.astype("object").where(s.notna(), np.nan), errors="coerce").astype("float64")
        v = num.to_numpy()
        bad = ~np.isfinite(v)
        if kinds[c] == "int":
            bad |= v != np.rint(np.nan_to_num(v))
        for i in np.flatnonzero(bad)[:5]:
            out("table-value", f"{name} row {i + 1}", f"{c} is {s.iloc[i]!r}, not a "
                f"{'whole' if kinds[c] == 'int' else 'finite'} number; row ignored")
        if bad.sum() > 5:
            out("table-value", name, f"(+{int(bad.sum()) - 5} more rows with a bad {c})")
        ok &= ~bad
        typed[c] = num
    frame = pd.DataFrame(typed)[ok].reset_index(drop=True)
    for c in cols:
        if kinds[c] == "int":
            frame[c] = frame[c].astype("int64")
    return frame


def _has_kind(s: pd.Series, kind: str) -> bool:
    if kind == "str":
        return s.dtype == "str" and not s.isna().any()
    if kind == "int":
        return s.dtype == "int64"
    return s.dtype == "float64" and bool(np.isfinite(s.to_numpy()).all())


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
    use_train = np.zeros((P, T + 1), dtype=np.int64)  # difference array over periods
    L = len(inst.links)
    traffic = np.zeros((L, T))
    egress_gb = np.zeros((L, T))

    training = _decision_frame(decisions, "training", TRAINING_DECISIONS, out)
    ig = _decision_frame(decisions, "inference_gpus", INFERENCE_GPU_DECISIONS, out)
    flows = _decision_frame(decisions, "inference", FLOW_DECISIONS, out)

    train_rows, train_costs, placed = _evaluate_training(ctx, training, use_train, traffic, egress_gb, out)
    held = _evaluate_inference_gpus(ctx, ig, out)
    inf = _evaluate_flows(ctx, flows, ig, held, traffic, egress_gb, out)

    gpus_training = np.cumsum(use_train, axis=1)[:, :T]
    gpus_inf = held.sum(axis=0) if held.size else np.zeros((P, T), dtype=np.int64)
    site_gpus, sites, site_arrays, pool_costs, emissions = _evaluate_sites(ctx, gpus_training, gpus_inf, out)
    links, link_arrays = _evaluate_links(ctx, traffic, egress_gb, out)

    dropped = [j.id for j in inst.jobs if not j.mandatory and j.id not in placed]
    costs = {t: 0.0 for t in COST_TERMS}
    costs["reserved_lease"] = pool_costs["reserved_lease"]
    costs["ondemand_lease"] = pool_costs["ondemand_lease"]
    costs["power_lease"] = pool_costs["power_lease"]
    costs["energy"] = pool_costs["energy"]
    costs["egress"] = train_costs["egress"] + inf["egress"]
    costs["site_extra"] = train_costs["site_extra"]
    costs["tardiness"] = train_costs["tardiness"]
    costs["unserved"] = inf["unserved_usd"]
    costs["dropped_value"] = float(sum(ctx.jobs[j].value_usd for j in dropped))
    costs["carbon"] = float(inst.carbon_price_usd_per_t) * emissions
    if inst.budget_usd is not None:
        spend = sum(costs[t] for t in ("reserved_lease", "power_lease", "ondemand_lease", "energy", "egress",
                                       "site_extra"))
        if _over(spend, float(inst.budget_usd), ATOL_USD):
            out("budget-cap", "instance", f"lease + energy + egress + site extra = ${_fmt(spend)} "
                f"exceeds budget_usd ${_fmt(inst.budget_usd)} by ${_fmt(spend - inst.budget_usd)}")
    frames = {
        "training": normalize_frame("training", pd.DataFrame(train_rows, columns=list(TABLES["training"]))),
        "inference": inf["inference"],
        "inference_gpus": inf["inference_gpus"],
        "unserved": inf["unserved"],
        "site_gpus": site_gpus,
        "sites": sites,
        "links": links,
    }
    arrays = {"ctx": ctx, "held": held, "site_gpus": site_arrays["site_gpus"], "sites": site_arrays["sites"],
              "links": link_arrays, "unserved": inf["unserved_arrays"]}
    return Evaluation(frames=frames, costs=costs, emissions_t=emissions,
                      unserved_mtok=inf["unserved_mtok"], dropped_jobs=dropped,
                      violations=out.items, arrays=arrays)


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
        site = ctx.sites.get(sid)
        unknown_row = [jid, opt_i, sid, site.provider if site else "", gid, gpus, t, None,
                       ctx.time_at(t), "", np.nan, np.nan, np.nan, np.nan, np.nan]
        if job is None:
            out("training-unknown", f"training row {i + 1}", f"job {jid!r} is not in the instance")
            rows.append(unknown_row)
            continue
        if not 0 <= opt_i < len(job.options):
            out("training-option", where, f"option {opt_i} does not exist (the job has "
                f"{len(job.options)} option(s), numbered from 0)")
            placed.setdefault(jid, []).append((t, None))  # in the schedule, length unknown
            rows.append(unknown_row)
            continue
        opt = job.options[opt_i]
        if gid != opt.gpu_type or gpus != opt.gpus:
            out("training-option", where, f"option {opt_i} is {opt.gpus} x {opt.gpu_type} but the "
                f"schedule has {gpus} x {gid}")
        d = math.ceil(opt.hours / H - 1e-9)
        end = t + d
        placed.setdefault(jid, []).append((t, end))
        if site is None:
            out("training-unknown", where, f"site {sid!r} is not in the instance")
            rows.append([jid, opt_i, sid, "", gid, gpus, t, end, ctx.time_at(t), ctx.time_at(end),
                         float(opt.hours), np.nan, np.nan, np.nan, np.nan])
            continue
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
            ends = [e for _, e in placed[pred] if e is not None]
            if not ends:
                continue  # its option is unknown: reported above
            pred_end = max(ends)
            start = min(s for s, _ in placed[job.id])
            if pred_end > start:
                out("training-precedence", f"job {job.id}", f"starts in period {start} but its "
                    f"predecessor {pred} ends at period {pred_end}")
    return rows, costs, placed


def _evaluate_inference_gpus(ctx: _Ctx, ig: pd.DataFrame, out: _Sink) -> np.ndarray:
    """Check the GPUs services hold; return them as a dense (service, pool, period) array."""
    T = ctx.T
    V, P = len(ctx.services), len(ctx.pools)
    held = np.zeros((V, P, T), dtype=np.int64)
    if ig.empty:
        return held
    v = _codes(ig["service"], ctx.svc_code)
    s = _codes(ig["site"], ctx.site_code)
    g = _codes(ig["gpu_type"], ctx.gpu_code)
    p = np.where((s >= 0) & (g >= 0), ctx.pool_of[np.maximum(s, 0), np.maximum(g, 0)], -1)
    t = ig["period"].to_numpy()
    n = ig["gpus"].to_numpy()

    def where(i: int) -> str:
        return f"service {ig['service'].iat[i]}, site {ig['site'].iat[i]}, {ig['gpu_type'].iat[i]}, period {t[i]}"

    for i in np.flatnonzero(v < 0):
        out("inference-unknown", where(i), f"service {ig['service'].iat[i]!r} is not in the instance")
    for i in np.flatnonzero((v >= 0) & (p < 0)):
        out("capacity-pool", where(i), f"{n[i]} GPUs held, but site {ig['site'].iat[i]!r} has no "
            f"{ig['gpu_type'].iat[i]} pool")
    for i in np.flatnonzero((v >= 0) & (p >= 0) & ((t < 0) | (t >= T))):
        out("inference-period", where(i), f"period {t[i]} outside 0..{T - 1}")
    for i in np.flatnonzero(n < 0):
        out("inference-negative", where(i), f"gpus is {n[i]}")
    ok = (v >= 0) & (p >= 0) & (t >= 0) & (t < T) & (n >= 0)
    flat = (v[ok] * P + p[ok]) * T + t[ok]
    uniq, counts = np.unique(flat, return_counts=True)
    for k in uniq[counts > 1]:
        i = np.flatnonzero(ok)[np.flatnonzero(flat == k)[0]]
        out("inference-gpus-once", where(i), f"{int(counts[uniq == k][0])} rows for the same GPUs; expected one")
    np.add.at(held, (v[ok], p[ok], t[ok]), n[ok])
    # the service must be able to use what it holds, where it is allowed
    for vi, k in np.argwhere(held.sum(axis=2) > 0):
        svc, (site, pool) = ctx.services[vi], ctx.pools[k]
        if pool.gpu_type not in svc.tokens_per_s_per_gpu:
            out("inference-gpu-type", f"service {svc.id}, site {site.id}", f"holds {pool.gpu_type} GPUs "
                "but the service has no throughput on that type")
        _check_allowed(svc, site, "holds GPUs at", out)
    return held


def _check_allowed(svc, site, what: str, out: _Sink) -> None:
    if svc.allowed_sites is not None and site.id not in svc.allowed_sites:
        out("inference-allowed", f"service {svc.id}", f"{what} {site.id}, not in allowed_sites "
            f"({', '.join(svc.allowed_sites)})")
    if svc.allowed_zones is not None and site.zone not in svc.allowed_zones:
        out("inference-allowed", f"service {svc.id}", f"{what} {site.id} (zone {site.zone or '(none)'}), "
            f"not in allowed_zones ({', '.join(svc.allowed_zones)})")


def _within_slo(ctx: _Ctx, svc, si: int, ri: int) -> bool:
    """Whether site si may serve region ri for svc: a route within the SLO, allowed site/zone."""
    site, region = ctx.site_list[si], ctx.regions[ri]
    route = ctx.route(site.node_id, region.node_id)
    if route is None or route.latency_ms > svc.latency_slo_ms + 1e-9:
        return False
    return ((svc.allowed_sites is None or site.id in svc.allowed_sites)
            and (svc.allowed_zones is None or site.zone in svc.allowed_zones))


def _evaluate_flows(ctx: _Ctx, fl: pd.DataFrame, ig: pd.DataFrame, held: np.ndarray,
                    traffic: np.ndarray, egress_gb: np.ndarray, out: _Sink) -> dict[str, Any]:
    """Check the flows (SLO, residency, capacity, demand, N+1), route their traffic and
    derive the inference, inference_gpus and unserved tables."""
    T, H = ctx.T, ctx.H
    V, R, S, P = len(ctx.services), len(ctx.regions), len(ctx.site_list), len(ctx.pools)
    v = _codes(fl["service"], ctx.svc_code)
    r = _codes(fl["region"], ctx.region_code)
    s = _codes(fl["site"], ctx.site_code)
    g = _codes(fl["gpu_type"], ctx.gpu_code)
    t = fl["period"].to_numpy()
    x = fl["tokens_per_s"].to_numpy(dtype=float)
    known = (v >= 0) & (r >= 0) & (s >= 0) & (g >= 0)
    for col, codes, what in (("service", v, "service"), ("region", r, "region"), ("site", s, "site"),
                             ("gpu_type", g, "GPU type")):
        for i in np.flatnonzero(codes < 0):
            out("inference-unknown", f"inference row {i + 1}", f"{what} {fl[col].iat[i]!r} is not in the instance")
    for i in np.flatnonzero(known & ((t < 0) | (t >= T))):
        out("inference-period", f"inference row {i + 1}", f"period {t[i]} outside 0..{T - 1}")
    for i in np.flatnonzero(x < 0):
        out("inference-negative", f"inference row {i + 1}", f"tokens_per_s is {_fmt(x[i])}")
    ok = known & (t >= 0) & (t < T) & (x >= 0)
    p = np.where(ok, ctx.pool_of[np.maximum(s, 0), np.maximum(g, 0)], -1)

    def where(i: int) -> str:
        return (f"service {fl['service'].iat[i]}, region {fl['region'].iat[i]}, site {fl['site'].iat[i]}, "
                f"{fl['gpu_type'].iat[i]}, period {t[i]}")

    for i in np.flatnonzero(ok & (p < 0) & (x > 0)):
        out("capacity-pool", where(i), f"serves {_fmt(x[i])} tokens/s but the site has no such pool")
    G = ctx.tpg.shape[1]
    flat = (((v * R + r) * S + s) * G + g) * T + t
    uniq, counts = np.unique(flat[ok], return_counts=True)
    for k in uniq[counts > 1]:
        i = np.flatnonzero(ok & (flat == k))[0]
        out("inference-once", where(i), f"{int(counts[uniq == k][0])} rows for the same flow; expected one")

    # the inference table: every flow given, with the GPUs held at its (service, site, type, period)
    gpus = np.zeros(len(fl), dtype=np.int64)
    on_pool = ok & (p >= 0)
    gpus[on_pool] = held[v[on_pool], p[on_pool], t[on_pool]]
    inference = normalize_frame("inference", fl.assign(gpus=gpus)[list(TABLES["inference"])])
    inference_gpus = normalize_frame("inference_gpus", ig[ig["gpus"] != 0][list(TABLES["inference_gpus"])])

    # SLO and residency per (service, region, site) that carries traffic
    live = ok & (x > 0)
    latency = np.full((S, max(R, 1)), np.inf)
    routes: dict[tuple[int, int], Any] = {}
    peak_vrs = np.zeros((V, max(R, 1), max(S, 1)))
    rows_vrs = np.zeros((V, max(R, 1), max(S, 1)), dtype=np.int64)
    np.maximum.at(peak_vrs, (v[live], r[live], s[live]), x[live])
    np.add.at(rows_vrs, (v[live], r[live], s[live]), 1)
    for vi, ri, si in np.argwhere(rows_vrs > 0):
        svc, region, site = ctx.services[vi], ctx.regions[ri], ctx.site_list[si]
        if (si, ri) not in routes:
            routes[(si, ri)] = ctx.route(site.node_id, region.node_id)
            latency[si, ri] = np.inf if routes[(si, ri)] is None else routes[(si, ri)].latency_ms
        peak, n_t = _fmt(float(peak_vrs[vi, ri, si])), int(rows_vrs[vi, ri, si])
        label = f"service {svc.id}, site {site.id} -> region {region.id}"
        if routes[(si, ri)] is None:
            out("network-route", label, f"no network route, yet it serves up to {peak} tokens/s")
        elif latency[si, ri] > svc.latency_slo_ms + 1e-9:
            out("inference-slo", label, f"latency {latency[si, ri]:g} ms exceeds the SLO of "
                f"{svc.latency_slo_ms:g} ms (serves up to {peak} tokens/s, {n_t} flow row(s))")
        _check_allowed(svc, site, "serves from", out)

    # capacity: served per (service, pool, period) <= tokens_per_s_per_gpu x GPUs held
    served_vpt = np.zeros((V, P, T))
    np.add.at(served_vpt, (v[on_pool], p[on_pool], t[on_pool]), x[on_pool])
    rate = ctx.tpg[:, ctx.pool_gpu] if P else np.zeros((V, 0))  # (V, P)
    cap = held * rate[:, :, None]
    for vi, k, ti in np.argwhere(_over(served_vpt, cap, ATOL_TOKENS)):
        site, pool = ctx.pools[k]
        out("inference-capacity", f"service {ctx.services[vi].id}, site {site.id}, {pool.gpu_type}, period {ti}",
            f"serves {_fmt(served_vpt[vi, k, ti])} tokens/s but {held[vi, k, ti]} GPU(s) x "
            f"{_fmt(rate[vi, k])} tokens/s per GPU give {_fmt(cap[vi, k, ti])}")

    # demand: served <= demand, unserved = demand - served
    served_vrt = np.zeros((V, R, T))
    np.add.at(served_vrt, (v[ok], r[ok], t[ok]), x[ok])
    for vi, ri, ti in np.argwhere(_over(served_vrt, ctx.demand, ATOL_TOKENS)):
        out("inference-demand", f"service {ctx.services[vi].id}, region {ctx.regions[ri].id}, period {ti}",
            f"serves {_fmt(served_vrt[vi, ri, ti])} tokens/s but the demand is {_fmt(ctx.demand[vi, ri, ti])}")
    unserved = np.maximum(0.0, ctx.demand - served_vrt)
    present = (ctx.demand > 0) | (served_vrt > 0)
    idx = np.argwhere(present)
    unserved_frame = normalize_frame("unserved", pd.DataFrame({
        "service": [ctx.services[i].id for i in idx[:, 0]],
        "region": [ctx.regions[i].id for i in idx[:, 1]],
        "period": idx[:, 2].astype(np.int64),
        "demand_tokens_per_s": ctx.demand[present], "served_tokens_per_s": served_vrt[present],
        "unserved_tokens_per_s": unserved[present]}))
    mtok = unserved * 3600.0 * H / 1e6
    unserved_usd = float((mtok * ctx.penalty[:, None, None]).sum()) if V else 0.0

    # N+1, per region: for every region and every site within its SLO, the service's capacity
    # at the other sites within that SLO >= what the region is served; and for all the
    # regions demanded in a period at once, the capacity at the other sites that may serve
    # one of them >= all the service serves in it
    if any(svc.redundancy for svc in ctx.services) and P:
        cap_vst = np.zeros((V, S, T))
        np.add.at(cap_vst.transpose(1, 0, 2), ctx.pool_site, cap.transpose(1, 0, 2))
        for vi, svc in enumerate(ctx.services):
            if not svc.redundancy:
                continue
            wanted = (ctx.demand[vi] > 0) | (served_vrt[vi] > 0)  # (R, T)
            near = np.zeros((R, S), dtype=bool)
            for ri in np.flatnonzero(wanted.any(axis=1)):
                near[ri] = [_within_slo(ctx, svc, si, ri) for si in range(S)]
                caps = np.where(near[ri][:, None], cap_vst[vi], 0.0)  # (S, T)
                rest = caps.sum(axis=0) - caps.max(axis=0)
                for ti in np.flatnonzero((served_vrt[vi, ri] > ATOL_TOKENS)
                                         & _over(served_vrt[vi, ri], rest, ATOL_TOKENS)):
                    out("inference-redundancy", f"service {svc.id}, region {ctx.regions[ri].id}, period {ti}",
                        f"serves {_fmt(served_vrt[vi, ri, ti])} tokens/s but losing its largest site within "
                        f"the SLO leaves capacity for {_fmt(rest[ti])} within it (N+1)")
            served_t = served_vrt[vi].sum(axis=0)
            for ti in np.flatnonzero(served_t > ATOL_TOKENS):
                useful = near[wanted[:, ti]].any(axis=0)  # sites that may serve a region of t
                caps = np.where(useful, cap_vst[vi, :, ti], 0.0)
                rest_all = caps.sum() - caps.max()
                if _over(served_t[ti], rest_all, ATOL_TOKENS):
                    out("inference-redundancy", f"service {svc.id}, period {ti}",
                        f"serves {_fmt(served_t[ti])} tokens/s in all but losing its largest site leaves "
                        f"capacity for {_fmt(rest_all)} at the sites that may serve its regions (N+1)")

    # traffic and egress over each flow's site -> region route
    gbps = np.zeros((S, max(R, 1), T))
    gb = np.zeros((S, max(R, 1), T))
    b = ctx.bpt[np.maximum(v, 0)] if V else np.zeros(len(v))
    np.add.at(gbps, (s[live], r[live], t[live]), x[live] * b[live] * 8.0 / 1e9)
    np.add.at(gb, (s[live], r[live], t[live]), x[live] * b[live] * 3600.0 * H / 1e9)
    egress_usd = 0.0
    for (si, ri), route in routes.items():
        if route is None:
            continue
        for link in route.links:
            traffic[link] += gbps[si, ri]
            egress_gb[link] += gb[si, ri]
        egress_usd += float(gb[si, ri].sum()) * route.egress_usd_per_gb
    return {"inference": inference, "inference_gpus": inference_gpus, "unserved": unserved_frame,
            "unserved_arrays": {"demand_tokens_per_s": ctx.demand, "served_tokens_per_s": served_vrt,
                                "unserved_tokens_per_s": unserved, "present": present},
            "unserved_usd": unserved_usd, "unserved_mtok": float(mtok.sum()), "egress": egress_usd}


def _evaluate_sites(ctx: _Ctx, gpus_training: np.ndarray, gpus_inf: np.ndarray, out: _Sink):
    T, H = ctx.T, ctx.H
    S, P = len(ctx.site_list), len(ctx.pools)
    in_use = gpus_training + gpus_inf
    for k, t in np.argwhere((in_use > ctx.available[:, None]) | (in_use < 0)):
        s, p = ctx.pools[k]
        out("capacity-gpus", f"site {s.id}, {p.gpu_type}, period {t}",
            f"{in_use[k, t]:,} GPUs in use (training {gpus_training[k, t]:,}, inference "
            f"{gpus_inf[k, t]:,}) but {p.available:,} available")
    ondemand = np.maximum(0, in_use - ctx.reserved[:, None])
    power = np.zeros((S, T))
    np.add.at(power, ctx.pool_site, in_use * ctx.pool_mw_per_gpu[:, None])
    for si, t in np.argwhere(_over(power, ctx.cap_mw, ATOL_MW)):
        out("power-cap", f"site {ctx.site_list[si].id}, period {t}",
            f"{power[si, t]:,.6g} MW (GPUs in use x kW x PUE) exceeds the ceiling of "
            f"{ctx.cap_mw[si, t]:,.6g} MW")
    energy_mwh = power * H
    energy_usd = energy_mwh * ctx.energy_price
    emissions = energy_mwh * ctx.carbon / 1000.0
    res_pool = ctx.reserved * ctx.reserved_price * H  # $ per period
    od_pool = ondemand * ctx.ondemand_price[:, None] * H
    res_site = np.zeros(S)
    od_site = np.zeros((S, T))
    np.add.at(res_site, ctx.pool_site, res_pool)
    np.add.at(od_site, ctx.pool_site, od_pool)
    res_st = np.repeat(res_site[:, None], T, axis=1)
    power_lease = ctx.cap_mw * ctx.power_price[:, None] * H  # the ceiling is paid whether drawn
    pg = {
        "gpus_training": gpus_training, "gpus_inference": gpus_inf, "gpus_in_use": in_use,
        "gpus_available": np.repeat(ctx.available[:, None], T, axis=1),
        "gpus_reserved": np.repeat(ctx.reserved[:, None], T, axis=1), "gpus_ondemand": ondemand,
    }
    st = {
        "provider": np.repeat(np.array([s.provider for s in ctx.site_list], dtype=object)[:, None], T, axis=1),
        "power_mw": power, "power_cap_mw": ctx.cap_mw, "energy_mwh": energy_mwh, "emissions_t": emissions,
        "energy_usd": energy_usd, "reserved_lease_usd": res_st, "ondemand_lease_usd": od_site,
        "power_lease_usd": power_lease, "cost_usd": energy_usd + res_st + od_site + power_lease,
    }
    site_gpus = normalize_frame("site_gpus", pd.DataFrame({
        "site": np.repeat([s.id for s, _ in ctx.pools], T).astype(object),
        "gpu_type": np.repeat([p.gpu_type for _, p in ctx.pools], T).astype(object),
        "period": np.tile(np.arange(T, dtype=np.int64), P), **{c: a.reshape(-1) for c, a in pg.items()}}))
    sites = normalize_frame("sites", pd.DataFrame({
        "site": np.repeat([s.id for s in ctx.site_list], T).astype(object),
        "provider": st["provider"].reshape(-1), "period": np.tile(np.arange(T, dtype=np.int64), S),
        **{c: a.reshape(-1) for c, a in st.items() if c != "provider"}}))
    costs = {"reserved_lease": float(res_pool.sum() * T), "ondemand_lease": float(od_pool.sum()),
             "energy": float(energy_usd.sum()), "power_lease": float(power_lease.sum())}
    arrays = {"site_gpus": dict(pg, present=np.ones((P, T), dtype=bool)),
              "sites": dict(st, present=np.ones((S, T), dtype=bool))}
    return site_gpus, sites, arrays, costs, float(emissions.sum())


def _evaluate_links(ctx: _Ctx, traffic: np.ndarray, egress_gb: np.ndarray, out: _Sink):
    T = ctx.T
    links = ctx.inst.links
    L = len(links)
    bw = np.array([np.nan if k.bandwidth_gbps is None else float(k.bandwidth_gbps) for k in links]).reshape(L)
    price = np.array([float(k.egress_usd_per_gb) for k in links]).reshape(L)
    for li, t in np.argwhere(_over(traffic, np.nan_to_num(bw, nan=np.inf)[:, None], ATOL_GBPS)):
        k = links[li]
        out("network-bandwidth", f"link {li} ({k.a}-{k.b}), period {t}",
            f"{traffic[li, t]:,.6g} Gb/s exceeds the bandwidth of {bw[li]:,.6g} Gb/s")
    present = ~np.isnan(bw)[:, None] | (traffic > 0) | (egress_gb > 0)
    arrays = {
        "a": np.repeat(np.array([k.a for k in links], dtype=object)[:, None], T, axis=1),
        "b": np.repeat(np.array([k.b for k in links], dtype=object)[:, None], T, axis=1),
        "traffic_gbps": traffic, "bandwidth_gbps": np.repeat(bw[:, None], T, axis=1),
        "egress_gb": egress_gb, "egress_usd": egress_gb * price[:, None], "present": present,
    }
    idx = np.argwhere(present)
    frame = normalize_frame("links", pd.DataFrame({
        "link": idx[:, 0].astype(np.int64), "period": idx[:, 1].astype(np.int64),
        **{c: arrays[c][present] for c in ("a", "b", "traffic_gbps", "bandwidth_gbps", "egress_gb", "egress_usd")}}))
    return frame, arrays


# --------------------------------------------------------------------------- verify


def verify(inst: Instance, schedule: str | Path | Schedule, *, net: Network | None = None,
           previous: str | Path | Schedule | None = None) -> Verification:
    """Read a schedule folder (or take a Schedule read already) and check it completely:
    every rule, every exported derived table and every figure of summary.json. With
    ``previous`` (the schedule it re-plans) also the frozen jobs, the history before ``now``,
    the move budget and the move costs, with ``now`` and the caps read from summary.json."""
    sched = schedule if isinstance(schedule, Schedule) else read_schedule(schedule)
    out = _Sink()
    status = sched.summary.get("status")
    if (sched.summary.get("files") or {}).get(SCENARIO_FOLDERS) == SCENARIO_DIR or inst.scenarios:
        return _verify_scenarios(inst, sched, out)
    if _has_lease_decisions(inst) and status in ("optimal", "feasible"):
        inst = _leased(inst, sched.frames.get("leases"), out)
        net = None  # the network is the same, but built on the leased instance
    ev = evaluate(inst, sched.frames, net=net)
    if status not in ("optimal", "feasible"):
        out("schedule-status", "summary.json", f"status is {status!r}: the folder holds no schedule "
            "to verify (only optimal or feasible results carry one)")
        return Verification(out.items, ev, sched)
    _check_instance(inst, sched.summary, out)
    out.items.extend(ev.violations)
    ctx: _Ctx = ev.arrays["ctx"]
    f = sched.frames
    _compare_training(f.get("training"), ev.frames["training"], out)
    _compare_inference(f.get("inference"), ev, out)
    sites_ids = [s.id for s in ctx.site_list]
    _compare_dense("site_gpus", f.get("site_gpus"), ev.arrays["site_gpus"], ["site", "gpu_type", "period"],
                   lambda df: [ctx.pool_codes(df["site"], df["gpu_type"])],
                   lambda i: f"site {ctx.pools[i[0]][0].id}, {ctx.pools[i[0]][1].gpu_type}, period {i[1]}",
                   complete=True, T=ctx.T, out=out)
    _compare_dense("sites", f.get("sites"), ev.arrays["sites"], ["site", "period"],
                   lambda df: [_codes(df["site"], ctx.site_code)],
                   lambda i: f"site {sites_ids[i[0]]}, period {i[1]}", complete=True, T=ctx.T, out=out)
    _compare_dense("links", f.get("links"), ev.arrays["links"], ["link", "period"],
                   lambda df: [_bounded(df["link"], len(inst.links))],
                   lambda i: f"link {i[0]} ({inst.links[i[0]].a}-{inst.links[i[0]].b}), period {i[1]}",
                   complete=False, T=ctx.T, out=out)
    _compare_dense("unserved", f.get("unserved"), ev.arrays["unserved"], ["service", "region", "period"],
                   lambda df: [_codes(df["service"], ctx.svc_code), _codes(df["region"], ctx.region_code)],
                   lambda i: f"service {ctx.services[i[0]].id}, region {ctx.regions[i[1]].id}, period {i[2]}",
                   complete=False, T=ctx.T, out=out)
    if previous is not None:
        prev = previous if isinstance(previous, Schedule) else read_schedule(previous)
        ev.costs["migration"] = _check_replan(inst, sched, prev, net or Network(inst), out)
    elif (_num((sched.summary.get("costs") or {}).get("migration")) or 0.0) > ATOL_USD:
        out("replan-unchecked", "summary.json costs.migration",
            "the schedule re-plans a previous one: pass --previous PREV_DIR to check it")
    _compare_summary(sched.summary, ev, out)
    return Verification(out.items, ev, sched)


# --------------------------------------------------------------------------- leases


def _has_lease_decisions(inst: Instance) -> bool:
    return any(s.power_options is not None or any(p.reserve_options is not None for p in s.pools)
               for s in inst.sites)


def _allowed(lo: float, hi: float, step: float, size: float, tol: float) -> bool:
    """size is lo + k * step for a whole k, within [lo, hi]."""
    if size < lo - tol or size > hi + tol:
        return False
    k = round((size - lo) / step)
    return abs(lo + k * step - size) <= tol


def _leased(inst: Instance, leases: pd.DataFrame | None, out: _Sink) -> Instance:
    """The instance with its lease decisions as leases.csv says, after checking each size
    against its options and each cost against size x price x horizon hours. A decision
    without a row is taken as no block / the smallest ceiling, and reported."""
    hours = inst.horizon.periods * float(inst.horizon.period_hours)
    rows: dict[tuple[str, str], Any] = {}
    if leases is None:
        out("lease-missing", "leases.csv", "the instance decides leases (reserve_options or "
            "power_options) but the schedule has no leases table")
        leases = pd.DataFrame(columns=["site", "resource", "term", "size", "unit", "cost_usd"])
    for r in leases.itertuples(index=False):
        key = (str(r.site), str(r.resource))
        if key in rows:
            out("lease-duplicate", f"leases.csv {key[0]} {key[1]}", "two rows for one lease decision")
        rows[key] = r
    new = inst.model_copy(deep=True)
    decided: set[tuple[str, str]] = set()
    for s in new.sites:
        for p in s.pools:
            if p.reserve_options is None:
                continue
            decided.add((s.id, p.gpu_type))
            r = rows.get((s.id, p.gpu_type))
            size, price, where = 0, 0.0, f"leases.csv {s.id} {p.gpu_type}"
            if r is None:
                out("lease-missing", where, "no row for this pool's reserved block")
            elif float(r.size) != 0:
                offer = next((o for o in p.reserve_options if o.term == str(r.term)), None)
                if offer is None:
                    out("lease-term", where, f"term {str(r.term)!r} is none of the pool's offers "
                        f"({', '.join(o.term for o in p.reserve_options)})")
                elif not (float(r.size).is_integer()
                          and _allowed(offer.min_gpus, offer.max_gpus, offer.step_gpus, float(r.size), 0.0)):
                    out("lease-size", where, f"{r.size:g} GPUs is not a block the {offer.term} offer allows "
                        f"({offer.min_gpus} to {offer.max_gpus} in steps of {offer.step_gpus})")
                else:
                    size, price = int(r.size), float(offer.price_usd_per_gpu_h)
            if r is not None and not _close(float(r.cost_usd), size * price * hours, ATOL_USD):
                out("lease-cost", where, f"cost_usd {float(r.cost_usd):,.2f} but {size} GPUs x "
                    f"${price:g}/GPU-h x {hours:g} h = {size * price * hours:,.2f}")
            p.reserve_options = None
            p.reserved, p.reserved_price_usd_per_gpu_h = size, price
        if s.power_options is not None:
            opt = s.power_options
            decided.add((s.id, "power"))
            r = rows.get((s.id, "power"))
            where = f"leases.csv {s.id} power"
            mw = float(opt.min_mw)
            if r is None:
                out("lease-missing", where, "no row for this site's power ceiling")
            elif not _allowed(opt.min_mw, opt.max_mw, opt.step_mw, float(r.size), ATOL_MW):
                out("lease-size", where, f"{float(r.size):g} MW is not a ceiling the power options allow "
                    f"({opt.min_mw:g} to {opt.max_mw:g} in steps of {opt.step_mw:g})")
            else:
                mw = float(r.size)
            want = mw * opt.price_usd_per_mw_h * hours
            if r is not None and not _close(float(r.cost_usd), want, ATOL_USD):
                out("lease-cost", where, f"cost_usd {float(r.cost_usd):,.2f} but {mw:g} MW x "
                    f"${opt.price_usd_per_mw_h:g}/MW-h x {hours:g} h = {want:,.2f}")
            s.power_options = None
            s.power_cap_mw, s.power_price_usd_per_mw_h = mw, float(opt.price_usd_per_mw_h)
    for key in rows:
        if key not in decided:
            out("lease-unknown", f"leases.csv {key[0]} {key[1]}",
                "no pool with reserve_options or site with power_options has this lease")
    return new


def _scenario_instance(inst: Instance, k: int) -> Instance:
    """Scenario k's own instance, made here from the instance's definition: its overrides
    applied (paths as in sweep specs), the jobs of other scenarios and their precedence left
    out."""
    from allocator.sweep_spec import apply_overrides, resolve

    sc = inst.scenarios[k]
    changes = []
    for ov in sc.overrides:
        op, value = ("scale", ov.scale) if ov.scale is not None else ("set", ov.value)
        changes.extend((addr, op, value) for addr in resolve(inst, ov.path))
    one = apply_overrides(inst, changes)
    one.jobs = [j for j in one.jobs if j.scenarios is None or sc.id in j.scenarios]
    ids = {j.id for j in one.jobs}
    for j in one.jobs:
        j.scenarios = None
        j.predecessors = [p for p in j.predecessors if p in ids]
    one.scenarios = []
    return one


def _verify_scenarios(inst: Instance, sched: Schedule, out: _Sink) -> Verification:
    """A sizing schedule with scenarios: every scenario's folder verified on its own instance
    with the leases of the top folder; every folder holds those same leases; the expected
    cost is the probability-weighted sum of the scenarios' costs."""
    status = sched.summary.get("status")
    empty = Evaluation(frames={}, costs={t: 0.0 for t in COST_TERMS}, emissions_t=0.0,
                       unserved_mtok=0.0, dropped_jobs=[])
    if status not in ("optimal", "feasible"):
        out("schedule-status", "summary.json", f"status is {status!r}: the folder holds no schedule to verify")
        return Verification(out.items, empty, sched)
    if not inst.scenarios:
        out("scenarios-unexpected", "summary.json", "the schedule has scenario folders but the instance "
            "has no scenarios: is this the right instance?")
        return Verification(out.items, empty, sched)
    top = sched.frames.get("leases")
    subs: dict[str, Verification] = {}
    costs = {t: 0.0 for t in COST_TERMS}
    for k, sc in enumerate(inst.scenarios):
        folder = Path(sched.path) / SCENARIO_DIR / sc.id
        if not folder.is_dir():
            out("scenario-missing", str(folder), f"no folder for scenario {sc.id}")
            continue
        sub = read_schedule(folder)
        mine = sub.frames.get("leases")
        if top is None or mine is None or not _same_leases(top, mine):
            out("scenario-leases", f"{folder.name}/leases", "the scenario's leases differ from the "
                "top folder's: lease decisions are shared by every scenario")
        # the scenario is checked against the top folder's leases, the ones that are signed
        sub.frames["leases"] = top
        ver = verify(_scenario_instance(inst, k), sub)
        subs[sc.id] = ver
        out.items.extend(Violation(v.rule, f"scenario {sc.id}: {v.where}", v.message) for v in ver.violations)
        for t in COST_TERMS:
            costs[t] += float(sc.probability) * ver.evaluation.costs.get(t, 0.0)
    ev = Evaluation(frames={}, costs=costs, emissions_t=sum(
        float(sc.probability) * subs[sc.id].evaluation.emissions_t for sc in inst.scenarios if sc.id in subs),
        unserved_mtok=0.0, dropped_jobs=[])
    summary_costs = sched.summary.get("costs") or {}
    for t in COST_TERMS:
        got = _num(summary_costs.get(t))
        if got is not None and not _close(got, costs[t], ATOL_USD * len(inst.scenarios)):
            out("summary-cost", f"summary.json costs.{t}", f"{got:,.6g} but the probability-weighted "
                f"scenario costs give {costs[t]:,.6g}")
    total = _num(sched.summary.get("total_cost_usd"))
    if total is not None and not _close(total, ev.total_cost_usd, ATOL_USD * len(COST_TERMS) * len(inst.scenarios)):
        out("summary-total", "summary.json total_cost_usd", f"{total:,.6g} but the expected cost is "
            f"{ev.total_cost_usd:,.6g}")
    return Verification(out.items, ev, sched, scenarios=subs)


def _same_leases(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    def rows(df):
        return sorted((str(r.site), str(r.resource), str(r.term), round(float(r.size), 6)) for r in df.itertuples())
    return rows(a) == rows(b)


def _check_replan(inst: Instance, sched: Schedule, prev: Schedule, net: Network, out: _Sink) -> float:
    """Frozen jobs, history, move budget and move costs against the previous schedule; returns
    the migration $ recomputed (moves, retimes, inference scaling)."""
    options = sched.summary.get("options") if isinstance(sched.summary.get("options"), dict) else {}
    now = int(options.get("now") or 0)
    max_moves, max_gpus = options.get("max_moves"), options.get("max_moved_gpus")
    H = inst.horizon.period_hours
    jobs = {j.id: j for j in inst.jobs}
    nodes = {s.id: s.node_id for s in inst.sites}

    def rows(df):
        return {str(r.job): (int(r.option), str(r.site), str(r.gpu_type), int(r.gpus), int(r.start_period))
                for r in df.itertuples(index=False)}
    old, new = rows(prev.frames["training"]), rows(sched.frames["training"])
    total, moved, moved_gpus, paid = 0.0, 0, 0, {}
    for j, a in old.items():
        b = new.get(j)
        if j not in jobs:
            continue
        if a[4] < now:
            if b != a:
                out("replan-frozen", f"training job {j}", f"started in period {a[4]} before now = {now} "
                    f"at {a[1]} (option {a[0]}), but the schedule has {b or 'no placement'}")
            continue
        if b is None:
            continue
        job = jobs[j]
        if (a[0], a[1], a[2]) != (b[0], b[1], b[2]):
            moved += 1
            moved_gpus += b[3]
            if job.move_cost_usd is not None:
                c = float(job.move_cost_usd)
            else:
                r = net.route(nodes[a[1]], nodes[b[1]])
                c = job.dataset_tb * 1000.0 * (r.egress_usd_per_gb if r else 0.0) + job.move_fixed_usd
        else:
            c = abs(b[4] - a[4]) * H * job.retime_cost_usd_per_h
        paid[j] = c
        total += c
    for j, b in new.items():
        if b[4] < now and old.get(j) != b:
            out("replan-history", f"training job {j}", f"starts in period {b[4]}, before now = {now}, "
                "where the previous plan is history")
    if max_moves is not None and moved > int(max_moves):
        out("replan-max-moves", "training", f"{moved} jobs moved, above max_moves = {max_moves}")
    if max_gpus is not None and moved_gpus > int(max_gpus):
        out("replan-max-moved-gpus", "training", f"{moved_gpus} GPUs moved, above max_moved_gpus = {max_gpus}")
    ch = sched.frames.get("changes")
    if ch is not None:
        for r in ch.itertuples(index=False):
            want = paid.get(str(r.job), 0.0)
            if not _close(float(r.move_cost_usd), want, ATOL_USD):
                out("replan-move-cost", f"changes job {r.job}",
                    f"move_cost_usd {_fmt(float(r.move_cost_usd))} but recomputed {_fmt(want)}")
    scale = {v.id: v.scale_cost_usd_per_gpu for v in inst.services}
    T = inst.horizon.periods
    ig_new, ig_old = sched.frames.get("inference_gpus"), prev.frames.get("inference_gpus")
    if ig_new is not None and ig_old is not None:
        def gp(df):
            d: dict = {}
            for r in df.itertuples(index=False):
                d[(str(r.service), str(r.site), str(r.gpu_type), int(r.period))] = \
                    d.get((str(r.service), str(r.site), str(r.gpu_type), int(r.period)), 0) + int(r.gpus)
            return d
        a, b = gp(ig_old), gp(ig_new)
        for v, s, g in {k[:3] for k in list(a) + list(b)}:
            for t in range(min(now, T)):
                if a.get((v, s, g, t), 0) != b.get((v, s, g, t), 0):
                    out("replan-history", f"inference_gpus {v} at {s} ({g}), period {t}",
                        f"{b.get((v, s, g, t), 0)} GPUs but the previous plan had {a.get((v, s, g, t), 0)} "
                        f"before now = {now}")
            if scale.get(v, 0.0) > 0:
                last = 0
                for t in range(now, T):
                    d = b.get((v, s, g, t), 0) - a.get((v, s, g, t), 0)
                    total += scale[v] * abs(d - last)
                    last = d
    return total


def _bounded(s: pd.Series, n: int) -> np.ndarray:
    """Integer codes 0..n-1 from a column; -1 for anything else (missing, out of range)."""
    x = s.to_numpy(dtype=float, na_value=-1.0) if pd.api.types.is_numeric_dtype(s.dtype) else \
        pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=-1.0)
    x = np.nan_to_num(x, nan=-1.0)
    return np.where((x >= 0) & (x < n) & (x == np.rint(x)), x, -1).astype(np.int64)


def verify_schedule(inst: Instance, schedule_dir: str | Path) -> list[Violation]:
    """Every violation found in the schedule folder; an empty list means it is sound."""
    return verify(inst, schedule_dir).violations


def _check_instance(inst: Instance, summary: Mapping[str, Any], out: _Sink) -> None:
    meta = summary.get("instance")
    h = meta.get("horizon") if isinstance(meta, dict) else None
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


def _differs(a: np.ndarray, b: np.ndarray, col: str) -> np.ndarray:
    """Where an exported value a differs from the recomputed b."""
    if a.dtype.kind in "iufb" and b.dtype.kind in "iufb":
        x, y = a.astype(float), b.astype(float)
        both_nan = np.isnan(x) & np.isnan(y)
        with np.errstate(invalid="ignore"):
            ok = np.abs(x - y) <= RTOL * np.maximum(np.abs(x), np.abs(y)) + _atol(col)
        return ~(ok | both_nan)
    if col.endswith("_time"):
        xa = pd.to_datetime(pd.Series(a, dtype=object).replace("", None), utc=True, errors="coerce")
        xb = pd.to_datetime(pd.Series(b, dtype=object).replace("", None), utc=True, errors="coerce")
        return ~((xa == xb) | (xa.isna() & xb.isna())).to_numpy()
    return np.array([str(p) != str(q) for p, q in zip(a, b, strict=True)], dtype=bool)


def _values(s: pd.Series) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        return s.to_numpy(dtype=float, na_value=np.nan)
    return s.astype("object").where(s.notna(), "").to_numpy()


def _show(v: Any) -> str:
    if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
        return _fmt(float(v))
    return repr(v) if v is not None and v is not pd.NA else "none"


def _compare_dense(name: str, exported: pd.DataFrame | None, arrays: Mapping[str, np.ndarray],
                   keys: list[str], entity_codes, describe, *, complete: bool, T: int,
                   out: _Sink) -> None:
    """Compare an exported derived table with its recomputation held in dense arrays.

    Every recomputed row (``arrays['present']``) must be exported once with equal values. An
    exported row with no recomputed counterpart is wrong if the table is ``complete``
    (site_gpus, sites: one row per pool or site and period) or if it carries a nonzero
    quantity (unserved and links may list rows of zeros)."""
    rule = f"export-{name}"
    if exported is None:
        out(rule, name, "table is missing")
        return
    missing = [c for c in TABLES[name] if c not in exported.columns]
    if missing:
        out(rule, name, f"missing column(s) {', '.join(missing)}")
        return
    present = arrays["present"]
    cols = [c for c in TABLES[name] if c not in keys]
    codes = [np.asarray(c, dtype=np.int64) for c in entity_codes(exported)]
    t = exported["period"].to_numpy(dtype=float, na_value=-1).astype(np.int64)
    known = np.logical_and.reduce([c >= 0 for c in codes] + [t >= 0, t < T])
    flat = np.full(len(exported), -1, dtype=np.int64)
    if known.any():
        flat[known] = np.ravel_multi_index(tuple(c[known] for c in codes) + (t[known],), present.shape)
    vals = {c: _values(exported[c]) for c in cols}
    quantities = [c for c in cols if TABLES[name][c] in ("int", "float") and c not in _LIMIT_COLUMNS]
    for i in np.flatnonzero(~known):
        nonzero = [c for c in quantities if not np.isnan(vals[c][i]) and abs(vals[c][i]) > _atol(c)]
        if complete or nonzero:
            label = ", ".join(f"{k} {exported[k].iat[i]}" for k in keys)
            out(rule, f"{name}: {label}", "row does not follow from the instance (no such entity or period)"
                + (f"; it shows {', '.join(f'{c} {_show(vals[c][i])}' for c in nonzero)}" if nonzero else ""))
    seen = np.zeros(present.size, dtype=np.int64)
    np.add.at(seen, flat[known], 1)
    for k in np.flatnonzero(seen > 1):
        out(rule, f"{name}: {describe(np.unravel_index(k, present.shape))}", f"row appears {seen[k]} times")
    for k in np.flatnonzero(present.reshape(-1) & (seen == 0)):
        idx = np.unravel_index(k, present.shape)
        shown = ", ".join(f"{c} {_show(arrays[c][idx])}" for c in quantities if arrays[c][idx] != 0)
        out(rule, f"{name}: {describe(idx)}", f"row is missing (recomputed: {shown or 'zeros'})")
    rows = np.flatnonzero(known)
    if not len(rows):
        return
    pos = flat[rows]
    bad = {c: _differs(vals[c][rows], arrays[c].reshape(-1)[pos], c) for c in cols}
    # an exported row of zeros where nothing was recomputed is allowed (not complete tables)
    extra = ~present.reshape(-1)[pos]
    for j in np.flatnonzero(np.logical_or.reduce(list(bad.values()))):
        k = pos[j]
        idx = np.unravel_index(k, present.shape)
        diffs = [f"{c} is {_show(vals[c][rows[j]])}, recomputed {_show(arrays[c][idx])}" for c in cols if bad[c][j]]
        if extra[j] and not complete and all(c in _LIMIT_COLUMNS or abs(vals[c][rows[j]]) <= _atol(c)
                                             for c in cols if bad[c][j] and c not in ("a", "b")):
            continue
        out(rule, f"{name}: {describe(idx)}", "; ".join(diffs))


_LIMIT_COLUMNS = ("bandwidth_gbps", "gpus_available", "gpus_reserved", "power_cap_mw", "a", "b", "provider")


def _compare_training(exported: pd.DataFrame | None, expected: pd.DataFrame, out: _Sink) -> None:
    """The derived columns of each placed job (end, times, hours, costs) as recomputed."""
    if exported is None or expected.empty:
        return
    cols = [c for c in TABLES["training"] if c not in TRAINING_DECISIONS]
    have = [c for c in cols if c in exported.columns]
    if len(have) < len(cols):
        out("export-training", "training", f"missing column(s) {', '.join(c for c in cols if c not in have)}")
    first = {}
    for i, j in enumerate(expected["job"]):
        first.setdefault(j, i)
    ex_rows, re_rows = [], []
    seen: set[str] = set()
    for i, j in enumerate(exported["job"]):
        if j in first and j not in seen:
            seen.add(j)
            ex_rows.append(i)
            re_rows.append(first[j])
    if not ex_rows:
        return
    bad = {c: _differs(_values(exported[c])[ex_rows], _values(expected[c])[re_rows], c) for c in have}
    for n in np.flatnonzero(np.logical_or.reduce(list(bad.values()))) if bad else []:
        i, k = ex_rows[n], re_rows[n]
        diffs = [f"{c} is {_show(exported[c].iat[i])}, recomputed {_show(expected[c].iat[k])}"
                 for c in have if bad[c][n]]
        out("export-training", f"training: job {exported['job'].iat[i]}", "; ".join(diffs))


def _compare_inference(exported: pd.DataFrame | None, ev: Evaluation, out: _Sink) -> None:
    """The gpus column of each flow equals the GPUs held in inference_gpus."""
    if exported is None or exported.empty or "gpus" not in exported.columns:
        return
    re_ = ev.frames["inference"]
    if len(re_) != len(exported):
        return  # rows left out for unreadable values: reported already
    got = _values(exported["gpus"])
    want = _values(re_["gpus"])
    for i in np.flatnonzero(_differs(got, want, "gpus")):
        r = re_.iloc[i]
        out("export-inference", f"inference: service {r['service']}, region {r['region']}, site {r['site']}, "
            f"{r['gpu_type']}, period {r['period']}",
            f"gpus is {_show(got[i])} but inference_gpus holds {_show(want[i])}")


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
    for key, want, unit in (("emissions_t", ev.emissions_t, "t"), ("unserved_mtok", ev.unserved_mtok, "Mtok")):
        got = _num(summary.get(key))
        if got is None or not _close(got, want, 1e-6):
            out(f"{key.split('_')[0]}-mismatch", f"summary.json {key}",
                f"{_fmt(got)} {unit} but recomputed {_fmt(want)} {unit}")
    dropped = summary.get("dropped_jobs")
    if isinstance(dropped, list) and sorted(map(str, dropped)) != sorted(ev.dropped_jobs):
        out("dropped-mismatch", "summary.json dropped_jobs",
            f"lists {sorted(map(str, dropped))} but the optional jobs not in the schedule are "
            f"{sorted(ev.dropped_jobs)}")
    options = summary.get("options") if isinstance(summary.get("options"), dict) else {}
    mode = options.get("objective", "cost")
    obj = _num(summary.get("objective"))
    if obj is None:
        return
    if mode in ("carbon", "cost-then-carbon"):
        target, label, atol = ev.emissions_t, "emissions_t", 1e-6
    else:
        target, label, atol = ev.total_cost_usd, "total cost", ATOL_USD * len(COST_TERMS)
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
    if ver.scenarios:
        return (f"schedule OK: {len(ver.scenarios)} scenarios, each within the leases, costs match "
                f"(expected total ${display.fixed(ev.total_cost_usd)})")
    n_jobs = len(ev.frames["training"])
    n_flows = int((ev.frames["inference"]["tokens_per_s"] > 0).sum())
    return (f"schedule OK: {n_jobs} jobs, {n_flows} flows, costs match "
            f"(total ${display.fixed(ev.total_cost_usd)})")


def group_by_rule(violations: Iterable[Violation]) -> dict[str, list[Violation]]:
    """Violations grouped by rule, in the order rules were first met."""
    groups: dict[str, list[Violation]] = {}
    for v in violations:
        groups.setdefault(v.rule, []).append(v)
    return groups
