"""The published Generalized Assignment Problem instances, solved through allocator.

Each GAP problem (m agents with capacities b_i, n jobs, cost c_ij and resource r_ij of job j on
agent i; minimise sum c_ij x_ij, every job on exactly one agent, sum_j r_ij x_ij <= b_i) becomes
an allocator instance of one hourly period:

- agent i  -> site ``a<i>`` with its own GPU type ``g<i>``: a pool of b_i GPUs, all prices zero,
  a tiny power draw per GPU and a power ceiling that never binds;
- job j    -> mandatory training job ``j<j>`` with one execution option per agent
  (gpu_type g<i>, gpus r_ij, 1 hour) and ``site_cost_usd`` {a<i>: c_ij}.

The only cost left is ``site_extra`` = sum c_ij x_ij, so allocator's objective is the GAP cost.
Every assignment is re-checked here from the raw matrices (each job once, capacities, cost).

    python benchmarks/gap.py --set orlib|yagiura|all [--only NAME ...] --time-limit S --out DIR
                             [--strategy mip|lns] [--engine allocator|direct] [--threads N]

writes DIR/results.csv (instance, objective, bound, gap, status, seconds, known) and
DIR/assignments/<instance>.csv (job, site), ids j1..jn and a1..am in file order. Names are
gap1-1 ... gap12-5 and gapa-1 ... gapd-6 for the OR-Library files and the file name (c10400)
for Yagiura's. ``--engine direct`` solves the same problems as a plain highspy model instead
(the yardstick for allocator's overhead). The data folder defaults to
``../shared/benchmarks/gap`` beside the repository, or $ALLOCATOR_GAP_DIR.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "benchmarks" / "gap"
ORLIB_FILES = [f"gap{k}" for k in range(1, 13)] + [f"gap{c}" for c in "abcd"]
RESULT_COLUMNS = ["instance", "objective", "bound", "gap", "status", "seconds", "known"]


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class GapProblem:
    """One GAP problem: cost[i, j], req[i, j] (agents x jobs), cap[i]."""

    name: str
    cost: np.ndarray
    req: np.ndarray
    cap: np.ndarray

    @property
    def m(self) -> int:
        return int(self.cost.shape[0])

    @property
    def n(self) -> int:
        return int(self.cost.shape[1])


def data_dir() -> Path:
    return Path(os.environ.get("ALLOCATOR_GAP_DIR", DEFAULT_DATA))


def _read_problem(nums: np.ndarray, pos: int, name: str, source: str) -> tuple[GapProblem, int]:
    if pos + 2 > len(nums):
        raise ValueError(f"{source}: problem {name} truncated before its size line")
    m, n = int(nums[pos]), int(nums[pos + 1])
    if m <= 0 or n <= 0:
        raise ValueError(f"{source}: problem {name} has m={m}, n={n}; both must be positive")
    pos += 2
    need = 2 * m * n + m
    if pos + need > len(nums):
        raise ValueError(
            f"{source}: problem {name} ({m} agents, {n} jobs) needs {need} numbers after its "
            f"size line but only {len(nums) - pos} remain"
        )
    cost = nums[pos : pos + m * n].reshape(m, n)
    pos += m * n
    req = nums[pos : pos + m * n].reshape(m, n)
    pos += m * n
    cap = nums[pos : pos + m]
    pos += m
    return GapProblem(name, cost.copy(), req.copy(), cap.copy()), pos


def _numbers(path: Path) -> np.ndarray:
    text = path.read_text()
    try:
        return np.array([int(tok) for tok in text.split()], dtype=np.int64)
    except ValueError as exc:
        raise ValueError(f"{path.name}: not a whitespace-separated list of integers ({exc})") from None


def parse_orlib(path: str | Path) -> list[GapProblem]:
    """An OR-Library file: the number of problems P, then P problems (named <stem>-1 ...)."""
    path = Path(path)
    nums = _numbers(path)
    if len(nums) == 0:
        raise ValueError(f"{path.name}: empty file")
    count, pos, out = int(nums[0]), 1, []
    for k in range(1, count + 1):
        prob, pos = _read_problem(nums, pos, f"{path.stem}-{k}", path.name)
        out.append(prob)
    if pos != len(nums):
        raise ValueError(f"{path.name}: {len(nums) - pos} numbers left after {count} problems")
    return out


def parse_yagiura(path: str | Path) -> GapProblem:
    """A Yagiura file: one problem, no count; named after the file."""
    path = Path(path)
    nums = _numbers(path)
    prob, pos = _read_problem(nums, 0, path.name, path.name)
    if pos != len(nums):
        raise ValueError(f"{path.name}: {len(nums) - pos} numbers left after the problem")
    return prob


def read_known(root: Path | None = None) -> dict[str, dict]:
    """Published values by our instance name: {name: {value, status, lb}}.

    OR-Library rows are keyed gap<k>-<index>; rows of types A-D that come from both an
    OR-Library file and a Yagiura file get both names (gapa-1 and a05100)."""
    root = root or data_dir()
    known: dict[str, dict] = {}
    with open(root / "known_values.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            rec = {
                "value": float(row["min_value"]),
                "status": row["min_status"],
                "lb": float(row["min_lb"]) if row["min_lb"] else math.nan,
            }
            for part in row["file"].split("+"):
                part = part.strip()
                if part.startswith("orlib/") and row["index"]:
                    known[f"{Path(part).stem}-{int(row['index'])}"] = rec
            known[row["name"]] = rec
    return known


def load_set(which: str, root: Path | None = None) -> list[GapProblem]:
    """Problems of one set: orlib (gap1-12, gapa-d), yagiura (every Yagiura file), or all
    (orlib plus the Yagiura files that are not a copy of an OR-Library problem)."""
    root = root or data_dir()
    if which not in ("orlib", "yagiura", "all"):
        raise ValueError(f"--set {which!r}: use orlib, yagiura or all")
    probs: list[GapProblem] = []
    if which in ("orlib", "all"):
        for stem in ORLIB_FILES:
            probs.extend(parse_orlib(root / "orlib" / f"{stem}.txt"))
    if which in ("yagiura", "all"):
        seen = {(p.cost.tobytes(), p.req.tobytes(), p.cap.tobytes()) for p in probs}
        for path in sorted((root / "yagiura").iterdir(), key=_yagiura_order):
            p = parse_yagiura(path)
            if (p.cost.tobytes(), p.req.tobytes(), p.cap.tobytes()) not in seen:
                probs.append(p)
    return probs


def _yagiura_order(path: Path) -> tuple:
    name = path.name  # t mm nnn: type, agents, jobs
    return (name[0], int(name[-3:]) if len(name) == 6 else int(name[-4:]), name)


# --------------------------------------------------------------------------- conversion


def to_instance_dict(p: GapProblem) -> dict:
    """The allocator instance (as a dict for allocator.instance_from_dict) of a GAP problem."""
    m, n = p.m, p.n
    # power never binds: all GPUs of the largest agent at 1e-6 kW each stay far below 1 MW
    gpu_types = [{"id": f"g{i + 1}", "power_kw": 1e-6} for i in range(m)]
    sites = [
        {
            "id": f"a{i + 1}",
            "provider": "gap",
            "power_cap_mw": 1000.0,
            "pools": [{"gpu_type": f"g{i + 1}", "available": int(p.cap[i])}],
        }
        for i in range(m)
    ]
    jobs = []
    for j in range(n):
        options, site_cost = [], {}
        for i in range(m):
            r = int(p.req[i, j])
            if r > p.cap[i]:
                continue  # can never go to agent i
            if r <= 0:
                raise ValueError(f"{p.name}: job j{j + 1} needs {r} on agent a{i + 1}; must be > 0")
            options.append({"gpu_type": f"g{i + 1}", "gpus": r, "hours": 1.0})
            site_cost[f"a{i + 1}"] = float(p.cost[i, j])
        jobs.append({"id": f"j{j + 1}", "options": options, "site_cost_usd": site_cost})
    return {
        "name": p.name,
        "description": f"GAP {p.name}: {m} agents, {n} jobs",
        "horizon": {"start": "2026-01-01T00:00:00Z", "periods": 1, "period_hours": 1.0},
        "gpu_types": gpu_types,
        "sites": sites,
        "jobs": jobs,
    }


def to_instance(p: GapProblem):
    from allocator import instance_from_dict

    return instance_from_dict(to_instance_dict(p), source=p.name)


def check_assignment(p: GapProblem, agent_of_job: np.ndarray) -> tuple[float, list[str]]:
    """Cost of an assignment (agent index per job, -1 = none) and what it breaks."""
    errors: list[str] = []
    missing = np.flatnonzero(agent_of_job < 0)
    if missing.size:
        errors.append(f"{missing.size} jobs unassigned (first j{missing[0] + 1})")
    ok = agent_of_job >= 0
    jobs = np.flatnonzero(ok)
    agents = agent_of_job[ok]
    load = np.zeros(p.m, dtype=np.int64)
    np.add.at(load, agents, p.req[agents, jobs])
    for i in np.flatnonzero(load > p.cap):
        errors.append(f"agent a{i + 1} uses {load[i]} > capacity {p.cap[i]}")
    return float(p.cost[agents, jobs].sum()), errors


# --------------------------------------------------------------------------- solving


@dataclass
class Outcome:
    objective: float
    bound: float
    gap: float
    status: str
    seconds: float
    agent_of_job: np.ndarray


def solve_allocator(p: GapProblem, time_limit: float, threads: int | None,
                    strategy: str = "mip") -> Outcome:
    """Through allocator's own instance format and allocator.solve (``strategy`` mip: HiGHS on
    the whole model; lns: the neighbourhood search with HiGHS's MIP on the second core)."""
    from allocator.api import solve
    from allocator.options import SolveOptions

    t0 = time.perf_counter()
    inst = to_instance(p)
    # costs are integers: a relative gap of 1e-7 proves optimality up to 1e7 in cost
    opts = SolveOptions(time_limit_s=time_limit, mip_gap=1e-7, threads=threads, explain=False,
                        strategy=strategy)
    res = solve(inst, opts)
    seconds = time.perf_counter() - t0
    agent = np.full(p.n, -1, dtype=np.int64)
    train = res.frames.get("training")
    if train is not None and len(train):
        for job, site in zip(train["job"], train["site"], strict=True):
            agent[int(str(job)[1:]) - 1] = int(str(site)[1:]) - 1
    return Outcome(
        objective=_num(res.objective),
        bound=_num(res.bound),
        gap=_num(res.gap),
        status=str(getattr(res.status, "value", res.status)),
        seconds=seconds,
        agent_of_job=agent,
    )


def solve_direct(p: GapProblem, time_limit: float, threads: int | None, strategy: str = "mip") -> Outcome:
    """The same problem as a plain highspy model (columns x_ij agent-major)."""
    import highspy

    t0 = time.perf_counter()
    m, n = p.m, p.n
    feasible = p.req <= p.cap[:, None]
    ii, jj = np.nonzero(feasible)  # agent-major order
    k = ii.size
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit))
    h.setOptionValue("mip_rel_gap", 1e-7)
    if threads:
        h.setOptionValue("threads", int(threads))
    lp = highspy.HighsLp()
    lp.num_col_ = k
    lp.num_row_ = n + m
    lp.col_cost_ = p.cost[ii, jj].astype(float)
    lp.col_lower_ = np.zeros(k)
    lp.col_upper_ = np.ones(k)
    lp.row_lower_ = np.concatenate([np.ones(n), np.full(m, -highspy.kHighsInf)])
    lp.row_upper_ = np.concatenate([np.ones(n), p.cap.astype(float)])
    # column c has a 1 in assignment row jj[c] and r_ij in capacity row n + ii[c]
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.arange(0, 2 * k + 1, 2, dtype=np.int32)
    idx = np.empty(2 * k, dtype=np.int32)
    val = np.empty(2 * k)
    idx[0::2], idx[1::2] = jj, n + ii
    val[0::2], val[1::2] = 1.0, p.req[ii, jj]
    lp.a_matrix_.index_ = idx
    lp.a_matrix_.value_ = val
    lp.integrality_ = [highspy.HighsVarType.kInteger] * k
    h.passModel(lp)
    h.run()
    info = h.getInfo()
    ms = h.getModelStatus()
    agent = np.full(n, -1, dtype=np.int64)
    obj = bound = gap = math.nan
    if info.primal_solution_status == 2:  # feasible
        x = np.asarray(h.getSolution().col_value)
        on = x > 0.5
        agent[jj[on]] = ii[on]
        obj, bound = info.objective_function_value, info.mip_dual_bound
        gap = (obj - bound) / max(abs(obj), 1e-9)
    if ms == highspy.HighsModelStatus.kOptimal:
        status = "optimal"
    elif ms == highspy.HighsModelStatus.kInfeasible:
        status = "infeasible"
    else:
        status = "feasible" if not math.isnan(obj) else "no_solution"
    return Outcome(obj, bound, gap, status, time.perf_counter() - t0, agent)


def _num(x) -> float:
    return math.nan if x is None else float(x)


# --------------------------------------------------------------------------- script


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", dest="which", choices=["orlib", "yagiura", "all"], default="orlib")
    ap.add_argument("--only", nargs="+", default=None, help="instance names to run")
    ap.add_argument("--time-limit", type=float, default=60.0, help="seconds per instance")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "gap")
    ap.add_argument("--engine", choices=["allocator", "direct"], default="allocator")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--strategy", choices=["mip", "lns"], default="mip",
                    help="allocator engine: HiGHS on the whole model, or the neighbourhood search")
    ap.add_argument("--data", type=Path, default=None, help="GAP data folder")
    args = ap.parse_args(argv)

    root = args.data or data_dir()
    if not (root / "known_values.csv").exists():
        print(f"error: no GAP data in {root} (set --data or ALLOCATOR_GAP_DIR)", file=sys.stderr)
        return 2
    known = read_known(root)
    probs = load_set(args.which, root)
    if args.only:
        names = {p.name for p in probs}
        unknown = [x for x in args.only if x not in names]
        if unknown:
            print(f"error: --only {' '.join(unknown)}: not in --set {args.which}", file=sys.stderr)
            return 2
        probs = [p for p in probs if p.name in set(args.only)]
    solve = solve_allocator if args.engine == "allocator" else solve_direct
    out: Path = args.out
    (out / "assignments").mkdir(parents=True, exist_ok=True)
    rows, failures = [], 0
    print(f"{'instance':<10} {'m':>3} {'n':>5} {'objective':>10} {'bound':>10} {'gap%':>7} "
          f"{'known':>8} {'vs known%':>9} {'status':<9} {'s':>7}  check")
    for p in probs:
        o = solve(p, args.time_limit, args.threads, args.strategy)
        kv = known.get(p.name, {}).get("value", math.nan)
        cost, errors = check_assignment(p, o.agent_of_job)
        if not math.isnan(o.objective) and abs(cost - o.objective) > 1e-6 * max(1.0, abs(cost)):
            errors.append(f"reported objective {o.objective} but the assignment costs {cost}")
        if math.isnan(o.objective):
            errors = ["no schedule"]
        failures += bool(errors)
        vs = 100 * (o.objective - kv) / kv if kv and not math.isnan(o.objective) else math.nan
        print(f"{p.name:<10} {p.m:>3} {p.n:>5} {o.objective:>10.0f} {o.bound:>10.1f} "
              f"{100 * o.gap:>7.3f} {kv:>8.0f} {vs:>9.3f} {o.status:<9} {o.seconds:>7.1f}  "
              f"{'ok' if not errors else '; '.join(errors)}", flush=True)
        rows.append([p.name, o.objective, o.bound, o.gap, o.status, round(o.seconds, 3), kv])
        with open(out / "assignments" / f"{p.name}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["job", "site"])
            for j, i in enumerate(o.agent_of_job):
                if i >= 0:
                    w.writerow([f"j{j + 1}", f"a{i + 1}"])
        _write_results(out / "results.csv", rows)  # after each instance: a partial run is kept
    at_known = sum(1 for r in rows if abs(r[1] - r[6]) < 0.5)
    print(f"{len(rows)} instances, {at_known} at the published value, "
          f"{failures} with a failed check; results in {out / 'results.csv'}")
    return 1 if failures else 0


def _write_results(path: Path, rows: list[list]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(RESULT_COLUMNS)
        w.writerows(rows)
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())
