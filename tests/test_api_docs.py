"""The examples of docs/api.md run as written, and the schedule they make verifies."""

from __future__ import annotations

import re
from pathlib import Path

from allocator.results import Status

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def block(marker: str) -> str:
    """The one python block of docs/api.md that contains ``marker``."""
    found = [b for b in python_blocks() if marker in b]
    assert len(found) == 1, f"{len(found)} blocks contain {marker!r}"
    return found[0]


def test_api_examples_run_and_verify(tmp_path, capsys):
    blocks = python_blocks()
    assert len(blocks) == 4
    ns: dict = {}
    exec(compile(blocks[0], f"{DOC}:example", "exec"), ns)  # noqa: S102 - our own docs
    result = ns["result"]
    printed = capsys.readouterr().out
    assert printed.startswith("optimal ")
    assert result.status is Status.OPTIMAL
    # By hand: chat needs 20000/2500 = 8, 12, 4 GPUs in periods 0-2; Memphis has 16 GPUs (8
    # reserved at 1.6 $/h, the rest 2.4 $/h on demand) and 0.02 MW = 16 GPUs x 1.25 kW;
    # AWS costs 6.88 $/GPU-h. finetune (8 GPUs, 2 h) runs at Memphis in periods 1-2:
    #   reserved 8 x 1.6 x 3 h = 38.40
    #   on demand: p1 8 x 2.4 (16 in use) + 4 x 6.88 at AWS, p2 4 x 2.4 (12 in use) = 56.32
    #   energy (8 + 16 + 12) GPUs x 1.25 kW x 1 h = 45 kWh x 60 $/MWh = 2.70
    #   total 97.42; starting in period 0 would cost 9.60 more (8 more on demand in p0,
    #   and period 1 still needs AWS).
    assert abs(result.objective - 97.42) < 1e-6
    t = result.frames["training"]
    assert (t["site"].tolist(), t["start_period"].tolist()) == (["memphis"], [1])
    # the verifier re-derives every rule and cost from the export
    from allocator.verify import verify_schedule

    folder = result.export(tmp_path / "s")
    assert verify_schedule(ns["inst"], folder) == []
    exec(compile(block("build_index("), f"{DOC}:stages", "exec"), ns)  # noqa: S102
    assert ns["outcome"].status is Status.OPTIMAL
    assert abs(ns["outcome"].objective - result.objective) <= 1e-6 * abs(result.objective)


def test_duals_example_names_the_link_and_sums_by_the_documented_call(capsys):
    # the third block prices link 0 by hand (see the text below it in docs/api.md):
    # 125 $/Gbps-hour in its one period, 125 x 2 h = 250 $ over the horizon
    ns: dict = {}
    exec(compile(block("dual_totals"), f"{DOC}:duals", "exec"), ns)  # noqa: S102 - our own docs
    assert ns["priced"].status is Status.OPTIMAL
    assert abs(ns["priced"].objective - (8 * 2 * 2 + 4 * 3 * 2)) < 1e-6  # 56 $
    bw = ns["bandwidth"]
    assert bw["link"].tolist() == [0] and bw["period"].tolist() == [0]
    assert abs(bw["marginal_usd_per_unit_h"].iloc[0] - 125.0) < 1e-6
    printed = capsys.readouterr().out
    assert "250" in printed


def test_sizing_example_leases_what_its_text_works_out(tmp_path, capsys):
    # the text under the block: 12 GPUs on the 3y offer, a 0.016 MW ceiling, $45.20 expected
    from allocator import instance_from_dict
    from allocator.verify import verify

    ns: dict = {}
    exec(compile(block("what_to_lease = {"), f"{DOC}:sizing", "exec"), ns)  # noqa: S102 - our own docs
    sized = ns["sized"]
    assert sized.status is Status.OPTIMAL
    assert abs(sized.total_cost - 45.2) < 1e-6
    assert "expected cost $45.20" in capsys.readouterr().out
    leases = sized.frames["leases"].set_index("resource")
    assert (leases.loc["X", "term"], leases.loc["X", "size"]) == ("3y", 12.0)
    assert abs(leases.loc["power", "size"] - 0.016) < 1e-12
    assert abs(ns["big"].total_cost - 51.2) < 1e-6
    folder = sized.export(tmp_path / "sized")
    assert verify(instance_from_dict(ns["what_to_lease"]), folder).ok
