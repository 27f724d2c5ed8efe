"""The synthetic generator: seeded, valid by construction, realistic proportions, CLI."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allocator.cli import main
from allocator.generate import SIZES, generate_instance, write_instance
from allocator.io import load_instance
from allocator.network import Network
from allocator.validate import check


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _fits_alone(inst, job) -> bool:
    """Recomputed here, independently of allocator.validate: some option fits some allowed
    site with nothing else running (GPUs, power with PUE, zone, window)."""
    ph = inst.horizon.period_hours
    kw = {g.id: g.power_kw for g in inst.gpu_types}
    end = job.deadline_period if job.deadline_period is not None and job.deadline == "hard" else inst.horizon.periods
    for site in inst.sites:
        if job.allowed_zones is not None and site.zone not in job.allowed_zones:
            continue
        if job.allowed_sites is not None and site.id not in job.allowed_sites:
            continue
        caps = site.power_cap_mw if isinstance(site.power_cap_mw, list) else [site.power_cap_mw]
        for opt in job.options:
            pool = next((p for p in site.pools if p.gpu_type == opt.gpu_type), None)
            d = math.ceil(opt.hours / ph - 1e-9)
            if (pool is not None and pool.available >= opt.gpus
                    and opt.gpus * kw[opt.gpu_type] * site.pue / 1000 <= min(caps) + 1e-9
                    and job.release_period + d <= end):
                return True
    return False


def test_same_seed_writes_identical_files(tmp_path):
    write_instance(generate_instance(40, 2, 5, 24, seed=7), tmp_path / "a")
    write_instance(generate_instance(40, 2, 5, 24, seed=7), tmp_path / "b")
    write_instance(generate_instance(40, 2, 5, 24, seed=8), tmp_path / "c")
    a, b, c = (_files(tmp_path / x) for x in "abc")
    assert set(a) == {"instance.yaml", "jobs.csv", "links.csv", "demand.csv", "site_series.csv"}
    assert a == b
    assert a["jobs.csv"] != c["jobs.csv"]


def test_written_files_load_back_equal(tmp_path):
    inst = generate_instance(60, 3, 6, 36, seed=11, period_hours=2.0)
    path = write_instance(inst, tmp_path / "g")
    assert load_instance(path) == inst


@pytest.mark.parametrize("size", ["S", "M"])
def test_named_sizes_validate_and_have_their_counts(size):
    kw = SIZES[size]
    inst = generate_instance(**kw, seed=1)
    assert len(inst.jobs) == kw["jobs"]
    assert len(inst.sites) == kw["sites"]
    assert inst.horizon.periods == kw["periods"]
    assert 1 <= len(inst.services) <= kw["services"]
    assert check(inst) == []  # no errors (would raise) and no warnings
    assert all(_fits_alone(inst, j) for j in inst.jobs if j.mandatory)


def test_size_l_validates():
    inst = generate_instance(**SIZES["L"], seed=0)
    assert len(inst.jobs) == 1000 and len(inst.sites) == 10 and inst.horizon.periods == 168
    check(inst)


@pytest.mark.slow
def test_size_xl_validates_quickly():
    import time

    t0 = time.perf_counter()
    inst = generate_instance(**SIZES["XL"], seed=0)
    assert time.perf_counter() - t0 < 15
    assert len(inst.jobs) == 5000 and len(inst.sites) == 30
    check(inst)


def test_realistic_proportions():
    inst = generate_instance(1000, 6, 10, 168, seed=3)
    first = [j.options[0] for j in inst.jobs]
    gang = [o.gpus for o in first]
    assert sum(8 <= g <= 512 for g in gang) / len(gang) > 0.9  # most gangs 8-512
    assert max(gang) >= 1024  # and a few large ones
    d = sorted(math.ceil(o.hours) for o in first)
    assert d[0] >= 1 and d[len(d) // 2] >= 3 and d[-1] <= 48  # a few to a few dozen periods
    optional = sum(not j.mandatory for j in inst.jobs) / len(inst.jobs)
    assert 0.08 < optional < 0.25
    assert any(j.deadline == "soft" for j in inst.jobs)
    assert any(j.predecessors for j in inst.jobs)
    assert any(j.allowed_zones == ["EU"] for j in inst.jobs)
    assert {s.zone for s in inst.sites} == {"US", "EU"}
    assert len({s.provider for s in inst.sites}) >= 4
    # the first site is a power lease: energy billed per period, power below what all GPUs draw
    lease = inst.sites[0]
    kw = {g.id: g.power_kw for g in inst.gpu_types}
    draw = sum(p.available * kw[p.gpu_type] for p in lease.pools) * lease.pue / 1000
    assert isinstance(lease.energy_price_usd_per_mwh, list) and lease.power_cap_mw < draw
    assert all(p.reserved == p.available for p in lease.pools)
    # training plus inference load the GPUs about 75% on average
    T = inst.horizon.periods
    train = sum(o.gpus * math.ceil(o.hours) for o in first) / T
    infer = sum(sum(v) / T / s.tokens_per_s_per_gpu["H100"] for s in inst.services for v in s.demand.values())
    gpus = sum(p.available for s in inst.sites for p in s.pools)
    assert 0.55 < (train + infer) / gpus < 0.95
    # every demanded region has a site within the SLO; N+1 services have two
    net = Network(inst)
    for s in inst.services:
        for r in s.demand:
            assert len(net.reachable_sites(r, s.latency_slo_ms)) >= (2 if s.redundancy else 1)


def test_daily_demand_cycle():
    inst = generate_instance(0, 1, 3, 96, seed=0)  # hourly from Monday 00:00 UTC
    for series in inst.services[0].demand.values():
        tue, wed = series[24:48], series[48:72]  # whole local weekdays in every region
        assert min(tue) < 0.7 * max(tue)  # a night trough
        assert tue == wed  # the weekday cycle repeats


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(jobs=st.integers(0, 40), services=st.integers(0, 3), sites=st.integers(1, 16),
       periods=st.integers(2, 40), ph=st.sampled_from([0.5, 1.0, 2.0, 4.0]), seed=st.integers(0, 10**6))
def test_any_small_instance_validates(jobs, services, sites, periods, ph, seed):
    inst = generate_instance(jobs, services, sites, periods, seed=seed, period_hours=ph)
    check(inst)  # raises InputError on any error
    assert all(_fits_alone(inst, j) for j in inst.jobs if j.mandatory)


@pytest.mark.parametrize("kw", [{"jobs": -1}, {"sites": 0}, {"periods": 1}, {"period_hours": 0.0},
                                {"period_hours": float("nan")}])
def test_bad_arguments_are_input_errors(kw):
    from allocator.errors import InputError

    args = {"jobs": 5, "services": 1, "sites": 2, "periods": 6} | kw
    with pytest.raises(InputError) as exc:
        generate_instance(**args)
    assert next(iter(kw)) in str(exc.value)


def test_cli_generate_then_validate(tmp_path):
    out = tmp_path / "inst"
    runner = CliRunner()
    res = runner.invoke(main, ["generate", "--size", "S", "--jobs", "20", "--seed", "5", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "20 jobs" in res.output
    assert load_instance(out / "instance.yaml") == generate_instance(20, 2, 4, 24, seed=5)
    # an existing instance is not overwritten without --force
    res = runner.invoke(main, ["generate", "--jobs", "3", "--out", str(out)])
    assert res.exit_code == 2
    assert "already exists" in res.output and "--force" in res.output
    res = runner.invoke(main, ["generate", "--jobs", "3", "--out", str(out), "--force"])
    assert res.exit_code == 0
    assert len(load_instance(out).jobs) == 3


@pytest.mark.parametrize("args", [["--jobs", "-3"], ["--periods", "1"], ["--size", "XXL"],
                                  ["--period-hours", "0"], ["--sites", "many"]])
def test_cli_generate_bad_usage_exits_2(tmp_path, args):
    res = CliRunner().invoke(main, ["generate", "--out", str(tmp_path / "x"), *args])
    assert res.exit_code == 2
    assert "Traceback" not in res.output
    assert args[0] in res.output


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow),
                                  pytest.param(3, marks=pytest.mark.slow)])
def test_mandatory_jobs_fit_together(seed):
    """Pools are grown until a plan of all mandatory jobs exists, so small generated instances
    are feasible (not only valid) and the MIP finds a schedule."""
    from allocator.api import solve
    from allocator.results import Status

    inst = generate_instance(12, 1, 3, 10, seed=seed, period_hours=2.0)
    res = solve(inst, time_limit_s=30, mip_gap=0.01)
    assert res.status in (Status.OPTIMAL, Status.FEASIBLE), (res.status, res.explanation)
