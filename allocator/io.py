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
to the instance file), else in the nearest ``models/`` folder above it, else among the
profiles shipped in the package (allocator.profiles).

YAML is read with ``yaml.safe_load`` semantics only: no tag can construct an object. Nothing
read is evaluated or unpickled. Hostile files are refused before they cost time or memory:
files above ``MAX_FILE_BYTES`` (checked by size before reading), YAML nested deeper than
``MAX_YAML_DEPTH`` and aliases that would expand to more than ``MAX_ALIAS_NODES`` nodes.
Referenced tables and ``profiles_dir`` must resolve (symlinks followed) inside the instance's
folder unless the caller allows outside paths (``allow_outside_paths=True``, the
``outside_paths_allowed()`` context, or ``--allow-outside-paths`` on the command line).
Messages quote at most a short excerpt of what a file holds. Every problem is reported as an ``InputError`` naming the file,
the entity, the field and the value; this module never builds model constraints.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import csv
import difflib
import io
import math
import re
import weakref
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from pydantic import ValidationError

from allocator import profiles as profile_files
from allocator.errors import InputError, Problem
from allocator.schema import ExecutionOption, Horizon, Instance, ModelProfile

TABLE_KEYS = ("jobs_csv", "links_csv", "demand_csv", "site_series_csv")
SERIES_FIELDS = ("power_cap_mw", "energy_price_usd_per_mwh", "carbon_g_per_kwh")
LIST_COLUMNS = ("allowed_sites", "allowed_zones", "predecessors")  # ';'-separated in CSV
JOB_OPTION_COLUMNS = ("gpu_type", "gpus", "hours")
MAX_FILE_BYTES = 256 * 1024 * 1024  # any YAML or CSV file read; checked by size before reading
MAX_YAML_DEPTH = 64  # nesting of mappings and lists; an instance needs about 8
MAX_ALIAS_NODES = 100_000  # nodes that YAML aliases (*name) may add when expanded

_OUTSIDE_OK: contextvars.ContextVar[bool] = contextvars.ContextVar("allow_outside_paths", default=False)


@contextlib.contextmanager
def outside_paths_allowed(allow: bool = True):
    """Within this block, instances load tables and profiles from outside their folder (the
    command line's ``--allow-outside-paths``; for any loader that does not take the argument)."""
    token = _OUTSIDE_OK.set(bool(allow))
    try:
        yield
    finally:
        _OUTSIDE_OK.reset(token)


# --------------------------------------------------------------------------- public API


def load_instance(path: str | Path, *, profiles_dir: str | Path | None = None,
                  allow_outside_paths: bool | None = None) -> Instance:
    """Read an instance from a YAML file (and the CSV files it references).

    The files it references must lie in the instance's folder or below it, unless
    ``allow_outside_paths`` is true (default: as set by ``outside_paths_allowed``)."""
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
    return instance_from_dict(raw, base_dir=path.parent, source=str(path), profiles_dir=profiles_dir,
                              allow_outside_paths=allow_outside_paths)


def instance_from_dict(
    data: dict[str, Any],
    *,
    base_dir: str | Path | None = None,
    source: str = "<dict>",
    profiles_dir: str | Path | None = None,
    frames: dict[str, pd.DataFrame] | None = None,
    allow_outside_paths: bool | None = None,
) -> Instance:
    """Build an instance from a mapping like the YAML file's, merging referenced tables.

    Raises ``InputError`` listing every problem found: unreadable tables, cells that do not
    parse (file, row, column) and schema violations (entity, id, field, value) together.
    """
    if not isinstance(data, dict):
        kind = type(data).__name__ if data is not None else "nothing"
        raise InputError([Problem("instance", "-", f"instance is {kind}, expected a mapping of fields",
                                  "pass a dict with keys like 'horizon', 'gpu_types', 'sites'",
                                  rule="yaml-top-level")], source=source)
    data = copy.deepcopy(data)  # tables are merged into it; the caller's mapping stays as it was
    problems: list[Problem] = []
    origin: dict[tuple, str] = {}
    base = Path(base_dir) if base_dir is not None else None
    tables = dict(frames or {})
    outside_ok = _OUTSIDE_OK.get() if allow_outside_paths is None else allow_outside_paths
    for key in TABLE_KEYS:
        ref = data.pop(key, None)
        if ref is None:
            continue
        if not isinstance(ref, str) or not ref.strip():
            problems.append(Problem("instance", "-", f"{key}: {ref!r} is not a file name",
                                    f"write the CSV file name, e.g. {key}: {key[:-4]}.csv",
                                    rule="csv-reference"))
            continue
        if base is None:
            problems.append(Problem("file", key, f"{key}: {ref!r} given but the instance has no folder",
                                    "pass the table as a DataFrame instead", rule="csv-no-folder"))
            continue
        if not outside_ok and not _inside(base, ref, key, problems):
            continue
        df = _read_csv(base / ref, problems)
        if df is not None:
            df.attrs["file"] = ref
            tables[key] = df
    pdir = data.pop("profiles_dir", None)
    if profiles_dir is None and isinstance(pdir, str) and base is not None:
        if outside_ok or _inside(base, pdir, "profiles_dir", problems):
            profiles_dir = base / pdir
        else:
            profiles_dir = _REFUSED
    table_problems = len(problems)
    for key, df in tables.items():
        if key not in TABLE_KEYS:
            problems.append(Problem("instance", "-", f"unknown table {key!r}",
                                    f"tables are {', '.join(TABLE_KEYS)}", rule="csv-reference"))
            continue
        _merge_table(data, key, df, problems, origin)
    cell_problems = len(problems) > table_problems
    _attach_profiles(data, base, profiles_dir, problems, origin)
    try:
        inst = Instance.model_validate(data)
    except ValidationError as exc:
        # a CSV cell that did not parse was left empty: it is reported once, above
        problems.extend(problems_from_validation(exc, data, origin, skip_csv_none=cell_problems))
        raise _input_error(problems, source, _salvage(data, exc), origin) from None
    derive_from_profiles(inst)
    if problems:
        raise _input_error(problems, source, (inst, {}), origin)
    _remember_origin(inst, origin)
    return inst


_REFUSED = object()  # a profiles_dir refused as outside the instance's folder: look nowhere


def _inside(base: Path, ref: str, key: str, problems: list[Problem]) -> bool:
    """Whether ``base / ref`` resolves (symlinks followed) inside ``base``; if not, say so."""
    try:
        root = base.resolve()
        target = (base / ref).resolve()
    except (OSError, RuntimeError):  # a symlink loop
        target, root = None, base
    if target is not None and target.is_relative_to(root):
        return True
    problems.append(Problem("instance", "-", f"{key}: {excerpt(ref, 80)} resolves outside the instance's folder",
                            "move the file into the instance's folder (or below it), or allow outside paths "
                            "explicitly: --allow-outside-paths (API: allow_outside_paths=True)",
                            rule="path-outside"))
    return False


def _input_error(problems: list[Problem], source: str, partial, origin) -> InputError:
    """The InputError to raise, carrying ``partial``: (instance built from the entities that
    passed, {entity list: ids left out}) or None, so a validator can report the cross-entity
    problems of the rest in the same run (see allocator.validate.validate_path)."""
    err = InputError(problems, source=source)
    if partial is not None:
        _remember_origin(partial[0], origin)
    err.partial = partial
    return err


def _salvage(data: dict, exc: ValidationError):
    """The instance without the list entries that failed the schema, or None when what failed
    is not such an entry (the horizon, a whole list, a top-level field)."""
    bad: dict[str, set[int]] = {}
    for err in exc.errors():
        loc = err.get("loc", ())
        if len(loc) >= 2 and isinstance(loc[0], str) and isinstance(loc[1], int) and loc[0] != "horizon":
            bad.setdefault(loc[0], set()).add(loc[1])
        else:
            return None
    rest, dropped = dict(data), {}
    for key, idx in bad.items():
        items = rest.get(key)
        if not isinstance(items, list):
            return None
        rest[key] = [x for i, x in enumerate(items) if i not in idx]
        dropped[key] = {str(x.get("id", x.get("gpu_type", ""))) if isinstance(x, dict) else str(x)
                        for i, x in enumerate(items) if i in idx}
    try:
        inst = Instance.model_validate(rest)
    except ValidationError:
        return None
    derive_from_profiles(inst)
    return inst, dropped


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
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's where installed: fast
    text = yaml.dump(instance_to_dict(inst), Dumper=dumper, sort_keys=False, allow_unicode=True)
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
        found = problems_from_validation(exc, raw, {}, entity="profiles")
        eid = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
        found = [Problem(p.entity, f"{eid or p.id} [{path.name}]", p.message, p.fix, p.severity, p.rule)
                 for p in found]
        raise InputError(found, source=str(path)) from None


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
    """safe_load a YAML file; errors name the file, line and column.

    Only plain YAML is accepted: a tag that would construct an object (``!!python/...``) is
    an error, and so is a key given twice in one mapping (YAML would keep the last silently).
    """
    path = Path(path)
    name = str(path)
    if not path.exists():
        raise InputError([Problem("file", name, "file not found", "check the path", rule="file-missing")],
                         source=name)
    if not path.is_file():
        raise InputError([Problem("file", name, "is not a regular file", "pass the instance .yaml file",
                                  rule="file-missing")], source=name)
    if path.stat().st_size > MAX_FILE_BYTES:
        raise InputError([Problem("file", name, f"file is {path.stat().st_size} bytes",
                                  f"keep YAML below {MAX_FILE_BYTES // 2**20} MiB; put long tables in CSV files",
                                  rule="file-too-large")], source=name)
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise InputError([Problem("file", name, f"cannot be read ({exc.strerror or type(exc).__name__})",
                                  "check the file's permissions", rule="file-unreadable")], source=name) from None
    if b"\x00" in blob[:8192]:
        raise InputError([Problem("file", name, "is a binary file, not YAML text",
                                  "pass the instance .yaml file", rule="binary-file")], source=name)
    try:
        text = blob.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError([Problem("file", name, f"is not UTF-8 text (byte {exc.start})",
                                  "save it as UTF-8", rule="encoding")], source=name) from None
    if not text.strip() or all(not ln.strip() or ln.lstrip().startswith("#") for ln in text.splitlines()):
        raise InputError([Problem("file", name, "file is empty", "write the instance fields into it",
                                  rule="empty-file")], source=name)
    shape = _yaml_shape_problem(text, path.name)
    if shape is not None:
        raise InputError([shape], source=name)
    loader = _StrictLoader(text)
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        what = excerpt(getattr(exc, "problem", None) or str(exc).splitlines()[0], 160, quote=False)
        if isinstance(exc, yaml.constructor.ConstructorError):
            msg, fix, rule = (f"YAML tag not allowed: {what}",
                              "write plain values: tags that build objects are never loaded", "yaml-tag")
        else:
            msg, fix, rule = f"YAML syntax error: {what}", "fix the indentation or quoting there", "yaml-syntax"
        raise InputError([Problem("file", f"{path.name} {where}", msg, fix, rule=rule)], source=name) from None
    finally:
        loader.dispose()
    if loader.duplicates:
        raise InputError([Problem("file", f"{path.name} line {line}",
                                  f"key {excerpt(key)} is given twice in one mapping (first at line {first})",
                                  "keep one: YAML would silently use the last", rule="yaml-duplicate-key")
                          for key, line, first in loader.duplicates], source=name)
    return data


_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _yaml_shape_problem(text: str, name: str) -> Problem | None:
    """Depth and alias expansion of a YAML text, from its event stream (read iteratively, so
    depth costs no recursion) before anything is composed; a problem if either is too large.

    Each anchored node's expanded size is known when it ends, so an alias adds that size at
    once: a 'billion laughs' file is refused after a few hundred events, not after 3 GB."""
    depth = 0
    stack: list[list] = []  # [anchor, nodes so far] per open collection
    sizes: dict[str, int] = {}
    added = 0
    try:
        for ev in yaml.parse(text, Loader=_SafeLoader):
            if isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    line = ev.start_mark.line + 1 if ev.start_mark else "?"
                    return Problem("file", f"{name} line {line}",
                                   f"YAML nested more than {MAX_YAML_DEPTH} levels deep",
                                   "an instance needs about 8 levels: flatten the structure",
                                   rule="yaml-too-deep")
                stack.append([ev.anchor, 1])
            elif isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
                anchor, n = stack.pop()
                if anchor is not None:
                    sizes[anchor] = n
                if stack:
                    stack[-1][1] += n
            elif isinstance(ev, (yaml.ScalarEvent, yaml.AliasEvent)):
                n = sizes.get(ev.anchor, 1) if isinstance(ev, yaml.AliasEvent) else 1
                if isinstance(ev, yaml.AliasEvent):
                    added += n
                    if added > MAX_ALIAS_NODES:
                        line = ev.start_mark.line + 1 if ev.start_mark else "?"
                        return Problem("file", f"{name} line {line}",
                                       f"YAML aliases (*{excerpt(ev.anchor, 20)}) expand to more than "
                                       f"{MAX_ALIAS_NODES:,} values", "write the values out, or use fewer aliases",
                                       rule="yaml-alias-bomb")
                elif ev.anchor is not None:
                    sizes[ev.anchor] = 1
                if stack:
                    stack[-1][1] += n
    except yaml.YAMLError:
        return None  # the loader reports the syntax error with its line and column
    return None


def excerpt(value, limit: int = 24, *, quote: bool = True) -> str:
    """A short, printable quote of untrusted text for a message: control characters replaced,
    at most ``limit`` characters, a longer text cut to its first third and its length (a
    secret is never shown whole)."""
    text = value if isinstance(value, str) else str(value)
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    more = ""
    if len(text) > limit:
        text, more = text[: max(limit // 3, 4)], f"... ({len(text)} characters)"
    return (repr(text) if quote else text) + more


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_ .()/-]{0,39}")


def _column(name: str, i: int) -> str:
    """A CSV column name for a message: shown when it looks like a column name, else only its
    position and length (a file that is not a table never has its first line echoed)."""
    return repr(name) if _NAME.fullmatch(name) else f"<column {i + 1}: {len(name)} characters>"


class _StrictLoader(_SafeLoader):
    """The safe loader (libyaml's where installed) that records keys given twice in a mapping."""

    def __init__(self, stream):
        super().__init__(stream)
        self.duplicates: list[tuple[str, int, int]] = []

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[tuple[str, str], int] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                k = (key_node.tag, key_node.value)
                line = key_node.start_mark.line + 1
                if k in seen:
                    self.duplicates.append((key_node.value, line, seen[k]))
                else:
                    seen[k] = line
        return super().construct_mapping(node, deep=deep)


# --------------------------------------------------------------------------- tables


def _read_csv(path: Path, problems: list[Problem]) -> pd.DataFrame | None:
    name = path.name
    if not path.is_file():
        problems.append(Problem("file", name, f"referenced table {path} not found",
                                "check the path, relative to the instance file", rule="file-missing"))
        return None
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        problems.append(Problem("file", name, f"file is {size} bytes",
                                f"keep each CSV table below {MAX_FILE_BYTES // 2**20} MiB", rule="file-too-large"))
        return None
    try:
        blob = path.read_bytes()
    except OSError as exc:
        problems.append(Problem("file", name, f"cannot be read ({exc.strerror or type(exc).__name__})",
                                "check the file's permissions", rule="file-unreadable"))
        return None
    if b"\x00" in blob[:8192]:
        problems.append(Problem("file", name, "is a binary file, not CSV text",
                                "reference a comma-separated text file", rule="binary-file"))
        return None
    if not blob.strip():
        problems.append(Problem("file", name, "CSV file is empty", "write a header row and data", rule="empty-file"))
        return None
    try:
        df = pd.read_csv(io.BytesIO(blob), dtype=str, keep_default_na=False, skipinitialspace=True,
                         encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        problems.append(Problem("file", name, f"CSV does not parse: {excerpt(first, 120, quote=False)}",
                                "check quoting, the encoding (UTF-8) and that every row has the header's columns",
                                rule="csv-parse"))
        return None
    df.columns = [str(c).strip() for c in df.columns]
    if len(df.columns) == 1 and any(sep in df.columns[0] for sep in (";", "\t", "|")):
        problems.append(Problem("file", name, f"only one column {_column(df.columns[0], 0)}: wrong delimiter",
                                "separate columns with commas", rule="csv-delimiter"))
        return None
    header = [c.strip() for c in next(csv.reader([blob.decode("utf-8-sig", "replace").splitlines()[0]]), [])]
    dup = sorted({c for c in header if header.count(c) > 1})
    if dup or "" in header:
        what = (f"column {', '.join(_column(c, header.index(c)) for c in dup)} appears twice" if dup
                else "a column has no name")
        shown = ", ".join(_column(c, i) for i, c in enumerate(header[:12])) + (", ..." if len(header) > 12 else "")
        problems.append(Problem("file", name, f"header: {what} ({shown})",
                                "give every column one distinct name", rule="csv-header"))
        return None
    df.attrs["file"] = name
    return df


def _row_name(df: _Table, i: int) -> str:
    """Where row i is, as a user finds it: ``jobs.csv row 5`` (1-based, header is row 1) for a
    file, ``jobs frame index 3`` for a DataFrame."""
    if df.attrs.get("frame"):
        return f"{df.attrs['frame']} frame index {df.index[i]}"
    return f"{df.attrs.get('file', 'table')} row {i + 2}"


def _require(df: _Table, cols: tuple[str, ...], key: str, problems: list[Problem]) -> bool:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        problems.append(Problem("file", df.attrs.get("file") or df.attrs.get("frame") or key,
                                f"missing column(s) {', '.join(missing)}",
                                f"columns present: {', '.join(_column(str(c), i) for i, c in enumerate(df.columns[:12])) or 'none'}"
                                "; add the missing ones "
                                "to the header", rule="csv-missing-column"))
        return False
    return True


def _cell(df: _Table, i: int, col: str, kind: str, problems: list[Problem], *, required: bool = True):
    """Parse one cell; on failure record (file, row), the column and the value, and return None."""
    text = df.cols[col][i].strip()
    where = _row_name(df, i)
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
    except (ValueError, OverflowError):
        expect = {"float": "a finite number", "int": "a whole number", "bool": "true or false"}.get(kind, kind)
        unit = _unit(col)
        hint = f"write {expect}" + (f" in {unit}" if unit and kind in ("float", "int") else "")
        if kind == "float" and text.lower() in ("nan", "inf", "-inf", "infinity"):
            hint = "write a finite number, or leave the cell empty where the column is optional"
        problems.append(Problem("file", where, f"column {col}: {excerpt(text)} is not {expect}", hint,
                                rule="csv-bad-cell"))
        return None


class _Table:
    """A table as plain Python lists of cell text (fast to read cell by cell), with the
    ``attrs`` naming where it came from: ``file`` for a CSV, ``frame`` for a DataFrame."""

    def __init__(self, columns: list[str], cols: dict[str, list[str]], index: list, attrs: dict):
        self.columns, self.cols, self.index, self.attrs = columns, cols, index, attrs

    def __len__(self) -> int:
        return len(self.index)


def _frame_from_any(df: pd.DataFrame, key: str) -> _Table:
    """Normalise a CSV-read or caller's DataFrame to cell text; a caller's DataFrame keeps
    its index labels for messages."""
    columns = [str(c).strip() for c in df.columns]
    if df.attrs.get("file") and not df.attrs.get("frame"):  # straight from _read_csv: all text
        cols = {c: ["" if v is None else str(v) for v in df[orig].tolist()]
                for c, orig in zip(columns, df.columns, strict=True)}
        return _Table(columns, cols, list(range(len(df))), {"file": df.attrs["file"]})
    cols = {c: [_text(v) for v in df[orig].tolist()] for c, orig in zip(columns, df.columns, strict=True)}
    return _Table(columns, cols, list(df.index), {"frame": df.attrs.get("frame") or key.removesuffix("_csv")})


def _text(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ";".join(map(str, v))
    try:
        if v is None or pd.isna(v):
            return ""
    except (TypeError, ValueError):
        pass
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _items(data: dict, key: str) -> list | None:
    """``data[key]`` if it is a list (or absent: a new list), else None: the schema reports it."""
    val = data.get(key)
    if val is None:
        return []
    return val if isinstance(val, list) else None


def _by_id(items: list) -> dict[str, dict]:
    return {x["id"]: x for x in items if isinstance(x, dict) and isinstance(x.get("id"), str)}


def _merge_table(data: dict, key: str, df: pd.DataFrame, problems: list[Problem],
                 origin: dict[tuple, str]) -> None:
    """Merge one table (a CSV read or a caller's DataFrame) into the instance mapping."""
    merge = {"links_csv": _merge_links, "jobs_csv": _merge_jobs, "demand_csv": _merge_demand,
             "site_series_csv": _merge_site_series}[key]
    merge(data, key, _frame_from_any(df, key), problems, origin)


def _merge_links(data: dict, key: str, df: _Table, problems: list[Problem], origin: dict[tuple, str]) -> None:
    """links.csv: one link per row; a pair of nodes once (in either order)."""
    if not _require(df, ("a", "b", "latency_ms"), key, problems):
        return
    links = _items(data, "links")
    if links is None:
        return
    links = list(links)
    seen: dict[tuple, str] = {}
    for i in range(len(df)):
        rec = {"a": _cell(df, i, "a", "str", problems), "b": _cell(df, i, "b", "str", problems),
               "latency_ms": _cell(df, i, "latency_ms", "float", problems)}
        if _repeated(seen, tuple(sorted((str(rec["a"]), str(rec["b"])))), df, i, "a, b", problems):
            continue
        for col in ("bandwidth_gbps", "egress_usd_per_gb"):
            if col in df.columns:
                val = _cell(df, i, col, "float", problems, required=False)
                if val is not None:
                    rec[col] = val
        origin[("links", len(links))] = _row_name(df, i)
        links.append(rec)
    _unknown_columns(df, ("a", "b", "latency_ms", "bandwidth_gbps", "egress_usd_per_gb"), problems)
    data["links"] = links


def _merge_jobs(data: dict, key: str, df: _Table, problems: list[Problem], origin: dict[tuple, str]) -> None:
    """jobs.csv: one row per (job, execution option); job fields from its first row."""
    if not _require(df, ("id",), key, problems):
        return
    jobs = _items(data, "jobs")
    if jobs is None:
        return
    jobs = list(jobs)
    by_id: dict[str, dict] = {}
    index: dict[str, int] = {}
    seen = {}
    spec = {"profile": "str", "tokens_t": "float", "release_period": "int", "deadline_period": "int",
            "deadline": "str", "tardiness_usd_per_h": "float", "mandatory": "bool", "value_usd": "float",
            "allowed_sites": "list", "allowed_zones": "list", "dataset_source": "str",
            "dataset_tb": "float", "predecessors": "list"}
    has_options = all(c in df.columns for c in JOB_OPTION_COLUMNS)
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
            index[jid] = len(jobs)
            origin[("jobs", len(jobs))] = _row_name(df, i)
            by_id[jid] = job
            jobs.append(job)
        if has_options and df.cols["gpu_type"][i].strip():
            option = (jid, df.cols["gpu_type"][i].strip(), df.cols["gpus"][i].strip())
            if _repeated(seen, option, df, i, "id, gpu_type, gpus", problems):
                continue
            origin[("jobs", index[jid], "options", len(job["options"]))] = _row_name(df, i)
            job["options"].append({"gpu_type": _cell(df, i, "gpu_type", "str", problems),
                                   "gpus": _cell(df, i, "gpus", "int", problems),
                                   "hours": _cell(df, i, "hours", "float", problems)})
    for job in by_id.values():
        if not job["options"]:
            del job["options"]
    _unknown_columns(df, ("id", *spec, *JOB_OPTION_COLUMNS), problems)
    data["jobs"] = jobs


def _merge_demand(data: dict, key: str, df: _Table, problems: list[Problem], origin: dict[tuple, str]) -> None:
    """demand.csv: tokens/s per (service, region, period), each key once."""
    if not _require(df, ("service", "region", "period", "tokens_per_s"), key, problems):
        return
    _unknown_columns(df, ("service", "region", "period", "tokens_per_s"), problems)
    periods = _periods(data)
    services = _items(data, "services")
    if services is None or periods is None:
        return  # the schema reports the horizon or the services
    by_id = _by_id(services)
    pos = {id(s): k for k, s in enumerate(services)}
    seen = {}
    for i in range(len(df)):
        sid = _cell(df, i, "service", "str", problems)
        rid = _cell(df, i, "region", "str", problems)
        t = _cell(df, i, "period", "int", problems)
        val = _cell(df, i, "tokens_per_s", "float", problems)
        if None in (sid, rid, t, val):
            continue
        where = _row_name(df, i)
        if sid not in by_id:
            problems.append(Problem("file", where, f"column service: {excerpt(sid)} is not defined under services",
                                    _fix_unknown(sid, by_id, "service"), rule="unknown-service"))
            continue
        if not _in_range(t, periods, where, problems):
            continue
        if _repeated(seen, (sid, rid, t), df, i, "service, region, period", problems):
            continue
        dem = by_id[sid].setdefault("demand", {})
        if not isinstance(dem, dict):
            continue  # the schema reports a demand that is not a mapping
        dem[rid] = _set_at(dem.get(rid), t, val, periods)
        origin[("services", pos[id(by_id[sid])], "demand", rid, t)] = where


def _merge_site_series(data: dict, key: str, df: _Table, problems: list[Problem], origin: dict[tuple, str]) -> None:
    """site_series.csv: per (site, period) values of the series fields, each key once."""
    if not _require(df, ("site", "period"), key, problems):
        return
    fields = [c for c in SERIES_FIELDS if c in df.columns]
    _unknown_columns(df, ("site", "period", *SERIES_FIELDS), problems)
    periods = _periods(data)
    sites = _items(data, "sites")
    if sites is None or periods is None:
        return  # the schema reports the horizon or the sites
    by_id = _by_id(sites)
    pos = {id(s): k for k, s in enumerate(sites)}
    seen = {}
    for i in range(len(df)):
        sid = _cell(df, i, "site", "str", problems)
        t = _cell(df, i, "period", "int", problems)
        if sid is None or t is None:
            continue
        where = _row_name(df, i)
        if sid not in by_id:
            problems.append(Problem("file", where, f"column site: {excerpt(sid)} is not defined under sites",
                                    _fix_unknown(sid, by_id, "site"), rule="unknown-site"))
            continue
        if not _in_range(t, periods, where, problems):
            continue
        if _repeated(seen, (sid, t), df, i, "site, period", problems):
            continue
        for f in fields:
            val = _cell(df, i, f, "float", problems, required=False)
            if val is None:
                continue
            by_id[sid][f] = _set_at(by_id[sid].get(f), t, val, periods)
            origin[("sites", pos[id(by_id[sid])], f, t)] = where


def _repeated(seen: dict[tuple, str], key: tuple, df: _Table, i: int, columns: str,
              problems: list[Problem]) -> bool:
    """Whether row i repeats the key of an earlier row (then a problem names both rows): a
    repeated row would otherwise be summed or overwrite the first without a word."""
    where = _row_name(df, i)
    first = seen.setdefault(key, where)
    if first == where:
        return False
    shown = ", ".join(excerpt(k) if isinstance(k, str) else str(k) for k in key)
    problems.append(Problem("file", where, f"columns {columns}: ({shown}) repeats {first}",
                            "keep one row per key: merge or delete one of the two", rule="csv-duplicate-row"))
    return True


def _unknown_columns(df: _Table, known: tuple[str, ...], problems: list[Problem]) -> None:
    unknown = [c for c in df.columns if c not in known]
    if unknown:
        hints = [f"{_column(c, df.columns.index(c))}: did you mean {m[0]!r}?" for c in unknown
                 if (m := difflib.get_close_matches(c, known, n=1, cutoff=0.6))]
        problems.append(Problem("file", df.attrs.get("file") or df.attrs.get("frame") or "table",
                                f"unknown column(s) {', '.join(_column(c, df.columns.index(c)) for c in unknown[:12])}",
                                "; ".join(hints) or f"known columns: {', '.join(known)}",
                                rule="csv-unknown-column"))


def _fix_unknown(name: str, known: dict, what: str) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else f"add the {what} or fix the id"


def _in_range(t: int, periods: int | None, where: str, problems: list[Problem]) -> bool:
    if t < 0 or (periods is not None and t >= periods):
        last = f"{periods - 1}" if periods is not None else "the last period"
        problems.append(Problem("file", where, f"column period: {t} is outside 0..{last}",
                                "periods count from 0 within the horizon", rule="period-range"))
        return False
    return True


def _set_at(series: Any, t: int, val: float, periods: int | None) -> Any:
    """Set period t of a constant-or-list series given in YAML, expanding a constant."""
    if isinstance(series, list):
        out = series  # ours: instance_from_dict works on a deep copy of the caller's mapping
    else:
        fill = series if isinstance(series, (int, float)) and not isinstance(series, bool) else 0.0
        out = [fill] * (periods or (t + 1))
    if t >= len(out):
        out.extend([0.0] * (t + 1 - len(out)))
    out[t] = val
    return out


def _periods(data: dict) -> int | None:
    """horizon.periods if the horizon is valid, else None (the schema reports it)."""
    try:
        return Horizon.model_validate(data.get("horizon")).periods
    except ValidationError:
        return None


# --------------------------------------------------------------------------- profiles


def _attach_profiles(data: dict, base: Path | None, profiles_dir, problems: list[Problem],
                     origin: dict[tuple, str] | None = None) -> None:
    """Load every profile named by a job or service that is not given inline."""
    wanted: set[str] = set()
    for key in ("jobs", "services"):
        for item in _items(data, key) or []:
            if isinstance(item, dict) and isinstance(item.get("profile"), str):
                wanted.add(item["profile"])
    given = _items(data, "profiles")
    if given is None:
        return  # the schema reports profiles that are not a list
    missing = sorted(wanted - set(_by_id(given)))
    if not missing:
        return
    if profiles_dir is _REFUSED:
        return  # profiles_dir points outside the instance's folder: reported, nothing is read
    pdir = Path(profiles_dir) if profiles_dir is not None else find_profiles_dir(base)
    profiles = list(given)
    for pid in missing:
        found = profile_files.locate(pid, pdir)  # the folder's file, else the packaged one
        if found is None:
            problems.extend(_unknown_profile(data, pid, pdir, origin or {}))
            continue
        try:
            with found.path() as path:
                prof = load_profile(path)
        except InputError as exc:
            problems.extend(exc.problems)
            continue
        if prof.id != pid:
            problems.append(Problem("profiles", path.name, f"id: {prof.id!r} differs from the file name {pid!r}",
                                    "make the file name the profile id", rule="profile-id"))
            continue
        profiles.append(prof.model_dump(mode="json", exclude_defaults=True))
    data["profiles"] = profiles


def _unknown_profile(data: dict, pid: str, pdir: Path | None, origin: dict[tuple, str]) -> list[Problem]:
    """A problem for each job or service naming a profile that is in no profile file."""
    shipped = [p.id for p in profile_files.known(None)]
    if pdir is None:
        close = difflib.get_close_matches(pid, shipped, n=1, cutoff=0.6)
        what = ("was not found in models/ (the packaged profiles; there is no models/ folder at or "
                "above the instance)")
        fix = ((f"did you mean {close[0]!r}? " if close else "")
               + "give profiles_dir (a folder of profile YAML files), or the profile inline under profiles:")
    else:
        have = sorted(f.stem for f in pdir.glob("*.y*ml"))
        close = difflib.get_close_matches(pid, have + shipped, n=1, cutoff=0.6)
        what = f"was not found in {pdir.name}/ nor among the packaged profiles"
        fix = (f"did you mean {close[0]!r}? " if close else f"add {pdir.name}/{pid}.yaml or fix the name; ")
        fix += f"profiles there: {', '.join(have[:8]) + (', ...' if len(have) > 8 else '') or 'none'}"
    fix += f"; packaged: {', '.join(shipped)} (allocator profiles lists them)"
    out = []
    for key in ("jobs", "services"):
        for i, item in enumerate(_items(data, key) or []):
            if isinstance(item, dict) and item.get("profile") == pid:
                eid = str(item.get("id")) if item.get("id") is not None else f"#{i}"
                if origin.get((key, i)):
                    eid += f" [{origin[(key, i)]}]"
                out.append(Problem(key, eid, f"profile: {pid!r} {what}", fix, rule="unknown-profile"))
    return out


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


def problems_from_validation(exc: ValidationError, data: Any, origin: dict[tuple, str],
                             entity: str | None = None, *, skip_csv_none: bool = False) -> list[Problem]:
    """Translate pydantic errors into problems naming entity, id, field and value.

    ``(sites, colossus-1) | power_cap_mw: Input should be greater than or equal to 0 (got -300);
    use a value >= 0 (MW)``. A value that may be one number or a list (a time series) yields
    one problem, for the form that was written. Entities read from a CSV name the file and row.
    With ``skip_csv_none``, empty values at CSV-born paths are skipped (already reported).
    """
    out: list[Problem] = []
    seen: set[tuple] = set()
    for err in _pick_union_branch(exc.errors(), data):
        path = err["path"]
        kind = err.get("type", "")
        value = err.get("input")
        ent, eid, rest = entity or "instance", "-", list(path)
        if len(path) >= 2 and isinstance(path[0], str) and isinstance(path[1], int):
            ent = path[0]
            items = data.get(ent) if isinstance(data, dict) else None
            item = items[path[1]] if isinstance(items, list) and path[1] < len(items) else None
            eid = f"#{path[1]}"
            if isinstance(item, dict) and isinstance(item.get("id"), (str, int, float)):
                eid = str(item["id"])
            elif ent == "links" and isinstance(item, dict):
                eid = f"{item.get('a')}-{item.get('b')}"
            rest = list(path[2:])
        elif len(path) >= 2 and path[0] == "horizon" and entity is None:
            ent, rest = "horizon", list(path[1:])
        elif entity is not None and isinstance(data, dict) and isinstance(data.get("id"), str):
            eid = data["id"]
        where = _origin(origin, path)
        if where:
            if skip_csv_none and value is None:
                continue
            eid += f" [{where}]"
        field = _fmt_path(rest, data, path[: len(path) - len(rest)])
        text, fix = _describe(err, kind, value, rest, path, data)
        text = f"{field}: {text}" if field else text
        key = (ent, eid, text)
        if key in seen:
            continue
        seen.add(key)
        out.append(Problem(ent, eid, text, fix, rule=kind or "schema"))
    return out


def _pick_union_branch(errors: list[dict], data: Any) -> list[dict]:
    """Keep, for each value that may take several forms (number or list), only the errors of
    the form the user wrote; give every error ``path``: its location in ``data`` (no tags)."""
    tagged: dict[tuple, set[str]] = {}
    out = []
    for err in errors:
        loc = list(err.get("loc", ()))
        path, tag, node = [], None, data
        for k, part in enumerate(loc):
            if isinstance(node, dict) and _has_key(node, part):
                node = node[part]
                path.append(part)
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                node = node[part]
                path.append(part)
            elif k == len(loc) - 1 and err.get("type") == "missing":
                path.append(part)
            elif isinstance(part, str) and (part in _TAG_WORDS or "[" in part or "-" in part) and tag is None:
                tag = part  # the union member or validator this error belongs to
            else:
                path.append(part)
                node = None
        err = dict(err, path=tuple(path), tag=tag, node=node)
        if tag is not None:
            tagged.setdefault(tuple(path[: _prefix_len(loc, tag, path)]), set()).add(tag)
        out.append(err)
    keep = []
    for err in out:
        tag = err["tag"]
        if tag is None or not tag.startswith(("list[", "constrained-float", "float", "int", "function-")):
            keep.append(err)
            continue
        written = _at(data, err["path"][: _prefix_len(err.get("loc", ()), tag, err["path"])])
        wants_list = isinstance(written, list)
        if tag.startswith("list[") == wants_list:
            keep.append(err)
    return keep or out


_TAG_WORDS = {"constrained-float", "float", "int", "str", "bool", "function-after", "function-before",
              "function-wrap", "function-plain", "[key]", "model"}


def _prefix_len(loc, tag: str, path) -> int:
    """Number of path parts before the union tag (the value the tag applies to)."""
    loc = list(loc)
    return min(loc.index(tag) if tag in loc else len(path), len(path))


def _has_key(node: dict, part: Any) -> bool:
    try:
        return part in node
    except TypeError:
        return False


def _at(data: Any, path) -> Any:
    node = data
    for part in path:
        if isinstance(node, dict) and _has_key(node, part):
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            return None
    return node


def _origin(origin: dict[tuple, str], path: tuple) -> str:
    """The CSV row an entity path came from (the longest recorded prefix), or ''."""
    for n in range(len(path), 1, -1):
        where = origin.get(tuple(path[:n]))
        if where:
            return where
    return ""


def _fmt_path(rest: list, data: Any, prefix: tuple) -> str:
    """``pools[H200].available``: list items by their id or GPU type where they have one."""
    text, node = "", _at(data, prefix)
    for part in rest:
        if isinstance(part, int):
            item = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            label = part
            if isinstance(item, dict):
                for key in ("id", "gpu_type"):
                    if isinstance(item.get(key), str) and not (key == "gpu_type" and _is_options(text)):
                        label = item[key]
                        break
            text += f"[{label}]"
            node = item
        else:
            text += ("." if text else "") + str(part)
            node = node.get(part) if isinstance(node, dict) and _has_key(node, part) else None
    return text


def _is_options(text: str) -> bool:
    return text.endswith("options")


_UNITS = (
    ("_usd_per_gpu_h", "$ per GPU-hour"), ("_usd_per_mwh", "$/MWh"), ("_g_per_kwh", "gCO2/kWh"),
    ("_usd_per_gb", "$/GB"), ("_usd_per_mtok", "$ per million tokens"), ("_usd_per_h", "$ per hour"),
    ("_usd_per_t", "$ per tCO2"), ("_usd", "$"), ("_mw", "MW"), ("_kw", "kW"), ("_ms", "ms"),
    ("_gbps", "Gb/s"), ("_tb", "TB"), ("_gb", "GB"), ("tokens_t", "trillion tokens"),
    ("_period", "periods, counted from 0"), ("period_hours", "hours"), ("hours", "hours"),
    ("tokens_per_s_per_gpu", "tokens/s per GPU"), ("tokens_per_s", "tokens/s"), ("demand", "tokens/s"),
    ("gpus", "GPUs"), ("available", "GPUs"), ("reserved", "GPUs"), ("periods", "periods"),
    ("gpu_hours_h100", "H100 GPU-hours"), ("parameters_b", "billions"), ("training_flops", "FLOP"), ("bytes_per_token", "bytes"),
)


def _unit(field: str) -> str:
    for suffix, unit in _UNITS:
        if field.endswith(suffix):
            return unit
    return ""


def _field_name(rest: list) -> str:
    """The schema field an error is about (demand.<region>[3] -> demand)."""
    names = [p for p in rest if isinstance(p, str)]
    for name in reversed(names):
        if name in _SCHEMA_FIELDS:
            return name
    return names[-1] if names else ""


def _describe(err: dict, kind: str, value: Any, rest: list, path: tuple, data: Any) -> tuple[str, str]:
    """(what is wrong, how to fix it) for one pydantic error."""
    field = _field_name(rest)
    unit = _unit(field)
    in_unit = f" in {unit}" if unit else ""
    msg = str(err.get("msg", "invalid"))
    ctx = err.get("ctx") or {}
    got = f" (got {_short(value)})"
    if kind == "missing":
        leaf = str(rest[-1]) if rest else "the field"
        return "required field is missing", f"add '{leaf}:'" + (f" (a number{in_unit})" if unit else "")
    if kind == "extra_forbidden":
        leaf = str(rest[-1]) if rest else ""
        known = _known_fields(path, data)
        close = difflib.get_close_matches(leaf, known, n=1, cutoff=0.6)
        fix = f"did you mean {close[0]!r}?" if close else "remove it or fix its spelling"
        return f"unknown field (value {_short(value)})", fix
    if kind == "invalid_key":
        return f"key {_short(value)} is not text", "write keys as text (quote numbers)"
    if kind == "value_error":
        if "yes/no value, not a number" in msg:
            return msg.removeprefix("Value error, "), f"write a number{in_unit} (quote it if text is meant)"
        return msg.removeprefix("Value error, "), _value_error_fix(msg)
    if kind == "finite_number":
        return msg + got, f"write a finite number{in_unit}: NaN, inf and values beyond 1.8e308 are refused"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        sign = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
        bound = next(iter(ctx.values()), "") if ctx else ""
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        return msg + got, f"use a value {sign} {bound}{in_unit}"
    if kind in ("float_parsing", "float_type", "int_parsing", "int_type", "int_from_float", "int_parsing_size"):
        whole = kind.startswith("int")
        what = "a whole number" if whole else "a plain number"
        if value is None:
            return "no value given" + got, f"write {what}{in_unit} after the colon"
        if isinstance(value, str) and any(ch.isdigit() for ch in value):
            return msg + got, f"write {what}{in_unit}: the unit is part of the field name, no unit or separators"
        return msg + got, f"write {what}{in_unit}"
    if kind in ("bool_parsing", "bool_type"):
        return msg + got, "write true or false"
    if kind == "literal_error":
        return msg + got, f"use one of {ctx.get('expected', 'the listed values')}"
    if kind.startswith(("datetime", "date")):
        return msg + got, "write an ISO 8601 time such as 2026-12-01T00:00:00Z (UTC)"
    if kind in ("list_type", "tuple_type"):
        return msg + got, "write a list, e.g. [a, b] or one '- item' per line"
    if kind == "dict_type":
        return msg + got, "write a mapping of key: value pairs"
    if kind in ("model_type", "model_attributes_type"):
        return msg + got, "write the entry as a mapping of its fields (key: value)"
    if kind in ("string_type",):
        return msg + got, "write text (quote it if it looks like a number or list)"
    if kind in ("string_too_short", "too_short"):
        return msg + got, "give a non-empty value"
    if kind in ("string_too_long", "too_long"):
        return msg + got, "shorten it"
    return msg + got, "fix the value"


def _value_error_fix(msg: str) -> str:
    if "options or a profile" in msg:
        return "add 'options:' (gpu_type, gpus, hours) or 'profile:'"
    if "tokens_per_s_per_gpu or a profile" in msg:
        return "add 'tokens_per_s_per_gpu:' or 'profile:'"
    if "soft deadline" in msg:
        return "add 'deadline_period:' or make the deadline hard"
    if msg.removeprefix("Value error, ").startswith("no value given"):
        return "write a number after the colon"
    if "power_cap_mw: required field is missing" in msg:
        return "add 'power_cap_mw:' (a number in MW), or 'power_options:' to decide the ceiling"
    if "power_options together" in msg:
        return "keep one: power_cap_mw (fixed) or power_options (decided)"
    if "reserve_options together" in msg:
        return "drop reserved (the block is decided from reserve_options)"
    if "does not divide the range" in msg:
        return "choose a step that divides max - min, or move max to min + a whole number of steps"
    if "max_gpus" in msg and "min_gpus" in msg or "max_mw" in msg and "min_mw" in msg:
        return "make max at least min"
    if "probabilities sum to" in msg:
        return "make the scenario probabilities add up to 1"
    if "reserved" in msg and "available" in msg:
        return "make available at least reserved"
    return "fix the value"


def _known_fields(path: tuple, data: Any) -> list[str]:
    """Field names of the entity at ``path`` (for 'did you mean')."""
    cls = _MODEL_BY_KEY.get("", Instance)
    for part in path[:-1]:
        if isinstance(part, str) and part in _MODEL_BY_KEY:
            cls = _MODEL_BY_KEY[part]
    names = list(cls.model_fields)
    if cls is Instance:
        names += [*TABLE_KEYS, "profiles_dir"]
    return names


def _short(value: Any) -> str:
    """A value for a message: text as a short excerpt (it may be a secret), a mapping by its
    first keys, anything else by its repr cut to 60 characters."""
    if isinstance(value, str):
        return excerpt(value)
    if isinstance(value, dict):
        keys = ", ".join(map(str, list(value)[:4]))
        return "{" + keys + (", ..." if len(value) > 4 else "") + "}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _schema_models() -> dict[str, type]:
    from allocator import schema

    return {
        "": schema.Instance, "horizon": schema.Horizon, "gpu_types": schema.GpuType, "sites": schema.Site,
        "pools": schema.GpuPool, "regions": schema.Region, "data_sources": schema.DataSource,
        "links": schema.Link, "options": schema.ExecutionOption, "jobs": schema.TrainingJob,
        "services": schema.InferenceService, "profiles": schema.ModelProfile,
        "training": schema.TrainingProfile, "inference": schema.InferenceProfile,
    }


_MODEL_BY_KEY = _schema_models()
_SCHEMA_FIELDS = {f for cls in _MODEL_BY_KEY.values() for f in cls.model_fields}


# --------------------------------------------------------------------------- origins

_ORIGINS: dict[int, dict[tuple, str]] = {}


def _remember_origin(inst: Instance, origin: dict[tuple, str]) -> None:
    if origin:
        _ORIGINS[id(inst)] = origin
        weakref.finalize(inst, _ORIGINS.pop, id(inst), None)


def origin_of(inst: Instance) -> dict[tuple, str]:
    """Where the loader read parts of ``inst`` from: ``{("jobs", 3): "jobs.csv row 5", ...}``.

    Keys are paths into the instance (entity list, index, then fields); empty for entities
    written in YAML or built from dicts, and for copies of the instance."""
    return _ORIGINS.get(id(inst), {})
