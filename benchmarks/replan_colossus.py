"""The cost of stability: re-plan colossus-2026 after a power cut at Colossus, with 0, 1, 2, 4, 8
and unlimited moves (docs/replanning.md, "Example").

    python benchmarks/replan_colossus.py --out out/replan-colossus [--workers 2]

runs the shipped example, the same steps as its two commands (data/colossus-2026/
replan-sweep.yaml):

1. plan data/colossus-2026/instance.yaml as shipped (1% gap, one thread): OUT/plan;
2. sweep replan-sweep.yaml (max_moves 0, 1, 2, 4, 8, none; now = 72) over instance-cut.yaml
   (Colossus at 100 MW in periods 84-95) with OUT/plan as the previous plan: OUT/cut;
3. the same sweep over instance.yaml (no cut), the reference: what each budget gains by
   re-optimising the previous plan alone: OUT/nocut;

and writes one row per budget to OUT/replan.csv (cost with and without the cut, migration,
moved and retimed jobs, gap, seconds). ``run`` is the same re-plan for any instance and cut
given in numbers (the test suite runs it on the demo).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

import allocator
from allocator.io import load_instance

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "colossus-2026"
BUDGETS: tuple[int | None, ...] = (0, 1, 2, 4, 8, None)
PLAN_OPTIONS = {"mip_gap": 0.01, "threads": 1, "seed": 0}  # the first command of the example


def run_shipped(out: str | Path, *, workers: int = 2, data: Path = DATA) -> pd.DataFrame:
    """The shipped example, as its commands run it; one row per move budget."""
    import yaml

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    plan = allocator.solve(data / "instance.yaml", **PLAN_OPTIONS)
    prev_dir = plan.export(out / "plan", force=True)
    plan_s = time.perf_counter() - t0
    spec = yaml.safe_load((data / "replan-sweep.yaml").read_text())
    spec["solve"]["previous"] = str(prev_dir)  # the spec names out/colossus, from the root
    frames, seconds = {}, {}
    for name, instance in (("cut", "instance-cut.yaml"), ("nocut", "instance.yaml")):
        t = time.perf_counter()
        frames[name] = allocator.sweep(data / instance, spec, out=out / name, workers=workers,
                                       progress=False, force=True)
        seconds[name] = time.perf_counter() - t
    cut, ref = frames["cut"], frames["nocut"]
    table = pd.DataFrame({
        "max_moves": ["unlimited" if pd.isna(m) else str(int(m)) for m in cut["max_moves"]],
        "status": cut["status"], "total_cost_usd": cut["total_cost_usd"],
        "migration_usd": cut["migration_usd"], "moved": cut["moved"], "retimed": cut["retimed"],
        "gap": cut["gap"], "seconds": cut["seconds"],
        "nocut_total_cost_usd": ref["total_cost_usd"].to_numpy(), "nocut_moved": ref["moved"].to_numpy(),
        "nocut_gap": ref["gap"].to_numpy(), "nocut_seconds": ref["seconds"].to_numpy(),
    })
    table.to_csv(out / "replan.csv", index=False)
    (out / "replan.json").write_text(json.dumps({
        "plan": {"status": plan.status.value, "total_cost_usd": plan.total_cost, "gap": plan.gap,
                 "seconds": plan_s},
        "sweep_seconds": seconds, "workers": workers}, indent=1, default=str))
    return table


def cut_power(inst, site: str, mw: float, start: int, periods: int):
    """The instance with ``mw`` less power ceiling at ``site`` in periods [start, start+periods)."""
    data = inst.model_dump(mode="json")
    T = inst.horizon.periods
    for s in data["sites"]:
        if s["id"] == site:
            cap = s["power_cap_mw"]
            cap = list(cap) if isinstance(cap, list) else [cap] * T
            for t in range(start, min(T, start + periods)):
                cap[t] = max(0.0, cap[t] - mw)
            s["power_cap_mw"] = cap
    return allocator.instance_from_dict(data)


def run(instance: str | Path, out: str | Path, *, site: str = "colossus-1", mw: float = 60.0,
        days: float = 2.0, budgets=BUDGETS, time_limit_s: float = 120.0, mip_gap: float = 0.01) -> pd.DataFrame:
    """Plan ``instance``, cut ``mw`` at ``site`` for ``days`` from mid-horizon and re-plan from
    there with each budget: OUT/plan, OUT/moves-<N>/ and OUT/replan.csv."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    inst = load_instance(instance)
    opts = {"time_limit_s": time_limit_s, "mip_gap": mip_gap, "threads": 1}
    plan = allocator.solve(inst, **opts)
    prev_dir = plan.export(out / "plan", force=True)
    now = inst.horizon.periods // 2
    cut = cut_power(inst, site, mw, now, round(days * 24 / inst.horizon.period_hours))
    rows = [{"max_moves": "previous plan", "status": plan.status.value, "total_cost_usd": plan.total_cost,
             "migration_usd": 0.0, "moved": 0, "moved_gpus": 0, "gap": plan.gap}]
    for n in budgets:
        res = allocator.solve(cut, previous=prev_dir, now=now, max_moves=n, **opts)
        name = "unlimited" if n is None else str(n)
        res.export(out / f"moves-{name}", force=True)
        ch = res.summary.get("changes", {})
        rows.append({"max_moves": name, "status": res.status.value, "total_cost_usd": res.total_cost,
                     "migration_usd": res.costs.get("migration") if res.costs else None,
                     "moved": ch.get("moved"), "moved_gpus": ch.get("moved_gpus"), "gap": res.gap})
    table = pd.DataFrame(rows)
    table.to_csv(out / "replan.csv", index=False)
    (out / "replan.json").write_text(json.dumps(rows, indent=1, default=str))
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    print(run_shipped(args.out, workers=args.workers).to_string(index=False))


if __name__ == "__main__":
    main()
