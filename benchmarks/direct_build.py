"""The yardstick: build allocator's model directly as numpy/scipy arrays and hand it to HiGHS.

Times ``allocator.largescale.build_arrays(compact=False)`` (the rows and columns of the
Pyomo formulation) plus ``Highs.passModel``, with no Pyomo involved; the Pyomo route
(build_model + compile + passModel) is held to at most 10x this. Also reports the compact
running-total form that the lns strategy solves. With --pyomo it also times the Pyomo route
(allocator.formulation.build_model, then the standard-form compile and passModel of
allocator.solve) and prints the ratio; --repeat N keeps the fastest of N runs of each.

    python benchmarks/direct_build.py --size L [--seed 0] [--pyomo] [--repeat N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def yardstick(inst, index, *, compact: bool = False) -> dict:
    """Seconds to build the arrays and to pass them to HiGHS, and the model's size."""
    from allocator.largescale import build_arrays, to_highs

    t0 = time.perf_counter()
    am = build_arrays(inst, index, compact=compact)
    t1 = time.perf_counter()
    h = to_highs(am)
    t2 = time.perf_counter()
    del h
    return {"build_s": round(t1 - t0, 4), "handoff_s": round(t2 - t1, 4),
            "total_s": round(t2 - t0, 4), **am.shape}


def pyomo_route(inst, index) -> dict:
    """Seconds of allocator's own route: Pyomo build, then compile and passModel (no solve)."""
    from allocator.formulation import build_model
    from allocator.options import SolveOptions
    from allocator.solve import _compile, _new_highs, _objective_components, _pass

    opts = SolveOptions()
    t0 = time.perf_counter()
    model = build_model(inst, index, opts)
    t1 = time.perf_counter()
    comp = _compile(model, _objective_components(model, opts, None))
    h = _new_highs(opts)
    _pass(h, comp, 0)
    t2 = time.perf_counter()
    del h
    return {"build_s": round(t1 - t0, 4), "handoff_s": round(t2 - t1, 4), "total_s": round(t2 - t0, 4),
            "variables": len(comp.columns), "constraints": len(comp.rows), "nonzeros": int(comp.A.nnz)}


def _best(fn, repeat: int) -> dict:
    runs = [fn() for _ in range(max(1, repeat))]
    return min(runs, key=lambda r: r["total_s"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="L", help="S, M, L or XL (allocator.generate.SIZES)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--pyomo", action="store_true", help="also time the Pyomo route and the ratio")
    ap.add_argument("--repeat", type=int, default=1, help="keep the fastest of N runs")
    args = ap.parse_args(argv)
    from allocator.generate import SIZES, generate_instance
    from allocator.indexing import build_index

    inst = generate_instance(**SIZES[args.size], seed=args.seed)
    t0 = time.perf_counter()
    index = build_index(inst)
    out = {"size": args.size, "index_s": round(time.perf_counter() - t0, 3),
           "direct": _best(lambda: yardstick(inst, index), args.repeat),
           "compact": _best(lambda: yardstick(inst, index, compact=True), args.repeat)}
    if args.pyomo:
        out["pyomo"] = _best(lambda: pyomo_route(inst, index), args.repeat)
        out["ratio"] = round(out["pyomo"]["total_s"] / out["direct"]["total_s"], 2)
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
