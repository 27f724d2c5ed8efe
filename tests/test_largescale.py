"""The large-instance strategy (allocator.lns.solve_lns) and the greedy planner's
reported objective: plans verify after export, sit between the bound and the greedy plan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import allocator
from allocator.generate import generate_instance
from allocator.heuristics import greedy_result
from allocator.indexing import build_index
from allocator.lns import Arrays, build_compiled, relaxed_bound, safe_bound
from allocator.options import SolveOptions
from allocator.results import Status
from allocator.verify import verify_schedule

DEMO = Path(__file__).resolve().parents[1] / "data" / "demo" / "instance.yaml"


@pytest.fixture(scope="module")
def small():
    """20 jobs, 1 service, 3 sites, 12 periods: the greedy plan is feasible (asserted below)."""
    return generate_instance(jobs=20, services=1, sites=3, periods=12, seed=0)


@pytest.fixture(scope="module")
def lns_result(small):
    # 10 s: the limit includes building and compiling the Pyomo model (up to 4 s with the
    # first Pyomo import on a loaded machine), and the search must still get some sub-MIPs
    return allocator.solve(small, SolveOptions(strategy="lns", time_limit_s=10, explain=False))


def test_lns_plan_verifies_and_lies_between_bound_and_greedy(small, lns_result, tmp_path):
    res = lns_result
    assert res.status in (Status.FEASIBLE, Status.OPTIMAL), res.message
    folder = res.export(tmp_path / "lns")
    violations = verify_schedule(small, folder)
    assert violations == [], "\n".join(map(str, violations))
    greedy = greedy_result(small, build_index(small), SolveOptions())
    assert greedy.status is Status.FEASIBLE
    assert res.objective <= greedy.objective + 1e-6 * abs(greedy.objective)
    assert res.bound is not None
    assert res.bound <= res.objective + 1e-6 * abs(res.objective)
    assert res.gap == pytest.approx((res.objective - res.bound) / res.objective, abs=1e-9)
    assert res.options["strategy"] == "lns"
    assert res.summary["lns"]["iterations"] >= 1  # the neighbourhood search ran


def test_lns_bound_is_not_above_the_exact_optimum(small, lns_result):
    # the whole MIP of this small instance solves to optimality in a second or two
    exact = allocator.solve(small, SolveOptions(mip_gap=0.0, time_limit_s=60, explain=False))
    assert exact.status is Status.OPTIMAL
    assert lns_result.bound <= exact.objective * (1 + 1e-6)
    assert lns_result.objective >= exact.objective * (1 - 1e-6)


def test_safe_bound_is_the_lp_optimum_from_exact_duals_and_valid_from_any(small):
    index = build_index(small)
    am = Arrays.of(build_compiled(small, index))
    h = am.highs(integer=False)
    h.run()
    lp = h.getInfo().objective_function_value
    y = np.asarray(h.getSolution().row_dual)
    assert safe_bound(am, y) == pytest.approx(lp, rel=1e-7)
    # any multipliers give a lower bound (weak duality): zero, scaled, perturbed
    rng = np.random.default_rng(1)
    for yy in (np.zeros_like(y), 0.5 * y, y + rng.normal(0, 10, size=len(y))):
        assert safe_bound(am, yy) <= lp + 1e-6 * abs(lp)


def test_lns_refuses_other_objectives(small):
    with pytest.raises(allocator.InputError, match="strategy lns optimises cost only"):
        allocator.solve(small, strategy="lns", objective="carbon")


@pytest.mark.parametrize("mode", ["cost", "carbon", "carbon-then-cost", "cost-then-carbon"])
def test_greedy_reports_the_objective_its_mode_returns(small, mode, tmp_path):
    """A lexicographic mode reports its second objective, as a solve does and as the
    verifier recomputes from summary.json: cost for carbon-then-cost, emissions for
    cost-then-carbon."""
    res = allocator.solve(small, heuristic="greedy", objective=mode)
    want = res.emissions_t if mode in ("carbon", "cost-then-carbon") else res.total_cost
    assert res.objective == pytest.approx(want)
    violations = verify_schedule(small, res.export(tmp_path / mode))
    assert violations == [], "\n".join(map(str, violations))


def test_relaxed_bound_needs_no_lp_and_stays_below_it(small):
    # every job at its cheapest start and every token at its cheapest way, no capacity: a
    # valid bound below the LP relaxation (and so below the optimum), above the bound of
    # zero multipliers
    for inst in (small, allocator.load_instance(DEMO)):
        cm = build_compiled(inst, build_index(inst))
        am = Arrays.of(cm)
        h = am.highs(integer=False)
        h.run()
        lp = h.getInfo().objective_function_value
        rb = relaxed_bound(cm)
        assert safe_bound(am, np.zeros(am.A.shape[0])) < rb <= lp + 1e-6 * abs(lp)


def test_relaxed_bound_of_a_hand_worked_instance():
    # two jobs, one site with energy at $100/MWh and 1 kW GPUs: j1 8 GPUs x 2 h = 16 kWh
    # -> $1.60; j2 4 GPUs x 3 h = 12 kWh -> $1.20. No capacity row binds the relaxation, so
    # the bound is $2.80 (GPUs cost nothing: reserved, lease price 0).
    inst = allocator.instance_from_dict({
        "name": "t", "horizon": {"start": "2026-01-01T00:00:00Z", "periods": 4},
        "gpu_types": [{"id": "H100", "power_kw": 1.0}],
        "sites": [{"id": "s", "provider": "p", "power_cap_mw": 1.0, "energy_price_usd_per_mwh": 100.0,
                   "pools": [{"gpu_type": "H100", "available": 8, "reserved": 8,
                              "reserved_price_usd_per_gpu_h": 0.0, "ondemand_price_usd_per_gpu_h": 9.0}]}],
        "jobs": [{"id": "j1", "options": [{"gpu_type": "H100", "gpus": 8, "hours": 2}]},
                 {"id": "j2", "options": [{"gpu_type": "H100", "gpus": 4, "hours": 3}]}],
    })
    assert relaxed_bound(build_compiled(inst, build_index(inst))) == pytest.approx(2.8)


def test_auto_strategy_picks_lns_for_large_cost_instances_only(small):
    from allocator.api import _resolve_strategy
    from allocator.generate import SIZES
    from allocator.indexing import estimate_size

    size = estimate_size(build_index(generate_instance(**SIZES["L"], seed=0)), compact=True)
    assert _resolve_strategy(SolveOptions(), size).strategy == "lns"
    assert _resolve_strategy(SolveOptions(objective="carbon"), size).strategy == "mip"
    assert _resolve_strategy(SolveOptions(heuristic="greedy"), size).strategy == "mip"
    assert _resolve_strategy(SolveOptions(strategy="mip"), size).strategy == "mip"
    small_size = estimate_size(build_index(small), compact=True)
    assert _resolve_strategy(SolveOptions(), small_size).strategy == "mip"
    # the record says which one ran
    res = allocator.solve(allocator.load_instance(DEMO), SolveOptions(time_limit_s=60, explain=False))
    assert res.options["strategy"] == "mip"


def test_an_answer_from_a_replaced_incumbent_is_kept_only_if_it_still_holds(small):
    # two search threads share the incumbent; an answer computed from one the other thread
    # has since replaced is laid over the new one and checked row by row
    from allocator.heuristics import greedy_schedule
    from allocator.lns import _Lns

    index = build_index(small)
    cm = build_compiled(small, index)
    lns = _Lns(small, index, cm, seed=0)
    x, obj = lns.complete(*cm.start_vector(greedy_schedule(small, index)))
    lns.x, lns.obj = x, obj
    base = lns.x
    everything = np.ones(lns.n, dtype=bool)
    status, better, vals, _ = lns.solve_sub(everything, 20.0, 0, 1e-6, x=base)
    assert vals is not None and better < obj - 1.0
    lns.x = base.copy()  # the other thread replaced the incumbent (here by an equal plan)
    starts = np.zeros(lns.n, dtype=bool)
    starts[lns.sc] = True
    # every start switched on breaks the assignment rows: refused, whatever it claims
    assert not lns.adopt_from(base, starts, np.ones(lns.P), better)
    assert lns.obj == obj
    # the whole-model answer still holds on the replaced incumbent: kept, at its own cost
    assert lns.adopt_from(base, everything, vals, better)
    assert lns.obj == pytest.approx(better, rel=1e-7)
