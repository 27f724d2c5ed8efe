"""Exports lose nothing and never leave a half-written schedule that looks complete."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allocator.errors import InputError
from allocator.results import (
    COST_TERMS,
    REQUIRED_TABLES,
    TABLES,
    Result,
    Status,
    export_result,
    normalize_frame,
    read_schedule,
    read_table,
    summary_dict,
    write_table,
)

FORMATS = ["csv", "parquet", "json"]


def tricky_frames() -> dict[str, pd.DataFrame]:
    """Tables with values that a careless writer or reader would change: floats that need
    all 17 digits, tiny and huge numbers, NaN, missing ints, text with commas, quotes,
    newlines and non-ASCII, timestamps as ISO strings, an extra column, an empty table."""
    training = pd.DataFrame({
        "job": ["llama, 405b", 'say "hi"', "zürich-ft"],
        "option": [0, 2, 1],
        "site": ["colossus-1", "aws-use1", "gcp-euw4"],
        "provider": ["colossus", "aws", ""],
        "gpu_type": ["H100", "H200", "H100"],
        "gpus": [16384, 512, 2**40],
        "start_period": [0, 7, 335],
        "end_period": [12, 30, 336],
        "start_time": ["2026-12-01T00:00:00Z", "2026-12-01T07:00:00Z", "2026-12-14T23:00:00Z"],
        "end_time": ["2026-12-01T12:00:00Z", "2026-12-02T06:00:00Z", "2026-12-15T00:00:00Z"],
        "hours": [0.1 + 0.2, 1e-300, 1.7976931348623157e308],
        "tardiness_h": [0.0, -0.0, 5e-324],
        "site_extra_usd": [1234567.8901234567, 0.0, 2.5],
        "tardiness_usd": [0.0, 1 / 3, 2 / 3],
        "egress_usd": [np.nan, 12.345678901234567, 100.0],
        "note": ["first\nline", "", "ünïcode ✓"],  # a column the contract does not know
    })
    links = pd.DataFrame({
        "link": [0, 3], "a": ["lake-us", "aws-use1"], "b": ["aws-use1", "users-us-east"],
        "period": [0, 1], "traffic_gbps": [1.1111111111111112, 0.0],
        "bandwidth_gbps": [np.nan, 400.0], "egress_gb": [500.0, 0.0], "egress_usd": [0.0, 0.0],
    })
    duals = pd.DataFrame({
        "kind": ["power", "bandwidth"], "site": ["colossus-1", ""], "gpu_type": ["", ""],
        "link": pd.array([pd.NA, 3], dtype="Int64"), "period": [4, 5],
        "marginal_usd_per_unit_h": [12.5, -0.0],
    })
    return {"training": training, "links": links, "duals": duals}


def tricky_result(**kw) -> Result:
    costs = {t: float(i) * 1.1 for i, t in enumerate(COST_TERMS)}
    base = dict(status=Status.FEASIBLE, objective=sum(costs.values()), bound=float("-inf"),
                gap=float("nan"), costs=costs, emissions_t=np.float64(1.5), build_s=0.25,
                solve_s=np.float32(2.0), solver="HiGHS 1.x",
                options={"objective": "cost", "disabled_families": ("power",), "time_limit_s": None},
                frames=tricky_frames(),
                summary={"instance": {"name": "t", "horizon": {"start": "2026-12-01T00:00:00Z",
                                                               "periods": 336, "period_hours": 1.0}},
                         "dropped_jobs": ["eval"], "unserved_mtok": 0.0, "custom": {"kept": True}})
    base.update(kw)
    return Result(**base)


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_is_exact(tmp_path, fmt):
    res = tricky_result()
    out = export_result(res, tmp_path / "s", fmt=fmt)
    back = read_schedule(out)
    assert back.format == fmt
    for name in (*REQUIRED_TABLES, "duals"):
        want = normalize_frame(name, res.frames.get(name))
        pd.testing.assert_frame_equal(back.frames[name], want, check_exact=True)
    tr = back.frames["training"]
    assert tr["gpus"].dtype == "int64" and tr["hours"].dtype == "float64" and tr["job"].dtype == "str"
    assert tr["hours"].iloc[0] == 0.1 + 0.2 and tr["tardiness_h"].iloc[2] == 5e-324
    assert math.copysign(1.0, tr["tardiness_h"].iloc[1]) == -1.0  # even the sign of zero
    assert tr["gpus"].iloc[2] == 2**40 and tr["provider"].iloc[2] == ""
    assert tr["start_time"].iloc[1] == "2026-12-01T07:00:00Z"
    assert list(tr.columns)[-1] == "note" and tr["note"].iloc[0] == "first\nline"
    assert back.frames["duals"]["link"].dtype == "Int64"
    assert back.frames["duals"]["link"].isna().tolist() == [True, False]
    assert back.summary == json.loads((out / "summary.json").read_text())


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_table_is_present_with_typed_columns_even_empty(tmp_path, fmt):
    out = Result(status=Status.INFEASIBLE, explanation=["site A: power short by 3 MW"]).export(
        tmp_path / "s", fmt=fmt)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f"{t}.{fmt}" for t in REQUIRED_TABLES] + ["summary.json"])
    back = read_schedule(out)
    for name in REQUIRED_TABLES:
        df = back.frames[name]
        assert df.empty and list(df.columns) == list(TABLES[name])
        kinds = {"str": "str", "int": "int64", "float": "float64"}
        assert [str(df[c].dtype) for c in df.columns] == [kinds[k] for k in TABLES[name].values()]
    assert back.summary["status"] == "infeasible"
    assert back.summary["explanation"] == ["site A: power short by 3 MW"]
    assert back.summary["costs"] == {} and back.summary["total_cost_usd"] is None


def test_summary_is_json_safe_and_complete():
    s = summary_dict(tricky_result(), fmt="csv", files={"training": "training.csv"})
    text = json.dumps(s, allow_nan=False)  # raises on NaN or infinity
    assert "NaN" not in text and "Infinity" not in text
    assert s["gap"] is None and s["bound"] is None  # NaN and -inf became null
    assert s["status"] == "feasible" and isinstance(s["emissions_t"], float)
    assert s["options"]["disabled_families"] == ["power"]
    assert list(s["costs"]) == list(COST_TERMS)
    assert s["total_cost_usd"] == pytest.approx(sum(i * 1.1 for i in range(len(COST_TERMS))))
    assert s["custom"] == {"kept": True}  # keys the producer added are not dropped
    for key in ("status", "objective", "bound", "gap", "costs", "total_cost_usd", "emissions_t",
                "unserved_mtok", "dropped_jobs", "build_s", "solve_s", "solver", "options",
                "instance", "explanation", "format", "files"):
        assert key in s, key


def test_unserved_mtok_computed_when_the_producer_left_it_out():
    frames = {"unserved": pd.DataFrame({"service": ["v"], "region": ["r"], "period": [0],
                                        "demand_tokens_per_s": [3000.0], "served_tokens_per_s": [2000.0],
                                        "unserved_tokens_per_s": [1000.0]})}
    res = Result(status=Status.OPTIMAL, frames=frames,
                 summary={"instance": {"horizon": {"period_hours": 2.0}}})
    # 1000 tokens/s x 3600 s/h x 2 h / 1e6 = 7.2 million tokens
    assert summary_dict(res)["unserved_mtok"] == pytest.approx(7.2)


def test_existing_schedule_is_not_overwritten_without_force(tmp_path):
    out = tricky_result().export(tmp_path / "s")
    before = (out / "summary.json").read_text()
    with pytest.raises(InputError) as err:
        Result(status=Status.OPTIMAL).export(out)
    msg = str(err.value)
    assert str(out) in msg and "already holds a schedule" in msg and "--force" in msg
    assert (out / "summary.json").read_text() == before
    Result(status=Status.OPTIMAL, objective=1.0).export(out, fmt="json", force=True)
    assert json.loads((out / "summary.json").read_text())["objective"] == 1.0
    assert not list(out.glob("*.csv"))  # the old csv tables went with the old schedule
    assert [p.name for p in tmp_path.iterdir()] == ["s"]  # no temporary folders left


def test_folder_with_other_files_is_never_replaced(tmp_path):
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    (mine / "training.csv").write_text("my own table")  # a schedule's file name, among others
    for force in (False, True):
        with pytest.raises(InputError, match="holds no schedule"):
            Result(status=Status.OPTIMAL).export(mine, force=force)
    assert (mine / "thesis.tex").read_text() == "precious"
    assert (mine / "training.csv").read_text() == "my own table"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (Result(status=Status.OPTIMAL).export(empty) / "summary.json").exists()


def test_unknown_format_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="unknown format 'xlsx'"):
        Result(status=Status.OPTIMAL).export(tmp_path / "s", fmt="xlsx")


def test_failure_while_writing_leaves_no_schedule_and_keeps_the_old_one(tmp_path, monkeypatch):
    import allocator.results as results

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(results, "_records_json", boom)
    with pytest.raises(OSError, match="disk full"):
        tricky_result().export(tmp_path / "new", fmt="json")
    assert list(tmp_path.iterdir()) == []  # nothing, not even the temporary folder
    old = tricky_result().export(tmp_path / "old")
    with pytest.raises(OSError, match="disk full"):
        tricky_result().export(old, fmt="json", force=True)
    assert read_schedule(old).format == "csv"  # the previous schedule is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]


def test_killed_export_never_looks_complete(tmp_path):
    """A process killed (SIGKILL, no clean-up) while writing leaves only a hidden partial
    folder: the target does not exist, reading it fails, and the next export removes it."""
    script = textwrap.dedent(f"""
        import os, signal
        import allocator.results as results
        from allocator.results import Result, Status
        real = results._write_text
        def die(path, text):
            if path.name == "summary.json":  # every table written, summary next
                os.kill(os.getpid(), signal.SIGKILL)
            real(path, text)
        results._write_text = die
        Result(status=Status.OPTIMAL, objective=1.0).export({str(tmp_path / "s")!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not (tmp_path / "s").exists()
    partial = [p for p in tmp_path.iterdir()]
    assert len(partial) == 1 and partial[0].name.startswith(".s.partial-")
    assert (partial[0] / "training.csv").exists() and not (partial[0] / "summary.json").exists()
    with pytest.raises(InputError, match="does not exist"):
        read_schedule(tmp_path / "s")
    Result(status=Status.OPTIMAL).export(tmp_path / "s")
    assert [p.name for p in tmp_path.iterdir()] == ["s"]  # the dead writer's leftovers are gone


def test_read_schedule_names_what_is_wrong(tmp_path):
    out = tricky_result().export(tmp_path / "s")
    df = pd.read_csv(out / "links.csv", dtype=str, keep_default_na=False)
    df.loc[0, "period"] = "1.5"
    df.to_csv(out / "links.csv", index=False)
    with pytest.raises(InputError) as err:
        read_schedule(out)
    msg = str(err.value)
    assert "links.csv" in msg and "column period" in msg and "1.5" in msg
    assert "problem with the schedule folder" in msg
    (out / "sites.csv").write_text("")
    (out / "training.csv").unlink()
    msg = str(pytest.raises(InputError, read_schedule, out).value)
    assert "table training is missing" in msg and "sites.csv" in msg and "empty" in msg
    (out / "summary.json").unlink()
    assert "no summary.json" in str(pytest.raises(InputError, read_schedule, out).value)


def test_format_detected_without_the_summary_layout(tmp_path):
    """A folder whose summary.json lost its format/files/tables keys is still read, by
    file extension and the contract's column types."""
    out = tricky_result().export(tmp_path / "s", fmt="parquet")
    summary = json.loads((out / "summary.json").read_text())
    for key in ("format", "files", "tables"):
        summary.pop(key)
    (out / "summary.json").write_text(json.dumps(summary))
    back = read_schedule(out)
    assert back.format == "parquet"
    assert back.frames["training"]["gpus"].dtype == "int64"
    assert back.frames["links"]["bandwidth_gbps"].isna().tolist() == [True, False]


def test_export_from_a_result_with_missing_columns_keeps_the_rest(tmp_path):
    frames = {"training": pd.DataFrame({"job": ["a"], "site": ["s"], "gpus": [np.int32(3)]})}
    with pytest.warns(UserWarning, match="missing column"):
        out = Result(status=Status.FEASIBLE, frames=frames).export(tmp_path / "s")
    back = read_schedule(out).frames["training"]
    assert back["gpus"].tolist() == [3] and back["gpus"].dtype == "int64"
    assert back["start_period"].isna().all()


def test_relative_out_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = Result(status=Status.OPTIMAL).export("plain")
    assert out == Path("plain") and (tmp_path / "plain" / "summary.json").exists()
    assert os.listdir(tmp_path) == ["plain"]


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)  # any text but lone surrogates
_float = st.floats(allow_nan=True, allow_infinity=False, width=64)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(_text, st.integers(-(2**62), 2**62), _float, _text), max_size=6))
def test_any_values_round_trip_in_every_format(tmp_path_factory, rows):
    """The table codec alone (what export_result writes and read_schedule reads for each
    table), on any text, any 63-bit integer and any float."""
    n = len(rows)
    kinds = {"str": "", "int": 0, "float": 0.5}
    df = pd.DataFrame({c: [kinds[k]] * n for c, k in TABLES["training"].items()})
    df["job"] = [r[0] for r in rows]
    df["gpus"] = pd.Series([r[1] for r in rows], dtype="int64")
    df["hours"] = pd.Series([r[2] for r in rows], dtype="float64")
    df["start_time"] = [r[3] for r in rows]
    want = normalize_frame("training", df)
    base = tmp_path_factory.mktemp("prop")
    for fmt in FORMATS:
        layout = write_table(want, base / f"training.{fmt}", fmt)
        got = read_table(base / layout["file"], fmt, "training", layout["columns"])
        pd.testing.assert_frame_equal(got, want, check_exact=True)
