"""Write the CSV tables of colossus-2026-leasing from those of its sibling colossus-2026.

Run from anywhere: ``python make_tables.py``. The output is deterministic; SOURCES.md says
why each change is made.

The instance is colossus-2026 on half its horizon in coarser periods (14 days of 6-hour
periods instead of 28 days of 4-hour ones), so that the three-scenario extensive form solves
to a small gap in minutes:

- jobs.csv: every training job of colossus-2026 at half its size and with half its window:
  tokens_t and explicit option hours halved (so run lengths halve), release and deadline
  times halved, in 6-hour periods (a colossus-2026 period p, 4 h, at half the time is hour
  2p, period p/3 here: release rounded down, deadline up), the value of optional jobs halved
  (their cost halves with their length); GPU counts, tardiness rates and datasets unchanged;
- links.csv: copied unchanged;
- demand.csv and site_series.csv: made by colossus-2026's make_series.py (the same daily
  shapes and figures) for this folder's horizon (instance.yaml: 56 periods from 2026-08-03).

Loaded instances may not read files outside their folder, so the tables are copies.
"""

from __future__ import annotations

import csv
import importlib.util
import math
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent / "colossus-2026"
HALVED_FLOAT = ("tokens_t", "hours", "value_usd")
PERIOD_FACTOR = 3  # a colossus-2026 period index / 3 = this instance's period at half the time


def _rescale(value: str, how: str) -> str:
    if value == "":
        return value
    x = float(value)
    if how == "down":
        return str(math.floor(x / PERIOD_FACTOR))
    if how == "up":
        return str(math.ceil(x / PERIOD_FACTOR))
    h = x / 2
    return str(int(h)) if h == int(h) else f"{h:g}"


def write_jobs() -> None:
    with open(SOURCE / "jobs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
        fields = list(rows[0])
    for r in rows:
        r["release_period"] = _rescale(r["release_period"], "down")
        r["deadline_period"] = _rescale(r["deadline_period"], "up")
        for k in HALVED_FLOAT:
            r[k] = _rescale(r[k], "half")
    with open(HERE / "jobs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def write_series() -> None:
    spec = importlib.util.spec_from_file_location("colossus_make_series", SOURCE / "make_series.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.HERE = HERE  # reads this folder's instance.yaml (its horizon), writes here
    mod.main()


def main() -> None:
    write_jobs()
    shutil.copyfile(SOURCE / "links.csv", HERE / "links.csv")
    write_series()


if __name__ == "__main__":
    main()
