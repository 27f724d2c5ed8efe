"""Golden LP files: one per constraint family, written with symbolic names from a tiny
instance, so any change to a family's rows shows up as a readable text diff.

Regenerate after an intended change with ALLOCATOR_UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pyomo.environ as pyo
import pytest
from test_formulation import CASES, redundancy_case, replanning_options

from allocator import instance_from_dict
from allocator.formulation import FAMILY_NAMES, build_model
from allocator.indexing import build_index

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("ALLOCATOR_UPDATE_GOLDEN") == "1"

# the instance whose rows each family's file shows (inference: the N+1 case, which has
# demand, capacity and redundancy rows)
GOLDEN_CASES = dict(CASES, inference=redundancy_case)
GOLDEN_OPTIONS = {"replanning": replanning_options}  # the family is active only with a previous plan


def family_lp(family: str, tmp_path: Path) -> str:
    """LP text of the tiny instance's model restricted to ``family``'s rows (the objective
    family: the objective alone, no rows)."""
    inst = instance_from_dict(copy.deepcopy(GOLDEN_CASES[family]()))
    options = GOLDEN_OPTIONS[family]() if family in GOLDEN_OPTIONS else None
    model = build_model(inst, build_index(inst), options)
    for con in model.component_objects(pyo.Constraint, active=True):
        if family == "objective" or not con.name.startswith(family + "_"):
            con.deactivate()
    if family != "objective":  # the writer puts a constant objective in their place
        for obj in list(model.component_objects(pyo.Objective)):
            model.del_component(obj)
    path = tmp_path / f"{family}.lp"
    model.write(str(path), io_options={"symbolic_solver_labels": True})
    return path.read_text()


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_family_matches_its_golden_lp(family, tmp_path):
    text = family_lp(family, tmp_path)
    golden = GOLDEN / f"{family}.lp"
    if UPDATE:
        golden.write_text(text)
    assert golden.exists(), f"no golden file for {family}; run with ALLOCATOR_UPDATE_GOLDEN=1"
    assert text == golden.read_text(), f"{family} rows changed; review and regenerate the golden file"


@pytest.mark.parametrize("family", [f for f in FAMILY_NAMES if f != "objective"])
def test_golden_file_holds_rows_of_its_family(family):
    text = (GOLDEN / f"{family}.lp").read_text()
    assert f"c_u_{family}_" in text or f"c_e_{family}_" in text or f"c_l_{family}_" in text


def test_every_registered_family_has_a_golden_file_and_no_other():
    files = {p.stem for p in GOLDEN.glob("*.lp")}
    assert files == set(FAMILY_NAMES)
