"""The MIP formulation, family by family, on tiny instances whose optimum is worked out by
hand in each test. Every solved schedule is also exported and checked by the independent
verifier.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import pandas as pd
import pyomo.environ as pyo
import pytest

from allocator import instance_from_dict, load_instance
from allocator.formulation import FAMILIES, FAMILY_NAMES, build_model, explain_slacks
from allocator.formulation.extract import costs_from_frames, extract_costs, extract_frames
from allocator.indexing import build_index
from allocator.network import Network
from allocator.options import SolveOptions
from allocator.results import COST_TERMS, Result, Status

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- tiny instances


def base(periods: int = 2, **extra) -> dict:
    """One site S with one pool of GPU type X (1 kW, PUE 1), on-demand $1/GPU-h, no energy
    price, no carbon; 1-hour periods."""
    data = {
        "name": "tiny",
        "horizon": {"start": "2026-01-01T00:00:00Z", "periods": periods, "period_hours": 1.0},
        "gpu_types": [{"id": "X", "power_kw": 1.0}],
        "sites": [{"id": "S", "provider": "p", "zone": "US", "power_cap_mw": 100.0, "pue": 1.0,
                   "pools": [{"gpu_type": "X", "available": 8, "reserved": 0,
                              "ondemand_price_usd_per_gpu_h": 1.0}]}],
    }
    data.update(extra)
    return data


def job(jid: str, gpus: int = 8, hours: float = 2.0, **extra) -> dict:
    return {"id": jid, "options": [{"gpu_type": "X", "gpus": gpus, "hours": hours}], **extra}


def training_case() -> dict:
    """Jobs A, B (B after A, soft deadline 3 at $10/h) and optional C ($20) on 8 GPUs, 6 periods."""
    return base(6, jobs=[
        job("A"),
        job("B", predecessors=["A"], deadline="soft", deadline_period=3, tardiness_usd_per_h=10.0),
        job("C", mandatory=False, value_usd=20.0),
    ])


def inference_case() -> dict:
    """Service V (100 tok/s per X GPU, SLO 50 ms, $10/Mtok unserved): region R near S (10 ms),
    region Q near only T (10 ms; 100 ms from S); T's only GPU costs $5/h."""
    data = base(2)
    data["sites"].append({"id": "T", "provider": "q", "zone": "US", "power_cap_mw": 100.0,
                          "pools": [{"gpu_type": "X", "available": 1,
                                     "ondemand_price_usd_per_gpu_h": 5.0}]})
    data["regions"] = [{"id": "R"}, {"id": "Q"}]
    data["links"] = [{"a": "S", "b": "R", "latency_ms": 10}, {"a": "T", "b": "Q", "latency_ms": 10},
                     {"a": "S", "b": "T", "latency_ms": 90}]
    data["services"] = [{"id": "V", "tokens_per_s_per_gpu": {"X": 100.0}, "latency_slo_ms": 50,
                         "unserved_usd_per_mtok": 10.0, "demand": {"R": [250.0, 30.0], "Q": [100.0, 0.0]}}]
    return data


def redundancy_case() -> dict:
    """Service W with N+1, 100 tok/s demand at R, reachable from S ($1/GPU-h) and T ($3/GPU-h)."""
    data = base(1)
    data["sites"].append({"id": "T", "provider": "q", "zone": "US", "power_cap_mw": 100.0,
                          "pools": [{"gpu_type": "X", "available": 8,
                                     "ondemand_price_usd_per_gpu_h": 3.0}]})
    data["regions"] = [{"id": "R"}]
    data["links"] = [{"a": "S", "b": "R", "latency_ms": 10}, {"a": "T", "b": "R", "latency_ms": 20}]
    data["services"] = [{"id": "W", "tokens_per_s_per_gpu": {"X": 100.0}, "latency_slo_ms": 50,
                         "redundancy": True, "unserved_usd_per_mtok": 20.0, "demand": {"R": 100.0}}]
    return data


def capacity_case() -> dict:
    """Pool of 10 GPUs, 4 reserved at $1/GPU-h, on-demand $3/GPU-h; two mandatory 6-GPU jobs
    of one period each in a 2-period horizon."""
    data = base(2, jobs=[job("A", gpus=6, hours=1.0), job("B", gpus=6, hours=1.0)])
    data["sites"][0]["pools"] = [{"gpu_type": "X", "available": 10, "reserved": 4,
                                  "reserved_price_usd_per_gpu_h": 1.0,
                                  "ondemand_price_usd_per_gpu_h": 3.0}]
    return data


def leasing_case() -> dict:
    """Pool X at S: 16 GPUs, on-demand $3/GPU-h; offers 1y ($2, 4-12 GPUs in steps of 4) and
    3y ($1.5, 12-16 in steps of 4); S's ceiling is decided: $100/MW-h, 0.008-0.016 MW in
    steps of 0.004 (8, 12 or 16 GPUs of 1 kW). Jobs: A 8 GPUs x 2 h, B 4 GPUs x 1 h; 2 periods."""
    data = base(2, jobs=[job("A", gpus=8, hours=2.0), job("B", gpus=4, hours=1.0)])
    data["sites"][0] = {
        "id": "S", "provider": "p", "zone": "US", "pue": 1.0,
        "power_options": {"price_usd_per_mw_h": 100.0, "min_mw": 0.008, "max_mw": 0.016, "step_mw": 0.004},
        "pools": [{"gpu_type": "X", "available": 16, "ondemand_price_usd_per_gpu_h": 3.0, "reserve_options": [
            {"term": "1y", "price_usd_per_gpu_h": 2.0, "min_gpus": 4, "max_gpus": 12, "step_gpus": 4},
            {"term": "3y", "price_usd_per_gpu_h": 1.5, "min_gpus": 12, "max_gpus": 16, "step_gpus": 4}]}]}
    return data


def power_case() -> dict:
    """Site S: 16 GPUs at $1/h, PUE 1.25, ceiling 0.01 MW, energy $100/MWh, 400 g/kWh; site T:
    8 GPUs at $2/h, no ceiling issue. Two mandatory 8-GPU jobs, one period, horizon 1."""
    data = base(1, jobs=[job("A", hours=1.0), job("B", hours=1.0)])
    data["sites"] = [
        {"id": "S", "provider": "p", "power_cap_mw": 0.01, "pue": 1.25,
         "energy_price_usd_per_mwh": 100.0, "carbon_g_per_kwh": 400.0,
         "pools": [{"gpu_type": "X", "available": 16, "ondemand_price_usd_per_gpu_h": 1.0}]},
        {"id": "T", "provider": "q", "power_cap_mw": 10.0,
         "pools": [{"gpu_type": "X", "available": 8, "ondemand_price_usd_per_gpu_h": 2.0}]},
    ]
    return data


def network_case() -> dict:
    """Job J stages 0.9 TB from lake D over a 1 Gb/s link priced $0.01/GB. Option 0: 8 GPUs x 1 h;
    option 1: 4 GPUs x 2.5 h (3 periods)."""
    data = base(3, jobs=[{"id": "J", "dataset_source": "D", "dataset_tb": 0.9, "options": [
        {"gpu_type": "X", "gpus": 8, "hours": 1.0}, {"gpu_type": "X", "gpus": 4, "hours": 2.5}]}])
    data["data_sources"] = [{"id": "D"}]
    data["links"] = [{"a": "D", "b": "S", "latency_ms": 1, "bandwidth_gbps": 1.0, "egress_usd_per_gb": 0.01}]
    return data


def budget_case() -> dict:
    """A mandatory and an optional ($100) 8-GPU one-hour job on $1/GPU-h GPUs, budget $10."""
    return base(2, jobs=[job("M", hours=1.0), job("O", hours=1.0, mandatory=False, value_usd=100.0)],
                budget_usd=10.0)


def objective_case() -> dict:
    """One 8-GPU one-hour job; S costs $1/GPU-h, $50/MWh and 1000 g/kWh; T costs $2/GPU-h and
    emits nothing; carbon price $200/t."""
    data = base(1, jobs=[job("A", hours=1.0)], carbon_price_usd_per_t=200.0)
    data["sites"] = [
        {"id": "S", "provider": "p", "power_cap_mw": 1.0, "energy_price_usd_per_mwh": 50.0,
         "carbon_g_per_kwh": 1000.0,
         "pools": [{"gpu_type": "X", "available": 8, "ondemand_price_usd_per_gpu_h": 1.0}]},
        {"id": "T", "provider": "q", "power_cap_mw": 1.0,
         "pools": [{"gpu_type": "X", "available": 8, "ondemand_price_usd_per_gpu_h": 2.0}]},
    ]
    return data


def replanning_case() -> dict:
    """Objective_case's sites S ($1/GPU-h) and T ($2/GPU-h) over 3 periods; A (1 h) ran at T
    from period 0 (frozen at now = 1); B (1 h, move $5, retime $1/h) was planned at T in period
    2; new job C (4 GPUs, 1 h) was not in the previous plan. See ``replanning_options``."""
    data = objective_case()
    data["horizon"]["periods"] = 3
    data["carbon_price_usd_per_t"] = 0.0
    data["jobs"] = [job("A", hours=1.0), job("B", hours=1.0, move_fixed_usd=5.0, retime_cost_usd_per_h=1.0),
                    job("C", gpus=4, hours=1.0)]
    return data


def replanning_options() -> SolveOptions:
    prev = pd.DataFrame({"job": ["A", "B"], "option": [0, 0], "site": ["T", "T"], "gpu_type": ["X", "X"],
                         "gpus": [8, 8], "start_period": [0, 2]})
    return SolveOptions(previous=prev, now=1, max_moves=1, max_moved_gpus=8)


CASES = {
    "training": training_case,
    "inference": inference_case,
    "leasing": leasing_case,
    "capacity": capacity_case,
    "power": power_case,
    "network": network_case,
    "replanning": replanning_case,
    "budget": budget_case,
    "objective": objective_case,
}


# --------------------------------------------------------------------------- helpers


def solve_case(data: dict, options: SolveOptions | None = None, *, elastic: bool = False,
               tmp_path: Path | None = None):
    """Build, solve (allocator.solve.solve_model), extract; verify the export if tmp_path."""
    from allocator.solve import solve_model

    options = options or SolveOptions()
    inst = instance_from_dict(copy.deepcopy(data))
    index = build_index(inst, Network(inst))
    model = build_model(inst, index, options, elastic=elastic)
    outcome = solve_model(model, options)
    frames = extract_frames(model, inst, index) if outcome.status.has_schedule else {}
    if tmp_path is not None and outcome.status.has_schedule:
        assert_verified(inst, model, outcome, frames, options, tmp_path)
    return inst, index, model, outcome, frames


def assert_verified(inst, model, outcome, frames, options, tmp_path: Path) -> None:
    """Export the schedule and run the independent verifier on it: no violation."""
    from allocator.results import export_result
    from allocator.verify import verify_schedule

    costs = extract_costs(model)
    h = inst.horizon
    placed_jobs = set(frames["training"]["job"])
    summary = {"instance": {"name": inst.name, "horizon": {
                   "start": h.start.strftime("%Y-%m-%dT%H:%M:%SZ"), "periods": h.periods,
                   "period_hours": h.period_hours}},
               "dropped_jobs": [j.id for j in inst.jobs if not j.mandatory and j.id not in placed_jobs]}
    result = Result(status=outcome.status, objective=outcome.objective, bound=outcome.bound,
                    gap=outcome.gap, costs=costs,
                    emissions_t=float(frames["sites"]["emissions_t"].sum()),
                    options={"objective": options.objective}, frames=frames, summary=summary)
    out = tmp_path / f"schedule-{time.monotonic_ns()}"
    export_result(result, out)
    violations = verify_schedule(inst, out)
    assert not violations, "\n".join(map(str, violations))


def placed(frames) -> dict[str, tuple]:
    tr = frames["training"]
    return {j: (s, int(o), int(t)) for j, s, o, t in
            tr[["job", "site", "option", "start_period"]].itertuples(index=False)}


# --------------------------------------------------------------------------- registry


def test_registry_lists_every_family_in_build_order():
    assert FAMILY_NAMES == ("training", "inference", "leasing", "capacity", "power", "network", "replanning", "budget",
                            "objective")
    for name, add in FAMILIES:
        assert add.__name__ == f"add_{name}"
        assert add.__doc__ and add.__module__.endswith(name)


def test_unknown_disabled_family_is_refused():
    inst = instance_from_dict(training_case())
    with pytest.raises(ValueError, match="unknown constraint families"):
        build_model(inst, build_index(inst), SolveOptions(disabled_families=("powr",)))


# --------------------------------------------------------------------------- families


def test_training_assignment_precedence_tardiness_and_optional_value(tmp_path):
    # 8 GPUs: one job at a time, each 2 periods, 6 periods in all. A before B; B's soft
    # deadline is period 3 but it can end at 4 at the earliest (A 0-1, B 2-3): 1 h late, $10.
    # Running C too (C 4-5) costs 16 GPU-h = $16 < its value $20:
    #   lease 3 x 8 x 2 x $1 = $48, tardiness $10, dropped $0 -> $58.
    # Without C: $32 + $10 + $20 dropped = $62. C first (C, A, B): B ends at 6, 3 h late, $30.
    inst, index, model, out, frames = solve_case(training_case(), tmp_path=tmp_path)
    assert out.status is Status.OPTIMAL
    assert out.objective == pytest.approx(58.0)
    assert placed(frames) == {"A": ("S", 0, 0), "B": ("S", 0, 2), "C": ("S", 0, 4)}
    costs = extract_costs(model)
    assert costs["ondemand_lease"] == pytest.approx(48.0)
    assert costs["tardiness"] == pytest.approx(10.0)
    assert costs["dropped_value"] == pytest.approx(0.0)
    assert frames["training"].set_index("job").loc["B", "tardiness_h"] == pytest.approx(1.0)


def test_training_precedence_rows_are_time_indexed():
    inst = instance_from_dict(training_case())
    index = build_index(inst)
    model = build_model(inst, index)
    # B can start at 2, 3 or 4 (after A's earliest end, ending by 6): one row per start period
    assert sorted(model.PRECEDENCE_ROWS) == [("B", "A", 2), ("B", "A", 3), ("B", "A", 4)]
    assert model.training_assign["A"].equality and model.training_assign["C"].upper == 1
    assert not model.training_assign["C"].equality


def test_inference_demand_slo_whole_gpus_and_unserved(tmp_path):
    # Period 0: R wants 250 tok/s -> ceil(250/100) = 3 GPUs at S = $3 (2 GPUs + 50 unserved
    # would cost 2 + 50*3600/1e6*10 = $3.80). Period 1: 30 tok/s -> 1 GPU $1 against
    # 30*3600/1e6*10 = $1.08 unserved. Q (only T within the SLO) wants 100 tok/s in period 0:
    # T's GPU costs $5 > 100*3600/1e6*10 = $3.60, so it goes unserved.
    # Total 3 + 1 + 3.6 = $7.60.
    inst, index, model, out, frames = solve_case(inference_case(), tmp_path=tmp_path)
    assert out.status is Status.OPTIMAL
    assert out.objective == pytest.approx(7.6)
    assert set(index.flows["s"] + ">" + index.flows["r"]) == {"S>R", "T>Q"}  # S-Q is 100 ms
    ig = frames["inference_gpus"].set_index(["site", "period"])["gpus"].to_dict()
    assert ig == {("S", 0): 3, ("S", 1): 1}
    un = frames["unserved"].set_index(["region", "period"])["unserved_tokens_per_s"]
    assert un[("Q", 0)] == pytest.approx(100.0) and un[("R", 0)] == pytest.approx(0.0, abs=1e-6)
    assert extract_costs(model)["unserved"] == pytest.approx(3.6)


def test_inference_redundancy_needs_a_second_site(tmp_path):
    # Without N+1: 1 GPU at S, $1. With N+1: losing S, T must carry the 100 tok/s -> 1 GPU at
    # T ($3); losing T, S's GPU carries it -> $4 in all, cheaper than 100*3600/1e6*20 = $7.20
    # unserved.
    data = redundancy_case()
    *_, out, frames = solve_case(data, tmp_path=tmp_path)
    assert out.objective == pytest.approx(4.0)
    assert sorted(frames["inference_gpus"]["site"]) == ["S", "T"]
    data["services"][0]["redundancy"] = False
    *_, out, _ = solve_case(data, tmp_path=tmp_path)
    assert out.objective == pytest.approx(1.0)


def test_capacity_reserved_and_ondemand(tmp_path):
    # 6 + 6 > 10 GPUs: the jobs run in different periods. Each period 6 in use, 4 reserved:
    # 2 on demand x $3 x 2 periods = $12; reserved 4 x $1 x 2 h = $8 (paid anyway). $20.
    inst, index, model, out, frames = solve_case(capacity_case(), tmp_path=tmp_path)
    assert out.objective == pytest.approx(20.0)
    assert sorted(t for _, _, t in placed(frames).values()) == [0, 1]
    costs = extract_costs(model)
    assert costs["reserved_lease"] == pytest.approx(8.0) and costs["ondemand_lease"] == pytest.approx(12.0)
    sg = frames["site_gpus"]
    assert list(sg["gpus_in_use"]) == [6, 6] and list(sg["gpus_ondemand"]) == [2, 2]


def test_capacity_switched_off_lets_gpus_overlap():
    # with the capacity family off both jobs may share period 0, and on-demand is not priced:
    # only the reserved lease ($8) is left.
    *_, out, _ = solve_case(capacity_case(), SolveOptions(disabled_families=("capacity",)))
    assert out.objective == pytest.approx(8.0)


def test_power_ceiling_moves_a_job(tmp_path):
    # 8 GPUs x 1 kW x 1.25 = 0.01 MW: one job fits S's ceiling, two (0.02 MW) do not, though
    # S has 16 GPUs. A at S: $8 lease + 0.01 MWh x $100 = $1 energy; B at T: $16. Total $25.
    # Emissions 0.01 MWh x 400 g/kWh = 0.004 t.
    inst, index, model, out, frames = solve_case(power_case(), tmp_path=tmp_path)
    assert out.objective == pytest.approx(25.0)
    assert sorted(s for s, _, _ in placed(frames).values()) == ["S", "T"]
    assert pyo.value(model.emissions_t) == pytest.approx(0.004)
    assert frames["sites"].set_index("site").loc["S", "power_mw"] == pytest.approx(0.01)
    *_, out, _ = solve_case(power_case(), SolveOptions(disabled_families=("power",)))
    assert out.objective == pytest.approx(8 + 8 + 2.0)  # both at S: $16 lease, 0.02 MWh = $2


def test_network_bandwidth_picks_the_slower_option(tmp_path):
    # Option 0 streams 0.9 TB x 8000 / 3600 s = 2 Gb/s > 1 Gb/s; option 1 (3 periods)
    # 0.9 x 8000 / 10800 = 0.667 Gb/s. Lease: option 0 8 GPU-h = $8, option 1 4 GPUs x 3
    # periods = $12. Egress 900 GB x $0.01 = $9 either way. With the link: $21; without: $17.
    inst, index, model, out, frames = solve_case(network_case(), tmp_path=tmp_path)
    assert out.objective == pytest.approx(21.0)
    assert placed(frames)["J"][1] == 1
    assert extract_costs(model)["egress"] == pytest.approx(9.0)
    links = frames["links"]
    assert links["traffic_gbps"].max() == pytest.approx(0.9 * 8000 / 10800)
    assert links["egress_usd"].sum() == pytest.approx(9.0)
    *_, out, frames = solve_case(network_case(), SolveOptions(disabled_families=("network",)))
    assert out.objective == pytest.approx(17.0) and placed(frames)["J"][1] == 0


def test_budget_drops_an_optional_job(tmp_path):
    # Both jobs cost $8 each; the budget of $10 allows only the mandatory one, so the optional
    # job's $100 value is lost: $8 + $100 = $108. Without the budget: $16.
    *_, out, frames = solve_case(budget_case(), tmp_path=tmp_path)
    assert out.objective == pytest.approx(108.0)
    assert set(placed(frames)) == {"M"}
    *_, out, _ = solve_case(budget_case(), SolveOptions(disabled_families=("budget",)))
    assert out.objective == pytest.approx(16.0)


def test_objective_terms_and_modes(tmp_path):
    # At S: lease $8, energy 0.008 MWh x $50 = $0.40, emissions 0.008 MWh x 1000 g/kWh =
    # 0.008 t, carbon 0.008 x $200 = $1.60 -> $10.00. At T: $16, no emissions.
    inst, index, model, out, frames = solve_case(objective_case(), tmp_path=tmp_path)
    assert out.objective == pytest.approx(10.0)
    costs = extract_costs(model)
    assert set(costs) == set(COST_TERMS)
    assert costs == pytest.approx({"reserved_lease": 0.0, "power_lease": 0.0, "ondemand_lease": 8.0, "energy": 0.4,
                                   "egress": 0.0, "site_extra": 0.0, "tardiness": 0.0,
                                   "unserved": 0.0, "dropped_value": 0.0, "carbon": 1.6,
                                   "migration": 0.0})  # no previous plan
    assert costs == pytest.approx({k: pyo.value(model.cost[k]) for k in COST_TERMS})
    assert model.obj_cost.active and not model.obj_carbon.active
    # carbon first: T, zero emissions
    opts = SolveOptions(objective="carbon")
    inst, index, model, out, frames = solve_case(objective_case(), opts, tmp_path=tmp_path)
    assert model.obj_carbon.active and not model.obj_cost.active
    assert out.objective == pytest.approx(0.0, abs=1e-9)
    assert placed(frames)["A"][0] == "T"


def test_costs_from_frames_match_the_model_on_the_demo_structure(tmp_path):
    # every cost term recomputed from the exported tables equals the model's expression
    inst, index, model, out, frames = solve_case(inference_case())
    model_costs = {k: pyo.value(model.cost[k]) for k in COST_TERMS}
    assert costs_from_frames(inst, frames) == pytest.approx(model_costs, abs=1e-6)


# --------------------------------------------------------------------------- elastic


def test_elastic_model_explains_missing_gpus():
    # Two mandatory 8-GPU one-period jobs in one period on 8 GPUs: 8 GPUs short in period 0.
    data = base(1, jobs=[job("A", hours=1.0), job("B", hours=1.0)])
    *_, out, _ = solve_case(data)
    assert out.status is Status.INFEASIBLE
    inst, index, model, out, _ = solve_case(data, elastic=True)
    assert out.status is Status.OPTIMAL
    lines = explain_slacks(model, inst)
    assert lines == ["site S: X GPUs needed up to 16 in period 0 but 8 are available (short by up to 8)"]
    assert {fam for fam, _, _ in model.SLACKS} >= {"training", "capacity", "power"}


def test_elastic_model_explains_power_and_unplaceable_jobs():
    # S's ceiling 0.012 MW holds one 8-GPU job (0.01 MW at PUE 1.25) but not two (0.02 MW,
    # short by 0.008 MW); job Z needs 64 GPUs and the pool has 16: it cannot be placed.
    data = power_case()
    data["sites"] = data["sites"][:1]
    data["sites"][0]["power_cap_mw"] = 0.012
    data["jobs"].append(job("Z", gpus=64, hours=1.0))
    inst = instance_from_dict(data)
    index = build_index(inst)
    assert index.unplaceable_mandatory == ["Z"]
    assert "64 X" in index.unplaced["Z"] and "16" in index.unplaced["Z"]
    inst, index, model, out, _ = solve_case(data, elastic=True)
    lines = explain_slacks(model, inst)
    assert any(line.startswith("job Z (mandatory) cannot be placed: it needs 64 X") for line in lines)
    assert "site S: power needs 0.02 MW in period 0 but the ceiling is 0.012 MW (short by up to 0.008 MW)" \
        in lines
    assert model.slack_power_mw["S", 0].value == pytest.approx(0.008)


def test_elastic_model_explains_a_missed_hard_deadline():
    # A (2 periods) must end by period 1: impossible; the elastic model lets it end at 2.
    data = base(2, jobs=[job("A", deadline_period=1)])
    inst = instance_from_dict(data)
    index = build_index(inst)
    assert index.placements.empty and len(index.late_placements) == 1
    inst, index, model, out, _ = solve_case(data, elastic=True)
    assert explain_slacks(model, inst) == [
        "job A cannot meet its hard deadline (end by period 1): it ends 1.0 h late"]


def test_unplaceable_mandatory_job_makes_the_plain_model_infeasible():
    data = base(2, jobs=[job("A", gpus=64)])
    *_, out, _ = solve_case(data)
    assert out.status is Status.INFEASIBLE


# --------------------------------------------------------------------------- shipped data


def test_demo_builds_fast_with_every_family():
    inst = load_instance(ROOT / "data" / "demo" / "instance.yaml")
    t0 = time.perf_counter()
    index = build_index(inst)
    model = build_model(inst, index)
    assert time.perf_counter() - t0 < 10.0  # about 1 s on an idle core
    assert index.unplaced == {}
    # all four jobs have starts; the EU job only in the EU zone; the fine-tune only after the
    # pre-train's earliest end (12 periods of H100)
    p = index.placements
    assert set(p["j"]) == {"pretrain-8b", "finetune-70b", "eu-finetune", "eval-sweep"}
    assert set(p.loc[p["j"] == "eu-finetune", "s"]) == {"gcp-euw4"}
    assert p.loc[p["j"] == "finetune-70b", "t"].min() == 12
    for name in ("start", "serve", "unserved", "gpus_inf", "ondemand", "gpus_in_use", "power_mw",
                 "training_assign", "training_precedence", "inference_demand", "inference_capacity",
                 "inference_redundancy", "capacity_gpus", "capacity_ondemand", "power_cap",
                 "network_bandwidth", "cost", "emissions_t", "total_cost", "obj_cost", "obj_carbon"):
        assert hasattr(model, name), name
    assert len(model.inference_redundancy) > 0  # code-8b has N+1


@pytest.mark.slow
def test_demo_solves_optimally_and_verifies(tmp_path):
    # about 6 s of CPU for HiGHS (more wall time on a loaded machine); the solve command's
    # own tests cover the demo end to end in the default run
    from allocator.solve import solve_model

    inst = load_instance(ROOT / "data" / "demo" / "instance.yaml")
    index = build_index(inst)
    model = build_model(inst, index)
    out = solve_model(model, SolveOptions(time_limit_s=300))
    assert out.status is Status.OPTIMAL
    frames = extract_frames(model, inst, index)
    tr = frames["training"].set_index("job")
    assert tr.loc["eu-finetune", "site"] == "gcp-euw4"
    assert tr.loc["finetune-70b", "start_period"] >= tr.loc["pretrain-8b", "end_period"]
    assert sum(extract_costs(model).values()) == pytest.approx(out.objective, rel=1e-6)
    assert_verified(inst, model, out, frames, SolveOptions(), tmp_path)


def test_formulation_doc_has_one_section_per_family_in_registry_order():
    import re

    text = (ROOT / "docs" / "formulation.md").read_text()
    heads = re.findall(r"^## (\w+) \(`formulation/(\w+)\.py`\)", text, flags=re.M)
    heads = [(h, mod) for h, mod in heads if h[0].islower()]  # families; "Extraction" is not one
    assert [h for h, _ in heads] == list(FAMILY_NAMES)
    assert all(h == mod for h, mod in heads)
    inst = instance_from_dict(budget_case())
    model = build_model(inst, build_index(inst), elastic=True)
    for comp in model.component_objects((pyo.Var, pyo.Constraint, pyo.Expression, pyo.Objective)):
        assert f"`{comp.name}" in text, f"{comp.name} is not documented"


def test_start_values_from_schedule_reproduce_a_solved_plan():
    # solve, then load the schedule's decisions into a fresh model: every row holds and the
    # objective evaluates to the optimum ($7.60, see the inference test; $58 training)
    from allocator.formulation.extract import start_values_from_schedule

    for case, optimum in ((inference_case, 7.6), (training_case, 58.0)):
        inst, index, _, out, frames = solve_case(case())
        fresh = build_model(inst, index)
        matched = start_values_from_schedule(fresh, frames["training"], frames["inference_gpus"],
                                             frames["inference"])
        assert matched == len(frames["training"])
        assert pyo.value(fresh.obj_cost) == pytest.approx(optimum)
        for con in fresh.component_data_objects(pyo.Constraint, active=True):
            body = pyo.value(con.body)
            assert con.lower is None or body >= pyo.value(con.lower) - 1e-6, con.name
            assert con.upper is None or body <= pyo.value(con.upper) + 1e-6, con.name
