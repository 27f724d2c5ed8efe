"""Model size, build, hand-off and solve times on generated instances of growing size.

    python benchmarks/scale.py --sizes S,M,L --time-limit 120 --json FILE [--strategy mip|lns]

Each size runs in its own process (so peak memory, ru_maxrss, is that size's own): generate
(allocator.generate, seed 0), then allocator.solve (validate, index, Pyomo build, hand-off to
HiGHS, solve, extract; the greedy plan stands in if HiGHS has none at the limit) or, with
--strategy lns, the large-instance strategy of allocator.lns. The returned schedule
is exported and checked by the independent verifier (allocator.verify.verify_schedule, which
reads only the instance and the exported files); ``verified`` says whether it passed. Per size it prints and writes: variables,
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
           "objective", "bound", "gap", "peak_mb", "greedy", "direct_s", "status", "verified"]


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
    opts = SolveOptions(time_limit_s=time_limit, explain=False)  # for the greedy plan
    t0 = time.perf_counter()
    index = build_index(inst)
    index_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    greedy = greedy_result(inst, index, opts)
    greedy_s = time.perf_counter() - t0
    # the yardstick builds the Pyomo formulation's rows (the expanded form) directly: it is
    # what the mip route is held to; lns builds the compact arrays itself (its build_s)
    direct = yardstick(inst, index) if strategy == "mip" else None
    row = {"size": size, "strategy": strategy, "index_s": round(index_s, 3),
           "greedy": greedy.objective, "greedy_s": round(greedy_s, 3),
           "greedy_status": greedy.status.value, "greedy_message": greedy.message,
           "direct_s": direct["total_s"] if direct else None, "direct": direct}
    t0 = time.perf_counter()
    res = solve(inst, SolveOptions(time_limit_s=time_limit, explain=False, strategy=strategy))
    tm = res.summary.get("timings", {})
    if strategy == "lns":
        st = res.summary.get("lns", {})
        size_ = st.get("size", {})
        row.update(variables=size_.get("variables"), constraints=size_.get("constraints"),
                   nonzeros=size_.get("nonzeros"), build_s=round(st.get("build_s", 0.0), 3), handoff_s=None,
                   solve_s=round(tm.get("solve_s", 0.0), 3), stages=st, timings=tm)
    else:
        model = res.summary.get("model", {})
        row.update(variables=model.get("columns"), constraints=model.get("rows"),
                   nonzeros=model.get("nonzeros"), build_s=round(tm.get("build_s", 0.0), 3),
                   handoff_s=round(tm.get("handoff_s", 0.0), 3), solve_s=round(tm.get("solve_s", 0.0), 3),
                   timings=tm)
    row.update(wall_s=round(time.perf_counter() - t0, 3), objective=res.objective, bound=res.bound,
               gap=res.gap, status=res.status.value, message=res.message)
    row["verified"] = None
    if res.objective is not None:
        import tempfile

        from allocator.verify import verify_schedule

        with tempfile.TemporaryDirectory() as tmp:
            t1 = time.perf_counter()
            folder = res.export(Path(tmp) / "schedule")
            violations = verify_schedule(inst, folder)
            row["verify_s"] = round(time.perf_counter() - t1, 3)
            row["verified"] = not violations
            row["violations"] = [str(v) for v in violations[:10]]
    row["peak_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
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
