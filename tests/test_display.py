"""Numbers as people read them: a value that rounds to 0 shows as 0 in the summary lines,
the report and the CLI status line, and solver noise is 0 in the derived tables."""

from __future__ import annotations

import re

import pandas as pd
from test_report import write_small_schedule

from allocator import display
from allocator.derive import _unserved
from allocator.report import write_report
from allocator.results import Result, Status, read_schedule


def test_values_that_round_to_zero_show_as_zero():
    assert display.qty(4.191e-13) == "0" and display.qty(-3e-9) == "0" and display.qty(0.0) == "0"
    assert display.qty(0.000123) == "0.000123" and display.qty(12.186) == "12.19"
    assert display.qty(16219.7) == "16,220"
    assert display.fixed(-1e-13) == "0" and display.fixed(0.004) == "0" and display.fixed(1234.5) == "1,234.50"
    assert display.usd(-1e-13) == "$0" and display.usd(0.004) == "$0" and display.usd(12.5) == "$12.50"
    assert display.pct(1e-13) == "0%" and display.pct(0.0005) == "0.0500%"


def test_solver_noise_in_unserved_demand_is_zero_at_the_source():
    # 100 tokens/s served as 100 - 4.2e-11 (HiGHS's tolerance) and 0.3 as 0.1 + 0.2: no shortfall;
    # 5 tokens/s short of 1,000 is a real one
    demand = pd.Series([100.0, 0.3, 1000.0])
    served = pd.Series([100.0 - 4.2e-11, 0.1 + 0.2, 995.0])
    assert _unserved(demand, served).tolist() == [0.0, 0.0, 5.0]


def _noisy_schedule(folder):
    """The small schedule of test_report with noise in its figures, as a solver leaves it."""
    write_small_schedule(folder)
    sched = read_schedule(folder)
    summary = dict(sched.summary)
    summary.update(unserved_mtok=4.191e-13, emissions_t=-2e-15,
                   costs=dict(summary["costs"]) | {"energy": -3e-13, "egress": 2e-12})
    (folder / "summary.json").write_text(__import__("json").dumps(summary))


def test_report_shows_noise_as_zero(tmp_path):
    _noisy_schedule(tmp_path / "s")
    out = tmp_path / "report.html"
    write_report(tmp_path / "s", out)
    text = out.read_text()
    block = re.search(r'<section id="key-figures">(.*?)</section>', text, re.S).group(1)
    values = dict(re.findall(r'data-key="([^"]+)"><div class="k">[^<]*</div>'
                             r'<div class="v">([^<]*)</div>', block))
    assert values["unserved demand"] == "0 M tokens"
    assert values["emissions"] == "0 tCO2"
    assert "e-1" not in text.split("<svg")[0]  # no 4.191e-13 anywhere in the page's text
    assert "-0.00" not in text and "$-0" not in text


def test_cli_status_line_shows_noise_as_zero(capsys):
    from allocator import cli

    result = Result(status=Status.OPTIMAL, objective=-1e-13, bound=-2e-13, gap=1e-15,
                    costs={"energy": 3e-13}, emissions_t=-1e-14, solver="by hand")
    cli._render_solve(result, "out", quiet=False)
    printed = capsys.readouterr().out
    assert printed.splitlines()[0] == "optimal, objective 0, gap 0%; schedule in out"
    assert "-0.00" not in printed and "e-1" not in printed
