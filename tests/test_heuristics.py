"""The greedy planner: hand-worked plans, and every plan it makes passes the verifier."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allocator import instance_from_dict, load_instance
from allocator.heuristics import greedy_result, greedy_schedule
from allocator.options import SolveOptions
from allocator.results import Status
from allocator.verify import evaluate
from tests.strategies import instances

DATA = Path(__file__).resolve().parents[1] / "data"
H100 = {"id": "H100", "power_kw": 1.0}


def _site(sid, available, od_price, reserved=0, res_price=0.0, cap_mw=1.0, **extra):
    return {"id": sid, "provider": "test", "power_cap_mw": cap_mw, **extra,
            "pools": [{"gpu_type": "H100", "available": available, "reserved": reserved,
                       "reserved_price_usd_per_gpu_h": res_price,
                       "ondemand_price_usd_per_gpu_h": od_price}]}


def _inst(sites, jobs=(), periods=4, **extra):
    return instance_from_dict({
        "name": "t", "horizon": {"start": "2026-01-01T00:00:00Z", "periods": periods},
        "gpu_types": [H100], "sites": list(sites), "jobs": list(jobs), **extra})


def _job(jid, gpus, hours, **extra):
    return {"id": jid, "options": [{"gpu_type": "H100", "gpus": gpus, "hours": hours}], **extra}


def _rows(plan):
    t = plan["training"]
    return {j: (s, int(p)) for j, s, p in zip(t["job"], t["site"], t["start_period"], strict=True)}


def test_cheapest_site_first_then_earliest_start_and_optional_only_if_worth_it():
    inst = _inst(
        [_site("cheap", 8, 2.0), _site("dear", 8, 3.0)],
        [_job("j1", 8, 2), _job("j2", 8, 2),
         _job("j3", 4, 2, mandatory=False, value_usd=40.0),
         _job("j4", 4, 2, mandatory=False, value_usd=20.0)],
    )
    plan = greedy_schedule(inst)
    # j1: cheap at t=0 (8 GPUs x 2 h x $2 = $32). j2: cheap is full until t=2, still $32 there
    # against $48 at dear: the cheapest site wins over the earlier start. j3 (optional, worth
    # $40): cheap is full all horizon, dear costs 4 x 2 x $3 = $24 < $40: placed. j4 (worth $20):
    # dear's 4 free GPUs would cost $24 >= $20: dropped.
    assert _rows(plan) == {"j1": ("cheap", 0), "j2": ("cheap", 2), "j3": ("dear", 0)}
    assert plan.unplaced == ["j4"]
    ev = evaluate(inst, plan)
    assert ev.violations == []
    # on-demand 32 + 32 + 24 = 88, plus j4's value 20 = 108
    assert ev.costs["ondemand_lease"] == pytest.approx(88.0)
    assert ev.costs["dropped_value"] == pytest.approx(20.0)
    assert ev.total_cost_usd == pytest.approx(108.0)


def test_idle_reserved_gpus_cost_only_their_energy():
    inst = _inst(
        [_site("reserved", 8, 10.0, reserved=8, res_price=5.0, energy_price_usd_per_mwh=100.0),
         _site("spot", 8, 1.0)],
        [_job("j1", 8, 2)],
    )
    # reserved: 8 GPUs x 1 kW x 2 h = 0.016 MWh x $100 = $1.60 (lease already paid);
    # spot: 8 x 2 x $1 = $16. Total = reserved lease 8 x $5 x 4 h = $160 + $1.60.
    plan = greedy_schedule(inst)
    assert _rows(plan) == {"j1": ("reserved", 0)}
    ev = evaluate(inst, plan)
    assert ev.violations == []
    assert ev.total_cost_usd == pytest.approx(161.6)


def test_predecessors_end_before_successors_start():
    inst = _inst([_site("a", 16, 1.0)],
                 [_job("late", 4, 1, predecessors=["early"]), _job("early", 8, 2)], periods=5)
    plan = greedy_schedule(inst)
    # "late" is larger-first sorted after "early" only because it waits for it: early runs
    # periods 0-1, so late starts at 2 although GPUs are free at 0.
    assert _rows(plan) == {"early": ("a", 0), "late": ("a", 2)}
    assert evaluate(inst, plan).violations == []


def test_power_ceiling_pushes_a_job_to_later_periods():
    # 8 GPUs x 1 kW = 0.008 MW; ceiling 0.012 MW: two 8-GPU jobs cannot overlap
    inst = _inst([_site("a", 16, 1.0, cap_mw=0.012)], [_job("j1", 8, 2), _job("j2", 8, 2)])
    assert _rows(greedy_schedule(inst)) == {"j1": ("a", 0), "j2": ("a", 2)}


def _inference_inst(demand, penalty, sites, redundancy=False):
    return _inst(
        sites, [], periods=1,
        regions=[{"id": "r"}],
        links=[{"a": s["id"], "b": "r", "latency_ms": 5.0} for s in sites],
        services=[{"id": "v", "tokens_per_s_per_gpu": {"H100": 1000.0}, "latency_slo_ms": 10.0,
                   "unserved_usd_per_mtok": penalty, "redundancy": redundancy,
                   "demand": {"r": demand}}],
    )


def test_inference_adds_whole_gpus_while_they_cost_less_than_the_penalty():
    # penalty $1/Mtok: 1 tok/s unserved for an hour costs 3600/1e6 = $0.0036. A GPU ($1/h)
    # serves 1000 tok/s, avoiding $3.60. Demand 2500: 2 full GPUs, and the third serves
    # 500 tok/s avoiding $1.80 > $1: 3 GPUs. Demand 2200: the third would avoid only $0.72:
    # 2 GPUs, 200 tok/s unserved: cost 2 x $1 + 200 x $0.0036 = $2.72.
    for demand, gpus, cost in ((2500.0, 3, 3.0), (2200.0, 2, 2.72)):
        inst = _inference_inst(demand, 1.0, [_site("a", 10, 1.0)])
        plan = greedy_schedule(inst)
        assert plan["inference_gpus"]["gpus"].tolist() == [gpus]
        ev = evaluate(inst, plan)
        assert ev.violations == []
        assert ev.total_cost_usd == pytest.approx(cost)


def test_redundant_service_gets_a_second_site_or_serves_less():
    # demand 3000 tok/s, 1000 per GPU. cheap site s0 takes it on 3 GPUs; N+1 needs 3000 tok/s
    # of capacity elsewhere, but s1 has only 2 GPUs: it gets both and the service serves 2000
    # (losing s0 leaves 2000, losing s1 leaves 3000).
    inst = _inference_inst(3000.0, 100.0, [_site("s0", 10, 1.0), _site("s1", 2, 2.0)], redundancy=True)
    plan = greedy_schedule(inst)
    ig = dict(zip(plan["inference_gpus"]["site"], plan["inference_gpus"]["gpus"], strict=True))
    assert ig == {"s0": 3, "s1": 2}
    assert plan["inference"]["tokens_per_s"].sum() == pytest.approx(2000.0)
    assert evaluate(inst, plan).violations == []


def test_demo_plan_is_feasible_and_greedy_result_has_no_bound():
    inst = load_instance(DATA / "demo" / "instance.yaml")
    plan = greedy_schedule(inst)
    mandatory = {j.id for j in inst.jobs if j.mandatory}
    assert mandatory <= set(plan["training"]["job"])
    assert evaluate(inst, plan).violations == []
    res = greedy_result(inst, None, SolveOptions())
    assert res.status is Status.FEASIBLE
    assert res.bound is None and res.gap is None
    assert res.objective == pytest.approx(sum(res.costs.values()))
    assert set(res.frames) >= {"training", "inference", "inference_gpus", "site_gpus", "sites"}


def test_a_mandatory_job_that_cannot_fit_makes_the_greedy_result_say_so():
    # each job fits alone, but both need all 8 GPUs for the whole 2-period horizon
    inst = _inst([_site("a", 8, 1.0)], [_job("j1", 8, 2), _job("j2", 8, 2)], periods=2)
    res = greedy_result(inst, None, SolveOptions())
    assert res.status is Status.NO_SOLUTION
    assert "j2" in res.message


def test_over_budget_the_greedy_result_falls_back_to_the_plan_that_spends_least():
    # one period, one site at $1/GPU-h. The mandatory job j (1 GPU, 1 h) spends $1. Service v
    # wants 1000 tok/s, one GPU's worth, at a penalty that makes serving it worth $1: the plan
    # of true costs spends $2. With budget_usd = 1.5 no optional job can be dropped, so the
    # greedy result serves nothing instead: spend $1, unserved 1000 tok/s for the hour.
    inst = _inference_inst(1000.0, 100.0, [_site("a", 10, 1.0)])
    data = inst.model_dump(mode="json")
    data["jobs"] = [_job("j", 1, 1)]
    plan = greedy_schedule(instance_from_dict(data))
    assert evaluate(instance_from_dict(data), plan).total_cost_usd == pytest.approx(2.0)
    data["budget_usd"] = 1.5
    inst = instance_from_dict(data)
    res = greedy_result(inst, None, SolveOptions())
    assert res.status is Status.FEASIBLE, res.message
    assert "spends least" in res.message
    assert res.frames["training"]["job"].tolist() == ["j"]
    ev = evaluate(inst, {k: res.frames[k] for k in ("training", "inference", "inference_gpus")})
    assert ev.violations == []
    # $1 of lease, and 1000 tok/s x 3600 s = 3.6 Mtok unserved at $100/Mtok
    assert ev.total_cost_usd == pytest.approx(1.0 + 360.0)
    data["budget_usd"] = 0.5  # below even the mandatory job: no schedule, and the budget named
    res = greedy_result(instance_from_dict(data), None, SolveOptions())
    assert res.status is Status.NO_SOLUTION
    assert "budget_usd" in res.message


@st.composite
def richer_instances(draw):
    """The shared strategy plus redundancy, link bandwidth, predecessors and data staging."""
    data = draw(instances())
    jobs = data["jobs"]
    if len(jobs) >= 2 and draw(st.booleans()):
        jobs[1]["predecessors"] = [jobs[0]["id"]]
    if data.get("services") and draw(st.booleans()):
        data["services"][0]["redundancy"] = True
    if data.get("links"):
        for link in data["links"]:
            if draw(st.booleans()):
                link["bandwidth_gbps"] = float(draw(st.sampled_from([0.0001, 0.01, 1.0])))
    if draw(st.booleans()):
        data["data_sources"] = [{"id": "lake"}]
        data.setdefault("links", []).extend(
            {"a": "lake", "b": s["id"], "latency_ms": 1.0, "bandwidth_gbps": 50.0,
             "egress_usd_per_gb": 0.01} for s in data["sites"])
        jobs[0]["dataset_source"] = "lake"
        jobs[0]["dataset_tb"] = float(draw(st.sampled_from([1.0, 10.0])))
    return data


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(richer_instances())
def test_every_greedy_plan_passes_the_verifier(data):
    inst = instance_from_dict(data)
    plan = greedy_schedule(inst)
    ev = evaluate(inst, plan)
    # the only rule a greedy plan may break: a mandatory job it reports it could not place
    # (the instance may be infeasible, or greedy too myopic)
    broken = [v for v in ev.violations
              if not (v.rule == "training-mandatory" and v.where.split()[-1] in plan.unplaced)]
    assert broken == [], [str(v) for v in broken]
    placed = set(plan["training"]["job"])
    assert placed.isdisjoint(plan.unplaced)
    assert placed | set(plan.unplaced) == {j.id for j in inst.jobs}


def test_a_predecessor_ends_in_time_for_its_successors_deadline():
    # big takes cheap at t=0-1. pre's cheapest start alone is cheap at t=2 ($16 against $24 at
    # dear t=0), but then post (after pre, must end by period 4) could start only at 4 and end
    # at 6: too late. pre must end by post's latest start (2), so it takes dear at t=0 and post
    # runs on cheap at t=2-3.
    inst = _inst(
        [_site("cheap", 8, 2.0), _site("dear", 8, 3.0)],
        [_job("big", 8, 2), _job("pre", 4, 2),
         _job("post", 4, 2, predecessors=["pre"], deadline_period=4)],
        periods=6,
    )
    plan = greedy_schedule(inst)
    assert plan.unplaced == []
    assert _rows(plan) == {"big": ("cheap", 0), "pre": ("dear", 0), "post": ("cheap", 2)}
    assert evaluate(inst, plan).violations == []


def test_a_missing_job_and_the_jobs_it_waits_for_go_first_on_the_next_attempt():
    # One site of 8 GPUs, 6 periods. Larger first: big (8 GPUs x 4 h) would take t=0-3, leaving
    # pre (8 x 1 h) only t=4, and post (after pre, deadline 5) nowhere. Moving post alone to
    # the front does not help (it waits for pre); moving pre with it does: pre t=0, post t=1,
    # big t=2-5.
    inst = _inst(
        [_site("only", 8, 1.0)],
        [_job("big", 8, 4), _job("pre", 8, 1),
         _job("post", 8, 1, predecessors=["pre"], deadline_period=5)],
        periods=6,
    )
    plan = greedy_schedule(inst)
    assert plan.unplaced == []
    assert _rows(plan) == {"pre": ("only", 0), "post": ("only", 1), "big": ("only", 2)}
    assert evaluate(inst, plan).violations == []


def test_the_greedy_planner_stops_at_its_deadline():
    # 8000 periods with a service: the planner alone takes seconds (it walks every period);
    # given a deadline 0.2 s away it stops there and says so, for the greedy route and as
    # the neighbourhood search's start (which then has no start plan)
    import time

    from allocator.generate import generate_instance
    from allocator.heuristics import GreedyTimeUp, greedy_outcome
    from allocator.indexing import build_index
    from allocator.results import Status

    inst = generate_instance(6, 1, 2, 8000, seed=1)
    index = build_index(inst)
    t0 = time.perf_counter()
    with pytest.raises(GreedyTimeUp):
        greedy_schedule(inst, index, deadline=t0 + 0.2)
    assert time.perf_counter() - t0 < 1.5
    t0 = time.perf_counter()
    got = greedy_outcome(inst, index, deadline=t0 + 0.2)
    assert time.perf_counter() - t0 < 1.5
    assert got.status is Status.NO_SOLUTION
    assert "time limit ran out during the greedy planner" in got.message
    # without a deadline the same plan completes (the check is not a cut of its own)
    assert greedy_outcome(inst, index).status.has_schedule
