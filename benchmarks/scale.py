"""Gap, times and memory of the strategies on generated instances of growing size.

    python benchmarks/scale.py --sizes S,M,L --seeds 0,1,2 --strategies auto,mip,lns \
        --time-limit 120 [--family generated|training|inference] [--json FILE] [--greedy]

Every (size, seed, strategy) runs in its own process (so peak memory, ru_maxrss, is that run's
own): generate the instance (``--family``, below), then ``allocator.solve`` with the strategy
and the time limit (the whole solve: validate, index, build, compile, search, derive). The
returned schedule is exported and checked by the independent verifier
(allocator.verify.verify_schedule, which reads only the instance and the exported files).
Per run it prints and writes: the strategy asked and the one that ran (``auto`` says which it
picked), variables, constraints, nonzeros, build s (index + model build + compile), solve s,
wall s, objective, bound, bound kind (lns: ``lp`` or ``relaxed``), gap, status, peak memory
MB and whether the verifier passed. ``--greedy`` adds the greedy plan's objective.

When both mip and lns ran on a (size, seed), a last table compares ``auto`` (the route it
picked) with the better of the two: the default strategy's target is at most 1.2x the better
route's gap.

Families (each generated on purpose, all from allocator.generate, seeded):
  generated  allocator.generate's sizes as they are (training jobs, inference services, some
             with N+1, reserved blocks with on-demand above them, a power lease)
  training   no services and no reserved blocks: every GPU is on demand (the power lease's
             pool too, at its reserved price), so the model is training jobs only
  inference  a fifth of the jobs and three times the services, N+1 on every service that has
             two sites within its SLO of each region it serves
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

COLUMNS = ["size", "seed", "strategy", "ran", "auto_picks", "variables", "nonzeros", "build_s", "solve_s",
           "wall_s", "objective", "bound", "bound_kind", "gap", "status", "peak_mb", "verified"]
FAMILIES = ("generated", "training", "inference")


def family_instance(family: str, size: str, seed: int):
    """The generated instance of ``family`` (see the module docstring) at ``size``."""
    from allocator.generate import SIZES, generate_instance
    from allocator.schema import Instance

    shape = dict(SIZES[size])
    if family == "training":
        shape["services"] = 0
    elif family == "inference":
        shape["jobs"] = max(1, shape["jobs"] // 5)
        shape["services"] = shape["services"] * 3
    elif family != "generated":
        raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    inst = generate_instance(**shape, seed=seed)
    data = inst.model_dump(mode="json", exclude_none=True)
    if family == "training":
        for site in data["sites"]:
            for pool in site["pools"]:
                if pool.get("reserved"):
                    price = pool.get("ondemand_price_usd_per_gpu_h") or pool.get(
                        "reserved_price_usd_per_gpu_h", 0.0)
                    pool.update(reserved=0, reserved_price_usd_per_gpu_h=0.0,
                                ondemand_price_usd_per_gpu_h=price)
    elif family == "inference":
        from allocator.indexing import build_index

        flows = build_index(inst).flows
        sites_per = flows.groupby(["v", "r"])["s"].nunique()
        two = {v for v, ok in (sites_per >= 2).groupby(level=0).all().items() if ok}
        for svc in data["services"]:
            if svc["id"] in two:
                svc["redundancy"] = True
        data["name"] = f"{inst.name}-inference"
    if family == "training":
        data["name"] = f"{inst.name}-training"
    return Instance.model_validate(data)


def run_one(family: str, size: str, seed: int, strategy: str, time_limit: float, greedy: bool,
            queue) -> None:
    try:
        queue.put(_run(family, size, seed, strategy, time_limit, greedy))
    except Exception as e:  # noqa: BLE001 - report, do not hang the parent
        queue.put({"size": size, "seed": seed, "strategy": strategy,
                   "status": f"error: {type(e).__name__}: {e}"})


def _run(family: str, size: str, seed: int, strategy: str, time_limit: float, greedy: bool) -> dict:
    import tempfile

    from allocator.api import solve
    from allocator.options import SolveOptions
    from allocator.verify import verify_schedule

    inst = family_instance(family, size, seed)
    row: dict = {"family": family, "size": size, "seed": seed, "strategy": strategy}
    if greedy:
        from allocator.heuristics import greedy_result
        from allocator.indexing import build_index

        g = greedy_result(inst, build_index(inst), SolveOptions(time_limit_s=time_limit, explain=False))
        row.update(greedy=g.objective, greedy_status=g.status.value)
    row["auto_picks"] = auto_pick(inst, time_limit)
    t0 = time.perf_counter()
    res = solve(inst, SolveOptions(time_limit_s=time_limit, explain=False, strategy=strategy))
    row["wall_s"] = round(time.perf_counter() - t0, 2)
    tm = res.summary.get("timings", {})
    ran = res.options.get("strategy")
    st = res.summary.get("lns") or {}
    size_ = st.get("size") or res.summary.get("model") or {}
    row.update(ran=ran, variables=size_.get("variables", size_.get("columns")),
               constraints=size_.get("constraints", size_.get("rows")),
               nonzeros=size_.get("nonzeros"),
               build_s=round(tm.get("index_s", 0.0) + tm.get("build_s", 0.0) + tm.get("handoff_s", 0.0), 2),
               solve_s=round(tm.get("solve_s", 0.0), 2), timings=tm,
               objective=res.objective, bound=res.bound, gap=res.gap, status=res.status.value,
               message=res.message, bound_kind=_bound_kind(res.bound, st), stages=st or None)
    row["costs"] = dict(res.costs or {})
    row["verified"] = None
    if res.objective is not None:
        with tempfile.TemporaryDirectory() as tmp:
            violations = verify_schedule(inst, res.export(Path(tmp) / "schedule"))
        row["verified"] = not violations
        row["violations"] = [str(v) for v in violations[:10]]
    row["peak_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return row


def auto_pick(inst, time_limit: float) -> str:
    """The route strategy "auto" takes on ``inst`` (its own rule, without solving)."""
    from allocator.api import _resolve_strategy
    from allocator.indexing import build_index, estimate_size
    from allocator.options import SolveOptions

    opts = SolveOptions(time_limit_s=time_limit, explain=False)
    return _resolve_strategy(opts, estimate_size(build_index(inst), compact=True)).strategy


def _bound_kind(bound: float | None, stages: dict) -> str | None:
    """Where the bound came from: "mip" (HiGHS's dual bound), "lp" (the LP relaxation's
    duals), "relaxed" (no capacity limits), or "incumbent" (proven optimal by the plan)."""
    if bound is None:
        return None
    if not stages:
        return "mip"
    for key in ("mip_bound", "lp_bound", "relaxed_bound"):
        b = stages.get(key)
        if b is not None and abs(b - bound) <= 1e-9 * max(1.0, abs(bound)):
            return key.split("_")[0]
    return "incumbent"


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1 else f"{v:,.1f}"
    return str(v)


def table(rows: list[dict], columns: list[str]) -> str:
    """Fixed-width text table of ``rows`` (shared by the other benchmark scripts)."""
    lines = ["  ".join(f"{c:>11}" for c in columns)]
    lines += ["  ".join(f"{_fmt(r.get(c)):>11}" for c in columns) for r in rows]
    return "\n".join(lines)


def compare(rows: list[dict]) -> list[dict]:
    """Per (size, seed) with both mip and lns runs: the gap of the route ``auto`` picks (its
    own run if there is one) against the better route's."""
    out = []
    by = {(r["size"], r["seed"], r["strategy"]): r for r in rows if r.get("gap") is not None}
    for size, seed in dict.fromkeys((r["size"], r["seed"]) for r in rows):
        mip, lns = by.get((size, seed, "mip")), by.get((size, seed, "lns"))
        if mip is None or lns is None:
            continue
        picked = by.get((size, seed, "auto")) or (mip if mip.get("auto_picks") == "mip" else lns)
        best = min(mip["gap"], lns["gap"])
        # both within HiGHS's default gap tolerance (1e-4): equally optimal
        ratio = 1.0 if picked["gap"] <= 1e-4 else picked["gap"] / best if best > 0 else float("inf")
        out.append({"size": size, "seed": seed, "ran": picked.get("ran"), "auto_gap": picked["gap"],
                    "mip_gap": mip["gap"], "lns_gap": lns["gap"], "ratio": ratio})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="S,M,L")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--strategies", default="auto", help="comma-separated: auto, mip, lns")
    ap.add_argument("--family", default="generated", choices=FAMILIES)
    ap.add_argument("--time-limit", type=float, default=120.0)
    ap.add_argument("--greedy", action="store_true", help="also report the greedy plan's objective")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    ctx = mp.get_context("spawn")
    rows: list[dict] = []
    cols = COLUMNS + (["greedy"] if args.greedy else [])
    print(f"family {args.family}, time limit {args.time_limit:g} s", flush=True)
    print(table([], cols), flush=True)
    for size in [s.strip() for s in args.sizes.split(",") if s.strip()]:
        for seed in [int(s) for s in args.seeds.split(",") if s.strip()]:
            for strategy in [s.strip() for s in args.strategies.split(",") if s.strip()]:
                q = ctx.Queue()
                proc = ctx.Process(target=run_one, args=(args.family, size, seed, strategy,
                                                         args.time_limit, args.greedy, q))
                proc.start()
                row = q.get()
                proc.join()
                rows.append(row)
                print(table([row], cols).splitlines()[1], flush=True)
                if args.json:
                    args.json.write_text(json.dumps(rows, indent=2, default=str))
    cmp = compare(rows)
    if cmp:
        print("\nauto against the better route (target: ratio <= 1.2)")
        print(table(cmp, ["size", "seed", "ran", "auto_gap", "mip_gap", "lns_gap", "ratio"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
