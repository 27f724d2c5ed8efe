"""Eligibility rules live in one place (allocator.eligibility), used by the index and by the
validator: both give the same verdict on whether a job can be placed or a region reached."""

from __future__ import annotations

import copy
import inspect
from pathlib import Path

import numpy as np
import pytest
import yaml
from corpus.rule_cases import CASES

from allocator import eligibility, indexing, validate
from allocator.indexing import build_index
from allocator.io import instance_from_dict

DEMO = Path(__file__).resolve().parents[1] / "data" / "demo"
BASE = yaml.safe_load((DEMO / "instance.yaml").read_text())

JOB_RULES = {"window-too-short", "residency", "data-unreachable", "job-fits-nowhere"}
REGION_RULES = {"region-unreachable", "region-no-gpu"}


def _build(mutate):
    data = copy.deepcopy(BASE)
    mutate(data)
    return instance_from_dict(data, base_dir=DEMO, source="instance.yaml")


@pytest.mark.parametrize("case", [c for c in CASES if c.rule in JOB_RULES | REGION_RULES], ids=lambda c: c.id)
def test_index_and_validator_agree(case):
    inst = _build(case.mutate)
    found = {(p.rule, p.id.split(" [")[0]) for p in validate.validate(inst)}
    index = build_index(inst)
    for job in inst.jobs:
        says_nowhere = any((r, job.id) in found for r in JOB_RULES)
        # the index also drops the jobs waiting on an unplaceable one; the validator judges
        # each job alone (the cause is reported once, at the job that cannot run)
        alone = job.id in index.unplaced and not index.unplaced[job.id].startswith("its predecessor")
        assert says_nowhere == alone, (job.id, found, index.unplaced)
    served = set(zip(index.flows["v"], index.flows["r"], strict=True))
    for svc in inst.services:
        unreachable = any((r, svc.id) in found for r in REGION_RULES)
        demanded = [r for r, v in svc.demand.items() if (max(v) if isinstance(v, list) else v) > 0]
        if unreachable:
            assert any((svc.id, r) not in served for r in demanded)


def test_the_demo_agrees_too():
    inst = _build(lambda d: None)
    index = build_index(inst)
    assert index.unplaced == {}
    assert not [p for p in validate.validate(inst) if p.rule in JOB_RULES | REGION_RULES]


def test_rules_are_written_once():
    # the index and the validator call the rules; neither spells a rule out again
    for module in (indexing, validate):
        src = inspect.getsource(module)
        assert "allowed_zones is not None and" not in src, module.__name__
        assert "sliding_window_view" not in src, module.__name__
        assert "latency_slo_ms +" not in src and "cap >= need" not in src, module.__name__
        assert "eligibility" in src


def test_rules_on_plain_values_and_arrays():
    # power: 512 GPUs x 1.0 kW x PUE 1.25 = 0.64 MW against a 0.64 MW ceiling fits (tolerance)
    assert eligibility.power_fits(512 * 1.0 * 1.25 / 1000, 0.64)
    assert not eligibility.power_fits(0.641, 0.64)
    assert list(eligibility.power_fits(np.array([1.0, 2.0]), np.array([1.5, 1.5]))) == [True, False]
    # ceilings 3, 1, 2, 2 and runs of 2 periods: minima 1, 1, 2
    assert list(eligibility.window_min(np.array([3.0, 1.0, 2.0, 2.0]), 2)) == [1.0, 1.0, 2.0]
    assert eligibility.gang_fits(512, 512) and not eligibility.gang_fits(513, 512)
    assert eligibility.within_slo(50.0, 50.0) and not eligibility.within_slo(50.1, 50.0)
