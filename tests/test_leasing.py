"""What to lease: reserved blocks and power ceilings as decisions, over demand scenarios.

Optima are worked out by hand below, and pinned by brute force: the sizing solve's optimum
equals the minimum, over every allowed combination of lease sizes, of fixed-capacity solves
with those sizes (with scenarios: of the probability-weighted sum of per-scenario solves).
The fixed-capacity instances are written out here by hand, not by allocator.leasing.fix.
"""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from test_formulation import base, job, leasing_case

import allocator
from allocator import instance_from_dict
from allocator.cli import main
from allocator.errors import InputError
from allocator.results import Status
from allocator.verify import verify

PRICE_MW_H = 100.0
OFFERS = {"1y": 2.0, "3y": 1.5}
#: every block the offers allow (term, GPUs), and every ceiling (MW)
BLOCKS = [("none", 0), ("1y", 4), ("1y", 8), ("1y", 12), ("3y", 12), ("3y", 16)]
CEILINGS = [0.008, 0.012, 0.016]


def fixed_case(data: dict, term: str, gpus: int, mw: float) -> dict:
    """``data`` (a leasing_case) with its block and ceiling fixed, written by hand."""
    d = copy.deepcopy(data)
    site = d["sites"][0]
    del site["power_options"]
    site["power_cap_mw"] = mw
    site["power_price_usd_per_mw_h"] = PRICE_MW_H
    pool = site["pools"][0]
    del pool["reserve_options"]
    pool["reserved"] = gpus
    pool["reserved_price_usd_per_gpu_h"] = OFFERS[term] if gpus else 0.0
    return d


def fixed_optimum(data: dict, term: str, gpus: int, mw: float) -> float | None:
    r = allocator.solve(fixed_case(data, term, gpus, mw))
    if r.status is Status.INFEASIBLE:
        return None
    assert r.status is Status.OPTIMAL, r.message
    return r.objective


def brute_force(cases: list[tuple[float, dict]]) -> tuple[float, tuple]:
    """min over (block, ceiling) of sum_k p_k * fixed optimum of case k (inf if infeasible)."""
    best = (float("inf"), None)
    for (term, gpus), mw in itertools.product(BLOCKS, CEILINGS):
        total = 0.0
        for p, data in cases:
            v = fixed_optimum(data, term, gpus, mw)
            if v is None:
                total = float("inf")
                break
            total += p * v
        if total < best[0] - 1e-9:
            best = (total, (term, gpus, mw))
    return best


def big_b(data: dict) -> dict:
    """The 'big' scenario written by hand: B needs 8 GPUs instead of 4."""
    d = copy.deepcopy(data)
    d["jobs"][1]["options"][0]["gpus"] = 8
    return d


def with_scenarios(data: dict) -> dict:
    d = copy.deepcopy(data)
    d["scenarios"] = [{"id": "base", "probability": 0.5},
                      {"id": "big", "probability": 0.5,
                       "overrides": [{"path": "jobs[B].options[0].gpus", "value": 8}]}]
    return d


def export_and_verify(result, data: dict, out: Path) -> None:
    result.export(out, force=True)
    ver = verify(instance_from_dict(data), out)
    assert ver.ok, "\n".join(map(str, ver.violations))


# --------------------------------------------------------------------------- one scenario


def test_sizing_optimum_by_hand(tmp_path):
    # usage is A 8 GPUs in both periods plus B 4 GPUs in one: (12, 8), 20 GPU-h.
    # Ceiling: 12 GPUs x 1 kW = 0.012 MW at least -> 0.012 x $100 x 2 h = $2.40.
    # Blocks over 2 h: none 20 x $3 = 60; 1y 4: 16 + 12 x 3 = 52; 1y 8: 32 + 4 x 3 = 44;
    # 1y 12: 48; 3y 12: 12 x 1.5 x 2 = 36 (no on-demand); 3y 16: 48. Best 3y 12.
    # Optimum $36 + $2.40 = $38.40.
    r = allocator.solve(leasing_case())
    assert r.status is Status.OPTIMAL
    assert r.objective == pytest.approx(38.4)
    assert r.costs["reserved_lease"] == pytest.approx(36.0)
    assert r.costs["power_lease"] == pytest.approx(2.4)
    assert r.costs["ondemand_lease"] == pytest.approx(0.0)
    leases = r.frames["leases"].set_index("resource")
    assert (leases.loc["X", "term"], leases.loc["X", "size"]) == ("3y", 12)
    assert leases.loc["power", "size"] == pytest.approx(0.012)
    assert leases["cost_usd"].sum() == pytest.approx(38.4)
    assert r.summary["leases"][0]["site"] == "S"
    export_and_verify(r, leasing_case(), tmp_path / "out")


def test_sizing_optimum_equals_brute_force_over_fixed_sizes():
    value, choice = brute_force([(1.0, leasing_case())])
    assert value == pytest.approx(38.4) and choice == ("3y", 12, 0.012)
    assert allocator.solve(leasing_case()).objective == pytest.approx(value)


@pytest.mark.parametrize("od_price, want", [
    # on-demand at $1.2: none = 20 x 1.2 = 24 beats every block (3y 12 = 36): no block
    (1.2, ("none", 0, 24.0 + 2.4)),
    # at $1.9: none 38; 1y 4: 16 + 16 x 1.9 = 46.4; 3y 12: 36 -> 3y 12
    (1.9, ("3y", 12, 36.0 + 2.4)),
])
def test_on_demand_price_moves_the_choice_as_brute_force_says(od_price, want):
    data = leasing_case()
    data["sites"][0]["pools"][0]["ondemand_price_usd_per_gpu_h"] = od_price
    value, choice = brute_force([(1.0, data)])
    assert (choice[0], choice[1]) == want[:2]
    assert value == pytest.approx(want[2])
    r = allocator.solve(data)
    assert r.objective == pytest.approx(value)
    leases = r.frames["leases"].set_index("resource")
    assert (leases.loc["X", "term"], int(leases.loc["X", "size"])) == want[:2]


# --------------------------------------------------------------------------- scenarios


def test_scenarios_share_the_leases_by_hand(tmp_path):
    # base: usage (12, 8); big (B 8 GPUs): (16, 8), 24 GPU-h; p = 0.5 each.
    # Ceiling: big needs 16 GPUs -> 0.016 MW, $3.20 (in both: it is shared).
    # Blocks, expected: 3y 12: 36 + 0.5 x (0 + 4 x 3) = 42; 3y 16: 48; 1y 8: 32 + 0.5 x (12 + 24)
    # = 50; 1y 12: 48 + 6 = 54; none 0.5 x (60 + 72) = 66. Best 3y 12: $42 + $3.20 = $45.20.
    # Scenario costs: base 36 + 3.2 = 39.2, big 36 + 12 + 3.2 = 51.2.
    data = with_scenarios(leasing_case())
    r = allocator.solve(data)
    assert r.status is Status.OPTIMAL
    assert r.objective == pytest.approx(45.2)
    assert r.total_cost == pytest.approx(45.2)
    assert set(r.scenarios) == {"base", "big"}
    assert r.scenarios["base"].total_cost == pytest.approx(39.2)
    assert r.scenarios["big"].total_cost == pytest.approx(51.2)
    assert r.scenarios["big"].costs["ondemand_lease"] == pytest.approx(12.0)
    leases = r.frames["leases"].set_index("resource")
    assert (leases.loc["X", "term"], leases.loc["X", "size"]) == ("3y", 12)
    assert leases.loc["power", "size"] == pytest.approx(0.016)
    table = r.frames["scenarios"].set_index("scenario")
    assert table.loc["big", "total_cost_usd"] == pytest.approx(51.2)
    assert r.summary["expected_cost_usd"] == pytest.approx(45.2)
    assert [s["id"] for s in r.summary["scenarios"]] == ["base", "big"]
    out = tmp_path / "out"
    export_and_verify(r, data, out)
    for sid in ("base", "big"):
        folder = out / "scenarios" / sid
        assert (folder / "training.csv").is_file() and (folder / "leases.csv").is_file()
        # each scenario folder is verifiable on its own, with the instance written beside it
        ver = verify(allocator.load_instance(folder / "instance.yaml"), folder)
        assert ver.ok, "\n".join(map(str, ver.violations))


def test_scenario_optimum_equals_brute_force_of_weighted_fixed_solves():
    value, choice = brute_force([(0.5, leasing_case()), (0.5, big_b(leasing_case()))])
    assert value == pytest.approx(45.2) and choice == ("3y", 12, 0.016)
    assert allocator.solve(with_scenarios(leasing_case())).objective == pytest.approx(value)


def test_deciding_on_one_scenario_costs_more_than_deciding_over_both():
    # the value of the stochastic solution: leases sized for 'base' alone (3y 12, 0.012 MW)
    # cannot run 'big' at all (16 GPUs need 0.016 MW), so hedging is worth more than its cost
    assert fixed_optimum(big_b(leasing_case()), "3y", 12, 0.012) is None
    assert fixed_optimum(big_b(leasing_case()), "3y", 12, 0.016) == pytest.approx(51.2)


def test_a_job_only_in_some_scenarios():
    # job C (8 GPUs x 1 h) exists only in 'late'; 'base' as the tiny case; p = 0.75 / 0.25.
    # late usage (A 8 + B 4 + C 8): at best (16, 12) -> ceiling 0.016, $3.20.
    # Blocks: 3y 12: 36 + 0.25 x 4 x 3 = 39; 3y 16: 48; 1y 12: 48 + 3 = 51. -> $39 + $3.20 = $42.20
    data = leasing_case()
    data["jobs"].append(job("C", gpus=8, hours=1.0, scenarios=["late"]))
    data["scenarios"] = [{"id": "base", "probability": 0.75}, {"id": "late", "probability": 0.25}]
    r = allocator.solve(data)
    assert r.objective == pytest.approx(42.2)
    assert set(r.scenarios["base"].frames["training"]["job"]) == {"A", "B"}
    assert set(r.scenarios["late"].frames["training"]["job"]) == {"A", "B", "C"}
    late = copy.deepcopy(leasing_case())
    late["jobs"].append(job("C", gpus=8, hours=1.0))
    value, _ = brute_force([(0.75, leasing_case()), (0.25, late)])
    assert r.objective == pytest.approx(value)


# --------------------------------------------------------------------------- verify


def test_verify_refuses_a_block_the_offers_do_not_allow(tmp_path):
    r = allocator.solve(leasing_case())
    out = tmp_path / "out"
    r.export(out)
    leases = (out / "leases.csv").read_text()
    (out / "leases.csv").write_text(leases.replace("S,X,3y,12.0,GPUs,36.0", "S,X,3y,14.0,GPUs,42.0"))
    ver = verify(instance_from_dict(leasing_case()), out)
    assert "lease-size" in {v.rule for v in ver.violations}


def test_verify_refuses_a_schedule_that_overruns_its_leased_ceiling(tmp_path):
    r = allocator.solve(leasing_case())
    out = tmp_path / "out"
    r.export(out)
    text = (out / "leases.csv").read_text()
    assert "S,power,lease,0.012,MW,2.4" in text
    (out / "leases.csv").write_text(text.replace("S,power,lease,0.012,MW,2.4", "S,power,lease,0.008,MW,1.6"))
    rules = {v.rule for v in verify(instance_from_dict(leasing_case()), out).violations}
    assert "power-cap" in rules


def test_verify_checks_every_scenario_against_the_shared_leases(tmp_path):
    data = with_scenarios(leasing_case())
    r = allocator.solve(data)
    out = tmp_path / "out"
    r.export(out)
    big = out / "scenarios" / "big" / "leases.csv"
    big.write_text(big.read_text().replace("3y,12.0", "3y,16.0").replace(",36.0", ",48.0"))
    rules = {v.rule for v in verify(instance_from_dict(data), out).violations}
    assert "scenario-leases" in rules


# --------------------------------------------------------------------------- bad input


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "instance.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _offer(data: dict) -> dict:
    return data["sites"][0]["pools"][0]["reserve_options"][0]


@pytest.mark.parametrize("change, needles", [
    (lambda d: _offer(d).update(max_gpus=2), ["max_gpus (2) is below min_gpus (4)"]),
    (lambda d: _offer(d).update(step_gpus=3), ["step 3 does not divide the range 4 to 12"]),
    (lambda d: d["sites"][0]["power_options"].update(step_mw=0.005), ["does not divide the range"]),
    (lambda d: d["sites"][0].update(power_cap_mw=1.0), ["power_cap_mw and power_options together"]),
    (lambda d: d["sites"][0]["pools"][0].update(reserved=4), ["reserve_options together"]),
    (lambda d: _offer(d).update(max_gpus=20, step_gpus=4), ["max_gpus (20) exceeds available (16)"]),
    (lambda d: d.update(scenarios=[{"id": "a", "probability": 0.5}, {"id": "b", "probability": 0.6}]),
     ["probabilities sum to 1.1"]),
    (lambda d: d.update(scenarios=[{"id": "a", "probability": 1.0,
                                    "overrides": [{"path": "jobs[Z].release_period", "value": 1}]}]),
     ["jobs[Z] matches nothing", "scenarios[0] (a)"]),
    (lambda d: d.update(scenarios=[{"id": "a", "probability": 1.0, "overrides": [
        {"path": "sites[S].pools[X].reserve_options[0].max_gpus", "value": 8}]}]),
     ["a scenario cannot change them"]),
    (lambda d: d["jobs"][0].update(scenarios=["nope"]), ["'nope' is no scenario"]),
    (lambda d: d.update(scenarios=[{"id": "../up", "probability": 1.0}]), ["scenarios"]),
])
def test_bad_lease_input_is_exit_2_naming_field_and_value(tmp_path, change, needles):
    data = leasing_case()
    change(data)
    res = run("solve", write(tmp_path, data), "--out", tmp_path / "out")
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    for needle in needles:
        assert needle in res.output, res.output


def test_leases_that_cannot_cover_the_mandatory_work_are_explained(tmp_path):
    # B now needs 12 GPUs: with A, 20 > 16 available... within the pool, but the ceiling
    # allows at most 16 GPUs (0.016 MW): 20 GPUs in one period cannot run, and A and B
    # cannot avoid overlapping in 2 periods (A runs in both)
    data = leasing_case()
    data["jobs"][1]["options"][0]["gpus"] = 12
    data["sites"][0]["pools"][0]["available"] = 24
    res = run("solve", write(tmp_path, data), "--out", tmp_path / "out")
    assert res.exit_code == 3, res.output
    assert "power" in res.output and "S" in res.output


def test_lns_and_greedy_are_refused_for_sizing(tmp_path):
    path = write(tmp_path, leasing_case())
    for flag in (["--strategy", "lns"], ["--heuristic", "greedy"]):
        res = run("solve", path, "--out", tmp_path / "o", *flag)
        assert res.exit_code == 2, res.output
        assert "does not decide leases" in res.output
    with pytest.raises(InputError):
        allocator.solve(leasing_case(), strategy="lns")


def test_cli_writes_leases_and_scenario_folders(tmp_path):
    data = with_scenarios(leasing_case())
    path = write(tmp_path, data)
    out = tmp_path / "out"
    res = run("solve", path, "--out", out)
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["expected_cost_usd"] == pytest.approx(45.2)
    assert {s["id"]: s["total_cost_usd"] for s in summary["scenarios"]} == pytest.approx(
        {"base": 39.2, "big": 51.2})
    assert (out / "leases.csv").read_text().splitlines()[0] == "site,resource,term,size,unit,cost_usd"
    res = run("verify", path, out)
    assert res.exit_code == 0, res.output
    # --force replaces the scenario folders allocator wrote, and keeps a user's own file
    (out / "notes.txt").write_text("mine")
    res = run("solve", path, "--out", out, "--force")
    assert res.exit_code == 0, res.output
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "scenarios" / "big" / "summary.json").is_file()


def test_an_instance_without_decisions_is_unchanged_by_the_family():
    # no reserve_options, no power_options: the leasing family adds no variable or row
    from allocator.formulation import build_model
    from allocator.indexing import build_index

    inst = instance_from_dict(base(2, jobs=[job("A")]))
    model = build_model(inst, build_index(inst))
    assert len(model.reserve_take) == 0 and len(model.power_steps) == 0
    assert len(model.leasing_offer) == 0 and len(model.leasing_steps) == 0


def test_a_sweep_of_the_mw_price_solves_each_point_as_a_sizing_instance(tmp_path):
    # With scenarios, 'big' forces the 0.016 MW ceiling, whatever its price: power costs
    # 0.016 x price x 2 h = 0.32, 3.2, 32 at $10, $100, $1000 per MW-h. The GPUs cost $42
    # expected at on-demand $3 (test_scenarios_share_the_leases_by_hand); at $1.2 no block
    # pays: 0.5 x (20 + 24) GPU-h x 1.2 = 26.4.
    path = write(tmp_path, with_scenarios(leasing_case()))
    spec = tmp_path / "sweep.yaml"
    spec.write_text(yaml.safe_dump({"parameters": [
        {"path": "sites[S].power_options.price_usd_per_mw_h", "values": [10.0, 100.0, 1000.0]},
        {"path": "sites[S].pools[X].ondemand_price_usd_per_gpu_h", "values": [1.2, 3.0]}]}))
    # one worker: in-process (a forked worker of a process that has run HiGHS threads can hang)
    res = run("sweep", path, spec, "--out", tmp_path / "sw", "--workers", "1")
    assert res.exit_code == 0, res.output
    import pandas as pd

    df = pd.read_parquet(tmp_path / "sw" / "results.parquet")
    got = {(r[0], r[1]): r[2] for r in df[["sites[S].power_options.price_usd_per_mw_h",
                                          "sites[S].pools[X].ondemand_price_usd_per_gpu_h",
                                          "total_cost_usd"]].itertuples(index=False)}
    want = {(p, od): 0.016 * p * 2 + (26.4 if od == 1.2 else 42.0)
            for p in (10.0, 100.0, 1000.0) for od in (1.2, 3.0)}
    assert got == pytest.approx(want)
    assert df["lease_S_power"].tolist() == pytest.approx([0.016] * 6)
    assert set(df.loc[df["sites[S].pools[X].ondemand_price_usd_per_gpu_h"] == 3.0, "lease_S_X"]) == {12.0}
    assert set(df.loc[df["sites[S].pools[X].ondemand_price_usd_per_gpu_h"] == 1.2, "lease_S_X"]) == {0.0}


def test_the_top_summary_weighs_unserved_demand_by_probability():
    # demand far above what 16 GPUs serve (1,600 tok/s), doubled in 'peak' (p = 0.25): both
    # scenarios leave most of it unserved; the top summary's figure is the expectation
    data = leasing_case()
    data["regions"] = [{"id": "R"}]
    data["links"] = [{"a": "S", "b": "R", "latency_ms": 10}]
    data["services"] = [{"id": "V", "tokens_per_s_per_gpu": {"X": 100.0}, "latency_slo_ms": 50,
                         "unserved_usd_per_mtok": 1.0, "demand": {"R": 100000.0}}]
    data["scenarios"] = [{"id": "base", "probability": 0.75},
                         {"id": "peak", "probability": 0.25,
                          "overrides": [{"path": "services[V].demand[R]", "scale": 2.0}]}]
    r = allocator.solve(data)
    assert r.status is Status.OPTIMAL
    base_u = r.scenarios["base"].summary["unserved_mtok"]
    peak_u = r.scenarios["peak"].summary["unserved_mtok"]
    # at least all demand but 16 GPUs' worth: 100,000 - 1,600 tok/s x 2 h x 3600 s / 1e6
    assert base_u >= (100000 - 1600) * 2 * 3600 / 1e6 - 1e-6
    assert peak_u > base_u
    assert r.summary["unserved_mtok"] == pytest.approx(0.75 * base_u + 0.25 * peak_u)
