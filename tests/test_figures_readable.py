"""Report figures read right: legend swatches have the colours of the bars they name, a
value that rounds to 0 shows as 0, and the inference panels stay readable with 6+ regions
(legend clear of the panels, one colour per site). Looked at as PNG while writing them."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.patches import Patch, StepPatch
from test_report import demo, schedule  # noqa: F401 - fixtures

from allocator import figures
from allocator.figures import Timeline, cost_figure, inference_figure, site_figure
from allocator.results import read_schedule


def _drawn_fills(fig) -> set[tuple]:
    return {tuple(np.round(a.get_facecolor(), 3)) for ax in fig.axes for a in ax.patches
            if isinstance(a, StepPatch) and a.get_fill()}


def _legend_fills(fig) -> dict[str, tuple]:
    leg = fig.legends[0]
    return {t.get_text(): tuple(np.round(h.get_facecolor(), 3))
            for h, t in zip(leg.legend_handles, leg.get_texts(), strict=True)
            if isinstance(h, Patch) and h.get_fill() and t.get_text() not in ("power MW",)}


def test_site_legend_swatches_are_the_colours_of_the_bars(schedule):  # noqa: F811
    folder, _ = schedule
    frames = read_schedule(folder).frames
    plot = site_figure(frames, Timeline(24, 1.0), "aws-use1")  # H100 and H200 pools
    legend, drawn = _legend_fills(plot.figure), _drawn_fills(plot.figure)
    colors = figures.gpu_colors(figures._gpu_types(frames))
    assert {"H100 training", "H100 inference", "H200 training", "H200 inference"} <= set(legend)
    assert legend["H100 training"] == tuple(np.round(to_rgba(colors["H100"], 0.9), 3))
    assert legend["H100 inference"] == tuple(np.round(to_rgba(colors["H100"], 0.4), 3))
    # every bar drawn has its swatch (the H200 pool holds training only: its inference
    # swatch has no bar, and no grey swatch stands for all types)
    assert drawn <= set(legend.values()) | {tuple(np.round(to_rgba(figures.POWER_COLOR, 0.8), 3))}
    figures.close([plot])


def many_regions(n_regions: int, n_sites: int, periods: int = 24, noise: bool = False) -> dict:
    """Each region served by three sites at a quarter of its demand each (a quarter unserved)."""
    regions = [f"users-region-{i}" for i in range(n_regions)]
    sites = [f"site-{i}" for i in range(n_sites)]
    inf, uns = [], []
    for ri, r in enumerate(regions):
        demand = 1e6 * (1 + ri)
        for k in range(3):
            s = sites[(3 * ri + k) % n_sites]
            inf += [{"service": "chat", "region": r, "site": s, "gpu_type": "H100", "period": t,
                     "tokens_per_s": demand / 4, "gpus": 1} for t in range(periods)]
        short = 4.2e-11 if noise else demand / 4
        uns += [{"service": "chat", "region": r, "period": t, "demand_tokens_per_s": demand,
                 "served_tokens_per_s": demand - short, "unserved_tokens_per_s": short}
                for t in range(periods)]
    return {"inference": pd.DataFrame(inf), "unserved": pd.DataFrame(uns)}


@pytest.mark.parametrize("n_regions, n_sites", [(6, 4), (7, 12), (12, 10)])
def test_inference_panels_stay_readable_with_many_regions(n_regions, n_sites, tmp_path):
    plot = inference_figure(many_regions(n_regions, n_sites),
                            Timeline(24, 1.0, datetime(2026, 1, 1, tzinfo=UTC)))
    fig = plot.figure
    fig.savefig(tmp_path / "inference.png", dpi=60)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    legend = fig.legends[0].get_window_extent(renderer)
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert len(shown) == n_regions
    # the legend, in as many rows as it needs, stays a tenth of an inch clear of every panel
    # and its title (a second legend row used to sit on the first panels' titles)
    top = max(ax.get_tightbbox(renderer).y1 for ax in shown)
    assert (legend.y0 - top) / fig.dpi >= 0.1
    # one colour per serving site, as many sites as there are
    fills = _legend_fills(fig)
    site_fills = [c for label, c in fills.items() if label.startswith("site-")]
    assert len(site_fills) == n_sites and len(set(site_fills)) == n_sites
    assert "unserved" in [t.get_text() for t in fig.legends[0].get_texts()]
    # panels keep a readable size: at least 5 x 1.5 inches each
    w, h = fig.get_size_inches()
    for ax in shown:
        box = ax.get_position()
        assert box.width * w >= 4.5 and box.height * h >= 1.5
    figures.close([plot])


def test_solver_noise_is_drawn_as_nothing():
    plot = inference_figure(many_regions(2, 3, noise=True), Timeline(24, 1.0))
    labels = [t.get_text() for t in plot.figure.legends[0].get_texts()]
    assert "unserved" not in labels  # 4.2e-11 tokens/s is no shortfall
    assert not any(a.get_hatch() for ax in plot.figure.axes for a in ax.patches)
    figures.close([plot])


def test_cost_labels_that_round_to_zero_show_as_zero():
    summary = {"costs": {"reserved_lease": 1234.5, "energy": -3e-13, "egress": 2e-12}}
    plot = cost_figure(summary, {})
    texts = [t.get_text().strip() for ax in plot.figure.axes for t in ax.texts]
    assert "0" in texts and not any(t in ("0.00", "-0.00") for t in texts)
    assert "$0" in plot.alt and "-" not in plot.alt.replace("Cost breakdown: ", "").replace("on-demand", "")
    figures.close([plot])
