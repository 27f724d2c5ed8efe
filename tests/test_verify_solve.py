"""A real solve of the shipped demo, exported in every format, verifies; breaking the
exported files by hand (a job moved onto a site whose GPUs are full, a cost edited) is
caught by the verifier."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

import allocator
from allocator import load_instance
from allocator.cli import main
from allocator.options import SolveOptions
from allocator.verify import verify, verify_schedule

DEMO = Path(__file__).resolve().parents[1] / "data" / "demo" / "instance.yaml"


@pytest.fixture(scope="module")
def demo():
    return load_instance(DEMO)


@pytest.fixture(scope="module")
def solved(demo, tmp_path_factory):
    """One solve (any schedule within 1% will do: the verifier checks it, not its optimality),
    exported once per format."""
    res = allocator.solve(demo, SolveOptions(mip_gap=0.01, time_limit_s=120))
    assert res.status.has_schedule, res.message
    base = tmp_path_factory.mktemp("demo")
    return res, {fmt: res.export(base / fmt, fmt=fmt) for fmt in ("csv", "parquet", "json")}


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_solved_demo_verifies_in_every_format(demo, solved, fmt):
    res, dirs = solved
    ver = verify(demo, dirs[fmt])
    assert ver.violations == [], "\n".join(map(str, ver.violations))
    # the reported cost is the cost recomputed from the exported schedule
    assert ver.evaluation.total_cost_usd == pytest.approx(res.total_cost, rel=1e-6, abs=0.01)


def test_verify_cli_on_the_solved_demo(solved):
    _, dirs = solved
    out = CliRunner().invoke(main, ["verify", str(DEMO), str(dirs["csv"])])
    assert out.exit_code == 0, out.output
    assert out.output.startswith("schedule OK: ") and "costs match" in out.output


def _full_site_move(demo, folder: Path):
    """A training job and another site with a pool of its GPU type where, over the job's
    periods, the GPUs already in use plus the job's exceed what is available although the
    job alone would fit: the site is full because of what else runs there."""
    training = pd.read_csv(folder / "training.csv")
    use = pd.read_csv(folder / "site_gpus.csv")
    T = demo.horizon.periods
    for _, job in training.sort_values("gpus", ascending=False).iterrows():
        d = int(job["end_period"] - job["start_period"])
        for site in demo.sites:
            pool = next((p for p in site.pools if p.gpu_type == job["gpu_type"]), None)
            if site.id == job["site"] or pool is None or job["gpus"] > pool.available:
                continue
            busy = use[(use["site"] == site.id) & (use["gpu_type"] == job["gpu_type"])]
            in_use = busy.set_index("period")["gpus_in_use"]
            for start in range(0, T - d + 1):
                window = in_use.loc[start:start + d - 1]
                if ((window + job["gpus"]) > pool.available).any():
                    return job["job"], site, start
    return None


def test_job_moved_onto_a_full_site_is_caught(demo, solved, tmp_path):
    _, dirs = solved
    d = tmp_path / "broken"
    shutil.copytree(dirs["csv"], d)
    move = _full_site_move(demo, d)
    assert move is not None, "the demo schedule has no site that a job would overfill"
    job, site, start = move
    df = pd.read_csv(d / "training.csv", dtype=str, keep_default_na=False)
    row = df["job"] == job
    df.loc[row, "site"] = site.id
    df.loc[row, "provider"] = site.provider
    length = int(df.loc[row, "end_period"].iloc[0]) - int(df.loc[row, "start_period"].iloc[0])
    df.loc[row, "start_period"] = str(start)
    df.loc[row, "end_period"] = str(start + length)
    df.to_csv(d / "training.csv", index=False)
    found = verify_schedule(demo, d)
    rules = {v.rule for v in found}
    assert "capacity-gpus" in rules, "\n".join(map(str, found))
    assert any(v.rule == "capacity-gpus" and site.id in v.where for v in found)


def test_edited_cost_of_the_solved_demo_is_caught(demo, solved, tmp_path):
    _, dirs = solved
    d = tmp_path / "edited"
    shutil.copytree(dirs["json"], d)
    summary = json.loads((d / "summary.json").read_text())
    term = max(summary["costs"], key=lambda t: abs(summary["costs"][t]))  # the largest term
    assert summary["costs"][term] > 100
    summary["costs"][term] = math.floor(summary["costs"][term] * 0.9)
    (d / "summary.json").write_text(json.dumps(summary))
    found = verify_schedule(demo, d)
    assert [(v.rule, v.where) for v in found] == [("cost-mismatch", f"summary.json costs.{term}")]
