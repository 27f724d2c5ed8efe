"""What to lease at scale: the extensive form of generated instances with lease decisions,
over 1, 3 and 10 demand scenarios.

    python benchmarks/leasing_scale.py --sizes S,M --scenarios 1,3,10 --time-limit 120 --json FILE

Each run is its own process (peak memory, ru_maxrss, is that run's own). The instance is
``allocator.generate`` at that size (seed 0) turned into a sizing instance:

- every pool of the cloud sites (all sites but the first) gets two commitment offers, 1y at
  on-demand x 0.60 and 3y at x 0.40 (the ~40% and ~60% discounts of
  data/colossus-2026-leasing/SOURCES.md), blocks of 0 to the whole pool in sixteenths of it
  (as the example, no minimum block: a minimum makes each block a fixed charge, whose weak
  LP relaxation made the example several times slower), and its fixed block is dropped;
- the first site (the Colossus-style power lease) gets power_options: 50% to 125% of its
  ceiling in 5% steps at $201.71 per MW-hour (the estimate of colossus-2026-leasing);
- with k > 1 scenarios: scenario 0 is the instance itself; scenario i > 0 scales every
  service's demand by a factor drawn from [0.8, 1.4] and leaves out a random tenth of the
  jobs (their ``scenarios`` list omits it); probabilities are equal.

Printed per run: scenarios, model columns / rows / integers (HiGHS's count of the one
model), build s (index + Pyomo build of every scenario and the extensive form), solve s,
objective, bound, gap, status, peak memory MB; the JSON holds the rest (leases taken).
The solve has a wall-clock limit (--time-limit, default 120 s) and a 1% gap target.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from scale import _fmt  # noqa: E402 - the benchmarks' one table formatter

COLUMNS = ["size", "scenarios", "columns", "rows", "integers", "build_s", "solve_s", "wall_s",
           "objective", "bound", "gap", "status", "verified", "peak_mb"]
MW_PRICE = 201.71  # $ per MW-hour (data/colossus-2026-leasing/SOURCES.md, an estimate)
DISCOUNT = {"1y": 0.40, "3y": 0.60}


def leasing_instance(size: str, scenarios: int, seed: int = 0):
    """The generated instance of ``size`` with offers, power options and ``scenarios``."""
    import numpy as np

    from allocator.generate import SIZES, generate_instance
    from allocator.io import instance_from_dict

    inst = generate_instance(**SIZES[size], seed=seed)
    data = inst.model_dump(mode="json", exclude_none=True)
    for k, site in enumerate(data["sites"]):
        if k == 0:
            cap = site.pop("power_cap_mw")
            cap = max(cap) if isinstance(cap, list) else float(cap)
            step = math.ceil(cap * 0.05 * 1000) / 1000
            site["power_options"] = {"term": "lease", "price_usd_per_mw_h": MW_PRICE,
                                     "min_mw": 10 * step, "max_mw": 25 * step, "step_mw": step}
            site.pop("power_price_usd_per_mw_h", None)
            continue
        for pool in site["pools"]:
            od = float(pool.get("ondemand_price_usd_per_gpu_h", 0.0))
            step = pool["available"] // 16
            if od <= 0 or step < 1:
                continue
            pool["reserved"] = 0
            pool["reserved_price_usd_per_gpu_h"] = 0.0
            pool["reserve_options"] = [
                {"term": term, "price_usd_per_gpu_h": round(od * (1 - d), 4), "min_gpus": 0,
                 "max_gpus": step * (pool["available"] // step), "step_gpus": step}
                for term, d in DISCOUNT.items()]
    if scenarios > 1:
        rng = np.random.default_rng(seed + 1)
        ids = [f"s{i}" for i in range(scenarios)]
        data["scenarios"] = [{"id": ids[0], "probability": 1.0 / scenarios}]
        for sid in ids[1:]:
            data["scenarios"].append({"id": sid, "probability": 1.0 / scenarios, "overrides": [
                {"path": "services[*].demand", "scale": round(float(rng.uniform(0.8, 1.4)), 3)}]})
        # probabilities that sum to 1 exactly in floating point
        data["scenarios"][-1]["probability"] = 1.0 - sum(s["probability"] for s in data["scenarios"][:-1])
        for job in data["jobs"]:
            out = [sid for sid in ids[1:] if rng.random() < 0.1]
            if out:
                job["scenarios"] = [sid for sid in ids if sid not in out]
    return instance_from_dict(data)


def run(size: str, scenarios: int, time_limit: float, seed: int, queue) -> None:
    try:
        queue.put(_run(size, scenarios, time_limit, seed))
    except Exception as e:  # noqa: BLE001 - report, do not hang the parent
        queue.put({"size": size, "scenarios": scenarios, "status": f"error: {type(e).__name__}: {e}"})


def _run(size: str, scenarios: int, time_limit: float, seed: int) -> dict:
    from allocator.api import solve
    from allocator.options import SolveOptions

    inst = leasing_instance(size, scenarios, seed)
    t0 = time.perf_counter()
    res = solve(inst, SolveOptions(time_limit_s=time_limit, mip_gap=0.01, explain=False))
    wall = time.perf_counter() - t0
    tm = res.summary.get("timings", {})
    model = res.summary.get("model", {})
    leases = res.frames.get("leases")
    row = {"size": size, "scenarios": scenarios, "columns": model.get("columns"),
           "rows": model.get("rows"), "integers": model.get("integer_columns"),
           "build_s": round(tm.get("index_s", 0.0) + tm.get("build_s", 0.0), 1),
           "solve_s": round(tm.get("solve_s", 0.0), 1), "wall_s": round(wall, 1),
           "objective": res.objective, "bound": res.bound, "gap": res.gap,
           "status": res.status.value, "message": res.message, "timings": tm,
           "leases": None if leases is None else leases.to_dict(orient="records")}
    if res.status.has_schedule:  # the figures of a schedule the independent verifier accepts
        import tempfile

        from allocator.verify import verify

        with tempfile.TemporaryDirectory() as tmp:
            ver = verify(inst, res.export(Path(tmp) / "schedule"))
            row["verified"] = ver.ok
            row["violations"] = [str(v) for v in ver.violations[:10]]
    row["peak_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="S,M")
    ap.add_argument("--scenarios", default="1,3,10")
    ap.add_argument("--time-limit", type=float, default=120.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    ctx = mp.get_context("spawn")
    rows = []
    print("  ".join(f"{c:>11}" for c in COLUMNS), flush=True)
    for size in [s.strip() for s in args.sizes.split(",") if s.strip()]:
        for k in [int(x) for x in args.scenarios.split(",") if x.strip()]:
            q = ctx.Queue()
            proc = ctx.Process(target=run, args=(size, k, args.time_limit, args.seed, q))
            proc.start()
            row = q.get()
            proc.join()
            rows.append(row)
            print("  ".join(f"{_fmt(row.get(c)):>11}" for c in COLUMNS), flush=True)
            if args.json:
                args.json.write_text(json.dumps(rows, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
