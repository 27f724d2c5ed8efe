"""The yardstick: build allocator's model directly as numpy/scipy arrays and hand it to HiGHS.

Times ``allocator.largescale.build_arrays(compact=False)`` (the rows and columns of the
Pyomo formulation) plus ``Highs.passModel``, with no Pyomo involved; the Pyomo route
(build_model + compile + passModel) is held to at most 10x this. Also reports the compact
running-total form that the lns strategy solves.

    python benchmarks/direct_build.py --size L [--seed 0] [--json FILE]
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="L", help="S, M, L or XL (allocator.generate.SIZES)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    from allocator.generate import SIZES, generate_instance
    from allocator.indexing import build_index

    inst = generate_instance(**SIZES[args.size], seed=args.seed)
    t0 = time.perf_counter()
    index = build_index(inst)
    out = {"size": args.size, "index_s": round(time.perf_counter() - t0, 3),
           "direct": yardstick(inst, index), "compact": yardstick(inst, index, compact=True)}
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
