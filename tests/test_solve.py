"""allocator.solve on small Pyomo models whose answers are worked out by hand.

These models are written here directly (not from an instance) so the HiGHS hand-off, status
mapping, lexicographic stages, MIP starts and duals are tested on their own.
"""

from __future__ import annotations

import importlib

import numpy as np
import pyomo.environ as pyo
import pytest

from allocator.options import SolveOptions
from allocator.results import Status
from allocator.solve import dual_totals, lp_duals, solve_model


def knapsack_with_constant():
    """max 5a + 4b + 3c s.t. 2a + 3b + c <= 4 (a,b,c binary), written as a minimisation of
    1000 - (5a + 4b + 3c). Best picks: {a,c} weight 3 value 8; {a,b} weight 5 is too heavy;
    {b,c} weight 4 value 7. Optimum 1000 - 8 = 992."""
    m = pyo.ConcreteModel()
    m.I = pyo.Set(initialize=["a", "b", "c"])
    w = {"a": 2, "b": 3, "c": 1}
    v = {"a": 5, "b": 4, "c": 3}
    m.x = pyo.Var(m.I, within=pyo.Binary)
    m.unused = pyo.Var(bounds=(2, 7))  # in no row or objective: the compiler drops it
    m.weight = pyo.Constraint(expr=sum(w[i] * m.x[i] for i in m.I) <= 4)
    m.obj = pyo.Objective(expr=1000 - sum(v[i] * m.x[i] for i in m.I))
    return m


def test_optimal_mip_reports_objective_with_its_constant_and_writes_values_back():
    m = knapsack_with_constant()
    out = solve_model(m, SolveOptions())
    assert out.status is Status.OPTIMAL
    assert out.objective == pytest.approx(992.0)
    assert out.bound == pytest.approx(992.0, abs=1e-6 * 992)
    assert out.gap == pytest.approx(0.0, abs=1e-4)
    assert out.has_values
    assert {i: m.x[i].value for i in m.I} == {"a": 1.0, "b": 0.0, "c": 1.0}
    assert pyo.value(m.obj) == pytest.approx(992.0)
    assert m.unused.value == 2.0  # closest to 0 within its bounds
    assert out.solver.startswith("HiGHS 1.")
    assert out.size["integer_columns"] == 3 and out.size["rows"] == 1
    assert out.handoff_s >= 0 and out.solve_s >= 0


def test_maximisation_is_reported_in_its_own_sense():
    # the same knapsack as a maximisation: 8
    m = knapsack_with_constant()
    m.obj.deactivate()
    m.obj_max = pyo.Objective(expr=sum([5, 4, 3][k] * m.x[i] for k, i in enumerate("abc")),
                              sense=pyo.maximize)
    out = solve_model(m)
    assert out.status is Status.OPTIMAL
    assert out.objective == pytest.approx(8.0)
    assert out.bound == pytest.approx(8.0, rel=1e-4)


def test_fixed_variables_stay_fixed_and_count_in_the_objective():
    # fixing a=0 leaves {b,c}: 1000 - 7 = 993
    m = knapsack_with_constant()
    m.x["a"].fix(0)
    out = solve_model(m)
    assert out.objective == pytest.approx(993.0)
    assert m.x["a"].value == 0 and m.x["a"].fixed
    assert (m.x["b"].value, m.x["c"].value) == (1.0, 1.0)


def test_infeasible_model_leaves_values_untouched():
    m = pyo.ConcreteModel()
    m.x = pyo.Var(within=pyo.NonNegativeIntegers, bounds=(0, 10))
    m.x.set_value(3)
    m.lo = pyo.Constraint(expr=m.x >= 5)
    m.hi = pyo.Constraint(expr=m.x <= 4)
    m.obj = pyo.Objective(expr=m.x)
    out = solve_model(m)
    assert out.status is Status.INFEASIBLE
    assert not out.has_values
    assert out.objective is None and out.gap is None
    assert m.x.value == 3


def test_unbounded_lp_is_reported_as_such():
    m = pyo.ConcreteModel()
    m.x = pyo.Var(within=pyo.NonNegativeReals)
    m.y = pyo.Var(within=pyo.NonNegativeReals)
    m.c = pyo.Constraint(expr=m.x - m.y <= 1)
    m.obj = pyo.Objective(expr=-m.x)
    out = solve_model(m)
    assert out.status is Status.UNBOUNDED
    assert "unbounded" in out.message


def test_unbounded_or_infeasible_mip_is_told_apart():
    # HiGHS's presolve answers "infeasible or unbounded" for both; the feasibility re-solve
    # separates them.
    m = pyo.ConcreteModel()
    m.x = pyo.Var(within=pyo.NonNegativeIntegers)
    m.y = pyo.Var(within=pyo.NonNegativeIntegers)
    m.c = pyo.Constraint(expr=m.x + m.y >= 1)
    m.obj = pyo.Objective(expr=-m.x - m.y)
    out = solve_model(m)
    assert out.status is Status.UNBOUNDED
    assert "unbounded" in out.message

    m2 = pyo.ConcreteModel()
    m2.x = pyo.Var(within=pyo.NonNegativeIntegers)
    m2.y = pyo.Var(within=pyo.NonNegativeIntegers)
    m2.c = pyo.Constraint(expr=2 * m2.x + 2 * m2.y == 3)  # no integer solution
    m2.obj = pyo.Objective(expr=-m2.x - m2.y)
    out2 = solve_model(m2)
    assert out2.status is Status.INFEASIBLE


# ---------------------------------------------------------------- lexicographic objectives


def two_jobs_three_sites():
    """Jobs 1 and 2 each go to one site; sites B and C hold one job each, A any number.
    cost ($, plus a constant reserved lease of 100) and carbon (t) per placement:

            cost carbon            plan      cost  carbon
        1A   10    5               (1A,2A)    120    10
        1B   14    1               (1A,2B)    120     8
        1C   16    1               (1A,2C)    123     8
        2A   10    5               (1B,2A)    124     6
        2B   10    3               (1B,2C)    127     4
        2C   13    3               (1C,2A)    126     6
                                   (1C,2B)    126     4
    cost-then-carbon: cost 120 -> of (1A,2A),(1A,2B) the lower carbon is 8, plan (1A,2B).
    carbon-then-cost: carbon 4 -> of (1B,2C) 127 and (1C,2B) 126, plan (1C,2B), cost 126.
    """
    cost = {(1, "A"): 10, (1, "B"): 14, (1, "C"): 16, (2, "A"): 10, (2, "B"): 10, (2, "C"): 13}
    carbon = {(1, "A"): 5, (1, "B"): 1, (1, "C"): 1, (2, "A"): 5, (2, "B"): 3, (2, "C"): 3}
    m = pyo.ConcreteModel()
    m.P = pyo.Set(initialize=list(cost), dimen=2)
    m.start = pyo.Var(m.P, within=pyo.Binary)
    m.assign = pyo.Constraint([1, 2], rule=lambda m, j: sum(m.start[j, s] for s in "ABC") == 1)
    m.room = pyo.Constraint(["B", "C"], rule=lambda m, s: m.start[1, s] + m.start[2, s] <= 1)
    m.total_cost = pyo.Expression(expr=100 + sum(cost[p] * m.start[p] for p in m.P))
    m.emissions_t = pyo.Expression(expr=sum(carbon[p] * m.start[p] for p in m.P))
    m.obj_cost = pyo.Objective(expr=m.total_cost)
    m.obj_carbon = pyo.Objective(expr=m.emissions_t)
    m.obj_carbon.deactivate()
    return m


def placed(m):
    return sorted(p for p in m.start if m.start[p].value > 0.5)


def test_cost_then_carbon_breaks_the_cost_tie_by_carbon():
    m = two_jobs_three_sites()
    out = solve_model(m, SolveOptions(objective="cost-then-carbon"))
    assert out.status is Status.OPTIMAL
    assert placed(m) == [(1, "A"), (2, "B")]
    assert out.objective == pytest.approx(8.0)  # the second objective, carbon
    assert out.objective_name == "carbon"
    assert [s.objective_name for s in out.stages] == ["cost", "carbon"]
    assert out.stages[0].objective == pytest.approx(120.0)
    assert pyo.value(m.total_cost) == pytest.approx(120.0)
    assert m.obj_carbon.active and not m.obj_cost.active


def test_carbon_then_cost_breaks_the_carbon_tie_by_cost():
    m = two_jobs_three_sites()
    out = solve_model(m, SolveOptions(objective="carbon-then-cost"))
    assert out.status is Status.OPTIMAL
    assert placed(m) == [(1, "C"), (2, "B")]
    assert out.objective == pytest.approx(126.0)
    assert out.stages[0].objective == pytest.approx(4.0)
    assert pyo.value(m.emissions_t) == pytest.approx(4.0)
    assert m.obj_cost.active and not m.obj_carbon.active


def test_lexicographic_tolerance_lets_the_first_objective_degrade():
    # cost may rise by 4%: 120 * 1.04 = 124.8 admits (1B,2A) at 124 with carbon 6, but not
    # the carbon-4 plans at 126 and 127.
    m = two_jobs_three_sites()
    out = solve_model(m, SolveOptions(objective="cost-then-carbon", lex_tolerance=0.04))
    assert placed(m) == [(1, "B"), (2, "A")]
    assert out.objective == pytest.approx(6.0)


def test_single_modes_pick_their_objective():
    m = two_jobs_three_sites()
    assert solve_model(m, SolveOptions(objective="carbon")).objective == pytest.approx(4.0)
    assert m.obj_carbon.active and not m.obj_cost.active
    assert solve_model(m, SolveOptions(objective="cost")).objective == pytest.approx(120.0)
    assert m.obj_cost.active and not m.obj_carbon.active


# ---------------------------------------------------------------- limits, starts, gaps


def market_split(m=4, n=30, seed=1):
    """A market-split problem (Cornuejols-Dawande): few equality rows over many binaries with
    slack penalised; the LP bound is 0 and branch and bound needs far longer than a second,
    while an incumbent (e.g. all zero) is easy."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 100, size=(m, n))
    d = a.sum(axis=1) // 2
    M = pyo.ConcreteModel()
    M.I = pyo.RangeSet(0, m - 1)
    M.J = pyo.RangeSet(0, n - 1)
    M.x = pyo.Var(M.J, within=pyo.Binary)
    M.over = pyo.Var(M.I, within=pyo.NonNegativeReals)
    M.under = pyo.Var(M.I, within=pyo.NonNegativeReals)
    M.split = pyo.Constraint(
        M.I,
        rule=lambda M, i: sum(int(a[i, j]) * M.x[j] for j in M.J) + M.under[i] - M.over[i]
        == int(d[i]),
    )
    M.obj = pyo.Objective(expr=sum(M.over[i] + M.under[i] for i in M.I))
    return M


def test_time_limit_with_incumbent_is_a_feasible_result_with_its_gap():
    m = market_split()
    out = solve_model(m, SolveOptions(time_limit_s=0.3))
    assert out.status is Status.FEASIBLE
    assert out.has_values
    assert out.bound is not None and out.objective > out.bound
    assert out.gap == pytest.approx((out.objective - out.bound) / out.objective)
    assert out.gap > 0
    # the values written back reproduce the reported objective
    assert pyo.value(m.obj) == pytest.approx(out.objective, abs=1e-6)
    assert out.solve_s < 5


def test_time_limit_before_any_incumbent_is_no_solution():
    m = market_split()
    out = solve_model(m, SolveOptions(time_limit_s=0.0))
    assert out.status is Status.NO_SOLUTION
    assert not out.has_values and out.objective is None
    assert "Time limit" in out.raw_status


def test_mip_start_is_used_as_incumbent():
    # With a zero time limit HiGHS cannot search; a complete start becomes the incumbent.
    m = market_split()
    for j in m.J:
        m.x[j].set_value(0)
    d = {i: m.split[i].upper for i in m.I}
    for i in m.I:
        m.under[i].set_value(d[i])
        m.over[i].set_value(0)
    out = solve_model(m, SolveOptions(time_limit_s=0.0), start=True)
    assert out.status is Status.FEASIBLE
    assert out.objective == pytest.approx(sum(d.values()))


def test_threads_are_set_once_per_process(caplog):
    solve_mod = importlib.import_module("allocator.solve")  # the module, not allocator.solve()
    m = knapsack_with_constant()
    solve_model(m, SolveOptions(threads=1))
    first = solve_mod._scheduler_threads["threads"]
    with caplog.at_level("WARNING", logger="allocator.solve"):
        out = solve_model(knapsack_with_constant(), SolveOptions(threads=(first or 1) + 1))
    assert out.status is Status.OPTIMAL  # not an error although HiGHS refuses a new count
    assert "threads already fixed" in caplog.text


# ---------------------------------------------------------------- duals


def power_limited_site(cap_mw=1.0, hours=2.0):
    """One period of H hours. Demand of 10 units/h is met by site s1 (2 $/unit-h, 0.1 MW per
    unit, power ceiling cap_mw) or s2 (5 $/unit-h, no ceiling, opened by a binary at 7 $).
    At cap 0.5 MW s1 serves 5 units and s2 the other 5. One more MW at s1 moves 10 units/h
    from s2 to s1 and saves (5 - 2) x 10 x H $, i.e. 30 $ per MW-hour whatever H. s2's pool
    of 8 'GPUs' (1 unit each) holds 5 and is not binding."""
    m = pyo.ConcreteModel()
    m.period_hours = hours
    m.x1 = pyo.Var(within=pyo.NonNegativeReals)
    m.x2 = pyo.Var(within=pyo.NonNegativeReals)
    m.open2 = pyo.Var(within=pyo.Binary)
    m.demand = pyo.Constraint(expr=m.x1 + m.x2 == 10)
    m.power_cap = pyo.Constraint([("s1", 0)], rule=lambda m, s, t: 0.1 * m.x1 <= cap_mw)
    m.capacity_gpus = pyo.Constraint([("s2", "H100", 0)], rule=lambda m, s, g, t: m.x2 <= 8)
    m.link = pyo.Constraint(expr=m.x2 <= 100 * m.open2)
    m.obj_cost = pyo.Objective(expr=hours * (2 * m.x1 + 5 * m.x2) + 7 * m.open2)
    return m


def test_duals_of_a_binding_power_ceiling_equal_the_hand_computed_saving():
    m = power_limited_site(cap_mw=0.5, hours=2.0)
    out = solve_model(m)
    # 5 units at s1, 5 at s2: 2*(2*5 + 5*5) + 7 = 77
    assert out.objective == pytest.approx(77.0)
    d = lp_duals(m, period_hours=2.0)
    assert list(d.columns) == ["kind", "site", "gpu_type", "link", "period",
                               "marginal_usd_per_unit_h"]
    power = d[d["kind"] == "power"].iloc[0]
    assert (power["site"], power["period"]) == ("s1", 0)
    assert power["marginal_usd_per_unit_h"] == pytest.approx(30.0)
    gpus = d[d["kind"] == "gpus"].iloc[0]
    assert gpus["marginal_usd_per_unit_h"] == pytest.approx(0.0)
    assert (gpus["site"], gpus["gpu_type"]) == ("s2", "H100")
    # cross-check with a re-solve at +0.1 MW: 1 unit/h moves, saving 3 $/h x 2 h = 6 $
    m2 = power_limited_site(cap_mw=0.6, hours=2.0)
    saving = out.objective - solve_model(m2).objective
    assert saving == pytest.approx(power["marginal_usd_per_unit_h"] * 0.1 * 2.0)
    # the integer stays as solved and unfixed; values are not overwritten
    assert m.open2.value == 1 and not m.open2.fixed
    assert (m.x1.value, m.x2.value) == pytest.approx((5.0, 5.0))
    tot = dual_totals(d, period_hours=2.0)
    assert tot.loc[tot["kind"] == "power", "total_usd_per_unit"].iloc[0] == pytest.approx(60.0)
    assert tot.loc[tot["kind"] == "power", "binding_periods"].iloc[0] == 1


def test_a_ceiling_written_as_greater_equal_gives_the_same_dual():
    m = power_limited_site(cap_mw=0.5, hours=2.0)
    m.del_component(m.power_cap)
    m.power_cap = pyo.Constraint([("s1", 0)], rule=lambda m, s, t: 0.5 - 0.1 * m.x1 >= 0)
    solve_model(m)
    d = lp_duals(m, period_hours=2.0)
    assert d.loc[d["kind"] == "power", "marginal_usd_per_unit_h"].iloc[0] == pytest.approx(30.0)


def test_duals_need_a_solved_model():
    m = power_limited_site()
    with pytest.raises(Exception, match="solve the model"):
        lp_duals(m)
    assert not m.open2.fixed


def test_watchdog_interrupts_a_run_that_overruns_its_limit(monkeypatch):
    # HiGHS's own limit is not set here, so only the watchdog can stop the search; a
    # market-split problem would otherwise run for minutes.
    solve_mod = importlib.import_module("allocator.solve")
    monkeypatch.setattr(solve_mod, "WATCHDOG_GRACE_S", 0.3)
    m = market_split()
    comp = solve_mod._compile(m, [m.obj])
    h = solve_mod._new_highs(SolveOptions())
    solve_mod._pass(h, comp, 0)
    import time

    t0 = time.perf_counter()
    dog = solve_mod._Watchdog(h, t0, 0.0)
    run = solve_mod._run(h, comp, 0, SolveOptions(), None)
    assert dog.fired
    assert time.perf_counter() - t0 < 5
    assert run.status in (Status.FEASIBLE, Status.NO_SOLUTION)
    assert "Interrupt" in run.raw or "interrupt" in run.raw


def test_a_constant_row_that_breaks_its_bound_is_infeasible_not_a_crash():
    m = pyo.ConcreteModel()
    m.x = pyo.Var(within=pyo.Binary)
    m.y = pyo.Var(within=pyo.Binary)
    m.y.fix(1)
    m.c = pyo.Constraint(expr=3 * m.y <= 2)  # no free variable left: 3 <= 2
    m.obj = pyo.Objective(expr=m.x)
    out = solve_model(m)
    assert out.status is Status.INFEASIBLE
    assert "c" in out.message and not out.has_values
