"""Plain-language explanation of the nonzero slacks of a solved elastic model."""

from __future__ import annotations

import pyomo.environ as pyo

from allocator.indexing import link_labels
from allocator.schema import Instance, series_at

TOL = 1e-6


def _periods(ts: list[int]) -> str:
    """[3,4,5,7] -> 'periods 3-5, 7'."""
    ts = sorted(set(ts))
    parts: list[str] = []
    a = b = ts[0]
    for t in ts[1:]:
        if t == b + 1:
            b = t
            continue
        parts.append(f"{a}-{b}" if b > a else f"{a}")
        a = b = t
    parts.append(f"{a}-{b}" if b > a else f"{a}")
    word = "period" if len(ts) == 1 else "periods"
    return f"{word} {', '.join(parts)}"


def _num(x: float) -> str:
    """A figure with 4 significant digits and no exponent for everyday sizes: 412, 0.008, 1.25e+06."""
    return f"{x:.4g}"


def _nonzero(var: pyo.Var) -> dict:
    out = {}
    for k, v in var.items():
        x = v.value
        if x is not None and x > TOL:
            out[k] = float(x)
    return out


def explain_slacks(model, inst: Instance) -> list[str]:
    """One sentence per violated requirement (grouped over periods), worst first within a kind."""
    lines: list[str] = []
    reasons = getattr(model, "_unplaced_reasons", {})
    sites = {s.id: s for s in inst.sites}
    jobs = {j.id: j for j in inst.jobs}
    if hasattr(model, "training_unplaced"):
        for j, x in _nonzero(model.training_unplaced).items():
            if x < 0.5:
                continue
            why = reasons.get(j) or ("its starts conflict with other mandatory work "
                                     "(predecessors, windows or shared capacity)")
            lines.append(f"job {j} (mandatory) cannot be placed: {why}")
    if hasattr(model, "slack_deadline_h"):
        for j, x in _nonzero(model.slack_deadline_h).items():
            job = jobs[j]
            lines.append(f"job {j} cannot meet its hard deadline (end by period {job.deadline_period}): "
                         f"it ends {x:.1f} h late")
    if hasattr(model, "slack_gpus"):
        groups: dict[tuple, dict[int, float]] = {}
        for (s, g, t), x in _nonzero(model.slack_gpus).items():
            groups.setdefault((s, g), {})[t] = x
        avail = {(s.id, p.gpu_type): p.available for s in inst.sites for p in s.pools}
        for (s, g), by_t in sorted(groups.items(), key=lambda kv: -max(kv[1].values())):
            short = max(by_t.values())
            a = avail.get((s, g), 0)
            lines.append(f"site {s}: {g} GPUs needed up to {a + short:.0f} in {_periods(list(by_t))} "
                         f"but {a} are available (short by up to {short:.0f})")
    if hasattr(model, "slack_power_mw"):
        groups = {}
        for (s, t), x in _nonzero(model.slack_power_mw).items():
            groups.setdefault(s, {})[t] = x
        for s, by_t in sorted(groups.items(), key=lambda kv: -max(kv[1].values())):
            t_worst = max(by_t, key=by_t.get)
            decided = sites[s].power_options is not None
            cap = series_at(sites[s].ceiling_mw, t_worst)  # a decided ceiling: its largest option
            short = by_t[t_worst]
            ceiling = (f"the largest ceiling its power_options allow is {_num(cap)} MW" if decided
                       else f"the ceiling is {_num(cap)} MW")
            lines.append(f"site {s}: power needs {_num(cap + short)} MW in {_periods(list(by_t))} but "
                         f"{ceiling} (short by up to {_num(short)} MW)")
    if hasattr(model, "slack_gbps"):
        groups = {}
        for (link, t), x in _nonzero(model.slack_gbps).items():
            groups.setdefault(link, {})[t] = x
        labels = link_labels(inst)
        for link, by_t in sorted(groups.items(), key=lambda kv: -max(kv[1].values())):
            short = max(by_t.values())
            b = inst.links[link].bandwidth_gbps or 0.0
            lines.append(f"link {labels[link]} (#{link}): traffic needs {_num(b + short)} Gb/s in "
                         f"{_periods(list(by_t))} but the bandwidth is {_num(b)} Gb/s "
                         f"(short by up to {_num(short)} Gb/s)")
    if hasattr(model, "slack_budget_usd"):
        x = model.slack_budget_usd.value or 0.0
        if x > 1e-3:
            b = inst.budget_usd or 0.0
            lines.append(f"budget: the cheapest plan that meets everything else spends ${b + x:,.0f} "
                         f"but the budget is ${b:,.0f} (over by ${x:,.0f})")
    return lines
