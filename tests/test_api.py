"""allocator.solve(instance, options) -> Result on tiny instances worked out by hand."""

from __future__ import annotations

import copy
import importlib
from pathlib import Path

import pytest

import allocator
from allocator import InputError
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


def test_api_from_a_path_and_summary_keys():
    res = allocator.solve(DATA / "demo" / "instance.yaml", time_limit_s=0.0)
    # no time at all: either no schedule yet or HiGHS's presolve/heuristics already had one
    assert res.status in (Status.NO_SOLUTION, Status.FEASIBLE, Status.OPTIMAL)
    for key in ("status", "objective", "bound", "gap", "costs", "build_s", "solve_s",
                "solver", "options", "instance", "explanation"):
        assert key in res.summary
    assert res.summary["instance"]["name"] == "demo"
    assert res.summary["options"]["time_limit_s"] == 0.0
    assert set(res.costs) <= set(COST_TERMS)
