"""Build and compile time and peak memory of the one model: the Pyomo formulation compiled to
standard form (allocator.compiled.compile_model) and handed to HiGHS (no solve).

For each usage form (expanded rows and running totals, allocator.formulation.build_model's
``usage``) it reports the seconds of build_model, of the compile, of passModel, the model's
size and the peak resident memory of the process. There is no second model to compare with:
the arrays the lns strategy solves are this compiled model.

    python benchmarks/direct_build.py --size L [--seed 0] [--form running|expanded|both] [--json FILE]
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def route(inst, index, usage: str) -> dict:
    """Seconds of the Pyomo build, the compile and passModel, the size and peak memory."""
    from allocator.compiled import compile_model
    from allocator.formulation import build_model
    from allocator.options import SolveOptions
    from allocator.solve import _new_highs, _pass

    opts = SolveOptions()
    t0 = time.perf_counter()
    model = build_model(inst, index, opts, usage=usage)
    t1 = time.perf_counter()
    comp = compile_model(model, [model.obj_cost])
    t2 = time.perf_counter()
    h = _new_highs(opts)
    _pass(h, comp, 0)
    t3 = time.perf_counter()
    out = {"usage": usage, "build_s": round(t1 - t0, 3), "compile_s": round(t2 - t1, 3),
           "handoff_s": round(t3 - t2, 3), "total_s": round(t3 - t0, 3), **comp.shape,
           "peak_rss_mb": round(_peak_mb(), 1)}
    del h, comp, model
    gc.collect()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="L", help="S, M, L or XL (allocator.generate.SIZES)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--form", default="running", choices=["running", "expanded", "both"],
                    help="usage form (peak memory is per process: run one form per process "
                         "to compare memory)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    from allocator.generate import SIZES, generate_instance
    from allocator.indexing import build_index

    inst = generate_instance(**SIZES[args.size], seed=args.seed)
    t0 = time.perf_counter()
    index = build_index(inst)
    out = {"size": args.size, "seed": args.seed, "index_s": round(time.perf_counter() - t0, 3)}
    forms = ["expanded", "running"] if args.form == "both" else [args.form]
    out["runs"] = [route(inst, index, f) for f in forms]
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
