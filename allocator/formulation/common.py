"""Shared pieces of the formulation: linear rows from pre-grouped lists, the running-job
expansion, the GPU-usage and power expressions several families use, and the big-M
weights of the elastic model.

Rows are built as ``LinearExpression(constant, linear_coefs, linear_vars)`` from lists that
were grouped once with numpy, never by scanning all variables per row.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pyomo.environ as pyo
from pyomo.core.expr.numeric_expr import LinearExpression

from allocator.indexing import Index
from allocator.quantities import egress_gb_per_period, emissions_t, unserved_usd_per_token_s
from allocator.schema import Instance


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while millions of expression objects are made.

    Building a model allocates one object per nonzero; each allocation burst makes the
    collector rescan every live object, so building generated L (2.0M nonzeros) took 27 s
    with it and 14 s without (measured with the other core busy). Expressions are plain
    trees, not cycles that need the collector; it is switched back on (if it was on) after."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def linear(coefs: Sequence[float], variables: Sequence, constant: float = 0.0) -> LinearExpression:
    """A linear expression sum(coefs[i] * variables[i]) + constant."""
    return LinearExpression(constant=float(constant), linear_coefs=[float(c) for c in coefs],
                            linear_vars=list(variables))


def var_list(var: pyo.Var) -> list:
    """Variable data of an indexed Var in the order of its (ordered) index set."""
    return list(var.values())


class Terms:
    """Collects (key, variable, coefficient) triples from several variable families and
    yields them grouped by key: one sort, then slices."""

    def __init__(self, key_names: Sequence[str]):
        self.key_names = list(key_names)
        self._keys: list[pd.DataFrame] = []
        self._coefs: list[np.ndarray] = []
        self._idx: list[np.ndarray] = []
        self._vars: list = []

    def add(self, keys: pd.DataFrame, var_positions: np.ndarray, coefs: np.ndarray,
            variables: list) -> None:
        """keys: one row per term (columns key_names); var_positions index into variables."""
        if len(keys) == 0:
            return
        offset = len(self._vars)
        self._vars.extend(variables)
        self._keys.append(keys[self.key_names].reset_index(drop=True))
        self._coefs.append(np.asarray(coefs, dtype=float))
        self._idx.append(np.asarray(var_positions, dtype=np.int64) + offset)

    def groups(self) -> Iterator[tuple[tuple, list[float], list]]:
        """(key tuple, coefficients, variables) per distinct key, keys in sorted order."""
        if not self._keys:
            return
        keys = pd.concat(self._keys, ignore_index=True)
        coefs = np.concatenate(self._coefs)
        idx = np.concatenate(self._idx)
        order = np.lexsort([pd.factorize(keys[c], sort=True)[0] for c in reversed(self.key_names)])
        keys = keys.iloc[order].reset_index(drop=True)
        coefs, idx = coefs[order], idx[order]
        codes = np.column_stack([pd.factorize(keys[c])[0] for c in self.key_names])
        change = np.flatnonzero(np.any(codes[1:] != codes[:-1], axis=1)) + 1
        bounds = np.concatenate([[0], change, [len(keys)]])
        cols = [keys[c].tolist() for c in self.key_names]
        allvars = self._vars
        coef_list = coefs.tolist()
        idx_list = idx.tolist()
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            key = tuple(col[a] for col in cols)
            yield key, coef_list[a:b], [allvars[k] for k in idx_list[a:b]]


#: serve and unserved are modelled in thousands of tokens/s (KTOK tokens/s per unit) and
#: exported in tokens/s. In tokens/s their bounds reached ~1e6 and their unserved/egress
#: costs ~1e-7 per unit, a range HiGHS warns about and that slowed its MIP search.
KTOK = 1000.0


def running(placements: pd.DataFrame) -> pd.DataFrame:
    """Start-window expansion: one row per (placement row ``i``, period ``t`` it runs in).

    A start at t0 of duration d is active in t0 .. t0+d-1."""
    d = placements["d"].to_numpy(dtype=np.int64)
    rows = np.repeat(np.arange(len(placements)), d)
    offsets = np.arange(d.sum()) - np.repeat(np.cumsum(d) - d, d)
    t = placements["t"].to_numpy(dtype=np.int64)[rows] + offsets
    return pd.DataFrame({"i": rows, "s": placements["s"].to_numpy()[rows],
                         "g": placements["g"].to_numpy()[rows], "t": t})


def all_placements(model) -> pd.DataFrame:
    """The placements that have a start variable (normal ones, plus late ones if elastic)."""
    return model._placements


def start_vars(model) -> list:
    return model._start_vars if hasattr(model, "start") else []


def gpu_terms(model, index: Index, *, training: bool = False) -> Terms:
    """GPUs in use per (s, g, t): training gangs running plus inference GPUs held (only the
    training gangs if ``training``), in the expanded form."""
    terms = Terms(["s", "g", "t"])
    if hasattr(model, "start"):
        p = all_placements(model)
        run = running(p)
        terms.add(run, run["i"].to_numpy(), p["gpus"].to_numpy(dtype=float)[run["i"].to_numpy()],
                  start_vars(model))
    if hasattr(model, "gpus_inf") and not training:
        sp = index.service_periods
        terms.add(sp, np.arange(len(sp)), np.ones(len(sp)), var_list(model.gpus_inf))
    return terms



def add_running_total(model, name: str, key_names: list[str], groups: pd.DataFrame,
                      coefs: np.ndarray, positions: np.ndarray, variables: list,
                      upper: dict[tuple, float], periods: int) -> dict[tuple, object]:
    """Running totals R[key, t] = sum over terms active in t of coef * variable, written as

        R[key,t] - R[key,t-1] - sum_{terms starting at t} coef * x + sum_{terms ending at t} coef * x = 0

    (``<name>_running[key, t]``, one row per (key, t) where some term is active; R[key,t-1]
    and the ending terms appear only where (key, t-1) and (key, t) are such periods: before
    and after a gap nothing is active, so the total restarts from 0). ``groups`` has the
    key columns and t0, t1 (active in t0 .. t1-1) per term; ``positions`` index
    ``variables``. Exact: R is determined by the variables. Returns {(key..., t): R var}."""
    if not len(groups):
        return {}
    t0 = groups["t0"].to_numpy(dtype=np.int64)
    t1 = groups["t1"].to_numpy(dtype=np.int64)
    kcode, kuniq = pd.factorize(pd.MultiIndex.from_frame(groups[key_names]), sort=True)
    nk = len(kuniq)
    busy = np.zeros((nk, periods + 1), dtype=bool)
    d = t1 - t0
    rows = np.repeat(np.arange(len(t0)), d)
    off = np.arange(int(d.sum())) - np.repeat(np.cumsum(d) - d, d)
    busy[kcode[rows], t0[rows] + off] = True
    bk, bt = np.nonzero(busy[:, :periods])
    pos = np.full((nk, periods + 1), -1, dtype=np.int64)
    pos[bk, bt] = np.arange(len(bk))
    keys = [(*kuniq[k], int(t)) for k, t in
            zip(bk.tolist(), bt.tolist(), strict=True)]
    setname = f"{name.upper()}_PERIODS"
    model.add_component(setname, pyo.Set(initialize=keys, dimen=len(key_names) + 1, ordered=True))
    total = pyo.Var(model.component(setname), domain=pyo.NonNegativeReals,
                    bounds=lambda m, *k: (0.0, upper[k]))
    model.add_component(name, total)
    tv = list(total.values())
    prev = np.where(bt > 0, pos[bk, np.maximum(bt - 1, 0)], -1)
    has_prev = prev >= 0
    end_row = pos[kcode, t1]
    ends = end_row >= 0
    r = np.concatenate([np.arange(len(bk)), np.flatnonzero(has_prev), pos[kcode, t0], end_row[ends]])
    v_idx = np.concatenate([np.arange(len(bk)), prev[has_prev], -1 - positions, -1 - positions[ends]])
    c = np.concatenate([np.ones(len(bk)), -np.ones(int(has_prev.sum())), -coefs, coefs[ends]])
    order = np.argsort(r, kind="stable")
    r, v_idx, c = r[order], v_idx[order], c[order]
    cuts = np.searchsorted(r, np.arange(len(bk) + 1))
    v_list, c_list = v_idx.tolist(), c.tolist()
    data = {}
    for i, key in enumerate(keys):
        a, b = int(cuts[i]), int(cuts[i + 1])
        vs = [tv[k] if k >= 0 else variables[-1 - k] for k in v_list[a:b]]
        data[key] = linear(c_list[a:b], vs) == 0
    model.add_component(f"{name}_running", pyo.Constraint(model.component(setname),
                                                            rule=lambda m, *k: data[k]))
    return dict(zip(keys, tv, strict=True))


def ensure_gpus_in_use(model, inst: Instance, index: Index) -> None:
    """``gpus_in_use[s,g,t]`` Expression over the (pool, period) keys that have any usage,
    and ``model._max_use[s,g,t]``: an upper bound of it from data (each job counted once with
    its largest gang running there, plus the upper bounds of the inference GPUs).

    Two forms, the same values (``model._usage``, chosen by ``usage_form``):
    expanded  gpus_in_use[s,g,t] = sum_{starts running at t} gpus * start + sum_v gpus_inf
              (a start of duration d is a term of the d periods it runs in)
    running   gpus_in_use[s,g,t] = use[s,g,t] + sum_v gpus_inf, with the running total
              use[s,g,t] of the training GPUs defined by ``use_running`` rows
              (``add_running_total``): a start is a term of two rows whatever its duration."""
    if hasattr(model, "gpus_in_use"):
        return
    running_form = getattr(model, "_usage", "expanded") == "running" and hasattr(model, "start")
    max_use: dict[tuple, float] = {}
    train_max: dict[tuple, float] = {}
    if hasattr(model, "start"):
        p = all_placements(model)
        run = running(p)
        run["j"] = p["j"].to_numpy()[run["i"].to_numpy()]
        run["gpus"] = p["gpus"].to_numpy()[run["i"].to_numpy()]
        per_job = run.groupby(["s", "g", "t", "j"], sort=False)["gpus"].max()
        for key, val in per_job.groupby(level=[0, 1, 2], sort=False).sum().items():
            train_max[key] = float(val)
    if running_form:
        p = all_placements(model)
        avail = {(s, g): a for s, g, a in col_rows(index.pools, ["s", "g", "available"])}
        upper = {k: (u if model.elastic else min(u, float(avail[k[0], k[1]])))
                 for k, u in train_max.items()}
        groups = pd.DataFrame({"s": p["s"].to_numpy(), "g": p["g"].to_numpy(),
                               "t0": p["t"].to_numpy(dtype=np.int64),
                               "t1": p["t"].to_numpy(dtype=np.int64) + p["d"].to_numpy(dtype=np.int64)})
        use = add_running_total(model, "use", ["s", "g"], groups, p["gpus"].to_numpy(dtype=float),
                                np.arange(len(p)), start_vars(model), upper, index.periods)
        terms = Terms(["s", "g", "t"])
        if use:
            ukeys = pd.DataFrame(list(use), columns=["s", "g", "t"])
            terms.add(ukeys, np.arange(len(use)), np.ones(len(use)), list(use.values()))
    else:
        terms = gpu_terms(model, index, training=True)
    if hasattr(model, "gpus_inf"):
        sp = index.service_periods
        terms.add(sp, np.arange(len(sp)), np.ones(len(sp)), var_list(model.gpus_inf))
    data = {key: linear(c, v) for key, c, v in terms.groups()}
    model.GPU_PERIODS = pyo.Set(initialize=list(data), dimen=3, ordered=True)
    model.gpus_in_use = pyo.Expression(model.GPU_PERIODS, initialize=data)
    max_use = dict.fromkeys(data, 0.0)
    for key, val in train_max.items():
        max_use[key] += val
    if hasattr(model, "gpus_inf"):
        for (_v, s, g, t), x in model.gpus_inf.items():
            max_use[s, g, t] += float(x.ub)
    model._max_use = max_use


def ensure_power_mw(model, inst: Instance, index: Index) -> None:
    """``power_mw[s,t]`` = sum_g gpus_in_use[s,g,t] * power_kw(g) * pue(s) / 1000."""
    if hasattr(model, "power_mw"):
        return
    ensure_gpus_in_use(model, inst, index)
    mw = {(s, g): c for s, g, c in col_rows(index.pools, ["s", "g", "mw_per_gpu"])}
    rows: dict[tuple, tuple[list, list]] = {}
    for (s, g, t) in model.GPU_PERIODS:
        c, v = rows.setdefault((s, t), ([], []))
        c.append(mw[(s, g)])
        v.append(model.gpus_in_use[s, g, t])
    keys = sorted(rows)
    model.POWER_PERIODS = pyo.Set(initialize=keys, dimen=2, ordered=True)
    model.power_mw = pyo.Expression(model.POWER_PERIODS, initialize={
        k: sum(c * e for c, e in zip(*rows[k], strict=True)) for k in keys})


def series_lookup(index: Index, column: str) -> dict[str, np.ndarray]:
    """site -> per-period array of a site series (power_cap_mw, energy price, carbon).

    Computed once per index and column (several families ask for the same series)."""
    cache = index.__dict__.setdefault("_series_cache", {})
    if column not in cache:
        sp = index.site_periods
        s_arr = sp["s"].to_numpy(dtype=object)
        t_arr = sp["t"].to_numpy(dtype=np.int64)
        vals = sp[column].to_numpy(dtype=float)
        out: dict[str, np.ndarray] = {}
        for s in dict.fromkeys(s_arr.tolist()):
            m = s_arr == s
            out[s] = vals[m][np.argsort(t_arr[m], kind="stable")]
        cache[column] = out
    return cache[column]


def col_rows(df: pd.DataFrame, columns: list[str]):
    """Iterate plain tuples of ``columns`` (much cheaper than ``DataFrame.itertuples``)."""
    return zip(*(df[c].tolist() for c in columns), strict=True)


def window_sums(placements: pd.DataFrame, per_site: dict[str, np.ndarray]) -> np.ndarray:
    """sum of a site series over each placement's running periods t .. t+d-1."""
    out = np.zeros(len(placements))
    if not len(placements):
        return out
    cums = {s: np.concatenate([[0.0], np.cumsum(a)]) for s, a in per_site.items()}
    s_arr = placements["s"].to_numpy()
    t = placements["t"].to_numpy(dtype=np.int64)
    e = t + placements["d"].to_numpy(dtype=np.int64)
    for s, cum in cums.items():
        m = s_arr == s
        if m.any():
            out[m] = cum[e[m]] - cum[t[m]]
    return out


# --------------------------------------------------------------------------- elastic big-M


def penalty_weights(inst: Instance, index: Index) -> dict[str, float]:
    """Big-M weights of the elastic model, from data.

    ``M`` is 10 x the largest cost or value one GPU can cause or earn in one period:
    its lease (reserved or on-demand price x H), its energy and carbon, the unserved-demand
    penalty its tokens avoid, egress of its traffic, and each job's one-off costs and value
    spread over its GPU-periods. Every slack unit is then weighted by M times the GPUs that
    one unit of it can enable, so that using slack is never cheaper than anything it makes
    possible:

    gpu       M per GPU-period over capacity
    mw        M / min(MW per GPU) per MW-period over the ceiling
    gbps      M / min(Gb/s per GPU) per Gb/s-period over bandwidth
    late_h    M x max gang / H per hour past a hard deadline (job-specific factor applied later)
    unplaced  10 x M x max(gpus x d) of the job (applied later), worse than any capacity slack
    budget    10 per $ over the budget
    """
    H = index.period_hours
    pools = index.pools
    c = [1.0]
    if len(pools):
        c.append(float(pools[["reserved_price_usd_per_gpu_h", "ondemand_price_usd_per_gpu_h"]].max().max()) * H)
        sp = index.site_periods
        worst = (sp.groupby("s")["energy_price_usd_per_mwh"].max()
                 + inst.carbon_price_usd_per_t * emissions_t(1.0, sp.groupby("s")["carbon_g_per_kwh"].max()))
        c.append(float((pools["mw_per_gpu"] * pools["s"].map(worst).astype(float)).max()) * H)
    svc = {v.id: v for v in inst.services}
    gbps_per_gpu = []
    if len(index.flows):
        f = index.flows
        pen = f["v"].map({v.id: v.unserved_usd_per_mtok for v in inst.services}).astype(float)
        tps = f["tokens_per_s_per_gpu"].astype(float)
        c.append(float((unserved_usd_per_token_s(pen, H) * tps).max()))
        bpt = f["v"].map({v.id: v.bytes_per_token for v in inst.services}).astype(float)
        c.append(float((egress_gb_per_period(tps, bpt, H) * f["egress_usd_per_gb"].astype(float)).max()))
        g = tps * f["gbps_per_token_per_s"].astype(float)
        gbps_per_gpu.extend(g[g > 0].tolist())
    del svc
    p = index.placements
    if len(p):
        gd = (p["gpus"] * p["d"]).astype(float)
        one_off = p["site_extra_usd"] + p["tardiness_usd"] + p["egress_usd"] \
            + p["j"].map(index.value_usd).astype(float)
        c.append(float((one_off / gd).max()))
        g = p["staging_gbps"].astype(float) / p["gpus"].astype(float)
        gbps_per_gpu.extend(g[g > 0].tolist())
    M = 10.0 * max(c)
    min_mw = float(pools["mw_per_gpu"].min()) if len(pools) else 1.0
    min_gbps = min(gbps_per_gpu) if gbps_per_gpu else 1.0
    return {"M": M, "gpu": M, "mw": M / min_mw, "gbps": M / min_gbps, "late_h": M / H,
            "unplaced": 10.0 * M, "budget": 10.0}


def add_slack(model, family: str, description: str, var: pyo.Var) -> None:
    """Register an elastic slack variable (family, description, component)."""
    model.SLACKS.append((family, description, var))


def add_row_slack(model, name: str, rows, family: str, description: str, weight: float) -> pyo.Var:
    """Elastic model: a non-negative slack per row of ``rows``, registered for the explanation
    and penalised at ``weight`` per unit (a data-derived big-M, see ``penalty_weights``)."""
    var = pyo.Var(rows, domain=pyo.NonNegativeReals)
    model.add_component(name, var)
    add_slack(model, family, description, var)
    model._penalties.append((name, {k: weight for k in rows}))
    return var
