"""Model reuse between scenarios, and sweeps with the real solver.

The fast tests check which families a change rebuilds (no solve). The slow ones solve: a
re-used model must give the optimum of a plain solve (within the gap) and a schedule that
the independent verifier accepts; the shipped specs run end to end.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from allocator import load_instance
from allocator.sweep import ReuseSession, _changed_fields, _index_structure, sweep

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def demo():
    return load_instance(DATA / "demo" / "instance.yaml")


def variant(inst, *, cap=None, factor=None, carbon=None, demand=None):
    new = inst.model_copy(deep=True)
    if cap is not None:
        new.site("colossus-1").power_cap_mw = cap
    if factor is not None:
        for site in new.sites:
            for pool in site.pools:
                pool.ondemand_price_usd_per_gpu_h = round(pool.ondemand_price_usd_per_gpu_h * factor, 6)
    if carbon is not None:
        new.carbon_price_usd_per_t = carbon
    if demand is not None:
        svc = new.services[0]
        svc.demand = {r: [x * demand for x in v] for r, v in svc.demand.items()}
    return new


def test_changed_fields_names_leaf_fields(demo):
    assert _changed_fields(demo, demo.model_copy(deep=True)) == set()
    assert _changed_fields(demo, variant(demo, cap=3.5, carbon=80)) == {"power_cap_mw", "carbon_price_usd_per_t"}
    assert _changed_fields(demo, variant(demo, factor=0.8)) == {"ondemand_price_usd_per_gpu_h"}
    assert _changed_fields(demo, variant(demo, demand=2)) == {"demand"}


def test_rebuild_choice(demo):
    from allocator.indexing import build_index
    from allocator.network import Network

    session = ReuseSession(options=None)
    session.model = object()  # stands for a built model: only the decision is tested here
    session.inst = demo
    session.structure = _index_structure(build_index(demo, Network(demo)))

    def first(inst):
        return session._rebuild_from(inst, _index_structure(build_index(inst, Network(inst))))

    assert first(variant(demo, factor=1.2, carbon=40)) == "budget"
    # a higher ceiling leaves the eligible starts as they are: only the power rows change
    assert first(variant(demo, cap=3.5, carbon=80)) == "power"
    # demand is not a numbers-only change of a late family: rebuild
    assert first(variant(demo, demand=1.1)) is None
    # a ceiling so low that gangs no longer fit changes the eligible starts: rebuild
    assert first(variant(demo, cap=0.6)) is None
    # a price that becomes zero may drop columns of a kept family: rebuild
    free = demo.model_copy(deep=True)
    free.site("aws-use1").pools[1].ondemand_price_usd_per_gpu_h = 0.0
    assert first(free) is None


# --------------------------------------------------------------------------- with the solver


@pytest.mark.slow
def test_reused_model_matches_plain_solve_and_verifies(demo, tmp_path):
    from allocator.api import solve
    from allocator.options import SolveOptions
    from allocator.verify import verify_schedule

    opts = SolveOptions(threads=1, mip_gap=1e-4, time_limit_s=120)
    session = ReuseSession(opts)
    scenarios = [variant(demo), variant(demo, carbon=80, factor=0.8), variant(demo, cap=4.0, carbon=80, factor=0.8),
                 variant(demo, cap=2.5, factor=1.2)]
    for k, inst in enumerate(scenarios):
        reused = session.solve(inst)
        plain = solve(inst, opts)
        assert reused.status.value == plain.status.value == "optimal"
        tol = 2e-4 * abs(plain.objective)
        assert reused.objective == pytest.approx(plain.objective, abs=tol)
        assert reused.total_cost == pytest.approx(sum(reused.costs.values()))
        out = reused.export(tmp_path / f"s{k}", "csv", True)
        assert verify_schedule(inst, out) == []
    assert session.stats["reused"] >= 2 and session.stats["built"] >= 1


@pytest.mark.slow
def test_demo_sweep_spec_runs_with_the_solver(tmp_path):
    df = sweep(DATA / "demo" / "instance.yaml", DATA / "demo" / "sweep.yaml", out=tmp_path / "d",
               workers=2, progress=False)
    assert len(df) == 24
    assert df["status"].isin(["optimal", "feasible"]).all(), df[["status", "error"]]
    # a carbon price never lowers the objective of the same scenario
    cap, price, carbon = "sites[colossus-1].power_cap_mw", "*.ondemand_price_usd_per_gpu_h", "carbon_price_usd_per_t"
    wide = df.pivot_table(index=[cap, price], columns=carbon, values="objective")
    assert (wide[80.0] >= wide[0.0] * (1 - 1e-3)).all()
    # more power at Colossus never costs more (within the gap)
    obj = df[df[carbon] == 0].pivot_table(index=price, columns=cap, values="objective")
    assert (obj[4.0] <= obj[2.0] * (1 + 1e-3)).all()


@pytest.mark.slow
def test_colossus_sweep_local_and_dask_agree_and_resume(tmp_path):
    """The 60-scenario colossus spec locally, interrupted and resumed, then on a Dask
    LocalCluster: the same objectives (threads 1, fixed seed, stopped by the gap)."""
    from distributed import Client, LocalCluster

    inst = load_instance(DATA / "colossus-2026" / "instance.yaml")
    spec = DATA / "colossus-2026" / "sweep.yaml"
    seen: list[str] = []

    def stop_after_10(row):
        seen.append(row["scenario"])
        if len(seen) == 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep(inst, spec, out=tmp_path / "local", workers=2, progress=False, on_row=stop_after_10)
    done_before = {p.parent.name for p in (tmp_path / "local" / "scenarios").glob("*/row.json")}
    assert len(done_before) >= 10
    ran: list[str] = []
    local = sweep(inst, spec, out=tmp_path / "local", workers=2, progress=False,
                  on_row=lambda r: ran.append(r["scenario"]))
    assert not set(ran) & done_before and len(ran) + len(done_before) == 60
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
            Client(cl) as client:
        dask = sweep(inst, spec, out=tmp_path / "dask", executor=client, progress=False)
    assert len(local) == len(dask) == 60
    assert local["status"].isin(["optimal", "feasible"]).all()
    pd.testing.assert_series_equal(local["scenario"], dask["scenario"])
    assert (local["objective"] - dask["objective"]).abs().max() <= 0.011 * local["objective"].abs().max()


def test_a_re_plan_in_a_sweep_takes_the_plain_way(demo, tmp_path):
    # solve: {previous: DIR} in a spec: the reused model would skip loading, checking and
    # comparing the previous plan, so the scenario goes through allocator.solve, which does
    import allocator
    from allocator.options import SolveOptions

    prev = allocator.solve(demo, time_limit_s=60)
    prev.export(tmp_path / "prev")
    session = ReuseSession(SolveOptions(previous=str(tmp_path / "prev"), time_limit_s=60))
    got = session.solve(demo)
    assert session.stats["fallback"] == 1 and session.stats["built"] == 0
    assert "changes" in got.frames
    # the demo unchanged and every move allowed: a row per job, and the re-plan costs what the
    # plan it starts from costs (within the solver's gap; retimes are free by default)
    assert sorted(got.frames["changes"]["job"]) == sorted(j.id for j in demo.jobs)
    assert got.objective == pytest.approx(prev.objective, rel=1e-3)


def test_session_takes_each_scenarios_options_and_re_plans_the_plain_way():
    # tiny instance (tests/test_api.py): j1 costs $32 at a and $48 at b. The previous plan has
    # it at b: max_moves 0 keeps it there ($48), no cap moves it to a for free ($32).
    import allocator
    from allocator.io import instance_from_dict
    from allocator.options import SolveOptions
    from tests.test_api import job, with_jobs
    from tests.test_replanning import prev_plan

    inst = instance_from_dict(with_jobs(job("j1")))
    session = ReuseSession(SolveOptions())
    a = session.solve(inst, SolveOptions(mip_gap=0.0))
    b = session.solve(inst, SolveOptions(mip_gap=0.01, seed=3))  # solver options only: reused
    assert session.stats == {"built": 1, "reused": 1, "fallback": 0}
    assert a.objective == b.objective == pytest.approx(32.0)
    assert (b.options["mip_gap"], b.options["seed"]) == (0.01, 3)
    prev = prev_plan(("j1", "b", 2))
    kept = session.solve(inst, SolveOptions(previous=prev, max_moves=0))
    moved = session.solve(inst, SolveOptions(previous=prev))
    assert session.stats["fallback"] == 2
    assert (kept.objective, moved.objective) == (pytest.approx(48.0), pytest.approx(32.0))
    assert kept.frames["training"]["site"].tolist() == ["b"] and kept.summary["changes"]["moved"] == 0
    assert moved.frames["training"]["site"].tolist() == ["a"] and moved.summary["changes"]["moved"] == 1
    # an option that changes the model (the objective mode) is never served by the old model
    carbon = session.solve(inst, SolveOptions(objective="carbon"))
    assert session.stats["built"] == 2
    assert carbon.objective == pytest.approx(allocator.solve(inst, objective="carbon").objective)


def test_a_max_moves_sweep_of_a_re_plan_end_to_end(tmp_path):
    # the same numbers through allocator.sweep: the previous plan a folder named in solve:,
    # max_moves swept; one scenario folder per budget with its changes table
    import allocator
    from allocator.io import instance_from_dict
    from tests.test_api import job, with_jobs
    from tests.test_replanning import _only_b

    prev = allocator.solve(with_jobs(job("j1"), base=_only_b()), mip_gap=0.0)
    assert prev.frames["training"]["site"].tolist() == ["b"]
    prev_dir = prev.export(tmp_path / "prev")
    spec = {"parameters": [{"path": "solve.max_moves", "values": [0, None]}],
            "solve": {"previous": str(prev_dir), "mip_gap": 0.0}}
    df = sweep(instance_from_dict(with_jobs(job("j1"))), spec, out=tmp_path / "s", executor="inline")
    assert df["status"].tolist() == ["optimal", "optimal"]
    assert df["total_cost_usd"].tolist() == pytest.approx([48.0, 32.0])
    assert df["solve.max_moves"].iloc[0] == 0 and pd.isna(df["solve.max_moves"].iloc[1])
    # a re-plan's row counts its changes: the cost of stability curve is cost against moved
    assert df["moved"].tolist() == [0, 1] and df["moved_gpus"].tolist() == [0, 8]
    assert df["migration_usd"].tolist() == [0, 0]
    for sid, site in zip(df["scenario"], ["b", "a"], strict=True):
        ch = pd.read_csv(tmp_path / "s" / "scenarios" / sid / "changes.csv")
        assert ch["to_site"].tolist() == [site] and (ch["change"] == "moved").sum() == (site == "a")
