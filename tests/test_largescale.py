"""The large-instance strategy (allocator.largescale.solve_lns) and the greedy planner's
reported objective: plans verify after export, sit between the bound and the greedy plan."""

from __future__ import annotations

import numpy as np
import pytest

import allocator
from allocator.generate import generate_instance
from allocator.heuristics import greedy_result
from allocator.indexing import build_index
from allocator.largescale import build_arrays, safe_bound, to_highs
from allocator.options import SolveOptions
from allocator.results import Status
from allocator.verify import verify_schedule


@pytest.fixture(scope="module")
def small():
    """20 jobs, 1 service, 3 sites, 12 periods: the greedy plan is feasible (asserted below)."""
    return generate_instance(jobs=20, services=1, sites=3, periods=12, seed=0)


@pytest.fixture(scope="module")
def lns_result(small):
    return allocator.solve(small, SolveOptions(strategy="lns", time_limit_s=6, explain=False))


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
    am = build_arrays(small, index)
    h = to_highs(am, integer=False)
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
