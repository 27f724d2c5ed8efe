"""Read a solved model's decisions, and put a plan's decisions back into a model.

``decisions_from_model`` reads the decision variables and rounds them (binaries and integers
to whole numbers, tokens/s below 1e-6 to zero); every derived figure (GPUs in use, on-demand
GPUs, power, energy, emissions, traffic, egress, costs) is then computed from those rounded
decisions by allocator.derive, the one derivation every route uses, so the exported tables
and the cost breakdown agree with what the verifier recomputes even when the solver stopped
at an incumbent whose continuous variables are not tight (e.g. on-demand above what is in use).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyomo.environ as pyo

from allocator.derive import TOKENS_TOL, costs_from_frames, derive_frames
from allocator.formulation.common import KTOK, all_placements, col_rows
from allocator.indexing import Index
from allocator.results import COST_TERMS
from allocator.schema import Instance


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


def decisions_from_model(model, index: Index) -> dict[str, pd.DataFrame]:
    """The decision tables (allocator.outcome) of a solved model, rounded: binaries and
    integers to whole numbers, tokens/s below TOKENS_TOL to zero."""
    placed = _placed(model)
    flows = _serve(model, index)
    held = _gpus_inf(model, index)
    return {
        "training": pd.DataFrame({
            "job": placed["j"].astype(str), "option": placed["o"].astype(np.int64),
            "site": placed["s"].astype(str), "gpu_type": placed["g"].astype(str),
            "gpus": placed["gpus"].astype(np.int64), "start_period": placed["t"].astype(np.int64)}),
        "inference_gpus": pd.DataFrame({
            "service": held["v"].astype(str), "site": held["s"].astype(str),
            "gpu_type": held["g"].astype(str), "period": held["t"].astype(np.int64),
            "gpus": held["gpus"].astype(np.int64)}),
        "inference": pd.DataFrame({
            "service": flows["v"].astype(str), "region": flows["r"].astype(str),
            "site": flows["s"].astype(str), "gpu_type": flows["g"].astype(str),
            "period": flows["t"].astype(np.int64), "tokens_per_s": flows["tokens_per_s"].astype(float)}),
    }


def extract_frames(model, inst: Instance, index: Index) -> dict[str, pd.DataFrame]:
    """The schedule tables of a solved model: its decisions, derived by allocator.derive."""
    return derive_frames(inst, index, decisions_from_model(model, index))


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
