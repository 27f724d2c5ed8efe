"""Published Generalized Assignment Problem optima reached through allocator's own instance
format (benchmarks/gap.py maps each agent to a site and each job to a mandatory job)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("gap_bench", ROOT / "benchmarks" / "gap.py")
gap = importlib.util.module_from_spec(_spec)
sys.modules["gap_bench"] = gap  # dataclasses look their module up here
_spec.loader.exec_module(gap)

DATA = gap.data_dir()
needs_data = pytest.mark.skipif(not (DATA / "known_values.csv").exists(),
                                reason=f"GAP data not found in {DATA}")


def test_parser_and_conversion_on_a_tiny_problem(tmp_path):
    # 2 agents, 3 jobs; costs c[i][j], requirements r[i][j], capacities b
    (tmp_path / "tiny.txt").write_text("1\n2 3\n1 5 2\n4 1 6\n3 3 3\n2 2 2\n6 3\n")
    (p,) = gap.parse_orlib(tmp_path / "tiny.txt")
    assert p.name == "tiny-1" and (p.m, p.n) == (2, 3)
    inst = gap.to_instance(p)
    assert [s.id for s in inst.sites] == ["a1", "a2"]
    assert inst.sites[1].pools[0].available == 3
    j2 = inst.jobs[1]
    assert [(o.gpu_type, o.gpus) for o in j2.options] == [("g1", 3), ("g2", 2)]
    assert j2.site_cost_usd == {"a1": 5.0, "a2": 1.0}
    # cheapest per job: j1->a1 (1), j2->a2 (1), j3->a1 (2): a1 uses 3 + 3 = 6 <= 6, a2 uses
    # 2 <= 3: feasible, cost 4. All on a1 uses 9 > 6: flagged.
    cost, errors = gap.check_assignment(p, np.array([0, 1, 0]))
    assert cost == 4 and errors == []
    cost, errors = gap.check_assignment(p, np.array([0, 0, 0]))
    assert cost == 1 + 5 + 2 and errors == ["agent a1 uses 9 > capacity 6"]
    _, errors = gap.check_assignment(p, np.array([0, -1, 0]))
    assert errors == ["1 jobs unassigned (first j2)"]


def test_parser_rejects_a_truncated_file(tmp_path):
    (tmp_path / "bad.txt").write_text("1\n2 3\n1 5 2\n")
    with pytest.raises(ValueError, match="needs 14 numbers"):
        gap.parse_orlib(tmp_path / "bad.txt")


@needs_data
@pytest.mark.parametrize("name", ["gap1-1", "gap5-1"])
def test_small_orlib_problems_reach_the_published_optimum(name):
    known = gap.read_known()
    stem = name.split("-")[0]
    probs = {p.name: p for p in gap.parse_orlib(DATA / "orlib" / f"{stem}.txt")}
    p = probs[name]
    out = gap.solve_allocator(p, time_limit=60.0, threads=None)
    cost, errors = gap.check_assignment(p, out.agent_of_job)
    assert errors == []
    assert out.status == "optimal"
    assert cost == pytest.approx(known[name]["value"])
    assert out.objective == pytest.approx(known[name]["value"])
