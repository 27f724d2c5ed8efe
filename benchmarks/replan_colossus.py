"""The cost of stability: re-plan colossus-2026 after a power cut, with 0, 1, 2, 4, 8 and
unlimited moves (docs/replanning.md).

    python benchmarks/replan_colossus.py --out runs/replan-colossus [--time-limit 120] [--gap 0.01]

1. plan the instance as shipped (the previous plan, written to OUT/plan);
2. cut the power ceiling of colossus-1 by 60 MW for two days starting mid-horizon;
3. re-plan from mid-horizon (now = the cut's first period) with each move budget, writing
   OUT/moves-<N>/ and one row per budget to OUT/replan.csv (cost, moves, moved GPUs, status).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

import allocator
from allocator.io import load_instance

ROOT = Path(__file__).resolve().parents[1]
BUDGETS: tuple[int | None, ...] = (0, 1, 2, 4, 8, None)


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
    ap.add_argument("--instance", default=str(ROOT / "data" / "colossus-2026" / "instance.yaml"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--time-limit", type=float, default=120.0)
    ap.add_argument("--gap", type=float, default=0.01)
    args = ap.parse_args()
    print(run(args.instance, args.out, time_limit_s=args.time_limit, mip_gap=args.gap).to_string(index=False))


if __name__ == "__main__":
    main()
