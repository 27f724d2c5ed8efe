"""Loading routes agree: YAML -> schema -> YAML round trips, and an instance built from
pandas DataFrames equals the same instance built from its files."""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import pytest
import yaml

from allocator import instance_from_dict, instance_from_frames, load_instance
from allocator.errors import InputError
from allocator.io import dump_instance, instance_to_dict, origin_of

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo"
COLOSSUS = ROOT / "data" / "colossus-2026"
TABLES = {"jobs_csv": "jobs", "links_csv": "links", "demand_csv": "demand", "site_series_csv": "site_series"}
SHIPPED = [d for d in (DEMO, COLOSSUS) if (d / "instance.yaml").exists()]


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda d: d.name)
def test_yaml_schema_yaml_round_trip(folder, tmp_path):
    inst = load_instance(folder / "instance.yaml")
    first = dump_instance(inst, tmp_path / "a.yaml")
    again = load_instance(first)
    assert again == inst
    # dumping what was read back gives the same text: nothing drifts on a second pass
    second = dump_instance(again, tmp_path / "b.yaml")
    assert first.read_text() == second.read_text()
    assert instance_from_dict(instance_to_dict(inst)) == inst
    # the dump is self-contained: no table references, no profile look-up needed
    text = yaml.safe_load(first.read_text())
    assert not set(TABLES) & set(text)


def _frames_from_files(folder: Path) -> tuple[dict, dict[str, pd.DataFrame]]:
    """The YAML mapping without table references, and each table read as a planner would:
    pd.read_csv with its default dtype inference (ints, floats, NaN for empty cells)."""
    base = yaml.safe_load((folder / "instance.yaml").read_text())
    frames = {}
    for key, name in TABLES.items():
        ref = base.pop(key, None)
        if ref is not None:
            frames[name] = pd.read_csv(folder / ref)
    return base, frames


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda d: d.name)
def test_dataframe_built_equals_file_built(folder):
    from_files = load_instance(folder / "instance.yaml")
    base, frames = _frames_from_files(folder)
    assert frames, "the shipped instance references at least one table"
    from_frames = instance_from_frames(base, profiles_dir=ROOT / "models", **frames)
    assert from_frames == from_files


def test_typed_frames_built_in_python_equal_the_demo():
    # a pipeline that never saw the CSV: periods as ints, demand as floats, one frame per table
    base = yaml.safe_load((DEMO / "instance.yaml").read_text())
    del base["demand_csv"]
    csv = pd.read_csv(DEMO / "demand.csv")
    demand = pd.DataFrame({
        "service": csv["service"].astype("string"),
        "region": csv["region"].tolist(),
        "period": csv["period"].astype("int64"),
        "tokens_per_s": csv["tokens_per_s"].astype(float),
    }).sample(frac=1.0, random_state=3)  # row order does not matter
    inst = instance_from_frames(base, demand=demand)
    assert inst == load_instance(DEMO / "instance.yaml")


def test_jobs_and_links_frames_with_lists_and_missing_values():
    base = yaml.safe_load((DEMO / "instance.yaml").read_text())
    jobs_yaml, links_yaml = base.pop("jobs"), base.pop("links")
    rows = []
    for j in jobs_yaml:
        for o in j["options"]:
            rows.append({"id": j["id"], "gpu_type": o["gpu_type"], "gpus": o["gpus"], "hours": o["hours"],
                         "release_period": j.get("release_period"),  # None -> default
                         "deadline_period": j.get("deadline_period", float("nan")),  # NaN -> default
                         "deadline": j.get("deadline", pd.NA), "tardiness_usd_per_h": j.get("tardiness_usd_per_h"),
                         "mandatory": j.get("mandatory", True), "value_usd": j.get("value_usd"),
                         "allowed_zones": j.get("allowed_zones"), "dataset_source": j.get("dataset_source"),
                         "dataset_tb": j.get("dataset_tb"), "predecessors": j.get("predecessors", [])})
    demand = pd.read_csv(DEMO / base.pop("demand_csv"))
    from_frames = instance_from_frames(base, jobs=pd.DataFrame(rows), links=pd.DataFrame(links_yaml),
                                       demand=demand)
    from_files = load_instance(DEMO / "instance.yaml")
    assert from_frames.jobs == from_files.jobs
    assert from_frames.links == from_files.links
    assert from_frames == from_files


def test_frame_errors_name_the_frame_index_column_and_value():
    base = yaml.safe_load((DEMO / "instance.yaml").read_text())
    del base["demand_csv"]
    demand = pd.read_csv(DEMO / "demand.csv")
    demand["tokens_per_s"] = demand["tokens_per_s"].astype(object)
    demand.loc[5, "tokens_per_s"] = "lots"
    demand.loc[7, "period"] = 99
    with pytest.raises(InputError) as exc:
        instance_from_frames(base, demand=demand)
    text = str(exc.value)
    assert "(file, demand frame index 5) | column tokens_per_s: 'lots' is not a finite number" in text
    assert "(file, demand frame index 7) | column period: 99 is outside 0..23" in text


def test_frame_with_a_missing_column():
    base = yaml.safe_load((DEMO / "instance.yaml").read_text())
    del base["demand_csv"]
    demand = pd.read_csv(DEMO / "demand.csv").drop(columns=["region"])
    with pytest.raises(InputError, match=r"\(file, demand\) \| missing column\(s\) region"):
        instance_from_frames(base, demand=demand)


def test_building_does_not_touch_the_callers_mapping():
    base = yaml.safe_load((DEMO / "instance.yaml").read_text())
    del base["demand_csv"]
    before = copy.deepcopy(base)
    demand = pd.read_csv(DEMO / "demand.csv")
    first = instance_from_frames(base, demand=demand)
    assert base == before
    assert instance_from_frames(base, demand=demand) == first


def test_csv_born_entities_remember_their_row(tmp_path):
    if not (COLOSSUS / "jobs.csv").exists():
        pytest.skip("colossus-2026 not shipped")
    inst = load_instance(COLOSSUS / "instance.yaml")
    where = origin_of(inst)
    jobs = pd.read_csv(COLOSSUS / "jobs.csv")
    first_yaml_jobs = len(yaml.safe_load((COLOSSUS / "instance.yaml").read_text()).get("jobs") or [])
    k = first_yaml_jobs  # the first job read from the CSV
    assert where[("jobs", k)] == "jobs.csv row 2"
    assert inst.jobs[k].id == jobs["id"].iloc[0]
    # a copy is a different object: it carries no origin, and equality ignores origins
    clone = inst.model_copy(deep=True)
    assert origin_of(clone) == {} and clone == inst


def test_yaml_scalars_and_csv_rows_merge_into_one_series(tmp_path):
    # a constant power ceiling in YAML, overridden in two periods by the site-series table
    data = yaml.safe_load((DEMO / "instance.yaml").read_text())
    (tmp_path / "demand.csv").write_text((DEMO / "demand.csv").read_text())
    (tmp_path / "series.csv").write_text("site,period,power_cap_mw\ncolossus-1,3,2.5\ncolossus-1,4,2.0\n")
    data["site_series_csv"] = "series.csv"
    (tmp_path / "instance.yaml").write_text(yaml.safe_dump(data))
    site = load_instance(tmp_path / "instance.yaml").site("colossus-1")
    assert site.power_cap_mw == [3.0, 3.0, 3.0, 2.5, 2.0] + [3.0] * 19
