"""The independent verifier: a hand-built schedule whose costs are worked out by hand
verifies; hand-broken variants are caught, each by the rule it breaks.

Two kinds of breakage are tried:
- a forgery: the broken decisions exported with tables and costs that are consistent with
  them (as a buggy solver would), so only the broken rule itself can give it away; the
  test asserts exactly that rule and nothing else;
- an edit in place: one value of an exported file changed by hand, leaving everything else
  as it was; the rule broken must be among the violations found.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from allocator import instance_from_dict
from allocator.cli import main
from allocator.io import dump_instance
from allocator.results import Result, Schedule, Status, read_schedule, summary_dict
from allocator.verify import evaluate, verify, verify_schedule

# --------------------------------------------------------------------------- the tiny case


def tiny_dict() -> dict:
    """4 periods of 1 h; three sites; three mandatory jobs, one optional; one service."""
    return {
        "name": "tiny",
        "horizon": {"start": "2026-01-01T00:00:00Z", "periods": 4, "period_hours": 1.0},
        "gpu_types": [{"id": "H100", "power_kw": 1.0}],
        "sites": [
            {"id": "A", "provider": "colossus", "zone": "US", "power_cap_mw": 0.03, "pue": 1.25,
             "energy_price_usd_per_mwh": 50.0, "carbon_g_per_kwh": 400.0,
             "pools": [{"gpu_type": "H100", "available": 32, "reserved": 16,
                        "reserved_price_usd_per_gpu_h": 2.0, "ondemand_price_usd_per_gpu_h": 3.0}]},
            {"id": "B", "provider": "aws", "zone": "EU", "power_cap_mw": 0.1, "pue": 1.0,
             "carbon_g_per_kwh": 100.0,
             "pools": [{"gpu_type": "H100", "available": 16, "ondemand_price_usd_per_gpu_h": 5.0}]},
            {"id": "C", "provider": "gcp", "zone": "US", "power_cap_mw": 1.0, "pue": 1.0,
             "pools": [{"gpu_type": "H100", "available": 16, "ondemand_price_usd_per_gpu_h": 6.0}]},
        ],
        "regions": [{"id": "r-us"}],
        "data_sources": [{"id": "lake"}],
        "links": [
            {"a": "A", "b": "r-us", "latency_ms": 10, "bandwidth_gbps": 1.0, "egress_usd_per_gb": 0.02},
            {"a": "B", "b": "r-us", "latency_ms": 50, "bandwidth_gbps": 1.0, "egress_usd_per_gb": 0.05},
            {"a": "lake", "b": "A", "latency_ms": 30, "bandwidth_gbps": 10.0, "egress_usd_per_gb": 0.01},
            {"a": "lake", "b": "B", "latency_ms": 30, "bandwidth_gbps": 10.0, "egress_usd_per_gb": 0.01},
        ],
        "jobs": [
            {"id": "j1", "options": [{"gpu_type": "H100", "gpus": 16, "hours": 2}], "deadline_period": 3,
             "dataset_source": "lake", "dataset_tb": 1.0},
            {"id": "j2", "options": [{"gpu_type": "H100", "gpus": 8, "hours": 3}], "allowed_zones": ["EU"],
             "deadline": "soft", "deadline_period": 2, "tardiness_usd_per_h": 100.0},
            {"id": "j3", "options": [{"gpu_type": "H100", "gpus": 32, "hours": 1}], "mandatory": False,
             "value_usd": 500.0},
            {"id": "j4", "options": [{"gpu_type": "H100", "gpus": 8, "hours": 1}], "predecessors": ["j1"],
             "release_period": 1, "deadline_period": 3, "allowed_sites": ["A", "C"],
             "site_cost_usd": {"A": 40.0}},
        ],
        "services": [
            {"id": "v", "tokens_per_s_per_gpu": {"H100": 1000.0}, "latency_slo_ms": 20.0,
             "bytes_per_token": 4.0, "unserved_usd_per_mtok": 10.0,
             "demand": {"r-us": [4000.0, 4000.0, 2000.0, 0.0]}},
        ],
        "carbon_price_usd_per_t": 50.0,
        "budget_usd": 1000.0,
    }


def tiny_decisions() -> dict[str, pd.DataFrame]:
    """j1 on A in periods 0-1, j2 on B in 0-2 (one period late), j4 on A in period 2, j3
    dropped; service v holds 4, 4, 2 GPUs on A and serves 4000, 3000, 2000 tokens/s."""
    return {
        "training": pd.DataFrame({"job": ["j1", "j2", "j4"], "option": [0, 0, 0], "site": ["A", "B", "A"],
                                  "gpu_type": ["H100"] * 3, "gpus": [16, 8, 8], "start_period": [0, 0, 2]}),
        "inference_gpus": pd.DataFrame({"service": ["v"] * 3, "site": ["A"] * 3, "gpu_type": ["H100"] * 3,
                                        "period": [0, 1, 2], "gpus": [4, 4, 2]}),
        "inference": pd.DataFrame({"service": ["v"] * 3, "region": ["r-us"] * 3, "site": ["A"] * 3,
                                   "gpu_type": ["H100"] * 3, "period": [0, 1, 2],
                                   "tokens_per_s": [4000.0, 3000.0, 2000.0]}),
    }


# The costs of tiny_decisions, by hand (H = 1 h, T = 4):
#   GPUs in use on A: j1 16 + v 4 = 20 in periods 0 and 1, j4 8 + v 2 = 10 in period 2, 0 in 3;
#   on B: j2 8 in periods 0-2. C idle.
#   reserved_lease: A 16 GPUs x $2 x 1 h x 4 periods                         = 128
#   ondemand_lease: A (20-16) x 2 periods x $3 = 24; B 8 x 3 periods x $5 = 120 = 144
#   power A = GPUs x 1 kW x 1.25 / 1000: 0.025, 0.025, 0.0125 MW -> 0.0625 MWh
#   energy: A 0.0625 MWh x $50                                                = 3.125
#   emissions: A 0.0625 x 400 / 1000 = 0.025 t; B 3 x 0.008 MWh x 100 / 1000 = 0.0024 t
#                                                                   total = 0.0274 t
#   carbon: 0.0274 t x $50                                                    = 1.37
#   egress: j1 1 TB x 1000 GB x $0.01 (lake-A) = 10; inference (4000 + 3000 + 2000) tok/s
#           x 4 B x 3600 s / 1e9 = 0.1296 GB x $0.02 = 0.002592             = 10.002592
#   site_extra: j4 on A                                                       = 40
#   tardiness: j2 ends at period 3, soft deadline 2 -> 1 h x $100             = 100
#   unserved: period 1 misses 1000 tok/s x 3600 s / 1e6 = 3.6 Mtok x $10      = 36
#   dropped_value: j3 (optional) does not run                                 = 500
#   total = 962.497592; budget terms 128 + 144 + 3.125 + 10.002592 + 40 = 325.127592 <= 1000
HAND_COSTS = {
    "reserved_lease": 128.0, "ondemand_lease": 144.0, "energy": 3.125, "egress": 10.002592,
    "site_extra": 40.0, "tardiness": 100.0, "unserved": 36.0, "dropped_value": 500.0, "carbon": 1.37,
    "migration": 0.0,  # no previous plan: nothing moved
    "power_lease": 0.0,  # no site leases its power ceiling by the MW-hour
}
HAND_TOTAL = 962.497592


def result_for(inst, decisions, **summary) -> Result:
    """A Result as a solver would return it, its tables and figures derived from the
    decisions (consistent, whatever the decisions are)."""
    ev = evaluate(inst, decisions)
    base = {"instance": {"name": inst.name, "horizon": inst.horizon.model_dump(mode="json")},
            "dropped_jobs": ev.dropped_jobs, "unserved_mtok": ev.unserved_mtok}
    base.update(summary)
    return Result(status=Status.OPTIMAL, objective=ev.total_cost_usd, bound=ev.total_cost_usd, gap=0.0,
                  costs=dict(ev.costs), emissions_t=ev.emissions_t, frames=ev.frames, summary=base,
                  options={"objective": "cost"}, solver="by hand")


def in_memory(result: Result) -> Schedule:
    """The schedule as read_schedule would return it after export, without the disk."""
    return Schedule(frames=dict(result.frames), summary=summary_dict(result, fmt="csv"))


@pytest.fixture(scope="module")
def tiny():
    return instance_from_dict(tiny_dict())


@pytest.fixture(scope="module")
def good_dir(tiny, tmp_path_factory):
    return result_for(tiny, tiny_decisions()).export(tmp_path_factory.mktemp("good") / "schedule")


def rules(violations) -> set[str]:
    return {v.rule for v in violations}


# --------------------------------------------------------------------------- the valid schedule


def test_hand_computed_costs_and_tables(tiny):
    ev = evaluate(tiny, tiny_decisions())
    assert ev.violations == []
    assert ev.costs == pytest.approx(HAND_COSTS, rel=1e-12, abs=1e-12)
    assert ev.total_cost_usd == pytest.approx(HAND_TOTAL, rel=1e-12)
    assert ev.emissions_t == pytest.approx(0.0274, rel=1e-12)
    assert ev.unserved_mtok == pytest.approx(3.6, rel=1e-12)
    assert ev.dropped_jobs == ["j3"]
    sg = ev.frames["site_gpus"].set_index(["site", "period"])
    assert sg.loc[("A", 0), "gpus_in_use"] == 20 and sg.loc[("A", 0), "gpus_ondemand"] == 4
    assert sg.loc[("A", 2), "gpus_training"] == 8 and sg.loc[("A", 2), "gpus_inference"] == 2
    assert sg.loc[("B", 1), "gpus_ondemand"] == 8
    sites = ev.frames["sites"].set_index(["site", "period"])
    assert sites.loc[("A", 0), "power_mw"] == pytest.approx(0.025)
    # site A, period 0: energy 0.025 x $50 + reserved 16 x $2 + on-demand 4 x $3
    assert sites.loc[("A", 0), "cost_usd"] == pytest.approx(1.25 + 32 + 12)
    train = ev.frames["training"].set_index("job")
    assert train.loc["j2", "end_period"] == 3 and train.loc["j2", "tardiness_h"] == 1.0
    assert train.loc["j2", "end_time"] == "2026-01-01T03:00:00Z"
    links = ev.frames["links"].set_index(["link", "period"])
    # 1 TB over 2 periods of 1 h: 8000 Gb / 7200 s
    assert links.loc[(2, 0), "traffic_gbps"] == pytest.approx(8000 / 7200)
    assert links.loc[(2, 1), "egress_gb"] == pytest.approx(500.0)
    unserved = ev.frames["unserved"].set_index("period")
    assert unserved.loc[1, "unserved_tokens_per_s"] == 1000.0
    assert list(unserved.index) == [0, 1, 2]  # period 3 has no demand and no traffic


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_valid_schedule_verifies_in_every_format(tiny, tmp_path, fmt):
    out = result_for(tiny, tiny_decisions()).export(tmp_path / fmt, fmt=fmt)
    assert verify_schedule(tiny, out) == []


def test_verify_cli_ok(tiny, good_dir, tmp_path):
    inst_file = dump_instance(tiny, tmp_path / "tiny.yaml")
    res = CliRunner().invoke(main, ["verify", str(inst_file), str(good_dir)])
    assert res.exit_code == 0, res.output
    assert "schedule OK: 3 jobs, 3 flows, costs match (total $962.50)" in res.output


# --------------------------------------------------------------------------- forgeries


def _edit(change):
    d = tiny_decisions()
    change(d)
    return d


def _set(table, mask_col, mask_val, **values):
    def change(d):
        df = d[table]
        rows = df[mask_col] == mask_val
        for col, v in values.items():
            df.loc[rows, col] = v
    return change


def _drop(table, col, val):
    def change(d):
        d[table] = d[table][d[table][col] != val].reset_index(drop=True)
    return change


def _append(table, **row):
    def change(d):
        d[table] = pd.concat([d[table], pd.DataFrame([row])], ignore_index=True)
    return change


FORGERIES = {
    # j1 (16 GPUs) onto B, where j2 already holds 8 of 16
    "job moved onto a full site": (_set("training", "job", "j1", site="B"), {"capacity-gpus"}),
    # j4 (1 h, hard deadline period 3) started in period 3 ends at 4
    "job past its hard deadline": (_set("training", "job", "j4", start_period=3), {"training-deadline"}),
    # j2 may run only in zone EU; C is in US
    "job in a disallowed zone": (_set("training", "job", "j2", site="C"), {"training-allowed"}),
    # j4 may run on A or C only
    "job on a disallowed site": (_set("training", "job", "j4", site="B"), {"training-allowed"}),
    "mandatory job missing": (_drop("training", "job", "j4"), {"training-mandatory"}),
    # j4 on C in period 1 while its predecessor j1 runs until period 2
    "job before its predecessor ends": (_set("training", "job", "j4", site="C", start_period=1),
                                        {"training-precedence"}),
    "job before its release": (_set("training", "job", "j4", site="C", start_period=0),
                               {"training-release", "training-precedence"}),
    # j2 (3 periods) started in period 2 would run past the 4-period horizon
    "job past the horizon": (_set("training", "job", "j2", start_period=2), {"training-horizon"}),
    "job with the wrong GPU count": (_set("training", "job", "j1", gpus=8), {"training-option"}),
    "job option that does not exist": (_set("training", "job", "j1", option=1), {"training-option"}),
    "job placed twice": (_append("training", job="j2", option=0, site="B", gpu_type="H100", gpus=8,
                                 start_period=0), {"training-once"}),
    "unknown job": (_append("training", job="j9", option=0, site="C", gpu_type="H100", gpus=1,
                            start_period=0), {"training-unknown"}),
    # 28 idle service GPUs on A in period 3: 28 <= 32 GPUs but 28 x 1.25 kW = 35 kW > 30 kW
    "power above the ceiling": (_append("inference_gpus", service="v", site="A", gpu_type="H100",
                                        period=3, gpus=28), {"power-cap"}),
    # period 0 served from B (50 ms to r-us; the SLO is 20 ms), its GPUs moved along
    "flow outside the latency SLO": (
        lambda d: (_set("inference", "period", 0, site="B")(d), _set("inference_gpus", "period", 0, site="B")(d)),
        {"inference-slo"}),
    # 3000 tokens/s on 2 GPUs of 1000 tokens/s
    "served above capacity": (_set("inference_gpus", "period", 1, gpus=2), {"inference-capacity"}),
    # 3000 + 2000 > 4000 demanded in period 0 (capacity raised so only demand is broken)
    "served above demand": (
        lambda d: (_set("inference", "period", 0, tokens_per_s=5000.0)(d),
                   _set("inference_gpus", "period", 0, gpus=5)(d)),
        {"inference-demand"}),
    # GPUs held on a pool the site does not have
    "GPUs on a missing pool": (_append("inference_gpus", service="v", site="C", gpu_type="H200",
                                       period=0, gpus=1), {"capacity-pool"}),
}


@pytest.mark.parametrize("case", list(FORGERIES))
def test_forged_schedule_is_caught_by_its_rule(tiny, case):
    change, expected = FORGERIES[case]
    found = verify(tiny, in_memory(result_for(tiny, _edit(change)))).violations
    assert rules(found) == expected, "\n".join(map(str, found))
    assert all(v.message for v in found)


@pytest.mark.parametrize("change, expected", [
    # the same schedule checked against an instance whose limits it breaks
    (lambda d: d["links"][2].update(bandwidth_gbps=1.0), "network-bandwidth"),  # 1.11 Gb/s > 1
    (lambda d: d.update(budget_usd=300.0), "budget-cap"),  # 325.13 > 300
    (lambda d: d["services"][0].update(redundancy=True), "inference-redundancy"),  # A serves alone
    (lambda d: d["sites"][0].update(power_cap_mw=0.02), "power-cap"),  # 25 kW > 20 kW
    (lambda d: d["sites"][0]["pools"][0].update(available=19, reserved=16), "capacity-gpus"),
])
def test_limits_of_the_instance_are_checked(change, expected):
    data = tiny_dict()
    change(data)
    inst = instance_from_dict(data)
    assert rules(verify(inst, in_memory(result_for(inst, tiny_decisions()))).violations) == {expected}


def test_redundancy_holds_when_a_second_site_can_take_over():
    data = tiny_dict()
    data["services"][0]["redundancy"] = True
    data["services"][0]["latency_slo_ms"] = 60.0  # B (50 ms) may serve too
    inst = instance_from_dict(data)
    # B holds the same GPUs as A: losing either leaves 4000, 4000, 2000 tokens/s
    dec = tiny_decisions()
    extra = dec["inference_gpus"].assign(site="B")
    dec["inference_gpus"] = pd.concat([dec["inference_gpus"], extra], ignore_index=True)
    assert verify(inst, in_memory(result_for(inst, dec))).violations == []


# --------------------------------------------------------------------------- edits in place


def _copy(good_dir: Path, tmp_path: Path) -> Path:
    import shutil

    dst = tmp_path / "edited"
    shutil.copytree(good_dir, dst)
    return dst


def _edit_csv(path: Path, match: dict, **values) -> None:
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    rows = pd.Series(True, index=df.index)
    for k, v in match.items():
        rows &= df[k] == str(v)
    assert rows.sum() == 1
    for k, v in values.items():
        df.loc[rows, k] = str(v)
    df.to_csv(path, index=False)


def _edit_summary(path: Path, change) -> None:
    data = json.loads((path / "summary.json").read_text())
    change(data)
    (path / "summary.json").write_text(json.dumps(data))


def test_edited_cost_is_caught(tiny, good_dir, tmp_path):
    d = _copy(good_dir, tmp_path)
    _edit_summary(d, lambda s: s["costs"].update(energy=s["costs"]["energy"] - 1.0))
    found = verify_schedule(tiny, d)
    assert rules(found) == {"cost-mismatch"}
    assert [v.where for v in found] == ["summary.json costs.energy"]
    assert "$2.125 but recomputed $3.125" in found[0].message


@pytest.mark.parametrize("key, value, rule", [
    ("total_cost_usd", 900.0, "cost-mismatch"),
    ("emissions_t", 0.02, "emissions-mismatch"),
    ("unserved_mtok", 0.0, "unserved-mismatch"),
    ("dropped_jobs", [], "dropped-mismatch"),
    ("objective", 100.0, "objective-mismatch"),
    ("bound", 2000.0, "objective-mismatch"),
])
def test_edited_summary_figures_are_caught(tiny, good_dir, tmp_path, key, value, rule):
    d = _copy(good_dir, tmp_path)
    _edit_summary(d, lambda s: s.update({key: value}))
    assert rules(verify_schedule(tiny, d)) == {rule}


def test_edited_site_gpus_row_is_caught(tiny, good_dir, tmp_path):
    d = _copy(good_dir, tmp_path)
    _edit_csv(d / "site_gpus.csv", {"site": "A", "period": 1}, gpus_ondemand=0)
    found = verify_schedule(tiny, d)
    assert rules(found) == {"export-site_gpus"}
    assert "gpus_ondemand is 0, recomputed 4" in found[0].message
    assert "site A" in found[0].where and "period 1" in found[0].where


@pytest.mark.parametrize("table, match, values", [
    ("sites.csv", {"site": "B", "period": 0}, {"power_mw": 0.001}),
    ("links.csv", {"link": 2, "period": 0}, {"traffic_gbps": 0.5}),
    ("unserved.csv", {"period": 1}, {"unserved_tokens_per_s": 0.0}),
    ("training.csv", {"job": "j2"}, {"end_period": 2}),
    ("training.csv", {"job": "j1"}, {"egress_usd": 0.0}),
    ("inference.csv", {"period": 2}, {"gpus": 4}),
])
def test_edited_derived_tables_are_caught(tiny, good_dir, tmp_path, table, match, values):
    d = _copy(good_dir, tmp_path)
    _edit_csv(d / table, match, **values)
    name = table.removesuffix(".csv")
    assert rules(verify_schedule(tiny, d)) == {f"export-{name}"}


def test_removed_rows_of_derived_tables_are_caught(tiny, good_dir, tmp_path):
    d = _copy(good_dir, tmp_path)
    for name in ("site_gpus", "unserved", "links"):
        df = pd.read_csv(d / f"{name}.csv", dtype=str, keep_default_na=False)
        df.iloc[1:].to_csv(d / f"{name}.csv", index=False)
    assert rules(verify_schedule(tiny, d)) == {"export-site_gpus", "export-unserved", "export-links"}


def test_job_moved_onto_a_full_site_by_hand(tiny, good_dir, tmp_path):
    """The issue's example: edit training.csv only; capacity is broken on B, and every
    figure derived from the old placement no longer matches."""
    d = _copy(good_dir, tmp_path)
    _edit_csv(d / "training.csv", {"job": "j1"}, site="B", provider="aws")
    found = rules(verify_schedule(tiny, d))
    assert "capacity-gpus" in found
    assert {"export-site_gpus", "export-sites", "cost-mismatch"} <= found


def test_status_without_schedule(tiny, good_dir, tmp_path):
    d = _copy(good_dir, tmp_path)
    _edit_summary(d, lambda s: s.update(status="infeasible"))
    assert rules(verify_schedule(tiny, d)) == {"schedule-status"}


def test_wrong_instance_is_named(tiny, good_dir, tmp_path):
    data = tiny_dict()
    data["horizon"]["periods"] = 5
    data["services"][0]["demand"]["r-us"].append(0.0)
    other = instance_from_dict(data)
    found = verify_schedule(other, good_dir)
    assert "instance-mismatch" in rules(found)


# --------------------------------------------------------------------------- CLI


def test_verify_cli_lists_violations_and_exits_1(tiny, good_dir, tmp_path):
    d = _copy(good_dir, tmp_path)
    _edit_summary(d, lambda s: s["costs"].update(egress=0.0))
    inst_file = dump_instance(tiny, tmp_path / "tiny.yaml")
    res = CliRunner().invoke(main, ["verify", str(inst_file), str(d)])
    assert res.exit_code == 1, res.output
    assert "schedule NOT valid: 1 violation" in res.output
    assert "cost-mismatch | summary.json costs.egress | $0 but recomputed $10.0026" in res.output
    assert "Traceback" not in res.output


@pytest.mark.parametrize("damage, needle", [
    ("missing", "schedule folder does not exist"),
    ("no-summary", "no summary.json"),
    ("bad-cell", "column gpus: 'lots' is not a number"),
    ("bad-json", "is not valid JSON"),
    ("no-table", "table links is missing"),
])
def test_verify_cli_bad_folder_exits_2(tiny, good_dir, tmp_path, damage, needle):
    d = _copy(good_dir, tmp_path)
    if damage == "missing":
        d = tmp_path / "nowhere"
    elif damage == "no-summary":
        (d / "summary.json").unlink()
    elif damage == "bad-cell":
        _edit_csv(d / "training.csv", {"job": "j1"}, gpus="lots")
    elif damage == "bad-json":
        (d / "summary.json").write_text("{not json")
    else:
        (d / "links.csv").unlink()
    inst_file = dump_instance(tiny, tmp_path / "tiny.yaml")
    res = CliRunner().invoke(main, ["verify", str(inst_file), str(d)])
    assert res.exit_code == 2, res.output
    assert needle in res.output
    assert "Traceback" not in res.output


def test_verify_reads_only_the_files(tiny, good_dir):
    """Verification depends on nothing but the instance and the folder: the model packages
    are not imported by the verifier."""
    import subprocess
    import sys

    code = ("import sys; from allocator.verify import verify; "
            "mods = [m for m in sys.modules if m.startswith(('pyomo', 'highspy', "
            "'allocator.formulation', 'allocator.indexing'))]; print(mods)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_read_schedule_gives_the_decisions(good_dir):
    s = read_schedule(good_dir)
    assert list(s.frames["training"]["job"]) == ["j1", "j2", "j4"]
    assert s.summary["status"] == "optimal"
