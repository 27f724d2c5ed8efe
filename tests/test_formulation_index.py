"""Sparse index sets: which (job, option, site, start) and (service, region, site, type)
tuples exist, and why a job has none."""

from __future__ import annotations

import copy

import pytest
from test_formulation import base, inference_case, job

from allocator import instance_from_dict
from allocator.indexing import build_index, duration_periods, estimate_size


def index_of(data: dict):
    return build_index(instance_from_dict(copy.deepcopy(data)))


def starts(ix, j: str) -> list[tuple]:
    p = ix.placements[ix.placements["j"] == j]
    return sorted(zip(p["s"], p["o"].astype(int), p["t"].astype(int), strict=True))


def test_duration_is_ceil_of_hours_over_period_length():
    assert duration_periods(4.0, 4.0) == 1
    assert duration_periods(4.0000000001, 4.0) == 1  # rounding noise is not a period
    assert duration_periods(4.1, 4.0) == 2
    assert duration_periods(0.5, 1.0) == 1


def test_window_release_hard_deadline_and_horizon():
    # 10 periods; a 3-period job released at 2 with a hard deadline at 8 can start 2..5
    ix = index_of(base(10, jobs=[job("A", hours=2.5, release_period=2, deadline_period=8)]))
    assert [t for _, _, t in starts(ix, "A")] == [2, 3, 4, 5]
    row = ix.placements.iloc[0]
    assert (row["d"], row["end"], row["gpus"]) == (3, row["t"] + 3, 8)
    # the overruns (start 6 and 7, ending 9 and 10) are kept aside for the elastic model
    assert sorted(ix.late_placements["t"]) == [6, 7]
    assert sorted(ix.late_placements["late_h"]) == [1.0, 2.0]


def test_soft_deadline_keeps_late_starts_with_their_tardiness():
    ix = index_of(base(5, jobs=[job("A", deadline="soft", deadline_period=3, tardiness_usd_per_h=7.0)]))
    p = ix.placements.set_index("t")
    assert list(p.index) == [0, 1, 2, 3]
    assert list(p["tardiness_h"]) == [0.0, 0.0, 1.0, 2.0]
    assert list(p["tardiness_usd"]) == [0.0, 0.0, 7.0, 14.0]
    assert ix.late_placements.empty


def test_pool_size_residency_and_site_extra_cost():
    data = base(2, jobs=[job("A", gpus=8, hours=1.0, site_cost_usd={"E": 50.0}),
                         job("B", gpus=16, hours=1.0), job("C", hours=1.0, allowed_zones=["EU"])])
    data["sites"].append({"id": "E", "provider": "q", "zone": "EU", "power_cap_mw": 100.0,
                          "pools": [{"gpu_type": "X", "available": 16}]})
    ix = index_of(data)
    assert {s for s, _, _ in starts(ix, "A")} == {"S", "E"}
    assert {s for s, _, _ in starts(ix, "B")} == {"E"}  # S has 8 GPUs
    assert {s for s, _, _ in starts(ix, "C")} == {"E"}  # zone EU
    a = ix.placements[ix.placements["j"] == "A"].set_index("s")["site_extra_usd"]
    assert a["E"].tolist() == [50.0, 50.0] and a["S"].tolist() == [0.0, 0.0]


def test_power_window_uses_the_lowest_ceiling_of_the_run():
    # 8 GPUs x 1 kW = 0.008 MW; the ceiling dips to 0.005 MW in period 2, so a 2-period run
    # may not cover period 2: starts 0 and 3 only
    data = base(5, jobs=[job("A")])
    data["sites"][0]["power_cap_mw"] = [1.0, 1.0, 0.005, 1.0, 1.0]
    ix = index_of(data)
    assert [t for _, _, t in starts(ix, "A")] == [0, 3]


def test_dataset_route_required_and_priced():
    data = base(2, jobs=[job("A", hours=1.0, dataset_source="D", dataset_tb=2.0)])
    data["data_sources"] = [{"id": "D"}]
    ix = index_of(data)
    assert ix.unplaced == {"A": "no allowed site is connected to its data source 'D'"}
    data["links"] = [{"a": "D", "b": "S", "latency_ms": 1, "egress_usd_per_gb": 0.05}]
    ix = index_of(data)
    row = ix.placements.iloc[0]
    assert row["egress_usd"] == pytest.approx(2.0 * 1000 * 0.05)
    assert row["staging_gbps"] == pytest.approx(2.0 * 8000 / 3600)
    assert row["links"] == (0,)


def test_unplaced_reasons_name_the_cause():
    data = base(3, jobs=[job("big", gpus=64), job("eu", allowed_zones=["EU"]),
                         job("late", hours=3.0, release_period=2), job("after", predecessors=["late"]),
                         job("opt", gpus=64, mandatory=False, value_usd=1.0)])
    ix = index_of(data)
    assert "needs 64 X but the largest allowed pool offers 8" in ix.unplaced["big"]
    assert "zones EU" in ix.unplaced["eu"]
    assert "window" in ix.unplaced["late"]
    assert ix.unplaced["after"] == "its predecessor late cannot be placed"
    assert ix.unplaceable_mandatory == ["big", "eu", "late", "after"]


def test_predecessor_pushes_the_earliest_start():
    ix = index_of(base(6, jobs=[job("A", hours=3.0), job("B", hours=1.0, predecessors=["A"])]))
    assert min(t for _, _, t in starts(ix, "B")) == 3
    assert ix.precedences == [("B", "A")]


def test_flows_respect_slo_types_and_zones():
    ix = index_of(inference_case())
    assert sorted(zip(ix.flows["v"], ix.flows["r"], ix.flows["s"], ix.flows["g"], strict=True)) == [
        ("V", "Q", "T", "X"), ("V", "R", "S", "X")]
    # Q's demand is 0 in period 1: no serve tuple there
    assert sorted(zip(ix.serve["r"], ix.serve["t"], strict=True)) == [("Q", 0), ("R", 0), ("R", 1)]
    data = inference_case()
    data["services"][0]["allowed_zones"] = ["EU"]
    assert index_of(data).flows.empty


def test_estimate_size_grows_with_the_model():
    small = estimate_size(index_of(base(4, jobs=[job("A")])))
    large = estimate_size(index_of(base(40, jobs=[job("A"), job("B")])))
    for key in ("variables", "constraints", "nonzeros", "bytes"):
        assert 0 < small[key] < large[key]
