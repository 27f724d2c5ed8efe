"""Read a solved model back into the tables of docs/schedule-format.md.

Decisions are read from the variables and rounded (binaries and integers to whole numbers,
tokens/s below 1e-6 to zero); every derived figure (GPUs in use, on-demand GPUs, power,
energy, emissions, traffic, egress, costs) is then recomputed from those rounded decisions
with the definitions of the schedule format, so the exported tables and the cost breakdown
agree with what the verifier recomputes even when the solver stopped at an incumbent whose
continuous variables are not tight (e.g. on-demand above what is in use).
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pyomo.environ as pyo

from allocator.formulation.common import KTOK, all_placements, col_rows
from allocator.indexing import GB_PER_TB, Index
from allocator.results import COST_TERMS
from allocator.schema import Instance

TOKENS_TOL = 1e-6


def _unserved(demand: pd.Series, served: pd.Series) -> pd.Series:
    """demand - served, with the solver's noise (a shortfall within TOKENS_TOL or a 1e-9
    share of the demand, e.g. 100 - (33.3... + 66.6...)) as 0, never below 0."""
    short = (demand - served).astype(float)
    return short.where(short > np.maximum(TOKENS_TOL, 1e-9 * demand.astype(float)), 0.0)


TRAINING_COLUMNS = ["job", "option", "site", "provider", "gpu_type", "gpus", "start_period",
                    "end_period", "start_time", "end_time", "hours", "tardiness_h", "site_extra_usd",
                    "tardiness_usd", "egress_usd"]
INFERENCE_COLUMNS = ["service", "region", "site", "gpu_type", "period", "tokens_per_s", "gpus"]
INFERENCE_GPUS_COLUMNS = ["service", "site", "gpu_type", "period", "gpus"]
UNSERVED_COLUMNS = ["service", "region", "period", "demand_tokens_per_s", "served_tokens_per_s",
                    "unserved_tokens_per_s"]
SITE_GPUS_COLUMNS = ["site", "gpu_type", "period", "gpus_training", "gpus_inference", "gpus_in_use",
                     "gpus_available", "gpus_reserved", "gpus_ondemand"]
SITES_COLUMNS = ["site", "provider", "period", "power_mw", "power_cap_mw", "energy_mwh", "emissions_t",
                 "energy_usd", "reserved_lease_usd", "ondemand_lease_usd", "cost_usd"]
LINKS_COLUMNS = ["link", "a", "b", "period", "traffic_gbps", "bandwidth_gbps", "egress_gb", "egress_usd"]


def _iso(ts) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def _values(var) -> np.ndarray:
    return np.array([0.0 if v.value is None else float(v.value) for v in var.values()], dtype=float)


def _placed(model) -> pd.DataFrame:
    """Placement rows whose start variable is 1 (one per job: the largest if several)."""
    if not hasattr(model, "start"):
        return all_placements(model).iloc[0:0]
    p = all_placements(model)
    x = _values(model.start)
    chosen = p[x > 0.5].assign(_x=x[x > 0.5])
    return chosen.sort_values("_x", ascending=False).drop_duplicates("j").drop(columns="_x") \
        .sort_values(["j"]).reset_index(drop=True)


def _serve(model, index: Index) -> pd.DataFrame:
    s = index.serve.copy()
    s["tokens_per_s"] = _values(model.serve) * KTOK if hasattr(model, "serve") else 0.0
    s.loc[s["tokens_per_s"] < TOKENS_TOL, "tokens_per_s"] = 0.0
    return s[s["tokens_per_s"] > 0].reset_index(drop=True)


def _gpus_inf(model, index: Index) -> pd.DataFrame:
    sp = index.service_periods.copy()
    sp["gpus"] = np.rint(_values(model.gpus_inf)).astype(np.int64) if hasattr(model, "gpus_inf") \
        else np.zeros(len(sp), dtype=np.int64)
    return sp[sp["gpus"] > 0].reset_index(drop=True)


def extract_frames(model, inst: Instance, index: Index) -> dict[str, pd.DataFrame]:
    """The schedule tables (training, inference, inference_gpus, unserved, site_gpus, sites,
    links) of a solved model; see docs/schedule-format.md for every column."""
    T, H = index.periods, index.period_hours
    sites = {s.id: s for s in inst.sites}
    jobs = {j.id: j for j in inst.jobs}
    svc = {v.id: v for v in inst.services}
    start = inst.horizon.start
    placed = _placed(model)
    flows = _serve(model, index)
    held = _gpus_inf(model, index)

    # training
    tr = pd.DataFrame({
        "job": placed["j"].astype(str),
        "option": placed["o"].astype(np.int64),
        "site": placed["s"].astype(str),
        "provider": [sites[s].provider for s in placed["s"]],
        "gpu_type": placed["g"].astype(str),
        "gpus": placed["gpus"].astype(np.int64),
        "start_period": placed["t"].astype(np.int64),
        "end_period": placed["end"].astype(np.int64),
        "start_time": [_iso(start + timedelta(hours=int(t) * H)) for t in placed["t"]],
        "end_time": [_iso(start + timedelta(hours=int(e) * H)) for e in placed["end"]],
        "hours": [float(jobs[j].options[int(o)].hours) for j, o in zip(placed["j"], placed["o"], strict=True)],
        "tardiness_h": placed["tardiness_h"].astype(float),
        "site_extra_usd": placed["site_extra_usd"].astype(float),
        "tardiness_usd": placed["tardiness_usd"].astype(float),
        "egress_usd": placed["egress_usd"].astype(float),
    }, columns=TRAINING_COLUMNS)

    # inference_gpus and inference
    ig = pd.DataFrame({"service": held["v"].astype(str), "site": held["s"].astype(str),
                       "gpu_type": held["g"].astype(str), "period": held["t"].astype(np.int64),
                       "gpus": held["gpus"].astype(np.int64)}, columns=INFERENCE_GPUS_COLUMNS)
    gp = {(v, s, g, int(t)): int(n) for v, s, g, t, n in
          col_rows(held, ["v", "s", "g", "t", "gpus"])}
    inf = pd.DataFrame({
        "service": flows["v"].astype(str), "region": flows["r"].astype(str),
        "site": flows["s"].astype(str), "gpu_type": flows["g"].astype(str),
        "period": flows["t"].astype(np.int64), "tokens_per_s": flows["tokens_per_s"].astype(float),
        "gpus": [gp.get((v, s, g, int(t)), 0) for v, s, g, t in
                 zip(flows["v"], flows["s"], flows["g"], flows["t"], strict=True)],
    }, columns=INFERENCE_COLUMNS)
    inf["gpus"] = inf["gpus"].astype(np.int64)

    # unserved: every (v, r, t) with demand > 0 or with traffic
    served = flows.groupby(["v", "r", "t"], as_index=False)["tokens_per_s"].sum()
    un = index.demands.merge(served, on=["v", "r", "t"], how="outer")
    un["demand"] = un["demand"].fillna(0.0)
    un["tokens_per_s"] = un["tokens_per_s"].fillna(0.0)
    un = un.sort_values(["v", "r", "t"]).reset_index(drop=True)
    unserved = pd.DataFrame({
        "service": un["v"].astype(str), "region": un["r"].astype(str), "period": un["t"].astype(np.int64),
        "demand_tokens_per_s": un["demand"].astype(float),
        "served_tokens_per_s": un["tokens_per_s"].astype(float),
        "unserved_tokens_per_s": _unserved(un["demand"], un["tokens_per_s"]),
    }, columns=UNSERVED_COLUMNS)

    # site_gpus: every pool x period
    pools = index.pools
    P, G = len(pools), np.arange(T)
    pool_pos = {(s, g): i for i, (s, g) in enumerate(zip(pools["s"], pools["g"], strict=True))}
    train_use = np.zeros((P, T), dtype=np.int64)
    for s, g, t, e, n in col_rows(placed, ["s", "g", "t", "end", "gpus"]):
        train_use[pool_pos[s, g], int(t):int(e)] += int(n)
    inf_use = np.zeros((P, T), dtype=np.int64)
    for s, g, t, n in col_rows(held, ["s", "g", "t", "gpus"]):
        inf_use[pool_pos[s, g], int(t)] += int(n)
    in_use = train_use + inf_use
    avail = pools["available"].to_numpy(dtype=np.int64)[:, None]
    reserved = pools["reserved"].to_numpy(dtype=np.int64)[:, None]
    ondemand = np.maximum(0, in_use - reserved)
    site_gpus = pd.DataFrame({
        "site": np.repeat(pools["s"].to_numpy(dtype=object), T).astype(str),
        "gpu_type": np.repeat(pools["g"].to_numpy(dtype=object), T).astype(str),
        "period": np.tile(G, P).astype(np.int64),
        "gpus_training": train_use.ravel(), "gpus_inference": inf_use.ravel(),
        "gpus_in_use": in_use.ravel(), "gpus_available": np.repeat(avail[:, 0], T),
        "gpus_reserved": np.repeat(reserved[:, 0], T), "gpus_ondemand": ondemand.ravel(),
    }, columns=SITE_GPUS_COLUMNS)

    # sites: every site x period
    mw_per_gpu = pools["mw_per_gpu"].to_numpy(dtype=float)[:, None]
    pool_mw = in_use * mw_per_gpu
    pool_od_usd = ondemand * pools["ondemand_price_usd_per_gpu_h"].to_numpy(dtype=float)[:, None] * H
    pool_res_usd = (pools["reserved"] * pools["reserved_price_usd_per_gpu_h"]).to_numpy(dtype=float) * H
    rows = []
    sp = index.site_periods.sort_values(["s", "t"])
    series = {s: g for s, g in sp.groupby("s", sort=False)}
    for site in inst.sites:
        idx = [i for i, s in enumerate(pools["s"]) if s == site.id]
        power = pool_mw[idx].sum(axis=0) if idx else np.zeros(T)
        od = pool_od_usd[idx].sum(axis=0) if idx else np.zeros(T)
        res = float(pool_res_usd[idx].sum()) if idx else 0.0
        ser = series[site.id]
        cap = ser["power_cap_mw"].to_numpy(dtype=float)
        price = ser["energy_price_usd_per_mwh"].to_numpy(dtype=float)
        carbon = ser["carbon_g_per_kwh"].to_numpy(dtype=float)
        energy = power * H
        energy_usd = energy * price
        rows.append(pd.DataFrame({
            "site": site.id, "provider": site.provider, "period": G.astype(np.int64),
            "power_mw": power, "power_cap_mw": cap, "energy_mwh": energy,
            "emissions_t": energy * carbon / 1000.0, "energy_usd": energy_usd,
            "reserved_lease_usd": np.full(T, res), "ondemand_lease_usd": od,
            "cost_usd": energy_usd + res + od,
        }))
    sites_df = pd.concat(rows, ignore_index=True)[SITES_COLUMNS] if rows else \
        pd.DataFrame(columns=SITES_COLUMNS)
    for c in ("site", "provider"):
        sites_df[c] = sites_df[c].astype(str)

    links_df = _links_frame(inst, index, placed, flows, svc)
    return {"training": tr, "inference": inf, "inference_gpus": ig, "unserved": unserved,
            "site_gpus": site_gpus, "sites": sites_df, "links": links_df}


def _links_frame(inst: Instance, index: Index, placed: pd.DataFrame, flows: pd.DataFrame,
                 svc: dict) -> pd.DataFrame:
    T, H = index.periods, index.period_hours
    L = len(inst.links)
    traffic = np.zeros((L, T))
    gb = np.zeros((L, T))
    jobs = {j.id: j for j in inst.jobs}
    for j, t, e, d, gbps, links in col_rows(placed, ["j", "t", "end", "d", "staging_gbps", "links"]):
        if not links or gbps <= 0:
            continue
        per_period_gb = jobs[j].dataset_tb * GB_PER_TB / int(d)
        for lk in links:
            traffic[lk, int(t):int(e)] += gbps
            gb[lk, int(t):int(e)] += per_period_gb
    if len(flows):
        f = flows.merge(index.flows[["v", "r", "s", "g", "links"]], on=["v", "r", "s", "g"], how="left")
        for v, t, tps, links in col_rows(f, ["v", "t", "tokens_per_s", "links"]):
            bpt = svc[v].bytes_per_token
            for lk in links:
                traffic[lk, int(t)] += tps * bpt * 8.0 / 1e9
                gb[lk, int(t)] += tps * bpt * 3600.0 * H / 1e9
    rows = []
    for lk, link in enumerate(inst.links):
        if link.bandwidth_gbps is not None:
            ts = np.arange(T)
        else:
            ts = np.flatnonzero((traffic[lk] > 0) | (gb[lk] > 0))
        if not len(ts):
            continue
        rows.append(pd.DataFrame({
            "link": np.int64(lk), "a": link.a, "b": link.b, "period": ts.astype(np.int64),
            "traffic_gbps": traffic[lk, ts],
            "bandwidth_gbps": np.nan if link.bandwidth_gbps is None else float(link.bandwidth_gbps),
            "egress_gb": gb[lk, ts], "egress_usd": gb[lk, ts] * link.egress_usd_per_gb,
        }))
    if not rows:
        out = pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
            LINKS_COLUMNS, ["int64", "str", "str", "int64", "float64", "float64", "float64", "float64"],
            strict=True)})
        return out
    out = pd.concat(rows, ignore_index=True)[LINKS_COLUMNS]
    out["link"] = out["link"].astype(np.int64)
    out["a"] = out["a"].astype(str)
    out["b"] = out["b"].astype(str)
    out["bandwidth_gbps"] = out["bandwidth_gbps"].astype(float)
    return out


def costs_from_frames(inst: Instance, frames: dict[str, pd.DataFrame]) -> dict[str, float]:
    """The cost terms of docs/schedule-format.md recomputed from the extracted tables."""
    H = inst.horizon.period_hours
    sites, tr, un, links = frames["sites"], frames["training"], frames["unserved"], frames["links"]
    svc = {v.id: v for v in inst.services}
    placed = set(tr["job"])
    emissions = float(sites["emissions_t"].sum())
    pen = un["service"].map({v: svc[v].unserved_usd_per_mtok for v in svc}).astype(float) \
        if len(un) else pd.Series(dtype=float)
    return {
        "reserved_lease": float(sites["reserved_lease_usd"].sum()),
        "ondemand_lease": float(sites["ondemand_lease_usd"].sum()),
        "energy": float(sites["energy_usd"].sum()),
        "egress": float(links["egress_usd"].sum()),
        "site_extra": float(tr["site_extra_usd"].sum()),
        "tardiness": float(tr["tardiness_usd"].sum()),
        "unserved": float((un["unserved_tokens_per_s"] * 3600.0 * H / 1e6 * pen).sum()) if len(un) else 0.0,
        "dropped_value": float(sum(j.value_usd for j in inst.jobs if not j.mandatory and j.id not in placed)),
        "carbon": inst.carbon_price_usd_per_t * emissions,
    }


def extract_costs(model, inst: Instance | None = None, index: Index | None = None) -> dict[str, float]:
    """$ per cost term, recomputed from the rounded decisions (what the verifier recomputes).

    ``inst`` and ``index`` default to those the model was built from; a model built
    elsewhere falls back to the values of ``model.cost`` as solved."""
    inst = inst if inst is not None else getattr(model, "_inst", None)
    index = index if index is not None else getattr(model, "_index", None)
    if inst is not None and index is not None:
        return costs_from_frames(inst, extract_frames(model, inst, index))
    return {k: float(pyo.value(model.cost[k], exception=False) or 0.0) for k in COST_TERMS}


def extract_emissions(model, inst: Instance | None = None, index: Index | None = None) -> float:
    """tCO2 over the horizon, recomputed from the rounded decisions."""
    inst = inst if inst is not None else getattr(model, "_inst", None)
    index = index if index is not None else getattr(model, "_index", None)
    if inst is not None and index is not None:
        return float(extract_frames(model, inst, index)["sites"]["emissions_t"].sum())
    return float(pyo.value(model.emissions_t, exception=False) or 0.0)


def start_values_from_schedule(model, training_df: pd.DataFrame | None,
                               inference_gpus_df: pd.DataFrame | None = None,
                               inference_df: pd.DataFrame | None = None) -> int:
    """Set variable values from a schedule (a warm start): start = 1 for each training row
    (job, option, site, start_period) that is a placement of the model and 0 otherwise,
    gpus_inf from inference_gpus (service, site, gpu_type, period, gpus), serve from the
    inference flows if given, then unserved and on-demand consistently. Returns the number of
    training rows that matched a start variable."""
    matched = 0
    if hasattr(model, "start"):
        for v in model.start.values():
            v.set_value(0, skip_validation=True)
        if training_df is not None:
            for j, o, s, t in col_rows(training_df, ["job", "option", "site", "start_period"]):
                key = (str(j), int(o), str(s), int(t))
                if key in model.start:
                    model.start[key].set_value(1, skip_validation=True)
                    matched += 1
    if hasattr(model, "gpus_inf"):
        for v in model.gpus_inf.values():
            v.set_value(0, skip_validation=True)
        if inference_gpus_df is not None:
            for v, s, g, t, n in col_rows(inference_gpus_df, ["service", "site", "gpu_type", "period",
                                                  "gpus"]):
                key = (str(v), str(s), str(g), int(t))
                if key in model.gpus_inf:
                    model.gpus_inf[key].set_value(int(n), skip_validation=True)
    if hasattr(model, "serve"):
        for v in model.serve.values():
            v.set_value(0.0, skip_validation=True)
        if inference_df is not None:
            for v, r, s, g, t, x in col_rows(inference_df, ["service", "region", "site", "gpu_type", "period",
                                                  "tokens_per_s"]):
                key = (str(v), str(r), str(s), str(g), int(t))
                if key in model.serve:
                    model.serve[key].set_value(float(x) / KTOK, skip_validation=True)
    if hasattr(model, "unserved"):
        served: dict[tuple, float] = {}
        if hasattr(model, "serve"):
            for (v, r, _s, _g, t), x in model.serve.items():
                served[v, r, t] = served.get((v, r, t), 0.0) + (x.value or 0.0)
        for (v, r, t), x in model.unserved.items():
            x.set_value(max(0.0, x.ub - served.get((v, r, t), 0.0)), skip_validation=True)
    if hasattr(model, "ondemand") and hasattr(model, "gpus_in_use"):
        reserved = {(s.id, p.gpu_type): p.reserved for s in _inst_sites(model) for p in s.pools}
        for (s, g, t), x in model.ondemand.items():
            use = pyo.value(model.gpus_in_use[s, g, t], exception=False) or 0.0
            x.set_value(min(x.ub, max(0.0, use - reserved.get((s, g), 0))), skip_validation=True)
    for name in ("training_unplaced", "slack_deadline_h", "slack_gpus", "slack_power_mw",
                 "slack_gbps", "slack_budget_usd"):
        if hasattr(model, name):
            for v in getattr(model, name).values():
                v.set_value(0.0, skip_validation=True)
    return matched


def _inst_sites(model):
    return model._inst.sites
