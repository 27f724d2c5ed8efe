"""Model size, build, hand-off and solve times on generated instances of growing size.

    python benchmarks/scale.py --sizes S,M,L --time-limit 120 --json FILE [--strategy mip|lns]

Each size runs in its own process (so peak memory, ru_maxrss, is that size's own): generate
(allocator.generate, seed 0), then allocator.solve (validate, index, Pyomo build, hand-off to
HiGHS with the greedy plan as MIP start, solve, extract) or, with --strategy lns, the
large-instance strategy of allocator.largescale. Per size it prints and writes: variables,
constraints, nonzeros, build s, hand-off s, solve s, objective, bound, gap, peak memory MB,
greedy objective (none when the greedy plan leaves a mandatory job out; greedy_status and
greedy_message in the JSON say which) and the direct numpy/highspy build of the same model
(the yardstick). With --strategy lns the JSON also holds the strategy's stages (LP time and
bound, rounding, sub-MIPs tried and kept per neighbourhood kind, the incumbent over time).
Figures are compared with benchmarks/baselines.json when present.
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
sys.path.insert(0, str(HERE))

COLUMNS = ["size", "variables", "constraints", "nonzeros", "build_s", "handoff_s", "solve_s",
           "objective", "bound", "gap", "peak_mb", "greedy", "direct_s", "status"]


def run_size(size: str, time_limit: float, strategy: str, seed: int, queue) -> None:
    try:
        queue.put(_run(size, time_limit, strategy, seed))
    except Exception as e:  # noqa: BLE001 - report, do not hang the parent
        queue.put({"size": size, "status": f"error: {type(e).__name__}: {e}"})


def _run(size: str, time_limit: float, strategy: str, seed: int) -> dict:
    from direct_build import yardstick

    from allocator.api import solve
    from allocator.generate import SIZES, generate_instance
    from allocator.heuristics import greedy_result
    from allocator.indexing import build_index
    from allocator.options import SolveOptions

    inst = generate_instance(**SIZES[size], seed=seed)
    opts = SolveOptions(time_limit_s=time_limit, explain=False)
    t0 = time.perf_counter()
    index = build_index(inst)
    index_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    greedy = greedy_result(inst, index, opts)
    greedy_s = time.perf_counter() - t0
    direct = yardstick(inst, index)
    row = {"size": size, "strategy": strategy, "index_s": round(index_s, 3),
           "greedy": greedy.objective, "greedy_s": round(greedy_s, 3),
           "greedy_status": greedy.status.value, "greedy_message": greedy.message,
           "direct_s": direct["total_s"], "direct": direct}
    t0 = time.perf_counter()
    if strategy == "lns":
        from allocator.largescale import solve_lns

        res = solve_lns(inst, index, opts)
        st = res.summary["stages"]
        row.update(variables=st["size"]["variables"], constraints=st["size"]["constraints"],
                   nonzeros=st["size"]["nonzeros"], build_s=round(st["build_s"], 3), handoff_s=None,
                   solve_s=round(res.solve_s, 3), stages=st)
    else:
        res = solve(inst, opts)
        tm = res.summary.get("timings", {})
        model = res.summary.get("model", {})
        row.update(variables=model.get("columns"), constraints=model.get("rows"),
                   nonzeros=model.get("nonzeros"), build_s=round(tm.get("build_s", 0.0), 3),
                   handoff_s=round(tm.get("handoff_s", 0.0), 3), solve_s=round(tm.get("solve_s", 0.0), 3),
                   timings=tm)
    row.update(wall_s=round(time.perf_counter() - t0, 3), objective=res.objective, bound=res.bound,
               gap=res.gap, status=res.status.value,
               peak_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
    return row


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1 else f"{v:,.1f}"
    return str(v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="S,M,L")
    ap.add_argument("--time-limit", type=float, default=120.0)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--strategy", choices=["mip", "lns"], default="mip")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--baselines", type=Path, default=HERE / "baselines.json")
    args = ap.parse_args(argv)
    ctx = mp.get_context("spawn")
    rows = []
    print("  ".join(f"{c:>11}" for c in COLUMNS), flush=True)
    for size in [s.strip() for s in args.sizes.split(",") if s.strip()]:
        q = ctx.Queue()
        proc = ctx.Process(target=run_size, args=(size, args.time_limit, args.strategy, args.seed, q))
        proc.start()
        row = q.get()
        proc.join()
        rows.append(row)
        print("  ".join(f"{_fmt(row.get(c)):>11}" for c in COLUMNS), flush=True)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2, default=str))
    if args.baselines.exists():
        base = {(b["size"], b.get("strategy", "mip")): b for b in json.loads(args.baselines.read_text())}
        for row in rows:
            b = base.get((row["size"], row.get("strategy", "mip")))
            if b and row.get("objective") and b.get("objective"):
                print(f"{row['size']}: objective {row['objective']:,.0f} vs baseline {b['objective']:,.0f} "
                      f"({100 * (row['objective'] / b['objective'] - 1):+.2f}%), gap "
                      f"{_fmt(row.get('gap'))} vs {_fmt(b.get('gap'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
