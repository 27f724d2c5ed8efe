"""The bad-input corpus through the command line: exit code 2, no traceback, a message that
names the file or entity, the field and the value.

tests/corpus/<case>/ holds a malformed instance as a new user would write it (YAML, CSV,
profiles) and expect.yaml with the exit code, the strings the output must contain and
(``absent``) those it must never show, and optional extra command-line ``args``.
The per-rule variants of the demo (tests/corpus/rule_cases.py) are run through the CLI too,
and every field of the demo is deleted, negated, made NaN and made a string.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from corpus.rule_cases import CASES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allocator.cli import main
from allocator.errors import InputError
from allocator.io import instance_from_dict, instance_to_dict, load_instance
from allocator.validate import RULES, validate

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
DEMO = HERE.parent / "data" / "demo"
CORPUS_CASES = sorted(p.parent for p in CORPUS.glob("*/expect.yaml"))


def run(*args: str, cwd: Path | None = None):
    runner = CliRunner()
    if cwd is None:
        return runner.invoke(main, list(args))
    # a fresh folder inside cwd as the working directory (Click's isolated_filesystem, which
    # did this, is deprecated)
    with tempfile.TemporaryDirectory(dir=cwd) as tmp, contextlib.chdir(tmp):
        return runner.invoke(main, list(args))


def output(result) -> str:
    return result.stdout + result.stderr


def target(case: Path) -> str:
    """What the user passes: the case's instance.yaml, or the path expect.yaml names."""
    expect = yaml.safe_load((case / "expect.yaml").read_text())
    if expect.get("target"):
        return str(case / expect["target"])
    return str(case / "instance.yaml")


def test_corpus_is_there():
    assert len(CORPUS_CASES) >= 40


@pytest.mark.parametrize("case", CORPUS_CASES, ids=lambda p: p.name)
def test_corpus_case(case: Path, tmp_path: Path):
    expect = yaml.safe_load((case / "expect.yaml").read_text())
    result = run("validate", *expect.get("args", []), target(case), cwd=tmp_path)
    text = output(result)
    assert result.exit_code == expect["exit_code"], text
    assert "Traceback" not in text
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    for want in expect["contains"]:
        assert want in text, f"{want!r} not in:\n{text}"
    for secret in expect.get("absent", []):  # content of the file that must never be echoed
        assert secret not in text, f"{secret!r} echoed in:\n{text}"
    assert not list(tmp_path.rglob("pwned.txt")), "a YAML tag ran a command"


def test_python_tag_is_never_constructed(tmp_path):
    # the safe loader must refuse the tag before anything runs, in any folder
    case = CORPUS / "python-object-tag"
    shutil.copy(case / "instance.yaml", tmp_path / "instance.yaml")
    result = run("validate", str(tmp_path / "instance.yaml"), cwd=tmp_path)
    assert result.exit_code == 2
    assert not list(tmp_path.rglob("pwned.txt"))


def test_missing_file_exits_2():
    result = run("validate", "no/such/instance.yaml")
    assert result.exit_code == 2
    assert "no/such/instance.yaml" in output(result) and "file not found" in output(result)


def test_json_output_for_programs():
    result = run("validate", "--json", target(CORPUS / "job-fits-nowhere"))
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert doc["valid"] is False and doc["summary"]["jobs"] == 1
    (err,) = [e for e in doc["errors"] if e["rule"] == "job-fits-nowhere"]
    assert err["entity"] == "jobs" and err["id"] == "train-1" and "16384 H100" in err["message"]

    ok = run("validate", "--json", str(DEMO / "instance.yaml"))
    assert ok.exit_code == 0
    doc = json.loads(ok.stdout)
    assert doc["valid"] is True and doc["errors"] == []
    assert doc["summary"]["periods"] == 24 and doc["summary"]["sites"] == 3
    assert [w["rule"] for w in doc["warnings"]] == ["redundancy-one-site"]

    csv = run("validate", "--json", target(CORPUS / "csv-unknown-gpu-type"))
    (err,) = json.loads(csv.stdout)["errors"]
    assert (err["entity"], err["id"], err["where"]) == ("jobs", "train-3", "jobs.csv row 3")

    broken = run("validate", "--json", target(CORPUS / "yaml-syntax-error"))
    assert broken.exit_code == 2
    doc = json.loads(broken.stdout)
    assert doc["summary"] is None and doc["errors"][0]["rule"] == "yaml-syntax"


def test_demo_validates_with_its_table():
    result = run("validate", str(DEMO / "instance.yaml"))
    assert result.exit_code == 0, output(result)
    text = output(result)
    assert "4,864 / 2,176" in text  # GPUs available / reserved: 2048+512+1024+512+768, 1536+256+256+128
    assert "4 (3 / 1)" in text  # jobs (mandatory / optional)
    assert "valid: no errors, 1 warning" in text


def test_shipped_instances_validate():
    for inst in sorted((HERE.parent / "data").glob("*/instance.yaml")):
        result = run("validate", str(inst))
        assert result.exit_code == 0, f"{inst}:\n{output(result)}"


# --------------------------------------------------------------------------- rule variants


def _write_variant(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load((DEMO / "instance.yaml").read_text())
    mutate(data)
    shutil.copy(DEMO / "demand.csv", tmp_path / "demand.csv")
    path = tmp_path / "instance.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_rule_variant_through_cli(case, tmp_path):
    # written outside the repository: the profiles folder is given as a user would
    result = run("validate", "--profiles", str(HERE.parent / "models"), str(_write_variant(tmp_path, case.mutate)))
    text = output(result)
    assert result.exit_code == (2 if RULES[case.rule][0] == "error" else 0), text
    assert "Traceback" not in text
    for want in case.expect:
        assert want in text, f"{want!r} not in:\n{text}"


# --------------------------------------------------------------------------- as a new user would

# The demo with its demand table inlined, so a variant loads without disk (fast).
RAW = yaml.safe_load((DEMO / "instance.yaml").read_text())
_FULL = instance_to_dict(load_instance(DEMO / "instance.yaml"))
INLINE = {k: v for k, v in RAW.items() if k != "demand_csv"}
INLINE["services"] = _FULL["services"]


def _leaves(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, (*path, i))
    else:
        yield path, node


def _variants():
    out = []
    for path, value in _leaves(INLINE):
        if len(path) > 1 and isinstance(path[-2], str) and path[-2] == "demand" and isinstance(value, list):
            continue
        if any(isinstance(p, int) and p > 0 for p in path[-1:]) and path[-2:-1] == ("demand",):
            continue
        out.append(("delete", path))
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value != 0:
            out.append(("negate", path))
        out.append(("nan", path))
        out.append(("string", path))
    # demand lists: mutate their first value only
    for path, value in _leaves(INLINE):
        if path[-1] == 0 and "demand" in path and isinstance(value, (int, float)):
            out += [("negate", path), ("nan", path), ("string", path)]
    return out


ALL_VARIANTS = _variants()


def _kind_of(variant) -> tuple:
    """A variant's kind and its path with list positions blanked: sites.*.pools.*.reserved."""
    kind, path = variant
    return kind, tuple("*" if isinstance(p, int) else p for p in path)


# the default run mutates each field of each entity kind once (the first entity that has it);
# the slow run mutates every field of every entity
VARIANTS = list({_kind_of(v): v for v in reversed(ALL_VARIANTS)}.values())[::-1]


def _apply(kind: str, path: tuple):
    data = copy.deepcopy(INLINE)
    node = data
    for p in path[:-1]:
        node = node[p]
    key = path[-1]
    if kind == "delete":
        del node[key]
        return data, None
    value = {"negate": lambda v: -v, "nan": lambda v: math.nan, "string": lambda v: "not-a-number"}[kind](node[key])
    node[key] = value
    return data, value


def _field(path: tuple) -> str:
    return next(p for p in reversed(path) if isinstance(p, str))


def _variant_id(v) -> str:
    return f"{v[0]}:{'.'.join(map(str, v[1]))}"


@pytest.mark.parametrize("kind,path", VARIANTS, ids=map(_variant_id, VARIANTS))
def test_new_user_variant(kind, path):
    _check_variant(kind, path)


@pytest.mark.slow
@pytest.mark.parametrize("kind,path", ALL_VARIANTS, ids=map(_variant_id, ALL_VARIANTS))
def test_new_user_variant_every_entity(kind, path):
    _check_variant(kind, path)


def _check_variant(kind, path):
    data, value = _apply(kind, path)
    try:
        inst = instance_from_dict(data, source="instance.yaml")
    except InputError as exc:  # the schema refuses it: it must name the field and the value
        text = str(exc)
        # a deleted key of a mapping-valued field (tokens_per_s_per_gpu.H100) names the mapping
        names = [p for p in path[-2 if kind == "delete" else -1:] if isinstance(p, str)] or [_field(path)]
        assert any(n in text for n in names), text
        if kind == "delete":
            assert "required field is missing" in text or "needs" in text, text
        elif kind == "nan":
            assert "nan" in text, text
        elif kind == "string":
            assert "not-a-number" in text, text
        else:
            assert repr(value) in text or f"{value:g}" in text, text
        return
    # it loads: a legal value (e.g. any text as a name), or one the cross-entity rules judge
    for p in validate(inst):
        assert p.rule in RULES and p.message and p.fix


def test_variants_cover_the_demo():
    # every field of every entity, four ways (deleting, negating, NaN, text)
    assert len(ALL_VARIANTS) > 800 and len(VARIANTS) > 150
    assert {_kind_of(v) for v in VARIANTS} == {_kind_of(v) for v in ALL_VARIANTS}


@pytest.mark.parametrize("kind,path", VARIANTS[::10], ids=map(_variant_id, VARIANTS[::10]))
def test_new_user_variant_through_cli(kind, path, tmp_path):
    data, _ = _apply(kind, path)
    file = tmp_path / "instance.yaml"
    file.write_text(yaml.safe_dump(data, sort_keys=False))
    result = run("validate", str(file))
    assert result.exit_code in (0, 2), output(result)
    assert "Traceback" not in output(result)
    if result.exit_code == 2:
        assert _field(path) in output(result) or "(" in output(result)


# --------------------------------------------------------------------------- random garbling

NASTY = [None, -1, -1e9, math.nan, math.inf, "", "abc", "12 MW", [], {}, [1, "x"], {"a": 1}, 1e308,
         True, 10**40, 0, 0.5, "H100", ["H100"], [[1]], {"id": 3}, -0.0, "2026-13-45", "nan"]
PATHS = [p for p, _ in _leaves(INLINE)] + [p[:-1] for p, _ in _leaves(INLINE) if len(p) > 1]


@st.composite
def garbled(draw):
    data = copy.deepcopy(INLINE)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        node = data
        try:
            for p in path[:-1]:
                node = node[p]
            if draw(st.booleans()) and isinstance(node, (dict, list)):
                if isinstance(node, dict):
                    node.pop(path[-1], None)
                elif path[-1] < len(node):
                    node.pop(path[-1])
            else:
                node[path[-1]] = copy.deepcopy(draw(st.sampled_from(NASTY)))
        except (KeyError, IndexError, TypeError):
            pass
    return data


def _never_crashes(data):
    try:
        inst = instance_from_dict(data, source="instance.yaml")
    except InputError as exc:
        assert exc.problems and all(p.message for p in exc.problems)
        str(exc)
        return
    for p in validate(inst):
        assert p.rule in RULES


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(garbled())
def test_garbled_instances_never_crash(data):
    _never_crashes(data)


@pytest.mark.slow
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(garbled())
def test_garbled_instances_never_crash_many(data):
    _never_crashes(data)
