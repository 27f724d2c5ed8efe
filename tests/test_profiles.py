"""AI model profiles ship with the package: an instance anywhere (copied out of the
repository, or with allocator installed by pip) finds `profile: llama-3.1-405b`; a models/
folder beside the instance, or profiles_dir, wins for an id it holds; `allocator profiles`
lists what is known and where it comes from."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from allocator import instance_from_dict, load_instance
from allocator.cli import main
from allocator.profiles import known, locate

ROOT = Path(__file__).resolve().parents[1]
PACKAGED = ROOT / "allocator" / "models"
IDS = ["deepseek-v3", "frontier-moe-2t", "frontier-moe-6t", "llama-3.1-405b", "llama-3.1-70b",
       "llama-3.1-8b"]


def instance(profile: str = "llama-3.1-405b", **extra) -> dict:
    return {
        "name": "outside",
        "horizon": {"start": "2026-01-01T00:00:00Z", "periods": 2, "period_hours": 1.0},
        "gpu_types": [{"id": "H100", "power_kw": 0.7}],
        "sites": [{"id": "s", "provider": "p", "power_cap_mw": 10.0,
                   "pools": [{"gpu_type": "H100", "available": 64, "ondemand_price_usd_per_gpu_h": 2.0}]}],
        "regions": [{"id": "r"}],
        "links": [{"a": "s", "b": "r", "latency_ms": 5}],
        "services": [{"id": "chat", "profile": profile, "latency_slo_ms": 50,
                      "unserved_usd_per_mtok": 10, "demand": {"r": 1000}}],
        **extra,
    }


def own_profile(folder: Path, tps: float, pid: str = "llama-3.1-405b") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{pid}.yaml").write_text(yaml.safe_dump(
        {"id": pid, "inference": {"tokens_per_s_per_gpu": {"H100": tps}}}))


def test_one_copy_of_each_profile_ships_in_the_package():
    assert sorted(p.stem for p in PACKAGED.glob("*.yaml")) == IDS
    assert not list((ROOT / "models").glob("*.y*ml"))  # the top-level folder only points there
    assert [p.id for p in known(None)] == IDS and {p.source for p in known(None)} == {"packaged"}


def test_an_instance_outside_the_repository_finds_a_packaged_profile(tmp_path):
    path = tmp_path / "instance.yaml"
    path.write_text(yaml.safe_dump(instance()))
    inst = load_instance(path)
    # allocator/models/llama-3.1-405b.yaml: inference.tokens_per_s_per_gpu.H100 = 471
    assert inst.services[0].tokens_per_s_per_gpu == {"H100": 471.0}
    # a dict instance has no folder at all
    assert instance_from_dict(instance()).services[0].tokens_per_s_per_gpu == {"H100": 471.0}


def test_a_models_folder_beside_the_instance_wins(tmp_path):
    own_profile(tmp_path / "models", 123.0)
    path = tmp_path / "instance.yaml"
    path.write_text(yaml.safe_dump(instance()))
    assert load_instance(path).services[0].tokens_per_s_per_gpu == {"H100": 123.0}
    # an id the folder lacks still comes from the package (llama-3.1-8b: H100 12,000)
    path.write_text(yaml.safe_dump(instance("llama-3.1-8b")))
    assert load_instance(path).services[0].tokens_per_s_per_gpu == {"H100": 12000.0}


def test_profiles_dir_wins(tmp_path):
    own_profile(tmp_path / "models", 123.0)
    own_profile(tmp_path / "mine", 456.0)
    path = tmp_path / "instance.yaml"
    path.write_text(yaml.safe_dump(instance(profiles_dir="mine")))
    assert load_instance(path).services[0].tokens_per_s_per_gpu == {"H100": 456.0}
    assert load_instance(path, profiles_dir=tmp_path / "models").services[0].tokens_per_s_per_gpu == {
        "H100": 123.0}
    assert locate("llama-3.1-405b", tmp_path / "mine").source == "folder"
    assert locate("llama-3.1-405b", None).source == "packaged"
    assert locate("../etc/passwd", tmp_path) is None


def test_an_unknown_profile_names_the_packaged_ones(tmp_path):
    path = tmp_path / "instance.yaml"
    path.write_text(yaml.safe_dump(instance("llama-3.1-450b")))
    res = CliRunner().invoke(main, ["validate", str(path)])
    assert res.exit_code == 2
    assert "profile: 'llama-3.1-450b' was not found" in res.output
    assert "did you mean 'llama-3.1-405b'?" in res.output and "packaged: deepseek-v3" in res.output


def test_cli_lists_packaged_and_folder_profiles(tmp_path, monkeypatch):
    own_profile(tmp_path / "models", 123.0)
    own_profile(tmp_path / "models", 50.0, pid="my-model")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["profiles", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    rows = {r["id"]: r for r in doc["profiles"]}
    assert sorted(rows) == sorted([*IDS, "my-model"])
    assert rows["llama-3.1-405b"]["source"].startswith("folder ")  # the folder's file wins
    assert rows["llama-3.1-405b"]["tokens_per_s_per_gpu"] == {"H100": 123.0}
    assert rows["deepseek-v3"]["source"] == "packaged"
    # deepseek-v3.yaml: 671B parameters, 37B active, 2.788M H800 GPU-hours for 14.8T tokens
    assert (rows["deepseek-v3"]["parameters_b"], rows["deepseek-v3"]["active_parameters_b"]) == (671, 37)
    assert rows["deepseek-v3"]["reference_tokens_t"] == 14.8
    table = CliRunner().invoke(main, ["profiles"], terminal_width=200)
    assert table.exit_code == 0 and "llama-3.1-8b" in table.output and "packaged" in table.output
    bad = CliRunner().invoke(main, ["profiles", "--profiles", str(tmp_path / "nowhere")])
    assert bad.exit_code == 2


def _build_py(tmp_path: Path) -> Path:
    """What the build puts in the package: setuptools' build_py on a copy of the project."""
    src = tmp_path / "src"
    shutil.copytree(ROOT / "allocator", src / "allocator", ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / f, src / f)
    out = tmp_path / "lib"
    subprocess.run([sys.executable, "-c", "import setuptools; setuptools.setup()", "-q", "build_py",
                    "--build-lib", str(out)], cwd=src, check=True, capture_output=True)
    return out


def test_the_build_includes_every_profile(tmp_path):
    lib = _build_py(tmp_path)
    assert sorted(p.stem for p in (lib / "allocator" / "models").glob("*.yaml")) == IDS


@pytest.mark.slow
def test_pip_install_ships_the_profiles(tmp_path):
    """A plain pip install (into a --target folder) finds the profile from anywhere."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                    str(ROOT)], check=True, capture_output=True)
    (tmp_path / "inst").mkdir()
    (tmp_path / "inst" / "instance.yaml").write_text(yaml.safe_dump(instance()))
    code = ("import allocator; print(allocator.__file__); "
            "print(allocator.load_instance('instance.yaml').services[0].tokens_per_s_per_gpu)")
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path / "inst", capture_output=True, text=True,
                         env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, check=True)
    assert res.stdout.splitlines() == [str(target / "allocator" / "__init__.py"), "{'H100': 471.0}"]
