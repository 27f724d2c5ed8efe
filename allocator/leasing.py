"""What to lease, at the instance level: lease decisions and demand scenarios (no model code).

An instance may leave two kinds of capacity to be decided (docs/leasing.md):

- a pool's reserved block, when the pool has ``reserve_options`` (commitment offers): at most
  one offer is taken, with a block size in {min_gpus, min_gpus + step_gpus, ..., max_gpus};
- a site's power ceiling, when the site has ``power_options``: one of {min_mw, min_mw +
  step_mw, ..., max_mw}, constant over the horizon.

Both are paid every hour of the horizon whether used. With ``scenarios`` these decisions are
shared by every scenario (first stage); placement, serving and on-demand GPUs are decided per
scenario (second stage), and the objective is the lease cost plus the probability-weighted
operating cost.

This module turns an instance into its scenarios (``scenario_cases``), an instance with its
lease decisions fixed (``fix``: an ordinary instance whose pools have that reserved block and
whose sites have that ceiling and its lease price), and the leases table
(``leases_frame``). The model side is ``allocator.formulation.leasing``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from allocator.schema import Instance

#: leases.csv
LEASE_COLUMNS = ["site", "resource", "term", "size", "unit", "cost_usd"]
POWER = "power"  # the resource of a power lease (a GPU lease names its GPU type)
NO_OFFER = "none"  # the term of a pool decision that takes no offer


@dataclass(frozen=True)
class ScenarioCase:
    """One scenario: its id, its probability and its own instance (overrides applied, jobs
    of other scenarios left out); the lease options are those of the whole instance."""

    id: str
    probability: float
    instance: Instance


def has_decisions(inst: Instance) -> bool:
    """True if any pool's reserved block or any site's power ceiling is to be decided."""
    return any(s.power_options is not None or any(p.reserve_options is not None for p in s.pools)
               for s in inst.sites)


def is_sizing(inst: Instance) -> bool:
    """True for an instance the sizing route solves: lease decisions or scenarios."""
    return has_decisions(inst) or bool(inst.scenarios)


#: fields a scenario may not override: the lease options are first-stage (shared)
FIRST_STAGE_FIELDS = ("reserve_options", "power_options")


def scenario_cases(inst: Instance) -> list[ScenarioCase]:
    """The scenarios of ``inst`` with their instances; one of probability 1 (the instance
    itself, id "base") when it has none. In a scenario's instance the overrides are applied
    (paths as in sweep specs, allocator.sweep_spec), a job whose ``scenarios`` list leaves the
    scenario out is removed (and dropped from other jobs' predecessors: it does not run
    there), and ``scenarios`` is cleared. Raises ValueError naming the scenario and the
    override a path or value of which is refused."""
    from allocator.sweep_spec import PathError, apply_overrides, resolve

    if not inst.scenarios:
        return [ScenarioCase("base", 1.0, inst)]
    cases = []
    for k, sc in enumerate(inst.scenarios):
        changes = []
        for i, ov in enumerate(sc.overrides):
            where = f"scenarios[{k}] ({sc.id}).overrides[{i}] {ov.path}"
            try:
                addrs = resolve(inst, ov.path)
            except PathError as exc:
                raise ValueError(f"{where}: {exc}") from None
            for addr in addrs:
                if any(step == ("attr", f) for step in addr for f in FIRST_STAGE_FIELDS):
                    raise ValueError(f"{where}: lease options are decided once for all scenarios; "
                                     "a scenario cannot change them")
            op, value = ("scale", ov.scale) if ov.scale is not None else ("set", ov.value)
            changes.extend((addr, op, value) for addr in addrs)
        try:
            one = apply_overrides(inst, changes)
        except ValueError as exc:
            raise ValueError(f"scenarios[{k}] ({sc.id}): {exc}") from None
        kept = [j for j in one.jobs if j.scenarios is None or sc.id in j.scenarios]
        ids = {j.id for j in kept}
        for j in kept:
            j.scenarios = None
            j.predecessors = [p for p in j.predecessors if p in ids]
        one.jobs = kept
        one.scenarios = []
        one.name = f"{inst.name}:{sc.id}"
        cases.append(ScenarioCase(sc.id, float(sc.probability), one))
    return cases


def fix(inst: Instance, leases: pd.DataFrame) -> Instance:
    """A copy of ``inst`` with its lease decisions fixed as in ``leases`` (LEASE_COLUMNS): a
    decided pool gets reserved = the block and the taken offer's price, a decided site gets
    power_cap_mw = the ceiling and power_price_usd_per_mw_h = its lease price. The result is
    an ordinary instance (no decisions), solved and verified like any other."""
    rows = {(str(r.site), str(r.resource)): r for r in leases.itertuples(index=False)}
    new = inst.model_copy(deep=True)
    for s in new.sites:
        for p in s.pools:
            if p.reserve_options is None:
                continue
            r = rows.get((s.id, p.gpu_type))
            size = int(r.size) if r is not None else 0
            offer = next((o for o in p.reserve_options if r is not None and o.term == r.term), None)
            p.reserve_options = None
            p.reserved = size
            p.reserved_price_usd_per_gpu_h = offer.price_usd_per_gpu_h if (offer and size) else 0.0
        if s.power_options is not None:
            r = rows.get((s.id, POWER))
            option = s.power_options
            s.power_options = None
            s.power_cap_mw = float(r.size) if r is not None else float(option.min_mw)
            s.power_price_usd_per_mw_h = option.price_usd_per_mw_h
    return new


def leases_frame(inst: Instance, reserved: dict[tuple[str, str], tuple[int | None, int]],
                 power: dict[str, float]) -> pd.DataFrame:
    """leases.csv: one row per decision. ``reserved``: (site, GPU type) -> (offer position
    or None, block GPUs); ``power``: site -> ceiling MW. cost_usd is the lease over the
    horizon (size x price x horizon hours)."""
    hours = inst.horizon.hours
    rows = []
    for s in inst.sites:
        for p in s.pools:
            if p.reserve_options is None:
                continue
            k, size = reserved.get((s.id, p.gpu_type), (None, 0))
            if k is None or size == 0:
                rows.append((s.id, p.gpu_type, NO_OFFER, 0, "GPUs", 0.0))
                continue
            offer = p.reserve_options[k]
            rows.append((s.id, p.gpu_type, offer.term, int(size), "GPUs",
                         float(size) * offer.price_usd_per_gpu_h * hours))
        if s.power_options is not None:
            mw = float(power.get(s.id, s.power_options.min_mw))
            rows.append((s.id, POWER, s.power_options.term, mw, "MW",
                         mw * s.power_options.price_usd_per_mw_h * hours))
    df = pd.DataFrame(rows, columns=LEASE_COLUMNS)
    df["size"] = df["size"].astype(float)
    return df
