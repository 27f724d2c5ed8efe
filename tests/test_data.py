"""Shipped data: instances load and validate, profiles load, derived figures match the
published ones, every figure is documented."""

from __future__ import annotations

import math
import runpy
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from allocator.cli import main
from allocator.io import instance_from_dict, load_instance, load_profile
from allocator.network import Network
from allocator.validate import check

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
MODELS = ROOT / "allocator" / "models"  # the profiles shipped in the package
INSTANCES = sorted(DATA.glob("*/instance.yaml"))
PROFILES = sorted(MODELS.glob("*.yaml"))


def test_shipped_data_is_present():
    assert {p.parent.name for p in INSTANCES} >= {"demo", "colossus-2026"}
    assert {p.stem for p in PROFILES} >= {"llama-3.1-405b", "llama-3.1-70b", "deepseek-v3"}


@pytest.mark.parametrize("path", INSTANCES, ids=lambda p: p.parent.name)
def test_instance_loads_and_validates(path):
    inst = load_instance(path)
    check(inst, source=str(path))  # raises on any error
    assert (path.parent / "SOURCES.md").exists()


@pytest.mark.parametrize("path", INSTANCES, ids=lambda p: p.parent.name)
def test_cli_validate_exits_0(path):
    res = CliRunner().invoke(main, ["validate", str(path)])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_profile_loads_with_sources(path):
    prof = load_profile(path)
    assert prof.id == path.stem
    assert prof.sources, "every profile cites its sources"
    assert prof.training is not None and prof.inference is not None
    assert prof.estimate == prof.id.startswith("frontier-")
    if prof.active_parameters_b and prof.parameters_b:
        assert prof.active_parameters_b <= prof.parameters_b


def test_two_frontier_profiles_are_estimates():
    frontier = [load_profile(p) for p in PROFILES if p.stem.startswith("frontier-")]
    assert len(frontier) >= 2 and all(p.estimate for p in frontier)


def _one_site_instance(job: dict, gpus: int = 20000) -> dict:
    return {
        "horizon": {"start": "2026-01-01T00:00:00Z", "periods": 2000, "period_hours": 1.0},
        "gpu_types": [{"id": "H100", "power_kw": 1.0}, {"id": "GB200", "power_kw": 1.72, "relative_throughput": 2.53}],
        "sites": [{"id": "s", "provider": "colossus", "power_cap_mw": 100,
                   "pools": [{"gpu_type": "H100", "available": gpus}, {"gpu_type": "GB200", "available": gpus}]}],
        "jobs": [job],
    }


def test_llama_405b_derives_the_published_gpu_hours():
    inst = instance_from_dict(_one_site_instance({"id": "run-1", "profile": "llama-3.1-405b", "tokens_t": 15.6}),
                              profiles_dir=MODELS)
    opts = {o.gpu_type: o for o in inst.jobs[0].options}
    h100 = opts["H100"]
    # model card: 30.84M H100 GPU-hours for 15.6T tokens, on 16,384 GPUs -> 1,882.32 h
    assert h100.gpus == 16384
    assert h100.gpus * h100.hours == pytest.approx(30.84e6, rel=1e-6)
    # GB200: 8,192 GPUs at 2.53x -> 30.84M / (8192 x 2.53) = 1,487.98 h
    assert opts["GB200"].hours == pytest.approx(30.84e6 / (8192 * 2.53), rel=1e-6)
    # GPU types the instance does not define (H200, B200) give no option
    assert set(opts) == {"H100", "GB200"}


def test_tokens_scale_hours_linearly():
    half = instance_from_dict(_one_site_instance({"id": "r", "profile": "llama-3.1-70b", "tokens_t": 7.5}),
                              profiles_dir=MODELS)
    o = next(o for o in half.jobs[0].options if o.gpu_type == "H100")
    # 7.0M GPU-h for 15T tokens; half the tokens on 4,096 GPUs: 3.5M / 4096 = 854.49 h
    assert o.hours == pytest.approx(3.5e6 / 4096, rel=1e-6)


def test_frontier_profile_arithmetic_is_consistent():
    # the 34% utilisation comes from the published runs; each frontier profile's GPU-hours
    # must equal its FLOPs / (989 TFLOPS x 0.34 x 3600 s) and its FLOPs 6 x active x tokens
    for stem in ("frontier-moe-2t", "frontier-moe-6t"):
        p = load_profile(MODELS / f"{stem}.yaml")
        flops = 6 * p.active_parameters_b * 1e9 * p.training.reference_tokens_t * 1e12
        assert p.training_flops == pytest.approx(flops, rel=1e-3)
        assert p.training.gpu_hours_h100 == pytest.approx(flops / (989e12 * 0.34 * 3600), rel=1e-3)
    l405 = load_profile(MODELS / "llama-3.1-405b.yaml")
    mfu = l405.training_flops / (l405.training.gpu_hours_h100 * 3600 * 989e12)
    assert 0.33 < mfu < 0.36


def test_70b_throughput_is_the_mlperf_figure():
    p = load_profile(MODELS / "llama-3.1-70b.yaml")
    tps = p.inference.tokens_per_s_per_gpu
    assert tps["H100"] == round(21805.8 / 8) and tps["H200"] == round(27738.3 / 8)


# ----------------------------------------------------------------- colossus-2026


@pytest.fixture(scope="module")
def colossus():
    return load_instance(DATA / "colossus-2026" / "instance.yaml")


def test_colossus_shape(colossus):
    inst = colossus
    assert inst.horizon.periods * inst.horizon.period_hours == 28 * 24
    c1 = inst.site("colossus-1")
    kw = {g.id: g.power_kw for g in inst.gpu_types}
    gpus = sum(p.available for p in c1.pools)
    assert gpus >= 220_000 and {p.gpu_type for p in c1.pools} == {"H100", "H200", "GB200"}
    draw_mw = sum(p.available * kw[p.gpu_type] for p in c1.pools) * c1.pue / 1000
    assert c1.power_cap_mw >= 300 and draw_mw > c1.power_cap_mw  # power binds when full
    assert all(p.reserved == p.available for p in c1.pools)
    assert len(c1.energy_price_usd_per_mwh) == inst.horizon.periods
    assert sum(c1.energy_price_usd_per_mwh) / inst.horizon.periods == pytest.approx(62.3, abs=0.01)
    assert {s.provider for s in inst.sites} == {"colossus", "aws", "azure", "gcp"}
    assert {s.zone for s in inst.sites} == {"US", "EU"}
    # jobs: profiles, optional with value, soft deadlines, predecessors, EU residency
    assert any(j.profile for j in inst.jobs) and any(not j.mandatory and j.value_usd > 0 for j in inst.jobs)
    assert any(j.deadline == "soft" for j in inst.jobs)
    assert any(j.predecessors for j in inst.jobs)
    assert any(j.allowed_zones == ["EU"] for j in inst.jobs)
    assert any(j.site_cost_usd for j in inst.jobs)
    assert any(s.redundancy for s in inst.services) and any(s.allowed_zones == ["EU"] for s in inst.services)


def test_colossus_jobs_fit_the_horizon(colossus):
    ph, T = colossus.horizon.period_hours, colossus.horizon.periods
    durations = {j.id: min(math.ceil(o.hours / ph - 1e-9) for o in j.options) for j in colossus.jobs}
    jobs = {j.id: j for j in colossus.jobs}

    def earliest_end(jid: str) -> int:
        j = jobs[jid]
        return max([j.release_period, *(earliest_end(p) for p in j.predecessors)]) + durations[jid]

    for j in colossus.jobs:
        limit = j.deadline_period if j.deadline == "hard" and j.deadline_period else T
        assert earliest_end(j.id) <= limit, j.id
    # the frontier run is sized like known ones: more than a week on 65,536 GPUs
    fr = next(j for j in colossus.jobs if j.id == "frontier-pretrain")
    assert any(o.gpus == 65536 and 7 * 24 < o.hours < 21 * 24 for o in fr.options)


def test_colossus_demand_has_a_daily_cycle(colossus):
    per_day = round(24 / colossus.horizon.period_hours)
    net = Network(colossus)
    for svc in colossus.services:
        for region, series in svc.demand.items():
            day = series[per_day:2 * per_day]  # a Tuesday in every region
            assert min(day) < 0.75 * max(day), (svc.id, region)
            assert net.reachable_sites(region, svc.latency_slo_ms), (svc.id, region)


def test_colossus_sources_name_every_entity(colossus):
    text = (DATA / "colossus-2026" / "SOURCES.md").read_text()
    names = [s.id for s in colossus.sites] + [j.id for j in colossus.jobs] + [v.id for v in colossus.services]
    missing = [n for n in names if n not in text]
    assert not missing, f"SOURCES.md does not document {missing}"


def test_colossus_series_tables_match_their_script(tmp_path):
    src = DATA / "colossus-2026"
    for name in ("instance.yaml", "make_series.py"):
        shutil.copy(src / name, tmp_path / name)
    runpy.run_path(str(tmp_path / "make_series.py"), run_name="__main__")
    for name in ("demand.csv", "site_series.csv"):
        assert (tmp_path / name).read_text() == (src / name).read_text(), name


def test_colossus_cut_differs_from_the_shipped_instance_in_the_cut_only(colossus):
    # the re-planning example's instance: Colossus at 100 MW in periods 84-95 (two days of
    # 4-hour periods from mid-horizon), everything else instance.yaml's
    cut = load_instance(DATA / "colossus-2026" / "instance-cut.yaml")
    check(cut, source="instance-cut.yaml")
    T = colossus.horizon.periods
    assert cut.site("colossus-1").power_cap_mw == [300.0] * 84 + [100.0] * 12 + [300.0] * (T - 96)
    a = colossus.model_dump(exclude={"name", "description"})
    b = cut.model_dump(exclude={"name", "description"})
    a["sites"][0].pop("power_cap_mw")
    b["sites"][0].pop("power_cap_mw")
    assert a == b


def test_colossus_replan_spec_sweeps_the_move_budget(colossus):
    from allocator.options import SolveOptions
    from allocator.sweep_spec import check_spec, load_spec, scenario_options

    path = DATA / "colossus-2026" / "replan-sweep.yaml"
    spec = load_spec(path)
    cut = load_instance(DATA / "colossus-2026" / "instance-cut.yaml")
    for inst in (cut, colossus):  # the cut, and the reference without it
        scenarios = check_spec(inst, spec, source=str(path))
    opts = [scenario_options(spec.solve_options(SolveOptions()), sc) for sc in scenarios]
    assert [o.max_moves for o in opts] == [0, 1, 2, 4, 8, None]
    assert {(o.now, o.previous) for o in opts} == {(72, "out/colossus")}
    assert "[replan-cut]" in (DATA / "colossus-2026" / "SOURCES.md").read_text()


def test_demo_sources_cover_every_site():
    inst = yaml.safe_load((DATA / "demo" / "instance.yaml").read_text())
    text = (DATA / "demo" / "SOURCES.md").read_text()
    assert all(s["id"] in text for s in inst["sites"])


def test_instance_format_example_loads_and_validates(tmp_path):
    """The complete example in docs/instance-format.md is a valid instance."""
    import re

    text = (ROOT / "docs" / "instance-format.md").read_text()
    example = text[text.index("## A complete example"):]
    yaml_block = re.search(r"```yaml\n(.*?)```", example, re.S).group(1)
    csv_block = re.search(r"`demand.csv`:\n\n```\n(.*?)```", example, re.S).group(1)
    (tmp_path / "instance.yaml").write_text(yaml_block)
    (tmp_path / "demand.csv").write_text(csv_block)
    inst = load_instance(tmp_path / "instance.yaml", profiles_dir=MODELS)
    check(inst)
    opts = {o.gpu_type: o for o in next(j for j in inst.jobs if j.id == "cpt-70b").options}
    # 7.0M GPU-h x 0.05 / 15 = 23,333 H100-h: / 4096 = 5.70 h; / (2048 x 2.53) = 4.50 h
    assert opts["H100"].gpus == 4096 and opts["H100"].hours == pytest.approx(5.697, abs=1e-3)
    assert opts["GB200"].gpus == 2048 and opts["GB200"].hours == pytest.approx(4.503, abs=1e-3)
    assert inst.services[0].tokens_per_s_per_gpu == {"H100": 2726.0, "GB200": 12000.0}
    assert inst.services[0].demand["users-us-east"][4] == 4_500_000
