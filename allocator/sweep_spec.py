"""Sweep specs: which instance numbers to vary, how, and how to combine them into scenarios.

A spec is a YAML mapping (see docs/sweeps.md):

    mode: grid              # grid | zip | sample
    samples: 20             # sample: how many scenarios to draw from the grid
    seed: 0                 # sample: random seed (same seed -> same scenarios)
    parameters:
      - path: sites[colossus-1].power_cap_mw
        values: [2.0, 2.5, 3.0]
      - path: "*.ondemand_price_usd_per_gpu_h"
        scale: [0.8, 1.0, 1.2]
      - path: carbon_price_usd_per_t
        range: {start: 0, stop: 100, step: 50}
    solve: {time_limit_s: 10, mip_gap: 0.001}

A path is a chain of field names separated by dots; a list or mapping field takes a selector
in brackets: the id of a list item (`sites[colossus-1]`), the GPU type of a pool
(`pools[H100]`), `a/b` of a link, a position (`options[0]`), a key of a mapping
(`demand[users-eu]`), or a shell pattern (`*`, `aws-*`). `gpu_pools[SITE/TYPE]` is short for
`sites[SITE].pools[TYPE]`; a leading `*.` matches the field anywhere in the instance.

`values` and `range` set the number (a series becomes constant); `scale` multiplies it (a
series element-wise; whole-number fields are rounded).

A path `solve.FIELD` sweeps a solve option instead of an instance field (SWEEPABLE_SOLVE:
the move budget of a re-plan, `now`, the time limit, the gap, the seed), with `values` or
`range`; `null` in `values` means "no cap" where the option allows it:

      - path: solve.max_moves
        values: [0, 1, 2, 4, 8, null]

This module reads and expands specs; it never solves anything.
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import json
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from allocator.errors import InputError, Problem
from allocator.io import read_yaml
from allocator.options import SolveOptions
from allocator.schema import Instance

MAX_SCENARIOS = 100_000
ID_LENGTH = 12  # hex digits of the sha256 kept as scenario id

# --------------------------------------------------------------------------- spec schema


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Range(_Strict):
    """Numbers start, start+step, ... up to and including stop (within 1e-9 of a step)."""

    start: float = Field(allow_inf_nan=False)
    stop: float = Field(allow_inf_nan=False)
    step: float = Field(gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.stop < self.start:
            raise ValueError(f"stop ({self.stop}) is below start ({self.start})")
        if (self.stop - self.start) / self.step + 1 > MAX_SCENARIOS:
            raise ValueError(f"more than {MAX_SCENARIOS} values")
        return self

    def numbers(self) -> list[float]:
        n = int(math.floor((self.stop - self.start) / self.step + 1e-9)) + 1
        return [_clean(self.start + i * self.step) for i in range(n)]


Number = float | int
Value = Number | list[Number]

SOLVE_PREFIX = "solve."

#: Solve options a parameter may sweep (path ``solve.<name>``): kind, lowest value, whether
#: the upper end is open (``mip_gap`` < 1), and whether null (no cap / no limit) is allowed.
#: The others (threads, objective, strategy, previous, ...) are set once under ``solve:``.
SWEEPABLE_SOLVE: dict[str, tuple[type, float, float | None, bool]] = {
    "max_moves": (int, 0, None, True),
    "max_moved_gpus": (int, 0, None, True),
    "now": (int, 0, None, False),
    "seed": (int, 0, None, False),
    "time_limit_s": (float, 0, None, True),
    "mip_gap": (float, 0, 1, False),
}


def solve_option(path: str) -> str | None:
    """The solve option a parameter path names (``solve.max_moves`` -> max_moves), else None."""
    path = path.strip()
    return path[len(SOLVE_PREFIX):] if path.startswith(SOLVE_PREFIX) else None


def _solve_value(name: str, value: Any) -> Any:
    """A swept value of solve option ``name`` in its own type (2.0 -> 2), or ValueError."""
    kind, low, below, nullable = SWEEPABLE_SOLVE[name]
    if value is None:
        if nullable:
            return None
        raise ValueError(f"solve.{name}: value None (null) is not allowed; {name} needs a number")
    if isinstance(value, list) or not _is_number(value):
        raise ValueError(f"solve.{name}: value {value!r} is not one number")
    if kind is int:
        if float(value) != int(value):
            raise ValueError(f"solve.{name}: value {value!r} is not a whole number")
        value = int(value)
    else:
        value = float(value)
    if value < low or (below is not None and value >= below):
        span = f"in [{low:g}, {below:g})" if below is not None else f">= {low:g}"
        extra = " or null (no cap)" if nullable else ""
        raise ValueError(f"solve.{name}: value {value!r} is not {span}{extra}")
    return value


def _check_solve_parameter(name: str, op: str, points: list[Any]) -> None:
    sweepable = ", ".join(SWEEPABLE_SOLVE)
    if name not in SolveOptions.__dataclass_fields__:
        raise ValueError(f"solve.{name} is not a solve option (sweepable: {sweepable})")
    if name not in SWEEPABLE_SOLVE:
        raise ValueError(f"solve.{name} cannot be swept (sweepable: {sweepable}); set it once "
                         "under solve:")
    if op == "scale":
        raise ValueError(f"solve.{name}: a solve option takes values or range, not scale")
    for v in points:
        _solve_value(name, v)


class Parameter(_Strict):
    """One swept parameter: a path into the instance and the numbers it takes."""

    path: str = Field(min_length=1)
    name: str | None = Field(None, description="column name in the results (default: the path)")
    values: list[Value | None] | None = None
    range: Range | None = None
    scale: list[Number] | Range | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Parameter:
        given = [k for k in ("values", "range", "scale") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of values, range or scale"
                + (f" (got {', '.join(given)})" if given else "")
            )
        for v in self.points():
            for x in v if isinstance(v, list) else [v]:
                if isinstance(x, float) and not math.isfinite(x):
                    raise ValueError(f"value {x} is not a finite number")
        if not self.points():
            raise ValueError("the list of values is empty")
        option = self.solve_option
        if option is not None:
            _check_solve_parameter(option, self.op, self.points())
        elif any(v is None for v in self.points()):
            raise ValueError(f"{self.path}: null is a value of solve options only (e.g. "
                             "solve.max_moves: null, no cap); an instance field takes numbers")
        return self

    @property
    def solve_option(self) -> str | None:
        """The solve option this parameter sweeps (path solve.NAME), None for an instance path."""
        return solve_option(self.path)

    @property
    def op(self) -> Literal["set", "scale"]:
        return "scale" if self.scale is not None else "set"

    @property
    def column(self) -> str:
        return self.name or self.path

    def points(self) -> list[Any]:
        """The numbers (or series) this parameter takes, in order."""
        src = self.values if self.values is not None else self.range if self.range is not None else self.scale
        if isinstance(src, Range):
            return src.numbers()
        return list(src or [])


class SweepSpec(_Strict):
    """A sweep: parameters, how to combine them, and the solve options of every scenario."""

    name: str = "sweep"
    description: str = ""
    mode: Literal["grid", "zip", "sample"] = "grid"
    samples: int | None = Field(None, gt=0, le=MAX_SCENARIOS)
    seed: int = 0
    parameters: list[Parameter] = Field(min_length=1)
    solve: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> SweepSpec:
        cols = [p.column for p in self.parameters]
        dup = sorted({c for c in cols if cols.count(c) > 1})
        if dup:
            raise ValueError(f"parameter {dup[0]!r} appears more than once; give each a distinct name")
        both = [p.solve_option for p in self.parameters if p.solve_option in self.solve]
        if both:
            raise ValueError(f"solve.{both[0]} is both swept (parameters) and set under solve: "
                             f"(value {self.solve[both[0]]!r}); give it in one place")
        if self.mode == "sample" and self.samples is None:
            raise ValueError("mode sample needs 'samples: N'")
        if self.mode != "sample" and self.samples is not None:
            raise ValueError(f"'samples' is only used with mode sample (mode is {self.mode})")
        if self.mode == "zip":
            lengths = {p.column: len(p.points()) for p in self.parameters}
            if len(set(lengths.values())) > 1:
                shown = ", ".join(f"{k}: {v}" for k, v in lengths.items())
                raise ValueError(f"mode zip needs parameters of equal length ({shown})")
        if self.mode == "grid" and math.prod(len(p.points()) for p in self.parameters) > MAX_SCENARIOS:
            raise ValueError(f"the grid has more than {MAX_SCENARIOS} scenarios; use mode sample")
        return self

    def solve_options(self, base: SolveOptions | None = None) -> SolveOptions:
        """The solve options of every scenario: ``base`` updated by the spec's ``solve:``."""
        opts = base or SolveOptions()
        return opts.with_(**_solve_changes(self.solve))


def _solve_changes(raw: dict[str, Any]) -> dict[str, Any]:
    """The spec's ``solve:`` mapping checked against SolveOptions (names and types)."""
    known = set(SolveOptions.__dataclass_fields__)
    for k in raw:
        if k not in known:
            raise ValueError(f"solve.{k}: unknown solve option (known: {', '.join(sorted(known))})")
    try:
        checked = TypeAdapter(SolveOptions).validate_python(dict(raw))
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err.get("loc", ()))
        raise ValueError(f"solve.{field}: {err.get('msg')} (got {err.get('input')!r})") from None
    return {k: getattr(checked, k) for k in raw}


# --------------------------------------------------------------------------- loading


class SpecError(InputError):
    """A sweep spec that cannot be used (CLI exit code 2)."""

    subject = "in the sweep spec"


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a sweep spec file; problems name the file, field and value."""
    path = Path(path)
    raw = read_yaml(path)
    return spec_from_dict(raw, source=str(path))


def spec_from_dict(raw: Any, *, source: str = "<spec>") -> SweepSpec:
    name = Path(source).name if source != "<spec>" else source
    if not isinstance(raw, dict):
        kind = type(raw).__name__ if raw is not None else "nothing"
        raise SpecError([Problem("sweep", name, f"top level is {kind}, expected a mapping",
                                  "start with 'parameters:'", rule="spec-top-level")], source=source)
    try:
        spec = SweepSpec.model_validate(raw)
        _solve_changes(spec.solve)
    except ValidationError as exc:
        raise SpecError(_spec_problems(exc, raw, name), source=source) from None
    except ValueError as exc:
        raise SpecError([Problem("sweep", name, str(exc), "fix the solve options", rule="spec-solve")],
                         source=source) from None
    return spec


def _spec_problems(exc: ValidationError, raw: dict, name: str) -> list[Problem]:
    out = []
    for err in exc.errors():
        loc = list(err.get("loc", ()))
        where = name
        if len(loc) >= 2 and loc[0] == "parameters" and isinstance(loc[1], int):
            params = raw.get("parameters") or []
            item = params[loc[1]] if loc[1] < len(params) else None
            label = item.get("path") if isinstance(item, dict) else None
            where = f"{name} parameters[{loc[1]}]" + (f" {label}" if label else "")
            loc = loc[2:]
        field = ".".join(str(p) for p in loc if not str(p).startswith(("function-", "list[", "float", "int")))
        value = err.get("input")
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        kind = err.get("type", "")
        if kind == "missing":
            msg = f"{field}: required field is missing"
        elif kind == "extra_forbidden":
            msg = f"{field}: unknown field (value {shown})"
        else:
            text = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            msg = f"{field + ': ' if field else ''}{text} (got {shown})"
        out.append(Problem("sweep", where, msg, _spec_hint(kind, field), rule=f"spec-{kind or 'invalid'}"))
    return out


def _spec_hint(kind: str, field: str) -> str:
    if kind == "extra_forbidden":
        return ("known fields: name, description, mode, samples, seed, parameters, solve; "
                "per parameter: path, name, values, range, scale")
    if field.startswith("mode"):
        return "use grid, zip or sample"
    return "fix the value"


# --------------------------------------------------------------------------- paths

Step = tuple[str, Any]  # ("attr", name) | ("item", index) | ("key", dict key)
_SEGMENT = re.compile(r"^(?P<name>[A-Za-z_*][A-Za-z0-9_]*)(?:\[(?P<sel>[^\[\]]*)\])?$")


class PathError(ValueError):
    """A path that is malformed or selects nothing (message names the segment)."""


def _split(path: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in path:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "." and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def _item_keys(item: Any) -> list[str]:
    """The names a list item answers to in a selector."""
    keys = []
    for attr in ("id", "gpu_type"):
        val = getattr(item, attr, None)
        if isinstance(val, str):
            keys.append(val)
    if hasattr(item, "a") and hasattr(item, "b"):
        keys += [f"{item.a}/{item.b}", f"{item.b}/{item.a}"]
    return keys


def resolve(inst: Instance, path: str) -> list[tuple[Step, ...]]:
    """Every concrete address (a tuple of steps from the instance) a path selects.

    Raises PathError naming the segment that is unknown or matches nothing.
    """
    path = path.strip()
    if path.startswith("gpu_pools[") or path.startswith("gpu_pools."):
        m = re.match(r"^gpu_pools\[(?P<site>[^/\]]+)/(?P<gpu>[^\]]+)\](?P<rest>.*)$", path)
        if not m:
            raise PathError("gpu_pools needs a selector [SITE/GPU_TYPE], e.g. gpu_pools[aws-use1/H100]")
        path = f"sites[{m['site']}].pools[{m['gpu']}]{m['rest']}"
    if path.startswith("*."):
        return _resolve_anywhere(inst, path[2:])
    segments = _split(path)
    addrs: list[tuple[tuple[Step, ...], Any]] = [((), inst)]
    for i, seg in enumerate(segments):
        m = _SEGMENT.match(seg)
        if not m:
            raise PathError(f"segment {seg!r} is not 'field' or 'field[selector]'")
        name, sel = m["name"], m["sel"]
        where = ".".join(segments[:i]) or "the instance"
        nxt = []
        misses: list[str] = []
        for addr, obj in addrs:
            if not isinstance(obj, BaseModel) or name not in type(obj).model_fields:
                fields = sorted(type(obj).model_fields) if isinstance(obj, BaseModel) else []
                misses.append(f"{where} has no field {name!r}"
                              + (f" (fields: {', '.join(fields)})" if fields else ""))
                continue
            val = getattr(obj, name)
            base = (*addr, ("attr", name))
            if sel is None:
                nxt.append((base, val))
                continue
            try:
                nxt.extend(_select(val, sel, base, f"{where}.{name}" if i else name))
            except PathError as exc:  # fine for one of several items a pattern selected
                misses.append(str(exc))
        if not nxt:
            raise PathError(misses[0] if len(set(misses)) == 1 or len(misses) == 1
                            else f"{misses[0]} (and in {len(misses) - 1} more of the selected items)")
        addrs = nxt
    out = []
    for addr, val in addrs:
        if isinstance(val, dict):  # a mapping leaf (e.g. demand) means every key
            out.extend((*addr, ("key", k)) for k in val)
        else:
            out.append(addr)
    return out


def _select(val: Any, sel: str, base: tuple[Step, ...], where: str):
    sel = sel.strip()
    found = []
    if isinstance(val, list):
        if sel.isdigit():
            if int(sel) < len(val):
                found.append(((*base, ("item", int(sel))), val[int(sel)]))
        else:
            for idx, item in enumerate(val):
                if any(fnmatch.fnmatchcase(k, sel) for k in _item_keys(item)):
                    found.append(((*base, ("item", idx)), item))
        names = [k for item in val for k in _item_keys(item)[:1]] or [str(i) for i in range(len(val))]
    elif isinstance(val, dict):
        for k in val:
            if fnmatch.fnmatchcase(str(k), sel):
                found.append(((*base, ("key", k)), val[k]))
        names = [str(k) for k in val]
    else:
        raise PathError(f"{where} is not a list or mapping; it takes no selector [{sel}]")
    if not found:
        shown = ", ".join(names[:8]) + (f" (+{len(names) - 8} more)" if len(names) > 8 else "")
        raise PathError(f"{where}[{sel}] matches nothing (have: {shown or 'none'})")
    return found


def _resolve_anywhere(inst: Instance, field: str) -> list[tuple[Step, ...]]:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", field):
        raise PathError(f"'*.' must be followed by one field name, got {field!r}")
    out: list[tuple[Step, ...]] = []

    def walk(obj: Any, addr: tuple[Step, ...]) -> None:
        if isinstance(obj, BaseModel):
            for name in type(obj).model_fields:
                val = getattr(obj, name)
                here = (*addr, ("attr", name))
                if name == field:
                    if isinstance(val, dict):
                        out.extend((*here, ("key", k)) for k in val)
                    else:
                        out.append(here)
                elif isinstance(val, (list, BaseModel)):
                    walk(val, here)
        elif isinstance(obj, list):
            for idx, item in enumerate(obj):
                if isinstance(item, BaseModel):
                    walk(item, (*addr, ("item", idx)))

    walk(inst, ())
    if not out:
        raise PathError(f"no entity of the instance has a field {field!r}")
    return out


def address_text(addr: tuple[Step, ...]) -> str:
    text = ""
    for kind, key in addr:
        if kind == "attr":
            text += ("." if text else "") + key
        else:
            text += f"[{key}]"
    return text


# --------------------------------------------------------------------------- applying


def _get(obj: Any, step: Step) -> Any:
    kind, key = step
    return getattr(obj, key) if kind == "attr" else obj[key]


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _new_value(current: Any, op: str, value: Any, whole: bool) -> Any:
    if op == "set":
        return value
    if current is None:
        raise ValueError("has no value to scale (it is unset)")
    if isinstance(current, list):
        return [_scaled(x, value, whole) for x in current]
    if not _is_number(current):
        raise ValueError(f"is not a number ({current!r})")
    return _scaled(current, value, whole)


def _scaled(x: Any, factor: float, whole: bool) -> Any:
    if not _is_number(x):
        raise ValueError(f"is not a number ({x!r})")
    y = x * factor
    return int(round(y)) if whole else _clean(y)


def _clean(x: float) -> float:
    """Round away binary noise (0.1*3 -> 0.3) so values and ids stay readable and stable."""
    return float(f"{x:.12g}")


def apply_overrides(inst: Instance, changes: list[tuple[tuple[Step, ...], str, Any]]) -> Instance:
    """A copy of ``inst`` with each (address, op, value) applied; the original is untouched.

    Raises ValueError naming the address when a value is refused by the schema.
    """
    new = inst.model_copy(deep=True)
    for addr, op, value in changes:
        *head, last = addr
        owner = new
        parent = None
        for step in head:
            parent = owner
            owner = _get(owner, step)
        kind, key = last
        try:
            if kind == "attr":
                current = getattr(owner, key)
                annot = type(owner).model_fields[key].annotation
                whole = annot is int or annot == (int | None)
                if op == "set" and current is not None and not _is_number(current) \
                        and not isinstance(current, list):
                    raise ValueError(f"is not a number ({current!r})")
                setattr(owner, key, _new_value(current, op, value, whole))
            elif kind == "key":
                current = owner[key]
                mapping = dict(owner)
                mapping[key] = _new_value(current, op, value, False)
                # re-assign the whole mapping so the schema validates the new value
                holder_step = head[-1]
                setattr(parent, holder_step[1], mapping)
            else:
                raise ValueError("selects a whole list item, not a number; add a field name")
        except ValidationError as exc:
            msg = exc.errors()[0].get("msg", "invalid") if exc.errors() else str(exc)
            raise ValueError(f"{address_text(addr)}: {msg} (value {value!r})") from None
        except ValueError as exc:
            raise ValueError(f"{address_text(addr)}: {exc}") from None
    return new


# --------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Scenario:
    """One point of a sweep: a value per parameter, and its stable id."""

    id: str
    values: dict[str, Any]  # parameter column -> number, series or factor
    overrides: tuple[tuple[str, str, Any], ...]  # (path, op, value)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "values": self.values,
                "overrides": [list(o) for o in self.overrides]}


def _canon(v: Any) -> Any:
    if isinstance(v, list):
        return [_canon(x) for x in v]
    if _is_number(v):
        return _clean(float(v))
    return v


def scenario_id(overrides: list[tuple[str, str, Any]] | tuple, solve: dict[str, Any]) -> str:
    """Short stable id: sha256 of the canonical JSON of the overrides and solve options.

    Independent of parameter order, of int vs float spelling (2 == 2.0) and of the process.
    """
    payload = {
        "overrides": sorted([path, op, _canon(val)] for path, op, val in overrides),
        "solve": {k: _canon(list(v) if isinstance(v, tuple) else v) for k, v in sorted(solve.items())},
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:ID_LENGTH]


def expand(spec: SweepSpec) -> list[Scenario]:
    """The scenarios of a spec, in a stable order (grid: last parameter fastest)."""
    points = [p.points() for p in spec.parameters]
    if spec.mode == "zip":
        combos = [list(c) for c in zip(*points, strict=True)]
    else:
        sizes = [len(p) for p in points]
        total = math.prod(sizes)
        if spec.mode == "grid":
            picks = range(total)
        else:  # sample distinct grid points, seeded; never materialise the whole grid
            picks = sorted(random.Random(spec.seed).sample(range(total), min(spec.samples or 0, total)))
        combos = []
        for flat in picks:
            combo, rest = [], flat
            for size, pts in zip(reversed(sizes), reversed(points), strict=True):
                combo.append(pts[rest % size])
                rest //= size
            combos.append(list(reversed(combo)))
    solve = _solve_changes(spec.solve)
    out, seen = [], set()
    for combo in combos:
        overrides = tuple((p.path, p.op, _canon(v)) for p, v in zip(spec.parameters, combo, strict=True))
        sid = scenario_id(overrides, solve)
        if sid in seen:
            continue
        seen.add(sid)
        out.append(Scenario(sid, {p.column: _canon(v) for p, v in zip(spec.parameters, combo, strict=True)},
                            overrides))
    return out


def scenario_instance(inst: Instance, scenario: Scenario,
                      resolved: dict[str, list[tuple[Step, ...]]] | None = None) -> Instance:
    """The instance of one scenario: a modified copy of ``inst``."""
    resolved = resolved or {}
    changes = []
    for path, op, value in scenario.overrides:
        if solve_option(path) is not None:
            continue  # a solve option: see scenario_options
        addrs = resolved.get(path)
        if addrs is None:
            addrs = resolve(inst, path)
        changes.extend((addr, op, copy.deepcopy(value)) for addr in addrs)
    return apply_overrides(inst, changes)


def scenario_options(base: SolveOptions, scenario: Scenario) -> SolveOptions:
    """The solve options of one scenario: ``base`` with the scenario's swept solve options."""
    changes = {name: _solve_value(name, value) for path, _op, value in scenario.overrides
               if (name := solve_option(path)) is not None}
    return base.with_(**changes) if changes else base


def check_spec(inst: Instance, spec: SweepSpec, *, source: str = "<spec>") -> list[Scenario]:
    """Resolve every path on the instance and apply every scenario once, so a bad path or a
    value the schema refuses is reported (all at once) before anything runs."""
    name = Path(source).name if source != "<spec>" else source
    problems: list[Problem] = []
    resolved: dict[str, list] = {}
    for i, p in enumerate(spec.parameters):
        if p.solve_option is not None:
            if p.solve_option == "now":  # now == periods: every period is history
                late = [v for v in p.points() if v is not None and v > inst.horizon.periods]
                if late:
                    problems.append(Problem(
                        "sweep", f"{name} parameters[{i}] {p.path}",
                        f"value {late[0]!r} is beyond the horizon ({inst.horizon.periods} periods)",
                        f"use a period from 0 to {inst.horizon.periods}", rule="spec-value"))
            continue
        try:
            resolved[p.path] = resolve(inst, p.path)
        except PathError as exc:
            problems.append(Problem("sweep", f"{name} parameters[{i}] {p.path}", str(exc),
                                    "fix the path (see docs/sweeps.md)", rule="spec-path"))
    fixed_now = spec.solve.get("now")
    if isinstance(fixed_now, int) and fixed_now > inst.horizon.periods:
        problems.append(Problem("sweep", f"{name} solve.now",
                                f"value {fixed_now!r} is beyond the horizon ({inst.horizon.periods} periods)",
                                f"use a period from 0 to {inst.horizon.periods}", rule="spec-value"))
    if problems:
        raise SpecError(problems, source=source)
    scenarios = expand(spec)
    bad: dict[str, Problem] = {}
    for sc in scenarios:
        for path, op, value in sc.overrides:
            if path in bad or solve_option(path) is not None:
                continue
            try:
                apply_overrides(inst, [(a, op, value) for a in resolved[path]])
            except ValueError as exc:
                bad[path] = Problem("sweep", f"{name} {path}", f"{op} {value!r}: {exc}",
                                    "use values the instance schema accepts", rule="spec-value")
    if bad:
        raise SpecError(list(bad.values()), source=source)
    return scenarios


def instance_fingerprint(inst: Instance) -> str:
    """sha256 of the instance's JSON: a sweep folder belongs to one instance."""
    return hashlib.sha256(inst.model_dump_json().encode()).hexdigest()[:16]
