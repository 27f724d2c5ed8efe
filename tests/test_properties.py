"""Property tests over small random instances (hypothesis).

- every schedule the solver returns passes the independent verifier, and the cost it reports
  equals the cost recomputed from the exported schedule;
- more power, more GPUs or a later deadline never raise the optimal cost; a higher price
  never lowers it;
- the same instance and seed give the same objective.

A few hundred cases run in the default suite; the `slow` marker runs many more.
"""

from __future__ import annotations

import copy
import os
import tempfile

import pytest
from hypothesis import HealthCheck, assume, given, settings
from strategies import instances

from allocator import instance_from_dict, solve
from allocator.results import Status
from allocator.verify import verify_schedule

SCALE = int(os.environ.get("ALLOCATOR_HYPOTHESIS_SCALE", "1"))
COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


def _solve(data: dict):
    return solve(instance_from_dict(data), mip_gap=0.0, time_limit_s=20, greedy_fallback=False, explain=False)


def _optimal_cost(data: dict) -> float | None:
    res = _solve(data)
    if res.status is not Status.OPTIMAL:
        return None
    return res.objective


def _tol(x: float) -> float:
    return 1e-6 * max(1.0, abs(x)) + 1e-6


@settings(max_examples=100 * SCALE, **COMMON)
@given(instances())
def test_every_schedule_verifies_and_costs_recompute(data):
    inst = instance_from_dict(data)
    res = solve(inst, mip_gap=0.0, time_limit_s=20, explain=False)
    assume(res.status.has_schedule)
    with tempfile.TemporaryDirectory() as tmp:
        out = res.export(os.path.join(tmp, "s"))
        violations = verify_schedule(inst, out)
    assert violations == [], "\n".join(map(str, violations))
    # the objective of a cost solve is the sum of the cost terms it reports
    assert res.objective == pytest.approx(sum(res.costs.values()), rel=1e-6, abs=1e-6)


def _relaxations(data: dict) -> dict[str, dict]:
    """Variants that can only make the instance easier (cost must not rise)."""
    more_power = copy.deepcopy(data)
    for s in more_power["sites"]:
        s["power_cap_mw"] = s["power_cap_mw"] * 2
    more_gpus = copy.deepcopy(data)
    for s in more_gpus["sites"]:
        for p in s["pools"]:
            p["available"] += 16
    later = copy.deepcopy(data)
    for j in later["jobs"]:
        j.pop("deadline_period", None)
        j["release_period"] = 0
    return {"power": more_power, "gpus": more_gpus, "deadline": later}


@pytest.mark.parametrize("which", ["power", "gpus", "deadline"])
@settings(max_examples=40 * SCALE, **COMMON)
@given(data=instances())
def test_more_capacity_never_raises_the_optimal_cost(which, data):
    base = _optimal_cost(data)
    assume(base is not None)
    relaxed = _optimal_cost(_relaxations(data)[which])
    assert relaxed is not None, f"more {which} made an optimally solved instance unsolved"
    assert relaxed <= base + _tol(base)


@settings(max_examples=40 * SCALE, **COMMON)
@given(instances())
def test_higher_prices_never_lower_the_optimal_cost(data):
    base = _optimal_cost(data)
    assume(base is not None)
    dearer = copy.deepcopy(data)
    for s in dearer["sites"]:
        s["energy_price_usd_per_mwh"] = s["energy_price_usd_per_mwh"] * 1.5 + 1.0
        for p in s["pools"]:
            p["ondemand_price_usd_per_gpu_h"] *= 1.5
            p["reserved_price_usd_per_gpu_h"] *= 1.5
    higher = _optimal_cost(dearer)
    assert higher is not None
    assert higher >= base - _tol(base)


@settings(max_examples=20 * SCALE, **COMMON)
@given(instances())
def test_same_instance_and_seed_give_the_same_objective(data):
    first = solve(instance_from_dict(data), mip_gap=0.0, seed=7, explain=False)
    second = solve(instance_from_dict(data), mip_gap=0.0, seed=7, explain=False)
    assert first.status == second.status
    if first.status.has_schedule:
        assert first.objective == pytest.approx(second.objective, rel=1e-9, abs=1e-9)


@pytest.mark.slow
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances(max_sites=4, max_jobs=8, max_periods=10))
def test_many_larger_schedules_verify(data):
    test_every_schedule_verifies_and_costs_recompute.hypothesis.inner_test(data)
