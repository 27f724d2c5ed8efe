"""Sweep runner: rows, resume without redo, failure isolation, processes vs Dask, plots, CLI.

The solve function is injected (``fake_solve``): a closed-form stand-in whose objective is a
known function of the swept numbers, so every row can be checked exactly and the machinery
is tested apart from the MIP. Tests against the real solver are at the end of the file.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from allocator import load_instance
from allocator.results import Result, Status
from allocator.sweep import read_manifest, read_results, sweep
from allocator.sweep_spec import check_spec, spec_from_dict

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def demo():
    return load_instance(DATA / "demo" / "instance.yaml")


# --------------------------------------------------------------------------- a fake solve


@dataclass(frozen=True)
class FakeResult(Result):
    """A Result that exports a summary.json only (the schedule tables are not under test)."""

    def export(self, out_dir, fmt="csv", force=False):
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps({"status": self.status.value,
                                                      "objective": self.objective}))
        return out


def fake_objective(inst) -> float:
    """1000 x AWS H100 on-demand price + 10 x carbon price + 600 / Colossus power cap."""
    aws = inst.site("aws-use1").pools[0].ondemand_price_usd_per_gpu_h
    return 1000 * aws + 10 * inst.carbon_price_usd_per_t + 600 / inst.site("colossus-1").power_cap_mw


def fake_solve(inst, options=None):
    cap = inst.site("colossus-1").power_cap_mw
    if inst.carbon_price_usd_per_t == 13:
        raise ValueError("boom at carbon price 13")
    if cap < 1:
        return FakeResult(Status.INFEASIBLE, explanation=[f"colossus-1 power cap {cap} MW too low"])
    obj = fake_objective(inst)
    sites = pd.DataFrame({
        "site": [s.id for s in inst.sites for _ in range(2)],
        "period": [t for _ in inst.sites for t in range(2)],
        "power_mw": [min(cap, 2.0) * (t + 1) / 2 if s.id == "colossus-1" else 0.5
                     for s in inst.sites for t in range(2)],
    })
    site_gpus = pd.DataFrame({
        "site": ["colossus-1", "colossus-1", "aws-use1"], "gpu_type": ["H100", "H200", "H100"],
        "period": [0, 0, 0], "gpus_in_use": [1024, 256, 256], "gpus_available": [2048, 512, 1024],
    })
    unserved = pd.DataFrame({"service": ["chat-70b"], "region": ["users-eu"], "period": [0],
                             "unserved_tokens_per_s": [1000.0]})
    return FakeResult(Status.OPTIMAL, objective=obj, bound=obj, gap=0.0,
                      costs={"ondemand_lease": obj - 5.0, "energy": 5.0}, emissions_t=2.5,
                      frames={"sites": sites, "site_gpus": site_gpus, "unserved": unserved},
                      summary={})


class CountingSolve:
    """fake_solve that records each call as a file (so calls are counted across processes)
    and raises KeyboardInterrupt, like Ctrl-C, once ``interrupt_at`` calls were made."""

    def __init__(self, folder: Path, interrupt_at: int | None = None):
        self.folder = Path(folder)
        self.interrupt_at = interrupt_at

    def __call__(self, inst, options=None):
        self.folder.mkdir(parents=True, exist_ok=True)
        n = len(list(self.folder.glob("call-*")))
        (self.folder / f"call-{uuid.uuid4().hex}").write_text(json.dumps(signature(inst)))
        if self.interrupt_at is not None and n >= self.interrupt_at:
            raise KeyboardInterrupt
        result = fake_solve(inst, options)
        (self.folder / f"ok-{uuid.uuid4().hex}").write_text(json.dumps(signature(inst)))
        return result

    def calls(self) -> int:
        return len(list(self.folder.glob("call-*")))

    def solved(self) -> list[str]:
        return [p.read_text() for p in self.folder.glob("ok-*")]


class DieOnce:
    """Kills its worker process (like an out-of-memory kill) the first time it is called."""

    def __init__(self, marker: Path):
        self.marker = Path(marker)

    def __call__(self, inst, options=None):
        if not self.marker.exists():
            self.marker.write_text("died")
            os._exit(9)
        return fake_solve(inst, options)


def signature(inst) -> list:
    return [inst.site("colossus-1").power_cap_mw, inst.site("aws-use1").pools[0].ondemand_price_usd_per_gpu_h,
            inst.carbon_price_usd_per_t]


SPEC = {
    "name": "fake",
    "parameters": [
        {"path": "sites[colossus-1].power_cap_mw", "values": [0.5, 2.0, 3.0]},
        {"path": "gpu_pools[aws-use1/H100].ondemand_price_usd_per_gpu_h", "scale": [0.5, 1.0]},
        {"path": "carbon_price_usd_per_t", "values": [0, 13]},
    ],
    "solve": {"time_limit_s": 5},
}  # 12 scenarios: 3 infeasible (cap 0.5, carbon 0) , 6 raising (carbon 13), 3 optimal ... see test


# --------------------------------------------------------------------------- rows


def test_rows_figures_and_failure_isolation(demo, tmp_path):
    df = sweep(demo, SPEC, out=tmp_path / "s", executor="inline", solve=fake_solve)
    assert len(df) == 12 and df["scenario"].is_unique
    cap, price, carbon = (p["path"] for p in SPEC["parameters"])
    assert list(df.columns[:4]) == ["scenario", cap, price, carbon]
    raised = df[df[carbon] == 13]
    assert len(raised) == 6 and (raised["status"] == "error").all()
    assert raised["error"].str.contains("ValueError: boom at carbon price 13").all()
    infeasible = df[(df[carbon] == 0) & (df[cap] == 0.5)]
    assert list(infeasible["status"]) == ["infeasible"] * 2
    assert infeasible["error"].str.contains("too low").all()
    assert infeasible["objective"].isna().all()
    ok = df[df["status"] == "optimal"]
    assert len(ok) == 4  # caps 2 and 3, two prices, carbon 0
    for _, r in ok.iterrows():
        # 1000 x 6.88 x factor + 600 / cap, e.g. cap 2, factor 0.5: 3440 + 300 = 3740
        assert r["objective"] == pytest.approx(1000 * 6.88 * r[price] + 600 / r[cap])
        assert r["total_cost_usd"] == pytest.approx(r["objective"])
        assert r["energy_usd"] == 5.0 and r["carbon_usd"] == 0.0
        assert r["emissions_t"] == 2.5
        # 1000 tokens/s unserved for one hour = 3.6 million tokens
        assert r["unserved_mtok"] == pytest.approx(3.6)
        # colossus: (1024 + 256) / (2048 + 512) = 0.5; aws: 256 / 1024; gcp has no rows
        assert r["util_colossus-1"] == pytest.approx(0.5)
        assert r["util_aws-use1"] == pytest.approx(0.25)
        assert pd.isna(r["util_gcp-euw4"])
        assert r["power_mw_colossus-1"] == pytest.approx(2.0)
        assert r["power_mw_aws-use1"] == 0.5
        assert r["seconds"] >= 0
    assert ok.loc[ok[price] == 0.5, "objective"].min() == pytest.approx(3440 + 200)  # cap 3
    # the files: one folder per scenario, row.json in each, results in both formats
    for sid in df["scenario"]:
        row = json.loads((tmp_path / "s" / "scenarios" / sid / "row.json").read_text())
        assert row["scenario"] == sid
    exported = [sid for sid in ok["scenario"] if (tmp_path / "s" / "scenarios" / sid / "summary.json").exists()]
    assert len(exported) == 4
    back = read_results(tmp_path / "s")
    pd.testing.assert_frame_equal(back, df)
    csv = pd.read_csv(tmp_path / "s" / "results.csv")
    assert list(csv.columns) == list(df.columns) and len(csv) == 12
    assert read_manifest(tmp_path / "s")["parameters"][0]["path"] == cap


def test_power_values_from_duals(demo):
    def with_duals(inst, options=None):
        res = fake_solve(inst, options)
        duals = pd.DataFrame({"kind": ["power", "power", "gpus"], "site": ["colossus-1"] * 3,
                              "gpu_type": [None, None, "H100"], "link": [None] * 3, "period": [0, 1, 0],
                              "marginal_usd_per_unit_h": [30.0, 12.5, 2.0]})
        return FakeResult(res.status, objective=res.objective, bound=res.bound, gap=0.0,
                          costs=res.costs, frames={**res.frames, "duals": duals})

    df = sweep(demo, {"parameters": [{"path": "carbon_price_usd_per_t", "values": [0]}]},
               executor="inline", solve=with_duals)
    # (30 + 12.5) $/MWh x 1 h periods: one more MW in both periods saves $42.5
    assert df.loc[0, "power_value_usd_per_mw_colossus-1"] == pytest.approx(42.5)
    assert df.loc[0, "power_value_usd_per_mw_aws-use1"] == 0.0


def test_no_out_keeps_everything_in_memory(demo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    df = sweep(demo, {"parameters": [{"path": "carbon_price_usd_per_t", "values": [0, 10]}]},
               executor="inline", solve=fake_solve)
    assert list(df["status"]) == ["optimal", "optimal"]
    assert df["objective"].diff().iloc[1] == pytest.approx(100.0)  # 10 $/t x 10
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- resume


def test_interrupt_then_rerun_finishes_the_rest_without_redo(demo, tmp_path):
    spec = {"parameters": [{"path": "carbon_price_usd_per_t", "range": {"start": 0, "stop": 90, "step": 10}}]}
    calls = tmp_path / "calls"
    with pytest.raises(KeyboardInterrupt):
        sweep(demo, spec, out=tmp_path / "s", executor="inline", solve=CountingSolve(calls, interrupt_at=4))
    first = CountingSolve(calls)
    assert first.calls() == 5  # 4 solved, the 5th interrupted
    rows = list((tmp_path / "s" / "scenarios").glob("*/row.json"))
    assert len(rows) == 4
    partial = read_results(tmp_path / "s")  # gathered even on interrupt
    assert partial["status"].notna().sum() == 4

    counter = CountingSolve(tmp_path / "calls2")
    df = sweep(demo, spec, out=tmp_path / "s", executor="inline", solve=counter)
    assert counter.calls() == 6  # exactly the remaining ones
    assert (df["status"] == "optimal").all() and len(df) == 10
    solved = first.solved() + counter.solved()
    assert len(solved) == 10 == len(set(solved))  # each scenario solved exactly once

    again = CountingSolve(tmp_path / "calls3")
    df2 = sweep(demo, spec, out=tmp_path / "s", executor="inline", solve=again)
    assert again.calls() == 0
    pd.testing.assert_frame_equal(df.drop(columns="seconds"), df2.drop(columns="seconds"))


def test_interrupt_in_worker_processes_then_resume(demo, tmp_path):
    spec = {"parameters": [{"path": "carbon_price_usd_per_t", "range": {"start": 0, "stop": 70, "step": 10}}]}
    calls = tmp_path / "calls"
    with pytest.raises(KeyboardInterrupt):
        sweep(demo, spec, out=tmp_path / "s", workers=2, solve=CountingSolve(calls, interrupt_at=3))
    finished = len(list((tmp_path / "s" / "scenarios").glob("*/row.json")))
    assert 1 <= finished < 8
    counter = CountingSolve(tmp_path / "calls2")
    df = sweep(demo, spec, out=tmp_path / "s", workers=2, solve=counter)
    assert counter.calls() == 8 - finished
    assert (df["status"] == "optimal").all()
    solved = CountingSolve(calls).solved() + counter.solved()
    assert sorted(set(solved)) == sorted(solved) and len(solved) == 8


def test_killed_worker_is_replaced_and_nothing_lost(demo, tmp_path):
    spec = {"parameters": [{"path": "carbon_price_usd_per_t", "values": [0, 1, 2, 3, 4]}]}
    df = sweep(demo, spec, out=tmp_path / "s", workers=2, solve=DieOnce(tmp_path / "died"))
    assert (tmp_path / "died").exists()
    assert (df["status"] == "optimal").all() and len(df) == 5


def test_retry_failed_reruns_only_errors(demo, tmp_path):
    spec = {"parameters": [{"path": "carbon_price_usd_per_t", "values": [0, 13, 20]}]}
    df = sweep(demo, spec, out=tmp_path / "s", executor="inline", solve=fake_solve)
    assert list(df["status"]) == ["optimal", "error", "optimal"]
    counter = CountingSolve(tmp_path / "c")
    sweep(demo, spec, out=tmp_path / "s", executor="inline", solve=counter)
    assert counter.calls() == 0  # a recorded failure is finished
    sweep(demo, spec, out=tmp_path / "s", executor="inline", solve=counter, retry_failed=True)
    assert counter.calls() == 1


def test_out_folder_of_another_instance_is_refused(demo, tmp_path):
    from allocator.errors import InputError

    spec = {"parameters": [{"path": "carbon_price_usd_per_t", "values": [0]}]}
    sweep(demo, spec, out=tmp_path / "s", executor="inline", solve=fake_solve)
    other = demo.model_copy(deep=True)
    other.budget_usd = 1e9
    with pytest.raises(InputError, match="another instance"):
        sweep(other, spec, out=tmp_path / "s", executor="inline", solve=fake_solve)


# --------------------------------------------------------------------------- executors


def test_processes_and_dask_give_the_inline_results(demo, tmp_path):
    from distributed import Client, LocalCluster

    inline = sweep(demo, SPEC, executor="inline", solve=fake_solve)
    procs = sweep(demo, SPEC, workers=2, solve=fake_solve)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        dask = sweep(demo, SPEC, out=tmp_path / "d", executor=client, solve=fake_solve)
        # by address, as `--scheduler tcp://...` does; resumes the folder the client wrote
        again = sweep(demo, SPEC, out=tmp_path / "d", scheduler=cluster.scheduler_address,
                      solve=CountingSolve(tmp_path / "c"), retry_failed=True)
    cols = ["scenario", "status", "objective", "total_cost_usd", "error"]
    pd.testing.assert_frame_equal(procs[cols], inline[cols])
    pd.testing.assert_frame_equal(dask[cols], inline[cols])
    pd.testing.assert_frame_equal(again[cols], inline[cols])
    assert CountingSolve(tmp_path / "c").calls() == 6  # only the six errors were re-run
    assert len(list((tmp_path / "d" / "scenarios").glob("*/row.json"))) == 12


def test_scenario_ids_match_the_spec_module(demo):
    scenarios = check_spec(demo, spec_from_dict(SPEC))
    df = sweep(demo, SPEC, executor="inline", solve=fake_solve)
    assert list(df["scenario"]) == [s.id for s in scenarios]


def test_bad_spec_raises_before_anything_runs(demo, tmp_path):
    from allocator.errors import InputError

    counter = CountingSolve(tmp_path / "c")
    with pytest.raises(InputError, match="matches nothing"):
        sweep(demo, {"parameters": [{"path": "sites[mars].pue", "values": [1.1]}]},
              out=tmp_path / "s", executor="inline", solve=counter)
    assert counter.calls() == 0 and not (tmp_path / "s").exists()


# --------------------------------------------------------------------------- plots and CLI


def test_plot_files_exist_and_are_images(demo, tmp_path):
    from allocator.sweep import plot_sweep

    spec = {"parameters": SPEC["parameters"][:2]}  # 6 scenarios, 2 infeasible
    sweep(demo, spec, out=tmp_path / "s", executor="inline", solve=fake_solve)
    files = plot_sweep(tmp_path / "s")
    assert sorted(f.name for f in files) == sorted([
        "sites_colossus-1_.power_cap_mw.png",
        "gpu_pools_aws-use1_H100_.ondemand_price_usd_per_gpu_h.png",
    ])
    for f in files:
        assert f.parent == tmp_path / "s" / "plots"
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f.stat().st_size > 5000


@pytest.fixture
def cli_solve(monkeypatch):
    import allocator

    monkeypatch.setattr(allocator, "solve", fake_solve, raising=False)


def write_spec(tmp_path, text: str) -> Path:
    f = tmp_path / "sweep.yaml"
    f.write_text(text)
    return f


def test_cli_sweep_exit_0_with_failures_and_plots(tmp_path, cli_solve):
    from click.testing import CliRunner

    from allocator.cli import main

    spec = write_spec(tmp_path, "parameters:\n  - {path: carbon_price_usd_per_t, values: [0, 13, 20]}\n")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["sweep", str(DATA / "demo" / "instance.yaml"), str(spec),
                                    "--out", str(out), "--workers", "1", "--plot"])
    assert res.exit_code == 0, res.output
    assert "1 of 3 scenarios have no schedule" in res.output
    assert (out / "results.parquet").exists() and (out / "results.csv").exists()
    assert (out / "plots" / "carbon_price_usd_per_t.png").exists()
    res = CliRunner().invoke(main, ["plot-sweep", str(out)])
    assert res.exit_code == 0 and "carbon_price_usd_per_t.png" in res.output


def test_cli_bad_spec_exit_2_names_file_field_value(tmp_path, cli_solve):
    from click.testing import CliRunner

    from allocator.cli import main

    spec = write_spec(tmp_path, "parameters:\n  - {path: 'sites[colossus-1].power_cap_mw', values: [2, -3]}\n")
    res = CliRunner().invoke(main, ["sweep", str(DATA / "demo"), str(spec), "--out", str(tmp_path / "o"),
                                    "--workers", "1", "--quiet"])
    assert res.exit_code == 2
    assert "sweep.yaml" in res.output and "power_cap_mw" in res.output and "-3" in res.output
    assert "Traceback" not in res.output
    spec = write_spec(tmp_path, "parameters:\n  - {path: carbon_price_usd_per_t, vals: [1]}\n")
    res = CliRunner().invoke(main, ["sweep", str(DATA / "demo"), str(spec), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "vals: unknown field" in res.output
    res = CliRunner().invoke(main, ["plot-sweep", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "pass the --out folder of a sweep" in res.output


# --------------------------------------------------------------------------- solve options swept


def options_solve(inst, options=None):
    """fake_solve whose objective also shows the options it was given: + 1e6 x mip_gap
    + 1000 x max_moves (-1000 for no cap)."""
    import dataclasses

    res = fake_solve(inst, options)
    moves = -1 if options.max_moves is None else options.max_moves
    return dataclasses.replace(res, objective=res.objective + 1e6 * options.mip_gap + 1000 * moves)


def test_solve_parameters_reach_the_solve_and_get_a_column(demo, tmp_path):
    spec = {"parameters": [{"path": "solve.max_moves", "values": [0, 4, None]},
                           {"path": "solve.mip_gap", "values": [0.01, 0.02]}],
            "solve": {"now": 3}}
    from allocator.options import SolveOptions

    previous = pd.DataFrame({"job": [], "option": [], "site": [], "gpu_type": [], "gpus": [],
                             "start_period": []})  # an empty previous plan: the fake ignores it
    df = sweep(demo, spec, out=tmp_path / "s", executor="inline", solve=options_solve,
               options=SolveOptions(previous=previous))
    assert len(set(df["scenario"])) == 6
    assert df["solve.max_moves"].tolist()[:4] == [0.0, 0.0, 4.0, 4.0]
    assert df["solve.max_moves"].iloc[4:].isna().all()  # null: no cap, an empty cell
    assert df["solve.mip_gap"].tolist() == [0.01, 0.02] * 3
    base = fake_objective(demo)
    want = [base + 1e6 * g + 1000 * m for m in (0, 4, -1) for g in (0.01, 0.02)]
    assert df["objective"].tolist() == pytest.approx(want)
    manifest = read_manifest(tmp_path / "s")
    assert {"column": "solve.max_moves", "path": "solve.max_moves", "op": "set"} in manifest["parameters"]
    assert read_results(tmp_path / "s")["solve.max_moves"].tolist()[:4] == [0.0, 0.0, 4.0, 4.0]


def test_scenario_options_are_checked_before_anything_runs(demo, tmp_path):
    from allocator.errors import InputError

    counter = CountingSolve(tmp_path / "c")
    spec = {"parameters": [{"path": "solve.max_moves", "values": [1, 2]}]}  # no previous plan
    with pytest.raises(InputError) as err:
        sweep(demo, spec, out=tmp_path / "s", executor="inline", solve=counter)
    assert "max_moves" in str(err.value) and "previous" in str(err.value)
    assert counter.calls() == 0


def test_cli_bad_solve_parameter_exit_2_names_file_field_value(tmp_path, cli_solve):
    from click.testing import CliRunner

    from allocator.cli import main

    for text, words in (
            ("parameters:\n  - {path: solve.max_moves, values: [0, -1]}\nsolve: {previous: p}\n",
             ["sweep.yaml", "solve.max_moves", "-1"]),
            ("parameters:\n  - {path: solve.max_moovs, values: [1]}\n",
             ["sweep.yaml", "solve.max_moovs", "not a solve option"]),
            ("parameters:\n  - {path: solve.now, values: [1, 999]}\nsolve: {previous: p}\n",
             ["sweep.yaml", "solve.now", "999", "beyond the horizon"])):
        spec = write_spec(tmp_path, text)
        res = CliRunner().invoke(main, ["sweep", str(DATA / "demo"), str(spec), "--out",
                                        str(tmp_path / "o"), "--workers", "1", "--quiet"])
        assert res.exit_code == 2, res.output
        assert "Traceback" not in res.output
        for w in words:
            assert w in res.output, res.output


def test_a_missing_previous_plan_is_refused_before_anything_runs(demo, tmp_path):
    from allocator.errors import InputError

    counter = CountingSolve(tmp_path / "c")
    spec = {"parameters": [{"path": "solve.max_moves", "values": [0, None]}],
            "solve": {"previous": str(tmp_path / "no-plan")}}
    with pytest.raises(InputError, match="no-plan"):
        sweep(demo, spec, out=tmp_path / "s", executor="inline", solve=counter)
    assert counter.calls() == 0
