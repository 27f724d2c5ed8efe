"""Figures of a schedule and of a sweep, drawn with matplotlib (Agg, no display needed).

Every builder takes the tidy frames of docs/schedule-format.md (and the summary dict) and
returns a ``Plot``: a matplotlib Figure with a stable id, a title and alt text, so the HTML
report and the PNG export show exactly the same picture. Builders return ``None`` when the
schedule has nothing to draw for them (an infeasible solve, no inference services).

Time runs along x: period t covers [start + t*H, start + (t+1)*H), drawn as steps over those
edges; without a horizon start the axis counts periods.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: the report never needs a display

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import StrMethodFormatter  # noqa: E402
from matplotlib.transforms import blended_transform_factory  # noqa: E402

from allocator.display import fixed  # noqa: E402
from allocator.display import usd as format_usd  # noqa: E402
from allocator.results import COST_TERMS  # noqa: E402

# Colours: GPU types and sites get fixed colours from their sorted order, so the same GPU
# type has the same colour in every figure of a report.
GPU_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
               "#17becf", "#bcbd22", "#7f7f7f")
SITE_PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
                "#ff9da7", "#9c755f", "#bab0ac")
RESERVED_COLOR = "#333333"
AVAILABLE_COLOR = "#000000"
CAP_COLOR = "#c0392b"
UNSERVED_COLOR = "#c0392b"
POWER_COLOR = "#7f8c8d"
NOISE_TOKENS_PER_S = 1e-6  # unserved tokens/s up to this are drawn as none

COST_LABELS = {
    "reserved_lease": "reserved lease",
    "power_lease": "power lease",
    "ondemand_lease": "on-demand lease",
    "energy": "energy",
    "egress": "egress",
    "site_extra": "site extra",
    "tardiness": "tardiness",
    "unserved": "unserved demand",
    "dropped_value": "dropped jobs' value",
    "carbon": "carbon",
}

STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.fonttype": "path",  # text as paths: renders the same without the fonts installed
    "svg.hashsalt": "allocator",  # stable ids: the same schedule gives the same file
}


@dataclass
class Plot:
    """One figure of the report: ``id`` is unique in the page (``fig-gantt``), ``name`` the
    PNG file stem, ``alt`` the text a screen reader (or a test) finds."""

    id: str
    name: str
    title: str
    alt: str
    figure: Figure
    section: str = ""
    caption: str = ""


def slug(text: str) -> str:
    """A lowercase id fragment made of letters, digits and dashes."""
    s = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")
    return s or "x"


def unique_slugs(items, make=slug) -> dict[str, str]:
    """Item -> a file-name-safe slug, distinct for distinct items: where two items give the
    same slug (``a b`` and ``a-b``, ``A`` and ``a``), each gets the first 8 hex digits of the
    sha256 of its own text appended, so no figure file overwrites another."""
    items = list(dict.fromkeys(str(i) for i in items))
    base = {i: make(i) for i in items}
    count: dict[str, int] = {}
    for b in base.values():
        count[b] = count.get(b, 0) + 1
    return {i: b if count[b] == 1 else f"{b}-{hashlib.sha256(i.encode()).hexdigest()[:8]}"
            for i, b in base.items()}


def gpu_colors(gpu_types) -> dict[str, str]:
    """GPU type -> colour, by sorted name (stable across figures and reports)."""
    return {g: GPU_PALETTE[i % len(GPU_PALETTE)] for i, g in enumerate(sorted(set(gpu_types)))}


def site_colors(sites) -> dict[str, str]:
    """Site -> colour, in the given order: SITE_PALETTE, then matplotlib's tab20 and tab20b
    colours, so up to 50 sites in one figure never share a colour."""
    order = list(dict.fromkeys(sites))
    palette = list(SITE_PALETTE)
    if len(order) > len(palette):
        extra = [matplotlib.colors.to_hex(c) for name in ("tab20", "tab20b")
                 for c in matplotlib.colormaps[name].colors]
        palette += [c for c in extra if c not in palette]
    return {s: palette[i % len(palette)] for i, s in enumerate(order)}


# ------------------------------------------------------------------------------ time axis


@dataclass(frozen=True)
class Timeline:
    """Maps periods to x positions: matplotlib date numbers when the start is known."""

    periods: int
    period_hours: float = 1.0
    start: datetime | None = None

    @classmethod
    def from_summary(cls, summary: dict[str, Any], frames: dict[str, pd.DataFrame],
                     instance=None) -> Timeline:
        """The horizon from the instance if given, else summary.json, else the frames."""
        if instance is not None:
            h = instance.horizon
            return cls(int(h.periods), float(h.period_hours), h.start)
        horizon = ((summary or {}).get("instance") or {}).get("horizon") or {}
        periods = horizon.get("periods")
        if periods is None:
            periods = _max_period(frames) + 1
        start = _parse_time(horizon.get("start"))
        return cls(max(int(periods), 1), float(horizon.get("period_hours") or 1.0), start)

    def x(self, period) -> np.ndarray:
        """x of the start of each period (array-like of period numbers, may be fractional)."""
        p = np.asarray(period, dtype=float)
        if self.start is None:
            return p
        return mdates.date2num(self.start) + p * self.period_hours / 24.0

    def edges(self) -> np.ndarray:
        return self.x(np.arange(self.periods + 1))

    def format(self, ax) -> None:
        lo, hi = self.edges()[[0, -1]]
        ax.set_xlim(lo, hi)
        if self.start is None:
            ax.set_xlabel("period")
            return
        locator = self._locator(ax)
        ax.xaxis.set_major_locator(locator)
        # days as "Aug 05", hours as "12:00" with the date at midnight: no offset text needed
        fmt = mdates.ConciseDateFormatter(
            locator, show_offset=False,
            formats=["%Y", "%b", "%b %d", "%H:%M", "%H:%M", "%S.%f"],
            zero_formats=["", "%Y", "%b %d", "%b %d", "%H:%M", "%H:%M"])
        ax.xaxis.set_major_formatter(fmt)
        ax.set_xlabel("time (UTC)")

    def _locator(self, ax):
        """Ticks on whole days (or hours for short horizons), as many as fit the axis."""
        width_in = ax.get_position().width * ax.figure.get_size_inches()[0]
        n = max(2, int(width_in / 0.9))  # one label per ~0.9 inch
        hours = self.periods * self.period_hours
        if hours > 48:
            return mdates.DayLocator(interval=max(1, math.ceil(hours / 24 / n)))
        step = next((h for h in (1, 2, 3, 4, 6, 12, 24) if hours / h <= n), 24)
        return mdates.HourLocator(interval=step)

    def label(self, period: int) -> str:
        if self.start is None:
            return f"period {period}"
        t = self.start + timedelta(hours=period * self.period_hours)
        return t.strftime("%Y-%m-%d %H:%M")


def _parse_time(value) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        t = value
    else:
        try:
            t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _max_period(frames: dict[str, pd.DataFrame]) -> int:
    best = 0
    for name, col in (("sites", "period"), ("site_gpus", "period"), ("unserved", "period"),
                      ("inference", "period"), ("training", "end_period")):
        df = frames.get(name)
        if df is not None and len(df) and col in df:
            v = int(pd.to_numeric(df[col]).max())
            best = max(best, v - 1 if col == "end_period" else v)
    return best


def _series(df: pd.DataFrame, value: str, periods: int) -> np.ndarray:
    """Sum ``value`` per period into a dense array of length ``periods`` (missing -> 0)."""
    out = np.zeros(periods)
    if df is None or not len(df):
        return out
    s = df.groupby("period")[value].sum()
    idx = s.index.to_numpy(dtype=int)
    ok = (idx >= 0) & (idx < periods)
    out[idx[ok]] = s.to_numpy(dtype=float)[ok]
    return out


MAX_LABELLED_BARS = 80  # Gantt bars carry "GPUs x type" text up to this many jobs
CHAR_IN = 0.068  # width of one character of 8-pt tick labels, inches (DejaVu Sans)


def _new_figure(width: float, height: float) -> Figure:
    with plt.rc_context(STYLE):
        return Figure(figsize=(width, height))


def _grid(fig: Figure, nrows: int, ncols: int, *, left: float = 0.75, right: float = 0.2,
          top: float = 0.75, bottom: float = 0.55, wspace: float = 0.75,
          hspace: float = 0.75):
    """Axes on a grid with margins and gaps in inches. A fixed layout costs no extra draw
    (the constrained layout engine draws every figure twice more) and suits figures whose
    label widths are known from the data."""
    W, H = fig.get_size_inches()
    axes = fig.subplots(nrows, ncols, squeeze=False)
    aw = max((W - left - right - (ncols - 1) * wspace) / ncols, 0.5)
    ah = max((H - top - bottom - (nrows - 1) * hspace) / nrows, 0.5)
    fig.subplots_adjust(left=left / W, right=1 - right / W, top=1 - top / H, bottom=bottom / H,
                        wspace=wspace / aw, hspace=hspace / ah)
    return axes


def _title(fig: Figure, text: str, **kw) -> None:
    H = fig.get_size_inches()[1]
    fig.text(0.08 / fig.get_size_inches()[0], 1 - 0.12 / H, text, ha="left", va="top",
             fontsize=11, **kw)


LEGEND_COLUMNS = 8
LEGEND_ROW_IN = 0.2  # inches per legend row


def _legend_extra(n_handles: int) -> float:
    """Inches a figure's top margin grows by for a legend of ``n_handles`` entries past its
    first row (rows of LEGEND_COLUMNS, so a long legend never runs into the panels)."""
    return LEGEND_ROW_IN * max(0, math.ceil(n_handles / LEGEND_COLUMNS) - 1)


def _top_legend(fig: Figure, handles, *, y_in: float = 0.42) -> None:
    """One legend for the whole figure, in rows under the title (never over the data), read
    left to right; the caller leaves ``_legend_extra`` more inches at the top."""
    H = fig.get_size_inches()[1]
    ncols = min(len(handles), LEGEND_COLUMNS)
    rows = math.ceil(len(handles) / max(ncols, 1))
    # matplotlib fills a legend column by column: order the handles so that rows read in order
    ordered = [handles[r * ncols + c] for c in range(ncols) for r in range(rows) if r * ncols + c < len(handles)]
    fig.legend(handles=ordered, loc="upper left", bbox_to_anchor=(0.01, 1 - y_in / H),
               ncols=ncols, frameon=False, handlelength=1.6, columnspacing=1.4)


def _nonempty(frames: dict[str, pd.DataFrame], name: str) -> pd.DataFrame | None:
    df = frames.get(name)
    return df if df is not None and len(df) else None


# ------------------------------------------------------------------------------- figures


def gantt(frames: dict[str, pd.DataFrame], timeline: Timeline, instance=None) -> Plot | None:
    """Training jobs per site, one row per job, bars coloured by GPU type."""
    train = _nonempty(frames, "training")
    if train is None:
        return None
    train = train.copy()
    site_order = _site_order(frames, train["site"])
    train["_site_rank"] = train["site"].map({s: i for i, s in enumerate(site_order)})
    train = train.sort_values(["_site_rank", "start_period", "job"], kind="stable")
    colors = gpu_colors(_gpu_types(frames))
    used = [g for g in colors if (train["gpu_type"] == g).any()]
    deadlines = _deadlines(instance)

    n = len(train)
    height = min(1.5 + 0.3 * n, 40.0)
    left = 0.25 + CHAR_IN * max(len(str(j)) for j in train["job"])
    right = 0.25 + 1.1 * CHAR_IN * max(len(s) for s in site_order)
    with plt.rc_context(STYLE):
        fig = _new_figure(11.0, height)
        ax = _grid(fig, 1, 1, left=left, right=right, top=0.8, bottom=0.6)[0][0]
        ys = np.arange(n)[::-1]  # first job on top
        starts = timeline.x(train["start_period"].to_numpy(dtype=float))
        ends = timeline.x(train["end_period"].to_numpy(dtype=float))
        span = timeline.edges()[-1] - timeline.edges()[0]
        for y, x0, x1, (_, row) in zip(ys, starts, ends, train.iterrows(), strict=True):
            c = colors[row["gpu_type"]]
            ax.barh(y, x1 - x0, left=x0, height=0.7, color=c, edgecolor="white", linewidth=0.5)
            text = f"{int(row['gpus']):,} × {row['gpu_type']}"
            if n > MAX_LABELLED_BARS:
                pass  # rows too thin for text: the table under the chart has the numbers
            elif (x1 - x0) / span > 0.14:
                ax.text((x0 + x1) / 2, y, text, ha="center", va="center", color="white",
                        fontsize=7.5)
            else:
                ax.text(x1 + span * 0.004, y, text, ha="left", va="center", fontsize=7.5)
            dl = deadlines.get(row["job"])
            if dl is not None:
                xd = timeline.x(dl)
                ax.plot([xd, xd], [y - 0.45, y + 0.45], color=CAP_COLOR, linewidth=1.5,
                        gid=f"deadline-{len(ax.lines)}", clip_on=False)
        ax.set_yticks(ys, [str(j) for j in train["job"]],
                      fontsize=8 if n <= MAX_LABELLED_BARS else max(3.0, 8 - n / 40))
        ax.set_ylim(-0.6, n - 0.4)
        # site bands: shaded alternately, named at the right
        trans = blended_transform_factory(ax.transAxes, ax.transData)
        ranks = train["_site_rank"].to_numpy()
        for k, site in enumerate(site_order):
            rows = ys[ranks == k]
            if not len(rows):
                continue
            lo, hi = rows.min() - 0.5, rows.max() + 0.5
            if k % 2 == 0:
                ax.axhspan(lo, hi, color="#f2f2f2", zorder=0)
            ax.axhline(lo, color="#bbbbbb", linewidth=0.6, zorder=0)
            ax.text(1.01, (lo + hi) / 2, site, transform=trans, ha="left", va="center",
                    fontweight="bold", fontsize=8.5, clip_on=False)
        timeline.format(ax)
        ax.grid(axis="x", color="#dddddd", linewidth=0.5)
        ax.set_axisbelow(True)
        handles = [Patch(color=colors[g], label=g) for g in used]
        if deadlines:
            handles.append(Line2D([], [], color=CAP_COLOR, label="deadline"))
        _title(fig, "Training jobs by site (colour: GPU type)")
        _top_legend(fig, handles, y_in=0.36)
    sites_used = ", ".join(site_order)
    alt = (f"Gantt chart of {n} training job{'s' if n != 1 else ''} at {sites_used}, "
           f"coloured by GPU type ({', '.join(used)})")
    return Plot("fig-gantt", "gantt", "Training jobs", alt, fig, section="training")


CHANGE_COLORS = {"kept": "#9e9e9e", "retimed": "#e69f00", "moved": "#d62728", "added": "#0072b2",
                 "removed": "#555555", "dropped": "#555555"}


def changes_figure(frames: dict[str, pd.DataFrame], timeline: Timeline) -> Plot | None:
    """Re-planning: each job's previous placement (thin grey bar) against the new one (thick,
    coloured by its change; moved jobs red), from changes.csv and the training table."""
    ch = _nonempty(frames, "changes")
    if ch is None:
        return None
    train = frames.get("training")
    dur = {} if train is None else dict(zip(train["job"], train["end_period"] - train["start_period"], strict=True))
    n = len(ch)
    left = 0.25 + CHAR_IN * max(len(str(j)) for j in ch["job"])
    with plt.rc_context(STYLE):
        fig = _new_figure(11.0, min(1.6 + 0.3 * n, 40.0))
        ax = _grid(fig, 1, 1, left=left, right=0.3, top=0.8, bottom=0.6)[0][0]
        ys = np.arange(n)[::-1]
        for y, (_, r) in zip(ys, ch.iterrows(), strict=True):
            d = float(dur.get(r["job"], 1))
            if pd.notna(r["from_start"]):
                x0 = timeline.x(float(r["from_start"]))
                ax.barh(y + 0.22, timeline.x(float(r["from_start"]) + d) - x0, left=x0, height=0.25,
                        color="#cccccc", edgecolor="#888888", linewidth=0.5)
            if pd.notna(r["to_start"]):
                x0 = timeline.x(float(r["to_start"]))
                ax.barh(y - 0.12, timeline.x(float(r["to_start"]) + d) - x0, left=x0, height=0.45,
                        color=CHANGE_COLORS.get(r["change"], "#333333"))
        ax.set_yticks(ys, [f"{j}" for j in ch["job"]], fontsize=8)
        ax.set_ylim(-0.6, n - 0.4)
        timeline.format(ax)
        ax.grid(axis="x", color="#dddddd", linewidth=0.5)
        handles = [Patch(color="#cccccc", label="previous plan")] + [
            Patch(color=CHANGE_COLORS[c], label=c) for c in ("kept", "retimed", "moved", "added")
            if (ch["change"] == c).any()]
        _title(fig, "Re-plan: previous (grey) and new placement of each job")
        _top_legend(fig, handles, y_in=0.36)
    moved = int((ch["change"] == "moved").sum())
    alt = f"Before/after Gantt chart of {n} jobs, {moved} moved (highlighted)"
    return Plot("fig-changes", "changes", "Changes against the previous plan", alt, fig, section="changes")


def site_figure(frames: dict[str, pd.DataFrame], timeline: Timeline, site: str,
                key: str | None = None) -> Plot | None:
    """One site: per GPU type, GPUs in use (training, inference) vs reserved vs available;
    then power MW vs its ceiling."""
    sg = _nonempty(frames, "site_gpus")
    st = _nonempty(frames, "sites")
    sg = sg[sg["site"] == site] if sg is not None else None
    st = st[st["site"] == site] if st is not None else None
    types = sorted(sg["gpu_type"].unique()) if sg is not None and len(sg) else []
    has_power = st is not None and len(st) > 0
    if not types and not has_power:
        return None
    colors = gpu_colors(_gpu_types(frames))
    T = timeline.periods
    edges = timeline.edges()
    panels = len(types) + (1 if has_power else 0)
    ncols = min(panels, 3)
    nrows = math.ceil(panels / ncols)
    # legend: training and inference swatches in each GPU type's colour, as the bars are
    handles = [Patch(color=colors[g], alpha=alpha, label=f"{g} {what}")
               for g in types for what, alpha in (("training", 0.9), ("inference", 0.4))]
    handles += [Line2D([], [], color=RESERVED_COLOR, linestyle="--", label="reserved"),
                Line2D([], [], color=AVAILABLE_COLOR, label="available")]
    if has_power:
        handles += [Patch(color=POWER_COLOR, alpha=0.8, label="power MW"),
                    Line2D([], [], color=CAP_COLOR, label="power ceiling")]
    extra = _legend_extra(len(handles))
    with plt.rc_context(STYLE):
        fig = _new_figure(3.7 * ncols + 0.4, 2.2 * nrows + 0.8 + 0.5 * (nrows - 1) + extra)
        axes = _grid(fig, nrows, ncols, top=0.95 + extra, left=0.7, hspace=0.85).ravel()
        for ax in axes[panels:]:
            ax.set_visible(False)
        axes = axes[:panels]
        for ax, g in zip(axes, types, strict=False):
            pool = sg[sg["gpu_type"] == g]
            training = _series(pool, "gpus_training", T)
            inference = _series(pool, "gpus_inference", T)
            reserved = _series(pool, "gpus_reserved", T)
            available = _series(pool, "gpus_available", T)
            ax.stairs(training, edges, fill=True, color=colors[g], alpha=0.9, label="training")
            ax.stairs(training + inference, edges, baseline=training, fill=True,
                      color=colors[g], alpha=0.4, label="inference")  # as in the legend
            ax.stairs(reserved, edges, baseline=None, color=RESERVED_COLOR, linestyle="--",
                      linewidth=1.2, label="reserved")
            ax.stairs(available, edges, baseline=None, color=AVAILABLE_COLOR, linewidth=1.2,
                      label="available")
            top = max(available.max(), (training + inference).max(), 1.0)
            ax.set_ylim(0, top * 1.08)
            ax.set_title(f"{g} GPUs", loc="left")
            ax.set_ylabel("GPUs")
            ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
            timeline.format(ax)
        if has_power:
            ax = axes[-1]
            power = _series(st, "power_mw", T)
            cap = _series(st, "power_cap_mw", T)
            ax.stairs(power, edges, fill=True, color=POWER_COLOR, alpha=0.8, label="power")
            ax.stairs(cap, edges, baseline=None, color=CAP_COLOR, linewidth=1.4, label="ceiling")
            ax.set_ylim(0, max(cap.max(), power.max(), 1e-3) * 1.08)
            ax.set_title("Power (IT × PUE)", loc="left")
            ax.set_ylabel("MW")
            timeline.format(ax)
        _title(fig, site, fontweight="bold")
        _top_legend(fig, handles, y_in=0.32)
    alt = (f"Site {site}: GPUs in use (training, inference) vs reserved vs available for "
           f"{', '.join(types) or 'no GPU type'}, and power MW vs ceiling over time")
    key = slug(site) if key is None else key  # unique among the schedule's sites
    return Plot(f"fig-site-{key}", f"site-{key}", f"Site {site}", alt, fig,
                section="sites")


def inference_figure(frames: dict[str, pd.DataFrame], timeline: Timeline) -> Plot | None:
    """Per user region: tokens/s served, stacked by site, against demand (all services)."""
    uns = _nonempty(frames, "unserved")
    inf = _nonempty(frames, "inference")
    if uns is None and inf is None:
        return None
    regions = list(dict.fromkeys(
        ([] if uns is None else list(uns["region"])) + ([] if inf is None else list(inf["region"]))
    ))
    sites = _site_order(frames, inf["site"] if inf is not None else [])
    served_sites = [s for s in sites if inf is not None and (inf["site"] == s).any()]
    colors = site_colors(sites)
    T = timeline.periods
    edges = timeline.edges()
    ncols = min(len(regions), 2)
    nrows = math.ceil(len(regions) / ncols)
    # unserved below a millionth of a token/s is solver noise (older schedules kept it)
    any_unserved = uns is not None and bool((uns["unserved_tokens_per_s"] > NOISE_TOKENS_PER_S).any())
    n_handles = len(served_sites) + any_unserved + (uns is not None)
    extra = _legend_extra(n_handles)
    # from three rows of panels on, the time axis is named once, under the bottom row
    hspace = 0.8 if nrows < 3 else 0.55
    with plt.rc_context(STYLE):
        fig = _new_figure(5.5 * ncols, 2.5 * nrows + 0.9 + extra - (0.25 * (nrows - 1) if nrows >= 3 else 0))
        axes = _grid(fig, nrows, ncols, top=1.0 + extra, hspace=hspace).ravel()
        for i, (ax, region) in enumerate(zip(axes, regions, strict=False)):
            base = np.zeros(T)
            if inf is not None:
                r = inf[inf["region"] == region]
                for s in served_sites:
                    v = _series(r[r["site"] == s], "tokens_per_s", T) / 1e6
                    if v.any():
                        ax.stairs(base + v, edges, baseline=base.copy(), fill=True,
                                  color=colors[s], alpha=0.85, label=f"served at {s}")
                        base = base + v
            top = base.max()
            if uns is not None:
                u = uns[uns["region"] == region]
                demand = _series(u, "demand_tokens_per_s", T) / 1e6
                missing = _series(u, "unserved_tokens_per_s", T)
                missing = np.where(missing > NOISE_TOKENS_PER_S, missing, 0.0) / 1e6
                if missing.any():
                    ax.stairs(base + missing, edges, baseline=base.copy(), fill=True,
                              facecolor="none", edgecolor=UNSERVED_COLOR, hatch="////",
                              linewidth=0, label="unserved")
                ax.stairs(demand, edges, baseline=None, color="black", linewidth=1.3,
                          label="demand")
                top = max(top, demand.max())
            ax.set_ylim(0, max(top, 1e-6) * 1.1)
            ax.set_title(region, loc="left")
            ax.set_ylabel("M tokens/s")
            timeline.format(ax)
            if nrows >= 3 and i + ncols < len(regions):  # a panel below shows the same axis
                ax.set_xlabel("")
        for ax in axes[len(regions):]:
            ax.set_visible(False)
        _title(fig, "Inference: tokens/s served (stacked by site) vs demand, all services")
        handles = [Patch(color=colors[s], alpha=0.85, label=s) for s in served_sites]
        if any_unserved:
            handles.append(Patch(facecolor="none", edgecolor=UNSERVED_COLOR, hatch="////",
                                 label="unserved"))
        if uns is not None:
            handles.append(Line2D([], [], color="black", label="demand"))
        _top_legend(fig, handles, y_in=0.36)
    alt = (f"Inference served vs demand per region ({', '.join(regions)}), "
           f"stacked by serving site over time")
    return Plot("fig-inference", "inference", "Inference served vs demand", alt, fig,
                section="inference")


def cost_figure(summary: dict[str, Any], frames: dict[str, pd.DataFrame]) -> Plot | None:
    """Cost breakdown: every cost term; beside it, lease and energy per site."""
    costs = {k: float(v) for k, v in ((summary or {}).get("costs") or {}).items()
             if v is not None}
    if not costs:
        return None
    terms = [t for t in COST_TERMS if t in costs] + [t for t in costs if t not in COST_TERMS]
    st = _nonempty(frames, "sites")
    per_site = None
    if st is not None and {"reserved_lease_usd", "ondemand_lease_usd", "energy_usd"} <= set(st):
        per_site = st.groupby("site", sort=False)[
            ["reserved_lease_usd", "ondemand_lease_usd", "energy_usd"]].sum()
    labels = [COST_LABELS.get(t, t) for t in terms]
    scale, unit = _money_scale(max([abs(costs[t]) for t in terms] + [1.0]))
    left = 0.25 + CHAR_IN * max(len(x) for x in labels)
    gap = 0.6 + (CHAR_IN * max(len(str(s)) for s in per_site.index) if per_site is not None
                 else 0)
    rows = max(len(terms), 0 if per_site is None else len(per_site))
    with plt.rc_context(STYLE):
        fig = _new_figure(11.0 if per_site is not None else 6.5, 0.3 * rows + 1.5)
        axes = _grid(fig, 1, 2 if per_site is not None else 1, left=left, top=0.35,
                     wspace=gap, right=0.3)[0]
        ax = axes[0]
        vals = np.array([costs[t] for t in terms]) / scale
        ys = np.arange(len(terms))[::-1]
        ax.barh(ys, vals, color=["#4e79a7" if v >= 0 else "#e15759" for v in vals])
        for y, v in zip(ys, vals, strict=True):
            ax.text(v, y, f" {fixed(v)}", va="center", ha="left", fontsize=7.5)
        ax.set_yticks(ys, labels)
        ax.set_xlabel(unit)
        ax.set_xlim(min(0, vals.min() * 1.1), max(vals.max(), 1e-9) * 1.22)
        total = sum(costs.values())
        ax.set_title(f"Cost by term (total {format_usd(total)})", loc="left")
        if per_site is not None:
            ax = axes[1]
            sscale, sunit = _money_scale(max(per_site.sum(axis=1).max(), 1.0))
            ys = np.arange(len(per_site))[::-1]
            left_v = np.zeros(len(per_site))
            for col, label, color in (("reserved_lease_usd", "reserved lease", "#4e79a7"),
                                      ("ondemand_lease_usd", "on-demand lease", "#f28e2b"),
                                      ("energy_usd", "energy", "#59a14f")):
                v = per_site[col].to_numpy(dtype=float) / sscale
                ax.barh(ys, v, left=left_v, color=color, label=label)
                left_v += v
            ax.set_yticks(ys, list(per_site.index))
            ax.set_xlabel(sunit)
            ax.set_title("Lease and energy by site", loc="left")
            ax.legend(loc="lower right", frameon=True, framealpha=0.9)
    alt = "Cost breakdown: " + ", ".join(
        f"{COST_LABELS.get(t, t)} {format_usd(costs[t])}" for t in terms)
    return Plot("fig-costs", "costs", "Cost breakdown", alt, fig, section="costs")


TERM_COLORS = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#edc948", "#76b7b2")


def leases_figure(frames: dict[str, pd.DataFrame]) -> Plot | None:
    """What is leased (leases.csv): a bar per site of the GPUs reserved, stacked by term,
    and beside it a bar per site of the power ceiling leased (MW). None without leases."""
    le = _nonempty(frames, "leases")
    if le is None or not {"site", "resource", "term", "size"} <= set(le):
        return None
    le = le.copy()
    le["size"] = pd.to_numeric(le["size"], errors="coerce").fillna(0.0)
    gpus = le[(le["resource"].astype(str) != "power") & (le["size"] > 0)]
    power = le[le["resource"].astype(str) == "power"]
    if not len(gpus) and not len(power):
        return None
    sites = list(dict.fromkeys(le["site"].astype(str)))
    terms = list(dict.fromkeys(gpus["term"].astype(str)))
    panels = [k for k, df in (("gpus", gpus), ("power", power)) if len(df)]
    left = 0.3 + CHAR_IN * max(len(s) for s in sites)
    with plt.rc_context(STYLE):
        fig = _new_figure(5.2 * len(panels) + 0.6, 0.3 * len(sites) + 1.7)
        axes = _grid(fig, 1, len(panels), left=left, top=0.6, wspace=left + 0.4, right=0.4)[0]
        ys = np.arange(len(sites))[::-1]
        for ax, kind in zip(axes, panels, strict=True):
            if kind == "gpus":
                table = gpus.pivot_table(index="site", columns="term", values="size",
                                         aggfunc="sum").reindex(sites).fillna(0.0)
                base = np.zeros(len(sites))
                for k, term in enumerate(terms):
                    v = table[term].to_numpy(dtype=float) if term in table else np.zeros(len(sites))
                    ax.barh(ys, v, left=base, color=TERM_COLORS[k % len(TERM_COLORS)],
                            label=f"term {term}")
                    base += v
                for y, v in zip(ys, base, strict=True):
                    if v > 0:
                        ax.text(v, y, f" {v:,.0f}", va="center", ha="left", fontsize=7.5)
                ax.set_xlim(0, max(base.max(), 1.0) * 1.2)
                ax.set_xlabel("GPUs reserved (all types)")
                ax.set_title("Reserved GPUs leased, by term", loc="left")
                ax.legend(loc="lower right", frameon=True, framealpha=0.9)
            else:
                mw = power.groupby("site", sort=False)["size"].sum().reindex(sites).fillna(0.0)
                v = mw.to_numpy(dtype=float)
                ax.barh(ys, v, color="#e15759")
                for y, x in zip(ys, v, strict=True):
                    if x > 0:
                        ax.text(x, y, f" {x:,.4g} MW", va="center", ha="left", fontsize=7.5)
                ax.set_xlim(0, max(v.max(), 1e-9) * 1.25)
                ax.set_xlabel("MW (IT x PUE)")
                ax.set_title("Power ceiling leased", loc="left")
            ax.set_yticks(ys, sites)
    parts = []
    for s in sites:
        g = gpus[gpus["site"].astype(str) == s]
        p = power[power["site"].astype(str) == s]
        bits = [f"{r.size:,.0f} {r.resource} GPUs on {r.term}" for r in g.itertuples()]
        bits += [f"{r.size:,.4g} MW of power" for r in p.itertuples()]
        if bits:
            parts.append(f"{s}: " + ", ".join(bits))
    alt = "Leases: " + ("; ".join(parts) if parts else "nothing leased")
    return Plot("fig-leases", "leases", "What to lease", alt, fig, section="leases")


def sweep_figure(results: pd.DataFrame, params: list[str], metrics: list[tuple[str, str]],
                 labels: dict[str, str] | None = None) -> Plot | None:
    """Each metric (rows) against each swept parameter (columns); with several parameters,
    one line per combination of the others (as points only past eight combinations)."""
    if results is None or not len(results) or not params or not metrics:
        return None
    ok = results
    if "status" in results:
        ok = results[results["status"].astype(str).isin(["optimal", "feasible"])]
    failed = results[~results.index.isin(ok.index)]
    nr, nc = len(metrics), len(params)
    with plt.rc_context(STYLE):
        fig = _new_figure(min(3.8 * nc + 1.0, 16.0), 2.1 * nr + 1.0)
        axes = _grid(fig, nr, nc, left=0.95, top=0.6, hspace=0.45, wspace=0.8)
        for j, p in enumerate(params):
            others = [q for q in params if q != p]
            groups = list(ok.groupby(others, sort=True, dropna=False)) if others else [((), ok)]
            for i, (col, label) in enumerate(metrics):
                ax = axes[i][j]
                n_lines = 0
                for key, g in groups:
                    g = g.sort_values(p)
                    x = pd.to_numeric(g[p], errors="coerce").to_numpy(dtype=float)
                    y = pd.to_numeric(g[col], errors="coerce").to_numpy(dtype=float)
                    y = np.where(np.abs(y) < 1e-9, 0.0, y)  # solver noise, not a signal
                    if not np.isfinite(y).any():
                        continue
                    key = key if isinstance(key, tuple) else (key,)
                    lab = ", ".join(f"{_short(q)}={_fmt_num(k)}"
                                    for q, k in zip(others, key, strict=True))
                    ax.plot(x, y, marker="o", markersize=3, label=lab or None,
                            linewidth=1.2 if len(groups) <= 8 else 0)
                    n_lines += 1
                if len(failed):
                    fx = pd.to_numeric(failed[p], errors="coerce")
                    ax.plot(fx, np.zeros(len(fx)), linestyle="none", marker="x", color=CAP_COLOR,
                            label="no schedule")
                if i == nr - 1:
                    ax.set_xlabel((labels or {}).get(p, _short(p)))
                else:
                    ax.tick_params(labelbottom=False)
                if j == 0:
                    ax.set_ylabel(label)
                ax.grid(color="#e5e5e5", linewidth=0.5)
                ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.6g}"))
                if i == 0 and (1 < n_lines <= 8 or len(failed)):
                    ax.legend(fontsize=6.5, frameon=False)
        _title(fig, f"Sweep: {len(results)} scenarios"
               + (f", {len(failed)} without a schedule (×)" if len(failed) else ""))
    alt = ("Sweep curves: " + ", ".join(lbl for _, lbl in metrics) + " against "
           + ", ".join(params))
    return Plot("fig-sweep", "sweep", "Sweep curves", alt, fig, section="sweep")


# --------------------------------------------------------------------------- the whole set


def schedule_plots(frames: dict[str, pd.DataFrame], summary: dict[str, Any],
                   instance=None) -> list[Plot]:
    """Every figure of one schedule, in report order (Gantt, sites, inference, costs)."""
    timeline = Timeline.from_summary(summary, frames, instance)
    plots: list[Plot | None] = [gantt(frames, timeline, instance)]
    sites = _site_order(frames, [])
    keys = unique_slugs(sites)
    plots.extend(site_figure(frames, timeline, s, keys[str(s)]) for s in sites)
    plots.append(inference_figure(frames, timeline))
    plots.append(cost_figure(summary, frames))
    plots.append(leases_figure(frames))  # sizing solves only
    plots.append(changes_figure(frames, timeline))  # re-plans only
    return [p for p in plots if p is not None]


def close(plots: list[Plot]) -> None:
    """Nothing to do for Figure objects made without pyplot; kept for symmetry."""
    for p in plots:
        p.figure.clear()


# ------------------------------------------------------------------------------- helpers


def _gpu_types(frames: dict[str, pd.DataFrame]) -> list[str]:
    """Every GPU type in the schedule, so each gets one colour across all figures."""
    out: list[str] = []
    for name in ("site_gpus", "training", "inference"):
        df = frames.get(name)
        if df is not None and len(df) and "gpu_type" in df:
            out.extend(df["gpu_type"].astype(str))
    return sorted(set(out))


def _site_order(frames: dict[str, pd.DataFrame], extra) -> list[str]:
    order: list[str] = []
    for name in ("sites", "site_gpus"):
        df = frames.get(name)
        if df is not None and len(df) and "site" in df:
            order.extend(df["site"].astype(str))
    order.extend(str(s) for s in extra)
    return list(dict.fromkeys(order))


def _deadlines(instance) -> dict[str, int]:
    if instance is None:
        return {}
    return {j.id: j.deadline_period for j in instance.jobs if j.deadline_period is not None}


def _money_scale(m: float) -> tuple[float, str]:
    if m >= 1e9:
        return 1e9, "$ billion"
    if m >= 1e6:
        return 1e6, "$ million"
    if m >= 1e3:
        return 1e3, "$ thousand"
    return 1.0, "$"


def _fmt_num(v) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return f"{f:g}"


def _short(path: str) -> str:
    """A parameter path shortened for an axis label: keep the last two parts."""
    parts = re.split(r"\.(?![^\[]*\])", str(path))
    return ".".join(parts[-2:]) if len(parts) > 2 else str(path)
