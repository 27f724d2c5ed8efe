"""Loading and saving instances: YAML files with optional CSV tables, dicts, DataFrames.

An instance is a YAML mapping (see docs/instance-format.md). Long tables may live in CSV
files it references by a path relative to the instance file:

    jobs_csv         one row per (job, execution option)
    links_csv        a, b, latency_ms, bandwidth_gbps, egress_usd_per_gb
    demand_csv       service, region, period, tokens_per_s
    site_series_csv  site, period, and any of power_cap_mw, energy_price_usd_per_mwh,
                     carbon_g_per_kwh

The same tables can be handed over as pandas DataFrames (``instance_from_frames``), so a
pipeline builds an instance without touching disk; both routes share one conversion.
AI model profiles named by jobs and services are looked up in ``profiles_dir`` (relative
to the instance file), else in the nearest ``models/`` folder above it.

YAML is read with ``yaml.safe_load`` only: no tag can construct an object. Nothing read is
evaluated or unpickled. Every problem is reported as an ``InputError`` naming the file,
the entity, the field and the value; this module never builds model constraints.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from pydantic import ValidationError

from allocator.errors import InputError, Problem
from allocator.schema import ExecutionOption, Instance, ModelProfile

TABLE_KEYS = ("jobs_csv", "links_csv", "demand_csv", "site_series_csv")
SERIES_FIELDS = ("power_cap_mw", "energy_price_usd_per_mwh", "carbon_g_per_kwh")
LIST_COLUMNS = ("allowed_sites", "allowed_zones", "predecessors")  # ';'-separated in CSV
JOB_OPTION_COLUMNS = ("gpu_type", "gpus", "hours")
MAX_FILE_BYTES = 512 * 1024 * 1024


# --------------------------------------------------------------------------- public API


def load_instance(path: str | Path, *, profiles_dir: str | Path | None = None) -> Instance:
    """Read an instance from a YAML file (and the CSV files it references)."""
    path = Path(path)
    if path.is_dir():
        candidates = sorted(path.glob("instance.y*ml")) or sorted(path.glob("*.y*ml"))
        candidates = [c for c in candidates if c.name not in ("sweep.yaml", "sweep.yml")]
        if not candidates:
            raise InputError(
                [Problem("file", str(path), "folder holds no instance YAML", "pass the .yaml file")],
                source=str(path),
            )
        path = candidates[0]
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        kind = type(raw).__name__ if raw is not None else "nothing"
        raise InputError(
            [
                Problem(
                    "file",
                    path.name,
                    f"top level is {kind}, expected a mapping of instance fields",
                    "start the file with keys like 'horizon:', 'gpu_types:', 'sites:'",
                    rule="yaml-top-level",
                )
            ],
            source=str(path),
        )
    return instance_from_dict(raw, base_dir=path.parent, source=str(path), profiles_dir=profiles_dir)


def instance_from_dict(
    data: dict[str, Any],
    *,
    base_dir: str | Path | None = None,
    source: str = "<dict>",
    profiles_dir: str | Path | None = None,
    frames: dict[str, pd.DataFrame] | None = None,
) -> Instance:
    """Build an instance from a mapping like the YAML file's, merging referenced tables."""
    data = dict(data)
    problems: list[Problem] = []
    origin: dict[tuple[str, int], str] = {}
    base = Path(base_dir) if base_dir is not None else None
    tables = dict(frames or {})
    for key in TABLE_KEYS:
        ref = data.pop(key, None)
        if ref is None:
            continue
        if base is None:
            problems.append(Problem("file", key, f"{key}: {ref!r} given but the instance has no folder",
                                    "pass the table as a DataFrame instead", rule="csv-no-folder"))
            continue
        df = _read_csv(base / str(ref), problems)
        if df is not None:
            tables[key] = df
            tables[key].attrs["file"] = str(ref)
    pdir = data.pop("profiles_dir", None)
    if profiles_dir is None and pdir is not None and base is not None:
        profiles_dir = base / str(pdir)
    for key, df in tables.items():
        _merge_table(data, key, df, problems, origin)
    if problems:
        raise InputError(problems, source=source)
    _attach_profiles(data, base, profiles_dir, problems)
    try:
        inst = Instance.model_validate(data)
    except ValidationError as exc:
        problems.extend(problems_from_validation(exc, data, origin))
        raise InputError(problems, source=source) from None
    if problems:
        raise InputError(problems, source=source)
    derive_from_profiles(inst)
    return inst


def instance_from_frames(
    base: dict[str, Any],
    *,
    jobs: pd.DataFrame | None = None,
    links: pd.DataFrame | None = None,
    demand: pd.DataFrame | None = None,
    site_series: pd.DataFrame | None = None,
    profiles_dir: str | Path | None = None,
) -> Instance:
    """Build an instance from a base mapping plus DataFrames shaped like the CSV tables."""
    frames = {
        key: df
        for key, df in (
            ("jobs_csv", jobs),
            ("links_csv", links),
            ("demand_csv", demand),
            ("site_series_csv", site_series),
        )
        if df is not None
    }
    return instance_from_dict(base, frames=frames, source="<frames>", profiles_dir=profiles_dir)


def instance_to_dict(inst: Instance) -> dict[str, Any]:
    """A plain mapping (JSON/YAML-safe) that ``instance_from_dict`` reads back equal."""
    data = inst.model_dump(mode="json", exclude_defaults=True)
    data["horizon"] = inst.horizon.model_dump(mode="json")
    return data


def dump_instance(inst: Instance, path: str | Path) -> Path:
    """Write an instance as one self-contained YAML file (tables inlined)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(instance_to_dict(inst), sort_keys=False, allow_unicode=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def load_profile(path: str | Path) -> ModelProfile:
    """Read one AI model profile (a YAML file in models/)."""
    path = Path(path)
    raw = read_yaml(path)
    try:
        return ModelProfile.model_validate(raw)
    except ValidationError as exc:
        raise InputError(problems_from_validation(exc, raw, {}, entity="profiles"), source=str(path)) from None


def find_profiles_dir(start: Path | None) -> Path | None:
    """The nearest ``models/`` folder at or above ``start`` holding profile YAML files."""
    if start is None:
        return None
    for d in [start.resolve(), *start.resolve().parents]:
        cand = d / "models"
        if cand.is_dir() and any(cand.glob("*.y*ml")):
            return cand
    return None


def read_yaml(path: Path) -> Any:
    """safe_load a YAML file; errors name the file, line and column."""
    name = str(path)
    if not path.exists():
        raise InputError([Problem("file", name, "file not found", "check the path", rule="file-missing")],
                         source=name)
    if path.stat().st_size > MAX_FILE_BYTES:
        raise InputError([Problem("file", name, f"file is {path.stat().st_size} bytes", "split it into CSV tables",
                                  rule="file-too-large")], source=name)
    blob = path.read_bytes()
    if b"\x00" in blob[:8192]:
        raise InputError([Problem("file", name, "is a binary file, not YAML text",
                                  "pass the instance .yaml file", rule="binary-file")], source=name)
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError([Problem("file", name, f"is not UTF-8 text (byte {exc.start})",
                                  "save it as UTF-8", rule="encoding")], source=name) from None
    if not text.strip():
        raise InputError([Problem("file", name, "file is empty", "write the instance fields into it",
                                  rule="empty-file")], source=name)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError([Problem("file", f"{path.name} {where}", f"YAML syntax error: {what}",
                                  "fix the indentation or quoting there", rule="yaml-syntax")],
                         source=name) from None


# --------------------------------------------------------------------------- tables


def _read_csv(path: Path, problems: list[Problem]) -> pd.DataFrame | None:
    name = path.name
    if not path.exists():
        problems.append(Problem("file", name, f"referenced table {path} not found",
                                "check the path, relative to the instance file", rule="file-missing"))
        return None
    blob = path.read_bytes()
    if not blob.strip():
        problems.append(Problem("file", name, "CSV file is empty", "write a header row and data", rule="empty-file"))
        return None
    if b"\x00" in blob[:8192]:
        problems.append(Problem("file", name, "is a binary file, not CSV text", rule="binary-file"))
        return None
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        problems.append(Problem("file", name, f"CSV does not parse: {str(exc).splitlines()[0]}",
                                "check quoting and that every row has the header's columns",
                                rule="csv-parse"))
        return None
    df.columns = [str(c).strip() for c in df.columns]
    if len(df.columns) == 1 and any(sep in df.columns[0] for sep in (";", "\t", "|")):
        problems.append(Problem("file", name, f"only one column {df.columns[0]!r}: wrong delimiter",
                                "separate columns with commas", rule="csv-delimiter"))
        return None
    df.attrs["file"] = name
    return df


def _require(df: pd.DataFrame, cols: tuple[str, ...], key: str, problems: list[Problem]) -> bool:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        problems.append(Problem("file", df.attrs.get("file", key), f"missing column(s) {', '.join(missing)}",
                                f"columns present: {', '.join(map(str, df.columns))}", rule="csv-missing-column"))
        return False
    return True


def _cell(df: pd.DataFrame, i: int, col: str, kind: str, problems: list[Problem], *, required: bool = True):
    """Parse one CSV cell; on failure record (file, row, column) and the value."""
    raw = df.iat[i, df.columns.get_loc(col)]
    text = "" if raw is None or (isinstance(raw, float) and math.isnan(raw)) else str(raw).strip()
    where = f"{df.attrs.get('file', 'table')} row {i + 2}"  # +1 header, +1 one-based
    if text == "":
        if required:
            problems.append(Problem("file", where, f"column {col}: empty cell", "fill in a value",
                                    rule="csv-empty-cell"))
        return None
    try:
        if kind == "float":
            val = float(text)
            if math.isnan(val) or math.isinf(val):
                raise ValueError
            return val
        if kind == "int":
            val = float(text)
            if not val.is_integer():
                raise ValueError
            return int(val)
        if kind == "bool":
            low = text.lower()
            if low in ("true", "yes", "1"):
                return True
            if low in ("false", "no", "0"):
                return False
            raise ValueError
        if kind == "list":
            return [p.strip() for p in text.split(";") if p.strip()]
        return text
    except ValueError:
        expect = {"float": "a finite number", "int": "a whole number", "bool": "true or false"}.get(kind, kind)
        problems.append(Problem("file", where, f"column {col}: {text!r} is not {expect}",
                                f"write {expect}", rule="csv-bad-cell"))
        return None


def _frame_from_any(df: pd.DataFrame) -> pd.DataFrame:
    """Normalise a caller's DataFrame to the all-string form the CSV reader produces."""
    if all(df[c].dtype == object for c in df.columns) and df.attrs.get("file"):
        return df
    out = df.copy()
    out.columns = [str(c) for c in out.columns]
    for c in out.columns:
        out[c] = out[c].map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v))
                            else ";".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v))
    out.attrs["file"] = df.attrs.get("file", "DataFrame")
    return out


def _merge_table(data: dict, key: str, df: pd.DataFrame, problems: list[Problem],
                 origin: dict[tuple[str, int], str]) -> None:
    df = _frame_from_any(df)
    fname = df.attrs.get("file", key)
    if key == "links_csv":
        if not _require(df, ("a", "b", "latency_ms"), key, problems):
            return
        links = list(data.get("links") or [])
        for i in range(len(df)):
            rec = {"a": _cell(df, i, "a", "str", problems), "b": _cell(df, i, "b", "str", problems),
                   "latency_ms": _cell(df, i, "latency_ms", "float", problems)}
            if "bandwidth_gbps" in df.columns:
                bw = _cell(df, i, "bandwidth_gbps", "float", problems, required=False)
                if bw is not None:
                    rec["bandwidth_gbps"] = bw
            if "egress_usd_per_gb" in df.columns:
                eg = _cell(df, i, "egress_usd_per_gb", "float", problems, required=False)
                if eg is not None:
                    rec["egress_usd_per_gb"] = eg
            origin[("links", len(links))] = f"{fname} row {i + 2}"
            links.append(rec)
        data["links"] = links
    elif key == "jobs_csv":
        if not _require(df, ("id",), key, problems):
            return
        jobs = list(data.get("jobs") or [])
        by_id: dict[str, dict] = {}
        spec = {"profile": "str", "tokens_t": "float", "release_period": "int", "deadline_period": "int",
                "deadline": "str", "tardiness_usd_per_h": "float", "mandatory": "bool", "value_usd": "float",
                "allowed_sites": "list", "allowed_zones": "list", "dataset_source": "str",
                "dataset_tb": "float", "predecessors": "list"}
        for i in range(len(df)):
            jid = _cell(df, i, "id", "str", problems)
            if jid is None:
                continue
            job = by_id.get(jid)
            if job is None:
                job = {"id": jid, "options": []}
                for col, kind in spec.items():
                    if col in df.columns:
                        v = _cell(df, i, col, kind, problems, required=False)
                        if v is not None:
                            job[col] = v
                origin[("jobs", len(jobs))] = f"{fname} row {i + 2}"
                by_id[jid] = job
                jobs.append(job)
            if all(c in df.columns for c in JOB_OPTION_COLUMNS) and str(df.at[df.index[i], "gpu_type"]).strip():
                job["options"].append({"gpu_type": _cell(df, i, "gpu_type", "str", problems),
                                       "gpus": _cell(df, i, "gpus", "int", problems),
                                       "hours": _cell(df, i, "hours", "float", problems)})
        for job in by_id.values():
            if not job["options"]:
                del job["options"]
        data["jobs"] = jobs
    elif key == "demand_csv":
        if not _require(df, ("service", "region", "period", "tokens_per_s"), key, problems):
            return
        periods = _periods(data)
        services = {s.get("id"): s for s in data.get("services") or [] if isinstance(s, dict)}
        for i in range(len(df)):
            sid = _cell(df, i, "service", "str", problems)
            rid = _cell(df, i, "region", "str", problems)
            t = _cell(df, i, "period", "int", problems)
            val = _cell(df, i, "tokens_per_s", "float", problems)
            if None in (sid, rid, t, val):
                continue
            where = f"{fname} row {i + 2}"
            if sid not in services:
                problems.append(Problem("file", where, f"service {sid!r} is not defined under services",
                                        "add the service or fix the id", rule="unknown-service"))
                continue
            if periods is not None and not 0 <= t < periods:
                problems.append(Problem("file", where, f"period {t} outside 0..{periods - 1}",
                                        "periods count from 0 within the horizon", rule="period-range"))
                continue
            dem = services[sid].setdefault("demand", {})
            series = dem.get(rid)
            if not isinstance(series, list):
                series = [series if series is not None else 0.0] * (periods or (t + 1))
                dem[rid] = series
            if t >= len(series):
                series.extend([0.0] * (t + 1 - len(series)))
            series[t] = val
    elif key == "site_series_csv":
        if not _require(df, ("site", "period"), key, problems):
            return
        fields = [c for c in SERIES_FIELDS if c in df.columns]
        unknown = [c for c in df.columns if c not in ("site", "period", *SERIES_FIELDS)]
        if unknown:
            problems.append(Problem("file", fname, f"unknown column(s) {', '.join(unknown)}",
                                    f"known: site, period, {', '.join(SERIES_FIELDS)}", rule="csv-unknown-column"))
        periods = _periods(data)
        sites = {s.get("id"): s for s in data.get("sites") or [] if isinstance(s, dict)}
        for i in range(len(df)):
            sid = _cell(df, i, "site", "str", problems)
            t = _cell(df, i, "period", "int", problems)
            if sid is None or t is None:
                continue
            where = f"{fname} row {i + 2}"
            if sid not in sites:
                problems.append(Problem("file", where, f"site {sid!r} is not defined under sites",
                                        "add the site or fix the id", rule="unknown-site"))
                continue
            if periods is not None and not 0 <= t < periods:
                problems.append(Problem("file", where, f"period {t} outside 0..{periods - 1}",
                                        "periods count from 0 within the horizon", rule="period-range"))
                continue
            for f in fields:
                val = _cell(df, i, f, "float", problems, required=False)
                if val is None:
                    continue
                cur = sites[sid].get(f)
                if not isinstance(cur, list):
                    cur = [cur if cur is not None else 0.0] * (periods or (t + 1))
                    sites[sid][f] = cur
                if t >= len(cur):
                    cur.extend([0.0] * (t + 1 - len(cur)))
                cur[t] = val


def _periods(data: dict) -> int | None:
    h = data.get("horizon")
    if isinstance(h, dict) and isinstance(h.get("periods"), int):
        return h["periods"]
    return None


# --------------------------------------------------------------------------- profiles


def _attach_profiles(data: dict, base: Path | None, profiles_dir, problems: list[Problem]) -> None:
    """Load every profile named by a job or service that is not given inline."""
    wanted: set[str] = set()
    for key in ("jobs", "services"):
        for item in data.get(key) or []:
            if isinstance(item, dict) and isinstance(item.get("profile"), str):
                wanted.add(item["profile"])
    have = {p.get("id") for p in data.get("profiles") or [] if isinstance(p, dict)}
    missing = sorted(wanted - have)
    if not missing:
        return
    pdir = Path(profiles_dir) if profiles_dir is not None else find_profiles_dir(base)
    profiles = list(data.get("profiles") or [])
    for pid in missing:
        path = None
        if pdir is not None:
            for ext in (".yaml", ".yml"):
                if (pdir / f"{pid}{ext}").exists():
                    path = pdir / f"{pid}{ext}"
        if path is None:
            continue  # reported by validation as an unknown profile
        try:
            profiles.append(load_profile(path).model_dump(mode="json", exclude_defaults=True))
        except InputError as exc:
            problems.extend(exc.problems)
    data["profiles"] = profiles


def derive_from_profiles(inst: Instance) -> None:
    """Fill job options and service throughputs that are given by a profile only.

    Hours on GPU type g = gpu_hours_h100 x (tokens_t / reference_tokens_t)
    / (gpus[g] x relative_throughput[g]); only GPU types the instance defines are used.
    """
    profiles = {p.id: p for p in inst.profiles}
    gtypes = {g.id: g for g in inst.gpu_types}
    for job in inst.jobs:
        prof = profiles.get(job.profile) if job.profile else None
        if job.options or prof is None or prof.training is None:
            continue
        tr = prof.training
        scale = (job.tokens_t or tr.reference_tokens_t) / tr.reference_tokens_t
        opts = []
        for gid, n in tr.gpus.items():
            if gid in gtypes:
                hours = tr.gpu_hours_h100 * scale / (n * gtypes[gid].relative_throughput)
                opts.append(ExecutionOption(gpu_type=gid, gpus=n, hours=round(hours, 6)))
        job.options = opts
    for svc in inst.services:
        prof = profiles.get(svc.profile) if svc.profile else None
        if svc.tokens_per_s_per_gpu or prof is None or prof.inference is None:
            continue
        svc.tokens_per_s_per_gpu = {
            g: v for g, v in prof.inference.tokens_per_s_per_gpu.items() if g in gtypes
        }


# --------------------------------------------------------------------------- errors


def problems_from_validation(exc: ValidationError, data: Any, origin: dict[tuple[str, int], str],
                             entity: str | None = None) -> list[Problem]:
    """Translate pydantic errors into problems naming entity, id, field and value."""
    out: list[Problem] = []
    for err in exc.errors():
        loc = list(err.get("loc", ()))
        ent, eid, rest = entity or "instance", "-", loc
        if loc and isinstance(loc[0], str) and len(loc) >= 2 and isinstance(loc[1], int):
            ent = loc[0]
            items = data.get(ent) if isinstance(data, dict) else None
            item = items[loc[1]] if isinstance(items, list) and loc[1] < len(items) else None
            eid = str(item.get("id")) if isinstance(item, dict) and item.get("id") is not None else f"#{loc[1]}"
            if ent == "links" and isinstance(item, dict):
                eid = f"{item.get('a')}-{item.get('b')}"
            if (ent, loc[1]) in origin:
                eid += f" [{origin[(ent, loc[1])]}]"
            rest = loc[2:]
        elif loc and isinstance(loc[0], str):
            ent = entity or "instance"
            rest = loc
        field = _fmt_loc(rest) or "(entity)"
        value = err.get("input")
        kind = err.get("type", "")
        msg = err.get("msg", "invalid")
        if kind == "missing":
            text, fix = f"{field}: required field is missing", f"add '{rest[-1]}:'" if rest else "add it"
        elif kind == "extra_forbidden":
            text, fix = f"{field}: unknown field (value {_short(value)})", "remove it or fix its spelling"
        else:
            text, fix = f"{field}: {msg} (got {_short(value)})", _hint(kind, value, rest)
        out.append(Problem(ent, eid, text, fix, rule=kind or "schema"))
    return out


def _fmt_loc(loc: list) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in ("function-after", "list[constrained-float]", "constrained-float") or "[" in str(part):
            continue
        else:
            text += ("." if text else "") + str(part)
    return text


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _hint(kind: str, value: Any, loc: list) -> str:
    field = str(loc[-1]) if loc and isinstance(loc[-1], str) else ""
    if isinstance(value, str) and any(ch.isdigit() for ch in value) and ("parsing" in kind or "type" in kind):
        unit = field.rsplit("_", 1)[-1] if "_" in field else ""
        return f"write a plain number{f' in {unit}' if unit else ''}: the unit is part of the field name"
    if "greater_than" in kind or "less_than" in kind:
        return "use a value in the allowed range"
    if "finite" in kind:
        return "use a finite number (not NaN or inf)"
    return "fix the value"
