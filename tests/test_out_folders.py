"""Output folders: nothing a user had is ever lost, and a folder that cannot be used is
refused (exit 2) before any work."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from allocator.cli import main
from allocator.errors import InputError
from allocator.results import Result, ScheduleKept, Status, read_schedule
from tests.test_cli_solve import job, tiny

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo" / "instance.yaml"


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def schedule(tmp_path: Path, objective: float = 1.0, name: str = "s", **kw) -> Path:
    return Result(status=Status.OPTIMAL, objective=objective, **kw).export(tmp_path / name)


def objective_in(folder: Path) -> float:
    return json.loads((folder / "summary.json").read_text())["objective"]


# --------------------------------------------------------------------- --force keeps a user's files


def test_force_replaces_only_the_files_allocator_wrote(tmp_path):
    out = schedule(tmp_path, 1.0)
    (out / "APPROVAL.md").write_text("approved by ops, 2026-12-01")
    (out / "instance.yaml").write_text("name: mine\n")
    (out / "notes").mkdir()
    (out / "notes" / "a.txt").write_text("keep")
    Result(status=Status.OPTIMAL, objective=2.0).export(out, fmt="json", force=True)
    assert (out / "APPROVAL.md").read_text() == "approved by ops, 2026-12-01"
    assert (out / "instance.yaml").read_text() == "name: mine\n"
    assert (out / "notes" / "a.txt").read_text() == "keep"
    assert objective_in(out) == 2.0 and read_schedule(out).format == "json"
    assert not list(out.glob("*.csv"))  # the old tables went with the old schedule
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no temporary folders left
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_a_users_file_where_a_table_would_go_is_refused_by_name(tmp_path):
    out = schedule(tmp_path, 1.0)  # no duals table: duals.csv is not allocator's here
    (out / "duals.csv").write_text("my own duals")
    duals = pd.DataFrame({"kind": ["power"], "site": ["a"], "gpu_type": [""],
                          "link": pd.array([pd.NA], dtype="Int64"), "period": [0],
                          "marginal_usd_per_unit_h": [1.5]})
    with pytest.raises(InputError) as err:
        Result(status=Status.OPTIMAL, objective=2.0, frames={"duals": duals}).export(out, force=True)
    assert str(out / "duals.csv") in str(err.value) and "in the way" in str(err.value)
    assert (out / "duals.csv").read_text() == "my own duals" and objective_in(out) == 1.0


def test_cli_solve_force_keeps_approval_and_instance(tmp_path):
    inst = tiny(tmp_path / "i.yaml", [job("j1")])
    out = tmp_path / "out"
    assert cli("solve", inst, "--out", out, "--quiet").exit_code == 0
    (out / "APPROVAL.md").write_text("ok")
    (out / "instance.yaml").write_text(inst.read_text())
    r = cli("solve", inst, "--out", out, "--quiet", "--force", "--format", "parquet")
    assert r.exit_code == 0, r.output
    assert (out / "APPROVAL.md").read_text() == "ok"
    assert (out / "instance.yaml").read_text() == inst.read_text()
    assert (out / "training.parquet").exists() and not (out / "training.csv").exists()
    assert cli("verify", inst, out).exit_code == 0


def test_killed_replacement_never_looks_complete_and_the_old_schedule_comes_back(tmp_path):
    """SIGKILL in the middle of replacing a schedule that sits beside a user's file: the folder
    has no summary.json (not a schedule), the user's file is there, and the next export puts
    the previous schedule back before deciding (here: refusing without --force)."""
    out = schedule(tmp_path, 1.0)
    (out / "APPROVAL.md").write_text("ok")
    script = textwrap.dedent(f"""
        import os, signal
        import allocator.results as results
        from allocator.results import Result, Status
        real, n = os.replace, [0]
        def replace(a, b):
            n[0] += 1
            if n[0] == 12:  # the old files are aside, some new ones in place
                os.kill(os.getpid(), signal.SIGKILL)
            real(a, b)
        results.os.replace = replace
        Result(status=Status.OPTIMAL, objective=2.0).export({str(out)!r}, fmt="json", force=True)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not (out / "summary.json").exists() and list(out.glob("*.json"))  # half-way
    with pytest.raises(InputError, match="summary.json"):
        read_schedule(out)
    assert (out / "APPROVAL.md").read_text() == "ok"
    with pytest.raises(InputError, match="already holds a schedule"):
        Result(status=Status.OPTIMAL, objective=3.0).export(out)
    sched = read_schedule(out)
    assert sched.format == "csv" and sched.summary["objective"] == 1.0
    assert [p.name for p in out.glob("*.json")] == ["summary.json"]  # no new table left
    assert (out / "APPROVAL.md").read_text() == "ok"
    Result(status=Status.OPTIMAL, objective=3.0).export(out, force=True)
    assert objective_in(out) == 3.0 and sorted(p.name for p in tmp_path.iterdir()) == ["s"]


# --------------------------------------------------------------------- no schedule over a schedule


@pytest.mark.parametrize("status", [Status.ERROR, Status.INFEASIBLE, Status.NO_SOLUTION])
def test_a_result_without_schedule_never_replaces_one(tmp_path, status):
    out = schedule(tmp_path, 1.0)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ScheduleKept, match="the schedule is kept"):
        Result(status=status, message="stopped").export(out, force=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # a folder whose summary has no schedule is replaced as asked
    Result(status=status).export(tmp_path / "n")
    Result(status=Status.INFEASIBLE, message="again").export(tmp_path / "n", force=True)
    assert json.loads((tmp_path / "n" / "summary.json").read_text())["message"] == "again"


def test_cli_infeasible_solve_with_force_keeps_the_schedule(tmp_path):
    good = tiny(tmp_path / "good.yaml", [job("j1")])
    # as in test_cli_solve: two gangs of all 8 GPUs of the one site for 3 h, both due by
    # period 3 of 4, would overlap
    bad = tiny(tmp_path / "bad.yaml", [job("j1", 3, deadline_period=3),
                                       job("j2", 3, deadline_period=3)], sites=1)
    out = tmp_path / "out"
    assert cli("solve", good, "--out", out, "--quiet").exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    r = cli("solve", bad, "--out", out, "--force", "--quiet")
    assert r.exit_code == 3, r.output
    assert "nothing written" in r.output and "is kept" in r.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert cli("verify", good, out).exit_code == 0


# --------------------------------------------------------------------- writable before any work


@pytest.fixture
def no_solve(monkeypatch):
    import allocator.api

    def boom(*a, **k):
        raise AssertionError("solved although --out cannot be written")

    monkeypatch.setattr(allocator.api, "solve", boom)


def test_solve_out_under_a_file_is_exit_2_before_solving(tmp_path, no_solve):
    (tmp_path / "f").write_text("a file")
    r = cli("solve", DEMO, "--out", tmp_path / "f" / "out")
    assert r.exit_code == 2, r.output
    assert str(tmp_path / "f") in r.output and "is a file" in r.output
    assert "internal error" not in r.output


def test_report_out_whose_parent_is_a_file_is_exit_2(tmp_path):
    (tmp_path / "f").write_text("a file")
    sched = schedule(tmp_path, 1.0)
    r = cli("report", sched, "--out", tmp_path / "f" / "r.html")
    assert r.exit_code == 2 and "is a file" in r.output, r.output
    r = cli("report", sched, "--out", tmp_path / "r.html", "--png", tmp_path / "f" / "png")
    assert r.exit_code == 2 and "--png" in r.output, r.output
    assert not (tmp_path / "r.html").exists()


def test_generate_and_sweep_out_under_a_file_are_exit_2(tmp_path):
    (tmp_path / "f").write_text("a file")
    r = cli("generate", "--out", tmp_path / "f" / "gen")
    assert r.exit_code == 2 and "is a file" in r.output, r.output
    spec = tmp_path / "sweep.yaml"
    spec.write_text("parameters:\n  - {path: carbon_price_usd_per_t, values: [0, 1]}\n")
    r = cli("sweep", DEMO, spec, "--out", tmp_path / "f" / "sw", "--workers", "1")
    assert r.exit_code == 2 and "is a file" in r.output, r.output


@pytest.mark.skipif(sys.platform == "win32" or __import__("os").geteuid() == 0,
                    reason="permissions do not bind the superuser")
def test_read_only_out_parent_is_exit_2(tmp_path, no_solve):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        r = cli("solve", DEMO, "--out", ro / "out")
        assert r.exit_code == 2 and "cannot be written" in r.output, r.output
    finally:
        ro.chmod(0o700)


# --------------------------------------------------------------------- sweep folders


SPEC = "name: t\nparameters:\n  - {path: carbon_price_usd_per_t, values: [0, 1]}\n"


def fake_solve(inst, options=None):
    return Result(Status.INFEASIBLE, explanation=["fake"])


@pytest.fixture
def fake(monkeypatch):
    import allocator

    monkeypatch.setattr(allocator, "solve", fake_solve)


@pytest.mark.parametrize("foreign", ["results.csv", "sweep.json", "other-spec"])
def test_sweep_refuses_foreign_results_without_force(tmp_path, fake, foreign):
    from allocator.sweep import sweep

    out = tmp_path / "out"
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    if foreign == "other-spec":
        sweep(DEMO, spec, out=out, executor="inline")
        spec.write_text(SPEC.replace("name: t", "name: other").replace(
            "carbon_price_usd_per_t", "budget_usd").replace("[0, 1]", "[1e9]"))
    else:
        out.mkdir()
        (out / foreign).write_text("my own table,1\n" if foreign.endswith("csv") else '{"mine": 1}')
    def files():  # the user's files, not the sweep lock
        return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".sweep.lock"}

    before = files()
    with pytest.raises(InputError, match="pass --force"):
        sweep(DEMO, spec, out=out, executor="inline")
    assert files() == before
    r = cli("sweep", DEMO, spec, "--out", out, "--workers", "1", "--quiet")
    assert r.exit_code == 2 and "--force" in r.output, r.output
    r = cli("sweep", DEMO, spec, "--out", out, "--workers", "1", "--quiet", "--force")
    assert r.exit_code == 0, r.output
    assert json.loads((out / "sweep.json").read_text())["name"] in ("t", "other")


def test_the_same_sweep_resumes_without_force(tmp_path, fake):
    from allocator.sweep import sweep

    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    sweep(DEMO, spec, out=tmp_path / "out", executor="inline")
    df = sweep(DEMO, spec, out=tmp_path / "out", executor="inline")
    assert list(df["status"]) == ["infeasible", "infeasible"]


HOLD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import allocator
    from allocator.results import Result, Status
    from allocator.sweep import sweep
    def slow(inst, options=None):
        Path(sys.argv[2]).write_text("running")
        time.sleep(120)
        return Result(Status.INFEASIBLE)
    allocator.solve = slow
    sweep(sys.argv[3], sys.argv[4], out=sys.argv[1], executor="inline")
""")


def test_two_sweeps_in_one_folder_second_exits_2_and_a_dead_lock_is_taken_over(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    out, flag = tmp_path / "out", tmp_path / "running"
    first = subprocess.Popen([sys.executable, "-c", HOLD, str(out), str(flag), str(DEMO), str(spec)],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not flag.exists():
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        second = subprocess.run([sys.executable, "-c",
                                 "import sys; from allocator.cli import main; main()",
                                 "sweep", str(DEMO), str(spec), "--out", str(out),
                                 "--workers", "1", "--quiet"],
                                cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stdout + second.stderr
        assert "another sweep" in second.stderr and f"process {first.pid}" in second.stderr
        assert "Directory not empty" not in second.stdout + second.stderr
    finally:
        first.send_signal(signal.SIGKILL)  # dies holding the lock
        first.wait()
    import allocator
    from allocator.sweep import read_results, sweep

    real = allocator.solve
    allocator.solve = fake_solve
    try:
        sweep(DEMO, spec, out=out, executor="inline")
    finally:
        allocator.solve = real
    assert list(read_results(out)["status"]) == ["infeasible", "infeasible"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_scheduler_is_exit_2_naming_it_within_the_timeout(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    address = f"tcp://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    r = cli("sweep", DEMO, spec, "--out", tmp_path / "out", "--scheduler", address,
            "--connect-timeout", "1", "--quiet")
    took = time.monotonic() - t0
    assert r.exit_code == 2, r.output
    assert address in r.output and "--connect-timeout" in r.output
    assert "internal error" not in r.output
    assert took < 20, took  # 1 s to connect plus loading the demo, under load


# --------------------------------------------------------------------- CSV cells and figure names


@pytest.mark.filterwarnings("ignore:table training. missing column")
def test_formula_like_ids_are_text_in_csv_and_read_back_unchanged(tmp_path):
    ids = ["=HYPERLINK(\"x\")", "+1", "-2", "@SUM(A1)", "'quoted", "\tTAB", "plain", "''x"]
    training = pd.DataFrame({"job": ids, "site": ["=a"] * len(ids), "gpus": [8] * len(ids)})
    out = Result(status=Status.OPTIMAL, frames={"training": training}).export(tmp_path / "s")
    lines = (out / "training.csv").read_text().splitlines()[1:]
    import csv

    for row in csv.reader(lines):
        assert not row[0].startswith(("=", "+", "-", "@", "\t")), row
        assert row[2] == "'=a"
    got = read_schedule(out).frames["training"]
    assert list(got["job"]) == ids and set(got["site"]) == {"=a"}


def test_formula_like_ids_solve_verify_and_report_with_distinct_figures(tmp_path):
    inst = tiny(tmp_path / "i.yaml", [job("=HYPERLINK(1)"), job("+j2"), job("@j3", hours=1)])
    d = yaml.safe_load(inst.read_text())
    d["sites"][0]["id"], d["sites"][1]["id"] = "-a b", "-a-b"  # the same slug
    inst.write_text(yaml.safe_dump(d))
    out = tmp_path / "out"
    assert cli("solve", inst, "--out", out, "--quiet").exit_code == 0
    text = (out / "training.csv").read_text()
    assert "\n=" not in text and "\n+" not in text and "\n@" not in text
    r = cli("verify", inst, out)
    assert r.exit_code == 0, r.output
    assert set(read_schedule(out).frames["training"]["job"]) == {"=HYPERLINK(1)", "+j2", "@j3"}
    r = cli("report", out, "--out", tmp_path / "r.html", "--png", tmp_path / "png")
    assert r.exit_code == 0, r.output
    sites = sorted(p.name for p in (tmp_path / "png").glob("site-*.png"))
    assert len(sites) == 2, sites
    import re

    ids = re.findall(r'<figure id="(fig-site-[^"]+)"', (tmp_path / "r.html").read_text())
    assert len(set(ids)) == 2, ids


def test_unique_slugs_keep_plain_names_and_split_collisions():
    from allocator.figures import slug, unique_slugs

    got = unique_slugs(["colossus-1", "a b", "a-b", "A", "a"])
    assert got["colossus-1"] == "colossus-1"
    assert len(set(got.values())) == 5
    assert got["a b"].startswith("a-b-") and got["a-b"].startswith("a-b-")
    assert unique_slugs(["a b"]) == {"a b": slug("a b")}


def test_generate_does_not_overwrite_a_users_table_without_force(tmp_path):
    out = tmp_path / "g"
    out.mkdir()
    (out / "jobs.csv").write_text("my own jobs")
    r = cli("generate", "--jobs", "3", "--out", out)
    assert r.exit_code == 2 and str(out / "jobs.csv") in r.output, r.output
    assert (out / "jobs.csv").read_text() == "my own jobs" and not (out / "instance.yaml").exists()
