"""Scenarios per minute with and without re-using the built model between scenarios.

    python benchmarks/sweep_reuse.py [--instance data/demo/instance.yaml]
        [--spec data/demo/sweep.yaml] [--limit N] [--threads T] [--repeat R] [--out results.csv]
    python benchmarks/sweep_reuse.py --size M --seed 0 --spec benchmarks/sweep_m.yaml

(``--size``: the generated instance of that size, `allocator generate`'s, instead of a file.)

Solves the spec's scenarios one after another in this process, as one sweep worker does,
once rebuilding every model (each scenario through allocator.solve) and once with
allocator.sweep.ReuseSession (the previous scenario's model updated), and prints
scenarios per minute, how many scenarios re-used the model, and whether every objective
agrees within the solve's gap. Scenario order is the spec's (grid: last parameter fastest),
which is also the order a worker receives them in.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def instance_of(instance: str, size: str | None, seed: int):
    """The instance file, or the generated instance of ``size`` and ``seed``."""
    if size:
        from allocator.generate import SIZES, generate_instance

        return generate_instance(**SIZES[size.upper()], seed=seed)
    from allocator import load_instance

    return load_instance(instance)


def run(instance: str, spec: str, limit: int | None, reuse: bool, threads: int,
        size: str | None = None, seed: int = 0):
    """Solve the scenarios one after another; returns (rows, seconds, session stats)."""
    import pandas as pd

    from allocator.api import solve
    from allocator.sweep import ReuseSession
    from allocator.sweep_spec import check_spec, load_spec, scenario_instance

    inst = instance_of(instance, size, seed)
    sp = load_spec(spec)
    scenarios = check_spec(inst, sp)[:limit]
    opts = sp.solve_options().with_(threads=threads)
    session = ReuseSession(opts) if reuse else None
    rows = []
    t0 = time.perf_counter()
    for sc in scenarios:
        t1 = time.perf_counter()
        sinst = scenario_instance(inst, sc)
        res = session.solve(sinst) if session is not None else solve(sinst, opts)
        rows.append({"scenario": sc.id, "status": res.status.value, "objective": res.objective,
                     "gap": res.gap, "seconds": time.perf_counter() - t1})
    seconds = time.perf_counter() - t0
    return pd.DataFrame(rows), seconds, dict(session.stats) if session is not None else {}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instance", default=str(ROOT / "data" / "demo" / "instance.yaml"))
    ap.add_argument("--spec", default=str(ROOT / "data" / "demo" / "sweep.yaml"))
    ap.add_argument("--size", default=None, help="S, M, L: a generated instance instead of --instance")
    ap.add_argument("--seed", type=int, default=0, help="seed of the generated instance (with --size)")
    ap.add_argument("--limit", type=int, default=None, help="first N scenarios of the spec only")
    ap.add_argument("--threads", type=int, default=1, help="HiGHS threads per solve")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each way (median reported)")
    ap.add_argument("--out", default=None, help="CSV of per-scenario objectives and seconds")
    args = ap.parse_args(argv)

    times: dict[bool, list[float]] = {False: [], True: []}
    frames = {}
    stats = {}
    for _ in range(args.repeat):
        for reuse in (False, True):
            df, secs, st = run(args.instance, args.spec, args.limit, reuse, args.threads,
                               args.size, args.seed)
            times[reuse].append(secs)
            frames[reuse], stats[reuse] = df, st
    n = len(frames[False])
    ok = frames[False]["status"].isin(["optimal", "feasible"])
    a, b = frames[False]["objective"], frames[True]["objective"]
    gap = frames[False]["gap"].fillna(0).clip(lower=1e-4)
    agree = bool((((a - b).abs() <= 2 * gap * a.abs() + 1e-6) | ~ok).all())
    name = f"generated {args.size.upper()} seed {args.seed}" if args.size else Path(args.instance).name
    print(f"instance {name}, spec {Path(args.spec).name}: {n} scenarios, "
          f"{int(ok.sum())} with a schedule, {args.repeat} run(s) each way")
    for reuse, label in ((False, "rebuild every scenario"), (True, "re-use the built model")):
        med = statistics.median(times[reuse])
        print(f"  {label:<24} {med:8.2f} s  {60 * n / med:8.1f} scenarios/min"
              + (f"  ({stats[reuse]})" if stats[reuse] else ""))
    print(f"  speed-up {statistics.median(times[False]) / statistics.median(times[True]):.2f}x; "
          f"objectives agree: {agree}")
    if args.out:
        out = frames[False][["scenario", "status", "objective", "seconds"]].copy()
        out["objective_reuse"] = b.to_numpy()
        out["seconds_reuse"] = frames[True]["seconds"].to_numpy()
        out.to_csv(args.out, index=False)
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
