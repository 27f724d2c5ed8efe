"""The shipped leasing example, data/colossus-2026-leasing: it loads and validates (fast),
its figures are those SOURCES.md derives, its tables are what make_tables.py writes from
colossus-2026, and (slow) it solves to a verified schedule per scenario."""

from __future__ import annotations

import math
import runpy
import shutil
from pathlib import Path

import pytest
import yaml

from allocator.io import load_instance
from allocator.leasing import scenario_cases
from allocator.validate import check

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
HERE = DATA / "colossus-2026-leasing"
TABLES = ("jobs.csv", "links.csv", "demand.csv", "site_series.csv")


@pytest.fixture(scope="module")
def inst():
    return load_instance(HERE / "instance.yaml")


@pytest.fixture(scope="module")
def colossus():
    return load_instance(DATA / "colossus-2026" / "instance.yaml")


def test_loads_and_validates(inst):
    check(inst, source=str(HERE / "instance.yaml"))  # raises on any error
    assert (HERE / "SOURCES.md").is_file()


def test_power_envelope_is_a_decision_100_to_400_mw(inst):
    c1 = inst.site("colossus-1")
    assert c1.power_cap_mw is None
    opt = c1.power_options
    assert (opt.min_mw, opt.max_mw, opt.step_mw) == (100, 400, 20)
    # $184.06 per kW of IT load a month (CBRE) / 730 h x 1000 / PUE 1.25 = $201.71 per MW-h
    assert opt.price_usd_per_mw_h == pytest.approx(184.06 * 1000 * 12 / 8760 / 1.25, abs=0.005)
    assert "estimate" in opt.source
    assert all(p.reserved == p.available for p in c1.pools)  # the GPU fleet is leased whole


def test_cloud_offers_are_40_and_60_percent_below_on_demand(inst):
    pools = [(s, p) for s in inst.sites for p in s.pools if p.reserve_options is not None]
    assert len(pools) == 13
    for s, p in pools:
        assert s.provider in ("aws", "azure", "gcp") and p.reserved == 0
        by_term = {o.term: o for o in p.reserve_options}
        assert set(by_term) == {"1y", "3y"}
        od = p.ondemand_price_usd_per_gpu_h
        assert by_term["1y"].price_usd_per_gpu_h == pytest.approx(0.6 * od, abs=6e-4), (s.id, p.gpu_type)
        assert by_term["3y"].price_usd_per_gpu_h == pytest.approx(0.4 * od, abs=6e-4), (s.id, p.gpu_type)
        assert all(o.max_gpus == p.available for o in p.reserve_options)
    # the one pool without a public on-demand price keeps colossus-2026's fixed block
    fixed = [(s.id, p.gpu_type) for s in inst.sites if s.provider != "colossus" for p in s.pools
             if p.reserve_options is None]
    assert fixed == [("azure-wus3", "GB200")]


def test_three_scenarios(inst):
    cases = {c.id: c for c in scenario_cases(inst)}
    assert list(cases) == ["base", "inference-plus-30", "frontier-delayed"]
    assert math.fsum(c.probability for c in cases.values()) == pytest.approx(1.0)
    base, more, late = cases["base"].instance, cases["inference-plus-30"].instance, cases["frontier-delayed"].instance
    for v_base, v_more in zip(base.services, more.services, strict=True):
        for region, series in v_base.demand.items():
            assert v_more.demand[region] == pytest.approx([1.3 * x for x in series])
    fr = {c: next(j for j in i.jobs if j.id == "frontier-pretrain") for c, i in
          (("base", base), ("late", late))}
    # two days later in 6-hour periods, its start window as long as in the base
    assert fr["late"].release_period - fr["base"].release_period == 8
    assert fr["late"].deadline_period - fr["base"].deadline_period == 8


def test_jobs_are_colossus_2026_at_half_size_and_window(inst, colossus):
    assert inst.horizon.periods * inst.horizon.period_hours == 14 * 24
    assert inst.horizon.start == colossus.horizon.start
    half = {j.id: j for j in inst.jobs}
    assert set(half) == {j.id for j in colossus.jobs}
    for j in colossus.jobs:
        h = half[j.id]
        assert [o.hours for o in h.options] == pytest.approx([o.hours / 2 for o in j.options]), j.id
        assert [o.gpus for o in h.options] == [o.gpus for o in j.options]
        # release and deadline in hours: at most half (release) and at least half (deadline)
        assert h.release_period * 6 <= j.release_period * 4 / 2
        if j.deadline_period is not None:
            assert h.deadline_period * 6 >= j.deadline_period * 4 / 2
        assert h.value_usd == pytest.approx(j.value_usd / 2)


def test_tables_match_their_script(tmp_path):
    """make_tables.py rewrites the four tables from ../colossus-2026 byte for byte."""
    work = tmp_path / "data"
    shutil.copytree(DATA / "colossus-2026", work / "colossus-2026")
    mine = work / "colossus-2026-leasing"
    mine.mkdir()
    for name in ("instance.yaml", "make_tables.py"):
        shutil.copy(HERE / name, mine / name)
    runpy.run_path(str(mine / "make_tables.py"), run_name="__main__")
    for name in TABLES:
        assert (mine / name).read_text() == (HERE / name).read_text(), name


def test_sweep_spec_resolves_the_mw_price(inst):
    from allocator.sweep_spec import expand, load_spec, resolve

    spec = load_spec(HERE / "sweep.yaml")
    path = spec.parameters[0].path
    assert path == "sites[colossus-1].power_options.price_usd_per_mw_h"
    assert resolve(inst, path) == [(("attr", "sites"), ("item", 0), ("attr", "power_options"),
                                    ("attr", "price_usd_per_mw_h"))]
    points = expand(spec)
    assert len(points) == 6


def test_sources_name_every_scenario_and_tag(inst):
    text = (HERE / "SOURCES.md").read_text()
    for sc in inst.scenarios:
        assert f"| {sc.id} | {sc.probability:g} |" in text
    assert "[colo]" in text and "cbre.com" in text


@pytest.mark.slow
def test_solves_and_every_scenario_verifies(tmp_path):
    """About a minute on 2 cores: the three-scenario extensive form to a 1% gap."""
    import allocator
    from allocator.verify import verify

    inst = load_instance(HERE / "instance.yaml")
    r = allocator.solve(inst, mip_gap=0.01, time_limit_s=900)
    assert r.status.value in ("optimal", "feasible") and r.gap is not None and r.gap <= 0.01 + 1e-9
    probs = {sc.id: sc.probability for sc in inst.scenarios}
    # the expected cost is the probability-weighted sum of the scenario costs
    assert r.total_cost == pytest.approx(sum(probs[k] * s.total_cost for k, s in r.scenarios.items()))
    out = r.export(tmp_path / "out")
    ver = verify(inst, out)
    assert ver.ok, "\n".join(map(str, ver.violations))
    leases = r.frames["leases"].set_index(["site", "resource"])
    assert 100 <= leases.loc[("colossus-1", "power"), "size"] <= 400
    for sid in probs:
        folder = out / "scenarios" / sid
        sub = verify(load_instance(folder / "instance.yaml"), folder)
        assert sub.ok, (sid, [str(v) for v in sub.violations])
    assert yaml.safe_load((out / "scenarios" / "base" / "instance.yaml").read_text())["name"].endswith(":base")
