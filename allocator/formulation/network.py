"""Network: dataset staging and inference traffic within link bandwidth.

Every running job streams its dataset over the route data source -> site at
staging_gbps = dataset_tb * 8000 / (d * H * 3600) Gb/s; inference sends
tokens_per_s * bytes_per_token * 8 / 1e9 Gb/s over the route site -> region. Routes are the
lowest-latency paths (allocator.network); egress is paid in the objective.

Sets
    BANDWIDTH_ROWS       (l, t): links with a bandwidth whose possible traffic in period t
                         can exceed it (each job counted once at its largest staging rate,
                         each (service, region) once at its demand x largest Gb/s per
                         token/s); rows that cannot bind are left out (kept if elastic).
                         l is the link's 0-based position in the instance's links.
Variables
    slack_gbps[l,t] >= 0 (elastic only)
    staging[l,t] in [0, min(peak staging, bandwidth)] (running form only): the staging
                         traffic on l in t as a running total, defined by
    staging_running[l,t]: staging[l,t] - staging[l,t-1] - sum_{starts at t, l on route} gbps * start
                         + sum_{starts ending at t, l on route} gbps * start == 0
                         (see formulation.common.add_running_total; the bandwidth row then
                         has staging[l,t] instead of the staging terms of every running start)
Constraints
    network_bandwidth[l,t]:
        sum_{(j,o,s,t0) running at t, l on route(j -> s)} staging_gbps(j,o) * start[j,o,s,t0]
        + sum_{(v,r,s,g) with l on route(s -> r)} bytes_per_token(v) * 8 / 1e9 * serve[v,r,s,g,t]
        (- slack_gbps[l,t]) <= bandwidth_gbps(l)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyomo.environ as pyo

from allocator.formulation.common import (
    KTOK,
    Terms,
    add_row_slack,
    add_running_total,
    all_placements,
    linear,
    penalty_weights,
    running,
    start_vars,
    var_list,
)
from allocator.indexing import Index
from allocator.options import SolveOptions
from allocator.schema import Instance

#: expanded (start, period, link) triples per chunk of _staging_peak
PEAK_CHUNK = 2_000_000


def _staging_peak(p: pd.DataFrame, has: np.ndarray, bw: dict) -> dict[tuple, float]:
    """{(l, t): the largest staging traffic possible on capacitated link l in period t}: each
    job counted once, at the largest staging rate of its starts that run in t with l on their
    route. Worked out a chunk of whole jobs at a time, so the (start, period, link) expansion
    (generated XL: 35M triples) is never held at once."""
    pos = np.flatnonzero(has)
    if not len(pos) or not bw:
        return {}
    jcode = pd.factorize(p["j"].to_numpy()[pos])[0]
    order = np.argsort(jcode, kind="stable")
    pos, jcode = pos[order], jcode[order]
    links = p["links"].to_numpy()
    d = p["d"].to_numpy(dtype=np.int64)
    t0 = p["t"].to_numpy(dtype=np.int64)
    rate = p["staging_gbps"].to_numpy(dtype=float)
    n_links = np.fromiter((len(x) for x in links[pos]), dtype=np.int64, count=len(pos))
    work = np.cumsum(d[pos] * n_links)
    first = np.flatnonzero(np.r_[True, jcode[1:] != jcode[:-1]])  # each job's first start
    cuts = [0]
    while cuts[-1] < len(pos):  # chunk ends at a job's first start, about PEAK_CHUNK triples in
        done = work[cuts[-1] - 1] if cuts[-1] else 0
        k = int(np.searchsorted(first, np.searchsorted(work, done + PEAK_CHUNK, side="right"),
                                side="right"))
        cuts.append(int(first[k]) if k < len(first) and first[k] > cuts[-1] else len(pos))
    capped = np.array(sorted(bw), dtype=np.int64)
    parts = []
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        cp = pos[a:b]
        rep = np.repeat(np.arange(a, b), n_links[a:b])
        lk = np.fromiter((x for y in links[cp] for x in y), dtype=np.int64, count=len(rep))
        on = np.isin(lk, capped)
        rep, lk = rep[on], lk[on]
        dd = d[pos[rep]]
        row = np.repeat(np.arange(len(rep)), dd)
        t = t0[pos[rep]][row] + np.arange(int(dd.sum())) - np.repeat(np.cumsum(dd) - dd, dd)
        frame = pd.DataFrame({"l": lk[row], "t": t, "j": jcode[rep][row], "c": rate[pos[rep]][row]})
        parts.append(frame.groupby(["l", "t", "j"])["c"].max().groupby(level=[0, 1]).sum())
    if not parts:
        return {}
    total = pd.concat(parts).groupby(level=[0, 1]).sum()
    return {(int(lk), int(t)): float(x) for (lk, t), x in total.items()}


def _staging_running(model, p, has, bw, peak, terms, periods) -> None:
    """Running form: staging[l,t] = the staging traffic on link l in period t, a running total
    (``staging_running`` rows, ``add_running_total``), is the staging term of the bandwidth
    row: a start appears in two rows per link whatever its duration."""
    pos = np.flatnonzero(has)
    links = p["links"].to_numpy()[pos]
    reps = np.array([len(x) for x in links], dtype=np.int64)
    rep_pos = np.repeat(pos, reps)
    rep_l = [lk for x in links for lk in x]
    on = np.array([lk in bw for lk in rep_l], dtype=bool)
    if not on.any():
        return
    rep_pos = rep_pos[on]
    t0 = p["t"].to_numpy(dtype=np.int64)[rep_pos]
    groups = pd.DataFrame({"l": [lk for lk, o in zip(rep_l, on, strict=True) if o], "t0": t0,
                           "t1": t0 + p["d"].to_numpy(dtype=np.int64)[rep_pos]})
    upper = {k: (v if model.elastic else min(v, bw[k[0]])) for k, v in peak.items() if k[0] in bw}
    total = add_running_total(model, "staging", ["l"], groups,
                              p["staging_gbps"].to_numpy(dtype=float)[rep_pos], rep_pos,
                              start_vars(model), upper, periods)
    if total:
        keys = pd.DataFrame(list(total), columns=["l", "t"])
        terms.add(keys, np.arange(len(total)), np.ones(len(total)), list(total.values()))


def add_network(model, inst: Instance, index: Index, options: SolveOptions) -> None:
    """One bandwidth row per capacitated link and period with possible traffic."""
    bw = {lk: b for lk, b in zip(index.links["l"], index.links["bandwidth_gbps"], strict=True)
          if b == b}  # NaN = unlimited
    terms = Terms(["l", "t"])
    peak: dict[tuple, float] = {}  # upper bound of each row's traffic from data
    deferred = None  # running form: the staging totals, written once the rows are known
    if hasattr(model, "start"):
        p = all_placements(model)
        has = p["staging_gbps"].to_numpy(dtype=float) > 0
        if has.any():
            for k, x in _staging_peak(p, has, bw).items():
                peak[k] = peak.get(k, 0.0) + x
            if model._usage == "running":
                staging_peak = dict(peak)
                deferred = (p, has)
            else:
                run = running(p[has])
                pos = np.flatnonzero(has)[run["i"].to_numpy()]
                run = run.assign(pos=pos, links=p["links"].to_numpy()[pos]).explode("links")
                run = run[run["links"].isin(list(bw))].rename(columns={"links": "l"})
                coef = p["staging_gbps"].to_numpy(dtype=float)[run["pos"].to_numpy()]
                terms.add(run, run["pos"].to_numpy(), coef, start_vars(model))
    if hasattr(model, "serve") and len(index.serve):
        f = index.serve.merge(index.flows[["v", "r", "s", "g", "gbps_per_token_per_s", "links"]],
                              on=["v", "r", "s", "g"], how="left")
        f = f.merge(index.demands, on=["v", "r", "t"], how="left")
        f = f.assign(pos=np.arange(len(f))).explode("links")
        f = f[f["links"].isin(list(bw))].rename(columns={"links": "l"})
        coef = KTOK * f["gbps_per_token_per_s"].to_numpy(dtype=float)
        terms.add(f, f["pos"].to_numpy(), coef, var_list(model.serve))
        # all flows of one (v, r, t) share its demand: at most demand x the largest coefficient
        top = f.assign(c=coef * f["demand"].to_numpy(dtype=float) / KTOK) \
            .groupby(["l", "t", "v", "r"])["c"].max().groupby(level=[0, 1]).sum()
        for k, x in top.items():
            peak[k] = peak.get(k, 0.0) + float(x)
    if deferred is not None:
        binding = {k[0] for k, x in peak.items() if model.elastic or x > bw[k[0]] + 1e-9}
        _staging_running(model, *deferred, {k: b for k, b in bw.items() if k in binding},
                         staging_peak, terms, index.periods)
    rows = {k: (c, v) for k, c, v in terms.groups()
            if model.elastic or peak.get(k, 0.0) > bw[k[0]] + 1e-9}
    order = {lk: i for i, lk in enumerate(index.links["l"].tolist())}
    keys = sorted(rows, key=lambda k: (order[k[0]], k[1]))
    model.BANDWIDTH_ROWS = pyo.Set(initialize=keys, dimen=2, ordered=True)
    if model.elastic:
        add_row_slack(model, "slack_gbps", model.BANDWIDTH_ROWS, "network", "Gb/s over link bandwidth",
                      penalty_weights(inst, index)["gbps"])

    def rule(m, link, t):
        c, v = rows[link, t]
        if m.elastic:
            c, v = c + [-1.0], v + [m.slack_gbps[link, t]]
        return linear(c, v) <= bw[link]

    model.network_bandwidth = pyo.Constraint(model.BANDWIDTH_ROWS, rule=rule)
