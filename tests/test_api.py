"""allocator.solve(instance, options) -> Result on tiny instances worked out by hand."""

from __future__ import annotations

import copy
import importlib
from pathlib import Path

import pandas as pd
import pytest

import allocator
from allocator import InputError, instance_from_dict
from allocator.errors import ModelTooLargeError
from allocator.options import SolveOptions
from allocator.results import COST_TERMS, Status

DATA = Path(__file__).resolve().parents[1] / "data"


def tiny_dict() -> dict:
    """One GPU type (1 kW), site a (8 GPUs on demand at 2 $/GPU-h) and site b (8 GPUs on demand
    at 3 $/GPU-h), 4 periods of 1 h, PUE 1, no energy price, no carbon, no network.
    Job j1: 8 GPUs for 2 h, mandatory."""
    pool = {"gpu_type": "H100", "available": 8, "reserved": 0}
    return {
        "name": "tiny",
        "horizon": {"start": "2026-01-01T00:00:00Z", "periods": 4, "period_hours": 1.0},
        "gpu_types": [{"id": "H100", "power_kw": 1.0}],
        "sites": [
            {"id": "a", "provider": "colossus", "zone": "US", "power_cap_mw": 1.0,
             "pools": [pool | {"ondemand_price_usd_per_gpu_h": 2.0}]},
            {"id": "b", "provider": "aws", "zone": "US", "power_cap_mw": 1.0,
             "pools": [pool | {"ondemand_price_usd_per_gpu_h": 3.0}]},
        ],
        "jobs": [{"id": "j1", "options": [{"gpu_type": "H100", "gpus": 8, "hours": 2}]}],
    }


def with_jobs(*jobs: dict, base: dict | None = None) -> dict:
    d = copy.deepcopy(base or tiny_dict())
    d["jobs"] = list(jobs)
    return d


def job(jid: str, gpus: int = 8, hours: float = 2, **kw) -> dict:
    return {"id": jid, "options": [{"gpu_type": "H100", "gpus": gpus, "hours": hours}], **kw}


# ---------------------------------------------------------------- inputs and options


def test_unknown_option_is_an_input_error_naming_it():
    with pytest.raises(InputError) as e:
        allocator.solve(tiny_dict(), time_limit=3)
    assert "time_limit" in str(e.value) and "time_limit_s" in str(e.value)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"objective": "cheapest"}, "objective 'cheapest'"),
        ({"mip_gap": -0.1}, "mip_gap = -0.1"),
        ({"time_limit_s": -5.0}, "time_limit_s = -5.0"),
        ({"threads": 0}, "threads = 0"),
    ],
)
def test_bad_option_values_are_input_errors(change, words):
    with pytest.raises(InputError) as e:
        allocator.solve(tiny_dict(), SolveOptions(), **change)
    assert words in str(e.value)


def test_bad_instance_dict_is_an_input_error():
    d = tiny_dict()
    d["sites"][0]["pools"][0]["available"] = -3
    with pytest.raises(InputError) as e:
        allocator.solve(d)
    assert "available" in str(e.value)


def test_model_too_large_is_refused_before_building():
    with pytest.raises(ModelTooLargeError) as e:
        allocator.solve(tiny_dict(), max_nonzeros=3)
    msg = str(e.value)
    assert "nonzeros" in msg and "max_nonzeros = 3" in msg and "period_hours" in msg


def test_mandatory_job_with_no_eligible_start_is_infeasible_without_a_solve(monkeypatch):
    # j2 must end by period 2 (hard) but may not start before period 1 and lasts 2 periods:
    # no start exists. The solver must not be called.
    # (``import allocator.solve as m`` would give the API function: the package attribute)
    solve_mod = importlib.import_module("allocator.solve")

    def boom(*a, **k):  # pragma: no cover - reached only on failure
        raise AssertionError("solver called")

    monkeypatch.setattr(solve_mod, "solve_model", boom)
    d = with_jobs(job("j1"), job("j2", release_period=1, deadline_period=2))
    try:
        res = allocator.solve(d)
    except InputError as e:  # validation may already reject it, naming the job
        assert "j2" in str(e)
        return
    assert res.status is Status.INFEASIBLE
    assert len(res.explanation) == 1 and res.explanation[0].startswith("job j2 (mandatory)")
    assert res.summary["status"] == "infeasible"
    assert res.summary["explanation"] == res.explanation
    assert res.frames == {}


# ---------------------------------------------------------------- infeasible -> explained


def overlapping_jobs() -> dict:
    """j1 and j2 each need all 8 GPUs of site a (the only site) for 3 h and must end by
    period 3 of 4: both would run in periods 0-2 at once. Each fits alone."""
    d = with_jobs(job("j1", hours=3, deadline_period=3), job("j2", hours=3, deadline_period=3))
    d["sites"] = d["sites"][:1]
    return d


def test_infeasible_instance_is_explained():
    res = allocator.solve(overlapping_jobs())
    assert res.status is Status.INFEASIBLE
    assert res.explanation, "an infeasible result carries an explanation"
    text = " ".join(res.explanation)
    assert ("site a" in text) or ("j1" in text) or ("j2" in text)
    assert res.summary["explanation"] == res.explanation
    assert res.frames == {} and res.costs == {}


def test_infeasible_without_explain_skips_the_elastic_solve():
    res = allocator.solve(overlapping_jobs(), explain=False)
    assert res.status is Status.INFEASIBLE
    assert res.explanation == []


def test_api_from_a_path_and_summary_keys(tmp_path):
    import yaml

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_dict()))
    res = allocator.solve(path, time_limit_s=5.0)
    # j1 (8 GPUs, 2 h) at a: 8 x 2 h x 2 $ = 32 $
    assert res.status is Status.OPTIMAL and res.objective == pytest.approx(32.0)
    for key in ("status", "objective", "bound", "gap", "costs", "total_cost_usd", "emissions_t",
                "unserved_mtok", "dropped_jobs", "build_s", "solve_s", "solver", "options",
                "instance", "explanation", "timings", "model"):
        assert key in res.summary, key
    assert res.summary["instance"]["name"] == "tiny"
    assert res.summary["instance"]["horizon"]["periods"] == 4
    assert res.summary["options"]["time_limit_s"] == 5.0
    assert set(res.costs) == set(COST_TERMS)


# ---------------------------------------------------------------- solved, and verified


def verified(res, inst_data, tmp_path, fmt: str = "csv"):
    """Export the result and check it with the independent verifier."""
    from allocator.verify import verify_schedule

    assert res.status.has_schedule, res.message
    folder = res.export(tmp_path / f"schedule-{fmt}", fmt=fmt)
    violations = verify_schedule(instance_from_dict(inst_data), folder)
    assert violations == [], "\n".join(map(str, violations))
    return res


def test_two_jobs_share_the_cheap_site_one_after_the_other(tmp_path):
    # j1 and j2: 8 GPUs for 2 h each; a (2 $/GPU-h) holds one gang at a time and the
    # horizon has 4 periods, so both run at a, back to back: 2 x (8 x 2 h x 2 $) = 64 $.
    # j2 due by period 2 (hard) must go first: j2 in periods 0-1, j1 in 2-3.
    d = with_jobs(job("j1"), job("j2", deadline_period=2))
    res = verified(allocator.solve(d), d, tmp_path)
    assert res.status is Status.OPTIMAL
    assert res.objective == pytest.approx(64.0)
    assert res.costs["ondemand_lease"] == pytest.approx(64.0)
    assert res.total_cost == pytest.approx(64.0)
    t = res.frames["training"].set_index("job")
    assert t.loc["j2", "site"] == "a" and t.loc["j2", "start_period"] == 0
    assert t.loc["j1", "site"] == "a" and t.loc["j1", "start_period"] == 2
    assert res.summary["status"] == "optimal"
    assert res.summary["total_cost_usd"] == pytest.approx(64.0)
    assert res.summary["dropped_jobs"] == []
    assert res.summary["model"]["integer_columns"] > 0
    assert res.build_s > 0 and res.solve_s >= 0 and res.solver.startswith("HiGHS")


def carbon_sites() -> dict:
    """j1: 8 GPUs (1 kW, PUE 1) for 2 h = 16 kWh = 0.016 MWh wherever it runs.

        site  $/GPU-h  gCO2/kWh   cost $ (8 x 2 h x price)   tCO2 (0.016 x g / 1000)
        a       2.0      800        32                        0.0128
        b       3.0      100        48                        0.0016
        c       2.5      100        40                        0.0016
        d       2.0      400        32                        0.0064
    cost: 32 (a or d); carbon: 0.0016 (b or c);
    carbon-then-cost: of b, c the cheaper is c -> cost 40;
    cost-then-carbon: of a, d the cleaner is d -> 0.0064 t."""
    def site(sid, price, carbon):
        return {"id": sid, "provider": "p", "power_cap_mw": 1.0, "carbon_g_per_kwh": carbon,
                "pools": [{"gpu_type": "H100", "available": 8,
                           "ondemand_price_usd_per_gpu_h": price}]}

    d = tiny_dict()
    d["sites"] = [site("a", 2.0, 800), site("b", 3.0, 100), site("c", 2.5, 100),
                  site("d", 2.0, 400)]
    return d


@pytest.mark.parametrize(
    ("mode", "objective", "site", "cost"),
    [
        ("cost", 32.0, None, 32.0),
        ("carbon", 0.0016, None, None),
        ("carbon-then-cost", 40.0, "c", 40.0),
        ("cost-then-carbon", 0.0064, "d", 32.0),
    ],
)
def test_objective_modes_on_sites_where_cost_and_carbon_disagree(tmp_path, mode, objective,
                                                                  site, cost):
    d = carbon_sites()
    res = verified(allocator.solve(d, objective=mode), d, tmp_path)
    assert res.status is Status.OPTIMAL
    assert res.objective == pytest.approx(objective, rel=1e-6)
    placed = res.frames["training"]["site"].tolist()
    if site is not None:
        assert placed == [site]
    if cost is not None:
        assert res.total_cost == pytest.approx(cost)
    if mode == "carbon":
        assert res.emissions_t == pytest.approx(0.0016) and placed[0] in ("b", "c")
    if "-then-" in mode:
        first, second = res.summary["stages"]
        assert (first["objective_name"], second["objective_name"]) == tuple(mode.split("-then-"))


def test_duals_are_in_the_result_and_name_links_by_position(tmp_path):
    d = tiny_dict()
    res = allocator.solve(d, duals=True)
    duals = res.frames["duals"]
    assert list(duals.columns) == ["kind", "site", "gpu_type", "link", "period",
                                   "marginal_usd_per_unit_h"]
    verified(res, d, tmp_path, fmt="json")


def test_greedy_heuristic_alone_is_a_feasible_result_without_bound(tmp_path):
    d = with_jobs(job("j1"), job("j2", deadline_period=2))
    res = verified(allocator.solve(d, heuristic="greedy"), d, tmp_path)
    assert res.status is Status.FEASIBLE
    assert res.bound is None
    assert res.total_cost >= 64.0 - 1e-9  # never better than the optimum


def test_greedy_plan_stands_in_when_highs_has_no_schedule_at_the_limit(tmp_path, monkeypatch):
    # HiGHS gets no time at all (its own limit 0 s, the command's limit 60 s): it cannot find
    # a schedule; the greedy plan is returned instead, feasible (verified) and marked as such
    solve_mod = importlib.import_module("allocator.solve")

    real = solve_mod.solve_model
    monkeypatch.setattr(solve_mod, "solve_model",
                        lambda model, opts, **kw: real(model, opts.with_(time_limit_s=0.0), **kw))
    res = allocator.solve(DATA / "demo" / "instance.yaml", time_limit_s=60.0)
    assert res.status is Status.FEASIBLE
    assert "greedy" in res.solver and "greedy plan" in res.message
    assert res.objective == pytest.approx(res.total_cost)
    from allocator import load_instance
    from allocator.verify import verify_schedule

    folder = res.export(tmp_path / "s")
    assert verify_schedule(load_instance(DATA / "demo" / "instance.yaml"), folder) == []
    # (without the fallback the same solve has no schedule: test_cli_solve's exit-4 case)


def test_the_greedy_fallback_is_made_while_highs_runs(monkeypatch):
    # the greedy plan must not wait for HiGHS to use up the limit: on a large instance the
    # grace after it is too short for the plan (generated L, services x3: 18 s of greedy
    # against 12 s of grace, so the command ended with no schedule). Here HiGHS "runs" until
    # the greedy planner has started; made only after HiGHS, it never would.
    import threading

    solve_mod = importlib.import_module("allocator.solve")
    heur = importlib.import_module("allocator.heuristics")
    started = threading.Event()
    real_greedy, real_solve = heur.greedy_outcome, solve_mod.solve_model

    def greedy(*a, **kw):
        started.set()
        return real_greedy(*a, **kw)

    def solve_model(model, opts, **kw):
        out = real_solve(model, opts.with_(time_limit_s=0.0), **kw)
        assert started.wait(10.0), "the greedy plan was not started while HiGHS ran"
        return out

    monkeypatch.setattr(heur, "greedy_outcome", greedy)
    monkeypatch.setattr(solve_mod, "solve_model", solve_model)
    res = allocator.solve(DATA / "demo" / "instance.yaml", time_limit_s=60.0)
    assert res.status is Status.FEASIBLE
    assert "greedy plan" in res.message


def test_the_greedy_fallback_stops_when_highs_needs_none(monkeypatch):
    # HiGHS proves the demo optimal: the plan made beside it is not needed, and its thread
    # stops at its next check instead of running on to its deadline (here a planner that
    # would take 60 s)
    import threading
    import time

    heur = importlib.import_module("allocator.heuristics")

    def slow(*a, **kw):
        for _ in range(6000):
            heur._check_deadline(kw.get("deadline"))
            time.sleep(0.01)
        raise AssertionError("the greedy planner was not stopped")

    monkeypatch.setattr(heur, "greedy_schedule", slow)
    res = allocator.solve(DATA / "demo" / "instance.yaml", time_limit_s=300.0)
    assert res.status is Status.OPTIMAL
    t0 = time.perf_counter()
    while any(t.name == "allocator-greedy-fallback" for t in threading.enumerate()):
        assert time.perf_counter() - t0 < 5.0, "the greedy fallback thread runs on"
        time.sleep(0.05)


def test_a_time_limit_of_zero_bounds_the_whole_command():
    # no time at all: the deadline runs out during indexing, before any model is built;
    # the result says so (no_solution, exit 4), it does not run on
    res = allocator.solve(DATA / "demo" / "instance.yaml", time_limit_s=0.0)
    assert res.status is Status.NO_SOLUTION
    assert "time limit" in res.message
    assert "build_s" not in res.summary["timings"]


def test_greedy_plan_replaces_only_a_worse_incumbent():
    from allocator.indexing import build_index
    from allocator.outcome import Outcome

    api = importlib.import_module("allocator.api")
    inst = instance_from_dict(tiny_dict())
    index = build_index(inst)
    # an incumbent at the dearer site b: 8 GPUs x 2 h x 3 $ = 48 $
    at_b = {"training": pd.DataFrame({"job": ["j1"], "option": [0], "site": ["b"], "gpu_type": ["H100"],
                                      "gpus": [8], "start_period": [0]}),
            "inference_gpus": pd.DataFrame(), "inference": pd.DataFrame()}
    stopped = Outcome(status=Status.FEASIBLE, decisions=at_b, bound=30.0, solver="HiGHS")
    # greedy puts j1 at the cheaper site a: 8 x 2 h x 2 $ = 32 $
    got = api._greedy_fallback(inst, index, SolveOptions(), stopped, None)
    assert got.decisions["training"]["site"].tolist() == ["a"]
    assert "greedy plan" in got.solver and got.bound == 30.0
    res = api.build_result(inst, index, SolveOptions(), got)
    assert res.total_cost == pytest.approx(32.0)
    assert res.gap == pytest.approx((32.0 - 30.0) / 32.0)
    # an incumbent already as good as the greedy plan is kept
    at_a = {**at_b, "training": at_b["training"].assign(site="a")}
    kept = Outcome(status=Status.FEASIBLE, decisions=at_a, solver="HiGHS")
    assert api._greedy_fallback(inst, index, SolveOptions(), kept, None) is kept
    # a lexicographic incumbent is kept: the plan did not pass through the first stage
    lex = SolveOptions(objective="cost-then-carbon")
    assert api._greedy_fallback(inst, index, lex, stopped, None) is stopped
