"""The HTML report and its figures, on schedules written by hand for data/demo.

The hand-made schedule places the demo's four jobs and serves the demand from the nearest
site, leaving part of the EU chat demand unserved in three periods; derived tables (site
GPUs, power, costs) are computed with the definitions of docs/schedule-format.md. It is a
plausible schedule, not an optimal one: the report draws what it is given.

Browser tests (marked ``browser``) open the page in headless Chromium; they skip, saying
why, where /usr/bin/chromium is missing.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from allocator import load_instance
from allocator.cli import main
from allocator.figures import Timeline, format_usd, gpu_colors
from allocator.report import build_report, sweep_parameters, write_report
from allocator.results import COST_TERMS, Result, Status, empty_frame, export_result
from allocator.schema import series_at

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo" / "instance.yaml"

# job -> (option index, site, start period); options as listed in data/demo/instance.yaml
PLACEMENT = {
    "pretrain-8b": (0, "colossus-1", 0),  # 1024 H100, 12 h -> periods 0..11
    "finetune-70b": (0, "colossus-1", 12),  # 512 H100, 8 h -> periods 12..19 (deadline 20)
    "eu-finetune": (0, "gcp-euw4", 0),  # 256 H100, 6 h -> periods 0..5
    "eval-sweep": (1, "aws-use1", 2),  # 128 H200, 6 h -> periods 2..7
}
# region -> (site, gpu type) serving it; every pair is within both services' SLO
SERVING = {
    "users-us-east": ("aws-use1", "H100"),
    "users-us-west": ("colossus-1", "H100"),
    "users-eu": ("gcp-euw4", "H100"),
}
SHORT_EU = {18: 0.8, 19: 0.8, 20: 0.8}  # period -> share of EU chat demand served


@pytest.fixture(scope="module")
def demo():
    return load_instance(DEMO)


def write_schedule(inst, folder: Path, status: str = "optimal") -> dict:
    """Write the hand-made demo schedule to ``folder``; return its summary."""
    H, T = inst.horizon.period_hours, inst.horizon.periods
    start = inst.horizon.start
    site = {s.id: s for s in inst.sites}
    power_kw = {g.id: g.power_kw for g in inst.gpu_types}
    train_gpus: dict[tuple[str, str, int], int] = {}
    rows = []
    for job in inst.jobs:
        k, sid, t0 = PLACEMENT[job.id]
        opt = job.options[k]
        d = math.ceil(opt.hours / H)
        for t in range(t0, t0 + d):
            key = (sid, opt.gpu_type, t)
            train_gpus[key] = train_gpus.get(key, 0) + opt.gpus
        rows.append({
            "job": job.id, "option": k, "site": sid, "provider": site[sid].provider,
            "gpu_type": opt.gpu_type, "gpus": opt.gpus, "start_period": t0,
            "end_period": t0 + d,
            "start_time": (start + pd.Timedelta(hours=t0 * H)).isoformat(),
            "end_time": (start + pd.Timedelta(hours=(t0 + d) * H)).isoformat(),
            "hours": opt.hours, "tardiness_h": 0.0, "site_extra_usd": 0.0,
            "tardiness_usd": 0.0, "egress_usd": 0.0,
        })
    training = pd.DataFrame(rows)

    inf_rows, gpu_rows, uns_rows = [], [], []
    inf_gpus: dict[tuple[str, str, int], int] = {}
    for svc in inst.services:
        for region, series in svc.demand.items():
            sid, g = SERVING[region]
            for t in range(T):
                demand = series_at(series, t)
                share = SHORT_EU.get(t, 1.0) if (svc.id, region) == ("chat-70b", "users-eu") else 1
                served = demand * share
                gpus = math.ceil(served / svc.tokens_per_s_per_gpu[g])
                inf_rows.append({"service": svc.id, "region": region, "site": sid,
                                 "gpu_type": g, "period": t, "tokens_per_s": served,
                                 "gpus": gpus})
                gpu_rows.append({"service": svc.id, "site": sid, "gpu_type": g, "period": t,
                                 "gpus": gpus})
                inf_gpus[(sid, g, t)] = inf_gpus.get((sid, g, t), 0) + gpus
                uns_rows.append({"service": svc.id, "region": region, "period": t,
                                 "demand_tokens_per_s": demand, "served_tokens_per_s": served,
                                 "unserved_tokens_per_s": demand - served})
    inference = pd.DataFrame(inf_rows)
    unserved = pd.DataFrame(uns_rows)

    sg_rows, site_rows = [], []
    costs = dict.fromkeys(COST_TERMS, 0.0)
    emissions = 0.0
    for s in inst.sites:
        for t in range(T):
            mw, ondemand_usd = 0.0, 0.0
            for p in s.pools:
                tr = train_gpus.get((s.id, p.gpu_type, t), 0)
                ig = inf_gpus.get((s.id, p.gpu_type, t), 0)
                use = tr + ig
                assert use <= p.available, (s.id, p.gpu_type, t, use)
                od = max(0, use - p.reserved)
                sg_rows.append({"site": s.id, "gpu_type": p.gpu_type, "period": t,
                                "gpus_training": tr, "gpus_inference": ig, "gpus_in_use": use,
                                "gpus_available": p.available, "gpus_reserved": p.reserved,
                                "gpus_ondemand": od})
                mw += use * power_kw[p.gpu_type] * s.pue / 1000
                ondemand_usd += od * p.ondemand_price_usd_per_gpu_h * H
            cap = series_at(s.power_cap_mw, t)
            assert mw <= cap + 1e-9, (s.id, t, mw, cap)
            mwh = mw * H
            e_usd = mwh * series_at(s.energy_price_usd_per_mwh, t)
            em = mwh * series_at(s.carbon_g_per_kwh, t) / 1000
            res_usd = sum(p.reserved * p.reserved_price_usd_per_gpu_h * H for p in s.pools)
            site_rows.append({"site": s.id, "provider": s.provider, "period": t,
                              "power_mw": mw, "power_cap_mw": cap, "energy_mwh": mwh,
                              "emissions_t": em, "energy_usd": e_usd,
                              "reserved_lease_usd": res_usd, "ondemand_lease_usd": ondemand_usd,
                              "cost_usd": res_usd + ondemand_usd + e_usd})
            costs["reserved_lease"] += res_usd
            costs["ondemand_lease"] += ondemand_usd
            costs["energy"] += e_usd
            emissions += em
    penalty = {v.id: v.unserved_usd_per_mtok for v in inst.services}
    unserved_mtok = float((unserved["unserved_tokens_per_s"] * 3600 * H / 1e6).sum())
    costs["unserved"] = float((unserved["unserved_tokens_per_s"] * 3600 * H / 1e6
                               * unserved["service"].map(penalty)).sum())
    frames = {
        "training": training, "inference": inference, "inference_gpus": pd.DataFrame(gpu_rows),
        "unserved": unserved, "site_gpus": pd.DataFrame(sg_rows), "sites": pd.DataFrame(site_rows),
        "links": empty_frame("links"),
    }
    total = sum(costs.values())
    result = Result(
        status=Status(status), objective=total, bound=total * 0.9995, gap=0.0005, costs=costs,
        emissions_t=emissions, build_s=0.4, solve_s=1.2, solver="HiGHS 1.16.0",
        options={"objective": "cost"}, frames=frames,
        summary={"instance": {"name": inst.name, "horizon": {
            "start": start.isoformat(), "periods": T, "period_hours": H}},
            "dropped_jobs": [], "unserved_mtok": unserved_mtok},
    )
    export_result(result, folder)
    summary = json.loads((folder / "summary.json").read_text())
    return summary


def write_small_schedule(folder: Path, objective: float = 1000.0) -> None:
    """One job of 8 H100 for periods 1..2 at one site over 4 hourly periods.

    Reserved 8 GPUs at $2/GPU-h: reserved_lease = 8 x 2 x 1 h x 4 periods = $64; no on-demand;
    power 8 x 1 kW x PUE 1.25 / 1000 = 0.01 MW in periods 1..2."""
    H, T = 1.0, 4
    training = pd.DataFrame([{
        "job": "tiny", "option": 0, "site": "s1", "provider": "aws", "gpu_type": "H100",
        "gpus": 8, "start_period": 1, "end_period": 3, "start_time": "2026-01-01T01:00:00+00:00",
        "end_time": "2026-01-01T03:00:00+00:00", "hours": 2.0, "tardiness_h": 0.0,
        "site_extra_usd": 0.0, "tardiness_usd": 0.0, "egress_usd": 0.0}])
    use = [0, 8, 8, 0]
    site_gpus = pd.DataFrame({"site": "s1", "gpu_type": "H100", "period": range(T),
                              "gpus_training": use, "gpus_inference": 0, "gpus_in_use": use,
                              "gpus_available": 16, "gpus_reserved": 8, "gpus_ondemand": 0})
    mw = [u * 1.0 * 1.25 / 1000 for u in use]
    sites = pd.DataFrame({"site": "s1", "provider": "aws", "period": range(T), "power_mw": mw,
                          "power_cap_mw": 0.02, "energy_mwh": mw, "emissions_t": 0.0,
                          "energy_usd": 0.0, "reserved_lease_usd": 16.0,
                          "ondemand_lease_usd": 0.0, "cost_usd": 16.0})
    frames = {"training": training, "site_gpus": site_gpus, "sites": sites}
    frames.update({t: empty_frame(t) for t in ("inference", "inference_gpus", "unserved",
                                               "links")})
    costs = dict.fromkeys(COST_TERMS, 0.0) | {"reserved_lease": 64.0}
    export_result(Result(status=Status.OPTIMAL, objective=objective, bound=objective, gap=0.0,
                         costs=costs, emissions_t=0.0, frames=frames,
                         summary={"instance": {"name": "tiny", "horizon": {
                             "start": "2026-01-01T00:00:00+00:00", "periods": T,
                             "period_hours": H}}}), folder)


@pytest.fixture(scope="module")
def schedule(demo, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sched") / "demo"
    summary = write_schedule(demo, folder)
    return folder, summary


@pytest.fixture(scope="module")
def report(schedule, demo, tmp_path_factory):
    """The report of the hand-made schedule, with the instance (deadlines)."""
    folder, _ = schedule
    out = tmp_path_factory.mktemp("rep") / "report.html"
    rep = write_report(folder, out, instance=demo)
    return out, rep, None


SCHEDULE_FIGURES = ["fig-gantt", "fig-site-colossus-1", "fig-site-aws-use1", "fig-site-gcp-euw4",
                    "fig-inference", "fig-costs"]


# ------------------------------------------------------------------------ page structure


class _Collector(HTMLParser):
    """Records every start tag with its attributes, and the figure each svg sits in."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.stack: list[str] = []
        self.svg_in_figure: dict[str, int] = {}
        self.svg_attrs: dict[str, dict] = {}
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "figure":
            self.stack.append(a.get("id", ""))
        if tag == "svg" and self.stack:
            self.svg_in_figure[self.stack[-1]] = self.svg_in_figure.get(self.stack[-1], 0) + 1
            self.svg_attrs.setdefault(self.stack[-1], a)
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        if tag == "figure" and self.stack:
            self.stack.pop()
        if tag == "style":
            self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)


def parse(text: str) -> _Collector:
    c = _Collector()
    c.feed(text)
    return c


def test_report_has_every_figure_with_alt_text(report):
    out, rep, _ = report
    text = out.read_text()
    page = parse(text)
    assert rep.figure_ids == SCHEDULE_FIGURES
    for fid in SCHEDULE_FIGURES:
        assert page.svg_in_figure.get(fid) == 1, fid
        svg = page.svg_attrs[fid]
        assert svg["role"] == "img" and len(svg["aria-label"]) > 40, fid
    assert "Gantt chart of 4 training jobs" in page.svg_attrs["fig-gantt"]["aria-label"]
    assert "colossus-1" in page.svg_attrs["fig-site-colossus-1"]["aria-label"]
    ids = [a["id"] for _, a in page.tags if "id" in a]
    assert len(ids) == len(set(ids)), "ids must be unique across inlined figures"


def test_key_figures_come_from_the_summary(report, schedule):
    out, _, _ = report
    _, summary = schedule
    text = out.read_text()
    block = re.search(r'<section id="key-figures">(.*?)</section>', text, re.S).group(1)
    values = dict(re.findall(r'data-key="([^"]+)"><div class="k">[^<]*</div>'
                             r'<div class="v">([^<]*)</div>', block))
    assert values["status"] == "optimal"
    assert values["total cost"] == format_usd(summary["total_cost_usd"])
    assert values["gap"] == "0.05 %"
    assert values["unserved demand"] == f"{summary['unserved_mtok']:,.4g} M tokens"
    assert values["emissions"] == f"{summary['emissions_t']:,.4g} tCO2"
    assert values["jobs placed"] == "4"
    # EU chat demand short by 20 % in periods 18-20: 3 periods x 0.2 x demand x 3600 s / 1e6
    assert summary["unserved_mtok"] > 0


def test_key_figure_quantities_read_plainly():
    from allocator.report import fmt_qty

    assert [fmt_qty(v) for v in (16219.7, 35469.94, 475.2, 12.186, 0.0)] == [
        "16,220", "35,470", "475.2", "12.19", "0"]


def test_no_external_resources(report):
    out, _, _ = report
    page = parse(out.read_text())
    external = re.compile(r"^\s*(https?:)?//", re.I)
    for tag, attrs in page.tags:
        for key in ("src", "href", "xlink:href", "data", "poster", "action", "srcset"):
            v = attrs.get(key)
            assert v is None or not external.match(v), (tag, key, v)
        if tag == "script":
            raise AssertionError("the report needs no script")
        if tag == "link":
            raise AssertionError(f"no <link> elements expected: {attrs}")
    css = "".join(page.styles)
    assert "@import" not in css and "url(" not in css
    csp = next(a["content"] for t, a in page.tags
               if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in csp


# -------------------------------------------------------------------- figure contents


@pytest.fixture(scope="module")
def drawn(schedule, report):
    """The report's own figure objects, with the frames they were drawn from."""
    from allocator.report import load_schedule

    frames, summary = load_schedule(schedule[0])
    return {p.id: p for p in report[1].plots}, frames, summary


def test_gantt_bars_match_the_training_table(drawn):
    plots, frames, summary = drawn
    ax = plots["fig-gantt"].figure.axes[0]
    bars = [b for c in ax.containers for b in c]  # the barh calls, not the site bands
    train = frames["training"]
    assert len(bars) == len(train)
    tl = Timeline.from_summary(summary, frames)
    colors = gpu_colors(pd.concat([train["gpu_type"], frames["site_gpus"]["gpu_type"]]))
    got = sorted((round(b.get_x(), 6), round(b.get_x() + b.get_width(), 6),
                  tuple(np.round(b.get_facecolor()[:3], 3))) for b in bars)
    from matplotlib.colors import to_rgb

    want = sorted((round(float(tl.x(r.start_period)), 6), round(float(tl.x(r.end_period)), 6),
                   tuple(np.round(to_rgb(colors[r.gpu_type]), 3)))
                  for r in train.itertuples())
    assert got == want
    # pretrain-8b starts at the horizon start and lasts 12 h = 0.5 day on the date axis
    x0 = float(tl.x(0))
    assert any(abs(b.get_x() - x0) < 1e-9 and abs(b.get_width() - 0.5) < 1e-9 for b in bars)


def test_gantt_marks_deadlines_when_given_the_instance(drawn, demo):
    plots, _, _ = drawn
    ax = plots["fig-gantt"].figure.axes[0]
    # pretrain-8b (deadline 24), finetune-70b (deadline 20): two deadline ticks
    ticks = [ln for ln in ax.lines if str(ln.get_gid()).startswith("deadline")]
    assert len(ticks) == sum(j.deadline_period is not None for j in demo.jobs) == 2
    tl = Timeline.from_summary({}, {}, demo)
    assert sorted(float(ln.get_xdata()[0]) for ln in ticks) == [tl.x(20), tl.x(24)]


def test_site_figure_draws_the_exported_series(drawn):
    plots, frames, _ = drawn
    fig = plots["fig-site-colossus-1"].figure
    assert len(fig.axes) == 3  # H100, H200, power
    steps = {(ax.get_title(loc="left"), p.get_label()): p.get_data() for ax in fig.axes
             for p in ax.patches if type(p).__name__ == "StepPatch"}
    sg = frames["site_gpus"]
    h100 = sg[(sg["site"] == "colossus-1") & (sg["gpu_type"] == "H100")].sort_values("period")
    assert np.array_equal(steps[("H100 GPUs", "training")].values, h100["gpus_training"])
    # 1024 GPUs of pretrain-8b in periods 0..11, then 512 of finetune-70b in 12..19, then 0
    assert list(h100["gpus_training"]) == [1024] * 12 + [512] * 8 + [0] * 4
    inf_top = steps[("H100 GPUs", "inference")]
    assert np.array_equal(inf_top.values, h100["gpus_training"] + h100["gpus_inference"])
    assert np.array_equal(inf_top.baseline, h100["gpus_training"])
    assert np.array_equal(steps[("H100 GPUs", "reserved")].values, [1536] * 24)
    st = frames["sites"]
    col = st[st["site"] == "colossus-1"].sort_values("period")
    assert np.allclose(steps[("Power (IT × PUE)", "power")].values, col["power_mw"])
    assert np.allclose(steps[("Power (IT × PUE)", "ceiling")].values, col["power_cap_mw"])


def test_inference_figure_stacks_served_and_shows_the_shortfall(drawn):
    plots, frames, _ = drawn
    fig = plots["fig-inference"].figure
    eu = next(ax for ax in fig.axes if ax.get_title(loc="left") == "users-eu")
    steps = {p.get_label(): p.get_data() for p in eu.patches if type(p).__name__ == "StepPatch"}
    inf = frames["inference"]
    served = inf[inf["region"] == "users-eu"].groupby("period")["tokens_per_s"].sum() / 1e6
    assert np.allclose(steps["served at gcp-euw4"].values, served.to_numpy())
    uns = frames["unserved"]
    demand = uns[uns["region"] == "users-eu"].groupby("period")["demand_tokens_per_s"].sum()
    assert np.allclose(steps["demand"].values, demand.to_numpy() / 1e6)
    short = steps["unserved"]
    gap = short.values - short.baseline
    assert set(np.flatnonzero(gap > 1e-12)) == set(SHORT_EU)
    # users-us-west is served in full: no unserved band there
    west = next(ax for ax in fig.axes if ax.get_title(loc="left") == "users-us-west")
    assert "unserved" not in {p.get_label() for p in west.patches}


def test_cost_figure_has_one_bar_per_term(drawn):
    plots, _, summary = drawn
    ax = plots["fig-costs"].figure.axes[0]
    bars = list(ax.containers[0])
    assert len(bars) == len(COST_TERMS)
    # the x axis is in $ thousand or million: compare shares, not units
    widths = np.array([b.get_width() for b in bars])
    want = np.array([summary["costs"][t] for t in COST_TERMS])
    assert np.allclose(widths / widths.sum(), want / want.sum())


# --------------------------------------------------------------- other kinds of folder


def test_infeasible_schedule_reports_the_explanation(tmp_path):
    folder = tmp_path / "infeasible"
    why = "pretrain-8b needs 1024 H100 for 12 h before period 10; the most any site offers is 512"
    export_result(Result(status=Status.INFEASIBLE, explanation=[why]), folder)
    rep = build_report(folder)
    assert rep.figure_ids == []
    assert "status-infeasible" in rep.html
    assert "the most any site offers is 512" in rep.html
    assert "No schedule to draw" in rep.html


def write_sweep(demo, folder: Path) -> pd.DataFrame:
    """A 3 x 2 grid sweep over the Colossus power cap and the carbon price, by hand."""
    rows = []
    for cap in (2.0, 3.0, 4.0):
        for carbon in (0.0, 50.0):
            sid = f"s{int(cap)}{int(carbon)}"
            infeasible = cap == 2.0 and carbon == 50.0
            obj = None if infeasible else 1e6 / cap + 100 * carbon
            rows.append({"scenario": sid, "sites[colossus-1].power_cap_mw": cap,
                         "carbon_price_usd_per_t": carbon,
                         "status": "infeasible" if infeasible else "optimal",
                         "objective": obj, "bound": obj, "gap": None if infeasible else 0.0,
                         "total_cost_usd": obj, "emissions_t": None if infeasible else 50 - cap,
                         "unserved_mtok": None if infeasible else 10 / cap,
                         "reserved_lease": 1000.0, "util_colossus-1": 0.5,
                         "power_mw_colossus-1": cap * 0.9, "seconds": 1.0 + cap,
                         "error": "infeasible: power" if infeasible else ""})
    results = pd.DataFrame(rows)
    (folder / "scenarios").mkdir(parents=True)
    results.to_csv(folder / "results.csv", index=False)
    write_small_schedule(folder / "scenarios" / "s40")  # the best: cap 4, carbon 0
    return results


def test_sweep_parameters_are_the_varying_inputs(demo, tmp_path):
    results = write_sweep(demo, tmp_path / "sweep")
    assert sweep_parameters(results) == ["sites[colossus-1].power_cap_mw",
                                         "carbon_price_usd_per_t"]


def test_sweep_manifest_names_the_parameters(demo, tmp_path):
    from allocator.report import load_sweep

    folder = tmp_path / "sweep"
    write_sweep(demo, folder)
    # the manifest lists one parameter, applied as a factor; the carbon column is then not
    # a parameter even though it varies, and a listed column that is absent is ignored
    (folder / "sweep.json").write_text(json.dumps({"parameters": [
        {"column": "sites[colossus-1].power_cap_mw", "path": "x", "op": "scale"},
        {"column": "not-in-results", "path": "y", "op": "set"}]}))
    _, params, labels = load_sweep(folder)
    assert params == ["sites[colossus-1].power_cap_mw"]
    assert labels == {"sites[colossus-1].power_cap_mw": "sites[colossus-1].power_cap_mw (factor)"}


def test_sweep_report_has_curves_and_the_best_schedule(demo, tmp_path):
    folder = tmp_path / "sweep"
    write_sweep(demo, folder)
    rep = write_report(folder, tmp_path / "sweep.html")
    assert rep.kind == "sweep"
    assert rep.figure_ids[0] == "fig-sweep"
    assert rep.figure_ids[1:] == ["best-fig-gantt", "best-fig-site-s1", "best-fig-costs"]
    assert "Best scenario: s40" in rep.html
    page = parse(rep.html)
    ids = [a["id"] for _, a in page.tags if "id" in a]
    assert len(ids) == len(set(ids))
    from allocator import figures

    res = pd.read_csv(folder / "results.csv")
    plot = figures.sweep_figure(res, sweep_parameters(res), [("objective", "objective")])
    ax = plot.figure.axes[0]  # objective vs power cap: one line per carbon price
    lines = [ln for ln in ax.lines if ln.get_linestyle() != "None"]
    by_label = {ln.get_label(): ln.get_xydata() for ln in lines}
    assert np.allclose(by_label["carbon_price_usd_per_t=0"],
                       [[2, 5e5], [3, 1e6 / 3], [4, 2.5e5]])
    # the infeasible scenario (cap 2, carbon 50) has no point on the carbon=50 line
    assert np.allclose(by_label["carbon_price_usd_per_t=50"][:, 0], [3, 4])


# ------------------------------------------------------------------------------- CLI


def test_cli_writes_the_report_and_pngs(tmp_path):
    folder = tmp_path / "tiny"
    write_small_schedule(folder)
    out = tmp_path / "sub" / "r.html"
    res = CliRunner().invoke(main, ["report", str(folder), "--out", str(out), "--png",
                                    str(tmp_path / "png")])
    assert res.exit_code == 0, res.output
    assert out.is_file() and 'id="fig-gantt"' in out.read_text()
    assert "r.html" in res.output and "3 figures" in res.output
    pngs = sorted((tmp_path / "png").iterdir())
    assert [p.name for p in pngs] == ["costs.png", "gantt.png", "site-s1.png"]
    import matplotlib.image as mpimg

    for p in pngs:  # the same figures as in the page, drawn at 150 dpi
        img = mpimg.imread(p)
        assert img.shape[0] >= 250 and img.shape[1] >= 800, p
        assert img[..., :3].std() > 0.05, f"{p.name} looks blank"


def test_cli_bad_instance_exits_2(tmp_path):
    folder = tmp_path / "tiny"
    write_small_schedule(folder)
    bad = tmp_path / "bad.yaml"
    bad.write_text("horizon: {start: 2026-01-01T00:00:00Z, periods: -3}\n")
    res = CliRunner().invoke(main, ["report", str(folder), "--out", str(tmp_path / "r.html"),
                                    "--instance", str(bad)])
    assert res.exit_code == 2, res.output
    assert "bad.yaml" in "".join(res.output.split())
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("case", ["missing", "not-schedule", "bad-json", "missing-column"])
def test_cli_bad_folder_exits_2_naming_it(case, schedule, tmp_path):
    folder = tmp_path / "f"
    if case == "missing":
        expect = ["f", "no such folder"]
    elif case == "not-schedule":
        folder.mkdir()
        expect = ["f", "no summary.json"]
    elif case == "bad-json":
        shutil.copytree(schedule[0], folder)
        (folder / "summary.json").write_text("{status: optimal")
        expect = ["summary.json", "JSON"]
    else:
        shutil.copytree(schedule[0], folder)
        df = pd.read_csv(folder / "sites.csv").drop(columns=["power_cap_mw"])
        df.to_csv(folder / "sites.csv", index=False)
        expect = ["f/sites", "power_cap_mw"]
    res = CliRunner().invoke(main, ["report", str(folder), "--out", str(tmp_path / "r.html")])
    assert res.exit_code == 2, res.output
    said = "".join(res.output.split())  # the console wraps long lines anywhere
    for word in expect:
        assert "".join(word.split()) in said, (word, res.output)
    assert "Traceback" not in res.output
    assert not (tmp_path / "r.html").exists()


# --------------------------------------------------------------------- headless Chromium

CHROMIUM = os.environ.get("ALLOCATOR_CHROMIUM", "/usr/bin/chromium")
needs_browser = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"no headless browser at {CHROMIUM} (install Debian's 'chromium' package; "
           ".ci/run does)",
)


def chromium(page: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    """Run headless Chromium on a local file, isolated from any profile and the network."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run", "--hide-scrollbars", f"--user-data-dir={tmp / 'profile'}",
           "--enable-logging=stderr", "--v=0", *args, page.resolve().as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp)


def console_messages(stderr: str) -> list[str]:
    """Lines the page's console wrote (Chromium logs them as ...:CONSOLE...)."""
    return [ln for ln in stderr.splitlines() if ":CONSOLE" in ln]


def blank(png: Path, box: tuple[int, int, int, int] | None = None) -> bool:
    """True if the (cropped) screenshot is a single flat colour."""
    from PIL import Image

    img = np.asarray(Image.open(png).convert("RGB"), dtype=float)
    if box is not None:
        x0, y0, x1, y1 = box
        img = img[y0:y1, x0:x1]
    return img.size == 0 or float(img.std()) < 1.0


@needs_browser
@pytest.mark.browser
def test_console_check_catches_a_page_error(tmp_path):
    # the detector itself: a page that logs an error must be caught
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><body><p>x</p>"
                    "<script>console.error('report broken')</script></body></html>")
    res = chromium(page, tmp_path, "--dump-dom")
    assert any("report broken" in m for m in console_messages(res.stderr)), res.stderr[-2000:]


@needs_browser
@pytest.mark.browser
def test_report_renders_in_chromium_without_console_errors(report, tmp_path):
    out, rep, _ = report
    res = chromium(out, tmp_path, "--dump-dom")
    assert res.returncode == 0, res.stderr[-2000:]
    assert console_messages(res.stderr) == []
    dom = parse(res.stdout)
    assert [a["id"] for t, a in dom.tags if t == "figure"] == rep.figure_ids
    for fid in rep.figure_ids:
        assert dom.svg_in_figure.get(fid) == 1, fid


@needs_browser
@pytest.mark.browser
def test_gantt_screenshot_is_not_blank(report, tmp_path):
    out, _, _ = report
    text = out.read_text()
    # a page holding only the Gantt figure, with the report's own styles, 1000 px wide
    fig = re.search(r'<figure id="fig-gantt".*?</figure>', text, re.S).group(0)
    style = re.search(r"<style>.*?</style>", text, re.S).group(0)
    page = tmp_path / "gantt.html"
    page.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'>{style}</head>"
                    f"<body style='margin:0'><main style='padding:0'>{fig}</main></body></html>")
    shot = tmp_path / "gantt.png"
    res = chromium(page, tmp_path, "--window-size=1000,700", f"--screenshot={shot}")
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    assert console_messages(res.stderr) == []
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("RGB"), dtype=int)
    assert not blank(shot)
    # every GPU type's bar colour is on screen (within antialiasing tolerance)
    for gtype, hexcolor in gpu_colors(["H100", "H200"]).items():
        rgb = np.array([int(hexcolor[i:i + 2], 16) for i in (1, 3, 5)])
        hits = (np.abs(img - rgb).max(axis=2) <= 6).sum()
        assert hits > 500, f"{gtype} bars ({hexcolor}) not on screen: {hits} pixels"
    # and the control: an empty page is recognised as blank
    empty = tmp_path / "empty.html"
    empty.write_text("<!DOCTYPE html><html><body></body></html>")
    shot2 = tmp_path / "empty.png"
    chromium(empty, tmp_path, "--window-size=400,300", f"--screenshot={shot2}")
    assert blank(shot2)


# ------------------------------------------------------------- sizing (leases, scenarios)


def test_sizing_report_of_a_scenario_folder_shows_leases_and_scenario_costs(tmp_path):
    """The tiny leasing case of tests/test_leasing.py with its two scenarios (worked by hand
    there): leases 3y 12 GPUs ($36) and 0.016 MW ($3.20); base costs $39.20, big $51.20
    (its 16 GPUs in period 0 need 4 on demand for 1 h at $3: $12 more), expected $45.20."""
    from test_leasing import leasing_case, with_scenarios

    import allocator

    folder = tmp_path / "sized"
    allocator.solve(with_scenarios(leasing_case())).export(folder)
    rep = write_report(folder, tmp_path / "sized.html")
    assert rep.kind == "scenarios"
    assert rep.figure_ids == ["fig-leases"]
    page = rep.html
    for section in ('id="key-figures"', 'id="leases"', 'id="scenarios"'):
        assert section in page
    assert "expected cost" in page and format_usd(45.2) in page
    # no demand in the tiny case: the expected unserved demand is 0, from the scenarios
    assert re.search(r'data-key="unserved demand"><div class="k">unserved demand</div>'
                     r'<div class="v">0 M tokens</div>', page)
    parsed = tables_of(page)
    leases = next(t for t in parsed if t[0][:3] == ["site", "resource", "term"])
    assert ["S", "X", "3y", "12", "GPUs", "36"] in leases
    assert ["S", "power", "lease", "0.016", "MW", "3.2"] in leases
    costs = next(t for t in parsed if t[0][:2] == ["scenario", "probability"])
    rows = {r[0]: dict(zip(costs[0], r, strict=True)) for r in costs[1:]}
    assert set(rows) == {"base", "big"}
    assert rows["base"]["total_cost_usd"] == "39.2" and rows["big"]["total_cost_usd"] == "51.2"
    assert rows["big"]["ondemand_lease_usd"] == "12" and rows["base"]["ondemand_lease_usd"] == ""
    # the bar per site names what is leased, for a reader without the figure
    assert "S: 12 X GPUs on 3y, 0.016 MW of power" in rep.plots[0].alt
    # each scenario folder is an ordinary schedule: its report draws it, with the leases
    sub = build_report(folder / "scenarios" / "big")
    assert sub.kind == "schedule" and "fig-leases" in sub.figure_ids and 'id="leases"' in sub.html


def test_single_scenario_sizing_report_has_the_leases_section(tmp_path):
    from test_leasing import leasing_case

    import allocator

    folder = tmp_path / "sized"
    allocator.solve(leasing_case()).export(folder)
    rep = build_report(folder)
    assert rep.kind == "schedule"
    assert "fig-leases" in rep.figure_ids and 'id="leases"' in rep.html
    assert "fig-gantt" in rep.figure_ids  # the rest of the schedule report is still there


class _Tables(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[-1].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def tables_of(page: str) -> list[list[list[str]]]:
    """Every <table> of the page as rows of cell texts (the header row first)."""
    p = _Tables()
    p.feed(page)
    return p.tables


def test_sweep_report_of_sizing_scenarios_shows_the_best_leases(tmp_path):
    """A sweep whose points are sizing solves with scenarios (the tiny case, $45.20 expected):
    its best point is drawn as leases and scenario costs, not as an empty schedule."""
    from test_leasing import leasing_case, with_scenarios

    import allocator

    folder = tmp_path / "sweep"
    allocator.solve(with_scenarios(leasing_case())).export(folder / "scenarios" / "p1")
    pd.DataFrame([{"scenario": "p1", "price": 100.0, "status": "optimal", "objective": 45.2,
                   "total_cost_usd": 45.2}]).to_csv(folder / "results.csv", index=False)
    rep = build_report(folder)
    assert rep.kind == "sweep"
    assert "best-fig-leases" in rep.figure_ids and "best-fig-gantt" not in rep.figure_ids
    for section in ('id="best-leases"', 'id="best-scenarios"', 'id="best-key-figures"'):
        assert section in rep.html
    assert "No training job is placed" not in rep.html
