"""Ctrl-C, live progress and --quiet: the run loop of a solve as a user at a terminal sees it.

Ctrl-C is a real SIGINT: sent to a CLI subprocess once its --log says the search started, or
sent by the test process to itself from a progress callback (which HiGHS calls during the
search), so the signal lands where a user's would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import allocator
from allocator.generate import generate_instance, write_instance
from allocator.verify import evaluate, verify

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo"
CLI = [sys.executable, "-c", "from allocator.cli import main; main()"]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture(scope="module")
def medium(tmp_path_factory) -> Path:
    """Generated M (200 jobs, 8 sites, 48 periods): HiGHS needs far more than 30 s to prove it,
    and has an incumbent within a few seconds."""
    folder = tmp_path_factory.mktemp("medium")
    write_instance(generate_instance(jobs=200, services=4, sites=8, periods=48, seed=1), folder)
    return folder


def _wait_for(path: Path, text: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if path.exists() and text in path.read_text():
            return
        if proc.poll() is not None:
            raise AssertionError(f"ended before {text!r}: {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"{text!r} not in {path} after {timeout} s")


def _interrupted_cli(args: list[str], log: Path, after: str, delay: float = 0.3):
    proc = subprocess.Popen([*CLI, *args, "--log", str(log)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())
    _wait_for(log, after, proc)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


@pytest.mark.parametrize("strategy", ["mip", "lns"])
def test_ctrl_c_in_a_solve_writes_the_incumbent_and_exits_130(medium, tmp_path, strategy):
    """The first Ctrl-C stops the search; the best schedule so far is exported as feasible
    with its bound and gap and "interrupted" in its message, and passes the verifier."""
    out = tmp_path / "out"
    t0 = time.monotonic()
    code, stdout, stderr = _interrupted_cli(
        ["solve", str(medium), "--out", str(out), "--time-limit", "60", "--strategy", strategy,
         "--quiet"], tmp_path / "solve.log", "] incumbent ")
    assert code == 130, (stdout, stderr)
    assert time.monotonic() - t0 < 45  # stopped, not run to the 60 s limit
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "feasible"
    assert "interrupted" in summary["message"]
    assert summary["bound"] is not None and summary["gap"] is not None
    assert summary["bound"] <= summary["objective"] + 1e-6
    assert stdout.startswith("feasible, objective ") and len(stdout.splitlines()) == 1
    ver = verify(allocator.load_instance(medium), out)
    assert ver.ok, ver.violations[:5]


def test_ctrl_c_before_any_schedule_keeps_the_previous_one(medium, tmp_path):
    """--force over a good schedule, Ctrl-C while building: nothing is written, exit 130."""
    out = tmp_path / "out"
    assert subprocess.run([*CLI, "solve", str(DEMO), "--out", str(out), "--quiet"],
                          env=_env(), capture_output=True).returncode == 0
    before = (out / "summary.json").read_text()
    code, stdout, stderr = _interrupted_cli(
        ["solve", str(medium), "--out", str(out), "--force", "--time-limit", "60",
         "--strategy", "mip", "--quiet"], tmp_path / "solve.log", "stage build", delay=0.0)
    assert code == 130, (stdout, stderr)
    assert (out / "summary.json").read_text() == before


def _press_ctrl_c_at_first_incumbent(presses: int):
    """A progress callback that sends SIGINT to this process once the search has a schedule
    (``presses`` times, each handled before the next is sent)."""
    sent = []

    def callback(event) -> None:
        if event.incumbent is not None and not sent:
            for _ in range(presses):
                sent.append(event)
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.01)  # the handler runs at the next bytecode of this thread

    return callback, sent


def test_api_raises_keyboard_interrupt_with_the_interrupted_result(medium):
    callback, sent = _press_ctrl_c_at_first_incumbent(1)
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt) as info:
        allocator.solve(medium, time_limit_s=60, strategy="mip", progress=callback)
    from allocator.interrupt import SolveInterrupted

    assert sent and time.monotonic() - t0 < 45
    assert isinstance(info.value, SolveInterrupted)
    result = info.value.result
    assert result.status.value == "feasible" and "interrupted" in result.message
    assert result.bound is not None and result.gap is not None and result.gap > 0
    ev = evaluate(allocator.load_instance(medium), result.frames)
    assert not ev.violations and ev.total_cost_usd == pytest.approx(result.objective, rel=1e-9)


def test_api_returns_the_interrupted_result_when_asked(medium):
    callback, sent = _press_ctrl_c_at_first_incumbent(1)
    result = allocator.solve(medium, time_limit_s=60, strategy="mip", progress=callback,
                             on_interrupt="return")
    assert sent and result.status.value == "feasible" and "interrupted" in result.message
    assert not evaluate(allocator.load_instance(medium), result.frames).violations
    # the next solve is not stopped by the old request
    again = allocator.solve(DEMO, time_limit_s=60)
    assert again.status.value == "optimal" and "interrupted" not in again.message


def test_second_ctrl_c_aborts_without_a_result(medium):
    callback, sent = _press_ctrl_c_at_first_incumbent(2)
    with pytest.raises(KeyboardInterrupt) as info:
        allocator.solve(medium, time_limit_s=60, strategy="mip", progress=callback)
    from allocator.interrupt import SolveInterrupted

    assert len(sent) == 2
    assert not isinstance(info.value, SolveInterrupted)


def test_progress_callback_gets_stages_and_moving_figures():
    events = []
    result = allocator.solve(DEMO, strategy="mip", progress=events.append)
    stages = [e.stage for e in events]
    # the pipeline's stages, in order, each once when it starts
    firsts = list(dict.fromkeys(stages))
    assert firsts[:5] == ["load", "validate", "index", "build", "solve"] and firsts[-1] == "done"
    assert all(a.elapsed_s <= b.elapsed_s for a, b in zip(events, events[1:], strict=False))
    search = [e for e in events if e.stage == "solve" and e.incumbent is not None]
    assert search, "no incumbent reported during the search"
    for e in search:
        if e.bound is not None:  # a minimisation: bound <= incumbent, gap = their distance
            assert e.bound <= e.incumbent + 1e-6 * abs(e.incumbent)
            assert e.gap == pytest.approx(abs(e.incumbent - e.bound) / abs(e.incumbent), abs=1e-6)
    # the last incumbent is the plan returned (HiGHS's value; the API recomputes it in cents)
    assert search[-1].incumbent == pytest.approx(result.objective, rel=1e-6)


def test_quiet_prints_exactly_the_status_line_on_every_route(tmp_path):
    """HiGHS prints a banner when a process makes its first Highs object: on the lns route it
    leaked onto stdout before the status line."""
    for route in (["--strategy", "mip"], ["--strategy", "lns", "--time-limit", "5"],
                  ["--heuristic", "greedy"]):
        out = tmp_path / route[-1]
        proc = subprocess.run([*CLI, "solve", str(DEMO), "--out", str(out), "--quiet", *route],
                              capture_output=True, text=True, env=_env())
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert len(lines) == 1 and lines[0].split(",")[0] in ("optimal", "feasible"), proc.stdout
        assert proc.stderr == ""


def test_no_live_display_when_not_a_terminal_and_log_keeps_solver_and_stages(tmp_path):
    log = tmp_path / "solve.log"
    proc = subprocess.run([*CLI, "solve", str(DEMO), "--out", str(tmp_path / "out"),
                           "--log", str(log)], capture_output=True, text=True, env=_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no display, no control sequences, on a pipe
    assert "\x1b[" not in proc.stdout and "elapsed" not in proc.stdout
    text = log.read_text()
    for stage in ("stage load", "stage build", "stage solve", "stage done"):
        assert stage in text
    assert "Presolving model" in text  # HiGHS's own log
    assert "incumbent " in text


SWEEP_SPEC = """\
name: ctrl-c
mode: grid
parameters:
  - path: carbon_price_usd_per_t    # 8 scenarios of the demo, about a second each
    values: [0, 10, 20, 30, 40, 50, 60, 70]
solve:
  time_limit_s: 20
"""


@pytest.mark.parametrize(("workers", "trials"), [
    ("1", 2),  # the default run: two trials, the Ctrl-C at two points of a scenario
    pytest.param("1", 5, marks=pytest.mark.slow),
    pytest.param("2", 5, marks=pytest.mark.slow),
])
def test_ctrl_c_in_a_sweep_exits_130_keeping_finished_rows_every_time(tmp_path, workers, trials):
    """Ctrl-C's in five (two) sweeps (in this process; in two worker processes), each sent to
    the whole process group as a terminal does, once a first scenario has finished: each sweep
    stops with 130 and keeps its finished rows (a Ctrl-C during a scenario's HiGHS run used to
    end that scenario only, and the sweep went on)."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(SWEEP_SPEC)
    for trial in range(trials):
        out = tmp_path / f"run{trial}"
        proc = subprocess.Popen([*CLI, "sweep", str(DEMO), str(spec), "--out", str(out),
                                 "--workers", workers, "--quiet"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=_env(),
                                start_new_session=True)
        t0 = time.monotonic()
        while not list(out.glob("scenarios/*/row.json")):
            assert proc.poll() is None and time.monotonic() - t0 < 60, proc.communicate()
            time.sleep(0.02)
        time.sleep(0.1 + 0.2 * trial * 4 / max(1, trials - 1))  # at other points of the next scenario
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130, (trial, stdout, stderr)
        rows = list(out.glob("scenarios/*/row.json"))
        assert 1 <= len(rows) < 8, trial
        import pandas as pd

        done = pd.read_csv(out / "results.csv")["status"].notna().sum()
        assert done == len(rows)  # the gathered table holds every finished row


def test_ctrl_c_in_a_sweep_on_dask_threads_stops_and_keeps_finished_rows(tmp_path):
    """Dask worker threads in this process: the main thread waits on the futures, a Ctrl-C
    there stops the sweep (and the searches in the worker threads)."""
    import threading

    import yaml
    from distributed import Client, LocalCluster

    from allocator.sweep import read_results, sweep

    spec = yaml.safe_load(SWEEP_SPEC)
    rows: list[dict] = []

    def on_row(row: dict) -> None:
        rows.append(row)
        if len(rows) == 1:  # into the next scenario's search
            threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        with pytest.raises(KeyboardInterrupt):
            sweep(DEMO, spec, out=tmp_path / "s", executor=client, on_row=on_row)
    assert 1 <= len(rows) < 8
    finished = read_results(tmp_path / "s")
    assert finished["status"].notna().sum() == len(list((tmp_path / "s").glob("scenarios/*/row.json")))
    assert set(finished["status"].dropna()) <= {"optimal", "feasible"}  # no false error rows
