"""Loading instances: YAML + CSV, dicts and DataFrames give the same instance."""

from pathlib import Path

from allocator import instance_from_dict, load_instance
from allocator.io import dump_instance, instance_to_dict

DATA = Path(__file__).resolve().parents[1] / "data"


def test_demo_loads_with_its_demand_table():
    inst = load_instance(DATA / "demo" / "instance.yaml")
    assert inst.horizon.periods == 24
    chat = next(s for s in inst.services if s.id == "chat-70b")
    assert set(chat.demand) == {"users-us-east", "users-us-west", "users-eu"}
    assert all(len(v) == 24 for v in chat.demand.values())


def test_yaml_round_trip(tmp_path):
    inst = load_instance(DATA / "demo" / "instance.yaml")
    out = dump_instance(inst, tmp_path / "again.yaml")
    assert load_instance(out) == inst
    assert instance_from_dict(instance_to_dict(inst)) == inst
