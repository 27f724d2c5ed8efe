"""`allocator solve`: exit codes, printed summary and the exported folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from allocator.cli import main

DATA = Path(__file__).resolve().parents[1] / "data"
DEMO = DATA / "demo" / "instance.yaml"


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def tiny(path: Path, jobs: list[dict], sites: int = 2) -> Path:
    """Site a: 8 GPUs on demand at 2 $/GPU-h; site b: 8 at 3 $/GPU-h; 4 periods of 1 h."""
    pool = {"gpu_type": "H100", "available": 8, "reserved": 0}
    d = {
        "name": "tiny",
        "horizon": {"start": "2026-01-01T00:00:00Z", "periods": 4, "period_hours": 1.0},
        "gpu_types": [{"id": "H100", "power_kw": 1.0}],
        "sites": [
            {"id": "a", "provider": "colossus", "power_cap_mw": 1.0,
             "pools": [pool | {"ondemand_price_usd_per_gpu_h": 2.0}]},
            {"id": "b", "provider": "aws", "power_cap_mw": 1.0,
             "pools": [pool | {"ondemand_price_usd_per_gpu_h": 3.0}]},
        ][:sites],
        "jobs": jobs,
    }
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return path


def job(jid: str, hours: float = 2, **kw) -> dict:
    return {"id": jid, "options": [{"gpu_type": "H100", "gpus": 8, "hours": hours}], **kw}


def summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def test_two_jobs_solve_optimal_with_the_hand_computed_cost(tmp_path):
    # j1 and j2 each need 8 GPUs for 2 h; a holds one gang at a time at 2 $/GPU-h: both run
    # at a one after the other (periods 0-1 and 2-3): 2 x 8 x 2 h x 2 $ = 64 $; b would
    # cost 3 $/GPU-h.
    inst = tiny(tmp_path / "two.yaml", [job("j1"), job("j2")])
    out = tmp_path / "out"
    r = run("solve", inst, "--out", out)
    assert r.exit_code == 0, r.output
    assert r.output.startswith("optimal, objective 64.00")
    assert "ondemand_lease $" in r.output and "peak utilisation per site" in r.output
    s = summary(out)
    assert s["status"] == "optimal"
    assert s["objective"] == pytest.approx(64.0)
    assert s["costs"]["ondemand_lease"] == pytest.approx(64.0)
    assert s["options"]["objective"] == "cost"
    assert (out / "training.csv").exists()


def test_infeasible_exits_3_with_the_explanation_and_a_summary(tmp_path):
    # only site a, two gangs of all its 8 GPUs for 3 h, both due by period 3 of 4: they would
    # overlap in periods 0-2.
    inst = tiny(tmp_path / "inf.yaml", [job("j1", 3, deadline_period=3),
                                        job("j2", 3, deadline_period=3)], sites=1)
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["solve", str(inst), "--out", str(out)])
    assert r.exit_code == 3, r.output + r.stderr
    assert r.stdout.startswith("infeasible; summary in")
    assert "the instance is infeasible:" in r.stderr
    assert "  - " in r.stderr
    s = summary(out)
    assert s["status"] == "infeasible"
    assert s["explanation"] and s["explanation"][0] in r.stderr


def test_no_schedule_within_the_limit_exits_4_and_says_what_to_try(tmp_path):
    out = tmp_path / "out"
    r = CliRunner().invoke(
        main, ["solve", str(DEMO), "--out", str(out), "--time-limit", "0", "--no-warm-start"])
    assert r.exit_code == 4, r.stdout + r.stderr
    assert "--time-limit" in r.stderr and "--gap" in r.stderr
    assert summary(out)["status"] == "no_solution"


def test_bad_instance_exits_2_naming_the_field(tmp_path):
    inst = tiny(tmp_path / "bad.yaml", [job("j1")])
    text = inst.read_text().replace("available: 8", "available: -8", 1)
    inst.write_text(text)
    r = CliRunner().invoke(main, ["solve", str(inst), "--out",
                                                  str(tmp_path / "o")])
    assert r.exit_code == 2
    assert "available" in r.stderr and "-8" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout


def test_bad_options_exit_2():
    assert run("solve", DEMO, "--out", "x", "--gap", "1.5").exit_code == 2
    assert run("solve", DEMO, "--out", "x", "--objective", "cheapest").exit_code == 2


def test_existing_schedule_is_kept_without_force_and_replaced_with_it(tmp_path, monkeypatch):
    inst = tiny(tmp_path / "one.yaml", [job("j1")])
    out = tmp_path / "out"
    assert run("solve", inst, "--out", out, "--quiet").exit_code == 0
    before = (out / "summary.json").read_text()

    import allocator.api as api

    def not_called(*a, **k):  # pragma: no cover - reached only on failure
        raise AssertionError("solved although the folder is refused")

    monkeypatch.setattr(api, "solve", not_called)
    r = CliRunner().invoke(main, ["solve", str(inst), "--out", str(out)])
    assert r.exit_code == 2
    assert "--force" in r.stderr
    assert (out / "summary.json").read_text() == before
    monkeypatch.undo()
    assert run("solve", inst, "--out", out, "--force", "--quiet").exit_code == 0


def test_quiet_prints_one_line_and_formats_and_duals_are_written(tmp_path):
    inst = tiny(tmp_path / "one.yaml", [job("j1")])
    out = tmp_path / "pq"
    r = run("solve", inst, "--out", out, "--format", "parquet", "--duals", "--quiet")
    assert r.exit_code == 0, r.output
    assert len(r.stdout.strip().splitlines()) == 1
    assert (out / "training.parquet").exists() and (out / "duals.parquet").exists()
    assert summary(out)["format"] == "parquet"


def test_demo_solves_optimal_through_the_cli(tmp_path):
    out = tmp_path / "demo"
    r = run("solve", DEMO, "--out", out)
    assert r.exit_code == 0, r.output
    s = summary(out)
    assert s["status"] == "optimal"
    assert s["gap"] <= 1e-4
    assert s["solve_s"] < 60
    # every placed job, the table the planner acts on
    training = (out / "training.csv").read_text().splitlines()
    assert training[0].startswith("job,option,site")
    assert len(training) >= 4  # header + the three mandatory jobs at least
