"""The previous plan of a re-plan: read once, checked against the new instance.

``load_previous`` accepts what ``SolveOptions.previous`` may hold: a schedule folder written
by allocator (any format, read with ``results.read_schedule``), a ``Schedule``, a ``Result``,
or a training DataFrame (then the plan has no inference GPUs). Ids tie the previous plan to
the new instance: a job of the previous plan that the instance no longer has is "removed";
a site or GPU type the instance does not have is a mismatch (InputError, exit 2), because
the previous plan then was made for another fleet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from allocator.errors import InputError, Problem
from allocator.results import Result, Schedule, ScheduleError, normalize_frame, read_schedule
from allocator.schema import Instance

TRAINING_COLS = ("job", "option", "site", "gpu_type", "gpus", "start_period")


@dataclass(frozen=True, eq=False)
class PreviousPlan:
    """The decisions of the previous plan that a re-plan compares against."""

    training: pd.DataFrame  # job, option, site, gpu_type, gpus, start_period
    inference_gpus: pd.DataFrame  # service, site, gpu_type, period, gpus
    source: str = "previous plan"
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)

    def placement(self) -> dict[str, tuple[int, str, str, int, int]]:
        """job -> (option, site, gpu_type, gpus, start_period)."""
        t = self.training
        return {j: (int(o), s, g, int(n), int(st)) for j, o, s, g, n, st in zip(
            t["job"], t["option"], t["site"], t["gpu_type"], t["gpus"], t["start_period"], strict=True)}


def describe(previous: Any) -> str | None:
    """How a previous plan is recorded in a result's options (a path, or what it was)."""
    if previous is None:
        return None
    if isinstance(previous, PreviousPlan):
        return previous.source
    if isinstance(previous, (str, Path)):
        return str(previous)
    return f"<{type(previous).__name__}>"


def load_previous(previous: Any, inst: Instance) -> PreviousPlan:
    """The previous plan from any accepted form, checked against ``inst`` (InputError)."""
    if isinstance(previous, PreviousPlan):
        plan = previous
    elif isinstance(previous, (str, Path)):
        path = Path(previous)
        if path.is_dir() and not (path / "summary.json").is_file():
            raise ScheduleError([Problem("file", str(path / "summary.json"),
                                         "the --previous folder is not a schedule (no summary.json)",
                                         "pass the folder written by 'allocator solve --out'",
                                         rule="previous-not-schedule")], source=str(path))
        plan = _from_frames(read_schedule(path).frames, str(path))
    elif isinstance(previous, Schedule):
        plan = _from_frames(previous.frames, str(previous.path or "previous schedule"))
    elif isinstance(previous, Result):
        if not previous.status.has_schedule:
            raise InputError([Problem("options", "previous",
                                      f"the previous result has no schedule (status {previous.status.value})",
                                      "pass a result with status optimal or feasible",
                                      rule="previous-not-schedule")], source="solve options")
        plan = _from_frames(previous.frames, "previous result")
    elif isinstance(previous, pd.DataFrame):
        plan = _from_frames({"training": previous}, "previous training table")
    else:
        raise InputError([Problem("options", "previous",
                                  f"previous must be a schedule folder, a Result or a training "
                                  f"DataFrame, not {type(previous).__name__}",
                                  "pass the folder written by 'allocator solve --out'",
                                  rule="previous-not-schedule")], source="solve options")
    _check_fleet(plan, inst)
    return plan


def _from_frames(frames: dict[str, pd.DataFrame], source: str) -> PreviousPlan:
    tr = frames.get("training")
    if tr is None:
        raise ScheduleError([Problem("file", source, "the previous plan has no training table",
                                     "pass a schedule folder or its training table",
                                     rule="previous-not-schedule")], source=source)
    missing = [c for c in TRAINING_COLS if c not in tr.columns]
    if missing:
        raise ScheduleError([Problem("file", source, f"the training table lacks column(s) {', '.join(missing)}",
                                     f"a training table has columns {', '.join(TRAINING_COLS)}",
                                     rule="previous-not-schedule")], source=source)
    tr = tr[list(TRAINING_COLS)].copy().reset_index(drop=True)
    for c in TRAINING_COLS:
        if c in ("job", "site", "gpu_type"):
            tr[c] = tr[c].astype(str)
            continue
        num = pd.to_numeric(tr[c], errors="coerce")
        bad = tr[c][num.isna() | (num != num.round())]
        if len(bad):
            raise ScheduleError([Problem("file", f"{source} (training, column {c})",
                                         f"value {bad.iloc[0]!r} is not a whole number",
                                         "pass an unedited schedule", rule="previous-not-schedule")],
                                source=source)
        tr[c] = num.astype("int64")
    ig = frames.get("inference_gpus")
    ig = normalize_frame("inference_gpus", ig) if ig is not None else normalize_frame("inference_gpus", None)
    return PreviousPlan(training=tr, inference_gpus=ig.reset_index(drop=True), source=source,
                        frames=dict(frames))


def _check_fleet(plan: PreviousPlan, inst: Instance) -> None:
    """Every site and (site, GPU type) the previous plan uses must exist in the instance."""
    pools = {(s.id, p.gpu_type) for s in inst.sites for p in s.pools}
    sites = {s.id for s in inst.sites}
    problems: list[Problem] = []
    for table, df in (("training", plan.training), ("inference_gpus", plan.inference_gpus)):
        seen: set[tuple[str, str]] = set()
        for s, g in zip(df["site"], df["gpu_type"], strict=True):
            if (s, g) in seen or (s, g) in pools:
                continue
            seen.add((s, g))
            what = f"site {s!r}" if s not in sites else f"GPU type {g!r} at site {s!r}"
            problems.append(Problem("file", f"{plan.source} ({table})",
                                    f"the previous plan uses {what}, which the instance does not have",
                                    "re-plan from a schedule made for this instance's sites and GPU types",
                                    rule="previous-mismatch"))
    if problems:
        raise ScheduleError(problems, source=plan.source)
