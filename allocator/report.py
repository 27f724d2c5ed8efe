"""The HTML report: one self-contained file a planner opens in a browser, offline.

    write_report(folder, out, instance=None, png_dir=None) -> Report

``folder`` is a schedule folder (docs/schedule-format.md) or a sweep folder (results.csv
and scenarios/). The page holds the key figures (status, total cost, gap, unserved demand,
emissions), a Gantt chart of training jobs, per site GPUs and power over time, inference
served vs demand, the cost breakdown and, for a sweep, the sweep curves. Figures are
matplotlib SVG inlined in the page; styles are inline; there is no script and a
Content-Security-Policy that forbids every network load, so the file opens anywhere as it
is. Every figure is a ``<figure id="fig-...">`` whose SVG carries the alt text as its
``aria-label`` and ``<title>``. ``png_dir`` receives the same figures as PNG for slides.
"""

from __future__ import annotations

import html
import io
import json
import numbers
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from allocator import figures
from allocator.display import fixed, rounds_to_zero
from allocator.display import number as _num
from allocator.display import qty as fmt_qty
from allocator.display import usd as format_usd
from allocator.errors import Problem
from allocator.figures import Plot
from allocator.results import (
    COST_TERMS,
    SCENARIO_DIR,
    SCENARIO_FOLDERS,
    ScheduleError,
    read_schedule,
)

# Sweep results: what is not a swept parameter. Anything else numeric that varies is one.
SWEEP_METRICS = (  # (column candidates, label)
    (("objective",), "objective ($)"),
    (("total_cost_usd", "total_cost"), "total cost ($)"),
    (("emissions_t", "emissions"), "emissions (tCO2)"),
    (("unserved_mtok",), "unserved (M tokens)"),
    (("gap",), "gap"),
)
_NOT_PARAMS = {
    "scenario", "scenario_id", "id", "status", "objective", "bound", "gap", "error", "message",
    "seconds", "build_s", "solve_s", "total_cost", "total_cost_usd", "emissions", "emissions_t",
    "unserved_mtok", "dropped_jobs", "solver", "worker", "attempt",
}
_NOT_PARAM_PREFIXES = ("util_", "power_mw_", "peak_", "cost_", "costs_", "costs.", "n_")


@dataclass
class Report:
    """What ``build_report`` made: the page, the figure ids in it, PNGs written."""

    html: str
    figure_ids: list[str] = field(default_factory=list)
    pngs: list[Path] = field(default_factory=list)
    kind: str = "schedule"  # or "sweep"
    plots: list[Plot] = field(default_factory=list, repr=False)


# ------------------------------------------------------------------------------ public API


def write_report(folder: str | Path, out: str | Path, *, instance=None,
                 png_dir: str | Path | None = None) -> Report:
    """Build the report of ``folder`` and write it to ``out`` (an .html file)."""
    rep = build_report(folder, instance=instance, png_dir=png_dir)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(rep.html, encoding="utf-8")
    tmp.replace(out)
    return rep


def build_report(folder: str | Path, *, instance=None,
                 png_dir: str | Path | None = None) -> Report:
    """The report of a schedule folder or a sweep folder, as an HTML string."""
    folder = Path(folder)
    if not folder.exists():
        raise _bad(folder, "no such folder",
                   "pass the folder written by 'allocator solve --out' or 'allocator sweep --out'")
    if not folder.is_dir():
        raise _bad(folder, "is a file, not a schedule folder",
                   "pass the folder written by 'allocator solve --out'")
    if is_sweep_folder(folder):
        return _sweep_report(folder, instance=instance, png_dir=png_dir)
    if not (folder / "summary.json").exists():
        raise _bad(folder, "holds no summary.json: not a schedule folder",
                   "pass the folder written by 'allocator solve --out' or 'allocator sweep --out'")
    frames, summary = load_schedule(folder)
    if is_scenario_folder(folder, summary):
        return _scenarios_report(folder, frames, summary, instance=instance, png_dir=png_dir)
    plots = figures.schedule_plots(frames, summary, instance)
    body = _schedule_sections(frames, summary, plots, instance)
    title = f"allocator report: {_instance_name(summary, instance, folder)}"
    page = _page(title, folder, body)
    return Report(page, [p.id for p in plots], _write_pngs(plots, png_dir), "schedule", plots)


def is_sweep_folder(folder: str | Path) -> bool:
    folder = Path(folder)
    return (folder / "results.csv").is_file() and (folder / "scenarios").is_dir()


def is_scenario_folder(folder: str | Path, summary: dict[str, Any] | None = None) -> bool:
    """A sizing schedule with demand scenarios: leases and scenarios tables at the top, one
    schedule folder per scenario in scenarios/ (docs/schedule-format.md)."""
    folder = Path(folder)
    if summary is None:
        try:
            summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return False
    files = summary.get("files") if isinstance(summary, dict) else None
    return (isinstance(files, dict) and files.get(SCENARIO_FOLDERS) == SCENARIO_DIR
            and (folder / SCENARIO_DIR).is_dir())


def load_schedule(folder: str | Path) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """Frames and summary of a schedule folder (read with the export contract's reader,
    which checks every table and column and names the file of any problem)."""
    sched = read_schedule(folder)
    return dict(sched.frames), dict(sched.summary)


def load_sweep(folder: str | Path) -> tuple[pd.DataFrame, list[str], dict[str, str]]:
    """The sweep's results table, its swept parameter columns and their axis labels.

    The parameters are those listed in the sweep's manifest (sweep.json) when it has one,
    else the columns that look like inputs (``sweep_parameters``); only those that vary are
    drawn. A parameter applied as a scale factor is labelled so."""
    folder = Path(folder)
    path = folder / "results.csv"
    try:
        results = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise _bad(path, f"cannot be read as CSV ({e})", "re-run the sweep") from None
    manifest = _read_manifest(folder / "sweep.json")
    listed = [p for p in manifest.get("parameters", []) if isinstance(p, dict)]
    if listed:
        params = [str(p.get("column")) for p in listed
                  if str(p.get("column")) in results.columns
                  and _varies_numerically(results[str(p.get("column"))])]
        ops = {str(p.get("column")): str(p.get("op", "set")) for p in listed}
    else:
        params, ops = sweep_parameters(results), {}
    labels = {p: figures._short(p) + (" (factor)" if ops.get(p) == "scale" else "")
              for p in params}
    return results, params, labels


def _read_manifest(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _bad(path, f"cannot be read as JSON ({e})", "re-run the sweep") from None
    return data if isinstance(data, dict) else {}


def _varies_numerically(col: pd.Series) -> bool:
    values = pd.to_numeric(col, errors="coerce")
    return bool(values.notna().any() and values.nunique(dropna=True) >= 2)


def sweep_parameters(results: pd.DataFrame) -> list[str]:
    """Columns of a sweep's results that are swept parameters: numeric, varying, and not an
    outcome (status, objective, cost terms, utilisation, timings...)."""
    outcome = set(_NOT_PARAMS) | set(COST_TERMS) | {f"{t}_usd" for t in COST_TERMS}
    params = []
    for col in results.columns:
        if col in outcome or str(col).startswith(_NOT_PARAM_PREFIXES):
            continue
        if _varies_numerically(results[col]):
            params.append(col)
    return params


# ------------------------------------------------------------------------- sweep reports


def _sweep_report(folder: Path, *, instance, png_dir) -> Report:
    results, params, labels = load_sweep(folder)
    metrics = []
    for candidates, label in SWEEP_METRICS:
        col = next((c for c in candidates if c in results.columns), None)
        if col is not None and pd.to_numeric(results[col], errors="coerce").notna().any():
            metrics.append((col, label))
    plot = figures.sweep_figure(results, params, metrics, labels)
    plots = [plot] if plot is not None else []
    parts = [_sweep_section(results, params, plot)]
    best = _best_scenario(folder, results)
    if best is not None:
        sid, sdir = best
        frames, summary = load_schedule(sdir)
        sizing = is_scenario_folder(sdir, summary)  # a sizing solve with demand scenarios
        splots = ([p for p in [figures.leases_figure(frames)] if p is not None] if sizing
                  else figures.schedule_plots(frames, summary, instance))
        for p in splots:  # keep ids unique and say whose they are
            p.caption = f"best scenario {sid}"
            if sizing:
                p.id = f"best-{p.id}"
        parts.append(f'<section id="best-scenario"><h2>Best scenario: {_e(sid)}</h2>'
                     f"<p>The scenario with the lowest objective among those with a schedule; "
                     f"its folder is <code>scenarios/{_e(sdir.name)}</code>.</p></section>")
        if sizing:
            summary = _expected_unserved(sdir, frames, summary)
            parts.append(_key_figures(summary, {}, "best-", expected=True))
            parts.append(_leases_section(frames, splots, "best-"))
            parts.append(_scenario_costs_section(sdir, frames, summary, "best-"))
        else:
            parts.append(_schedule_sections(frames, summary, splots, instance))
        plots += splots
    title = f"allocator sweep report: {folder.name}"
    page = _page(title, folder, "\n".join(parts))
    return Report(page, [p.id for p in plots], _write_pngs(plots, png_dir), "sweep", plots)


def _sweep_section(results: pd.DataFrame, params: list[str], plot: Plot | None) -> str:
    n = len(results)
    status = results["status"].astype(str).value_counts() if "status" in results else None
    counts = ", ".join(f"{v} {k}" for k, v in status.items()) if status is not None else ""
    out = ['<section id="sweep"><h2>Sweep</h2>',
           f"<p>{n} scenario{'s' if n != 1 else ''}"
           + (f" ({_e(counts)})" if counts else "")
           + (f"; swept: {', '.join(f'<code>{_e(p)}</code>' for p in params)}" if params
              else "; no parameter varies")
           + ".</p>"]
    if plot is not None:
        out.append(_figure_html(plot))
    cols = [c for c in (["scenario", "scenario_id"] + params
                        + ["status", "objective", "total_cost_usd", "total_cost", "gap",
                           "emissions_t", "unserved_mtok", "error"]) if c in results.columns]
    out.append(_details(f"All {n} scenarios", _table(results[cols], max_rows=500)))
    out.append("</section>")
    return "\n".join(out)


def _best_scenario(folder: Path, results: pd.DataFrame) -> tuple[str, Path] | None:
    if "objective" not in results or "status" not in results:
        return None
    ok = results[results["status"].astype(str).isin(["optimal", "feasible"])].copy()
    ok["_obj"] = pd.to_numeric(ok["objective"], errors="coerce")
    ok = ok.dropna(subset=["_obj"]).sort_values("_obj", kind="stable")
    id_cols = [c for c in ("scenario", "scenario_id", "id") if c in ok.columns]
    for _, row in ok.iterrows():
        for c in id_cols:
            sdir = folder / "scenarios" / str(row[c])
            if (sdir / "summary.json").is_file():
                return str(row[c]), sdir
    return None


# ----------------------------------------------------------------- sizing with scenarios


def _scenarios_report(folder: Path, frames, summary, *, instance, png_dir) -> Report:
    """The top folder of a sizing solve with scenarios: the expected cost, what to lease
    (shared by every scenario) and each scenario's cost; each scenario's schedule has its
    own report (its folder under scenarios/)."""
    plot = figures.leases_figure(frames)
    plots = [plot] if plot is not None else []
    summary = _expected_unserved(folder, frames, summary)
    parts = [_key_figures(summary, {}, "", expected=True),
             _leases_section(frames, plots),
             _scenario_costs_section(folder, frames, summary)]
    title = f"allocator report: {_instance_name(summary, instance, folder)}"
    page = _page(title, folder, "\n".join(p for p in parts if p))
    return Report(page, [p.id for p in plots], _write_pngs(plots, png_dir), "scenarios", plots)


def _expected_unserved(folder: Path, frames, summary) -> dict[str, Any]:
    """The summary with unserved_mtok as the probability-weighted sum of the scenarios' own
    (the top folder has no unserved table to compute it from); unchanged if one is missing."""
    sc = frames.get("scenarios")
    if sc is None or not len(sc):
        return summary
    total = 0.0
    for r in sc.itertuples(index=False):
        sub = _read_manifest(folder / SCENARIO_DIR / str(r.scenario) / "summary.json")
        v = _num(sub.get("unserved_mtok"))
        if v is None:
            return summary
        total += float(r.probability) * float(v)
    return dict(summary, unserved_mtok=total)


def _leases_section(frames, plots: list[Plot], prefix: str = "") -> str:
    """What to lease: leases.csv as a table and the bars per site (sizing solves only)."""
    le = frames.get("leases")
    if le is None or not len(le):
        return ""
    total = pd.to_numeric(le["cost_usd"], errors="coerce").sum()
    out = [f'<section id="{prefix}leases"><h2>Leases</h2>',
           "<p>The reserved blocks and power ceilings the solve decided (leases.csv): "
           "each is paid every hour of the horizon whether used; with scenarios they are "
           f"shared by every scenario. Lease cost over the horizon: {_e(format_usd(total))}.</p>"]
    out.extend(_figure_html(p) for p in plots if p.section == "leases")
    cols = [c for c in ("site", "resource", "term", "size", "unit", "cost_usd") if c in le.columns]
    out.append(_table(le[cols]))
    out.append("</section>")
    return "\n".join(out)


def _scenario_costs_section(folder: Path, frames, summary, prefix: str = "") -> str:
    """The scenarios table with each scenario's cost terms (from its own summary.json)."""
    sc = frames.get("scenarios")
    if sc is None or not len(sc):
        return ""
    rows = []
    terms: list[str] = []
    for r in sc.itertuples(index=False):
        sub = _read_manifest(folder / SCENARIO_DIR / str(r.scenario) / "summary.json")
        costs = sub.get("costs") or {}
        row = {"scenario": str(r.scenario), "probability": float(r.probability),
               "status": str(r.status), "total_cost_usd": _num(r.total_cost_usd),
               "unserved_mtok": _num(sub.get("unserved_mtok"))}
        for t in COST_TERMS:
            if t in costs and _num(costs[t]):
                row[f"{t}_usd"] = _num(costs[t])
                if t not in terms:
                    terms.append(t)
        rows.append(row)
    df = pd.DataFrame(rows)
    cols = ["scenario", "probability", "status", "total_cost_usd", "unserved_mtok"]
    cols += [f"{t}_usd" for t in COST_TERMS if t in terms]
    df = df.reindex(columns=cols)
    expected = summary.get("expected_cost_usd", summary.get("total_cost_usd"))
    out = [f'<section id="{prefix}scenarios"><h2>Scenarios</h2>',
           f"<p>{len(df)} demand scenario{'s' if len(df) != 1 else ''} over the same leases; "
           f"expected cost (probability-weighted) {_e(format_usd(_num(expected)))}. Each "
           f"scenario's schedule is in <code>{SCENARIO_DIR}/&lt;id&gt;/</code>, with its own "
           "instance; <code>allocator report</code> on that folder draws it.</p>",
           _table(df), "</section>"]
    return "\n".join(out)


# ---------------------------------------------------------------------- schedule sections


def _schedule_sections(frames, summary, plots: list[Plot], instance) -> str:
    by_section: dict[str, list[Plot]] = {}
    for p in plots:
        by_section.setdefault(p.section, []).append(p)
    prefix = "best-" if plots and plots[0].caption.startswith("best scenario") else ""
    if prefix:
        for p in plots:
            p.id = f"{prefix}{p.id}"
    out = [_key_figures(summary, frames, prefix)]
    has_schedule = str(summary.get("status", "")) in ("optimal", "feasible")
    if not has_schedule:
        out.append('<p class="note">No schedule to draw: the solve ended with status '
                   f"<b>{_e(summary.get('status', 'unknown'))}</b>.</p>")

    train = frames.get("training")
    out.append(f'<section id="{prefix}training"><h2>Training jobs</h2>')
    for p in by_section.get("training", []):
        out.append(_figure_html(p))
    if train is not None and len(train):
        cols = [c for c in ("job", "option", "site", "provider", "gpu_type", "gpus",
                            "start_time", "end_time", "start_period", "end_period", "hours",
                            "tardiness_h") if c in train.columns]
        out.append(_details(f"{len(train)} placed jobs", _table(train[cols])))
    elif has_schedule:
        out.append('<p class="note">No training job is placed.</p>')
    dropped = summary.get("dropped_jobs") or []
    if dropped:
        out.append(f"<p>Optional jobs not run: {', '.join(_e(j) for j in dropped)}.</p>")
    out.append("</section>")

    if by_section.get("sites"):
        out.append(f'<section id="{prefix}sites"><h2>Sites: GPUs and power</h2>'
                   "<p>Per GPU type: GPUs in use by training (dark) and inference (light) "
                   "against the reserved block (dashed) and the GPUs available (solid); "
                   "above the dashed line GPUs are leased on demand. Right: power drawn "
                   "(IT × PUE) against the site's ceiling.</p>")
        for p in by_section["sites"]:
            out.append(_figure_html(p))
        out.append("</section>")

    if by_section.get("inference"):
        out.append(f'<section id="{prefix}inference"><h2>Inference</h2>')
        for p in by_section["inference"]:
            out.append(_figure_html(p))
        out.append(_unserved_table(frames))
        out.append("</section>")

    if by_section.get("costs"):
        out.append(f'<section id="{prefix}costs"><h2>Costs</h2>')
        for p in by_section["costs"]:
            out.append(_figure_html(p))
        out.append(_cost_table(summary))
        out.append("</section>")
    out.append(_leases_section(frames, by_section.get("leases", []), prefix))
    out.append(_changes_section(frames, summary, by_section.get("changes", []), prefix))
    return "\n".join(out)


def _changes_section(frames, summary, plots: list[Plot], prefix: str) -> str:
    """Re-plans only: the change counts, the before/after Gantt and changes.csv."""
    ch = frames.get("changes")
    if ch is None or not len(ch):
        return ""
    counts = summary.get("changes") or {}
    text = ", ".join(f"{int(v)} {k}" for k, v in counts.items()
                     if k in ("kept", "moved", "retimed", "added", "removed", "dropped") and v)
    out = [f'<section id="{prefix}changes"><h2>Changes against the previous plan</h2>',
           f"<p>{_e(text)}; migration cost {_e(fmt_qty((summary.get('costs') or {}).get('migration', 0.0)))} $.</p>"]
    out.extend(_figure_html(p) for p in plots)
    out.append(_details(f"{len(ch)} jobs", _table(ch)))
    out.append("</section>")
    return "\n".join(out)


def _key_figures(summary: dict[str, Any], frames, prefix: str, expected: bool = False) -> str:
    status = str(summary.get("status", "unknown"))
    costs = summary.get("costs") or {}
    total = summary.get("expected_cost_usd") if expected else None
    if total is None:
        total = summary.get("total_cost_usd")
    if total is None and costs:
        total = sum(float(v) for v in costs.values() if v is not None)
    gap = summary.get("gap")
    gap_text = "n/a" if gap is None else ("0 %" if rounds_to_zero(100 * float(gap), 6)
                                          else f"{100 * float(gap):.3g} %")
    unserved = summary.get("unserved_mtok")
    emissions = summary.get("emissions_t")
    train = frames.get("training")
    items = [
        ("status", status, f"status status-{_e(status)}"),
        ("expected cost" if expected else "total cost", format_usd(_num(total)), ""),
        ("gap", gap_text, ""),
        ("unserved demand", "n/a" if unserved is None else f"{fmt_qty(unserved)} M tokens", ""),
        ("emissions", "n/a" if emissions is None else f"{fmt_qty(emissions)} tCO2", ""),
        ("objective", _fmt_objective(summary), ""),
        ("best bound", _fmt_objective(summary, "bound"), ""),
    ]
    if not expected:
        items.append(("jobs placed", str(0 if train is None else len(train)), ""))
    cells = "".join(
        f'<div class="kf {cls}" data-key="{_e(k)}"><div class="k">{_e(k)}</div>'
        f'<div class="v">{_e(v)}</div></div>'
        for k, v, cls in items
    )
    extra = []
    solver = summary.get("solver")
    if solver:
        extra.append(f"solver {_e(solver)}")
    for key, label in (("build_s", "build"), ("solve_s", "solve")):
        if summary.get(key) is not None:
            extra.append(f"{label} {float(summary[key]):.2f} s")
    opts = summary.get("options") or {}
    if isinstance(opts, dict) and opts.get("objective"):
        extra.append(f"objective mode {_e(opts['objective'])}")
    explanation = summary.get("explanation") or []
    if isinstance(explanation, str):
        explanation = [explanation]
    expl = ""
    if explanation:
        expl = ('<div class="explanation"><h3>What cannot be met</h3><ul>'
                + "".join(f"<li>{_e(x)}</li>" for x in explanation) + "</ul></div>")
    return (f'<section id="{prefix}key-figures"><h2>Key figures</h2>'
            f'<div class="kfs">{cells}</div>'
            + (f'<p class="meta">{" · ".join(extra)}</p>' if extra else "")
            + expl + "</section>")


def _cost_table(summary: dict[str, Any]) -> str:
    costs = summary.get("costs") or {}
    rows = [(figures.COST_LABELS.get(t, t), costs[t]) for t in COST_TERMS if t in costs]
    rows += [(t, v) for t, v in costs.items() if t not in COST_TERMS]
    total = sum(float(v) for _, v in rows if v is not None)
    df = pd.DataFrame({"term": [r[0] for r in rows] + ["total"],
                       "usd": [_num(r[1]) for r in rows] + [total]})
    df["share"] = [(("0 %" if rounds_to_zero(100 * v / total, 1) else f"{100 * v / total:.1f} %")
                    if total and v is not None else "") for v in df["usd"]]
    df["usd"] = [f"${fixed(v)}" if v is not None else "n/a" for v in df["usd"]]
    return _table(df)


def _unserved_table(frames) -> str:
    uns = frames.get("unserved")
    if uns is None or not len(uns):
        return ""
    g = uns.groupby(["service", "region"], sort=False)[
        ["demand_tokens_per_s", "unserved_tokens_per_s"]].agg(["mean", "max"])
    g.columns = ["mean demand tok/s", "peak demand tok/s", "mean unserved tok/s",
                 "peak unserved tok/s"]
    g = g.reset_index()
    served = 1 - uns.groupby(["service", "region"], sort=False)["unserved_tokens_per_s"].sum() / \
        uns.groupby(["service", "region"], sort=False)["demand_tokens_per_s"].sum().where(
            lambda s: s > 0)
    g["served share"] = [f"{100 * v:.2f} %" if pd.notna(v) else "n/a" for v in served.to_numpy()]
    return _details("Demand and unserved demand per service and region", _table(g))


# ------------------------------------------------------------------------------- HTML


CSS = """
:root { --fg:#1d2430; --muted:#5b6472; --line:#d9dde3; --bg:#ffffff; --panel:#f6f7f9; }
* { box-sizing: border-box; }
body { font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--fg); background: var(--bg); margin: 0; }
header { padding: 18px 28px 10px; border-bottom: 1px solid var(--line); }
header h1 { font-size: 20px; margin: 0 0 4px; }
header p { margin: 0; color: var(--muted); font-size: 12.5px; }
nav { padding: 8px 28px; font-size: 13px; border-bottom: 1px solid var(--line); }
nav a { margin-right: 14px; color: #2a5db0; text-decoration: none; }
main { padding: 6px 28px 40px; max-width: 1280px; }
h2 { font-size: 17px; margin: 26px 0 10px; border-bottom: 1px solid var(--line);
     padding-bottom: 4px; }
h3 { font-size: 14px; margin: 10px 0 6px; }
.kfs { display: flex; flex-wrap: wrap; gap: 10px; }
.kf { background: var(--panel); border: 1px solid var(--line); border-radius: 6px;
      padding: 8px 14px; min-width: 140px; }
.kf .k { font-size: 11.5px; color: var(--muted); text-transform: uppercase;
         letter-spacing: .04em; }
.kf .v { font-size: 19px; font-weight: 600; }
.status-optimal .v { color: #1e7b34; } .status-feasible .v { color: #9a6700; }
.status-infeasible .v, .status-error .v, .status-no_solution .v, .status-unbounded .v
  { color: #b42318; }
.meta, .note { color: var(--muted); font-size: 12.5px; }
.explanation { background: #fdf2f2; border: 1px solid #f3c7c7; border-radius: 6px;
               padding: 6px 14px; margin-top: 10px; }
figure { margin: 12px 0 18px; }
figure .svg svg { max-width: 100%; height: auto; display: block; }
figcaption { color: var(--muted); font-size: 12.5px; margin-top: 4px; }
table { border-collapse: collapse; font-size: 12.5px; margin: 6px 0; }
th, td { border-bottom: 1px solid var(--line); padding: 3px 10px; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
th { background: var(--panel); }
details { margin: 8px 0; } summary { cursor: pointer; color: #2a5db0; }
code { background: var(--panel); padding: 0 3px; border-radius: 3px; }
"""

# The page may load nothing from anywhere: styles are inline, images are data: URIs.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:"


def _page(title: str, folder: Path, body: str) -> str:
    from allocator import __version__

    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    sections = re.findall(r'<section id="([^"]+)"><h2>([^<]+)</h2>', body)
    nav = "".join(f'<a href="#{_e(i)}">{_e(t)}</a>' for i, t in sections
                  if not i.startswith("best-"))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<header><h1>{_e(title)}</h1><p>from <code>{_e(folder.name)}</code> · "
        f"allocator {__version__} · generated {now}</p></header>\n"
        f"<nav>{nav}</nav>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def _figure_html(p: Plot) -> str:
    svg = figure_svg(p.figure, p.id, p.alt)
    cap = _e(p.title) + (f" ({_e(p.caption)})" if p.caption else "")
    return (f'<figure id="{_e(p.id)}" class="plot" data-name="{_e(p.name)}">'
            f'<div class="svg">{svg}</div><figcaption>{cap}</figcaption></figure>')


def figure_svg(fig, fig_id: str, alt: str) -> str:
    """A figure as an inline ``<svg>`` element: no XML prolog, no metadata, every internal
    id prefixed with ``fig_id`` so several figures can share one page, alt text as
    ``aria-label`` and ``<title>``."""
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    with plt.rc_context(figures.STYLE):
        fig.savefig(buf, format="svg", metadata={"Creator": None, "Date": None,
                                                 "Format": None, "Type": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    pre = re.sub(r"[^A-Za-z0-9_-]", "_", fig_id) + "_"
    svg = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{pre}{m.group(1)}"', svg)
    svg = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{pre}{m.group(1)}"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{pre}{m.group(1)})", svg)
    alt_attr = html.escape(alt, quote=True)
    svg = re.sub(r"<svg\b", f'<svg role="img" aria-label="{alt_attr}"', svg, count=1)
    svg = re.sub(r"(<svg\b[^>]*>)", lambda m: f"{m.group(1)}<title>{_e(alt)}</title>", svg,
                 count=1)
    return svg


def _table(df: pd.DataFrame, max_rows: int = 2000) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in df.columns)
    rows = []
    for rec in df.head(max_rows).itertuples(index=False):
        cells = []
        for v in rec:
            if isinstance(v, numbers.Number) and not isinstance(v, bool):
                cells.append(f'<td class="n">{_e(_fmt_cell(v))}</td>')
            else:
                cells.append(f"<td>{_e('' if _isna(v) else v)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = (f'<p class="note">{len(df) - max_rows} more rows not shown.</p>'
            if len(df) > max_rows else "")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{more}"


def _details(summary: str, inner: str, open_: bool = False) -> str:
    return (f"<details{' open' if open_ else ''}><summary>{_e(summary)}</summary>"
            f"{inner}</details>")


def _write_pngs(plots: list[Plot], png_dir) -> list[Path]:
    if png_dir is None:
        return []
    import matplotlib.pyplot as plt

    d = Path(png_dir)
    d.mkdir(parents=True, exist_ok=True)
    written = []
    for p in plots:
        name = ("best-" if p.id.startswith("best-") else "") + p.name
        path = d / f"{name}.png"
        with plt.rc_context(figures.STYLE):
            p.figure.savefig(path, format="png", dpi=150, facecolor="white")
        written.append(path)
    return written


# ------------------------------------------------------------------------------ helpers


def _bad(path: Path, message: str, fix: str) -> ScheduleError:
    return ScheduleError([Problem("file", str(path), message, fix, rule="report-input")],
                         source=str(path))


def _instance_name(summary, instance, folder: Path) -> str:
    if instance is not None:
        return instance.name
    inst = summary.get("instance") or {}
    return str(inst.get("name") or folder.name) if isinstance(inst, dict) else folder.name


def _fmt_objective(summary, key: str = "objective") -> str:
    v = _num(summary.get(key))
    if v is None:
        return "n/a"
    mode = ((summary.get("options") or {}).get("objective") or "cost")
    if str(mode).startswith("cost"):
        return format_usd(v)
    return "0" if rounds_to_zero(v, 6) else f"{v:,.6g}"


def _isna(v) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _fmt_cell(v) -> str:
    if _isna(v):
        return ""
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e15:
            return f"{int(v):,}"
        return fmt_qty(v)
    if isinstance(v, numbers.Integral):
        return f"{int(v):,}"
    return str(v)


def _e(x) -> str:
    return html.escape(str(x), quote=True)
