"""The command line runs as ``python -m allocator`` and ``python -m allocator.cli`` too."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["allocator", "allocator.cli"])
def test_module_entry_points_run_the_cli(module):
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Usage: allocator" in out.stdout
    assert "solve" in out.stdout
