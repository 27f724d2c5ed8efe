"""Hostile and extreme input beyond what a corpus folder can hold: files too large to commit,
paths through every command that loads an instance, the API's switch for outside paths,
and an instance at the limits of every accepted range solved without the solver refusing it.
"""

from __future__ import annotations

import copy
import shutil
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import allocator
from allocator.cli import main
from allocator.errors import InputError
from allocator.io import MAX_FILE_BYTES, instance_from_dict, load_instance, outside_paths_allowed
from allocator.results import export_result
from allocator.schema import MAX_GPUS, RANGES
from allocator.verify import verify

CORPUS = Path(__file__).resolve().parent / "corpus"
BASE = CORPUS / "valid-base" / "instance.yaml"


def _out(result) -> str:
    return result.stdout + result.stderr


def _with_outside_table(tmp_path: Path) -> Path:
    """instance/instance.yaml whose demand table lies in a sibling folder."""
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "demand.csv").write_text(
        "service,region,period,tokens_per_s\nchat,users-us,0,1000\nchat,users-us,1,2000\n")
    (tmp_path / "instance").mkdir()
    text = BASE.read_text().replace("    demand: {users-us: 20000}\n",
                                    "    demand: {}\ndemand_csv: ../shared/demand.csv\n")
    path = tmp_path / "instance" / "instance.yaml"
    path.write_text(text)
    return path


def test_csv_over_the_size_limit_is_refused_by_its_size(tmp_path):
    # a sparse file: stat reports the size, nothing is read (the check must come first)
    big = tmp_path / "demand.csv"
    with big.open("wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)
    text = BASE.read_text().replace("    demand: {users-us: 20000}\n", "    demand: {}\ndemand_csv: demand.csv\n")
    (tmp_path / "instance.yaml").write_text(text)
    t0 = time.perf_counter()
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "instance.yaml")])
    assert time.perf_counter() - t0 < 10  # reading 256 MiB of zeros would take far longer under pandas
    assert result.exit_code == 2, _out(result)
    assert f"(file, demand.csv) | file is {MAX_FILE_BYTES + 1} bytes" in _out(result)
    assert "Traceback" not in _out(result)


def test_yaml_over_the_size_limit_is_refused(tmp_path):
    big = tmp_path / "instance.yaml"
    with big.open("wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)
    result = CliRunner().invoke(main, ["validate", str(big)])
    assert result.exit_code == 2 and "file is" in _out(result) and "MiB" in _out(result)


def test_alias_bomb_is_refused_quickly():
    t0 = time.perf_counter()
    result = CliRunner().invoke(main, ["validate", str(CORPUS / "yaml-alias-bomb" / "instance.yaml")])
    assert result.exit_code == 2
    assert time.perf_counter() - t0 < 5  # 105 s and 3.2 GB before the bound


def test_deep_nesting_beyond_any_recursion_limit(tmp_path):
    # 100000 levels crash the C composer itself (a segfault, not an exception): refused before
    path = tmp_path / "instance.yaml"
    path.write_text("horizon: " + "[" * 100_000 + "]" * 100_000 + "\n")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2 and "nested more than" in _out(result)


def test_anchors_of_ordinary_size_still_load(tmp_path):
    # an anchored pool reused by a second site: well inside the bound
    text = BASE.read_text().replace(
        "      - {gpu_type: H100, available: 64,", "      - &pool {gpu_type: H100, available: 64,")
    text = text.replace("regions:", "  - {id: site-b, provider: aws, zone: US, power_cap_mw: 1.0, pools: [*pool]}\nregions:")
    path = tmp_path / "instance.yaml"
    path.write_text(text)
    inst = load_instance(path)
    assert [p.available for s in inst.sites for p in s.pools] == [64, 64]


def test_outside_paths_refused_then_allowed_by_the_api(tmp_path):
    path = _with_outside_table(tmp_path)
    with pytest.raises(InputError) as exc:
        load_instance(path)
    assert "demand_csv: '../shared/demand.csv' resolves outside" in str(exc.value)
    inst = load_instance(path, allow_outside_paths=True)
    assert inst.services[0].demand["users-us"][:2] == [1000.0, 2000.0]
    with outside_paths_allowed():  # for loaders that do not take the argument (allocator.solve)
        result = allocator.solve(str(path), time_limit_s=30)
    assert result.status.has_schedule
    with pytest.raises(InputError):
        allocator.solve(str(path), time_limit_s=30)  # the context ended: refused again


def test_a_symlink_inside_the_folder_to_a_file_inside_is_fine(tmp_path):
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "demand.csv").write_text("service,region,period,tokens_per_s\nchat,users-us,0,5\n")
    (tmp_path / "demand.csv").symlink_to(tmp_path / "tables" / "demand.csv")
    text = BASE.read_text().replace("    demand: {users-us: 20000}\n", "    demand: {}\ndemand_csv: demand.csv\n")
    (tmp_path / "instance.yaml").write_text(text)
    assert load_instance(tmp_path / "instance.yaml").services[0].demand["users-us"][0] == 5.0


@pytest.mark.parametrize("command", ["validate", "solve", "verify", "sweep", "report"])
def test_every_command_that_loads_an_instance_takes_the_flag(command, tmp_path):
    path = _with_outside_table(tmp_path)
    out = tmp_path / "out"
    spec = tmp_path / "sweep.yaml"
    spec.write_text("parameters:\n  - path: carbon_price_usd_per_t\n    values: [0]\n")
    sched = tmp_path / "sched"
    if command in ("verify", "report"):
        export_result(allocator.solve(load_instance(path, allow_outside_paths=True)), sched)
    args = {"validate": ["validate", str(path)],
            "solve": ["solve", str(path), "--out", str(out), "--quiet"],
            "verify": ["verify", str(path), str(sched)],
            "sweep": ["sweep", str(path), str(spec), "--out", str(out), "--workers", "1", "--quiet"],
            "report": ["report", str(sched), "--out", str(tmp_path / "r.html"), "--instance", str(path)]}[command]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 2, _out(refused)
    assert "demand_csv" in _out(refused) and "--allow-outside-paths" in _out(refused)
    shutil.rmtree(out, ignore_errors=True)
    allowed = CliRunner().invoke(main, [args[0], "--allow-outside-paths", *args[1:]])
    assert allowed.exit_code == 0, _out(allowed)


# --------------------------------------------------------------------------- range limits


def _at(d, path, v):
    node = d
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = v


POOL = ("sites", 0, "pools", 0)
HI = {name: r.hi for name, r in RANGES.items()}
# every coefficient-bearing field of the base instance at the top of its range, together
EXTREMES = [
    (("horizon", "period_hours"), HI["period_hours"]),
    (("gpu_types", 0, "power_kw"), HI["power_kw"]),
    (("gpu_types", 0, "relative_throughput"), HI["relative_throughput"]),
    (POOL + ("available",), MAX_GPUS), (POOL + ("reserved",), MAX_GPUS),
    (POOL + ("reserved_price_usd_per_gpu_h",), HI["reserved_price_usd_per_gpu_h"]),
    (POOL + ("ondemand_price_usd_per_gpu_h",), HI["ondemand_price_usd_per_gpu_h"]),
    (("sites", 0, "power_cap_mw"), HI["power_cap_mw"]),
    (("sites", 0, "pue"), HI["pue"]),
    (("sites", 0, "energy_price_usd_per_mwh"), HI["energy_price_usd_per_mwh"]),
    (("sites", 0, "carbon_g_per_kwh"), HI["carbon_g_per_kwh"]),
    (("carbon_price_usd_per_t",), HI["carbon_price_usd_per_t"]),
    (("links", 0, "bandwidth_gbps"), HI["bandwidth_gbps"]),
    (("links", 0, "egress_usd_per_gb"), HI["egress_usd_per_gb"]),
    # 1000 GPUs x 10000 kW x PUE 5 = 50 GW: the gang fits the 100 GW ceiling
    (("jobs", 0, "options", 0, "gpus"), 1000),
    (("jobs", 0, "tardiness_usd_per_h"), HI["tardiness_usd_per_h"]),
    (("services", 0, "demand", "users-us"), HI["demand"]),
    (("services", 0, "tokens_per_s_per_gpu", "H100"), HI["tokens_per_s_per_gpu"]),
    (("services", 0, "unserved_usd_per_mtok"), HI["unserved_usd_per_mtok"]),
    (("services", 0, "bytes_per_token"), HI["bytes_per_token"]),
    (("services", 0, "latency_slo_ms"), HI["latency_slo_ms"]),
]


def _extreme(extra=()):
    data = yaml.safe_load(BASE.read_text())
    for path, value in [*EXTREMES, *extra]:
        _at(data, path, value)
    return instance_from_dict(copy.deepcopy(data), source="extremes")


@pytest.mark.parametrize("extra", [(), ((("budget_usd",), HI["budget_usd"]),),
                                   ((("services", 0, "tokens_per_s_per_gpu", "H100"), 1e-6),
                                    (("links", 0, "bandwidth_gbps"), 1e-6))],
                         ids=["top", "top-with-budget", "tiny-throughput-and-bandwidth"])
def test_instance_at_the_range_limits_is_solved(extra, tmp_path):
    inst = _extreme(extra)
    result = allocator.solve(inst, time_limit_s=60)
    assert result.status.value in ("optimal", "feasible"), (result.status, result.message)
    folder = export_result(result, tmp_path / "s")
    ver = verify(inst, folder)
    assert ver.ok, ver.violations[:5]


def _ranges_table() -> str:
    def f(x):
        if x == int(x) and abs(x) < 1e7:
            return f"{int(x):_}" if x >= 10000 else str(int(x))
        return f"{x:g}"

    rows = ["| field | unit | accepted | warning above |", "| --- | --- | --- | --- |"]
    for name, r in RANGES.items():
        lo = ("> " if r.lo_open else ">= ") + f(r.lo)
        rows.append(f"| {name} | {r.unit} | {lo}, <= {f(r.hi)}{' (whole)' if r.whole else ''} | "
                    f"{f(r.usual) if r.usual is not None else '-'} |")
    return "\n".join(rows)


@pytest.mark.parametrize("page", ["validation.md", "instance-format.md"])
def test_docs_list_the_ranges_of_the_code(page):
    doc = (Path(__file__).resolve().parents[1] / "docs" / page).read_text()
    assert _ranges_table() in doc


@pytest.mark.parametrize("budget", [False, True])
def test_longest_job_at_the_largest_gang_and_price(budget, tmp_path):
    # 10 million GPUs x 1e6 hours x 1e4 $ per GPU-hour: a start column costing 1e17 $, in the
    # objective and (with a budget) in the budget row; 1345 periods of 744 h hold the 1e6 h run
    data = yaml.safe_load(BASE.read_text())
    data["horizon"].update(periods=1345, period_hours=HI["period_hours"])
    data["sites"][0]["pools"][0].update(available=MAX_GPUS, reserved=0, reserved_price_usd_per_gpu_h=1e4,
                                        ondemand_price_usd_per_gpu_h=HI["ondemand_price_usd_per_gpu_h"])
    data["sites"][0]["power_cap_mw"] = HI["power_cap_mw"]
    data["gpu_types"][0]["power_kw"] = 0.01  # 1e7 x 0.01 kW x PUE 1.2 = 120 MW
    data["jobs"][0]["options"][0].update(gpus=MAX_GPUS, hours=HI["hours"])
    data["services"][0]["demand"] = {"users-us": 0}
    if budget:
        data["budget_usd"] = HI["budget_usd"]
    inst = instance_from_dict(data, source="extremes")
    result = allocator.solve(inst, time_limit_s=60, strategy="mip")
    if budget:  # 1e17 $ of a mandatory job cannot fit a 1e15 $ budget: a verdict, not a rejection
        assert result.status.value == "infeasible", (result.status, result.message)
        return
    assert result.status.value == "optimal", (result.status, result.message)
    # the run occupies ceil(1e6 / 744) = 1345 whole periods = 1,000,680 h, paid on demand:
    # 1e7 GPUs x 1e4 $ x 1,000,680 h = 1.00068e17 $ (no energy price, no carbon price)
    assert result.objective == pytest.approx(1.00068e17, rel=1e-9)
    assert verify(inst, export_result(result, tmp_path / "s")).ok
