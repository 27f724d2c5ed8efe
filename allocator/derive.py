"""Every table and cost of a schedule, derived from its decisions: the one derivation used
by every route (mip, lns, greedy) and by the sweep.

A strategy hands back decision tables (allocator.outcome: training, inference_gpus,
inference); ``derive(inst, index, decisions)`` computes from them, with the definitions of
docs/schedule-format.md, GPUs in use, on-demand GPUs, power, energy, emissions, traffic,
egress, unserved demand and the cost breakdown. The coefficients of a training placement
(duration, site extra, tardiness, staging egress and route) are read from the index, the
same rows the formulation builds its columns from, so the derivation and the model agree by
construction; the independent check is allocator.verify, which shares none of this code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd

from allocator.indexing import Index
from allocator.quantities import (
    egress_gb_per_period,
    emissions_t,
    energy_mwh,
    gbps_of_tokens,
    mtok_per_period,
    ondemand_gpus,
    staging_gb_per_period,
)
from allocator.schema import Instance

#: tokens/s below this are read as zero
TOKENS_TOL = 1e-6

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
                 "energy_usd", "reserved_lease_usd", "ondemand_lease_usd", "power_lease_usd", "cost_usd"]
LINKS_COLUMNS = ["link", "a", "b", "period", "traffic_gbps", "bandwidth_gbps", "egress_gb", "egress_usd"]


@dataclass
class Derived:
    """A plan's schedule tables, its cost breakdown ($ per term of results.COST_TERMS) and its
    emissions (t CO2 over the horizon)."""

    frames: dict[str, pd.DataFrame]
    costs: dict[str, float]
    emissions_t: float

    @property
    def total_cost(self) -> float:
        return float(sum(self.costs.values()))


def derive(inst: Instance, index: Index, decisions: Mapping[str, pd.DataFrame]) -> Derived:
    """Tables, costs and emissions of the plan ``decisions`` (see the module docstring)."""
    frames = derive_frames(inst, index, decisions)
    costs = costs_from_frames(inst, frames)
    return Derived(frames, costs, float(frames["sites"]["emissions_t"].sum()))


def spend(costs: Mapping[str, float]) -> float:
    """What a budget caps: the spend terms of formulation.budget.BUDGET_TERMS."""
    from allocator.formulation.budget import BUDGET_TERMS

    return float(sum(costs.get(k, 0.0) for k in BUDGET_TERMS))


def _unserved(demand: pd.Series, served: pd.Series) -> pd.Series:
    """demand - served, with the solver's noise (a shortfall within TOKENS_TOL or a 1e-9
    share of the demand, e.g. 100 - (33.3... + 66.6...)) as 0, never below 0."""
    short = (demand - served).astype(float)
    return short.where(short > np.maximum(TOKENS_TOL, 1e-9 * demand.astype(float)), 0.0)


def _iso(ts) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def _frame(df: pd.DataFrame | None, columns: list[str]) -> pd.DataFrame:
    if df is None or not len(df):
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    return df


def _lookup(keys: pd.DataFrame, cand: pd.DataFrame) -> pd.DataFrame:
    """keys (j, o, s, t) left-joined to candidate placement rows, with pandas' _merge column."""
    cand = cand.assign(o=cand["o"].astype(np.int64), t=cand["t"].astype(np.int64))
    return keys.merge(cand.drop_duplicates(["j", "o", "s", "t"]), on=["j", "o", "s", "t"],
                      how="left", indicator=True)


def _placed(index: Index, training: pd.DataFrame | None) -> pd.DataFrame:
    """The index rows (j, o, s, t, g, d, end, gpus, costs, links) of the chosen placements."""
    if training is None or not len(training):
        return index.placements.iloc[0:0].reset_index(drop=True)
    keys = pd.DataFrame({"j": training["job"].astype(str).to_numpy(),
                         "o": training["option"].to_numpy(dtype=np.int64),
                         "s": training["site"].astype(str).to_numpy(),
                         "t": training["start_period"].to_numpy(dtype=np.int64)})
    got = _lookup(keys, index.placements)
    missing = got["_merge"] != "both"
    if missing.any():  # a late start (an elastic plan's): look among the overruns, made on demand
        late = _lookup(keys[missing.to_numpy()], index.late_placements)
        got = pd.concat([got[~missing], late], ignore_index=True)
    missing = got[got["_merge"] != "both"]
    if len(missing):
        j, o, s, t = missing.iloc[0][["j", "o", "s", "t"]]
        raise ValueError(f"training decision (job {j}, option {o}, site {s}, start {t}) is not an "
                         f"eligible placement of the index ({len(missing)} such rows)")
    return got.drop(columns="_merge").sort_values("j").reset_index(drop=True)


def _flows(inference: pd.DataFrame | None) -> pd.DataFrame:
    df = _frame(inference, ["service", "region", "site", "gpu_type", "period", "tokens_per_s"])
    out = pd.DataFrame({"v": df["service"].astype(str), "r": df["region"].astype(str),
                        "s": df["site"].astype(str), "g": df["gpu_type"].astype(str),
                        "t": df["period"].astype(np.int64),
                        "tokens_per_s": df["tokens_per_s"].astype(float)})
    return out[out["tokens_per_s"] >= TOKENS_TOL].reset_index(drop=True)


def _held(inference_gpus: pd.DataFrame | None) -> pd.DataFrame:
    df = _frame(inference_gpus, ["service", "site", "gpu_type", "period", "gpus"])
    out = pd.DataFrame({"v": df["service"].astype(str), "s": df["site"].astype(str),
                        "g": df["gpu_type"].astype(str), "t": df["period"].astype(np.int64),
                        "gpus": np.rint(df["gpus"].astype(float)).astype(np.int64)})
    return out[out["gpus"] > 0].reset_index(drop=True)


def _rows(df: pd.DataFrame, cols: list[str]):
    return zip(*(df[c].tolist() for c in cols), strict=True)


def derive_frames(inst: Instance, index: Index, decisions: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The schedule tables (training, inference, inference_gpus, unserved, site_gpus, sites,
    links) of a plan given by its decision tables; see docs/schedule-format.md for every
    column."""
    T, H = index.periods, index.period_hours
    sites = {s.id: s for s in inst.sites}
    jobs = {j.id: j for j in inst.jobs}
    svc = {v.id: v for v in inst.services}
    start = inst.horizon.start
    placed = _placed(index, decisions.get("training"))
    flows = _flows(decisions.get("inference"))
    held = _held(decisions.get("inference_gpus"))

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
          _rows(held, ["v", "s", "g", "t", "gpus"])}
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
    for s, g, t, e, n in _rows(placed, ["s", "g", "t", "end", "gpus"]):
        train_use[pool_pos[s, g], int(t):int(e)] += int(n)
    inf_use = np.zeros((P, T), dtype=np.int64)
    for s, g, t, n in _rows(held, ["s", "g", "t", "gpus"]):
        inf_use[pool_pos[s, g], int(t)] += int(n)
    in_use = train_use + inf_use
    avail = pools["available"].to_numpy(dtype=np.int64)[:, None]
    reserved = pools["reserved"].to_numpy(dtype=np.int64)[:, None]
    ondemand = ondemand_gpus(in_use, reserved)
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
        energy = energy_mwh(power, H)
        energy_usd = energy * price
        power_lease = cap * site.power_price_usd_per_mw_h * H  # the ceiling, paid whether drawn
        rows.append(pd.DataFrame({
            "site": site.id, "provider": site.provider, "period": G.astype(np.int64),
            "power_mw": power, "power_cap_mw": cap, "energy_mwh": energy,
            "emissions_t": emissions_t(energy, carbon), "energy_usd": energy_usd,
            "reserved_lease_usd": np.full(T, res), "ondemand_lease_usd": od,
            "power_lease_usd": power_lease, "cost_usd": energy_usd + res + od + power_lease,
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
    for j, t, e, d, gbps, links in _rows(placed, ["j", "t", "end", "d", "staging_gbps", "links"]):
        if not links or gbps <= 0:
            continue
        per_period_gb = staging_gb_per_period(jobs[j].dataset_tb, int(d))
        for lk in links:
            traffic[lk, int(t):int(e)] += gbps
            gb[lk, int(t):int(e)] += per_period_gb
    if len(flows):
        f = flows.merge(index.flows[["v", "r", "s", "g", "links"]], on=["v", "r", "s", "g"], how="left")
        for v, t, tps, links in _rows(f, ["v", "t", "tokens_per_s", "links"]):
            bpt = svc[v].bytes_per_token
            for lk in links:
                traffic[lk, int(t)] += gbps_of_tokens(tps, bpt)
                gb[lk, int(t)] += egress_gb_per_period(tps, bpt, H)
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
        "power_lease": float(sites["power_lease_usd"].sum()),
        "energy": float(sites["energy_usd"].sum()),
        "egress": float(links["egress_usd"].sum()),
        "site_extra": float(tr["site_extra_usd"].sum()),
        "tardiness": float(tr["tardiness_usd"].sum()),
        "unserved": float((mtok_per_period(un["unserved_tokens_per_s"], H) * pen).sum()) if len(un) else 0.0,
        "dropped_value": float(sum(j.value_usd for j in inst.jobs if not j.mandatory and j.id not in placed)),
        "carbon": inst.carbon_price_usd_per_t * emissions,
        # re-planning: the moves and retimes of changes.csv (inference scaling is added by the
        # pipeline, which has the previous plan); 0 for a fresh plan
        "migration": float(frames["changes"]["move_cost_usd"].sum()) if "changes" in frames else 0.0,
    }


