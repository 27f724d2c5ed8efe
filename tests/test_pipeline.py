"""The one pipeline: every route (mip, lns, greedy) ends in decisions that allocator.derive
turns into tables and costs and pipeline.build_result into the Result.

Route equivalence: on small generated instances (services, predecessors, optional jobs,
budgets just above the optimum, N+1 services) every route's schedule passes the independent
verifier, no heuristic route beats mip's proven optimum, and none returns no_solution where
mip proves the optimum.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import allocator
from allocator.derive import spend
from allocator.generate import generate_instance
from allocator.results import Status
from allocator.verify import verify_schedule

#: (jobs, services, sites, periods, seed); budgets are added to every other one
SHAPES = [(3, 1, 2, 6, s) for s in range(4)] + [(4, 1, 2, 8, s) for s in range(4, 8)] \
    + [(4, 1, 3, 6, s) for s in range(8, 12)]
ROUTES = {"mip": {"strategy": "mip"}, "lns": {"strategy": "lns", "time_limit_s": 2.0},
          "greedy": {"heuristic": "greedy"}}


def _instance(shape):
    jobs, services, sites, periods, seed = shape
    inst = generate_instance(jobs, services, sites, periods, seed=seed)
    if seed % 3 == 0 and inst.services:
        inst.services[0].redundancy = True  # N+1 where the generator left it off
    return inst


def _check(res, inst, tmp_path, name):
    assert res.status.has_schedule, f"{name}: {res.status.value}: {res.message}"
    folder = res.export(tmp_path / name)
    violations = verify_schedule(inst, folder)
    assert violations == [], f"{name}:\n" + "\n".join(map(str, violations))
    # the reported objective is the derived cost, for every route
    assert res.objective == pytest.approx(res.total_cost, rel=1e-9, abs=1e-6)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "j{}-v{}-s{}-t{}-seed{}".format(*s))
def test_routes_agree_and_pass_the_verifier(shape, tmp_path):
    inst = _instance(shape)
    mip = allocator.solve(inst, strategy="mip", time_limit_s=30)
    if mip.status is Status.INFEASIBLE:
        pytest.skip("generated instance infeasible with the N+1 change")  # pragma: no cover
    assert mip.status is Status.OPTIMAL, mip.message
    if shape[-1] % 2 == 1:
        # a budget 0.1% above the optimal spend: the optimum stays feasible, little else does
        inst = inst.model_copy(deep=True)
        inst.budget_usd = spend(mip.costs) * 1.001 + 1e-6
        mip = allocator.solve(inst, strategy="mip", time_limit_s=30)
        assert mip.status is Status.OPTIMAL, mip.message
    _check(mip, inst, tmp_path, "mip")
    for name, kw in ROUTES.items():
        if name == "mip":
            continue
        res = allocator.solve(inst, **kw)
        assert res.status is not Status.NO_SOLUTION, f"{name}: {res.message}"
        _check(res, inst, tmp_path, name)
        # never below what mip proves: its bound (the optimum within mip_gap)
        assert res.objective >= mip.bound - 1e-6 * max(1.0, abs(mip.bound)), name


# ------------------------------------------------------------------ options matrix


def _tiny():
    return importlib.import_module("tests.test_api").tiny_dict()


def _solve(**kw):
    return allocator.solve(_tiny(), **kw)


@pytest.mark.parametrize("strategy", ["lns", "greedy"])
@pytest.mark.parametrize("option,value", [("duals", True), ("disabled_families", ("power",)),
                                          ("threads", 1), ("verbose", True)])
def test_options_a_strategy_does_not_honour_are_refused_naming_both(strategy, option, value):
    kw = {"heuristic": "greedy"} if strategy == "greedy" else {"strategy": "lns"}
    with pytest.raises(allocator.InputError) as err:
        _solve(**kw, **{option: value})
    assert option in str(err.value) and f"strategy {strategy}" in str(err.value)


def test_auto_does_not_pick_lns_for_options_it_would_refuse(monkeypatch):
    from allocator import options as options_mod

    monkeypatch.setattr(options_mod, "AUTO_LNS_NONZEROS", 0)  # every instance is "large"
    assert _solve(time_limit_s=5).options["strategy"] == "lns"
    res = _solve(duals=True, time_limit_s=5)
    assert res.options["strategy"] == "mip" and "duals" in res.frames


@pytest.mark.parametrize("kw", [{"strategy": "mip"}, {"strategy": "lns", "time_limit_s": 5},
                                {"heuristic": "greedy"}])
def test_objective_and_seed_and_gap_are_honoured_by_every_strategy(kw):
    # tiny: j1 (8 GPUs x 2 h) at site a, 2 $/GPU-h: 32 $, no energy price, no carbon
    res = _solve(**kw, seed=3, mip_gap=0.01)
    assert res.total_cost == pytest.approx(32.0)
    assert res.options["seed"] == 3 and res.options["mip_gap"] == 0.01
    if "heuristic" not in kw:
        carbon = _solve(**{**kw, "strategy": "mip"}, objective="carbon")
        assert carbon.objective == pytest.approx(carbon.emissions_t)


def test_lns_refuses_objectives_other_than_cost():
    with pytest.raises(allocator.InputError, match="strategy lns"):
        _solve(strategy="lns", objective="carbon")


def test_warm_start_is_the_old_name_of_greedy_fallback():
    from allocator.options import SolveOptions

    with pytest.warns(DeprecationWarning, match="greedy_fallback"):
        opts = SolveOptions(warm_start=False)
    assert opts.greedy_fallback is False and opts.warm_start is None


def test_greedy_fallback_off_leaves_no_schedule_when_highs_has_none(monkeypatch):
    solve_mod = importlib.import_module("allocator.solve")
    real = solve_mod.solve_model
    monkeypatch.setattr(solve_mod, "solve_model",
                        lambda model, opts, **kw: real(model, opts.with_(time_limit_s=0.0), **kw))
    assert _solve(strategy="mip", time_limit_s=30).status is Status.FEASIBLE
    assert _solve(strategy="mip", time_limit_s=30, greedy_fallback=False).status is Status.NO_SOLUTION


def test_explain_is_honoured_by_the_mip_route():
    # three mandatory gangs of 8 GPUs x 3 h in 4 periods, two pools of 8 GPUs: at most two run
    # in the horizon, so the instance is infeasible though each job fits alone
    d = _tiny()
    d["jobs"] = [{"id": f"j{i}", "options": [{"gpu_type": "H100", "gpus": 8, "hours": 3}]}
                 for i in range(3)]
    res = allocator.solve(d, strategy="mip")
    assert res.status is Status.INFEASIBLE and res.explanation
    quiet = allocator.solve(d, strategy="mip", explain=False)
    assert quiet.status is Status.INFEASIBLE and quiet.explanation == []


# ------------------------------------------------------------------ greedy and the budget

def test_greedy_keeps_within_the_budget_by_dropping_optional_jobs():
    # j1 mandatory (32 $ at site a), j2 optional, 8 GPUs x 2 h, worth 100 $: the greedy plan
    # runs it back to back at a (another 32 $). With a budget of 40 $ only j1 fits: j2 goes.
    d = _tiny()
    d["jobs"].append({"id": "j2", "mandatory": False, "value_usd": 100.0,
                      "options": [{"gpu_type": "H100", "gpus": 8, "hours": 2}]})
    assert allocator.solve(d, heuristic="greedy").total_cost == pytest.approx(64.0)
    d["budget_usd"] = 40.0
    res = allocator.solve(d, heuristic="greedy")
    assert res.status is Status.FEASIBLE
    assert spend(res.costs) == pytest.approx(32.0)
    assert res.frames["training"]["job"].tolist() == ["j1"]
    assert "budget" in res.message


def test_greedy_says_no_solution_when_the_mandatory_jobs_exceed_the_budget():
    d = _tiny()
    d["budget_usd"] = 10.0  # j1 alone costs 32 $
    res = allocator.solve(d, heuristic="greedy")
    assert res.status is Status.NO_SOLUTION and "budget_usd" in res.message


# ------------------------------------------------------------------ --quiet and the sweep


@pytest.mark.parametrize("flags", [["--strategy", "mip"], ["--strategy", "lns", "--time-limit", "3"],
                                   ["--heuristic", "greedy"]])
def test_quiet_prints_exactly_the_status_line_for_every_strategy(flags, tmp_path):
    import subprocess
    import sys

    demo = Path(__file__).resolve().parents[1] / "data" / "demo" / "instance.yaml"
    out = subprocess.run([sys.executable, "-c", "from allocator.cli import main; main()", "solve", str(demo), "--out",
                          str(tmp_path / "s"), "--quiet", *flags],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 1, out.stdout
    assert lines[0].split(",")[0] in ("optimal", "feasible"), lines[0]


def test_the_sweeps_reuse_path_gives_the_objective_of_a_fresh_solve():
    from allocator.options import SolveOptions
    from allocator.sweep import ReuseSession

    inst = generate_instance(3, 1, 2, 6, seed=2)
    opts = SolveOptions(strategy="mip", mip_gap=0.0, time_limit_s=30)
    session = ReuseSession(opts)
    first = session.solve(inst)
    cheaper = inst.model_copy(deep=True)
    cheaper.carbon_price_usd_per_t = inst.carbon_price_usd_per_t + 50.0
    reused = session.solve(cheaper)
    assert session.stats["reused"] == 1
    for got, want in ((first, inst), (reused, cheaper)):
        fresh = allocator.solve(want, opts)
        assert got.status is fresh.status is Status.OPTIMAL
        # the recomputed objective, the same as the fresh solve's and the derived total cost
        assert got.objective == pytest.approx(fresh.objective, rel=1e-6)
        assert got.objective == pytest.approx(got.total_cost, rel=1e-12)


def test_the_time_limit_bounds_the_whole_solve_on_a_long_horizon():
    # 3000 periods: indexing and the model build alone take longer than the 0.3 s limit; the
    # solve stops at the first stage boundary after it, says so, and HiGHS is never started
    import time

    inst = generate_instance(6, 1, 2, 3000, seed=1)
    t0 = time.perf_counter()
    res = allocator.solve(inst, strategy="mip", time_limit_s=0.3)
    elapsed = time.perf_counter() - t0
    assert res.status in (Status.NO_SOLUTION, Status.FEASIBLE)
    assert "time limit (0.3 s) ran out" in res.message
    assert "solve_s" not in res.summary["timings"] or res.summary["timings"]["solve_s"] < 0.3
    assert elapsed < 60  # the build is the only stage that may run past the limit


def test_the_model_build_stops_between_families_at_its_deadline(monkeypatch):
    # a deadline already passed: build_model stops before its first family, and a solve whose
    # limit runs out in the build (mip or lns) says so instead of building on
    import time

    import allocator.lns as lns_mod

    monkeypatch.setattr(lns_mod, "BUILD_S_PER_NONZERO", 0.0)  # past lns's own size check

    from allocator.formulation import BuildTimeUp, build_model
    from allocator.indexing import build_index

    inst = generate_instance(6, 1, 2, 48, seed=1)
    index = build_index(inst)
    with pytest.raises(BuildTimeUp):
        build_model(inst, index, deadline=time.perf_counter())
    assert build_model(inst, index, deadline=time.perf_counter() + 600) is not None
    from allocator.lns import solve_lns
    from allocator.options import SolveOptions

    got = solve_lns(inst, index, SolveOptions(time_limit_s=0.0))
    assert got.status is Status.NO_SOLUTION
    assert "ran out during the model build" in got.message


def test_lns_returns_the_greedy_plan_when_its_model_cannot_be_built_in_time(monkeypatch):
    # a build estimated far beyond the limit is not started: the greedy plan comes back at
    # once, feasible and without a bound, and says why
    import allocator.lns as lns_mod
    from allocator.indexing import build_index
    from allocator.options import SolveOptions

    inst = generate_instance(6, 1, 2, 48, seed=1)
    index = build_index(inst)
    monkeypatch.setattr(lns_mod, "BUILD_S_PER_NONZERO", 1.0)
    got = lns_mod.solve_lns(inst, index, SolveOptions(time_limit_s=30))
    assert got.status is Status.FEASIBLE and got.bound is None
    assert "does not fit the time limit" in got.message
    res = allocator.solve(inst, strategy="lns", time_limit_s=30)  # the same through the pipeline
    assert res.status is Status.FEASIBLE
