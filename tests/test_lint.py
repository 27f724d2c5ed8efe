"""The code passes ruff (pyflakes, pycodestyle, bugbear, isort, pyupgrade rules of pyproject)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (it comes with the test extras)")
    proc = subprocess.run([ruff, "check", "allocator", "tests", "benchmarks"], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    sys.stdout.write(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
