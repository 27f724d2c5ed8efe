"""Solve results: status, figures, tidy schedule frames, export and re-reading.

The frames are the contract with the verifier, the report and sweeps; see
docs/schedule-format.md for every file and column.

Exports are atomic: every file is written into a hidden sibling folder which is renamed into
place only when complete, so an interrupted write never leaves a folder that looks like a
finished schedule. ``read_schedule`` reads any of the three formats back with the exact
values and dtypes that were exported (ints stay ints, floats keep every bit, strings stay
strings; timestamps are ISO 8601 strings).

This module needs no solver: it imports neither Pyomo nor HiGHS.
"""

from __future__ import annotations

import csv
import glob
import json
import math
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from allocator.errors import InputError, Problem, describe_problems


class Status(StrEnum):
    """Outcome of a solve (our own, independent of the solver's codes)."""

    OPTIMAL = "optimal"  # proven within the requested gap
    FEASIBLE = "feasible"  # a schedule, stopped by a limit, with its gap
    INFEASIBLE = "infeasible"
    UNBOUNDED = "unbounded"
    NO_SOLUTION = "no_solution"  # stopped by a limit before any schedule was found
    ERROR = "error"

    @property
    def has_schedule(self) -> bool:
        return self in (Status.OPTIMAL, Status.FEASIBLE)


COST_TERMS: tuple[str, ...] = (
    "reserved_lease",
    "power_lease",  # the lease of power ceilings (power_price_usd_per_mw_h or power_options)
    "ondemand_lease",
    "energy",
    "egress",
    "site_extra",
    "tardiness",
    "unserved",
    "dropped_value",
    "carbon",
    "migration",  # re-planning only: moving, retiming and re-scaling against a previous plan
)

@dataclass
class ScheduleError(InputError):
    """A schedule folder cannot be read or written as asked (CLI exit code 2)."""

    what: str = "with the schedule folder"

    def __str__(self) -> str:
        return describe_problems(self.source, self.problems, self.what)


# --------------------------------------------------------------------------- table layout

# Column kinds: "str" (never missing: an absent value is ""), "int" (int64, or the nullable
# Int64 when a value is missing), "float" (float64, NaN when missing), "bool".
TABLES: dict[str, dict[str, str]] = {
    "training": {
        "job": "str", "option": "int", "site": "str", "provider": "str", "gpu_type": "str",
        "gpus": "int", "start_period": "int", "end_period": "int", "start_time": "str",
        "end_time": "str", "hours": "float", "tardiness_h": "float", "site_extra_usd": "float",
        "tardiness_usd": "float", "egress_usd": "float",
    },
    "inference": {
        "service": "str", "region": "str", "site": "str", "gpu_type": "str", "period": "int",
        "tokens_per_s": "float", "gpus": "int",
    },
    "inference_gpus": {
        "service": "str", "site": "str", "gpu_type": "str", "period": "int", "gpus": "int",
    },
    "unserved": {
        "service": "str", "region": "str", "period": "int", "demand_tokens_per_s": "float",
        "served_tokens_per_s": "float", "unserved_tokens_per_s": "float",
    },
    "site_gpus": {
        "site": "str", "gpu_type": "str", "period": "int", "gpus_training": "int",
        "gpus_inference": "int", "gpus_in_use": "int", "gpus_available": "int",
        "gpus_reserved": "int", "gpus_ondemand": "int",
    },
    "sites": {
        "site": "str", "provider": "str", "period": "int", "power_mw": "float",
        "power_cap_mw": "float", "energy_mwh": "float", "emissions_t": "float",
        "energy_usd": "float", "reserved_lease_usd": "float", "ondemand_lease_usd": "float",
        "power_lease_usd": "float", "cost_usd": "float",
    },
    "links": {
        "link": "int", "a": "str", "b": "str", "period": "int", "traffic_gbps": "float",
        "bandwidth_gbps": "float", "egress_gb": "float", "egress_usd": "float",
    },
    "changes": {
        "job": "str", "change": "str", "from_site": "str", "to_site": "str", "from_option": "int",
        "to_option": "int", "from_start": "int", "to_start": "int", "move_cost_usd": "float",
    },
    "leases": {
        "site": "str", "resource": "str", "term": "str", "size": "float", "unit": "str",
        "cost_usd": "float",
    },
    "scenarios": {
        "scenario": "str", "probability": "float", "status": "str", "total_cost_usd": "float",
        "objective": "float",
    },
    "duals": {
        "kind": "str", "site": "str", "gpu_type": "str", "link": "int", "period": "int",
        "marginal_usd_per_unit_h": "float",
    },
}
REQUIRED_TABLES: tuple[str, ...] = (
    "training", "inference", "inference_gpus", "unserved", "site_gpus", "sites", "links",
)
OPTIONAL_TABLES: tuple[str, ...] = ("duals", "changes", "leases", "scenarios")  # written only when the result has it
FORMATS: dict[str, str] = {"csv": ".csv", "parquet": ".parquet", "json": ".json"}
SUMMARY_FILE = "summary.json"
_DTYPE_OF_KIND = {"str": "str", "float": "float64", "bool": "bool"}
_PARTIAL = ".partial-"  # marker in the name of a folder being written
_OLD = ".old-"  # marker in the name of a replaced folder being removed


def empty_frame(table: str) -> pd.DataFrame:
    """A table of docs/schedule-format.md with its typed columns and no rows."""
    cols = TABLES[table]
    return pd.DataFrame(
        {c: pd.Series([], dtype="int64" if k == "int" else _DTYPE_OF_KIND[k]) for c, k in cols.items()}
    )


def _kind_of(dtype: Any) -> str:
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    return "str"


def _coerce(s: pd.Series, kind: str, where: str) -> pd.Series:
    """``s`` as the dtype of ``kind``: ints with a missing value become Int64; values that
    are not whole numbers keep a float column (with a warning) rather than being lost."""
    if kind == "str":
        if s.dtype == "str" and not s.isna().any():
            return s
        return s.astype("object").where(s.notna(), "").map(str).astype("str")
    if kind == "bool":
        if s.dtype == bool:
            return s
        low = s.astype("str").str.strip().str.lower()
        ok = low.isin(["true", "false", "1", "0", "1.0", "0.0"])
        if not ok.all():
            raise ValueError(f"{where}: {s[~ok].iloc[0]!r} is not true or false")
        return low.isin(["true", "1", "1.0"]).astype(bool)
    if kind == "float" and s.dtype == "float64":
        return s
    if kind == "int" and s.dtype == "int64":
        return s
    num = _numeric(s, where)
    if kind == "float":
        return num.astype("float64")
    values = num.to_numpy(dtype="float64", na_value=np.nan)
    finite = values[~np.isnan(values)]
    rounded = np.rint(finite)
    if finite.size and np.abs(finite - rounded).max() > 1e-6:
        warnings.warn(f"{where}: values are not whole numbers; kept as floats", stacklevel=3)
        return num.astype("float64")
    if np.isnan(values).any():
        out = pd.array(np.where(np.isnan(values), 0, np.rint(values)).astype("int64"), dtype="Int64")
        out[np.isnan(values)] = pd.NA
        return pd.Series(out, index=s.index, name=s.name)
    return pd.Series(np.rint(values).astype("int64"), index=s.index, name=s.name)


def _numeric(s: pd.Series, where: str) -> pd.Series:
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        return s
    text = s.astype("object").map(lambda v: np.nan if v is None or v == "" else v)
    try:
        return pd.to_numeric(text)
    except (ValueError, TypeError):
        for v in text:
            try:
                float(v)
            except (ValueError, TypeError):
                raise ValueError(f"{where + ': ' if where else ''}{v!r} is not a number") from None
        raise


def _dtype_name(s: pd.Series) -> str:
    kind = _kind_of(s.dtype)
    if kind == "int":
        return "Int64" if isinstance(s.dtype, pd.Int64Dtype) or s.isna().any() else "int64"
    return {"str": "str", "float": "float64", "bool": "bool"}[kind]


def normalize_frame(table: str, df: pd.DataFrame | None) -> pd.DataFrame:
    """A table with the columns of the contract first (in its order, typed), then any extra
    columns the producer added (typed by what they hold). Missing columns are added empty
    with a warning, so a producer's slip never costs the schedule."""
    spec = TABLES.get(table, {})
    if df is None:
        return empty_frame(table) if spec else pd.DataFrame()
    df = df.reset_index(drop=True)
    missing = [c for c in spec if c not in df.columns]
    if missing:
        warnings.warn(f"table {table}: missing column(s) {', '.join(missing)}; written empty",
                      stacklevel=2)
    cols: dict[str, pd.Series] = {}
    n = len(df)
    for c, kind in spec.items():
        if c in df.columns:
            cols[c] = _coerce(df[c], kind, f"table {table}, column {c}")
        elif kind == "str":
            cols[c] = pd.Series([""] * n, dtype="str")
        elif kind == "int":
            cols[c] = pd.Series([pd.NA] * n, dtype="Int64")
        else:
            cols[c] = pd.Series([np.nan] * n, dtype="float64")
    for c in df.columns:
        if c not in spec:
            cols[str(c)] = _coerce(df[c], _kind_of(df[c].dtype), f"table {table}, column {c}")
    return pd.DataFrame(cols, index=pd.RangeIndex(n))


# --------------------------------------------------------------------------- summary


def json_safe(value: Any) -> Any:
    """A JSON-safe copy: NaN and infinities become null, numpy scalars Python numbers,
    enums their value, tuples lists, paths and timestamps strings."""
    if isinstance(value, Enum):
        return json_safe(value.value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [json_safe(v) for v in items]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (datetime, date, pd.Timestamp)):
        return value.isoformat()
    if isinstance(value, (str, int)):
        return value
    if hasattr(value, "__dataclass_fields__"):
        return json_safe({k: getattr(value, k) for k in value.__dataclass_fields__})
    return str(value)


def summary_dict(result: Result, *, fmt: str | None = None,
                 files: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The summary.json mapping of docs/schedule-format.md, JSON-safe (no NaN: null).

    Figures of the Result record win over the same keys in ``result.summary``; keys only the
    summary carries (instance, dropped_jobs, ...) are kept. ``unserved_mtok`` is computed from
    the unserved table when the summary lacks it and the horizon is known."""
    base = dict(result.summary or {})
    status = result.status.value if isinstance(result.status, Status) else str(result.status)
    costs = {t: float(result.costs.get(t, 0.0)) for t in COST_TERMS} if result.costs else {}
    extra_terms = {k: float(v) for k, v in (result.costs or {}).items() if k not in COST_TERMS}
    costs.update(extra_terms)
    out: dict[str, Any] = {
        "status": status,
        "objective": result.objective,
        "bound": result.bound,
        "gap": result.gap,
        "costs": costs,
        "total_cost_usd": sum(costs.values()) if costs else None,
        "emissions_t": result.emissions_t if result.emissions_t is not None else base.get("emissions_t"),
        "unserved_mtok": base.get("unserved_mtok", _unserved_mtok(result, base)),
        "dropped_jobs": list(base["dropped_jobs"]) if base.get("dropped_jobs") is not None else None,
        "build_s": result.build_s,
        "solve_s": result.solve_s,
        "solver": result.solver or base.get("solver", ""),
        "options": dict(result.options) if result.options else base.get("options", {}),
        "instance": base.get("instance", {}),
        "explanation": list(result.explanation) or list(base.get("explanation", [])),
        "message": result.message or base.get("message", ""),
    }
    for k, v in base.items():  # keys this module does not know are kept, not dropped
        out.setdefault(k, v)
    leases = (result.frames or {}).get("leases")
    if leases is not None:
        out["leases"] = leases.to_dict(orient="records")
    if fmt is not None:
        out["format"] = fmt
    if files is not None:
        out["files"] = dict(files)
    return json_safe(out)


def _unserved_mtok(result: Result, base: Mapping[str, Any]) -> float | None:
    df = result.frames.get("unserved") if result.frames else None
    try:
        hours = float(base["instance"]["horizon"]["period_hours"])
    except (KeyError, TypeError, ValueError):
        return None
    if df is None or df.empty:
        return 0.0
    return float(pd.to_numeric(df["unserved_tokens_per_s"]).sum()) * 3600.0 * hours / 1e6


# --------------------------------------------------------------------------- the record


@dataclass(frozen=True)
class Result:
    """What a solve returns. Frames are empty when there is no schedule."""

    status: Status
    objective: float | None = None
    bound: float | None = None
    gap: float | None = None
    costs: dict[str, float] = field(default_factory=dict)  # COST_TERMS -> $
    emissions_t: float | None = None
    build_s: float = 0.0
    solve_s: float = 0.0
    solver: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    explanation: list[str] = field(default_factory=list)
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    #: a sizing instance with scenarios: each scenario's own Result, by scenario id
    #: (its schedule, on the instance of that scenario with the leases fixed)
    scenarios: dict[str, Result] = field(default_factory=dict)
    #: the instance of a scenario's Result (written beside its schedule as instance.yaml)
    instance: Any = None

    @property
    def total_cost(self) -> float | None:
        return sum(self.costs.values()) if self.costs else None

    def export(self, out_dir: str | Path, fmt: str = "csv", force: bool = False) -> Path:
        """Write this result as a schedule folder (see ``export_result``)."""
        return export_result(self, out_dir, fmt=fmt, force=force)


# --------------------------------------------------------------------------- export


def is_schedule_dir(path: str | Path) -> bool:
    """True if ``path`` is a folder holding a schedule: its summary.json, or nothing but
    schedule tables (a folder written by hand or by an older version)."""
    p = Path(path)
    if not p.is_dir():
        return False
    names = {c.name for c in p.iterdir()}
    tables = {f"{t}{ext}" for t in TABLES for ext in FORMATS.values()}
    return SUMMARY_FILE in names or (bool(names) and names <= tables)


def export_result(result: Result, out_dir: str | Path, fmt: str = "csv",
                  force: bool = False) -> Path:
    """Write every table of docs/schedule-format.md plus summary.json into ``out_dir``.

    The files go into a hidden sibling folder first. A new or empty ``out_dir`` is then
    replaced by that folder in one rename; in a folder that already holds a schedule (only
    with ``force``) the files allocator wrote there (summary.json and the tables its
    ``files`` lists) are moved aside, summary.json first, the new files moved in, summary.json
    last, and the old ones removed: a user's own files in the folder are never touched, and
    an interrupted export never leaves a folder that looks complete (the next export restores
    the previous schedule). A file of the user's that the export would overwrite, a non-empty
    folder that holds no schedule, and a result without a schedule over a folder with one
    are refused (ScheduleError). Returns the folder written."""
    _check_format(fmt)
    out = Path(out_dir)
    ext = FORMATS[fmt]
    frames = dict(result.frames or {})
    names = _table_names(frames) if not result.scenarios else list(SCENARIO_TABLES)
    new_files = [f"{n}{ext}" for n in names] + ([SCENARIO_DIR] if result.scenarios else []) + [SUMMARY_FILE]
    old_files = _check_target(out, force, new_files=new_files, result=result)
    parent = out.parent if str(out.parent) else Path(".")
    _check_writable(out, folder=True)
    parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(parent, out.name)
    tmp = parent / f".{out.name}{_PARTIAL}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        files, layout = _write_tables(result, tmp, fmt, names)
        if result.scenarios:
            _write_scenarios(result, tmp / SCENARIO_DIR, fmt)
            files[SCENARIO_FOLDERS] = SCENARIO_DIR
        summary = summary_dict(result, fmt=fmt, files=files)
        summary["tables"] = layout
        text = json.dumps(summary, indent=2, allow_nan=False) + "\n"
        _write_text(tmp / SUMMARY_FILE, text)
        _fsync_dir(tmp)
        if old_files is None:
            _swap_into_place(tmp, out, force)
        else:
            _replace_in_place(tmp, out, old_files, new_files)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


SCENARIO_DIR = "scenarios"  # in a sizing schedule with scenarios: one folder per scenario
SCENARIO_FOLDERS = "scenario_folders"  # its key in summary.json's files
SCENARIO_TABLES = ("leases", "scenarios")  # the tables beside it (each scenario has the rest)
SCENARIO_INSTANCE = "instance.yaml"  # in a scenario's folder: the scenario's own instance


def _write_scenarios(result: Result, root: Path, fmt: str) -> None:
    """scenarios/<id>/: each scenario's schedule (every table, summary.json) and its
    instance, so that each folder is verified on its own."""
    from allocator.io import dump_instance

    root.mkdir()
    for sid, sub in result.scenarios.items():
        folder = root / sid
        folder.mkdir()
        files, layout = _write_tables(sub, folder, fmt, _table_names(sub.frames or {}))
        if sub.instance is not None:
            dump_instance(sub.instance, folder / SCENARIO_INSTANCE)
        summary = summary_dict(sub, fmt=fmt, files=files)
        summary["tables"] = layout
        _write_text(folder / SUMMARY_FILE, json.dumps(summary, indent=2, allow_nan=False) + "\n")
        _fsync_dir(folder)


class ScheduleKept(ScheduleError):
    """A result without a schedule was not written over a folder holding one."""


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ScheduleError([Problem("option", "--format", f"unknown format {fmt!r}",
                                     f"use one of {', '.join(FORMATS)}", rule="format")],
                            what="with the export options")


def check_export_target(out_dir: str | Path, force: bool = False, fmt: str = "csv") -> None:
    """Raise the error ``export_result`` would raise for ``out_dir`` (a schedule there and no
    force, a non-empty folder of other files, a file, a user's file where a table would go,
    a folder that cannot be written): lets a command refuse before a long solve rather than
    after it."""
    _check_format(fmt)
    out = Path(out_dir)
    possible = [f"{t}{FORMATS[fmt]}" for t in TABLES] + [SUMMARY_FILE]
    _check_target(out, force, new_files=possible)
    _check_writable(out, folder=True)


def check_writable(path: str | Path, *, folder: bool, option: str = "--out") -> None:
    """Raise ScheduleError (exit 2) unless ``path`` can be written: a folder (``folder``) or
    a file, existing or to be created with its missing parents. Checked before any work, so
    a long solve never ends in a file that cannot be written."""
    _check_writable(Path(path), folder=folder, option=option)


def _check_writable(path: Path, *, folder: bool, option: str = "--out") -> None:
    def bad(msg: str) -> ScheduleError:
        return ScheduleError([Problem("file", str(path), msg, f"choose another {option}",
                                      rule="out-not-writable")], what=f"with {option}")

    if path.exists():
        if folder and not path.is_dir():
            raise bad("exists and is not a folder")
        if not folder and path.is_dir():
            raise bad("is a folder, not a file")
    probe = [path.parent if str(path.parent) else Path(".")]
    if folder and path.is_dir():
        probe.append(path)  # a schedule is replaced inside the folder too
    for where in probe:
        anc = where
        while not anc.exists() and anc != anc.parent:
            anc = anc.parent
        if not anc.is_dir():
            raise bad(f"cannot be created: {anc} is a file, not a folder")
        try:  # a real attempt: permissions, a read-only mount, a full quota all show here
            os.rmdir(tempfile.mkdtemp(prefix=".allocator-probe-", dir=anc))
        except OSError as exc:
            raise bad(f"cannot be written: {anc}: {exc.strerror or exc}") from None


def owned_files(out: str | Path) -> set[str]:
    """The names in a schedule folder that allocator wrote: summary.json and the tables its
    ``files`` manifest lists (each named <table>.<format>); for a folder without a readable
    manifest (an older version, written by hand), the schedule table names of any format."""
    out = Path(out)
    owned = {SUMMARY_FILE}
    files = None
    try:
        data = json.loads((out / SUMMARY_FILE).read_text(encoding="utf-8"))
        files = data.get("files") if isinstance(data, dict) else None
    except (OSError, UnicodeDecodeError, ValueError):
        pass
    if isinstance(files, dict):
        exts = tuple(FORMATS.values())
        owned |= {str(f) for t, f in files.items()
                  if isinstance(f, str) and Path(f).name == f
                  and any(f == f"{t}{e}" for e in exts)}
        if files.get(SCENARIO_FOLDERS) == SCENARIO_DIR:
            owned.add(SCENARIO_DIR)
    else:
        owned |= {f"{t}{e}" for t in TABLES for e in FORMATS.values()}
    return owned


def _check_target(out: Path, force: bool, *, new_files: list[str],
                  result: Result | None = None) -> list[str] | None:
    """Check ``out`` can take a schedule; return the names of the files allocator wrote there
    that are to be replaced (None: the folder is new or empty)."""
    if out.exists() and not out.is_dir():
        raise ScheduleError([Problem("file", str(out), "exists and is not a folder",
                                  "choose another --out folder", rule="out-not-folder")], what="with the output folder")
    if out.is_dir():
        _recover_interrupted(out)
    if not out.is_dir() or not any(out.iterdir()):
        return None
    if not is_schedule_dir(out):
        shown = sorted(c.name for c in out.iterdir())[:5]
        raise ScheduleError([Problem("file", str(out),
                                  f"is not empty and holds no schedule ({', '.join(shown)})",
                                  "choose a new or empty folder; allocator replaces only schedule folders",
                                  rule="out-not-schedule")],
                            what="with the output folder")
    if not force:
        raise ScheduleError([Problem("file", str(out), "already holds a schedule",
                                  "use --force to replace it (or force=True), or choose another folder",
                                  rule="out-exists")],
                            what="with the output folder")
    owned = owned_files(out)
    present = {c.name for c in out.iterdir()}
    in_way = sorted((present - owned) & set(new_files))
    if in_way:
        raise ScheduleError([Problem("file", str(out / in_way[0]),
                                  "is in the way: the export would write a file of this name, "
                                  "and this one was not written by allocator (summary.json does "
                                  "not list it)",
                                  "move or rename it, or choose another --out folder",
                                  rule="out-file-in-way")],
                            what="with the output folder")
    if result is not None and not result.status.has_schedule and _holds_schedule(out):
        status = result.status.value if isinstance(result.status, Status) else str(result.status)
        raise ScheduleKept([Problem("file", str(out),
                                 f"holds a schedule and this result has none (status {status}); "
                                 "the schedule is kept and nothing is written",
                                 "write the result to another folder to keep its summary",
                                 rule="out-keeps-schedule")],
                           what="with the output folder")
    return sorted(present & owned)


def _holds_schedule(out: Path) -> bool:
    """True unless the folder's summary.json says its status has no schedule."""
    try:
        status = json.loads((out / SUMMARY_FILE).read_text(encoding="utf-8")).get("status")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return True
    try:
        return Status(status).has_schedule
    except ValueError:
        return True


def _remove_stale(parent: Path, name: str) -> None:
    """Remove leftovers of exports to the same folder whose writing process is gone."""
    for marker in (_PARTIAL, _OLD):
        for cand in parent.glob(f".{glob.escape(name)}{marker}*"):
            pid = cand.name[len(name) + 1 + len(marker):].split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(cand, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _swap_into_place(tmp: Path, out: Path, force: bool) -> None:
    if out.is_dir():
        if any(out.iterdir()):  # another process wrote meanwhile: refuse, do not mix
            raise ScheduleError([Problem("file", str(out), "was written by another process "
                                         "during this export", "export again",
                                         rule="out-changed")], what="with the output folder")
        out.rmdir()
    os.replace(tmp, out)
    _fsync_dir(out.parent)


_REPLACING = ".allocator-replacing-"  # in a schedule folder: the files being replaced
_JOURNAL = "new-files.json"  # in that folder: written once every old file is moved aside


def _replace_in_place(tmp: Path, out: Path, old: list[str], new: list[str]) -> None:
    """Replace the files allocator wrote in ``out`` by those of ``tmp``; nothing else in
    ``out`` is touched. summary.json goes first and comes back last, so the folder never
    looks complete in between; ``_recover_interrupted`` undoes a replacement cut short."""
    aside = out / f"{_REPLACING}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    aside.mkdir()
    others = [c for c in out.glob(f"{_REPLACING}*") if c != aside and _replacer_alive(c)]
    if others:
        aside.rmdir()
        raise ScheduleError([Problem("file", str(out), "another allocator process is writing "
                                     "a schedule into this folder", "wait for it, or choose "
                                     "another folder", rule="out-busy")], what="with the output folder")
    order = [SUMMARY_FILE] + [n for n in old if n != SUMMARY_FILE]
    moved_old: list[str] = []
    moved_new: list[str] = []
    try:
        for n in order:
            if (out / n).exists():
                os.replace(out / n, aside / n)
                moved_old.append(n)
        _write_text(aside / f".{_JOURNAL}.tmp", json.dumps(new))
        os.replace(aside / f".{_JOURNAL}.tmp", aside / _JOURNAL)
        for n in [n for n in new if n != SUMMARY_FILE] + [SUMMARY_FILE]:
            os.replace(tmp / n, out / n)
            moved_new.append(n)
        _fsync_dir(out)
    except BaseException:
        for n in reversed(moved_new):
            os.replace(out / n, tmp / n)
        for n in reversed(moved_old):
            os.replace(aside / n, out / n)
        shutil.rmtree(aside, ignore_errors=True)
        raise
    shutil.rmtree(aside, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)


def _replacer_alive(aside: Path) -> bool:
    pid = aside.name[len(_REPLACING):].split("-", 1)[0]
    return not pid.isdigit() or _alive(int(pid))


def _recover_interrupted(out: Path) -> None:
    """Undo a replacement in ``out`` whose process died: the previous schedule comes back
    (or, if the new one was already complete, the old files are removed)."""
    for aside in out.glob(f"{_REPLACING}*"):
        if not aside.is_dir() or _replacer_alive(aside):
            continue
        journal = aside / _JOURNAL
        if journal.exists():
            if (out / SUMMARY_FILE).exists():  # summary.json came back last: new one complete
                shutil.rmtree(aside, ignore_errors=True)
                continue
            try:
                new = [str(n) for n in json.loads(journal.read_text(encoding="utf-8"))]
            except (OSError, ValueError, TypeError):
                new = []
            for n in new:  # every old file was aside: a file of these names is a new one
                if Path(n).name == n and (out / n).is_file():
                    (out / n).unlink()
            journal.unlink()
        for f in aside.iterdir():
            if not f.name.startswith("."):
                os.replace(f, out / f.name)
        shutil.rmtree(aside, ignore_errors=True)
        _fsync_dir(out)


def _table_names(frames: Mapping[str, Any]) -> list[str]:
    names = list(REQUIRED_TABLES)
    names += [t for t in OPTIONAL_TABLES if t in frames]
    names += sorted(t for t in frames if t not in names)  # a producer's extra tables
    return names


def _write_tables(result: Result, folder: Path, fmt: str,
                  names: list[str]) -> tuple[dict[str, str], dict[str, Any]]:
    ext = FORMATS[fmt]
    frames = dict(result.frames or {})
    files: dict[str, str] = {}
    layout: dict[str, Any] = {}
    for name in names:
        fname = f"{name}{ext}"
        files[name] = fname
        layout[name] = write_table(normalize_frame(name, frames.get(name)), folder / fname, fmt)
    return files, layout


# A text cell a spreadsheet would run as a formula (OWASP's CSV injection list) is written
# with a single quote before it, so a spreadsheet shows it as text; a text that begins with a
# quote gets one too, so reading strips exactly one quote and every text comes back unchanged.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


def escape_csv_text(s: pd.Series) -> pd.Series:
    """Text cells as written to a CSV: a leading ' before =, +, -, @, tab, CR or '."""
    hit = s.str.startswith(_FORMULA_START)
    return s.where(~hit, "'" + s) if hit.any() else s


def unescape_csv_text(s: pd.Series) -> pd.Series:
    """The inverse of ``escape_csv_text``: one leading ' dropped where one was added."""
    hit = s.str.startswith("'") & s.str[1:2].isin(_FORMULA_START)
    return s.where(~hit, s.str[1:]) if hit.any() else s


def write_table(df: pd.DataFrame, path: Path, fmt: str) -> dict[str, Any]:
    """Write one (normalised) table in ``fmt``; return its layout for summary.json."""
    if fmt == "csv":
        df = df.assign(**{c: escape_csv_text(df[c]) for c in df.columns if df[c].dtype == "str"})
        # a carriage return inside a text is read back as a line end unless quoted: then
        # quote every text of that table (numbers stay bare)
        quoting = csv.QUOTE_NONNUMERIC if any(
            df[c].str.contains("\r", regex=False).any() for c in df.columns if df[c].dtype == "str"
        ) else csv.QUOTE_MINIMAL
        with open(path, "w", newline="", encoding="utf-8") as fh:
            df.to_csv(fh, index=False, quoting=quoting)
            _flush(fh)
    elif fmt == "parquet":
        df.to_parquet(path, index=False)
        _fsync_file(path)
    else:
        _write_text(path, _records_json(df))
    return {"file": path.name, "rows": len(df), "columns": {c: _dtype_name(df[c]) for c in df.columns}}


def _records_json(df: pd.DataFrame) -> str:
    """The table as a JSON list of records; a missing or non-finite value is null. Floats
    are written with Python's shortest round-trip repr, so reading gives the same bits."""
    cols = list(df.columns)
    data = [_json_column(df[c]) for c in cols]
    rows = [dict(zip(cols, vals, strict=True)) for vals in zip(*data, strict=True)]
    return json.dumps(rows, allow_nan=False, separators=(",", ":")) + "\n"


def _json_column(s: pd.Series) -> list[Any]:
    if s.dtype == "float64":
        values = s.to_numpy()
        out = values.tolist()
        bad = ~np.isfinite(values)
        for i in np.flatnonzero(bad):
            out[i] = None
        return out
    if s.dtype in ("int64", "bool"):
        return s.tolist()
    if s.dtype == "str":
        return s.astype("object").where(s.notna(), None).tolist()
    return [json_safe(v) for v in s.astype("object").tolist()]


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
        _flush(fh)


def _flush(fh) -> None:
    fh.flush()
    os.fsync(fh.fileno())


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- reading


@dataclass
class Schedule:
    """A schedule folder read back: every table as a typed DataFrame, and the summary."""

    frames: dict[str, pd.DataFrame]
    summary: dict[str, Any]
    path: Path | None = None
    format: str = "csv"

    @property
    def status(self) -> str:
        return str(self.summary.get("status", ""))


def read_schedule(path: str | Path) -> Schedule:
    """Read a schedule folder written by ``export_result`` (any format, detected).

    Column dtypes come from summary.json's ``tables`` layout when present, else from the
    contract, so values and dtypes equal what was exported. Problems (no folder, no
    summary.json, a table missing or unreadable, a cell that is not a number) raise
    InputError naming the file, column and value."""
    folder = Path(path)
    if not folder.is_dir():
        what = "does not exist" if not folder.exists() else "is not a folder"
        raise ScheduleError([Problem("file", str(folder), f"schedule folder {what}",
                                  "pass the folder written by 'allocator solve --out'",
                                  rule="schedule-missing")], source=str(folder))
    summary = _read_summary(folder)
    fmt = summary.get("format")
    if fmt not in FORMATS:
        fmt = _detect_format(folder)
    files = summary.get("files") if isinstance(summary.get("files"), dict) else {}
    layout = summary.get("tables") if isinstance(summary.get("tables"), dict) else {}
    if files.get(SCENARIO_FOLDERS) == SCENARIO_DIR:  # sizing with scenarios: the rest is per scenario
        names = list(SCENARIO_TABLES)
    else:
        names = list(REQUIRED_TABLES) + [t for t in files if t not in REQUIRED_TABLES and t != SCENARIO_FOLDERS]
    for t in OPTIONAL_TABLES:
        if t not in names and (folder / f"{t}{FORMATS[fmt]}").exists():
            names.append(t)
    problems: list[Problem] = []
    frames: dict[str, pd.DataFrame] = {}
    for name in names:
        fname = str(files.get(name) or f"{name}{FORMATS[fmt]}")
        fpath = folder / fname
        if Path(fname).name != fname or not fpath.is_file():
            problems.append(Problem("file", str(fpath), f"table {name} is missing",
                                    "re-export the schedule", rule="schedule-table-missing"))
            continue
        spec = layout.get(name, {}).get("columns") if isinstance(layout.get(name), dict) else None
        try:
            frames[name] = _read_table(fpath, fmt, name, spec)
        except ScheduleError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ScheduleError(problems, source=str(folder))
    return Schedule(frames=frames, summary=summary, path=folder, format=fmt)


def _read_summary(folder: Path) -> dict[str, Any]:
    p = folder / SUMMARY_FILE
    if not p.is_file():
        raise ScheduleError([Problem("file", str(p), "no summary.json: not a schedule folder "
                                  "(or an export that did not finish)",
                                  "pass the folder written by 'allocator solve --out'",
                                  rule="schedule-summary-missing")], source=str(folder))
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ScheduleError([Problem("file", str(p), f"is not valid JSON: {exc}",
                                  "re-export the schedule", rule="schedule-summary-json")],
                         source=str(folder)) from None
    if not isinstance(data, dict):
        raise ScheduleError([Problem("file", str(p), "top level is not a JSON object",
                                  "re-export the schedule", rule="schedule-summary-json")],
                         source=str(folder))
    return data


def _detect_format(folder: Path) -> str:
    for fmt, ext in FORMATS.items():
        if (folder / f"training{ext}").exists():
            return fmt
    return "csv"


def read_table(path: str | Path, fmt: str, name: str,
               columns: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Read one table file of a schedule: ``columns`` maps column -> dtype as in summary.json's
    ``tables`` layout (else the contract's columns for ``name`` are used)."""
    return _read_table(Path(path), fmt, name, columns)


def _read_table(path: Path, fmt: str, name: str, spec: Mapping[str, str] | None) -> pd.DataFrame:
    def bad(msg: str, rule: str = "schedule-table-unreadable") -> InputError:
        return ScheduleError([Problem("file", str(path), msg, "re-export the schedule", rule=rule)],
                          source=str(path))

    try:
        if fmt == "csv":
            if path.stat().st_size == 0:
                raise bad("file is empty (not even a header row)")
            raw = _read_csv_typed(path, name, spec)
            if raw is not None:
                return raw.assign(**{c: unescape_csv_text(raw[c]) for c in raw.columns
                                     if raw[c].dtype == "str"})
            raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
        elif fmt == "parquet":
            raw = pd.read_parquet(path)
        else:
            records = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
                raise bad("expected a JSON list of records")
            cols = list(spec) if spec else list(TABLES.get(name, {}))
            for r in records:
                cols += [k for k in r if k not in cols]
            raw = pd.DataFrame.from_records(records, columns=cols) if records else \
                pd.DataFrame({c: pd.Series([], dtype="object") for c in cols})
    except ScheduleError:
        raise
    except Exception as exc:  # any parser failure is a bad file, not a bug
        raise bad(f"cannot be read as {fmt}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    kinds = dict(spec) if spec else {c: k for c, k in TABLES.get(name, {}).items()}
    want = {c: kinds[c] for c in kinds}
    missing = [c for c in want if c not in raw.columns]
    if missing:
        raise bad(f"missing column(s) {', '.join(missing)}", rule="schedule-table-columns")
    cols: dict[str, pd.Series] = {}
    for c in raw.columns:
        kind = want.get(c)
        try:
            if kind is None:
                cols[c] = raw[c] if fmt != "csv" else unescape_csv_text(raw[c].astype("str"))
            else:
                cols[c] = _typed(raw[c], kind, fmt)
                if fmt == "csv" and cols[c].dtype == "str":
                    cols[c] = unescape_csv_text(cols[c])
        except ValueError as exc:
            raise bad(f"column {c}: {exc}", rule="schedule-table-value") from None
    ordered = [c for c in want] + [c for c in raw.columns if c not in want]
    return pd.DataFrame({c: cols[c] for c in ordered}, index=pd.RangeIndex(len(raw)))


def _read_csv_typed(path: Path, name: str, spec: Mapping[str, str] | None) -> pd.DataFrame | None:
    """Fast path: parse a CSV straight into its recorded dtypes. None if anything is off
    (the caller then reads it as text and reports the cell at fault)."""
    if not spec:
        return None
    dtypes = {c: ("str" if d == "str" else d) for c, d in spec.items()}
    if any(d not in ("str", "int64", "Int64", "float64", "bool") for d in dtypes.values()):
        return None
    na = {c: [""] for c, d in dtypes.items() if d != "str"}
    try:
        df = pd.read_csv(path, dtype=dtypes, keep_default_na=False, na_values=na)
    except (ValueError, TypeError, pd.errors.ParserError):
        return None
    if list(df.columns) != list(spec):
        return None
    for c, d in dtypes.items():
        if str(df[c].dtype) != d:
            return None
    return df


def _typed(s: pd.Series, dtype: str, fmt: str) -> pd.Series:
    """A column read from a file as the recorded dtype (or contract kind)."""
    kind = {"int64": "int", "Int64": "int", "float64": "float", "str": "str", "bool": "bool"}.get(dtype, dtype)
    if kind == "str":
        return s.astype("object").where(s.notna(), "").map(str).astype("str")
    if kind == "bool":
        return _coerce(s, "bool", "")
    num = _numeric(s, "")
    if kind == "float":
        return num.astype("float64")
    values = num.to_numpy(dtype="float64", na_value=np.nan)
    nan = np.isnan(values)
    finite = values[~nan]
    if finite.size and not np.array_equal(finite, np.rint(finite)):
        bad_v = finite[finite != np.rint(finite)][0]
        raise ValueError(f"{bad_v!r} is not a whole number")
    if nan.any() or dtype == "Int64":
        out = pd.array(np.where(nan, 0, values).astype("int64"), dtype="Int64")
        out[nan] = pd.NA
        return pd.Series(out, index=s.index, name=s.name)
    if pd.api.types.is_integer_dtype(num.dtype):
        return num.astype("int64")
    return pd.Series(values.astype("int64"), index=s.index, name=s.name)
