"""Every validation rule fires on its malformed variant of the demo, with its message."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import yaml
from corpus.rule_cases import CASES
from hypothesis import HealthCheck, given, settings
from strategies import instances

from allocator.errors import InputError
from allocator.io import instance_from_dict
from allocator.schema import Instance
from allocator.validate import RULES, check, errors, validate, validate_path, warnings

DEMO = Path(__file__).resolve().parents[1] / "data" / "demo"
BASE = yaml.safe_load((DEMO / "instance.yaml").read_text())


def build(mutate):
    data = copy.deepcopy(BASE)
    mutate(data)
    return instance_from_dict(data, base_dir=DEMO, source="instance.yaml")


def test_every_rule_has_a_case():
    assert set(RULES) == {c.rule for c in CASES}


def problems_of(mutate):
    """Every problem of a variant: the loader's if it refuses it, else validate's."""
    try:
        inst = build(mutate)
    except InputError as exc:
        return exc.problems
    return validate(inst)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_rule_fires_with_its_message(case):
    problems = problems_of(case.mutate)
    hits = [p for p in problems if p.rule == case.rule]
    assert hits, f"{case.rule} not reported; got {[str(p) for p in problems]}"
    text = "\n".join(str(p) for p in hits)
    for want in case.expect:
        assert want in text, f"{want!r} not in:\n{text}"
    assert all(p.severity == RULES[case.rule][0] for p in hits)
    assert all(p.fix for p in hits), "every problem says how to fix it"


@pytest.mark.parametrize("case", [c for c in CASES if RULES[c.rule][0] == "error"], ids=lambda c: c.id)
def test_check_raises_on_errors(case):
    with pytest.raises(InputError) as exc:
        check(build(case.mutate), source="instance.yaml")
    assert str(exc.value).startswith("instance.yaml: ")
    assert any(p.rule == case.rule for p in exc.value.problems)


def test_unknown_profile_in_an_instance_built_without_the_loader():
    # the loader reports unknown profiles with the folder it searched; an Instance built
    # directly (or edited by a sweep) is checked by validation, against its own profiles
    data = copy.deepcopy(BASE)
    del data["demand_csv"]
    data["profiles"] = [{"id": "tiny", "inference": {"tokens_per_s_per_gpu": {"H100": 100}}}]
    data["jobs"][3]["profile"] = "tiny-lm"
    hits = [p for p in validate(Instance.model_validate(data)) if p.rule == "unknown-profile"]
    assert [str(p) for p in hits] == [
        "(jobs, eval-sweep) | profile: 'tiny-lm' was not found; add models/<profile>.yaml or fix the name; "
        "did you mean 'tiny'? known: tiny"]


def test_demo_is_valid_with_one_known_warning():
    problems = validate(build(lambda d: None))
    assert errors(problems) == []
    assert [p.rule for p in warnings(problems)] == ["redundancy-one-site"]
    assert check(build(lambda d: None)) == warnings(problems)


def test_all_problems_are_reported_at_once():
    def many(d):
        for m in (c.mutate for c in CASES if c.rule in ("unknown-gpu-type", "unknown-node", "budget-below-reserved",
                                                         "unknown-region", "pue-high")):
            m(d)

    rules = {p.rule for p in validate(build(many))}
    assert {"unknown-gpu-type", "unknown-node", "budget-below-reserved", "unknown-region", "pue-high"} <= rules


def test_fits_nowhere_respects_per_period_power():
    # colossus-1's ceiling drops from 3.0 to 1.0 MW in periods 10..13, so no 12-period window
    # of its 24 periods avoids the dip. pretrain-8b's H100 option needs
    # 1024 x 1.0 kW x PUE 1.25 / 1000 = 1.28 MW for 12 periods; aws-use1 (1.0 MW here) would
    # need 1024 x 1.15 / 1000 = 1.1776 MW; gcp-euw4 has only 768 H100. The H200 option needs
    # 512 x 1.25 / 1000 = 0.64 MW <= 1.0 for 22 periods, so with it the job still fits.
    def dip(d):
        d["sites"][0]["power_cap_mw"] = [3.0] * 10 + [1.0] * 4 + [3.0] * 10
        d["sites"][1]["power_cap_mw"] = 1.0

    assert not [p for p in validate(build(dip)) if p.rule == "job-fits-nowhere"]

    def dip_h200_gone(d):
        dip(d)
        d["jobs"][0]["options"] = d["jobs"][0]["options"][:1]

    hits = [p for p in validate(build(dip_h200_gone)) if p.rule == "job-fits-nowhere"]
    assert len(hits) == 1
    # the message names the site closest to fitting: aws-use1 lacks 0.18 MW, colossus-1 0.28
    assert "needs 1.178 MW" in hits[0].message and "aws-use1, has at most 1 MW" in hits[0].message

    def dip_moved(d):  # the dip at 12..15 leaves periods 0..11 free: fits again
        dip_h200_gone(d)
        d["sites"][0]["power_cap_mw"] = [3.0] * 12 + [1.0] * 4 + [3.0] * 8

    assert not [p for p in validate(build(dip_moved)) if p.rule == "job-fits-nowhere"]


def test_cycle_is_named_in_order_and_reported_once():
    def three(d):
        d["jobs"][0]["predecessors"] = ["eval-sweep"]  # pretrain-8b waits for eval-sweep
        d["jobs"][3]["predecessors"] = ["finetune-70b"]  # eval-sweep waits for finetune-70b

    hits = [p for p in validate(build(three)) if p.rule == "predecessor-cycle"]
    assert len(hits) == 1
    assert "eval-sweep -> pretrain-8b -> finetune-70b -> eval-sweep" in hits[0].message


def test_problem_from_a_csv_row_names_the_file_and_row(tmp_path):
    (tmp_path / "instance.yaml").write_text(yaml.safe_dump(
        {k: v for k, v in BASE.items() if k not in ("jobs", "demand_csv")} | {"jobs_csv": "jobs.csv"}))
    (tmp_path / "jobs.csv").write_text(
        "id,gpu_type,gpus,hours,deadline_period\n"
        "small,H100,64,2,24\n"
        "huge,H100,100000,2,24\n")
    from allocator.io import load_instance

    hits = [p for p in validate(load_instance(tmp_path / "instance.yaml")) if p.rule == "job-fits-nowhere"]
    assert [p.id for p in hits] == ["huge [jobs.csv row 3]"]
    assert "needs 100000 H100" in hits[0].message


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_generated_valid_instances_have_no_errors(data):
    # the strategy builds instances where every mandatory job fits a site alone and every
    # region is within reach: validation must not call any of them wrong
    inst = instance_from_dict(data)
    assert errors(validate(inst)) == []


def test_every_rule_is_documented():
    import re

    doc = (Path(__file__).resolve().parents[1] / "docs" / "validation.md").read_text()
    io_src = (Path(__file__).resolve().parents[1] / "allocator" / "io.py").read_text()
    loader_rules = set(re.findall(r'rule="([a-z-]+)"', io_src)) | set(re.findall(r'"(yaml-[a-z-]+)"', io_src))
    assert {"yaml-syntax", "yaml-tag", "csv-bad-cell"} <= loader_rules
    missing = [r for r in [*RULES, *loader_rules] if f"| {r} |" not in doc and f"**{r}**" not in doc]
    assert not missing, f"rules without a line in docs/validation.md: {missing}"


def test_schema_and_cross_entity_problems_in_one_run(tmp_path):
    # a negative ceiling drops colossus-1 from the salvaged instance: its own schema problem is
    # reported, and the cross-entity rules run on the rest without calling it unknown
    data = copy.deepcopy(BASE)
    data["sites"][0]["power_cap_mw"] = -3
    data["jobs"][0]["allowed_sites"] = ["colossus-1", "aws-use2"]
    data["jobs"][1]["predecessors"] = ["pretrain-9b"]
    shutil.copy(DEMO / "demand.csv", tmp_path / "demand.csv")
    (tmp_path / "instance.yaml").write_text(yaml.safe_dump(data))
    inst, problems = validate_path(tmp_path / "instance.yaml")
    assert inst is None
    text = [str(p) for p in problems]
    assert any(t.startswith("(sites, colossus-1) | power_cap_mw:") and "-3" in t for t in text)
    assert any("allowed_sites: 'aws-use2' is not in sites" in t for t in text)
    assert any("predecessors: 'pretrain-9b' is not a job" in t for t in text)
    assert not any("'colossus-1'" in t for t in text), text  # left out, not unknown
    assert all(p.severity == "error" for p in problems)  # warnings wait for a whole instance


def test_horizon_error_stops_before_cross_entity_rules(tmp_path):
    data = copy.deepcopy(BASE)
    data["horizon"]["periods"] = 0
    data["jobs"][1]["predecessors"] = ["pretrain-9b"]
    shutil.copy(DEMO / "demand.csv", tmp_path / "demand.csv")
    (tmp_path / "instance.yaml").write_text(yaml.safe_dump(data))
    _, problems = validate_path(tmp_path / "instance.yaml")
    assert [p.rule for p in problems] == ["greater_than"]
    assert str(problems[0]).startswith("(horizon, -) | periods: Input should be greater than 0 (got 0)")
