"""Sweep specs: path selectors, expansion modes, scenario ids and errors naming the spec."""

from pathlib import Path

import pytest

from allocator import load_instance
from allocator.errors import InputError
from allocator.sweep_spec import (
    PathError,
    address_text,
    check_spec,
    expand,
    load_spec,
    resolve,
    scenario_id,
    scenario_instance,
    spec_from_dict,
)

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def demo():
    return load_instance(DATA / "demo" / "instance.yaml")


def paths(inst, path):
    return [address_text(a) for a in resolve(inst, path)]


# --------------------------------------------------------------------------- selectors


def test_selector_by_id_and_pool_gpu_type(demo):
    assert paths(demo, "sites[colossus-1].power_cap_mw") == ["sites[0].power_cap_mw"]
    assert paths(demo, "sites[aws-use1].pools[H100].ondemand_price_usd_per_gpu_h") == [
        "sites[1].pools[0].ondemand_price_usd_per_gpu_h"
    ]


def test_gpu_pools_shorthand_equals_long_form(demo):
    short = resolve(demo, "gpu_pools[aws-use1/H200].ondemand_price_usd_per_gpu_h")
    long = resolve(demo, "sites[aws-use1].pools[H200].ondemand_price_usd_per_gpu_h")
    assert short == long and len(short) == 1


def test_star_prefix_matches_every_pool(demo):
    n_pools = sum(len(s.pools) for s in demo.sites)
    found = paths(demo, "*.ondemand_price_usd_per_gpu_h")
    assert len(found) == n_pools == 5
    assert all(p.endswith("ondemand_price_usd_per_gpu_h") for p in found)


def test_mapping_selectors_and_patterns(demo):
    regions = set(next(s for s in demo.services if s.id == "chat-70b").demand)
    assert len(resolve(demo, "services[chat-70b].demand[*]")) == len(regions)
    # a mapping leaf without a selector means every key
    assert resolve(demo, "services[chat-70b].demand") == resolve(demo, "services[chat-70b].demand[*]")
    assert paths(demo, "services[chat-70b].demand[users-eu]") == ["services[0].demand[users-eu]"]
    assert len(resolve(demo, "sites[aws-*].pools[*].available")) == 2


def test_links_by_endpoints_either_order_and_positions(demo):
    assert resolve(demo, "links[users-eu/gcp-euw4].bandwidth_gbps") == resolve(
        demo, "links[gcp-euw4/users-eu].bandwidth_gbps")
    assert paths(demo, "jobs[pretrain-8b].options[1].hours") == ["jobs[0].options[1].hours"]
    assert paths(demo, "carbon_price_usd_per_t") == ["carbon_price_usd_per_t"]


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("sites[nope].power_cap_mw", ["sites[nope] matches nothing", "colossus-1"]),
        ("sites[colossus-1].power_cap", ["no field 'power_cap'", "power_cap_mw"]),
        ("*.no_such_field", ["no entity", "'no_such_field'"]),
        ("gpu_pools[aws-use1].ondemand_price_usd_per_gpu_h", ["SITE/GPU_TYPE"]),
        ("horizon[0].periods", ["not a list or mapping"]),
        ("sites[colossus-1].pools[B200].available", ["pools[B200] matches nothing", "H100"]),
        ("sites..pue", ["segment ''"]),
    ],
)
def test_bad_paths_name_the_segment(demo, path, words):
    with pytest.raises(PathError) as err:
        resolve(demo, path)
    for w in words:
        assert w in str(err.value)


# --------------------------------------------------------------------------- applying


def test_set_scale_and_series(demo):
    spec = spec_from_dict({"mode": "zip", "parameters": [
        {"path": "sites[colossus-1].power_cap_mw", "values": [4.5]},
        {"path": "*.ondemand_price_usd_per_gpu_h", "scale": [0.5]},
        {"path": "services[chat-70b].demand[*]", "scale": [2]},
        {"path": "sites[aws-use1].pools[H100].available", "scale": [1.001]},
    ]})
    (sc,) = check_spec(demo, spec)
    new = scenario_instance(demo, sc)
    assert new.site("colossus-1").power_cap_mw == 4.5
    for s_new, s_old in zip(new.sites, demo.sites, strict=True):
        for p_new, p_old in zip(s_new.pools, s_old.pools, strict=True):
            assert p_new.ondemand_price_usd_per_gpu_h == pytest.approx(p_old.ondemand_price_usd_per_gpu_h / 2)
    chat_new = next(s for s in new.services if s.id == "chat-70b")
    chat_old = next(s for s in demo.services if s.id == "chat-70b")
    for r, series in chat_old.demand.items():
        assert chat_new.demand[r] == [2 * x for x in series]  # element-wise
    # a whole-number field is rounded: 1024 * 1.001 = 1025.024 -> 1025
    assert new.site("aws-use1").pools[0].available == 1025
    # the base instance is untouched
    assert demo.site("colossus-1").power_cap_mw != 4.5
    assert demo.site("aws-use1").pools[0].available == 1024


def test_values_refused_by_schema_are_spec_errors(demo):
    spec = spec_from_dict({"parameters": [{"path": "sites[colossus-1].power_cap_mw",
                                           "values": [3, -1]}]})
    with pytest.raises(InputError) as err:
        check_spec(demo, spec, source="specs/s.yaml")
    text = str(err.value)
    assert "s.yaml" in text and "sites[colossus-1].power_cap_mw" in text and "-1" in text


def test_reserved_above_available_is_refused(demo):
    spec = spec_from_dict({"parameters": [{"path": "sites[colossus-1].pools[H100].available",
                                           "values": [100]}]})
    with pytest.raises(InputError, match="reserved"):
        check_spec(demo, spec)


def test_unknown_path_is_reported_with_parameter(demo, tmp_path):
    f = tmp_path / "sweep.yaml"
    f.write_text("parameters:\n  - {path: 'sites[mars].power_cap_mw', values: [1]}\n"
                 "  - {path: '*.price', scale: [1]}\n")
    with pytest.raises(InputError) as err:
        check_spec(demo, load_spec(f), source=str(f))
    text = str(err.value)
    assert "2 problems" in text
    assert "sweep.yaml parameters[0] sites[mars].power_cap_mw" in text
    assert "sweep.yaml parameters[1] *.price" in text


# --------------------------------------------------------------------------- spec errors


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"parameters": [{"path": "x", "values": [1], "scale": [2]}]},
         ["parameters[0] x", "exactly one of values, range or scale", "values, scale"]),
        ({"parameters": [{"path": "x"}]}, ["exactly one of values, range or scale"]),
        ({"parameters": [{"path": "x", "values": []}]}, ["empty"]),
        ({"parameters": [{"path": "x", "range": {"start": 5, "stop": 1, "step": 1}}]},
         ["range", "below start"]),
        ({"parameters": [{"path": "x", "range": {"start": 0, "stop": 1, "step": 0}}]},
         ["range.step", "greater than 0", "got 0"]),
        ({"parameters": [{"path": "x", "values": ["cheap"]}]}, ["values", "'cheap'"]),
        ({"mode": "cartesian", "parameters": [{"path": "x", "values": [1]}]},
         ["mode", "'cartesian'", "grid, zip or sample"]),
        ({"mode": "sample", "parameters": [{"path": "x", "values": [1]}]}, ["samples: N"]),
        ({"mode": "zip", "parameters": [{"path": "x", "values": [1, 2]}, {"path": "y", "values": [1]}]},
         ["equal length", "x: 2", "y: 1"]),
        ({"parameters": [{"path": "x", "values": [1]}], "solve": {"time_limit": 3}},
         ["solve.time_limit", "unknown solve option", "time_limit_s"]),
        ({"parameters": [{"path": "x", "values": [1]}], "solve": {"objective": "money"}},
         ["solve.objective", "'money'", "cost"]),
        ({"parameters": [{"path": "x", "values": [1]}], "solve": {"time_limit_s": "ten"}},
         ["solve.time_limit_s", "'ten'"]),
        ({"parameters": [{"path": "x", "values": [1]}], "sweep": 1}, ["sweep: unknown field"]),
        ({"parameters": []}, ["parameters"]),
        ({"parameters": [{"path": "x", "values": [1]}, {"path": "x", "scale": [1]}]},
         ["'x' appears more than once"]),
    ],
)
def test_spec_errors_name_field_and_value(raw, words):
    with pytest.raises(InputError) as err:
        spec_from_dict(raw, source="data/demo/sweep.yaml")
    text = str(err.value)
    assert "sweep.yaml" in text
    for w in words:
        assert w in text, text


def test_spec_file_not_a_mapping(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("- 1\n- 2\n")
    with pytest.raises(InputError, match="top level is list"):
        load_spec(f)


# --------------------------------------------------------------------------- expansion and ids


def test_grid_zip_sample_counts_and_order():
    params = [{"path": "a", "values": [1, 2, 3]}, {"path": "b", "range": {"start": 0, "stop": 1, "step": 0.5}}]
    grid = expand(spec_from_dict({"parameters": params}))
    assert len(grid) == 9
    assert [s.values for s in grid[:3]] == [{"a": 1.0, "b": 0.0}, {"a": 1.0, "b": 0.5}, {"a": 1.0, "b": 1.0}]
    zipped = expand(spec_from_dict({"mode": "zip", "parameters": [params[0], {"path": "b", "scale": [1, 2, 3]}]}))
    assert [(s.values["a"], s.values["b"]) for s in zipped] == [(1, 1), (2, 2), (3, 3)]
    s1 = expand(spec_from_dict({"mode": "sample", "samples": 4, "seed": 7, "parameters": params}))
    s2 = expand(spec_from_dict({"mode": "sample", "samples": 4, "seed": 7, "parameters": params}))
    s3 = expand(spec_from_dict({"mode": "sample", "samples": 4, "seed": 8, "parameters": params}))
    assert [s.id for s in s1] == [s.id for s in s2]  # seeded
    assert len({s.id for s in s1}) == 4  # distinct grid points
    assert {s.id for s in s1} <= {s.id for s in grid}
    assert [s.id for s in s1] != [s.id for s in s3]
    # more samples than grid points: the whole grid once
    assert len(expand(spec_from_dict({"mode": "sample", "samples": 50, "parameters": params}))) == 9


def test_range_values_are_clean_decimals():
    (p,) = spec_from_dict({"parameters": [{"path": "x", "range": {"start": 0.1, "stop": 0.7, "step": 0.2}}]}).parameters
    assert p.points() == [0.1, 0.3, 0.5, 0.7]  # stop included, no 0.30000000000000004


def test_scenario_id_is_stable_and_canonical():
    a = scenario_id([("p", "set", 2), ("q", "scale", 1.5)], {"time_limit_s": 5})
    # same overrides in another order, int spelled as float: same id
    assert scenario_id([("q", "scale", 1.5), ("p", "set", 2.0)], {"time_limit_s": 5.0}) == a
    # pinned: sha256 of the canonical JSON, so ids survive across processes and versions
    assert a == scenario_id((("p", "set", 2.0), ("q", "scale", 1.5)), {"time_limit_s": 5})
    assert len(a) == 12 and int(a, 16) >= 0
    assert scenario_id([("p", "set", 3)], {"time_limit_s": 5}) != scenario_id([("p", "set", 2)], {"time_limit_s": 5})
    assert scenario_id([("p", "set", 2)], {}) != scenario_id([("p", "scale", 2)], {})
    assert scenario_id([("p", "set", 2)], {}) != scenario_id([("p", "set", 2)], {"mip_gap": 0.01})


def test_scenario_id_pinned_value():
    # The hash input is fixed by the docs; changing it would orphan every sweep folder.
    import hashlib
    text = '{"overrides":[["carbon_price_usd_per_t","set",80.0]],"solve":{"mip_gap":0.001}}'
    expect = hashlib.sha256(text.encode()).hexdigest()[:12]
    assert scenario_id([("carbon_price_usd_per_t", "set", 80)], {"mip_gap": 0.001}) == expect


def test_solve_options_from_spec():
    spec = spec_from_dict({"parameters": [{"path": "x", "values": [1]}],
                           "solve": {"time_limit_s": 7, "mip_gap": 0.01, "disabled_families": ["network"]}})
    opts = spec.solve_options()
    assert opts.time_limit_s == 7 and opts.mip_gap == 0.01 and opts.disabled_families == ("network",)


# --------------------------------------------------------------------------- solve options as parameters


def test_solve_parameters_set_the_scenario_options_not_the_instance(demo):
    from allocator.options import SolveOptions
    from allocator.sweep_spec import scenario_options

    spec = spec_from_dict({"parameters": [{"path": "solve.max_moves", "values": [0, 2, None]},
                                          {"path": "solve.mip_gap", "values": [0.01]}],
                           "solve": {"previous": "plan", "now": 6}})
    scenarios = check_spec(demo, spec, source="s.yaml")
    assert len({s.id for s in scenarios}) == 3  # the id changes with the option's value
    base = spec.solve_options(SolveOptions(threads=1))
    opts = [scenario_options(base, s) for s in scenarios]
    assert [o.max_moves for o in opts] == [0, 2, None]
    assert all(isinstance(o.max_moves, int) for o in opts[:2])  # 2 (YAML) -> int, not 2.0
    assert {(o.mip_gap, o.now, o.previous, o.threads) for o in opts} == {(0.01, 6, "plan", 1)}
    # the instance of a scenario is the base instance: no instance field was touched
    assert scenario_instance(demo, scenarios[0]).model_dump() == demo.model_dump()
    assert scenarios[2].values == {"solve.max_moves": None, "solve.mip_gap": 0.01}


def test_solve_parameter_ids_follow_the_documented_hash():
    # a solve option is an override like any other: [path, "set", value], null for "no cap"
    import hashlib
    spec = spec_from_dict({"parameters": [{"path": "solve.max_moves", "values": [4, None]}],
                           "solve": {"mip_gap": 0.001}})
    ids = [s.id for s in expand(spec)]
    texts = ['{"overrides":[["solve.max_moves","set",4.0]],"solve":{"mip_gap":0.001}}',
             '{"overrides":[["solve.max_moves","set",null]],"solve":{"mip_gap":0.001}}']
    assert ids == [hashlib.sha256(t.encode()).hexdigest()[:12] for t in texts]


@pytest.mark.parametrize(
    ("param", "solve", "words"),
    [
        ({"path": "solve.max_moves", "values": [2, -1]}, {}, ["solve.max_moves", "-1", ">= 0"]),
        ({"path": "solve.max_moved_gpus", "values": [1.5]}, {}, ["solve.max_moved_gpus", "1.5", "whole number"]),
        ({"path": "solve.now", "values": [-3]}, {}, ["solve.now", "-3"]),
        ({"path": "solve.now", "values": [None]}, {}, ["solve.now", "None", "null"]),
        ({"path": "solve.mip_gap", "values": [0.01, 1.5]}, {}, ["solve.mip_gap", "1.5", "[0, 1)"]),
        ({"path": "solve.time_limit_s", "values": [-5]}, {}, ["solve.time_limit_s", "-5", ">= 0"]),
        ({"path": "solve.threads", "values": [1, 2]}, {}, ["solve.threads", "cannot be swept", "max_moves"]),
        ({"path": "solve.objective", "values": [1]}, {}, ["solve.objective", "cannot be swept"]),
        ({"path": "solve.max_move", "values": [1]}, {}, ["solve.max_move", "not a solve option", "max_moves"]),
        ({"path": "solve.max_moves", "scale": [2]}, {}, ["solve.max_moves", "scale", "values or range"]),
        ({"path": "solve.max_moves", "values": [[1, 2]]}, {}, ["solve.max_moves", "[1, 2]", "one number"]),
        ({"path": "solve.max_moves", "values": [1]}, {"max_moves": 3}, ["solve.max_moves", "both"]),
        ({"path": "carbon_price_usd_per_t", "values": [0, None]}, {}, ["carbon_price_usd_per_t", "null", "solve"]),
    ],
)
def test_bad_solve_parameters_name_file_field_and_value(param, solve, words):
    with pytest.raises(InputError) as err:
        spec_from_dict({"parameters": [param], "solve": solve}, source="specs/replan.yaml")
    text = str(err.value)
    assert "replan.yaml" in text
    for w in words:
        assert w in text, text


def test_now_beyond_the_horizon_is_a_spec_error(demo):
    spec = spec_from_dict({"parameters": [{"path": "solve.now", "values": [0, demo.horizon.periods + 1]}],
                           "solve": {"previous": "plan"}})
    with pytest.raises(InputError) as err:
        check_spec(demo, spec, source="specs/replan.yaml")
    text = str(err.value)
    assert "replan.yaml" in text and "solve.now" in text and str(demo.horizon.periods + 1) in text
    assert f"{demo.horizon.periods} periods" in text
    fixed = spec_from_dict({"parameters": [{"path": "solve.max_moves", "values": [0]}],
                            "solve": {"previous": "plan", "now": demo.horizon.periods + 2}})
    with pytest.raises(InputError, match="solve.now"):
        check_spec(demo, fixed, source="specs/replan.yaml")
    # now = periods (all history) is a period a re-plan may start from
    ok = spec_from_dict({"parameters": [{"path": "solve.now", "values": [demo.horizon.periods]}],
                         "solve": {"previous": "plan"}})
    assert len(check_spec(demo, ok)) == 1
